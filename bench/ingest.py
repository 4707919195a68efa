#!/usr/bin/env python3
"""Ingest throughput of slm_api.py (bench/ingest.py [--quick] [--seconds S]).

For each backend (SQLite in a temp dir; MariaDB in a throw-away database
slm_bench_<random>, dropped afterwards), a real `slm_api.py --port 0` is
started and C = 1, 8, 32 client threads each hold ONE keep-alive
http.client connection and POST as fast as they can for S seconds:
  single   one event per request
  batch    {"events": [...100 events...]} per request
Events look like slm.py's (schema slm.event/1, user, host, job_name...), two
per job (RUNNING then COMPLETED).  Reported: acknowledged events/s, p50/p99
latency per request, and rows counted in slurm_events after each run against
what was acknowledged (any loss is printed as LOST).

The raw floor, measured in the same run and interleaved with the service
runs (rounds: floor, single, batch for each C): the same C threads doing an
INSERT + COMMIT of one event row per transaction into a copy of the
slurm_events table, with pymysql (one connection per thread) for MariaDB and
sqlite3 (WAL, default synchronous, BEGIN IMMEDIATE, one connection per
thread) for SQLite.  The service must also parse HTTP and JSON and maintain
slurm_jobs, so reaching the floor is not expected; the target is half of it.

The clients run in this process (one interpreter, GIL) on the same 2 cores as
the service and the database: all three compete for the CPU, which caps
every figure here (floor included) well below what separate machines give.

The original (licoded/slurm-admin), when SLM_BENCH_ORIGINAL and
SLM_BENCH_ORIGINAL_PYTHON name it (bench/original.py; skipped with a note
otherwise): its service on a throw-away MariaDB database (it has no other
backend), timed in every round of both backends, interleaved, with the same
clients (keep-alive http.client, one connection each, as fast as they can):
  orig single   one event per request (POST /api/job/event: one INSERT and
                its commit), on jobs registered before the timing
  orig change   one state change as its wrapper reports it: POST
                /api/job/status then POST /api/job/event (two requests);
                SLM's is one event (its single row)
It has no batches and no event ids (a retry stores a second row).

Targets (PASS/MISS, not asserted): MariaDB, 32 clients, single events:
>= 50 % of the pymysql floor at 32 connections with p99 <= 30 ms; batched
events/s >= 10x single events/s (at 32 clients, each backend); issue #26:
single events at one client >= the original's, batches >= 10x single at
1, 8 and 32 clients.
"""

import argparse
import http.client
import json
import os
import sqlite3
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import original  # noqa: E402
from common import pct, result  # noqa: E402

CONCURRENCY = (1, 8, 32)
BATCH = 100


class Gen(object):
    """Event factory: distinct job ids per client, two events per job."""

    def __init__(self, tag):
        self.tag = tag
        self.n = 0

    def next(self):
        i = self.n
        self.n += 1
        job = "%s-%d" % (self.tag, i // 2)
        status = "RUNNING" if i % 2 == 0 else "COMPLETED"
        extra = {"user": "u%d" % (i % 7), "host": "node%03d" % (i % 50),
                 "job_name": "bench", "partition": "batch", "slm_version": "0.1.0"}
        if status == "COMPLETED":
            extra.update(exit_code=0, elapsed=1.5)
        return common.event(job, status, seq=i % 2 + 1, **extra)


def timed_clients(clients, seconds, connect, request):
    """clients threads, each on its own connection (connect()), calling
    request(conn, k, n) -> (events acknowledged, of them new) or None for an
    error: once untimed (it warms the connection and the service's thread),
    then for `seconds`, all starting together."""
    lat = [[] for _ in range(clients)]
    acked = [0] * clients
    accepted = [0] * clients
    errors = [0] * clients
    barrier = threading.Barrier(clients + 1)
    stop = [0.0]

    def client(k):
        conn = connect()
        n = 0
        try:
            request(conn, k, n)
            barrier.wait()
            while time.perf_counter() < stop[0]:
                n += 1
                t0 = time.perf_counter()
                got = request(conn, k, n)
                t1 = time.perf_counter()
                if got is None:
                    errors[k] += 1
                    continue
                acked[k] += got[0]
                accepted[k] += got[1]
                lat[k].append(t1 - t0)
        except Exception:
            errors[k] += 1
            try:
                barrier.abort()
            except Exception:
                pass
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    stop[0] = time.perf_counter() + 3600
    barrier.wait()
    t0 = time.perf_counter()
    stop[0] = t0 + seconds
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    lats = [x for l in lat for x in l]
    return {"eps": sum(acked) / elapsed, "p50": pct(lats, 50), "p99": pct(lats, 99),
            "acked": sum(acked), "accepted": sum(accepted), "errors": sum(errors),
            "warm": clients}


def run_clients(svc, clients, batch, seconds, run_tag):
    gens = [Gen("%s-c%d" % (run_tag, k)) for k in range(clients)]

    def request(conn, k, n):
        gen = gens[k]
        body = gen.next() if batch == 1 or n == 0 else \
            {"events": [gen.next() for _ in range(batch)]}
        status, payload = common.post_json(conn, "/api/v1/events", body)
        if status != 200:
            return None
        r = json.loads(payload)
        return r["accepted"] + r["duplicates"], r["accepted"]
    return timed_clients(clients, seconds,
                         lambda: http.client.HTTPConnection(svc.host, svc.port, timeout=60),
                         request)


ORIG_JOBS = 20     # registered jobs per client of the original


class OriginalLoad(object):
    """The original's service, its jobs registered, each job's last status kept
    (a status update that changes nothing is its 404: RUNNING and COMPLETED
    alternate)."""

    def __init__(self, workdir):
        self.svc = original.Service(workdir)
        self.jobs = [["orig-c%d-j%d" % (k, j) for j in range(ORIG_JOBS)]
                     for k in range(max(CONCURRENCY))]
        original.register_jobs(self.svc, [j for js in self.jobs for j in js])
        self.last = {}

    def run(self, clients, mode, seconds):
        """mode "single": events/s; "change": state changes (2 requests) per second."""
        def one(conn, k, n):
            job = self.jobs[k][n % ORIG_JOBS]
            status = "COMPLETED" if self.last.get(job) == "RUNNING" else "RUNNING"
            self.last[job] = status
            if mode == "change" and not original.post(conn, "/api/job/status",
                                                      original.status_body(job, status)):
                return None
            if not original.post(conn, "/api/job/event", original.event_body(job, status)):
                return None
            return 1, 1
        return timed_clients(clients, seconds, self.svc.connection, one)


FLOOR_SQL = ("INSERT INTO floor_events (event_id, job_id, status, time, seq, received_at, raw)"
             " VALUES (?, ?, ?, ?, ?, ?, ?)")


def floor_rows(tag):
    gen = Gen(tag)
    while True:
        ev = gen.next()
        yield (ev["event_id"], ev["job_id"], ev["status"], ev["time"], ev["seq"],
               ev["time"], json.dumps(ev))


def run_floor(kind, target, clients, seconds):
    """INSERT + COMMIT of one row per transaction, `clients` threads."""
    counts = [0] * clients
    lat = [[] for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)
    stop = [0.0]
    failed = []

    def worker(k):
        rows = floor_rows("floor-%d-%d" % (id(barrier), k))
        try:
            if kind == "mysql":
                conn = common.mysql_connect(target, autocommit=False)
                sql = FLOOR_SQL.replace("?", "%s")
            else:
                conn = sqlite3.connect(target, timeout=30, isolation_level=None)
                sql = FLOOR_SQL
            cur = conn.cursor()
            barrier.wait()
            while time.perf_counter() < stop[0]:
                t0 = time.perf_counter()
                if kind == "mysql":
                    conn.begin()
                    cur.execute(sql, next(rows))
                    conn.commit()
                else:
                    cur.execute("BEGIN IMMEDIATE")
                    cur.execute(sql, next(rows))
                    cur.execute("COMMIT")
                lat[k].append(time.perf_counter() - t0)
                counts[k] += 1
            conn.close()
        except Exception as e:
            failed.append(e)
            try:
                barrier.abort()
            except Exception:
                pass

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    stop[0] = time.perf_counter() + 3600
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass
    t0 = time.perf_counter()
    stop[0] = t0 + seconds
    for t in threads:
        t.join()
    if failed:
        raise failed[0]
    elapsed = time.perf_counter() - t0
    lats = [x for l in lat for x in l]
    return {"eps": sum(counts) / elapsed, "p50": pct(lats, 50), "p99": pct(lats, 99)}


def setup_floor(kind, tmp, dbname):
    if kind == "mysql":
        conn = common.mysql_connect(dbname)
        try:
            cur = conn.cursor()
            cur.execute("CREATE TABLE floor_events LIKE slurm_events")
            # columns the floor's INSERT does not name (a later schema's) get a default
            cur.execute("SELECT column_name FROM information_schema.columns WHERE table_schema ="
                        " DATABASE() AND table_name = 'floor_events' AND is_nullable = 'NO' AND"
                        " column_default IS NULL AND extra NOT LIKE '%%auto_increment%%'")
            named = ("event_id", "job_id", "status", "time", "seq", "received_at", "raw")
            for (column,) in cur.fetchall():
                if column not in named:
                    cur.execute("ALTER TABLE floor_events ALTER COLUMN `%s` SET DEFAULT ''"
                                % column)
            conn.commit()
        finally:
            conn.close()
        return dbname
    path = os.path.join(tmp, "floor.db")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE floor_events (id INTEGER PRIMARY KEY AUTOINCREMENT,"
                 " event_id TEXT NOT NULL UNIQUE, job_id TEXT NOT NULL, status TEXT NOT NULL,"
                 " time TEXT NOT NULL, seq INTEGER, received_at TEXT NOT NULL, raw TEXT NOT NULL)")
    conn.execute("CREATE INDEX floor_events_job ON floor_events (job_id, time, seq)")
    conn.close()
    return path


def bench_backend(kind, seconds, tmp, orig=None):
    if kind == "mysql":
        dbname, db = common.mysql_temp_db()
    else:
        dbname, db = None, os.path.join(tmp, "ingest.db")
    svc = common.Service(db, tmp)
    try:
        # the service creates its tables on first use
        conn = http.client.HTTPConnection(svc.host, svc.port, timeout=30)
        common.post_json(conn, "/api/v1/events", Gen("init").next())
        conn.close()
        floor_target = setup_floor(kind, tmp, dbname)
        rows = {}
        print("%s: service %s" % (kind, svc.url))
        print("  %-22s %10s %9s %9s %9s %s" % ("run", "events/s", "p50", "p99", "vs floor",
                                              "rows"))
        for c in CONCURRENCY:
            fl = run_floor(kind, floor_target, c, seconds)
            rows[("floor", c)] = fl
            print("  %-22s %10.0f %7.2fms %7.2fms %9s" % ("floor C=%d" % c, fl["eps"],
                                                         fl["p50"] * 1e3, fl["p99"] * 1e3, ""))
            for mode, batch in (("single", 1), ("batch", BATCH)):
                before = common.count_rows(db, "slurm_events")
                r = run_clients(svc, c, batch, seconds, "%s-%s-%d-%d" % (kind, mode, c,
                                                                          int(time.time())))
                after = common.count_rows(db, "slurm_events")
                stored = after - before
                expected = r["accepted"] + r["warm"]   # warm-up events are new rows too
                lost = expected - stored
                r["lost"] = lost
                rows[(mode, c)] = r
                print("  %-22s %10.0f %7.2fms %7.2fms %8.0f%% %d stored / %d acked%s%s"
                      % ("%s C=%d" % (mode, c), r["eps"], r["p50"] * 1e3, r["p99"] * 1e3,
                         100.0 * r["eps"] / fl["eps"], stored, expected,
                         "  LOST %d" % lost if lost else "",
                         "  errors %d" % r["errors"] if r["errors"] else ""))
                sys.stdout.flush()
                if orig is not None:
                    # the original's counterpart, right after ours
                    omode = "single" if mode == "single" else "change"
                    o = orig.run(c, omode, seconds)
                    rows[("orig " + omode, c)] = o
                    print("  %-22s %10.0f %7.2fms %7.2fms %8.0f%% %s%s"
                          % ("orig %s C=%d" % (omode, c), o["eps"], o["p50"] * 1e3,
                             o["p99"] * 1e3, 100.0 * o["eps"] / fl["eps"],
                             "events/s" if omode == "single" else
                             "state changes/s (2 requests each)",
                             "  errors %d" % o["errors"] if o["errors"] else ""))
                    sys.stdout.flush()
        return rows
    finally:
        svc.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seconds", type=float, default=None)
    args = ap.parse_args()
    seconds = args.seconds or (1.0 if args.quick else 4.0)
    common.header("ingest: POST /api/v1/events, %s s per run, C = %s keep-alive clients"
                  % (seconds, ", ".join(map(str, CONCURRENCY))))
    tmp = common.tempdir("ingest")
    kinds = ["sqlite"] + (["mysql"] if common.mysql_available() else [])
    why = original.service_missing()
    orig = None
    if why:
        print("original: skipped: %s" % why)
    else:
        print("original: %s; its service on MariaDB (%s)" % (original.describe(),
                                                             original.ORIGINAL_PY))
        orig = OriginalLoad(tmp)
    for kind in kinds:
        rows = bench_backend(kind, seconds, tmp, orig)
        s32, b32, f32 = rows[("single", 32)], rows[("batch", 32)], rows[("floor", 32)]
        lost = sum(r.get("lost", 0) for r in rows.values())
        share = s32["eps"] / f32["eps"]
        floor_name = "pymysql" if kind == "mysql" else "sqlite3 WAL"
        result("ingest %s single, 32 clients" % kind,
               "%.0f ev/s = %.0f%% of %s floor %.0f/s; p50 %.1f ms, p99 %.1f ms"
               % (s32["eps"], share * 100, floor_name, f32["eps"], s32["p50"] * 1e3,
                  s32["p99"] * 1e3),
               ">= 50% of floor, p99 <= 30 ms" if kind == "mysql" else None,
               (share >= 0.5 and s32["p99"] <= 0.030) if kind == "mysql" else None)
        result("ingest %s batch of 100, 32 clients" % kind,
               "%.0f ev/s = %.1fx single; p99 %.1f ms per request"
               % (b32["eps"], b32["eps"] / s32["eps"], b32["p99"] * 1e3),
               ">= 10x single", b32["eps"] / s32["eps"] >= 10)
        result("ingest %s rows lost" % kind, "%d" % lost, "0", lost == 0)
        ratios = [rows[("batch", c)]["eps"] / rows[("single", c)]["eps"] for c in CONCURRENCY]
        result("ingest %s batch of 100 vs single at %s clients" % (
            kind, "/".join(map(str, CONCURRENCY))),
            " / ".join("%.1fx" % r for r in ratios) + " (%s ev/s batched)" % " / ".join(
                "%.0f" % rows[("batch", c)]["eps"] for c in CONCURRENCY),
            ">= 10x at each", min(ratios) >= 10)
        if orig is None:
            original.skipped_result("ingest %s single events and state changes" % kind)
            continue
        single = [(rows[("single", c)], rows[("orig single", c)]) for c in CONCURRENCY]
        result("ingest %s single vs the original's event at %s clients" % (
            kind, "/".join(map(str, CONCURRENCY))),
            "; ".join("C=%d %.0f vs %.0f ev/s = %.2fx (p50 %.1f vs %.1f ms)" % (
                c, s["eps"], o["eps"], s["eps"] / o["eps"], s["p50"] * 1e3,
                o["p50"] * 1e3) for c, (s, o) in zip(CONCURRENCY, single)),
            ">= 1.00x at 1 client", single[0][0]["eps"] >= single[0][1]["eps"])
        change = [(rows[("single", c)], rows[("orig change", c)]) for c in CONCURRENCY]
        result("ingest %s per state change vs the original's (2 requests) at %s clients" % (
            kind, "/".join(map(str, CONCURRENCY))),
            "; ".join("C=%d %.0f vs %.0f/s = %.2fx" % (c, s["eps"], o["eps"], s["eps"] / o["eps"])
                      for c, (s, o) in zip(CONCURRENCY, change)))
        result("ingest %s batch of 100 vs the original's single events (it has no batches)"
               % kind, " / ".join("%.1fx" % (rows[("batch", c)]["eps"] /
                                             rows[("orig single", c)]["eps"])
                                  for c in CONCURRENCY) + " at %s clients"
               % "/".join(map(str, CONCURRENCY)))
    if orig is not None:
        orig.svc.stop()


if __name__ == "__main__":
    main()
