#!/usr/bin/env python3
"""A job array ending at once (bench/burst.py [--quick]).

2,000 array-task endings (job ids 777_1..777_2000, COMPLETED, every 10th
FAILED) are POSTed by 100 client threads, 20 each, on a schedule spreading
the sends evenly over one second.  Each POST uses a fresh connection, as each
task's slm.py does (urllib, one event per request); nothing is retried.
Reported per backend (SQLite, MariaDB in a throw-away database): events
acknowledged (HTTP 200), time from the first send to the last
acknowledgement and its ratio to the 1 s send window (the baseline: 1.0x
means the service kept up), per-request p50/p99/max, and rows counted in
slurm_events and slurm_jobs afterwards (must be 2,000 each).
--quick runs the same burst (it is already short).
"""

import argparse
import http.client
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import pct, result  # noqa: E402

TASKS = 2000
CLIENTS = 100
WINDOW = 1.0


def burst(svc):
    per = TASKS // CLIENTS
    acks = [0] * CLIENTS
    errors = []
    lat = [[] for _ in range(CLIENTS)]
    last_ack = [0.0] * CLIENTS
    last_send = [0.0] * CLIENTS
    barrier = threading.Barrier(CLIENTS + 1)
    start = [0.0]

    def client(k):
        barrier.wait()
        for j in range(per):
            n = j * CLIENTS + k            # task index 0..1999, in send order
            due = start[0] + WINDOW * n / TASKS
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            ev = common.event("777_%d" % (n + 1), "FAILED" if n % 10 == 9 else "COMPLETED",
                              seq=3, array_job_id="777", array_task_id=str(n + 1), user="u1",
                              exit_code=1 if n % 10 == 9 else 0)
            t0 = time.perf_counter()
            last_send[k] = t0
            try:
                conn = http.client.HTTPConnection(svc.host, svc.port, timeout=60)
                status, payload = common.post_json(conn, "/api/v1/events", ev)
                conn.close()
            except Exception as e:
                errors.append(repr(e))
                continue
            t1 = time.perf_counter()
            if status == 200 and json.loads(payload)["accepted"] == 1:
                acks[k] += 1
                lat[k].append(t1 - t0)
                last_ack[k] = t1
            else:
                errors.append("HTTP %d %s" % (status, payload[:100]))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    start[0] = time.perf_counter() + 0.2
    barrier.wait()
    for t in threads:
        t.join()
    lats = [x for l in lat for x in l]
    return {"acked": sum(acks), "errors": errors, "span": max(last_ack) - start[0],
            "send_span": max(last_send) - start[0], "p50": pct(lats, 50),
            "p99": pct(lats, 99), "max": max(lats) if lats else float("nan")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.parse_args()
    common.header("burst: %d array-task endings from %d clients within %.0f s"
                  % (TASKS, CLIENTS, WINDOW))
    tmp = common.tempdir("burst")
    kinds = ["sqlite"] + (["mysql"] if common.mysql_available() else [])
    for kind in kinds:
        if kind == "mysql":
            _, db = common.mysql_temp_db()
        else:
            db = os.path.join(tmp, "burst.db")
        svc = common.Service(db, tmp)
        try:
            conn = http.client.HTTPConnection(svc.host, svc.port, timeout=30)
            conn.request("GET", "/healthz")   # creates the tables
            conn.getresponse().read()
            conn.close()
            r = burst(svc)
        finally:
            svc.stop()
        events = common.count_rows(db, "slurm_events")
        jobs = common.count_rows(db, "slurm_jobs")
        print("%s: %d/%d acknowledged, last send at %.2f s, last ack at %.2f s (%.2fx the"
              " window); per request p50 %.1f ms, p99 %.1f ms, max %.1f ms; rows: %d events,"
              " %d jobs; %d errors%s"
              % (kind, r["acked"], TASKS, r["send_span"], r["span"], r["span"] / WINDOW,
                 r["p50"] * 1e3, r["p99"] * 1e3, r["max"] * 1e3, events, jobs,
                 len(r["errors"]), (" (first: %s)" % r["errors"][0]) if r["errors"] else ""))
        ok = r["acked"] == TASKS and events == TASKS and jobs == TASKS
        result("burst %s 2000 endings / 100 clients / 1 s" % kind,
               "%d acked, last ack %.2f s (%.2fx window), p99 %.0f ms, rows %d/%d"
               % (r["acked"], r["span"], r["span"] / WINDOW, r["p99"] * 1e3, events, jobs),
               "all acked and stored", ok)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
