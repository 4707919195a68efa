"""Shared helpers for the SLM benchmarks (stdlib only; imported by bench/*.py).

Every script prints the machine and interpreter, absolute medians and ratios
against a baseline measured in the same run.  Servers, temp dirs and MariaDB
databases are cleaned up in `finally` blocks and by an atexit hook.
"""

import atexit
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SLM = os.path.join(REPO, "slm.py")
SLM_API = os.path.join(REPO, "slm_api.py")
VENV_PY = os.path.join(REPO, ".venv", "bin", "python")
# a real interpreter path, never a pyenv shim (a shim costs ~90 ms per start)
PY = os.environ.get("BENCH_PYTHON") or os.path.realpath(VENV_PY if os.path.exists(VENV_PY)
                                                        else sys.executable)
MYSQL_HOST = os.environ.get("BENCH_MYSQL_HOST", "127.0.0.1")
MYSQL_PORT = int(os.environ.get("BENCH_MYSQL_PORT", "3306"))
MYSQL_USER = os.environ.get("BENCH_MYSQL_USER", "root")
MYSQL_PASSWORD = os.environ.get("BENCH_MYSQL_PASSWORD", "")

# the service needs the venv (bottle, pymysql): run it through the venv's python
SERVICE_PY = VENV_PY if os.path.exists(VENV_PY) else sys.executable

QUICK = "--quick" in sys.argv[1:]

# the one test scaffold (tests/scaffold.py) starts the service here too
sys.path.insert(0, os.path.join(REPO, "tests"))
import scaffold  # noqa: E402

# the scaffold's scratch databases go to the server named here
scaffold.MARIADB_URL = "mysql://%s:%s@%s:%d" % (
    MYSQL_USER, urllib.parse.quote(MYSQL_PASSWORD, safe=""), MYSQL_HOST, MYSQL_PORT)

_cleanups = []


def on_exit(fn):
    _cleanups.append(fn)
    return fn


@atexit.register
def _run_cleanups():
    while _cleanups:
        fn = _cleanups.pop()
        try:
            fn()
        except Exception as e:  # keep cleaning
            print("bench: cleanup failed: %s" % e, file=sys.stderr)


def _sigterm(signum, frame):
    sys.exit(128 + signum)


signal.signal(signal.SIGTERM, _sigterm)


def tempdir(prefix):
    path = tempfile.mkdtemp(prefix="slm-bench-%s-" % prefix)
    on_exit(lambda: shutil.rmtree(path, ignore_errors=True))
    return path


# ---------------------------------------------------------------------------
# reporting

def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "nproc=%d, CPU: %s, kernel %s %s" % (os.cpu_count() or 0, model, platform.system(),
                                                platform.release())


def interpreter(path=PY):
    out = subprocess.run([path, "-c", "import sys; print(sys.version.split()[0])"],
                         stdout=subprocess.PIPE, universal_newlines=True).stdout.strip()
    return "%s (Python %s)" % (path, out)


def load_average():
    """The machine's load as uptime shows it (the machine is shared: say how busy)."""
    try:
        with open("/proc/loadavg") as f:
            one, five, fifteen = f.read().split()[:3]
        return "%s %s %s (1/5/15 min) on %d cores" % (one, five, fifteen, os.cpu_count() or 0)
    except OSError:
        return "?"


def header(title):
    print("=" * 78)
    print(title)
    print("machine:     %s" % machine())
    print("interpreter: %s" % interpreter())
    print("mode:        %s" % ("--quick" if QUICK else "full"))
    print("date:        %s" % time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))
    print("load:        %s" % load_average())
    print("-" * 78)
    sys.stdout.flush()


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    if not n:
        return float("nan")
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2.0


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, int(round(p / 100.0 * len(xs) + 0.5)) - 1))
    return xs[k]


def verdict(ok):
    return "PASS" if ok else "MISS"


RESULTS = []


def result(name, value, target=None, ok=None):
    """One row of the summary table that run.sh collects (lines starting 'RESULT|')."""
    RESULTS.append((name, value, target, ok))
    line = "RESULT|%s|%s|%s|%s" % (name, value, target or "", "" if ok is None else verdict(ok))
    print(line)
    sys.stdout.flush()


# ---------------------------------------------------------------------------
# events

def event(job_id, status, seq=1, when=None, **extra):
    """An event as slm.py sends it (the scaffold's), its time with milliseconds."""
    if when is None:
        when = time.time()
    return scaffold.event(job_id, status, seq=seq, when=time.strftime(
        "%Y-%m-%dT%H:%M:%S", time.gmtime(when)) + ".%03dZ" % int((when % 1) * 1000), **extra)


# ---------------------------------------------------------------------------
# the service

class Service(scaffold.ServiceProcess):
    """A real slm_api.py (the test scaffold's), started at once, killed at exit."""

    def __init__(self, db, workdir, token=None, env=None):
        scaffold.ServiceProcess.__init__(self, db, workdir, python=SERVICE_PY, token=token,
                                         env=dict({"SLM_OUTBOX_POLL": "1",
                                                   "SLM_RECONCILE": "off"}, **(env or {})))
        self.host = "127.0.0.1"
        on_exit(self.kill)
        self.start()

    def stop(self):
        try:
            scaffold.ServiceProcess.stop(self)
        except AssertionError:
            self.kill()


# ---------------------------------------------------------------------------
# MariaDB

def mysql_connect(database=None, **kw):
    import pymysql
    return pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user=MYSQL_USER,
                           password=MYSQL_PASSWORD, database=database, charset="utf8mb4", **kw)


def mysql_available():
    try:
        __import__("pymysql")
        mysql_connect().close()
        return True
    except Exception as e:
        print("MariaDB not available (%s): skipping the MySQL backend" % e)
        return False


def mysql_temp_db():
    """A throw-away database slm_bench_<random> (the scaffold's ScratchDatabase),
    dropped at exit.  Returns (name, url)."""
    scratch = scaffold.ScratchDatabase(prefix="slm_bench")
    on_exit(scratch.drop)
    return scratch.name, scratch.url


def count_rows(db, table):
    if db.startswith("mysql://"):
        conn = mysql_connect(db.rsplit("/", 1)[1])
        try:
            cur = conn.cursor()
            cur.execute("SELECT COUNT(*) FROM `%s`" % table)
            return cur.fetchone()[0]
        finally:
            conn.close()
    import sqlite3
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT COUNT(*) FROM %s" % table).fetchone()[0]
    finally:
        conn.close()


free_port = scaffold.free_port


def post_json(conn, path, body):
    data = json.dumps(body).encode()
    conn.request("POST", path, data, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    payload = resp.read()
    return resp.status, payload
