"""A job for the tests: reports the signals it gets, then behaves as told.

    child.py [--exit N] [--ignore-term] [--sleep S] [--grandchild]

Prints "ready <pid>" once its handlers are installed, then one line per signal
("got SIGTERM"), flushing each, so a test can await them on the pipe.
On SIGTERM/SIGINT/SIGHUP it exits with 100 + the signal number unless
--ignore-term; it exits N when its sleep ends.  Python 3.6 compatible.
"""
import os
import signal
import sys
import time

args = sys.argv[1:]
exit_code = int(args[args.index("--exit") + 1]) if "--exit" in args else 0
sleep = float(args[args.index("--sleep") + 1]) if "--sleep" in args else 60.0
ignore_term = "--ignore-term" in args


def say(text):
    os.write(1, (text + "\n").encode())


def on_signal(signum, frame):
    name = signal.Signals(signum).name
    say("got %s" % name)
    if signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP) and not ignore_term:
        # give a second copy of the signal a moment to show up, so tests can count
        time.sleep(0.3)
        os._exit(100 + signum)


for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2,
            signal.SIGCONT):
    signal.signal(sig, on_signal)

if "--grandchild" in args:
    # a grandchild in the same process group, like a bash script's foreground command
    pid = os.fork()
    if pid == 0:
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(sig, lambda s, f: (say("grandchild got %s" % signal.Signals(s).name),
                                             os._exit(0) if s == signal.SIGTERM else None))
        say("grandchild ready %d" % os.getpid())
        time.sleep(sleep)
        os._exit(0)

say("ready %d" % os.getpid())
end = time.time() + sleep
while time.time() < end:
    time.sleep(0.05)
sys.exit(exit_code)
