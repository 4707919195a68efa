#!/usr/bin/env python3
"""Fill an SLM database quickly with synthetic jobs (used by bench/query.py).

    bench/fill.py --db PATH|mysql://root:@127.0.0.1:3306/DBNAME --jobs 100000 --events 10

Tables are created by the service's own Database (slm_api.open_database,
as the service does on its first transaction).  Rows are then written with executemany in
chunks of 1,000 jobs, bypassing HTTP and the per-event transaction, but each
job's slurm_jobs row is computed by slm_api.merge_event() from exactly the
events written to slurm_events (raw = the validated event's JSON, as
slm_api.validate_event() produces it), so the data is what the service would
have stored had the events been POSTed.

Each job has `events` events: SUBMITTED, RUNNING, PAUSED/RESUMED pairs, then
a final status (COMPLETED 80 %, FAILED 10 %, CANCELLED 5 %, TIMEOUT 5 %);
50 users: u0 a heavy user with 40 % of the jobs (the worst case of a
"your jobs" view), u1..u49 the rest; 4 partitions, jobs spread over the 30
days before 2026-11-30.  Deterministic (seeded).
"""

import argparse
import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
import slm_api  # noqa: E402

END = time.mktime((2026, 11, 30, 0, 0, 0, 0, 0, 0)) - time.timezone
SPAN = 30 * 86400
FINALS = ["COMPLETED"] * 16 + ["FAILED"] * 2 + ["CANCELLED", "TIMEOUT"]


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % int((t % 1) * 1000)


def job_events(rng, n, per_job):
    job = "%d" % (1000000 + n)
    user = "u0" if rng.random() < 0.4 else "u%d" % rng.randrange(1, 50)
    base = {"schema": "slm.event/1", "user": user, "job_name": "job-%d" % rng.randrange(500),
            "partition": rng.choice(("batch", "gpu", "long", "debug")),
            "host": "node%03d" % rng.randrange(200), "slurm_job_id": job,
            "slm_version": "0.1.0"}
    t = END - SPAN + rng.random() * SPAN
    statuses = ["SUBMITTED", "RUNNING"]
    while len(statuses) < per_job - 1:
        statuses.append("PAUSED" if len(statuses) % 2 == 0 else "RESUMED")
    statuses = statuses[:max(per_job - 1, 0)] + [rng.choice(FINALS)]
    out = []
    for seq, status in enumerate(statuses, 1):
        t += rng.random() * 600
        ev = dict(base, event_id="%032x" % rng.getrandbits(128), job_id=job, status=status,
                  time=iso(t), seq=seq)
        if status in slm_api.FINAL:
            ev["exit_code"] = 0 if status == "COMPLETED" else 1
            ev["elapsed"] = round(rng.random() * 3600, 3)
        out.append(ev)
    return job, out


def open_database(db):
    return slm_api.open_database(slm_api.db_config({}, db))


def fill(db, jobs, per_job, seed=1, chunk=1000, quiet=False):
    store = open_database(db)
    store.ping()                  # creates the tables, as the service does
    mysql = store.backend == "mysql"
    # a schema with job keys (a job is its id on its cluster; these have none) keys
    # events by the job's key and names their user, as the service writes them
    keyed = "job_key" in slm_api.JOB_COLUMNS
    ev_cols = ["event_id", "job_id", "status", "time", "seq", "received_at", "raw"] + (
        ["job_key", "user"] if keyed else [])
    ins_ev = ("INSERT INTO slurm_events (%s) VALUES (%s)"
              % (slm_api.columns(ev_cols), ", ".join("?" * len(ev_cols))))
    ins_job = ("INSERT INTO slurm_jobs (%s) VALUES (%s)"
               % (slm_api.columns(slm_api.JOB_COLUMNS), ", ".join("?" * len(slm_api.JOB_COLUMNS))))
    if mysql:
        ins_ev, ins_job = ins_ev.replace("?", "%s"), ins_job.replace("?", "%s")
    conn = store._acquire()
    rng = random.Random(seed)
    t0 = time.time()
    try:
        cur = conn.cursor()
        if not mysql:
            cur.execute("PRAGMA synchronous=OFF")
        for start in range(0, jobs, chunk):
            ev_rows, job_rows = [], []
            for n in range(start, min(jobs, start + chunk)):
                job, events = job_events(rng, n, per_job)
                row = dict((c, None) for c in slm_api.JOB_COLUMNS)
                row["job_id"], row["event_count"], row["restarts"] = job, 0, 0
                key = slm_api.job_key_of(None, job) if keyed else None
                if keyed:
                    row["job_key"] = key
                received = None
                for ev in events:
                    checked = slm_api.validate_event(ev)
                    normal, raw = checked.event, checked.raw
                    received = normal["time"]
                    ev_rows.append((normal["event_id"], job, normal["status"], normal["time"],
                                    normal["seq"], received, raw) +
                                   ((key, normal.get("user")) if keyed else ()))
                    slm_api.merge_event(row, normal)
                job_rows.append([row[c] for c in slm_api.JOB_COLUMNS])
            if not mysql:
                cur.execute("BEGIN")
            else:
                conn.begin()
            cur.executemany(ins_ev, ev_rows)
            cur.executemany(ins_job, job_rows)
            conn.commit()
            if not quiet and (start // chunk) % 20 == 19:
                print("fill: %d jobs, %.0f s" % (start + chunk, time.time() - t0),
                      file=sys.stderr)
        cur.close()
    finally:
        store._release(conn, True)
        store.close()
    return time.time() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", required=True)
    ap.add_argument("--jobs", type=int, default=100000)
    ap.add_argument("--events", type=int, default=10, help="events per job")
    args = ap.parse_args()
    took = fill(args.db, args.jobs, args.events)
    print("filled %d jobs / %d events in %.1f s" % (args.jobs, args.jobs * args.events, took))


if __name__ == "__main__":
    main()
