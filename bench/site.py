#!/usr/bin/env python3
"""A site's steady heartbeat load on the service (bench/site.py [--quick]
[--jobs N] [--interval S] [--seconds S] [--backend sqlite|mysql|both]).

N running jobs (default 10,000), each sending slm.py's heartbeat (one
POST /api/v1/heartbeats per beat, as JobWatch.beat sends it) every
INTERVAL seconds (default 60: 10,000 / 60 = 167 beats a second), against a
real slm_api.py on SQLite (a temp dir) and on MariaDB (a throw-away database
slm_bench_<random>, dropped at exit), with the service's defaults but
SLM_RECONCILE=off (this host's Slurm is not the site's).  The jobs exist
first: one RUNNING event each, carrying the heartbeat interval, posted in
batches of 100 before anything is measured.

The beats are spread evenly: beat i goes out at t0 + i * INTERVAL / N, to
job i mod N, so every job beats once per interval. Each beat is sent as
slm.py sends it: a fresh connection, the request with "Connection: close"
(every job's wrapper is its own process on its own node); --keep-alive sends
them on one kept connection per sender thread instead (what a service behind
a proxy that keeps connections would see). A few sender threads (--threads,
default 4), with a hand-written HTTP/1.1 request (no http.client, no JSON
encoder per beat), sleep until each send is due; a send that is late goes at
once and its lag is counted, nothing is skipped. After a warm-up (--warmup
seconds of the same load, not measured) the measured window is SECONDS long.
Before the load an idle window of the same kind (--idle seconds, no
requests) gives the service's and mariadbd's background CPU.

Reported per backend:
  service CPU   utime+stime of slm_api.py from /proc/PID/stat over the
                window, as a share of one core, and per heartbeat
  mariadbd CPU  the same for the MariaDB server process (its pid file), idle
                and under load: the server is shared with whatever else uses
                it on this machine, so the idle window is the background
  latency       p50/p99/max of the heartbeat requests (send to full answer)
  rate          heartbeats/s answered 200 vs offered; send lag p99/max
  memory        the service's VmRSS and VmHWM at the end
  writes        SQLite: the service's write_bytes and wchar (/proc/PID/io)
                and the database + WAL file sizes; MariaDB: SHOW GLOBAL
                STATUS deltas (handler rows written/updated, statements,
                redo log bytes, fsyncs) and mariadbd's write_bytes, idle
                and under load (server-wide: see above; per heartbeat is
                the load's rate minus the idle rate)
  generator     this process's own CPU over the window (getrusage), so a
                starved service can be told from a busy generator

Profiling (a separate run: the tools slow the service, so its CPU figures
are then inflated): --py-spy BIN samples the service over the window
(py-spy record --nonblocking, idle threads left out) and prints where its
Python time went (py-spy --gil: a thread running Python, not one waiting
in a system call or in C that let go of the GIL), by stage; --perf samples
its CPU with perf (by library: the interpreter, SQLite, the kernel...);
--strace counts its system calls over the window (strace -c -f), per
heartbeat.

Target (PASS/MISS, never asserted; issue #26): the service <= 5 % of one
core on both backends at 10,000 jobs / 60 s.
"""

import argparse
import collections
import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import pct, result  # noqa: E402

TARGET = 0.05
CLK = os.sysconf("SC_CLK_TCK")
USER = "sitebench"


# ---------------------------------------------------------------------------
# /proc and MariaDB counters

def proc_cpu(pid):
    """utime + stime of a process, seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / float(CLK)


def proc_status(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def proc_io(pid):
    try:
        with open("/proc/%d/io" % pid) as f:
            return dict((k, int(v)) for k, v in (line.split(":") for line in f))
    except OSError:
        return {}


def mariadbd_pid():
    """The MariaDB server's pid, from its pid file (None when not readable here)."""
    conn = common.mysql_connect()
    try:
        cur = conn.cursor()
        cur.execute("SELECT @@pid_file")
        path = cur.fetchone()[0]
        if not os.path.isabs(path):
            cur.execute("SELECT @@datadir")
            path = os.path.join(cur.fetchone()[0], path)
    finally:
        conn.close()
    try:
        with open(path) as f:
            pid = int(f.read().split()[0])
        proc_cpu(pid)
        return pid
    except (OSError, ValueError, IndexError):
        return None


# rows by the handler counts (what was written), statements, redo and fsyncs
MYSQL_COUNTERS = ("Handler_write", "Handler_update", "Handler_delete", "Handler_read_key",
                  "Innodb_os_log_written", "Innodb_data_fsyncs", "Com_commit", "Com_insert",
                  "Com_update", "Com_delete", "Com_select", "Questions")


def mysql_counters():
    conn = common.mysql_connect()
    try:
        cur = conn.cursor()
        cur.execute("SHOW GLOBAL STATUS WHERE Variable_name IN (%s)"
                    % ", ".join("'%s'" % n for n in MYSQL_COUNTERS))
        return dict((k, int(v)) for k, v in cur.fetchall())
    finally:
        conn.close()


class Meter(object):
    """CPU, io and counters of the service (and mariadbd) between two snapshots."""

    def __init__(self, svc_pid, db_pid, mysql):
        self.svc_pid, self.db_pid, self.mysql = svc_pid, db_pid, mysql

    def snap(self):
        ru = resource.getrusage(resource.RUSAGE_SELF)
        s = {"t": time.perf_counter(), "svc": proc_cpu(self.svc_pid),
             "svc_io": proc_io(self.svc_pid), "gen": ru.ru_utime + ru.ru_stime}
        if self.db_pid:
            s["db"] = proc_cpu(self.db_pid)
            s["db_io"] = proc_io(self.db_pid)
        if self.mysql:
            s["my"] = mysql_counters()
        return s

    @staticmethod
    def delta(a, b):
        d = {"secs": b["t"] - a["t"], "svc": b["svc"] - a["svc"], "gen": b["gen"] - a["gen"]}
        for k in ("write_bytes", "wchar", "syscw"):
            d["svc_" + k] = b["svc_io"].get(k, 0) - a["svc_io"].get(k, 0)
        if "db" in a:
            d["db"] = b["db"] - a["db"]
            d["db_write_bytes"] = b["db_io"].get("write_bytes", 0) - \
                a["db_io"].get("write_bytes", 0)
        if "my" in a:
            d["my"] = dict((k, b["my"][k] - a["my"].get(k, 0)) for k in b["my"])
        return d


# ---------------------------------------------------------------------------
# the load

class Beater(object):
    """Posts slm.py's heartbeat, hand-built: on a fresh connection each time
    (as slm.py does), or on one kept connection (keep_alive)."""

    HEAD = ("POST /api/v1/heartbeats HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: slm/bench\r\n"
            "Accept: application/json\r\n%sContent-Length: %%d\r\nContent-Type:"
            " application/json\r\n\r\n")

    def __init__(self, host, port, interval, keep_alive=True):
        self.address = (host, port)
        self.keep_alive = keep_alive
        self.sock = self.connect() if keep_alive else None
        self.head = self.HEAD % (host, port, "" if keep_alive else "Connection: close\r\n")
        self.buf = b""
        # the fields JobWatch.beat() sends (values of a small job)
        self.tail = (', "interval": %s, "rss_mb": 812.4, "cpu_time": 1234.56,'
                     ' "output_bytes": 52311, "user": "%s"}' % (json.dumps(interval), USER))

    def connect(self):
        sock = socket.create_connection(self.address, timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def beat(self, job_id, now):
        body = ('{"job_id": "%s", "time": "%s.%03dZ"' % (
            job_id, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)),
            int(now % 1 * 1000)) + self.tail).encode()
        if not self.keep_alive:
            self.sock, self.buf = self.connect(), b""
        try:
            self.sock.sendall((self.head % len(body)).encode() + body)
            return self.answer()
        finally:
            if not self.keep_alive:
                self.sock.close()

    def answer(self):
        """The status of one answer, read whole (Content-Length framing)."""
        while b"\r\n\r\n" not in self.buf:
            got = self.sock.recv(65536)
            if not got:
                raise ConnectionError("the service closed the connection")
            self.buf += got
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            got = self.sock.recv(65536)
            if not got:
                raise ConnectionError("the service closed the connection")
            rest += got
        self.buf, self.body = rest[length:], rest[:length]
        return int(head.split(None, 2)[1])

    def close(self):
        if self.sock is not None:
            self.sock.close()


def load(svc, jobs, interval, threads, seconds, t0, first, keep_alive):
    """Send beats i = first, first+1, ... due at t0 + i * interval / jobs
    until t0 + seconds.  -> per-thread stats."""
    step = interval / float(jobs)
    end = t0 + seconds
    stats = [{"lat": [], "lag": [], "ok": 0, "bad": 0, "next": first} for _ in range(threads)]
    failed = []

    def sender(k):
        st = stats[k]
        beater = Beater(svc.host, svc.port, interval, keep_alive)
        try:
            i = first + k
            while True:
                due = t0 + (i - first) * step
                if due >= end:
                    break
                now = time.perf_counter()
                if due > now:
                    time.sleep(due - now)
                    now = time.perf_counter()
                st["lag"].append(now - due)
                status = beater.beat("site-%d" % (i % jobs), time.time())
                st["lat"].append(time.perf_counter() - now)
                if status == 200:
                    st["ok"] += 1
                else:
                    st["bad"] += 1
                i += threads
            st["next"] = i
        except Exception as e:
            failed.append(e)
        finally:
            beater.close()

    ts = [threading.Thread(target=sender, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if failed:
        raise failed[0]
    return stats


def make_jobs(svc, jobs, interval):
    """One RUNNING event per job, with the heartbeat interval, in batches of 100."""
    b = Beater(svc.host, svc.port, interval)   # its socket, for the batches
    try:
        for start in range(0, jobs, 100):
            events = [common.event("site-%d" % k, "RUNNING", seq=1, user=USER,
                                   host="node%04d" % (k % 500), job_name="site",
                                   partition="batch", slm_version="0.1.0", pid=4242,
                                   heartbeat=interval)
                      for k in range(start, min(jobs, start + 100))]
            body = json.dumps({"events": events}).encode()
            b.sock.sendall(("POST /api/v1/events HTTP/1.1\r\nHost: %s:%d\r\nContent-Type:"
                            " application/json\r\nContent-Length: %d\r\n\r\n"
                            % (svc.host, svc.port, len(body))).encode() + body)
            status = b.answer()
            if status != 200:
                raise RuntimeError("making the jobs: POST /api/v1/events -> %d (%s)"
                                   % (status, svc.output()[-500:]))
    finally:
        b.close()


# ---------------------------------------------------------------------------
# profiling the service over the window (separate runs)

# what the service's Python time goes to, by a function on the stack
# (inclusive), in the order a heartbeat passes them: (label, function)
STAGES = [
    ("request threads (Connection.serve_one), all", "Connection.serve_one"),
    ("  HTTP: reading the request, environ, sending the answer", "-http"),
    ("  the WSGI app: Bottle, the plugin, the route", "Bottle.__call__"),
    ("    Bottle's own (routing, request/response objects)", "-bottle"),
    ("    the plugin (token, rate limit, the JSON answer)", "-plugin"),
    ("    parse_heartbeats (JSON, validation)", "parse_heartbeats"),
    ("    Ingestor.submit (the group commit, queue, wake-ups)", "Ingestor.submit"),
    ("      Database._run (a transaction: BEGIN, work, COMMIT)", "Database._run"),
    ("        Tx.lock_jobs (make, lock, read the rows)", "Tx.lock_jobs"),
    ("        Tx.record_heartbeats", "Tx.record_heartbeats"),
    ("        Tx.write_jobs (the whole row written back)", "Tx.write_jobs"),
    ("        COMMIT (conn.commit)", "-commit"),
    ("other threads (watchdog, outbox, server loop)", "-other"),
]


def commit_line():
    """The line of Database._run that commits (py-spy names lines)."""
    with open(common.SLM_API) as f:
        inside = False
        for n, line in enumerate(f, 1):
            if "def _run(self, work, write)" in line:
                inside = True
            elif inside and "conn.commit()" in line:
                return "slm_api.py:%d" % n
    return None


def pyspy_summary(path):
    """-> (samples, {stage function: samples}, {running function: samples})."""
    commit = commit_line()
    inclusive, own = collections.Counter(), collections.Counter()
    total = 0
    with open(path) as f:
        for line in f:
            text, _, count = line.rstrip("\n").rpartition(" ")
            if not text:
                continue
            count = int(count)
            total += count
            frames = text.split(";")
            funcs = [fr.partition(" (")[0] for fr in frames]
            names = set(funcs)
            if "Connection.serve_one" not in names:
                names.add("-other")
            elif "Bottle.__call__" not in names:
                names.add("-http")
            elif "ServicePlugin.apply.<locals>.wrapper" not in names:
                names.add("-bottle")
            elif not names & {"parse_heartbeats", "Ingestor.submit"}:
                names.add("-plugin")
            if commit and frames[-1].endswith("(%s)" % commit):
                names.add("-commit")
            for name in names:
                inclusive[name] += count
            own[frames[-1]] += count
    return total, inclusive, own


def perf_summary(path, pid):
    """The service's samples (all its threads) by library and by symbol."""
    text = subprocess.run(["perf", "script", "-i", path, "-F", "pid,ip,sym,dso", "-G"],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          universal_newlines=True).stdout
    dsos, syms = collections.Counter(), collections.Counter()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3 or parts[0] != str(pid):
            continue
        dso = os.path.basename(parts[-1].strip("()"))
        dsos[dso] += 1
        syms["%s %s" % (" ".join(parts[2:-1]) or "?", dso)] += 1
    total = sum(dsos.values())
    print("  perf: %d samples of the service (all its threads), by library:" % total)
    for name, n in dsos.most_common(8):
        print("    %5.1f %%  %s" % (100.0 * n / max(total, 1), name))
    print("  perf: top symbols:")
    for name, n in syms.most_common(20):
        print("    %5.1f %%  %s" % (100.0 * n / max(total, 1), name))
    print("  perf data: %s" % path)


def profile_tools(args, svc_pid, seconds, out):
    """Start the profilers asked for on the service; -> a function that ends them."""
    procs = []
    if args.py_spy:
        # --gil: samples of a thread holding the GIL, i.e. running Python (not waiting
        # in a system call, not in C that released it: SQLite's own work is not here)
        procs.append(("py-spy", subprocess.Popen(
            [args.py_spy, "record", "--pid", str(svc_pid), "--duration", str(int(seconds)),
             "--rate", "200", "--nonblocking", "--gil", "--format", "raw", "--output",
             out + ".pyspy"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))
    if args.perf:
        procs.append(("perf", subprocess.Popen(
            # system-wide (-p would miss the threads started for new connections),
            # the service picked out in the report
            ["perf", "record", "-F", "499", "-a", "-g", "-o", out + ".perf",
             "--", "sleep", str(int(seconds))], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)))
    if args.strace:
        procs.append(("strace", subprocess.Popen(
            ["strace", "-c", "-f", "-p", str(svc_pid), "-o", out + ".strace"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))

    def end(beats, cpu_per_beat):
        for name, p in procs:
            if name == "strace":
                p.send_signal(2)     # SIGINT: strace detaches and writes its table
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if args.py_spy and os.path.exists(out + ".pyspy"):
            total, inclusive, own = pyspy_summary(out + ".pyspy")
            print("  py-spy --gil: %d samples of Python running (%.1f s at 200 Hz); by stage,"
                  " as a share of them and in us per heartbeat:" % (total, total / 200.0))
            for label, func in STAGES:
                n = inclusive.get(func, 0)
                print("    %5.1f %% %7.0f us  %s" % (100.0 * n / max(total, 1),
                                                    n / 200.0 / max(beats, 1) * 1e6, label))
            print("  py-spy --gil: the lines running (own samples), top 20:")
            for name, n in own.most_common(20):
                print("    %5.1f %% %7.0f us  %s" % (100.0 * n / max(total, 1),
                                                    n / 200.0 / max(beats, 1) * 1e6, name))
            print("  py-spy raw stacks: %s" % (out + ".pyspy"))
        if args.perf and os.path.exists(out + ".perf"):
            perf_summary(out + ".perf", svc_pid)
        if args.strace and os.path.exists(out + ".strace"):
            print("  strace -c -f over the window (%d heartbeats): calls per heartbeat" % beats)
            with open(out + ".strace") as f:
                for line in f:
                    parts = line.split()
                    if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
                        calls = int(parts[3])
                        if calls >= beats / 20:
                            print("    %-16s %7.2f per heartbeat  (%s %% of syscall time)"
                                  % (parts[-1], calls / float(max(beats, 1)), parts[0]))
            print("  strace table: %s" % (out + ".strace"))
    return end


def run_backend(kind, args, tmp):
    if kind == "mysql":
        _, db = common.mysql_temp_db()
    else:
        db = os.path.join(tmp, "site-%d.db" % os.getpid())
    # the service's own defaults (outbox poll 1 s, watchdog every 15 s), no Slurm
    env = {"SLM_OUTBOX_POLL": "1", "SLM_RECONCILE": "off"}
    env.update(kv.split("=", 1) for kv in args.service_env)
    svc = common.Service(db, tmp, env=env)
    try:
        t = time.perf_counter()
        make_jobs(svc, args.jobs, args.interval)
        print("%s: service %s (pid %d); %d jobs made in %.1f s"
              % (kind, svc.url, svc.proc.pid, args.jobs, time.perf_counter() - t))
        interval = args.interval
        if not args.unpaced:
            # every job beats once (not measured), and then beats at the pace the
            # service's answers ask for, as slm.py's wrapper does
            primer = Beater(svc.host, svc.port, interval)
            for i in range(args.jobs):
                primer.beat("site-%d" % i, time.time())
            pace = json.loads(primer.body.decode()).get("pace") or 0
            primer.close()
            interval = max(interval, float(pace))
            print("  paced: the service asks each job for a heartbeat every %g s at the most "
                  "(%d jobs beating); the load follows: %.1f beats/s"
                  % (pace, args.jobs, args.jobs / interval))
        db_pid = mariadbd_pid() if kind == "mysql" else None
        if kind == "mysql" and db_pid is None:
            print("  (mariadbd's pid file is not readable here: no mariadbd CPU)")
        meter = Meter(svc.proc.pid, db_pid, kind == "mysql")
        # idle: the service and the server doing nothing for us
        a = meter.snap()
        time.sleep(args.idle)
        idle = Meter.delta(a, meter.snap())
        # warm-up, then the measured window, back to back on one schedule
        t0 = time.perf_counter() + 0.05
        warm = load(svc, args.jobs, interval, args.threads, args.warmup, t0, 0,
                    args.keep_alive)
        first = max(s["next"] for s in warm)
        first += (-first) % args.threads       # each thread keeps its own residue
        t1 = t0 + (first) * interval / float(args.jobs)
        profiled = profile_tools(args, svc.proc.pid, args.seconds,
                                 os.path.join(args.profile_dir or tmp, "site-%s" % kind))
        a = meter.snap()
        stats = load(svc, args.jobs, interval, args.threads, args.seconds, t1, first,
                     args.keep_alive)
        busy = Meter.delta(a, meter.snap())
        rss, hwm = proc_status(svc.proc.pid, "VmRSS"), proc_status(svc.proc.pid, "VmHWM")
        sizes = {}
        if kind == "sqlite":
            for suffix in ("", "-wal"):
                try:
                    sizes[suffix or "db"] = os.path.getsize(db + suffix)
                except OSError:
                    sizes[suffix or "db"] = 0
        beaten = common.count_rows(db, "slurm_jobs")
    finally:
        svc.stop()
    lat = [x for s in stats for x in s["lat"]]
    lag = [x for s in stats for x in s["lag"]]
    ok = sum(s["ok"] for s in stats)
    bad = sum(s["bad"] for s in stats)
    secs = busy["secs"]
    offered = args.jobs / float(interval)
    share = busy["svc"] / secs
    r = {"kind": kind, "share": share, "per_beat": busy["svc"] / max(ok, 1),
         "idle_share": idle["svc"] / idle["secs"], "p50": pct(lat, 50), "p99": pct(lat, 99),
         "max": max(lat) if lat else float("nan"), "rate": ok / secs, "offered": offered,
         "bad": bad, "lag99": pct(lag, 99), "lagmax": max(lag) if lag else 0.0,
         "rss": rss, "hwm": hwm, "gen": busy["gen"] / secs, "busy": busy, "idle": idle,
         "sizes": sizes, "ok": ok, "interval": interval}
    print("  window %.1f s (idle %.1f s before, warm-up %.1f s), %d sender threads, %s"
          % (secs, idle["secs"], args.warmup, args.threads,
             "one kept connection each" if args.keep_alive else
             "a fresh connection per beat (as slm.py)"))
    print("  heartbeats: %d answered 200 (%d not), %.1f/s of %.1f/s offered; send lag p99"
          " %.1f ms, max %.1f ms" % (ok, bad, r["rate"], offered, r["lag99"] * 1e3,
                                     r["lagmax"] * 1e3))
    print("  latency: p50 %.2f ms, p99 %.2f ms, max %.1f ms"
          % (r["p50"] * 1e3, r["p99"] * 1e3, r["max"] * 1e3))
    print("  service CPU: %.2f %% of one core under load (%.0f us per heartbeat); idle %.2f %%"
          % (share * 100, r["per_beat"] * 1e6, r["idle_share"] * 100))
    print("  service memory: VmRSS %.1f MiB, VmHWM %.1f MiB" % (rss / 1048576.0,
                                                               hwm / 1048576.0))
    print("  generator (this process) CPU: %.2f %% of one core" % (r["gen"] * 100))
    print("  service writes: %.1f MiB to disk (write_bytes), %.1f MiB written (wchar),"
          " %d write calls = %.0f B, %.2f calls per heartbeat"
          % (busy["svc_write_bytes"] / 1048576.0, busy["svc_wchar"] / 1048576.0,
             busy["svc_syscw"], busy["svc_wchar"] / float(max(ok, 1)),
             busy["svc_syscw"] / float(max(ok, 1))))
    if kind == "sqlite":
        print("  SQLite files at the end: db %.1f MiB, WAL %.1f MiB"
              % (sizes["db"] / 1048576.0, sizes["-wal"] / 1048576.0))
    if "db" in busy:
        r["db_share"] = busy["db"] / secs
        r["db_idle"] = idle["db"] / idle["secs"]
        print("  mariadbd CPU: %.2f %% of one core under load, %.2f %% idle (server-wide)"
              % (r["db_share"] * 100, r["db_idle"] * 100))
        print("  mariadbd write_bytes: %.1f MiB under load, %.1f MiB idle (per second: %.0f"
              " vs %.0f kB)" % (busy["db_write_bytes"] / 1048576.0,
                                idle["db_write_bytes"] / 1048576.0,
                                busy["db_write_bytes"] / secs / 1e3,
                                idle["db_write_bytes"] / idle["secs"] / 1e3))
    if "my" in busy:
        print("  MariaDB counters (server-wide), per second under load / idle, per heartbeat:")
        for name in MYSQL_COUNTERS:
            b, i = busy["my"].get(name, 0), idle["my"].get(name, 0)
            print("    %-22s %12.1f %12.1f %10.2f" % (name, b / secs, i / idle["secs"],
                                                       (b - i * secs / idle["secs"]) / max(ok, 1)))
    print("  job rows: %d" % beaten)
    if args.py_spy or args.strace or args.perf:
        print("  PROFILED RUN: the tools slow the service; its CPU above is inflated")
        profiled(ok, r["per_beat"])
    sys.stdout.flush()
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--jobs", type=int, default=10000)
    ap.add_argument("--interval", type=float, default=60.0)
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--warmup", type=float, default=None)
    ap.add_argument("--idle", type=float, default=None)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--keep-alive", action="store_true",
                    help="one kept connection per sender thread (default: one per beat)")
    ap.add_argument("--backend", choices=("sqlite", "mysql", "both"), default="both")
    ap.add_argument("--unpaced", action="store_true",
                    help="every job beats every --interval whatever the service's answers "
                    "ask (default: at the pace they ask, as slm.py does)")
    ap.add_argument("--py-spy", metavar="BIN", help="sample the service with this py-spy")
    ap.add_argument("--strace", action="store_true", help="count the service's system calls")
    ap.add_argument("--perf", action="store_true", help="perf record the service (by DSO)")
    ap.add_argument("--profile-dir", help="where the profiles' raw files stay (default: temp)")
    ap.add_argument("--service-env", action="append", default=[], metavar="NAME=VALUE",
                    help="a setting for the service (e.g. SLM_SWITCH_INTERVAL=0.005)")
    args = ap.parse_args()
    args.seconds = args.seconds or (15.0 if args.quick else 60.0)
    args.warmup = args.warmup if args.warmup is not None else (3.0 if args.quick else 10.0)
    args.idle = args.idle if args.idle is not None else (3.0 if args.quick else 10.0)
    common.header("site: %d running jobs, a heartbeat each every %g s (%.0f/s), %g s measured%s"
                  % (args.jobs, args.interval, args.jobs / args.interval, args.seconds,
                     "; service with " + " ".join(args.service_env) if args.service_env
                     else ""))
    print("load:        %s" % common.load_average())
    tmp = common.tempdir("site")
    kinds = [k for k in ("sqlite", "mysql") if args.backend in (k, "both")]
    if "mysql" in kinds and not common.mysql_available():
        kinds.remove("mysql")
    for kind in kinds:
        r = run_backend(kind, args, tmp)
        extra = ""
        if "db_share" in r:
            extra = "; mariadbd %.1f %% (idle %.1f %%)" % (r["db_share"] * 100,
                                                          r["db_idle"] * 100)
        result("site %s %d jobs / %gs heartbeats%s%s: service CPU" % (
            kind, args.jobs, args.interval, ", kept connections" if args.keep_alive else "",
            " (unpaced)" if args.unpaced else " (paced: every %gs)" % r["interval"]),
               "%.1f %% of a core (%.0f us/beat, idle %.1f %%)%s; p50 %.1f ms, p99 %.1f ms;"
               " %.0f/%.0f beats/s; RSS %.0f MiB; generator %.1f %%"
               % (r["share"] * 100, r["per_beat"] * 1e6, r["idle_share"] * 100, extra,
                  r["p50"] * 1e3, r["p99"] * 1e3, r["rate"], r["offered"],
                  r["rss"] / 1048576.0, r["gen"] * 100),
               "<= 5 % of one core", r["share"] <= TARGET)
    print("load:        %s" % common.load_average())


if __name__ == "__main__":
    main()
