#!/usr/bin/env python3
"""One user's flood against another user's latency (bench/fairness.py [--quick]).

A real slm_api.py on SQLite with a tokens file (alice, bob) and a per-token
rate limit of RATE (100/s, bursts of 200: on 2 cores shared with the clients
the default 500/s is most of what the machine can do, so a flood at it would
measure the machine, not the fairness).  Bob, one keep-alive client posting one event per
request, is timed twice, interleaved: alone, and while alice floods the
service from 16 keep-alive clients (in a process of their own) as fast as they can (her requests beyond
her rate are answered 429; a flooding slm would keep them spooled).
Reported: bob's p50/p99 in both rounds and their ratio, alice's answers by
status.  Target (PASS/MISS, not asserted): bob's p99 under the flood <= 5x
his p99 alone.  Clients, service and database share this machine's cores.
"""

import http.client
import json
import multiprocessing
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import pct, result  # noqa: E402

FLOODERS = 16
RATE = "100/s,200"


def post(conn, token, body):
    conn.request("POST", "/api/v1/events", json.dumps(body),
                 {"Content-Type": "application/json", "Authorization": "Bearer " + token})
    r = conn.getresponse()
    r.read()
    return r.status


def bob(svc, token, seconds, tag):
    conn = http.client.HTTPConnection(svc.host, svc.port, timeout=60)
    lat, n = [], 0
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop:
        n += 1
        body = common.event("bob-%s-%d" % (tag, n), "RUNNING", user="bob")
        t0 = time.perf_counter()
        status = post(conn, token, body)
        lat.append(time.perf_counter() - t0)
        assert status == 200, status
        time.sleep(0.012)          # a wrapper's pace, not a flood: under his own 100/s
    conn.close()
    return lat


def flood(host, port, token, stop, queue, tag):
    """In a process of its own (bob's timing must not wait for this one's GIL)."""
    answers, lock = {}, threading.Lock()

    def client(k):
        conn = http.client.HTTPConnection(host, port, timeout=60)
        n = 0
        while not stop.is_set():
            n += 1
            status = post(conn, token, common.event("alice-%s-%d-%d" % (tag, k, n),
                                                     "RUNNING", user="alice"))
            with lock:
                answers[status] = answers.get(status, 0) + 1
        conn.close()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(FLOODERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queue.put(answers)


def main():
    common.header("bench/fairness.py: one user's flood against another user's p99")
    seconds = 3.0 if common.QUICK else 8.0
    rounds = 2 if common.QUICK else 3
    tmp = common.tempdir("fair")
    sys.path.insert(0, common.REPO)
    path = os.path.join(tmp, "tokens")
    tokens = {"alice": "slm_bench_alice_token_0123456789abcdef",
              "bob": "slm_bench_bob_token_0123456789abcdef0"}
    import hashlib
    with open(path, "w") as f:
        for user, token in tokens.items():
            f.write("%s:user:%s\n" % (user, hashlib.sha256(token.encode()).hexdigest()))
    svc = common.Service(os.path.join(tmp, "fair.db"), tmp, token=tokens["bob"],
                         env={"SLM_TOKENS_FILE": path, "SLM_RATE_LIMIT": RATE})
    alone, flooded, answers = [], [], {}
    try:
        bob(svc, tokens["bob"], 0.5, "warm")
        for r in range(rounds):
            alone += bob(svc, tokens["bob"], seconds, "a%d" % r)
            stop, queue = multiprocessing.Event(), multiprocessing.Queue()
            proc = multiprocessing.Process(target=flood, args=(svc.host, svc.port,
                                                               tokens["alice"], stop, queue,
                                                               str(r)))
            proc.start()
            time.sleep(1.0)        # the flood is under way (and past its burst) first
            flooded += bob(svc, tokens["bob"], seconds, "f%d" % r)
            stop.set()
            for status, n in queue.get(timeout=60).items():
                answers[status] = answers.get(status, 0) + n
            proc.join(30)
    finally:
        svc.stop()
    ratio = pct(flooded, 99) / pct(alone, 99)
    print("bob alone:        %d requests, p50 %.2f ms, p99 %.2f ms"
          % (len(alone), pct(alone, 50) * 1e3, pct(alone, 99) * 1e3))
    print("bob under flood:  %d requests, p50 %.2f ms, p99 %.2f ms"
          % (len(flooded), pct(flooded, 50) * 1e3, pct(flooded, 99) * 1e3))
    print("alice's answers:  %s" % ", ".join("%s: %d" % kv for kv in sorted(answers.items())))
    result("fairness: bob's p99 under alice's flood (%d clients, SLM_RATE_LIMIT=%s)"
           % (FLOODERS, RATE), "%.1f ms = %.1fx his %.1f ms alone; alice got %d x 429 of %d"
           % (pct(flooded, 99) * 1e3, ratio, pct(alone, 99) * 1e3, answers.get(429, 0),
              sum(answers.values())), "<= 5x", ratio <= 5)


if __name__ == "__main__":
    main()
