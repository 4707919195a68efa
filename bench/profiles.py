#!/usr/bin/env python3
"""Where the service's time goes, per heartbeat and per event
(bench/profiles.py heartbeat|event [--n N] [--backend sqlite|mysql|both]).

In this process, with no other load, on a service built as slm_api.py
builds it (SLM_RECONCILE=off), SQLite in a temp dir and MariaDB in a
throw-away database:

heartbeat  N jobs made first (a RUNNING event each, heartbeat 60 s), then
           one heartbeat per request, as slm.py's JobWatch.beat sends it:
  layers     CPU (time.thread_time) and wall time per heartbeat of:
               json        json.loads of the body
               validation  slm_api.parse_heartbeats (json included)
               ingest      Ingestor.submit: the group commit, its SQL, commit
               dispatch    the WSGI app (Bottle routing, the plugin, the
                           answer, and all of the above)
             the real server's own share (HTTP parsing, the socket, its
             thread) is bench/site.py's CPU per heartbeat minus dispatch
  statements every statement the database driver ran, by kind: count per
             heartbeat and wall time (the round trip for MariaDB; for
             SQLite the statement itself), BEGIN and COMMIT included
  cProfile   the dispatch loop's own time by module and its top functions
  writes     (SQLite) bytes this process wrote per heartbeat (/proc/self/io)
  minimum    the same heartbeats written by hand: one UPDATE of the three
             columns a beat changes, one transaction per beat (the least a
             per-request design can do) and one transaction for all the
             beats of a second (a flush of beats kept in memory)

event      N single events (RUNNING of a new job, then its COMPLETED), one
           per Ingestor.submit: the statements and their times as above,
           against the minimum the semantics need, written by hand on the
           same connection kind: INSERT IGNORE of the event, one upsert of
           the job row, COMMIT.

wrapper    `PY slm.py run -- true` (no target; a service up; a service
           refused), each against the floor (issue #26's: a Python that
           imports json, urllib.request, subprocess, signal, argparse and
           runs true):
  compile    compile() of slm.py's source (paid by every plain-file start)
  imports    `PY -X importtime`: every module's own import time, summed
             over the modules the floor does not import too (median of runs)
  timeline   strace -f -tt: what slm's process does before the child's
             execve and after it (fsyncs, files written, connections,
             threads), with the time of each phase
  cProfile   `PY -m cProfile slm.py run -- true` (the main thread): the
             functions with most cumulative time
  phases     a launcher compiles slm.py, runs it with its main steps timed
             (wall clock: spawn, the courier, the journal, each request,
             the end): median of runs, the three cases interleaved

Nothing is asserted; this is a measuring tool (bench/README.md has the
findings of its run).
"""

import argparse
import collections
import cProfile
import json
import os
import pstats
import re
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

sys.path.insert(0, common.REPO)
import slm_api  # noqa: E402

INTERVAL = 60


# ---------------------------------------------------------------------------
# the statement trace: every statement the driver runs, with its wall time

class Trace(object):
    def __init__(self):
        self.on = False
        self.stats = collections.OrderedDict()
        self._depth = 0

    def clear(self):
        self.stats = collections.OrderedDict()

    @staticmethod
    def kind(sql):
        sql = " ".join(sql.split())
        verb = sql.split(" ", 1)[0].upper()
        table = re.search(r"\b(?:INTO|FROM|UPDATE|TABLE)\s+`?(\w+)", sql, re.I)
        extra = ""
        if re.search(r"ON DUPLICATE KEY UPDATE `?(\w+)`? = `?\1`?$", sql):
            extra = " (make/lock rows)"
        elif "ON DUPLICATE KEY UPDATE" in sql:
            extra = " ... ON DUPLICATE KEY UPDATE (all columns)"
        elif "FOR UPDATE" in sql:
            extra = " ... FOR UPDATE"
        elif verb == "UPDATE" and sql.count("= ?") + sql.count("= %s") > 5:
            extra = " SET (all columns)"
        return "%s %s%s" % (verb, table.group(1) if table else "", extra)

    def timed(self, name, fn, *args):
        if not self.on or self._depth:
            return fn(*args)
        self._depth += 1
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self._depth -= 1
            s = self.stats.setdefault(name, [0, 0.0])
            s[0] += 1
            s[1] += time.perf_counter() - t0


TRACE = Trace()


class TracedCursor(sqlite3.Cursor):
    def execute(self, sql, args=()):
        return TRACE.timed(Trace.kind(sql), super().execute, sql, args)

    def executemany(self, sql, args):
        return TRACE.timed(Trace.kind(sql), super().executemany, sql, args)


class TracedConnection(sqlite3.Connection):
    def cursor(self, factory=TracedCursor):
        return super().cursor(factory)

    def execute(self, sql, args=()):
        return TRACE.timed(Trace.kind(sql), super().execute, sql, args)

    def commit(self):
        return TRACE.timed("COMMIT", super().commit)


def trace_drivers():
    def sqlite_connect(dialect):
        return sqlite3.connect(dialect.path, timeout=dialect.busy_timeout, isolation_level=None,
                               check_same_thread=False, factory=TracedConnection)
    slm_api.SQLiteDialect.connect = sqlite_connect
    try:
        import pymysql
    except ImportError:
        return
    cur, conn = pymysql.cursors.Cursor, pymysql.connections.Connection
    execute, executemany, commit, rollback = cur.execute, cur.executemany, conn.commit, \
        conn.rollback
    cur.execute = lambda self, sql, args=None: TRACE.timed(Trace.kind(sql), execute, self, sql,
                                                           args)
    cur.executemany = lambda self, sql, args: TRACE.timed(Trace.kind(sql), executemany, self,
                                                          sql, args)
    conn.commit = lambda self: TRACE.timed("COMMIT", commit, self)
    conn.rollback = lambda self: TRACE.timed("ROLLBACK", rollback, self)


def print_trace(n, what):
    total_n = sum(c for c, _ in TRACE.stats.values())
    total_t = sum(t for _, t in TRACE.stats.values())
    print("  statements per %s: %.2f, %.0f us of wall time in them" % (what, total_n / float(n),
                                                                       total_t / n * 1e6))
    for name, (count, secs) in TRACE.stats.items():
        print("    %5.2f x  %7.0f us  %s" % (count / float(n), secs / n * 1e6, name))
    return total_n / float(n), total_t / n


# ---------------------------------------------------------------------------

def timed(fn, n):
    c0, w0 = time.thread_time(), time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.thread_time() - c0) / n, (time.perf_counter() - w0) / n


def written():
    with open("/proc/self/io") as f:
        d = dict((k, int(v)) for k, v in (line.split(":") for line in f))
    return d.get("wchar", 0), d.get("syscw", 0)


def beat_body(job, now=None):
    now = now or time.time()
    return json.dumps({"job_id": job, "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(
        now)) + ".%03dZ" % int(now % 1 * 1000), "interval": INTERVAL, "rss_mb": 812.4,
        "cpu_time": 1234.56, "output_bytes": 52311, "user": "u1"}).encode()


def open_db(kind, tmp):
    if kind == "mysql":
        return common.mysql_temp_db()[1]
    return os.path.join(tmp, "profile-%d.db" % time.time_ns())


def make_jobs(service, n, tag):
    for start in range(0, n, 100):
        items = [slm_api.validate_event(common.event(
            "%s-%d" % (tag, k), "RUNNING", user="u1", host="node001", job_name="p",
            partition="batch", heartbeat=INTERVAL))
            for k in range(start, min(n, start + 100))]
        service.ingestor.submit(items)


def raw_connection(kind, db):
    if kind == "mysql":
        conn = common.mysql_connect(db.rsplit("/", 1)[1], autocommit=False)
        conn.cursor().execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        return conn, "%s"
    return sqlite3.connect(db, isolation_level=None), "?"


def heartbeat(kind, n, tmp):
    db = open_db(kind, tmp)
    service = slm_api.build_service({"SLM_RECONCILE": "off"}, db=db)
    try:
        make_jobs(service, n, "hb")
        bodies = [beat_body("hb-%d" % (i % n)) for i in range(n)]
        submit = service.ingestor.submit
        app = service.app
        layers = [
            ("json", lambda i: json.loads(bodies[i])),
            ("validation", lambda i: slm_api.parse_heartbeats(bodies[i])),
            ("ingest", lambda i: submit([], None, beats=slm_api.parse_heartbeats(bodies[i]))),
            ("dispatch", lambda i: common.scaffold.call(app, "POST", "/api/v1/heartbeats",
                                                        bodies[i])),
        ]
        for _, fn in layers:
            fn(0)
        got = {}
        for _ in range(3):          # rounds, interleaved; the median round
            for name, fn in layers:
                got.setdefault(name, []).append(timed(fn, n))
        print("%s: %d jobs, one heartbeat per call, %d calls x 3 rounds" % (kind, n, n))
        print("  %-11s %10s %10s %12s" % ("layer", "CPU us", "wall us", "own CPU us"))
        prev = 0.0
        for name, _ in layers:
            cpu = common.median([c for c, _ in got[name]])
            wall = common.median([w for _, w in got[name]])
            own = cpu - prev     # each layer includes the one above it
            print("  %-11s %10.0f %10.0f %12.0f" % (name, cpu * 1e6, wall * 1e6, own * 1e6))
            prev = cpu
        # statements
        TRACE.clear()
        TRACE.on = True
        w0, s0 = written()
        for i in range(n):
            submit([], None, beats=slm_api.parse_heartbeats(bodies[i]))
        w1, s1 = written()
        TRACE.on = False
        per, _ = print_trace(n, "heartbeat")
        if kind == "sqlite":
            print("  written by this process per heartbeat: %.0f bytes in %.1f write calls"
                  % ((w1 - w0) / float(n), (s1 - s0) / float(n)))
        # cProfile of the dispatch path
        prof = cProfile.Profile()
        prof.enable()
        for i in range(n):
            layers[3][1](i)
        prof.disable()
        by_module(prof, n, "heartbeat")
        # the minimum by hand
        minimum_heartbeats(kind, db, n, bodies)
    finally:
        service.stop()


def by_module(prof, n, what):
    st = pstats.Stats(prof)
    groups = collections.Counter()
    for (path, _, func), (cc, nc, tt, ct, callers) in st.stats.items():
        base = os.path.basename(path)
        if base in ("slm_api.py", "bottle.py", "scaffold.py"):
            key = base
        elif "pymysql" in path:
            key = "pymysql"
        elif path == "~":
            key = "builtins: " + func.split(" of ")[0].strip("<>").replace("method ", "")[:40]
        elif "json" in path:
            key = "json"
        else:
            key = "stdlib: " + base
        groups[key] += tt
    total = sum(groups.values())
    print("  cProfile, own time per %s by module (under cProfile: inflated; shares count): "
          "%.0f us" % (what, total / n * 1e6))
    for key, tt in groups.most_common(14):
        print("    %7.0f us %5.1f %%  %s" % (tt / n * 1e6, tt / total * 100, key))
    print("  top functions by own time:")
    rows = sorted(st.stats.items(), key=lambda kv: -kv[1][2])[:18]
    for (path, line, func), (cc, nc, tt, ct, callers) in rows:
        print("    %7.1f us own %7.1f us cum %6.2f calls  %s:%d %s"
              % (tt / n * 1e6, ct / n * 1e6, nc / float(n), os.path.basename(path), line, func))


def minimum_heartbeats(kind, db, n, bodies):
    conn, mark = raw_connection(kind, db)
    cur = conn.cursor()
    beats = [json.loads(b) for b in bodies]
    sql = ("UPDATE slurm_jobs SET heartbeat_at = ?, heartbeat_interval = ?, meta = ?"
           " WHERE job_id = ? AND (heartbeat_at IS NULL OR heartbeat_at < ?)").replace("?", mark)

    multi = ("UPDATE slurm_jobs j JOIN (%s) v ON j.job_id = v.job_id SET j.heartbeat_at = v.at,"
             " j.heartbeat_interval = v.every, j.meta = v.meta WHERE j.heartbeat_at IS NULL OR"
             " j.heartbeat_at < v.at")

    def args(b):
        usage = {"usage": dict((k, b[k]) for k in ("rss_mb", "cpu_time", "output_bytes"))}
        return (b["time"], b["interval"], json.dumps(usage), b["job_id"], b["time"])

    def one(i):
        b = beats[i]
        if kind == "sqlite":
            cur.execute("BEGIN IMMEDIATE")
        cur.execute(sql, args(b))
        conn.commit() if kind == "mysql" else cur.execute("COMMIT")
    # fresh times, so that every UPDATE changes its row
    for b in beats:
        b["time"] = b["time"].replace("Z", "1Z")
    w0, s0 = written()
    cpu1, wall1 = timed(one, n)
    w1, s1 = written()
    per_second = max(1, int(round(10000 / float(INTERVAL))))
    for b in beats:
        b["time"] = b["time"].replace("1Z", "2Z")

    def flush(i):   # one transaction for per_second beats; called n / per_second times
        if kind == "sqlite":
            cur.execute("BEGIN IMMEDIATE")
        part = beats[i * per_second:(i + 1) * per_second]
        if kind == "mysql":   # one statement for them all (an UPDATE is one row a trip)
            cur.execute(multi % " UNION ALL ".join(
                ["SELECT %s AS job_id, %s AS at, %s AS every, %s AS meta"] * len(part)),
                [v for b in part for v in args(b)[3:4] + args(b)[:3]])
        else:
            cur.executemany(sql, [args(b) for b in part])
        conn.commit() if kind == "mysql" else cur.execute("COMMIT")
    flushes = n // per_second
    w2, s2 = written()
    cpu2, wall2 = timed(flush, flushes)
    w3, s3 = written()
    conn.close()
    print("  minimum by hand (client side of this process; the server's CPU is not in it):")
    print("    one UPDATE of 3 columns + COMMIT per beat: %.0f us CPU, %.0f us wall per beat%s"
          % (cpu1 * 1e6, wall1 * 1e6, ", %.0f bytes written" % ((w1 - w0) / float(n))
             if kind == "sqlite" else ""))
    print("    %d beats (a second's at 10,000 jobs / 60 s) per transaction%s: %.0f us CPU, %.0f us"
          " wall per beat%s" % (per_second, " (one UPDATE joined to them)" if kind == "mysql" else
                                " (executemany)", cpu2 / per_second * 1e6, wall2 / per_second * 1e6,
                                ", %.0f bytes written" % ((w3 - w2) / float(flushes * per_second))
                                if kind == "sqlite" else ""))


# ---------------------------------------------------------------------------

def event(kind, n, tmp):
    db = open_db(kind, tmp)
    service = slm_api.build_service({"SLM_RECONCILE": "off"}, db=db)
    try:
        submit = service.ingestor.submit

        def ev(i, status):
            return slm_api.validate_event(common.event(
                "ev-%d" % i, status, seq=1 if status == "RUNNING" else 2, user="u1",
                host="node001", job_name="p", partition="batch", slm_version="0.1.0",
                **({"exit_code": 0, "elapsed": 1.5} if status == "COMPLETED" else {})))
        submit([ev(-1, "RUNNING")])
        print("%s: %d jobs, RUNNING (new job) then COMPLETED, one event per Ingestor.submit"
              % (kind, n))
        for status in ("RUNNING", "COMPLETED"):
            items = [ev(i, status) for i in range(n)]
            TRACE.clear()
            TRACE.on = True
            c0, w0 = time.thread_time(), time.perf_counter()
            for i in range(n):
                submit([items[i]])
            cpu, wall = (time.thread_time() - c0) / n, (time.perf_counter() - w0) / n
            TRACE.on = False
            print(" %s: %.0f us CPU, %.0f us wall per event" % (status, cpu * 1e6, wall * 1e6))
            print_trace(n, "event")
        minimum_events(kind, db, n)
    finally:
        service.stop()


def minimum_events(kind, db, n):
    """INSERT IGNORE of the event, one upsert of the job row, COMMIT: by hand.
    The job rows are copies of one the service made (whatever its schema)."""
    conn, mark = raw_connection(kind, db)
    cur = conn.cursor()
    cur.execute("SELECT * FROM slurm_jobs WHERE job_id = 'ev-0'")
    template = cur.fetchone()
    names = [d[0] for d in cur.description]
    cur.execute("SELECT * FROM slurm_events WHERE job_id = 'ev-0' LIMIT 1")
    event_row = cur.fetchone()
    event_names = [d[0] for d in cur.description if d[0] != "id"]
    event_row = dict(zip([d[0] for d in cur.description], event_row))
    q = (lambda c: "`%s`" % c) if kind == "mysql" else (lambda c: '"%s"' % c)
    marks = ", ".join([mark] * len(names))
    updates = ", ".join(("%s = VALUES(%s)" if kind == "mysql" else "%s = excluded.%s")
                        % (q(c), q(c)) for c in names if c not in ("id", "job_id", "job_key"))
    upsert = "INSERT INTO slurm_jobs (%s) VALUES (%s) %s %s" % (
        ", ".join(q(c) for c in names), marks,
        "ON DUPLICATE KEY UPDATE" if kind == "mysql" else "ON CONFLICT DO UPDATE SET", updates)
    insert = "%s INTO slurm_events (%s) VALUES (%s)" % (
        "INSERT IGNORE" if kind == "mysql" else "INSERT OR IGNORE",
        ", ".join(q(c) for c in event_names), ", ".join([mark] * len(event_names)))
    rows = []
    for i in range(n):
        job = "min-%d" % i
        row = [job if c == "job_id" else
               (str(v).replace("ev-0", job) if c == "job_key" else v)
               for c, v in zip(names, template)]
        if "id" in names:
            row[names.index("id")] = None
        ev = dict(event_row, job_id=job, event_id="%032x" % (i + 1))
        if "job_key" in ev:
            ev["job_key"] = str(ev["job_key"]).replace("ev-0", job)
        rows.append(([ev[c] for c in event_names], row))

    def one(i):
        ev, values = rows[i]
        if kind == "sqlite":
            cur.execute("BEGIN IMMEDIATE")
        cur.execute(insert, ev)
        cur.execute(upsert, values)
        conn.commit() if kind == "mysql" else cur.execute("COMMIT")
    try:
        cpu, wall = timed(one, n)
        print(" minimum by hand (INSERT IGNORE event, one job-row upsert, COMMIT): %.0f us CPU,"
              " %.0f us wall per event (client side)" % (cpu * 1e6, wall * 1e6))
    except Exception as e:
        print(" minimum by hand: failed: %s" % e)
    finally:
        conn.close()


# ---------------------------------------------------------------------------

FLOOR = "import json, urllib.request, subprocess, signal, argparse; subprocess.call(['true'])"


def importtime(argv, env, runs):
    """{module: median own microseconds} from -X importtime."""
    import subprocess
    got = collections.defaultdict(list)
    for _ in range(runs):
        err = subprocess.run([argv[0], "-X", "importtime"] + argv[1:], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             universal_newlines=True).stderr
        for line in err.splitlines():
            if line.startswith("import time:") and "|" in line and "self" not in line:
                own, _, name = line[len("import time:"):].split("|")
                got[name.strip()].append(int(own))
    return dict((k, common.median(v)) for k, v in got.items())


def wrapper(n, tmp):
    import subprocess
    py, slm = common.PY, common.SLM
    with open(slm) as f:
        source = f.read()
    took = []
    for _ in range(max(5, n // 100)):
        t0 = time.perf_counter()
        compile(source, slm, "exec")
        took.append(time.perf_counter() - t0)
    print("compile of slm.py (%d lines, %d bytes): median %.1f ms"
          % (source.count("\n"), len(source), common.median(took) * 1e3))
    service = common.Service(os.path.join(tmp, "w.db"), tmp)
    refused = "http://127.0.0.1:%d" % common.free_port()
    base = dict((k, v) for k, v in os.environ.items() if not k.startswith(("SLM_", "SLURM_")))
    cases = [("no target", {}), ("service up", {"SLM_API_URL": service.url}),
             ("service refused", {"SLM_API_URL": refused})]
    runs = 7
    floor = importtime([py, "-c", FLOOR], base, runs)
    print("imports (-X importtime, own us, median of %d runs): the floor's total %.1f ms"
          % (runs, sum(floor.values()) / 1e3))
    for label, extra in cases:
        env = dict(base, SLM_SPOOL_DIR=os.path.join(tmp, "spool-imp"), **extra)
        mods = importtime([py, slm, "run", "--", "true"], env, runs)
        more = dict((k, v) for k, v in mods.items() if k not in floor)
        print("  %s: total %.1f ms; %d modules the floor does not import: %.1f ms; the top:"
              % (label, sum(mods.values()) / 1e3, len(more), sum(more.values()) / 1e3))
        print("    " + ", ".join("%s %.1f" % (k, v / 1e3) for k, v in
                                sorted(more.items(), key=lambda kv: -kv[1])[:14]))
    phases(py, slm, [(label, dict(base, **extra)) for label, extra in cases], tmp)
    for label, extra in cases:
        env = dict(base, SLM_SPOOL_DIR=os.path.join(tmp, "spool-st-%d" % len(label)), **extra)
        timeline(py, slm, env, label, tmp)
    for label, extra in cases[:2]:
        env = dict(base, SLM_SPOOL_DIR=os.path.join(tmp, "spool-cp"), **extra)
        out = os.path.join(tmp, "cprof")
        subprocess.run([py, "-m", "cProfile", "-o", out, slm, "run", "--", "true"], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        st = pstats.Stats(out)
        print("cProfile, %s (main thread; cumulative ms, own ms, calls):" % label)
        rows = sorted(st.stats.items(), key=lambda kv: -kv[1][3])
        shown = 0
        for (path, line, func), (cc, nc, tt, ct, callers) in rows:
            if "slm.py" not in path or ct < 0.0005:
                continue
            print("    %7.1f %7.1f %5d  %s:%d %s" % (ct * 1e3, tt * 1e3, nc, "slm.py", line,
                                                   func))
            shown += 1
            if shown >= 22:
                break
    service.stop()


# compiles slm.py, wraps its main steps with wall-clock timers, runs main()
PHASES = r"""
import json, sys, time
T0 = time.perf_counter()
path = sys.argv[1]
c0 = time.perf_counter()
code = compile(open(path).read(), path, "exec")
c1 = time.perf_counter()
g = {"__name__": "slm_phases", "__file__": path}
exec(code, g)
t_mod = time.perf_counter()
marks = []

def timer(label, f):
    def timed(*a, **k):
        t = time.perf_counter()
        try:
            return f(*a, **k)
        finally:
            marks.append((label, t - T0, time.perf_counter() - t))
    return timed

for owner, name, label in [
        ("Settings", "__init__", "Settings()"),
        ("Wrapper", "spawn", "Wrapper.spawn (the child started)"),
        ("Courier", "__init__", "Courier() (spool, targets)"),
        ("Settings", "targets", "  Settings.targets"),
        ("JobWatch", "__init__", "JobWatch()"),
        ("Courier", "post", "Courier.post (journal, queue)"),
        ("Spool", "add", "  Spool.add (the durable write)"),
        ("Courier", "start", "Courier.start (threads)"),
        ("JobWatch", "start", "JobWatch.start"),
        ("Wrapper", "_finish", "Wrapper._finish (the end event, the wait)"),
        ("Courier", "finish", "  Courier.finish (last attempts, wait)")]:
    setattr(g[owner], name, timer(label, getattr(g[owner], name)))
for name, label in [("short_hash", "  short_hash (imports hashlib)"),
                    ("_plain_http", "_plain_http (one request, any thread)")]:
    g[name] = timer(label, g[name])
sys.argv = sys.argv[1:]
try:
    g["main"]()
finally:
    sys.stderr.write("PHASES " + json.dumps({"compile": c1 - c0, "module body": t_mod - c1,
                                             "main()": time.perf_counter() - t_mod,
                                             "marks": marks}) + "\n")
"""


def phases(py, slm, cases, tmp, runs=15):
    import subprocess
    got = collections.OrderedDict((label, collections.OrderedDict()) for label, _ in cases)
    for i in range(runs):
        for label, env in cases:
            env = dict(env, SLM_SPOOL_DIR=os.path.join(tmp, "spool-ph-%d-%d" % (i, len(label))))
            err = subprocess.run([py, "-c", PHASES, slm, "run", "--", "true"], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 universal_newlines=True).stderr
            found = [l for l in err.splitlines() if l.startswith("PHASES ")]
            if not found:
                print("phases: no report from a run (%s): %s" % (label, err[-500:]))
                return
            d = json.loads(found[-1][len("PHASES "):])
            row = got[label]
            for k in ("compile", "module body", "main()"):
                row.setdefault(k, []).append((d[k], None))
            total, first = collections.OrderedDict(), {}
            for name, at, took in d["marks"]:
                total[name] = total.get(name, 0.0) + took
                first.setdefault(name, at)
            for name in total:
                row.setdefault(name, []).append((total[name], first[name]))
    print("phases (wall ms, median of %d runs each; +ms: when it first starts, from the"
          " launcher's start; summed over calls and threads):" % runs)
    names = []
    for row in got.values():
        names += [n for n in row if n not in names]
    print("  %-44s" % "" + "".join("%22s" % label for label in got))
    for name in names:
        cells = []
        for row in got.values():
            v = row.get(name)
            if not v:
                cells.append("%22s" % "-")
                continue
            took = common.median([t for t, _ in v]) * 1e3
            at = [a for _, a in v if a is not None]
            cells.append("%22s" % ("%.1f" % took + (" (+%.0f)" % (common.median(at) * 1e3)
                                                     if at else "")))
        print("  %-44s%s" % (name, "".join(cells)))


def timeline(py, slm, env, label, tmp):
    """strace -f -tt of one run: the phases before and after the child's execve."""
    import subprocess
    out = os.path.join(tmp, "strace-%s" % label.replace(" ", "-"))
    subprocess.run(["strace", "-f", "-ttt", "-qq", "-o", out, "-e",
                    "trace=execve,clone,clone3,fsync,fdatasync,connect,openat,rename,exit_group,"
                    "wait4,unlink,mkdir", py, slm, "run", "--", "true"], env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(out) as f:
        lines = f.read().splitlines()
    t0 = float(lines[0].split()[1])
    child = None
    for line in lines[1:]:
        if "execve(" in line and '"/usr/bin/true"' in line or 'execve("/bin/true"' in line:
            child = float(line.split()[1])
            break
    end = float(lines[-1].split()[1])
    phases = {"before": collections.Counter(), "after": collections.Counter()}
    for line in lines:
        parts = line.split(None, 2)
        if len(parts) < 3:
            continue
        when, call = float(parts[1]), parts[2].split("(", 1)[0]
        if call == "openat" and ("O_WRONLY" in parts[2] or "O_RDWR" in parts[2] or
                                 "O_CREAT" in parts[2]):
            call = "openat (write)"
        elif call == "openat":
            call = "openat (read)"
        phases["before" if child is None or when < child else "after"][call] += 1
    print("timeline, %s (strace -f: times are inflated by strace itself):" % label)
    print("    child execve at +%.1f ms, slm gone at +%.1f ms" % (
        ((child or end) - t0) * 1e3, (end - t0) * 1e3))
    for phase in ("before", "after"):
        print("    %-6s %s" % (phase, ", ".join("%s %d" % kv for kv in
                                             sorted(phases[phase].items()))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=("heartbeat", "event", "wrapper"))
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--backend", choices=("sqlite", "mysql", "both"), default="both")
    args = ap.parse_args()
    common.header("profile: %s, %d per backend" % (args.what, args.n))
    trace_drivers()
    tmp = common.tempdir("profile")
    kinds = [k for k in ("sqlite", "mysql") if args.backend in (k, "both")]
    if "mysql" in kinds and not common.mysql_available():
        kinds.remove("mysql")
    if args.what == "wrapper":
        return wrapper(args.n, tmp)
    for kind in kinds:
        (heartbeat if args.what == "heartbeat" else event)(kind, args.n, tmp)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
