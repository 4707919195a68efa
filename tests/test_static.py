"""Static gates: slm.py's Python 3.6 compatibility and standard library only, the
seam between slm.py and slm_api.py, pyflakes, and files that read top to bottom."""
import ast
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, SLM


def imported_modules(path):
    tree = ast.parse(open(path).read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module.split(".")[0]


@pytest.mark.skipif(sys.version_info < (3, 10), reason="needs sys.stdlib_module_names")
def test_slm_imports_only_the_standard_library():
    foreign = sorted(set(m for m in imported_modules(SLM) if m not in sys.stdlib_module_names))
    assert foreign == []


def test_only_slm_api_imports_bottle_or_pymysql():
    for name in os.listdir(ROOT):
        if name.endswith(".py") and name != "slm_api.py":
            mods = set(imported_modules(os.path.join(ROOT, name)))
            assert not mods & {"bottle", "pymysql"}, name


def test_slm_api_uses_only_the_names_slm_shares_with_it():
    """The seam between the two files: slm_api.py reaches into slm.py only for
    the names slm.SHARED_WITH_SERVICE lists (a rename there cannot break the
    service silently), and each listed name exists."""
    import slm
    shared = getattr(slm, "SHARED_WITH_SERVICE", None)
    assert isinstance(shared, tuple) and shared, "slm.py has no SHARED_WITH_SERVICE tuple"
    assert len(set(shared)) == len(shared), "a name listed twice"
    path = os.path.join(ROOT, "slm_api.py")
    tree = ast.parse(open(path).read(), path)
    # slm is imported as slm, nothing taken from it by name (that would bypass the list)
    assert not [n.lineno for n in ast.walk(tree)
                if isinstance(n, ast.ImportFrom) and n.module == "slm"]
    assert not [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Import)
                for alias in n.names if alias.name == "slm" and alias.asname]
    used = set(n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and
               isinstance(n.value, ast.Name) and n.value.id == "slm")
    assert used, "slm_api.py uses nothing of slm?"
    assert sorted(used - set(shared)) == []
    assert sorted(name for name in shared if not hasattr(slm, name)) == []


def test_vermin_says_python_3_6():
    vermin = shutil.which("vermin") or os.path.join(os.path.dirname(sys.executable), "vermin")
    if not os.path.exists(vermin):
        pytest.fail("vermin is not installed (tests/requirements.txt has it)")
    r = subprocess.run([vermin, "-t=3.6-", "--violations", "--no-tips", SLM],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert r.returncode == 0, r.stdout.decode()


def test_slm_is_executable_with_a_shebang():
    assert os.access(SLM, os.X_OK)
    assert open(SLM).readline() == "#!/usr/bin/env python3\n"


def test_every_supported_python_is_tested():
    """slm.py promises 3.6..3.13: CI (SLM_REQUIRE_PYTHONS=1) must test each one."""
    from conftest import PYTHONS, python_id
    from scaffold import required
    found = sorted(set(python_id(p) for p in PYTHONS))
    wanted = ["py3.%d" % minor for minor in range(6, 14)]
    missing = [v for v in wanted if v not in found]
    if missing and not required("PYTHONS"):
        pytest.skip("interpreters not found here: %s (pyenv install them)" % " ".join(missing))
    assert missing == []


def test_pyflakes_clean():
    files = [os.path.join(ROOT, "slm.py"), os.path.join(ROOT, "slm_api.py")] + sorted(
        os.path.join(ROOT, "tests", n) for n in os.listdir(os.path.join(ROOT, "tests"))
        if n.endswith(".py"))
    r = subprocess.run([sys.executable, "-m", "pyflakes"] + files, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
    assert r.returncode == 0, r.stdout.decode()


def later_names(path):
    """(line, top-level definition, a module-level name it uses, where that is defined)
    for each name used before its definition: a file that reads top to bottom has none."""
    tree = ast.parse(open(path).read(), path)
    defined = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined.setdefault(node.name, node.lineno)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    defined.setdefault(target.id, node.lineno)
    found = []
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Assign)):
            continue
        local = set()     # a name bound inside the definition is not the module's
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                local.add(sub.id)
            elif isinstance(sub, ast.arg):
                local.add(sub.arg)
            elif isinstance(sub, (ast.FunctionDef, ast.ClassDef)) and sub is not node:
                local.add(sub.name)
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load) and \
                    sub.id not in local and defined.get(sub.id, 0) > node.lineno:
                found.append((node.lineno, getattr(node, "name", "="), sub.id,
                              defined[sub.id]))
    return sorted(set(found))


@pytest.mark.parametrize("name", ["slm.py", "slm_api.py"])
def test_each_file_reads_top_to_bottom(name):
    """Leaves first, main last: nothing uses a module-level name defined below it
    (what a later part needs of an earlier one, it is handed)."""
    assert later_names(os.path.join(ROOT, name)) == []
