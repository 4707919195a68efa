#!/usr/bin/env python3
"""Query latency of GET /api/v1/jobs over a large database (bench/query.py [--quick]).

For each backend (SQLite in a temp dir; MariaDB in a throw-away database
slm_bench_<random>, dropped afterwards) bench/fill.py writes 100,000 jobs /
1,000,000 events (--quick: 10,000 jobs / 100,000 events), a real
`slm_api.py --port 0` is started, and these requests are timed, interleaved
round by round, each on a fresh connection as `slm list` (urllib) makes them:
  baseline   GET /healthz                  (HTTP + SELECT 1: the round-trip floor)
  first      GET /api/v1/jobs              (first page, 50 jobs, with total)
  filtered   GET /api/v1/jobs?status=FAILED&user=u3
  deep       GET /api/v1/jobs?offset=5000  (informational)
Reported: median and p90 per request and the ratio to the baseline median.
Target (PASS/MISS): first and filtered pages <= 50 ms median.
"""

import argparse
import http.client
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import fill  # noqa: E402
from common import median, pct, result  # noqa: E402

QUERIES = [("baseline", "/healthz"), ("first", "/api/v1/jobs"),
           ("filtered", "/api/v1/jobs?status=FAILED&user=u3"),
           ("deep", "/api/v1/jobs?offset=5000")]


def get(svc, path):
    conn = http.client.HTTPConnection(svc.host, svc.port, timeout=60)
    try:
        t0 = time.perf_counter()
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        t1 = time.perf_counter()
    finally:
        conn.close()
    if resp.status != 200:
        raise RuntimeError("GET %s -> %d %s" % (path, resp.status, body[:200]))
    return t1 - t0, json.loads(body)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=None)
    args = ap.parse_args()
    jobs = args.jobs or (10000 if args.quick else 100000)
    per_job = 10
    rounds = args.rounds or (15 if args.quick else 40)
    common.header("query: GET /api/v1/jobs over %d jobs / %d events%s, %d rounds"
                  % (jobs, jobs * per_job, " (--quick: reduced data set)" if args.quick else "",
                     rounds))
    tmp = common.tempdir("query")
    kinds = ["sqlite"] + (["mysql"] if common.mysql_available() else [])
    for kind in kinds:
        if kind == "mysql":
            _, db = common.mysql_temp_db()
        else:
            db = os.path.join(tmp, "query.db")
        took = fill.fill(db, jobs, per_job, quiet=True)
        print("%s: filled %d jobs / %d events in %.1f s" % (kind, jobs, jobs * per_job, took))
        svc = common.Service(db, tmp)
        try:
            for name, path in QUERIES:   # warm caches, check answers
                _, data = get(svc, path)
                if "total" in data:
                    print("  %-9s %-40s total %d, %d on the page"
                          % (name, path, data["total"], len(data["jobs"])))
            times = dict((n, []) for n, _ in QUERIES)
            for _ in range(rounds):
                for name, path in QUERIES:
                    times[name].append(get(svc, path)[0])
        finally:
            svc.stop()
        base = median(times["baseline"])
        for name, path in QUERIES:
            m = median(times[name])
            print("  %-9s median %7.2f ms  p90 %7.2f ms  %5.1fx baseline"
                  % (name, m * 1e3, pct(times[name], 90) * 1e3, m / base))
        for name in ("first", "filtered"):
            m = median(times[name])
            result("query %s %s page (%dk jobs)" % (kind, name, jobs // 1000),
                   "%.1f ms median = %.1fx /healthz %.1f ms" % (m * 1e3, m / base, base * 1e3),
                   "<= 50 ms", m <= 0.050)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
