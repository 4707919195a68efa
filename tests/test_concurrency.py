"""slm_api.py under load, as a real server, on SQLite and on the real MariaDB.

32 keep-alive clients post the interleaved events of 200 jobs in random order;
afterwards every event is stored exactly once and every job shows its final
status.  On MariaDB a second run kills the service's database connections
while the clients post: requests may fail (and are retried, as slm.py's spool
does), but no event may be lost or doubled.
"""
import http.client
import json
import random
import threading
import time

import pytest

from scaffold import ScratchDatabase, ServiceProcess, database, drop_database, event

CLIENTS = 32
JOBS = 200
FINALS = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT")


def job_events(n):
    job_id = "%d" % (90000 + n)
    final = FINALS[n % len(FINALS)]
    statuses = ["SUBMITTED", "RUNNING"] + (["PAUSED", "RESUMED"] if n % 3 == 0 else []) + \
        (["TERMINATING"] if final in ("CANCELLED", "TIMEOUT") else []) + [final]
    events = [event(job_id, status, "2026-11-30T10:%02d:%02d.%03dZ" % (n % 60, seq, n % 1000),
                    seq, user="u%d" % (n % 7)) for seq, status in enumerate(statuses, 1)]
    return job_id, final, events


def post_all(port, batches):
    """Post each batch until it is acknowledged; return how many attempts failed."""
    failures = []
    reasons = []

    def client(mine):
        conn = None
        failed = 0
        for body in mine:
            while True:
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    conn.request("POST", "/api/v1/events", body,
                                 {"Content-Type": "application/json"})
                    r = conn.getresponse()
                    r.read()
                    if r.status == 200:
                        break
                    assert r.status in (500, 503), r.status  # never a 4xx for good events
                    reasons.append("HTTP %d" % r.status)
                except (OSError, http.client.HTTPException) as e:
                    reasons.append(repr(e))
                    conn = None
                failed += 1
                time.sleep(0.05)   # slm's spool backs off too
        failures.append(failed)

    threads = [threading.Thread(target=client, args=(batches[i::CLIENTS],))
               for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
        assert not t.is_alive(), "a client hung"
    assert len(failures) == CLIENTS
    post_all.reasons = reasons
    return sum(failures)


def workload(seed):
    rng = random.Random(seed)
    jobs = [job_events(n) for n in range(JOBS)]
    events = [e for _, _, evs in jobs for e in evs]
    rng.shuffle(events)
    bodies = []
    i = 0
    while i < len(events):
        # mostly single events, as jobs send them; some batches, as flushes do
        size = 1 if rng.random() < 0.8 else rng.randint(2, 20)
        chunk = events[i:i + size]
        bodies.append(json.dumps(chunk[0] if size == 1 else {"events": chunk}))
        i += size
    # a few repeats: what a client resends after a lost answer
    bodies += rng.sample(bodies, 30)
    return jobs, events, bodies


def verify(port, jobs, events):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    stored = 0
    for job_id, final, evs in jobs:
        conn.request("GET", "/api/v1/jobs/%s/events" % job_id)
        r = conn.getresponse()
        got = json.loads(r.read().decode())["events"]
        ids = [e["event_id"] for e in got]
        assert sorted(ids) == sorted(e["event_id"] for e in evs), job_id
        stored += len(ids)
        conn.request("GET", "/api/v1/jobs/%s" % job_id)
        r = conn.getresponse()
        assert json.loads(r.read().decode())["status"] == final, job_id
    assert stored == len(events)


@pytest.fixture(params=["sqlite", "mariadb"])
def db(request, tmp_path):
    found = database(request.param, tmp_path)
    yield found
    drop_database(found)


@pytest.fixture
def mariadb():
    found = ScratchDatabase()
    yield found
    found.drop()


def test_32_clients_200_jobs_every_event_once(db, tmp_path):
    server = ServiceProcess(db, tmp_path).start()
    try:
        jobs, events, bodies = workload(1)
        failed = post_all(server.port, bodies)
        assert failed == 0, post_all.reasons[:5]
        verify(server.port, jobs, events)
    finally:
        server.stop()


def test_database_connections_killed_mid_stream_lose_nothing(mariadb, tmp_path):
    admin, name = mariadb.admin, mariadb.name
    server = ServiceProcess(mariadb, tmp_path).start()
    stop = threading.Event()
    kills = []

    def killer():
        while not stop.is_set():
            with admin.cursor() as cur:
                cur.execute("SELECT id FROM information_schema.processlist WHERE db = %s",
                            (name,))
                for (conn_id,) in cur.fetchall():
                    try:
                        cur.execute("KILL %d" % conn_id)
                        kills.append(conn_id)
                    except Exception:
                        pass   # it ended by itself meanwhile
            stop.wait(0.05)

    try:
        jobs, events, bodies = workload(2)
        t = threading.Thread(target=killer, daemon=True)
        t.start()
        try:
            post_all(server.port, bodies)
        finally:
            stop.set()
            t.join()
        assert kills, "the scenario killed no connection"
        verify(server.port, jobs, events)
    finally:
        server.stop()
