"""The job scripts in examples/ are valid shell, and their slm command lines parse."""
import glob
import os
import re
import shlex
import subprocess

import pytest

from conftest import ROOT

EXAMPLES = sorted(glob.glob(os.path.join(ROOT, "examples", "*.sh")))


def test_there_is_an_example_for_each_way_of_use():
    names = " ".join(os.path.basename(p) for p in EXAMPLES)
    for word in ("plain", "heredoc", "unmodified", "exec", "array", "srun"):
        assert word in names


@pytest.mark.parametrize("path", EXAMPLES, ids=os.path.basename)
def test_example_is_valid_bash(path):
    assert subprocess.run(["bash", "-n", path]).returncode == 0
    assert open(path).readline().startswith("#!/bin/bash")


@pytest.mark.parametrize("path", EXAMPLES, ids=os.path.basename)
def test_example_slm_lines_parse(path):
    import slm
    text = open(path).read()
    lines = re.findall(r"^(?:#\s+)?(?:exec\s+)?python3 \S*slm\.py (.*)$", text, re.M)
    assert lines, "no slm command in %s" % path
    for line in lines:
        words = shlex.split(line.split("<<")[0])
        head, tail = slm.split_argv(words)
        args = slm.build_parser().parse_args(head)
        assert args.command in ("run", "submit")
        assert tail, line
