"""Shared fixtures: a local HTTP sink, black holes, and a way to run slm.py.

Environment:
  SLM_TEST_PYTHONS   interpreters for the per-version suite (space-separated paths);
                     default: every CPython 3.6..3.13 pyenv has, plus this one
  SLM_REQUIRE_SLURM, SLM_REQUIRE_MARIADB, SLM_REQUIRE_MULTINODE (and _BROWSER, _PYTHONS)
                     set to 1 (CI does) to make the real-Slurm / real-MariaDB /
                     multi-node suites fail instead of skip when what they need is missing
  SLM_SLURM_MODES    the modes the cluster fixture runs the real-Slurm suites in
  SLM_SLURM_RELEASE  set by tests/slurm-release.sh inside a release's chroot
"""
import glob
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLM = os.path.join(ROOT, "slm.py")
HELPERS = os.path.join(ROOT, "tests", "helpers")
CHILD = os.path.join(HELPERS, "child.py")
sys.path.insert(0, ROOT)

from scaffold import HttpSink, free_port, need  # noqa: E402

# Started in the background by a shell (`./.ci/run &`, nohup), the suite
# ignores INT and QUIT, and every job it starts would inherit that: what a
# job does when killed by those signals could then not be seen.  Tests start
# jobs as a terminal or slurmstepd would: with the default dispositions.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
if signal.getsignal(signal.SIGQUIT) == signal.SIG_IGN:
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


def discover_pythons():
    listed = os.environ.get("SLM_TEST_PYTHONS", "").split()
    if listed:
        return listed
    found = {}
    roots = [os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))]
    for root in roots:
        for path in sorted(glob.glob(os.path.join(root, "versions", "3.*", "bin", "python3"))):
            m = re.search(r"versions/(3\.(\d+))\.\d+/", path)
            if m and 6 <= int(m.group(2)) <= 13:
                found.setdefault(m.group(1), path)  # one per minor version
    here = "%d.%d" % sys.version_info[:2]
    found.setdefault(here, os.path.realpath(sys.executable))
    return [found[k] for k in sorted(found, key=lambda v: int(v.split(".")[1]))]


PYTHONS = discover_pythons()
MAIN_PYTHON = os.path.realpath(sys.executable)


def python_id(path):
    try:
        out = subprocess.check_output([path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        return "py" + out.decode().strip()
    except (OSError, subprocess.CalledProcessError):
        return path


@pytest.fixture(params=PYTHONS, ids=[python_id(p) for p in PYTHONS])
def py(request):
    """Each interpreter of the per-version suite in turn."""
    return request.param


# ---------------------------------------------------------------------------
# An HTTP sink that records what it receives
# ---------------------------------------------------------------------------


# the one webhook sink / stand-in for the service (tests/scaffold.py)
Sink = HttpSink


@pytest.fixture
def sink():
    s = Sink()
    yield s
    s.close()


@pytest.fixture
def refused_url():
    """A loopback URL nobody listens on."""
    return "http://127.0.0.1:%d" % free_port()


@pytest.fixture
def blackhole():
    """A socket that listens and never accepts: connect succeeds, nothing answers."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    yield "http://127.0.0.1:%d" % s.getsockname()[1]
    s.close()


@pytest.fixture
def mute_server():
    """A server that accepts and reads, and never answers."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    held = []
    stop = threading.Event()

    def loop():
        s.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = s.accept()
                held.append(conn)
            except OSError:
                continue
    t = threading.Thread(target=loop, daemon=True)
    t.start()
    yield "http://127.0.0.1:%d" % s.getsockname()[1]
    stop.set()
    t.join()
    for c in held:
        c.close()
    s.close()


# ---------------------------------------------------------------------------
# Running slm.py
# ---------------------------------------------------------------------------


@pytest.fixture
def env(tmp_path):
    """A clean environment: no Slurm variables, a private spool and HOME."""
    e = {k: v for k, v in os.environ.items()
         if not k.startswith(("SLURM_", "SLM_", "SBATCH_"))}
    e["HOME"] = str(tmp_path / "home")
    e["SLM_SPOOL_DIR"] = str(tmp_path / "spool")
    e["SLM_TIMEOUT"] = "2"
    e["PYTHONDONTWRITEBYTECODE"] = "1"
    os.makedirs(e["HOME"], exist_ok=True)
    return e


def run_slm(py, args, env, timeout=60, **kw):
    return subprocess.run([py, SLM] + list(args), env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout, **kw)


def spool_files(env, sub="pending"):
    path = os.path.join(env["SLM_SPOOL_DIR"], sub)
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


class Job(object):
    """slm run in the background with the test child; await its lines."""

    def __init__(self, py, env, child_args=(), slm_args=(), command=None, **popen):
        cmd = command or [py, CHILD] + list(child_args)
        self.proc = subprocess.Popen([py, SLM, "run"] + list(slm_args) + ["--"] + cmd, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)
        self.lines = []
        self._partial = ""

    def expect(self, prefix, timeout=15.0):
        """Read stdout until a line starting with prefix; return it (and consume it)."""
        import select
        fd = self.proc.stdout.fileno()
        deadline = time.time() + timeout
        while True:
            for line in self.lines:
                if line.startswith(prefix):
                    self.lines.remove(line)
                    return line
            left = deadline - time.time()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise AssertionError("no %r from the job; got %r" % (prefix, self.lines))
            chunk = os.read(fd, 65536)   # raw reads: a buffered readline would hide lines
            if not chunk:
                raise AssertionError("job ended before %r; got %r" % (prefix, self.lines))
            self._partial += chunk.decode()
            *complete, self._partial = self._partial.split("\n")
            self.lines.extend(line.strip() for line in complete)

    def signal(self, signum):
        os.kill(self.proc.pid, signum)

    def finish(self, timeout=30):
        out, err = self.proc.communicate(timeout=timeout)
        self.lines.extend((self._partial + out.decode()).splitlines())
        self._partial = ""
        self.stderr = err.decode()
        return self.proc.returncode


# ---------------------------------------------------------------------------
# A real Slurm cluster, shared by the real-Slurm suites: the modules whose tests
# or fixtures take the `cluster` fixture (test_slurm.py, test_transparency.py,
# test_lifecycle.py, ...), which is how ./test_slm.sh finds the suites it runs on
# every release of SLM_SLURM_RELEASES
# ---------------------------------------------------------------------------

CLUSTER_SCRIPT = os.path.join(ROOT, "tests", "slurm-cluster.sh")
RELEASE_SCRIPT = os.path.join(ROOT, "tests", "slurm-release.sh")
# Set by `tests/slurm-release.sh test REL`: the suites run inside that release's
# chroot, whose cluster that script (re)starts; unset: the host's cluster
RELEASE = os.environ.get("SLM_SLURM_RELEASE", "")
# SLM_SLURM_MODES="linuxproc cgroup": every cluster test once per mode, restarting the
# cluster (as root) once per mode for all modules.  cgroup-signal-children is
# proctrack/cgroup with cgroup.conf SignalChildrenProcesses=yes (Slurm 23.11+): Slurm
# then signals every process of the job, as under linuxproc.
MODES = os.environ.get("SLM_SLURM_MODES", "").split() or [None]
SIGNAL_CHILDREN = "cgroup-signal-children"


def pytest_configure(config):
    config.addinivalue_line("markers", "slurm: uses a real Slurm cluster (the cluster "
                            "fixture); -m 'not slurm' leaves those out")


def pytest_collection_modifyitems(items):
    for item in items:
        if "cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slurm)


def slurm_answers():
    import shutil
    if not shutil.which("sbatch"):
        return False, "sbatch is not installed (tests/slurm-cluster.sh start installs a cluster)"
    try:
        r = subprocess.run(["sinfo", "-h", "-o", "%T"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, "sinfo failed: %s" % e
    state = r.stdout.decode().strip()
    if r.returncode != 0 or not re.search(r"idle|mixed|alloc", state):
        return False, "no usable node (sinfo: %s); run tests/slurm-cluster.sh start" % state
    return True, ""


def slurm_config():
    """(proctrack plugin, SignalChildrenProcesses on?, Slurm version) of the running cluster."""
    out = subprocess.run(["scontrol", "show", "config"], stdout=subprocess.PIPE).stdout.decode()
    m = re.search(r"^ProctrackType\s*=\s*proctrack/(\S+)", out, re.M)
    version = re.search(r"^SLURM_VERSION\s*=\s*(\S+)", out, re.M)
    conf = re.search(r"^SLURM_CONF\s*=\s*(\S+)", out, re.M)
    # not in `scontrol show config` (24.11, 26.05): read from cgroup.conf beside slurm.conf
    children = False
    try:
        with open(os.path.join(os.path.dirname(conf.group(1)), "cgroup.conf")) as f:
            children = bool(re.search(r"^\s*SignalChildrenProcesses\s*=\s*yes\b", f.read(),
                                      re.M | re.I))
    except (AttributeError, OSError):
        pass
    return (m.group(1) if m else "unknown"), children, (version.group(1) if version else "")


class Cluster(object):
    """mode: the proctrack plugin; signal_children: cgroup.conf SignalChildrenProcesses=yes;
    signals_tree: Slurm's TERM/TSTP/CONT reach every process of the job (linuxproc, or
    cgroup with SignalChildrenProcesses), not the batch process alone; version: 26.05.5."""

    def __init__(self, mode, signal_children, version, workdir):
        self.mode = mode
        self.signal_children = signal_children
        self.signals_tree = mode == "linuxproc" or signal_children
        self.version = version
        self.release = ".".join(version.split(".")[:2])
        self.workdir = str(workdir)


@pytest.fixture(scope="session", params=MODES,
                ids=["-".join(w for w in (RELEASE, m or "current") if w) for m in MODES])
def cluster(request, tmp_path_factory):
    mode = request.param
    if mode is not None:
        need(os.geteuid() == 0, "SLURM", "switching proctrack modes needs root")
        if RELEASE:
            cmd, env = [RELEASE_SCRIPT, "start", RELEASE, mode], None
        elif mode == SIGNAL_CHILDREN:
            pytest.skip("the host's cluster (tests/slurm-cluster.sh, Slurm 22.05) has no "
                        "SignalChildrenProcesses (23.11+): SLM_SLURM_RELEASES=26.05 runs it")
        else:
            cmd, env = [CLUSTER_SCRIPT, "start"], dict(os.environ, SLM_SLURM_PROCTRACK=mode)
        r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=600)
        need(r.returncode == 0, "SLURM", "%s start failed:\n%s"
             % (os.path.relpath(cmd[0], ROOT), r.stdout.decode()[-2000:]))
    ok, why = slurm_answers()
    need(ok, "SLURM", why)
    found, children, version = slurm_config()
    if mode is not None:
        assert (found, children) == (("cgroup", True) if mode == SIGNAL_CHILDREN
                                     else (mode, False))
    if RELEASE:
        assert version.startswith(RELEASE + "."), (RELEASE, version)
    print("Slurm %s, proctrack/%s%s" % (version, found,
                                        ", SignalChildrenProcesses=yes" if children else ""))
    return Cluster(found, children, version, tmp_path_factory.mktemp("slurm-" + (mode or found)))


def pytest_terminal_summary(terminalreporter):
    """The plain closing line CI reads (N passed, N failed): test_slm.sh prints
    it last from SLM_TEST_SUMMARY; a bare pytest run prints it here."""
    stats = terminalreporter.stats
    passed = len(stats.get("passed", []))
    failed = len(stats.get("failed", [])) + len(stats.get("error", []))
    skipped = len(stats.get("skipped", []))
    line = "%d passed, %d failed, %d skipped" % (passed, failed, skipped)
    target = os.environ.get("SLM_TEST_SUMMARY")
    if target:
        with open(target, "w") as f:
            f.write(line + "\n")
    else:
        terminalreporter.write_line(line)
