"""The job scripts in examples/ are valid shell, their slm command lines parse,
and the first runs as it is, without Slurm, with slm.py found beside it."""
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
    lines = re.findall(r"^(?:#\s+)?(?:exec\s+)?python3 \S*(?:slm\.py|SLM_PY\"?) (.*)$", text,
                       re.M)
    assert lines, "no slm command in %s" % path
    for line in lines:
        words = shlex.split(line.split("<<")[0])
        head, tail = slm.split_argv(words)
        args = slm.build_parser().parse_args(head)
        assert args.command in ("run", "submit")
        assert tail, line


def test_slm_lines_in_examples_parse(path=os.path.join(ROOT, "examples",
                                                      "03-unmodified-script.sh")):
    import slm
    found = slm.slm_directives(open(path, "rb").read())
    assert found and all(slm.parse_job_options(words, path) for _, words in found)


def test_the_first_example_runs_without_slurm(tmp_path):
    """`bash examples/01-plain-command.sh` from anywhere: no Slurm, no
    set-up, slm.py found beside the examples; its notices reach the webhook."""
    import sys
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from scaffold import HttpSink
    sink = HttpSink()
    try:
        env = dict((k, v) for k, v in os.environ.items()
                   if not k.startswith(("SLM_", "SLURM_", "SBATCH_")))
        env.update(HOME=str(tmp_path), SLM_SPOOL_DIR=str(tmp_path / "spool"),
                   SLM_WEBHOOK=sink.url + "/hook")
        r = subprocess.run(["bash", os.path.join(ROOT, "examples", "01-plain-command.sh")],
                           cwd=str(tmp_path), env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        assert (r.returncode, r.stdout) == (0, b"step 1\nstep 2\nstep 3\n"), r.stderr
        assert [(e["status"], e["job_name"]) for e in sink.wait_for(lambda evs: len(evs) == 2)] \
            == [("RUNNING", "plain"), ("COMPLETED", "plain")]
    finally:
        sink.close()


def test_the_readmes_fast_exec_line_runs_slm_from_its_compiled_cache(tmp_path):
    """The README's longer exec line: slm imported (its __pycache__ written and
    then used), the command's exit status and environment as with slm.py."""
    import sys
    readme = open(os.path.join(ROOT, "README.md")).read()
    line = re.search(r"^exec python3 (-I -c '[^']*') \\\n\s+run -- ", readme, re.M)
    assert line, "the README's fast exec line is gone"
    flags = shlex.split(line.group(1).replace("/shared/tools", ROOT))
    env = dict(os.environ, SLM_SPOOL_DIR=str(tmp_path / "spool"), PYTHONPATH="/kept",
               PYTHONDONTWRITEBYTECODE="")
    for k in [k for k in env if k.startswith("SLM_") and k != "SLM_SPOOL_DIR"]:
        del env[k]
    for _ in range(2):
        r = subprocess.run([sys.executable] + flags + ["run", "--", "sh", "-c",
                                                       'echo "$PYTHONPATH"; exit 7'],
                           cwd=str(tmp_path), env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        assert (r.returncode, r.stdout) == (7, b"/kept\n"), r.stderr
        assert b"COMPLETED" not in r.stderr and b"FAILED" in r.stderr
    cache = glob.glob(os.path.join(ROOT, "__pycache__", "slm.*.pyc"))
    assert cache, "no compiled cache beside slm.py"
