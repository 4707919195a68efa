#!/usr/bin/env python3
"""slm - the Slurm Lifecycle Monitor.

Wrap a Slurm job and learn when it was submitted, started, paused, resumed,
cancelled, timed out, failed or finished, without changing the job's logic.
One file, Python standard library only, CPython 3.6 or newer: copy it to a
shared directory and run it.

    python3 slm.py setup                     first run: where notices go, and a test
    python3 slm.py run -- CMD [ARGS...]      run CMD and report its life
    python3 slm.py submit [sbatch options] SCRIPT [ARGS...]
                                             sbatch SCRIPT, monitored, unmodified
    python3 slm.py submit [sbatch options] --wrap "CMD"
    python3 slm.py notify MESSAGE            a message from inside a job
    python3 slm.py status JOB | list | events JOB | watch JOB    (JOB: an id, last, a name)
    python3 slm.py flush | spool | doctor    the spool: deliver, list, drop; check the set-up

Events go to the SLM service (SLM_API_URL, see slm_api.py) and/or a webhook
(SLM_WEBHOOK); with neither, they are printed on stderr.  Every event is
written to a spool directory before it is sent and removed once delivered, so
an unreachable service delays nothing by more than SLM_TIMEOUT and loses
nothing: a later slm command on any node sharing the spool, or `slm flush`,
delivers it, exactly once (the service ignores an event_id it already has).

Settings (environment first, then the snapshot `slm submit` takes for its
jobs, then ~/.slm/config -- KEY=VALUE lines, mode 600 if it holds secrets):
    SLM_API_URL       base URL of the service, e.g. http://login1:9008
    SLM_API_TOKEN     bearer token the service expects (never printed)
    SLM_WEBHOOK       URL(s), comma-separated, that receive each event as JSON
    SLM_SPOOL_DIR     spool directory (default ~/.slm/spool; shared filesystem)
    SLM_TIMEOUT       seconds per request, and most slm waits at exit (default 2)
    SLM_SBATCH        sbatch to run (default: sbatch on PATH)
    SLM_PYTHON        interpreter for submitted jobs (default: this one)
    SLM_CONFIG        another configuration file instead of ~/.slm/config

Exit status: `run` exits with the command's status, and dies of the signal
that killed the command (as the command did, for the shell or Slurm that
waits; 127 not found, 126 not executable); `submit` with sbatch's; other
commands 0 on success, 1 on failure, 2 on bad usage, 3 when the service
cannot be reached.  See README.md for everything else.
"""

import errno
import json
import os
import signal
import sys
import threading
import time

# argparse, hashlib, socket, subprocess and urllib are imported where they are
# used: `slm run` starts the job first, and each import before it delays it.

__version__ = "0.1.0"

# ---------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------

EVENT_SCHEMA = "slm.event/1"

# Every status SLM knows, one row each, in the order a job normally lives them;
# every other set of statuses, in slm.py and in the service, is derived from it
# (adding a status is adding a row).  The columns:
#   phase    where the job is: waiting (to run), running, signal (a signal reached
#            the running job), paused, ending (stopping on a signal), note (a warning
#            about a job that runs on: never the job's status), requeued (a run
#            ended, the job runs again), final (its end), lost (silent: the
#            service's finding, until Slurm says more)
#   kind     its colour class on the dashboard (the name is always written too)
#   urgency  of a notice on a phone: low, normal, high
#   failed   an ending that counts as a failure (a cancel is a choice)
#   words    the SLM_NOTIFY_ON words that include it, besides "all": SLM's own
#            (default, final, failures, warnings) and Slurm's --mail-type words
#            (begin, end, fail, requeue, time_limit*, invalid_depend), any case
#   asked    whether the service's watchdog asks Slurm about a job in it, every
#            round (its story is open: Slurm may have ended it meanwhile)
class Status(object):
    """One row of STATUS_TABLE."""

    __slots__ = ("name", "phase", "kind", "urgency", "failed", "words", "asked")

    def __init__(self, *row):
        for name, value in zip(self.__slots__, row):
            setattr(self, name, value)


STATUS_TABLE = tuple(Status(*row) for row in (
    # name             phase       kind    urgency   failed words    asked
    ("SUBMITTED",      "waiting",  "wait", "low",    False, "",      True),
    ("SUBMIT_FAILED",  "final",    "bad",  "high",   True,  "default final failures end fail",
     False),
    ("PENDING",        "waiting",  "wait", "high",   False, "default failures invalid_depend",
     True),
    ("RUNNING",        "running",  "run",  "low",    False, "default begin", True),
    ("PAUSED",         "paused",   "pause", "low",   False, "default", True),
    ("RESUMED",        "running",  "run",  "low",    False, "default", True),
    ("SIGNALED",       "signal",   "run",  "normal", False, "",      True),
    ("TIME_WARNING",   "note",     "warn", "high",   False, "default warnings time_limit "
     "time_limit_50 time_limit_80 time_limit_90", False),
    ("MEMORY_WARNING", "note",     "warn", "high",   False, "default warnings", False),
    ("STALLED",        "note",     "warn", "normal", False, "default warnings", False),
    # what the job says itself (`slm notify`): a note, never its status
    ("MESSAGE",        "note",     "note", "normal", False, "default", False),
    ("TASK_ENDED",     "note",     "note", "normal", False, "",      False),
    ("TERMINATING",    "ending",   "end",  "normal", False, "",      True),
    ("REQUEUED",       "requeued", "wait", "normal", False, "default requeue", True),
    ("COMPLETED",      "final",    "ok",   "normal", False, "default final end", False),
    ("FAILED",         "final",    "bad",  "high",   True,  "default final failures end fail",
     False),
    ("CANCELLED",      "final",    "off",  "normal", False, "default final failures end", False),
    ("TIMEOUT",        "final",    "late", "high",   True,  "default final failures end fail",
     False),
    ("OUT_OF_MEMORY",  "final",    "bad",  "high",   True,  "default final failures end fail",
     False),
    ("NODE_FAIL",      "final",    "bad",  "high",   True,  "default final failures end fail",
     False),
    ("PREEMPTED",      "final",    "off",  "normal", False, "default final end", False),
    ("LOST",           "lost",     "lost", "high",   True,  "default final failures end fail",
     True),
))
STATUS = dict((s.name, s) for s in STATUS_TABLE)
STATUSES = tuple(s.name for s in STATUS_TABLE)


def statuses_where(test):
    """The statuses (a frozenset) whose row passes test(row)."""
    return frozenset(s.name for s in STATUS_TABLE if test(s))


FINAL_STATUSES = statuses_where(lambda s: s.phase == "final")
# how a job ended or was last heard of: final, or LOST (Slurm may still say more)
ENDED = statuses_where(lambda s: s.phase in ("final", "lost"))
NOTES = statuses_where(lambda s: s.phase == "note")          # never a job's status
RUN_ENDS = statuses_where(lambda s: s.phase == "requeued")   # a run ended, not the job
WAITING = statuses_where(lambda s: s.phase == "waiting")
ALIVE = statuses_where(lambda s: s.phase in ("running", "signal", "ending"))
FAILURES = statuses_where(lambda s: s.failed)
SEVERE = statuses_where(lambda s: s.urgency == "high")
CALM = statuses_where(lambda s: s.urgency == "low")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127

DEFAULT_TIMEOUT = 2.0
DEFAULT_SPOOL_DIR = "~/.slm/spool"
DEFAULT_TAIL_LINES = 20    # lines of the job's output in a final notice
TAIL_READ_BYTES = 65536    # never read more than this from the end of an output file
TAIL_MAX_CHARS = 3000      # an event field stays well under the service's 4 KiB

# A SIGTERM this close to the job's end time is Slurm enforcing the time limit
# (it checks periodically, so the signal comes late rather than early).
TIME_LIMIT_WINDOW = 180

# How long a child that died of SIGTERM/SIGINT/SIGHUP waits for the same signal
# to reach us too (then it was a cancel, not a failure).  See Wrapper.
STOP_GRACE = 0.5

# A claim on a spool entry older than this is abandoned (its owner was killed):
# anybody may take it back.  Owners hold claims only for one request.
CLAIM_LEASE = 600

# Most events slm.py sends in one POST (the service accepts up to 1,000).
SEND_BATCH = 500

# si_code of a signal sent by the kernel, e.g. by the terminal for Ctrl-C.
SI_KERNEL = 0x80

# Watching the job from inside (see JobWatch): a heartbeat every
# SLM_HEARTBEAT seconds (the service calls a job LOST after 3 missed), a
# look at memory, time and output every SAMPLE_EVERY seconds.
DEFAULT_HEARTBEAT = 60.0
DEFAULT_MEMORY_WARNING = 90.0   # percent of the job's memory limit
SAMPLE_EVERY = 5.0

# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


class Failure(Exception):
    """An expected failure: main() prints it as one line and exits."""

    exit_code = EXIT_FAILURE


class UsageError(Failure):
    exit_code = EXIT_USAGE


class Unreachable(Failure):
    exit_code = EXIT_UNREACHABLE


class DeliveryError(Exception):
    """A target did not acknowledge.  permanent: retrying cannot help."""

    def __init__(self, reason, permanent=False, status=None, retry_after=None):
        Exception.__init__(self, reason)
        self.reason = reason
        self.permanent = permanent
        self.status = status
        self.retry_after = retry_after   # seconds the target asked us to wait


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


class Console(object):
    """slm's own lines on stderr: quiet silences them, verbose adds detail."""

    def __init__(self, quiet=False, verbose=False, stream=None):
        self.quiet = quiet
        self.verbose = verbose
        self.stream = stream
        self._lock = threading.Lock()
        self._said = set()

    def _write(self, text):
        stream = self.stream or sys.stderr
        with self._lock:
            try:
                stream.write("slm: %s\n" % text)
                stream.flush()
            except (OSError, ValueError):
                pass  # stderr closed or broken: never let that hurt the job

    def say(self, text):
        if not self.quiet:
            self._write(text)

    def say_once(self, key, text):
        """One line per kind of problem, not one per event."""
        if key not in self._said:
            self._said.add(key)
            self.say(text)

    def debug(self, text):
        if self.verbose and not self.quiet:
            self._write(text)

    def error(self, text):
        self._write(text)


def iso_utc(t=None, digits=3):
    """UTC ISO 8601 with a Z, to the millisecond (the service keeps microseconds)."""
    if t is None:
        t = time.time()
    return "%s.%0*dZ" % (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)), digits,
                         int(t % 1 * 10 ** digits))


def parse_utc(text):
    """Seconds since the epoch of an iso_utc() time (any digits), or None."""
    import calendar
    if not isinstance(text, str) or not text:
        return None
    try:
        main, _, fraction = text.rstrip("Z").partition(".")
        seconds = calendar.timegm(time.strptime(main[:19], "%Y-%m-%dT%H:%M:%S"))
        return seconds + (float("0." + fraction) if fraction.isdigit() else 0.0)
    except (ValueError, OverflowError):
        return None


def signal_name(signum):
    try:
        return signal.Signals(signum).name
    except ValueError:
        return "SIG%d" % signum


def clean_text(value):
    """A str that encodes to UTF-8: undecodable argv/env bytes become U+FFFD."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def new_id():
    return os.urandom(16).hex()


def write_durably(path, data, tmp):
    """Write data to path whole or not at all: into tmp (a new name on the same
    filesystem, mode 0600), fsync'd, then renamed over path."""
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def sha1_hex(text):
    """The SHA-1 of text (UTF-8), in hex.  CPython's built-in _sha1 first:
    importing hashlib loads OpenSSL, 5-20 ms of a job's start for a spool key."""
    try:
        from _sha1 import sha1
    except ImportError:
        from hashlib import sha1
    return sha1(text.encode("utf-8", "replace")).hexdigest()


def short_hash(text):
    return sha1_hex(text)[:12]


def hostname():
    return os.uname().nodename   # what socket.gethostname() says, without importing socket


def redact_url(url):
    """scheme://host[:port] only: webhook paths and queries are secrets."""
    try:
        from urllib.parse import urlsplit
        parts = urlsplit(url)
        if not parts.scheme or ":" not in url:
            return "<not a URL>"
        host = parts.hostname or "?"
        if parts.port:
            host = "%s:%d" % (host, parts.port)
        return "%s://%s/…" % (parts.scheme, host) if parts.path not in ("", "/") \
            else "%s://%s" % (parts.scheme, host)
    except ValueError:
        return "<malformed URL>"


def shown_url(url):
    """The service URL as it may be printed: no user:password@, no query."""
    try:
        from urllib.parse import urlsplit, urlunsplit
        parts = urlsplit(url)
        netloc = parts.netloc.rpartition("@")[2]
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        return "<malformed URL>"


def check_http_url(url):
    """Return an error string, or None when url is a usable http(s) URL."""
    from urllib.parse import urlsplit
    try:
        parts = urlsplit(url)
        parts.port  # raises ValueError on a bad port
    except ValueError as e:
        return "malformed URL (%s)" % e
    if parts.scheme not in ("http", "https"):
        return "not an http(s) URL"
    if not parts.hostname:
        return "URL has no host"
    return None


def did_you_mean(word, choices, prefix=""):
    """' (did you mean X?)' for a near miss among choices, else ''; a prefix
    they all share (SLM_) is left out of the likeness."""
    import difflib
    names = dict((c[len(prefix):] if c.startswith(prefix) else c, c) for c in choices)
    bare = word[len(prefix):] if word.startswith(prefix) else word
    close = difflib.get_close_matches(bare, list(names), n=1, cutoff=0.7)
    return " (did you mean %s?)" % names[close[0]] if close else ""


def exit_budget(timeout):
    """How long the last delivery attempt may take, so that slm's exit as a
    whole (interpreter shutdown included) stays within SLM_TIMEOUT."""
    return max(0.05, timeout - min(0.1, timeout * 0.1))


def user_name():
    for var in ("SLURM_JOB_USER", "USER", "LOGNAME"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        import pwd
        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return str(os.getuid())


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_tree(root_pid):
    """(pid, pgid) of every descendant of root_pid, read from /proc."""
    children = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                stat = f.read()
            # fields after "(comm)": state ppid pgrp ...; comm may hold spaces
            fields = stat[stat.rindex(b")") + 2:].split()
            children.setdefault(int(fields[1]), []).append((int(name), int(fields[2])))
        except (OSError, ValueError, IndexError):
            continue
    found, stack = [], [root_pid]
    while stack:
        for pid, pgid in children.get(stack.pop(), ()):
            found.append((pid, pgid))
            stack.append(pid)
    return found


def foreground_tty():
    """True when slm runs in the foreground of a terminal (interactive use)."""
    for fd in (0, 1, 2):
        try:
            if os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp():
                return True
        except OSError:
            continue
    return False


def duration_text(seconds):
    seconds = int(round(seconds))
    if seconds < 60:
        return "%ds" % seconds
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return "%dm%02ds" % (minutes, seconds)
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return "%dh%02dm" % (hours, minutes)
    days, hours = divmod(hours, 24)
    return "%dd%02dh" % (days, hours)


def ending(status, exit_code=None, signal=None):
    """How a job ended, decided here for every reader (the CLI, notices, mail,
    the dashboard): ("signal", "SIGKILL") when a signal ended it, else
    ("exit", 3); None when the status is no ending (a signal that reached a
    running job, a pause, a LOST job whose end nobody saw) or nothing is known."""
    if status not in FINAL_STATUSES:
        return None
    if signal:
        return "signal", str(signal)
    if exit_code is not None:
        return "exit", exit_code
    return None


def ending_text(status, exit_code=None, signal=None):
    """ending() in words: 'SIGKILL', 'exit 3', or None."""
    end = ending(status, exit_code, signal)
    return None if end is None else end[1] if end[0] == "signal" else "exit %s" % end[1]


def record_text(source, corrects=None):
    """'from Slurm's record' (and what it corrects) for Slurm's own verdict;
    None for the wrapper's word."""
    if source == "slurm":
        return "from Slurm's record%s" % (", correcting %s" % corrects if corrects else "")
    return None


def describe_event(event):
    """One line for an event: what slm prints on stderr when no target is set."""
    status = event.get("status", "?")
    parts = ["[%s]" % event.get("job_id", "?"), status]
    if event.get("job_name"):
        parts.append(event["job_name"])
    if status == "RUNNING" and event.get("host"):
        parts.append("on %s" % event["host"])
    end = ending_text(status, event.get("exit_code"), event.get("signal"))
    if end:
        parts.append(end)
    elif event.get("signal"):
        parts.append("signal %s" % event["signal"])
    if event.get("reason"):
        parts.append("(%s)" % event["reason"])
    if event.get("elapsed") is not None:
        parts.append("after %s" % duration_text(event["elapsed"]))
    if event.get("message"):
        parts.append("- %s" % event["message"])
    return " ".join(parts)


def split_destinations(text):
    """SLM_WEBHOOK's destinations: separated by commas, but only by those
    that start a new URL ('scheme:' or 'format+scheme:'), so that
    'mailto:a@x.org,b@y.org' and '...#on=final,warnings' stay one each."""
    import re
    parts = re.split(r",\s*(?=(?:[A-Za-z0-9]+\+)?[A-Za-z][A-Za-z0-9+.-]*:)", text or "")
    return [p.strip() for p in parts if p.strip()]


def parse_duration(text, unit=60):
    """Seconds in '30m', '90s', '1h', '1.5h', '2d' or a bare number (of unit
    seconds); None if not."""
    import re
    m = re.match(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*\Z", text or "")
    if not m:
        return None
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "": unit}[m.group(2)]


def parse_time_warning(text, console=None):
    """SLM_TIME_WARNING: leads before the job's end, largest first: a list
    like '30m,5m'; 'off' or 0 for none; None (unset) for the default."""
    text = (text or "").strip().lower()
    if not text:
        return None
    if text in ("off", "no", "0"):
        return []
    leads = [parse_duration(word) for word in text.split(",") if word.strip()]
    if None in leads or not leads:
        if console is not None:
            console.say_once("time-warning", "ignoring SLM_TIME_WARNING=%r: not a list of "
                             "durations like 30m,5m" % text)
        return None
    return sorted((lead for lead in leads if lead > 0), reverse=True)


# ---------------------------------------------------------------------------
# Job identity and events
# ---------------------------------------------------------------------------


def local_job_id():
    """An id for a job outside Slurm, short enough to type (`slm status last`
    saves even that): the host's name and 40 random bits, unique across hosts
    and, for a host, across a million jobs (local-vm-3f9a1c7e2d)."""
    return "local-%s-%s" % (hostname().split(".")[0], os.urandom(5).hex())


class JobInfo(object):
    """Who this job is, from Slurm's environment (or a local id outside Slurm)."""

    def __init__(self, command=None, name=None, environ=None, group=None):
        env = os.environ if environ is None else environ
        self.slurm_job_id = env.get("SLURM_JOB_ID") or None
        self.array_job_id = env.get("SLURM_ARRAY_JOB_ID") or None
        self.array_task_id = env.get("SLURM_ARRAY_TASK_ID") or None
        # how many tasks the array has: the service's roll-up waits for them all
        count = env.get("SLURM_ARRAY_TASK_COUNT") or ""
        self.array_task_count = int(count) if count.isdigit() else None
        if self.slurm_job_id and self.array_job_id and self.array_task_id:
            self.job_id = "%s_%s" % (self.array_job_id, self.array_task_id)
        elif self.slurm_job_id:
            self.job_id = self.slurm_job_id
        else:
            self.job_id = local_job_id()
        self.command = [clean_text(a) for a in command] if command else None
        self.job_name = name or env.get("SLURM_JOB_NAME") or (
            os.path.basename(self.command[0]) if self.command else None)
        self.partition = env.get("SLURM_JOB_PARTITION") or None
        self.nodelist = env.get("SLURM_JOB_NODELIST") or None
        self.cluster = env.get("SLURM_CLUSTER_NAME") or None
        self.restart_count = env.get("SLURM_RESTART_COUNT") or None
        self.submit_dir = env.get("SLURM_SUBMIT_DIR") or None
        self.procid = env.get("SLURM_PROCID") or None
        self.task_pid = env.get("SLURM_TASK_PID") or None
        # an srun step's task: srun -n N slm.py run -- CMD (a batch script has no step
        # id before 25.11, and -5 since, the batch step's)
        step = env.get("SLURM_STEP_ID") or ""
        self.step_id = step if step.isdigit() else None
        count = env.get("SLURM_STEP_NUM_TASKS") or ""
        self.step_tasks = int(count) if count.isdigit() else None
        self.group = group or None

    def fields(self):
        fields = {
            "job_id": self.job_id,
            "job_name": self.job_name,
            "partition": self.partition,
            "nodelist": self.nodelist,
            "command": self.command,
        }
        for key in ("slurm_job_id", "array_job_id", "array_task_id", "array_task_count",
                    "cluster", "submit_dir", "group"):
            if getattr(self, key):
                fields[key] = getattr(self, key)
        if self.restart_count and self.restart_count != "0":
            fields["restart_count"] = int(self.restart_count) \
                if self.restart_count.isdigit() else self.restart_count
        return fields


class EventFactory(object):
    """The one place events are built: common fields, a sequence, an id."""

    def __init__(self, job):
        self.job = job
        self.seq = 0
        self._common = None
        self._lock = threading.Lock()

    def common(self):
        # computed on first use, after the child has started
        if self._common is None:
            common = {
                "schema": EVENT_SCHEMA,
                "host": hostname(),
                "user": user_name(),
                "cwd": clean_text(os.getcwd()) if os.path.isdir(".") else None,
                "slm_version": __version__,
            }
            common.update(self.job.fields())
            self._common = common
        return self._common

    def make(self, status, **fields):
        assert status in STATUSES, status
        with self._lock:
            self.seq += 1
            seq = self.seq
        event = dict(self.common())
        event.update({"event_id": new_id(), "status": status, "time": iso_utc(), "seq": seq})
        for key, value in fields.items():
            if value is not None:
                event[key] = clean_text(value) if isinstance(value, str) else value
        return event


# ---------------------------------------------------------------------------
# HTTP: the one sender
# ---------------------------------------------------------------------------


class HttpResult(object):
    def __init__(self, status, body, headers=None):
        self.status = status
        self.body = body
        self.headers = headers or {}

    def retry_after(self):
        """Seconds the server asked us to wait (Retry-After), or None."""
        raw = str(self.headers.get("Retry-After") or self.headers.get("retry-after") or "")
        if raw.strip().isdigit():
            return float(raw.strip())
        if raw:
            import email.utils
            try:
                when = email.utils.parsedate_to_datetime(raw)
                return max(0.0, when.timestamp() - time.time())
            except (TypeError, ValueError, IndexError, OverflowError):
                return None
        return None

    def json(self):
        try:
            return json.loads(self.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return None

    def error_text(self):
        data = self.json()
        if isinstance(data, dict) and data.get("error"):
            return "HTTP %d: %s" % (self.status, str(data["error"])[:200])
        return "HTTP %d" % self.status

    # the request itself is wrong: sending it again cannot succeed
    PERMANENT = (400, 405, 413, 414, 415, 422)

    def judge(self, permanent=PERMANENT):
        """Raise DeliveryError unless the answer acknowledges the request."""
        if 200 <= self.status < 300:
            return self
        raise DeliveryError(self.error_text(), permanent=self.status in permanent,
                            status=self.status, retry_after=self.retry_after())


def _network_reason(exc):
    """A short human reason for a network failure (no URL: it may be secret)."""
    import socket
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, socket.timeout) or "timed out" in str(reason):
        return "timed out"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, ConnectionResetError):
        return "connection reset"
    if isinstance(reason, socket.gaierror):
        return "unknown host"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return str(reason)[:200] or reason.__class__.__name__


def split_credentials(url):
    """(url without user:password@, 'Basic ...' header value or None).

    A self-hosted ntfy or a proxy-protected webhook is often written as
    https://user:password@host/...; urllib would take 'user' for a host.
    """
    from urllib.parse import unquote, urlsplit, urlunsplit
    try:
        parts = urlsplit(url)
    except ValueError:
        return url, None
    if "@" not in parts.netloc:
        return url, None
    import base64
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    pair = ("%s:%s" % (unquote(user), unquote(password))).encode("utf-8")
    return urlunsplit((parts.scheme, hostport, parts.path, parts.query, parts.fragment)), \
        "Basic " + base64.b64encode(pair).decode("ascii")


def _parse_http_answer(data, closed=False):
    """HttpResult once data holds a whole answer, else None (read more)."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        raise ValueError("not an HTTP answer")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().title()] = value.strip()
    if status in (100, 102, 103):
        return _parse_http_answer(rest, closed)   # interim answers precede the real one
    if headers.get("Transfer-Encoding", "").lower() == "chunked":
        body, pos = b"", 0
        while True:
            end = rest.find(b"\r\n", pos)
            if end < 0:
                return None
            size = int(rest[pos:end].split(b";")[0] or b"0", 16)
            if size == 0:
                return HttpResult(status, body, headers)
            if len(rest) < end + 2 + size + 2:
                return None
            body += rest[end + 2:end + 2 + size]
            pos = end + 2 + size + 2
    if "Content-Length" in headers:
        length = int(headers["Content-Length"])
        return HttpResult(status, rest[:length], headers) if len(rest) >= length else None
    return HttpResult(status, rest, headers) if closed else None


def _plain_http(method, url, body, headers, timeout, address=None):
    """One HTTP/1.1 request on a fresh connection, read until the answer is
    complete; to address when given (the host's address, already checked),
    over TLS for https (the certificate checked against the host's name)."""
    import socket
    from urllib.parse import urlsplit
    parts = urlsplit(url)
    tls = parts.scheme == "https"
    host, port = parts.hostname, parts.port or (443 if tls else 80)
    if not host:
        raise ValueError("URL has no host")
    target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    netloc = parts.netloc.rpartition("@")[2]
    deadline = time.time() + timeout
    lines = ["%s %s HTTP/1.1" % (method, target), "Host: %s" % netloc,
             "User-Agent: slm/%s" % __version__, "Accept: application/json",
             "Connection: close", "Content-Length: %d" % len(body or b"")]
    lines += ["%s: %s" % pair for pair in headers]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
    where = address or host
    try:    # as bytes: getaddrinfo then needs no idna codec (its import is ~4 ms of a start)
        where = where.encode("ascii")
    except UnicodeEncodeError:
        pass
    sock = socket.create_connection((where, port), timeout=timeout)
    if tls:
        import ssl
        try:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(request)
        data = b""
        late = False
        while True:
            answer = _parse_http_answer(data)
            if answer is not None:
                return answer
            # past the deadline, one last look: what already arrived still counts (we
            # may have been stopped meanwhile: a suspended job's processes are frozen)
            left = deadline - time.time()
            if left <= 0 and late:
                raise socket.timeout("timed out")
            late = left <= 0
            sock.settimeout(max(0.05, left))
            chunk = sock.recv(65536)
            if not chunk:
                answer = _parse_http_answer(data, closed=True)
                if answer is None:
                    raise ConnectionResetError(errno.ECONNRESET, "connection reset")
                return answer
            data += chunk
            if len(data) > 16 * 1024 * 1024:
                raise ValueError("answer too large")
    finally:
        sock.close()


def http_request(method, url, body=None, token=None, timeout=DEFAULT_TIMEOUT,
                 use_proxy=True, content_type="application/json", guard=None):
    """Send one request; return HttpResult for any HTTP answer (2xx to 5xx).

    Plain http:// without a proxy (the SLM service on the cluster's network)
    goes over a bare socket: urllib costs ~25 ms to import, paid by every
    job at its end.  guard(host, port), the service's for what it relays,
    returns the address to connect to (or raises DeliveryError): the request
    then goes over a bare socket to that very address, TLS and all, unless a
    proxy connects for us.  Everything else (https, proxies) goes through
    urllib.  Network failures raise DeliveryError.  Redirects are not
    followed: a POST that silently became a GET would look delivered and be lost.
    """
    url, basic = split_credentials(url)
    address = None
    if guard is not None:
        from urllib.parse import urlsplit
        import urllib.request
        try:
            parts = urlsplit(url)
            host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as e:
            raise DeliveryError("malformed URL (%s)" % e, permanent=True)
        if not (urllib.request.getproxies().get(parts.scheme) and
                not urllib.request.proxy_bypass(host or "")):
            address = guard(host, port)
    if address is not None or (not use_proxy and url.startswith("http://")):
        headers = [("Content-Type", content_type)] if body is not None else []
        if token:
            headers.append(("Authorization", "Bearer %s" % token))
        elif basic:
            headers.append(("Authorization", basic))
        try:
            return _plain_http(method, url, body, headers, timeout, address)
        except (OSError, ValueError) as e:
            raise DeliveryError(_network_reason(e))
    import urllib.error
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    handlers = [NoRedirect()]
    if not use_proxy:  # the SLM service is on the cluster's own network
        handlers.append(urllib.request.ProxyHandler({}))
    opener = urllib.request.build_opener(*handlers)
    request = urllib.request.Request(url, data=body, method=method)
    request.add_header("User-Agent", "slm/%s" % __version__)
    if body is not None:
        request.add_header("Content-Type", content_type)
    if token:
        request.add_header("Authorization", "Bearer %s" % token)
    elif basic:
        request.add_header("Authorization", basic)
    try:
        with opener.open(request, timeout=timeout) as response:
            return HttpResult(response.status, response.read(), dict(response.headers))
    except urllib.error.HTTPError as e:
        try:
            data = e.read()
        except Exception:
            data = b""
        return HttpResult(e.code, data, dict(e.headers or {}))
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise DeliveryError(_network_reason(e))
    except Exception as e:  # http.client.HTTPException and kin: a broken peer
        raise DeliveryError("bad answer (%s)" % e.__class__.__name__)


def _import_http():
    import urllib.request
    return urllib.request


def encode_json(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# ---------------------------------------------------------------------------
# Notifications: a short message for a person, in each service's format
# ---------------------------------------------------------------------------

# The words SLM_NOTIFY_ON and a destination's #on= take besides statuses
# (the table's words column), and what notifies when nothing is said.
NOTIFY_GROUPS = dict((word, tuple(s.name for s in STATUS_TABLE if word in s.words.split()))
                     for row in STATUS_TABLE for word in row.words.split())
NOTIFY_GROUPS["all"] = STATUSES
# Slurm's --mail-type words that name nothing SLM tells (ARRAY_TASKS is
# SLM_ARRAY_NOTIFY=each; there are no burst buffers): accepted, adding nothing
NOTIFY_GROUPS.update(dict.fromkeys(("none", "array_tasks", "stage_out"), ()))
NOTIFY_DEFAULT = NOTIFY_GROUPS["default"]
# Which tasks of an array (jobs of a group) notify one by one; the service sends
# the roll-up.  failures: each failed member, the roll-up at the end.
ARRAY_NOTIFY_CHOICES = ("each", "failures", "summary")
DEFAULT_ARRAY_NOTIFY = "failures"


def truncate_text(text, limit, unit="chars"):
    """text cut to limit characters (or UTF-8 bytes), with a visible marker."""
    marker = "\n…[truncated]"
    size = len(text.encode("utf-8")) if unit == "bytes" else len(text)
    if size <= limit:
        return text
    keep = limit - (len(marker.encode("utf-8")) if unit == "bytes" else len(marker))
    if unit == "bytes":
        cut = text.encode("utf-8")[:max(0, keep)].decode("utf-8", "ignore")
    else:
        cut = text[:max(0, keep)]
    return cut + marker


def job_link(event, dashboard_url):
    if not dashboard_url:
        return None
    from urllib.parse import quote
    return "%s/jobs/%s" % (dashboard_url.rstrip("/"), quote(str(event.get("job_id", ""))))


def notice_parts(event, dashboard_url=None):
    """(title, detail lines, output tail or None, link or None) for a person."""
    status = event.get("status", "?")
    if event.get("kind") == "test":    # `slm doctor --send-test`: of no job
        return "slm: test notification", [str(event.get("message") or "")], None, None
    if event.get("kind") == "group":
        title = "%s: group %s" % (status, event.get("group", "?"))
    else:
        title = "%s: job %s" % (status, event.get("job_id", "?"))
        if event.get("job_name"):
            title += " (%s)" % event["job_name"]
    lines = []
    who = event.get("user") or "?"
    where = event.get("cluster") or event.get("host")
    lines.append("%s@%s" % (who, where) if where else who)
    place = []
    if event.get("partition"):
        place.append("partition %s" % event["partition"])
    if event.get("nodelist"):
        place.append("nodes %s" % event["nodelist"])
    if place:
        lines.append(", ".join(place))
    if event.get("group") and event.get("kind") != "group":
        lines.append("group %s" % event["group"])
    if event.get("restart_count"):
        lines.append("run %d (requeued %d time(s))" % (event["restart_count"] + 1,
                                                       event["restart_count"]))
    if event.get("elapsed") is not None:
        lines.append("ran %s" % duration_text(event["elapsed"]))
    end = ending(status, event.get("exit_code"), event.get("signal"))
    if end:
        lines.append(("killed by %s" if end[0] == "signal" else "exit code %s") % end[1])
    if event.get("reason"):
        lines.append("reason: %s" % event["reason"])
    if event.get("message"):
        lines.append(str(event["message"]))
    if event.get("source") == "slurm":
        lines.append("(%s)" % record_text("slurm", event.get("corrects")))
    if event.get("peak_memory_mb") is not None:
        lines.append("memory: peak %s MB of %s MB" % (event["peak_memory_mb"],
                                                      event.get("memory_limit_mb", "?")))
    if event.get("cpu_time") is not None:
        usage = "CPU %s" % duration_text(event["cpu_time"])
        if event.get("cpu_efficiency") is not None:
            usage += " (%s%% of %s CPUs)" % (event["cpu_efficiency"], event.get("cpus", "?"))
        if event.get("max_rss_mb") is not None:
            usage += ", max RSS %s MB" % event["max_rss_mb"]
        lines.append(usage)
    if event.get("tasks"):   # a roll-up from the service (an array, a group)
        lines.append(", ".join("%s %s" % (n, s) for s, n in sorted(event["tasks"].items())))
    if event.get("failed_tasks"):
        lines.append("failed: %s" % ",".join(str(t) for t in event["failed_tasks"]))
    if event.get("longest") is not None:
        lines.append("total %s, longest %s" % (duration_text(event.get("total") or 0),
                                               duration_text(event["longest"])))
    return title, lines, event.get("output_tail") or None, job_link(event, dashboard_url)


def plain_notice(event, dashboard_url, limit, unit="chars", fence=None):
    title, lines, tail, link = notice_parts(event, dashboard_url)
    head = "\n".join([title] + lines + ([link] if link else []))
    if not tail:
        return truncate_text(head, limit, unit)
    size = len(head.encode("utf-8")) if unit == "bytes" else len(head)
    room = limit - size - 40
    if room < 100:
        return truncate_text(head, limit, unit)
    # the end of the output matters most: cut from its start
    tail_text = tail if len(tail) <= room else "…" + tail[-(room // (4 if unit == "bytes" else 1)):]
    if fence:
        tail_text = "%s\n%s\n%s" % (fence, tail_text.replace(fence, "'''"), fence)
    return truncate_text("%s\nlast lines of output:\n%s" % (head, tail_text), limit, unit)


def feishu_sign(secret, timestamp):
    """Feishu/Lark custom bot: HMAC-SHA256 keyed by "timestamp\\nsecret" of b"", base64."""
    import base64
    import hashlib
    import hmac
    key = ("%s\n%s" % (timestamp, secret)).encode("utf-8")
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode("ascii")


def dingtalk_sign(secret, timestamp_ms):
    """DingTalk robot: HMAC-SHA256 keyed by secret of "timestamp\\nsecret", base64."""
    import base64
    import hashlib
    import hmac
    message = ("%s\n%s" % (timestamp_ms, secret)).encode("utf-8")
    return base64.b64encode(hmac.new(secret.encode("utf-8"), message,
                                     hashlib.sha256).digest()).decode("ascii")


class Format(object):
    """One notification service, everything SLM knows of it in one place:
    the hosts and URL schemes that call for it, its message length and rate
    limits (documented by the service), the request that notifies it, and
    how its answer says no (some say so inside a 200)."""

    name = None
    hosts = ()               # hosts, or their parent domains, whose URLs are this format
    schemes = ()             # URL schemes of its own (those Apprise users know)
    limit, unit = 4000, "chars"
    rate = ((20, 1.0),)      # (messages, seconds) windows per destination

    def endpoint(self, url):
        """(the http(s) URL a request goes to, token or None) for a written URL;
        ValueError when the URL cannot be this format's."""
        return url, None

    def text(self, event, dashboard_url, fence=None):
        return plain_notice(event, dashboard_url, self.limit, self.unit, fence)

    def request(self, url, event, secret=None, dashboard_url=None, now=None):
        """(method, url, body bytes, bearer token or None) of the notification."""
        target, token = self.endpoint(url)
        return "POST", target, encode_json(self.body(event, secret, dashboard_url, now)), token

    def body(self, event, secret, dashboard_url, now):
        raise NotImplementedError

    def judge(self, result):
        """Raise DeliveryError when a 2xx answer still says no."""


def answer_error(fmt, code, message, retry_after=None, permanent=True):
    return DeliveryError("%s answered error %s %s" % (fmt, code, str(message or "")[:200]),
                         permanent=permanent and retry_after is None, retry_after=retry_after)


class JsonFormat(Format):
    name = "json"

    def request(self, url, event, secret=None, dashboard_url=None, now=None):
        return "POST", url, encode_json(event), None


class SlackFormat(Format):
    name, hosts, limit, rate = "slack", ("hooks.slack.com",), 3900, ((1, 1.0),)

    def body(self, event, secret, dashboard_url, now):
        return {"text": self.text(event, dashboard_url, "```")}


class DiscordFormat(Format):
    name, hosts, limit = "discord", ("discord.com", "discordapp.com"), 2000
    rate = ((5, 2.0), (30, 60.0))

    def body(self, event, secret, dashboard_url, now):
        return {"content": self.text(event, dashboard_url, "```"), "username": "SLM",
                "allowed_mentions": {"parse": []}}


class TeamsFormat(Format):
    name, limit, rate = "teams", 20000, ((4, 1.0),)
    hosts = ("webhook.office.com", "logic.azure.com", "api.powerplatform.com")

    def body(self, event, secret, dashboard_url, now):
        title, lines, tail, link = notice_parts(event, dashboard_url)
        body = [{"type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium",
                 "wrap": True},
                {"type": "TextBlock", "text": truncate_text("\n\n".join(lines), 4000),
                 "wrap": True}]
        if tail:
            body.append({"type": "TextBlock", "text": truncate_text(tail[-self.limit // 2:],
                                                                    8000),
                         "fontType": "Monospace", "wrap": True})
        card = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard", "version": "1.4", "body": body}
        if link:
            card["actions"] = [{"type": "Action.OpenUrl", "title": "Open", "url": link}]
        return {"type": "message", "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive", "content": card}]}


class CodeInBodyFormat(Format):
    """Chinese chat APIs: a 200 with an error code inside."""

    # codes that mean "slow down": retry later
    RATE_CODES = frozenset((130101, 45009, 9499, 11232, 11233))

    def judge(self, result):
        data = result.json()
        if not isinstance(data, dict):
            return
        code = data.get("errcode", data.get("code", data.get("StatusCode", 0)))
        if code not in (0, None):
            raise DeliveryError("%s answered error %s %s" % (
                self.name, code, str(data.get("errmsg") or data.get("msg") or
                                     data.get("StatusMessage") or "")[:200]),
                permanent=code not in self.RATE_CODES)


class FeishuFormat(CodeInBodyFormat):
    name, hosts, limit, unit = "feishu", ("open.feishu.cn", "open.larksuite.com"), 18000, "bytes"
    rate = ((5, 1.0), (100, 60.0))

    def body(self, event, secret, dashboard_url, now):
        payload = {"msg_type": "text", "content": {"text": self.text(event, dashboard_url)}}
        if secret:
            timestamp = str(int(time.time() if now is None else now))
            payload["timestamp"], payload["sign"] = timestamp, feishu_sign(secret, timestamp)
        return payload


class DingtalkFormat(CodeInBodyFormat):
    name, hosts, limit, unit, rate = "dingtalk", ("oapi.dingtalk.com",), 18000, "bytes", \
        ((20, 60.0),)

    def request(self, url, event, secret=None, dashboard_url=None, now=None):
        if secret:
            from urllib.parse import quote_plus
            timestamp = str(int((time.time() if now is None else now) * 1000))
            url += "%stimestamp=%s&sign=%s" % ("&" if "?" in url else "?", timestamp,
                                               quote_plus(dingtalk_sign(secret, timestamp)))
        return "POST", url, encode_json({"msgtype": "text", "text": {
            "content": self.text(event, dashboard_url)}}), None


class WecomFormat(CodeInBodyFormat):
    name, hosts, limit, unit, rate = "wecom", ("qyapi.weixin.qq.com",), 2000, "bytes", \
        ((20, 60.0),)

    def body(self, event, secret, dashboard_url, now):
        return {"msgtype": "text", "text": {"content": self.text(event, dashboard_url)}}


class NtfyFormat(Format):
    name, hosts, limit, unit, rate = "ntfy", ("ntfy.sh",), 3900, "bytes", ((10, 1.0),)

    def request(self, url, event, secret=None, dashboard_url=None, now=None):
        # JSON publishing (POST to the server's root) keeps unicode titles out of headers
        from urllib.parse import urlsplit, urlunsplit
        parts = urlsplit(url)
        prefix, _, topic = parts.path.rstrip("/").rpartition("/")
        title, _, _, link = notice_parts(event, dashboard_url)
        status = event.get("status")
        message = plain_notice(event, None, self.limit, self.unit).split("\n", 1)
        payload = {"topic": topic, "title": title,
                   "message": message[1] if len(message) > 1 else title,
                   "priority": 4 if status in SEVERE else 2 if status in CALM else 3,
                   "tags": ["slm", (status or "event").lower()]}
        if link:
            payload["click"] = link
        return "POST", urlunsplit((parts.scheme, parts.netloc, prefix + "/", "", "")), \
            encode_json(payload), None


def url_parts(url):
    """urlsplit of url, with a '#' that starts a path segment (a Matrix alias,
    a Rocket.Chat channel) kept in the path rather than taken for a fragment."""
    from urllib.parse import urlsplit
    return urlsplit(url.replace("/#", "/%23"))


def path_words(path):
    from urllib.parse import unquote
    return [unquote(w) for w in path.split("/") if w]


class TelegramFormat(Format):
    """Bot API sendMessage: tgram://BOTTOKEN/CHAT or
    https://api.telegram.org/botTOKEN/sendMessage?chat_id=CHAT."""

    name, hosts, schemes, limit = "telegram", ("api.telegram.org",), ("tgram",), 4096
    rate = ((1, 1.0), (20, 60.0))    # per chat; 20 a minute in a group

    def endpoint(self, url):
        from urllib.parse import parse_qs, quote
        parts = url_parts(url)
        if parts.scheme == "tgram":
            words = [parts.netloc] + path_words(parts.path)
            token, chat = words[0], (words[1:] or [None])[0]
        else:
            words = path_words(parts.path)
            token = words[0][3:] if words and words[0].startswith("bot") else None
            chat = (parse_qs(parts.query).get("chat_id") or [None])[0]
        if not token or not chat or ":" not in token:
            raise ValueError("a Telegram destination looks like tgram://BOTTOKEN/CHAT_ID")
        return "https://api.telegram.org/bot%s/sendMessage?chat_id=%s" % (
            quote(token, safe=":"), quote(chat, safe="@-")), None

    def request(self, url, event, secret=None, dashboard_url=None, now=None):
        from urllib.parse import parse_qs, urlsplit
        target, _ = self.endpoint(url)
        chat = parse_qs(urlsplit(target).query)["chat_id"][0]
        return "POST", target.split("?", 1)[0], encode_json({
            "chat_id": chat, "text": self.text(event, dashboard_url),
            "disable_web_page_preview": True}), None

    def judge(self, result):
        data = result.json()
        if isinstance(data, dict) and data.get("ok") is False:
            retry = (data.get("parameters") or {}).get("retry_after")
            raise answer_error(self.name, data.get("error_code"), data.get("description"),
                               retry_after=retry if isinstance(retry, (int, float)) else None)


class MatrixFormat(Format):
    """A room message with an access token: matrix://TOKEN@HOST[:PORT]/!ROOM:SERVER
    (http), matrixs:// (https).  The event's id is the transaction id, so a
    retried message is one message."""

    name, schemes, limit, unit, rate = "matrix", ("matrix", "matrixs"), 30000, "bytes", \
        ((1, 1.0), (10, 60.0))

    def endpoint(self, url):
        from urllib.parse import quote, unquote
        parts = url_parts(url)
        words = path_words(parts.path)
        token = unquote(parts.username or "") or None
        if not token or not words or not words[0].startswith("!") or not parts.hostname:
            raise ValueError("a Matrix destination looks like matrixs://ACCESS_TOKEN@"
                             "homeserver/!roomid:server (a room id, not an alias)")
        base = "%s://%s" % ("https" if parts.scheme == "matrixs" else "http",
                            parts.netloc.rpartition("@")[2])
        return "%s/_matrix/client/v3/rooms/%s/send/m.room.message" % (
            base, quote(words[0], safe="")), token

    def request(self, url, event, secret=None, dashboard_url=None, now=None):
        target, token = self.endpoint(url)
        # unique per access token (the spec's scope), the same on a retry: one
        # event told to two rooms with one token is two messages
        txn = "slm-" + short_hash("%s|%s" % (event.get("event_id") or new_id(), target))
        return "PUT", "%s/%s" % (target, txn), encode_json({
            "msgtype": "m.text", "body": self.text(event, dashboard_url)}), token

    def judge(self, result):
        data = result.json()
        if isinstance(data, dict) and data.get("errcode"):
            retry = data.get("retry_after_ms")
            raise answer_error(self.name, data["errcode"], data.get("error"),
                               retry_after=retry / 1000.0 if isinstance(retry, (int, float))
                               else None)


class HooksPathFormat(Format):
    """Incoming webhooks at HOST/[PREFIX/]hooks/TOKEN, written SCHEME://HOST/[PREFIX/]TOKEN."""

    def endpoint(self, url):
        parts = url_parts(url)
        if parts.scheme in ("http", "https"):
            return url, None
        words = path_words(parts.path)
        if not parts.hostname or not words:
            raise ValueError("a %s destination looks like %s://host/TOKEN"
                             % (self.name, self.schemes[0]))
        return "%s://%s/%s" % ("https" if parts.scheme.endswith("s") else "http",
                               parts.netloc.rpartition("@")[2],
                               "/".join(words[:-1] + ["hooks", words[-1]])), None

    def body(self, event, secret, dashboard_url, now):
        return {"text": self.text(event, dashboard_url, "```")}


class MattermostFormat(HooksPathFormat):
    name, schemes, limit, rate = "mattermost", ("mmost", "mmosts"), 16000, ((10, 1.0),)


class RocketchatFormat(HooksPathFormat):
    """rockets://INTEGRATION/TOKEN@HOST (Apprise's form) or https://HOST/hooks/ID/TOKEN."""

    name, schemes, limit = "rocketchat", ("rocket", "rockets"), 5000
    rate = ((10, 60.0),)       # the server's default limiter: 10 a minute per webhook

    def endpoint(self, url):
        parts = url_parts(url)
        if parts.scheme in ("http", "https"):
            return url, None
        # the '@' comes after a path: urlsplit would take INTEGRATION_ID for the host
        webhook, at, rest = url.split("://", 1)[1].rpartition("@")
        words = [w for w in webhook.split("/") if w]
        host = rest.split("/", 1)[0]
        if not at or len(words) != 2 or not host:
            raise ValueError("a Rocket.Chat destination looks like rockets://INTEGRATION_ID/"
                             "TOKEN@host")
        return "%s://%s/hooks/%s/%s" % ("https" if parts.scheme == "rockets" else "http",
                                        host, words[0], words[1]), None

    def judge(self, result):
        data = result.json()
        if isinstance(data, dict) and data.get("success") is False:
            raise answer_error(self.name, "success=false", data.get("error"))


class GooglechatFormat(Format):
    """gchat://SPACE/KEY/TOKEN, or the https URL the space gives; one thread per job."""

    name, hosts, schemes, limit, unit = "googlechat", ("chat.googleapis.com",), ("gchat",), \
        30000, "bytes"
    rate = ((1, 1.0), (60, 60.0))

    def endpoint(self, url):
        from urllib.parse import quote
        parts = url_parts(url)
        if parts.scheme != "gchat":
            return url, None
        words = [parts.netloc] + path_words(parts.path)
        if len(words) < 3:
            raise ValueError("a Google Chat destination looks like gchat://SPACE/KEY/TOKEN")
        return "https://chat.googleapis.com/v1/spaces/%s/messages?key=%s&token=%s" % tuple(
            quote(w, safe="") for w in words[:3]), None

    def request(self, url, event, secret=None, dashboard_url=None, now=None):
        target, _ = self.endpoint(url)
        target += "&messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD"
        return "POST", target, encode_json({
            "text": self.text(event, dashboard_url),
            "thread": {"threadKey": "slm-%s" % short_hash(str(event.get("job_id")))}}), None


class GotifyFormat(Format):
    """gotify://HOST[:PORT]/[PREFIX/]APPTOKEN (http), gotifys:// (https)."""

    name, schemes, limit, rate = "gotify", ("gotify", "gotifys"), 8000, ((10, 1.0),)

    def endpoint(self, url):
        parts = url_parts(url)
        words = path_words(parts.path)
        if not parts.hostname or not words:
            raise ValueError("a Gotify destination looks like gotifys://host/APP_TOKEN")
        base = "%s://%s" % ("https" if parts.scheme == "gotifys" else "http",
                            parts.netloc.rpartition("@")[2])
        return "/".join([base] + words[:-1] + ["message"]), words[-1]

    def request(self, url, event, secret=None, dashboard_url=None, now=None):
        target, token = self.endpoint(url)
        title, _, _, link = notice_parts(event, dashboard_url)
        body = {"title": title, "message": self.text(event, dashboard_url),
                "priority": 8 if event.get("status") in SEVERE else 4}
        if link:
            body["extras"] = {"client::notification": {"click": {"url": link}}}
        return "POST", target, encode_json(body), token


class PushoverFormat(Format):
    """pover://USERKEY@APPTOKEN."""

    name, hosts, schemes, limit, rate = "pushover", ("api.pushover.net",), ("pover",), 1024, \
        ((2, 1.0),)

    def endpoint(self, url):
        parts = url_parts(url)
        if parts.scheme != "pover" or not parts.username or not parts.hostname:
            raise ValueError("a Pushover destination looks like pover://USER_KEY@APP_TOKEN")
        return "https://api.pushover.net/1/messages.json", None

    def request(self, url, event, secret=None, dashboard_url=None, now=None):
        from urllib.parse import unquote
        parts = url_parts(url)
        target, _ = self.endpoint(url)
        title, _, _, link = notice_parts(event, dashboard_url)
        body = {"token": unquote(parts.netloc.rpartition("@")[2]),
                "user": unquote(parts.username), "title": truncate_text(title, 250),
                "message": plain_notice(event, None, self.limit).split("\n", 1)[-1],
                "priority": 1 if event.get("status") in SEVERE else 0}
        if link:
            body["url"] = link[:512]
        return "POST", target, encode_json(body), None

    def judge(self, result):
        data = result.json()
        if isinstance(data, dict) and data.get("status") not in (1, None):
            raise answer_error(self.name, "status=%s" % data.get("status"),
                               "; ".join(str(e) for e in data.get("errors") or []))


class EmailFormat(Format):
    """mailto:a@x.org,b@y.org (the SMTP server from SLM_SMTP_*) or Apprise's
    mailto[s]://[user:pass@]DOMAIN[:PORT][/TO...]?to=&smtp=&from=&mode=."""

    name, schemes, limit, rate = "email", ("mailto", "mailtos"), 100000, ((1, 1.0), (30, 60.0))

    def endpoint(self, url):
        return url, None


FORMATS = dict((f.name, f) for f in (
    JsonFormat(), SlackFormat(), DiscordFormat(), TeamsFormat(), FeishuFormat(),
    DingtalkFormat(), WecomFormat(), NtfyFormat(), TelegramFormat(), MatrixFormat(),
    MattermostFormat(), RocketchatFormat(), GooglechatFormat(), GotifyFormat(),
    PushoverFormat(), EmailFormat()))
WEBHOOK_FORMATS = tuple(sorted(FORMATS))
# host (or its parent domain) -> format; anything else gets the event as JSON
WEBHOOK_HOSTS = tuple((host, f.name) for f in FORMATS.values() for host in f.hosts)
SCHEMES = dict((scheme, f.name) for f in FORMATS.values() for scheme in f.schemes)


def webhook_format(spec, default=None):
    """(format, url) of a destination as written: 'slack+https://…', a scheme
    of a format's own (tgram://, mailto:…), a known host; else JSON."""
    head, sep, rest = spec.partition("+")
    if sep and head.lower() in FORMATS and ":" in rest:
        return head.lower(), rest
    scheme = spec.split(":", 1)[0].lower()
    if scheme in SCHEMES:
        return SCHEMES[scheme], spec
    if default:
        return default, spec
    from urllib.parse import urlsplit
    try:
        host = (urlsplit(spec).hostname or "").lower()
    except ValueError:
        return "json", spec
    for known, fmt in WEBHOOK_HOSTS:
        if host == known or host.endswith("." + known):
            return fmt, spec
    return "json", spec


class EmailAddress(object):
    """Who gets the mail and through which SMTP server, from a mailto destination."""

    def __init__(self, url):
        from urllib.parse import parse_qs, unquote, urlsplit
        self.server = {}
        if url.lower().startswith(("mailto://", "mailtos://")):
            parts = urlsplit(url)
            query = dict((k.lower(), v[-1]) for k, v in parse_qs(parts.query).items())
            user = unquote(parts.username or "") or None
            domain = parts.hostname
            secure = parts.scheme.lower() == "mailtos"
            mode = query.get("mode") or ("starttls" if secure else "none")
            self.recipients = [unquote(w) for w in parts.path.split("/") if w] + \
                [a for a in query.get("to", "").split(",") if a]
            sender = query.get("from") or ("%s@%s" % (user.split("@")[0], domain)
                                           if user and domain else None)
            self.server = {"host": query.get("smtp") or domain, "user": user,
                           "password": unquote(parts.password or "") or None,
                           "mode": mode, "port": parts.port, "sender": sender}
            if not self.recipients and sender:
                self.recipients = [sender]
        else:
            rest = url.split(":", 1)[1] if ":" in url else ""
            to, _, query = rest.partition("?")
            extra = parse_qs(query)
            self.recipients = [unquote(a) for a in to.split(",") if a] + \
                [a for v in extra.get("to", []) + extra.get("cc", []) for a in v.split(",")]
        self.recipients = [a.strip() for a in self.recipients if a.strip()]
        if not self.recipients or any("@" not in a or a.count("@") > 1 or " " in a
                                      for a in self.recipients):
            raise ValueError("an e-mail destination looks like mailto:alice@example.org"
                             "[,bob@example.org]")


def redact_address(address):
    user, _, domain = address.partition("@")
    return "%s…@%s" % (user[:1], domain) if domain else "…"


def parse_notify_on(text, console=None):
    """SLM_NOTIFY_ON (and a destination's #on=, #SLM --notify-on): statuses and
    the words of NOTIFY_GROUPS (all, final, failures, warnings, default, and
    Slurm's --mail-type words: NONE, BEGIN, END, FAIL, REQUEUE, TIME_LIMIT...),
    comma-separated, any case."""
    text = (text or "").strip()
    if not text:
        return frozenset(NOTIFY_DEFAULT)
    chosen = set()
    for word in text.replace(" ", ",").split(","):
        word = word.strip()
        if word.lower() in NOTIFY_GROUPS:
            chosen.update(NOTIFY_GROUPS[word.lower()])
        elif word.upper() in STATUSES:
            chosen.add(word.upper())
        elif word and console is not None:
            console.say_once("notify-" + word, "SLM_NOTIFY_ON: unknown status %r ignored" % word)
    return frozenset(chosen)


def wants_notice(event, notify_on, array_notify):
    """Whether a destination hears of this event (the service always gets it)."""
    status = event.get("status")
    if status not in notify_on:
        return False
    member = event.get("array_task_id") is not None or event.get("group") is not None
    if member and not event.get("rollup") and status != "SUBMITTED":
        # one task of an array, one job of a group: the service sends the roll-up
        if array_notify == "summary":
            return False
        if array_notify == "failures":
            return status in FINAL_STATUSES and status != "COMPLETED"
    return True


DESTINATION_HINT = "a destination looks like https://ntfy.sh/YOUR-TOPIC, " \
    "https://hooks.slack.com/services/…, mailto:you@example.org or tgram://BOT_TOKEN/CHAT_ID"


class Destination(object):
    """A destination as SLM_WEBHOOK writes it: a URL, its format, and its own
    filter after a '#': 'URL#on=final,warnings&array=summary' (overriding
    SLM_NOTIFY_ON and SLM_ARRAY_NOTIFY for it alone)."""

    def __init__(self, spec, default_format=None, console=None):
        self.spec = spec
        self.notify_on = None
        self.array_notify = None
        base, sep, fragment = spec.rpartition("#")
        if sep and fragment.split("=", 1)[0] in ("on", "array"):
            spec = base
            for part in fragment.split("&"):
                key, _, value = part.partition("=")
                if key == "on":
                    self.notify_on = parse_notify_on(value, console)
                elif key == "array" and value in ARRAY_NOTIFY_CHOICES:
                    self.array_notify = value
                elif console is not None:
                    console.say_once("filter-" + part, "ignoring %r in a destination's #: "
                                     "#on=STATUSES&array=each|failures|summary" % part[:40])
        self.format, self.url = webhook_format(spec, default_format)

    def problem(self):
        """Why this destination cannot be notified (a string), or None."""
        import re
        if not re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", self.url):
            return "not a URL: %s" % DESTINATION_HINT
        if self.format == "email":
            try:
                EmailAddress(self.url)
            except ValueError as e:
                return str(e)
            return None
        try:
            target, _ = FORMATS[self.format].endpoint(self.url)
        except ValueError as e:
            return str(e)
        return check_http_url(target)

    def host(self):
        """The host a notification goes to (SLM_RELAY_ALLOW): 'mailto' for e-mail."""
        if self.format == "email":
            return "mailto"
        from urllib.parse import urlsplit
        try:
            return (urlsplit(FORMATS[self.format].endpoint(self.url)[0]).hostname or "").lower()
        except ValueError:
            return ""

    def shown(self):
        """What may be printed of it: scheme://host/… (a URL's path is a secret)."""
        if self.format == "email":
            return "mailto:%s" % ",".join(redact_address(a) for a in
                                          EmailAddress(self.url).recipients) \
                if not self.problem() else "mailto:<malformed>"
        try:   # where requests go: a token in the written URL's host or path stays out
            return redact_url(FORMATS[self.format].endpoint(self.url)[0])
        except ValueError:
            return "<malformed %s destination>" % self.format

    def wants(self, event, notify_on, array_notify):
        return wants_notice(event, self.notify_on if self.notify_on is not None else notify_on,
                            self.array_notify or array_notify)


# The relay request an event carries when the service notifies for its job
# (SLM_WEBHOOK_VIA=api), described once: Settings.relay_field builds it, the
# service checks it and documents it (/openapi.json) from these rows, and
# drops what they do not name.  (name, kind, required, what it is.)
RELAY_TARGET_FIELDS = (
    ("url", "destination", True, "the destination as written in SLM_WEBHOOK (a secret: "
     "never shown)"),
    ("format", "format", False, "its format (json when not given)"),
    ("secret", "secret", False, "SLM_WEBHOOK_SECRET, for the formats that sign"),
    ("send", "bool", False, "whether this event is for it (its #on= filter, else "
     "SLM_NOTIFY_ON)"),
    ("array_notify", "array_notify", False, "its #array= policy, else the relay's"),
    ("notify_on", "statuses", False, "its #on= filter, for the events the service makes "
     "itself (LOST, Slurm's verdict)"),
)
RELAY_FIELDS = (
    ("to", "targets", True, "the destinations"),
    ("send", "bool", False, "whether this event notifies (SLM_NOTIFY_ON), for targets that "
     "do not say"),
    ("array_notify", "array_notify", False, "SLM_ARRAY_NOTIFY (default %s)"
     % DEFAULT_ARRAY_NOTIFY),
    ("notify_on", "statuses", False, "SLM_NOTIFY_ON, for the events the service makes itself"),
    ("dashboard_url", "text", False, "SLM_DASHBOARD_URL: the link in each notice"),
)
MAX_RELAY_TARGETS = 10


class SmtpSettings(object):
    """Where mail goes out (SLM_SMTP_HOST, _PORT, _USER, _PASSWORD, _TLS, _FROM):
    slm.py when it mails itself, the service for the mail it relays."""

    def __init__(self, get, own_servers=True):
        # own_servers: whether an address may name its own server
        # (mailtos://user:pw@host); the service's relayed mail never does
        self.own_servers = own_servers
        self.host = get("SLM_SMTP_HOST") or None
        self.port = get("SLM_SMTP_PORT") or None
        # host:port, as people write a server (an IPv6 address is [addr]:port)
        name, colon, port = (self.host or "").rpartition(":")
        if colon and port.isdigit() and name and (":" not in name or name.endswith("]")):
            self.host, self.port = name.strip("[]"), self.port or port
        self.user = get("SLM_SMTP_USER") or None
        self.password = get("SLM_SMTP_PASSWORD") or None
        self.mode = (get("SLM_SMTP_TLS") or "auto").lower()
        self.sender = get("SLM_SMTP_FROM") or None

    def secrets(self):
        return [self.password] if self.password else []

    def server(self, address):
        """(host, port, mode, user, password, sender) for mail to address."""
        own = address.server if self.own_servers else {}
        host = own.get("host") or self.host
        mode = own.get("mode") or self.mode
        if mode not in ("auto", "starttls", "ssl", "none", "insecure"):
            raise DeliveryError("SMTP TLS mode must be auto, starttls, ssl or none",
                                permanent=True)
        port = own.get("port") or (int(self.port) if str(self.port or "").isdigit() and
                                   not own.get("host") else None) or \
            {"ssl": 465, "starttls": 587}.get(mode, 25)
        user = own.get("user") if own.get("host") else self.user
        password = own.get("password") if own.get("host") else self.password
        sender = own.get("sender") or self.sender or "%s@%s" % (user_name(), hostname())
        return host, int(port), mode, user, password, sender


def mail_thread_root(event, domain):
    """The Message-ID every mail about one job refers to: its mails thread."""
    key = "%s|%s" % (event.get("cluster") or "", event.get("group") if event.get("kind") ==
                     "group" else event.get("job_id"))
    return "<slm.%s@%s>" % (short_hash(key), domain)


def email_message(event, address, sender, dashboard_url=None):
    """A multipart message (plain text and a small HTML part with the same facts)."""
    import html
    import re
    from email.message import EmailMessage
    from email.utils import formatdate
    title, lines, tail, link = notice_parts(event, dashboard_url)
    domain = sender.rpartition("@")[2] or "slm"
    msg = EmailMessage()
    # a job's name is the user's: no line breaks of any kind (nor other
    # controls) in a header, and a subject of a sensible length
    msg["Subject"] = re.sub("[\x00-\x1f\x7f-\x9f\u2028\u2029]+", " ", "[slm] %s %s %s" % (
        event.get("status", "?"), event.get("job_id", "?"),
        event.get("job_name") or event.get("group") or "") if event.get("kind") != "test"
        else "[slm] %s" % title)[:200]
    msg["From"] = sender
    msg["To"] = ", ".join(address.recipients)
    msg["Date"] = formatdate(localtime=True)
    root = mail_thread_root(event, domain)
    msg["Message-ID"] = "<slm.%s.%s@%s>" % (short_hash(root), event.get("event_id") or new_id(),
                                            domain)
    msg["In-Reply-To"] = root
    msg["References"] = root
    text = "\n".join([title] + lines + ([link] if link else []))
    if tail:
        text += "\n\nlast lines of output:\n" + tail
    msg.set_content(text)
    rows = "".join("<li>%s</li>" % html.escape(line) for line in lines)
    msg.add_alternative(
        "<html><body><h3>%s</h3><ul>%s</ul>%s%s</body></html>" % (
            html.escape(title), rows,
            "<p><a href=\"%s\">%s</a></p>" % (html.escape(link), html.escape(link))
            if link else "",
            "<p>last lines of output:</p><pre>%s</pre>" % html.escape(tail) if tail else ""),
        subtype="html")
    return msg


def smtp_connection(host, port, mode, user, password, timeout):
    """An SMTP session ready to send (TLS and login as asked); DeliveryError if not."""
    import smtplib
    import socket
    import ssl
    if not host:
        raise DeliveryError("no SMTP server: set SLM_SMTP_HOST (or mail through the service "
                            "with SLM_WEBHOOK_VIA=api)", permanent=True)
    try:
        if mode == "ssl":
            smtp = smtplib.SMTP_SSL(host, port, timeout=timeout,
                                    context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(host, port, timeout=timeout)
            smtp.ehlo()
            if mode == "starttls" or (mode == "auto" and smtp.has_extn("starttls")):
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            elif user and password and mode == "auto":
                # a server (or somebody in between) that offers no TLS does not get
                # the password in clear unless the site says so
                smtp.close()
                raise DeliveryError("the SMTP server %s:%d offers no TLS: not logging in "
                                    "in clear (SLM_SMTP_TLS=none allows it)" % (host, port),
                                    permanent=True)
        if user and password:
            smtp.login(user, password)
        return smtp
    except smtplib.SMTPAuthenticationError as e:
        raise DeliveryError("the SMTP server refused the login (%s)" % e.smtp_code,
                            permanent=True)
    except smtplib.SMTPResponseException as e:
        raise DeliveryError("SMTP %s" % e.smtp_code, permanent=500 <= e.smtp_code < 600)
    except (OSError, smtplib.SMTPException, socket.timeout) as e:
        raise DeliveryError("SMTP server %s:%d: %s" % (host, port, _network_reason(e)))


def send_email(url, event, smtp_settings, dashboard_url, timeout):
    import smtplib
    try:
        address = EmailAddress(url)
    except ValueError as e:
        raise DeliveryError(str(e), permanent=True)
    host, port, mode, user, password, sender = (smtp_settings or SmtpSettings(
        lambda key: "")).server(address)
    smtp = smtp_connection(host, port, mode, user, password, timeout)
    try:
        smtp.send_message(email_message(event, address, sender, dashboard_url))
    except smtplib.SMTPRecipientsRefused as e:
        codes = sorted(set(code for code, _ in e.recipients.values()))
        raise DeliveryError("SMTP refused the recipients (%s)" % codes,
                            permanent=all(500 <= c < 600 for c in codes))
    except smtplib.SMTPResponseException as e:
        raise DeliveryError("SMTP %s" % e.smtp_code, permanent=500 <= e.smtp_code < 600)
    except (OSError, smtplib.SMTPException) as e:
        raise DeliveryError("SMTP server %s:%d: %s" % (host, port, _network_reason(e)))
    finally:
        try:
            smtp.quit()
        except Exception:
            pass


def send_notification(fmt, url, event, secret=None, dashboard_url=None, timeout=DEFAULT_TIMEOUT,
                      smtp=None, guard=None):
    """The one way a notification leaves, from slm.py and from the service alike:
    an HTTP request in the destination's format, or a mail; DeliveryError if
    the destination did not take it.  guard: see http_request."""
    if fmt == "email":
        return send_email(url, event, smtp, dashboard_url, timeout)
    if fmt not in FORMATS:
        raise DeliveryError("unknown format %s" % fmt, permanent=True)
    try:
        method, target, body, token = FORMATS[fmt].request(url, event, secret, dashboard_url)
    except ValueError as e:
        raise DeliveryError(str(e), permanent=True)
    result = http_request(method, target, body, token=token, timeout=timeout,
                          guard=guard).judge()
    FORMATS[fmt].judge(result)


# ---------------------------------------------------------------------------
# Targets: where events are delivered
# ---------------------------------------------------------------------------


class Target(object):
    kind = None
    batches = False  # accepts many events in one request

    def __init__(self, url):
        self.url = url
        self.key = "%s-%s" % (self.kind, short_hash(url))

    def deliver(self, events, timeout):
        raise NotImplementedError


class ServiceTarget(Target):
    """The SLM service: POST /api/v1/events, idempotent on event_id."""

    kind = "api"
    batches = True

    def __init__(self, url, token=None):
        Target.__init__(self, url)
        # one service per user: spooled events follow SLM_API_URL if it moves
        self.key = self.kind
        self.token = token
        self.events_url = url.rstrip("/") + "/api/v1/events"
        self.problem = check_http_url(url)

    def describe(self):
        return "the SLM service at %s" % shown_url(self.url)

    def deliver(self, events, timeout):
        if self.problem:
            raise DeliveryError("SLM_API_URL is not usable: %s" % self.problem)
        body = events[0] if len(events) == 1 else {"events": events}
        # 403: the token's user may not post these (another user's job): no retry
        # will change that, and the reason goes to the dead letters
        answer = http_request("POST", self.events_url, encode_json(body), token=self.token,
                              timeout=timeout, use_proxy=False).judge(
                                  HttpResult.PERMANENT + (403,)).json()
        # the events are stored; the service would not relay some of their notices
        refused = answer.get("refused_notifications") if isinstance(answer, dict) else None
        return refused if isinstance(refused, int) and refused > 0 else 0


class WebhookTarget(Target):
    """A destination (a chat service, e-mail...): each event as a notification
    in the format its URL calls for.

    url is the SLM_WEBHOOK entry as written (a 'slack+' prefix and a #on=
    filter included), so that a spooled event is sent later the way it
    would have been now.
    """

    kind = "hook"

    def __init__(self, url, settings=None):
        Target.__init__(self, url)
        self.destination = Destination(url, settings.webhook_format if settings else None,
                                       settings.console if settings else None)
        self.format = self.destination.format
        self.secret = settings.webhook_secret if settings else None
        self.dashboard_url = settings.dashboard_url if settings else None
        self.smtp = settings.smtp if settings else None

    def describe(self):
        return "%s %s" % ("mail to" if self.format == "email" else "webhook",
                          self.destination.shown())

    def deliver(self, events, timeout):
        for event in events:
            send_notification(self.format, self.destination.url, event, self.secret,
                              self.dashboard_url, timeout, self.smtp)


# ---------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------

# Every setting slm reads.  A job's settings come, in this order of precedence,
# from its environment, from the snapshot `slm submit` took for it (jobs
# submitted with --export=NONE do not inherit the environment), and from the
# user's configuration file (~/.slm/config, or SLM_CONFIG).
SETTING_KEYS = (
    "SLM_API_URL", "SLM_API_TOKEN", "SLM_WEBHOOK", "SLM_WEBHOOK_SECRET", "SLM_WEBHOOK_FORMAT",
    "SLM_WEBHOOK_VIA", "SLM_DASHBOARD_URL", "SLM_NOTIFY_ON", "SLM_ARRAY_NOTIFY",
    "SLM_TAIL_LINES", "SLM_SPOOL_DIR", "SLM_TIMEOUT", "SLM_SBATCH", "SLM_PYTHON",
    "SLM_HEARTBEAT", "SLM_MEMORY_WARNING", "SLM_TIME_WARNING", "SLM_STALL", "SLM_GROUP",
    "SLM_SMTP_HOST", "SLM_SMTP_PORT", "SLM_SMTP_USER", "SLM_SMTP_PASSWORD", "SLM_SMTP_TLS",
    "SLM_SMTP_FROM",
)
# Settings of a site's file only (slm mailprog --config): may MailProg take a
# job owner's destinations from their ~/.slm/config (yes|no, default no)
SITE_KEYS = ("SLM_MAILPROG_USER_CONFIG",)
# Never written where others can read them: not in a batch script (slurmctld
# keeps it), not in ps arguments, not in output files; a webhook URL is its
# own password.  Names ending so (SMTP passwords to come) are secrets too.
SECRET_KEYS = frozenset(("SLM_API_TOKEN", "SLM_WEBHOOK", "SLM_WEBHOOK_SECRET"))
SECRET_SUFFIXES = ("_TOKEN", "_SECRET", "_PASSWORD")
# The settings a job may choose for itself, like sbatch's --mail-type: `slm run
# --notify-on/--webhook`, `slm submit`'s and a script's #SLM lines.  They win
# over the environment; a job submitted with them carries them in its snapshot,
# which names them (JOB_OPTIONS_KEY).
JOB_OPTIONS = (("--notify-on", "SLM_NOTIFY_ON"), ("--webhook", "SLM_WEBHOOK"),
               ("--group", "SLM_GROUP"))
JOB_OPTIONS_KEY = "SLM_JOB_OPTIONS"
SOURCE_OPTION = "job option"
SOURCE_ENV = "environment"
SOURCE_SNAPSHOT = "submit-time snapshot"
SOURCE_FILE = "config file"
# A snapshot nobody submitted with or started from for this long is removed.
SNAPSHOT_KEEP_DAYS = 90


def is_secret(key):
    return key in SECRET_KEYS or key.endswith(SECRET_SUFFIXES)


def home_dir(environ=None):
    """HOME, or the password database's home when HOME is unset or empty
    (--export=NONE and login shells that reset the environment)."""
    home = (os.environ if environ is None else environ).get("HOME", "")
    if home:
        return home
    try:
        import pwd
        return pwd.getpwuid(os.getuid()).pw_dir
    except (ImportError, KeyError):
        return "/"


def slm_home(environ=None):
    return os.path.join(home_dir(environ), ".slm")


def expand_home(path, environ=None):
    if path == "~" or path.startswith("~/"):
        return home_dir(environ) + path[1:]
    return os.path.expanduser(path)


# POSIX ACL entries (the system.posix_acl_access attribute: a version, then
# tag u16, permissions u16, id u32, little-endian)
ACL_USER, ACL_GROUP_OBJ, ACL_GROUP, ACL_MASK = 0x02, 0x04, 0x08, 0x10


def acl_grants(fd):
    """[(tag, effective permissions)] of the file's POSIX access ACL (each
    entry's permissions under the mask), [] when it has none."""
    try:
        acl = os.getxattr(fd, "system.posix_acl_access")
    except (AttributeError, OSError):
        return []
    if len(acl) < 12 or (len(acl) - 4) % 8:
        return []
    import struct
    entries = [struct.unpack("<HHI", acl[i:i + 8])[:2] for i in range(4, len(acl), 8)]
    mask = ([perm for tag, perm in entries if tag == ACL_MASK] or [0o7])[0]
    return [(tag, perm & mask & 0o7) for tag, perm in entries]


def others_may_read(fd, st):
    """True when someone but the file's owner may read or change it.

    The group and other bits say so, except under a POSIX ACL, whose group
    bits are its mask: there a named user the owner listed for reading
    (`setfacl -m u:slurm:r ~/.slm/config`, for site mode) is a reader they
    chose; a group entry, a write grant or the other bits are not private.
    """
    if st.st_mode & 0o007:
        return True
    grants = acl_grants(fd)
    if not grants:
        return bool(st.st_mode & 0o077)
    return any((tag in (ACL_GROUP_OBJ, ACL_GROUP) and perm) or (tag == ACL_USER and perm & 0o3)
               for tag, perm in grants)


def open_owned(path, uid):
    """A read-only descriptor of path when it is a regular file of uid (not
    root), never through a link, a FIFO or a device; else None.  For reading
    a user's file with other rights than the user's (site mode's SlurmUser):
    looked at before it is opened, and again once open."""
    import stat
    try:
        if int(uid) == 0:
            return None
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != int(uid):
            return None
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK)
    except (OSError, ValueError):
        return None
    try:
        st = os.fstat(fd)
    except OSError:
        st = None
    if st is None or not stat.S_ISREG(st.st_mode) or st.st_uid != int(uid):
        os.close(fd)
        return None
    return fd


class SettingsFile(object):
    """KEY=VALUE lines ('#' starts a comment line), as in ~/.slm/config.

    Secrets are taken only from a file that nobody else can read (mode 0600
    or stricter, owned by us); otherwise they are refused with one line.
    """

    def __init__(self, path, console, missing_ok=True, extra_keys=(), site=False, owner=None):
        self.path = path
        self.values = {}
        self.exists = False
        self.refused = []      # secret keys not taken: the file is readable by others
        try:
            if owner is None:
                fd = os.open(path, os.O_RDONLY)
            else:   # another user's file (site mode): only their own regular file
                fd = open_owned(path, owner)
                if fd is None:
                    return
        except OSError as e:
            if e.errno != errno.ENOENT or not missing_ok:
                console.say_once("settings-" + path, "cannot read %s (%s): its settings are "
                                 "not used" % (path, e.strerror or e))
            return
        try:
            st = os.fstat(fd)
            if site:   # a site's file (slm mailprog): root's, read by SlurmUser's group only
                private = not (st.st_mode & 0o027) and st.st_uid in (0, os.getuid()) and \
                    not any(tag in (ACL_USER, ACL_GROUP) and perm for tag, perm in acl_grants(fd))
            else:
                private = st.st_uid == (os.getuid() if owner is None else int(owner)) and \
                    not others_may_read(fd, st)
            data = b""
            while True:
                chunk = os.read(fd, 65536)
                if not chunk or len(data) > 1024 * 1024:
                    break
                data += chunk
        except OSError as e:
            console.say_once("settings-" + path, "cannot read %s (%s): its settings are not "
                             "used" % (path, e.strerror or e))
            return
        finally:
            os.close(fd)
        self.exists = True
        text = data.decode("utf-8", "surrogateescape")
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("export "):
                line = line[len("export "):].lstrip()
            key, sep, value = line.partition("=")
            key, value = key.strip(), value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            if not sep or (key not in SETTING_KEYS and key not in extra_keys):
                console.say_once("settings-%s-%d" % (path, number), "%s line %d: %s; ignored"
                                 % (path, number, "not KEY=VALUE" if not sep else
                                    "unknown setting %s%s" % (key, did_you_mean(
                                        key, SETTING_KEYS, "SLM_"))))
                continue
            if is_secret(key) and not private:
                self.refused.append(key)
                continue
            self.values[key] = value
        if self.refused:
            console.say_once("settings-open-" + path, "ignoring %s in %s: the file holds "
                             "secrets but others may read it (chmod %s %s)"
                             % (", ".join(sorted(set(self.refused))), path,
                                "640" if site else "600", path))


def sweep_snapshots(folder, keep=None, now=None):
    """Remove settings snapshots that no submission or job used for a long time."""
    now = time.time() if now is None else now
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        path = os.path.join(folder, name)
        if path == keep or not name.endswith((".conf", ".tmp")):
            continue
        try:
            if now - os.stat(path).st_mtime > SNAPSHOT_KEEP_DAYS * 86400:
                os.unlink(path)
        except OSError:
            pass


class Settings(object):
    """Every setting, read here and nowhere else: environment, then the
    submit-time snapshot, then the configuration file, then the defaults."""

    def __init__(self, console, no_db=False, environ=None, snapshot=None, options=None,
                 site=False):
        env = os.environ if environ is None else environ
        self.console = console
        self.no_db = no_db
        self.environ = env
        self.config_path = expand_home(env.get("SLM_CONFIG", "").strip() or
                                       os.path.join(slm_home(env), "config"), env)
        # the snapshot a job's batch script names; a job's own commands find it in SLM_SETTINGS
        self.snapshot_path = snapshot or env.get("SLM_SETTINGS", "").strip() or None
        self.config = SettingsFile(self.config_path, console, missing_ok=not site, site=site,
                                   extra_keys=SITE_KEYS if site else ())
        allowed = self.config.values.get("SLM_MAILPROG_USER_CONFIG", "").strip().lower()
        self.user_config_allowed = site and allowed in ("yes", "true", "1")
        if site and allowed not in ("", "yes", "true", "1", "no", "false", "0"):
            console.say_once("user-config", "SLM_MAILPROG_USER_CONFIG=%s in %s: yes or no; "
                             "taken as no" % (allowed[:20], self.config_path))
        self.snapshot = SettingsFile(self.snapshot_path, console, missing_ok=False,
                                     extra_keys=(JOB_OPTIONS_KEY,)) \
            if self.snapshot_path else None
        # the job's own choices: given now, or carried by its snapshot
        self.options = dict(options or {})
        if self.snapshot is not None:
            for key in self.snapshot.values.get(JOB_OPTIONS_KEY, "").split(","):
                if key in self.snapshot.values and key not in self.options:
                    self.options[key] = self.snapshot.values[key]
        self.values, self.sources = {}, {}
        layers = [(SOURCE_OPTION, self.options), (SOURCE_ENV, env)]
        if self.snapshot is not None:
            layers.append((SOURCE_SNAPSHOT, self.snapshot.values))
        layers.append((SOURCE_FILE, self.config.values))
        for key in SETTING_KEYS:
            for source, values in layers:
                value = (values.get(key) or "").strip()
                if value:
                    self.values[key], self.sources[key] = value, source
                    break

        get = self.get
        self.api_url = get("SLM_API_URL").rstrip("/")
        base, api, rest = self.api_url.partition("/api/v1")
        if api and rest in ("", "/events"):
            # the service's base URL is wanted; its API's is a common slip
            self.api_url = base
            if rest == "":
                console.say_once("api-v1", "SLM_API_URL ends in /api/v1: using %s (set "
                                 "SLM_API_URL to the service's base URL, without /api/v1)"
                                 % shown_url(base))
        self.api_token = get("SLM_API_TOKEN") or None
        self.webhooks = split_destinations(get("SLM_WEBHOOK"))
        self.spool_dir = expand_home(get("SLM_SPOOL_DIR") or DEFAULT_SPOOL_DIR, env)
        self.timeout = self.number("SLM_TIMEOUT", DEFAULT_TIMEOUT)
        self.webhook_format = get("SLM_WEBHOOK_FORMAT").lower() or None
        if self.webhook_format and self.webhook_format not in WEBHOOK_FORMATS:
            console.say_once("format", "SLM_WEBHOOK_FORMAT must be one of %s; detecting the "
                             "format from each URL instead" % ", ".join(WEBHOOK_FORMATS))
            self.webhook_format = None
        self.webhook_secret = get("SLM_WEBHOOK_SECRET") or None
        self.dashboard_url = get("SLM_DASHBOARD_URL") or None
        self.notify_on = parse_notify_on(get("SLM_NOTIFY_ON"), console)
        self.array_notify = get("SLM_ARRAY_NOTIFY").lower() or DEFAULT_ARRAY_NOTIFY
        if self.array_notify not in ARRAY_NOTIFY_CHOICES:
            console.say_once("array-notify", "SLM_ARRAY_NOTIFY must be %s; using %s"
                             % (" or ".join(ARRAY_NOTIFY_CHOICES), DEFAULT_ARRAY_NOTIFY))
            self.array_notify = DEFAULT_ARRAY_NOTIFY
        self.tail_lines = int(self.number("SLM_TAIL_LINES", DEFAULT_TAIL_LINES, allow_zero=True))
        via = get("SLM_WEBHOOK_VIA").lower()
        self.relay = via == "api" and bool(self.webhooks)
        if via and via not in ("api", "direct"):
            console.say_once("via", "SLM_WEBHOOK_VIA must be 'api' or 'direct'; sending directly")
        self.sbatch = get("SLM_SBATCH") or "sbatch"
        self.python = get("SLM_PYTHON") or sys.executable
        self.heartbeat = self.number("SLM_HEARTBEAT", DEFAULT_HEARTBEAT, allow_zero=True)
        self.memory_warning = self.number("SLM_MEMORY_WARNING", DEFAULT_MEMORY_WARNING,
                                          allow_zero=True)
        self.time_warning = parse_time_warning(get("SLM_TIME_WARNING"), console)
        stall = parse_duration(get("SLM_STALL") or "0")
        if stall is None:
            console.say_once("stall", "ignoring SLM_STALL=%r: not a duration like 30m"
                             % get("SLM_STALL"))
        self.stall = stall or 0
        self.group = get("SLM_GROUP") or None
        self.smtp = SmtpSettings(get)

    def get(self, key):
        return self.values.get(key, "")

    def with_options(self, options):
        """These settings with a job's own choices (JOB_OPTIONS) on top."""
        if not options:
            return self
        return Settings(self.console, self.no_db, self.environ, self.snapshot_path,
                        dict(self.options, **options))

    def number(self, key, default, allow_zero=False):
        raw = self.get(key)
        if not raw:
            return default
        try:
            value = float(raw)
            if (value > 0 or (allow_zero and value == 0)) and value < 1e6:
                return value
        except ValueError:
            pass
        self.console.say_once(key, "ignoring %s=%r: not a %s number; using %g"
                              % (key, raw, "non-negative" if allow_zero else "positive",
                                 default))
        return default

    def source_of(self, key):
        """Where a setting came from, for `slm doctor`."""
        source = self.sources.get(key)
        if source == SOURCE_FILE:
            return "%s %s" % (source, self.config_path)
        if source == SOURCE_SNAPSHOT:
            return "%s %s" % (source, self.snapshot_path)
        return source

    def problems(self):
        """(file, refused secret keys) for each settings file others may read."""
        return [(f.path, sorted(set(f.refused))) for f in (self.config, self.snapshot)
                if f is not None and f.refused]

    def write_snapshot(self):
        """Save the settings in force for a job that may not inherit our
        environment; return the file's path, or None when there is nothing to save.

        The file (0600, in ~/.slm/settings) is named after its content, so
        every submission with the same settings shares one; using it keeps
        it, and one unused for SNAPSHOT_KEEP_DAYS is removed.  Only its path
        goes into the batch script, never a value.
        """
        import hashlib
        keys = [k for k in SETTING_KEYS if k in self.values]
        if not keys:
            return None
        text = "# slm %s: the settings `slm submit` passed to jobs (keep it private)\n" \
            % __version__ + "".join("%s=%s\n" % (k, self.values[k]) for k in keys)
        if self.options:   # the job's own choices: they win over its environment
            text += "%s=%s\n" % (JOB_OPTIONS_KEY, ",".join(sorted(self.options)))
        data = text.encode("utf-8", "surrogateescape")
        folder = os.path.join(slm_home(self.environ), "settings")
        path = os.path.join(folder, hashlib.sha256(data).hexdigest()[:32] + ".conf")
        os.makedirs(folder, mode=0o700, exist_ok=True)
        try:
            with open(path, "rb") as f:
                same = f.read() == data and not (os.fstat(f.fileno()).st_mode & 0o077)
        except OSError:
            same = False
        if same:
            os.utime(path, None)
        else:
            write_durably(path, data, "%s.%d.%s.tmp" % (path, os.getpid(), new_id()[:8]))
        sweep_snapshots(folder, keep=path)
        return path

    def relaying(self):
        """True when the service, not this host, sends our notifications."""
        if not self.relay:
            return False
        if not self.api_url or self.no_db:
            self.console.say_once("relay", "SLM_WEBHOOK_VIA=api needs the service "
                                  "(SLM_API_URL, no --no-db): notifying directly")
            return False
        return True

    def destinations(self):
        return [Destination(spec, self.webhook_format, self.console) for spec in self.webhooks]

    def relay_field(self, event):
        """What the service needs to notify for us (SLM_WEBHOOK_VIA=api): the
        destinations, and for each whether this event is for it (its own #on=
        filter, else SLM_NOTIFY_ON); the service judges the events it makes
        itself (LOST, Slurm's verdict) by each one's notify_on, else the
        relay's."""
        to = []
        for d in self.destinations():
            entry = {"url": d.url, "format": d.format,
                     "send": d.wants(event, self.notify_on, self.array_notify)}
            if self.webhook_secret:
                entry["secret"] = self.webhook_secret
            if d.array_notify:
                entry["array_notify"] = d.array_notify
            if d.notify_on is not None:    # for the events the service makes itself
                entry["notify_on"] = sorted(d.notify_on)
            to.append(entry)
        relay = {"to": to, "send": wants_notice(event, self.notify_on, self.array_notify),
                 "array_notify": self.array_notify, "notify_on": sorted(self.notify_on)}
        if self.dashboard_url:
            relay["dashboard_url"] = self.dashboard_url
        return relay

    def targets(self):
        """The configured targets; a malformed URL is reported and skipped."""
        found = []
        if self.api_url and not self.no_db:
            # a malformed URL still journals the events: fixed later, a flush sends them
            found.append(ServiceTarget(self.api_url, self.api_token))
        if self.relaying():
            return found
        for spec in self.webhooks:
            problem = Destination(spec, self.webhook_format).problem()
            if problem:
                self.console.say_once("hook-" + spec, "ignoring an SLM_WEBHOOK entry: %s"
                                      % problem)
            else:
                found.append(WebhookTarget(spec, self))
        return found

    def target_for(self, kind, url):
        """The target a spooled entry goes to now, or None to leave it waiting.

        Service events go to today's SLM_API_URL (the one they were meant
        for if none is set), with today's token; a notice to its destination
        if that is still configured (else retarget_spool finds it another).
        """
        if kind == ServiceTarget.kind:
            if self.no_db:
                return None
            return ServiceTarget(self.api_url or url, self.api_token)
        target = WebhookTarget(url, self)
        if self.relaying() or target.key not in set(t.key for t in self.targets()):
            return None
        return target


# ---------------------------------------------------------------------------
# Spool: the write-ahead journal that makes delivery exactly-once
# ---------------------------------------------------------------------------


# How long an event may wait in the spool before it becomes a dead letter (kept
# in dead/, named by `slm doctor`, listed by `slm spool`): a week outlasts a
# service's long weekend away, and a notice older than that tells nobody
# anything.  `slm doctor` fails from a day on.
SPOOL_EXPIRE = 7 * 86400
SPOOL_LATE = 86400


class SpoolEntry(object):
    def __init__(self, name, path, target_kind, target_url, event, configured=None):
        self.name = name          # stable name: <ms>-<event_id>.<target key>.json
        self.path = path          # where it is now (claimed by us, or None if in memory)
        self.target_kind = target_kind
        self.target_url = target_url
        self.event = event
        # the target keys configured when it was journaled (see retarget_spool)
        self.configured = configured


class SpoolItem(object):
    """What `slm spool` shows of one file: an id to name it by, its state
    (waiting, sending, dead), since when, its target, its event, the reason."""

    def __init__(self, name, state, since, kind, url, event, reason):
        self.id = short_hash(name)[:8]
        self.name, self.state, self.since = name, state, since
        self.kind, self.url, self.event, self.reason = kind, url, event, reason


class Spool(object):
    """One file per (event, target), moved between directories by rename.

    pending/NAME               waits for anybody to deliver it
    work/NAME~HOST~PID~TIME    claimed by one process for one delivery attempt
    dead/NAME                  refused for good by its target (kept, with the reason)

    rename() is atomic on local and NFS filesystems, so of two processes
    claiming the same pending file exactly one wins; the loser gets ENOENT.
    A claim whose owner died is taken back once its lease has expired (or at
    once when the owner was a dead process on this host).
    """

    def __init__(self, root):
        self.root = root
        self.pending = os.path.join(root, "pending")
        self.work = os.path.join(root, "work")
        self.dead = os.path.join(root, "dead")
        self.tmp = os.path.join(root, "tmp")
        self.beats = os.path.join(root, "beats")
        self.host = hostname()
        self._ready = False

    def ensure(self):
        if not self._ready:
            for path in (self.pending, self.work, self.dead, self.tmp):
                os.makedirs(path, mode=0o700, exist_ok=True)
            self._ready = True

    def _owner_suffix(self):
        return "~%s~%d~%d" % (self.host, os.getpid(), int(time.time()))

    def _write(self, path, data):
        write_durably(path, data, os.path.join(
            self.tmp, "%s.%d.%s" % (self.host, os.getpid(), new_id()[:8])))

    # An entry's name: <ms>-<event_id>.<target key>.json (the time sorts them
    # oldest first; an event id may hold dots, a target key holds none).
    @staticmethod
    def _name(event_id, target_key):
        return "%013d-%s.%s.json" % (int(time.time() * 1000), event_id, target_key)

    @staticmethod
    def target_key_of(name):
        return name.rsplit(".", 2)[-2]

    @staticmethod
    def event_id_of(name):
        return name.split("-", 1)[1].rsplit(".", 2)[0]

    @staticmethod
    def time_of(name):
        """When the entry of this name was journaled (epoch seconds), or None."""
        head = name.split("-", 1)[0]
        return int(head) / 1000.0 if head.isdigit() else None

    def add(self, event, target, configured=None):
        """Journal event for target, already claimed by us; return the entry.
        configured: the keys of every target configured now (retarget_spool)."""
        self.ensure()
        name = self._name(event["event_id"], target.key)
        path = os.path.join(self.work, name + self._owner_suffix())
        record = {"target": {"kind": target.kind, "url": target.url}, "event": event}
        if configured:
            record["configured"] = list(configured)
        self._write(path, encode_json(record))
        return SpoolEntry(name, path, target.kind, target.url, event, configured)

    def pending_names(self, target_key=None):
        """The pending entries' names, oldest first (of one target's, if given)."""
        try:
            names = sorted(n for n in os.listdir(self.pending) if n.endswith(".json"))
        except OSError:
            return []
        if target_key:
            names = [n for n in names if self.target_key_of(n) == target_key]
        return names

    def pending_of(self, event_ids):
        """How many pending entries hold one of these events."""
        return sum(1 for n in self.pending_names() if self.event_id_of(n) in event_ids)

    def claim(self, name):
        """Take pending NAME for ourselves; None if somebody else did."""
        path = os.path.join(self.work, name + self._owner_suffix())
        try:
            os.rename(os.path.join(self.pending, name), path)
        except OSError as e:
            if e.errno == errno.ENOENT:
                return None
            raise
        try:
            with open(path, "rb") as f:
                record = json.loads(f.read().decode("utf-8"))
            target = record["target"]
            return SpoolEntry(name, path, target["kind"], target["url"], record["event"],
                              record.get("configured"))
        except (OSError, ValueError, KeyError, TypeError) as e:
            self._bury(path, name, {"error": "unreadable spool file: %s" % e})
            return None

    def done(self, entry):
        if entry.path:
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                pass  # released at exit while the request was finishing
            entry.path = None

    def release(self, entry):
        """Give a claimed entry back to pending for a later attempt."""
        if entry.path:
            try:
                os.rename(entry.path, os.path.join(self.pending, entry.name))
            except FileNotFoundError:
                pass
            entry.path = None

    def reject(self, entry, reason):
        if entry.path:
            self._bury(entry.path, entry.name, reason)
            entry.path = None

    def _bury(self, path, name, reason):
        try:
            with open(path, "rb") as f:
                record = json.loads(f.read().decode("utf-8"))
        except (OSError, ValueError):
            record = {}
        if not isinstance(record, dict):
            record = {}
        record["rejected"] = dict(reason, time=iso_utc())
        try:
            self._write(os.path.join(self.dead, name), encode_json(record))
            os.unlink(path)
        except OSError:
            pass

    def release_mine(self):
        """At exit: hand back every claim this process still holds."""
        mine = "~%s~%d~" % (self.host, os.getpid())
        for name in self._work_names():
            if mine in name:
                try:
                    os.rename(os.path.join(self.work, name),
                              os.path.join(self.pending, name.split("~", 1)[0]))
                except OSError:
                    pass

    def _work_names(self):
        try:
            return os.listdir(self.work)
        except OSError:
            return []

    def recover(self, now=None):
        """Take back claims whose owners are gone; return how many."""
        now = time.time() if now is None else now
        recovered = 0
        for name in self._work_names():
            try:
                base, host, pid, since = name.rsplit("~", 3)
                pid, since = int(pid), int(since)
            except ValueError:
                continue
            if host == self.host and pid == os.getpid():
                continue
            if now - since < CLAIM_LEASE and not (host == self.host and not pid_alive(pid)):
                continue
            try:
                os.rename(os.path.join(self.work, name), os.path.join(self.pending, base))
                recovered += 1
            except OSError:
                pass
        return recovered

    def beat(self, job_id, sample):
        """Leave a heartbeat for a service that reads this spool (slm_api.py
        --spool): beats/JOB holds the latest sample, its mtime says when."""
        from urllib.parse import quote
        self.ensure()
        if not os.path.isdir(self.beats):
            os.makedirs(self.beats, mode=0o700, exist_ok=True)
        self._write(os.path.join(self.beats, quote(job_id, safe="")), encode_json(sample))

    def forget_beat(self, job_id):
        """The job has ended: its heartbeat file goes (a service reading it
        would only read it again, round after round)."""
        from urllib.parse import quote
        try:
            os.unlink(os.path.join(self.beats, quote(job_id, safe="")))
        except OSError:
            pass

    def heartbeats(self):
        """[(job_id, mtime, sample)] of the heartbeats left here."""
        from urllib.parse import unquote
        found = []
        try:
            names = os.listdir(self.beats)
        except OSError:
            return found
        for name in names:
            path = os.path.join(self.beats, name)
            try:
                with open(path, "rb") as f:
                    sample = json.loads(f.read().decode("utf-8"))
                found.append((unquote(name), os.stat(path).st_mtime, sample))
            except (OSError, ValueError):
                continue
        return [f for f in found if isinstance(f[2], dict)]

    # -- what `slm spool` and `slm doctor` show ---------------------------

    def _error_path(self, target_key):
        return os.path.join(self.root, "errors", target_key + ".json")

    def note_error(self, target_key, reason):
        """Remember why this target's events wait (the last failure), for `slm spool`."""
        try:
            os.makedirs(os.path.join(self.root, "errors"), mode=0o700, exist_ok=True)
            self._write(self._error_path(target_key), encode_json(
                {"error": reason, "time": iso_utc()}))
        except OSError:
            pass

    def clear_error(self, target_key):
        try:
            os.unlink(self._error_path(target_key))
        except OSError:
            pass

    def last_error(self, target_key):
        try:
            with open(self._error_path(target_key), "rb") as f:
                return json.loads(f.read().decode("utf-8")).get("error")
        except (OSError, ValueError, AttributeError):
            return None

    def items(self):
        """Every entry waiting, being sent or dead, oldest first (SpoolItems)."""
        found = []
        for state, folder in (("waiting", self.pending), ("sending", self.work),
                              ("dead", self.dead)):
            try:
                names = sorted(os.listdir(folder))
            except OSError:
                continue
            for raw in names:
                name = raw.split("~", 1)[0]
                if not name.endswith(".json"):
                    continue
                try:
                    with open(os.path.join(folder, raw), "rb") as f:
                        record = json.loads(f.read().decode("utf-8"))
                    target = record.get("target") or {}
                    kind, url, event = target.get("kind"), target.get("url"), record["event"]
                except (OSError, ValueError, KeyError, TypeError, AttributeError):
                    kind, url, event, record = None, None, {}, {}
                if state == "dead":
                    reason = (record.get("rejected") or {}).get("error")
                elif state == "sending":
                    reason = "being sent by %s" % " pid ".join(raw.split("~")[1:3])
                else:
                    reason = self.last_error(self.target_key_of(name))
                found.append(SpoolItem(name, state, self.time_of(name), kind, url, event,
                                       reason))
        return sorted(found, key=lambda i: i.since or 0)

    def drop(self, item):
        """Remove an entry that waits or is dead (not one being sent); True if it went."""
        folder = self.pending if item.state == "waiting" else self.dead \
            if item.state == "dead" else None
        if folder is None:
            return False
        try:
            os.unlink(os.path.join(folder, item.name))
            return True
        except OSError:
            return False

    def late(self, age, now=None):
        """The names of the entries waiting (or being tried) that were
        journaled more than age seconds ago, oldest first."""
        now = time.time() if now is None else now
        names = self.pending_names() + sorted(n.split("~", 1)[0] for n in self._work_names())
        return sorted(n for n in names if now - (self.time_of(n) or now) > age)

    def expire(self, now=None):
        """Entries waiting longer than SPOOL_EXPIRE become dead letters; how many."""
        moved = 0
        pending = set(self.pending_names())
        for name in [n for n in self.late(SPOOL_EXPIRE, now) if n in pending]:
            path = os.path.join(self.work, name + self._owner_suffix())
            try:
                os.rename(os.path.join(self.pending, name), path)
            except OSError:
                continue
            self._bury(path, name, {"error": "expired: waited more than %s without being "
                                    "delivered" % duration_text(SPOOL_EXPIRE)})
            moved += 1
        return moved

    def _messages_path(self, job_id):
        from urllib.parse import quote
        return os.path.join(self.root, "messages", quote(job_id, safe=""))

    def messages_of(self, job_id, now):
        """When `slm notify` sent this job's messages of the last hour."""
        try:
            with open(self._messages_path(job_id), "rb") as f:
                times = json.loads(f.read().decode("utf-8"))
        except (OSError, ValueError):
            return []
        return [t for t in times if isinstance(t, (int, float)) and now - t < 3600]

    def record_message(self, job_id, times, now):
        self.ensure()
        os.makedirs(os.path.join(self.root, "messages"), mode=0o700, exist_ok=True)
        self._write(self._messages_path(job_id), encode_json(
            [t for t in times if now - t < 3600]))

    def counts(self):
        def count(path):
            try:
                return len([n for n in os.listdir(path) if not n.startswith(".")])
            except OSError:
                return 0
        return {"pending": count(self.pending), "work": count(self.work),
                "dead": count(self.dead)}


# ---------------------------------------------------------------------------
# Delivery
# ---------------------------------------------------------------------------


def relay_refused(events, count):
    """The line for notices the service would not relay (its allow-list):
    which destinations, and who can change that."""
    shown, hosts = [], []
    for event in events:
        for entry in ((event.get("relay") or {}).get("to") or []):
            if isinstance(entry, dict) and entry.get("url"):
                d = Destination(entry["url"], entry.get("format"))
                if d.shown() not in shown:
                    shown.append(d.shown())
                    hosts.append(d.host())
    where = " to %s" % " or ".join(shown) if shown else ""
    return "the service refused to relay %d notification(s)%s: ask its admin to add %s to " \
        "SLM_RELAY_ALLOW (its events are stored; `slm doctor --send-test` checks the relay)" \
        % (count, where, ", ".join(hosts) or "the destination's host")


def deliver_entries(target, entries, spool, console, timeout):
    """Send entries (all claimed, all for target) and settle each in the spool.

    Returns (delivered, error): error is the DeliveryError that stopped it,
    after which the entries not yet sent are back in pending.  A batch the
    target refuses as malformed is retried one by one, so that one bad event
    cannot hold the others back.
    """
    size = SEND_BATCH if target.batches else 1
    delivered = 0
    for start in range(0, len(entries), size):
        chunk = entries[start:start + size]
        began = time.time()
        try:
            refused = target.deliver([e.event for e in chunk], timeout)
        except DeliveryError as e:
            if not e.permanent and time.time() - began > timeout + 1:
                # the attempt outlasted its own timeout by far: we were stopped meanwhile
                # (a suspended job's processes are frozen, or SIGSTOPped under linuxproc)
                # and the answer's wait ran out while we could not read it: not the
                # target's fault, nothing to tell the job's stderr; the retry is silent
                for entry in entries[start:]:
                    spool.release(entry)
                return delivered, e
            if e.permanent and len(chunk) > 1:
                for i, entry in enumerate(chunk):
                    count, error = deliver_entries(target, [entry], spool, console, timeout)
                    delivered += count
                    if error is not None:
                        for later in chunk[i + 1:] + entries[start + size:]:
                            spool.release(later)
                        return delivered, error
                continue
            if e.permanent:
                spool.reject(chunk[0], {"status": e.status, "error": e.reason})
                console.say("%s refused event %s for good (%s); kept in %s"
                            % (target.describe(), chunk[0].event.get("event_id"), e.reason,
                               spool.dead))
                continue
            for entry in entries[start:]:
                spool.release(entry)
            spool.note_error(target.key, e.reason)
            console.say_once("down-" + target.key, "%s: %s; events kept in the spool for "
                             "later delivery" % (target.describe(), e.reason))
            return delivered, e
        if refused:
            console.say_once("relay-refused", relay_refused([e.event for e in chunk], refused))
        if not delivered and any(e.path for e in chunk):
            spool.clear_error(target.key)    # it answers again: no reason to show
        for entry in chunk:
            spool.done(entry)
            console.debug("delivered %s of %s to %s" % (entry.event.get("status"),
                                                        entry.event.get("job_id"),
                                                        target.describe()))
        delivered += len(chunk)
    return delivered, None


def retarget_spool(spool, settings, console):
    """The spool's one rule: a waiting event goes to the destinations configured
    when it is sent.  The service's events already do (today's SLM_API_URL, and
    when relaying today's destinations in their relay request: flush_spool).
    A notice waiting for a destination no longer in SLM_WEBHOOK (a typo since
    fixed, a changed #on=) goes instead to each destination configured now that
    was not configured when it was made (so that those that had it already do
    not get it twice) and that wants it; with none such, it waits, and ages
    into a dead letter.  Returns how many notices were moved."""
    if settings.relaying():
        return 0
    now = dict((t.key, t) for t in settings.targets() if t.kind == WebhookTarget.kind)
    moved = 0
    for name in spool.pending_names():
        key = spool.target_key_of(name)
        if key in now or key == ServiceTarget.kind:
            continue
        entry = spool.claim(name)
        if entry is None:
            continue
        if entry.target_kind != WebhookTarget.kind:
            spool.release(entry)
            continue
        before = set(entry.configured or ())
        event_id = spool.event_id_of(name)
        taken = set(spool.target_key_of(n) for n in spool.pending_names()
                    if spool.event_id_of(n) == event_id)
        fresh = [t for k, t in sorted(now.items()) if k not in before and k not in taken and
                 t.destination.wants(entry.event, settings.notify_on, settings.array_notify)]
        if not fresh:
            spool.release(entry)
            continue
        for target in fresh:
            spool.release(spool.add(entry.event, target, sorted(now)))
        spool.done(entry)
        moved += 1
        console.debug("notice %s of %s now goes to %s" % (
            entry.event.get("status"), entry.event.get("job_id"),
            ", ".join(t.describe() for t in fresh)))
    return moved


def flush_spool(spool, settings, console, deadline, target=None, limit=None,
                interrupted=None):
    """Deliver pending entries (of one target, or all) until deadline.

    Returns (delivered, still_pending).  Safe to run in many processes at
    once: each entry is claimed by rename before it is sent.  target: only
    its entries, sent through it (a worker's retries keep its connection and
    its pace); else each entry's target as the settings make it today.
    interrupted() returning true stops it early (the entries not yet claimed
    stay pending).
    """
    target_key = target.key if target is not None else None
    try:
        spool.recover()
        if target is None:
            spool.expire()
            retarget_spool(spool, settings, console)
    except OSError:
        pass
    delivered = 0
    skipped = set()   # target keys that failed, or that nothing is configured for now
    batches = {}      # target key -> (target, claimed entries)

    def send(key):
        through, entries = batches.pop(key)
        remaining = deadline - time.time()
        if remaining <= 0:
            for entry in entries:
                spool.release(entry)
            return 0
        count, error = deliver_entries(through, entries, spool, console,
                                       min(remaining, settings.timeout))
        if error is not None:
            skipped.add(key)
        return count

    names = spool.pending_names(target_key)
    for name in names[:limit] if limit is not None else names:
        key = spool.target_key_of(name)
        if key in skipped:
            continue
        if time.time() >= deadline or (interrupted is not None and interrupted()):
            break
        entry = spool.claim(name)
        if entry is None:
            continue  # somebody else has it
        if entry.target_kind == ServiceTarget.kind and "relay" in entry.event and \
                entry.event.get("via") != "mailprog":
            # the service relays to the destinations configured now (retarget_spool);
            # site mode's are the job's --mail-user, not settings: kept as they are
            event = dict((k, v) for k, v in entry.event.items() if k != "relay")
            if settings.relaying():
                event["relay"] = settings.relay_field(event)
            elif settings.webhooks:
                event["relay"] = entry.event["relay"]   # sent directly now: as it was
            entry.event = event
        if key not in batches:
            through = target or settings.target_for(entry.target_kind, entry.target_url)
            if through is None:
                spool.release(entry)
                skipped.add(key)
                continue
            batches[key] = (through, [])
        through, entries = batches[key]
        entries.append(entry)
        if len(entries) >= (SEND_BATCH if through.batches else 1):
            delivered += send(key)
    for key in list(batches):
        delivered += send(key)
    return delivered, len(spool.pending_names(target_key))


class _TargetWorker(threading.Thread):
    """Sends one target's events; retries what waits for it with backoff."""

    RETRY_DELAYS = (5, 15, 30, 60, 120, 300)

    def __init__(self, courier, target):
        threading.Thread.__init__(self, name="slm-" + target.kind)
        self.daemon = True
        self.courier = courier
        self.target = target
        self.idle = threading.Event()
        self.idle.set()
        self._cond = threading.Condition()
        self._queue = []
        self._deadline = None
        self._retry_at = time.time()  # first look at what earlier runs left
        self._failures = 0

    def queue(self, entry):
        with self._cond:
            self._queue.append(entry)
            self.idle.clear()
            self._cond.notify()

    def stop(self, deadline):
        with self._cond:
            self._deadline = deadline
            self._cond.notify()

    def _next_batch(self):
        with self._cond:
            while not self._queue and self._deadline is None:
                if self._retry_at is not None and time.time() >= self._retry_at:
                    break
                self.idle.set()
                wait = None if self._retry_at is None else self._retry_at - time.time()
                self._cond.wait(wait)
            batch, self._queue = self._queue, []
            return batch, self._deadline

    def run(self):
        courier = self.courier
        if not (self.target.kind == ServiceTarget.kind and
                self.target.url.startswith("http://")):
            _import_http()  # while the first events queue up, so that they share one request
        while True:
            batch, deadline = self._next_batch()
            timeout = courier.settings.timeout
            if deadline is not None:
                # finishing: one attempt for what is queued, nothing from the backlog
                timeout = min(timeout, deadline - time.time())
                if batch and timeout > 0 and self._attempt(batch, timeout):
                    # the target answers: what earlier runs left may go along, in time left
                    left = deadline - time.time()
                    if left > 0 and courier.spool.pending_names(self.target.key):
                        self._retry_pending(left, deadline)
                with self._cond:
                    if not self._queue or time.time() >= deadline:
                        return
                continue
            if batch:
                ok = self._attempt(batch, timeout)
            else:
                ok = self._retry_pending(timeout)
            if ok:
                self._failures = 0
                # more waiting for this target (ours released earlier, or older runs')?
                self._retry_at = time.time() if courier.spool.pending_names(self.target.key) \
                    else None
            else:
                delay = self.RETRY_DELAYS[min(self._failures, len(self.RETRY_DELAYS) - 1)]
                self._failures += 1
                self._retry_at = time.time() + delay

    def _attempt(self, batch, timeout):
        journaled = [e for e in batch if e.path]
        in_memory = [e for e in batch if not e.path]
        try:
            delivered, error = deliver_entries(self.target, journaled, self.courier.spool,
                                               self.courier.console, timeout)
        except OSError as e:
            self.courier.console.say_once("spool-io", "spool error: %s" % e)
            return False
        if in_memory:
            try:
                self.target.deliver([e.event for e in in_memory], timeout)
            except DeliveryError as e:
                self.courier.lost_in_memory(len(in_memory))
                error = error or e
        return error is None

    def _retry_pending(self, timeout, deadline=None):
        try:
            limit = SEND_BATCH if self.target.batches else 20
            delivered, left = flush_spool(self.courier.spool, self.courier.settings,
                                          self.courier.console,
                                          deadline or time.time() + 5 * timeout,
                                          target=self.target, limit=limit,
                                          interrupted=None if deadline else
                                          lambda: self._deadline is not None)
            return bool(delivered or not left)
        except OSError:
            return False


class Courier(object):
    """Delivers one process's events in the background, one thread per target.

    post() journals the event first (claimed by us), then hands it to the
    target's thread; a failed attempt releases it to the spool's pending
    directory, where the thread (or anybody else) retries it later.
    """

    def __init__(self, settings, console):
        self.settings = settings
        self.console = console
        self.spool = Spool(settings.spool_dir)
        self.targets = settings.targets()
        self._workers = [_TargetWorker(self, target) for target in self.targets]
        self._keys = sorted(t.key for t in self.targets if t.kind == WebhookTarget.kind)
        self._spool_ok = True
        self._posted = []      # event ids, to tell at exit which of ours are left
        self._unjournaled = 0  # events that could not be spooled and were not delivered
        self._lock = threading.Lock()

    def start(self):
        for worker in self._workers:
            worker.start()

    def post(self, event):
        """Journal and queue event for every target (stderr if there is none)."""
        if not self.targets:
            self.console.say(describe_event(event))
            return
        self._posted.append(event["event_id"])
        settings = self.settings
        for worker in self._workers:
            payload = event
            if worker.target.kind == WebhookTarget.kind:
                if not worker.target.destination.wants(event, settings.notify_on,
                                                       settings.array_notify):
                    continue
            elif settings.relaying():
                # the service notifies for us (compute nodes without internet)
                payload = dict(event, relay=settings.relay_field(event))
            entry = None
            if self._spool_ok:
                try:
                    entry = self.spool.add(payload, worker.target, self._keys)
                except OSError as e:
                    self._spool_ok = False
                    self.console.say("cannot write the spool %s (%s): events are sent "
                                     "without a journal and lost if delivery fails"
                                     % (self.spool.root, e.strerror or e))
            if entry is None:
                entry = SpoolEntry(None, None, worker.target.kind, worker.target.url, payload)
            worker.queue(entry)

    def lost_in_memory(self, count):
        with self._lock:
            self._unjournaled += count

    def wait_idle(self, seconds):
        """Wait until every queued event had its attempt, or seconds pass."""
        deadline = time.time() + seconds
        for worker in self._workers:
            worker.idle.wait(max(0.0, deadline - time.time()))

    def finish(self, budget):
        """A last attempt for our events, bounded by budget seconds in all.

        Returns how many of our (event, target) pairs are still undelivered.
        """
        if not self._workers:
            return 0
        deadline = time.time() + budget
        for worker in self._workers:
            worker.stop(deadline)
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.time()))
            if worker.is_alive():
                # still inside a request the target never answered
                self.console.say_once("down-" + worker.target.key, "%s: no answer within "
                                      "%gs" % (worker.target.describe(), self.settings.timeout))
        try:
            # a thread still stuck in a request holds claims: hand them back
            self.spool.release_mine()
            left = self.spool.pending_of(set(self._posted))
        except OSError:
            left = 0
        left += self._unjournaled
        if left:
            self.console.say("%d event(s) not delivered yet, kept in %s: the next slm command "
                             "or 'slm flush' sends them" % (left, self.spool.root))
        return left


# ---------------------------------------------------------------------------
# Asking the service: status, list, events; printing the answers
# ---------------------------------------------------------------------------


class ServiceClient(object):
    """GET requests to the SLM service; answers become data or a Failure."""

    def __init__(self, settings):
        if not settings.api_url:
            raise Unreachable("SLM_API_URL is not set: the query commands ask the SLM service "
                              "(e.g. SLM_API_URL=http://login1:9008)")
        problem = check_http_url(settings.api_url)
        if problem:
            raise UsageError("SLM_API_URL is not usable: %s" % problem)
        self.url = settings.api_url
        self.token = settings.api_token
        self.timeout = max(settings.timeout, 5.0)  # a person waits; a job does not

    def get(self, path, params=None, missing=None, timeout=None, accept=()):
        """(status, JSON object) of a GET; missing: the Failure message for a
        404; timeout: longer than usual, for a long-poll; accept: statuses
        the caller deals with itself (its answer as JSON, {} if none)."""
        from urllib.parse import quote, urlencode
        url = self.url + quote(path, safe="/")
        if params:
            url += "?" + urlencode([(k, v) for k, v in params.items() if v is not None])
        waited = 0.0
        while True:
            try:
                result = http_request("GET", url, token=self.token,
                                      timeout=timeout or self.timeout, use_proxy=False)
            except DeliveryError as e:
                raise Unreachable("cannot reach the SLM service at %s (SLM_API_URL): %s"
                                  % (shown_url(self.url), e.reason))
            # too many questions at once (a user's many `slm watch`es): wait our
            # turn as asked, for two minutes at most
            pause = min(result.retry_after() or 1.0, 10.0)
            if result.status != 429 or waited + pause > 120:
                break
            time.sleep(pause)
            waited += pause
        data = result.json()
        if result.status in accept:
            return result.status, data if isinstance(data, dict) else {}
        if result.status == 401:
            raise Failure("the SLM service refused the request: SLM_API_TOKEN is %s"
                          % ("wrong" if self.token else "not set"))
        if result.status >= 500:
            raise Unreachable("the SLM service at %s (SLM_API_URL) failed: %s"
                              % (shown_url(self.url), result.error_text()))
        if result.status == 400:
            # the service says our question is malformed: a usage error (exit 2)
            raise UsageError(result.error_text())
        if result.status == 404 and missing:
            raise Failure(missing)
        if result.status >= 300 or not isinstance(data, dict):
            raise Failure(result.error_text() if result.status >= 300 else
                          "the SLM service at %s gave an answer that is not JSON"
                          % shown_url(self.url))
        return result.status, data

    def job(self, job_id, cluster=None):
        return self.get("/api/v1/jobs/" + job_id, {"cluster": cluster},
                        missing="unknown job: %s" % job_id)[1]

    def newest(self, name=None):
        """The user's most recently submitted job (of that name), or None."""
        status, data = self.get("/api/v1/search", {"user": user_name(), "sort": "-submitted",
                                                   "limit": "1", "name": name}, accept=(404,))
        jobs = data.get("jobs") or []
        return jobs[0] if jobs and isinstance(jobs[0], dict) else None


def local_time(text, date=True):
    when = parse_utc(text)
    if when is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S", time.localtime(when))


def job_duration(job):
    start = parse_utc(job.get("started_at"))
    if start is None:
        return "-"
    end = parse_utc(job.get("ended_at")) if job.get("ended_at") else None
    if end is None:
        end = time.time() if job.get("status") not in FINAL_STATUSES else \
            parse_utc(job.get("last_event_time")) or start
    return duration_text(max(0.0, end - start))


def emit(text):
    """One line of data on stdout, whatever its encoding can show.

    Python 3.6 in a C locale (cron, many batch environments) has an ASCII
    stdout: a job name in Chinese must not become a traceback.
    """
    try:
        sys.stdout.write(text + "\n")
    except UnicodeEncodeError:
        encoding = sys.stdout.encoding or "ascii"
        sys.stdout.write((text + "\n").encode(encoding, "backslashreplace").decode(encoding))


def print_table(rows, headers):
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    line = "  ".join("%-*s" % (w, h) for w, h in zip(widths, headers))
    emit(line.rstrip())
    for row in rows:
        emit("  ".join("%-*s" % (w, c) for w, c in zip(widths, row)).rstrip())


def print_json(data):
    emit(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False))


def cell(value, limit=24):
    text = "-" if value is None or value == "" else clean_text(str(value))
    text = text.replace("\n", " ").replace("\t", " ")
    return text if len(text) <= limit else text[:limit - 1] + "~"


# ---------------------------------------------------------------------------
# Processes and signals: the child, what reaches it, Slurm's configuration
# ---------------------------------------------------------------------------


def start_environment():
    """The environment this process was started with, as bytes.

    Python changes os.environ for itself (a 3.7+ interpreter in the C locale
    adds LC_CTYPE=C.UTF-8); the job's command must get what we were given.
    On Linux /proc/self/environ holds it as exec'd, undecodable bytes included.
    """
    try:
        with open("/proc/self/environ", "rb") as f:
            data = f.read()
    except OSError:
        return dict(os.environb) if hasattr(os, "environb") else \
            {os.fsencode(k): os.fsencode(v) for k, v in os.environ.items()}
    env = {}
    for item in data.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep and key and key not in env:   # getenv() takes the first of duplicates
            env[key] = value
    return env


class Child(object):
    """The job's command, started by fork and exec of our own, so that it gets
    exactly the environment, signal mask and dispositions we choose."""

    def __init__(self, argv, env, own_group, mask, task_pid=False):
        argv = [os.fsencode(a) for a in argv]
        ready_r, ready_w = os.pipe()          # close-on-exec: EOF means exec worked
        pid = os.fork()
        if pid == 0:  # pragma: no cover (the child)
            failure = b"0"
            try:
                os.close(ready_r)
                if own_group:
                    os.setpgid(0, 0)
                # Python ignores these for itself; an ignored signal stays ignored across exec
                for signum in (signal.SIGPIPE, signal.SIGXFSZ):
                    signal.signal(signum, signal.SIG_DFL)
                if task_pid:   # Slurm's batch process is the command now, for its own purposes
                    env[b"SLURM_TASK_PID"] = str(os.getpid()).encode()
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
                os.execvpe(argv[0], argv, env)
            except OSError as e:
                failure = str(e.errno or 0).encode()
            except BaseException:
                pass
            try:
                os.write(ready_w, failure)
            finally:
                os._exit(EXIT_CANNOT_EXECUTE)
        os.close(ready_w)
        try:
            failure = b""
            while True:
                chunk = os.read(ready_r, 64)
                if not chunk:
                    break
                failure += chunk
        finally:
            os.close(ready_r)
        if failure:
            os.waitpid(pid, 0)
            code = int(failure) if failure.isdigit() else 0
            raise OSError(code or errno.ENOEXEC, os.strerror(code or errno.ENOEXEC))
        self.pid = pid
        self.returncode = None
        if own_group:
            try:
                os.setpgid(pid, pid)
            except OSError:
                pass  # it did so itself, and has exec'd

    def poll(self):
        """Its status once it has ended (-N: killed by signal N), else None."""
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = self.pid, 255 << 8
            if pid:
                self.returncode = -os.WTERMSIG(status) if os.WIFSIGNALED(status) \
                    else os.WEXITSTATUS(status)
        return self.returncode


def forwarded_signals():
    """Every signal slm takes in and hands on: all that can be caught, except
    those it needs itself (CHLD), those the kernel sends it for its own doing
    (PIPE, XFSZ, faults).  Slurm may send the batch process any of them
    (`scancel -b --signal`, `--signal=B:SIG@T`), and plain sbatch's script gets them."""
    own = {signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD, signal.SIGPIPE, signal.SIGXFSZ,
           signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGTRAP,
           signal.SIGSYS}
    valid = getattr(signal, "valid_signals", None)   # 3.8+: real-time signals too
    numbers = sorted(valid()) if valid else range(1, 32)
    return tuple(s for s in numbers if s not in own and 0 < s < getattr(signal, "NSIG", 65))


# Signals whose default action dumps core: a slm dying of one dumps none of its own.
CORE_SIGNALS = frozenset((signal.SIGQUIT, signal.SIGILL, signal.SIGTRAP, signal.SIGABRT,
                          signal.SIGBUS, signal.SIGFPE, signal.SIGSEGV, signal.SIGXCPU,
                          signal.SIGXFSZ, signal.SIGSYS))


def die_of_signal(signum):
    """End this process with signum, the way the command ended: a parent, a
    shell and Slurm's accounting (sacct FAILED 0:9, not 137:0) see the same
    wait status as without slm.  Returns 128+signum if we somehow live on."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    if signum in CORE_SIGNALS:
        try:
            import resource
            resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(
                resource.RLIMIT_CORE)[1]))
        except (ImportError, OSError, ValueError):
            pass
    try:
        signal.signal(signum, signal.SIG_DFL)
    except (OSError, ValueError, RuntimeError):
        pass   # SIGKILL's action cannot be changed, nor need it be
    os.kill(os.getpid(), signum)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signum])
    return 128 + signum


# Where a node's slurm.conf may be: SLURM_CONF first, the configless caches
# (slurmd 21.08+ keeps the controller's copy in /run/slurm/conf), the usual places.
SLURM_CONF_PATHS = ("/run/slurm/conf/slurm.conf", "/etc/slurm/slurm.conf",
                    "/etc/slurm-llnl/slurm.conf", "/usr/local/etc/slurm.conf",
                    "/var/spool/slurmd/conf-cache/slurm.conf",
                    "/var/spool/slurm/d/conf-cache/slurm.conf")
_proctrack = []   # cached answer of slurm_proctrack()


def slurm_conf_value(path, key, depth=0):
    """key's value in a slurm.conf (Include lines followed), '' if unset, None if unreadable."""
    try:
        with open(path, "rb") as f:
            text = f.read(4 * 1024 * 1024).decode("utf-8", "replace")
    except OSError:
        return None
    found = ""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        name, sep, value = line.partition("=")
        if sep and name.strip().lower() == key.lower():
            found = value.strip().split()[0] if value.strip() else ""
        elif not sep and line.lower().startswith("include ") and depth < 2 and not found:
            import glob
            pattern = line[len("include "):].strip()
            pattern = os.path.join(os.path.dirname(path), pattern)
            for included in sorted(glob.glob(pattern)):
                found = slurm_conf_value(included, key, depth + 1) or found
    return found


def slurm_proctrack(environ=None):
    """Who receives Slurm's signals: 'linuxproc' when slurmstepd signals every
    process of the job itself (our command too), 'cgroup', 'pgid'... when it
    signals the batch process, slm, alone; None when no slurm.conf is in sight.

    proctrack/linuxproc signals every process; so does proctrack/cgroup with
    cgroup.conf's SignalChildrenProcesses=yes (23.11+), which therefore counts
    as 'linuxproc' here.  Read once, lazily: it is not needed until a signal comes.
    """
    if _proctrack:
        return _proctrack[0]
    env = os.environ if environ is None else environ
    answer = None
    for path in [env.get("SLURM_CONF", "")] + list(SLURM_CONF_PATHS):
        value = slurm_conf_value(path, "ProctrackType") if path else None
        if value is not None:
            answer = (value or "proctrack/cgroup").rpartition("/")[2].lower()   # 22.05's default
            if answer == "cgroup" and (slurm_conf_value(
                    os.path.join(os.path.dirname(path), "cgroup.conf"),
                    "SignalChildrenProcesses") or "").lower() == "yes":
                answer = "linuxproc"
            break
    if answer is None:
        try:   # no slurm.conf in sight: proctrack/cgroup shows in our freezer cgroup (v1)
            with open("/proc/self/cgroup") as f:
                if any(":freezer:/slurm" in line for line in f):
                    answer = "cgroup"
        except OSError:
            pass
    _proctrack.append(answer)
    return answer


def slurm_cluster_name(environ=None):
    """ClusterName from this host's slurm.conf (a submitting host knows no
    SLURM_CLUSTER_NAME), or None: the service asks Slurm only about its own."""
    env = os.environ if environ is None else environ
    for path in [env.get("SLURM_CONF", "")] + list(SLURM_CONF_PATHS):
        value = slurm_conf_value(path, "ClusterName") if path else None
        if value is not None:
            return value or None
    return None


def own_cluster():
    """The cluster this host is on: SLURM_CLUSTER_NAME in a job, else slurm.conf's."""
    return os.environ.get("SLURM_CLUSTER_NAME") or slurm_cluster_name()


def process_name(pid):
    try:
        with open("/proc/%d/comm" % pid, "rb") as f:
            return f.read().strip().decode("ascii", "replace")
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------
# Watching the job from inside: memory, time left, output, heartbeats
# ---------------------------------------------------------------------------

UNLIMITED = 1 << 60    # cgroup v1 says "no limit" with a number near 2**63


def read_number(path, key=None):
    """An integer from a cgroup file (or from its 'key N' line), None if absent."""
    try:
        with open(path) as f:
            text = f.read()
    except (OSError, ValueError):
        return None
    if key is not None:
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
        return None
    text = text.strip()
    if text == "max":
        return UNLIMITED
    return int(text) if text.isdigit() else None


class MemoryCgroup(object):
    """The memory cgroups of this process (Slurm's task/cgroup puts a job in
    one: the --mem limit is set at the job's and step's levels, and an OOM
    kill is counted in the cgroup where the killed process lived), v1 or v2."""

    def __init__(self, levels, version):
        self.levels = levels      # directories, ours first, up to the hierarchy's root
        self.version = version

    @classmethod
    def find(cls, proc="/proc/self/cgroup", root="/sys/fs/cgroup"):
        try:
            with open(proc) as f:
                lines = f.read().splitlines()
        except OSError:
            return None
        for line in lines:
            number, _, rest = line.partition(":")
            controllers, _, path = rest.partition(":")
            if "memory" in controllers.split(","):
                base, version = os.path.join(root, "memory"), 1
            elif number == "0" and not controllers and os.path.exists(
                    os.path.join(root, "cgroup.controllers")):
                base, version = root, 2
            else:
                continue
            levels, parts = [], [p for p in path.split("/") if p]
            while parts:
                levels.append(os.path.join(base, *parts))
                parts.pop()
            levels = [d for d in levels if os.path.isdir(d)]
            if levels:
                return cls(levels, version)
        return None

    def _limits(self):
        name = "memory.limit_in_bytes" if self.version == 1 else "memory.max"
        for level in self.levels:
            limit = read_number(os.path.join(level, name))
            if limit is not None and limit < UNLIMITED:
                yield level, limit

    def limit(self):
        """(the level holding the smallest limit, the limit in bytes), or (None, None)."""
        found = list(self._limits())
        return min(found, key=lambda f: f[1]) if found else (None, None)

    def usage(self, level):
        """Bytes in use at level, without the file cache the kernel gives back first."""
        if self.version == 1:
            used = read_number(os.path.join(level, "memory.usage_in_bytes"))
            cache = read_number(os.path.join(level, "memory.stat"), "total_inactive_file")
        else:
            used = read_number(os.path.join(level, "memory.current"))
            cache = read_number(os.path.join(level, "memory.stat"), "inactive_file")
        return None if used is None else max(0, used - (cache or 0))

    def peak(self, level):
        return read_number(os.path.join(level, "memory.max_usage_in_bytes" if self.version == 1
                                        else "memory.peak"))

    def job_levels(self, environ=None):
        """Our levels up to the job's own (Slurm's job_ID; on cgroup v2 from 25.11
        the job's SLUID, SLURM_JOB_SLUID, unless CgroupJobIdPaths=yes), or ours
        alone outside Slurm: the levels above hold other jobs, and their OOM kills."""
        env = os.environ if environ is None else environ
        sluid = env.get("SLURM_JOB_SLUID") or None
        for i, level in enumerate(self.levels):
            name = os.path.basename(level)
            if name.startswith("job_") or (sluid and name in (sluid, "job_" + sluid)):
                return self.levels[:i + 1]
        return self.levels[:1]

    def oom_kills(self):
        """OOM kills counted in this job's cgroups (v1 memory.oom_control, v2
        memory.events)."""
        if self.version == 1:
            counts = [read_number(os.path.join(level, "memory.oom_control"), "oom_kill")
                      for level in self.job_levels()]
            return sum(c for c in counts if c)
        counts = [read_number(os.path.join(level, "memory.events"), "oom_kill")
                  for level in self.job_levels()]
        return max([c for c in counts if c is not None] or [0])   # v2 counts descendants


def tree_usage(root_pid):
    """(resident bytes, CPU seconds) of root_pid and its descendants now."""
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    tick = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
    rss = cpu = 0
    for pid in [root_pid] + [p for p, _ in process_tree(root_pid)]:
        try:
            with open("/proc/%d/statm" % pid, "rb") as f:
                rss += int(f.read().split()[1]) * page
            with open("/proc/%d/stat" % pid, "rb") as f:
                stat = f.read()
            fields = stat[stat.rindex(b")") + 2:].split()
            cpu += (int(fields[11]) + int(fields[12])) / tick   # utime, stime
        except (OSError, ValueError, IndexError):
            continue
    return rss, cpu


def allocated_cpus():
    for var in ("SLURM_CPUS_ON_NODE", "SLURM_JOB_CPUS_PER_NODE"):
        raw = os.environ.get(var, "").split("(")[0].split(",")[0]
        if raw.isdigit() and int(raw) > 0:
            return int(raw)
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def slurm_memory_limit(environ=None):
    """The job's --mem in bytes from Slurm's environment (no cgroup to read), or None."""
    env = os.environ if environ is None else environ
    per_node = env.get("SLURM_MEM_PER_NODE", "")
    if per_node.isdigit() and int(per_node) > 0:
        return int(per_node) << 20
    per_cpu = env.get("SLURM_MEM_PER_CPU", "")
    cpus = allocated_cpus()
    if per_cpu.isdigit() and int(per_cpu) > 0 and cpus:
        return int(per_cpu) * cpus << 20
    return None


def output_sizes():
    """{(dev, inode): size} of the regular files our stdout and stderr point to."""
    import stat
    sizes = {}
    for fd in (1, 2):
        try:
            st = os.fstat(fd)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            sizes[(st.st_dev, st.st_ino)] = st.st_size
    return sizes


# The longest pace a service's answer may set between a job's heartbeats: a
# service asking for more (a bug, a hostile one) would hide the job's silence.
MAX_HEARTBEAT_PACE = 3600


def heartbeat_pace(body):
    """The pace (seconds) a heartbeat's answer asks for: {"pace": s}; 0 if none."""
    try:
        pace = json.loads(body.decode("utf-8")).get("pace")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return 0
    if isinstance(pace, bool) or not isinstance(pace, (int, float)) or pace != pace:
        return 0
    return int(min(max(pace, 0), MAX_HEARTBEAT_PACE))


class JobWatch(threading.Thread):
    """Looks at the running job every few seconds, beside it (never in its way):

    - MEMORY_WARNING once when its memory reaches SLM_MEMORY_WARNING percent
      of its limit (the job's memory cgroup, else Slurm's --mem);
    - TIME_WARNING at each SLM_TIME_WARNING lead before the job's end;
    - STALLED when its output files did not grow for SLM_STALL (off by default);
    - a heartbeat to the service every SLM_HEARTBEAT seconds: not an event (not
      journalled, never notified), what the service's LOST watch waits for;
      when the service cannot be reached it is left in the spool (beats/JOB)
      for a service that reads the spool itself.
    The wrapper's main thread keeps the signals and the child's end.
    """

    def __init__(self, wrapper):
        threading.Thread.__init__(self, name="slm-watch", daemon=True)
        self.wrapper = wrapper
        self.settings = wrapper.settings
        self.stopping = threading.Event()
        self.cgroup = MemoryCgroup.find()
        self.oom_at_start = self.cgroup.oom_kills() if self.cgroup else 0
        self.memory_warned = False
        self.time_done = set()     # leads already warned of
        self.last_growth = time.time()
        self.sizes = None
        self.stalled = False
        self.next_beat = time.time() + self.settings.heartbeat
        self.pace = 0     # seconds between beats the service last asked for (its answer)
        self.spooled_beat = False
        self._lock = threading.Lock()

    def heartbeats(self):
        """Whether this job sends heartbeats: to a service, or to a spool one reads."""
        s = self.settings
        return s.heartbeat > 0 and bool((s.api_url and not s.no_db) or
                                        s.sources.get("SLM_HEARTBEAT"))

    def stop(self):
        self.stopping.set()
        if self.spooled_beat:
            Spool(self.settings.spool_dir).forget_beat(self.wrapper.job.job_id)

    def run(self):
        while not self.stopping.is_set():
            try:
                self.look(time.time())
            except Exception as e:   # a look that fails must not end the watching
                self.wrapper.console.debug("watch: %s" % e)
            self.stopping.wait(self.pause())

    def pause(self):
        # a look every SAMPLE_EVERY seconds, or every heartbeat if they come more often
        wait = min(SAMPLE_EVERY, self.settings.heartbeat or SAMPLE_EVERY)
        if self.heartbeats():
            wait = min(wait, max(0.05, self.next_beat - time.time()))
        end, leads = self.wrapper.end_time, self.leads()
        for lead in leads:
            if end is not None and lead not in self.time_done:
                wait = min(wait, max(0.05, end - lead - time.time()))
        return wait

    def leads(self):
        leads = self.settings.time_warning
        if leads is not None:
            return leads
        limit = self.wrapper.time_limit
        if limit is None:
            return [600.0]
        return [min(600.0, 0.1 * limit)]   # 10 minutes, or 10 % of a short limit

    def memory(self):
        """(used bytes, limit bytes, peak bytes or None) of the job now."""
        level, limit = self.cgroup.limit() if self.cgroup else (None, None)
        if level is not None:
            return self.cgroup.usage(level), limit, self.cgroup.peak(level)
        used = tree_usage(self.wrapper.child.pid)[0]
        return used, slurm_memory_limit(), None

    def look(self, now):
        wrapper = self.wrapper
        if self.wrapper.paused:
            return    # frozen: nothing moves (and the service knows it is PAUSED)
        used, limit, _ = self.memory()
        if limit and used is not None and self.settings.memory_warning > 0 and \
                not self.memory_warned and used >= limit * self.settings.memory_warning / 100:
            self.memory_warned = True
            wrapper.note("MEMORY_WARNING", memory_used_mb=round(used / 1048576.0, 1),
                         memory_limit_mb=round(limit / 1048576.0, 1),
                         message="memory at %d%% of the job's limit"
                                 % round(100.0 * used / limit))
        end = wrapper.end_time
        if end is not None:
            due = [lead for lead in self.leads() if lead not in self.time_done and
                   now >= end - lead]
            if due:
                self.time_warning(now, end, due)
        if self.settings.stall:
            sizes = sum(output_sizes().values())
            if sizes != self.sizes:
                self.sizes, self.last_growth, self.stalled = sizes, now, False
            elif not self.stalled and now - self.last_growth >= self.settings.stall:
                self.stalled = True
                wrapper.note("STALLED", message="no output for %s"
                             % duration_text(now - self.last_growth))
        if self.heartbeats() and now >= self.next_beat:
            # the service may ask for fewer beats (its answer's pace, so that a big
            # site's beats stay bounded): the next beat comes when this one promises
            interval = max(self.settings.heartbeat, self.pace)
            self.next_beat = now + interval
            self.beat(used, limit, interval)

    def time_warning(self, now, end, leads, signal_name=None):
        with self._lock:
            fresh = [lead for lead in leads if lead not in self.time_done]
            self.time_done.update(leads)
        if fresh:
            left = max(0, int(round(end - now)))
            self.wrapper.note("TIME_WARNING", time_left=left, signal=signal_name,
                              message="%s left before the time limit%s"
                                      % (duration_text(left), " (%s from Slurm)" % signal_name
                                         if signal_name else ""))

    def signalled(self, name):
        """A USR1/USR2 near the job's end (--signal=B:USR1@T) is its time warning too."""
        end = self.wrapper.end_time
        now = time.time()
        if end is not None and now >= end - max(self.leads() + [600.0]) - 60:
            self.time_warning(now, end, [lead for lead in self.leads() if now >= end - lead] or
                              [max(self.leads() + [0.0])], signal_name=name)

    def beat(self, used, limit, interval=None):
        wrapper = self.wrapper
        s = self.settings
        rss, cpu = tree_usage(wrapper.child.pid)
        sample = {"interval": interval or s.heartbeat,
                  "rss_mb": round((used or rss) / 1048576.0, 1),
                  "cpu_time": round(cpu, 2),
                  "output_bytes": sum(output_sizes().values())}
        if limit:
            sample["memory_limit_mb"] = round(limit / 1048576.0, 1)
        beat = dict(sample, job_id=wrapper.job.job_id, time=iso_utc(), user=user_name())
        if wrapper.job.cluster:    # a job is its id on its cluster (several may share a service)
            beat["cluster"] = wrapper.job.cluster
        run = wrapper.job.fields().get("restart_count")
        if isinstance(run, int):
            beat["restart_count"] = run
        if s.api_url and not s.no_db and not check_http_url(s.api_url):
            try:
                answer = http_request("POST", s.api_url + "/api/v1/heartbeats",
                                      encode_json(beat), token=s.api_token,
                                      timeout=min(2.0, s.timeout), use_proxy=False)
                if 200 <= answer.status < 300:
                    self.pace = heartbeat_pace(answer.body)
                    return
            except DeliveryError:
                pass
        if self.stopping.is_set():
            return     # the job has ended: no beat file to outlive it
        try:   # the service cannot be reached: a service that reads the spool sees this
            self.spooled_beat = True
            Spool(s.spool_dir).beat(wrapper.job.job_id, dict(
                (k, v) for k, v in beat.items() if k not in ("job_id", "time")))
        except OSError:
            pass

    def oom_killed(self):
        """Whether the kernel's OOM killer killed a process of this job since it started."""
        return bool(self.cgroup) and self.cgroup.oom_kills() > self.oom_at_start


# ---------------------------------------------------------------------------
# The wrapper: `slm run`
# ---------------------------------------------------------------------------


def tail_of(data, lines, cut):
    """The last lines of data (bytes read from a file's end; cut: it does not
    start at the beginning), decoded leniently, with a marker when cut; None
    when nothing but blank lines is left."""
    kept = data.decode("utf-8", "replace").replace("\r\n", "\n").rstrip("\n").split("\n")
    cut = cut or len(kept) > lines
    kept = [clean_text(line)[:500] for line in kept[-lines:]]
    if not any(kept):
        return None
    body = "\n".join(kept)
    if len(body) > TAIL_MAX_CHARS:
        body, cut = body[-TAIL_MAX_CHARS:], True
    return ("[…]\n" if cut else "") + body


def output_tail(lines, since=None):
    """The last lines of the files our stdout and stderr point to (Slurm's -o/-e).

    Only regular files: a terminal or a pipe cannot be read back.  A bounded
    read from the end, decoded leniently, with a marker when cut.  since
    (from output_sizes() at the start) keeps out what the file held before
    this job started: an earlier step's output, or an appended-to file.
    """
    import stat
    since = since or {}
    seen = set()
    parts = []
    for fd, label in ((1, "stdout"), (2, "stderr")):
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            origin = since.get((st.st_dev, st.st_ino), 0)
            with open("/proc/self/fd/%d" % fd, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                if size < origin:
                    origin = 0   # truncated meanwhile: all of it is this job's
                start = max(origin, size - TAIL_READ_BYTES)
                f.seek(start)
                data = f.read(TAIL_READ_BYTES)
        except OSError:
            continue
        body = tail_of(data, lines, start > origin)
        if body:
            parts.append((label, body))
    if len(parts) == 2:
        return "\n".join("--- %s ---\n%s" % part for part in parts)[-TAIL_MAX_CHARS:]
    return parts[0][1] if parts else None


def resource_summary(elapsed):
    """CPU time, efficiency and peak memory of the child tree (reaped children)."""
    try:
        import resource
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    except (ImportError, OSError):
        return {}
    cpu = usage.ru_utime + usage.ru_stime
    summary = {"cpu_time": round(cpu, 2),
               # kilobytes on Linux; the largest single process, not the sum
               "max_rss_mb": round(usage.ru_maxrss / 1024.0, 1)}
    cpus = allocated_cpus()
    if cpus:
        summary["cpus"] = cpus
        # under a second, start-up and clock ticks swamp it (a 14 ms job "used 276 %")
        if elapsed >= 1:
            summary["cpu_efficiency"] = round(100.0 * cpu / (elapsed * cpus), 1)
    return summary


def slurm_seconds(text):
    """Seconds in a sacct time ([DD-[HH:]]MM:SS[.mmm]), or None."""
    import re
    m = re.match(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+(?:\.\d+)?)\Z", (text or "").strip())
    if not m:
        return None
    days, hours, minutes, seconds = m.groups()
    return int(days or 0) * 86400 + int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)


def slurm_megabytes(text):
    """Megabytes in a sacct size (bytes with --noconvert, or 1072K, 3.5G), or None."""
    import re
    m = re.match(r"(\d+(?:\.\d+)?)([KMGTP]?)\Z", (text or "").strip())
    if not m:
        return None
    scale = {"": 1.0 / 1048576, "K": 1.0 / 1024, "M": 1.0, "G": 1024.0, "T": 1048576.0,
             "P": 1073741824.0}[m.group(2)]
    return round(float(m.group(1)) * scale, 1)


def many_tasks(environ=None):
    """Whether the batch job was given several nodes or tasks (srun's steps)."""
    env = os.environ if environ is None else environ
    return any((env.get(name) or "1").isdigit() and int(env.get(name) or "1") > 1
               for name in ("SLURM_JOB_NUM_NODES", "SLURM_NTASKS", "SLURM_NNODES"))


# Step states whose accounting record is not final yet (TotalCPU, MaxRSS come with the end)
STEP_STATES_OPEN = frozenset(("PENDING", "RUNNING", "COMPLETING", "SUSPENDED", "RESIZING"))


def job_steps_usage(job_id, timeout):
    """What the job's ended steps other than the batch one used, on all their
    nodes, from Slurm's accounting: {"cpu_time", "max_rss_mb", "cpus"} (the
    allocation's CPUs), or {} when it ran none, or sacct cannot tell.

    The batch script's own processes are the wrapper's children and measured
    by it; `srun` tasks are slurmstepd's, on whatever node, invisible to it.
    Their steps have ended by the time the script does (srun waited for them),
    but slurmctld hands their end to slurmdbd through a queue: a step still
    shown running has no figures yet, and is asked again, 5 s at most in all."""
    import subprocess
    deadline = time.time() + max(1.0, min(timeout, 5.0))
    pause = 0.1
    while True:
        try:
            proc = subprocess.Popen(["sacct", "-n", "-P", "--noconvert", "-j", job_id, "-o",
                                     "JobID,State,TotalCPU,AllocCPUS,MaxRSS"],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        except OSError:
            return {}
        try:
            out, _ = proc.communicate(timeout=max(0.5, deadline - time.time()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return {}
        found, cpus, open_steps = {}, None, 0
        for line in out.decode("utf-8", "replace").splitlines():
            parts = line.split("|")
            if len(parts) != 5:
                continue
            job, _, step = parts[0].partition(".")
            if job != job_id:
                continue
            if not step:
                cpus = int(parts[3]) if parts[3].isdigit() and int(parts[3]) else None
            elif step not in ("batch", "extern", "interactive"):
                if (parts[1].split() or [""])[0] in STEP_STATES_OPEN:   # "CANCELLED by 0"
                    open_steps += 1
                cpu, rss = slurm_seconds(parts[2]), slurm_megabytes(parts[4])
                found["cpu_time"] = found.get("cpu_time", 0.0) + (cpu or 0.0)
                found["max_rss_mb"] = max(found.get("max_rss_mb", 0.0), rss or 0.0)
        if not open_steps or time.time() + pause > deadline:
            break
        time.sleep(pause)   # slurmdbd has not heard of a step's end yet
        pause = min(pause * 2, 1.0)
    if found and cpus:
        found["cpus"] = cpus
    return found


def squeue_words(job_id, fmt, timeout):
    """The words squeue prints about one job in format fmt (ended jobs too,
    while slurmctld remembers them), or None when it cannot tell."""
    import subprocess
    try:
        proc = subprocess.Popen(["squeue", "-h", "-t", "all", "-j", job_id, "-o", fmt],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        out, _ = proc.communicate(timeout=max(timeout, 5))
    except (OSError, subprocess.SubprocessError):
        return None
    words = out.decode("utf-8", "replace").split()
    return words if proc.returncode == 0 and words else None


def slurm_times(job_id, timeout):
    """The job's (start, end) times (epoch) from squeue, or None for each.
    Slurm 22.05 puts neither in the environment; squeue prints local time
    like 2026-11-28T16:00:00, and N/A or Unknown when there is none."""
    found = []
    for word in ((squeue_words(job_id, "%S %e", timeout) or []) + [None, None])[:2]:
        try:
            found.append(time.mktime(time.strptime(word, "%Y-%m-%dT%H:%M:%S")))
        except (TypeError, ValueError, OverflowError):
            found.append(None)
    return found[0], found[1]


def slurm_job_state(job_id, timeout):
    """squeue's state of the job (RUNNING, COMPLETING...), or None."""
    return (squeue_words(job_id, "%T", timeout) or [None])[0]


def remove_snapshot(path):
    """Remove the per-job copy of a script made by `slm submit`."""
    import shutil
    if os.path.basename(path.rstrip("/")).startswith("slm."):
        shutil.rmtree(path, ignore_errors=True)


class Wrapper(object):
    """Runs the job's command as a child and turns what happens into events.

    All the signals we hand on are blocked and taken one at a time with
    sigtimedwait() in the main thread, so there are no handlers racing the
    child's exit, and each signal comes with its sender (siginfo): a Ctrl-C
    from the terminal (si_code SI_KERNEL) already reached a child in our own
    process group and must not be forwarded a second time.

    Each signal reaches the command as Slurm would have delivered it to the
    script without slm (FACTS: the batch process alone, or with
    proctrack/linuxproc every process): USR1, USR2 and the rest go to our
    child only, never to its descendants; TERM, INT and HUP go to the whole
    tree (on cgroup clusters Slurm would SIGKILL the descendants without
    warning: slm gives them a graceful stop), exactly once: what Slurm
    already sent every process itself is not sent again.
    """

    STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
    TREE_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    NOTE_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)
    # How close a SIGCONT from slurmstepd must precede its SIGTERM to be a
    # cancel's or a time limit's (sent to every process under linuxproc).
    PRELUDE_WINDOW = 2.0
    # How long a SIGCONT from slurmstepd waits for the signal that says what it was.
    HOLD_CONT = 0.5

    def __init__(self, command, settings, console, job=None, cleanup=None, task=False):
        self.command = command
        self.settings = settings
        self.console = console
        self.cleanup = cleanup
        self.job = job or JobInfo(command, group=settings.group)
        # One task of an srun step whose every task is wrapped: its end is a
        # TASK_ENDED, and the service tells the job's end when the last has
        # ended; task 0 alone speaks for the job until then (RUNNING, signals,
        # warnings, heartbeats), the others say nothing else.
        self.task = task
        self.speaks = not task or self.job.procid in (None, "0")
        self.events = EventFactory(self.job)
        self.courier = None
        self.child = None
        self.interactive = False
        self.paused = False
        self.stop_signal = None    # the first stop request: (signum, reason)
        self.end_time = None       # the job's end time by Slurm, epoch seconds
        self.time_limit = None     # its time limit, seconds
        self.watch = None          # the JobWatch, while the command runs
        self.started = None
        self.output_sizes = {}
        self.start_mask = set()    # the signal mask we were started with: the child's
        self.held_cont = None      # when slurmstepd sent a SIGCONT not yet handed on
        self._names = {}           # pid -> process name, for senders

    # -- start -------------------------------------------------------------

    def spawn(self):
        env = start_environment()
        env[b"SLM_ACTIVE"] = (self.job.slurm_job_id or "").encode()
        env[b"SLM_JOB_ID"] = os.fsencode(self.job.job_id)
        if self.settings.snapshot_path:   # the job's own slm commands find its settings
            env[b"SLM_SETTINGS"] = os.fsencode(self.settings.snapshot_path)
        for key, value in self.settings.options.items():
            # the job's own choices, for its own slm commands (`slm notify`): a
            # submitted job's are in its snapshot; a secret never goes where
            # `env` in a job script would print it
            if not is_secret(key) and not self.settings.snapshot_path:
                env[os.fsencode(key)] = os.fsencode(value)
        task_pid = env.get(b"SLURM_TASK_PID") == str(os.getpid()).encode()
        self.output_sizes = output_sizes()   # the output files' tails start here
        # fds the user handed the job (3>file) stay open; ours are close-on-exec
        self.child = Child(self.command, env, own_group=not self.interactive,
                           mask=self.start_mask, task_pid=task_pid)
        self.started = time.time()

    def run(self):
        self.interactive = foreground_tty()
        mask = set(forwarded_signals()) | {signal.SIGCHLD}
        self.start_mask = signal.pthread_sigmask(signal.SIG_BLOCK, mask)
        try:
            return self._run(mask)
        finally:
            # what came after the end is nobody's any more: drop it, not die of it
            while signal.sigtimedwait(mask, 0) is not None:
                pass
            signal.pthread_sigmask(signal.SIG_SETMASK, self.start_mask)
            if self.cleanup:
                remove_snapshot(self.cleanup)

    def _run(self, mask):
        try:
            self.spawn()
        except OSError as e:
            return self._spawn_failed(e)
        # the child runs: everything else happens beside it
        self.courier = Courier(self.settings, self.console)
        self.watch = JobWatch(self)
        # the heartbeat interval goes with RUNNING: the service waits for beats from now
        self.post(self.events.make("RUNNING", pid=self.child.pid, heartbeat=(
            self.settings.heartbeat if self.watch.heartbeats() else None)))
        self.courier.start()
        if self.speaks:
            self.watch.start()
            self._say_job_id()
        self._warn_if_not_batch_process()
        if self.settings.snapshot_path:
            try:
                os.utime(self.settings.snapshot_path, None)   # in use: not to be swept
            except OSError:
                pass
        if self.job.slurm_job_id and self.speaks:
            threading.Thread(target=self._learn_about_slurm, name="slm-slurm",
                             daemon=True).start()
        while True:
            wait = 1.0 if self.held_cont is None else \
                max(0.0, self.held_cont + self.HOLD_CONT - time.time())
            info = signal.sigtimedwait(mask, wait)
            if info is not None and info.si_signo != signal.SIGCHLD:
                self._on_signal(info.si_signo, info.si_code, info.si_pid)
            self._release_held_cont()
            status = self.child.poll()
            if status is not None:
                if self.stop_signal is None and self._died_of_stop_signal(status):
                    self._await_stop_request()
                return self._finish(status)

    def _died_of_stop_signal(self, status):
        stops = [int(s) for s in self.STOP_SIGNALS]
        return -status in stops or status - 128 in stops

    def _await_stop_request(self):
        """The child died of a SIGTERM that was not ours: was it meant for the job?

        With proctrack/linuxproc Slurm signals every process of the job, and a
        bash script dies of it at once, possibly before the copy sent to us is
        even queued.  Waiting briefly for that copy tells a cancel or a time
        limit from a failure; it costs STOP_GRACE only to jobs dying this way.
        """
        deadline = time.time() + STOP_GRACE
        while time.time() < deadline:
            info = signal.sigtimedwait(self.STOP_SIGNALS, max(0.0, deadline - time.time()))
            if info is None:
                return
            if info.si_pid != os.getpid():
                self._on_signal(info.si_signo, info.si_code, info.si_pid)
                return

    def _spawn_failed(self, e):
        name = self.command[0]
        if e.errno == errno.ENOENT or not name:
            code, message = EXIT_NOT_FOUND, "command not found: %s" % name
        else:
            code, message = EXIT_CANNOT_EXECUTE, "cannot execute %s: %s" % (
                name, e.strerror or e)
        self.console.error(message)
        self.courier = Courier(self.settings, self.console)
        self.post(self.events.make("FAILED", exit_code=code, message=message))
        self.courier.start()
        self.courier.finish(exit_budget(self.settings.timeout))
        return code

    def _say_job_id(self):
        """One line naming the job, for whoever will look it up in the service:
        a local id nobody could guess, or a Slurm job run from a terminal.  A
        batch job's output files get nothing (they stay as without slm)."""
        s = self.settings
        if not s.api_url or s.no_db or (self.job.slurm_job_id and not self.interactive):
            return
        link = job_link({"job_id": self.job.job_id}, s.dashboard_url)
        self.console.say("job %s%s" % (self.job.job_id, ", %s" % link if link else
                                       " (`slm status last` shows it)"))

    def _warn_if_not_batch_process(self):
        task_pid = self.job.task_pid
        if task_pid and task_pid.isdigit() and int(task_pid) == os.getppid():
            self.console.say("warning: slm is not the job's batch process, so Slurm's signals "
                             "(cancel, time limit, suspend) will not reach it on cgroup "
                             "clusters; start it with 'exec python3 slm.py run -- ...'")

    def _learn_about_slurm(self):
        slurm_proctrack()   # read now, not when the first signal is waiting for it
        # Slurm 23.02+ puts the job's start and (planned) end in its environment; 22.05's
        # jobs ask squeue
        start, end = (int(os.environ[k]) if os.environ.get(k, "").isdigit() else None
                      for k in ("SLURM_JOB_START_TIME", "SLURM_JOB_END_TIME"))
        if not start or not end:
            start, end = slurm_times(self.job.slurm_job_id, self.settings.timeout)
        if start is not None and end is not None and end > start:
            self.time_limit = end - start
        self.end_time = end

    def post(self, event):
        """Journal and send an event, if this wrapper speaks for the job (see task)."""
        if self.speaks or event["status"] == "TASK_ENDED":
            self.courier.post(event)

    def note(self, status, **fields):
        """An event from the watch thread (warnings): journalled and sent like any."""
        self.post(self.events.make(status, **fields))

    # -- signals -----------------------------------------------------------

    def _on_signal(self, signum, code, sender):
        if sender == os.getpid():
            return
        from_terminal = code == SI_KERNEL and self.interactive
        sent = from_terminal or self._slurm_sent_everyone(signum, sender)
        name = signal_name(signum)
        if signum == signal.SIGTSTP:
            if not self.paused:
                self.paused = True
                # journaled before we return: Slurm freezes the job 2 s after SIGTSTP
                self.post(self.events.make("PAUSED", signal=name))
            if not sent:
                self._forward(signum)
            if self.interactive:
                # like a shell job: stop with the child, so the shell gets its prompt
                self.courier.wait_idle(min(1.0, self.settings.timeout))
                os.kill(os.getpid(), signal.SIGSTOP)
        elif signum == signal.SIGCONT:
            if not sent:
                self._forward(signum)
            if self.paused:
                self.paused = False
                self.post(self.events.make("RESUMED", signal=name))
            # else: the SIGCONT that starts every scancel, or a stray one: not a resume
        elif signum in self.STOP_SIGNALS:
            if self.stop_signal is None:
                reason = self._stop_reason(signum, from_terminal)
                self.stop_signal = (signum, reason)
                self.post(self.events.make("TERMINATING", signal=name, reason=reason))
            if not sent:
                self._forward(signum, tree=signum in self.TREE_SIGNALS)
                if self.paused:
                    # a stopped child cannot act on SIGTERM until it runs again
                    self._forward(signal.SIGCONT)
            self.paused = False
        else:
            if signum in self.NOTE_SIGNALS:
                self.post(self.events.make("SIGNALED", signal=name))
                self.watch.signalled(name)
            if not sent:
                self._forward(signum)

    def _slurm_sent_everyone(self, signum, sender):
        """True when Slurm sent this signal to every process of the job itself.

        Under proctrack/linuxproc slurmstepd signals every process for a
        cancel or a time limit (SIGCONT then SIGTERM), a suspend (SIGTSTP)
        and a resume (SIGCONT): our command has its copy already, and a
        second one from us would run its traps twice.  What it sends to the
        batch process only (`scancel -b`, `--signal=B:SIG@T`, which sends
        SIGCONT then SIG, measured) is ours to hand on.  A SIGCONT that is not
        a resume is therefore held until the next signal tells which it was.
        """
        if not self.job.slurm_job_id or not sender:
            return False
        if sender not in self._names:
            self._names[sender] = process_name(sender)
        if self._names[sender] != "slurmstepd" or slurm_proctrack() != "linuxproc":
            return False
        if signum == signal.SIGTSTP:
            return True
        if signum == signal.SIGCONT:
            if not self.paused:
                self.held_cont = time.time()
            return True
        if self.held_cont is None and signum == signal.SIGTERM and \
                signal.sigtimedwait([signal.SIGCONT], 0) is not None:
            self.held_cont = time.time()   # both were waiting: the SIGCONT came first
        if self.held_cont is None:
            return False   # alone: `scancel -b --signal=SIG`
        held, self.held_cont = self.held_cont, None
        if signum == signal.SIGTERM and time.time() - held < self.PRELUDE_WINDOW and \
                slurm_job_state(self.job.slurm_job_id, self.settings.timeout) != "RUNNING":
            return True    # a cancel, a time limit, a requeue: the job is COMPLETING
        self._forward(signal.SIGCONT)   # a warning signal's SIGCONT: the batch process's
        return False

    def _release_held_cont(self):
        """A SIGCONT from slurmstepd that no SIGTERM followed was for the batch process."""
        if self.held_cont is not None and time.time() - self.held_cont >= self.HOLD_CONT:
            self.held_cont = None
            self._forward(signal.SIGCONT)

    def _stop_reason(self, signum, from_terminal):
        if from_terminal:
            return "interrupted"
        end = self.end_time
        if end is not None and time.time() >= end - TIME_LIMIT_WINDOW:
            return "time_limit"
        return "cancelled"

    def _forward(self, signum, tree=False):
        """Send signum to our child, or (tree) to every process under it, once."""
        child = self.child
        targets = [child.pid]
        if tree:
            me = os.getpid()
            if not self.interactive:
                try:
                    os.killpg(child.pid, signum)
                    targets = []
                except OSError:
                    pass
                # descendants that left the child's group (setsid, own jobs) too
                targets += [pid for pid, pgid in process_tree(child.pid)
                            if pgid != child.pid and pid != me]
            else:
                # the child shares our group (it may read the terminal): by pid
                targets += [pid for pid, _ in process_tree(child.pid) if pid != me]
        for pid in targets:
            try:
                os.kill(pid, signum)
            except OSError:
                pass

    # -- end ---------------------------------------------------------------

    def _finish(self, returncode):
        """Report the end; return the exit code, or -N when signal N killed the command."""
        elapsed = round(time.time() - self.started, 3)
        self.watch.stop()
        if returncode < 0:
            fields = {"signal": signal_name(-returncode)}
        else:
            fields = {"exit_code": returncode}
        if self.stop_signal is not None:
            status = "TIMEOUT" if self.stop_signal[1] == "time_limit" else "CANCELLED"
            fields["reason"] = self.stop_signal[1]
        elif self.watch.oom_killed():
            # the kernel killed a process of the job for memory: Slurm records
            # OUT_OF_MEMORY whatever the script did next, and so do we
            status = "OUT_OF_MEMORY"
            used, limit, peak = self.watch.memory()
            fields.update(reason="oom", peak_memory_mb=round((peak or used or 0) / 1048576.0, 1),
                          message="the kernel's OOM killer killed a process of the job "
                                  "(memory limit %s MB)" % (
                                      round(limit / 1048576.0, 1) if limit else "?"))
            if limit:
                fields["memory_limit_mb"] = round(limit / 1048576.0, 1)
        elif returncode == 0:
            status = "COMPLETED"
        else:
            status = "FAILED"
            if returncode == -signal.SIGKILL:
                fields["message"] = "killed by SIGKILL, not by the OOM killer as far as the " \
                    "job's memory cgroup shows: a cancel of a suspended job, KillWait running " \
                    "out, or another process"
        fields.update(resource_summary(elapsed))
        if self.task:
            return self._task_ended(returncode, status, elapsed, fields)
        if self.job.slurm_job_id and self.job.step_id is None and self.stop_signal is None \
                and many_tasks():
            self._add_steps_usage(fields, elapsed)
        if status != "COMPLETED" and self.settings.tail_lines > 0:
            tail = output_tail(self.settings.tail_lines, self.output_sizes)
            if tail:
                fields["output_tail"] = tail
        self.post(self.events.make(status, elapsed=elapsed, **fields))
        self.courier.finish(exit_budget(self.settings.timeout))
        return returncode

    def _add_steps_usage(self, fields, elapsed):
        """The whole job's figures, not the batch node's alone: what its srun
        steps used on every node (Slurm's accounting) added to what the batch
        script's own processes used.  One sacct call, bounded, at the end of a
        job given several tasks or nodes (a one-task job's steps are rare: not
        worth slurmdbd's time for every job), and never when Slurm is stopping
        the job (KillWait's SIGKILL may come before sacct answers: the event
        goes first; Slurm's own record then has the figures)."""
        steps = job_steps_usage(self.job.slurm_job_id, self.settings.timeout)
        if not steps:
            fields["resources_from"] = "wrapper"
            return
        fields["cpu_time"] = round(fields.get("cpu_time", 0.0) + steps["cpu_time"], 2)
        fields["max_rss_mb"] = max(fields.get("max_rss_mb", 0.0), steps["max_rss_mb"])
        if steps.get("cpus"):
            fields["cpus"] = steps["cpus"]
        if fields.get("cpus") and elapsed >= 1:
            fields["cpu_efficiency"] = round(100.0 * fields["cpu_time"] /
                                             (elapsed * fields["cpus"]), 1)
        fields["resources_from"] = "slurm"

    def _task_ended(self, returncode, status, elapsed, fields):
        """This task's end (see task): its exit code, or the signal that ended
        it or stopped the job (a cancel, a time limit: Slurm's verdict then)."""
        if self.stop_signal is not None:
            fields.pop("exit_code", None)
            fields["signal"] = signal_name(self.stop_signal[0])
        what = ("exited %s" % fields["exit_code"]) if "exit_code" in fields else \
            ("ended by %s" % fields["signal"])
        fields.pop("cpu_efficiency", None)
        self.post(self.events.make(
            "TASK_ENDED", elapsed=elapsed, task_id=int(self.job.procid or 0),
            ntasks=self.job.step_tasks, step_id=self.job.step_id, task_status=status,
            message="task %s of step %s on %s %s" % (self.job.procid or 0, self.job.step_id,
                                                    hostname(), what), **fields))
        self.courier.finish(exit_budget(self.settings.timeout))
        return returncode



def exec_transparently(command, console):
    """Become the command (no events): nested slm, or a non-zero srun task."""
    try:
        os.execvp(command[0], command)
    except OSError as e:
        if e.errno == errno.ENOENT:
            console.error("command not found: %s" % command[0])
            return EXIT_NOT_FOUND
        console.error("cannot execute %s: %s" % (command[0], e.strerror or e))
        return EXIT_CANNOT_EXECUTE


# ---------------------------------------------------------------------------
# Submitting: `slm submit`
# ---------------------------------------------------------------------------

# sbatch's options, 22.05 to 26.05 (getopt_long, "+": the first non-option is the
# script).  An option newer than this table is asked of the installed sbatch
# (sbatch_takes_value): its value must never be taken for the script.
SBATCH_SHORT_VALUE = frozenset("aAbBcCdDeFGiJLmMnNopqStwx")
SBATCH_LONG_VALUE = frozenset("""
    account acctg-freq array batch bb bbf begin chdir cluster-constraint clusters comment
    constraint container core-spec cores-per-socket cpu-freq cpus-per-gpu cpus-per-task
    deadline delay-boot dependency distribution error exclude export export-file
    extra-node-info gid gpu-bind gpu-freq gpus gpus-per-node gpus-per-socket gpus-per-task
    gres gres-flags hint input job-name kill-on-invalid-dep licenses mail-type mail-user
    mcs-label mem mem-bind mem-per-cpu mem-per-gpu mincpus network nodefile nodelist nodes
    ntasks ntasks-per-core ntasks-per-gpu ntasks-per-node ntasks-per-socket open-mode output
    partition power prefer priority profile qos reservation signal sockets-per-node switches
    thread-spec threads-per-core time time-min tmp uid wait-all-nodes wckey wrap
    tres-per-task extra segment tres-bind container-id container-type mem-update resources
""".split())   # the last line: 23.02 to 26.05
SBATCH_LONG_OPTIONAL = frozenset("exclusive get-user-env nice no-kill oom-kill-step "
                                 "propagate resv-ports".split())
SBATCH_LONG_FLAG = frozenset("""
    contiguous help hold ignore-pbs no-requeue overcommit oversubscribe parsable quiet reboot
    requeue spread-job test-only usage use-min-nodes verbose version wait
    stepmgr spread-segments consolidate-segments
""".split())
SBATCH_SHORT_NAMES = {"J": "job-name", "p": "partition", "a": "array", "t": "time"}
# sbatch options that print something and submit nothing
SBATCH_NO_SUBMIT = frozenset(("help", "usage", "version", "test-only"))
# slm submit's own flags, which may stand among sbatch's options (never asked of it)
SUBMIT_OWN_FLAGS = ("--no-monitor", "--no-db")
_sbatch_answers = {}   # option name -> True/False, as the installed sbatch said


def sbatch_takes_value(name):
    """Does the installed sbatch's --NAME take a separate value?  For an option
    this file's table does not know (a newer release's): sbatch alone is asked,
    with nothing on stdin, so nothing is ever submitted, and getopt answers
    "option '--NAME' requires an argument" before anything else.  No sbatch,
    or any other answer: a flag, as before."""
    if name not in _sbatch_answers:
        import subprocess
        try:
            # SLM_SBATCH of the environment: this is asked before settings are read
            answer = subprocess.run(
                [os.environ.get("SLM_SBATCH") or "sbatch", "--" + name],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            answer = b""
        first = (answer.splitlines() or [b""])[0]
        _sbatch_answers[name] = b"requires an argument" in first
    return _sbatch_answers[name]


class SbatchCommand(object):
    """An sbatch command line, split the way sbatch splits it."""

    def __init__(self, argv):
        self.argv = list(argv)
        self.options = []      # sbatch's own words, in order, without --wrap
        self.values = {}       # long option name -> last value (job-name, partition...)
        self.flags = set()     # long options given without a value (requeue, wait...)
        self.wrap = None
        self.no_submit = False
        self.script = None
        self.script_args = []
        self._parse()

    @staticmethod
    def _long_name(word):
        every = SBATCH_LONG_VALUE | SBATCH_LONG_OPTIONAL | SBATCH_LONG_FLAG
        if word in every:
            return word
        matches = [n for n in every if n.startswith(word)]  # getopt_long takes prefixes
        return matches[0] if len(matches) == 1 else word

    @classmethod
    def _takes_value(cls, name):
        """name: a _long_name.  A name in no table is a newer sbatch's: asked."""
        if name in SBATCH_LONG_VALUE:
            return True
        if name in SBATCH_LONG_OPTIONAL or name in SBATCH_LONG_FLAG or not name or \
                "--" + name in SUBMIT_OWN_FLAGS or \
                any(n.startswith(name) for n in SBATCH_LONG_VALUE | SBATCH_LONG_OPTIONAL |
                    SBATCH_LONG_FLAG):
            return False    # known, or ambiguous: sbatch refuses it whatever follows
        return sbatch_takes_value(name)

    @classmethod
    def width(cls, args, i):
        """How many words the option at args[i] takes (itself and its value)."""
        word = args[i]
        if word.startswith("--"):
            name, has_value, _ = word[2:].partition("=")
            return 2 if not has_value and i + 1 < len(args) and \
                cls._takes_value(cls._long_name(name)) else 1
        for j, letter in enumerate(word[1:]):
            if letter in SBATCH_SHORT_VALUE:
                return 1 if word[j + 2:] or i + 1 >= len(args) else 2
        return 1

    def _parse(self):
        args, i = self.argv, 0
        while i < len(args):
            word, start = args[i], i
            i += 1
            if word == "--":
                self.options.append(word)
                break
            if word.startswith("--"):
                name, has_value, value = word[2:].partition("=")
                name = self._long_name(name)
                if not has_value and i < len(args) and self._takes_value(name):
                    value, has_value = args[i], True
                    i += 1
                if name == "wrap":
                    self.wrap = value
                    continue  # replaced by a script of ours
                self._note(name, value if has_value else None)
            elif word.startswith("-") and word != "-":
                for j, letter in enumerate(word[1:]):
                    if letter in SBATCH_SHORT_VALUE:
                        value = word[j + 2:]
                        if not value and i < len(args):
                            value = args[i]
                            i += 1
                        self._note(SBATCH_SHORT_NAMES.get(letter, letter), value)
                        break
                    if letter in "hV":
                        self.no_submit = True
            else:
                i -= 1
                break
            self.options.extend(args[start:i])
        if i < len(args):
            self.script, self.script_args = args[i], args[i + 1:]

    def _note(self, name, value):
        if name in SBATCH_NO_SUBMIT:
            self.no_submit = True
        if value is not None:
            self.values[name] = value
        else:
            self.flags.add(name)


def parse_directives(script):
    """#SBATCH options in a script's header, read as sbatch reads them: a line
    starting with "#SBATCH" is a directive; blank lines and other comments are
    skipped; the first other line ends the header (later #SBATCH lines are ignored)."""
    found = {}
    for raw in script.splitlines()[1:]:
        if raw.startswith(b"#SBATCH"):
            words = raw[len(b"#SBATCH"):].split(b"#", 1)[0].split()
            try:
                parsed = SbatchCommand([w.decode("utf-8", "replace") for w in words])
            except Exception:
                continue
            found.update(parsed.values)
        elif raw.strip() and not raw.strip().startswith(b"#"):
            break
    return found


def slm_directives(script):
    """The #SLM lines of a script's header, read as parse_directives reads
    #SBATCH lines: [(line number, their words)].  A '#' after a blank starts
    a comment (one inside a word is a URL's: '…#on=final')."""
    import re
    found = []
    for number, raw in enumerate(script.splitlines()[1:], 2):
        if re.match(br"#SLM(\s|\Z)", raw):
            text = re.split(r"\s#", raw[4:].decode("utf-8", "replace"), 1)[0]
            found.append((number, text.split()))
        elif raw.strip() and not raw.strip().startswith(b"#"):
            break
    return found


def blank_directives(script):
    """The script with its #SLM lines cut to '#SLM': they may hold a webhook
    URL (a secret), and slurmctld keeps the batch script where admins read it.
    Lines keep their numbers."""
    if not slm_directives(script):
        return script
    lines = script.split(b"\n")
    for number, _ in slm_directives(script):
        lines[number - 1] = b"#SLM" + (b"\r" if lines[number - 1].endswith(b"\r") else b"")
    return b"\n".join(lines)


def notify_on_problem(text):
    """Why an SLM_NOTIFY_ON value is not one (an unknown word), or None."""
    known = set(NOTIFY_GROUPS) | set(s.lower() for s in STATUSES)
    for word in (text or "").replace(" ", ",").split(","):
        if word.strip() and word.strip().lower() not in known:
            return "unknown word %r%s" % (word.strip(), did_you_mean(
                word.strip().lower(), sorted(known)))
    return None


def parse_job_options(words, where):
    """{option: value} of a job's own choices (JOB_OPTIONS) in words, as
    `--notify-on=END,FAIL` or `--notify-on END,FAIL`; UsageError naming where."""
    names = [option for option, _ in JOB_OPTIONS]
    found, i = {}, 0
    while i < len(words):
        option, equals, value = words[i].partition("=")
        i += 1
        if option not in names:
            raise UsageError("%s: unknown option %s%s; #SLM lines take %s" % (
                where, option, did_you_mean(option, names), ", ".join(names)))
        if not equals:
            if i >= len(words):
                raise UsageError("%s: %s needs a value" % (where, option))
            value, i = words[i], i + 1
        problem = notify_on_problem(value) if option == "--notify-on" else \
            Destination(value).problem() if option == "--webhook" else None
        if problem:
            raise UsageError("%s: %s %s" % (where, option, problem))
        found[option] = value
    return found


def header_lines(script):
    """The comment block after the #! line, where sbatch reads its directives."""
    kept = []
    for raw in script.splitlines(True)[1:]:
        line = raw.strip()
        if line and not line.startswith(b"#"):
            break
        kept.append(raw if raw.endswith(b"\n") else raw + b"\n")
    return b"".join(kept)


def interpreter(script):
    """What the kernel would run for the #! line: [path] or [path, one argument]."""
    first = script.split(b"\n", 1)[0]
    if not first.startswith(b"#!"):
        return None
    words = first[2:].strip().split(None, 1)
    if not words:
        return None
    return [w.decode("utf-8", "surrogateescape") for w in
            ([words[0]] + ([words[1].strip()] if len(words) > 1 else []))]


def shell_quote(text):
    import shlex
    return shlex.quote(text).encode("utf-8", "surrogateescape")


def ascii_bytes(data):
    """A bytes literal for data in Python source, in ASCII whatever data holds."""
    return repr(bytes(data)).encode("ascii")


def monitored_script(original, name, args, python, slm_path, settings_path=None, group=None):
    """A batch script whose batch process is `slm run` running the original.

    It is a small Python program that slurmstepd starts directly: no shell
    stands between the job's environment and slm (a bash /bin/sh would add
    SHLVL and _), and slm is imported from its compiled cache (__pycache__
    beside slm.py, written on first use) instead of being compiled at every
    job start.  -I keeps the job's PYTHON* variables and working directory
    out of slm's imports.  It keeps the original's #SBATCH header (sbatch
    reads options only from the script it is given) and carries the
    original's bytes, as sbatch keeps its own copy, so the job does not depend
    on the file still existing.  Settings travel as the path of a private
    file, never by value: slurmctld keeps this text and admins can read it.
    """
    import binascii
    import re
    py = os.fsencode(python)
    folder, module = os.path.split(os.fsencode(slm_path))
    if re.match(br"[A-Za-z_]\w*\.py\Z", module):
        load = b"sys.path.insert(0, os.fsdecode(%s))\nimport %s as slm\n" % (
            ascii_bytes(folder), module[:-3])
    else:   # slm.py renamed (e.g. to `slm`): load the file by its path, cache and all
        load = (b"import importlib.machinery, importlib.util\n"
                b"loader = importlib.machinery.SourceFileLoader('slm', os.fsdecode(%s))\n"
                b"slm = importlib.util.module_from_spec("
                b"importlib.util.spec_from_loader('slm', loader))\n"
                b"loader.exec_module(slm)\n" % ascii_bytes(os.fsencode(slm_path)))
    if py.startswith(b"/") and len(py) < 200 and not re.search(br"\s", py):
        start = b"#!" + py + b" -I\n"
    else:
        # the kernel cannot run such an interpreter path from #!: sh hands the file to it
        start = b"#!/bin/sh\n"
    out = [start, b"# -*- coding: latin-1 -*-\n", header_lines(original),
           b"# Generated by slm submit " + __version__.encode() + b": runs " +
           ascii_bytes(os.fsencode(name)) + b" unmodified under 'slm run',\n"
           b"# the batch process, so that Slurm's signals reach it on every cluster.\n"]
    if start == b"#!/bin/sh\n":
        out.append(b"''''exec " + shell_quote(python) + b' -I "$0" "$@" # \'\'\'\n')
    out.append(b"import os, sys\n" + load)
    out.append(b"sys.exit(slm.run_submitted(b'''\n")
    for i in range(0, len(original), 57 * 20):
        out.append(binascii.b2a_base64(original[i:i + 57 * 20]))
    out.append(b"''', %s, [%s], [%s], %s%s))\n" % (
        ascii_bytes(os.fsencode(name)),
        b", ".join(ascii_bytes(os.fsencode(w)) for w in interpreter(original)),
        b", ".join(ascii_bytes(os.fsencode(a)) for a in args),
        ascii_bytes(os.fsencode(settings_path)) if settings_path else b"None",
        b", group=" + ascii_bytes(os.fsencode(group)) if group else b""))
    return b"".join(out)


def submitted_argv(script, name, interp, args, settings=None, group=None):
    """The job's half of `slm submit` (see run_submitted, after main): put the
    original script back in a private directory (as sbatch keeps its own
    copy); -> the `slm run` arguments that run it with its interpreter, or an
    exit status."""
    import binascii
    base = os.environ.get("TMPDIR") or "/tmp"
    folder = os.path.join(base, "slm.%s.%s" % (os.environ.get("SLURM_JOB_ID") or "job",
                                               new_id()[:8]))
    try:
        os.mkdir(folder, 0o700)
        path = os.path.join(folder, os.fsdecode(name))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o700)
        try:
            os.write(fd, binascii.a2b_base64(script))
        finally:
            os.close(fd)
    except OSError as e:
        Console().error("cannot write the job's script to %s: %s" % (base, e.strerror or e))
        return EXIT_FAILURE
    argv = ["run", "--cleanup", folder]
    if settings:
        argv += ["--settings", os.fsdecode(settings)]
    if group:
        argv += ["--group", os.fsdecode(group)]
    return argv + ["--"] + [os.fsdecode(w) for w in interp] + [path] + \
        [os.fsdecode(a) for a in args]


def find_job_id(text, complete=True):
    """The job id in sbatch's output so far; complete: the output has ended."""
    import re
    lines = text.split("\n")
    if not complete:
        lines = lines[:-1]   # a line still being written may hold half a number
    for line in lines:
        m = re.search(r"Submitted batch job (\d+)", line) or \
            re.match(r"\s*(\d+)(;\S+)?\s*$", line)
        if m:
            return m.group(1)
    return None


def stdin_binary():
    return getattr(sys.stdin, "buffer", sys.stdin)


def stdout_binary():
    return getattr(sys.stdout, "buffer", sys.stdout)


def stderr_binary():
    return getattr(sys.stderr, "buffer", sys.stderr)


def feed(sink, data):
    """Write data to a child's stdin and close it (it may not read it all)."""
    try:
        sink.write(data)
    except (OSError, ValueError):
        pass
    finally:
        try:
            sink.close()
        except OSError:
            pass


def pump(source, sink, copy, watch=None):
    """Pass a child's output through as it comes, keeping a copy; watch(copy,
    ended) hears of each chunk."""
    while True:
        chunk = source.read1(65536) if hasattr(source, "read1") else source.read(65536)
        if chunk:
            copy.extend(chunk)
            try:
                sink.write(chunk)
                sink.flush()
            except (OSError, ValueError):
                pass
        if watch is not None:
            watch(bytes(copy), not chunk)
        if not chunk:
            break


class Submitter(object):
    def __init__(self, argv, settings, console, monitor=True, group=None, options=None):
        self.settings = settings
        self.console = console
        self.monitor = monitor
        self.group = group or settings.group
        self.cmd = SbatchCommand(argv)
        self.courier = None
        self.options = dict(options or {})   # the command line's --notify-on, --webhook

    def choose(self, original, name):
        """The job's own choices: its script's #SLM lines, then the command
        line's (which win, as sbatch's options win over #SBATCH lines); they
        go into the settings the job is submitted with, never into its script."""
        chosen = {}
        for number, words in slm_directives(original):
            chosen.update(parse_job_options(words, "%s line %d" % (name, number)))
        chosen.update(parse_job_options(
            ["%s=%s" % pair for pair in self.options.items() if pair[1]], "slm submit"))
        if "--group" in chosen:
            self.group = chosen["--group"]
        self.settings = self.settings.with_options(dict(
            (key, chosen[option]) for option, key in JOB_OPTIONS
            if option in chosen and key != "SLM_GROUP"))

    def run(self):
        cmd = self.cmd
        sbatch = self.settings.sbatch
        untouched = [sbatch] + cmd.argv
        if cmd.no_submit or (cmd.wrap is not None and cmd.script):
            # --help, --version, --test-only, or a command line sbatch refuses itself
            return self._sbatch(untouched, report=False)
        path = os.path.abspath(cmd.script) if cmd.script else None
        if cmd.wrap is not None:
            original, name = ("#!/bin/sh\n%s\n" % cmd.wrap).encode("utf-8", "surrogateescape"), \
                "wrap"
        elif cmd.script:
            name = os.path.basename(cmd.script)
            try:
                with open(cmd.script, "rb") as f:
                    original = f.read()
            except OSError:
                # sbatch says what is wrong with the file in its own words
                return self._sbatch(untouched, report=True)
        elif not self.monitor:
            return self._sbatch(untouched, report=True)  # sbatch reads the script on stdin
        else:
            original, name = stdin_binary().read(), "sbatch"
        if self.monitor or self.options:
            self.choose(original, name)
        if not self.monitor and (cmd.script or cmd.wrap is not None):
            return self._sbatch(untouched, report=True, original=original, path=path)
        if interpreter(original) is None or b"\0" in original or b"\r\n" in original:
            # no #! line, a NUL, DOS line breaks: sbatch refuses such a script, in its own words
            return self._submit_file(sbatch, original, name, original, path)
        slm_path = os.path.realpath(os.path.abspath(__file__))
        if slm_path.startswith(("/tmp/", "/var/tmp/", "/dev/shm/")):
            self.console.say("warning: %s is in a node-local directory, but the job runs slm "
                             "from this path on its compute node: put slm.py on a shared "
                             "filesystem" % slm_path)
        try:
            # for jobs that do not inherit our environment (--export=NONE, login shells)
            snapshot = self.settings.write_snapshot()
        except OSError as e:
            snapshot = None
            self.console.say("cannot save this submission's settings under %s (%s): the job "
                             "will use its own environment and %s" % (
                                 slm_home(self.settings.environ), e.strerror or e,
                                 self.settings.config_path))
        batch = monitored_script(blank_directives(original), name, cmd.script_args,
                                 self.settings.python, slm_path, snapshot, self.group)
        return self._submit_file(sbatch, batch, name, original, path)

    def _submit_file(self, sbatch, batch, name, original, script_path):
        if not self.cmd.script and self.cmd.wrap is None:
            # a script on stdin goes to sbatch on stdin: the job's name and
            # SLURM_JOB_NAME (empty, measured) are then what plain sbatch gives it
            return self._sbatch([sbatch] + self.cmd.options, report=True, original=original,
                                path=script_path, stdin=batch)
        import shutil
        import tempfile
        tmp = tempfile.mkdtemp(prefix="slm-submit.")
        try:
            path = os.path.join(tmp, name)  # sbatch names the job after the file
            with open(path, "wb") as f:
                f.write(batch)
            return self._sbatch([sbatch] + self.cmd.options + [path], report=True,
                                original=original, path=script_path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _sbatch(self, argv, report, original=b"", path=None, stdin=None):
        """Run sbatch, its output passed through as it comes; return its exit
        status (-N if signal N killed it).  SUBMITTED is reported as soon as
        the job id appears: `sbatch --wait` only returns when the job has ended."""
        import subprocess
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    stdin=None if stdin is None else subprocess.PIPE)
        except OSError as e:
            message = "cannot run %s: %s" % (argv[0], e.strerror or e)
            if e.errno == errno.ENOENT and argv[0] == "sbatch":
                message += " (is Slurm's module loaded? e.g. `module load slurm`; or set " \
                    "SLM_SBATCH to sbatch's path)"
            elif e.errno == errno.ENOENT:
                message += " (SLM_SBATCH names it: is the path right?)"
            self.console.error(message)
            if report:
                self._report(None, EXIT_NOT_FOUND if e.errno == errno.ENOENT else
                             EXIT_CANNOT_EXECUTE, message, original, path)
            return EXIT_NOT_FOUND if e.errno == errno.ENOENT else EXIT_CANNOT_EXECUTE
        # a Ctrl-C reaches sbatch too, which decides; we pass on what it did
        interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN) \
            if threading.current_thread() is threading.main_thread() else None
        try:
            out, err = bytearray(), bytearray()
            found = []
            progress = threading.Condition()

            def watch(copy, ended):
                with progress:
                    if not found:
                        job_id = find_job_id(copy.decode("utf-8", "replace"), complete=ended)
                        if job_id or ended:
                            found.append(job_id)
                            progress.notify_all()

            pumps = [threading.Thread(target=pump, args=(proc.stdout, stdout_binary(), out,
                                                         watch)),
                     threading.Thread(target=pump, args=(proc.stderr, stderr_binary(), err))]
            if stdin is not None:
                pumps.append(threading.Thread(target=feed, args=(proc.stdin, stdin)))
            for t in pumps:
                t.start()
            with progress:
                while not found:
                    progress.wait()
            job_id = found[0]
            if report and job_id:
                self._report(job_id, 0, None, original, path)
            for t in pumps:
                t.join()
            code = proc.wait()
        finally:
            if interrupt is not None:
                signal.signal(signal.SIGINT, interrupt)
        if report and not job_id:
            message = err.decode("utf-8", "replace").strip()[-1000:] or None
            self._report(None, code, message, original, path)
        return code

    def _report(self, job_id, code, message, original, path):
        cmd = self.cmd
        values = parse_directives(original) if original else {}
        values.update(cmd.values)
        fields = {
            "script": path,
            "script_args": [clean_text(a) for a in cmd.script_args] or None,
            "submit_dir": clean_text(os.getcwd()),
            "monitored": self.monitor,
            "array": values.get("array"),
            "time_limit": values.get("time"),
        }
        if cmd.wrap is not None:
            fields["wrap"] = cmd.wrap
        if "requeue" in cmd.flags or "no-requeue" in cmd.flags:
            fields["requeue"] = "requeue" in cmd.flags
        name = values.get("job-name") or ("wrap" if cmd.wrap is not None else
                                         (os.path.basename(cmd.script) if cmd.script
                                          else "sbatch"))
        partition = values.get("partition")
        if job_id and not partition:
            partition = (squeue_words(job_id, "%P", self.settings.timeout) or [None])[0]
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        if job_id:
            environ["SLURM_JOB_ID"] = job_id
        job = JobInfo(command=None, name=name, environ=environ, group=self.group)
        job.partition = partition
        job.cluster = job.cluster or slurm_cluster_name()
        job.command = [clean_text(a) for a in ([path or name] + cmd.script_args)]
        events = EventFactory(job)
        if job_id:
            event = events.make("SUBMITTED", **fields)
        else:
            event = events.make("SUBMIT_FAILED", exit_code=code, message=message, **fields)
        self.courier = Courier(self.settings, self.console)
        self.courier.post(event)
        self.courier.start()
        self.courier.finish(exit_budget(self.settings.timeout))


# ---------------------------------------------------------------------------
# Site mode: Slurm's MailProg (`slm mailprog`)
# ---------------------------------------------------------------------------

# slurmctld runs MailProg as SlurmUser with `-s SUBJECT RECIPIENT` and only
# SLURM_* variables (docs/mailprog.md); it waits for the pipe it gave to close,
# 120 s at most, and never retries.  So a call journals one event in the
# site's spool, hands delivery to a detached process, and returns.
# (SLURM_JOB_MAIL_TYPE's word, SLURM_JOB_STATE) -> status; None: the state is it
MAILPROG_TYPES = {
    "Began": "RUNNING",
    "Requeued": "REQUEUED",
    "Ended": None,
    "Failed": None,
}
# how long a detached deliverer keeps retrying a service that does not answer
# before it leaves the journal to the next call or `slm mailprog --flush`
MAILPROG_RETRY_FOR = 900.0
MAILPROG_SPOOL_DIR = "/var/spool/slm-mailprog"   # SLM_SPOOL_DIR of the site file wins
MAILPROG_BACKOFF = (1, 2, 5, 10, 30, 60, 120)
# how long a call may wait for a job owner's ~/.slm/config (SLM_MAILPROG_USER_CONFIG)
MAILPROG_USER_CONFIG_WAIT = 2.0


def mailprog_seconds(text):
    """Seconds in Slurm's [D-]HH:MM:SS (SLURM_JOB_RUN_TIME), or None."""
    days, _, rest = (text or "").rpartition("-")
    parts = rest.split(":")
    if not all(p.isdigit() for p in parts) or len(parts) != 3 or (days and not days.isdigit()):
        return None
    return int(days or 0) * 86400 + int(parts[0]) * 3600 + int(parts[1]) * 60 + int(parts[2])


def mailprog_recipients(recipient, default_format=None):
    """The destinations a --mail-user names: an e-mail address (mail),
    ntfy:TOPIC (ntfy.sh's), or any SLM destination form (a webhook URL,
    tgram://…); commas separate them.
    The service's allow-list judges each at delivery; here only the form."""
    found = []
    for word in split_destinations(recipient or ""):
        if "@" in word and ":" not in word.split("@", 1)[0] and "/" not in word:
            word = "mailto:" + word
        elif word.startswith("ntfy:") and not word.startswith("ntfy://"):
            word = "https://ntfy.sh/" + word[len("ntfy:"):]   # goslmailer's connector:target
        destination = Destination(word, default_format)
        if destination.problem() is None and word not in [d.spec for d in found]:
            found.append(destination)
    return found[:MAX_RELAY_TARGETS]


def mailprog_output_tail(env, lines):
    """The tail of the job's output file, when Slurm names it (-o, or 25.11+'s
    default) and it is the job owner's own regular file: MailProg runs as
    SlurmUser, and a user's -o pointing at a file SlurmUser may read (the site
    configuration) must never put that file in the user's notice."""
    pattern = env.get("SLURM_JOB_STDOUT") or ""
    uid = env.get("SLURM_JOB_UID") or ""
    if not pattern or not uid.isdigit() or lines <= 0:
        return None
    job = env.get("SLURM_JOB_ID") or ""
    words = {"j": job, "J": job, "x": env.get("SLURM_JOB_NAME") or "",
             "u": env.get("SLURM_JOB_USER") or "", "A": env.get("SLURM_ARRAY_JOB_ID") or job,
             "a": env.get("SLURM_ARRAY_TASK_ID") or "4294967294", "%": "%"}
    path, i = "", 0
    while i < len(pattern):
        if pattern[i] == "%" and i + 1 < len(pattern):
            if pattern[i + 1] not in words:
                return None     # %N, %t, a width...: not guessed
            path, i = path + words[pattern[i + 1]], i + 2
        else:
            path, i = path + pattern[i], i + 1
    if not os.path.isabs(path):
        path = os.path.join(env.get("SLURM_JOB_WORK_DIR") or "/nonexistent", path)
    fd = open_owned(path, uid)   # a user's -o may name a device, a FIFO, a link
    if fd is None:
        return None
    try:
        start = max(0, os.fstat(fd).st_size - TAIL_READ_BYTES)
        os.lseek(fd, start, os.SEEK_SET)
        data = os.read(fd, TAIL_READ_BYTES)
    except OSError:
        return None
    finally:
        os.close(fd)
    return tail_of(data, lines, start > 0)


def mailprog_is_default_recipient(recipient, env):
    """Whether --mail-user is Slurm's default, i.e. the user chose none: the
    user's name, or name@MailDomain (slurm.conf) where the site sets one."""
    user = env.get("SLURM_JOB_USER") or ""
    recipient = (recipient or "").strip()
    if not user or recipient in ("", user):
        return bool(user)
    name, at, domain = recipient.partition("@")
    if not at or name != user:
        return False
    for path in [env.get("SLURM_CONF", "")] + list(SLURM_CONF_PATHS):
        value = slurm_conf_value(path, "MailDomain") if path else None
        if value is not None:
            return value.lower() == domain.lower()
    return False


def mailprog_user_destinations(env, console, home=None, wait=MAILPROG_USER_CONFIG_WAIT):
    """(SLM_WEBHOOK, SLM_WEBHOOK_FORMAT, why) of the job owner's own
    ~/.slm/config: read with SlurmUser's rights (the user grants them: README,
    Site mode), only from the owner's own regular file, and for `wait` seconds
    at most (a home on a hung file server must not hold slurmctld's call).
    why: None, or what keeps the user's destinations from being used."""
    uid = env.get("SLURM_JOB_UID") or ""
    if not uid.isdigit() or int(uid) == 0:
        return None, None, None
    if home is None:
        try:
            import pwd
            home = pwd.getpwuid(int(uid)).pw_dir
        except (ImportError, KeyError):
            return None, None, None
    path = os.path.join(home, ".slm", "config")
    found = []

    def read():
        try:
            os.lstat(path)
        except OSError as e:
            found.append(None if e.errno == errno.ENOENT else
                         "SlurmUser may not read ~/.slm/config (%s)" % (e.strerror or e))
            return
        if not os.access(path, os.R_OK):
            found.append("SlurmUser may not read ~/.slm/config (README, Site mode)")
            return
        found.append(SettingsFile(path, console, owner=int(uid)))
    reader = threading.Thread(target=read, name="slm-user-config")
    reader.daemon = True
    reader.start()
    reader.join(wait)
    if not found:
        return None, None, "~/.slm/config unread after %g s" % wait
    config = found[0]
    if not isinstance(config, SettingsFile):
        return None, None, config
    if not config.exists:
        return None, None, "~/.slm/config is not the user's own regular file"
    if config.refused:   # a secret others may read is no secret: not used
        return None, None, "~/.slm/config may be read by others (chmod 600)"
    if not config.values.get("SLM_WEBHOOK"):
        return None, None, None
    return config.values["SLM_WEBHOOK"], \
        (config.values.get("SLM_WEBHOOK_FORMAT") or "").lower() or None, None


def mailprog_event(subject, recipient, env, tail_lines=DEFAULT_TAIL_LINES,
                   default_format=None):
    """The SLM event one MailProg call tells of (source: Slurm, via mailprog),
    from the call's environment, never its subject's wording; None when the
    call names no job.  Unknown mail types and states (a later release's) are
    kept as a note, never refused."""
    job = env.get("SLURM_JOB_ID") or ""
    if not job.isdigit():
        return None
    mail_type = (env.get("SLURM_JOB_MAIL_TYPE") or "").strip()
    state = (env.get("SLURM_JOB_STATE") or "").strip().upper()
    array_job = env.get("SLURM_ARRAY_JOB_ID") or ""
    array_task = env.get("SLURM_ARRAY_TASK_ID") or ""
    summary = "Array Summary" in (subject or "")
    fields = {}
    if array_job.isdigit() and array_task.isdigit() and not summary:
        job_id = "%s_%s" % (array_job, array_task)
        fields.update(array_job_id=array_job, array_task_id=array_task)
        count = env.get("SLURM_ARRAY_TASK_COUNT") or ""
        if count.isdigit():
            fields["array_task_count"] = int(count)
    else:
        job_id = array_job if summary and array_job.isdigit() else job
    status = MAILPROG_TYPES.get(mail_type, "")
    if mail_type.startswith("Reached"):
        status = "TIME_WARNING"
        end = env.get("SLURM_JOB_END_TIME") or ""
        if end.isdigit() and int(end) > time.time():
            fields["time_left"] = int(int(end) - time.time())
    elif status is None:    # Ended/Failed: the job's state says how
        status = state if state in FINAL_STATUSES else "FAILED" if mail_type == "Failed" \
            else "COMPLETED" if state == "" else "MESSAGE"
    elif status == "":
        status = "MESSAGE"
    code, _, sig = (env.get("SLURM_JOB_EXIT_CODE2") or "").partition(":")
    if status in FINAL_STATUSES and code.isdigit():
        if sig.isdigit() and int(sig) and status not in ("OUT_OF_MEMORY", "TIMEOUT",
                                                        "CANCELLED"):
            fields["signal"] = signal_name(int(sig))
        else:
            fields["exit_code"] = int(code)
    if summary and status in FINAL_STATUSES:
        low, high = env.get("SLURM_JOB_EXIT_CODE_MIN") or "", \
            env.get("SLURM_JOB_EXIT_CODE_MAX") or ""
        if high.isdigit() and int(high) and status == "COMPLETED":
            status = "FAILED"
        if high.isdigit():
            fields["exit_code"] = int(high)
        fields["message"] = "array %s: every task ended, exit codes %s to %s" % (
            job_id, low or "?", high or "?")
    run_time = mailprog_seconds(env.get("SLURM_JOB_RUN_TIME"))
    if run_time is not None and status in FINAL_STATUSES:
        fields["elapsed"] = run_time
    if "message" not in fields:
        fields["message"] = "Slurm: %s" % (mail_type or "mail") + (
            " (%s)" % state if state and state != status else "")
    if status not in ("COMPLETED", "RUNNING", "TIME_WARNING") and status in FINAL_STATUSES:
        tail = mailprog_output_tail(env, tail_lines)
        if tail:
            fields["output_tail"] = tail
    restarts = env.get("SLURM_JOB_RESTART_COUNT") or "0"
    cluster = env.get("SLURM_CLUSTER_NAME") or ""
    key = "|".join((cluster, job_id, restarts, mail_type, state))
    event = {"schema": EVENT_SCHEMA,
             "event_id": "mailprog-" + sha1_hex(key),
             "job_id": job_id, "slurm_job_id": job, "status": status, "time": iso_utc(),
             "via": "mailprog", "slm_version": __version__}
    for key, name in (("user", "SLURM_JOB_USER"), ("cluster", "SLURM_CLUSTER_NAME"),
                      ("job_name", "SLURM_JOB_NAME"), ("partition", "SLURM_JOB_PARTITION"),
                      ("nodelist", "SLURM_JOB_NODELIST"), ("submit_dir", "SLURM_JOB_WORK_DIR")):
        value = env.get(name) or ""
        if value and value != "(null)":
            event[key] = clean_text(value)
    if restarts.isdigit() and int(restarts):
        event["restart_count"] = int(restarts)
    for key, value in fields.items():
        event[key] = clean_text(value) if isinstance(value, str) else value
    to = [{"url": d.url, "format": d.format, "send": True}
          for d in mailprog_recipients(recipient, default_format)]
    if to:
        event["relay"] = {"to": to, "send": True}
    return event


def mailprog_deliver(spool, settings, console, retry_for=MAILPROG_RETRY_FOR):
    """Deliver the site spool's entries, one deliverer at a time (a lock file in
    the spool: a burst of calls starts one, not hundreds), retrying a service
    that does not answer for retry_for seconds; what is left waits for the
    next call or `slm mailprog --flush`."""
    import fcntl
    lock_path = os.path.join(spool.root, "mailprog.lock")
    give_up = time.time() + retry_for
    attempt = 0
    while True:
        try:
            lock = os.open(lock_path, os.O_WRONLY | os.O_CREAT, 0o600)
        except OSError:
            return
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(lock)
            return      # another deliverer holds it, and will see our entry
        try:
            _, left = flush_spool(spool, settings, console, time.time() + 60)
        finally:
            os.close(lock)    # unlocks; a call journalled meanwhile is seen below
        if not spool.pending_names():
            return
        if left and time.time() >= give_up:
            return
        if left:
            time.sleep(MAILPROG_BACKOFF[min(attempt, len(MAILPROG_BACKOFF) - 1)])
            attempt += 1


def detach(work):
    """Run work() in a grandchild of our own session, with fds 0-2 on
    /dev/null and nothing else open, and return at once: slurmscriptd waits
    for its pipe to close, and kills the process group after 120 s."""
    pid = os.fork()
    if pid:
        os.waitpid(pid, 0)
        return
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.closerange(3, 65536)
        work()
    finally:
        os._exit(0)


# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------


def cmd_run(args, settings, console):
    command = args.cmd
    if not command:
        raise UsageError("run needs a command: slm run -- CMD [ARGS...]")
    job = JobInfo(command, name=args.name, group=args.group or settings.group)
    nested = "SLM_ACTIVE" in os.environ and os.environ["SLM_ACTIVE"] == (job.slurm_job_id or "")
    # a task of an srun step of several: with a service every task reports its
    # end (the service tells the job's); without one task 0 alone speaks
    task = job.step_id is not None and (job.step_tasks or 0) > 1 and \
        bool(settings.api_url) and not settings.no_db
    if nested or (job.procid not in (None, "0") and not task):
        # another slm reports this job already, or we are task N>0 of an srun step
        return exec_transparently(command, console)
    return Wrapper(command, settings, console, job=job, cleanup=args.cleanup, task=task).run()


def cmd_submit(args, settings, console):
    return Submitter(args.sbatch_args, settings, console, monitor=not args.no_monitor,
                     group=args.group, options={"--notify-on": args.notify_on,
                                                "--webhook": args.webhook}).run()


def cmd_mailprog(args, settings, console):
    """Slurm's MailProg (site mode): journal the call, detach, return."""
    try:
        os.close(os.open(args.config, os.O_RDONLY))
    except OSError as e:
        raise Failure("mailprog: cannot read the site configuration %s (%s)"
                      % (args.config, e.strerror or e))
    site = Settings(console, environ={"SLM_CONFIG": args.config, "HOME": "/nonexistent",
                                      "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                    site=True)
    if not site.api_url or check_http_url(site.api_url):
        raise Failure("mailprog: %s sets no usable SLM_API_URL" % args.config)
    if not site.sources.get("SLM_SPOOL_DIR"):
        site.spool_dir = MAILPROG_SPOOL_DIR
    spool = Spool(site.spool_dir)
    if args.flush:
        delivered, left = flush_spool(spool, site, console, time.time() + args.max_time)
        if not console.quiet:
            emit("delivered %d event(s); %d still waiting in %s" % (delivered, left,
                                                                     spool.root))
        return EXIT_OK if left == 0 else EXIT_FAILURE
    words = list(args.mail_args or [])
    subject = words[1] if words[:1] == ["-s"] and len(words) > 1 else None
    recipient = words[2] if subject is not None and len(words) > 2 else None
    default_format, why = None, None
    if site.user_config_allowed and mailprog_is_default_recipient(recipient, os.environ):
        # the user named no destination: their own configuration's, when they have one
        chosen, chosen_format, why = mailprog_user_destinations(os.environ, console)
        if chosen:
            recipient, default_format = chosen, chosen_format
    event = mailprog_event(subject, recipient, os.environ, site.tail_lines, default_format)
    if event is None:
        raise Failure("mailprog: no SLURM_JOB_ID in the environment: not called by "
                      "slurmctld? (see README, Site mode)")
    if why:   # in the history, where the user looks
        event["message"] = clean_text("%s; no notice: %s" % (event.get("message", ""), why))
    try:
        spool.release(spool.add(event, ServiceTarget(site.api_url, site.api_token)))
    except OSError as e:
        # slurmctld logs this line (its only channel to the admin); Slurm never retries
        raise Failure("mailprog: cannot journal job %s's %s in %s (%s): it is lost"
                      % (event["job_id"], event["status"], spool.root, e.strerror or e))
    quiet = Console()
    quiet.quiet = True
    detach(lambda: mailprog_deliver(spool, site, quiet))
    return EXIT_OK


def cmd_flush(args, settings, console):
    spool = Spool(settings.spool_dir)
    if not os.path.isdir(spool.root):
        console.say("nothing to deliver: no spool at %s" % spool.root)
        return EXIT_OK
    deadline = time.time() + args.max_time
    delivered, left = flush_spool(spool, settings, console, deadline)
    dead = spool.counts()["dead"]
    if not console.quiet:
        line = "delivered %d event(s); %d still waiting in %s" % (delivered, left, spool.root)
        if dead:
            line += "; %d dead letter(s) (refused for good, or expired) in %s: `slm spool` " \
                "lists them" % (dead, spool.dead)
        emit(line)
    return EXIT_OK if left == 0 else EXIT_FAILURE


SPOOL_COLUMNS = ("ID", "SINCE", "STATE", "DESTINATION", "EVENT", "WHY")


def spool_destination(item, settings):
    """Where a spooled event goes now, as it may be shown (scheme://host/…)."""
    if item.kind == ServiceTarget.kind:
        return "service %s" % shown_url(settings.api_url or item.url or "?")
    if item.kind == WebhookTarget.kind and item.url:
        return Destination(item.url, settings.webhook_format).shown()
    return "?"


def spool_reason(item, settings):
    """Why an event waits: the target's last error, else what the settings say."""
    if item.reason or item.state != "waiting":
        return item.reason
    if item.kind == ServiceTarget.kind and (settings.no_db or not settings.api_url):
        return "no service configured now (SLM_API_URL)"
    if item.kind == WebhookTarget.kind and settings.target_for(item.kind, item.url) is None:
        return "its destination is no longer configured (SLM_WEBHOOK): `slm flush` sends it " \
            "to the destinations added since, if any"
    return "not tried since it was written"


def cmd_spool(args, settings, console):
    """List what waits in the spool, or drop some of it."""
    spool = Spool(settings.spool_dir)
    items = spool.items()
    if args.action == "list":
        if args.ids or args.all or args.older_than:
            raise UsageError("IDs, --all and --older-than go with `slm spool drop`")
        rows = [[item.id, local_time(iso_utc(item.since)) if item.since else "-", item.state,
                 cell(spool_destination(item, settings), 40),
                 cell("%s %s" % (item.event.get("job_id", "?"), item.event.get("status", "?")),
                      40),
                 cell(spool_reason(item, settings), 100)] for item in items]
        if args.json:
            print_json([dict(zip([c.lower() for c in SPOOL_COLUMNS], row)) for row in rows])
        else:
            print_table(rows, SPOOL_COLUMNS)
        if not items:
            console.say("nothing waits in %s" % spool.root)
        return EXIT_OK
    if not (args.ids or args.all or args.older_than):
        raise UsageError("say what to drop: IDs (see `slm spool`), --all or --older-than AGE")
    chosen = []
    for wanted in args.ids:
        matches = [i for i in items if i.id.startswith(wanted.lower())] if len(wanted) >= 4 \
            else []
        if len(matches) != 1:
            raise Failure("%s: %s (`slm spool` lists them)" % (
                wanted, "no such spool entry" if not matches else "names several entries"))
        chosen.append(matches[0])
    if args.all:
        chosen = items
    elif args.older_than:
        now = time.time()
        chosen += [i for i in items if i.since and now - i.since > args.older_than]
    dropped = 0
    for item in chosen:
        if item.state == "sending":
            console.say("%s is being sent right now (%s): not dropped" % (item.id, item.reason))
        elif spool.drop(item):
            dropped += 1
    emit("dropped %d event(s) from %s" % (dropped, spool.root))
    return EXIT_OK


# `slm notify`: at most this many messages per job, in each window (count,
# seconds): a job that says "epoch 50" every few seconds must not flood a
# phone (or a chat bot's rate limit).  Beyond it a message is not sent, and slm
# says so (exit 0: a job script with `set -e` must not die of it).
NOTIFY_LIMITS = ((5, 60.0), (60, 3600.0))
NOTIFY_MAX_CHARS = 1000


def cmd_notify(args, settings, console):
    """A MESSAGE event from the job itself (or about it, with --job): to its
    destinations and its history, through the spool like any event."""
    job_id = args.job or os.environ.get("SLM_JOB_ID")
    if not job_id:
        raise UsageError("which job? `slm notify` finds it inside a job run by `slm run` or "
                         "`slm submit` (SLM_JOB_ID); elsewhere say --job ID")
    message = clean_text(" ".join(args.message)).strip()
    if not message:
        raise UsageError("slm notify needs a message: slm notify \"epoch 50: loss 0.12\"")
    spool = Spool(settings.spool_dir)
    now = time.time()
    try:
        recent = spool.messages_of(job_id, now)
    except OSError:
        recent = []
    for count, window in NOTIFY_LIMITS:
        if len([t for t in recent if now - t < window]) >= count:
            console.error("not sent: job %s sent %d messages in the last %s already (at most "
                          "%s)" % (job_id, count, duration_text(window), ", ".join(
                              "%d a %s" % (c, {60.0: "minute", 3600.0: "hour"}[w])
                              for c, w in NOTIFY_LIMITS)))
            return EXIT_OK
    import re
    inside = not args.job or args.job == os.environ.get("SLM_JOB_ID")
    job = JobInfo(environ=os.environ if inside else {})
    job.job_id, job.command = job_id, None
    if not job.cluster and re.match(r"\d+(_\d+)?\Z", job_id):
        job.cluster = args.cluster or own_cluster()   # the job is its id on its cluster
    event = EventFactory(job).make("MESSAGE", message=truncate_text(message, NOTIFY_MAX_CHARS))
    event = dict((k, v) for k, v in event.items() if v is not None)
    try:
        spool.record_message(job_id, recent + [now], now)
    except OSError:
        pass
    courier = Courier(settings, console)
    courier.post(event)
    courier.start()
    courier.finish(exit_budget(settings.timeout))
    return EXIT_OK


LIST_HEADERS = ("JOBID", "NAME", "USER", "STATE", "PARTITION", "NODELIST", "TIME", "EXIT",
               "LAST EVENT")


EVENT_COLUMNS = ("TIME", "STATUS", "HOST", "DETAIL")
# An event's details worth a glance, in this order (--json has them all).
EVENT_DETAIL = ("signal", "exit_code", "reason", "corrects", "message", "memory_used_mb",
                "time_left")


def event_row(event):
    detail = []
    run = event.get("restart_count")
    if isinstance(run, int) and run > 0:
        detail.append("run=%d" % (run + 1))
    if event.get("source") not in (None, "wrapper"):
        detail.append("from=%s" % event["source"])
    for key in EVENT_DETAIL:
        if event.get(key) is not None:
            detail.append("%s=%s" % (key, event[key]))
    return [local_time(event.get("time")), cell(event.get("status"), 14),
            cell(event.get("host"), 16), cell(" ".join(detail), 100)]


def describe_status(job):
    """'COMPLETED (exit 0)', 'FAILED (exit 3, from Slurm's record)'..."""
    meta = job.get("meta") or {}
    parts = [p for p in (ending_text(job.get("status"), job.get("exit_code"), job.get("signal")),
                         record_text(meta.get("source"))) if p]
    return "%s%s" % (job.get("status"), " (%s)" % ", ".join(parts) if parts else "")


def waiting_in_queue(job):
    """Slurm's word on a job that waits in its queue: 'PENDING (Priority)', or None."""
    state = job.get("slurm_state")
    if not state or job.get("status") in ENDED or job.get("status") not in WAITING:
        return None
    reason = job.get("slurm_reason")
    return "%s (%s)" % (state, reason) if reason not in (None, "", "None") else state


def job_row(job, clusters=False):
    # a waiting job's nodes are its reason, as in squeue's NODELIST(REASON)
    queue = waiting_in_queue(job)
    nodes = "(%s)" % (job.get("slurm_reason") or job.get("slurm_state")) \
        if queue and not job.get("nodelist") else job.get("nodelist")
    return [cell(job.get("job_id"), 32)] + ([cell(job.get("cluster"), 16)] if clusters else []) \
        + [cell(job.get("job_name")), cell(job.get("user"), 12),
           cell(job.get("status"), 13), cell(job.get("partition"), 12),
           cell(nodes), job_duration(job),
            cell((ending(job.get("status"), job.get("exit_code"), job.get("signal")) or
                  (None, None))[1]),
            local_time(job.get("last_event_time"))]


def job_notes(job):
    """The lines under a job's row: what the columns cannot say."""
    meta = job.get("meta") or {}
    notes = []
    if job.get("cluster"):
        notes.append(("cluster", job["cluster"]))
    queue = waiting_in_queue(job)
    if queue:
        notes.append(("queue", "%s in Slurm's queue%s" % (queue, " (asked %s)" % local_time(
            job["asked_at"]) if job.get("asked_at") else "")))
    if job.get("reason") or job.get("message"):
        notes.append(("reason", job.get("reason") or job.get("message")))
    if meta.get("source") == "slurm":
        notes.append(("end", "from Slurm's own record%s" % (
            " (the wrapper reported %s)" % meta["corrects"] if meta.get("corrects") else "")))
    elif job.get("status") == "LOST":
        notes.append(("end", "the service heard nothing from the job%s; Slurm's record "
                      "may still tell how it ended" % (
                          " since %s" % local_time(job["heartbeat_at"])
                          if job.get("heartbeat_at") else "")))
    if job.get("restarts"):
        notes.append(("runs", "%d (Slurm requeued the job %d time%s; this is the latest run)"
                      % (job["restarts"] + 1, job["restarts"],
                         "" if job["restarts"] == 1 else "s")))
    # the warnings, not the job's own messages (notes too, but no warning)
    warnings = [w for w in meta.get("warnings") or [] if w not in STATUS or
                STATUS[w].kind == "warn"]
    if warnings:
        notes.append(("warnings", ", ".join(warnings)))
    if job.get("job_group"):
        notes.append(("group", job["job_group"]))
    if job.get("heartbeat_at") and job.get("status") not in ENDED:
        notes.append(("heartbeat", "last %s (every %s)" % (
            local_time(job["heartbeat_at"]),
            duration_text(job.get("heartbeat_interval") or DEFAULT_HEARTBEAT))))
    return notes


def find_job(client, spec, cluster=None, missing_ok=False):
    """(job row, the cluster to name in requests or None) for JOB as a user
    writes it: an id (on --cluster, else on this host's cluster where the id is
    a job on several), `last` (your most recently submitted job), or a job's
    name (your most recent job of that name).  missing_ok: (None, cluster)
    for an unknown job instead of a Failure."""
    if spec == "last":
        job = client.newest()
        if job is None:
            raise Failure("the service knows no job of yours yet (SLM_API_URL)")
        return job, None
    status, data = client.get("/api/v1/jobs/" + spec, {"cluster": cluster}, accept=(404, 409))
    if status == 409 and cluster is None and own_cluster():
        conflict = data
        cluster = own_cluster()
        status, data = client.get("/api/v1/jobs/" + spec, {"cluster": cluster},
                                  accept=(404, 409))
        if status == 404:
            status, data = 409, conflict    # on several clusters, not this host's
    if status == 409:
        import re
        found = re.search(r"clusters \(([^)]*)\)", str(data.get("error") or ""))
        raise UsageError("job %s is a job on several clusters%s: say which with --cluster NAME"
                         % (spec, " (%s)" % found.group(1) if found else ""))
    if status == 200:
        return data, cluster
    job = client.newest(spec) if cluster is None else None
    if job is not None:
        return job, None
    if missing_ok:
        return None, cluster
    raise Failure("unknown job: %s (no job has that id%s, and none of yours that name)"
                  % (spec, " on cluster %s" % cluster if cluster else ""))


def cmd_status(args, settings, console):
    job, _ = find_job(ServiceClient(settings), args.job, args.cluster)
    if args.json:
        print_json(job)
        return EXIT_OK
    print_table([job_row(job)], LIST_HEADERS)
    for what, text in job_notes(job):
        emit("%s: %s" % (what, cell(text, 200)))
    return EXIT_OK


def cmd_list(args, settings, console):
    params = {"status": args.status and args.status.upper(), "name": args.name,
              "partition": args.partition, "group": args.group,
              "since": args.since, "until": args.until,
              "limit": str(args.limit), "offset": str(args.offset) if args.offset else None}
    if not args.all:
        params["user"] = args.user or user_name()
    _, data = ServiceClient(settings).get("/api/v1/jobs", params)
    jobs = data.get("jobs") or []
    if args.json:
        print_json(data)
        return EXIT_OK
    # the cluster, where the jobs are on more than one (the same id may be two jobs)
    clusters = len(set(job.get("cluster") for job in jobs)) > 1
    print_table([job_row(job, clusters) for job in jobs],
                LIST_HEADERS[:1] + ("CLUSTER",) * clusters + LIST_HEADERS[1:])
    total = data.get("total", len(jobs))
    if total > len(jobs) + (args.offset or 0):
        console.say("%d of %d jobs shown (--limit, --offset for more)" % (len(jobs), total))
    return EXIT_OK


def cmd_events(args, settings, console):
    client = ServiceClient(settings)
    job, cluster = find_job(client, args.job, args.cluster)
    unknown = "unknown job: %s" % args.job
    _, data = client.get("/api/v1/jobs/%s/events" % job["job_id"], {"cluster": cluster},
                         missing=unknown)
    events = data.get("events") or []
    if not events:
        raise Failure(unknown)
    if args.json:
        print_json(data)
        return EXIT_OK
    print_table([event_row(e) for e in events], EVENT_COLUMNS)
    return EXIT_OK


# How `slm watch` looks: a long-poll of up to WATCH_POLL seconds (the service
# allows 30); a service it reached once may be away WATCH_OUTAGE seconds (a
# restart) before it gives up; a CANCELLED the wrapper saw waits up to
# VERDICT_WAIT for Slurm's word, looking every VERDICT_POLL (it may be a
# requeue: the service reads Slurm's record some 10 to 30 s after an end).
# A job the service has not heard of gets UNKNOWN_WAIT to appear (a submit's
# first event may be on its way).
WATCH_POLL = 25.0
UNKNOWN_WAIT = 10.0
WATCH_OUTAGE = 300.0
VERDICT_WAIT = 60.0
VERDICT_POLL = 5.0


def watch_line(event, as_json):
    if as_json:
        return json.dumps(event, sort_keys=True, ensure_ascii=False)
    return "  ".join(event_row(event)).rstrip()


def cmd_watch(args, settings, console):
    """Follow a job's events as the service receives them, until it ends.

    Each look is a long-poll (the events after the last one shown), then a
    look at the job: its status, which merges Slurm's verdict and the
    service's findings, decides the end.  At the end one full read shows
    events that arrived late with an earlier time."""
    import re
    client = ServiceClient(settings)
    # `last`, a name, an id on several clusters; an id not known yet is waited for
    found, cluster = find_job(client, args.job, args.cluster, missing_ok=True)
    job_id = found["job_id"] if found else args.job
    path = "/api/v1/jobs/%s/events" % job_id
    unknown = "unknown job: %s (the service has heard nothing of it)" % job_id
    deadline = time.time() + args.timeout if args.timeout else None
    after, seen, reached, failing_since, verdict_by = None, set(), False, None, None
    said_lost = False

    def show(events):
        for event in events:
            if event.get("event_id") not in seen:
                seen.add(event.get("event_id"))
                emit(watch_line(event, args.json))
        sys.stdout.flush()

    while True:
        now = time.time()
        wait = WATCH_POLL if reached else UNKNOWN_WAIT
        if verdict_by is not None:
            wait = min(VERDICT_POLL, max(0.0, verdict_by - now))
        if deadline is not None:
            wait = min(wait, max(0.0, deadline - now))
        try:
            _, data = client.get(path, {"after": after, "wait": "%.1f" % wait,
                                        "cluster": cluster},
                                 missing=unknown, timeout=wait + client.timeout)
            events = data.get("events") or []
            show(events)
            after = events[-1].get("event_id") if events else after
            job = client.job(job_id, cluster)
            reached, failing_since = True, None
        except Unreachable as e:
            now = time.time()
            failing_since = failing_since or now
            if not reached or now - failing_since > WATCH_OUTAGE or \
                    (deadline is not None and now >= deadline):
                raise
            console.say_once("unreachable", "%s; trying again" % e)
            time.sleep(min(5.0, max(0.5, now - failing_since)))   # back off, not busy
            continue
        now, status = time.time(), job.get("status")
        out_of_time = deadline is not None and now >= deadline
        # the service asks Slurm about the jobs of its cluster; of any other job
        # (a local one, one with no cluster) nothing will come after the end
        slurm_knows = bool(job.get("cluster")) and bool(re.match(r"\d+(_\d+)?\Z", job_id))
        if status == "CANCELLED" and not (job.get("meta") or {}).get("source") and \
                not job.get("verified") and slurm_knows:
            if verdict_by is None:
                verdict_by = now + VERDICT_WAIT
                console.say("job %s was cancelled; waiting up to %s for Slurm's record, in "
                            "case it was requeued" % (job_id, duration_text(VERDICT_WAIT)))
            settled = now >= verdict_by
        else:
            settled = True
            if status not in FINAL_STATUSES:
                verdict_by = None    # requeued: the job runs again, and so does the watch
        if status in FINAL_STATUSES and (settled or out_of_time):
            show(client.get(path, {"cluster": cluster}, missing=unknown)[1].get("events") or [])
            console.say("job %s ended %s" % (job_id, describe_status(job)))
            return EXIT_OK if status == "COMPLETED" else EXIT_FAILURE
        if status == "LOST" and not slurm_knows:
            show(client.get(path, {"cluster": cluster}, missing=unknown)[1].get("events") or [])
            console.say("the service lost contact with job %s, and Slurm never knew it: "
                        "nothing more will come" % job_id)
            return EXIT_FAILURE
        if status == "LOST" and not said_lost:
            said_lost = True
            console.say("the service lost contact with job %s; waiting for Slurm's verdict "
                        "(Ctrl-C to stop watching)" % job_id)
        if out_of_time:
            console.say("job %s is still %s after %s (--timeout)"
                        % (job_id, status, duration_text(args.timeout)))
            return EXIT_FAILURE


class Checkup(object):
    """Collects doctor's verdicts: one line each, and whether all is well."""

    def __init__(self):
        self.problems = 0

    def ok(self, what, detail):
        emit("ok    %-10s %s" % (what, detail))

    def info(self, what, detail):
        emit("info  %-10s %s" % (what, detail))

    def bad(self, what, detail, advice=None):
        self.problems += 1
        emit("FAIL  %-10s %s" % (what, detail))
        if advice:
            emit("      %-10s -> %s" % ("", advice))


def check_python(check):
    version = "%d.%d.%d" % sys.version_info[:3]
    if sys.version_info < (3, 6):
        check.bad("python", "%s is too old" % version, "use Python 3.6 or newer")
    else:
        check.ok("python", "%s (%s)" % (version, sys.executable))


def check_settings(check, settings):
    """Which source each setting came from: environment, snapshot, config file."""
    if settings.config.exists:
        check.info("config", "%s: %d setting(s)" % (settings.config_path,
                                                     len(settings.config.values)))
    else:
        check.info("config", "%s: none (optional: KEY=VALUE lines, mode 600 for secrets)"
                   % settings.config_path)
    if settings.snapshot_path and (settings.snapshot is None or not settings.snapshot.exists):
        check.bad("config", "the submit-time settings %s are gone" % settings.snapshot_path,
                  "the job uses its environment and %s only" % settings.config_path)
    for path, keys in settings.problems():
        check.bad("config", "%s holds %s but others may read it" % (path, ", ".join(keys)),
                  "chmod 600 %s" % path)
    for key in SETTING_KEYS:
        if key in settings.values:
            value = settings.values[key]
            shown = "(hidden)" if is_secret(key) else \
                shown_url(value) if key.endswith("_URL") else value
            check.info("setting", "%s=%s (%s)" % (key, shown, settings.source_of(key)))


def check_service(check, settings):
    if settings.no_db:
        check.info("service", "--no-db: the SLM service is not used")
        return
    if not settings.api_url:
        check.info("service", "SLM_API_URL is not set: events go to webhooks or stderr only")
        return
    problem = check_http_url(settings.api_url)
    if problem:
        check.bad("service", "SLM_API_URL is not usable: %s" % problem,
                  "set it to the service's base URL, e.g. http://login1:9008")
        return
    def ask(path):
        return http_request("GET", settings.api_url + path, token=settings.api_token,
                            timeout=settings.timeout, use_proxy=False)

    def refused():
        check.bad("service", "%s refuses the token" % shown_url(settings.api_url),
                  "SLM_API_TOKEN is %s" % ("wrong" if settings.api_token else
                                           "not set, but the service requires one"))
    try:
        result = ask("/healthz")
    except DeliveryError as e:
        check.bad("service", "cannot reach %s (SLM_API_URL): %s"
                  % (shown_url(settings.api_url), e.reason),
                  "is slm_api.py running there, and reachable from this host?")
        return
    health = result.json() or {}
    if result.status == 401:
        return refused()
    if result.status != 200:
        check.bad("service", "%s answers /healthz with %s" % (shown_url(settings.api_url),
                                                            result.error_text()),
                  "its database is %s" % health.get("database", "unknown"))
        return
    try:
        # who the token belongs to (a service older than /whoami: any /api/ answer)
        answer = ask("/api/v1/whoami")
        if answer.status == 404:
            answer = ask("/api/v1/jobs?limit=1")
    except DeliveryError as e:
        check.bad("service", "%s: %s" % (shown_url(settings.api_url), e.reason))
        return
    if answer.status == 401:
        return refused()
    if answer.status != 200:
        check.bad("service", "%s answers %s" % (shown_url(settings.api_url),
                                                answer.error_text()))
        return
    me = answer.json() or {}
    if me.get("role") == "user" and me.get("user") and me["user"] != user_name():
        # the service takes a user's token for that user's events only
        check.bad("service", "%s accepts the token, but it is %s's, not %s's: the events of "
                  "%s's jobs would be refused" % (shown_url(settings.api_url), me["user"],
                                                  user_name(), user_name()),
                  "use your own token (ask the service's admin, or `slm_api.py token add %s`)"
                  % user_name())
        return
    if settings.api_token and me.get("role"):
        token = ", token accepted: %s (%s%s)" % (
            me.get("user") or "a shared token", me.get("role"),
            "; jobs are private" if me.get("private_jobs") else "")
    else:
        token = ", token accepted" if settings.api_token else ""
    check.ok("service", "%s answers (%s backend, database %s)%s"
             % (shown_url(settings.api_url), health.get("backend", "?"),
                health.get("database", "?"), token))


def notice_summary(notify_on, array_notify):
    """Which events a destination gets, in words, for `slm doctor`."""
    for word in ("all", "default", "final", "failures", "warnings"):
        if notify_on == frozenset(NOTIFY_GROUPS[word]):
            events = word if word != "default" else "the default events"
            break
    else:
        events = ",".join(s for s in STATUSES if s in notify_on) or "nothing"
    return "gets %s; arrays and groups: %s" % (events, array_notify)


def check_smtp(check, settings, address):
    """Whether the mail server of an e-mail destination answers (and takes the login)."""
    try:
        host, port, mode, user, password, _ = settings.smtp.server(address)
        smtp_connection(host, port, mode, user, password, max(settings.timeout, 5)).quit()
    except DeliveryError as e:
        check.bad("smtp", e.reason, "set SLM_SMTP_HOST (and _PORT, _TLS, _USER, _PASSWORD) "
                  "to a mail server this host can reach, or SLM_WEBHOOK_VIA=api")
        return
    except Exception as e:
        check.bad("smtp", "SMTP server: %s" % _network_reason(e))
        return
    check.ok("smtp", "%s:%d answers (%s%s)" % (host, port, mode, ", login accepted"
                                               if user and password else ""))


def test_notice(host=None, user=None):
    """The test notification: a MESSAGE that says what it is, of no job (no
    link to a job page that does not exist).  The service's notify-test may
    build the same (SHARED_WITH_SERVICE), naming the node that asked."""
    host = host or hostname()
    return {"schema": EVENT_SCHEMA, "event_id": new_id(), "status": "MESSAGE", "kind": "test",
            "time": iso_utc(), "host": host, "user": user or user_name(),
            "slm_version": __version__,
            "message": "test notification from slm doctor on %s" % host}


class TestResult(object):
    """How one destination took the test notification."""

    SAID = {"sent": "was accepted", "refused": "was refused", "failed": "did not arrive"}

    def __init__(self, shown, fmt, state, reason=None, fix=None):
        self.shown, self.format, self.state, self.reason, self.fix = \
            shown, fmt, state, reason, fix


def relay_tests(settings, destinations):
    """send_tests through the service: POST /api/v1/notify-test with the relay
    request a job's events carry, each destination told to send; the service
    tries each once through its allow-list and sender, and says how it went."""
    relay = settings.relay_field(test_notice())
    for entry in relay["to"]:
        entry["send"] = True
    url = settings.api_url
    try:
        answer = http_request("POST", url + "/api/v1/notify-test", encode_json({"relay": relay, "host": hostname()}),
                              token=settings.api_token, timeout=max(settings.timeout, 15),
                              use_proxy=False)
    except DeliveryError as e:
        raise Unreachable("cannot reach the SLM service at %s (SLM_API_URL) to test the relay: %s"
                          % (shown_url(url), e.reason))
    if answer.status == 404:
        raise Failure("the service at %s is too old to test relays (no /api/v1/notify-test): "
                      "ask its admin to update slm_api.py; meanwhile its Delivery page "
                      "(/delivery) shows how your notices went" % shown_url(url))
    if answer.status == 401:
        raise Failure("the SLM service refused the request: SLM_API_TOKEN is %s"
                      % ("wrong" if settings.api_token else "not set"))
    data = answer.json()
    if answer.status != 200 or not isinstance(data, dict) or \
            not isinstance(data.get("results"), list):
        raise Failure("the service at %s could not test the relay: %s"
                      % (shown_url(url), answer.error_text()))
    results = []
    for i, row in enumerate(data["results"]):
        row = row if isinstance(row, dict) else {}
        d = destinations[i] if i < len(destinations) else None
        shown = d.shown() if d is not None else str(row.get("destination") or "?")
        state, reason = row.get("state"), row.get("reason")
        fix = None
        if state == "refused":
            fix = "ask the service's admin to add %s to SLM_RELAY_ALLOW" % (
                d.host() if d is not None else "its host")
        elif state != "sent":
            fix = "the service could not deliver it: is the URL right (its token, topic or " \
                "chat), and can the service's host reach it?"
        results.append(TestResult(shown, row.get("format") or (d.format if d else "?"),
                                  state if state in ("sent", "refused") else "failed",
                                  reason, fix))
    return results


def send_tests(settings, console):
    """A test notification to every destination, the way a job's events go:
    through the service when it relays for us (SLM_WEBHOOK_VIA=api), else
    from here.  [TestResult], in SLM_WEBHOOK's order; Failure when the
    service cannot say."""
    if settings.relaying():    # every destination, as in the relay request of an event
        return relay_tests(settings, settings.destinations())
    destinations = [d for d in settings.destinations() if not d.problem()]
    results = []
    for d in destinations:
        target = WebhookTarget(d.spec, settings)
        target.dashboard_url = None      # a test is of no job: no link
        try:
            target.deliver([test_notice()], settings.timeout)
            results.append(TestResult(d.shown(), d.format, "sent"))
        except DeliveryError as e:
            results.append(TestResult(d.shown(), d.format, "failed", e.reason, (
                "the destination refused it: is the URL right (its token, topic or "
                "chat)?" if e.status and 400 <= e.status < 500 else
                "this host cannot reach it: compute nodes without internet relay through "
                "the service (SLM_WEBHOOK_VIA=api)" if not e.status else None)))
    return results


def check_webhooks(check, settings, console, send_test):
    if not settings.webhooks:
        check.info("webhook", "SLM_WEBHOOK is not set: no notifications (`slm setup` sets one)")
        return
    smtp_checked = False
    relayed = settings.relaying()
    for i, spec in enumerate(settings.webhooks, 1):
        d = Destination(spec, settings.webhook_format, console)
        problem = d.problem()
        if problem:
            check.bad("webhook", "SLM_WEBHOOK's entry %d (%s): %s" % (i, redact_url(d.url),
                                                                      problem),
                      "set SLM_WEBHOOK to such URLs, comma-separated (`slm setup --webhook URL` "
                      "writes it)")
            continue
        shown = "%s (%s)" % (d.shown(), d.format)
        gets = notice_summary(d.notify_on if d.notify_on is not None else settings.notify_on,
                              d.array_notify or settings.array_notify)
        if d.format == "email" and not relayed and not smtp_checked:
            smtp_checked = True
            check_smtp(check, settings, EmailAddress(d.url))
        if not send_test:
            check.ok("webhook", "%s is well-formed%s; %s (--send-test sends a test message)"
                     % (shown, ", sent by the service" if relayed else "", gets))
    if not send_test:
        return
    try:
        results = send_tests(settings, console)
    except Failure as e:
        check.bad("webhook", str(e))
        return
    via = " through the service" if relayed else ""
    for r in results:
        if r.state == "sent":
            check.ok("webhook", "%s (%s) accepted a test notification%s" % (r.shown, r.format,
                                                                             via))
        else:
            check.bad("webhook", "%s (%s): the test notification %s%s%s" % (
                r.shown, r.format, TestResult.SAID[r.state], via,
                ": %s" % r.reason if r.reason else ""), r.fix)


def check_spool(check, settings):
    spool = Spool(settings.spool_dir)
    try:
        spool.ensure()
        probe = os.path.join(spool.tmp, "doctor-%d" % os.getpid())
        with open(probe, "w") as f:
            f.write("ok")
        os.unlink(probe)
    except OSError as e:
        check.bad("spool", "%s is not writable: %s" % (spool.root, e.strerror or e),
                  "set SLM_SPOOL_DIR to a writable directory on a shared filesystem")
        return
    counts = spool.counts()
    detail = "%s: %d event(s) waiting" % (spool.root, counts["pending"] + counts["work"])
    late = spool.late(SPOOL_LATE)
    problems = 0
    if late:
        problems += 1
        oldest = spool.time_of(late[0])
        why = spool.last_error(spool.target_key_of(late[0]))
        check.bad("spool", "%d event(s) waiting for more than %s (the oldest since %s%s)"
                  % (len(late), duration_text(SPOOL_LATE), local_time(iso_utc(oldest)),
                     ": %s" % why if why else ""),
                  "`slm spool` shows what waits and why; fix the destination and `slm flush`, "
                  "or `slm spool drop --older-than 1d`; after %s they become dead letters"
                  % duration_text(SPOOL_EXPIRE))
    if counts["dead"]:
        problems += 1
        check.bad("spool", "%d dead letter(s) in %s: refused for good, or expired"
                  % (counts["dead"], spool.dead),
                  "`slm spool` names each and why; `slm spool drop ID` (or --all) once read")
    if problems:
        return
    if counts["pending"] + counts["work"] and settings.targets():
        check.ok("spool", detail + "; 'slm flush' delivers them")
    else:
        check.ok("spool", detail)


def check_job(check):
    job = JobInfo()
    if not job.slurm_job_id:
        check.info("job", "not inside a Slurm job")
        return
    task_pid = job.task_pid
    if os.environ.get("SLM_ACTIVE") == job.slurm_job_id:
        check.info("job", "inside job %s, monitored by slm" % job.job_id)
    elif task_pid and task_pid.isdigit() and int(task_pid) == os.getppid():
        check.info("job", "inside job %s, started from its batch script: 'slm run' there "
                   "must be started with exec to receive Slurm's signals" % job.job_id)
    else:
        check.info("job", "inside job %s" % job.job_id)


def cmd_doctor(args, settings, console):
    check = Checkup()
    check_python(check)
    check_settings(check, settings)
    check_service(check, settings)
    check_webhooks(check, settings, console, args.send_test)
    check_spool(check, settings)
    check_job(check)
    if check.problems:
        emit("%d problem(s) found" % check.problems)
        return EXIT_FAILURE
    emit("all is well")
    return EXIT_OK


def reaches(url, timeout):
    """Whether this host can open a connection to where url's requests go
    (or has a proxy for them): the one question compute nodes without
    internet answer no to."""
    import socket
    import urllib.request
    from urllib.parse import urlsplit
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return False
    if not host:
        return False
    if urllib.request.getproxies().get(parts.scheme) and not urllib.request.proxy_bypass(host):
        return True
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def write_config(path, changes):
    """Set changes ({KEY: value}) in the configuration file at path, keeping
    its other lines (comments too); written whole, mode 0600 (it holds secrets)."""
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "surrogateescape").splitlines()
    except FileNotFoundError:
        lines = ["# slm settings (KEY=VALUE lines; see README.md, Reference); keep it private"]
    done, kept = set(), []
    for line in lines:
        key = line.strip()
        key = key[len("export "):] if key.startswith("export ") else key
        key = key.partition("=")[0].strip()
        if key in changes:
            if key not in done:
                kept.append("%s=%s" % (key, changes[key]))
                done.add(key)
            continue
        kept.append(line)
    kept += ["%s=%s" % (k, v) for k, v in changes.items() if k not in done]
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, mode=0o700, exist_ok=True)
    data = ("\n".join(kept) + "\n").encode("utf-8", "surrogateescape")
    write_durably(path, data, os.path.join(folder, ".%s.%d.%s.tmp" % (
        os.path.basename(path), os.getpid(), new_id()[:8])))


def ask(question, default=""):
    """One answer from the terminal (the default for an empty one)."""
    sys.stderr.write("%s%s: " % (question, " [%s]" % default if default else ""))
    sys.stderr.flush()
    line = sys.stdin.readline()
    if not line:
        raise Failure("no answer (end of input): nothing written")
    return line.strip() or default


def ask_setup(settings):
    """`slm setup` in a terminal: (destination, service URL or '')."""
    sys.stderr.write("slm setup: where should your jobs' notices go?\n"
                     "  1) your phone, with the free ntfy app (no account): a new private topic "
                     "is made for you\n"
                     "  2) somewhere else: Slack, Discord, Teams, Telegram, Matrix, e-mail, "
                     "any URL (paste it)\n")
    choice = ask("1 or 2", "1")
    if choice == "1":
        import base64
        server = ask("ntfy server", "https://ntfy.sh").rstrip("/")
        topic = "slm-" + base64.b32encode(os.urandom(10)).decode("ascii").lower()
        webhook = "%s/%s" % (server, topic) if webhook_format(server + "/x")[0] == "ntfy" \
            else "ntfy+%s/%s" % (server, topic)
        sys.stderr.write(
            "\nIn the ntfy app (Android, iOS; or %s/%s in a browser) subscribe to the topic\n\n"
            "    %s\n\n(on a server other than ntfy.sh, say which in the app). Anyone who knows "
            "the topic can read it: keep it to yourself.\n" % (server, topic, topic))
        ask("Press Enter once subscribed (a test notice comes next)")
    else:
        webhook = ask("destination URL")
    api = ask("the SLM service's URL, if your site runs one (Enter: none)", settings.api_url)
    return webhook, api


def cmd_setup(args, settings, console):
    """Write ~/.slm/config for notices (a destination, the service, how to
    reach them) and send a test the way a job's events go."""
    if args.webhook is None:
        if not sys.stdin.isatty():
            raise UsageError("slm setup asks its questions in a terminal; elsewhere say "
                             "slm setup --webhook URL [--api-url URL]")
        webhook, api_url = ask_setup(settings)
    else:
        webhook, api_url = args.webhook, args.api_url or settings.api_url
    destination = Destination(webhook, settings.webhook_format)
    problem = destination.problem()
    if problem:
        raise UsageError("the destination %s: %s" % (redact_url(webhook), problem))
    api_url = (api_url or "").rstrip("/")
    if api_url.endswith("/api/v1"):
        api_url = api_url[:-len("/api/v1")]
    if api_url and check_http_url(api_url):
        raise UsageError("--api-url %s: %s (the service's base URL, e.g. http://login1:9008)"
                         % (shown_url(api_url), check_http_url(api_url)))
    via = args.via
    if via == "api" and not api_url:
        raise UsageError("--via api: the SLM service sends the notices, so say where it is "
                         "(--api-url URL)")
    if via is None:
        direct = destination.format != "email" and reaches(
            FORMATS[destination.format].endpoint(destination.url)[0], max(settings.timeout, 3))
        via = "direct" if direct or not api_url else "api"
        if not direct:
            console.say("this host cannot reach %s%s" % (destination.shown(), (
                ": the SLM service will send your notices (SLM_WEBHOOK_VIA=api)" if api_url
                else " and no service is configured (--api-url): notices will wait in the "
                "spool until it can")))
        elif api_url:
            console.say("this host reaches %s directly; if your compute nodes cannot, run "
                        "`slm setup --via api` (the service sends for them)" % destination.shown())
    changes = {"SLM_WEBHOOK": webhook, "SLM_WEBHOOK_VIA": via}
    if api_url:
        changes["SLM_API_URL"] = api_url
    path = settings.config_path
    try:
        write_config(path, changes)
    except OSError as e:
        raise Failure("cannot write %s: %s" % (path, e.strerror or e))
    emit("wrote %s (mode 600): SLM_WEBHOOK=%s, SLM_WEBHOOK_VIA=%s%s" % (
        path, destination.shown(), via, ", SLM_API_URL=%s" % shown_url(api_url)
        if api_url else ""))
    fresh = Settings(console, no_db=settings.no_db, environ=settings.environ)
    for key in changes:
        if fresh.sources.get(key) != SOURCE_FILE:
            console.say("%s is set in your environment, which wins over %s: unset it for this "
                        "setting to apply" % (key, path))
    check = Checkup()
    for r in send_tests(fresh, console):
        if r.state == "sent":
            check.ok("test", "%s (%s) accepted a test notification%s: look at your phone or "
                     "channel" % (r.shown, r.format, " through the service"
                                  if fresh.relaying() else ""))
        else:
            check.bad("test", "%s (%s): the test notification %s%s" % (
                r.shown, r.format, TestResult.SAID[r.state], ": %s" % r.reason if r.reason
                else ""), r.fix)
    return EXIT_OK if not check.problems else EXIT_FAILURE


def background_flush(settings, console):
    """Deliver what earlier runs left in the spool, beside this command's own work.

    Returns a function that waits for it, at most SLM_TIMEOUT.
    """
    spool = Spool(settings.spool_dir)
    if not settings.targets() or not spool.pending_names():
        return lambda: None
    quiet = Console(quiet=True)
    worker = threading.Thread(target=flush_spool, name="slm-flush", daemon=True,
                              args=(spool, settings, quiet, time.time() + settings.timeout * 5))
    worker.start()

    def wait():
        worker.join(settings.timeout)
        try:
            spool.release_mine()
        except OSError:
            pass
    return wait


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

EXAMPLES = {
    "run": """examples:
  python3 slm.py run -- python train.py --epochs 100
  python3 slm.py run --name nightly -- ./build.sh
  # in a batch script: exec, so that slm is the batch process Slurm signals
  exec python3 /shared/slm.py run -- bash -c 'srun ./solver input.dat'
""",
    "submit": """examples:
  python3 slm.py submit job.sh                  # like sbatch job.sh, monitored
  python3 slm.py submit --notify-on END,FAIL job.sh   # notices of its end only
  python3 slm.py submit -p short -t 10 job.sh input.dat
  python3 slm.py submit --array=1-10 job.sh
  python3 slm.py submit --wrap "python train.py"
  python3 slm.py submit --no-monitor job.sh     # report the submission only

Every other word goes to sbatch unchanged, in order; the job runs the script
unmodified, with its own #! interpreter and #SBATCH lines, under 'slm run'.
slm's own -q/-v/--no-db go before 'submit'.  In the script, like #SBATCH:
  #SLM --notify-on=END,FAIL
  #SLM --webhook=https://ntfy.sh/YOUR-TOPIC
""",
    "status": """examples:
  python3 slm.py status 1234
  python3 slm.py status last                # your latest job
  python3 slm.py status train               # your latest job named train
  python3 slm.py status 1234_7 --json       # an array task, as JSON
""",
    "list": """examples:
  python3 slm.py list                       # your jobs, most recently active first
  python3 slm.py list --status FAILED,TIMEOUT --since 2026-11-01
  python3 slm.py list --all --partition gpu --json
""",
    "events": """examples:
  python3 slm.py events 1234
  python3 slm.py events last
  python3 slm.py events 1234 --json | jq '.events[].status'
""",
    "watch": """examples:
  python3 slm.py watch 1234                 # follow job 1234 until it ends
  python3 slm.py watch last                 # your latest job
  python3 slm.py submit job.sh | tail -1    # ... then: slm watch JOBID && next-step.sh
  python3 slm.py watch 1234 --json | jq -r .status
  python3 slm.py watch 1234 --timeout 2h    # give up (exit 1) if it has not ended by then
""",
    "doctor": """examples:
  python3 slm.py doctor                     # inside a job script, too
  python3 slm.py doctor --send-test         # and post a test notification
""",
    "spool": """examples:
  python3 slm.py spool                      # what waits, since when, where, why
  python3 slm.py spool drop 3f9a1c7e        # drop one (its ID from the list)
  python3 slm.py spool drop --older-than 2d
  python3 slm.py spool drop --all
""",
    "notify": """examples:
  python3 slm.py notify "epoch 50: val 0.91"          # inside a job run by slm
  python3 slm.py notify --job 4242 "checked: looks good"
""",
    "setup": """examples:
  python3 slm.py setup                                  # asks (ntfy on your phone, or a URL)
  python3 slm.py setup --webhook https://ntfy.sh/YOUR-TOPIC
  python3 slm.py setup --webhook https://ntfy.sh/YOUR-TOPIC --api-url http://login1:9008
""",
    "flush": """examples:
  python3 slm.py flush            # deliver everything waiting in the spool
  python3 slm.py -v flush         # ... and show each delivery
""",
    "mailprog": """examples (an admin's; see the README's Site mode):
  MailProg=/usr/local/libexec/slm-mailprog      # slurm.conf: a root-owned script that runs
  exec /usr/bin/python3 /usr/local/lib/slm/slm.py mailprog --config /etc/slm/site.conf "$@"
  python3 slm.py mailprog --config /etc/slm/site.conf --flush   # deliver what waits (cron)
""",
}


# Each command's function: main() dispatches here, and nowhere else.
COMMANDS = {"run": cmd_run, "submit": cmd_submit, "flush": cmd_flush, "spool": cmd_spool,
            "status": cmd_status, "list": cmd_list, "events": cmd_events, "watch": cmd_watch,
            "notify": cmd_notify, "doctor": cmd_doctor, "setup": cmd_setup,
            "mailprog": cmd_mailprog}


# `slm run`'s options, each taking a value: the one list the parser, the
# split of the command line and the quick path all read.
NOTIFY_ON_HELP = "which events notify, for this job (SLM_NOTIFY_ON): statuses, SLM's " \
    "words (default, final, failures, warnings, all) or Slurm's --mail-type words (END,FAIL)"
WEBHOOK_HELP = "where this job's notices go (SLM_WEBHOOK); visible in `ps` while it runs: " \
    "#SLM lines or ~/.slm/config keep it private"
GROUP_HELP = "put the job into a named group (SLM_GROUP): one notice for the group's first " \
    "start, each failure, one roll-up at its end"
RUN_OPTIONS = (
    ("--name", "job name outside Slurm (default: the command's name)"),
    ("--group", GROUP_HELP),
    ("--notify-on", NOTIFY_ON_HELP),
    ("--webhook", WEBHOOK_HELP),
    ("--cleanup", None),      # the private copy of a submitted script, removed at the end
    ("--settings", None),     # the submit-time snapshot of the settings
)


def bounded(kind, low, high):
    """An argparse type: a number of kind (int or float) between low and high."""
    import argparse
    what = "a whole number" if kind is int else "a number"

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError("not %s: %r" % (what, text))
        if not low <= value <= high:   # false for nan too
            raise argparse.ArgumentTypeError("%s is not between %g and %g" % (text, low, high))
        return value
    return parse


def duration_option(text):
    """--timeout's value: seconds, or a number with s, m or h."""
    import argparse
    seconds = parse_duration(text, unit=1)
    if seconds is None or seconds <= 0:
        raise argparse.ArgumentTypeError("%r is not a duration (90, 30m, 2h)" % text)
    return seconds


JOB_HELP = "a job id (1234, 1234_7 for an array task, local-…), `last` (your latest job) " \
    "or a job name (your latest job of that name)"
CLUSTER_HELP = "the cluster of a job id that is a job on several (default: this host's)"


def build_parser():
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message):
            raise UsageError("%s (see '%s --help')" % (message, self.prog))

    def add_common(p, defaults, verbose=True, no_db=True):
        """-q everywhere; -v and --no-db where events are delivered."""
        kw = {} if defaults else {"default": argparse.SUPPRESS}
        p.add_argument("-q", "--quiet", action="store_true",
                       help="print none of slm's own lines", **kw)
        if verbose:
            p.add_argument("-v", "--verbose", action="store_true",
                           help="also show each delivery", **kw)
        if no_db:
            p.add_argument("--no-db", action="store_true",
                           help="do not send events to the SLM service this time", **kw)

    formatter = argparse.RawDescriptionHelpFormatter
    parser = Parser(prog="slm", description=__doc__.split("\n\n")[1], epilog=(
        "'slm COMMAND --help' tells more.  First time? `slm setup`, then `slm doctor "
        "--send-test`.  Environment: SLM_API_URL, SLM_API_TOKEN, SLM_WEBHOOK, SLM_SPOOL_DIR, "
        "SLM_TIMEOUT (see README.md)."),
        formatter_class=formatter)
    add_common(parser, defaults=True)
    parser.add_argument("--version", action="version",
                        version="slm %s (events %s)" % (__version__, EVENT_SCHEMA))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    p = sub.add_parser("run", help="run a command and report its life",
                       usage="slm run [-q] [-v] [--no-db] [--name NAME] [--group NAME] "
                       "[--notify-on EVENTS] [--webhook URL] -- CMD [ARGS...]",
                       description="Run CMD (output, exit code and signals pass through) "
                       "and report RUNNING, PAUSED, RESUMED, TERMINATING and how it ended.",
                       epilog=EXAMPLES["run"], formatter_class=formatter)
    add_common(p, defaults=False)
    for option, text in RUN_OPTIONS:
        p.add_argument(option, help=text or argparse.SUPPRESS)
    p.add_argument("cmd", nargs="*", metavar="CMD", help="the command and its arguments")

    p = sub.add_parser("submit", help="sbatch a script, monitored",
                       usage="slm [-q] [-v] [--no-db] submit [--no-monitor] [--group NAME] "
                       "[--notify-on EVENTS] [--webhook URL] [sbatch options] SCRIPT [ARGS...]"
                       "\n       slm submit [sbatch options] --wrap CMD",
                       description="Run sbatch (SLM_SBATCH) with your options; report "
                       "SUBMITTED or SUBMIT_FAILED; unless --no-monitor, the job runs the "
                       "unmodified script under 'slm run'.  #SLM lines in the script's header "
                       "(like #SBATCH lines) choose --notify-on, --webhook and --group for the "
                       "job; the command line's win.",
                       epilog=EXAMPLES["submit"], formatter_class=formatter)
    p.add_argument("--no-monitor", action="store_true",
                   help="submit the script untouched; report only the submission")
    p.add_argument("--group", metavar="NAME", help=GROUP_HELP)
    p.add_argument("--notify-on", metavar="EVENTS", help=NOTIFY_ON_HELP)
    p.add_argument("--webhook", metavar="URL", help=WEBHOOK_HELP)
    p.add_argument("sbatch_args", nargs="*", metavar="SBATCH_ARGS",
                   help="sbatch's options, the script and its arguments, as for sbatch")

    p = sub.add_parser("flush", help="deliver the events waiting in the spool",
                       description="Deliver every event waiting in the spool (SLM_SPOOL_DIR), "
                       "each to the destinations configured now.  Exit 0 when none is left, "
                       "1 otherwise.",
                       epilog=EXAMPLES["flush"], formatter_class=formatter)
    add_common(p, defaults=False)
    p.add_argument("--max-time", type=bounded(float, 0.1, 86400), default=300.0,
                   metavar="SECONDS",
                   help="give up after this long (default 300)")

    p = sub.add_parser("mailprog", help="site mode: Slurm's MailProg (an admin installs it)",
                       description="Called by slurmctld as MailProg (-s SUBJECT RECIPIENT, the "
                       "job in SLURM_* variables): journal the job's event in the site spool, "
                       "deliver it to the service in a detached process, return at once.  "
                       "The recipient (--mail-user) chooses where the notice goes: an e-mail "
                       "address, ntfy:topic, a webhook URL, through the service's allow-list.",
                       epilog=EXAMPLES["mailprog"], formatter_class=formatter)
    add_common(p, defaults=False)
    p.add_argument("--config", required=True, metavar="FILE",
                   help="the site's settings: SLM_API_URL, SLM_API_TOKEN (an admin token), "
                   "SLM_SPOOL_DIR (default %s), SLM_MAILPROG_USER_CONFIG=yes (a job "
                   "with Slurm's default --mail-user goes to its owner's ~/.slm/config "
                   "SLM_WEBHOOK); root's, mode 640, group SlurmUser's" % MAILPROG_SPOOL_DIR)
    p.add_argument("--flush", action="store_true",
                   help="deliver what waits in the site spool now, and say how many are left")
    p.add_argument("--max-time", type=bounded(float, 0.1, 86400), default=300.0,
                   metavar="SECONDS", help="--flush gives up after this long (default 300)")

    p = sub.add_parser("spool", help="what waits in the spool, and why; drop some",
                       description="List the events waiting to be delivered (and the dead "
                       "letters: refused for good, or older than %s), or drop some."
                       % duration_text(SPOOL_EXPIRE),
                       epilog=EXAMPLES["spool"], formatter_class=formatter)
    add_common(p, defaults=False, verbose=False, no_db=False)
    p.add_argument("action", nargs="?", choices=("list", "drop"), default="list",
                   help="list (the default) or drop")
    p.add_argument("ids", nargs="*", metavar="ID", help="the entries to drop (their IDs, "
                   "or the first 4 characters or more)")
    p.add_argument("--all", action="store_true", help="drop every entry (waiting and dead)")
    p.add_argument("--older-than", type=duration_option, metavar="AGE",
                   help="drop the entries older than this: 90 (seconds), 30m, 12h, 2d")
    p.add_argument("--json", action="store_true", help="the list as JSON")

    p = sub.add_parser("status", help="one job's current state, from the service",
                       description="Show a job's current state as the SLM service knows it "
                       "(a waiting job: Slurm's reason).  Exit 1 for an unknown job, 3 when "
                       "the service cannot be reached.",
                       epilog=EXAMPLES["status"], formatter_class=formatter)
    add_common(p, defaults=False, verbose=False, no_db=False)
    p.add_argument("job", metavar="JOB", help=JOB_HELP)
    p.add_argument("--cluster", metavar="NAME", help=CLUSTER_HELP)
    p.add_argument("--json", action="store_true", help="the job as JSON")

    p = sub.add_parser("list", help="your jobs, most recently active first, from the service",
                       description="List jobs the SLM service knows, most recently active "
                       "first: yours unless --all or --user.",
                       epilog=EXAMPLES["list"], formatter_class=formatter)
    add_common(p, defaults=False, verbose=False, no_db=False)
    who = p.add_mutually_exclusive_group()
    who.add_argument("--mine", action="store_true", help="only your jobs (the default)")
    who.add_argument("--all", action="store_true", help="every user's jobs")
    who.add_argument("--user", help="this user's jobs")
    p.add_argument("--status", "-t", metavar="STATES",
                   help="comma-separated states, e.g. RUNNING,PAUSED")
    p.add_argument("--name", "-n", help="job name")
    p.add_argument("--group", "-g", help="the jobs of a group (slm submit --group)")
    p.add_argument("--partition", "-p", help="the jobs of this partition")
    p.add_argument("--since", metavar="TIME", help="active since (UTC, 2026-11-30 or "
                   "2026-11-30T08:00:00Z)")
    p.add_argument("--until", metavar="TIME", help="active until (UTC)")
    p.add_argument("--limit", type=bounded(int, 1, 1000), default=50,
                   help="at most this many, 1 to 1000 (50)")
    p.add_argument("--offset", type=bounded(int, 0, 10 ** 9), default=0,
                   help="skip this many (the next page)")
    p.add_argument("--json", action="store_true", help="the service's answer as JSON")

    p = sub.add_parser("events", help="one job's events, in order",
                       description="Show every event the SLM service has for a job, in order.",
                       epilog=EXAMPLES["events"], formatter_class=formatter)
    add_common(p, defaults=False, verbose=False, no_db=False)
    p.add_argument("job", metavar="JOB", help=JOB_HELP)
    p.add_argument("--cluster", metavar="NAME", help=CLUSTER_HELP)
    p.add_argument("--json", action="store_true", help="the events as JSON")

    p = sub.add_parser("watch", help="follow one job's events until it ends",
                       description="Print a job's events as the SLM service receives them, "
                       "until the job ends.  Exit 0 when it COMPLETED, 1 when it ended "
                       "otherwise (or --timeout passed first), 3 when the service stays "
                       "unreachable for %d minutes." % (WATCH_OUTAGE // 60),
                       epilog=EXAMPLES["watch"], formatter_class=formatter)
    add_common(p, defaults=False, verbose=False, no_db=False)
    p.add_argument("job", metavar="JOB", help=JOB_HELP)
    p.add_argument("--cluster", metavar="NAME", help=CLUSTER_HELP)
    p.add_argument("--timeout", type=duration_option, metavar="TIME",
                   help="stop watching after this long: 90 (seconds), 30m, 2h")
    p.add_argument("--json", action="store_true", help="one JSON event per line")

    p = sub.add_parser("notify", help="a message from your job to your phone and its history",
                       description="Send MESSAGE as the job's own event (MESSAGE): to its "
                       "destinations (unless their filter leaves MESSAGE out) and its history "
                       "in the service, through the spool.  Inside a job run by slm the job "
                       "is found; elsewhere say --job.  At most %s per job."
                       % ", ".join("%d a %s" % (c, duration_text(w)) for c, w in NOTIFY_LIMITS),
                       epilog=EXAMPLES["notify"], formatter_class=formatter)
    add_common(p, defaults=False)
    p.add_argument("message", nargs="+", metavar="MESSAGE", help="what to say")
    p.add_argument("--job", metavar="ID", help="the job it is about (default: the job this "
                   "runs in, SLM_JOB_ID)")
    p.add_argument("--cluster", metavar="NAME", help="the cluster of --job (default: "
                   "this host's)")

    p = sub.add_parser("doctor", help="check the set-up, line by line",
                       description="Check what users most often get wrong: the service and "
                       "its token, the destinations (a test through the path your jobs' "
                       "notices take, with --send-test), the spool, Python, the job context. "
                       "Exit 0 only when all is well.",
                       epilog=EXAMPLES["doctor"], formatter_class=formatter)
    add_common(p, defaults=False, verbose=False)
    p.add_argument("--send-test", action="store_true",
                   help="also send a test notification to each destination, the way your "
                   "jobs' notices go (through the service when it relays them)")

    p = sub.add_parser("setup", help="first run: where notices go, written to ~/.slm/config",
                       description="Choose where your jobs' notices go (ntfy on your phone, "
                       "or any destination), whether this host sends them or the SLM service "
                       "does, write it to %s (mode 600; other settings kept) and send a test "
                       "the way your jobs' notices will go.  In a terminal it asks; "
                       "elsewhere give --webhook." % "~/.slm/config (SLM_CONFIG)",
                       epilog=EXAMPLES["setup"], formatter_class=formatter)
    add_common(p, defaults=False, verbose=False, no_db=False)
    p.add_argument("--webhook", metavar="URL", help="the destination (SLM_WEBHOOK), e.g. "
                   "https://ntfy.sh/YOUR-TOPIC; without it, slm asks")
    p.add_argument("--api-url", metavar="URL", help="the SLM service's base URL "
                   "(SLM_API_URL), e.g. http://login1:9008")
    p.add_argument("--via", choices=("direct", "api"), help="who sends the notices: this "
                   "host (direct) or the service (api, for nodes without internet); default: "
                   "found out by trying to reach the destination")
    return parser


def split_argv(argv):
    """Separate what argparse may see from the wrapped command / sbatch words.

    argparse cannot be trusted with `run -- CMD -x` (its '--' handling changed
    across 3.6..3.13) nor with sbatch's options, so those are cut off here.
    """
    words = list(argv)
    i = 0
    while i < len(words) and words[i].startswith("-") and words[i] != "--":
        i += 1  # global options take no values
    if i >= len(words) or words[i] not in ("run", "submit", "mailprog"):
        return words, None
    command = words[i]
    head, rest = words[:i + 1], words[i + 1:]
    if command == "mailprog":
        # Slurm's words (-s SUBJECT RECIPIENT) are data, whatever they hold: a
        # --mail-user of "--flush" is a recipient, never an option of ours
        j = 0
        while j < len(rest) and rest[j] != "-s":
            j += 2 if rest[j] in ("--config", "--max-time") else 1
        return head + rest[:j], rest[j:]
    if command == "run":
        j = 0
        while j < len(rest):
            word = rest[j]
            if word == "--":
                return head + rest[:j], rest[j + 1:]
            if not word.startswith("-") or word == "-":
                break
            j += 2 if word in dict(RUN_OPTIONS) else 1
        return head + rest[:j], rest[j:]
    # submit: --help first asks for our help; --no-monitor / --no-db before the script are ours
    if rest[:1] in (["-h"], ["--help"]):
        return head + rest[:1], []
    ours = SUBMIT_OWN_FLAGS
    mine, words = [], list(rest)
    k = 0
    # --group NAME / --group=NAME, --notify-on, --webhook: anywhere among sbatch's options
    valued = tuple(option for option, _ in JOB_OPTIONS)
    while k < len(words):
        if words[k] in valued and k + 1 < len(words):
            mine += words[k:k + 2]
            del words[k:k + 2]
        elif words[k].startswith(tuple(option + "=" for option in valued)):
            mine.append(words.pop(k))
        elif words[k] in ("--", "-") or not words[k].startswith("-"):
            break
        else:
            k += SbatchCommand.width(words, k)
    boundary = len(words) - len(SbatchCommand(words).script_args) - (
        1 if SbatchCommand(words).script else 0)
    mine += [w for w in words[:boundary] if w in ours]
    sbatch = [w for w in words[:boundary] if w not in ours] + words[boundary:]
    return head + mine, sbatch


class Arguments(object):
    """What argparse would have made of a plain `slm [-q|-v|--no-db] run [--name N] -- CMD`."""

    def __init__(self, **values):
        self.__dict__.update(values)


def quick_run_args(head, tail):
    """Parse the common `run` command line without argparse (it costs the job
    ~3 ms of start-up); None for anything else, which argparse then handles."""
    if not tail or head.count("run") != 1:
        return None
    values = {"quiet": False, "verbose": False, "no_db": False, "command": "run", "cmd": tail}
    values.update((option[2:].replace("-", "_"), None) for option, _ in RUN_OPTIONS)
    flags = {"-q": "quiet", "--quiet": "quiet", "-v": "verbose", "--verbose": "verbose",
             "--no-db": "no_db"}
    words = list(head)
    seen_run = False
    while words:
        word = words.pop(0)
        if word == "run":
            seen_run = True
        elif word in flags:
            values[flags[word]] = True
        elif seen_run and word in dict(RUN_OPTIONS) and words:
            values[word[2:].replace("-", "_")] = words.pop(0)
        else:
            return None
    return Arguments(**values)


def job_options(args):
    """The settings a job chose on its command line (--notify-on, --webhook):
    {SLM_NOTIFY_ON: ...}; its group goes its own way (JobInfo)."""
    return dict((key, getattr(args, option[2:].replace("-", "_"), None))
                for option, key in JOB_OPTIONS
                if key != "SLM_GROUP" and getattr(args, option[2:].replace("-", "_"), None))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    console = Console()
    try:
        head, tail = split_argv(argv)
        named = [w for w in head if not w.startswith("-")][:1]   # global options take no values
        if named and named[0] not in COMMANDS:
            raise UsageError("unknown command %r%s: the commands are %s (see 'slm --help')"
                             % (named[0], did_you_mean(named[0], COMMANDS), ", ".join(COMMANDS)))
        args = quick_run_args(head, tail) or build_parser().parse_args(head)
        if tail is not None:
            if args.command == "run":
                args.cmd = tail
            elif args.command == "mailprog":
                args.mail_args = tail
            else:
                args.sbatch_args = tail
        console.quiet, console.verbose = args.quiet, args.verbose
        if not args.command:
            raise UsageError("a command is needed: %s (see 'slm --help'; first time: "
                             "slm setup)" % ", ".join(COMMANDS))
        settings = Settings(console, no_db=args.no_db, snapshot=getattr(args, "settings", None),
                            options=job_options(args) if args.command == "run" else None)
        handler = COMMANDS[args.command]
        if args.command in ("run", "flush", "spool", "mailprog"):
            code = handler(args, settings, console)
            sys.stdout.flush()
        else:
            wait = background_flush(settings, console)
            try:
                code = handler(args, settings, console)
                sys.stdout.flush()  # here, where a reader that left is handled below
            finally:
                wait()
        if code < 0:
            # the command (or sbatch) was killed by a signal: so are we, for whoever waits
            return die_of_signal(-code)
        return code
    except Failure as e:
        console.error(str(e))
        return e.exit_code
    except BrokenPipeError:
        # `slm list | head`: the reader left; say nothing more
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 128 + signal.SIGINT



def run_submitted(script, name, interp, args, settings=None, group=None):
    """The entry point of the batch script `slm submit` generates: the
    original script restored, run under `slm run` (see monitored_script)."""
    argv = submitted_argv(script, name, interp, args, settings, group)
    return argv if isinstance(argv, int) else main(argv)


# ---------------------------------------------------------------------------
# Shared with slm_api.py
# ---------------------------------------------------------------------------

# The service imports this file (beside it) for the one event model, the chat
# formats and the sender.  These are all the names it uses; a static test
# (tests/test_static.py) holds slm_api.py to them, so that a rename here fails
# the tests instead of the service.
SHARED_WITH_SERVICE = (
    # the statuses and the sets derived from their table
    "STATUS_TABLE", "STATUSES", "FINAL_STATUSES", "ENDED", "NOTES", "RUN_ENDS", "WAITING",
    "ALIVE", "FAILURES",
    # events, times, endings
    "__version__", "EVENT_SCHEMA", "iso_utc", "parse_utc", "duration_text", "signal_name",
    "ending", "ending_text",
    # notifications: destinations, what they hear, the relay request, sending
    "Destination", "split_destinations", "parse_notify_on", "wants_notice", "NOTIFY_DEFAULT",
    "ARRAY_NOTIFY_CHOICES", "DEFAULT_ARRAY_NOTIFY", "RELAY_FIELDS", "RELAY_TARGET_FIELDS",
    "MAX_RELAY_TARGETS", "FORMATS", "WEBHOOK_FORMATS", "WEBHOOK_HOSTS", "SmtpSettings",
    "send_notification", "DeliveryError", "EmailAddress", "test_notice",
    # the spool the service reads for nodes that cannot reach it
    "Spool", "ServiceTarget",
    # Slurm's accounting figures
    "slurm_seconds", "slurm_megabytes",
)


if __name__ == "__main__":
    sys.exit(main())
