"""The original project (licoded/slurm-admin), side by side with SLM.

Nothing of it is in this repository: point SLM_BENCH_ORIGINAL at a checkout
of it (its branch with the `slm` and `slm-api` launchers and
src/slurm_admin/), and SLM_BENCH_ORIGINAL_PYTHON at an interpreter that has
what its service needs (pymysql, fastapi, uvicorn[standard], per its
pyproject.toml), e.g. a venv of its own:

    python3 -m venv /var/tmp/slm-orig-venv
    /var/tmp/slm-orig-venv/bin/pip install pymysql fastapi 'uvicorn[standard]'
    SLM_BENCH_ORIGINAL=/var/tmp/slurm-admin \\
    SLM_BENCH_ORIGINAL_PYTHON=/var/tmp/slm-orig-venv/bin/python bench/run.sh

Without SLM_BENCH_ORIGINAL the scripts skip the original's rows with a note.

How the original runs (its docs/QUICKSTART.md and CLAUDE.md):
  wrapper  `./slm run -- CMD`; here `PY ORIGINAL/slm run -- true` under the
           same interpreter as slm.py.  Outside Slurm (no SLURM_JOB_ID) it is
           in "login node" mode and writes to MySQL itself when pymysql
           imports; inside a job (SLURM_JOB_ID set) it posts to SLM_API_URL.
           So: nothing configured = no SLURM_JOB_ID (and --no-db if PY has
           pymysql, which would otherwise try the MySQL on localhost); a
           target = SLURM_JOB_ID (new for every run, as a new job) and
           SLM_API_URL.  Its default SLM_API_URL is a private address: it
           is always set here, to loopback.
  service  `./slm-api --host H --port P` (FastAPI under uvicorn, log level
           info, one pymysql connection), MySQL only, configured by
           SLM_DB_HOST/PORT/USER/PASSWORD/NAME; a throw-away database here.
           A state change is two requests: POST /api/job/status (an UPDATE
           of the job row, committed) and POST /api/job/event (an INSERT,
           committed); events need a registered job (a foreign key), made
           with POST /api/job/register.  No batches, no event ids.
"""

import json
import os
import subprocess
import sys

import common
from common import scaffold

ORIGINAL = os.environ.get("SLM_BENCH_ORIGINAL", "").strip() or None
ORIGINAL_PY = os.environ.get("SLM_BENCH_ORIGINAL_PYTHON", "").strip() or None
NAME = "licoded/slurm-admin"


def missing():
    """Why the original's rows are skipped (None: they run)."""
    if not ORIGINAL:
        return "SLM_BENCH_ORIGINAL is not set (a checkout of %s; see bench/original.py)" % NAME
    for part in ("slm", "slm-api", os.path.join("src", "slurm_admin", "slm.py")):
        if not os.path.exists(os.path.join(ORIGINAL, part)):
            return "SLM_BENCH_ORIGINAL=%s has no %s" % (ORIGINAL, part)
    return None


def service_missing():
    why = missing()
    if why:
        return why
    if not ORIGINAL_PY:
        return ("SLM_BENCH_ORIGINAL_PYTHON is not set (an interpreter with pymysql, fastapi,"
                " uvicorn)")
    probe = subprocess.run([ORIGINAL_PY, "-c", "import pymysql, fastapi, uvicorn"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if probe.returncode != 0:
        return "SLM_BENCH_ORIGINAL_PYTHON=%s cannot import pymysql, fastapi, uvicorn" % ORIGINAL_PY
    if not common.mysql_available():
        return "no MariaDB for the original's service"
    return None


def describe():
    rev = subprocess.run(["git", "-C", ORIGINAL, "log", "-1", "--format=%h %cd %d",
                          "--date=short"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         universal_newlines=True).stdout.strip()
    return "%s at %s (%s)" % (NAME, ORIGINAL, rev or "not a git checkout")


def skipped_result(what):
    common.result("%s vs the original (%s)" % (what, NAME), "skipped: %s" % missing())


def wrapper_argv(py, no_db=False):
    return [py, os.path.join(ORIGINAL, "slm")] + (["--no-db"] if no_db else []) + \
        ["run", "--", "true"]


class Service(scaffold.ServerProcess):
    """The original's slm-api on a throw-away MariaDB database, started at once."""

    name = "orig-slm-api"

    def __init__(self, workdir):
        dbname, _ = common.mysql_temp_db()
        env = dict((k, v) for k, v in os.environ.items() if not k.startswith(("SLM_", "SLURM_")))
        env.update(SLM_DB_HOST=common.MYSQL_HOST, SLM_DB_PORT=str(common.MYSQL_PORT),
                   SLM_DB_USER=common.MYSQL_USER, SLM_DB_PASSWORD=common.MYSQL_PASSWORD,
                   SLM_DB_NAME=dbname)
        scaffold.ServerProcess.__init__(self, [ORIGINAL_PY, os.path.join(ORIGINAL, "slm-api"),
                                               "--host", "127.0.0.1", "--port", "PORT"],
                                        workdir, env)
        self.host = "127.0.0.1"
        self.dbname = dbname
        common.on_exit(self.kill)
        self.start(timeout=60, healthy=False)

    def serving(self):
        """Its health check is GET /: running, with its database connected."""
        try:
            status, body = scaffold.http_call("GET", self.url + "/", timeout=2)
        except (OSError, ValueError):
            return False
        if status == 200 and isinstance(body, dict) and body.get("database") != "connected":
            raise AssertionError("the original's service has no database: %s" % self.output())
        return status == 200

    def stop(self):
        try:
            scaffold.ServerProcess.stop(self)
        except AssertionError:
            self.kill()


# the bodies its wrapper sends (http_client.py), for one job and one state change

def register_body(job_id):
    return {"job_id": job_id, "job_name": "bench", "submission_source": "direct_sbatch",
            "command": "true", "nodes": "node001", "cpus": "1", "gpus": "N/A",
            "memory": "N/A", "partition_name": "batch", "status": "SUBMITTED"}


def status_body(job_id, status):
    body = {"job_id": job_id, "status": status}
    if status == "RUNNING":
        body.update(command="true", nodes="node001", cpus="1", gpus="N/A", memory="N/A",
                    partition_name="batch")
    else:
        body["exit_code"] = 0
    return body


def event_body(job_id, status):
    return {"job_id": job_id, "event_type": "lifecycle", "event_status": status,
            "details": "Command: true" if status == "RUNNING" else "Job completed successfully",
            "metadata": {"timestamp": "2026-12-07 12:00:00"}}


def post(conn, path, body):
    """-> whether the original took it (200 and success)."""
    status, payload = common.post_json(conn, path, body)
    if status != 200:
        return False
    try:
        return json.loads(payload).get("success") is True
    except ValueError:
        return False


def register_jobs(svc, job_ids):
    conn = svc.connection()
    try:
        for job_id in job_ids:
            if not post(conn, "/api/job/register", register_body(job_id)):
                raise RuntimeError("the original did not register %s: %s"
                                   % (job_id, svc.output()[-2000:]))
    finally:
        conn.close()


if __name__ == "__main__":
    print(missing() or service_missing() or describe())
    sys.exit(0)
