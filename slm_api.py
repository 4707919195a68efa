#!/usr/bin/env python3
"""slm_api - the login-node service of SLM (Slurm Lifecycle Monitor).

Receives the lifecycle events that slm.py sends (schema "slm.event/1"),
stores them idempotently and answers questions about jobs.  One file,
CPython 3.9 or newer, needs Bottle; PyMySQL too when MySQL/MariaDB is used.

    python3 slm_api.py                       127.0.0.1:9008, SQLite in ./slm.db
    python3 slm_api.py --db /var/lib/slm/slm.db --host 0.0.0.0 --port 9008
    python3 slm_api.py --db mysql://slm:PASSWORD@dbhost:3306/slm
    gunicorn 'slm_api:application'           any WSGI server works too

Options: --host (127.0.0.1), --port (9008; 0 picks a free one and says which),
--db PATH|URL, --insecure (listen on a non-loopback address without a token),
--access-log (one stderr line per request; off by default).

Environment:
    SLM_API_TOKEN     when set, every /api/ request needs
                      "Authorization: Bearer <token>" (401 otherwise).  Without
                      it the server only listens on loopback unless --insecure.
    SLM_DB_URL        mysql://user:pass@host:port/db (also mariadb://), or
                      sqlite:///relative/path, sqlite:////absolute/path
    SLM_DB_HOST, SLM_DB_PORT (3306), SLM_DB_USER (slm), SLM_DB_PASSWORD,
    SLM_DB_NAME (slm) select MySQL/MariaDB and override parts of SLM_DB_URL.
    --db beats the environment; with neither, SQLite ./slm.db.  Tables
    (schema.sql) are created when missing; the database itself must exist.

Endpoints (JSON; every error is {"error": "..."} with a 4xx/5xx status):
    POST /api/v1/events       one event, or {"events": [...]} with 1..1000
                              events -> {"accepted": n, "duplicates": m}.
                              A repeated event_id is acknowledged, not stored
                              again.  One invalid event rejects the whole
                              request with 400 naming its index; more than
                              1000 events or a body over 1 MiB -> 413 (slm.py
                              then sends them one by one); database down -> 503.
    GET  /api/v1/jobs         ?status=A,B &user= &name= &partition=
                              &array_job_id= (exact matches) &since= &until=
                              (ISO 8601 UTC or YYYY-MM-DD: jobs active in the
                              window) &limit= (50, max 1000) &offset=
                              -> {"jobs": [...], "total": N}, most recently
                              active first.
    GET  /api/v1/jobs/ID      one job -> its row, 404 if unknown
    GET  /api/v1/jobs/ID/events   -> {"events": [...]} as received, by (time, seq)
    GET  /api/v1/jobs/ID/notifications   notifications sent or kept for it
    GET  /openapi.json        this API in OpenAPI 3.0
    GET  /healthz             {"ok", "backend", "database"}; 503 when unreachable
    GET  /metrics             Prometheus text format
/healthz and /metrics need no token.

Relay (SLM_WEBHOOK_VIA=api on the compute nodes): an event's "relay" field
names where to notify; the notification is queued in the outbox table in the
event's transaction and sent by a worker thread, with retries (backoff,
Retry-After), per-destination rate limits and leases so that several
instances on one MySQL database never send a row twice.  SLM_RELAY_ALLOW
(hosts; default: the known chat services) limits where.  The service's own
SLM_WEBHOOK / SLM_NOTIFY_ON / SLM_ARRAY_NOTIFY notify of every job.  Arrays
get one roll-up when their last task ends.

A job's status is that of its "strongest" event: final statuses (COMPLETED,
FAILED, CANCELLED, TIMEOUT, OUT_OF_MEMORY, SUBMIT_FAILED) beat the others,
SUBMITTED loses to everything, and within a class the latest (time, seq)
wins.  Events may therefore arrive in any order, and late ones never undo
an ending.

The built-in server is wsgiref made threaded (a thread per connection) and
HTTP/1.1 with keep-alive; it suits the few hundred requests a second a
cluster's jobs produce.  SIGTERM or SIGINT stop it after the requests in
progress.  Diagnostics go to stderr, prefixed "slm-api:", and never contain
the token or the database password.
"""

import argparse
import functools
import hashlib
import hmac
import ipaddress
import json
import math
import os
import random
import re
import signal
import socket
import socketserver
import sqlite3
import sys
import threading
import time
import traceback
import urllib.parse
import uuid
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

import bottle

__version__ = "0.1.0"

# ---------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9008
DEFAULT_SQLITE = "slm.db"
MAX_BODY = 1024 * 1024
MAX_BATCH = 1000
MAX_TEXT = 4096
MAX_LIST = 4096
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
SCHEMA_VERSION = 1

STATUSES = (
    "SUBMITTED", "SUBMIT_FAILED", "RUNNING", "PAUSED", "RESUMED", "SIGNALED",
    "TERMINATING", "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT",
    "OUT_OF_MEMORY", "LOST",
)
FINAL = frozenset(("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY",
                   "SUBMIT_FAILED"))

# Optional event fields and their types; anything else is kept but not checked.
TEXT_FIELDS = (
    "schema", "host", "user", "job_name", "partition", "nodelist", "cwd", "slm_version",
    "slurm_job_id", "array_job_id", "array_task_id", "cluster", "submit_dir", "signal",
    "reason", "message", "script", "array", "time_limit", "wrap", "output_tail",
)
INT_FIELDS = ("exit_code", "seq", "cpus", "array_task_count")
LIST_FIELDS = ("command", "script_args")
NUMBER_FIELDS = ("elapsed", "cpu_time", "max_rss_mb", "cpu_efficiency")
BOOL_FIELDS = ("monitored",)

# Event fields copied into slurm_jobs columns (the rest live in its meta JSON).
META_COLUMNS = ("exit_code", "signal", "reason", "message", "elapsed", "job_name", "user",
                "partition", "nodelist", "host", "cluster", "slurm_job_id", "array_job_id",
                "array_task_id")
JOB_COLUMNS = ("job_id", "status", "status_time", "status_seq", "status_event", "first_seen",
               "submitted_at", "started_at", "ended_at", "last_event_time", "last_seq",
               "event_count") + META_COLUMNS + ("meta",)
HIDDEN_JOB_COLUMNS = ("status_seq", "status_event")  # bookkeeping for the merge only
JOB_FILTERS = {"user": "user", "name": "job_name", "partition": "partition",
               "array_job_id": "array_job_id"}

EVENT_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}\Z")
TIME_RE = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|\+00:00)\Z")
QUERY_TIME_RE = re.compile(r"(\d{4})-(\d\d)-(\d\d)(?:[T ](\d\d):(\d\d)(?::(\d\d)(?:\.(\d{1,9}))?)?)?"
                           r"(Z|\+00:00)?\Z")

# The MySQL/MariaDB schema; schema.sql is a copy (a test keeps them equal).
# Times are UTC text 'YYYY-MM-DDTHH:MM:SS.ffffffZ': they sort as they compare,
# and SQLite and MySQL filter them identically.  utf8mb4_bin keeps job ids
# case-sensitive and text byte-exact.
MYSQL_SCHEMA = """\
-- SLM (Slurm Lifecycle Monitor) schema for MySQL/MariaDB, version 1.
-- slm_api.py creates these tables itself when they are missing; this file is
-- for DBAs who prefer to create them by hand.  Keep it identical to
-- MYSQL_SCHEMA in slm_api.py (tests/test_storage.py checks).

CREATE TABLE IF NOT EXISTS `slm_meta` (
  `name` VARCHAR(64) NOT NULL,
  `value` VARCHAR(255) NOT NULL,
  PRIMARY KEY (`name`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS `slurm_jobs` (
  `job_id` VARCHAR(128) NOT NULL,
  `status` VARCHAR(16) NULL,
  `status_time` VARCHAR(32) NULL,
  `status_seq` BIGINT NULL,
  `status_event` VARCHAR(64) NULL,
  `first_seen` VARCHAR(32) NULL,
  `submitted_at` VARCHAR(32) NULL,
  `started_at` VARCHAR(32) NULL,
  `ended_at` VARCHAR(32) NULL,
  `last_event_time` VARCHAR(32) NULL,
  `last_seq` BIGINT NULL,
  `event_count` INT NOT NULL DEFAULT 0,
  `exit_code` BIGINT NULL,
  `signal` TEXT NULL,
  `reason` TEXT NULL,
  `message` TEXT NULL,
  `elapsed` DOUBLE NULL,
  `job_name` TEXT NULL,
  `user` TEXT NULL,
  `partition` TEXT NULL,
  `nodelist` TEXT NULL,
  `host` TEXT NULL,
  `cluster` TEXT NULL,
  `slurm_job_id` TEXT NULL,
  `array_job_id` TEXT NULL,
  `array_task_id` TEXT NULL,
  `meta` MEDIUMTEXT NULL,
  PRIMARY KEY (`job_id`),
  KEY `slurm_jobs_last` (`last_event_time`, `job_id`),
  KEY `slurm_jobs_status` (`status`),
  KEY `slurm_jobs_user` (`user`(191)),
  KEY `slurm_jobs_name` (`job_name`(191)),
  KEY `slurm_jobs_array` (`array_job_id`(64))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS `slurm_events` (
  `id` BIGINT NOT NULL AUTO_INCREMENT,
  `event_id` VARCHAR(64) NOT NULL,
  `job_id` VARCHAR(128) NOT NULL,
  `status` VARCHAR(16) NOT NULL,
  `time` VARCHAR(32) NOT NULL,
  `seq` BIGINT NULL,
  `received_at` VARCHAR(32) NOT NULL,
  `raw` MEDIUMTEXT NOT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `slurm_events_event_id` (`event_id`),
  KEY `slurm_events_job` (`job_id`, `time`, `seq`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS `slm_outbox` (
  `id` BIGINT NOT NULL AUTO_INCREMENT,
  `dedup_key` VARCHAR(64) NOT NULL,
  `job_id` VARCHAR(128) NOT NULL,
  `destination` TEXT NOT NULL,
  `format` VARCHAR(16) NOT NULL,
  `secret` TEXT NULL,
  `dashboard_url` TEXT NULL,
  `payload` MEDIUMTEXT NOT NULL,
  `state` VARCHAR(8) NOT NULL,
  `attempts` INT NOT NULL DEFAULT 0,
  `next_attempt_at` VARCHAR(32) NOT NULL,
  `lease_owner` VARCHAR(64) NULL,
  `lease_until` VARCHAR(32) NULL,
  `last_error` TEXT NULL,
  `created_at` VARCHAR(32) NOT NULL,
  `sent_at` VARCHAR(32) NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `slm_outbox_dedup` (`dedup_key`),
  KEY `slm_outbox_due` (`state`, `next_attempt_at`),
  KEY `slm_outbox_job` (`job_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
"""

SQLITE_SCHEMA = """\
CREATE TABLE IF NOT EXISTS slm_meta (
  name TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS slurm_jobs (
  job_id TEXT PRIMARY KEY,
  status TEXT, status_time TEXT, status_seq INTEGER, status_event TEXT,
  first_seen TEXT, submitted_at TEXT, started_at TEXT, ended_at TEXT,
  last_event_time TEXT, last_seq INTEGER, event_count INTEGER NOT NULL DEFAULT 0,
  exit_code INTEGER, signal TEXT, reason TEXT, message TEXT, elapsed REAL,
  job_name TEXT, user TEXT, partition TEXT, nodelist TEXT, host TEXT, cluster TEXT,
  slurm_job_id TEXT, array_job_id TEXT, array_task_id TEXT, meta TEXT
);
CREATE INDEX IF NOT EXISTS slurm_jobs_last ON slurm_jobs (last_event_time, job_id);
CREATE INDEX IF NOT EXISTS slurm_jobs_status ON slurm_jobs (status);
CREATE INDEX IF NOT EXISTS slurm_jobs_user ON slurm_jobs (user);
CREATE INDEX IF NOT EXISTS slurm_jobs_name ON slurm_jobs (job_name);
CREATE INDEX IF NOT EXISTS slurm_jobs_array ON slurm_jobs (array_job_id);
CREATE TABLE IF NOT EXISTS slurm_events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  event_id TEXT NOT NULL UNIQUE,
  job_id TEXT NOT NULL,
  status TEXT NOT NULL,
  time TEXT NOT NULL,
  seq INTEGER,
  received_at TEXT NOT NULL,
  raw TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS slurm_events_job ON slurm_events (job_id, time, seq);
CREATE TABLE IF NOT EXISTS slm_outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  dedup_key TEXT NOT NULL UNIQUE,
  job_id TEXT NOT NULL,
  destination TEXT NOT NULL, format TEXT NOT NULL, secret TEXT, dashboard_url TEXT,
  payload TEXT NOT NULL,
  state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at TEXT NOT NULL,
  lease_owner TEXT, lease_until TEXT, last_error TEXT,
  created_at TEXT NOT NULL, sent_at TEXT
);
CREATE INDEX IF NOT EXISTS slm_outbox_due ON slm_outbox (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS slm_outbox_job ON slm_outbox (job_id);
"""

# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


class ConfigError(Exception):
    """The command line or environment is wrong: exit 2."""


class StoreError(Exception):
    """The database failed in a way retrying will not fix: HTTP 500."""


class StoreUnavailable(StoreError):
    """The database cannot be reached (or is busy): HTTP 503, try later."""


class ApiError(Exception):
    def __init__(self, status, message):
        Exception.__init__(self, message)
        self.status = status
        self.message = message


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def say(message, stream=None):
    stream = stream or sys.stderr
    try:
        stream.write("slm-api: %s\n" % message)
        stream.flush()
    except (OSError, ValueError):
        pass  # a closed stderr must not take a request down


def redact(text, secrets):
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def env_seconds(name, default):
    try:
        value = float(os.environ.get(name, "") or default)
    except ValueError:
        return default
    return value if 0 < value < 3600 else default


def utc_now():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%06dZ" % (int(t % 1 * 1e6))


def canonical_time(groups):
    """'YYYY-MM-DDTHH:MM:SS.ffffffZ' from regex groups, or None if no such date."""
    import datetime
    year, month, day, hour, minute, second, fraction = groups
    try:
        datetime.datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0),
                          int(second or 0))
    except ValueError:
        return None
    return "%s-%s-%sT%s:%s:%s.%sZ" % (year, month, day, hour or "00", minute or "00",
                                      second or "00", (fraction or "").ljust(6, "0")[:6])


def parse_event_time(value):
    m = TIME_RE.match(value) if isinstance(value, str) else None
    return canonical_time(m.groups()[:7]) if m else None


def parse_query_time(value):
    m = QUERY_TIME_RE.match(value)
    return canonical_time(m.groups()[:7]) if m else None


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def check_text(value, name, limit=MAX_TEXT):
    if not isinstance(value, str):
        return "%s must be a string" % name
    if len(value) > limit:
        return "%s is longer than %d characters" % (name, limit)
    return None


def validate_event(event):
    """Return (normalized copy, raw JSON text) or raise ValueError(reason)."""
    if not isinstance(event, dict):
        raise ValueError("an event must be a JSON object")
    for name in ("event_id", "job_id", "status", "time"):
        if name not in event:
            raise ValueError("missing field %s" % name)
    event_id, job_id, status = event["event_id"], event["job_id"], event["status"]
    if not isinstance(event_id, str) or not EVENT_ID_RE.match(event_id):
        raise ValueError("event_id must be 1..64 characters of A-Z a-z 0-9 . _ : -")
    if not isinstance(job_id, str) or not 1 <= len(job_id) <= 128:
        raise ValueError("job_id must be a string of 1..128 characters")
    if not job_id.isprintable() or job_id.strip() != job_id:
        raise ValueError("job_id must be printable, without surrounding blanks")
    if not isinstance(status, str) or status not in STATUSES:
        raise ValueError("unknown status %r" % (str(status)[:40],))
    when = parse_event_time(event["time"])
    if when is None:
        raise ValueError("time must be ISO 8601 UTC, like 2026-11-30T03:40:41.123Z")
    for name in TEXT_FIELDS:
        if name in event and event[name] is not None:
            problem = check_text(event[name], name)
            if problem:
                raise ValueError(problem)
    for name in INT_FIELDS:
        value = event.get(name)
        if value is not None and (not is_int(value) or not -2 ** 63 <= value < 2 ** 63):
            raise ValueError("%s must be a 64-bit integer" % name)
    if is_int(event.get("seq")) and event["seq"] < 0:
        raise ValueError("seq must not be negative")
    for name in NUMBER_FIELDS:
        value = event.get(name)
        if value is not None and (not (is_int(value) or isinstance(value, float))
                                  or not math.isfinite(value) or value < 0):
            raise ValueError("%s must be a non-negative number" % name)
    for name in LIST_FIELDS:
        value = event.get(name)
        if value is None:
            continue
        if not isinstance(value, list) or len(value) > MAX_LIST:
            raise ValueError("%s must be a list of at most %d strings" % (name, MAX_LIST))
        for i, item in enumerate(value):
            problem = check_text(item, "%s[%d]" % (name, i))
            if problem:
                raise ValueError(problem)
    for name in BOOL_FIELDS:
        if event.get(name) is not None and not isinstance(event[name], bool):
            raise ValueError("%s must be true or false" % name)
    try:
        raw = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
        raw.encode("utf-8")
    except (UnicodeError, ValueError):
        raise ValueError("text is not valid Unicode (a lone surrogate?)")
    normal = dict((k, v) for k, v in event.items() if v is not None)
    normal["time"] = when
    return normal, raw


def parse_events(body):
    """The validated events of a request body (bytes); raise ApiError."""
    if not body:
        raise ApiError(400, "empty body: expected a JSON event or {\"events\": [...]}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "body is not UTF-8")

    def no_constants(name):
        raise ValueError("%s is not JSON" % name)
    try:
        data = json.loads(text, parse_constant=no_constants)
    except (ValueError, RecursionError) as e:
        raise ApiError(400, "body is not valid JSON: %s" % str(e)[:200])
    if isinstance(data, dict) and "events" in data and "event_id" not in data:
        events = data["events"]
        if not isinstance(events, list):
            raise ApiError(400, "\"events\" must be a list")
        if not events:
            raise ApiError(400, "\"events\" is empty")
        if len(events) > MAX_BATCH:
            raise ApiError(413, "too many events in one request (%d > %d)"
                           % (len(events), MAX_BATCH))
        batch = True
    elif isinstance(data, dict):
        events, batch = [data], False
    else:
        raise ApiError(400, "expected a JSON object: an event or {\"events\": [...]}")
    for i, event in enumerate(events):
        try:
            if isinstance(event, dict) and "relay" in event:
                validate_relay(event["relay"])
            validate_event(event)
        except ValueError as e:
            where = "event %d: " % i if batch else ""
            raise ApiError(400, "%s%s" % (where, e))
    return events


def status_rank(status, when, seq, event_id):
    """Order of precedence between the events of one job (see the docstring)."""
    klass = 2 if status in FINAL else 0 if status == "SUBMITTED" else 1
    return (klass, when or "", seq or 0, event_id or "")


def merge_event(row, event):
    """Apply one new event (normalized) to a job row (dict); return the row.

    Order-independent for status and times: the result is the same whichever
    order the events arrive in.  Metadata (user, host, exit_code...) comes
    from the event holding the status, gaps filled from the others.
    """
    when, seq, status = event["time"], event.get("seq"), event["status"]
    row["event_count"] = (row.get("event_count") or 0) + 1
    if row.get("first_seen") is None or when < row["first_seen"]:
        row["first_seen"] = when
    if row.get("last_event_time") is None or \
            (when, seq or 0) > (row["last_event_time"], row.get("last_seq") or 0):
        row["last_event_time"], row["last_seq"] = when, seq
    if status in ("SUBMITTED", "SUBMIT_FAILED") and \
            (row.get("submitted_at") is None or when < row["submitted_at"]):
        row["submitted_at"] = when
    if status == "RUNNING" and (row.get("started_at") is None or when < row["started_at"]):
        row["started_at"] = when
    new = status_rank(status, when, seq, event["event_id"])
    wins = not row.get("status") or new > status_rank(
        row["status"], row.get("status_time"), row.get("status_seq"), row.get("status_event"))
    if wins:
        row["status"], row["status_time"] = status, when
        row["status_seq"], row["status_event"] = seq, event["event_id"]
        row["ended_at"] = when if status in FINAL else None
    meta = json.loads(row["meta"]) if row.get("meta") else {}
    for key, value in event.items():
        if key in ("event_id", "job_id", "status", "time", "seq", "schema"):
            continue
        if wins or meta.get(key) is None:
            meta[key] = value
    row["meta"] = json.dumps(meta, ensure_ascii=False, separators=(",", ":"))
    for column in META_COLUMNS:
        row[column] = meta.get(column)
    return row


def job_json(row):
    out = dict((k, v) for k, v in row.items() if k not in HIDDEN_JOB_COLUMNS)
    out["meta"] = json.loads(row["meta"]) if row.get("meta") else {}
    return out


def split_statements(script):
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


# ---------------------------------------------------------------------------
# Relay: notifications the service sends (outbox, worker, roll-ups)
# ---------------------------------------------------------------------------

# How long a worker holds a claimed notification; a crashed one's claims
# come back after this.
OUTBOX_LEASE = 60.0
# Waits between attempts after network errors, 5xx and 429 (Retry-After wins).
OUTBOX_BACKOFF = (2, 5, 15, 60, 300, 900, 3600)
# A notification still undelivered after this long is given up.
OUTBOX_MAX_AGE = 2 * 86400
MAX_RELAY_TARGETS = 10
# Per-destination send rates, (count, seconds) windows, from the services'
# documented limits (Feishu custom bots: 5/s and 100/min; DingTalk 20/min...).
RATE_LIMITS = {
    "feishu": ((5, 1.0), (100, 60.0)), "dingtalk": ((20, 60.0),), "wecom": ((20, 60.0),),
    "slack": ((1, 1.0),), "discord": ((5, 2.0), (30, 60.0)), "teams": ((4, 1.0),),
    "ntfy": ((10, 1.0),), "json": ((20, 1.0),),
}


def import_slm():
    """slm.py, beside this file: one formatter per chat format for both."""
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    import slm
    return slm


def iso_at(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + \
        ".%06dZ" % (int(epoch % 1 * 1e6))


def host_allowed(url, allow):
    """True when url's host is, or is under, one of the allowed hosts."""
    try:
        host = (urllib.parse.urlsplit(url).hostname or "").lower().rstrip(".")
    except ValueError:
        return False
    return any(host == a or host.endswith("." + a) for a in allow)


class RelayConfig(object):
    """What the service sends on its own: the allow-list and the admin webhooks."""

    def __init__(self, allow=None, admin_hooks=(), admin_secret=None, notify_on=None,
                 array_notify="failures", dashboard_url=None):
        slm = import_slm()
        self.allow = tuple(h.lower() for h in (allow if allow is not None else
                                               [h for h, _ in slm.WEBHOOK_HOSTS]))
        self.admin_hooks = [slm.webhook_format(spec) for spec in admin_hooks]
        self.admin_secret = admin_secret
        self.notify_on = notify_on if notify_on is not None else frozenset(slm.NOTIFY_DEFAULT)
        self.array_notify = array_notify
        self.dashboard_url = dashboard_url

    @classmethod
    def from_env(cls, env):
        slm = import_slm()
        allow = env.get("SLM_RELAY_ALLOW", "").strip()
        array_notify = env.get("SLM_ARRAY_NOTIFY", "").strip().lower() or "failures"
        if array_notify not in slm.ARRAY_NOTIFY_CHOICES:
            raise ConfigError("SLM_ARRAY_NOTIFY must be each, failures or summary")
        hooks = [u.strip() for u in env.get("SLM_WEBHOOK", "").split(",") if u.strip()]
        for spec in hooks:
            if slm.check_http_url(slm.webhook_format(spec)[1]):
                raise ConfigError("SLM_WEBHOOK has an entry that is not an http(s) URL")
        return cls(allow=[h.strip() for h in allow.split(",") if h.strip()] if allow else None,
                   admin_hooks=hooks, admin_secret=env.get("SLM_WEBHOOK_SECRET") or None,
                   notify_on=slm.parse_notify_on(env.get("SLM_NOTIFY_ON")),
                   array_notify=array_notify,
                   dashboard_url=env.get("SLM_DASHBOARD_URL") or None)

    def secrets(self):
        return [url for _, url in self.admin_hooks] + [self.admin_secret]


def validate_relay(relay):
    """The 'relay' field of an event (SLM_WEBHOOK_VIA=api); raise ValueError."""
    slm = import_slm()
    if not isinstance(relay, dict):
        raise ValueError("relay must be an object")
    to = relay.get("to")
    if not isinstance(to, list) or len(to) > MAX_RELAY_TARGETS:
        raise ValueError("relay.to must be a list of at most %d targets" % MAX_RELAY_TARGETS)
    for target in to:
        if not isinstance(target, dict) or not isinstance(target.get("url"), str) or \
                len(target["url"]) > 2048 or slm.check_http_url(target["url"]):
            raise ValueError("relay.to entries need an http(s) url")
        if target.get("format", "json") not in slm.WEBHOOK_FORMATS:
            raise ValueError("relay.to format must be one of %s" % ", ".join(slm.WEBHOOK_FORMATS))
        if target.get("secret") is not None and (not isinstance(target["secret"], str) or
                                                 len(target["secret"]) > 512):
            raise ValueError("relay.to secret must be a short string")
    if not isinstance(relay.get("send", False), bool):
        raise ValueError("relay.send must be true or false")
    for name in ("dashboard_url", "array_notify"):
        if relay.get(name) is not None and (not isinstance(relay[name], str) or
                                            len(relay[name]) > 2048):
            raise ValueError("relay.%s must be a string" % name)


def array_size(spec):
    """Tasks in an sbatch --array spec ('1-5', '1,3,7-9', '0-15:4%2'), or None."""
    if not isinstance(spec, str) or not spec:
        return None
    spec = spec.split("%")[0]
    total = 0
    try:
        for part in spec.split(","):
            rng, _, step = part.partition(":")
            first, _, last = rng.partition("-")
            first, last = int(first), int(last or first)
            step = int(step or 1)
            if last < first or step < 1:
                return None
            total += (last - first) // step + 1
    except ValueError:
        return None
    return total


class RateLimiter(object):
    """Sliding windows per destination, for one worker process."""

    def __init__(self):
        self._sent = {}
        self._lock = threading.Lock()

    def delay(self, destination, fmt, now=None):
        """Seconds to wait before destination may get another message (0: go)."""
        now = time.time() if now is None else now
        windows = RATE_LIMITS.get(fmt, RATE_LIMITS["json"])
        longest = max(seconds for _, seconds in windows)
        with self._lock:
            times = [t for t in self._sent.get(destination, []) if t > now - longest]
            self._sent[destination] = times
            wait = 0.0
            for count, seconds in windows:
                recent = [t for t in times if t > now - seconds]
                if len(recent) >= count:
                    wait = max(wait, recent[-count] + seconds - now)
            if wait <= 0:
                times.append(now)
            return wait


class OutboxWorker(threading.Thread):
    """Sends the outbox: claims due rows (a lease, so several service
    instances on one database never send the same row), posts them with
    slm.py's formatter and sender, and records the outcome."""

    def __init__(self, store, config, metrics=None, log=None, poll=1.0, timeout=10.0,
                 batch=20, backoff_scale=1.0):
        threading.Thread.__init__(self, name="slm-outbox", daemon=True)
        self.store = store
        self.config = config
        self.metrics = metrics
        self.log = log or say
        self.poll = poll
        self.timeout = timeout
        self.batch = batch
        self.backoff_scale = backoff_scale   # tests shrink the waits; Retry-After is kept
        self.owner = "%s-%d-%s" % (socket.gethostname()[:30], os.getpid(), uuid.uuid4().hex[:8])
        self.limiter = RateLimiter()
        self.stopping = threading.Event()
        self.slm = import_slm()

    def stop(self, wait=5.0):
        self.stopping.set()
        if self.is_alive():
            self.join(wait)

    def run(self):
        while not self.stopping.is_set():
            try:
                busy = self.run_once()
            except StoreError as e:
                self.log("outbox: database unavailable (%s); retrying" % e)
                busy = 0
            except Exception as e:   # the worker must outlive any one bad row
                self.log("outbox: unexpected %s" % describe_error(e))
                busy = 0
            if not busy:
                self.stopping.wait(self.poll)

    def run_once(self):
        """Send what is due now; return how many rows were handled."""
        rows = self.store.claim_notifications(self.owner, self.batch, OUTBOX_LEASE)
        for row in rows:
            if self.stopping.is_set():
                self.store.settle_notification(row["id"], self.owner, "pending", None,
                                               time.time(), count_attempt=False)
                continue
            self._send(row)
        return len(rows)

    def _send(self, row):
        slm = self.slm
        wait = self.limiter.delay(row["destination"], row["format"])
        if wait > 0:
            self.store.settle_notification(row["id"], self.owner, "pending", None,
                                           time.time() + wait, count_attempt=False)
            return
        try:
            payload = json.loads(row["payload"])
            url, body = slm.notification_request(row["format"], row["destination"], payload,
                                                 row.get("secret"), row.get("dashboard_url"))
            result = slm.http_request("POST", url, body, timeout=self.timeout)
            slm.Target.judge(result)
            slm.judge_chat_answer(row["format"], result)
        except slm.DeliveryError as e:
            age = time.time() - (parse_utc_epoch(row["created_at"]) or time.time())
            if e.permanent or age > OUTBOX_MAX_AGE:
                self.store.settle_notification(row["id"], self.owner, "failed", e.reason, None)
                self._count("failed")
                self.log("outbox: gave up notification %d for job %s: %s"
                         % (row["id"], row["job_id"], e.reason))
                return
            delay = OUTBOX_BACKOFF[min(row["attempts"], len(OUTBOX_BACKOFF) - 1)] * \
                self.backoff_scale
            if e.retry_after is not None:
                delay = min(max(e.retry_after, 0.5), 3600)
            self.store.settle_notification(row["id"], self.owner, "pending", e.reason,
                                           time.time() + delay)
            self._count("retried")
            return
        except (ValueError, TypeError) as e:
            self.store.settle_notification(row["id"], self.owner, "failed",
                                           "cannot format: %s" % e, None)
            self._count("failed")
            return
        self.store.settle_notification(row["id"], self.owner, "sent", None, None)
        self._count("sent")

    def _count(self, outcome):
        if self.metrics is not None:
            self.metrics.notification(outcome)


def parse_utc_epoch(text):
    import calendar
    try:
        return calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S"))
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------------------
# Storage
# ---------------------------------------------------------------------------


class Store(object):
    """What the web layer needs from a database.  Methods raise StoreError."""

    backend = None

    def ingest(self, events, stored=None, relay=None, refused=None):
        """Store events (dicts); return (accepted, duplicates).

        Raises ValueError for an invalid event (nothing is stored then).
        The events newly stored are appended to the list stored, if given.
        With relay (a RelayConfig), their notifications are queued in the
        same transaction; refused gets the count refused by the allow-list.
        """
        raise NotImplementedError

    # The outbox: notifications sent by the service (see OutboxWorker).

    def claim_notifications(self, owner, limit, lease):
        return []

    def settle_notification(self, nid, owner, state, error, next_epoch, count_attempt=True):
        return False

    def notifications(self, job_id=None):
        return []

    def notification_counts(self):
        return {}

    def list_jobs(self, filters, limit, offset):
        """filters: status (list), user, name, partition, array_job_id, since, until."""
        raise NotImplementedError

    def get_job(self, job_id):
        raise NotImplementedError

    def job_events(self, job_id):
        raise NotImplementedError

    def ping(self):
        raise NotImplementedError

    def job_counts_by_status(self):
        raise NotImplementedError

    def schema_version(self):
        raise NotImplementedError

    def close(self):
        pass

    def secrets(self):
        """Strings that must never appear in a log line."""
        return ()


class SQLStore(Store):
    """The SQL both backends share; subclasses supply connections and dialect."""

    insert_ignore = "INSERT OR IGNORE"
    lock_suffix = ""           # SELECT ... FOR UPDATE where the database has it
    attempts = 5               # deadlocks and lost connections are retried

    def __init__(self):
        self._ready = False
        self._ready_lock = threading.Lock()
        self._closed = False

    # -- subclass interface ------------------------------------------------

    def _acquire(self):
        raise NotImplementedError

    def _release(self, conn, healthy):
        raise NotImplementedError

    def _begin(self, conn, write):
        raise NotImplementedError

    def _classify(self, error):
        """'reconnect', 'retry', 'missing' (tables), 'unavailable' or 'bug'."""
        raise NotImplementedError

    def _forget_idle(self):
        """Close the idle connections: one was found dead, they may all be."""

    def _create_tables(self, cur):
        raise NotImplementedError

    def _sql(self, sql):
        return sql

    # -- transactions ------------------------------------------------------

    def _run(self, work, write=False):
        """Run work(cursor) in one transaction: commit, or roll back and raise."""
        if self._closed:
            raise StoreUnavailable("the store is closed")
        error = None
        for attempt in range(self.attempts):
            conn = self._acquire()
            healthy = False
            try:
                if not self._ready:
                    self.ensure_tables(conn)
                self._begin(conn, write)
                cur = conn.cursor()
                try:
                    result = work(cur)
                finally:
                    cur.close()
                conn.commit()
                healthy = True
                return result
            except StoreError:
                raise
            except Exception as e:
                error = e
                try:
                    conn.rollback()
                except Exception:
                    pass
                kind = self._classify(e)
                if kind == "reconnect":
                    self._forget_idle()
                elif kind == "retry":
                    healthy = True
                    time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
                elif kind == "missing":
                    self._ready = False
                    healthy = True
                elif kind == "unavailable":
                    raise StoreUnavailable(describe_error(e))
                else:
                    raise StoreError(describe_error(e))
            finally:
                self._release(conn, healthy)
        raise StoreUnavailable("gave up after %d attempts: %s" % (self.attempts,
                                                                  describe_error(error)))

    def ensure_tables(self, conn=None):
        """Create missing tables and record the schema version (idempotent)."""
        with self._ready_lock:
            if self._ready and conn is not None:
                return
            own = conn is None
            if own:
                conn = self._acquire()
            try:
                cur = conn.cursor()
                try:
                    self._create_tables(cur)
                    cur.execute(self._sql("%s INTO slm_meta (name, value) VALUES (?, ?)"
                                          % self.insert_ignore),
                                ("schema_version", str(SCHEMA_VERSION)))
                    cur.execute(self._sql("SELECT value FROM slm_meta WHERE name = ?"),
                                ("schema_version",))
                    found = int(cur.fetchone()[0])
                finally:
                    cur.close()
                conn.commit()
            finally:
                if own:
                    self._release(conn, True)
            if found > SCHEMA_VERSION:
                say("database schema version %d is newer than this slm_api.py knows (%d)"
                    % (found, SCHEMA_VERSION))
            self._ready = True

    # -- the Store interface -----------------------------------------------

    def ingest(self, events, stored=None, relay=None, refused=None):
        """Store events; with a RelayConfig, queue their notifications too.

        An event's 'relay' field (SLM_WEBHOOK_VIA=api) holds its destinations,
        secrets included: it goes to the outbox, never into the stored event.
        """
        received = utc_now()
        relays = {}
        checked = []
        for e in events:
            if isinstance(e, dict) and "relay" in e:
                validate_relay(e["relay"])
                relays[e.get("event_id")] = e["relay"]
                e = dict((k, v) for k, v in e.items() if k != "relay")
            checked.append(validate_event(e))
        # a fixed lock order (event ids, then job ids) keeps concurrent
        # batches from deadlocking each other
        ordered = sorted(checked, key=lambda p: p[0]["event_id"])

        def work(cur):
            accepted = {}
            duplicates = 0
            raws = {}
            for event, raw in ordered:
                raws[event["event_id"]] = raw
                cur.execute(self._sql(
                    "%s INTO slurm_events (event_id, job_id, status, time, seq, received_at, raw)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)" % self.insert_ignore),
                    (event["event_id"], event["job_id"], event["status"], event["time"],
                     event.get("seq"), received, raw))
                if cur.rowcount == 1:
                    accepted.setdefault(event["job_id"], []).append(event)
                else:
                    duplicates += 1
            # the job rows of a whole batch in a few statements, locked in id order
            job_ids = sorted(accepted)
            rows = self._lock_jobs(cur, job_ids)
            for job_id in job_ids:
                for event in accepted[job_id]:
                    merge_event(rows[job_id], event)
            self._write_jobs(cur, [rows[job_id] for job_id in job_ids])
            new = [e for evs in accepted.values() for e in evs]
            refusals = 0
            if relay is not None:
                for event in sorted(new, key=lambda e: e["event_id"]):
                    refusals += self._enqueue(cur, event, raws[event["event_id"]],
                                              relays.get(event["event_id"]), relay, received)
            done = set()
            for event in sorted(new, key=lambda e: e["event_id"]):
                array_id = event.get("array_job_id")
                if event["status"] in FINAL and array_id and array_id != event["job_id"] and \
                        event.get("array_task_id") is not None and array_id not in done:
                    done.add(array_id)
                    self._maybe_rollup(cur, event, relays.get(event["event_id"]), relay,
                                       received)
            return new, duplicates, refusals

        new, duplicates, refusals = self._run(work, write=True)
        if stored is not None:
            stored.extend(new)
        if refused is not None:
            refused.append(refusals)
        return len(new), duplicates

    CHUNK = 500   # job ids per statement (SQLite allows 999 parameters at least)

    def _lock_jobs(self, cur, job_ids):
        """{job_id: row} for job_ids (sorted), rows created if missing and locked."""
        rows = {}
        for i in range(0, len(job_ids), self.CHUNK):
            chunk = job_ids[i:i + self.CHUNK]
            self._create_job_rows(cur, chunk)
            cur.execute(self._sql("SELECT %s FROM slurm_jobs WHERE job_id IN (%s)%s"
                                  % (columns(JOB_COLUMNS), ", ".join("?" * len(chunk)),
                                     self.lock_suffix)), chunk)
            for found in cur.fetchall():
                rows[found[0]] = dict(zip(JOB_COLUMNS, found))
        return rows

    def _create_job_rows(self, cur, job_ids):
        cur.executemany(self._sql("%s INTO slurm_jobs (job_id, event_count) VALUES (?, 0)"
                                  % self.insert_ignore), [(j,) for j in job_ids])

    def _write_jobs(self, cur, rows):
        names = [c for c in JOB_COLUMNS if c != "job_id"]
        cur.executemany(self._sql("UPDATE slurm_jobs SET %s WHERE job_id = ?"
                                  % ", ".join("%s = ?" % quote(c) for c in names)),
                        [[row[c] for c in names] + [row["job_id"]] for row in rows])

    # -- the outbox (notifications the service sends) ------------------------

    def _enqueue(self, cur, event, raw, relay, config, now):
        """Outbox rows for one new event, in the event's own transaction."""
        slm = import_slm()
        targets = []
        if relay and relay.get("send"):
            for t in relay["to"]:
                targets.append((t.get("format", "json"), t["url"], t.get("secret"),
                                relay.get("dashboard_url"), host_allowed(t["url"], config.allow)))
        if config.admin_hooks and slm.wants_notice(event, config.notify_on, config.array_notify):
            for fmt, url in config.admin_hooks:
                targets.append((fmt, url, config.admin_secret, config.dashboard_url, True))
        refused = 0
        for fmt, url, secret, dashboard, allowed in targets:
            key = "event:" + hashlib.sha1(("%s|%s" % (event["event_id"], url))
                                          .encode("utf-8")).hexdigest()
            self._outbox_insert(cur, key, event["job_id"], url, fmt, secret, dashboard, raw,
                                now, None if allowed else
                                "refused: host not in SLM_RELAY_ALLOW")
            refused += not allowed
        return refused

    def _outbox_insert(self, cur, key, job_id, url, fmt, secret, dashboard, payload, now,
                       refusal=None):
        cur.execute(self._sql(
            "%s INTO slm_outbox (dedup_key, job_id, destination, format, secret, dashboard_url,"
            " payload, state, attempts, next_attempt_at, last_error, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)" % self.insert_ignore),
            (key, job_id, url, fmt, secret, dashboard, payload,
             "refused" if refusal else "pending", now, refusal, now))

    def _maybe_rollup(self, cur, event, relay, config, now):
        """When the last task of an array ends: the array's own job row gets
        its outcome (through a stored roll-up event, so that the row stays
        what its events imply), and each destination one summary."""
        array_id = event.get("array_job_id")
        # the array's size: from its submission ('1-5') or the tasks' SLURM_ARRAY_TASK_COUNT;
        # unknown, there is no telling the last task, and no roll-up
        cur.execute(self._sql("SELECT meta FROM slurm_jobs WHERE job_id = ?"), (array_id,))
        found = cur.fetchone()
        parent_meta = json.loads(found[0]) if found and found[0] else {}
        hint = event.get("array_task_count")
        expected = array_size(parent_meta.get("array")) or (hint if is_int(hint) else None)
        if not expected or expected < 1:
            return
        # the array's own row serialises the "am I the last task?" check: whoever
        # waits here sees the tasks committed before it
        parent = self._lock_jobs(cur, [array_id])[array_id]
        finals = ", ".join("'%s'" % status for status in sorted(FINAL))
        cur.execute(self._sql("SELECT COUNT(*), SUM(CASE WHEN status IN (%s) THEN 1 ELSE 0 END)"
                              " FROM slurm_jobs WHERE array_job_id = ? AND array_task_id IS NOT"
                              " NULL" % finals), (array_id,))
        total, ended = cur.fetchone()
        if int(total or 0) < expected or int(ended or 0) < int(total or 0):
            if not found:
                # only our lock made this row: a job nobody reported stays unknown
                cur.execute(self._sql("DELETE FROM slurm_jobs WHERE job_id = ? AND"
                                      " event_count = 0"), (array_id,))
            return
        cur.execute(self._sql("SELECT job_id, status, array_task_id, job_name, %s, cluster"
                              " FROM slurm_jobs WHERE array_job_id = ? AND"
                              " array_task_id IS NOT NULL" % quote("user")), (array_id,))
        tasks = cur.fetchall()
        counts = {}
        for t in tasks:
            counts[t[1]] = counts.get(t[1], 0) + 1
        failed = sorted((t[2] for t in tasks if t[1] != "COMPLETED"),
                        key=lambda x: (len(x), x))
        status = list(counts)[0] if len(counts) == 1 else "FAILED" if failed else "COMPLETED"
        summary = {"schema": "slm.event/1",
                   "event_id": "rollup-" + hashlib.sha1(array_id.encode("utf-8")).hexdigest(),
                   "job_id": array_id, "status": status, "time": now, "rollup": True,
                   "job_name": tasks[0][3] or parent_meta.get("job_name"),
                   "user": tasks[0][4], "cluster": tasks[0][5], "tasks": counts,
                   "failed_tasks": failed[:100]}
        summary = dict((k, v) for k, v in summary.items() if v is not None)
        payload = json.dumps(summary, ensure_ascii=False, separators=(",", ":"))
        cur.execute(self._sql(
            "%s INTO slurm_events (event_id, job_id, status, time, seq, received_at, raw)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)" % self.insert_ignore),
            (summary["event_id"], array_id, status, now, None, now, payload))
        if cur.rowcount != 1:
            return   # rolled up already
        self._write_jobs(cur, [merge_event(parent, summary)])
        if config is None:
            return
        destinations = []
        if relay and relay.get("to") and (relay.get("array_notify") or "failures") != "each":
            for t in relay["to"]:
                if host_allowed(t["url"], config.allow):
                    destinations.append((t.get("format", "json"), t["url"], t.get("secret"),
                                         relay.get("dashboard_url")))
        if config.admin_hooks and config.array_notify != "each":
            for fmt, url in config.admin_hooks:
                destinations.append((fmt, url, config.admin_secret, config.dashboard_url))
        notice = json.dumps(dict(summary, array_job_id=array_id), ensure_ascii=False,
                            separators=(",", ":"))
        for fmt, url, secret, dashboard in destinations:
            key = "rollup:" + hashlib.sha1(("%s|%s" % (array_id, url))
                                           .encode("utf-8")).hexdigest()
            self._outbox_insert(cur, key, array_id, url, fmt, secret, dashboard, notice, now)

    def claim_notifications(self, owner, limit, lease):
        """Lease up to limit due notifications to owner; return them."""
        def work(cur):
            now = utc_now()
            cur.execute(self._sql("SELECT id FROM slm_outbox WHERE state = 'pending' AND"
                                  " next_attempt_at <= ? AND (lease_until IS NULL OR"
                                  " lease_until < ?) ORDER BY id LIMIT ?"), (now, now, int(limit)))
            claimed = []
            until = iso_at(time.time() + lease)
            for (nid,) in cur.fetchall():
                # conditional on nobody having leased it meanwhile: one winner
                cur.execute(self._sql("UPDATE slm_outbox SET lease_owner = ?, lease_until = ?"
                                      " WHERE id = ? AND state = 'pending' AND (lease_until IS"
                                      " NULL OR lease_until < ?)"), (owner, until, nid, now))
                if cur.rowcount == 1:
                    claimed.append(nid)
            if not claimed:
                return []
            names = ("id", "job_id", "destination", "format", "secret", "dashboard_url",
                     "payload", "attempts", "created_at")
            cur.execute(self._sql("SELECT %s FROM slm_outbox WHERE id IN (%s) ORDER BY id"
                                  % (columns(names), ", ".join("?" * len(claimed)))), claimed)
            return [dict(zip(names, r)) for r in cur.fetchall()]
        return self._run(work, write=True)

    def settle_notification(self, nid, owner, state, error, next_epoch, count_attempt=True):
        """Record an attempt's outcome; only the lease holder may."""
        def work(cur):
            now = utc_now()
            cur.execute(self._sql(
                "UPDATE slm_outbox SET state = ?, last_error = COALESCE(?, last_error),"
                " attempts = attempts + ?, next_attempt_at = ?, sent_at = ?,"
                " lease_owner = NULL, lease_until = NULL WHERE id = ? AND lease_owner = ?"),
                (state, error, 1 if count_attempt else 0,
                 iso_at(next_epoch) if next_epoch else now,
                 now if state == "sent" else None, nid, owner))
            return cur.rowcount == 1
        return self._run(work, write=True)

    def notifications(self, job_id=None):
        """Outbox rows, oldest first (for the API and tests; secrets stay inside)."""
        names = ("id", "job_id", "destination", "format", "state", "attempts", "last_error",
                 "created_at", "sent_at", "next_attempt_at", "dedup_key")

        def work(cur):
            where, args = ("WHERE job_id = ? ", [job_id]) if job_id is not None else ("", [])
            cur.execute(self._sql("SELECT %s FROM slm_outbox %sORDER BY id"
                                  % (columns(names), where)), args)
            return [dict(zip(names, r)) for r in cur.fetchall()]
        return self._run(work)

    def notification_counts(self):
        def work(cur):
            cur.execute("SELECT state, COUNT(*) FROM slm_outbox GROUP BY state")
            return dict((s, int(n)) for s, n in cur.fetchall())
        return self._run(work)


    def list_jobs(self, filters, limit, offset):
        where, args = [], []
        if filters.get("status"):
            where.append("status IN (%s)" % ", ".join("?" * len(filters["status"])))
            args.extend(filters["status"])
        for name, column in sorted(JOB_FILTERS.items()):
            if filters.get(name) is not None:
                where.append("%s = ?" % quote(column))
                args.append(filters[name])
        if filters.get("since"):
            where.append("last_event_time >= ?")
            args.append(filters["since"])
        if filters.get("until"):
            where.append("first_seen <= ?")
            args.append(filters["until"])
        clause = (" WHERE " + " AND ".join(where)) if where else ""

        def work(cur):
            cur.execute(self._sql("SELECT COUNT(*) FROM slurm_jobs" + clause), args)
            total = int(cur.fetchone()[0])
            cur.execute(self._sql("SELECT %s FROM slurm_jobs%s ORDER BY last_event_time DESC,"
                                  " job_id DESC LIMIT ? OFFSET ?" % (columns(JOB_COLUMNS), clause)),
                        args + [int(limit), int(offset)])
            return [dict(zip(JOB_COLUMNS, r)) for r in cur.fetchall()], total
        return self._run(work)

    def get_job(self, job_id):
        def work(cur):
            cur.execute(self._sql("SELECT %s FROM slurm_jobs WHERE job_id = ?"
                                  % columns(JOB_COLUMNS)), (job_id,))
            found = cur.fetchone()
            return dict(zip(JOB_COLUMNS, found)) if found else None
        return self._run(work)

    def job_events(self, job_id):
        def work(cur):
            cur.execute(self._sql("SELECT raw FROM slurm_events WHERE job_id = ?"
                                  " ORDER BY time, seq, id"), (job_id,))
            return [json.loads(r[0]) for r in cur.fetchall()]
        return self._run(work)

    def ping(self):
        def work(cur):
            cur.execute("SELECT 1")
            cur.fetchall()
            return True
        return self._run(work)

    def job_counts_by_status(self):
        def work(cur):
            cur.execute("SELECT status, COUNT(*) FROM slurm_jobs GROUP BY status")
            return dict((s, int(n)) for s, n in cur.fetchall() if s)
        return self._run(work)

    def schema_version(self):
        def work(cur):
            cur.execute(self._sql("SELECT value FROM slm_meta WHERE name = ?"),
                        ("schema_version",))
            found = cur.fetchone()
            return int(found[0]) if found else None
        return self._run(work)


def quote(name):
    # backticks: user, partition and signal are reserved words in MySQL;
    # SQLite accepts the same quoting
    return "`%s`" % name


def columns(names):
    return ", ".join(quote(n) for n in names)


def describe_error(error):
    text = str(error) or error.__class__.__name__
    return "%s: %s" % (error.__class__.__name__, text[:300])


class SQLiteStore(SQLStore):
    """SQLite in WAL mode, a fresh connection per transaction.

    Opening SQLite is cheap, and a connection that never outlives its
    request can never be shared between threads.  Writers serialize on
    BEGIN IMMEDIATE and wait up to busy_timeout for each other.
    """

    backend = "sqlite"

    def __init__(self, path, busy_timeout=15.0):
        SQLStore.__init__(self)
        self.path = path
        self.busy_timeout = busy_timeout
        self._write_lock = threading.Lock()

    def _run(self, work, write=False):
        if not write:
            return SQLStore._run(self, work, write)
        # this process's writers queue on a lock: SQLite's own busy handler
        # sleeps and retries (up to 100 ms a time), which made p99 latency soar
        with self._write_lock:
            return SQLStore._run(self, work, write)

    def describe(self):
        return "sqlite %s" % os.path.abspath(self.path)

    def _acquire(self):
        try:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        except sqlite3.Error as e:
            raise StoreUnavailable(describe_error(e))
        return conn

    def _release(self, conn, healthy):
        conn.close()

    def _begin(self, conn, write):
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")

    def _create_tables(self, cur):
        cur.execute("PRAGMA journal_mode=WAL")
        for statement in split_statements(SQLITE_SCHEMA):
            cur.execute(statement)

    def _classify(self, error):
        if isinstance(error, sqlite3.OperationalError) and "no such table" in str(error):
            return "missing"
        if isinstance(error, (sqlite3.OperationalError, sqlite3.DatabaseError, OSError)) and \
                not isinstance(error, (sqlite3.IntegrityError, sqlite3.ProgrammingError)):
            return "unavailable"
        return "bug"

    def close(self):
        self._closed = True


# MySQL client error codes that mean the connection is gone (server
# restarted, wait_timeout, KILL): reconnect and run the transaction again.
MYSQL_LOST = frozenset((2006, 2013, 2014, 2045, 2055, 1053, 1927, 4031))
MYSQL_RETRY = frozenset((1213, 1205))     # deadlock, lock wait timeout
MYSQL_MISSING = frozenset((1146,))       # table doesn't exist


class MySQLStore(SQLStore):
    """MySQL/MariaDB through PyMySQL, with a small pool of idle connections.

    A transaction takes a connection from the pool (or opens one), commits
    or rolls back, and gives it back in `finally`; at most pool_size idle
    connections are kept.  A connection the server dropped (wait_timeout,
    KILL, restart) is noticed on first use: it is closed, so are the other
    idle ones (after a restart they are all dead), and the transaction runs
    again on a new connection, which is safe because ingestion is idempotent
    on event_id.  (PyMySQL deprecates ping(reconnect=True); a fresh
    connection is the same thing, done explicitly.)  A server that stays
    away makes the connect fail: StoreUnavailable, HTTP 503.
    """

    backend = "mysql"
    insert_ignore = "INSERT IGNORE"
    lock_suffix = " FOR UPDATE"

    def __init__(self, host, port=3306, user="slm", password="", database="slm",
                 pool_size=32, connect_timeout=5):
        try:
            import pymysql
        except ImportError:
            raise ConfigError("MySQL is configured but PyMySQL is not installed "
                              "(pip install pymysql)")
        SQLStore.__init__(self)
        self._pymysql = pymysql
        self.params = dict(host=host, port=int(port), user=user, password=password or "",
                           database=database, charset="utf8mb4", autocommit=False,
                           connect_timeout=connect_timeout, read_timeout=120, write_timeout=120,
                           init_command="SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        self.pool_size = pool_size
        self._idle = []
        self._lock = threading.Lock()

    def describe(self):
        p = self.params
        return "mysql://%s:***@%s:%d/%s" % (p["user"], p["host"], p["port"], p["database"])

    def secrets(self):
        return (self.params["password"],) if self.params["password"] else ()

    def _sql(self, sql):
        return sql.replace("?", "%s")

    def _acquire(self):
        with self._lock:
            if self._idle:
                return self._idle.pop()
        try:
            return self._pymysql.connect(**self.params)
        except Exception as e:
            raise StoreUnavailable(describe_error(e))

    def _release(self, conn, healthy):
        if healthy and not self._closed:
            with self._lock:
                if len(self._idle) < self.pool_size:
                    self._idle.append(conn)
                    return
        try:
            conn.close()
        except Exception:
            pass

    def _begin(self, conn, write):
        conn.begin()

    def _create_tables(self, cur):
        for statement in split_statements(MYSQL_SCHEMA):
            cur.execute(statement)

    def _create_job_rows(self, cur, job_ids):
        # ON DUPLICATE KEY takes the rows' exclusive locks at once; INSERT
        # IGNORE would take shared ones and deadlock on the FOR UPDATE
        cur.execute("INSERT INTO slurm_jobs (job_id, event_count) VALUES %s"
                    " ON DUPLICATE KEY UPDATE job_id = job_id"
                    % ", ".join(["(%s, 0)"] * len(job_ids)), job_ids)

    def _write_jobs(self, cur, rows):
        # one upsert for the batch: UPDATE would cost a round trip per job
        names = list(JOB_COLUMNS)
        row_marks = "(%s)" % ", ".join(["%s"] * len(names))
        for i in range(0, len(rows), self.CHUNK):
            chunk = rows[i:i + self.CHUNK]
            cur.execute("INSERT INTO slurm_jobs (%s) VALUES %s ON DUPLICATE KEY UPDATE %s"
                        % (columns(names), ", ".join([row_marks] * len(chunk)),
                           ", ".join("%s = VALUES(%s)" % (quote(c), quote(c))
                                     for c in names if c != "job_id")),
                        [row[c] for row in chunk for c in names])

    def _classify(self, error):
        err = self._pymysql.err
        code = error.args[0] if error.args and isinstance(error.args[0], int) else None
        if isinstance(error, err.InterfaceError) or code in MYSQL_LOST:
            return "reconnect"
        if code in MYSQL_RETRY:
            return "retry"
        if code in MYSQL_MISSING:
            return "missing"
        if isinstance(error, (err.OperationalError, OSError)):
            return "unavailable"
        return "bug"

    def _forget_idle(self):
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            try:
                conn.close()
            except Exception:
                pass

    def close(self):
        self._closed = True
        self._forget_idle()


def db_config(env, db=None):
    """Which database to use: {"backend": "sqlite", "path"} or MySQL parameters."""
    url = db if db is not None else env.get("SLM_DB_URL", "").strip()
    parts = {}
    if url and "://" not in url:
        return {"backend": "sqlite", "path": url}
    if url:
        scheme = url.split("://", 1)[0].lower()
        if scheme == "sqlite":
            path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else ""
            if not path:
                raise ConfigError("a SQLite URL looks like sqlite:///relative.db or "
                                  "sqlite:////absolute/path.db")
            return {"backend": "sqlite", "path": path}
        if scheme not in ("mysql", "mariadb", "mysql+pymysql"):
            raise ConfigError("unsupported database URL scheme %r (mysql:// or sqlite:///)"
                              % scheme)
        u = urllib.parse.urlsplit(url)
        try:
            port = u.port
        except ValueError:
            raise ConfigError("bad port in the database URL")
        parts = {"host": u.hostname, "port": port,
                 "user": urllib.parse.unquote(u.username) if u.username else None,
                 "password": urllib.parse.unquote(u.password) if u.password else None,
                 "database": urllib.parse.unquote(u.path.lstrip("/")) or None}
    if db is None:
        for key, name in (("host", "SLM_DB_HOST"), ("port", "SLM_DB_PORT"),
                          ("user", "SLM_DB_USER"), ("password", "SLM_DB_PASSWORD"),
                          ("database", "SLM_DB_NAME")):
            if env.get(name):
                parts[key] = env[name]
    if not parts:
        return {"backend": "sqlite", "path": DEFAULT_SQLITE}
    try:
        port = int(parts.get("port") or 3306)
    except ValueError:
        raise ConfigError("SLM_DB_PORT must be a number")
    return {"backend": "mysql", "host": parts.get("host") or "127.0.0.1", "port": port,
            "user": parts.get("user") or "slm", "password": parts.get("password") or "",
            "database": parts.get("database") or "slm"}


def open_store(config):
    if config["backend"] == "sqlite":
        return SQLiteStore(config["path"])
    return MySQLStore(config["host"], config["port"], config["user"], config["password"],
                      config["database"])


# ---------------------------------------------------------------------------
# The web application
# ---------------------------------------------------------------------------


class Metrics(object):
    """Counters of one app; the server's threads update them under a lock."""

    def __init__(self):
        self._lock = threading.Lock()
        self.ingested = {}        # status -> events stored
        self.duplicates = 0
        self.requests = {}        # (route, code) -> count
        self.durations = {}       # route -> [sum seconds, count]
        self.db_errors = 0
        self.notifications = {}   # sent / retried / failed -> count (this process's worker)

    def request(self, route, code, seconds):
        with self._lock:
            self.requests[(route, code)] = self.requests.get((route, code), 0) + 1
            acc = self.durations.setdefault(route, [0.0, 0])
            acc[0] += seconds
            acc[1] += 1

    def stored(self, events, duplicates):
        with self._lock:
            for event in events:
                self.ingested[event["status"]] = self.ingested.get(event["status"], 0) + 1
            self.duplicates += duplicates

    def db_error(self):
        with self._lock:
            self.db_errors += 1

    def notification(self, outcome):
        with self._lock:
            self.notifications[outcome] = self.notifications.get(outcome, 0) + 1

    def render(self, job_counts, outbox=None):
        def label(value):
            return str(value).replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")
        with self._lock:
            ingested = dict(self.ingested)
            requests = dict(self.requests)
            durations = dict((k, list(v)) for k, v in self.durations.items())
            duplicates, db_errors = self.duplicates, self.db_errors
        out = ["# HELP slm_events_ingested_total Events stored, by status.",
               "# TYPE slm_events_ingested_total counter"]
        for status in STATUSES:
            out.append('slm_events_ingested_total{status="%s"} %d'
                       % (status, ingested.get(status, 0)))
        out += ["# HELP slm_events_duplicate_total Events acknowledged but already stored.",
                "# TYPE slm_events_duplicate_total counter",
                "slm_events_duplicate_total %d" % duplicates]
        out += ["# HELP slm_db_up Whether the database answered this scrape.",
                "# TYPE slm_db_up gauge", "slm_db_up %d" % (job_counts is not None)]
        if job_counts is not None:
            out += ["# HELP slm_jobs Jobs in the database, by current status.",
                    "# TYPE slm_jobs gauge"]
            for status in STATUSES:
                out.append('slm_jobs{status="%s"} %d' % (status, job_counts.get(status, 0)))
        out += ["# HELP slm_http_requests_total HTTP requests, by route and status code.",
                "# TYPE slm_http_requests_total counter"]
        for (route, code), n in sorted(requests.items()):
            out.append('slm_http_requests_total{route="%s",code="%s"} %d'
                       % (label(route), code, n))
        out += ["# HELP slm_http_request_duration_seconds Time spent answering, by route.",
                "# TYPE slm_http_request_duration_seconds summary"]
        for route, (total, count) in sorted(durations.items()):
            out.append('slm_http_request_duration_seconds_sum{route="%s"} %.6f'
                       % (label(route), total))
            out.append('slm_http_request_duration_seconds_count{route="%s"} %d'
                       % (label(route), count))
        out += ["# HELP slm_db_errors_total Database failures seen by requests.",
                "# TYPE slm_db_errors_total counter", "slm_db_errors_total %d" % db_errors]
        with self._lock:
            sent = dict(self.notifications)
        out += ["# HELP slm_notifications_total Notification attempts by this instance, "
                "by outcome.", "# TYPE slm_notifications_total counter"]
        for outcome in ("sent", "retried", "failed"):
            out.append('slm_notifications_total{outcome="%s"} %d' % (outcome, sent.get(outcome, 0)))
        if outbox is not None:
            out += ["# HELP slm_outbox Notifications in the outbox, by state.",
                    "# TYPE slm_outbox gauge"]
            for state in ("pending", "sent", "failed", "refused"):
                out.append('slm_outbox{state="%s"} %d' % (state, outbox.get(state, 0)))
        return "\n".join(out) + "\n"


class SLMApp(bottle.Bottle):
    """Bottle plus metrics, and a body that always has a Content-Length.

    The length matters for HTTP/1.1 keep-alive: without it the client cannot
    tell where one answer ends and must wait for the connection to close.
    """

    def wsgi(self, environ, start_response):
        started = time.time()
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            captured["exc_info"] = exc_info
            return lambda data: None  # nobody uses write(); the body is returned

        result = bottle.Bottle.wsgi(self, environ, capture)
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        headers = captured["headers"]
        if environ.get("REQUEST_METHOD") != "HEAD" or \
                not any(k.lower() == "content-length" for k, v in headers):
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            headers.append(("Content-Length", str(len(body))))
        route = environ.get("bottle.route")
        rule = route.rule if route is not None else "other"
        self.metrics.request(rule, captured["status"].split(" ", 1)[0], time.time() - started)
        start_response(captured["status"], headers, captured["exc_info"])
        return [body]


def json_body(data, status=200):
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n"
    return bottle.HTTPResponse(body=text.encode("utf-8"), status=status,
                               headers={"Content-Type": "application/json"})


def openapi_document():
    """The OpenAPI 3.0 description of the routes make_app() serves.

    Built from the same constants the validation uses (statuses, field
    types, limits), so that it cannot drift from them; served at
    GET /openapi.json and checked against the routes by tests/test_fuzz.py.
    """
    def ref(name):
        return {"$ref": "#/components/schemas/%s" % name}

    def answer(description, schema="Error"):
        return {"description": description,
                "content": {"application/json": {"schema": ref(schema)}}}

    errors = {
        "400": answer("invalid request (the message says what is wrong)"),
        "401": answer("missing or wrong bearer token (only when the service has one)"),
        "404": answer("no such job, or no such route"),
        "405": answer("method not allowed"),
        "503": answer("database unavailable: try again later"),
    }

    def responses(ok, *codes):
        out = {"200": ok}
        out.update((c, errors[c]) for c in codes)
        return out

    text = {"type": "string", "maxLength": MAX_TEXT}
    event = {
        "type": "object",
        "description": "One lifecycle event (schema slm.event/1).  Fields not listed are "
                       "kept as received.",
        "required": ["event_id", "job_id", "status", "time"],
        "additionalProperties": True,
        "properties": {
            "event_id": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$",
                         "description": "unique id; a repeated one is acknowledged, not "
                                        "stored again"},
            "job_id": {"type": "string", "minLength": 1, "maxLength": 128,
                       "description": "printable, without surrounding blanks"},
            "status": {"type": "string", "enum": list(STATUSES)},
            "time": {"type": "string", "format": "date-time",
                     "pattern": "^%s$" % TIME_RE.pattern[:-len("\\Z")],
                     "description": "ISO 8601 UTC, e.g. 2026-11-30T03:40:41.123Z"},
        },
    }
    props = event["properties"]
    for name in TEXT_FIELDS:
        props[name] = dict(text, nullable=True)
    props["exit_code"] = {"type": "integer", "format": "int64", "nullable": True}
    props["seq"] = {"type": "integer", "format": "int64", "minimum": 0, "nullable": True}
    props["cpus"] = {"type": "integer", "format": "int64", "nullable": True}
    props["array_task_count"] = {"type": "integer", "format": "int64", "nullable": True}
    props["relay"] = {
        "type": "object", "nullable": True,
        "description": "SLM_WEBHOOK_VIA=api: where the service sends this event's "
                       "notification.  Never stored with the event.",
        "properties": {"to": {"type": "array", "maxItems": MAX_RELAY_TARGETS, "items": {
            "type": "object", "required": ["url"],
            "properties": {"url": {"type": "string"}, "format": {"type": "string"},
                           "secret": {"type": "string"}}}},
            "send": {"type": "boolean"}, "dashboard_url": {"type": "string"},
            "array_notify": {"type": "string"}}}
    for name in NUMBER_FIELDS:
        props[name] = {"type": "number", "minimum": 0, "nullable": True}
    for name in LIST_FIELDS:
        props[name] = {"type": "array", "maxItems": MAX_LIST, "items": text, "nullable": True}
    for name in BOOL_FIELDS:
        props[name] = {"type": "boolean", "nullable": True}

    job = {"type": "object", "required": ["job_id", "status", "event_count", "meta"],
           "properties": {}}
    for name in JOB_COLUMNS:
        if name in HIDDEN_JOB_COLUMNS:
            continue
        if name in ("last_seq", "exit_code"):
            schema = {"type": "integer", "nullable": True}
        elif name == "event_count":
            schema = {"type": "integer", "minimum": 0}
        elif name == "elapsed":
            schema = {"type": "number", "nullable": True}
        elif name == "meta":
            schema = {"type": "object", "additionalProperties": True,
                      "description": "every other field of the events, from the event "
                                     "holding the status first"}
        elif name == "status":
            schema = {"type": "string", "enum": list(STATUSES), "nullable": True}
        else:
            schema = {"type": "string", "nullable": True}
        job["properties"][name] = schema

    def query(name, description, schema=None):
        return {"name": name, "in": "query", "required": False, "description": description,
                "schema": schema or {"type": "string"}}

    job_id = {"name": "job_id", "in": "path", "required": True,
              "description": "the job id (may contain '/'; percent-encode it)",
              "schema": {"type": "string", "minLength": 1, "maxLength": 128}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "SLM (Slurm Lifecycle Monitor) service", "version": __version__,
                 "description": "Stores the lifecycle events slm.py sends and answers "
                                "questions about jobs.  A job's status is that of its "
                                "strongest event: final statuses beat the others, SUBMITTED "
                                "loses to everything, and within a class the latest "
                                "(time, seq) wins."},
        "components": {
            "schemas": {
                "Event": event,
                "EventBatch": {"type": "object", "required": ["events"],
                               "properties": {"events": {"type": "array", "minItems": 1,
                                                         "maxItems": MAX_BATCH,
                                                         "items": ref("Event")}}},
                "Accepted": {"type": "object", "required": ["accepted", "duplicates"],
                             "properties": {"accepted": {"type": "integer", "minimum": 0},
                                            "duplicates": {"type": "integer", "minimum": 0}}},
                "Job": job,
                "JobList": {"type": "object", "required": ["jobs", "total"],
                            "properties": {"jobs": {"type": "array", "items": ref("Job")},
                                           "total": {"type": "integer", "minimum": 0}}},
                "NotificationList": {"type": "object", "required": ["notifications"],
                                     "properties": {"notifications": {
                                         "type": "array", "items": {"type": "object"}}}},
                "EventList": {"type": "object", "required": ["events"],
                              "properties": {"events": {"type": "array",
                                                        "items": ref("Event")}}},
                "Health": {"type": "object", "required": ["ok", "backend", "database"],
                           "properties": {"ok": {"type": "boolean"},
                                          "backend": {"type": "string",
                                                      "enum": ["sqlite", "mysql"]},
                                          "database": {"type": "string",
                                                       "enum": ["reachable", "unreachable"]}}},
                "Error": {"type": "object", "required": ["error"],
                          "properties": {"error": {"type": "string"}}},
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "needed on /api/ routes when the "
                                                          "service has SLM_API_TOKEN"}},
        },
        "paths": {
            "/api/v1/events": {"post": {
                "summary": "store one event or a batch (idempotent on event_id)",
                "operationId": "postEvents",
                "security": [{"bearer": []}],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"oneOf": [ref("Event"), ref("EventBatch")]}}}},
                "responses": dict(responses(answer("stored (or already stored)", "Accepted"),
                                            "400", "401", "503"),
                                  **{"411": answer("chunked body: Content-Length required"),
                                     "413": answer("more than %d events or a body over %d "
                                                   "bytes" % (MAX_BATCH, MAX_BODY))}),
            }},
            "/api/v1/jobs": {"get": {
                "summary": "jobs, most recently active first",
                "operationId": "listJobs",
                "security": [{"bearer": []}],
                "parameters": [
                    query("status", "comma-separated statuses (any of %s)"
                          % ", ".join(STATUSES)),
                    query("user", "exact user"),
                    query("name", "exact job name"),
                    query("partition", "exact partition"),
                    query("array_job_id", "exact array job id"),
                    query("since", "jobs active at or after: ISO 8601 UTC or YYYY-MM-DD"),
                    query("until", "jobs active at or before: ISO 8601 UTC or YYYY-MM-DD"),
                    query("limit", "page size", {"type": "integer", "minimum": 1,
                                                 "maximum": MAX_LIMIT,
                                                 "default": DEFAULT_LIMIT}),
                    query("offset", "rows to skip", {"type": "integer", "minimum": 0,
                                                     "maximum": 10 ** 9, "default": 0}),
                ],
                "responses": responses(answer("a page of jobs and the total", "JobList"),
                                       "400", "401", "503"),
            }},
            "/api/v1/jobs/{job_id}": {"get": {
                "summary": "one job",
                "operationId": "getJob",
                "security": [{"bearer": []}],
                "parameters": [job_id],
                "responses": responses(answer("the job", "Job"), "401", "404", "503"),
            }},
            "/api/v1/jobs/{job_id}/events": {"get": {
                "summary": "one job's events as received, by (time, seq)",
                "operationId": "getJobEvents",
                "security": [{"bearer": []}],
                "parameters": [job_id],
                "responses": responses(answer("the events", "EventList"), "401", "404", "503"),
            }},
            "/api/v1/jobs/{job_id}/notifications": {"get": {
                "summary": "the notifications the service sent or keeps for a job "
                           "(destinations shown as scheme://host only)",
                "operationId": "getJobNotifications",
                "security": [{"bearer": []}],
                "parameters": [job_id],
                "responses": responses(answer("the notifications", "NotificationList"),
                                       "401", "404", "503"),
            }},
            "/healthz": {"get": {
                "summary": "is the database reachable (no token needed)",
                "operationId": "health",
                "responses": {"200": answer("reachable", "Health"),
                              "503": answer("unreachable", "Health")},
            }},
            "/metrics": {"get": {
                "summary": "Prometheus metrics (no token needed)",
                "operationId": "metrics",
                "responses": {"200": {"description": "Prometheus text format 0.0.4",
                                      "content": {"text/plain": {"schema": {"type": "string"}}}}},
            }},
            "/openapi.json": {"get": {
                "summary": "this document (no token needed)",
                "operationId": "openapi",
                "responses": {"200": {"description": "OpenAPI 3.0 document",
                                      "content": {"application/json": {
                                          "schema": {"type": "object"}}}}},
            }},
        },
    }


def make_app(store, token=None, max_body=MAX_BODY, log=None, relay=None):
    """A WSGI application (a Bottle instance) serving store.

    token: the bearer token /api/ requests need (None: no authentication).
    relay: a RelayConfig to queue notifications (None: events only; the
    outbox worker is started separately, see OutboxWorker).
    log: callable(message) for diagnostics (default: stderr).  Secrets are
    removed from every message before it gets there.
    """
    app = SLMApp()
    app.store = store
    app.token = token
    app.metrics = Metrics()
    app.relay = relay
    secrets = tuple(s for s in (token,) + tuple(store.secrets()) +
                    tuple(relay.secrets() if relay else ()) if s)

    def diag(message):
        message = redact(message, secrets)
        if log is not None:
            log(message)
        else:
            say(message)
    app.log = diag

    @app.hook("before_request")
    def authenticate():
        if token is None or not bottle.request.path.startswith("/api/"):
            return
        header = bottle.request.get_header("Authorization", "")
        scheme, _, given = header.partition(" ")
        # WSGI hands headers over as latin-1; that recovers the bytes sent
        if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode("latin-1", "replace"), token.encode("utf-8")):
            response = json_body({"error": "missing or wrong bearer token"}, 401)
            response.set_header("WWW-Authenticate", 'Bearer realm="slm"')
            raise response

    def guarded(handler):
        @functools.wraps(handler)
        def wrapper(*args, **kwargs):
            try:
                return handler(*args, **kwargs)
            except bottle.HTTPResponse:
                raise
            except ApiError as e:
                return json_body({"error": e.message}, e.status)
            except StoreUnavailable as e:
                app.metrics.db_error()
                diag("database unavailable: %s" % e)
                return json_body({"error": "database unavailable, try again later"}, 503)
            except StoreError as e:
                app.metrics.db_error()
                diag("database error: %s" % e)
                return json_body({"error": "database error"}, 500)
            except Exception:
                diag("internal error on %s %s:\n%s" % (bottle.request.method, bottle.request.path,
                                                       traceback.format_exc().rstrip()))
                return json_body({"error": "internal error"}, 500)
        return wrapper

    def read_body():
        environ = bottle.request.environ
        if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            raise ApiError(411, "Content-Length required (chunked bodies are not accepted)")
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise ApiError(400, "bad Content-Length")
        if length < 0:
            raise ApiError(400, "bad Content-Length")
        if length > max_body:
            raise ApiError(413, "body larger than %d bytes" % max_body)
        body = environ["wsgi.input"].read(length) if length else b""
        if len(body) > max_body:  # a WSGI server that ignores Content-Length
            raise ApiError(413, "body larger than %d bytes" % max_body)
        return body

    @app.post("/api/v1/events")
    @guarded
    def post_events():
        stored, refused = [], []
        accepted, duplicates = store.ingest(parse_events(read_body()), stored,
                                            relay=app.relay, refused=refused)
        app.metrics.stored(stored, duplicates)
        answer = {"accepted": accepted, "duplicates": duplicates}
        if refused and refused[0]:
            # the events are stored; only their relay to a host outside the allow-list is not
            answer["refused_notifications"] = refused[0]
        return json_body(answer)

    @app.get("/api/v1/jobs")
    @guarded
    def list_jobs():
        query = bottle.request.query
        filters = {}
        unknown = sorted(set(query.keys()) - set(JOB_FILTERS) -
                         {"status", "since", "until", "limit", "offset"})
        if unknown:
            raise ApiError(400, "unknown parameter %s" % unknown[0][:100])
        for name in query.keys():
            if len(query.getall(name)) > 1:
                raise ApiError(400, "parameter %s given twice" % name[:100])
        status = query.getunicode("status", default=None)
        if status:
            wanted = [s.strip().upper() for s in status.split(",") if s.strip()]
            bad = [s for s in wanted if s not in STATUSES]
            if bad:
                raise ApiError(400, "unknown status %r" % bad[0][:100])
            filters["status"] = wanted
        for name in JOB_FILTERS:
            value = query.getunicode(name, default=None)
            if value:
                filters[name] = value
        for name in ("since", "until"):
            value = query.getunicode(name, default=None)
            if value:
                when = parse_query_time(value)
                if when is None:
                    raise ApiError(400, "%s must be ISO 8601 UTC or YYYY-MM-DD" % name)
                filters[name] = when
        limit = int_param(query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        offset = int_param(query, "offset", 0, 0, 10 ** 9)
        rows, total = store.list_jobs(filters, limit, offset)
        return json_body({"jobs": [job_json(r) for r in rows], "total": total})

    # job ids may contain "/", hence :path; an id ending in "/events" is
    # therefore read as that job's events
    @app.get("/api/v1/jobs/<job_id:path>/events")
    @guarded
    def job_events(job_id):
        if store.get_job(job_id) is None:
            raise ApiError(404, "no such job")
        return json_body({"events": store.job_events(job_id)})

    @app.get("/api/v1/jobs/<job_id:path>/notifications")
    @guarded
    def job_notifications(job_id):
        slm = import_slm()
        rows = store.notifications(job_id)
        if not rows and store.get_job(job_id) is None:
            raise ApiError(404, "no such job")
        shown = []
        for row in rows:
            row = dict(row)
            row["destination"] = slm.redact_url(row["destination"])   # URLs are secrets
            row["kind"] = "rollup" if row.pop("dedup_key").startswith("rollup:") else "event"
            shown.append(row)
        return json_body({"notifications": shown})

    @app.get("/api/v1/jobs/<job_id:path>")
    @guarded
    def get_job(job_id):
        row = store.get_job(job_id)
        if row is None:
            raise ApiError(404, "no such job")
        return json_body(job_json(row))

    @app.get("/healthz")
    @guarded
    def healthz():
        try:
            store.ping()
            up = True
        except StoreError as e:
            app.metrics.db_error()
            diag("health check: database unavailable: %s" % e)
            up = False
        return json_body({"ok": up, "backend": store.backend,
                          "database": "reachable" if up else "unreachable"}, 200 if up else 503)

    @app.get("/metrics")
    @guarded
    def metrics():
        try:
            counts = store.job_counts_by_status()
            outbox = store.notification_counts()
        except StoreError:
            app.metrics.db_error()
            counts = outbox = None
        return bottle.HTTPResponse(body=app.metrics.render(counts, outbox).encode("utf-8"),
                                   headers={"Content-Type": "text/plain; version=0.0.4"})

    openapi = openapi_document()

    @app.get("/openapi.json")
    @guarded
    def openapi_json():
        return json_body(openapi)

    def error_page(error):
        bottle.response.content_type = "application/json"
        if error.status_code >= 500:
            diag("internal error: %s" % (error.exception or error.body))
            text = "internal error"
        elif error.status_code == 404:
            text = "not found"
        elif error.status_code == 405:
            text = "method not allowed"
        else:
            text = str(error.body or error.status_line)[:200]
        return json.dumps({"error": text}) + "\n"

    for code in (400, 401, 403, 404, 405, 411, 413, 414, 500, 502, 503):
        app.error(code)(error_page)
    return app


def int_param(query, name, default, low, high):
    value = query.getunicode(name, default=None)
    if value is None or value == "":
        return default
    if not re.match(r"[0-9]{1,10}\Z", value):
        raise ApiError(400, "%s must be an integer" % name)
    number = int(value)
    if not low <= number <= high:
        raise ApiError(400, "%s must be between %d and %d" % (name, low, high))
    return number


def app_from_env(env, db=None):
    config = db_config(env, db)
    return make_app(open_store(config), token=env.get("SLM_API_TOKEN", "").strip() or None)


# The one lazily built global: WSGI servers want a module-level callable, and
# building the app at import time would open the database in every process
# that merely imports slm_api (tests, tools).  Built once, under a lock.
_application = None
_application_lock = threading.Lock()


def application(environ, start_response):
    """WSGI entry point for other servers (gunicorn, uwsgi): config from the env."""
    global _application
    app = _application
    if app is None:
        with _application_lock:
            if _application is None:
                _application = app_from_env(os.environ)
            app = _application
    return app(environ, start_response)


# ---------------------------------------------------------------------------
# The threaded HTTP/1.1 server
# ---------------------------------------------------------------------------


class BodyReader(object):
    """wsgi.input that stops at Content-Length and knows what was left unread.

    Left-over body bytes would be parsed as the next request on a kept-alive
    connection, so the handler drains them (or closes) after the app.
    """

    def __init__(self, stream, length):
        self.stream = stream
        self.remaining = length

    def read(self, size=-1):
        if size is None or size < 0 or size > self.remaining:
            size = self.remaining
        data = self.stream.read(size) if size else b""
        self.remaining -= len(data)
        if size and not data:
            self.remaining = 0  # the peer went away
        return data

    def readline(self, size=-1):
        if size is None or size < 0 or size > self.remaining:
            size = self.remaining
        data = self.stream.readline(size) if size else b""
        self.remaining -= len(data)
        return data

    def readlines(self, hint=-1):
        return list(iter(self.readline, b""))

    def __iter__(self):
        return iter(self.readline, b"")


class OneRequest(ServerHandler):
    """wsgiref's per-request handler, speaking HTTP/1.1."""

    http_version = "1.1"
    sent_length = False

    def send_preamble(self):
        self.sent_length = "Content-Length" in self.headers
        ServerHandler.send_preamble(self)


class Handler(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 75            # idle keep-alive connections give their thread back
    access_log = False
    drain_limit = 4 * MAX_BODY

    def setup(self):
        WSGIRequestHandler.setup(self)
        # wsgiref writes headers and body separately: without this, Nagle's
        # algorithm and the client's delayed ACK add ~40 ms to each answer
        # on a keep-alive connection
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass

    def handle(self):
        # wsgiref's handle() serves one request; BaseHTTPRequestHandler's loops
        # over handle_one_request() until the connection closes
        self.close_connection = True
        self.handle_one_request()
        while not self.close_connection:
            self.handle_one_request()

    def handle_one_request(self):
        try:
            self.raw_requestline = self.rfile.readline(65537)
        except (OSError, socket.timeout):
            self.close_connection = True
            return
        if not self.raw_requestline:
            self.close_connection = True
            return
        if len(self.raw_requestline) > 65536:
            self.requestline = self.request_version = self.command = ""
            self.send_error(414)
            self.close_connection = True
            return
        if not self.parse_request():
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
            self.close_connection = True
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
        body = BodyReader(self.rfile, max(length, 0))
        handler = OneRequest(body, self.wfile, self.get_stderr(), self.get_environ(),
                             multithread=True)
        handler.request_handler = self
        self.server.busy(+1)
        try:
            handler.run(self.server.get_app())
        finally:
            self.server.busy(-1)
        if not handler.sent_length:
            self.close_connection = True
        if body.remaining:
            if body.remaining > self.drain_limit:
                self.close_connection = True
            else:
                try:
                    while body.remaining and body.read(65536):
                        pass
                except OSError:
                    self.close_connection = True
        try:
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def log_message(self, format, *args):
        if self.access_log:
            say("%s %s" % (self.address_string(), format % args))

    def get_stderr(self):
        return sys.stderr


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """wsgiref's server with a thread per connection."""

    daemon_threads = True      # idle keep-alive connections must not block exit
    # socketserver's default backlog of 5 resets connections when a whole
    # array's tasks end at once
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, address, handler):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self._busy = 0
        self._busy_cond = threading.Condition()
        WSGIServer.__init__(self, address, handler)

    def server_bind(self):
        # HTTPServer.server_bind() would look up our FQDN, which can hang on DNS
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]
        self.setup_environ()

    def busy(self, delta):
        with self._busy_cond:
            self._busy += delta
            self._busy_cond.notify_all()

    def wait_idle(self, timeout):
        """Wait for the requests in progress (not idle connections) to finish."""
        deadline = time.time() + timeout
        with self._busy_cond:
            while self._busy > 0 and time.time() < deadline:
                self._busy_cond.wait(max(0.0, deadline - time.time()))

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (ConnectionError, socket.timeout)):
            return  # clients hang up; that is not news
        say("error serving %s: %s" % (client_address[0], describe_error(sys.exc_info()[1])))


def make_server(host, port, app, access_log=False):
    handler = type("Handler", (Handler,), {"access_log": access_log})
    server = ThreadingWSGIServer((host, port), handler)
    server.set_app(app)
    return server


def is_loopback(host):
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0].split("%")[0]).is_loopback
                               for i in infos)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def port_number(text):
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not a port number: %r" % text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("port must be 0 to 65535, not %d" % port)
    return port


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="slm_api.py", description="The SLM login-node service (see the module docstring).")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=port_number, default=DEFAULT_PORT)
    parser.add_argument("--db", default=None, help="SQLite path or database URL "
                        "(default: SLM_DB_* from the environment, else ./slm.db)")
    parser.add_argument("--insecure", action="store_true",
                        help="allow a non-loopback address without SLM_API_TOKEN")
    parser.add_argument("--access-log", action="store_true", help="log each request to stderr")
    parser.add_argument("--version", action="version", version=__version__)
    args = parser.parse_args(argv)

    token = os.environ.get("SLM_API_TOKEN", "").strip() or None
    if token is None and not args.insecure and not is_loopback(args.host):
        say("refusing to listen on %s without SLM_API_TOKEN set (anyone could post "
            "events); set a token or pass --insecure" % (args.host or "all addresses"))
        return 2
    try:
        store = open_store(db_config(os.environ, args.db))
    except ConfigError as e:
        say(str(e))
        return 2
    try:
        relay = RelayConfig.from_env(os.environ)
    except ConfigError as e:
        say(str(e))
        store.close()
        return 2
    app = make_app(store, token=token, relay=relay)
    try:
        store.ping()
    except StoreError as e:
        app.log("database not reachable yet (%s); answering 503 until it is" % e)
    try:
        server = make_server(args.host, args.port, app, access_log=args.access_log)
    except OSError as e:
        say("cannot listen on %s:%d: %s" % (args.host, args.port, e.strerror or e))
        store.close()
        return 1
    host, port = server.server_address[:2]

    def stop(signum, frame):
        # shutdown() waits for serve_forever(), which runs in this very thread
        threading.Thread(target=server.shutdown, daemon=True).start()
    if threading.current_thread() is threading.main_thread():
        # before the startup line: whoever waits for it may signal us at once
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
    worker = OutboxWorker(store, relay, metrics=app.metrics, log=app.log,
                          poll=env_seconds("SLM_OUTBOX_POLL", 1.0),
                          timeout=env_seconds("SLM_RELAY_TIMEOUT", 10.0),
                          backoff_scale=env_seconds("SLM_OUTBOX_BACKOFF_SCALE", 1.0))
    worker.start()
    say("serving on http://%s:%d (%s, %s)" % (
        "[%s]" % host if ":" in host else host, port, store.describe(),
        "token required" if token else "no token"))
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        worker.stop()
        server.server_close()
        server.wait_idle(10.0)
        store.close()
    say("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
