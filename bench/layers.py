#!/usr/bin/env python3
"""Where a single event's time goes, layer by layer (bench/layers.py [--quick]).

One event, as slm.py sends it, through ever more of the service, in this
process (no other load; SQLite in a temp dir, MariaDB in a throw-away
database when it answers):
  json        json.loads of the request body
  validation  slm_api.validate_event (the one validation)
  sql         Ingestor.submit: the write transaction alone (one event a group)
  dispatch    the WSGI app in-process (Bottle routing, the plugin, JSON answer, sql)
  http        a keep-alive HTTP round trip to a real slm_api.py on loopback
Each row is the median per event of N runs, interleaved; a layer's own cost
is its row minus the one above it (http - dispatch: the server and the
socket, including the client's share).
"""

import http.client
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import median, result  # noqa: E402

sys.path.insert(0, common.REPO)


def timed(fn, n):
    t0 = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - t0) / n


def main():
    import slm_api
    n = 300 if common.QUICK else 2000
    rounds = 3 if common.QUICK else 5
    common.header("layers: one event's cost, layer by layer (%d events x %d rounds)"
                  % (n, rounds))
    tmp = common.tempdir("layers")
    kinds = ["sqlite"] + (["mysql"] if common.mysql_available() else [])
    for kind in kinds:
        db = os.path.join(tmp, "layers.db") if kind == "sqlite" else common.mysql_temp_db()[1]
        service = slm_api.build_service({"SLM_RECONCILE": "off"}, db=db)
        proc = common.Service(db, tmp)
        conn = http.client.HTTPConnection(proc.host, proc.port, timeout=30)
        tag = [0]

        def body(i, layer):
            tag[0] += 1
            return json.dumps(common.event("layers-%s-%d" % (layer, tag[0]), "RUNNING",
                                           user="u1", host="node001", job_name="bench",
                                           partition="batch", slm_version="0.1.0"))

        def json_layer(i):
            json.loads(bodies[i])

        def validation_layer(i):
            slm_api.validate_event(json.loads(bodies[i]))

        def sql_layer(i):
            service.ingestor.submit([slm_api.validate_event(json.loads(body(i, "sql")))])

        def dispatch_layer(i):
            r = common.scaffold.call(service.app, "POST", "/api/v1/events",
                                     body(i, "wsgi").encode())
            assert r.status == 200, r.body

        def http_layer(i):
            status, _ = common.post_json(conn, "/api/v1/events", json.loads(body(i, "http")))
            assert status == 200

        bodies = [body(i, "parse") for i in range(n)]
        layers = [("json", json_layer), ("validation", validation_layer), ("sql", sql_layer),
                  ("dispatch", dispatch_layer), ("http", http_layer)]
        times = dict((name, []) for name, _ in layers)
        try:
            http_layer(0)
            sql_layer(0)
            for _ in range(rounds):
                for name, fn in layers:
                    times[name].append(timed(fn, n))
        finally:
            conn.close()
            proc.stop()
            service.stop()
        print("%s:" % kind)
        previous = 0.0
        for name, _ in layers:
            t = median(times[name])
            print("  %-11s %8.1f us/event  (+%.1f us)" % (name, t * 1e6, (t - previous) * 1e6))
            previous = t
        parts = []
        previous = 0.0
        for name, _ in layers:
            t = median(times[name])
            parts.append("%s %.0f" % (name, (t - previous) * 1e6))
            previous = t
        result("layers %s, one event (us of its own)" % kind, ", ".join(parts) +
               " = %.0f us" % (median(times["http"]) * 1e6))


if __name__ == "__main__":
    main()
