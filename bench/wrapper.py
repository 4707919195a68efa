#!/usr/bin/env python3
"""Wrapper overhead of `slm.py run` (bench/wrapper.py [--quick] [--runs N]).

What is timed (wall clock, perf_counter around Popen + os.wait4, stdout/stderr
to /dev/null), interleaved run by run so that noise from other processes hits
baseline and subject alike:

  floor      PY -c "import json, urllib.request, subprocess, signal, argparse;
             subprocess.call(['true'])"  (what any Python wrapper pays at least;
             issue #26's floor)
  (a)        PY slm.py run -- true      no SLM_API_URL, no SLM_WEBHOOK
  (b)        ... SLM_API_URL = a real slm_api.py on SQLite (reachable)
  (c)        ... SLM_API_URL = a closed port (connection refused)
  (d)        ... SLM_API_URL = a socket that listens and never accepts
             (black hole), SLM_TIMEOUT=1
  (e)-(g)    (a), (b) and (c) with slm loaded from its compiled cache, as the batch
             script `slm submit` generates and the README's fast exec line do:
             PY -I -c "import sys; sys.path.insert(0, DIR); import slm; ..."
  (h)        (b) with slm_api.py on MariaDB (when it answers): the original's
             service has MariaDB only
  original   with SLM_BENCH_ORIGINAL (see bench/original.py): the original's
             wrapper under the same PY, `PY ORIGINAL/slm run -- true`, with
             (oa) nothing configured, (ob) its service up (on MariaDB),
             (oc) its service refused, interleaved with the rows above

Every slm run gets a fresh, empty SLM_SPOOL_DIR (removed afterwards, outside
the timing), so spooled events from earlier runs never add work.  PY is the
real interpreter path (never a pyenv shim), printed in the header.

Child start delay: the child is `/bin/sh -c 'date +%s.%N'`, which prints the
wall-clock time at which it runs.  "slm's own start" is taken as the moment the
interpreter starts executing slm.py's first statement: a tiny launcher
`PY -c "code=compile(slm.py); t=time.time(); exec(code, __main__)"` prints t
on stderr (and how long the compile took, which `python3 slm.py` pays on
every run too, because a script is never cached as .pyc), so
    delay = child_timestamp - t_slm_start - sh_cost
where sh_cost (exec + start of sh and date, measured by spawning the same
`/bin/sh -c date` straight from this script, interleaved) is subtracted.  This
delay therefore includes slm.py's own module imports, argument parsing, spool
setup and the fork/exec: a little stricter than "from main()".  A second
estimate without the launcher is printed too: child_timestamp - spawn_time -
bare interpreter start (`PY -c "import time; print(time.time())"`) - sh_cost.

Exit delay: time from the child's timestamp (the child ends right after it) to
the moment slm's process has been reaped.  Target in (d): <= SLM_TIMEOUT (1 s).

Peak RSS: ru_maxrss of the reaped process from os.wait4 (that process and its
reaped descendants; `true`/`sh` are tiny, so it is the interpreter's).

Targets (printed PASS/MISS, never asserted): median time <= 1.15x the floor
in (a), (b), (c); child start <= 5 ms after slm's own start in (d); exit delay
<= SLM_TIMEOUT in (d); issue #26: (a), (b)/(h), (c) each <= the original's
(oa), (ob), (oc), and each plain-file row within 1.15x of its cached row plus
the measured compile time.
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import original  # noqa: E402
from common import PY, SLM, median, result, verdict  # noqa: E402

DATE_CHILD = ["/bin/sh", "-c", "date +%s.%N"]
LAUNCHER = ("import sys, time; p = sys.argv[1]; c0 = time.perf_counter(); "
            "code = compile(open(p).read(), p, 'exec'); c1 = time.perf_counter(); "
            "t = time.time(); sys.stderr.write('T0 %r %r\\n' % (t, c1 - c0)); sys.stderr.flush(); "
            "sys.argv = sys.argv[1:]; "
            "exec(code, {'__name__': '__main__', '__file__': p, '__builtins__': __builtins__})")


# issue #26's floor: a Python that imports what a wrapper needs and runs the command
FLOOR = "import json, urllib.request, subprocess, signal, argparse; subprocess.call(['true'])"

# the README's fast exec line: slm imported (from __pycache__), not compiled as a script
CACHED = ("import sys; sys.path.insert(0, %r); import slm; sys.exit(slm.main())"
          % os.path.dirname(SLM))


def clean_env():
    return dict((k, v) for k, v in os.environ.items()
                if not k.startswith(("SLM_", "SLURM_")))


def run(argv, env=None, capture=False):
    """-> (seconds, maxrss_kib, stdout, stderr, wall_spawn, wall_end)"""
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    wall0 = time.time()
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                         universal_newlines=True)
    so, se = "", ""
    if capture:
        so = p.stdout.read()
        se = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    t1 = time.perf_counter()
    wall1 = time.time()
    p.returncode = os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") \
        else status
    if capture:
        p.stdout.close()
        p.stderr.close()
    return t1 - t0, ru.ru_maxrss, so, se, wall0, wall1


def child_ts(stdout):
    for line in stdout.splitlines():
        try:
            return float(line.strip())
        except ValueError:
            continue
    raise RuntimeError("no timestamp from the child in %r" % stdout)


COMPILE = []


def launcher_ts(stderr):
    for line in stderr.splitlines():
        if line.startswith("T0 "):
            t, c = line[3:].split()
            COMPILE.append(float(c))
            return float(t)
    raise RuntimeError("no launcher timestamp in %r" % stderr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int, default=None)
    args = ap.parse_args()
    runs = args.runs or (10 if args.quick else 30)
    runs_d = 4 if args.quick else runs

    common.header("wrapper overhead: slm.py run -- true  (%d runs, %d in (d), interleaved)"
                  % (runs, runs_d))
    tmp = common.tempdir("wrapper")
    service = common.Service(os.path.join(tmp, "slm.db"), tmp)
    mysql_service = None
    if common.mysql_available():
        mysql_service = common.Service(common.mysql_temp_db()[1], tmp)
    orig_why = original.missing()
    orig_service_why = orig_why or original.service_missing()
    orig_service = None
    if orig_why:
        print("original: skipped: %s" % orig_why)
    else:
        print("original: %s" % original.describe())
        if orig_service_why:
            print("original: its service rows skipped: %s" % orig_service_why)
        else:
            orig_service = original.Service(tmp)
            print("original: its service %s (%s, MariaDB database %s)"
                  % (orig_service.url, original.ORIGINAL_PY, orig_service.dbname))
    orig_no_db = subprocess.run([PY, "-c", "import pymysql"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL).returncode == 0
    if not orig_why:
        print("original: nothing configured = no SLURM_JOB_ID%s" % (
            " and --no-db (PY has pymysql: it would try the MySQL on localhost)" if orig_no_db
            else " (PY has no pymysql: its login-node database path is off)"))
    refused_port = common.free_port()
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(4096)   # never accept()ed
    common.on_exit(hole.close)
    base_env = clean_env()
    scenarios = [
        ("a", "no targets", {}),
        ("b", "service reachable (SQLite)", {"SLM_API_URL": service.url}),
        ("c", "service refused", {"SLM_API_URL": "http://127.0.0.1:%d" % refused_port}),
        ("d", "service black-holed, SLM_TIMEOUT=1",
         {"SLM_API_URL": "http://127.0.0.1:%d" % hole.getsockname()[1], "SLM_TIMEOUT": "1"}),
    ]
    cached = [("e", "no targets, compiled cache", {}),
              ("f", "service reachable, compiled cache",
               {"SLM_API_URL": service.url}),
              ("g", "service refused, compiled cache",
               {"SLM_API_URL": "http://127.0.0.1:%d" % refused_port})]
    if mysql_service is not None:
        scenarios.append(("h", "service reachable (MariaDB)", {"SLM_API_URL": mysql_service.url}))
    originals = []
    if not orig_why:
        originals.append(("oa", "original, nothing configured", {}))
        if orig_service is not None:
            originals.append(("ob", "original, its service up (MariaDB)",
                              {"SLM_API_URL": orig_service.url}))
        originals.append(("oc", "original, its service refused",
                          {"SLM_API_URL": "http://127.0.0.1:%d" % refused_port}))
    times = dict((k, []) for k in ["base"] + [s[0] for s in scenarios + cached + originals])
    rss = dict((k, []) for k in times)
    start = dict((k, []) for k in times)      # launcher method
    start2 = dict((k, []) for k in times)     # subtraction method
    exitd = dict((k, []) for k in times)
    sh_cost, py_cost = [], []
    counter = [0]

    def slm_env(extra):
        counter[0] += 1
        env = dict(base_env)
        env.update(extra)
        env["SLM_SPOOL_DIR"] = os.path.join(tmp, "spool-%d" % counter[0])
        return env

    def orig_env(extra):
        counter[0] += 1
        env = dict(base_env)
        env.update(extra)
        if extra:     # a target: the original posts only from inside a job (a new one)
            env["SLURM_JOB_ID"] = str(900000 + counter[0])
        return env

    # warm the page cache once, and write slm's compiled cache (__pycache__)
    run([PY, SLM, "run", "--", "true"], slm_env({}))
    run([PY, "-I", "-c", CACHED, "run", "--", "true"], slm_env({}))
    for key, _, extra in originals:   # and the original's (its package's __pycache__)
        run(original.wrapper_argv(PY, orig_no_db and not extra), orig_env(extra))
    for i in range(max(runs, runs_d)):
        # the floor
        t1, r1, *_ = run([PY, "-c", FLOOR], base_env)
        times["base"].append(t1)
        rss["base"].append(r1)
        # bare costs for the start-delay estimates
        _, _, so, _, w0, _ = run(DATE_CHILD, base_env, capture=True)
        sh_cost.append(child_ts(so) - w0)
        _, _, so, _, w0, _ = run([PY, "-c", "import time; print(time.time())"], base_env,
                                 capture=True)
        py_cost.append(child_ts(so) - w0)
        for key, _, extra in originals:
            if i < runs:
                t, r, *_ = run(original.wrapper_argv(PY, orig_no_db and not extra),
                               orig_env(extra))
                times[key].append(t)
                rss[key].append(r)
        for key, _, extra in cached:
            if i < runs:
                env = slm_env(extra)
                t, r, *_ = run([PY, "-I", "-c", CACHED, "run", "--", "true"], env)
                shutil.rmtree(env["SLM_SPOOL_DIR"], ignore_errors=True)
                times[key].append(t)
                rss[key].append(r)
        for key, _, extra in scenarios:
            if key == "d" and i >= runs_d:
                continue
            if i >= runs and key != "d":
                continue
            env = slm_env(extra)
            t, r, *_ = run([PY, SLM, "run", "--", "true"], env)
            shutil.rmtree(env["SLM_SPOOL_DIR"], ignore_errors=True)
            times[key].append(t)
            rss[key].append(r)
            # child start and exit delay (separate run, via the launcher)
            env = slm_env(extra)
            _, _, so, se, w0, w1 = run([PY, "-c", LAUNCHER, SLM, "run", "--"] + DATE_CHILD,
                                       env, capture=True)
            shutil.rmtree(env["SLM_SPOOL_DIR"], ignore_errors=True)
            c = child_ts(so)
            start[key].append(c - launcher_ts(se))
            exitd[key].append(w1 - c)
            env = slm_env(extra)
            _, _, so, _, w0, _ = run([PY, SLM, "run", "--"] + DATE_CHILD, env, capture=True)
            shutil.rmtree(env["SLM_SPOOL_DIR"], ignore_errors=True)
            start2[key].append(child_ts(so) - w0)

    sh = median(sh_cost)
    pyc = median(py_cost)
    base = median(times["base"])
    print("floor (PY -c \"%s\"): median %.1f ms, peak RSS %.1f MiB"
          % (FLOOR, base * 1e3, median(rss["base"]) / 1024.0))
    print("bare costs: sh+date %.2f ms, interpreter to first statement %.1f ms"
          % (sh * 1e3, pyc * 1e3))
    print()
    print("%-38s %9s %7s %9s %9s %9s %9s" % ("scenario", "median", "ratio", "start*", "start**",
                                            "exit", "RSS"))
    for key, label, _ in scenarios:
        m = median(times[key])
        s1 = median(start[key]) - sh
        s2 = median(start2[key]) - pyc - sh
        e = median(exitd[key])
        print("%-38s %7.1fms %6.2fx %7.2fms %7.2fms %7.1fms %6.1fMiB"
              % ("(%s) %s" % (key, label), m * 1e3, m / base, s1 * 1e3, s2 * 1e3, e * 1e3,
                 median(rss[key]) / 1024.0))
    for key, label, _ in cached + originals:
        m = median(times[key])
        print("%-38s %7.1fms %6.2fx %9s %9s %9s %6.1fMiB" % ("(%s) %s" % (key, label[:34]),
              m * 1e3, m / base, "", "", "", median(rss[key]) / 1024.0))
    print("  * child start after slm.py's first statement runs (launcher method, sh cost removed)")
    print("    compiling slm.py (done on every run: a script is never cached as .pyc) takes"
          " %.1f ms more, before that" % (median(COMPILE) * 1e3))
    print("  ** child start after spawn minus bare interpreter start and sh cost")
    print()
    for key, label, _ in scenarios[:3] + scenarios[4:]:
        m = median(times[key])
        result("wrapper (%s) %s" % (key, label),
               "%.1f ms = %.2fx floor %.1f ms" % (m * 1e3, m / base, base * 1e3),
               "<= 1.15x", m / base <= 1.15)
    for key, label, _ in cached:
        m = median(times[key])
        result("wrapper (%s) %s" % (key, label),
               "%.1f ms = %.2fx floor %.1f ms" % (m * 1e3, m / base, base * 1e3),
               "<= 1.15x", m / base <= 1.15)
    # issue #26: the plain file costs its cached row plus the compile, and no more
    compile_s = median(COMPILE)
    for plain, cache in (("a", "e"), ("b", "f"), ("c", "g")):
        m, c = median(times[plain]), median(times[cache])
        result("wrapper (%s) plain file vs (%s) cached + compile" % (plain, cache),
               "%.1f ms = %.2fx (%.1f + %.1f ms)" % (m * 1e3, m / (c + compile_s), c * 1e3,
                                                    compile_s * 1e3),
               "<= 1.15x", m / (c + compile_s) <= 1.15)
    # issue #26: every P1 row no slower than the original's, in the same run
    if orig_why:
        original.skipped_result("wrapper (a)-(c)")
    else:
        pairs = [("a", "oa")]
        if orig_service is not None:
            pairs += [("b", "ob")] + ([("h", "ob")] if "h" in times else [])
        pairs += [("c", "oc")]
        for ours, theirs in pairs:
            m, o = median(times[ours]), median(times[theirs])
            label = [lb for k, lb, _ in scenarios if k == ours][0]
            result("wrapper (%s) %s vs the original (%s)" % (ours, label, theirs),
                   "%.1f ms = %.2fx original %.1f ms (original %.2fx floor)"
                   % (m * 1e3, m / o, o * 1e3, o / base), "<= 1.00x", m <= o)
        for ours, theirs in (("e", "oa"), ("f", "ob"), ("g", "oc")):
            if theirs in times and times[theirs]:
                m, o = median(times[ours]), median(times[theirs])
                result("wrapper (%s) cached vs the original (%s)" % (ours, theirs),
                       "%.1f ms = %.2fx original %.1f ms" % (m * 1e3, m / o, o * 1e3))
        if orig_service is not None:
            orig_service.stop()
    s1 = median(start["d"]) - sh
    result("wrapper (d) child start after slm start", "%.2f ms (alt. estimate %.2f ms)"
           % (s1 * 1e3, (median(start2["d"]) - pyc - sh) * 1e3), "<= 5 ms", s1 <= 0.005)
    e = median(exitd["d"])
    result("wrapper (d) exit delay after child end", "%.0f ms (max %.0f ms)"
           % (e * 1e3, max(exitd["d"]) * 1e3), "<= SLM_TIMEOUT = 1000 ms", max(exitd["d"]) <= 1.0)
    result("wrapper peak RSS (a)", "%.1f MiB vs floor %.1f MiB"
           % (median(rss["a"]) / 1024.0, median(rss["base"]) / 1024.0))
    print("verdicts: " + ", ".join("%s %s" % (r[0], verdict(r[3])) for r in common.RESULTS
                                   if r[3] is not None))


if __name__ == "__main__":
    main()
