#!/usr/bin/env python3
"""The same service under different HTTP servers (bench/servers.py [--quick]).

slm_api.py's own threaded HTTP/1.1 server against the WSGI servers that
serve `slm_api:application` (the same service, built the same way): gunicorn
(gthread: 1 worker x 64 threads, and 2 workers x 32 threads) and, when they
are installed, waitress and cheroot.  SQLite in a temp dir; 1 and 32
keep-alive clients posting single events (bench/ingest.py's clients), the
servers interleaved round by round.  Reported: events/s and p99 per server,
and each as a ratio to the built-in server of the same round.
"""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import ingest  # noqa: E402
from common import median, result  # noqa: E402

BIN = os.path.dirname(common.SERVICE_PY)


class WsgiServer(common.scaffold.WsgiProcess):
    """A WSGI server serving slm_api:application (the scaffold's), started at once."""

    def __init__(self, name, argv, db, workdir):
        common.scaffold.WsgiProcess.__init__(self, argv, db, workdir, name=name, env={
            "SLM_RECONCILE": "off", "SLM_OUTBOX_POLL": "1"})
        self.host = "127.0.0.1"
        common.on_exit(self.kill)
        self.start(timeout=30)

    def stop(self):
        try:
            common.scaffold.WsgiProcess.stop(self)
        except AssertionError:
            self.kill()


def servers():
    """(name, argv or None for the built-in one) of what is installed here."""
    found = [("slm_api.py", None)]
    gunicorn = os.path.join(BIN, "gunicorn")
    if os.path.exists(gunicorn):
        found.append(("gunicorn gthread 1x64", [gunicorn, "-b", "127.0.0.1:PORT", "-w", "1",
                                                "-k", "gthread", "--threads", "64",
                                                "slm_api:application"]))
        found.append(("gunicorn gthread 2x32", [gunicorn, "-b", "127.0.0.1:PORT", "-w", "2",
                                                "-k", "gthread", "--threads", "32",
                                                "slm_api:application"]))
    for module, argv in (("waitress", [common.SERVICE_PY, "-m", "waitress", "--port=PORT",
                                       "--host=127.0.0.1", "--threads=32",
                                       "slm_api:application"]),
                         ("cheroot", [common.SERVICE_PY, "-m", "cheroot", "--bind",
                                      "127.0.0.1:PORT", "--threads", "32",
                                      "slm_api:application"])):
        if subprocess.run([common.SERVICE_PY, "-c", "import " + module],
                          stderr=subprocess.DEVNULL).returncode == 0:
            found.append((module, argv))
    return found


def main():
    seconds = 1.5 if common.QUICK else 4.0
    rounds = 1 if common.QUICK else 3
    common.header("servers: the same service under different HTTP servers (SQLite)")
    tmp = common.tempdir("servers")
    found = servers()
    figures = dict(((name, c), []) for name, _ in found for c in (1, 32))
    for r in range(rounds):
        for name, argv in found:
            db = os.path.join(tmp, "s-%d-%s.db" % (r, name.replace(" ", "_")))
            svc = common.Service(db, tmp) if argv is None else WsgiServer(name, argv, db, tmp)
            try:
                for c in (1, 32):
                    figures[(name, c)].append(ingest.run_clients(svc, c, 1, seconds,
                                                                 "srv%d" % r))
            finally:
                svc.stop()
    base = dict((c, median([x["eps"] for x in figures[("slm_api.py", c)]])) for c in (1, 32))
    for name, _ in found:
        for c in (1, 32):
            eps = median([x["eps"] for x in figures[(name, c)]])
            p99 = median([x["p99"] for x in figures[(name, c)]])
            print("  %-24s C=%-3d %8.0f ev/s  p99 %6.1f ms  %.2fx" % (name, c, eps, p99 * 1e3,
                                                                      eps / base[c]))
            result("server %s, single events, %d clients" % (name, c),
                   "%.0f ev/s = %.2fx slm_api.py's own; p99 %.1f ms" % (eps, eps / base[c],
                                                                        p99 * 1e3))


if __name__ == "__main__":
    main()
