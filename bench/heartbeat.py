#!/usr/bin/env python3
"""What heartbeats cost a running job (bench/heartbeat.py [--quick]).

The job is CPU-bound: a fixed amount of pure-Python work that times itself
(perf_counter around the loop, printed by the child) so that slm's own start
and end are not counted, only what its watching thread takes from the job
while it runs.  Interleaved run by run, on a real slm_api.py (SQLite):

  plain      PY -c WORK                                  (no slm at all)
  beats off  PY slm.py run -- PY -c WORK   SLM_HEARTBEAT=0
  beats 1 s  PY slm.py run -- PY -c WORK   SLM_HEARTBEAT=1 (60 x the default's rate)

Each heartbeat reads /proc for the job tree's RSS and CPU time, sizes the
output files and posts one small request.  Target (printed, never asserted):
the job's own time with heartbeats every second <= 1.02x plain.
"""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import PY, SLM, median, result  # noqa: E402

WORK = ("import time\nt = time.perf_counter()\nx = 0\nfor i in range(%d):\n    x += i * i %% 7\n"
        "print(time.perf_counter() - t)\n")


def work_seconds(argv, env):
    out = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, check=True).stdout.decode()
    return float(out.strip().splitlines()[-1])


def main():
    common.header("heartbeat cost to a CPU-bound job")
    runs = 5 if common.QUICK else 15
    loops = 8000000 if common.QUICK else 20000000
    tmp = common.tempdir("slm-bench-beat-")
    service = common.Service(os.path.join(tmp, "slm.db"), tmp)
    base = dict((k, v) for k, v in os.environ.items() if not k.startswith(("SLM_", "SLURM_")))
    child = [PY, "-c", WORK % loops]
    cases = [("plain", child, base)]
    for name, beat in (("beats off", "0"), ("beats 1 s", "1")):
        env = dict(base, SLM_API_URL=service.url, SLM_HEARTBEAT=beat,
                   SLM_SPOOL_DIR=os.path.join(tmp, "spool-" + beat))
        cases.append((name, [PY, SLM, "-q", "run", "--"] + child, env))
    times = dict((name, []) for name, _, _ in cases)
    for _ in range(runs):
        for name, argv, env in cases:
            times[name].append(work_seconds(argv, env))
    plain = median(times["plain"])
    for name, _, _ in cases:
        print("%-10s median %.3f s  (%s)" % (name, median(times[name]),
                                             " ".join("%.3f" % t for t in times[name])))
    # the beats did arrive (else this measured nothing)
    beaten = [j for j in service.jobs() if j.get("heartbeat_interval") == 1.0 and
              j.get("heartbeat_at")]
    print("jobs whose heartbeats the service got: %d of %d" % (len(beaten), runs))
    off, on = median(times["beats off"]), median(times["beats 1 s"])
    result("heartbeat: job's own CPU time, beats every 1 s",
           "%.3f s = %.3fx plain %.3f s (beats off %.3fx)" % (on, on / plain, plain, off / plain),
           "<= 1.02x plain", on / plain <= 1.02)
    service.stop()


if __name__ == "__main__":
    main()
