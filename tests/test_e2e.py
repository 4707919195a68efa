"""End to end: the real slm.py against the real slm_api.py, as subprocesses.

The service runs on a loopback port picked up front, with SQLite in tmp_path,
so that a test can stop it and start it again on the same port and database
(what a login-node restart looks like to jobs).  Every wait is a poll of the
API or an awaited line, with a deadline.
"""
import os
import shutil
import signal
import time

import pytest

from conftest import HELPERS, MAIN_PYTHON, Job, run_slm, spool_files
from scaffold import ServiceProcess, await_true, free_port, http_call

FAKE_SBATCH = os.path.join(HELPERS, "sbatch")
TOKEN = "tok-e2e-Secret-5f2b9c"
WRONG = "tok-e2e-Wrong-77aa01"


@pytest.fixture
def service_process(tmp_path):
    """slm_api.py as a process, SQLite in tmp_path: stop() and start() again
    keep its port and database."""
    s = ServiceProcess(tmp_path / "slm.db", tmp_path).start()
    yield s
    s.kill()


@pytest.fixture
def token_service_process(tmp_path):
    s = ServiceProcess(tmp_path / "slm.db", tmp_path, token=TOKEN).start()
    yield s
    s.kill()


def statuses(events):
    return [e["status"] for e in events]


def the_job(service_process, name):
    jobs = service_process.jobs(name=name)
    assert len(jobs) == 1, jobs
    return jobs[0]


# ---------------------------------------------------------------------------
# slm run
# ---------------------------------------------------------------------------


def test_run_failing_and_succeeding_jobs_are_stored(env, service_process):
    env["SLM_API_URL"] = service_process.url
    r = run_slm(MAIN_PYTHON, ["run", "--name", "e2e-fails", "--", "sh", "-c", "exit 3"], env)
    assert r.returncode == 3, r.stderr
    r = run_slm(MAIN_PYTHON, ["run", "--name", "e2e-works", "--", "sh", "-c", "echo out"], env)
    assert (r.returncode, r.stdout) == (0, b"out\n"), r.stderr
    assert spool_files(env) == [] and spool_files(env, "dead") == []

    failed, done = the_job(service_process, "e2e-fails"), the_job(service_process, "e2e-works")
    assert failed["job_id"] != done["job_id"]
    for job, status, code in ((failed, "FAILED", 3), (done, "COMPLETED", 0)):
        row = service_process.job(job["job_id"])
        assert row["job_id"].startswith("local-")
        assert (row["status"], row["exit_code"], row["event_count"]) == (status, code, 2)
        assert row["started_at"] and row["ended_at"]
        assert row["started_at"] <= row["ended_at"]
        events = service_process.events(row["job_id"])
        assert statuses(events) == ["RUNNING", status]
        assert [e["seq"] for e in events] == [1, 2]
        assert events[1]["exit_code"] == code
        assert events[0]["job_id"] == events[1]["job_id"] == row["job_id"]


def test_submit_goes_submitted_running_completed(env, service_process, tmp_path):
    """The job's slm is held at a gate (SLM_PYTHON) and its script at another, so
    that each state is seen in turn by polling the API."""
    state = tmp_path / "sbatch"
    state.mkdir()
    start_gate, end_gate = tmp_path / "start", tmp_path / "end"
    held_python = tmp_path / "held-python"
    held_python.write_text('#!/bin/sh\nwhile [ ! -e "%s" ]; do sleep 0.02; done\nexec "%s" "$@"\n'
                           % (start_gate, MAIN_PYTHON))
    held_python.chmod(0o755)
    script = tmp_path / "job.sh"
    script.write_text('#!/bin/sh\n#SBATCH -J e2e-submit\nwhile [ ! -e "%s" ]; do sleep 0.02; done\n'
                      'echo finished\n' % end_gate)
    script.chmod(0o755)
    env.update({"FAKE_SBATCH_DIR": str(state), "SLM_SBATCH": FAKE_SBATCH,
                "SLM_PYTHON": str(held_python), "SLM_API_URL": service_process.url})

    try:
        submit_and_follow(env, service_process, script, state, start_gate, end_gate, tmp_path)
    finally:
        for gate in (start_gate, end_gate):   # a failed check leaves no job waiting for ever
            gate.write_text("")


def submit_and_follow(env, service_process, script, state, start_gate, end_gate, tmp_path):
    r = run_slm(MAIN_PYTHON, ["submit", "-p", "debug", str(script)], env, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"Submitted batch job 1000\n"
    row = service_process.job("1000")
    assert row is not None, "SUBMITTED was not stored when submit returned"
    assert (row["status"], row["job_name"], row["partition"]) == ("SUBMITTED", "e2e-submit", "debug")
    assert row["submitted_at"] and row["started_at"] is None

    start_gate.write_text("")
    row = service_process.wait_job(lambda j: j["status"] != "SUBMITTED", job_id="1000")
    assert row["status"] == "RUNNING"
    assert row["started_at"] >= row["submitted_at"]

    end_gate.write_text("")
    row = service_process.wait_job(lambda j: j["status"] not in ("SUBMITTED", "RUNNING"),
                                   job_id="1000")
    assert (row["status"], row["exit_code"], row["event_count"]) == ("COMPLETED", 0, 3)
    assert statuses(service_process.events("1000")) == ["SUBMITTED", "RUNNING", "COMPLETED"]
    await_true((state / "done-1000").exists, 20, "the fake job to end")
    assert "finished" in (state / "slurm-1000.out").read_text()
    assert spool_files(env) == []


# ---------------------------------------------------------------------------
# The service goes away in the middle of a job, and comes back
# ---------------------------------------------------------------------------


def test_service_restart_mid_job_then_flush_stores_each_event_once(env, service_process):
    env["SLM_API_URL"] = service_process.url
    job = Job(MAIN_PYTHON, env, ["--sleep", "60"], slm_args=["--name", "e2e-restart"])
    try:
        job.expect("ready")
        row = service_process.wait_job(lambda j: j["status"] == "RUNNING", name="e2e-restart")
        job_id = row["job_id"]
        service_process.stop()

        job.signal(signal.SIGTERM)
        sent = time.time()
        code = job.finish(timeout=30)
        took = time.time() - sent
    finally:
        if job.proc.poll() is None:
            job.proc.kill()
    assert code == 100 + signal.SIGTERM
    # connection refused costs nothing; an unanswering service at most SLM_TIMEOUT
    assert took < float(env["SLM_TIMEOUT"]) + 3.0, took
    assert "got SIGTERM" in job.lines
    assert "Traceback" not in job.stderr
    assert "kept in" in job.stderr, job.stderr
    kept = spool_files(env)
    assert len(kept) == 2, kept          # TERMINATING and CANCELLED
    assert spool_files(env, "dead") == []

    service_process.start()
    assert statuses(service_process.events(job_id)) == ["RUNNING"]   # the db survived the restart
    r = run_slm(MAIN_PYTHON, ["flush"], env)
    assert r.returncode == 0, r.stderr
    assert b"delivered 2 event(s); 0 still waiting" in r.stdout, r.stdout
    assert spool_files(env) == [] and spool_files(env, "work") == []

    events = service_process.events(job_id)
    assert statuses(events) == ["RUNNING", "TERMINATING", "CANCELLED"]
    assert len({e["event_id"] for e in events}) == 3
    assert [e["seq"] for e in events] == [1, 2, 3]
    row = service_process.job(job_id)
    assert (row["status"], row["exit_code"], row["reason"], row["event_count"]) == \
        ("CANCELLED", 100 + signal.SIGTERM, "cancelled", 3)
    stored_posts = 'slm_http_requests_total{route="/api/v1/events",code="200"}'
    posts = service_process.metric(stored_posts)

    r = run_slm(MAIN_PYTHON, ["flush"], env)
    assert r.returncode == 0, r.stderr
    assert b"delivered 0 event(s)" in r.stdout
    # a second flush sends nothing at all
    assert service_process.metric(stored_posts) == posts
    assert service_process.job(job_id)["event_count"] == 3
    assert service_process.metric("slm_events_duplicate_total") == 0


# ---------------------------------------------------------------------------
# Tokens
# ---------------------------------------------------------------------------


def test_right_token_stores(env, token_service_process):
    env["SLM_API_URL"] = token_service_process.url
    env["SLM_API_TOKEN"] = TOKEN
    r = run_slm(MAIN_PYTHON, ["-v", "run", "--name", "e2e-token", "--", "true"], env)
    assert r.returncode == 0
    assert spool_files(env) == [] and spool_files(env, "dead") == []
    job = the_job(token_service_process, "e2e-token")
    assert (job["status"], job["event_count"]) == ("COMPLETED", 2)
    assert TOKEN.encode() not in r.stdout + r.stderr
    # without the token the service answers nothing
    status, body = http_call("GET", token_service_process.url + "/api/v1/jobs")
    assert status == 401 and "error" in body
    assert TOKEN not in token_service_process.output()


def test_wrong_token_keeps_events_pending_not_dead(env, token_service_process):
    env["SLM_API_URL"] = token_service_process.url
    env["SLM_API_TOKEN"] = WRONG
    r = run_slm(MAIN_PYTHON, ["-v", "run", "--name", "e2e-wrong", "--", "true"], env)
    assert r.returncode == 0
    assert b"401" in r.stderr, r.stderr            # said, once, why
    assert b"Traceback" not in r.stderr
    # a 401 is a set-up problem fixed later, not a bad event: kept for a retry
    assert len(spool_files(env)) == 2
    assert spool_files(env, "dead") == []
    assert token_service_process.jobs(name="e2e-wrong") == []

    r2 = run_slm(MAIN_PYTHON, ["-v", "flush"], env)
    assert r2.returncode == 1
    assert len(spool_files(env)) == 2 and spool_files(env, "dead") == []

    env["SLM_API_TOKEN"] = TOKEN          # fixed: the same events now go through
    r3 = run_slm(MAIN_PYTHON, ["flush"], env)
    assert r3.returncode == 0, r3.stderr
    assert spool_files(env) == []
    job = the_job(token_service_process, "e2e-wrong")
    assert (job["status"], job["event_count"]) == ("COMPLETED", 2)

    everything = b"".join([r.stdout, r.stderr, r2.stdout, r2.stderr, r3.stdout, r3.stderr])
    assert WRONG.encode() not in everything and TOKEN.encode() not in everything
    logged = token_service_process.output()
    assert WRONG not in logged and TOKEN not in logged


# ---------------------------------------------------------------------------
# Exactly once, even when delivered twice
# ---------------------------------------------------------------------------


def test_same_events_delivered_twice_are_stored_once(env, service_process, tmp_path):
    env["SLM_API_URL"] = "http://127.0.0.1:%d" % free_port()   # nobody there
    r = run_slm(MAIN_PYTHON, ["run", "--name", "e2e-twice", "--", "true"], env)
    assert r.returncode == 0
    names = spool_files(env)
    assert len(names) == 2
    pending = os.path.join(env["SLM_SPOOL_DIR"], "pending")
    copy = tmp_path / "copy"
    shutil.copytree(pending, str(copy))

    env["SLM_API_URL"] = service_process.url
    r = run_slm(MAIN_PYTHON, ["flush"], env)
    assert r.returncode == 0, r.stderr
    assert spool_files(env) == []
    job = the_job(service_process, "e2e-twice")
    assert job["event_count"] == 2
    assert service_process.metric("slm_events_duplicate_total") == 0

    for name in names:   # as if another node had sent its copy too
        shutil.copy(str(copy / name), os.path.join(pending, name))
    r = run_slm(MAIN_PYTHON, ["flush"], env)
    assert r.returncode == 0, r.stderr
    assert b"delivered 2 event(s)" in r.stdout        # acknowledged...
    assert spool_files(env) == [] and spool_files(env, "dead") == []
    assert service_process.metric("slm_events_duplicate_total") == 2    # ...as duplicates...
    assert service_process.job(job["job_id"])["event_count"] == 2      # ...and stored once
    assert statuses(service_process.events(job["job_id"])) == ["RUNNING", "COMPLETED"]
    assert service_process.metric('slm_events_ingested_total{status="RUNNING"}') == 1
