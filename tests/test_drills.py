"""Fault drills: the service killed, the database restarted, webhooks that fail.

1. slm_api.py is killed with SIGKILL in the middle of a burst of 32 keep-alive
   clients.  Each client does what slm.py does: what was not acknowledged
   (the request in flight included) is kept in its spool, and the client
   stops talking to the dead service.  The service is started again on the
   same port and database; every acknowledged event must be there already;
   the spool is flushed, together with a sample of acknowledged events (a
   client cannot know whether the request in flight was stored) -> every
   event is stored exactly once.  On SQLite and on the real MariaDB.
2. The real MariaDB server is restarted during a burst: the service answers
   503 meanwhile (never 4xx, never 500), the clients keep their events and
   retry, and afterwards every event is stored exactly once.  This stops the
   machine's MariaDB for everybody, so it runs only when SLM_REQUIRE_MARIADB=1
   (CI) or SLM_DRILL_RESTART_MARIADB=1, and always starts the server again.
3. A webhook that answers 500, never answers, or resets the connection: the
   job's exit code is untouched, slm's wall time stays within SLM_TIMEOUT plus
   interpreter start-up, the events wait in the spool, and once the same URL
   is healthy `slm flush` delivers each exactly once.
"""
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import threading
import time

import pytest

from conftest import MAIN_PYTHON, run_slm, spool_files
from scaffold import (HttpSink, ScratchDatabase, ServiceProcess, await_true, database,
                      drop_database, event, mariadb_admin, need, required, rows_per_event)

CLIENTS = 32
JOBS_PER_CLIENT = 4
LIFE = ("SUBMITTED", "RUNNING", "PAUSED", "RESUMED", "SIGNALED")   # then a final status
FINALS = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT")


def workload(seed):
    """Per client: its jobs' events in the order a job lives them."""
    rng = random.Random(seed)
    per_client, expected = [], {}
    for c in range(CLIENTS):
        mine = []
        for j in range(JOBS_PER_CLIENT):
            job_id = "%d" % (70000 + c * 100 + j)
            final = rng.choice(FINALS)
            statuses = LIFE + (final,)
            expected[job_id] = (final, len(statuses))
            mine += [event(job_id, status, "2026-11-30T11:%02d:%02d.%03dZ" % (j, seq, c), seq)
                     for seq, status in enumerate(statuses, 1)]
        per_client.append(mine)
    return per_client, expected


class Burst(object):
    """CLIENTS threads posting events one per request on keep-alive connections.

    give_up_on_error: a connection error means the service is dead: the
    event in flight and the rest go to the spool (slm.py).  Otherwise every
    error is retried after a pause until acknowledged (what the spool's
    retries do while the service is up but the database is not).
    """

    def __init__(self, port, per_client, give_up_on_error):
        self.port = port
        self.per_client = per_client
        self.give_up = give_up_on_error
        self.lock = threading.Lock()
        self.acked = []          # event ids the service acknowledged
        self.spool = []          # events kept for a later flush
        self.answers = {}        # HTTP status -> count
        self.errors = []         # connection-level failures
        self.threads = [threading.Thread(target=self.client, args=(mine,), daemon=True)
                        for mine in per_client]

    def client(self, mine):
        conn = None
        i = 0
        while i < len(mine):
            posted = mine[i]
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                conn.request("POST", "/api/v1/events", json.dumps(posted),
                             {"Content-Type": "application/json"})
                r = conn.getresponse()
                r.read()
                status = r.status
            except (OSError, http.client.HTTPException) as e:
                with self.lock:
                    self.errors.append(repr(e))
                conn = None
                if self.give_up:
                    with self.lock:
                        self.spool.extend(mine[i:])
                    return
                time.sleep(0.1)
                continue
            with self.lock:
                self.answers[status] = self.answers.get(status, 0) + 1
                if status == 200:
                    self.acked.append(posted["event_id"])
            if status == 200:
                i += 1
            else:
                time.sleep(0.1)    # kept; tried again later

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def wait_acked(self, count, timeout=60):
        await_true(lambda: len(self.acked) >= count, timeout,
                   lambda: "%d acknowledged (only %d)" % (count, len(self.acked)), interval=0.005)

    def join(self, timeout=120):
        for t in self.threads:
            t.join(max(0.1, timeout))
            assert not t.is_alive(), "a client hung"


def flush(service, events, batch=50):
    """Post events in batches, as `slm flush` does; every batch must be acknowledged."""
    for i in range(0, len(events), batch):
        chunk = events[i:i + batch]
        status, body = service.request("POST", "/api/v1/events", {"events": chunk})
        assert status == 200, body
        assert body["accepted"] + body["duplicates"] == len(chunk)


def verify(service, rows_per_event, per_client, expected):
    """Every event exactly once (in the database itself), every job as its events say."""
    everything = set(e["event_id"] for mine in per_client for e in mine)
    counts = rows_per_event()
    assert set(counts) == everything, (len(set(counts)), len(everything))
    doubled = [k for k, n in counts.items() if n != 1]
    assert doubled == []
    for job_id, (final, n) in expected.items():
        status, job = service.request("GET", "/api/v1/jobs/%s" % job_id)
        assert status == 200, job
        assert (job["status"], job["event_count"]) == (final, n), job
    status, body = service.request("GET", "/api/v1/jobs?limit=1000")
    assert body["total"] == len(expected)


@pytest.fixture(params=["sqlite", "mariadb"])
def backend(request, tmp_path):
    """(db for the service, rows_per_event() reading the database directly)."""
    db = database(request.param, tmp_path)
    try:
        yield db, lambda: rows_per_event(db)
    finally:
        drop_database(db)


# ---------------------------------------------------------------------------
# 1. kill -9 of the service mid-burst
# ---------------------------------------------------------------------------


def test_service_killed_mid_burst_then_restart_and_flush_stores_each_event_once(
        backend, tmp_path):
    db, rows_per_event = backend
    per_client, expected = workload(5)
    total = sum(len(m) for m in per_client)
    service = ServiceProcess(db, tmp_path).start()
    try:
        burst = Burst(service.port, per_client, give_up_on_error=True).start()
        burst.wait_acked(total * 2 // 5)
        service.kill()
        acked_at_kill = len(burst.acked)
        burst.join()
        acked = list(burst.acked)
        assert set(burst.answers) == {200}, burst.answers
        assert 0 < acked_at_kill <= len(acked) < total, (acked_at_kill, len(acked), total)
        assert len(acked) + len(burst.spool) == total
        assert burst.spool, "the kill interrupted nothing"

        service.start()
        # nothing acknowledged was lost with the process
        stored = rows_per_event()
        assert set(acked) <= set(stored), len(set(acked) - set(stored))
        # the flush: what was never acknowledged, and some of what was (twice, even)
        rng = random.Random(7)
        by_id = dict((e["event_id"], e) for mine in per_client for e in mine)
        again = [by_id[i] for i in rng.sample(acked, min(100, len(acked)))]
        print("drill kill -9 (%s): %d events, %d acknowledged (%d at the kill), %d spooled, "
              "%d of them stored already (in flight at the kill)"
              % ("mysql" if isinstance(db, ScratchDatabase) else "sqlite", total, len(acked), acked_at_kill,
                 len(burst.spool),
                 len(set(e["event_id"] for e in burst.spool) & set(stored))))
        flush(service, burst.spool + again)
        flush(service, burst.spool[:20] + again[:20])
        verify(service, rows_per_event, per_client, expected)
    finally:
        service.stop()


# ---------------------------------------------------------------------------
# 2. MariaDB restarted mid-burst
# ---------------------------------------------------------------------------

MARIADBD = "/usr/sbin/mariadbd"


def mariadb_running():
    r = subprocess.run(["mariadb-admin", "-uroot", "--protocol=tcp", "-h127.0.0.1",
                        "--connect-timeout=2", "ping"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return r.returncode == 0 and b"alive" in r.stdout


def mariadb_pids():
    r = subprocess.run(["pidof", "mariadbd"], stdout=subprocess.PIPE)
    return [int(p) for p in r.stdout.split()]


def stop_mariadb(timeout=60):
    """Shut the server down and await its processes' end (a SIGTERM if a
    shutdown is not done within timeout)."""
    pids = mariadb_pids()
    subprocess.run(["mariadb-admin", "-uroot", "--protocol=tcp", "-h127.0.0.1", "shutdown"],
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)

    def gone():
        return not any(os.path.exists("/proc/%d" % p) for p in pids)
    try:
        await_true(gone, timeout, "mariadbd to end after a shutdown")
    except AssertionError:
        for p in pids:
            try:
                os.kill(p, signal.SIGTERM)
            except OSError:
                pass
        await_true(gone, timeout, "mariadbd to end after a SIGTERM")


def start_mariadb(timeout=60):
    subprocess.run(["start-stop-daemon", "--start", "--oknodo", "--background", "--exec",
                    MARIADBD], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    await_true(mariadb_running, timeout, "MariaDB to come back", interval=0.1)


def test_mariadb_restarted_mid_burst_loses_nothing(tmp_path):
    if not (required("MARIADB") or os.environ.get("SLM_DRILL_RESTART_MARIADB", "") not in
            ("", "0")):
        pytest.skip("restarts the machine's MariaDB server: set SLM_DRILL_RESTART_MARIADB=1 "
                    "(CI's SLM_REQUIRE_MARIADB=1 does it too)")
    need(shutil.which("start-stop-daemon") and os.path.exists(MARIADBD)
         and shutil.which("mariadb-admin"), "MARIADB",
         "start-stop-daemon, mariadb-admin and %s are needed to restart the server" % MARIADBD)
    mariadb_admin().close()
    need(mariadb_pids(), "MARIADB", "no local mariadbd process to restart")
    scratch = ScratchDatabase("slm_drill")
    service = ServiceProcess(scratch, tmp_path)
    per_client, expected = workload(11)
    total = sum(len(m) for m in per_client)
    outage = {}
    try:
        service.start()
        burst = Burst(service.port, per_client, give_up_on_error=False).start()
        burst.wait_acked(total * 3 // 10)
        try:
            outage["start"] = time.time()
            stop_mariadb()
            # clients keep posting into the outage: the service must say 503
            await_true(lambda: burst.answers.get(503, 0) >= CLIENTS, 30,
                       lambda: "503 answered to every client (answers: %s)" % burst.answers)
            status, body = service.request("GET", "/healthz")
            assert (status, body["ok"]) == (503, False), body
            # (a graceful shutdown lets transactions under way finish first)
            assert len(burst.acked) < total, "the burst was over before the outage"
        finally:
            start_mariadb()
            outage["end"] = time.time()
        burst.join()
        # the service answered 200 or 503, never a 4xx or a 500, and stayed up
        assert set(burst.answers) <= {200, 503}, burst.answers
        assert burst.answers.get(503), burst.answers
        assert burst.errors == []
        assert len(burst.acked) == total

        print("drill MariaDB restart: %d events, answers %s, outage %.1f s"
              % (total, burst.answers, outage["end"] - outage["start"]))
        # a sample sent again, as a client whose answer was lost would
        rng = random.Random(3)
        by_id = dict((e["event_id"], e) for mine in per_client for e in mine)
        flush(service, [by_id[i] for i in rng.sample(burst.acked, 100)])
        verify(service, lambda: rows_per_event(scratch), per_client, expected)
    finally:
        service.stop()
        if not mariadb_running():
            start_mariadb()
        try:
            scratch.drop()
        except BaseException:
            pass


# ---------------------------------------------------------------------------
# 3. Webhooks that fail, then recover at the same URL
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("failure", ["500", "mute", "reset"])
def test_failing_webhook_costs_the_job_nothing_and_keeps_its_events(env, failure):
    # 500; mute: reads the request and never answers; reset: closes it with an RST
    hook = HttpSink({"500": 500, "mute": "hang", "reset": "reset"}[failure])
    try:
        env["SLM_WEBHOOK"] = hook.hook_url
        env["SLM_TIMEOUT"] = "1"
        started = time.time()
        r = run_slm(MAIN_PYTHON, ["run", "--name", "drill-" + failure, "--", "sh", "-c",
                                  "exit 3"], env)
        took = time.time() - started
        assert r.returncode == 3, r.stderr
        assert b"Traceback" not in r.stderr, r.stderr
        # SLM_TIMEOUT, plus the interpreter's start and slm's own work
        assert took < 1.0 + 2.5, took
        assert hook.received, "slm never tried the webhook"
        assert hook.delivered == []
        kept = spool_files(env)
        assert len(kept) == 2, (kept, r.stderr)          # RUNNING and FAILED
        assert spool_files(env, "dead") == [] and spool_files(env, "work") == []

        hook.mode = "ok"                                   # healthy again, same URL
        r = run_slm(MAIN_PYTHON, ["flush"], env)
        assert r.returncode == 0, r.stderr
        assert b"delivered 2 event(s); 0 still waiting" in r.stdout, r.stdout
        assert spool_files(env) == [] and spool_files(env, "work") == []
        r = run_slm(MAIN_PYTHON, ["flush"], env)
        assert r.returncode == 0 and b"delivered 0 event(s)" in r.stdout, r.stdout

        ids = [e["event_id"] for e in hook.delivered]
        assert len(ids) == len(set(ids)) == 2, hook.delivered
        by_status = dict((e["status"], e) for e in hook.delivered)
        assert sorted(by_status) == ["FAILED", "RUNNING"]
        assert by_status["FAILED"]["exit_code"] == 3
        assert by_status["FAILED"]["job_name"] == "drill-" + failure
    finally:
        hook.close()
