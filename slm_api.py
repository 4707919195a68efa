#!/usr/bin/env python3
"""slm_api - the login-node service of SLM (Slurm Lifecycle Monitor).

Receives the lifecycle events that slm.py sends (schema "slm.event/1"),
stores them exactly once, sends the notifications it is asked to relay, and
answers questions about jobs.  One file, CPython 3.9 or newer, needs Bottle;
PyMySQL too when MySQL/MariaDB is used; slm.py must sit beside it (one event
model and one chat formatter for both).

    python3 slm_api.py                       127.0.0.1:9008, SQLite in ./slm.db
    python3 slm_api.py --db /var/lib/slm/slm.db --host 0.0.0.0 --port 9008
    python3 slm_api.py --db mysql://slm:PASSWORD@dbhost:3306/slm
    gunicorn 'slm_api:application'           any WSGI server: the same service

Options: --host (127.0.0.1), --port (9008; 0 picks a free one and says which),
--db PATH|URL, --insecure (listen on a non-loopback address without a token),
--access-log (one stderr line per request).

Environment:
    SLM_API_TOKEN     when set, every /api/ request needs
                      "Authorization: Bearer <token>" (401 otherwise).  Without
                      it the server only listens on loopback unless --insecure.
    SLM_DB_URL        mysql://user:pass@host:port/db (also mariadb://), or
                      sqlite:///relative/path, sqlite:////absolute/path
    SLM_DB_HOST, SLM_DB_PORT (3306), SLM_DB_USER (slm), SLM_DB_PASSWORD,
    SLM_DB_NAME (slm) select MySQL/MariaDB and override parts of SLM_DB_URL;
    SLM_DB_SSL_CA     a CA file: talk TLS to MySQL (off otherwise).
    --db beats the environment; with neither, SQLite ./slm.db.  Tables
    (schema.sql) are created when missing; the database itself must exist.
    SLM_RELAY_ALLOW, SLM_WEBHOOK, SLM_NOTIFY_ON, SLM_ARRAY_NOTIFY,
    SLM_WEBHOOK_SECRET, SLM_DASHBOARD_URL: notifications (see README.md).

Endpoints (JSON; every error is {"error": "..."} with a 4xx/5xx status):
    POST /api/v1/events       one event, or {"events": [...]} with 1..1000
                              -> {"accepted": n, "duplicates": m}; a repeated
                              event_id is acknowledged, not stored again; one
                              invalid event refuses the request (400 names it);
                              too many or too large -> 413; database down -> 503
    GET  /api/v1/jobs         ?status=A,B &user= &name= &partition=
                              &array_job_id= &since= &until= &limit= &offset=
    GET  /api/v1/search       the same and &name_contains= &sort= &cursor=
                              (keyset paging) &arrays=group: the dashboard's list
    GET  /api/v1/jobs/ID      one job; .../events its events (?after=EVENT_ID
                              &wait=SECONDS: a long-poll); .../notifications
                              what the service sent or keeps for it
    GET  /api/v1/feed         ?after=N &wait= &limit= &user=: events as stored
    GET  /api/v1/summary      jobs ended in a window, by state and hour
    GET  /api/v1/notifications  the relay's outbox (one's own jobs')
    GET  /openapi.json, /healthz, /metrics (no token needed)

The dashboard (HTML, not in /openapi.json): / the job list, /jobs/ID a job,
/delivery the outbox, /signin and /signout; with tokens, signing in keeps
a value derived from the token (not the token) in an HttpOnly
SameSite=Strict cookie that GET requests accept.

A job's status is that of its "strongest" event: final statuses beat the
others, SUBMITTED loses to everything, and within a class the latest
(time, seq) wins, so events may arrive in any order and late ones never
undo an ending.

How the file reads, each section using only what came before it: constants,
errors, helpers, events (validation, merge rules), storage (SQL primitives in
one transaction, two dialects), notifications (what to send where, array
roll-ups, the outbox sender), ingest (group commit), watchdog (silent jobs,
Slurm's verdicts, spools of unreachable nodes), web (one Bottle plugin
for authentication, JSON errors and the per-request transaction, then the
routes and the OpenAPI document derived from them), dashboard (the HTML
pages, through the same plugin and answers), server (threaded
HTTP/1.1), assembly (build_service: the one way to build the service, for
main() and for WSGI servers alike), command line.  Diagnostics go to stderr
prefixed "slm-api:" and never contain a token or a password.
"""

import argparse
import base64
import collections
import hashlib
import hmac
import html
import inspect
import ipaddress
import json
import math
import os
import random
import re
import signal
import socket
import sqlite3
import sys
import threading
import time
import traceback
import urllib.parse
import uuid

try:
    import bottle
except ImportError:
    if __name__ == "__main__":   # the one thing slm_api.py needs beyond Python
        sys.stderr.write("slm-api: Bottle is not installed: pip install -r requirements.txt "
                         "(or python3 -m pip install --user bottle)\n")
        sys.exit(2)
    raise

# slm.py, beside this file, is the one source of the event model's statuses,
# the chat formats and the HTTP sender: the wrapper and the service share them.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import slm  # noqa: E402

__version__ = slm.__version__

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
SCHEMA_VERSION = 4

# The statuses and what they are: slm.py's one table (slm.STATUS_TABLE), and
# the sets derived from it there.
STATUSES = slm.STATUSES
FINAL = slm.FINAL_STATUSES          # a job's end
ENDED = slm.ENDED                   # its end, or LOST (Slurm may say more)
NOTES = slm.NOTES                   # warnings: never a job's status
TASK_ENDED = "TASK_ENDED"           # one task of a step whose tasks are wrapped (step_end)
RUN_ENDS = slm.RUN_ENDS             # a run ended, the job runs again (REQUEUED)
WAITING = slm.WAITING               # before a run: SUBMITTED, PENDING
ALIVE = slm.ALIVE                   # running: silence makes it LOST
FAILURES = slm.FAILURES             # endings that count as failures
# the notes listed on a job as its warnings (a MESSAGE of its own is no warning)
WARNINGS = frozenset(s.name for s in slm.STATUS_TABLE if "warnings" in s.words.split())
# Statuses that leave Slurm's side of the story open: the watchdog compares a
# job in one with Slurm's queue every round (the wrapper may have been killed
# without a word, its node lost, its run requeued).
OPEN_TO_CHECK = frozenset(s.name for s in slm.STATUS_TABLE if s.asked)

# The database, one row per column: the DDL of both dialects (and schema.sql,
# its copy for DBAs, which a test keeps equal), the migrations of older
# databases and the API's job shape are all derived from these tables.
# Times are UTC text 'YYYY-MM-DDTHH:MM:SS.ffffffZ': they sort as they compare,
# and SQLite and MySQL filter them identically.  utf8mb4_bin keeps job ids
# case-sensitive and text byte-exact.
#   since  the schema version that added the column (migrations add it)
#   shown  for slurm_jobs: the column's description in the API's job, or None
#          for bookkeeping (the merge's, the watchdog's) and secrets (relay)
Column = collections.namedtuple("Column", "table name sqlite mysql since shown")
COLUMNS = tuple(Column(*row) for row in (
    ("slm_meta", "name", "TEXT PRIMARY KEY", "VARCHAR(64) NOT NULL", 1, None),
    ("slm_meta", "value", "TEXT NOT NULL", "VARCHAR(255) NOT NULL", 1, None),

    # a job is its id on its cluster: job_key_of(cluster, job_id), never shown
    ("slurm_jobs", "job_key", "TEXT NOT NULL PRIMARY KEY", "VARCHAR(192) NOT NULL", 4, None),
    ("slurm_jobs", "job_id", "TEXT NOT NULL", "VARCHAR(128) NOT NULL", 1, "the job's id (on "
     "its cluster)"),
    ("slurm_jobs", "status", "TEXT", "VARCHAR(16) NULL", 1, "its status: that of its "
     "strongest event"),
    ("slurm_jobs", "status_time", "TEXT", "VARCHAR(32) NULL", 1, "when that event happened"),
    ("slurm_jobs", "status_seq", "INTEGER", "BIGINT NULL", 1, None),
    ("slurm_jobs", "status_event", "TEXT", "VARCHAR(64) NULL", 1, None),
    ("slurm_jobs", "first_seen", "TEXT", "VARCHAR(32) NULL", 1, "its earliest event's time"),
    ("slurm_jobs", "submitted_at", "TEXT", "VARCHAR(32) NULL", 1, "when it was submitted"),
    ("slurm_jobs", "started_at", "TEXT", "VARCHAR(32) NULL", 1, "when its run started"),
    ("slurm_jobs", "ended_at", "TEXT", "VARCHAR(32) NULL", 1, "when it ended (final "
     "statuses only)"),
    ("slurm_jobs", "last_event_time", "TEXT", "VARCHAR(32) NULL", 1, "its latest event's "
     "time"),
    ("slurm_jobs", "last_seq", "INTEGER", "BIGINT NULL", 1, "that event's seq"),
    ("slurm_jobs", "event_count", "INTEGER NOT NULL DEFAULT 0", "INT NOT NULL DEFAULT 0", 1,
     "events stored"),
    ("slurm_jobs", "exit_code", "INTEGER", "BIGINT NULL", 1, "how it ended: an exit status"),
    ("slurm_jobs", "signal", "TEXT", "TEXT NULL", 1, "how it ended (final statuses), or the "
     "latest signal that reached it"),
    ("slurm_jobs", "reason", "TEXT", "TEXT NULL", 1, "why, in a word (time_limit, oom...)"),
    ("slurm_jobs", "message", "TEXT", "TEXT NULL", 1, "why, in a sentence"),
    ("slurm_jobs", "elapsed", "REAL", "DOUBLE NULL", 1, "seconds its run took"),
    ("slurm_jobs", "job_name", "TEXT", "TEXT NULL", 1, "its name"),
    ("slurm_jobs", "user", "TEXT", "TEXT NULL", 1, "whose it is"),
    ("slurm_jobs", "partition", "TEXT", "TEXT NULL", 1, "Slurm's partition"),
    ("slurm_jobs", "nodelist", "TEXT", "TEXT NULL", 1, "Slurm's node list"),
    ("slurm_jobs", "host", "TEXT", "TEXT NULL", 1, "the host of the status's event"),
    ("slurm_jobs", "cluster", "TEXT", "TEXT NULL", 1, "Slurm's cluster (none outside Slurm)"),
    ("slurm_jobs", "slurm_job_id", "TEXT", "TEXT NULL", 1, "SLURM_JOB_ID"),
    ("slurm_jobs", "array_job_id", "TEXT", "TEXT NULL", 1, "the array it is a task of"),
    ("slurm_jobs", "array_task_id", "TEXT", "TEXT NULL", 1, "its task id in the array"),
    ("slurm_jobs", "meta", "TEXT", "MEDIUMTEXT NULL", 1, "every other field of the events, "
     "from the event holding the status first"),
    ("slurm_jobs", "restarts", "INTEGER NOT NULL DEFAULT 0", "INT NOT NULL DEFAULT 0", 2,
     "how often Slurm requeued the job: the row shows run restarts + 1"),
    ("slurm_jobs", "heartbeat_at", "TEXT", "VARCHAR(32) NULL", 2, "its latest heartbeat"),
    ("slurm_jobs", "heartbeat_interval", "REAL", "DOUBLE NULL", 2, "seconds between its "
     "heartbeats"),
    ("slurm_jobs", "beat", "TEXT", "TEXT NULL", 4, "what its latest heartbeat measured: "
     "rss_mb, cpu_time, output_bytes, memory_limit_mb"),
    ("slurm_jobs", "checked_at", "TEXT", "VARCHAR(32) NULL", 2, None),
    # when the reconciler last asked Slurm (answered or not): its queue's order
    ("slurm_jobs", "asked_at", "TEXT", "VARCHAR(32) NULL", 3, "when the service last asked "
     "Slurm about the job"),
    ("slurm_jobs", "slurm_state", "TEXT", "VARCHAR(32) NULL", 4, "the job's state in Slurm's "
     "queue when the service last asked (asked_at), while it is in the queue"),
    ("slurm_jobs", "slurm_reason", "TEXT", "VARCHAR(255) NULL", 4, "why it waits, as Slurm's "
     "queue says (Priority, Resources, Dependency...)"),
    ("slurm_jobs", "slurm_usage", "TEXT", "TEXT NULL", 4, "what Slurm's accounting says the "
     "job used, on all its nodes: cpu_time, cpus, cpu_efficiency, max_rss_mb, elapsed"),
    ("slurm_jobs", "job_group", "TEXT", "VARCHAR(128) NULL", 2, "its group (slm submit "
     "--group)"),
    ("slurm_jobs", "relay", "TEXT", "MEDIUMTEXT NULL", 2, None),

    ("slurm_events", "id", "INTEGER PRIMARY KEY AUTOINCREMENT", "BIGINT NOT NULL "
     "AUTO_INCREMENT", 1, None),
    ("slurm_events", "event_id", "TEXT NOT NULL", "VARCHAR(64) NOT NULL", 1, None),
    ("slurm_events", "job_key", "TEXT NOT NULL", "VARCHAR(192) NOT NULL", 4, None),
    ("slurm_events", "job_id", "TEXT NOT NULL", "VARCHAR(128) NOT NULL", 1, None),
    # the job's owner when the event was stored: a user's own feed, by index
    ("slurm_events", "user", "TEXT", "VARCHAR(255) NULL", 4, None),
    ("slurm_events", "status", "TEXT NOT NULL", "VARCHAR(16) NOT NULL", 1, None),
    ("slurm_events", "time", "TEXT NOT NULL", "VARCHAR(32) NOT NULL", 1, None),
    ("slurm_events", "seq", "INTEGER", "BIGINT NULL", 1, None),
    ("slurm_events", "received_at", "TEXT NOT NULL", "VARCHAR(32) NOT NULL", 1, None),
    ("slurm_events", "raw", "TEXT NOT NULL", "MEDIUMTEXT NOT NULL", 1, None),

    ("slm_outbox", "id", "INTEGER PRIMARY KEY AUTOINCREMENT", "BIGINT NOT NULL "
     "AUTO_INCREMENT", 1, None),
    ("slm_outbox", "dedup_key", "TEXT NOT NULL", "VARCHAR(64) NOT NULL", 1, None),
    ("slm_outbox", "job_key", "TEXT NOT NULL", "VARCHAR(192) NOT NULL", 4, None),
    ("slm_outbox", "job_id", "TEXT NOT NULL", "VARCHAR(128) NOT NULL", 1, None),
    ("slm_outbox", "destination", "TEXT NOT NULL", "TEXT NOT NULL", 1, None),
    ("slm_outbox", "format", "TEXT NOT NULL", "VARCHAR(16) NOT NULL", 1, None),
    ("slm_outbox", "secret", "TEXT", "TEXT NULL", 1, None),
    ("slm_outbox", "dashboard_url", "TEXT", "TEXT NULL", 1, None),
    ("slm_outbox", "payload", "TEXT NOT NULL", "MEDIUMTEXT NOT NULL", 1, None),
    ("slm_outbox", "state", "TEXT NOT NULL", "VARCHAR(16) NOT NULL", 1, None),
    ("slm_outbox", "attempts", "INTEGER NOT NULL DEFAULT 0", "INT NOT NULL DEFAULT 0", 1, None),
    ("slm_outbox", "next_attempt_at", "TEXT NOT NULL", "VARCHAR(32) NOT NULL", 1, None),
    ("slm_outbox", "lease_owner", "TEXT", "VARCHAR(64) NULL", 1, None),
    ("slm_outbox", "lease_until", "TEXT", "VARCHAR(32) NULL", 1, None),
    ("slm_outbox", "last_error", "TEXT", "TEXT NULL", 1, None),
    ("slm_outbox", "created_at", "TEXT NOT NULL", "VARCHAR(32) NOT NULL", 1, None),
    ("slm_outbox", "sent_at", "TEXT", "VARCHAR(32) NULL", 1, None),
    ("slm_outbox", "event_id", "TEXT", "VARCHAR(64) NULL", 2, None),

    ("slm_leases", "name", "TEXT PRIMARY KEY", "VARCHAR(64) NOT NULL", 1, None),
    ("slm_leases", "owner", "TEXT NOT NULL", "VARCHAR(64) NOT NULL", 1, None),
    ("slm_leases", "until", "TEXT NOT NULL", "VARCHAR(32) NOT NULL", 1, None),

    # the dashboard's sign-ins: the SHA-256 of each cookie value, whose token
    # (its digest, or "shared"), until when; signing out deletes the row
    ("slm_sessions", "session", "TEXT PRIMARY KEY", "VARCHAR(64) NOT NULL", 4, None),
    ("slm_sessions", "token", "TEXT NOT NULL", "VARCHAR(64) NOT NULL", 4, None),
    ("slm_sessions", "created_at", "TEXT NOT NULL", "VARCHAR(32) NOT NULL", 4, None),
    ("slm_sessions", "expires_at", "TEXT NOT NULL", "VARCHAR(32) NOT NULL", 4, None),
))
TABLES = tuple(sorted(set(c.table for c in COLUMNS), key=[c.table for c in COLUMNS].index))
# Keys and indexes: (table, name, kind, ((column, MySQL prefix length or None), ...)).
# Every one is made where missing on every start (indexes on migrated columns,
# and the dashboard's orders: keyset paging by first event, the summary).
KEYS = (
    ("slm_meta", None, "primary", (("name", None),)),
    ("slurm_jobs", None, "primary", (("job_key", None),)),
    ("slurm_jobs", "slurm_jobs_id", "index", (("job_id", None),)),
    ("slurm_jobs", "slurm_jobs_last", "index", (("last_event_time", None), ("job_key", None))),
    ("slurm_jobs", "slurm_jobs_status", "index", (("status", None),)),
    ("slurm_jobs", "slurm_jobs_user", "index", (("user", 191),)),
    ("slurm_jobs", "slurm_jobs_name", "index", (("job_name", 191),)),
    ("slurm_jobs", "slurm_jobs_array", "index", (("array_job_id", 64),)),
    ("slurm_jobs", "slurm_jobs_group", "index", (("job_group", 64),)),
    ("slurm_jobs", "slurm_jobs_first", "index", (("first_seen", None), ("job_key", None))),
    # the dashboard's default: the signed-in user's jobs, newest first, and what
    # of theirs ended in the summary's window
    ("slurm_jobs", "slurm_jobs_user_first", "index",
     (("user", 64), ("first_seen", None), ("job_key", None))),
    ("slurm_jobs", "slurm_jobs_user_ended", "index",
     (("user", 64), ("ended_at", None), ("status", None))),
    ("slurm_jobs", "slurm_jobs_ended", "index", (("ended_at", None), ("status", None))),
    ("slurm_events", None, "primary", (("id", None),)),
    # an event id is unique within its job: the same id on another job (a
    # guessed id of the service's, posted first) is another event
    ("slurm_events", "slurm_events_key", "unique", (("job_key", None), ("event_id", None))),
    ("slurm_events", "slurm_events_job", "index",
     (("job_key", None), ("time", None), ("seq", None))),
    ("slurm_events", "slurm_events_user", "index", (("user", None), ("id", None))),
    ("slm_outbox", None, "primary", (("id", None),)),
    ("slm_outbox", "slm_outbox_dedup", "unique", (("dedup_key", None),)),
    ("slm_outbox", "slm_outbox_due", "index", (("state", None), ("next_attempt_at", None))),
    ("slm_outbox", "slm_outbox_job", "index", (("job_key", None),)),
    ("slm_leases", None, "primary", (("name", None),)),
    ("slm_sessions", None, "primary", (("session", None),)),
)
# The slurm_jobs columns in their order; those the API does not show.
JOB_COLUMNS = tuple(c.name for c in COLUMNS if c.table == "slurm_jobs")
HIDDEN_JOB_COLUMNS = tuple(c.name for c in COLUMNS if c.table == "slurm_jobs" and
                           c.shown is None)
# What a database made by an older slm_api.py lacks, by the version that added
# it; applied once, in order, by whichever instance gets there first.  A table
# whose keys changed is rebuilt (REBUILDS: a copy made with today's columns,
# the new ones computed by the SQL given, then put in the old one's place);
# the other tables get their new columns added.
REBUILDS = {
    # v4: a job is its id on its cluster (several clusters, one service), and an
    # event id is unique within its job; the events know their job's owner.
    # {key}: the dialect's spelling of cluster + "/" + job_id (see job_key_of);
    # {bare}: of "/" + job_id (an event or notice whose job row is gone)
    4: (("add", "slurm_jobs", "job_key", "TEXT", "VARCHAR(192) NULL"),
        ("sql", "UPDATE slurm_jobs SET job_key = {key}"),
        ("rebuild", "slurm_events", {
            "job_key": "COALESCE((SELECT j.job_key FROM slurm_jobs j WHERE j.job_id ="
                       " slurm_events.job_id), {bare})",
            "user": "(SELECT j.`user` FROM slurm_jobs j WHERE j.job_id = slurm_events.job_id)"}),
        ("rebuild", "slm_outbox", {
            "job_key": "COALESCE((SELECT j.job_key FROM slurm_jobs j WHERE j.job_id ="
                       " slm_outbox.job_id), {bare})"}),
        ("rebuild", "slurm_jobs", {})),
}
MIGRATIONS = dict((v, tuple((c.table, c.name, c.sqlite, c.mysql) for c in COLUMNS
                            if c.since == v and c.table not in
                            [step[1] for step in REBUILDS.get(v, ()) if step[0] == "rebuild"]))
                  for v in range(2, SCHEMA_VERSION + 1))
# Columns a version made wider (MySQL only: SQLite does not enforce lengths).
WIDENED = {2: (("slm_outbox", "state", "VARCHAR(16) NOT NULL", 16),)}


def key_parts(parts, mysql):
    return ", ".join("`%s`%s" % (column, "(%d)" % prefix if mysql and prefix else "")
                     for column, prefix in parts)


def table_ddl(table, mysql, name=None):
    """The CREATE TABLE statement of a table (as name, when given), in MySQL's
    dialect (its keys inline) or SQLite's (its indexes are made apart)."""
    if mysql:
        lines = ["  `%s` %s" % (c.name, c.mysql) for c in COLUMNS if c.table == table]
        for t, key, kind, parts in KEYS:
            if t == table:
                lines.append("  %s (%s)" % ({"primary": "PRIMARY KEY", "unique": "UNIQUE KEY "
                                             "`%s`" % key, "index": "KEY `%s`" % key}[kind],
                                            key_parts(parts, True)))
        return "CREATE TABLE IF NOT EXISTS `%s` (\n%s\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 " \
            "COLLATE=utf8mb4_bin;" % (name or table, ",\n".join(lines))
    lines = ["  %s %s" % (c.name, c.sqlite) for c in COLUMNS if c.table == table]
    for t, key, kind, parts in KEYS:
        if t == table and kind == "primary" and len(parts) > 1:
            lines.append("  PRIMARY KEY (%s)" % key_parts(parts, False))
    return "CREATE TABLE IF NOT EXISTS %s (\n%s\n);" % (name or table, ",\n".join(lines))


def mysql_schema():
    """The MySQL/MariaDB DDL (schema.sql), from COLUMNS and KEYS."""
    return "\n".join(
        ["-- SLM (Slurm Lifecycle Monitor) schema for MySQL/MariaDB, version %d."
         % SCHEMA_VERSION,
         "-- slm_api.py creates these tables itself when they are missing; this file is",
         "-- for DBAs who prefer to create them by hand.  It is generated from COLUMNS",
         "-- and KEYS in slm_api.py (tests/test_storage.py checks they agree).", ""] +
        [table_ddl(table, True) + "\n" for table in TABLES])


def sqlite_schema():
    """The SQLite DDL, from COLUMNS and KEYS."""
    out = []
    for table in TABLES:
        out.append(table_ddl(table, False))
        for t, name, kind, parts in KEYS:
            if t == table and kind != "primary":
                out.append("CREATE %sINDEX IF NOT EXISTS %s ON %s (%s);" % (
                    "UNIQUE " if kind == "unique" else "", name, table, key_parts(parts, False)))
    return "\n".join(out) + "\n"


MYSQL_SCHEMA = mysql_schema()
SQLITE_SCHEMA = sqlite_schema()

# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


class ConfigError(Exception):
    """The command line or environment is wrong: exit 2."""


class ApiError(Exception):
    """A request the service refuses: HTTP status and a one-line reason."""

    def __init__(self, status, message, headers=None):
        Exception.__init__(self, message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class StoreError(Exception):
    """The database failed in a way retrying will not fix: HTTP 500."""


class StoreUnavailable(StoreError):
    """The database cannot be reached (or is busy): HTTP 503, try later."""


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


def describe_error(error):
    text = str(error) or error.__class__.__name__
    return "%s: %s" % (error.__class__.__name__, text[:300])


def env_seconds(env, name, default):
    try:
        value = float(env.get(name, "") or default)
    except ValueError:
        return default
    return value if 0 < value < 3600 else default


def iso_at(epoch):
    """A time as the service stores it: slm's iso_utc to the microsecond (stored
    times are all this long, so that they sort as they compare)."""
    return slm.iso_utc(epoch, 6)


def utc_now():
    return iso_at(time.time())


epoch_of = slm.parse_utc      # the way back: seconds since the epoch, or None


# re.ASCII: \d would match any Unicode digit ('２０２６' too) and int() accept it
TIME_RE = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|\+00:00)\Z",
                     re.ASCII)
QUERY_TIME_RE = re.compile(r"(\d{4})-(\d\d)-(\d\d)(?:[T ](\d\d):(\d\d)(?::(\d\d)(?:\.(\d{1,9}))?)?)?"
                           r"(Z|\+00:00)?\Z", re.ASCII)


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


def compact_json(data):
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def destination(target):
    """slm.py's Destination for a relay target {"url", "format"}."""
    return slm.Destination("%s+%s" % (target.get("format", "json"), target["url"]))


# ---------------------------------------------------------------------------
# Events: the one validation, the merge rules, the JSON shapes
# ---------------------------------------------------------------------------

# Optional event fields and their types; anything else is kept but not checked.
TEXT_FIELDS = (
    "schema", "host", "user", "job_name", "partition", "nodelist", "cwd", "slm_version",
    "slurm_job_id", "array_job_id", "array_task_id", "cluster", "submit_dir", "signal",
    "reason", "message", "script", "array", "time_limit", "wrap", "output_tail",
    "source", "corrects", "group", "via", "step_id", "resources_from", "task_status",
)
INT_FIELDS = ("exit_code", "seq", "cpus", "array_task_count", "restart_count", "task_id",
              "ntasks")
LIST_FIELDS = ("command", "script_args")
NUMBER_FIELDS = ("elapsed", "cpu_time", "max_rss_mb", "cpu_efficiency", "memory_limit_mb",
                 "peak_memory_mb", "heartbeat", "memory_used_mb", "time_left")
BOOL_FIELDS = ("monitored", "requeue")
# The largest a number field may be (seconds, megabytes, percent: a thousand
# times any real value; an integer of 2**63 would not fit a REAL column's write)
MAX_NUMBER = 1e15
# Fields only the service writes (array roll-ups; what it keeps in a job's
# meta): a client's event carrying one is refused, so that nothing stored
# can be what a later reader does not expect.
SERVICE_FIELDS = ("tasks", "failed_tasks", "rollup", "kind", "usage", "warnings", "total",
                  "longest", "heartbeat_at", "wrapped", "steps")
# The srun steps whose tasks' ends a job's row counts (see step_end): more
# are a job wrapping each task of thousands of steps, counted no further.
MAX_STEPS = 64
EVENT_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}\Z")
# The ids the service gives its own events (a LOST, Slurm's verdicts, roll-ups,
# group notices): no client may post one.
SERVICE_ID_PREFIXES = ("service-", "slurm-", "rollup-", "group-", "tasks-")
# A Slurm cluster's name (ClusterName): part of a job's key, so plain.
CLUSTER_RE = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")
# Text fields narrower than MAX_TEXT: (the most characters, a pattern or None).
# user: its events are indexed by it; cluster: part of a job's key.
TEXT_RULES = {"user": (255, None), "cluster": (64, CLUSTER_RE)}
# A job id as Slurm gives it (an array task's as ARRAY_TASK).
SLURM_JOB_ID_RE = re.compile(r"[0-9]{1,12}(_[0-9]{1,12})?\Z")

# Event fields copied into slurm_jobs columns (the rest live in its meta JSON).
META_COLUMNS = ("exit_code", "signal", "reason", "message", "elapsed", "job_name", "user",
                "partition", "nodelist", "host", "cluster", "slurm_job_id", "array_job_id",
                "array_task_id")
JOB_FILTERS = {"user": "user", "name": "job_name", "partition": "partition",
               "array_job_id": "array_job_id", "group": "job_group", "cluster": "cluster"}
# What stays a job's through a requeue: the rest belongs to one run.
JOB_IDENTITY = ("job_name", "user", "partition", "cluster", "command", "script",
                "script_args", "submit_dir", "monitored", "array", "time_limit", "wrap",
                "slurm_job_id", "array_job_id", "array_task_id", "array_task_count", "cwd",
                "group", "requeue")
# What tells of the event holding a job's status: taken from that event alone,
# so that a row never shows one run's signal beside another verdict's state.
STATUS_FIELDS = ("source", "exit_code", "signal", "reason", "message", "corrects")
# What a heartbeat may carry besides who and when (numbers).
HEARTBEAT_SAMPLES = ("rss_mb", "cpu_time", "output_bytes", "memory_limit_mb")

# One event of a request, validated: the normalised event (canonical time,
# no nulls), the text stored as received (without the relay request), and
# the relay request or None.
Incoming = collections.namedtuple("Incoming", "event raw relay")


def job_key_of(cluster, job_id):
    """A job's key in the database: its id on its cluster ('' outside Slurm).
    Cluster names hold no '/', so the first one ends the cluster's name."""
    return "%s/%s" % (cluster or "", job_id)


def split_job_key(key):
    """(cluster or None, job id) of a job_key_of()."""
    cluster, _, job_id = key.partition("/")
    return cluster or None, job_id


class JobKeys(object):
    """Which job (its key) each word of a write is about: a job is its id on
    its cluster.  A word that names no cluster (a wrapper older than
    clusters in keys, a host that could not tell) is about the one job of
    that id there is; and a Slurm job first heard of without its cluster is
    the same job when a later word names it.  known: {job id: [keys]}."""

    def __init__(self, known):
        self.known = dict((job_id, list(keys)) for job_id, keys in known.items())

    def __call__(self, cluster, job_id):
        keys = self.known.setdefault(job_id, [])
        key, bare = job_key_of(cluster, job_id), job_key_of(None, job_id)
        if key not in keys and SLURM_JOB_ID_RE.match(job_id):
            if cluster and bare in keys:
                key = bare
            elif not cluster and len(keys) == 1:
                key = keys[0]
        if key not in keys:
            keys.append(key)
        return key

    def of(self, event):
        """The key of the job an event (or heartbeat) is about."""
        return self(event.get("cluster"), event["job_id"])

    def array(self, event):
        """The key of the array an event's job is a task of, or None."""
        array_id = event.get("array_job_id")
        return self(event.get("cluster"), array_id) if array_id else None


def check_text(value, name, limit=MAX_TEXT):
    if not isinstance(value, str):
        return "%s must be a string" % name
    if len(value) > limit:
        return "%s is longer than %d characters" % (name, limit)
    return None


def is_statuses(value):
    return isinstance(value, list) and len(value) <= len(STATUSES) and \
        all(isinstance(s, str) and s in STATUSES for s in value)


# What each kind of slm.RELAY_FIELDS / RELAY_TARGET_FIELDS may hold: a check,
# and its JSON schema (for /openapi.json).
RELAY_KINDS = {
    "destination": (lambda v: isinstance(v, str) and 0 < len(v) <= 2048,
                    {"type": "string", "maxLength": 2048}),
    "format": (lambda v: isinstance(v, str) and v in slm.WEBHOOK_FORMATS,
               {"type": "string", "enum": list(slm.WEBHOOK_FORMATS)}),
    "secret": (lambda v: isinstance(v, str) and len(v) <= 512,
               {"type": "string", "maxLength": 512}),
    "bool": (lambda v: isinstance(v, bool), {"type": "boolean"}),
    "array_notify": (lambda v: isinstance(v, str) and v in slm.ARRAY_NOTIFY_CHOICES,
                     {"type": "string", "enum": list(slm.ARRAY_NOTIFY_CHOICES)}),
    "statuses": (is_statuses, {"type": "array", "items": {"type": "string",
                                                          "enum": list(STATUSES)}}),
    "text": (lambda v: isinstance(v, str) and len(v) <= 2048,
             {"type": "string", "maxLength": 2048}),
    "targets": (lambda v: isinstance(v, list) and len(v) <= slm.MAX_RELAY_TARGETS,
                {"type": "array", "maxItems": slm.MAX_RELAY_TARGETS}),
}


def relay_part(data, fields, where):
    """The fields of a relay object (or of one of its targets) that slm.py's
    description names, checked; ValueError naming the first wrong one."""
    if not isinstance(data, dict):
        raise ValueError("%s must be an object" % where)
    out = {}
    for name, kind, required, _ in fields:
        value = data.get(name)
        if value is None:
            if required:
                raise ValueError("%s needs %s" % (where, name))
            continue
        if not RELAY_KINDS[kind][0](value):
            raise ValueError("%s.%s must be %s" % (where, name, json.dumps(
                RELAY_KINDS[kind][1])))
        out[name] = value
    return out


def validate_relay(relay):
    """The relay request of an event, as slm.RELAY_FIELDS describes it (what it
    does not name is dropped); raise ValueError."""
    relay = relay_part(relay, slm.RELAY_FIELDS, "relay")
    to = []
    for target in relay["to"]:
        target = relay_part(target, slm.RELAY_TARGET_FIELDS, "relay.to[]")
        problem = destination(target).problem()
        if problem:
            raise ValueError("relay.to entry: %s" % problem)
        to.append(target)
    relay["to"] = to
    return relay


def relay_schema():
    """The relay object's JSON schema, from the same description."""
    def schema(fields):
        return {"type": "object", "required": [n for n, _, req, _ in fields if req],
                "properties": dict((n, dict(RELAY_KINDS[k][1], description=d))
                                   for n, k, _, d in fields)}
    out = schema(slm.RELAY_FIELDS)
    out["properties"]["to"]["items"] = schema(slm.RELAY_TARGET_FIELDS)
    out.update(nullable=True, description="SLM_WEBHOOK_VIA=api: where the service sends "
               "this event's notifications.  Never stored with the event; fields not "
               "listed are dropped.")
    return out


def validate_event(data, client=True):
    """An Incoming for one received event object, or raise ValueError(reason).
    client: posted by a client (not made by the service itself), which may not
    use the service's own fields and ids."""
    if not isinstance(data, dict):
        raise ValueError("an event must be a JSON object")
    if client:
        for name in SERVICE_FIELDS:
            if name in data:
                raise ValueError("%s is a field the service sets itself: an event may not "
                                 "carry it" % name)
    relay = None
    if "relay" in data:
        relay = validate_relay(data["relay"])
        data = dict((k, v) for k, v in data.items() if k != "relay")
    for name in ("event_id", "job_id", "status", "time"):
        if name not in data:
            raise ValueError("missing field %s" % name)
    event_id, job_id, status = data["event_id"], data["job_id"], data["status"]
    if not isinstance(event_id, str) or not EVENT_ID_RE.match(event_id):
        raise ValueError("event_id must be 1..64 characters of A-Z a-z 0-9 . _ : -")
    if client and event_id.startswith(SERVICE_ID_PREFIXES):
        raise ValueError("event ids starting with %s are the service's own"
                         % [p for p in SERVICE_ID_PREFIXES if event_id.startswith(p)][0])
    if not isinstance(job_id, str) or not 1 <= len(job_id) <= 128:
        raise ValueError("job_id must be a string of 1..128 characters")
    if not job_id.isprintable() or job_id.strip() != job_id:
        raise ValueError("job_id must be printable, without surrounding blanks")
    if not isinstance(status, str) or status not in STATUSES:
        raise ValueError("unknown status %r" % (str(status)[:40],))
    when = parse_event_time(data["time"])
    if when is None:
        raise ValueError("time must be ISO 8601 UTC, like 2026-11-30T03:40:41.123Z")
    for name in TEXT_FIELDS:
        if data.get(name) is not None:
            limit, pattern = TEXT_RULES.get(name, (MAX_TEXT, None))
            problem = check_text(data[name], name, limit) or (
                "%s must match %s" % (name, pattern.pattern[:-2])
                if pattern is not None and not pattern.match(data[name]) else None)
            if problem:
                raise ValueError(problem)
    for name in INT_FIELDS:
        value = data.get(name)
        if value is not None and (not is_int(value) or not -2 ** 63 <= value < 2 ** 63):
            raise ValueError("%s must be a 64-bit integer" % name)
    if is_int(data.get("seq")) and data["seq"] < 0:
        raise ValueError("seq must not be negative")
    for name in NUMBER_FIELDS:
        value = data.get(name)
        # (compared before anything converts it: int(10 ** 400) has no float)
        if value is not None and (not (is_int(value) or isinstance(value, float))
                                  or not 0 <= value <= MAX_NUMBER):
            raise ValueError("%s must be a number from 0 to %g" % (name, MAX_NUMBER))
    for name in LIST_FIELDS:
        value = data.get(name)
        if value is None:
            continue
        if not isinstance(value, list) or len(value) > MAX_LIST:
            raise ValueError("%s must be a list of at most %d strings" % (name, MAX_LIST))
        for i, item in enumerate(value):
            problem = check_text(item, "%s[%d]" % (name, i))
            if problem:
                raise ValueError(problem)
    for name in BOOL_FIELDS:
        if data.get(name) is not None and not isinstance(data[name], bool):
            raise ValueError("%s must be true or false" % name)
    try:
        raw = compact_json(data)
        raw.encode("utf-8")
    except (UnicodeError, ValueError):
        raise ValueError("text is not valid Unicode (a lone surrogate?)")
    event = dict((k, v) for k, v in data.items() if v is not None)
    event["time"] = when
    return Incoming(event, raw, relay)


def parse_body(body, key, validate, what):
    """The validated items of a request body (bytes): one JSON object, or
    {key: [...]} with 1..MAX_BATCH of them; raise ApiError."""
    if not body:
        raise ApiError(400, "empty body: expected a JSON %s or {\"%s\": [...]}" % (what, key))
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
    if isinstance(data, dict) and key in data and "job_id" not in data:
        items = data[key]
        if not isinstance(items, list):
            raise ApiError(400, "\"%s\" must be a list" % key)
        if not items:
            raise ApiError(400, "\"%s\" is empty" % key)
        if len(items) > MAX_BATCH:
            raise ApiError(413, "too many %ss in one request (%d > %d)"
                           % (what, len(items), MAX_BATCH))
        batch = True
    elif isinstance(data, dict):
        items, batch = [data], False
    else:
        raise ApiError(400, "expected a JSON object: a %s or {\"%s\": [...]}" % (what, key))
    checked = []
    for i, item in enumerate(items):
        try:
            checked.append(validate(item))
        except ValueError as e:
            raise ApiError(400, "%s%s" % ("%s %d: " % (what, i) if batch else "", e))
    return checked


def parse_events(body):
    """The Incoming events of a request body (bytes); raise ApiError."""
    return parse_body(body, "events", validate_event, "event")


def validate_heartbeat(data):
    """A heartbeat (not an event: not journalled, never notified, not kept
    but as the job's latest sample): who, when, the interval the wrapper
    keeps, and what it measured.  Returns the normalised dict."""
    if not isinstance(data, dict):
        raise ValueError("a heartbeat must be a JSON object")
    job_id = data.get("job_id")
    if not isinstance(job_id, str) or not 1 <= len(job_id) <= 128 or not job_id.isprintable():
        raise ValueError("job_id must be a printable string of 1..128 characters")
    when = parse_event_time(data.get("time"))
    if when is None:
        raise ValueError("time must be ISO 8601 UTC, like 2026-11-30T03:40:41.123Z")
    interval = data.get("interval")
    if not (is_int(interval) or isinstance(interval, float)) or not 0 < interval <= 86400:
        raise ValueError("interval must be a number of seconds, 0 < interval <= 86400")
    beat = {"job_id": job_id, "time": when, "interval": float(interval)}
    cluster = data.get("cluster")
    if cluster is not None:
        if not isinstance(cluster, str) or not CLUSTER_RE.match(cluster):
            raise ValueError("cluster must be a Slurm cluster's name: 1..64 of A-Z a-z 0-9 . _ -")
        beat["cluster"] = cluster
    if data.get("user") is not None:
        problem = check_text(data["user"], "user", 256)
        if problem:
            raise ValueError(problem)
        beat["user"] = data["user"]
    run = data.get("restart_count")
    if run is not None:
        if not is_int(run) or not 0 <= run < 2 ** 31:
            raise ValueError("restart_count must be a small non-negative integer")
        beat["restart_count"] = run
    for name in HEARTBEAT_SAMPLES:
        value = data.get(name)
        if value is None:
            continue
        if not (is_int(value) or isinstance(value, float)) or not math.isfinite(value) or \
                not 0 <= value < 2 ** 63:
            raise ValueError("%s must be a non-negative number" % name)
        beat[name] = value
    return beat


def parse_heartbeats(body):
    return parse_body(body, "heartbeats", validate_heartbeat, "heartbeat")


# Who posts or asks: the user a token belongs to (None for the shared token
# and for a service without tokens), the role that decides what they may do
# ("admin": everything; "user": their own jobs), and a key naming the token
# (for rate limits and fair shares; never the token itself).
Principal = collections.namedtuple("Principal", "user role key")
ANYONE = Principal(None, "admin", "anyone")


def attribute(who, items):
    """Items (Incoming events) with no user made the token's user's: no job
    is left without an owner for another user's token to take over."""
    if who is None or who.user is None:
        return items
    out = []
    for incoming in items:
        if incoming.event.get("user") is None:
            raw = json.loads(incoming.raw) if incoming.raw else {}
            raw["user"] = who.user
            incoming = Incoming(dict(incoming.event, user=who.user), compact_json(raw),
                                incoming.relay)
        out.append(incoming)
    return out


def check_authorship(who, items):
    """A user may post events only as themselves; raise ApiError 403."""
    if who is None or who.role == "admin":
        return
    for n, incoming in enumerate(items):
        user = incoming.event.get("user")
        if user != who.user:
            raise ApiError(403, "event %d is for user %s, but the token is %s's: a token "
                           "posts only its own user's events" % (n, repr(user)[:60], who.user))


def status_rank(status, source, when, seq, event_id):
    """Order of precedence between the events of one run of a job.

    Slurm's own verdict (source "slurm") beats what the wrapper said of the
    end, which beats everything that does not end a job; waiting beats only
    notes; within a class the latest (time, seq) wins.  A later run (after a
    requeue) beats every event of the runs before it (see merge_event).
    """
    if status in FINAL or status in RUN_ENDS:
        klass = 3 if source == "slurm" else 2
    elif status in NOTES:
        klass = -1
    else:
        klass = 0 if status in WAITING else 1
    return (klass, when or "", seq or 0, event_id or "")


def event_run(event):
    """Which run of a requeued job an event is from (SLURM_RESTART_COUNT)."""
    run = event.get("restart_count")
    return run if is_int(run) and run > 0 else 0


def merge_event(row, event):
    """Apply one new event (normalised) to a job row (dict); return the row.

    Order-independent: the result is the same whichever order the events
    arrive in.  The row shows the latest run; an event of an earlier run
    only counts.  Metadata (host, exit_code...) comes from the event holding
    the status, gaps filled from the other events of the same run.
    """
    when, seq, status = event["time"], event.get("seq"), event["status"]
    run, current = event_run(event), row.get("restarts") or 0
    row["event_count"] = (row.get("event_count") or 0) + 1
    if row.get("first_seen") is None or when < row["first_seen"]:
        row["first_seen"] = when
    if row.get("last_event_time") is None or \
            (when, seq or 0) > (row["last_event_time"], row.get("last_seq") or 0):
        row["last_event_time"], row["last_seq"] = when, seq
    if status in ("SUBMITTED", "SUBMIT_FAILED") and \
            (row.get("submitted_at") is None or when < row["submitted_at"]):
        row["submitted_at"] = when
    meta = json.loads(row["meta"]) if row.get("meta") else {}
    if run < current:
        for key in JOB_IDENTITY:     # an earlier run may still fill in who and what
            if meta.get(key) is None and event.get(key) is not None:
                meta[key] = event[key]
        row["meta"] = compact_json(meta)
        return row
    if run > current:                # a requeued job runs again: a new run begins
        meta = dict((k, v) for k, v in meta.items() if k in JOB_IDENTITY)
        row.update(restarts=run, status=None, status_time=None, status_seq=None,
                   status_event=None, started_at=None, ended_at=None, checked_at=None)
    if status == "RUNNING" and (row.get("started_at") is None or when < row["started_at"]):
        row["started_at"] = when
    beat = event.get("heartbeat")
    if (is_int(beat) or isinstance(beat, float)) and beat > 0:
        row["heartbeat_interval"] = float(beat)   # RUNNING says how often beats will come
    if row.get("heartbeat_interval") and event.get("source") is None and \
            (row.get("heartbeat_at") is None or when > row["heartbeat_at"]):
        row["heartbeat_at"] = when                # a word from the wrapper is a heartbeat too
    new = status_rank(status, event.get("source"), when, seq, event["event_id"])
    wins = not row.get("status") or new > status_rank(
        row["status"], meta.get("source"), row.get("status_time"), row.get("status_seq"),
        row.get("status_event"))
    if wins:
        row["status"], row["status_time"] = status, when
        row["status_seq"], row["status_event"] = seq, event["event_id"]
        row["ended_at"] = when if status in FINAL else None
        for key in STATUS_FIELDS:    # the status's own, never another event's
            meta.pop(key, None)
    for key, value in event.items():
        if key in ("event_id", "job_id", "status", "time", "seq", "schema"):
            continue
        if key == "user" and meta.get("user") is not None:
            continue                 # a job's owner, once known, is its owner
        if wins or (meta.get(key) is None and key not in STATUS_FIELDS):
            meta[key] = value
    if event.get("source") is None and event.get("via") is None:
        meta["wrapped"] = True       # the job's own wrapper speaks (see wrapped())
    if status in WARNINGS:           # warnings stay listed whatever holds the status
        warned = meta.setdefault("warnings", [])
        if status not in warned:
            warned.append(status)
    row["meta"] = compact_json(meta)
    for column in META_COLUMNS:
        row[column] = meta.get(column)
    if meta.get("group") is not None:
        row["job_group"] = meta["group"]
    return row


def wrapped(row):
    """Whether a job's own wrapper (slm run) reported it: its word then wins
    over what Slurm's mail (site mode) says of the same moments."""
    return bool(row.get("meta")) and json.loads(row["meta"]).get("wrapped") is True


def job_json(row):
    """A job row as the API shows it."""
    out = dict((k, v) for k, v in row.items() if k not in HIDDEN_JOB_COLUMNS)
    out["meta"] = json.loads(row["meta"]) if row.get("meta") else {}
    for name in ("slurm_usage", "beat"):
        out[name] = json.loads(row[name]) if row.get(name) else None
    # Slurm's record was read after the run ended: its verdict, if it had one
    # to give, is in (`slm watch` waits for it where a requeue may hide)
    out["verified"] = bool(row.get("ended_at") and row.get("checked_at") and
                           row["checked_at"] >= row["ended_at"])
    return out


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


# ---------------------------------------------------------------------------
# Storage: SQL primitives run inside one transaction; two thin dialects
# ---------------------------------------------------------------------------


def quote(name):
    # backticks: user, partition and signal are reserved words in MySQL;
    # SQLite accepts the same quoting
    return "`%s`" % name


def blank_job_row(key):
    """A job row as create_job_rows makes it: its columns' defaults."""
    row = dict((c.name, 0 if "DEFAULT 0" in c.sqlite else None) for c in COLUMNS
               if c.table == "slurm_jobs")
    cluster, job_id = split_job_key(key)
    row.update(job_key=key, cluster=cluster, job_id=job_id)
    return row


def columns(names):
    return ", ".join(quote(n) for n in names)


def split_statements(script):
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def chunks(items, count, size=None, limit=4 << 20):
    """items in lists of at most count, and (with size(item)) at most ~limit bytes."""
    out, total = [], 0
    for item in items:
        n = size(item) if size else 0
        if out and (len(out) >= count or total + n > limit):
            yield out
            out, total = [], 0
        out.append(item)
        total += n
    if out:
        yield out


class RetryExactly(Exception):
    """A batched insert met rows another writer stored meanwhile: run the
    transaction again, one row at a time, to know exactly which are ours."""


class Dialect(object):
    """What differs between SQLite and MySQL: connecting, spelling, errors."""

    name = None
    insert_ignore = "INSERT OR IGNORE"
    lock_suffix = ""       # SELECT ... FOR UPDATE where the database has it
    row_at_a_time = True   # per-row statements cost no round trip (in-process SQLite)

    def connect(self):
        raise NotImplementedError

    def begin(self, conn, write):
        """Start a transaction where the driver does not do it itself."""

    def sql(self, text):
        return text

    def classify(self, error):
        """'reconnect', 'retry', 'missing' (tables), 'unavailable', 'bug', or
        None when error does not come from the database at all."""
        raise NotImplementedError

    def create_tables(self, cur):
        """Make the tables that are missing (their indexes come after any
        migration: see add_index)."""
        raise NotImplementedError

    def table_columns(self, cur, table):
        raise NotImplementedError

    def add_column(self, cur, table, column, sqlite_type, mysql_type):
        raise NotImplementedError

    def add_index(self, cur, name, table, parts, unique=False):
        """Make an index (KEYS) where it is missing."""
        raise NotImplementedError

    def widen(self, cur, table, column, mysql_type, length):
        """Make a text column hold length characters (SQLite's hold any)."""

    def concat(self, *parts):
        """SQL joining the text of parts (SQL expressions)."""
        return " || ".join(parts)

    def schema_lock(self, cur):
        """Keep other instances out of the schema's making and migrating."""

    def schema_unlock(self, cur):
        """Let them in again (after the commit or rollback)."""

    def rename_table(self, cur, old, new):
        cur.execute("ALTER TABLE %s RENAME TO %s" % (old, new))

    def contains(self, column):
        """SQL true when column holds the one ? argument, case-insensitively
        (by the database's own idea of case: ASCII letters on SQLite)."""
        raise NotImplementedError

    def not_leading(self, column):
        """The column written so that the planner does not choose its index
        for a query another index serves better (see Tx._job_where)."""
        return column

    def job_row_select(self):
        """(the SELECT list of a job row, how a fetched tuple becomes its dict)."""
        return columns(JOB_COLUMNS), lambda found: dict(zip(JOB_COLUMNS, found))

    def create_job_rows(self, cur, keys):
        """Make missing rows for the job keys, locking them for this transaction;
        True when every one was made (none existed)."""
        cur.executemany(self.sql("%s INTO slurm_jobs (job_key, cluster, job_id, event_count)"
                                 " VALUES (?, ?, ?, 0)" % self.insert_ignore),
                        [(k,) + split_job_key(k) for k in keys])

    def write_job_rows(self, cur, rows):
        names = [c for c in JOB_COLUMNS if c != "job_key"]
        cur.executemany(self.sql("UPDATE slurm_jobs SET %s WHERE job_key = ?"
                                 % ", ".join("%s = ?" % quote(c) for c in names)),
                        [[row[c] for c in names] + [row["job_key"]] for row in rows])

    def describe(self):
        return self.name

    def secrets(self):
        return ()


class SQLiteDialect(Dialect):
    """SQLite in WAL mode.  Its connections are kept (closing the last one
    would checkpoint and delete the WAL each time); writers in this process
    queue on a lock rather than in SQLite's sleep-and-retry busy handler."""

    name = "sqlite"

    def __init__(self, path, busy_timeout=15.0):
        self.path = path
        self.busy_timeout = busy_timeout

    def connect(self):
        try:
            return sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                                   check_same_thread=False)
        except sqlite3.Error as e:
            raise StoreUnavailable(describe_error(e))

    def begin(self, conn, write):
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")

    def classify(self, error):
        if isinstance(error, sqlite3.OperationalError) and "no such table" in str(error):
            return "missing"
        if isinstance(error, (sqlite3.IntegrityError, sqlite3.ProgrammingError)):
            return "bug"
        if isinstance(error, (sqlite3.OperationalError, sqlite3.DatabaseError, OSError)):
            return "unavailable"
        return "bug" if isinstance(error, sqlite3.Error) else None

    def schema_lock(self, cur):
        cur.execute("PRAGMA journal_mode=WAL")   # not inside a transaction
        # SQLite's DDL is transactional: the one transaction (committed or
        # rolled back by Database._ensure_tables) is the lock
        cur.execute("BEGIN IMMEDIATE")

    def create_tables(self, cur):
        for statement in split_statements(SQLITE_SCHEMA):
            if statement.startswith("CREATE TABLE"):
                cur.execute(statement)

    def table_columns(self, cur, table):
        cur.execute("PRAGMA table_info(%s)" % table)
        return set(r[1] for r in cur.fetchall())

    def add_column(self, cur, table, column, sqlite_type, mysql_type):
        cur.execute("ALTER TABLE %s ADD COLUMN %s %s" % (table, quote(column), sqlite_type))

    def add_index(self, cur, name, table, parts, unique=False):
        cur.execute("CREATE %sINDEX IF NOT EXISTS %s ON %s (%s)"
                    % ("UNIQUE " if unique else "", name, table, key_parts(parts, False)))

    def contains(self, column):
        return "instr(lower(%s), lower(?)) > 0" % column

    def not_leading(self, column):
        # SQLite's planner, without statistics, takes any equality as selective:
        # "+column" keeps it from walking a heavy user's 40,000 index entries
        return "+" + column

    def describe(self):
        return "sqlite %s" % os.path.abspath(self.path)


# MySQL client error codes that mean the connection is gone (server
# restarted, wait_timeout, KILL): reconnect and run the transaction again.
MYSQL_LOST = frozenset((2006, 2013, 2014, 2045, 2055, 1053, 1927, 4031))
MYSQL_RETRY = frozenset((1213, 1205))     # deadlock, lock wait timeout
MYSQL_MISSING = frozenset((1146,))       # table doesn't exist


class MySQLDialect(Dialect):
    """MySQL/MariaDB through PyMySQL (autocommit off: a transaction starts
    with its first statement, so there is no BEGIN to send)."""

    name = "mysql"
    insert_ignore = "INSERT IGNORE"
    lock_suffix = " FOR UPDATE"
    row_at_a_time = False

    def __init__(self, host, port=3306, user="slm", password="", database="slm",
                 connect_timeout=5, ssl_ca=None):
        try:
            import pymysql
        except ImportError:
            raise ConfigError("MySQL is configured but PyMySQL is not installed "
                              "(pip install pymysql)")
        self.pymysql = pymysql
        self.params = dict(host=host, port=int(port), user=user, password=password or "",
                           database=database, charset="utf8mb4", autocommit=False,
                           connect_timeout=connect_timeout, read_timeout=120, write_timeout=120,
                           init_command="SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        # PyMySQL builds a TLS context for every connection unless told not to
        # (~40 ms each); TLS is used only when asked for
        if ssl_ca:
            self.params.update(ssl_ca=ssl_ca, ssl_verify_cert=True)
        else:
            self.params["ssl_disabled"] = True

    def connect(self):
        try:
            return self.pymysql.connect(**self.params)
        except Exception as e:
            raise StoreUnavailable(describe_error(e))

    def sql(self, text):
        return text.replace("?", "%s")

    def classify(self, error):
        err = self.pymysql.err
        if not isinstance(error, (err.MySQLError, OSError)):
            return None
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

    def create_tables(self, cur):
        for statement in split_statements(MYSQL_SCHEMA):
            cur.execute(statement)

    def table_columns(self, cur, table):
        cur.execute("SELECT column_name FROM information_schema.columns WHERE"
                    " table_schema = DATABASE() AND table_name = %s", (table,))
        return set(r[0] for r in cur.fetchall())

    def add_column(self, cur, table, column, sqlite_type, mysql_type):
        cur.execute("ALTER TABLE `%s` ADD COLUMN %s %s" % (table, quote(column), mysql_type))

    def concat(self, *parts):
        return "CONCAT(%s)" % ", ".join(parts)

    def schema_lock(self, cur):
        # MySQL's DDL commits at once: a named lock, held by one instance at a time
        cur.execute("SELECT GET_LOCK(CONCAT('slm-schema-', DATABASE()), 600)")
        if cur.fetchone()[0] != 1:
            raise StoreUnavailable("another instance holds the schema lock")

    def schema_unlock(self, cur):
        cur.execute("SELECT RELEASE_LOCK(CONCAT('slm-schema-', DATABASE()))")
        cur.fetchall()

    def rename_table(self, cur, old, new):
        cur.execute("RENAME TABLE `%s` TO `%s`" % (old, new))

    def widen(self, cur, table, column, mysql_type, length):
        cur.execute("SELECT character_maximum_length FROM information_schema.columns WHERE"
                    " table_schema = DATABASE() AND table_name = %s AND column_name = %s",
                    (table, column))
        found = cur.fetchone()
        if found and found[0] is not None and found[0] < length:
            cur.execute("ALTER TABLE `%s` MODIFY COLUMN %s %s" % (table, quote(column),
                                                                 mysql_type))

    def add_index(self, cur, name, table, parts, unique=False):
        cur.execute("SELECT COUNT(*) FROM information_schema.statistics WHERE"
                    " table_schema = DATABASE() AND table_name = %s AND index_name = %s",
                    (table, name))
        if not cur.fetchone()[0]:
            cur.execute("ALTER TABLE `%s` ADD %sKEY `%s` (%s)" % (
                table, "UNIQUE " if unique else "", name, key_parts(parts, True)))

    def contains(self, column):
        return "LOCATE(LOWER(?), LOWER(%s)) > 0" % column

    def job_row_select(self):
        # one JSON column, not 39: PyMySQL parses each column's description of
        # every result in Python (~13 us a column: half of an event's lock read)
        doubles = [c.name for c in COLUMNS if c.table == "slurm_jobs" and c.sqlite == "REAL"]

        def decode(found):
            row = json.loads(found[0])
            for name in doubles:     # JSON writes 60.0 as 60
                if row[name] is not None:
                    row[name] = float(row[name])
            return row
        return "JSON_OBJECT(%s)" % ", ".join("'%s', %s" % (c, quote(c))
                                             for c in JOB_COLUMNS), decode

    def create_job_rows(self, cur, keys):
        # ON DUPLICATE KEY takes the rows' exclusive locks at once; INSERT
        # IGNORE would take shared ones and deadlock on the FOR UPDATE
        cur.execute("INSERT INTO slurm_jobs (job_key, cluster, job_id, event_count) VALUES %s"
                    " ON DUPLICATE KEY UPDATE job_key = job_key"
                    % ", ".join(["(%s, %s, %s, 0)"] * len(keys)),
                    [v for k in keys for v in (k,) + split_job_key(k)])
        # 1 a row made, 0 a row that was there (PyMySQL does not ask for FOUND_ROWS,
        # which would count that 1 too)
        return cur.rowcount == len(keys)

    def write_job_rows(self, cur, rows):
        # one upsert for many rows: UPDATE would cost a round trip per job
        names = list(JOB_COLUMNS)
        marks = "(%s)" % ", ".join(["%s"] * len(names))
        for part in chunks(rows, 500, lambda r: len(r.get("meta") or "") + 512):
            cur.execute("INSERT INTO slurm_jobs (%s) VALUES %s ON DUPLICATE KEY UPDATE %s"
                        % (columns(names), ", ".join([marks] * len(part)),
                           ", ".join("%s = VALUES(%s)" % (quote(c), quote(c))
                                     for c in names if c != "job_key")),
                        [row[c] for row in part for c in names])

    def describe(self):
        p = self.params
        return "mysql://%s:***@%s:%d/%s" % (p["user"], p["host"], p["port"], p["database"])

    def secrets(self):
        return (self.params["password"],) if self.params["password"] else ()


class Tx(object):
    """The storage primitives, inside one transaction (see Database.run).

    Nothing here decides what to notify or when an array is done: that is
    policy, in the notification section.
    """

    def __init__(self, cur, dialect, exact=False):
        self.cur = cur
        self.dialect = dialect
        self.exact = exact or dialect.row_at_a_time

    def execute(self, sql, args=()):
        self.cur.execute(self.dialect.sql(sql), args)
        return self.cur

    def rows(self, sql, args=()):
        return self.execute(sql, args).fetchall()

    def one(self, sql, args=()):
        return self.execute(sql, args).fetchone()

    # -- events ------------------------------------------------------------

    def insert_events(self, items, received):
        """Store (event, raw, job key, owner) items not stored yet; return, for
        each, whether it was stored now (False: the job has that event id
        already, or it came earlier in items)."""
        stored = [False] * len(items)
        seen, fresh = set(), []
        for i, (event, _, key, _) in enumerate(items):
            if (key, event["event_id"]) not in seen:
                seen.add((key, event["event_id"]))
                fresh.append(i)
        if not fresh:
            return stored
        sql = "%s INTO slurm_events (event_id, job_key, job_id, %s, status, time, seq," \
            " received_at, raw) VALUES " % (self.dialect.insert_ignore, quote("user"))
        marks = "(?, ?, ?, ?, ?, ?, ?, ?, ?)"

        def values(i):
            event, raw, key, owner = items[i]
            return (event["event_id"], key, event["job_id"], owner, event["status"],
                    event["time"], event.get("seq"), received, raw)
        if self.exact or len(fresh) == 1:   # one row's count is exact: one statement
            for i in fresh:
                stored[i] = self.execute(sql + marks, values(i)).rowcount == 1
            return stored
        # two statements for the whole group: which exist, then the others at once
        known = set()
        for part in chunks(fresh, 500):
            keys = sorted(set(items[i][2] for i in part))
            ids = sorted(set(items[i][0]["event_id"] for i in part))
            known.update(tuple(r) for r in self.rows(
                "SELECT job_key, event_id FROM slurm_events WHERE job_key IN (%s) AND event_id"
                " IN (%s)" % (", ".join("?" * len(keys)), ", ".join("?" * len(ids))),
                keys + ids))
        new = [i for i in fresh if (items[i][2], items[i][0]["event_id"]) not in known]
        for part in chunks(new, 500, lambda i: len(items[i][1]) + 200):
            if self.execute(sql + ", ".join([marks] * len(part)),
                            [v for i in part for v in values(i)]).rowcount != len(part):
                raise RetryExactly()
            for i in part:
                stored[i] = True
        return stored

    def own_events(self, key, user):
        """The events of a job whose owner became known: theirs."""
        self.execute("UPDATE slurm_events SET %s = ? WHERE job_key = ? AND %s IS NULL"
                     % (quote("user"), quote("user")), (user, key))

    def job_events(self, key, after=None):
        """A job's events by (time, seq, arrival); after: only those after the
        event with that event_id (None when the job has no such event)."""
        if after is None:
            return [json.loads(r[0]) for r in self.rows(
                "SELECT raw FROM slurm_events WHERE job_key = ? ORDER BY time, seq, id",
                (key,))]
        mark = self.one("SELECT time, COALESCE(seq, -1), id FROM slurm_events WHERE job_key = ?"
                        " AND event_id = ?", (key, after))
        if mark is None:
            return None
        when, seq, nid = mark
        # NULL seq sorts first in both databases: as -1 (seq is never negative)
        return [json.loads(r[0]) for r in self.rows(
            "SELECT raw FROM slurm_events WHERE job_key = ? AND time >= ? AND (time > ? OR"
            " COALESCE(seq, -1) > ? OR (COALESCE(seq, -1) = ? AND id > ?))"
            " ORDER BY time, seq, id", (key, when, when, seq, seq, nid))]

    def events_since(self, after, limit, user=None, job_id=None, key=None):
        """(id, job_key, the job's owner, raw) of the events stored after id
        `after`, in arrival order, at most limit: of user's jobs only, one
        job's (key), or of jobs of that id, if given."""
        where, args = ["id > ?"], [int(after)]
        for column, value in (("user", user), ("job_key", key), ("job_id", job_id)):
            if value is not None:
                where.append("%s = ?" % quote(column))
                args.append(value)
        return self.rows("SELECT id, job_key, %s, raw FROM slurm_events WHERE %s ORDER BY id"
                         " LIMIT ?" % (quote("user"), " AND ".join(where)), args + [int(limit)])

    def last_event_id(self, user=None):
        """The id of the latest event stored (of user's jobs, if given)."""
        if user is None:
            return int(self.one("SELECT COALESCE(MAX(id), 0) FROM slurm_events")[0])
        return int(self.one("SELECT COALESCE(MAX(id), 0) FROM slurm_events WHERE %s = ?"
                            % quote("user"), (user,))[0])

    # -- job rows ----------------------------------------------------------

    def lock_jobs(self, keys):
        """{job key: row} for keys, rows made if missing and locked, in key order."""
        rows = {}
        select, decode = self.dialect.job_row_select()
        for part in chunks(sorted(keys), 500):
            if self.dialect.create_job_rows(self.cur, part) is True:
                # all made now, and locked by the making: they are what was written
                rows.update((key, blank_job_row(key)) for key in part)
                continue
            for found in self.rows("SELECT %s FROM slurm_jobs WHERE job_key IN (%s)%s"
                                   % (select, ", ".join("?" * len(part)),
                                      self.dialect.lock_suffix), part):
                row = decode(found)
                rows[row["job_key"]] = row
        return rows

    def lock_jobs_of(self, job_ids):
        """{job key: row} of the jobs of these ids (on any cluster), locked."""
        rows = {}
        select, decode = self.dialect.job_row_select()
        for part in chunks(sorted(job_ids), 500):
            for found in self.rows("SELECT %s FROM slurm_jobs WHERE job_id IN (%s)%s"
                                   % (select, ", ".join("?" * len(part)),
                                      self.dialect.lock_suffix), part):
                row = decode(found)
                rows[row["job_key"]] = row
        return rows

    def write_jobs(self, rows):
        if rows:
            self.dialect.write_job_rows(self.cur, rows)

    def forget_unreported_job(self, key):
        """Remove a row that only a lock made (no event names the job)."""
        self.execute("DELETE FROM slurm_jobs WHERE job_key = ? AND event_count = 0", (key,))

    def forget_jobs(self, keys):
        """Remove jobs, their events and their notices still to send."""
        for part in chunks(sorted(keys), 500):
            marks = ", ".join("?" * len(part))
            for table, where in (("slurm_events", ""), ("slm_outbox", " AND state <> 'sent'"),
                                 ("slurm_jobs", "")):
                self.execute("DELETE FROM %s WHERE job_key IN (%s)%s" % (table, marks, where),
                             part)

    def get_job(self, key):
        found = self.one("SELECT %s FROM slurm_jobs WHERE job_key = ?" % columns(JOB_COLUMNS),
                         (key,))
        return dict(zip(JOB_COLUMNS, found)) if found else None

    def find_jobs(self, job_id, cluster=None):
        """The rows of the jobs of that id (on that cluster, when given: '' for
        none), at most a few: one per cluster."""
        rows = [dict(zip(JOB_COLUMNS, r)) for r in self.rows(
            "SELECT %s FROM slurm_jobs WHERE job_id = ? ORDER BY job_key LIMIT 100"
            % columns(JOB_COLUMNS), (job_id,))]
        return rows if cluster is None else [r for r in rows if (r["cluster"] or "") == cluster]

    def ended_ids(self, job_ids):
        """Those of job_ids whose every job (on any cluster) has ended."""
        statuses = {}
        for part in chunks(sorted(job_ids), 500):
            for job_id, status in self.rows("SELECT job_id, status FROM slurm_jobs WHERE job_id"
                                            " IN (%s)" % ", ".join("?" * len(part)), part):
                statuses.setdefault(job_id, set()).add(status)
        return set(j for j, found in statuses.items() if found <= FINAL)

    def keys_of(self, job_ids):
        """{job id: [the keys of the jobs of that id]}."""
        found = {}
        for part in chunks(sorted(job_ids), 500):
            for key, job_id in self.rows("SELECT job_key, job_id FROM slurm_jobs WHERE job_id"
                                         " IN (%s)" % ", ".join("?" * len(part)), part):
                found.setdefault(job_id, []).append(key)
        return found

    @staticmethod
    def _array(key, user):
        """WHERE conditions and arguments of the tasks of the array with that
        key that are user's (None: whoever's)."""
        cluster, array_id = split_job_key(key)
        return ("array_job_id = ? AND array_task_id IS NOT NULL AND COALESCE(cluster, '') = ?"
                + (" AND %s = ?" % quote("user") if user is not None else ""),
                (array_id, cluster or "") + ((user,) if user is not None else ()))

    def array_tasks(self, key, user):
        """(job_id, status, array_task_id, job_name, user, cluster) of an array's
        tasks that are user's (None: whoever's)."""
        where, args = self._array(key, user)
        return self.rows("SELECT job_id, status, array_task_id, job_name, %s, cluster"
                         " FROM slurm_jobs WHERE %s" % (quote("user"), where), args)

    def group_members(self, group, user):
        """The jobs of a user's named group (two users' "sweep" are two groups),
        with what a roll-up tells of them."""
        names = ("job_key", "job_id", "status", "started_at", "ended_at", "elapsed", "user",
                 "cluster", "relay")
        who = "= ?" if user is not None else "IS NULL"
        return [dict(zip(names, r)) for r in self.rows(
            "SELECT %s FROM slurm_jobs WHERE job_group = ? AND %s %s ORDER BY job_key"
            % (columns(names), quote("user"), who),
            (group,) + ((user,) if user is not None else ()))]

    def array_progress(self, key, user):
        """(tasks known, tasks ended) of an array, of user's tasks (None:
        whoever's): one cheap query."""
        finals = ", ".join("'%s'" % status for status in sorted(FINAL))
        where, args = self._array(key, user)
        total, ended = self.one("SELECT COUNT(*), SUM(CASE WHEN status IN (%s) THEN 1 ELSE 0 END)"
                                " FROM slurm_jobs WHERE %s" % (finals, where), args)
        return int(total or 0), int(ended or 0)

    def _job_where(self, filters, leading=True):
        """WHERE clause and arguments of a job listing (see list_jobs).
        leading=False: for a query whose own condition (an array, LOST) has
        an index that finds fewer rows than the filters' would."""
        where, args = [], []
        if filters.get("status"):
            where.append("status IN (%s)" % ", ".join("?" * len(filters["status"])))
            args.extend(filters["status"])
        for name, column in sorted(JOB_FILTERS.items()):
            if filters.get(name) is not None:
                where.append("%s = ?" % (quote(column) if leading else
                                         self.dialect.not_leading(quote(column))))
                args.append(filters[name])
        if filters.get("name_contains"):
            where.append(self.dialect.contains("job_name"))
            args.append(filters["name_contains"])
        if filters.get("since"):
            where.append("last_event_time >= ?")
            args.append(filters["since"])
        if filters.get("until"):
            where.append("first_seen <= ?")
            args.append(filters["until"])
        return where, args

    # an array task whose array has a row of its own: shown through that row.
    # (array_job_id >= '': "not null" as a range, which SQLite reads from the index)
    GROUPED_TASK = ("array_job_id >= '' AND array_task_id IS NOT NULL AND array_job_id"
                    " <> job_id AND EXISTS (SELECT 1 FROM slurm_jobs p WHERE p.job_id ="
                    " slurm_jobs.array_job_id AND COALESCE(p.cluster, '') ="
                    " COALESCE(slurm_jobs.cluster, ''))")

    def list_jobs(self, filters, limit, offset):
        """(rows, total): a page of jobs, most recently active first."""
        return self.job_page(filters, limit, offset)[:2]

    def job_page(self, filters, limit, offset=0, order=None, after=None, group_arrays=False):
        """A page of jobs and the total of the listing.

        filters: status (list), user, name, name_contains, partition,
        array_job_id, group, since, until.  order: (column, descending),
        most recently active first by default; after: the (value, job key)
        of the previous page's last row (keyset paging, no OFFSET walked).
        group_arrays: leave out the tasks of arrays that have a row of their
        own.  Returns (rows, total, more).
        """
        column, descending = order or ("last_event_time", True)
        assert column in ("last_event_time", "first_seen")
        where, args = self._job_where(filters)
        total = int(self.one("SELECT COUNT(*) FROM slurm_jobs" + (
            " WHERE " + " AND ".join(where) if where else ""), args)[0])
        if group_arrays and total:
            # counted apart, through the array index: the NOT EXISTS over every
            # row of a big listing would cost a lookup per row
            aside, aside_args = self._job_where(filters, leading=False)
            total -= int(self.one("SELECT COUNT(*) FROM slurm_jobs WHERE %s" % " AND ".join(
                aside + [self.GROUPED_TASK]), aside_args)[0])
            where = where + ["NOT (%s)" % self.GROUPED_TASK]
        page_args = list(args)
        if after is not None:
            # "<=" first: a range the index serves, then the tie on the key
            sign = "<" if descending else ">"
            where = where + ["%s %s= ? AND (%s %s ? OR job_key %s ?)" % (
                column, sign, column, sign, sign)]
            page_args += [after[0], after[0], after[1]]
        direction = " DESC" if descending else ""
        found = self.rows("SELECT %s FROM slurm_jobs%s ORDER BY %s%s, job_key%s LIMIT ? OFFSET ?"
                          % (columns(JOB_COLUMNS), " WHERE " + " AND ".join(where) if where
                             else "", column, direction, direction),
                          page_args + [int(limit) + 1, int(offset)])
        rows = [dict(zip(JOB_COLUMNS, r)) for r in found]
        return rows[:limit], total, len(rows) > limit

    def array_task_counts(self, keys):
        """{array's job key: {status: tasks}} for those of the keys that have tasks."""
        counts, wanted = {}, set(keys)
        for part in chunks(sorted(set(split_job_key(k)[1] for k in keys)), 500):
            for cluster, array_id, status, n in self.rows(
                    "SELECT cluster, array_job_id, status, COUNT(*) FROM slurm_jobs WHERE"
                    " array_job_id IN (%s) AND array_task_id IS NOT NULL AND job_id <>"
                    " array_job_id GROUP BY cluster, array_job_id, status"
                    % ", ".join("?" * len(part)), part):
                key = job_key_of(cluster, array_id)
                if key in wanted:
                    counts.setdefault(key, {})[status or "UNKNOWN"] = int(n)
        return counts

    def record_beats(self, beats):
        """Store the latest heartbeat of jobs: [(job key, time, interval, sample,
        run)], each only if newer than the job's and of its current run."""
        if beats:
            self.cur.executemany(self.dialect.sql(
                "UPDATE slurm_jobs SET heartbeat_at = ?, heartbeat_interval = ?, beat = ? WHERE"
                " job_key = ? AND restarts <= ? AND (heartbeat_at IS NULL OR heartbeat_at < ?)"),
                [(when, interval, compact_json(sample), key, run, when)
                 for key, when, interval, sample, run in beats])

    def beat_targets(self, keys):
        """{job key: its owner} of those of keys that are jobs with events."""
        found = {}
        for part in chunks(sorted(keys), 500):
            for key, user in self.rows("SELECT job_key, %s FROM slurm_jobs WHERE job_key IN (%s)"
                                       " AND event_count > 0" % (quote("user"),
                                                                 ", ".join("?" * len(part))),
                                       part):
                found[key] = user
        return found

    def silent_jobs(self, now_epoch, grace, listening_since=0.0, limit=500):
        """Jobs that run by their status but missed `grace` heartbeat intervals
        while the service was listening (beats sent to a service that was down
        were not missed by the job)."""
        alive = ", ".join("'%s'" % s for s in sorted(ALIVE))
        found = []
        for key, beat, interval in self.rows(
                "SELECT job_key, heartbeat_at, heartbeat_interval FROM slurm_jobs WHERE status"
                " IN (%s) AND heartbeat_interval > 0 AND heartbeat_at IS NOT NULL" % alive):
            last = epoch_of(beat)
            if last is not None and now_epoch - max(last, listening_since) > grace * interval:
                found.append(key)
        return found[:limit]

    def regained_jobs(self, limit=500):
        """The rows of the jobs declared LOST that have been heard from since."""
        return [dict(zip(JOB_COLUMNS, r)) for r in self.rows(
            "SELECT %s FROM slurm_jobs WHERE status = 'LOST' AND heartbeat_at > status_time"
            " LIMIT ?" % columns(JOB_COLUMNS), (int(limit),))]

    def jobs_to_check(self, cluster, quiet, since, limit):
        """The jobs of that cluster Slurm should be asked about (each cluster's
        Slurm by a service on its own login node), least recently asked first: the
        open ones (OPEN_TO_CHECK) not heard from or asked about since `quiet`,
        and the jobs ended after `since` whose end nobody checked yet.  Asked,
        answered or not, a job goes to the back of the queue: jobs Slurm has no
        answer for yet (accounting lags; ids it never heard of) cannot keep the
        others from being asked."""
        open_ = ", ".join("'%s'" % s for s in sorted(OPEN_TO_CHECK))
        return [dict(zip(JOB_COLUMNS, r)) for r in self.rows(
            "SELECT %s FROM slurm_jobs WHERE cluster = ? AND ((status IN (%s) AND"
            " last_event_time < ? AND (asked_at IS NULL OR asked_at < ?)) OR (ended_at IS NOT"
            " NULL AND checked_at IS NULL AND ended_at < ? AND ended_at > ?)) ORDER BY asked_at,"
            " last_event_time LIMIT ?" % (columns(JOB_COLUMNS), open_),
            (cluster, quiet, quiet, quiet, since, int(limit)))]

    def record_usage(self, found):
        """Store what Slurm's accounting says jobs used: {job key: usage}."""
        if found:
            self.cur.executemany(self.dialect.sql(
                "UPDATE slurm_jobs SET slurm_usage = ? WHERE job_key = ?"),
                [(compact_json(usage), key) for key, usage in sorted(found.items())])

    def queued(self, found, when):
        """Record what Slurm's queue says of jobs now: {job key: (state, reason)}."""
        if found:
            self.cur.executemany(self.dialect.sql(
                "UPDATE slurm_jobs SET slurm_state = ?, slurm_reason = ?, asked_at = ? WHERE"
                " job_key = ?"), [(state, reason, when, key)
                                  for key, (state, reason) in sorted(found.items())])

    def mark_checked(self, keys, when, column="checked_at"):
        """checked_at: Slurm's answer was read (or nothing is left to ask);
        asked_at: Slurm was asked, answered or not."""
        assert column in ("checked_at", "asked_at")
        for part in chunks(sorted(keys), 500):
            self.execute("UPDATE slurm_jobs SET %s = ? WHERE job_key IN (%s)"
                         % (column, ", ".join("?" * len(part))), [when] + part)

    def settled_groups(self, before, since):
        """(group, user) of the groups whose every job has ended (or will never
        start: PENDING is Slurm's word for that), the last before `before`
        (and after `since`): ready for their roll-up."""
        settled = ", ".join("'%s'" % status for status in sorted(FINAL | {"PENDING"}))
        return [tuple(r) for r in self.rows(
            "SELECT job_group, %s FROM slurm_jobs WHERE job_group IS NOT NULL GROUP BY"
            " job_group, %s HAVING SUM(CASE WHEN status IN (%s) THEN 0 ELSE 1 END) = 0 AND"
            " MAX(ended_at) < ? AND MAX(ended_at) > ?" % (quote("user"), quote("user"), settled),
            (before, since))]

    def take_lease(self, name, owner, seconds):
        """Whether owner holds the lease name now (taken or renewed) for seconds."""
        now = utc_now()
        until = iso_at(time.time() + seconds)
        if self.execute("UPDATE slm_leases SET owner = ?, until = ? WHERE name = ? AND"
                        " (until < ? OR owner = ?)", (owner, until, name, now, owner)).rowcount:
            return True
        return self.execute("%s INTO slm_leases (name, owner, until) VALUES (?, ?, ?)"
                            % self.dialect.insert_ignore, (name, owner, until)).rowcount == 1

    def job_counts(self):
        return dict((s, int(n)) for s, n in self.rows(
            "SELECT status, COUNT(*) FROM slurm_jobs GROUP BY status") if s)

    # -- the dashboard's sign-ins (see Sessions) ------------------------------

    def session_add(self, session, token, created, expires):
        self.execute("INSERT INTO slm_sessions (session, token, created_at, expires_at) VALUES"
                     " (?, ?, ?, ?)", (session, token, created, expires))

    def session_get(self, session):
        """(token digest, expires_at) of a sign-in, or None."""
        return self.one("SELECT token, expires_at FROM slm_sessions WHERE session = ?",
                        (session,))

    def session_drop(self, session, now):
        """End a sign-in (and forget those that have expired)."""
        self.execute("DELETE FROM slm_sessions WHERE session = ? OR expires_at < ?",
                     (session, now))

    # -- the outbox --------------------------------------------------------

    OUTBOX_NEW = ("dedup_key", "job_key", "job_id", "destination", "format", "secret",
                  "dashboard_url", "payload", "state", "next_attempt_at", "last_error",
                  "created_at", "event_id")
    OUTBOX_SHOWN = ("id", "job_id", "destination", "format", "state", "attempts", "last_error",
                    "created_at", "sent_at", "next_attempt_at", "dedup_key")
    OUTBOX_CLAIMED = ("id", "job_key", "job_id", "destination", "format", "secret",
                      "dashboard_url", "payload", "attempts", "created_at")

    def outbox_add(self, rows):
        """Queue notifications (dicts with OUTBOX_NEW keys); a dedup_key queued once."""
        for part in chunks(rows, 200, lambda r: len(r["payload"]) + 512):
            marks = ", ".join(["(%s, 0)" % ", ".join("?" * len(self.OUTBOX_NEW))] * len(part))
            self.execute("%s INTO slm_outbox (%s, attempts) VALUES %s"
                         % (self.dialect.insert_ignore, columns(self.OUTBOX_NEW), marks),
                         [row[c] for row in part for c in self.OUTBOX_NEW])

    def outbox_claim(self, owner, limit, lease):
        """Lease up to limit due notifications to owner; return them."""
        now = utc_now()
        claimed = []
        until = iso_at(time.time() + lease)
        # held: a notice kept back until Slurm has had its say (see Watchdog), sent
        # anyway once its time is up
        for (nid,) in self.rows("SELECT id FROM slm_outbox WHERE state IN ('pending', 'held')"
                                " AND next_attempt_at <= ? AND (lease_until IS NULL OR"
                                " lease_until < ?) ORDER BY id LIMIT ?", (now, now, int(limit))):
            # conditional on nobody having leased it meanwhile: one winner
            if self.execute("UPDATE slm_outbox SET lease_owner = ?, lease_until = ? WHERE id = ?"
                            " AND state IN ('pending', 'held') AND (lease_until IS NULL OR"
                            " lease_until < ?)", (owner, until, nid, now)).rowcount == 1:
                claimed.append(nid)
        if not claimed:
            return []
        return [dict(zip(self.OUTBOX_CLAIMED, r)) for r in self.rows(
            "SELECT %s FROM slm_outbox WHERE id IN (%s) ORDER BY id"
            % (columns(self.OUTBOX_CLAIMED), ", ".join("?" * len(claimed))), claimed)]

    def outbox_settle(self, nid, owner, state, error, next_epoch, count_attempt=True):
        """Record an attempt's outcome; only the lease holder may."""
        now = utc_now()
        return self.execute(
            "UPDATE slm_outbox SET state = ?, last_error = COALESCE(?, last_error),"
            " attempts = attempts + ?, next_attempt_at = ?, sent_at = ?,"
            " lease_owner = NULL, lease_until = NULL WHERE id = ? AND lease_owner = ?",
            (state, error, 1 if count_attempt else 0, iso_at(next_epoch) if next_epoch else now,
             now if state == "sent" else None, nid, owner)).rowcount == 1

    def outbox_list(self, key=None):
        """Outbox rows (of one job, by its key), oldest first (secrets stay inside)."""
        where, args = ("WHERE job_key = ? ", [key]) if key is not None else ("", [])
        return [dict(zip(self.OUTBOX_SHOWN, r)) for r in self.rows(
            "SELECT %s FROM slm_outbox %sORDER BY id" % (columns(self.OUTBOX_SHOWN), where),
            args)]

    # the outbox's states as shown: "retrying" is a pending row that failed before
    OUTBOX_STATES = {"pending": "o.state = 'pending' AND o.attempts = 0",
                     "retrying": "o.state = 'pending' AND o.attempts > 0",
                     "held": "o.state = 'held'", "sent": "o.state = 'sent'",
                     "failed": "o.state = 'failed'", "superseded": "o.state = 'superseded'",
                     "refused": "o.state = 'refused'"}

    def outbox_page(self, limit, before=None, user=None, job_id=None, states=None, hidden=()):
        """Outbox rows, newest first, with their job's user and their event's
        status: of one user's jobs (user), the jobs of one id, in some
        OUTBOX_STATES, not to the hidden destinations."""
        where, args = [], []
        if hidden:
            where.append("o.destination NOT IN (%s)" % ", ".join("?" * len(hidden)))
            args.extend(hidden)
        if before is not None:
            where.append("o.id < ?")
            args.append(int(before))
        if user is not None:
            where.append("j.%s = ?" % quote("user"))
            args.append(user)
        if job_id is not None:
            where.append("o.job_id = ?")
            args.append(job_id)
        if states:
            where.append("(%s)" % " OR ".join("(%s)" % self.OUTBOX_STATES[s] for s in states))
        shown = ", ".join("o.%s" % quote(c) for c in self.OUTBOX_SHOWN)
        return [dict(zip(self.OUTBOX_SHOWN + ("user", "status"), r)) for r in self.rows(
            "SELECT %s, j.%s, e.status FROM slm_outbox o LEFT JOIN slurm_jobs j ON j.job_key ="
            " o.job_key LEFT JOIN slurm_events e ON e.job_key = o.job_key AND e.event_id ="
            " o.event_id%s ORDER BY o.id DESC"
            " LIMIT ?" % (shown, quote("user"), " WHERE " + " AND ".join(where) if where
                          else ""), args + [int(limit)])]

    def ended_counts(self, since, until, width, filters):
        """[(status, bucket, jobs)] of the jobs that ended in [since, until):
        final statuses by ended_at, LOST by the time it was declared; bucket:
        the first `width` characters of that time (13: the hour, 10: the day)."""
        out = []
        for column, test in (("ended_at", "ended_at IS NOT NULL"),
                             ("status_time", "status = 'LOST'")):
            # the jobs declared LOST are few: found through the status index
            where, args = self._job_where(filters, leading=column == "ended_at")
            out += [(status, bucket, int(n)) for status, bucket, n in self.rows(
                "SELECT status, SUBSTR(%s, 1, %d), COUNT(*) FROM slurm_jobs WHERE %s AND %s >= ?"
                " AND %s < ?%s GROUP BY status, SUBSTR(%s, 1, %d)" % (
                    column, width, test, column, column,
                    "".join(" AND " + w for w in where), column, width),
                [since, until] + args)]
        return out

    def outbox_release(self, key, supersede=None):
        """Held notices of a job: send them now, or (supersede: the reason) never."""
        if supersede:
            self.execute("UPDATE slm_outbox SET state = 'superseded', last_error = ? WHERE"
                         " job_key = ? AND state = 'held'", (supersede, key))
        else:
            self.execute("UPDATE slm_outbox SET state = 'pending', next_attempt_at = ? WHERE"
                         " job_key = ? AND state = 'held'", (utc_now(), key))

    def outbox_counts(self):
        return dict((s, int(n)) for s, n in self.rows(
            "SELECT state, COUNT(*) FROM slm_outbox GROUP BY state"))

    # -- the database itself -------------------------------------------------

    def ping(self):
        self.rows("SELECT 1")
        return True

    def schema_version(self):
        found = self.one("SELECT value FROM slm_meta WHERE name = ?", ("schema_version",))
        return int(found[0]) if found else None


class Database(object):
    """Connections and transactions: run(work) calls work(tx) in one
    transaction, commits on success and rolls back on error.

    Idle connections are kept (at most pool_size), never shared between
    threads at once.  A connection the server dropped (wait_timeout, KILL,
    restart) is noticed on first use: it and the other idle ones are closed
    and the work runs again on a new one, which is safe because every write
    is idempotent.  Deadlocks are retried; a database that stays away is
    StoreUnavailable (HTTP 503).
    """

    attempts = 5

    def __init__(self, dialect, pool_size=32):
        self.dialect = dialect
        self.backend = dialect.name
        self.pool_size = pool_size
        self._idle = []
        self._lock = threading.Lock()
        self._ready = False
        self._ready_lock = threading.Lock()
        self._closed = False
        self._write_lock = threading.Lock() if dialect.row_at_a_time else None

    def describe(self):
        return self.dialect.describe()

    def secrets(self):
        return self.dialect.secrets()

    def run(self, work, write=False):
        if self._closed:
            raise StoreUnavailable("the database is closed")
        if write and self._write_lock is not None:
            with self._write_lock:
                return self._run(work, write)
        return self._run(work, write)

    def _run(self, work, write):
        error, exact = None, False
        for attempt in range(self.attempts):
            conn = self._acquire()
            healthy = False
            try:
                if not self._ready:
                    self._ensure_tables(conn)
                self.dialect.begin(conn, write)
                cur = conn.cursor()
                try:
                    result = work(Tx(cur, self.dialect, exact))
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
                if isinstance(e, RetryExactly):
                    healthy, exact = True, True
                    continue
                kind = self.dialect.classify(e)
                if kind is None:       # not the database's doing (ApiError, a bug)
                    healthy = True
                    raise
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

    def _ensure_tables(self, conn):
        """Create missing tables, migrate an older schema, make missing indexes,
        and record the schema version (idempotent; one instance at a time)."""
        with self._ready_lock:
            if self._ready:
                return
            cur = conn.cursor()
            sql = self.dialect.sql
            self.dialect.schema_lock(cur)
            try:
                fresh = "slurm_jobs" not in self._tables(cur)
                self.dialect.create_tables(cur)
                cur.execute(sql("%s INTO slm_meta (name, value) VALUES (?, ?)"
                                % self.dialect.insert_ignore),
                            ("schema_version", str(SCHEMA_VERSION if fresh else 1)))
                cur.execute(sql("SELECT value FROM slm_meta WHERE name = ?"),
                            ("schema_version",))
                found = int(cur.fetchone()[0])
                if found < SCHEMA_VERSION:
                    say("database schema version %d: upgrading to %d" % (found, SCHEMA_VERSION))
                    self._migrate(cur, found)
                    cur.execute(sql("UPDATE slm_meta SET value = ? WHERE name = ?"),
                                (str(SCHEMA_VERSION), "schema_version"))
                    say("database schema upgraded from version %d to %d"
                        % (found, SCHEMA_VERSION))
                for table, name, kind, parts in KEYS:
                    if kind != "primary":
                        self.dialect.add_index(cur, name, table, parts, kind == "unique")
                conn.commit()
            except Exception:
                try:
                    conn.rollback()
                except Exception:
                    pass
                raise
            finally:
                try:
                    self.dialect.schema_unlock(cur)
                finally:
                    cur.close()
            if found > SCHEMA_VERSION:
                say("database schema version %d is newer than this slm_api.py knows (%d)"
                    % (found, SCHEMA_VERSION))
            self._ready = True

    def _tables(self, cur):
        if self.dialect.name == "sqlite":
            cur.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        else:
            cur.execute("SELECT table_name FROM information_schema.tables"
                        " WHERE table_schema = DATABASE()")
        return set(r[0] for r in cur.fetchall())

    def _migrate(self, cur, found):
        """Bring the schema from version found to today's, step by step; each
        step looks before it leaps (an attempt that died half-way, on a
        database whose DDL is not transactional, is taken up again)."""
        d = self.dialect
        spell = {"key": d.concat("COALESCE(cluster, '')", "'/'", "job_id"),
                 "bare": d.concat("'/'", "job_id")}
        for version in range(found + 1, SCHEMA_VERSION + 1):
            for step in REBUILDS.get(version, ()):
                if step[0] == "add":
                    self._add_column(cur, *step[1:])
                elif step[0] == "sql":
                    cur.execute(step[1].format(**spell))
                else:
                    self._rebuild(cur, step[1], dict((k, v.format(**spell))
                                                     for k, v in step[2].items()))
            for table, column, sqlite_type, mysql_type in MIGRATIONS.get(version, ()):
                self._add_column(cur, table, column, sqlite_type, mysql_type)
            for table, column, mysql_type, length in WIDENED.get(version, ()):
                d.widen(cur, table, column, mysql_type, length)

    def _add_column(self, cur, table, column, sqlite_type, mysql_type):
        if column not in self.dialect.table_columns(cur, table):
            self.dialect.add_column(cur, table, column, sqlite_type, mysql_type)

    def _rebuild(self, cur, table, computed):
        """Make table anew with today's columns and keys: a copy of its rows
        (the columns it lacks computed by the SQL in computed) put in its place."""
        copy = table + "_rebuild"
        cur.execute("DROP TABLE IF EXISTS %s" % copy)    # an earlier attempt's
        cur.execute(table_ddl(table, self.dialect.name == "mysql", copy))
        had = self.dialect.table_columns(cur, table)
        names = [c.name for c in COLUMNS if c.table == table and
                 (c.name in computed or c.name in had)]
        cur.execute("INSERT INTO %s (%s) SELECT %s FROM %s" % (
            copy, columns(names), ", ".join(computed.get(n, quote(n)) for n in names), table))
        cur.execute("DROP TABLE %s" % table)
        self.dialect.rename_table(cur, copy, table)

    def _acquire(self):
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self.dialect.connect()

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

    def _forget_idle(self):
        """Close the idle connections: one was found dead, they may all be."""
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

    # the few whole transactions the service needs outside requests

    def ping(self):
        return self.run(lambda tx: tx.ping())

    def schema_version(self):
        return self.run(lambda tx: tx.schema_version())


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
            "database": parts.get("database") or "slm",
            "ssl_ca": env.get("SLM_DB_SSL_CA") or None}


def open_database(config):
    if config["backend"] == "sqlite":
        return Database(SQLiteDialect(config["path"]), pool_size=8)
    return Database(MySQLDialect(config["host"], config["port"], config["user"],
                                 config["password"], config["database"],
                                 ssl_ca=config.get("ssl_ca")))


# ---------------------------------------------------------------------------
# Notifications: what is sent where, array roll-ups, the outbox sender
# ---------------------------------------------------------------------------

# How long a sender holds a claimed notification; a crashed one's claims
# come back after this.
OUTBOX_LEASE = 60.0
# Waits between attempts after network errors, 5xx and 429 (Retry-After wins).
OUTBOX_BACKOFF = (2, 5, 15, 60, 300, 900, 3600)
# A notification still undelivered after this long is given up.
OUTBOX_MAX_AGE = 2 * 86400
# The longest a CANCELLED notice waits for Slurm to say whether the job was in
# fact requeued (then a REQUEUED notice goes instead); usually much less.
HOLD = 180.0
# How long a notice from Slurm's mail (site mode: slm.py mailprog) of a job no
# wrapper has spoken of waits for the wrapper (which starts with the job).
MAILPROG_HOLD = 30.0
# Who, besides the wrapper, writes events: the service (LOST) and Slurm's verdict.
SERVICE_SOURCES = ("service", "slurm")


# A host name as a URL may name one: letters, digits, '-' and '.' (anything
# else, such as a '%' that one parser decodes and another does not, could make
# the host that was checked another than the one connected to).
HOST_NAME_RE = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
                          r"(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?\Z")
DEFAULT_PORTS = {"http": 80, "https": 443}


class AllowList(object):
    """Where the service may send the notifications users ask it to relay
    (SLM_RELAY_ALLOW), and to how many mail recipients.

    Entries are HOST, HOST:PORT or HOST:*.  HOST is a name (it and the names
    under it), an IPv4 address or network (10.0.0.0/8), or an IPv6 one in
    brackets.  Without a port, only the URL scheme's own (80, 443) is
    allowed.  'mailto' allows e-mail, to SLM_RELAY_MAIL_RECIPIENTS recipients
    (1) in SLM_RELAY_MAIL_DOMAINS (any).  The name a URL gives is resolved
    when the notice is sent, and a private, loopback or link-local address is
    refused unless an entry names a network holding it: a name on the list
    cannot be made to reach the site's own hosts."""

    def __init__(self, entries=None, mail_recipients=1, mail_domains=()):
        # by default: the chat services slm.py knows, and e-mail (through SLM_SMTP_*)
        if entries is None:
            entries = [h for h, _ in slm.WEBHOOK_HOSTS] + ["mailto"]
        self.names, self.nets, self.mail = [], [], False
        for entry in entries:
            entry = entry.strip().lower()
            if entry == "mailto":
                self.mail = True
                continue
            host, port = entry, None
            if entry.startswith("["):
                host, _, rest = entry[1:].partition("]")
                port = rest[1:] if rest.startswith(":") else None
            elif entry.count(":") == 1:
                host, port = entry.split(":")
            if port not in (None, "*") and not (port.isdigit() and 0 < int(port) < 65536):
                raise ConfigError("SLM_RELAY_ALLOW: %r is not HOST, HOST:PORT or HOST:*"
                                  % entry[:100])
            port = int(port) if port not in (None, "*") else port
            try:
                self.nets.append((ipaddress.ip_network(host, strict=False), port))
            except ValueError:
                if not HOST_NAME_RE.match(host):
                    raise ConfigError("SLM_RELAY_ALLOW: %r is not a host name, an address or a "
                                      "network" % entry[:100])
                self.names.append((host.rstrip("."), port))
        self.mail_recipients = mail_recipients
        self.mail_domains = tuple(d.lower().lstrip("@") for d in mail_domains)

    @classmethod
    def from_env(cls, env):
        listed = env.get("SLM_RELAY_ALLOW", "").strip()
        count = env.get("SLM_RELAY_MAIL_RECIPIENTS", "").strip() or "1"
        if not count.isdigit() or not 0 < int(count) <= 100:
            raise ConfigError("SLM_RELAY_MAIL_RECIPIENTS must be a number from 1 to 100")
        return cls([e for e in listed.split(",") if e.strip()] if listed else None, int(count),
                   [d.strip() for d in env.get("SLM_RELAY_MAIL_DOMAINS", "").split(",")
                    if d.strip()])

    @staticmethod
    def _port_ok(allowed, port, scheme):
        return allowed == "*" or port == (allowed if allowed is not None else
                                          DEFAULT_PORTS.get(scheme))

    def refusal(self, target):
        """Why the service may not relay to a target {"url", "format"}, or None."""
        d = destination(target)
        if d.format == "email":
            if not self.mail:
                return "refused: e-mail is not in SLM_RELAY_ALLOW"
            try:
                recipients = slm.EmailAddress(d.url).recipients
            except ValueError as e:
                return "refused: %s" % e
            # (a mailto: URL may name more in fields the address does not read)
            query = urllib.parse.parse_qs(d.url.partition("?")[2])
            recipients = recipients + [a for k, v in query.items() if k.lower() == "bcc"
                                       for part in v for a in part.split(",") if a.strip()]
            if len(recipients) > self.mail_recipients:
                return "refused: a relayed mail goes to %d recipient%s at most " \
                       "(SLM_RELAY_MAIL_RECIPIENTS)" % (self.mail_recipients,
                                                        "" if self.mail_recipients == 1 else "s")
            if self.mail_domains and any(
                    not any(a.lower().endswith("@" + m) for m in self.mail_domains)
                    for a in recipients):
                return "refused: a recipient's domain is not in SLM_RELAY_MAIL_DOMAINS"
            return None
        try:
            url = slm.FORMATS[d.format].endpoint(d.url)[0]
            parts = urllib.parse.urlsplit(url)
            host, port = (parts.hostname or "").rstrip("."), parts.port
        except (ValueError, KeyError):
            return "refused: not a URL"
        port = port or DEFAULT_PORTS.get(parts.scheme)
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
            if not HOST_NAME_RE.match(host):
                return "refused: %r is not a host name" % host[:100]
        if address is not None:
            ok = any(address in net and self._port_ok(p, port, parts.scheme)
                     for net, p in self.nets)
        else:
            ok = self._named(host, port, parts.scheme)
        return None if ok else "refused: %s:%s is not in SLM_RELAY_ALLOW" % (host[:100], port)

    def _named(self, host, port, scheme):
        return any((host == n or host.endswith("." + n)) and self._port_ok(p, port, scheme)
                   for n, p in self.names)

    def guard(self, host, port):
        """The address to connect to for host (slm.http_request's guard): its
        first address that is public, or private and in a listed network;
        DeliveryError (for good) when there is none."""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as e:
            raise slm.DeliveryError("cannot resolve %s: %s" % (host, e.strerror or e))
        for info in infos:
            address = ipaddress.ip_address(info[4][0].split("%")[0])
            if address.is_global or any(address in net for net, _ in self.nets):
                return str(address)
        raise slm.DeliveryError("refused: %s resolves to a private address (%s) that "
                                "SLM_RELAY_ALLOW names no network of" % (
                                    host, infos[0][4][0] if infos else "none"), permanent=True)


class NotifyPolicy(object):
    """Which notifications an event causes, and where they may go.

    Two sources: the relay request an event carries (the wrapper's own
    destinations, SLM_WEBHOOK_VIA=api), limited to the allow-list; and the
    service's own SLM_WEBHOOK, which hears of every job.
    """

    def __init__(self, allow=None, hooks=(), secret=None, notify_on=None,
                 array_notify=slm.DEFAULT_ARRAY_NOTIFY, dashboard_url=None, smtp=None):
        self.allow = allow if isinstance(allow, AllowList) else AllowList(allow)
        self.hooks = [slm.Destination(spec) for spec in hooks]
        self.secret = secret
        self.smtp = smtp or slm.SmtpSettings(lambda key: "")
        self.notify_on = notify_on if notify_on is not None else frozenset(slm.NOTIFY_DEFAULT)
        self.array_notify = array_notify
        self.dashboard_url = dashboard_url

    @classmethod
    def from_env(cls, env):
        array_notify = env.get("SLM_ARRAY_NOTIFY", "").strip().lower() or \
            slm.DEFAULT_ARRAY_NOTIFY
        if array_notify not in slm.ARRAY_NOTIFY_CHOICES:
            raise ConfigError("SLM_ARRAY_NOTIFY must be each, failures or summary")
        hooks = slm.split_destinations(env.get("SLM_WEBHOOK", ""))
        for spec in hooks:
            if slm.Destination(spec).problem():
                raise ConfigError("SLM_WEBHOOK has an entry that is not a destination: %s"
                                  % slm.Destination(spec).problem())
        return cls(allow=AllowList.from_env(env), hooks=hooks, secret=env.get("SLM_WEBHOOK_SECRET") or None,
                   notify_on=slm.parse_notify_on(env.get("SLM_NOTIFY_ON")),
                   array_notify=array_notify,
                   dashboard_url=env.get("SLM_DASHBOARD_URL") or None,
                   smtp=slm.SmtpSettings(lambda key: env.get(key, "").strip(),
                                         own_servers=False))

    def secrets(self):
        return [d.url for d in self.hooks] + [d.spec for d in self.hooks] + [self.secret] + \
            self.smtp.secrets()

    @staticmethod
    def _row(kind, key, job_key, url, fmt, secret, dashboard, payload, now, refusal=None):
        # a notice is queued once per what it tells (key: an event of a job, a
        # roll-up, a group's start or end) and destination
        unique = "%s|%s" % (key, url) if kind == "group" else "%s|%s|%s" % (job_key, key, url)
        return {"dedup_key": kind + ":" + hashlib.sha1(unique.encode("utf-8")).hexdigest(),
                "job_key": job_key, "job_id": split_job_key(job_key)[1], "destination": url,
                "format": fmt, "secret": secret, "dashboard_url": dashboard, "payload": payload,
                "state": "refused" if refusal else "pending", "next_attempt_at": now,
                "last_error": refusal, "created_at": now, "event_id": None}

    def for_event(self, incoming, job_key, now, stored=None, hold=0.0):
        """(outbox rows, the destinations (shown) the allow-list refused) for one
        new event of the job with that key.

        stored: the job's relay request, for events the service made itself
        (the wrapper is dead or silent: the service must tell the user).
        hold: keep the notices back (state "held") for that many seconds at most.
        """
        event, relay = incoming.event, incoming.relay
        if relay is None and stored is not None:
            # the wrapper judged its own events for each destination; the service
            # judges its own the same way: the destination's filter, else the job's
            def wants(t):
                return slm.wants_notice(
                    event, frozenset(t.get("notify_on") or stored.get("notify_on") or
                                     slm.NOTIFY_DEFAULT),
                    t.get("array_notify") or stored.get("array_notify") or
                    slm.DEFAULT_ARRAY_NOTIFY)
            relay = dict(stored, to=[dict(t, send=wants(t)) for t in stored["to"]])
        rows, refused = [], []
        if relay:
            for t in relay["to"]:
                if not t.get("send", relay.get("send")):
                    continue     # a destination's own filter (URL#on=...) wants it not
                refusal = self.allow.refusal(t)
                if refusal is not None:
                    refused.append(destination(t).shown())
                rows.append(self._row("event", event["event_id"], job_key, t["url"],
                                      t.get("format", "json"), t.get("secret"),
                                      relay.get("dashboard_url"), incoming.raw, now, refusal))
        for d in self.hooks:
            if d.wants(event, self.notify_on, self.array_notify):
                rows.append(self._row("event", event["event_id"], job_key, d.url,
                                      d.format, self.secret, self.dashboard_url, incoming.raw,
                                      now))
        for row in rows:
            row["event_id"] = event["event_id"]
            if hold and row["state"] == "pending":
                row["state"], row["next_attempt_at"] = "held", iso_at(time.time() + hold)
        return rows, refused

    def for_rollup(self, summary, relay, now, job_key, kind="rollup", key=None):
        """Outbox rows for a roll-up (an array's, a group's start or end) of the
        job with that key (the array, a group's member): one per destination
        that wants roll-ups (its array policy is not "each")."""
        key = key or summary["job_id"]
        notice = compact_json(summary if kind != "rollup" else
                              dict(summary, array_job_id=summary["job_id"]))
        rows = []
        if relay and relay.get("to"):
            for t in relay["to"]:
                policy = t.get("array_notify") or relay.get("array_notify") or \
                    slm.DEFAULT_ARRAY_NOTIFY
                if policy != "each" and self.allow.refusal(t) is None:
                    rows.append(self._row(kind, key, job_key, t["url"],
                                          t.get("format", "json"), t.get("secret"),
                                          relay.get("dashboard_url"), notice, now))
        for d in self.hooks:
            if (d.array_notify or self.array_notify) != "each":
                rows.append(self._row(kind, key, job_key, d.url, d.format, self.secret,
                                      self.dashboard_url, notice, now))
        return rows


def array_rollup(tx, event, parent_key, now):
    """When event (a new final status of an array task) ended the array's
    last task: store the array's roll-up event, merged into the array's own
    row, and return it; else None.  Runs in the ingest transaction."""
    array_id = event["array_job_id"]
    # the array's size: from its submission ('1-5') or the tasks' SLURM_ARRAY_TASK_COUNT;
    # unknown, there is no telling the last task, and no roll-up
    known = tx.get_job(parent_key)
    parent_meta = json.loads(known["meta"]) if known and known["meta"] else {}
    hint = event.get("array_task_count")
    expected = array_size(parent_meta.get("array")) or (hint if is_int(hint) else None)
    if not expected or expected < 1:
        return None
    # the array's own row serialises the "am I the last task?" check: whoever
    # waits here sees the tasks committed before it
    parent = tx.lock_jobs([parent_key])[parent_key]
    # only the array's owner's tasks count: a task row another user's token
    # made under its id (a guessed id) is not part of it
    owner = parent.get("user") or event.get("user")
    total, ended = tx.array_progress(parent_key, owner)
    if total < expected or ended < total:
        if known is None:
            tx.forget_unreported_job(parent_key)   # a job nobody reported stays unknown
        return None
    tasks = tx.array_tasks(parent_key, owner)
    counts = {}
    for t in tasks:
        counts[t[1]] = counts.get(t[1], 0) + 1
    failed = sorted((t[2] for t in tasks if t[1] != "COMPLETED"), key=lambda x: (len(x), x))
    status = list(counts)[0] if len(counts) == 1 else "FAILED" if failed else "COMPLETED"
    summary = {"schema": slm.EVENT_SCHEMA,
               "event_id": "rollup-" + hashlib.sha1(parent_key.encode("utf-8")).hexdigest(),
               "job_id": array_id, "status": status, "time": now, "rollup": True,
               "job_name": tasks[0][3] or parent_meta.get("job_name"),
               "user": owner, "cluster": event.get("cluster"), "tasks": counts,
               "failed_tasks": failed[:100]}
    summary = dict((k, v) for k, v in summary.items() if v is not None)
    if not tx.insert_events([(summary, compact_json(summary), parent_key, owner)], now)[0]:
        return None   # rolled up already
    tx.write_jobs([merge_event(parent, summary)])
    return summary


def step_end(row, event, job_key):
    """Count a TASK_ENDED (one task of an srun step whose every task is wrapped:
    `srun -n N slm.py run -- CMD`) into its job's row (meta "steps", per run:
    a requeued job counts afresh); when every task of the step has ended,
    return the job's end as the wrappers together tell it, else None.

    srun's own rule makes it: the highest exit code of the tasks.  A task a
    signal ended leaves the verdict to Slurm (a cancel, a time limit and a
    crash look alike from inside one task): the watchdog asks every round.
    Runs in the ingest transaction, on the locked row, before it is written."""
    n, step = event.get("ntasks"), event.get("step_id")
    if not is_int(n) or n < 2 or step is None or event_run(event) < (row.get("restarts") or 0):
        return None
    meta = json.loads(row["meta"]) if row.get("meta") else {}
    steps = meta.setdefault("steps", {})
    if step not in steps and len(steps) >= MAX_STEPS:
        return None
    s = steps.setdefault(step, {"ntasks": n, "ended": 0, "worst": 0, "failed": [],
                                "signaled": 0, "cpu_time": 0.0, "max_rss_mb": 0.0})
    if s.get("done"):
        return None
    s["ended"] += 1
    code = event.get("exit_code") if is_int(event.get("exit_code")) else 0
    if event.get("signal"):
        s["signaled"] += 1
    elif code:
        s["worst"] = max(s["worst"], code)
        if len(s["failed"]) < 10:
            s["failed"].append([event.get("task_id"), event.get("host"), code])
    for field, add in (("cpu_time", lambda a, b: a + b), ("max_rss_mb", max)):
        if isinstance(event.get(field), (int, float)) and not isinstance(event[field], bool):
            s[field] = round(add(s[field], event[field]), 3)
    s["last"] = max(s.get("last") or event["time"], event["time"])
    done = s["ended"] >= s["ntasks"]
    s["done"] = done
    row["meta"] = compact_json(meta)
    if not done or s["signaled"]:
        return None
    failed = s["worst"] != 0
    if failed:
        first = s["failed"][0]
        what = "task %s%s exited %s" % (first[0], " on %s" % first[1] if first[1] else "",
                                        first[2])
        more = len([f for f in s["failed"] if f[2]]) - 1
        message = "%s%s (srun's exit code: the highest of its %d tasks)" % (
            what, " and %d more failed" % more if more > 0 else "", s["ntasks"])
    else:
        message = "all %d tasks of step %s completed" % (s["ntasks"], step)
    end = {"schema": slm.EVENT_SCHEMA, "job_id": event["job_id"],
           "event_id": "tasks-" + hashlib.sha1(("%s|%d|%s" % (
               job_key, event_run(event), step)).encode("utf-8")).hexdigest(),
           "status": "FAILED" if failed else "COMPLETED", "time": s["last"],
           "source": "tasks", "exit_code": s["worst"], "message": message,
           "cluster": event.get("cluster"), "user": event.get("user"),
           "restart_count": event.get("restart_count"), "step_id": step,
           "ntasks": s["ntasks"], "cpu_time": s["cpu_time"] or None,
           "max_rss_mb": s["max_rss_mb"] or None,
           "slurm_job_id": event.get("slurm_job_id"), "job_name": meta.get("job_name")}
    return dict((k, v) for k, v in end.items() if v is not None)


def group_key(group, user):
    """A group is its user's: the same name from two users is two groups."""
    return hashlib.sha1(("%s\n%s" % (user or "", group)).encode("utf-8")).hexdigest()[:32]


def group_start(tx, event, key, now):
    """For a RUNNING of a job in a named group (slm submit --group): the
    group's first-start notice when no other member has started, else None.
    (Its end is the watchdog's: see Watchdog.roll_up_groups.)  Runs in the
    ingest transaction, after the job rows were written."""
    group, user, job_key = event["group"], event.get("user"), key
    key = group_key(group, user)
    lock = job_key_of("", "group:" + key)
    tx.lock_jobs([lock])   # a row of its own serialises "am I the first?" between writers
    members = tx.group_members(group, user)
    tx.forget_unreported_job(lock)
    started = [m["job_key"] for m in members if m["started_at"]]
    if started != [job_key]:
        return None
    return {"schema": slm.EVENT_SCHEMA, "kind": "group", "group": group, "status": "RUNNING",
            "time": now, "job_id": event["job_id"], "job_name": event.get("job_name"),
            "user": user, "cluster": event.get("cluster"),
            "event_id": "group-start-" + key,
            "message": "the first job of group %s started (%d in the group so far)"
                       % (group, len(members))}


def group_rollup(group, members, now):
    """A group's roll-up notice (counts by final state, total and longest run)
    and the key of its last member.  Its id counts the members, so a job that
    joins later makes a new one."""
    counts = {}
    for m in members:
        counts[m["status"]] = counts.get(m["status"], 0) + 1
    # a member that will never start (PENDING) did not complete: the group failed
    failed = [m["job_id"] for m in members if m["status"] != "COMPLETED"]
    runs = [m["elapsed"] or 0.0 for m in members]
    last = max(members, key=lambda m: m["ended_at"] or "")
    return {"schema": slm.EVENT_SCHEMA, "kind": "group", "group": group, "rollup": True,
            "status": "FAILED" if failed else "COMPLETED", "time": now,
            "job_id": last["job_id"], "user": last.get("user"), "cluster": last.get("cluster"),
            "event_id": "group-end-%s-%d" % (group_key(group, last.get("user"))[:24],
                                             len(members)),
            "tasks": counts, "failed_tasks": failed[:100], "total": round(sum(runs), 3),
            "longest": round(max(runs or [0.0]), 3)}, last["job_key"]


class RateLimiter(object):
    """Sliding windows per destination, for one sender process."""

    def __init__(self):
        self._sent = {}
        self._lock = threading.Lock()

    def delay(self, destination, fmt, now=None):
        """Seconds to wait before destination may get another message (0: go)."""
        now = time.time() if now is None else now
        windows = (slm.FORMATS.get(fmt) or slm.FORMATS["json"]).rate
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


class OutboxSender(threading.Thread):
    """Sends the outbox: claims due rows (a lease, so several service
    instances on one database never send the same row), posts them with
    slm.py's formatter and sender, and records the outcome."""

    def __init__(self, db, metrics=None, log=None, poll=1.0, timeout=10.0, batch=20,
                 backoff_scale=1.0, smtp=None, guard=None, site=()):
        threading.Thread.__init__(self, name="slm-outbox", daemon=True)
        self.db = db
        self.smtp = smtp          # where relayed mail goes out (SLM_SMTP_*)
        # where relayed notices may connect (AllowList.guard); the site's own
        # destinations (SLM_WEBHOOK) are the admin's, and go where they say
        self.guard = guard
        self.site = frozenset(site)
        self.metrics = metrics
        self.log = log or say
        self.poll = poll
        self.timeout = timeout
        self.batch = batch
        self.backoff_scale = backoff_scale   # tests shrink the waits; Retry-After is kept
        self.owner = "%s-%d-%s" % (socket.gethostname()[:30], os.getpid(), uuid.uuid4().hex[:8])
        self.limiter = RateLimiter()
        self.stopping = threading.Event()
        self.wakeup = threading.Event()

    def stop(self, wait=5.0):
        self.stopping.set()
        self.wakeup.set()
        if self.is_alive():
            self.join(wait)

    def run(self):
        while not self.stopping.is_set():
            try:
                busy = self.run_once()
            except StoreError as e:
                self.log("outbox: database unavailable (%s); retrying" % e)
                busy = 0
            except Exception as e:   # the sender must outlive any one bad row
                self.log("outbox: unexpected %s" % describe_error(e))
                busy = 0
            if not busy:
                self.wakeup.wait(self.poll)
                self.wakeup.clear()

    def run_once(self):
        """Send what is due now; return how many rows were handled."""
        rows = self.db.run(lambda tx: tx.outbox_claim(self.owner, self.batch, OUTBOX_LEASE),
                           write=True)
        for row in rows:
            if self.stopping.is_set():
                self._settle(row, "pending", None, time.time(), count_attempt=False)
                continue
            self._send(row)
        return len(rows)

    def _settle(self, row, state, error, next_epoch, count_attempt=True):
        self.db.run(lambda tx: tx.outbox_settle(row["id"], self.owner, state, error, next_epoch,
                                                count_attempt), write=True)

    def _send(self, row):
        wait = self.limiter.delay(row["destination"], row["format"])
        if wait > 0:
            self._settle(row, "pending", None, time.time() + wait, count_attempt=False)
            return
        try:
            slm.send_notification(row["format"], row["destination"], json.loads(row["payload"]),
                                  row.get("secret"), row.get("dashboard_url"), self.timeout,
                                  self.smtp, None if row["destination"] in self.site
                                  else self.guard)
        except slm.DeliveryError as e:
            age = time.time() - (epoch_of(row["created_at"]) or time.time())
            if e.permanent or age > OUTBOX_MAX_AGE:
                self._settle(row, "failed", e.reason, None)
                self._count("failed")
                self.log("outbox: gave up notification %d for job %s: %s"
                         % (row["id"], row["job_id"], e.reason))
                return
            delay = OUTBOX_BACKOFF[min(row["attempts"], len(OUTBOX_BACKOFF) - 1)] * \
                self.backoff_scale
            if e.retry_after is not None:
                delay = min(max(e.retry_after, 0.5), 3600)
            self._settle(row, "pending", e.reason, time.time() + delay)
            self._count("retried")
            return
        except Exception as e:   # a notice that cannot be built fails alone, for good
            self._settle(row, "failed", "cannot build the notification: %s"
                         % describe_error(e), None)
            self._count("failed")
            self.log("outbox: notification %d for job %s cannot be built: %s"
                     % (row["id"], row["job_id"], describe_error(e)))
            return
        self._settle(row, "sent", None, None)
        self._count("sent")

    def _count(self, outcome):
        if self.metrics is not None:
            self.metrics.notification(outcome)

    def try_now(self, policy, relay, event):
        """Send event to each destination of a relay request now, the way a
        relayed notice goes (the allow-list, the address check, the sender),
        storing nothing: [{destination, format, state, reason}] (slm doctor)."""
        results, deadline = [], time.time() + 12.0    # (slm doctor waits 15 s at most)
        for t in relay["to"]:
            d = destination(t)
            state, reason = "sent", policy.allow.refusal(t)
            if reason is not None:
                state = "refused"
            elif time.time() >= deadline:
                state, reason = "failed", "not tried: the others took the time there was"
            else:
                try:
                    slm.send_notification(d.format, d.url, event, t.get("secret"),
                                          relay.get("dashboard_url"),
                                          max(0.5, min(self.timeout, deadline - time.time())),
                                          self.smtp, self.guard)
                except slm.DeliveryError as e:
                    state, reason = ("refused" if e.reason.startswith("refused") else
                                     "failed"), e.reason
                except Exception as e:    # a notice that cannot be built
                    state, reason = "failed", "cannot build the notification: %s" \
                        % describe_error(e)
            results.append({"destination": d.shown(), "format": d.format, "state": state,
                            "reason": reason})
        return results


# ---------------------------------------------------------------------------
# Ingest: requests' events written in groups (group commit)
# ---------------------------------------------------------------------------


class Write(object):
    """One request's events waiting to be written, then its answer."""

    __slots__ = ("items", "who", "done", "answer", "error", "stored", "disputed", "jobs")

    def __init__(self, items, who):
        self.items = items
        self.who = who
        self.done = False
        self.answer = None
        self.error = None
        self.stored = []
        self.jobs = []       # (event, its job's key, the job's owner) of what was stored
        self.disputed = ()   # job keys another user's row holds (403 unless Slurm says ours)

    def job_keys(self, keys):
        """The jobs this request writes to (keys: JobKeys): its events', and
        the arrays its events are tasks of (a task counts in its array's roll-up)."""
        found = []
        for incoming in self.items:
            event = incoming.event
            found.append(keys.of(event))
            if event.get("array_job_id") and event["array_job_id"] != event["job_id"]:
                found.append(keys.array(event))
        return found


class Changes(object):
    """Tells readers waiting for new events (long-polls) that some were stored.

    The ingestor bumps it after each transaction that stored events, so a
    waiter sleeps on a condition instead of asking the database.  Events that
    another instance on the same database stores are not seen here: waiters
    look again at least every RECHECK seconds (see long_poll).
    """

    RECHECK = 1.0

    def __init__(self):
        self._cond = threading.Condition()
        self.generation = 0
        self.closed = False
        self._waiters = collections.Counter()    # who is waiting: a token's key
        self.limit = None          # all waiters at once (PooledServer: half its workers)

    def enter(self, key, most=16):
        """Count a waiter of key in; False when key has `most` already, or
        when all of them together hold `limit` (each holds a worker)."""
        with self._cond:
            if key is not None and self._waiters[key] >= most or \
                    self.limit is not None and sum(self._waiters.values()) >= self.limit:
                return False
            self._waiters[key] += 1
            return True

    def waiting(self):
        """How many long-polls wait now."""
        with self._cond:
            return sum(self._waiters.values())

    def leave(self, key):
        with self._cond:
            self._waiters[key] -= 1
            if self._waiters[key] <= 0:
                del self._waiters[key]

    def bump(self):
        with self._cond:
            self.generation += 1
            self._cond.notify_all()

    def wait(self, seen, timeout):
        """Until the generation is no longer `seen`, the end, or timeout seconds."""
        with self._cond:
            if self.generation == seen and not self.closed:
                self._cond.wait(timeout)

    def close(self):
        """The service stops: every waiter answers now with what it has."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class Ingestor(object):
    """Writes events: concurrent requests' events go into one transaction.

    A request queues its events; the first in the queue, when no write is
    in progress, becomes the writer: it takes what waits (its own first,
    then the others, a fair share per token), runs one transaction, and
    answers each request with its own result, exactly as alone.  A failed
    transaction fails only its own requests (503 when the database is away;
    a group that fails otherwise is retried request by request, so that one
    bad request cannot fail the others).  The outbox rows of an event are
    written in the event's transaction.
    """

    MAX_REQUESTS = 256     # per transaction
    MAX_EVENTS = 2000
    MAX_BYTES = 8 << 20

    def __init__(self, db, policy, metrics=None):
        self.db = db
        self.policy = policy
        self.metrics = metrics
        self.mailprog_hold = MAILPROG_HOLD
        self._cond = threading.Condition()
        self._queue = []
        self._writing = False
        self.changes = Changes()
        self.notified = None   # callable() after outbox rows were added (wakes the sender)
        # with a watchdog asking Slurm: CANCELLED notices of its cluster's jobs are
        # held until Slurm says whether it was a requeue (see Watchdog), and
        # Slurm says whose a job is when two users' tokens claim it
        self.slurm = None
        self.log = None
        self.written = None      # callable([((cluster, job id), key, owner)]) after a write
        self._told = {}          # job key -> when its MESSAGEs notified (see _may_tell)
        self._told_lock = threading.Lock()

    def submit(self, items, who=None, settle=True):
        """Store a request's Incoming events; return its answer."""
        items = attribute(who, items)
        check_authorship(who, items)
        write = Write(items, who)
        with self._cond:
            self._queue.append(write)
            while not write.done and (self._writing or self._queue[0] is not write):
                self._cond.wait()
            if not write.done:
                self._writing = True
                group = self._take(write)
        if not write.done:
            try:
                self._commit(group)
            finally:
                with self._cond:
                    self._writing = False
                    for w in group:
                        w.done = True
                    self._cond.notify_all()
        if write.disputed and settle and self.slurm is not None and \
                isinstance(write.error, ApiError) and self._settle(write):
            # asked outside the group's transaction: Slurm's answer holds up no one else
            return self.submit(items, who, settle=False)
        if write.error is not None:
            raise write.error
        return write.answer

    # The MESSAGEs of one job (slm notify) that notify: this many a window, at most.
    MESSAGES = (10, 600.0)

    def _may_tell(self, key):
        """Whether another MESSAGE of this job may notify now (in this process)."""
        count, window = self.MESSAGES
        now = time.time()
        with self._told_lock:
            times = [t for t in self._told.get(key, ()) if t > now - window]
            if len(self._told) > 100000:
                self._told.clear()
            self._told[key] = times + [now] if len(times) < count else times
            return len(times) < count

    def _take(self, first):
        """The group to write now: first, then round-robin across the tokens."""
        self._queue.remove(first)
        group = [first]
        events = len(first.items)
        size = sum(len(i.raw) for i in first.items)
        by_who = collections.OrderedDict()
        for w in self._queue:
            by_who.setdefault(w.who, []).append(w)
        lanes = [collections.deque(ws) for ws in by_who.values()]
        while lanes and len(group) < self.MAX_REQUESTS:
            for lane in list(lanes):
                w = lane[0]
                more = sum(len(i.raw) for i in w.items)
                if events + len(w.items) > self.MAX_EVENTS or \
                        size + more > self.MAX_BYTES:
                    lanes = []
                    break
                lane.popleft()
                group.append(w)
                events += len(w.items)
                size += more
                if not lane:
                    lanes.remove(lane)
                if len(group) >= self.MAX_REQUESTS:
                    break
        for w in group[1:]:
            self._queue.remove(w)
        return group

    def _commit(self, group):
        try:
            added = self.db.run(lambda tx: self._write(tx, group, utc_now()), write=True)
        except StoreUnavailable as e:
            for w in group:
                w.error = e
            return
        except Exception as e:
            if len(group) == 1:
                group[0].error = e
                return
            for w in group:   # find the one that fails; the others are written
                w.answer = w.error = None
                self._commit([w])
            return
        if self.metrics is not None:
            for w in group:
                if w.answer is not None and w.items:
                    self.metrics.stored(w.stored, w.answer["duplicates"])
            self.metrics.group(len(group), sum(len(w.items) for w in group))
        if any(w.stored for w in group):
            self.changes.bump()
            if self.written is not None:
                self.written([((e.get("cluster"), e["job_id"]), key, user) for w in group
                              for e, key, user in w.jobs])
        if added and self.notified is not None:
            self.notified()

    def _settle(self, write):
        """Jobs another user's token wrote to first (a guessed id, posted before
        the real job existed), or that nobody owns, belong to whom Slurm says
        submitted them: that user's events replace the others'; True if so.
        Without Slurm's commands on this host, the first writer keeps the job."""
        disputed = sorted(set(write.disputed))
        ours = [k for k in disputed if split_job_key(k)[0] == self.slurm.cluster]
        owners = self.slurm.owners(sorted(set(split_job_key(k)[1] for k in ours)))
        if len(ours) < len(disputed) or \
                not all(owners.get(split_job_key(k)[1]) == write.who.user for k in ours):
            return False
        self.db.run(lambda tx: tx.forget_jobs(disputed), write=True)
        if self.log is not None:
            self.log("jobs %s: Slurm says they are %s's; what other users' tokens wrote to "
                     "them is forgotten" % (", ".join(disputed)[:300], write.who.user))
        return True

    def _write(self, tx, group, now):
        """The one transaction of a group; sets each request's answer."""
        # the job rows first, locked: those of the ids the events name (whose
        # keys say which job each event is about), then the missing ones made;
        # with the rows of the arrays they are tasks of.  A user's token may
        # add to its own user's jobs and arrays only (a job nobody owns is
        # nobody's to take), and nothing of a refused request is stored.
        found = tx.lock_jobs_of(set(job_id for w in group for i in w.items for job_id in
                                    (i.event["job_id"], i.event.get("array_job_id")) if job_id))
        known = {}
        for key, row in sorted(found.items()):
            known.setdefault(row["job_id"], []).append(key)
        keys = JobKeys(known)
        wanted = set(key for w in group for key in w.job_keys(keys))
        rows = dict((key, found[key]) for key in wanted if key in found)
        if len(rows) < len(wanted):
            rows.update(tx.lock_jobs(wanted - set(rows)))
        owners = dict((key, row["user"]) for key, row in rows.items())
        existed = set(key for key, row in rows.items() if row["event_count"])
        allowed = []
        for w in group:
            w.error, w.disputed = None, ()
            if w.who is not None and w.who.role != "admin":
                theirs = [key for key in w.job_keys(keys) if owners[key] != w.who.user and
                          (owners[key] is not None or key in existed)]
                if theirs:
                    w.disputed = theirs
                    w.error = ApiError(403, "job %s belongs to another user"
                                       % split_job_key(theirs[0])[1][:128])
                    continue
                for key in w.job_keys(keys):   # the first to write a new job owns it
                    owners[key] = w.who.user if owners[key] is None else owners[key]
            allowed.append(w)
        # first come, first stored: of two copies of one event, the earlier is new
        pairs = [(w, incoming) for w in allowed for incoming in w.items]
        # each event stored with its job's owner (a new job's: its first event's user)
        flags = tx.insert_events([(i.event, i.raw, keys.of(i.event),
                                   owners.get(keys.of(i.event)) or i.event.get("user"))
                                  for _, i in pairs], now)
        new = [p for p, stored in zip(pairs, flags) if stored]
        by_job = collections.OrderedDict()
        for w, incoming in new:
            by_job.setdefault(keys.of(incoming.event), []).append(incoming)
        relays = {}       # job key -> the relay request it had before this group
        derived = []      # (job key, event): what the wrappers of a step's tasks tell together
        for key, incomings in by_job.items():
            row = rows[key]
            relays[key] = json.loads(row["relay"]) if row.get("relay") else None
            unowned, was_wrapped = row.get("user") is None, wrapped(row)
            for incoming in incomings:
                merge_event(row, incoming.event)
                if incoming.relay is not None:
                    # kept (secrets and all, never shown) for what the service itself
                    # will have to say of this job: LOST, Slurm's verdict
                    row["relay"] = compact_json(incoming.relay)
            for incoming in incomings:
                if incoming.event["status"] == TASK_ENDED:
                    end = step_end(row, incoming.event, key)
                    if end is not None:
                        derived.append((key, end))
            if unowned and row.get("user") is not None and key in existed:
                tx.own_events(key, row["user"])   # its earlier events are its owner's too
            if wrapped(row) and not was_wrapped and key in existed:
                # its wrapper speaks now: what Slurm's mail said of it goes unsent
                tx.outbox_release(key, "the job's wrapper tells of it")
        concluded = []
        for key, end in derived:
            end["user"] = rows[key].get("user") or end.get("user")
            raw = compact_json(end)
            if tx.insert_events([(end, raw, key, end.get("user"))], now)[0]:
                merge_event(rows[key], end)
                concluded.append((key, Incoming(end, raw, None)))
        tx.write_jobs([rows[key] for key in sorted(by_job)])
        for key, row in rows.items():
            if not row["event_count"]:
                tx.forget_unreported_job(key)   # made by the lock for nothing stored
        refused = dict((id(w), []) for w in group)
        outbox = []
        for w, incoming in new:
            event = incoming.event
            if event["status"] == "MESSAGE" and not self._may_tell(keys.of(event)):
                continue        # stored and shown, not sent: a job's chatter is bounded
            stored = relays.get(keys.of(event)) if event.get("source") in SERVICE_SOURCES \
                else None
            hold = HOLD if event["status"] == "CANCELLED" and event.get("source") not in \
                SERVICE_SOURCES and self.slurm is not None and self.slurm.knows(event) else 0.0
            if event.get("via") == "mailprog":
                # site mode: a job its user wraps is told of by its wrapper; one that is
                # not yet, a little later (its wrapper's first word supersedes it)
                if wrapped(rows[keys.of(event)]):
                    continue
                if rows[keys.of(event)]["status"] in FINAL and event["status"] not in FINAL:
                    continue    # Slurm mails from parallel threads: a start (or a time
                    # warning) told after the end is stale news, kept in the history only
                hold = self.mailprog_hold
            found, no = self.policy.for_event(incoming, keys.of(event), now, stored, hold)
            outbox += found
            refused[id(w)] += no
        for key, incoming in concluded:
            stored = json.loads(rows[key]["relay"]) if rows[key].get("relay") else None
            outbox += self.policy.for_event(incoming, key, now, stored)[0]
        arrays = set()
        for w, incoming in sorted(new, key=lambda p: p[1].event["event_id"]):
            event = incoming.event
            array_id = event.get("array_job_id")
            if event["status"] in FINAL and array_id and array_id != event["job_id"] and \
                    event.get("array_task_id") is not None and keys.array(event) not in arrays:
                arrays.add(keys.array(event))
                summary = array_rollup(tx, event, keys.array(event), now)
                if summary is not None:
                    outbox += self.policy.for_rollup(summary, incoming.relay, now,
                                                     keys.array(event))
            if event.get("group") and event.get("array_task_id") is None and \
                    event["status"] == "RUNNING":
                notice = group_start(tx, event, keys.of(event), now)
                if notice is not None:
                    outbox += self.policy.for_rollup(notice, incoming.relay, now, keys.of(event),
                                                     kind="group", key=notice["event_id"])
        tx.outbox_add(outbox)
        for w in allowed:
            w.stored = [i.event for v, i in new if v is w]
            w.jobs = [(e, keys.of(e), rows[keys.of(e)]["user"]) for e in w.stored]
            answer = {"accepted": len(w.stored), "duplicates": len(w.items) - len(w.stored)}
            if refused[id(w)]:
                # the events are stored; only their relay to hosts outside the allow-list is not
                answer["refused_notifications"] = len(refused[id(w)])
                answer["refused_destinations"] = sorted(set(refused[id(w)]))
            w.answer = answer
        return bool(outbox)


class Heartbeats(threading.Thread):
    """The latest heartbeat of each job, kept in memory and written every
    FLUSH seconds in one transaction.  A heartbeat is no event (never
    journalled, never notified: only the latest counts), so it needs no
    transaction of its own: a request costs a look at memory, and a job's
    owner is read from the database when it has not been for KNOWN seconds.
    A service that stops writes what it holds; one that dies loses at most
    FLUSH seconds of liveness, far less than the 3 intervals (60 s apart by
    default) the watchdog waits before it calls a job LOST."""

    FLUSH = 5.0
    KNOWN = 900.0         # how long a job's key and owner are remembered (a job beats
                          # every minute by default: looked up once, not at every beat)
    UNKNOWN = 2.0         # ... and that there is no such job (its first event may be coming)
    # The pace it asks of the wrappers: at most RATE heartbeats a second from all
    # the jobs beating (each answer says how many seconds the next may wait):
    # a site with 10,000 jobs beats every 500 s, not every 60.  A job Slurm
    # ends is ended here within a watchdog round whatever its beats; silence
    # counts for the rest (a cut-off node, a job outside Slurm).
    RATE = 20.0
    BEATING = 3600.0      # a job counts as beating this long after its last beat

    def __init__(self, db, private=False, log=None, flush=None, rate=None):
        threading.Thread.__init__(self, name="slm-heartbeats", daemon=True)
        self.db = db
        self.FLUSH = flush or self.FLUSH
        self.RATE = rate or self.RATE
        self._beating = {}    # job key -> when it last beat (for the pace)
        # SLM_PRIVATE_DATA=jobs: a heartbeat for another user's job is answered
        # as one for no job (whether it exists is not theirs to learn)
        self.private = private
        self.log = log or say
        self._pending = {}    # job key -> (time, interval, sample, run)
        self._jobs = {}       # (cluster, job id) -> (key or None, owner, when looked up)
        self._lock = threading.Lock()
        self._due = None      # when what is held must be written
        self._wake = threading.Event()
        self.stopping = threading.Event()

    def add(self, who, beats):
        """Take a request's heartbeats (validated); its answer, or ApiError 403."""
        if who is not None and who.user is not None:
            beats = [b if b.get("user") is not None else dict(b, user=who.user) for b in beats]
        check_authorship(who, [Incoming(b, "", None) for b in beats])
        targets = self._targets(set((b.get("cluster"), b["job_id"]) for b in beats))
        accepted = []
        for b in beats:
            key, owner = targets[(b.get("cluster"), b["job_id"])]
            if key is None:
                continue
            if who is not None and who.role != "admin" and owner != who.user:
                if self.private:
                    continue       # another user's job looks like no job at all
                raise ApiError(403, "job %s belongs to another user" % b["job_id"][:128])
            accepted.append((key, b))
        now = time.time()
        with self._lock:
            for key, b in accepted:
                self._beating[key] = now
                if key not in self._pending or self._pending[key][0] < b["time"]:
                    self._pending[key] = (b["time"], b["interval"], dict(
                        (k, b[k]) for k in HEARTBEAT_SAMPLES if k in b), event_run(b))
                # written well within the job's interval (a job beating every
                # second is not to look silent to the watchdog meanwhile)
                due = now + min(self.FLUSH, b["interval"] / 3.0)
                if self._due is None or due < self._due:
                    self._due = due
                    self._wake.set()
        return {"accepted": len(accepted), "unknown": len(beats) - len(accepted),
                "pace": self.pace()}

    def pace(self):
        """The fewest seconds between a job's heartbeats this service asks for now."""
        return int(math.ceil(len(self._beating) / self.RATE))

    def _targets(self, pairs):
        """{(cluster, job id): (the job's key or None when there is no such job,
        its owner)}, from memory or, for what is not known there, the database."""
        now, found, missing = time.time(), {}, []
        with self._lock:
            for pair in pairs:
                known = self._jobs.get(pair)
                if known is not None and now - known[2] < (self.KNOWN if known[0] else
                                                            self.UNKNOWN):
                    found[pair] = known[:2]
                else:
                    missing.append(pair)
        if missing:
            def look(tx):
                keys = JobKeys(tx.keys_of(set(job_id for _, job_id in missing)))
                resolved = dict((pair, keys(*pair)) for pair in missing)
                return resolved, tx.beat_targets(set(resolved.values()))
            resolved, owners = self.db.run(look)
            with self._lock:
                if len(self._jobs) > 200000:
                    self._jobs.clear()
                for pair in missing:
                    key = resolved[pair] if resolved[pair] in owners else None
                    found[pair] = (key, owners.get(key))
                    self._jobs[pair] = (key, owners.get(key), now)
        return found

    def learn(self, jobs):
        """Remember jobs just written: [((cluster, job id), key, owner)] (so that
        their first heartbeats need no look-up either)."""
        now = time.time()
        with self._lock:
            for pair, key, owner in jobs:
                self._jobs[pair] = (key, owner, now)

    def flush(self):
        """Write what is held (kept for the next time when the database is away)."""
        with self._lock:
            pending, self._pending, self._due = self._pending, {}, None
            now = time.time()
            if pending and len(self._beating) > 2 * len(pending) + 1000:
                self._beating = dict((k, t) for k, t in self._beating.items()
                                     if now - t < self.BEATING)
        if not pending:
            return
        try:
            self.db.run(lambda tx: tx.record_beats(
                [(key,) + beat for key, beat in sorted(pending.items())]), write=True)
        except StoreError as e:
            self.log("heartbeats: database unavailable (%s); kept for the next try" % e)
            with self._lock:
                for key, beat in pending.items():
                    if key not in self._pending or self._pending[key][0] < beat[0]:
                        self._pending[key] = beat

    def run(self):
        while not self.stopping.is_set():
            with self._lock:
                wait = self.FLUSH if self._due is None else max(0.0, self._due - time.time())
            if self._wake.wait(wait) and wait > 0:
                self._wake.clear()
                continue          # an earlier due time: wait for that one
            self._wake.clear()
            try:
                self.flush()
            except Exception as e:    # the writer must outlive any one odd beat
                self.log("heartbeats: unexpected %s" % describe_error(e))

    def stop(self, wait=5.0):
        self.stopping.set()
        self._wake.set()
        if self.is_alive():
            self.join(wait)
        self.flush()


# ---------------------------------------------------------------------------
# Watchdog: the deaths a wrapper cannot report (silence, Slurm's verdict),
# and the spools of nodes that cannot reach the service
# ---------------------------------------------------------------------------

# Slurm's states (sacct, squeue) as SLM statuses: (status, reason).
SLURM_STATES = {
    "COMPLETED": ("COMPLETED", None), "FAILED": ("FAILED", None),
    "CANCELLED": ("CANCELLED", "cancelled"), "TIMEOUT": ("TIMEOUT", "time_limit"),
    "OUT_OF_MEMORY": ("OUT_OF_MEMORY", "oom"), "NODE_FAIL": ("NODE_FAIL", "node_fail"),
    "PREEMPTED": ("PREEMPTED", "preempted"), "BOOT_FAIL": ("FAILED", "boot_fail"),
    "DEADLINE": ("FAILED", "deadline"), "REQUEUED": ("REQUEUED", "requeued"),
}
# A run that ended this way was requeued when Slurm has a later run of the job
# (or, in its queue, the job waits to run again).
REQUEUE_STATES = ("REQUEUED", "PREEMPTED", "NODE_FAIL")
# Slurm's queue states of a job that will run (again): EXPEDITING is 25.11's
# --requeue=expedite.
QUEUE_WAITING = frozenset(("PENDING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "EXPEDITING",
                           "RESV_DEL_HOLD", "SPECIAL_EXIT"))
# ... and of a job whose run is not over yet
QUEUE_ACTIVE = QUEUE_WAITING | frozenset(("RUNNING", "SUSPENDED", "COMPLETING", "CONFIGURING",
                                          "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED"))
# Pending reasons after which a job never starts without somebody acting.
# (Constraints is 23.11's name for 22.05's BadConstraints.)
NEVER_STARTS = frozenset((
    "DependencyNeverSatisfied", "JobHeldUser", "JobHeldAdmin", "JobHoldMaxRequeue",
    "BadConstraints", "Constraints", "InvalidAccount", "InvalidQOS", "QOSNotAllowed",
    "AccountNotAllowed", "PartitionConfig", "PartitionTimeLimit", "PartitionNodeLimit",
    "PartitionDown", "PartitionInactive"))


class Slurm(object):
    """Slurm's own record of jobs, from its commands on this host: sacct
    (accounting, with every run of a requeued job), else squeue -t all (what
    slurmctld still remembers, MinJobAge).  One call for many jobs."""

    FIELDS = "JobID,State,ExitCode,Start,End,Elapsed,NodeList,Reason"

    def __init__(self, timeout=60.0, log=None):
        self.timeout = timeout
        self.log = log or say
        self.accounting = True    # until sacct says it is disabled
        self.cluster = None       # ClusterName, learnt by learn_cluster()
        self._version = None

    def learn_cluster(self):
        """This host's cluster: only jobs that ran there can be asked about."""
        if self.cluster is None:
            out, _ = self._run(["scontrol", "show", "config"])
            m = re.search(r"^ClusterName\s*=\s*(\S+)", out or "", re.M)
            self.cluster = m.group(1) if m else None
        return self.cluster

    def knows(self, job):
        """Whether a job (row or event) ran on this host's cluster, as Slurm names it."""
        return bool(self.cluster) and job.get("cluster") == self.cluster and \
            bool(SLURM_JOB_ID_RE.match(job.get("job_id") or ""))

    @staticmethod
    def present():
        import shutil
        return bool(shutil.which("sacct") or shutil.which("squeue"))

    def _run(self, argv):
        import subprocess
        try:
            proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  timeout=self.timeout)
        except (OSError, subprocess.SubprocessError) as e:
            return None, str(e)
        return (proc.stdout.decode("utf-8", "replace") if proc.returncode == 0 else None,
                proc.stderr.decode("utf-8", "replace").strip()[:300])

    # job ids on one command line at most (5,000 would make 50 KB of argv)
    AT_ONCE = 500

    def _run_ids(self, argv, ids):
        """_run(argv), "{}" in it replaced by up to AT_ONCE ids at a time; the
        outputs joined, or (None, the error) as soon as one call fails."""
        outs = []
        for part in chunks(list(ids), self.AT_ONCE):
            out, err = self._run([",".join(part) if a == "{}" else a for a in argv])
            if out is None:
                return None, err
            outs.append(out)
        return "".join(outs), ""

    def runs(self, ids):
        """{job id: [run, ...]} from sacct, runs in order, each a dict of FIELDS;
        None when accounting is unavailable (then ask queue())."""
        if not self.accounting:
            return None
        out, err = self._run_ids(["sacct", "-X", "-D", "-n", "-P", "-j", "{}", "-o", self.FIELDS],
                                 ids)
        if out is None:
            if "disabled" in err or "No such file" in err or "not found" in err.lower():
                self.accounting = False
                self.log("reconciler: sacct cannot tell (%s); asking squeue instead" % err)
            else:
                self.log("reconciler: sacct failed: %s" % err)
            return None
        found = {}
        names = self.FIELDS.split(",")
        for line in out.splitlines():
            parts = line.split("|")
            if len(parts) == len(names):
                record = dict(zip(names, parts))
                found.setdefault(record["JobID"], []).append(record)
        return found

    def version(self):
        """Slurm's release as (major, minor), from sacct --version; (0, 0) if unknown."""
        if self._version is None:
            out, _ = self._run(["sacct", "--version"])
            m = re.search(r"(\d+)\.(\d+)", out or "")
            self._version = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
        return self._version

    def exit_codes(self, ids):
        """{job id: 'code:signal'} from slurmctld (scontrol show job), for the
        jobs it still remembers (MinJobAge after their end).  sacct before
        25.11 records an exit of 128 and over less 128 (exit 137 as 9:0)."""
        found = {}
        for job_id in ids[:20]:
            out, _ = self._run(["scontrol", "-o", "show", "job", job_id])
            m = re.search(r"(?:^|\s)ExitCode=(\d+:\d+)", out or "")
            if m:
                found[job_id] = m.group(1)
        return found

    def usage(self, ids):
        """{job id: what its last run used on all its nodes} from accounting:
        CPU time and CPUs of the allocation, the largest step's resident memory."""
        out, _ = self._run_ids(["sacct", "-n", "-P", "--noconvert", "-j", "{}", "-o",
                                "JobID,TotalCPU,AllocCPUS,MaxRSS,ElapsedRaw"], ids)
        found, wanted = {}, set(ids)
        for line in (out or "").splitlines():
            parts = line.split("|")
            if len(parts) != 5:
                continue
            job, _, step = parts[0].partition(".")
            if job not in wanted:
                continue
            usage = found.setdefault(job, {})
            if not step:
                cpu, cpus, elapsed = slm.slurm_seconds(parts[1]), parts[2], parts[4]
                if cpu is not None:
                    usage["cpu_time"] = round(cpu, 2)
                if cpus.isdigit() and int(cpus):
                    usage["cpus"] = int(cpus)
                if elapsed.isdigit():
                    usage["elapsed"] = int(elapsed)
            rss = slm.slurm_megabytes(parts[3])
            if rss is not None:
                usage["max_rss_mb"] = max(rss, usage.get("max_rss_mb", 0.0))
        for usage in found.values():
            if usage.get("cpus") and usage.get("elapsed") and "cpu_time" in usage:
                usage["cpu_efficiency"] = round(100.0 * usage["cpu_time"] /
                                                (usage["cpus"] * usage["elapsed"]), 1)
        return dict((k, v) for k, v in found.items() if v)

    def queue(self, ids):
        """{job id: {"State", "Reason"}} of the jobs slurmctld still knows."""
        out, err = self._run_ids(["squeue", "-h", "-t", "all", "-j", "{}", "-o", "%i|%T|%r"], ids)
        found = {}
        for line in (out or "").splitlines():
            parts = line.strip().split("|", 2)
            if len(parts) == 3:
                found[parts[0]] = {"JobID": parts[0], "State": parts[1], "Reason": parts[2],
                                   "ExitCode": ""}
        return found

    def owners(self, ids):
        """{job id: the user Slurm says submitted it} for the ids it knows:
        slurmctld's memory first, then accounting.  An array's id is owned by
        whoever owns its tasks."""
        found = {}
        for argv in (["squeue", "-h", "-t", "all", "-o", "%i|%u", "-j"],
                     ["sacct", "-X", "-n", "-P", "-o", "JobID,User", "-j"]):
            wanted = [i for i in ids if i not in found]
            if not wanted or (argv[0] == "sacct" and not self.accounting):
                break
            out, _ = self._run(argv + [",".join(wanted)])
            for line in (out or "").splitlines():
                job, _, user = line.strip().partition("|")
                for i in wanted:
                    if user and (job == i or job.startswith(i + "_")):
                        found.setdefault(i, user)
        return found


def slurm_exit(text):
    """{'exit_code': n} or {'signal': 'SIGX'} from sacct's 'code:signal'."""
    code, _, sig = (text or "").partition(":")
    if sig.isdigit() and 0 < int(sig) < 65:   # 125: Slurm's mark of an OOM kill, no signal
        return {"signal": slm.signal_name(int(sig))}
    if code.isdigit():
        return {"exit_code": int(code)}
    return {}


def slurm_event(row, status, run, now, source="slurm", episode="", **fields):
    """An event the service writes about a job, with an id that is the same
    whichever instance writes it (so it is stored and notified once);
    episode tells apart the same news told again (lost twice in one run)."""
    key = "%s|%s|%d|%s" % (row["job_id"], status, run, fields.get("reason") or "")
    if episode:
        key += "|" + episode
    event = {"schema": slm.EVENT_SCHEMA,
             "event_id": "%s-%s" % (source, hashlib.sha1(key.encode("utf-8")).hexdigest()[:40]),
             "job_id": row["job_id"], "status": status, "time": now, "source": source,
             "user": row.get("user"), "cluster": row.get("cluster")}
    if run:
        event["restart_count"] = run
    event.update((k, v) for k, v in fields.items() if v is not None)
    return event


def slurm_verdict(row, runs, now, queued=None):
    """What Slurm's record says that the job row does not: events to write,
    and what to do with the job's held notices ("release", "supersede" or
    None).  runs: the job's runs from sacct (or one from squeue), in order;
    queued: the job's state in Slurm's queue now, if it is there."""
    events, holds = [], None
    ours, current = row.get("status"), row.get("restarts") or 0
    meta = json.loads(row["meta"]) if row.get("meta") else {}
    for run, record in enumerate(runs[:-1]):
        state = record["State"].split()[0]
        if state in REQUEUE_STATES:
            events.append(slurm_event(row, "REQUEUED", run, now, reason=SLURM_STATES[state][1],
                                      message="Slurm requeued the job: it runs again"))
            holds = "supersede"
    last, run = runs[-1], len(runs) - 1
    state, reason = last["State"].split()[0], (last.get("Reason") or "").strip()
    if state == "PENDING":
        if run > current or (len(runs) == 1 and ours in ("CANCELLED", "TERMINATING", "LOST")
                             and reason == "BeginTime"):
            if len(runs) == 1:     # squeue alone: the job waits to run again
                events.append(slurm_event(row, "REQUEUED", current, now, reason="requeued",
                                          message="Slurm requeued the job: it runs again"))
            holds = "supersede"
        elif ours in WAITING and reason in NEVER_STARTS:
            events.append(slurm_event(row, "PENDING", run, now, reason=reason,
                                      message="Slurm will not start this job until somebody "
                                              "acts (%s)" % reason))
        return events, holds
    if state not in SLURM_STATES or run < current:
        return events, holds       # running, suspended, or a run we know better
    status, why = SLURM_STATES[state]
    if state in REQUEUE_STATES and queued in QUEUE_WAITING:
        # the run ended so, and the job waits to run again: accounting writes the
        # end of a run seconds before the next run's line
        status = "REQUEUED"
    if status == "REQUEUED":   # the requeue's own record, before the next run's appears
        events.append(slurm_event(row, "REQUEUED", run, now, reason=why,
                                  message="Slurm requeued the job: it runs again"))
        return events, "supersede"
    wrapper_said = ours if ours in FINAL and meta.get("source") not in SERVICE_SOURCES else None
    if ours == status and meta.get("source") != "service":
        return events, "release"   # Slurm agrees: the held notices can go
    fields = dict(slurm_exit(last.get("ExitCode")), reason=why or meta.get("reason"))
    if wrapper_said:
        fields["corrects"] = wrapper_said
        fields["message"] = "Slurm's record says %s; the job's wrapper reported %s" % (
            status, wrapper_said)
    else:
        fields["message"] = "Slurm's record says %s (the job's wrapper said nothing of its " \
            "end)" % status
    events.append(slurm_event(row, status, run, now, **fields))
    return events, "release"


class Watchdog(threading.Thread):
    """Finds out what no wrapper can report, every `interval` seconds.

    - A running job whose heartbeats stopped for `grace` intervals is LOST
      (a PAUSED job is frozen and sends none: never LOST for that).
    - With Slurm's commands on this host, it asks Slurm about jobs left open
      (LOST, PAUSED, TERMINATING, SUBMITTED, running without a word) and about
      each ended job once, in one call for many jobs, and writes what Slurm's
      record adds: the verdict (source "slurm"; a correction when it
      contradicts the wrapper), REQUEUED runs, the reason a job never starts.
    - It reads the spools it is given (--spool), as `slm flush` would.
    Several instances on one database: one holds a lease and does it all;
    the events it writes have ids every instance would give them, so each
    is stored, and notified, once.
    """

    def __init__(self, db, ingestor, slurm=None, interval=15.0, grace=3, spools=(),
                 private=None, log=None, group_settle=60.0):
        threading.Thread.__init__(self, name="slm-watchdog", daemon=True)
        self.db = db
        self.ingestor = ingestor
        self.slurm = slurm
        self.interval = interval
        self.grace = grace
        self.spools = list(spools)
        self.private = private          # (is the keyring per user?) for spool owners
        self.group_settle = group_settle
        self.log = log or say
        self.owner = "%s-%d-%s" % (socket.gethostname()[:30], os.getpid(), uuid.uuid4().hex[:8])
        self.stopping = threading.Event()
        self.rounds = 0
        self.listening_since = time.time()   # silence before it proves nothing
        self.beats_read = {}                 # spool -> {job id: the beat file's mtime}
        self.heartbeats = None               # where the beats read from spools go

    def stop(self, wait=5.0):
        self.stopping.set()
        if self.is_alive():
            self.join(wait)

    def run(self):
        if self.slurm is not None:
            self.slurm.learn_cluster()   # every instance: its ingestor holds notices by it
        while not self.stopping.is_set():
            try:
                self.run_once()
            except StoreError as e:
                self.log("watchdog: database unavailable (%s); retrying" % e)
            except Exception as e:   # the watchdog must outlive any one odd job
                self.log("watchdog: unexpected %s" % describe_error(e))
            self.stopping.wait(self.interval)

    def run_once(self):
        self.rounds += 1
        for root in self.spools:       # every instance: spools are claimed file by file
            self.read_spool(root)
        now = time.time()
        if self.lease("watchdog"):
            self.find_lost(now)
            self.roll_up_groups(now)
        # Slurm is asked by an instance on each cluster's login node (several
        # clusters may share one database): one lease per cluster
        cluster = self.slurm.learn_cluster() if self.slurm is not None else None
        if cluster and self.lease("slurm:" + (cluster if len(cluster) <= 58 else hashlib.sha1(
                cluster.encode("utf-8")).hexdigest()[:32])):
            self.ask_slurm(now)

    def lease(self, name):
        """Whether this instance does the work of that name this round (one of
        those on the database does, for a while: see Store.take_lease)."""
        return self.db.run(lambda tx: tx.take_lease(name, self.owner, self.interval * 3 + 30),
                           write=True)

    def write(self, events):
        if events:
            self.ingestor.submit([validate_event(e, client=False) for e in events])

    def roll_up_groups(self, now):
        """One roll-up for each group whose jobs have all ended and stayed so for
        group_settle seconds: the jobs of a pipeline are submitted one after
        another, and the first may end before the last is even known."""
        def work(tx):
            added = []
            for group, user in tx.settled_groups(iso_at(now - self.group_settle),
                                                 iso_at(now - 86400)):
                members = tx.group_members(group, user)
                notice, last = group_rollup(group, members, iso_at(now))
                relay = [m["relay"] for m in members if m["relay"]]
                added += self.ingestor.policy.for_rollup(
                    notice, json.loads(relay[-1]) if relay else None, iso_at(now), last,
                    kind="group", key=notice["event_id"])
            tx.outbox_add(added)    # a roll-up already queued is queued once (its key)
            return added
        if self.db.run(work, write=True) and self.ingestor.notified is not None:
            self.ingestor.notified()

    def find_lost(self, now):
        """LOST for the jobs gone silent; RUNNING again, once heard from, for
        the jobs that were only cut off (a network or a service down)."""
        def work(tx):     # one transaction: the rows are as the queries found them
            lost = tx.silent_jobs(now, self.grace, self.listening_since)
            return [tx.get_job(j) for j in lost], tx.regained_jobs()
        lost, back = self.db.run(work)
        events = []
        for row in lost:
            silent = now - (epoch_of(row["heartbeat_at"]) or now)
            events.append(slurm_event(
                row, "LOST", row.get("restarts") or 0, iso_at(now), source="service",
                episode=row["heartbeat_at"], reason="no_heartbeat",
                heartbeat_at=row["heartbeat_at"],
                message="no heartbeat for %s (every %gs expected): the wrapper, its node or "
                        "the network is gone" % (slm.duration_text(silent),
                                                 row["heartbeat_interval"])))
        for row in back:
            events.append(slurm_event(
                row, "RUNNING", row.get("restarts") or 0, iso_at(now), source="service",
                episode=row["status_event"], reason="heard_again",
                heartbeat_at=row["heartbeat_at"],
                message="heard from again (last heartbeat %s): the job was not lost, only "
                        "cut off from the service" % row["heartbeat_at"]))
        self.write(events)

    # Jobs compared with Slurm's queue in one round, at most (oldest-asked first).
    ASK_LIMIT = 5000

    def ask_slurm(self, now):
        """Compare the open jobs of this cluster with Slurm's queue (squeue, a
        call for 500 jobs), and ask accounting (sacct) about those the queue
        shows over, waiting again, or forgot, and once about every job that
        ended: a job Slurm says ended is ended here within one round, whatever
        its heartbeats say."""
        quiet, stamp = iso_at(now - min(10.0, self.interval)), iso_at(now)
        rows = self.db.run(lambda tx: tx.jobs_to_check(self.slurm.cluster, quiet,
                                                       iso_at(now - 86400), self.ASK_LIMIT))
        if not rows:
            return
        asked = [r for r in rows if self.slurm.knows(r)]
        running = [r for r in asked if r.get("ended_at") is None]
        queue = self.slurm.queue([r["job_id"] for r in running]) if running else {}
        settle = []
        for row in asked:
            q = queue.get(row["job_id"])
            told = row["status"] == "PENDING" and row.get("reason") == (q or {}).get("Reason")
            if row.get("ended_at") is not None or q is None or \
                    q["State"] not in QUEUE_ACTIVE or (q["State"] in QUEUE_WAITING and (
                        row["status"] not in WAITING or
                        (q["Reason"] in NEVER_STARTS and not told))):
                settle.append(row)
        found = self.slurm.runs([r["job_id"] for r in settle]) if settle else {}
        if found is None:    # no accounting: the queue's word is all there is
            found = dict((k, [v]) for k, v in queue.items())
        for job_id, runs in found.items():
            # a waiting job's reason changes in slurmctld before accounting hears of it
            if job_id in queue and runs and runs[-1]["State"] == "PENDING":
                runs[-1] = dict(runs[-1], Reason=queue[job_id]["Reason"])
        # one exit-code truth on every release: before 25.11 sacct records an exit of
        # 128 and over less 128 (a script's exit 137 as 9:0, as its exit 9): slurmctld
        # tells them apart while it remembers the job
        unsure = [j for j, runs in found.items() if runs and runs[-1]["State"].startswith(
            "FAILED") and re.match(r"\d+:0\Z", runs[-1].get("ExitCode", "")) and
            int(runs[-1]["ExitCode"].split(":")[0]) < 128]
        if unsure and self.slurm.accounting and self.slurm.version() < (25, 11):
            for job_id, code in self.slurm.exit_codes(unsure).items():
                found[job_id][-1] = dict(found[job_id][-1], ExitCode=code)
        events, checked = [], [r["job_key"] for r in rows if r not in asked]
        for row in settle:
            runs = found.get(row["job_id"])
            if not runs:
                # accounting lags at a job's end (and forgets nothing): ask again later;
                # a job Slurm never heard of stops being asked about after a day
                if row.get("ended_at") is None and row["last_event_time"] < iso_at(now - 86400):
                    checked.append(row["job_key"])
                continue
            q = queue.get(row["job_id"])
            new, holds = slurm_verdict(row, runs, stamp, q and q["State"])
            events += new
            if holds is not None:
                reason = None if holds == "release" else "the job was requeued: REQUEUED " \
                    "was sent instead"
                self.db.run(lambda tx: tx.outbox_release(row["job_key"], reason), write=True)
            if row.get("ended_at") is not None or new:
                checked.append(row["job_key"])
        self.write(events)
        # what the jobs that ended used, on all their nodes (the wrapper saw its own)
        ended = [r for r in settle if r["job_key"] in checked and found.get(r["job_id"]) and
                 found[r["job_id"]][-1]["State"].split()[0] in SLURM_STATES]
        used = self.slurm.usage([r["job_id"] for r in ended]) if ended and \
            self.slurm.accounting else {}

        def mark(tx):
            tx.mark_checked([r["job_key"] for r in rows], stamp, "asked_at")
            tx.queued(dict((r["job_key"], (queue[r["job_id"]]["State"][:32],
                                           queue[r["job_id"]]["Reason"][:255])
                            if r["job_id"] in queue else (None, None)) for r in running), stamp)
            tx.mark_checked(checked, stamp)
            tx.record_usage(dict((r["job_key"], used[r["job_id"]]) for r in ended
                                 if r["job_id"] in used))
        self.db.run(mark, write=True)

    def read_spool(self, root):
        """Store what waits for the service in a spool directory, as `slm flush`
        does (each file claimed by rename: stored once, whoever delivers it)."""
        spool = slm.Spool(root)
        try:
            spool.recover()
            names = spool.pending_names(slm.ServiceTarget.kind)
        except OSError:
            return
        who = self.spool_owner(root)
        for name in names[:MAX_BATCH]:
            entry = spool.claim(name)
            if entry is None:
                continue
            try:
                incoming = validate_event(entry.event)
                self.ingestor.submit([incoming], who)
            except (ValueError, ApiError) as e:
                spool.reject(entry, {"error": "the service refused it: %s"
                                     % getattr(e, "message", e)})
            except StoreError:
                spool.release(entry)
                return
            else:
                spool.done(entry)
        beats, seen = [], self.beats_read.setdefault(root, {})
        found = spool.heartbeats()
        for gone in set(seen) - set(job_id for job_id, _, _ in found):
            del seen[gone]
        # a job that has ended beats no more: a file its wrapper could not remove
        # (killed, or cut off and still writing) goes
        ended = self.db.run(lambda tx: tx.ended_ids(set(job_id for job_id, _, _ in found))) \
            if found else set()
        for job_id in ended:
            spool.forget_beat(job_id)
        for job_id, epoch, sample in found:
            if job_id in ended:
                continue
            if seen.get(job_id) == epoch:
                continue          # read in an earlier round: no news
            seen[job_id] = epoch
            try:
                beats.append(validate_heartbeat(dict(sample, job_id=job_id, time=iso_at(epoch))))
            except ValueError:
                continue
        if beats and self.heartbeats is not None:
            try:
                self.heartbeats.add(who, beats)
            except (ApiError, StoreError):
                pass

    def spool_owner(self, root):
        """Whose events a spool holds: its owner's, when tokens are per user."""
        if not self.private:
            return None
        try:
            import pwd
            user = pwd.getpwuid(os.stat(root).st_uid).pw_name
        except (OSError, KeyError, ImportError):
            user = "?"
        return Principal(user, "user", "spool:" + root)


# ---------------------------------------------------------------------------
# Web: one plugin (who is asking, JSON errors, the request's transaction),
# the routes, and the OpenAPI document derived from them
# ---------------------------------------------------------------------------


class Metrics(object):
    """Counters of one service; the server's threads update them under a lock."""

    def __init__(self):
        self._lock = threading.Lock()
        self.ingested = {}        # status -> events stored
        self.duplicates = 0
        self.requests = {}        # (route, code) -> count
        self.durations = {}       # route -> [sum seconds, count]
        self.db_errors = 0
        self.notifications = {}   # sent / retried / failed -> count (this process's sender)
        self.groups = [0, 0, 0]   # transactions, requests, events written by the ingestor

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

    def group(self, requests, events):
        with self._lock:
            self.groups[0] += 1
            self.groups[1] += requests
            self.groups[2] += events

    def db_error(self):
        with self._lock:
            self.db_errors += 1

    def notification(self, outcome):
        with self._lock:
            self.notifications[outcome] = self.notifications.get(outcome, 0) + 1

    def render(self, job_counts, outbox=None, long_polls=0):
        def label(value):
            return str(value).replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")
        with self._lock:
            ingested = dict(self.ingested)
            requests = dict(self.requests)
            durations = dict((k, list(v)) for k, v in self.durations.items())
            duplicates, db_errors = self.duplicates, self.db_errors
            sent = dict(self.notifications)
            groups = list(self.groups)
        out = ["# HELP slm_events_ingested_total Events stored, by status.",
               "# TYPE slm_events_ingested_total counter"]
        for status in STATUSES:
            out.append('slm_events_ingested_total{status="%s"} %d'
                       % (status, ingested.get(status, 0)))
        out += ["# HELP slm_events_duplicate_total Events acknowledged but already stored.",
                "# TYPE slm_events_duplicate_total counter",
                "slm_events_duplicate_total %d" % duplicates]
        out += ["# HELP slm_ingest_transactions_total Write transactions (group commits).",
                "# TYPE slm_ingest_transactions_total counter",
                "slm_ingest_transactions_total %d" % groups[0],
                "# HELP slm_ingest_requests_total Requests written by those transactions.",
                "# TYPE slm_ingest_requests_total counter",
                "slm_ingest_requests_total %d" % groups[1]]
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
        out += ["# HELP slm_long_polls Long-polls waiting now (each holds a worker).",
                "# TYPE slm_long_polls gauge", "slm_long_polls %d" % long_polls]
        out += ["# HELP slm_db_errors_total Database failures seen by requests.",
                "# TYPE slm_db_errors_total counter", "slm_db_errors_total %d" % db_errors]
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


def json_answer(data, status=200, headers=None):
    text = compact_json(data) + "\n"
    response = bottle.HTTPResponse(body=text.encode("utf-8"), status=status,
                                   headers={"Content-Type": "application/json"})
    for name, value in (headers or {}).items():
        response.set_header(name, value)
    return response


def json_error(status, message, headers=None):
    """The one shape of every error the service answers: {"error": "..."}."""
    return json_answer({"error": message}, status, headers)


USER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._@-]{0,63}\Z")
ROLES = ("user", "admin")


def token_digest(token):
    """What the tokens file keeps of a token.  Tokens are 32 random bytes,
    so a plain SHA-256 cannot be reversed by guessing (no salt needed)."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def parse_tokens(text, where="SLM_TOKENS_FILE"):
    """{digest: Principal} from a tokens file; ConfigError naming the first bad line.

    One token a line: USER:ROLE:SHA256 (ROLE user or admin), '#' comments.
    """
    found = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) != 3 or not USER_RE.match(parts[0]) or parts[1] not in ROLES or \
                not re.match(r"[0-9a-f]{64}\Z", parts[2]):
            raise ConfigError("%s line %d is not USER:ROLE:SHA256 (ROLE user or admin); "
                              "nothing of the file was applied" % (where, n))
        found[parts[2]] = Principal(parts[0], parts[1], "token:" + parts[2][:12])
    return found


class Keyring(object):
    """The tokens the service accepts.

    SLM_API_TOKEN: one token, shared by everyone who holds it (an admin),
    compared in constant time.
    SLM_TOKENS_FILE: a token per user (see parse_tokens), re-read when the
    file changes (looked at once a second at most) or on SIGHUP; a file with
    a bad line is refused whole, at start (ConfigError) and on a reload
    (the tokens in force stay, and the log says why).
    """

    def __init__(self, token=None, tokens_file=None, log=None):
        self.token = token or None
        self.tokens_file = tokens_file or None
        self.log = log or say
        self.tokens = {}          # digest -> Principal
        self.sessions = None      # the dashboard's sign-ins (Sessions), once there is a database
        self._seen = None         # (mtime, size, inode) of the file last read
        self._refused = None      # ... of the version last refused (said once)
        self._looked = 0.0
        self._lock = threading.Lock()
        if self.tokens_file:
            self.reload(strict=True)

    @property
    def required(self):
        return self.token is not None or self.tokens_file is not None

    def secrets(self):
        return (self.token,) if self.token else ()

    def reload(self, strict=False):
        """Read the tokens file again; strict: raise ConfigError instead of logging.

        A file with a bad line, or one this process cannot read, leaves the
        tokens in force (said once per version of the file); a file that is
        gone takes every per-user token with it (deleting it revokes them).
        """
        try:
            st = os.stat(self.tokens_file)
        except FileNotFoundError:
            if strict:
                raise ConfigError("SLM_TOKENS_FILE %s does not exist (slm_api.py token add "
                                  "USER makes it)" % self.tokens_file)
            if self._seen is not None:
                self.log("SLM_TOKENS_FILE %s is gone: no per-user token is accepted until "
                         "it is back" % self.tokens_file)
            with self._lock:
                self.tokens, self._seen = {}, None
            return False
        except OSError as e:
            st, error = None, e
        else:
            try:
                with open(self.tokens_file, encoding="utf-8") as f:
                    tokens = parse_tokens(f.read())
                error = None
            except (OSError, UnicodeDecodeError, ConfigError) as e:
                error = e
        version = (st.st_mtime_ns, st.st_size, st.st_ino) if st is not None else "unreadable"
        if error is not None:
            message = error if isinstance(error, ConfigError) else \
                "cannot read SLM_TOKENS_FILE %s: %s" % (
                    self.tokens_file, getattr(error, "strerror", None) or error)
            if strict:
                raise ConfigError(str(message))
            if version != self._refused:
                self._refused = version
                self.log("%s; the tokens read before stay in force" % message)
            return False
        with self._lock:
            self.tokens = tokens
            self._seen, self._refused = version, None
        return True

    def _maybe_reload(self):
        now = time.time()
        if now - self._looked < 1.0:
            return
        self._looked = now
        try:
            st = os.stat(self.tokens_file)
            version = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            version = None
        except OSError:
            return
        if version != self._seen and (version is None or version != self._refused):
            self.reload()

    def holder(self, digest):
        """The Principal of the token with this digest, if it is still accepted."""
        if self.token is not None and hmac.compare_digest(digest, token_digest(self.token)):
            return Principal(None, "admin", "shared")
        if self.tokens_file is not None:
            self._maybe_reload()
            with self._lock:
                return self.tokens.get(digest)
        return None

    def identify(self, header, session=None):
        """The Principal an Authorization header names, or else a sign-in
        cookie's value (session); ApiError 401 if none."""
        if not self.required:
            return ANYONE
        if header is None and session and self.sessions is not None:
            # a sign-in of a token since revoked is no sign-in
            digest = self.sessions.lookup(session)
            who = self.holder(digest) if digest else None
            if who is not None:
                return who
        scheme, _, given = (header or "").partition(" ")
        given = given.strip()
        if scheme.lower() == "bearer" and given:
            # WSGI hands headers over as latin-1; that recovers the bytes sent
            raw = given.encode("latin-1", "replace")
            if self.token is not None and hmac.compare_digest(raw, self.token.encode("utf-8")):
                return Principal(None, "admin", "shared")
            if self.tokens_file is not None:
                self._maybe_reload()
                # found by its SHA-256: how long a lookup takes tells nothing about
                # any token (that would take a preimage), so no table walk is needed
                with self._lock:
                    who = self.tokens.get(hashlib.sha256(raw).hexdigest())
                if who is not None:
                    return who
        raise ApiError(401, "missing or wrong bearer token",
                       {"WWW-Authenticate": 'Bearer realm="slm"'})


class RequestLimiter(object):
    """Token buckets per key: a request and its body's bytes each take from
    the key's buckets; an empty bucket answers 429 with Retry-After."""

    def __init__(self, rate=500.0, burst=None, byte_rate=8 << 20, byte_burst=None):
        self.rate, self.burst = float(rate), float(burst or rate * 10)
        self.byte_rate = float(byte_rate)
        self.byte_burst = float(byte_burst or byte_rate * 4)
        self._buckets = {}
        self._lock = threading.Lock()

    def wait(self, key, size=0):
        """Seconds the key must wait (0: go ahead, and it is counted)."""
        now = time.monotonic()
        with self._lock:
            tokens, nbytes, then = self._buckets.get(key, (self.burst, self.byte_burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            nbytes = min(self.byte_burst, nbytes + (now - then) * self.byte_rate)
            size = min(size, self.byte_burst)
            if tokens < 1 or nbytes < size:
                self._buckets[key] = (tokens, nbytes, now)
                return max((1 - tokens) / self.rate, (size - nbytes) / self.byte_rate)
            self._buckets[key] = (tokens - 1, nbytes - size, now)
            if len(self._buckets) > 100000:   # forget keys idle long enough to be full
                self._buckets = dict((k, v) for k, v in self._buckets.items()
                                     if now - v[2] < self.burst / self.rate)
            return 0.0


# Event fields only a job's owner (and admins) may read: command lines and
# the output tail can hold secrets.
PRIVATE_FIELDS = ("command", "script_args", "wrap", "output_tail")


class Access(object):
    """What each principal may read, as the site chose (SLM_PRIVATE_DATA=jobs:
    users see only their own jobs, like Slurm's PrivateData=jobs; otherwise
    everyone lists everyone's, the Slurm default).  Command lines, output
    tails and notification destinations are the owner's and admins' only;
    the notices to the service's own destinations (site: its SLM_WEBHOOK)
    are the admins' alone."""

    def __init__(self, private_jobs=False, site=()):
        self.private_jobs = private_jobs
        self.site = tuple(sorted(set(site)))

    def site_destinations(self, who):
        """The destinations whose notices who may not see."""
        return () if who.role == "admin" else self.site

    @staticmethod
    def owns(who, user):
        return who.role == "admin" or (who.user is not None and who.user == user)

    def may_see(self, who, row):
        return not self.private_jobs or self.owns(who, row.get("user"))

    def list_filters(self, who, filters):
        """The filters a listing really uses: with private jobs, one's own."""
        if not self.private_jobs or who.role == "admin":
            return filters
        if filters.get("user") not in (None, who.user):
            raise ApiError(403, "this service keeps jobs private (SLM_PRIVATE_DATA=jobs): "
                                "you may list your own only")
        return dict(filters, user=who.user)

    def job(self, who, row):
        """A job as who may see it (job_json shape)."""
        shown = job_json(row)
        if not self.owns(who, row.get("user")):
            for name in PRIVATE_FIELDS:
                shown["meta"].pop(name, None)
        return shown

    def event(self, who, owner, event):
        if self.owns(who, owner):
            return event
        return dict((k, v) for k, v in event.items() if k not in PRIVATE_FIELDS)


# The dashboard's sign-in cookie: a Sessions value, HttpOnly and
# SameSite=Strict (see the Dashboard section), taken instead of the header on
# GET and HEAD; a sign-in lasts SESSION_DAYS.
SESSION_COOKIE = "slm_session"
SESSION_DAYS = 30


class Sessions(object):
    """The dashboard's sign-ins, kept in the database (every instance on it
    knows them at once): each sign-in a new random value, sent only as an
    HttpOnly cookie, whose SHA-256 is stored with the digest of the token it
    signed in with.  Signing out deletes it; revoking the token ends it too
    (see Keyring.identify)."""

    def __init__(self, db):
        self.db = db

    @staticmethod
    def _digest(value):
        return hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()

    def start(self, token):
        """A new sign-in for a token already accepted; its cookie's value."""
        import secrets
        value = "s2." + secrets.token_urlsafe(32)
        now = time.time()
        self.db.run(lambda tx: tx.session_add(self._digest(value), token_digest(token),
                                              iso_at(now), iso_at(now + SESSION_DAYS * 86400)),
                    write=True)
        return value

    def lookup(self, value):
        """The digest of the token a sign-in was made with, or None."""
        if len(value) > 200:
            return None
        row = self.db.run(lambda tx: tx.session_get(self._digest(value)))
        return row[0] if row and row[1] > utc_now() else None

    def end(self, value):
        key = self._digest(value)
        self.db.run(lambda tx: tx.session_drop(key, utc_now()), write=True)


def session_cookie(environ):
    """The value of the request's sign-in cookie, or None."""
    for part in environ.get("HTTP_COOKIE", "").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name == SESSION_COOKIE and value:
            return value.strip('"')
    return None


def request_credentials(environ):
    """(Authorization header, sign-in cookie): the cookie on GET and HEAD
    only (a browser's navigation sends no header).  Never for other methods:
    a browser sends cookies with requests a foreign page makes it send, so a
    write needs the header (no cross-site forgery)."""
    if environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
        return environ.get("HTTP_AUTHORIZATION"), session_cookie(environ)
    return environ.get("HTTP_AUTHORIZATION"), None


def accepts_html(environ):
    """Whether the client takes an HTML page: browsers ask for text/html,
    curl takes */*; API clients name JSON or nothing at all."""
    accept = environ.get("HTTP_ACCEPT", "").lower()
    return "text/html" in accept or "*/*" in accept


# A dashboard route's declaration (it is no API route: /openapi.json leaves
# it out): public (no token needed), html (an HTML page: asked for by
# browsers, errors shown as pages), error(status, message, headers) -> the
# HTTPResponse of a failure when the client takes HTML.
PageDoc = collections.namedtuple("PageDoc", "public html error")


class ServicePlugin(object):
    """Every route's wrapper, in the shape of the bottle-sqlite plugin: says
    who is asking (routes not marked public), hands the route a transaction
    when it takes a `tx` argument (committed on success, rolled back on
    error), and turns every failure into the one error shape: JSON, or for
    a dashboard page asked for by a browser, the page's own rendering of it."""

    name = "slm"
    api = 2

    def __init__(self, db, keyring, metrics, log, limiter=None, public=(), hosts=None):
        self.db = db
        self.keyring = keyring
        self.metrics = metrics
        self.log = log
        self.limiter = limiter
        self.public = public      # the optional routes the site opened to all
        self.hosts = hosts        # the Host names it answers to (None: any; see allowed_hosts)

    def apply(self, callback, route):
        doc = route.config.get("doc")
        page = route.config.get("page")
        wants = inspect.signature(route.callback).parameters
        public = (doc is not None and (doc.public is True or doc.public in self.public)) or \
            (page is not None and page.public)

        def wrapper(*args, **kwargs):
            shown_as_page = page is not None and page.html and \
                accepts_html(bottle.request.environ)

            def failure(status, message, headers=None):
                if shown_as_page and page.error is not None:
                    return page.error(status, message, headers or {})
                return json_error(status, message, headers)
            try:
                self.check_origin(bottle.request.environ, page is None)
                if page is not None and page.html and not shown_as_page:
                    raise ApiError(406, "this is a page of the dashboard, for a browser (Accept:"
                                        " text/html); the API is under /api/v1/ (see "
                                        "/openapi.json)")
                if not public:
                    # the raw header (latin-1 of its bytes): Bottle's getter would
                    # decode it as UTF-8 and fail on other bytes
                    who = self.keyring.identify(*request_credentials(bottle.request.environ))
                    if self.limiter is not None and who is not ANYONE:
                        # per token; a service without tokens trusts its loopback callers
                        wait = self.limiter.wait(who.key, bottle.request.content_length or 0)
                        if wait > 0:
                            # answered after a pause: a flood's connections then cost
                            # a sleeping thread each, not the CPU the others need
                            time.sleep(min(1.0, max(wait, 0.25)))
                            raise ApiError(429, "too many requests for this token: slow down",
                                           {"Retry-After": str(int(math.ceil(wait)))})
                    if doc is not None and doc.public == "metrics" and who.role != "admin":
                        # every user's counts: the admins' (or everyone's: SLM_PUBLIC)
                        raise ApiError(403, "the metrics are for admins' tokens (or "
                                            "SLM_PUBLIC=metrics)")
                    if "who" in wants:
                        kwargs["who"] = who
                if "tx" in wants:
                    return self.db.run(lambda tx: callback(*args, tx=tx, **kwargs))
                return callback(*args, **kwargs)
            except bottle.HTTPResponse:
                raise
            except ApiError as e:
                return failure(e.status, e.message, e.headers)
            except StoreUnavailable as e:
                self.metrics.db_error()
                self.log("database unavailable: %s" % e)
                return failure(503, "database unavailable, try again later", {"Retry-After": "2"})
            except StoreError as e:
                self.metrics.db_error()
                self.log("database error: %s" % e)
                return failure(500, "database error")
            except Exception:
                self.log("internal error on %s %s:\n%s" % (
                    bottle.request.method, bottle.request.path, traceback.format_exc().rstrip()))
                return failure(500, "internal error")
        return wrapper

    def check_origin(self, environ, api):
        """Refuse what a web page the user opens could make their browser send:
        a request for a name this service does not answer to (DNS rebinding),
        a write from another site (a form or a fetch posts without asking), a
        write to the API that is not JSON (a form cannot send JSON)."""
        if self.hosts is not None:
            host = environ.get("HTTP_HOST", "")
            name = host.rpartition("]")[0].lstrip("[") if host.startswith("[") else \
                host.rpartition(":")[0] if host.count(":") == 1 else host
            if name.rstrip(".").lower() not in self.hosts:
                raise ApiError(400, "this service does not answer to the name %r (the names it "
                                    "does: SLM_ALLOWED_HOSTS)" % host[:100])
        if environ.get("REQUEST_METHOD") in ("GET", "HEAD", "OPTIONS"):
            return
        site = environ.get("HTTP_SEC_FETCH_SITE")
        origin = environ.get("HTTP_ORIGIN")
        if (site is not None and site not in ("same-origin", "none")) or (
                origin and origin != "null" and
                urllib.parse.urlsplit(origin).netloc != environ.get("HTTP_HOST")):
            raise ApiError(403, "a page of another site may not write here")
        if api and environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower() != \
                "application/json":
            raise ApiError(415, "the body must be JSON (Content-Type: application/json)")


def allowed_hosts(env, required, bind=None):
    """The Host names a service answers to, or None for any.  A service
    without tokens (any page the user opens could reach it through a name of
    its choosing that resolves to this host) answers to its own names only:
    loopback, this host's name, the address it listens on, SLM_ALLOWED_HOSTS.
    With tokens, only SLM_ALLOWED_HOSTS limits them.  '*' allows any."""
    listed = [h.strip().lower().rstrip(".") for h in env.get("SLM_ALLOWED_HOSTS", "").split(",")
              if h.strip()]
    if "*" in listed or (required and not listed):
        return None
    names = set(listed)
    if not required:
        me = socket.gethostname().lower()
        names |= {"localhost", "127.0.0.1", "::1", me, me.split(".")[0]}
        if bind and bind not in ("0.0.0.0", "::", ""):
            names.add(bind.lower())
    return frozenset(names)


class SLMApp(bottle.Bottle):
    """Bottle plus metrics, and a body that always has a Content-Length.

    The length matters for HTTP/1.1 keep-alive: without it the client cannot
    tell where one answer ends and must wait for the connection to close.
    """

    metrics = None

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
        if self.metrics is not None:
            self.metrics.request(route.rule if route is not None else "other",
                                 captured["status"].split(" ", 1)[0], time.time() - started)
        start_response(captured["status"], headers, captured["exc_info"])
        return [body]


ERROR_ANSWERS = {
    "400": "invalid request (the message says what is wrong)",
    "401": "missing or wrong bearer token (only when the service has tokens)",
    "403": "the token may not do this (another user's job, or private data)",
    "429": "too many requests for this token: wait Retry-After seconds",
    "404": "no such job, or no such route",
    "409": "the job id is a job on several clusters: name one with ?cluster=",
    "415": "the body is not application/json",
    "405": "method not allowed",
    "411": "chunked body: Content-Length required",
    "413": "more than %d events or a body over %d bytes" % (MAX_BATCH, MAX_BODY),
    "503": "database unavailable: try again later",
}


# A route's declaration, kept in its config (not a dict: Bottle would flatten
# one into dotted keys).
RouteDoc = collections.namedtuple("RouteDoc", "summary ok errors params body public")


def endpoint(app, method, path, summary, ok, errors=(), params=(), body=None, public=False):
    """Declare a route and what the OpenAPI document says of it.

    ok: (description, schema name or None); errors: status codes (strings)
    from ERROR_ANSWERS (401 and 429 are added where a token is asked for);
    params: query parameters as (name, description, schema or None); body:
    the request body's schema (a dict); public: True (never a token), or the
    name under which SLM_PUBLIC may open the route to all.
    """
    def declare(callback):
        app.route(path, method, callback, doc=RouteDoc(summary=summary, ok=ok, errors=errors,
                                                       params=params, body=body, public=public))
        return callback
    return declare


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


# Parameters every job listing takes (GET /api/v1/jobs, /summary): filters.
FILTER_PARAMS = frozenset(JOB_FILTERS) | {"status", "name_contains", "since", "until"}
# How a listing may be ordered: sort=KEY (oldest first) or -KEY (newest first).
SORTS = {"active": "last_event_time", "submitted": "first_seen"}
MAX_WAIT = 30
MAX_SUMMARY_DAYS = 92


def check_params(query, known):
    """ApiError 400 for a parameter not in known, or one given twice."""
    unknown = sorted(set(query.keys()) - set(known))
    if unknown:
        raise ApiError(400, "unknown parameter %s" % unknown[0][:100])
    for name in query.keys():
        if len(query.getall(name)) > 1:
            raise ApiError(400, "parameter %s given twice" % name[:100])


def job_filters(query, extra=("limit", "offset")):
    """The filters of a job listing from its query string; ApiError 400.
    extra: the other parameters the route takes."""
    check_params(query, FILTER_PARAMS | set(extra))
    filters = {}
    status = query.getunicode("status", default=None)
    if status:
        wanted = [s.strip().upper() for s in status.split(",") if s.strip()]
        bad = [s for s in wanted if s not in STATUSES]
        if bad:
            raise ApiError(400, "unknown status %r" % bad[0][:100])
        filters["status"] = wanted
    for name in tuple(JOB_FILTERS) + ("name_contains",):
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
    return filters


def wait_param(query):
    """Seconds a long-poll may wait (wait=, 0..MAX_WAIT, decimals allowed)."""
    value = query.getunicode("wait", default=None)
    if value is None or value == "":
        return 0.0
    if not re.match(r"[0-9]{1,2}(\.[0-9]{1,3})?\Z", value) or float(value) > MAX_WAIT:
        raise ApiError(400, "wait must be a number of seconds from 0 to %d" % MAX_WAIT)
    return float(value)


def encode_cursor(sort, row):
    """The opaque `next` of a keyset page: where the page ended, in its order."""
    key = row.get("job_key") or job_key_of(row.get("cluster"), row["job_id"])
    data = compact_json([sort, row[SORTS[sort.lstrip("-")]], key])
    return base64.urlsafe_b64encode(data.encode("utf-8")).decode("ascii").rstrip("=")


def decode_cursor(text, sort):
    """(value, job key) of a cursor this service gave for sort; ApiError 400."""
    try:
        if len(text) > 1024:
            raise ValueError("too long")
        data = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if not (isinstance(data, list) and len(data) == 3 and
                all(isinstance(v, str) for v in data)):
            raise ValueError("not a cursor")
    except (ValueError, TypeError, UnicodeError, RecursionError):
        raise ApiError(400, "cursor is not one this service gave (use the answer's next)")
    if data[0] != sort:
        raise ApiError(400, "cursor was given for sort=%s, not sort=%s" % (data[0][:20], sort))
    return data[1], data[2]


def outbox_json(row):
    """An outbox row as the API shows it: the destination as scheme://host
    only (a webhook's path is its secret), no secret, payload or lease."""
    shown = dict((k, v) for k, v in row.items() if k != "dedup_key")
    shown["destination"] = destination({"url": row["destination"],
                                        "format": row.get("format") or "json"}).shown()
    shown["kind"] = row["dedup_key"].split(":", 1)[0]     # event, rollup or group
    if "status" in row and shown["kind"] == "rollup":
        shown["status"] = "ROLLUP"
    return shown


# Long-polls one token may hold open at once: each holds a thread and looks
# at the database about once a second (a dashboard tab holds one).
MAX_WAITERS = 16


def long_poll(changes, wait, look, ready, who=None):
    """look() (a short transaction of its own each time) until ready(found),
    `wait` seconds pass, or the service stops; returns the last found.
    Woken by the ingestor; looks again at least every Changes.RECHECK seconds
    all the same, for what other instances on the database stored.  A
    token's long-polls beyond MAX_WAITERS at once, and everyone's beyond the
    server's limit (half its workers), are answered 429."""
    deadline = time.monotonic() + wait
    seen = changes.generation
    found = look()
    if ready(found) or wait <= 0 or changes.closed:
        return found
    key = who.key if who is not None and who is not ANYONE else None
    if not changes.enter(key, MAX_WAITERS):
        raise ApiError(429, "too many long-polls at once (at most %d for a token): wait for one"
                       % MAX_WAITERS, {"Retry-After": "1"})
    try:
        while True:
            changes.wait(seen, min(deadline - time.monotonic(), Changes.RECHECK))
            seen = changes.generation
            found = look()
            if ready(found) or deadline - time.monotonic() <= 0 or changes.closed:
                return found
    finally:
        changes.leave(key)


class Reads(object):
    """The answers of the read routes, as JSON-ready data.  The API routes
    send them; the dashboard's pages render the very same (one place for
    what each principal may see: Access)."""

    def __init__(self, db, access, changes):
        self.db = db
        self.access = access
        self.changes = changes

    def visible_job(self, tx, who, job_id, cluster=None):
        """The row of the job of that id (on that cluster, '' for none) who may
        see; ApiError 404 when there is none, 409 when the id is a job on
        several clusters and none was named."""
        rows = [r for r in tx.find_jobs(job_id, cluster) if self.access.may_see(who, r)]
        if not rows:
            raise ApiError(404, "no such job")
        if len(rows) > 1:
            raise ApiError(409, "job %s is on several clusters (%s): say which with ?cluster="
                           % (job_id[:128], ", ".join(sorted(r.get("cluster") or "none"
                                                             for r in rows))[:300]))
        return rows[0]

    def jobs(self, tx, who, query):
        """GET /api/v1/jobs: a page of jobs, most recently active first."""
        filters = self.access.list_filters(who, job_filters(query))
        limit = int_param(query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        offset = int_param(query, "offset", 0, 0, 10 ** 9)
        rows, total = tx.list_jobs(filters, limit, offset)
        return {"jobs": [self.access.job(who, r) for r in rows], "total": total}

    def search(self, tx, who, query):
        """GET /api/v1/search: the listing of /api/v1/jobs plus a name part,
        an order and keyset paging (next), and arrays grouped (tasks)."""
        filters = self.access.list_filters(who, job_filters(
            query, ("limit", "sort", "cursor", "arrays")))
        limit = int_param(query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        sort = query.getunicode("sort", default=None) or "-submitted"
        cursor = query.getunicode("cursor", default=None) or None
        arrays = query.getunicode("arrays", default=None) or "tasks"
        if arrays not in ("tasks", "group"):
            raise ApiError(400, "arrays must be tasks (a row each) or group (one row an array)")
        if sort.lstrip("-") not in SORTS or sort.count("-") > 1:
            raise ApiError(400, "sort must be one of %s, each with - for newest first"
                           % ", ".join(sorted(SORTS)))
        after = decode_cursor(cursor, sort) if cursor is not None else None
        rows, total, more = tx.job_page(filters, limit, 0,
                                        (SORTS[sort.lstrip("-")], sort.startswith("-")),
                                        after, arrays == "group")
        counts = tx.array_task_counts([r["job_key"] for r in rows]) if arrays == "group" \
            else {}
        return {"jobs": [self.access.job(who, r) for r in rows], "total": total,
                "next": encode_cursor(sort, rows[-1]) if more else None,
                "tasks": dict((split_job_key(k)[1], c) for k, c in counts.items())}

    def job_events(self, tx, who, job_id, cluster=None, after=None):
        """The events of a job who may see (None: no such job), after one."""
        try:
            row = self.visible_job(tx, who, job_id, cluster)
        except ApiError as e:
            if e.status == 404:
                return None
            raise
        events = tx.job_events(row["job_key"], after)
        if events is None:
            raise ApiError(400, "after names no event of this job")
        return [self.access.event(who, row.get("user"), e) for e in events]

    def feed(self, tx, who, after, limit, user=None, job_id=None, cluster=None):
        """GET /api/v1/feed: what was stored after `after` (an id of this
        feed), the events who may see, of user's jobs (or one job) only if
        given.  `next` moves past everything looked at, shown or not, so that
        a reader that sees little never scans the same rows twice; with private
        jobs a user looks at their own events only, so that their `next` does
        not move when others' jobs do."""
        if self.access.private_jobs and who.role != "admin":
            user = who.user
        key = job_key_of(cluster, job_id) if job_id is not None and cluster is not None \
            else None
        rows = tx.events_since(after, limit, user, None if key else job_id, key)
        shown = []
        for _, _, owner, raw in rows:
            if self.access.may_see(who, {"user": owner}):
                shown.append(self.access.event(who, owner, json.loads(raw)))
        # past the end (a cursor from a database since replaced): from the end on
        return {"events": shown, "next": rows[-1][0] if rows else
                min(after, tx.last_event_id(user)), "more": len(rows) >= limit}

    def summary(self, tx, who, query):
        """GET /api/v1/summary: the jobs that ended in a window, by final state
        and by hour (a day for windows over 3 days)."""
        filters = self.access.list_filters(who, job_filters(query, ()))
        now = time.time()
        until = filters.pop("until", None) or iso_at(now)
        since = filters.pop("since", None) or iso_at(epoch_of(until) - 86400)
        start, end = epoch_of(since), epoch_of(until)
        if start >= end:
            raise ApiError(400, "since must be before until")
        if end - start > MAX_SUMMARY_DAYS * 86400:
            raise ApiError(400, "the window is at most %d days" % MAX_SUMMARY_DAYS)
        width, step = (13, 3600) if end - start <= 3 * 86400 else (10, 86400)
        counts, buckets = {}, collections.OrderedDict()
        t = start - start % step
        while t < end:
            buckets[iso_at(t)[:width]] = {}
            t += step
        for status, bucket, n in tx.ended_counts(since, until, width, filters):
            counts[status] = counts.get(status, 0) + n
            slot = buckets.setdefault(bucket, {})
            slot[status] = slot.get(status, 0) + n
        ended = sum(counts.values())
        failed = sum(n for status, n in counts.items() if status in FAILURES)
        return {"since": since, "until": until, "bucket": "hour" if step == 3600 else "day",
                "counts": counts, "ended": ended, "failed": failed,
                "failure_rate": round(failed / ended, 4) if ended else None,
                "series": [{"start": (key + ":00:00.000000Z" if step == 3600 else
                                      key + "T00:00:00.000000Z"), "counts": c}
                           for key, c in buckets.items()]}

    def notifications(self, tx, who, query):
        """GET /api/v1/notifications: the outbox, newest first, of one's own
        jobs (everyone's for admins)."""
        check_params(query, ("state", "job_id", "limit", "before"))
        states = [s.strip().lower() for s in (query.getunicode("state", default="") or "")
                  .split(",") if s.strip()]
        bad = [s for s in states if s not in Tx.OUTBOX_STATES]
        if bad:
            raise ApiError(400, "state must be among %s" % ", ".join(Tx.OUTBOX_STATES))
        limit = int_param(query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        before = int_param(query, "before", None, 1, 2 ** 62)
        job_id = query.getunicode("job_id", default=None) or None
        rows = tx.outbox_page(limit + 1, before, None if who.role == "admin" else who.user,
                              job_id, states, self.access.site_destinations(who))
        return {"notifications": [outbox_json(r) for r in rows[:limit]],
                "next": rows[limit - 1]["id"] if len(rows) > limit else None}


def read_body(max_body):
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


def openapi_schemas():
    """The schemas of the API's JSON, from the tables the validation uses."""
    def ref(name):
        return {"$ref": "#/components/schemas/%s" % name}

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
        limit, pattern = TEXT_RULES.get(name, (MAX_TEXT, None))
        props[name] = dict(text, nullable=True, maxLength=limit)
        if pattern is not None:
            props[name]["pattern"] = "^%s$" % pattern.pattern[:-2]
    for name in INT_FIELDS:
        props[name] = {"type": "integer", "format": "int64", "nullable": True}
    props["seq"]["minimum"] = 0
    props["relay"] = relay_schema()
    for name in NUMBER_FIELDS:
        props[name] = {"type": "number", "minimum": 0, "maximum": MAX_NUMBER, "nullable": True}
    for name in LIST_FIELDS:
        props[name] = {"type": "array", "maxItems": MAX_LIST, "items": text, "nullable": True}
    for name in BOOL_FIELDS:
        props[name] = {"type": "boolean", "nullable": True}

    job = {"type": "object", "required": ["job_id", "status", "event_count", "meta"],
           "properties": {}}
    for c in COLUMNS:
        if c.table != "slurm_jobs" or c.shown is None:
            continue
        kind = c.sqlite.split()[0]
        schema = {"type": {"INTEGER": "integer", "REAL": "number"}.get(kind, "string"),
                  "description": c.shown}
        if "NOT NULL" not in c.mysql:
            schema["nullable"] = True
        elif schema["type"] == "integer":
            schema["minimum"] = 0
        if c.name == "status":
            schema["enum"] = list(STATUSES)
        elif c.name in ("meta", "slurm_usage", "beat"):
            schema = {"type": "object", "additionalProperties": True, "description": c.shown,
                      "nullable": c.name != "meta"}
        job["properties"][c.name] = schema
    job["properties"]["verified"] = {
        "type": "boolean", "description": "the service read Slurm's record after the "
        "run ended: any verdict of Slurm's is in"}

    def listing(key, item):
        return {"type": "object", "required": [key],
                "properties": {key: {"type": "array", "items": item}}}

    return {
        "Event": event,
        "EventBatch": {"type": "object", "required": ["events"],
                       "properties": {"events": {"type": "array", "minItems": 1,
                                                 "maxItems": MAX_BATCH, "items": ref("Event")}}},
        "Accepted": {"type": "object", "required": ["accepted", "duplicates"],
                     "properties": {"accepted": {"type": "integer", "minimum": 0},
                                    "duplicates": {"type": "integer", "minimum": 0},
                                    "refused_notifications": {"type": "integer",
                                                              "minimum": 1},
                                    "refused_destinations": {"type": "array", "items": {
                                        "type": "string"}, "description": "scheme://host/… "
                                        "of each destination refused"}}},
        "Job": job,
        "JobList": {"type": "object", "required": ["jobs", "total"],
                    "properties": {"jobs": {"type": "array", "items": ref("Job")},
                                   "total": {"type": "integer", "minimum": 0}}},
        "JobSearch": {"type": "object", "required": ["jobs", "total", "next", "tasks"],
                      "properties": {"jobs": {"type": "array", "items": ref("Job")},
                                     "total": {"type": "integer", "minimum": 0},
                                     "next": {"type": "string", "nullable": True,
                                              "description": "cursor= of the next page "
                                                             "(null: this is the last)"},
                                     "tasks": {"type": "object", "description": "with "
                                               "arrays=group: {array job id: {status: "
                                               "tasks}} of the arrays on the page",
                                               "additionalProperties": {
                                                   "type": "object", "additionalProperties": {
                                                       "type": "integer"}}}}},
        "NotificationList": listing("notifications", {"type": "object"}),
        "EventFeed": {"type": "object", "required": ["events", "next", "more"],
                      "properties": {"events": {"type": "array", "items": ref("Event")},
                                     "next": {"type": "integer", "minimum": 0,
                                              "description": "after= for the next request"},
                                     "more": {"type": "boolean",
                                              "description": "the limit was reached: ask "
                                                             "again at once"}}},
        "Summary": {"type": "object",
                    "required": ["since", "until", "bucket", "counts", "ended", "failed",
                                 "failure_rate", "series"],
                    "properties": {
                        "since": {"type": "string"}, "until": {"type": "string"},
                        "bucket": {"type": "string", "enum": ["hour", "day"]},
                        "counts": {"type": "object", "description": "jobs by final status "
                                   "(LOST included)", "additionalProperties": {
                                       "type": "integer"}},
                        "ended": {"type": "integer", "minimum": 0},
                        "failed": {"type": "integer", "minimum": 0, "description": "of "
                                   "them %s" % ", ".join(sorted(FAILURES))},
                        "failure_rate": {"type": "number", "nullable": True},
                        "series": {"type": "array", "items": {
                            "type": "object", "required": ["start", "counts"],
                            "properties": {"start": {"type": "string"},
                                           "counts": {"type": "object"}}}}}},
        "OutboxPage": {"type": "object", "required": ["notifications", "next"],
                       "properties": {"notifications": {"type": "array", "items": {
                           "type": "object", "properties": {
                               "id": {"type": "integer"}, "job_id": {"type": "string"},
                               "user": {"type": "string", "nullable": True},
                               "status": {"type": "string", "nullable": True},
                               "kind": {"type": "string", "enum": ["event", "rollup", "group"]},
                               "destination": {"type": "string"},
                               "format": {"type": "string"},
                               "state": {"type": "string", "enum": [
                                   "pending", "held", "sent", "failed", "superseded",
                                   "refused"]},
                               "attempts": {"type": "integer"},
                               "last_error": {"type": "string", "nullable": True}}}},
                           "next": {"type": "integer", "nullable": True,
                                    "description": "before= for the next page"}}},
        "EventList": listing("events", ref("Event")),
        "Health": {"type": "object", "required": ["ok", "backend", "database"],
                   "properties": {"ok": {"type": "boolean"},
                                  "backend": {"type": "string", "enum": ["sqlite", "mysql"]},
                                  "database": {"type": "string",
                                               "enum": ["reachable", "unreachable"]}}},
        "Heartbeat": {"type": "object", "required": ["job_id", "time", "interval"],
                      "properties": dict({
                          "job_id": {"type": "string", "minLength": 1, "maxLength": 128},
                          "time": {"type": "string", "format": "date-time"},
                          "interval": {"type": "number", "exclusiveMinimum": True,
                                       "minimum": 0, "maximum": 86400},
                          "user": {"type": "string"},
                          "restart_count": {"type": "integer", "minimum": 0}},
                          **dict((n, {"type": "number", "minimum": 0})
                                 for n in HEARTBEAT_SAMPLES))},
        "HeartbeatAnswer": {"type": "object", "required": ["accepted", "unknown"],
                            "properties": {"accepted": {"type": "integer", "minimum": 0},
                                           "unknown": {"type": "integer", "minimum": 0},
                                           "pace": {"type": "integer", "minimum": 0,
                                                    "description": "the fewest seconds the "
                                                    "next heartbeat of a job should wait (the "
                                                    "service keeps its load bounded)"}}},
        "Whoami": {"type": "object", "required": ["user", "role", "private_jobs"],
                   "properties": {"user": {"type": "string", "nullable": True},
                                  "role": {"type": "string", "enum": list(ROLES)},
                                  "private_jobs": {"type": "boolean"}}},
        "NotifyTest": {"type": "object", "required": ["results"], "properties": {
            "results": {"type": "array", "items": {"type": "object", "properties": {
                "destination": {"type": "string"}, "format": {"type": "string"},
                "state": {"type": "string", "enum": ["sent", "refused", "failed"]},
                "reason": {"type": "string", "nullable": True}}}}}},
        "Error": {"type": "object", "required": ["error"],
                  "properties": {"error": {"type": "string"}}},
    }


def openapi_document(app):
    """The OpenAPI 3.0 description of app's routes, from their declarations."""
    def content(schema_name):
        if schema_name is None:
            return {}
        return {"content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/%s" % schema_name}}}}

    paths = {}
    for route in app.routes:
        doc = route.config.get("doc")
        if doc is None:
            continue
        path = re.sub(r"<([A-Za-z_][A-Za-z0-9_]*)(?::[^>]*)?>", r"{\1}", route.rule)
        description, schema = doc.ok
        responses = {"200": dict({"description": description}, **content(schema))}
        if path == "/metrics":
            responses["200"]["content"] = {"text/plain": {"schema": {"type": "string"}}}
        if path == "/healthz":
            responses["503"] = dict({"description": "unreachable"}, **content("Health"))
        codes = list(doc.errors) + ([] if doc.public is True else ["401"]) + \
            ([] if doc.public else ["429"])
        for code in codes:
            responses[code] = dict({"description": ERROR_ANSWERS[code]}, **content("Error"))
        parameters = [{"name": name, "in": "path", "required": True,
                       "description": "the job id (may contain '/'; percent-encode it)",
                       "schema": {"type": "string", "minLength": 1, "maxLength": 128}}
                      for name in re.findall(r"\{(\w+)\}", path)]
        parameters += [{"name": name, "in": "query", "required": False,
                        "description": description, "schema": schema or {"type": "string"}}
                       for name, description, schema in doc.params]
        operation = {"summary": doc.summary,
                     "operationId": route.callback.__name__,
                     "responses": responses}
        if parameters:
            operation["parameters"] = parameters
        if doc.body is not None:
            operation["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": doc.body}}}
        if doc.public is not True:
            # routes the site may open to all (SLM_PUBLIC) take a token optionally
            operation["security"] = [{"bearer": []}] + ([{}] if doc.public else [])
        paths.setdefault(path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.0.3",
        "info": {"title": "SLM (Slurm Lifecycle Monitor) service", "version": __version__,
                 "description": "Stores the lifecycle events slm.py sends and answers "
                                "questions about jobs.  A job's status is that of its "
                                "strongest event: final statuses beat the others, SUBMITTED "
                                "loses to everything, and within a class the latest "
                                "(time, seq) wins."},
        "components": {
            "schemas": openapi_schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "needed on /api/ routes when the "
                                                          "service has a token"}},
        },
        "paths": paths,
    }


def json_error_handler(keyring, log):
    """Bottle's default error handler: the errors Bottle raises itself (no
    such route, wrong method, bad requests) in the service's JSON shape."""
    def error_page(error):
        status = error.status_code
        if bottle.request.path.startswith("/api/") and status in (404, 405):
            try:   # no probing for routes without a token
                keyring.identify(*request_credentials(bottle.request.environ))
            except ApiError as e:
                status, text, headers = e.status, e.message, e.headers
            else:
                text, headers = None, {}
        else:
            text, headers = None, {}
        if text is None:
            if status >= 500:
                log("internal error: %s" % (error.exception or error.body))
                text = "internal error"
            else:
                text = {404: "not found", 405: "method not allowed"}.get(
                    status, str(error.body or error.status_line)[:200])
        answer = json_error(status, text, headers)
        bottle.response.status = status
        for name, value in answer.headers.items():
            bottle.response.set_header(name, value)
        return answer.body
    return error_page


# A token's test notifications (slm doctor --send-test): one this often at most.
NOTIFY_TEST_EVERY = 5.0


def write_routes(app, ingestor, heartbeats, max_body, sender=None):
    """POST /api/v1/events and /api/v1/heartbeats: through the group commit."""
    @endpoint(app, "POST", "/api/v1/events", "store one event or a batch (idempotent on "
              "event_id)", ("stored (or already stored)", "Accepted"),
              ("400", "401", "403", "411", "413", "429", "503"),
              body={"oneOf": [{"$ref": "#/components/schemas/Event"},
                              {"$ref": "#/components/schemas/EventBatch"}]})
    def post_events(who):
        return json_answer(ingestor.submit(parse_events(read_body(max_body)), who))

    @endpoint(app, "POST", "/api/v1/heartbeats", "a running job's heartbeat: alive, and what "
              "it uses (not stored as an event, never notified)",
              ("recorded (unknown: jobs the service has no event of yet)", "HeartbeatAnswer"),
              ("400", "403", "411", "413", "503"),
              body={"oneOf": [{"$ref": "#/components/schemas/Heartbeat"},
                              {"type": "object", "required": ["heartbeats"], "properties": {
                                  "heartbeats": {"type": "array", "maxItems": MAX_BATCH,
                                                 "items": {"$ref": "#/components/schemas/"
                                                                   "Heartbeat"}}}}]})
    def post_heartbeats(who):
        return json_answer(heartbeats.add(who, parse_heartbeats(read_body(max_body))))

    tested = {}      # token key -> when it last asked for a test

    @endpoint(app, "POST", "/api/v1/notify-test", "send a test notification to each "
              "destination of a relay request now, the way relayed notices go (the "
              "allow-list, the address check, the sender); nothing is stored",
              ("each destination's outcome", "NotifyTest"),
              ("400", "401", "411", "413", "415", "429", "503"),
              body={"type": "object", "required": ["relay"], "properties": {
                  "relay": relay_schema(), "host": {"type": "string", "maxLength": 255,
                                                    "description": "the node that asks"}}})
    def notify_test(who):
        if sender is None:
            raise ApiError(503, "this service sends no notifications")
        data = parse_body(read_body(max_body), "tests", lambda item: item, "test")[0]
        host = data.get("host")
        if host is not None and check_text(host, "host", 255):
            raise ApiError(400, check_text(host, "host", 255))
        try:
            relay = validate_relay(data.get("relay"))
        except ValueError as e:
            raise ApiError(400, str(e))
        now = time.time()
        if now - tested.get(who.key, 0.0) < NOTIFY_TEST_EVERY:
            raise ApiError(429, "one test notification every %g seconds" % NOTIFY_TEST_EVERY,
                           {"Retry-After": str(int(NOTIFY_TEST_EVERY))})
        tested[who.key] = now
        # the test notice slm.py sends directly, naming the node that asks
        event = slm.test_notice(host=host or "the service's host", user=who.user)
        return json_answer({"results": sender.try_now(ingestor.policy, relay, event)})


# A job is its id on its cluster: where an id is a job on several clusters,
# the routes of one job need to be told which.
CLUSTER_PARAM = ("cluster", "the job's cluster, when its id is a job on several (empty: the "
                 "job that ran outside Slurm)", None)


def read_routes(app, db, ingestor, reads):
    """The API's read routes: jobs, a job, its events and notifications, the
    feed, the summary, the outbox, whoami; answers made by reads."""
    access = reads.access
    filter_params = (
        ("status", "comma-separated statuses (any of %s)" % ", ".join(STATUSES), None),
        ("user", "exact user", None), ("name", "exact job name", None),
        ("name_contains", "a part of the job name, in any case (ASCII letters on SQLite)",
         None),
        ("partition", "exact partition", None),
        ("array_job_id", "exact array job id", None),
        ("group", "exact job group (slm submit --group)", None),
        ("cluster", "exact Slurm cluster", None))

    @endpoint(app, "GET", "/api/v1/jobs", "jobs, most recently active first",
              ("a page of jobs and the total", "JobList"), ("400", "401", "403", "503"),
              params=tuple(p for p in filter_params if p[0] != "name_contains") + (
                  ("since", "jobs active at or after: ISO 8601 UTC or YYYY-MM-DD", None),
                  ("until", "jobs active at or before: ISO 8601 UTC or YYYY-MM-DD", None),
                  ("limit", "page size", {"type": "integer", "minimum": 1,
                                          "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}),
                  ("offset", "rows to skip", {"type": "integer", "minimum": 0,
                                              "maximum": 10 ** 9, "default": 0})))
    def list_jobs(tx, who):
        return json_answer(reads.jobs(tx, who, bottle.request.query))

    @endpoint(app, "GET", "/api/v1/search", "jobs as the dashboard lists them: the filters of "
              "/api/v1/jobs and a part of the name, in an order, paged by keyset (no OFFSET "
              "walked), arrays as one row", ("a page of jobs, the total and the next page",
                                              "JobSearch"), ("400", "401", "403", "503"),
              params=filter_params + (
                  ("since", "jobs active at or after: ISO 8601 UTC or YYYY-MM-DD", None),
                  ("until", "jobs active at or before: ISO 8601 UTC or YYYY-MM-DD", None),
                  ("limit", "page size", {"type": "integer", "minimum": 1,
                                          "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}),
                  ("sort", "submitted (by first event) or active (by last event), oldest "
                   "first; with - newest first (default -submitted)", {
                       "type": "string", "default": "-submitted",
                       "enum": sorted(list(SORTS) + ["-" + k for k in SORTS])}),
                  ("cursor", "the next of the previous answer (same sort and filters)", None),
                  ("arrays", "tasks (default: a row per job) or group: the tasks of an array "
                   "that has a row of its own are left out, and tasks counts them by status",
                   {"type": "string", "enum": ["tasks", "group"], "default": "tasks"})))
    def search_jobs(tx, who):
        return json_answer(reads.search(tx, who, bottle.request.query))

    # job ids may contain "/", hence :path; an id ending in "/events" is
    # therefore read as that job's events
    @endpoint(app, "GET", "/api/v1/jobs/<job_id:path>/events",
              "one job's events as received, by (time, seq); with after, only those after "
              "that one, and with wait, waiting up to that long for one (long-poll)",
              ("the events", "EventList"), ("400", "401", "404", "503"), params=(
                  ("after", "an event_id of this job: only the events after it in this "
                   "order", None),
                  ("wait", "when there are none (or the job is not known yet): wait up to "
                   "this many seconds for one", {"type": "number", "minimum": 0,
                                                 "maximum": MAX_WAIT, "default": 0}),
                  CLUSTER_PARAM))
    def job_events(who, job_id):
        query = bottle.request.query
        check_params(query, ("after", "wait", "cluster"))
        after = query.getunicode("after", default=None) or None
        cluster = query.getunicode("cluster", default=None)
        wait = wait_param(query)
        # no transaction held while waiting: each look is one of its own
        found = long_poll(ingestor.changes, wait,
                          lambda: db.run(lambda tx: reads.job_events(tx, who, job_id, cluster,
                                                                     after)),
                          lambda events: bool(events), who)
        if found is None:
            raise ApiError(404, "no such job")
        return json_answer({"events": found})

    @endpoint(app, "GET", "/api/v1/jobs/<job_id:path>/notifications",
              "the notifications the service sent or keeps for a job (destinations shown as "
              "scheme://host only)", ("the notifications", "NotificationList"),
              ("400", "401", "403", "404", "409", "503"), params=(CLUSTER_PARAM,))
    def job_notifications(tx, who, job_id):
        query = bottle.request.query
        check_params(query, ("cluster",))
        cluster = query.getunicode("cluster", default=None)
        try:
            job = reads.visible_job(tx, who, job_id, cluster)
        except ApiError as e:
            # notices of a job whose row is gone (forgotten): the admins' to see
            rows = tx.outbox_list(job_key_of(cluster, job_id)) if who.role == "admin" and \
                e.status == 404 else None
            if not rows:
                raise
        else:
            if not access.owns(who, job.get("user")):
                raise ApiError(403, "a job's notifications are its owner's (and admins') only")
            rows = tx.outbox_list(job["job_key"])
        hidden = access.site_destinations(who)
        return json_answer({"notifications": [outbox_json(row) for row in rows
                                              if row["destination"] not in hidden]})

    # not GET /api/v1/events: that path is the writers', and a GET there says 405
    @endpoint(app, "GET", "/api/v1/feed", "the events stored after a point, in the order "
              "they were stored (a live feed: long-poll with wait)",
              ("the events and where to ask from next", "EventFeed"),
              ("400", "401", "403", "503"), params=(
                  ("after", "the next of the previous answer (0, the default: from the first "
                   "event stored)", {"type": "integer", "minimum": 0, "default": 0}),
                  ("wait", "when there are none: wait up to this many seconds for one",
                   {"type": "number", "minimum": 0, "maximum": MAX_WAIT, "default": 0}),
                  ("limit", "events looked at, at most (more: true when there may be more)",
                   {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                    "default": DEFAULT_LIMIT}),
                  ("user", "only the events of this user's jobs", None),
                  ("job_id", "only the events of this job (in the order they were stored, "
                   "late ones included: what a job's page follows)", None),
                  ("cluster", "with job_id: the job's cluster ('' for none)", None)))
    def event_feed(who):
        query = bottle.request.query
        check_params(query, ("after", "wait", "limit", "user", "job_id", "cluster"))
        after = int_param(query, "after", 0, 0, 10 ** 10 - 1)
        limit = int_param(query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        job_id = query.getunicode("job_id", default=None) or None
        cluster = query.getunicode("cluster", default=None)
        user = query.getunicode("user", default=None) or None
        if user is not None:
            access.list_filters(who, {"user": user})       # 403 for others' with private jobs
        wait = wait_param(query)
        state = {"after": after}

        def look():
            found = db.run(lambda tx: reads.feed(tx, who, state["after"], limit, user, job_id,
                                                 cluster))
            state["after"] = found["next"]    # what was looked at is not looked at again
            return found
        found = long_poll(ingestor.changes, wait, look,
                          lambda f: bool(f["events"]) or f["more"], who)
        return json_answer(found)

    @endpoint(app, "GET", "/api/v1/summary", "the jobs that ended in a window: counts by "
              "final state, failure rate, and per hour (per day over 3 days)",
              ("counts and the series", "Summary"), ("400", "401", "403", "503"),
              params=filter_params + (
                  ("since", "the window's start (default: 24 hours before until)", None),
                  ("until", "the window's end (default: now); at most %d days"
                   % MAX_SUMMARY_DAYS, None)))
    def summary(tx, who):
        return json_answer(reads.summary(tx, who, bottle.request.query))

    @endpoint(app, "GET", "/api/v1/notifications", "the relay's outbox, newest first: one's "
              "own jobs' notifications (everyone's for admins), destinations as "
              "scheme://host only", ("a page of notifications", "OutboxPage"),
              ("400", "401", "503"), params=(
                  ("state", "comma-separated: %s (retrying: pending after a failed attempt)"
                   % ", ".join(Tx.OUTBOX_STATES), None),
                  ("job_id", "one job's only", None),
                  ("limit", "page size", {"type": "integer", "minimum": 1,
                                          "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}),
                  ("before", "the next of the previous page", {"type": "integer",
                                                                "minimum": 1})))
    def notifications(tx, who):
        return json_answer(reads.notifications(tx, who, bottle.request.query))

    @endpoint(app, "GET", "/api/v1/jobs/<job_id:path>", "one job", ("the job", "Job"),
              ("400", "401", "404", "409", "503"), params=(CLUSTER_PARAM,))
    def get_job(tx, who, job_id):
        query = bottle.request.query
        check_params(query, ("cluster",))
        return json_answer(access.job(who, reads.visible_job(
            tx, who, job_id, query.getunicode("cluster", default=None))))

    @endpoint(app, "GET", "/api/v1/whoami", "who the token belongs to, and what it may do",
              ("the token's user and role", "Whoami"), ("401",))
    def whoami(who):
        return json_answer({"user": who.user, "role": who.role,
                            "private_jobs": access.private_jobs})


def ops_routes(app, db, metrics, log, changes):
    """/healthz, /metrics and /openapi.json: what operators and tools ask."""
    document = []
    @endpoint(app, "GET", "/healthz", "is the database reachable (without a token where "
              "SLM_PUBLIC has healthz)", ("reachable", "Health"), ("401",), public="healthz")
    def healthz():
        try:
            db.ping()
            up = True
        except StoreError as e:
            metrics.db_error()
            log("health check: database unavailable: %s" % e)
            up = False
        return json_answer({"ok": up, "backend": db.backend,
                            "database": "reachable" if up else "unreachable"},
                           200 if up else 503)

    @endpoint(app, "GET", "/metrics", "Prometheus metrics (without a token where SLM_PUBLIC "
              "has metrics)", ("Prometheus text format 0.0.4", None), ("401",), public="metrics")
    def prometheus():
        try:
            counts, outbox = db.run(lambda tx: (tx.job_counts(), tx.outbox_counts()))
        except StoreError:
            metrics.db_error()
            counts = outbox = None
        return bottle.HTTPResponse(body=metrics.render(counts, outbox, changes.waiting()).encode(
            "utf-8"),
                                   headers={"Content-Type": "text/plain; version=0.0.4"})

    @endpoint(app, "GET", "/openapi.json", "this document (no token needed)",
              ("OpenAPI 3.0 document", None), public=True)
    def openapi_json():
        if not document:      # the routes are all there by the first request
            document.append(openapi_document(app))
        return json_answer(document[0])


def make_app(db, ingestor, heartbeats, keyring, metrics, log, access=None, limiter=None,
             public=(), max_body=MAX_BODY, pages=None, hosts=None, sender=None):
    """The Bottle application: the routes, on what it is handed.

    public: which of "healthz" and "metrics" answer without a token.
    pages: pages(app, reads, keyring) adds the dashboard's routes (they are
    no API routes: the OpenAPI document leaves them out).
    """
    reads = Reads(db, access or Access(), ingestor.changes)
    app = SLMApp()
    app.metrics = metrics
    app.service_plugin = ServicePlugin(db, keyring, metrics, log, limiter, public, hosts)
    app.install(app.service_plugin)
    app.default_error_handler = json_error_handler(keyring, log)
    write_routes(app, ingestor, heartbeats, max_body, sender)
    read_routes(app, db, ingestor, reads)
    ops_routes(app, db, metrics, log, ingestor.changes)
    if pages is not None:
        pages(app, reads, keyring)
    return app


# ---------------------------------------------------------------------------
# Dashboard: HTML pages at /, on the web section's plugin and read answers
# ---------------------------------------------------------------------------

# Pages name nothing outside this service (login nodes are often offline) and
# run no inline code: a job's name, command or output is anybody's text.
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'")
PAGE_SIZE = 50
LIVE_WAIT = 25          # seconds a page's long-poll waits (under MAX_WAIT)
# A live page's state (live, stale, offline, paused: text, not only colour)
# and its pause button; slm.js brings them to life
LIVE_CONTROLS = ('<span id="live" class="live live-off">static</span>'
                 '<button id="pause" type="button" aria-pressed="false" hidden>'
                 'Pause live updates</button>')
# The summary strip's windows, as ?window= names them.
WINDOWS = collections.OrderedDict((("1h", 3600), ("24h", 86400), ("7d", 7 * 86400),
                                   ("30d", 30 * 86400)))
# Each status's colour class (the table's kind); the status is always written out as well.
STATE_KIND = dict((s.name, s.kind) for s in slm.STATUS_TABLE)


def state_choice(statuses):
    """A state filter's value: the statuses, in the table's order."""
    statuses = set(statuses)
    return ",".join(s for s in STATUSES if s in statuses)


# The list's state filter: what people ask for, as the statuses it means.
STATE_CHOICES = (
    ("", "any state"),
    (state_choice(ALIVE), "running"),
    (state_choice(WAITING), "pending"),
    (state_choice(s.name for s in slm.STATUS_TABLE if s.phase == "paused"), "paused"),
    (state_choice(s.name for s in slm.STATUS_TABLE if s.kind == "ok"), "completed"),
    (state_choice(FAILURES), "failed (any way)"),
    (state_choice(("FAILED", "SUBMIT_FAILED")), "failed (exit code)"),
    ("TIMEOUT", "timeout"),
    ("OUT_OF_MEMORY", "out of memory"),
    ("LOST", "lost"),
    (state_choice(s.name for s in slm.STATUS_TABLE if s.kind == "off"), "cancelled"),
)
SORT_CHOICES = (("-submitted", "newest first"), ("submitted", "oldest first"),
                ("-active", "latest activity first"), ("active", "earliest activity first"))
OUTBOX_CHOICES = (("", "any state"), ("pending", "pending"), ("retrying", "retrying"),
                  ("held", "held"), ("failed", "given up"), ("superseded", "superseded"),
                  ("refused", "refused"), ("sent", "sent"))
# The lifeline's stretches, by the phase of the status that starts one.
STRETCH = dict((s.name, {"waiting": "pending", "requeued": "pending", "running": "running",
                         "paused": "paused", "ending": "terminating"}[s.phase])
               for s in slm.STATUS_TABLE if s.phase in ("waiting", "requeued", "running",
                                                        "paused", "ending"))
STRETCH_NAMES = {"pending": "Pending", "running": "Running", "paused": "Paused",
                 "terminating": "Terminating"}
# Page parameters that are the page's own, not the listing's.
LIST_PAGE_ONLY = ("all", "window")


DASHBOARD_CSS = """\
:root{--fg:#1d232b;--muted:#4e5966;--bg:#fff;--line:#d5dbe2;--soft:#f3f5f8;--link:#0b4f8a;
--focus:#c25e00}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
color:var(--fg);background:var(--bg)}
a{color:var(--link)}
a:focus-visible,button:focus-visible,input:focus-visible,select:focus-visible,
pre:focus-visible,summary:focus-visible{outline:3px solid var(--focus);outline-offset:2px}
.skip{position:absolute;left:-999px;top:0;background:#fff;padding:.5em}
.skip:focus{left:.5em;z-index:9}
.sr-only{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);
white-space:nowrap}
.top{display:flex;flex-wrap:wrap;align-items:center;gap:.4em 1.2em;padding:.5em 1em;
background:#0b2e4f;color:#fff}
.top a{color:#fff;text-decoration:none}
.top nav a{padding:.2em .1em;margin-right:.8em}
.top nav a[aria-current]{border-bottom:2px solid #fff}
.brand{font-weight:700;letter-spacing:.05em}
.account{margin-left:auto;display:flex;gap:.6em;align-items:center}
.role{opacity:.85}
.signout{margin:0}
.signout button{background:transparent;color:#fff;border:1px solid #9bb3c9;border-radius:4px;
padding:.15em .6em;font:inherit;cursor:pointer}
main{padding:.8em 1em 2em;max-width:1400px;margin:0 auto}
h1{font-size:1.45em;margin:.3em 0 .5em;overflow-wrap:anywhere}
h2{font-size:1.1em;margin:1.2em 0 .4em}
.summary{border:1px solid var(--line);border-radius:6px;padding:.2em .8em .5em;
background:var(--soft)}
.summary h2{display:inline-block;margin:.5em 1em .3em 0}
.windows{display:inline-flex;gap:.6em}
.windows a[aria-current]{font-weight:700;text-decoration:none;color:var(--fg)}
.counts{list-style:none;padding:0;margin:.3em 0;display:flex;flex-wrap:wrap;gap:.4em 1em}
.counts .n{font-weight:700}
.rate{margin:.2em 0;color:var(--muted)}
.chart{display:block;margin-top:.3em}
.filters{display:flex;flex-wrap:wrap;gap:.5em .8em;align-items:flex-end;margin:1em 0 .6em}
.filters label{display:flex;flex-direction:column;font-size:.85em;color:var(--muted)}
.filters input,.filters select{font:inherit;font-size:1.05em;color:var(--fg);padding:.25em .4em;
border:1px solid #8a96a3;border-radius:4px;min-width:8em;max-width:100%;background:#fff}
.actions{display:flex;gap:.8em;align-items:center}
button{font:inherit;cursor:pointer}
.filters button,.signin button,#pause{background:#0b4f8a;color:#fff;border:0;border-radius:4px;
padding:.35em 1em}
#pause{background:#fff;color:var(--link);border:1px solid var(--link)}
.bar{display:flex;flex-wrap:wrap;gap:.5em 1em;align-items:center;margin:.4em 0}
.spacer{flex:1}
.live{font-size:.9em;padding:.1em .6em;border-radius:1em;border:1px solid currentColor}
.live::before{content:"\\25CF  "}
.live-live{color:#136c2e}.live-stale{color:#8a4b00}.live-offline{color:#b3261e}
.live-paused,.live-off{color:var(--muted)}
.table-wrap{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.35em .5em;border-bottom:1px solid var(--line);vertical-align:top}
th{font-size:.85em;color:var(--muted);font-weight:600;white-space:nowrap}
th a{color:inherit}
th[aria-sort=descending] a::after{content:" \\25BC"}
th[aria-sort=ascending] a::after{content:" \\25B2"}
#jobs tbody tr:hover,#jobs tbody tr:focus-within{background:#eef4fb}
td.id a{font-weight:600}
td.name{overflow-wrap:anywhere;max-width:22em}
td.num{white-space:nowrap}
.left{display:block;font-size:.85em;color:var(--muted)}
.tasks{display:block;font-size:.85em;color:var(--muted);margin-top:.2em}
.empty{color:var(--muted);text-align:center;padding:1.5em}
.pager{display:flex;gap:1.5em;margin:.8em 0}
.st{display:inline-block;font-size:.8em;font-weight:700;letter-spacing:.02em;padding:.05em .5em;
border-radius:3px;border:1px solid;white-space:nowrap}
.st-wait{background:#eceef8;color:#2b3a8f}.st-run{background:#e4f0fc;color:#0b4a8f}
.st-pause{background:#fff0dc;color:#7a4100}.st-end{background:#f5e8f7;color:#6a1b7e}
.st-ok{background:#e6f4e8;color:#1b5e20}.st-bad{background:#fdeaea;color:#a3141b}
.st-late{background:#fff4d6;color:#6f4700}.st-off{background:#eef0f2;color:#3b4650}
.st-lost{background:#fbe6ef;color:#86104a}.st-warn{background:#fffbd9;color:#5a4a00}
tr.flash{animation:flash 2s ease-out}
@keyframes flash{from{background:#fff3b0}to{background:transparent}}
.crumbs{font-size:.9em;margin-top:.4em}
.jid{font-family:ui-monospace,"DejaVu Sans Mono",monospace}
.facts{color:var(--muted);margin-top:-.3em}
.why{border-left:4px solid var(--link);background:var(--soft);padding:.1em 1em .6em}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.3em 1em;margin:.4em 0}
dt{font-weight:600}dd{margin:0;overflow-wrap:anywhere}
.lifeline{display:block;overflow:visible;background:var(--soft);border:1px solid var(--line);border-radius:4px}
.seg-pending{fill:#9aa5d6}.seg-running{fill:#1f77c9}.seg-paused{fill:#f0a030}
.seg-terminating{fill:#9c4db3}
.mark{stroke:#3b4650;stroke-width:4}.mk-ok{stroke:#1b7a2a}.mk-bad,.mk-lost{stroke:#c0262d}
.mk-late{stroke:#a86a00}.mk-warn{stroke:#c9a400}
.axis{display:flex;justify-content:space-between;font-size:.8em;color:var(--muted)}
.steps{padding-left:1.4em;margin:.4em 0}
.key{display:inline-block;width:.8em;height:.8em;margin-right:.4em;border-radius:2px}
.key-pending{background:#9aa5d6}.key-running{background:#1f77c9}.key-paused{background:#f0a030}
.key-terminating{background:#9c4db3}
.f-ok{fill:#2e8b3e}.f-bad{fill:#c0262d}.f-late{fill:#d08a00}.f-off{fill:#8593a0}
.f-lost{fill:#b0306a}.f-wait,.f-run,.f-pause,.f-end,.f-warn{fill:#6a7f95}
pre{background:#14181d;color:#e8edf2;padding:.8em;border-radius:4px;overflow:auto;
max-height:32em;white-space:pre-wrap;overflow-wrap:anywhere;font-size:.85em}
meter{width:8em;vertical-align:middle}
.ob{font-weight:600}.ob-failed,.ob-refused{color:#a3141b}.ob-sent{color:#1b5e20}
.ob-held,.ob-pending{color:#7a4100}
.fmt{color:var(--muted);font-size:.85em}
.error{color:#a3141b;font-weight:600}
.signin{max-width:28em}
.signin form{display:flex;flex-direction:column;gap:.5em}
.signin input{font:inherit;padding:.4em;border:1px solid #8a96a3;border-radius:4px}
.hint,.lead{color:var(--muted)}
code{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:.9em}
@media (max-width:640px){
main{padding:.6em .6em 2em}
.opt{display:none}
.filters label{flex:1 1 45%}
.filters input,.filters select{min-width:0;width:100%}
th,td{padding:.3em .3em}
#jobs thead{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}
#jobs,#jobs tbody{display:block}
#jobs tr{display:grid;grid-template-columns:minmax(0,1fr) auto;grid-template-areas:
"id state" "name name" "time exit";gap:.15em .6em;padding:.45em .2em;
border-bottom:1px solid var(--line)}
#jobs td{border:0;padding:0;min-width:0}
#jobs td.opt{display:none}
#jobs td.id{grid-area:id;overflow-wrap:anywhere}
#jobs td.name{grid-area:name;max-width:none}
#jobs td.state{grid-area:state;text-align:right}
#jobs td.num{grid-area:time}
#jobs td.exit{grid-area:exit;text-align:right}
#jobs td.empty{grid-column:1/3}
.table-wrap{overflow-x:visible}
table.events,table.outbox,table.events tbody,table.outbox tbody{display:block}
table.events thead,table.outbox thead{position:absolute;width:1px;height:1px;overflow:hidden;
clip:rect(0 0 0 0)}
table.events tr,table.outbox tr{display:block;padding:.4em .2em;border-bottom:1px solid var(--line)}
table.events td,table.outbox td{display:block;border:0;padding:.05em 0;overflow-wrap:anywhere}
table.events td[data-label]::before,table.outbox td[data-label]::before{content:attr(data-label)": ";
color:var(--muted);font-size:.85em}
dl{grid-template-columns:minmax(6em,max-content) minmax(0,1fr)}
}
.st-note{background:#eaf5ee;color:#245a36}
.mk-note{stroke:#2f7a45}
"""

DASHBOARD_JS = r"""// The SLM dashboard's one script: local times, ticking clocks, live updates
// (one long-poll at a time), keyboard rows.  The pages work without it.
"use strict";
(function () {
  var body = document.body, data = body.dataset;
  var live = document.getElementById("live"), pauseButton = document.getElementById("pause");
  var announcer = document.getElementById("announce");
  var paused = false, running = false, controller = null, failures = 0;
  var REDRAW = 2000, drawn = 0;    // when the page was last drawn again (ms)

  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function duration(s) {           // as slm's duration_text
    s = Math.max(0, Math.round(s));
    if (s < 60) return s + "s";
    var m = Math.floor(s / 60); s %= 60;
    if (m < 60) return m + "m" + pad(s) + "s";
    var h = Math.floor(m / 60); m %= 60;
    if (h < 24) return h + "h" + pad(m) + "m";
    return Math.floor(h / 24) + "d" + pad(h % 24) + "h";
  }
  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (t) {
      var d = new Date(t.getAttribute("datetime"));
      if (isNaN(d.getTime()) || t.title) return;
      t.title = t.textContent;
      t.textContent = d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) +
        " " + pad(d.getHours()) + ":" + pad(d.getMinutes()) +
        (t.dataset.s ? ":" + pad(d.getSeconds()) : "");
    });
  }
  function tick() {
    var now = Date.now() / 1000;
    document.querySelectorAll("[data-since]").forEach(function (cell) {
      var spent = now - parseFloat(cell.dataset.since), limit = parseFloat(cell.dataset.limit || "0");
      var el = cell.querySelector(".el"), left = cell.querySelector(".left");
      if (el) el.textContent = duration(spent) + (limit ? " / " + duration(limit) : "");
      if (left && limit) left.textContent = limit > spent ? duration(limit - spent) + " left" : "over the limit";
    });
  }
  function state(name, text) {
    if (!live) return;
    live.className = "live live-" + name;
    live.textContent = text || name;
  }
  function say(text) { if (announcer && text) announcer.textContent = text; }
  function sleep(ms) { return new Promise(function (done) { setTimeout(done, ms); }); }

  // the page again, and the parts marked data-live swapped in (one renderer: the server's)
  async function refresh(changed) {
    var answer = await fetch(location.href, {headers: {Accept: "text/html"}, credentials: "same-origin"});
    if (!answer.ok) throw new Error("the page answered " + answer.status);
    var doc = new DOMParser().parseFromString(await answer.text(), "text/html");
    var focused = document.activeElement && document.activeElement.closest("tr[data-job]");
    var focusJob = focused ? focused.dataset.job : null;
    document.querySelectorAll("[data-live][id]").forEach(function (old) {
      var fresh = doc.getElementById(old.id);
      if (!fresh) return;
      old.querySelectorAll("details[open][id]").forEach(function (d) {
        var twin = fresh.querySelector("#" + d.id);
        if (twin) twin.open = true;
      });
      old.replaceWith(fresh);
      localTimes(fresh);
    });
    document.querySelectorAll("tr[data-job]").forEach(function (row) {
      if (changed[row.dataset.job]) row.classList.add("flash");
      if (focusJob && row.dataset.job === focusJob) { var a = row.querySelector("a"); if (a) a.focus(); }
    });
    tick();
  }

  function feedUrl(after) {
    var url = data.feed, join = url.indexOf("?") < 0 ? "?" : "&";
    return url + join + "after=" + encodeURIComponent(after) + "&wait=" + data.wait + "&limit=500";
  }

  async function follow() {
    if (running) return;
    running = true;
    var after = data.after;
    while (!paused) {
      controller = new AbortController();
      var overdue = setTimeout(function () { state("stale", "stale: the service is slow to answer"); },
                               (parseFloat(data.wait) + 10) * 1000);
      try {
        var answer = await fetch(feedUrl(after), {headers: {Accept: "application/json"},
                                                  credentials: "same-origin", signal: controller.signal});
        clearTimeout(overdue);
        if (answer.status === 401) { state("offline", "signed out: reload the page to sign in"); break; }
        if (!answer.ok) {
          var retry = parseFloat(answer.headers.get("Retry-After") || "0");
          throw Object.assign(new Error("answered " + answer.status), {retry: retry});
        }
        var got = await answer.json();
        failures = 0;
        state("live");
        var events = got.events || [];
        after = got.next;
        if (events.length) {
          var changed = {}, lines = [];
          events.forEach(function (e) { changed[e.job_id] = true; });
          events.slice(-3).forEach(function (e) {
            lines.push("Job " + e.job_id + (e.job_name ? " (" + e.job_name + ")" : "") + ": " + e.status);
          });
          if (events.length > 3) lines.push("and " + (events.length - 3) + " more events");
          // a busy service: the page is drawn again at most every REDRAW ms
          var gap = REDRAW - (Date.now() - drawn);
          if (gap > 0) await sleep(gap);
          drawn = Date.now();
          await refresh(changed);
          say(lines.join(". "));
        }
        if (got.more) continue;
      } catch (error) {
        clearTimeout(overdue);
        if (paused) break;
        failures += 1;
        state(failures > 1 || !navigator.onLine ? "offline" : "stale",
              failures > 1 ? "offline: retrying" : "stale: retrying");
        await sleep(Math.max((error.retry || 0) * 1000, Math.min(30000, 1000 * Math.pow(2, failures - 1))));
      }
    }
    running = false;
  }

  function setPaused(now) {
    paused = now;
    pauseButton.setAttribute("aria-pressed", now ? "true" : "false");
    pauseButton.textContent = now ? "Resume live updates" : "Pause live updates";
    if (now) {
      if (controller) controller.abort();
      state("paused", "paused");
    } else {
      state("live", "live");
      follow();
    }
  }

  localTimes(document);
  tick();
  setInterval(tick, 5000);
  if (data.feed && live && pauseButton) {
    pauseButton.hidden = false;
    pauseButton.addEventListener("click", function () { setPaused(!paused); });
    state("live", "live");
    follow();
    window.addEventListener("offline", function () { state("offline", "offline"); });
  }

  // empty filter fields stay out of the address (it is what a bookmark keeps)
  document.querySelectorAll("form.filters").forEach(function (form) {
    form.addEventListener("submit", function () {
      form.querySelectorAll("input, select").forEach(function (field) {
        if (!field.value) field.disabled = true;
      });
    });
  });

  // up and down arrows (or j and k) move between the rows of the job list
  document.addEventListener("keydown", function (event) {
    var row = event.target.closest && event.target.closest("#rows tr");
    if (!row || event.altKey || event.ctrlKey || event.metaKey) return;
    var next = null;
    if (event.key === "ArrowDown" || event.key === "j") next = row.nextElementSibling;
    if (event.key === "ArrowUp" || event.key === "k") next = row.previousElementSibling;
    if (next && next.querySelector("a")) { event.preventDefault(); next.querySelector("a").focus(); }
  });
  document.documentElement.setAttribute("data-ready", "1");
})();
"""

def esc(value):
    return html.escape("" if value is None else str(value), quote=True)


def badge(status):
    return '<span class="st st-%s">%s</span>' % (STATE_KIND.get(status, "off"),
                                                 esc(status or "UNKNOWN"))


def shown_time(text, seconds=False):
    """A stored time as a <time> (UTC; the page's script shows it in local time)."""
    if not text:
        return ""
    return '<time datetime="%s"%s>%s UTC</time>' % (
        esc(text), ' data-s="1"' if seconds else "",
        esc(text[:19 if seconds else 16].replace("T", " ")))


def limit_seconds(text):
    """Seconds in an sbatch --time value (M, M:S, H:M:S, D-H, D-H:M, D-H:M:S), or None."""
    m = re.match(r"(?:(\d{1,4})-)?(\d{1,6})(?::(\d\d?))?(?::(\d\d?))?\Z",
                 text.strip(), re.ASCII) if isinstance(text, str) else None
    if not m:
        return None
    days, a, b, c = m.groups()
    if days is not None:
        return int(days) * 86400 + int(a) * 3600 + int(b or 0) * 60 + int(c or 0)
    if c is not None:
        return int(a) * 3600 + int(b) * 60 + int(c)
    return int(a) * 60 + int(b or 0)


def job_url(job_id, cluster=None):
    """A job's page (its cluster named: an id may be a job on several)."""
    return "/jobs/" + urllib.parse.quote(job_id, safe="") + (
        "?" + urllib.parse.urlencode([("cluster", cluster)]) if cluster else "")


def query_url(path, pairs, **changes):
    """path?query from (name, value) pairs with changes applied (None drops one)."""
    out = [(k, v) for k, v in pairs if k not in changes and v]
    out += [(k, v) for k, v in changes.items() if v]
    return path + ("?" + urllib.parse.urlencode(out) if out else "")


def lifeline(events, now):
    """The stretches of a job's life, from its events in order: dicts with
    kind (pending, running, paused, terminating), start, end (epochs) and run
    (the requeue count); and marks: dicts with status, time, run, what.  An
    ending the wrapper reported ends the run; Slurm's later word on it (a
    correction) is a mark, not a longer run."""
    stretches, marks = [], []
    kind = since = None
    run, ended = 0, False

    def close(at):
        if kind is not None and at > since:
            stretches.append({"kind": kind, "start": since, "end": at, "run": run})
    for event in events:
        at = epoch_of(parse_event_time(event.get("time")))    # events keep the time as sent
        if at is None:
            continue
        status, this_run = event.get("status"), event_run(event)
        if this_run > run:                # a requeued job runs again: it waited since
            close(at)                     # the run before it ended
            kind, run = "pending", this_run
            since, ended = (since if ended else at), False
        elif this_run < run:
            continue
        if status in ENDED or status in RUN_ENDS:
            marks.append({"status": status, "time": at, "run": run,
                          "source": event.get("source"), "corrects": event.get("corrects")})
            if not ended:
                close(at)
                kind, ended = ("pending", False) if status in RUN_ENDS else (None, True)
                since = at
            continue
        if status in NOTES or status == "SIGNALED":
            marks.append({"status": status, "time": at, "run": run,
                          "source": event.get("source"), "corrects": None})
            if status == "SIGNALED" and kind is None and not ended:
                kind, since = "running", at
            continue
        new = STRETCH.get(status)
        if new is None or ended or new == kind:
            continue
        close(at)
        kind, since = new, at
    if kind is not None and not ended:
        close(max(now, since))
    return stretches, marks


def safe_next(target):
    """Where to go after signing in: a path on this service, never elsewhere
    (and ASCII, as a Location header must be)."""
    if not isinstance(target, str) or not target.startswith("/") or \
            target.startswith("//") or target.startswith("/\\") or \
            not target.isascii() or not target.isprintable():
        return "/"
    return target


def form_fields(body):
    """The fields of an urlencoded form body (the first of each); ApiError 400."""
    try:
        pairs = urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True,
                                       max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "not a form")
    fields = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return fields


DASHBOARD_ICON = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" \
height="16" rx="3" fill="#0b4f8a"/><path d="M2 11h3l2-6 2 8 2-4h3" fill="none" stroke="#fff" \
stroke-width="1.6"/></svg>
"""


class Dashboard(object):
    """The pages: the job list (/), a job (/jobs/ID, where notifications
    link), the relay's outbox (/delivery), signing in and out, and their
    two assets.  Each page reads through the same answers as the JSON API
    (Reads: the same Access), in the plugin's transaction, with its errors
    shown as pages; the script only makes them live."""

    def __init__(self, log=None):
        self.log = log or say
        self.assets = {"slm.css": ("text/css; charset=utf-8", DASHBOARD_CSS),
                       "slm.js": ("text/javascript; charset=utf-8", DASHBOARD_JS),
                       "icon.svg": ("image/svg+xml", DASHBOARD_ICON)}
        self.versions = dict((name, hashlib.sha256(text.encode("utf-8")).hexdigest()[:12])
                             for name, (_, text) in self.assets.items())

    # -- the frame of every page -------------------------------------------------

    def asset(self, name):
        return "/static/%s?v=%s" % (name, self.versions[name])

    def answer(self, body, status=200, headers=None):
        response = bottle.HTTPResponse(body=body.encode("utf-8"), status=status, headers={
            "Content-Type": "text/html; charset=utf-8", "Content-Security-Policy": PAGE_CSP,
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
            "X-Frame-Options": "DENY", "Cache-Control": "no-store"})
        for name, value in (headers or {}).items():
            response.set_header(name, value)
        return response

    def frame(self, title, main, who=None, section=None, data=None, head=""):
        """A whole page: title, the top bar (who is signed in), main, the
        screen readers' announcement region."""
        attrs = "".join(' data-%s="%s"' % (k, esc(v)) for k, v in (data or {}).items())
        nav = "".join('<a href="%s"%s>%s</a>' % (href, ' aria-current="page"'
                                                  if key == section else "", label)
                      for key, href, label in (("jobs", "/", "Jobs"),
                                               ("delivery", "/delivery", "Delivery")))
        account = ""
        if who is not None and (who.user or who.key == "shared"):
            account = '<span class="who">%s <span class="role">(%s)</span></span>' % (
                esc(who.user or "shared token"), esc(who.role))
        if session_cookie(bottle.request.environ):
            account += ('<form method="post" action="/signout" class="signout">'
                        '<button type="submit">Sign out</button></form>')
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<title>%s · SLM</title><link rel="stylesheet" href="%s">'
            '<link rel="icon" href="%s" type="image/svg+xml">%s'
            '<script src="%s" defer></script></head>\n<body%s>'
            '<a class="skip" href="#main">Skip to the content</a>'
            '<header class="top"><a class="brand" href="/">SLM</a>'
            '<nav aria-label="Sections">%s</nav><div class="account">%s</div></header>\n'
            '<main id="main">%s</main>\n'
            '<div id="announce" class="sr-only" role="status" aria-live="polite"></div>'
            '</body></html>\n' % (esc(title), self.asset("slm.css"), self.asset("icon.svg"),
                                  head, self.asset("slm.js"), attrs, nav, account, main))

    def error_page(self, keyring):
        """PageDoc.error: a failure as a page; 401 is the sign-in form."""
        def render(status, message, headers):
            headers = dict((k, v) for k, v in headers.items() if k != "WWW-Authenticate")
            if status == 401:
                return self.signin_form(keyring, 401, headers)
            title = "%d %s" % (status, bottle.HTTP_CODES.get(status, "Error"))
            main = ('<h1>%s</h1><p class="error" role="alert">%s</p>'
                    '<p><a href="/">Back to the job list</a></p>' % (esc(title), esc(message)))
            return self.answer(self.frame(title, main), status, headers)
        return render

    # -- signing in ----------------------------------------------------------------

    def signin_form(self, keyring, status=200, headers=None, problem=None, after=None):
        environ = bottle.request.environ
        if after is None:      # back here after signing in (PATH_INFO is decoded: quote it)
            after = urllib.parse.quote(environ.get("PATH_INFO", "/").encode("latin-1",
                                                                           "replace"))
            if environ.get("QUERY_STRING"):
                after += "?" + environ["QUERY_STRING"]
        head = ""
        if problem is None and session_cookie(environ) and status == 401:
            problem = ("The token this browser kept is no longer accepted (revoked, or the "
                       "service's tokens changed): sign in again.")
        elif problem is None and environ.get("HTTP_SEC_FETCH_SITE") == "cross-site":
            # a link from another site (a chat notification) does not carry the
            # SameSite=Strict cookie; the same address again from here does
            head = '<meta http-equiv="refresh" content="0">'
        if not keyring.required:
            main = ('<h1>Sign in</h1><p>This service has no tokens: there is nothing to sign '
                    'in to. <a href="/">Go to the jobs</a>.</p>')
        else:
            main = (
                '<div class="signin"><h1>Sign in</h1>%s'
                '<form method="post" action="/signin"><label for="token">Your SLM token</label>'
                '<input id="token" name="token" type="password" autocomplete="current-password"'
                ' required spellcheck="false" autofocus%s>'
                '<input type="hidden" name="next" value="%s">'
                '<button type="submit">Sign in</button></form>'
                '<p class="hint">It is the token in <code>~/.slm/config</code> or '
                '<code>SLM_API_TOKEN</code> (<code>python3 slm.py doctor</code> says whose it '
                'is). This browser keeps it in a cookie that no script can read, for %d days or '
                'until you sign out.</p></div>' % (
                    '<p class="error" id="problem" role="alert">%s</p>' % esc(problem)
                    if problem else "", ' aria-describedby="problem"' if problem else "",
                    esc(safe_next(after)), SESSION_DAYS))
        return self.answer(self.frame("Sign in", main, head=head), status, headers)

    def install(self, app, reads, keyring):
        """Add the pages to app (make_app's pages=)."""
        error = self.error_page(keyring)

        def page(path, method="GET", public=False, html_page=True):
            def declare(callback):
                app.route(path, method, callback,
                          page=PageDoc(public=public, html=html_page, error=error))
                return callback
            return declare

        @page("/static/<name>", public=True, html_page=False)
        def static_asset(name):
            if name not in self.assets:
                raise ApiError(404, "no such file")
            ctype, text = self.assets[name]
            tag = '"%s"' % self.versions[name]
            fixed = bottle.request.query.getunicode("v") == self.versions[name]
            headers = {"Content-Type": ctype, "ETag": tag, "X-Content-Type-Options": "nosniff",
                       "Cache-Control": "public, max-age=31536000, immutable" if fixed
                       else "no-cache"}
            if bottle.request.environ.get("HTTP_IF_NONE_MATCH") == tag:
                return bottle.HTTPResponse(status=304, headers=headers)
            return bottle.HTTPResponse(body=text.encode("utf-8"), headers=headers)

        @page("/signin", public=True)
        def signin_page():
            return self.signin_form(keyring, after=bottle.request.query.getunicode("next")
                                    or "/")

        @page("/signin", "POST", public=True)
        def signin():
            form = form_fields(read_body(8192))   # (a form of this site: see check_origin)
            after = safe_next(form.get("next") or "/")
            if not keyring.required:
                return bottle.HTTPResponse(status=303, headers={"Location": after})
            token = (form.get("token") or "").strip()
            try:
                keyring.identify("Bearer " + token)
                value = keyring.sessions.start(token)
            except ApiError:
                return self.signin_form(keyring, 401, problem="That token is not accepted here. "
                                        "Check that you copied all of it, and that it is this "
                                        "service's.", after=after)
            secure = "; Secure" if bottle.request.environ.get("wsgi.url_scheme") == "https" \
                else ""
            return bottle.HTTPResponse(status=303, headers={
                "Location": after, "Cache-Control": "no-store",
                "Set-Cookie": "%s=%s; Path=/; Max-Age=%d; HttpOnly; SameSite=Strict%s" % (
                    SESSION_COOKIE, value, SESSION_DAYS * 86400, secure)})

        @page("/signout", "POST", public=True)
        def signout():
            value = session_cookie(bottle.request.environ)
            if value and keyring.sessions is not None:
                keyring.sessions.end(value)      # the old cookie is no sign-in any more
            return bottle.HTTPResponse(status=303, headers={
                "Location": "/signin" if keyring.required else "/", "Cache-Control": "no-store",
                "Set-Cookie": "%s=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"
                              % SESSION_COOKIE})

        @page("/")
        def job_list(tx, who):
            return self.answer(self.list_page(tx, who, reads))

        @page("/jobs/<job_id:path>")
        def job_page(tx, who, job_id):
            check_params(bottle.request.query, ("cluster",))
            return self.answer(self.job_page(tx, who, reads, job_id,
                                             bottle.request.query.getunicode("cluster")))

        @page("/delivery")
        def delivery(tx, who):
            return self.answer(self.delivery_page(tx, who, reads))

    # -- the job list ------------------------------------------------------------------

    def list_page(self, tx, who, reads):
        query = bottle.request.query
        pairs = [(k, query.getunicode(k) or "") for k in query.keys()]
        asked = dict(pairs)
        window = asked.get("window") or "24h"
        if window not in WINDOWS:
            raise ApiError(400, "window must be one of %s" % ", ".join(WINDOWS))
        scope_all = asked.get("all") == "1"
        # the signed-in user's jobs unless asked otherwise; no user, everyone's
        mine = who.user if who.user and not asked.get("user") and not scope_all else None
        listing = bottle.FormsDict()
        for name in query.keys():
            if name not in LIST_PAGE_ONLY:
                for value in query.getall(name):
                    listing.append(name, value)
        # (a FormsDict's item assignment appends: replace() sets)
        if mine:
            listing.replace("user", mine)
        listing.replace("sort", asked.get("sort") or "-submitted")
        if not asked.get("array_job_id") and "arrays" not in listing:
            listing.replace("arrays", "group")
        listing.replace("limit", asked.get("limit") or str(PAGE_SIZE))
        found = reads.search(tx, who, listing)
        summary_query = bottle.FormsDict()
        for name in ("user", "partition", "group", "array_job_id"):
            if listing.get(name):
                summary_query[name] = listing[name]
        now = time.time()
        summary_query["since"] = iso_at(now - WINDOWS[window])
        summary_query["until"] = iso_at(now)
        summary = reads.summary(tx, who, summary_query)
        user = listing.get("user")
        private = reads.access.private_jobs and who.role != "admin"
        if asked.get("array_job_id"):
            heading = "Tasks of array %s" % asked["array_job_id"]
        elif user:
            heading = "Jobs of %s" % user if user != who.user else "Your jobs"
        else:
            heading = "Your jobs" if private else "Everyone's jobs"
        scope = ""
        if who.user and not private:
            scope = '<a class="scope" href="%s">%s</a>' % (
                (esc(query_url("/", pairs, all="1", user=None, cursor=None)), "Everyone's jobs")
                if user == who.user else
                (esc(query_url("/", pairs, all=None, user=None, cursor=None)), "Only mine"))
        # jobs of several clusters on one page: each says its cluster
        several = len(set(job.get("cluster") for job in found["jobs"])) > 1
        rows = "".join(self.job_row(job, found["tasks"].get(job["job_id"]), now, several)
                       for job in found["jobs"]) or \
            '<tr><td colspan="9" class="empty">No job matches.</td></tr>'
        pager = ""
        if asked.get("cursor"):
            pager += '<a href="%s">« First page</a>' % esc(query_url("/", pairs, cursor=None))
        if found["next"]:
            pager += '<a rel="next" href="%s">Next %d »</a>' % (
                esc(query_url("/", pairs, cursor=found["next"])), int(listing["limit"]))
        sort = listing["sort"]
        submitted_sort = "submitted" if sort == "-submitted" else "-submitted"
        aria = {"-submitted": ' aria-sort="descending"',
                "submitted": ' aria-sort="ascending"'}.get(sort, "")
        feed = "/api/v1/feed" + ("?user=" + urllib.parse.quote(user, safe="") if user else "")
        main = (
            '<h1>%s</h1>%s%s'
            '<div class="bar"><span id="count" data-live="1">%d job%s</span>%s'
            '<span class="spacer"></span>%s</div>'
            '<div class="table-wrap"><table id="jobs"><caption class="sr-only">%s, %s'
            '</caption><thead><tr><th scope="col">Job</th><th scope="col">Name</th>'
            '<th scope="col" class="opt">User</th><th scope="col" class="opt">Partition</th>'
            '<th scope="col">State</th><th scope="col" class="opt"%s><a href="%s">Submitted</a>'
            '</th><th scope="col" class="opt">Started</th><th scope="col">Elapsed / limit</th>'
            '<th scope="col">Exit</th></tr></thead><tbody id="rows" data-live="1">%s</tbody>'
            '</table></div><nav class="pager" id="pager" data-live="1" aria-label="Pages">%s'
            '</nav>' % (
                esc(heading), self.summary_strip(summary, window, pairs),
                self.filter_form(asked, listing, mine, scope_all),
                found["total"], "" if found["total"] == 1 else "s", scope, LIVE_CONTROLS,
                esc(heading),
                dict(SORT_CHOICES).get(sort, sort), aria,
                esc(query_url("/", pairs, sort=submitted_sort, cursor=None)), rows, pager))
        return self.frame(heading, main, who, "jobs", data={
            "page": "list", "feed": feed, "after": tx.last_event_id(), "wait": LIVE_WAIT})

    def job_row(self, job, tasks, now, clusters=False):
        job_id, meta = job["job_id"], job.get("meta") or {}
        status = job.get("status")
        if tasks and status in WAITING and any(s in ALIVE or s == "PAUSED" for s in tasks):
            status = "RUNNING"      # the array's own row waits; its tasks do not
        state = badge(status)
        if tasks:
            state += '<span class="tasks">%s · <a href="%s">tasks</a></span>' % (
                ", ".join("%d %s" % (n, esc(s.lower())) for s, n in sorted(
                    tasks.items(), key=lambda kv: STATUSES.index(kv[0])
                    if kv[0] in STATUSES else 99)),
                esc(query_url("/", [("array_job_id", job_id), ("all", "1")])))
        return ('<tr data-job="%s" data-status="%s"><td class="id"><a href="%s">%s</a></td>'
                '<td class="name">%s</td><td class="opt">%s</td><td class="opt">%s</td>'
                '<td class="state">%s</td><td class="opt">%s</td><td class="opt">%s</td>%s'
                '<td class="exit">%s</td></tr>' % (
                    esc(job_id), esc(status), esc(job_url(job_id, job.get("cluster"))),
                    esc(job_id) + ('<span class="left">%s</span>' % esc(job.get("cluster") or
                                                                      "no cluster")
                                   if clusters else ""),
                    esc(job.get("job_name")), esc(job.get("user")), esc(job.get("partition")),
                    state, shown_time(job.get("submitted_at") or job.get("first_seen")),
                    shown_time(job.get("started_at")), self.elapsed_cell(job, meta, now),
                    esc(slm.ending_text(job.get("status"), job.get("exit_code"),
                                        job.get("signal")) or "")))

    def elapsed_cell(self, job, meta, now):
        start, end = epoch_of(job.get("started_at")), epoch_of(job.get("ended_at"))
        limit = limit_seconds(meta.get("time_limit"))
        if start is None:
            return '<td class="num">%s</td>' % ("limit " + slm.duration_text(limit)
                                                if limit else "")
        running = end is None and job.get("status") in ALIVE | {"PAUSED"}
        spent = job["elapsed"] if end is not None and job.get("elapsed") is not None \
            else (end or now) - start
        text = slm.duration_text(spent) + (" / " + slm.duration_text(limit) if limit else "")
        left = ""
        if running and limit:
            left = '<span class="left">%s</span>' % (
                slm.duration_text(limit - spent) + " left" if limit > spent
                else "over the limit")
        return '<td class="num"%s><span class="el">%s</span>%s</td>' % (
            ' data-since="%d"%s' % (start, ' data-limit="%d"' % limit if limit else "")
            if running else "", text, left)

    def filter_form(self, asked, listing, mine, scope_all):
        status = asked.get("status") or ""
        choices = list(STATE_CHOICES)
        if status and status not in dict(choices):
            choices.append((status, status))       # a hand-made URL's statuses
        options = "".join('<option value="%s"%s>%s</option>' % (
            esc(v), " selected" if v == status else "", esc(label)) for v, label in choices)
        sorts = "".join('<option value="%s"%s>%s</option>' % (
            esc(v), " selected" if v == listing["sort"] else "", esc(label))
            for v, label in SORT_CHOICES)
        hidden = "".join('<input type="hidden" name="%s" value="%s">' % (esc(k), esc(asked[k]))
                         for k in ("all", "window", "array_job_id", "group", "arrays")
                         if asked.get(k))

        def field(name, label, hint=""):
            return ('<label>%s<input name="%s" value="%s"%s></label>'
                    % (label, name, esc(asked.get(name)), ' placeholder="%s"' % esc(hint)
                       if hint else ""))
        return (
            '<form class="filters" method="get" action="/" role="search" '
            'aria-label="Filter the jobs">'
            '<label>State<select name="status">%s</select></label>%s%s%s%s%s'
            '<label>Order<select name="sort">%s</select></label>%s'
            '<div class="actions"><button type="submit">Apply</button>'
            '<a href="/">Reset</a></div></form>' % (
                options,
                field("user", "User", ("yours (%s)" % mine) if mine else "anyone"),
                field("name_contains", "Name contains"), field("partition", "Partition"),
                field("since", "Active since (UTC)", "2026-11-30 or …T08:00"),
                field("until", "Active until (UTC)"), sorts, hidden))

    def summary_strip(self, summary, window, pairs):
        order = [s for s in STATUSES if s in ENDED]
        counts = summary["counts"]
        listed = "".join('<li>%s <span class="n">%d</span></li>' % (badge(s), counts[s])
                         for s in order if counts.get(s)) or '<li class="none">none</li>'
        rate = summary["failure_rate"]
        windows = "".join('<a href="%s"%s>%s</a>' % (
            esc(query_url("/", pairs, window=name if name != "24h" else None)),
            ' aria-current="true"' if name == window else "", name) for name in WINDOWS)
        return (
            '<section class="summary" id="summary" data-live="1" aria-labelledby="sum-h">'
            '<h2 id="sum-h">Ended in the last %s</h2><nav class="windows" aria-label="Window">'
            '%s</nav><ul class="counts">%s</ul><p class="rate">%d ended, %d failed%s</p>%s'
            '</section>' % (
                esc(window), windows, listed, summary["ended"], summary["failed"],
                " (%.1f%% failure rate)" % (rate * 100) if rate is not None else "",
                self.chart(summary, order)))

    def chart(self, summary, order):
        """Jobs ended per hour (or day) by final state: stacked bars, inline SVG."""
        series = summary["series"]
        if not series:
            return ""
        tallest = max([sum(b["counts"].values()) for b in series] + [1])
        width = 100.0 / len(series)
        bars = []
        for i, bucket in enumerate(series):
            top = 60.0
            for status in order:
                n = bucket["counts"].get(status)
                if not n:
                    continue
                h = 58.0 * n / tallest
                top -= h
                bars.append('<rect class="f-%s" x="%.3f%%" y="%.2f" width="%.3f%%" height="%.2f">'
                            '<title>%s %s: %d %s</title></rect>' % (
                                STATE_KIND.get(status, "off"), i * width + width * 0.1, top,
                                width * 0.8, h, esc(bucket["start"][:16].replace("T", " ")),
                                "UTC", n, esc(status)))
        return ('<svg class="chart" width="100%%" height="60" role="img" aria-label="Jobs '
                'ended per %s by final state, %s: most in one %s %d">%s</svg>'
                '<div class="axis" aria-hidden="true"><span>%s</span><span>%s</span></div>' % (
                    summary["bucket"], esc(", ".join("%s %d" % kv for kv in sorted(
                        summary["counts"].items())) or "none"), summary["bucket"],
                    tallest if any(b["counts"] for b in series) else 0, "".join(bars),
                    shown_time(series[0]["start"], True),
                    "now" if summary["until"] >= iso_at(time.time() - 60)
                    else shown_time(summary["until"], True)))

    # -- one job ------------------------------------------------------------------------

    def job_page(self, tx, who, reads, job_id, cluster=None):
        row = reads.visible_job(tx, who, job_id, cluster)
        cluster = row.get("cluster")
        job = reads.access.job(who, row)
        events = reads.job_events(tx, who, job_id, cluster or "") or []
        meta = job.get("meta") or {}
        status = job.get("status")
        owner = reads.access.owns(who, row.get("user"))
        now = time.time()
        facts = [esc(x) for x in (job.get("user"), job.get("partition"),
                                  job.get("nodelist") or job.get("host"),
                                  job.get("cluster") and "cluster " + job["cluster"]) if x]
        if job.get("restarts"):
            facts.append("run %d (requeued %d time%s)" % (
                job["restarts"] + 1, job["restarts"], "" if job["restarts"] == 1 else "s"))
        if job.get("job_group"):
            facts.append('group <a href="%s">%s</a>' % (
                esc(query_url("/", [("group", job["job_group"]), ("all", "1")])),
                esc(job["job_group"])))
        if job.get("array_job_id") and job["array_job_id"] != job_id:
            facts.append('task %s of array <a href="%s">%s</a>' % (
                esc(job.get("array_task_id")), esc(job_url(job["array_job_id"], cluster)),
                esc(job["array_job_id"])))
        parts = ['<nav class="crumbs" aria-label="Breadcrumb"><a href="/">Jobs</a> › %s</nav>'
                 % esc(job_id),
                 '<h1><span class="jid">%s</span> <span class="name">%s</span> %s</h1>'
                 % (esc(job_id), esc(job.get("job_name")), badge(status)),
                 '<p class="facts">%s</p>' % " · ".join(facts) if facts else "",
                 self.lifeline_section(events, now),
                 self.why(job, meta, events)]
        tasks = tx.array_task_counts([row["job_key"]]).get(row["job_key"])
        if tasks:
            parts.append('<section aria-labelledby="tasks-h"><h2 id="tasks-h">Array tasks</h2>'
                         '<ul class="counts">%s</ul><p><a href="%s">List the tasks</a></p>'
                         '</section>' % ("".join('<li>%s <span class="n">%d</span></li>' % (
                             badge(s), n) for s, n in sorted(tasks.items())),
                             esc(query_url("/", [("array_job_id", job_id), ("all", "1")]))))
        if meta.get("output_tail"):
            parts.append('<section aria-labelledby="tail-h"><h2 id="tail-h">Last lines of '
                         'output</h2><pre class="tail" tabindex="0">%s</pre></section>'
                         % esc(meta["output_tail"]))
        parts.append(self.resources(job, meta, now))
        if meta.get("warnings"):
            parts.append('<section aria-labelledby="warn-h"><h2 id="warn-h">Warnings</h2>'
                         '<ul class="counts">%s</ul></section>' % "".join(
                             "<li>%s</li>" % badge(w) for w in meta["warnings"]))
        parts.append(self.event_table(events))
        if owner:
            sent = reads.notifications(tx, who, bottle.FormsDict(job_id=job_id, limit="20"))
            parts.append(self.outbox_table(sent["notifications"], "Notifications",
                                           more=query_url("/delivery", [("job_id", job_id)])))
        parts.append('<details id="raw"><summary>Raw JSON</summary><pre tabindex="0">%s</pre>'
                     '</details>' % esc(json.dumps({"job": job, "events": events}, indent=2,
                                                   ensure_ascii=False)))
        # the job's events as they are stored: a late one (from a spool) with
        # an earlier time shows too
        return self.frame("%s %s" % (job_id, job.get("job_name") or ""),
                          '<div class="bar"><span class="spacer"></span>%s</div>'
                          '<div id="job" data-live="1">%s</div>' % (LIVE_CONTROLS, "".join(parts)),
                          who, "jobs",
                          data={"page": "job", "after": tx.last_event_id(), "wait": LIVE_WAIT,
                                "feed": "/api/v1/feed?" + urllib.parse.urlencode(
                                    [("job_id", job_id), ("cluster", cluster or "")])})

    def why(self, job, meta, events):
        """Why it ended (or where it is): first on the page."""
        status = job.get("status")
        rows = []
        if status in ENDED or status in RUN_ENDS:
            title = "Why it ended"
            rows.append(("Final state", badge(status)))
        else:
            title = "Where it is"
            rows.append(("State", badge(status)))
        end = slm.ending(status, job.get("exit_code"), job.get("signal"))
        if end is not None:
            rows.append(("Exit code" if end[0] == "exit" else "Signal", esc(end[1])))
        elif job.get("signal"):   # reached the job, did not end it (yet)
            rows.append(("Last signal", esc(job["signal"])))
        if job.get("slurm_state") and status not in ENDED:
            rows.append(("In Slurm's queue", "%s%s (asked %s)" % (
                esc(job["slurm_state"]), ", waiting: %s" % esc(job["slurm_reason"])
                if job.get("slurm_reason") not in (None, "", "None") else "",
                shown_time(job.get("asked_at"), seconds=True))))
        if job.get("reason"):
            rows.append(("Reason", esc(job["reason"])))
        if job.get("message"):
            rows.append(("Message", esc(job["message"])))
        for event in events:
            if event.get("source") == "slurm":
                said = "%s%s" % (badge(event.get("status")), " (corrects %s)" % badge(
                    event["corrects"]) if event.get("corrects") else "")
                if event.get("message"):
                    said += " — " + esc(event["message"])
                rows.append(("Slurm's record", said))
        if job.get("ended_at"):
            rows.append(("Ended", shown_time(job["ended_at"], seconds=True)))
        return ('<section class="why" aria-labelledby="why-h"><h2 id="why-h">%s</h2><dl>%s</dl>'
                '</section>' % (title, "".join("<dt>%s</dt><dd>%s</dd>" % r for r in rows)))

    def lifeline_section(self, events, now):
        stretches, marks = lifeline(events, now)
        if not stretches and not marks:
            return ""
        times = [s["start"] for s in stretches] + [s["end"] for s in stretches] + \
            [m["time"] for m in marks]
        t0 = min(times)
        t1 = max([s["end"] for s in stretches] or times)
        if t1 <= t0:
            t1 = t0 + 1

        def x(t):
            return max(0.0, min(100.0, 100.0 * (t - t0) / (t1 - t0)))
        rects, steps = [], []
        for s in stretches:
            name = STRETCH_NAMES[s["kind"]]
            span = "%s %s (%s → %s UTC%s)" % (
                name, slm.duration_text(s["end"] - s["start"]), iso_at(s["start"])[11:19],
                iso_at(s["end"])[11:19], ", run %d" % (s["run"] + 1) if s["run"] else "")
            rects.append('<rect class="seg seg-%s" x="%.4f%%" y="8" width="%.4f%%" height="24" '
                         'data-kind="%s" data-start="%.3f" data-end="%.3f"><title>%s</title>'
                         '</rect>' % (s["kind"], x(s["start"]), x(s["end"]) - x(s["start"]),
                                      s["kind"], s["start"], s["end"], esc(span)))
            steps.append('<li><span class="key key-%s" aria-hidden="true"></span>%s</li>'
                         % (s["kind"], esc(span)))
        for m in marks:
            what = m["status"] + (" (Slurm%s)" % (", corrects " + m["corrects"]
                                                  if m.get("corrects") else "")
                                  if m.get("source") == "slurm" else "")
            rects.append('<line class="mark mk-%s" x1="%.4f%%" x2="%.4f%%" y1="2" y2="38" '
                         'data-status="%s"><title>%s at %s UTC</title></line>' % (
                             STATE_KIND.get(m["status"], "off"), x(m["time"]), x(m["time"]),
                             esc(m["status"]), esc(what), iso_at(m["time"])[11:19]))
            steps.append('<li>%s at %s UTC</li>' % (badge(m["status"]) + (
                esc(what[len(m["status"]):]) if what != m["status"] else ""),
                iso_at(m["time"])[11:19]))
        return ('<section class="life" aria-labelledby="life-h"><h2 id="life-h">Lifeline</h2>'
                '<svg class="lifeline" width="100%%" height="40" role="img" aria-label="The '
                'job\'s life, to scale: see the list below">%s</svg><div class="axis"><span>%s'
                '</span><span>%s</span></div><ol class="steps">%s</ol></section>' % (
                    "".join(rects), shown_time(iso_at(t0), True), shown_time(iso_at(t1), True),
                    "".join(steps)))

    def resources(self, job, meta, now):
        usage = job.get("beat") or {}
        slurm = job.get("slurm_usage") or {}
        rows = []
        # Slurm's accounting counts every node of the job; the wrapper, its own
        whose = " (Slurm's accounting, all nodes)" if slurm else \
            " (the batch node's, as the wrapper saw it)" if meta.get("cpu_time") is not None \
            else ""
        cpu_time = slurm.get("cpu_time", meta.get("cpu_time", usage.get("cpu_time")))
        cpus = slurm.get("cpus", meta.get("cpus"))
        eff = slurm.get("cpu_efficiency", meta.get("cpu_efficiency"))
        start, end = epoch_of(job.get("started_at")), epoch_of(job.get("ended_at"))
        wall = job.get("elapsed") if job.get("elapsed") is not None else (
            (end or now) - start if start else None)
        if eff is None and cpu_time is not None and cpus and wall:
            eff = round(100.0 * cpu_time / (wall * cpus), 1)
        limit_s = limit_seconds(meta.get("time_limit"))
        if limit_s and wall is not None:
            rows.append(("Time", 100.0 * wall / limit_s, "%s of the %s limit" % (
                slm.duration_text(wall), slm.duration_text(limit_s))))
        if cpu_time is not None or eff is not None:
            rows.append(("CPU", eff, "%s%s%s" % (
                "%.1f%% of %s CPU%s" % (eff, esc(cpus or "?"), "" if cpus == 1 else "s")
                if eff is not None else "",
                "; " if eff is not None and cpu_time is not None else "",
                "CPU time %s" % slm.duration_text(cpu_time) if cpu_time is not None else "") +
                whose))
        peak = slurm.get("max_rss_mb", meta.get("peak_memory_mb", meta.get(
            "max_rss_mb", usage.get("rss_mb"))))
        limit = meta.get("memory_limit_mb", usage.get("memory_limit_mb"))
        if peak is not None:
            share = round(100.0 * peak / limit, 1) if limit else None
            rows.append(("Memory", share, "%s MB%s" % (
                esc(round(peak, 1)), " of %s MB (%.1f%%)" % (esc(round(limit, 1)), share)
                if share is not None else "")))
        if usage.get("output_bytes") is not None:
            rows.append(("Output", None, "%s bytes written" % esc(int(usage["output_bytes"]))))
        if job.get("heartbeat_at"):
            rows.append(("Last heartbeat", None, shown_time(job["heartbeat_at"], True)))
        if not rows:
            return ""
        return ('<section aria-labelledby="res-h"><h2 id="res-h">Resources (against what was '
                'requested)</h2><dl class="res">%s</dl></section>' % "".join(
                    '<dt>%s</dt><dd>%s%s</dd>' % (
                        name, '<meter min="0" max="100" low="25" high="95" optimum="70" '
                        'value="%.1f" aria-label="%s, percent">%.1f%%</meter> ' % (
                            min(value, 100.0), name, value) if value is not None else "", text)
                    for name, value, text in rows))

    def event_table(self, events):
        rows = []
        for e in events:
            details = "; ".join(esc(x) for x in (
                e.get("exit_code") is not None and "exit %s" % e["exit_code"], e.get("signal"),
                e.get("reason"), e.get("message"), e.get("corrects") and
                "corrects %s" % e["corrects"]) if x)
            rows.append('<tr><td>%s</td><td>%s</td><td class="num" data-label="Run">%s</td>'
                        '<td data-label="From">%s</td><td data-label="Host">%s</td>'
                        '<td>%s</td></tr>' % (
                            shown_time(parse_event_time(e.get("time")), True),
                            badge(e.get("status")),
                            event_run(e) + 1, esc(e.get("source") or (
                                "slurm mail" if e.get("via") == "mailprog" else "wrapper")),
                            esc(e.get("host")), details))
        return ('<section aria-labelledby="ev-h"><h2 id="ev-h">Events</h2><div class="table-wrap">'
                '<table class="events"><thead><tr><th scope="col">Time</th><th scope="col">'
                'Status</th><th scope="col">Run</th><th scope="col">From</th><th scope="col">'
                'Host</th><th scope="col">Details</th></tr></thead><tbody>%s</tbody></table>'
                '</div></section>' % "".join(rows))

    # -- the outbox ---------------------------------------------------------------------

    def outbox_table(self, rows, title, more=None):
        body = []
        for n in rows:
            state = n["state"]
            shown = "retrying" if state == "pending" and n.get("attempts") else state
            shown = {"failed": "given up"}.get(shown, shown)
            when = n.get("sent_at") if state == "sent" else (
                n.get("next_attempt_at") if state in ("pending", "held") else None)
            body.append(
                '<tr><td data-label="Queued">%s</td><td data-label="Job"><a href="%s">%s</a></td>'
                '<td>%s</td><td class="dest" data-label="To">%s <span class="fmt">%s</span></td>'
                '<td><span class="ob ob-%s">%s</span></td><td class="num" data-label="Attempts">'
                '%s</td><td data-label="Last error">%s</td><td data-label="Sent / next try">%s'
                '</td></tr>' % (
                    shown_time(n.get("created_at")), esc(job_url(n["job_id"])),
                    esc(n["job_id"]), badge(n.get("status")) if n.get("status") else "",
                    esc(n["destination"]), esc(n["format"]), esc(state), esc(shown),
                    esc(n.get("attempts")), esc(n.get("last_error")), shown_time(when)))
        if not body:
            body.append('<tr><td colspan="8" class="empty">None.</td></tr>')
        return ('<section aria-labelledby="out-h"><h2 id="out-h">%s</h2><div class="table-wrap">'
                '<table class="outbox"><thead><tr><th scope="col">Queued</th><th scope="col">Job'
                '</th><th scope="col">Event</th><th scope="col">Destination</th>'
                '<th scope="col">State</th><th scope="col">Attempts</th><th scope="col">Last '
                'error</th><th scope="col">Sent / next try</th></tr></thead><tbody>%s</tbody>'
                '</table></div>%s</section>' % (
                    esc(title), "".join(body),
                    '<p><a href="%s">All of them</a></p>' % esc(more) if more else ""))

    def delivery_page(self, tx, who, reads):
        query = bottle.request.query
        pairs = [(k, query.getunicode(k) or "") for k in query.keys()]
        listing = bottle.FormsDict()
        for name, value in pairs:
            if value:
                listing[name] = value
        found = reads.notifications(tx, who, listing)
        state = query.getunicode("state") or ""
        options = "".join('<option value="%s"%s>%s</option>' % (
            esc(v), " selected" if v == state else "", esc(label)) for v, label in
            OUTBOX_CHOICES + ((((state, state),) if state not in dict(OUTBOX_CHOICES) else ())))
        pager = '<a rel="next" href="%s">Older »</a>' % esc(query_url(
            "/delivery", pairs, before=str(found["next"]))) if found["next"] else ""
        main = (
            '<h1>Delivery</h1><p class="lead">What the relay sent, keeps back or gave up, %s; '
            'destinations are shown as scheme://host only.</p>'
            '<form class="filters" method="get" action="/delivery" role="search" '
            'aria-label="Filter the notifications"><label>State<select name="state">%s</select>'
            '</label><label>Job<input name="job_id" value="%s"></label><div class="actions">'
            '<button type="submit">Apply</button><a href="/delivery">Reset</a></div></form>'
            '%s<nav class="pager" aria-label="Pages">%s</nav>' % (
                "for every job" if who.role == "admin" else "for your jobs", options,
                esc(query.getunicode("job_id")),
                self.outbox_table(found["notifications"], "Notifications"), pager))
        return self.frame("Delivery", main, who, "delivery")


# ---------------------------------------------------------------------------
# Server: HTTP/1.1 with keep-alive on a bounded pool of workers, each answer in
# one send
# ---------------------------------------------------------------------------


def open_files_limit():
    """The soft limit of open files, raised to the hard one (every idle
    connection holds a descriptor)."""
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > soft:
            target = min(hard if hard != resource.RLIM_INFINITY else 65536, 1 << 20)
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        return soft
    except (ImportError, OSError, ValueError):
        return 1024


class SocketReader(object):
    """A connection's bytes: what was read ahead of the request, then the socket."""

    def __init__(self, sock, ahead=b""):
        self.sock = sock
        self.buf = bytearray(ahead)

    def _fill(self):
        data = self.sock.recv(65536)
        self.buf += data
        return bool(data)

    def readline(self, limit=-1):
        while True:
            end = self.buf.find(b"\n")
            if end >= 0 and (limit < 0 or end < limit):
                size = end + 1
                break
            if (limit >= 0 and len(self.buf) >= limit) or not self._fill():
                size = len(self.buf) if limit < 0 else min(limit, len(self.buf))
                break
        out = bytes(self.buf[:size])
        del self.buf[:size]
        return out

    def read(self, size):
        while len(self.buf) < size and self._fill():
            pass
        out = bytes(self.buf[:size])
        del self.buf[:size]
        return out


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


REASONS = {400: "Bad Request", 413: "Payload Too Large", 414: "URI Too Long",
           431: "Request Header Fields Too Large", 505: "HTTP Version Not Supported"}


class Connection(object):
    """One request of a client connection, handed to the WSGI app, its answer
    written with a single send.  (The standard library's wsgiref writes
    status, headers and body in separate sends and polls before each; on a
    busy service that was most of the system calls per request.)"""

    access_log = False
    drain_limit = 4 * MAX_BODY
    max_headers = 100

    def __init__(self, server, sock, address, reader):
        self.server = server
        self.connection = sock
        self.client_address = address
        self.rfile = reader

    def refuse(self, status):
        body = compact_json({"error": REASONS.get(status, "bad request").lower()}).encode()
        self.connection.sendall(("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                                 "Content-Length: %d\r\nConnection: close\r\n\r\n"
                                 % (status, REASONS.get(status, "Bad Request"), len(body))
                                 ).encode("latin-1") + body)
        return False

    def serve_one(self):
        """Serve one request; return whether the connection stays open."""
        line = self.rfile.readline(65537)
        while line in (b"\r\n", b"\n"):      # tolerated before a request (RFC 9112)
            line = self.rfile.readline(65537)
        if not line:
            return False
        if len(line) > 65536:
            return self.refuse(414)
        words = line.decode("latin-1").split()
        if len(words) != 3 or not words[2].startswith("HTTP/"):
            return self.refuse(400)
        method, target, version = words
        if version not in ("HTTP/1.1", "HTTP/1.0"):
            return self.refuse(505)
        environ = {"REQUEST_METHOD": method, "SERVER_PROTOCOL": version, "SCRIPT_NAME": "",
                   "SERVER_NAME": self.server.server_name,
                   "SERVER_PORT": str(self.server.server_port),
                   "REMOTE_ADDR": self.client_address[0] if self.client_address else "",
                   "wsgi.version": (1, 0), "wsgi.url_scheme": "http",
                   "wsgi.errors": sys.stderr, "wsgi.multithread": True,
                   "wsgi.multiprocess": False, "wsgi.run_once": False}
        for _ in range(self.max_headers + 1):
            header = self.rfile.readline(65537)
            if len(header) > 65536:
                return self.refuse(431)
            if header in (b"\r\n", b"\n", b""):
                break
            name, sep, value = header.decode("latin-1").partition(":")
            if not sep or not name or name != name.strip():
                return self.refuse(400)
            key = name.upper().replace("-", "_")
            value = value.strip()
            if key == "CONTENT_TYPE" or key == "CONTENT_LENGTH":
                environ[key] = value
            else:
                key = "HTTP_" + key
                environ[key] = environ[key] + "," + value if key in environ else value
        else:
            return self.refuse(431)
        path, _, query = target.partition("?")
        if "://" in path:        # absolute form: keep the path
            path = "/" + path.split("://", 1)[1].partition("/")[2]
        environ["PATH_INFO"] = urllib.parse.unquote_to_bytes(path).decode("latin-1")
        environ["QUERY_STRING"] = query
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return self.refuse(400)
        if length < 0:
            return self.refuse(400)
        connection = environ.get("HTTP_CONNECTION", "").lower()
        keep = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
        if environ.get("HTTP_TRANSFER_ENCODING"):
            keep = False         # no chunked bodies: the app answers 411 and we hang up
        if length and environ.get("HTTP_EXPECT", "").lower() == "100-continue":
            self.connection.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = BodyReader(self.rfile, length)
        environ["wsgi.input"] = body
        answer = {}

        def start_response(status, headers, exc_info=None):
            answer["status"], answer["headers"] = status, headers
            return lambda data: answer.setdefault("written", []).append(data)

        started = time.time()
        self.server.busy(+1)
        try:
            chunks = self.server.get_app()(environ, start_response)
            try:
                data = b"".join(answer.pop("written", [])) + b"".join(chunks)
            finally:
                if hasattr(chunks, "close"):
                    chunks.close()
        finally:
            self.server.busy(-1)
        headers = answer["headers"]
        if not any(k.lower() == "content-length" for k, _ in headers):
            headers = headers + [("Content-Length", str(len(data)))]
        if body.remaining:       # what the app did not read would be read as a request
            if body.remaining > self.drain_limit:
                keep = False
            else:
                while body.remaining and body.read(65536):
                    pass
        if not keep:
            headers = headers + [("Connection", "close")]
        head = "HTTP/1.1 %s\r\n%s\r\n" % (answer["status"], "".join(
            "%s: %s\r\n" % pair for pair in headers))
        self.connection.sendall(head.encode("latin-1") +
                                (b"" if method == "HEAD" else data))
        if self.access_log:
            say("%s \"%s %s %s\" %s %d %.1fms" % (
                environ["REMOTE_ADDR"], method, path[:200], version,
                answer["status"].split(" ", 1)[0], len(data), (time.time() - started) * 1000))
        return keep


def head_complete(data):
    """Whether data (a connection's first bytes) holds a whole request head."""
    data = data.lstrip(b"\r\n")     # blank lines are tolerated before a request
    return b"\r\n\r\n" in data or b"\n\n" in data


class PooledServer(object):
    """HTTP/1.1 with keep-alive, on at most `workers` threads.

    One thread (serve_forever's) watches every connection: an idle keep-alive
    connection, or one that has not sent a whole request head yet, costs a
    socket and its bytes so far, never a thread.  A request whose head has
    arrived is served by a worker, which gives the connection back after the
    answer.  Heads must arrive within HEAD_TIMEOUT (a client trickling bytes
    holds nothing but its socket meanwhile); idle connections close after
    IDLE_TIMEOUT; beyond max_connections, new ones wait in the listen backlog.
    """

    IDLE_TIMEOUT = 75.0
    HEAD_TIMEOUT = 20.0
    MAX_HEAD = 256 * 1024
    BODY_TIMEOUT = 60.0      # a worker waits this long for a request body's bytes
    # a whole array's tasks ending at once: the listen backlog must hold them
    request_queue_size = 1024

    def __init__(self, address, app, workers=64, access_log=False, max_connections=None):
        import queue
        import selectors
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.socket.bind(address)
            self.socket.listen(self.request_queue_size)
        except OSError:
            self.socket.close()
            raise
        self.socket.setblocking(False)
        self.server_address = self.socket.getsockname()
        self.server_name, self.server_port = self.server_address[:2]
        self._app = app
        self.workers = workers
        self.access_log = access_log
        self.max_connections = max_connections or max(64, open_files_limit() - 64)
        # the workers wait on one queue (a thread is started when all are busy,
        # up to `workers`): a request's hand-over is a put and a get
        self._work = queue.SimpleQueue()
        self._threads = []
        self._idle = 0
        self._idle_lock = threading.Lock()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._returned = collections.deque()    # (sock, address, bytes read ahead)
        self._open = {}                         # sock -> [address, buffer, since, head started]
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._busy = 0
        self._busy_cond = threading.Condition()
        self._handler = type("Connection", (Connection,), {"access_log": access_log})

    def get_app(self):
        return self._app

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

    def connections(self):
        """How many connections it holds (idle, reading a head, or served)."""
        return len(self._open)

    def serve_forever(self, poll_interval=0.5):
        import selectors
        sel = self._selector
        sel.register(self.socket, selectors.EVENT_READ, "listen")
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        listening, swept = True, time.time()
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(poll_interval):
                    if key.data == "listen":
                        self._accept()
                    elif key.data == "wake":
                        try:
                            while self._wake_r.recv(4096):
                                pass
                        except (BlockingIOError, InterruptedError):
                            pass
                    else:
                        self._read(key.fileobj)
                while self._returned:
                    self._watch(*self._returned.popleft())
                full = len(self._open) >= self.max_connections
                if full == listening:      # stop accepting while full, and again after
                    (sel.unregister if full else
                     lambda s: sel.register(s, selectors.EVENT_READ, "listen"))(self.socket)
                    listening = not full
                now = time.time()
                if now - swept >= 1.0:
                    swept = now
                    self._sweep(now)
        finally:
            self._stopped.set()

    def _accept(self):
        import selectors
        while len(self._open) < self.max_connections:
            try:
                sock, address = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:       # out of descriptors: the others are served meanwhile
                say("cannot accept a connection: %s" % (e.strerror or e))
                return
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            sock.setblocking(False)
            self._open[sock] = [address, bytearray(), time.time(), None]
            self._selector.register(sock, selectors.EVENT_READ, "conn")
            self._read(sock)     # a client's request often comes with its connection

    def _read(self, sock):
        state = self._open.get(sock)
        if state is None:
            return
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            return self._close(sock)
        state[1] += data
        state[3] = state[3] or time.time()
        if head_complete(state[1]):
            self._selector.unregister(sock)
            self._dispatch(sock, state)
        elif len(state[1]) > self.MAX_HEAD:
            self._selector.unregister(sock)
            self._submit((self._refuse, sock, 431))

    def _submit(self, job):
        with self._idle_lock:
            grow = self._idle == 0 and len(self._threads) < self.workers
            if grow:
                thread = threading.Thread(target=self._worker, name="slm-http-%d"
                                          % len(self._threads), daemon=True)
                self._threads.append(thread)
            else:
                self._idle -= 1
        self._work.put(job)
        if grow:
            thread.start()

    def _worker(self):
        while True:
            job = self._work.get()
            if job is None:
                return
            try:
                job[0](*job[1:])
            finally:
                with self._idle_lock:
                    self._idle += 1

    def _dispatch(self, sock, state):
        self._submit((self._serve, sock, state[0], bytes(state[1])))

    def _watch(self, sock, address, ahead):
        """A connection back from a worker: wait for its next request."""
        import selectors
        state = self._open.get(sock)
        if state is None:
            return
        state[1], state[2], state[3] = bytearray(ahead), time.time(), None
        if head_complete(state[1]):       # pipelined: the next head is here already
            state[3] = time.time()
            return self._dispatch(sock, state)
        if ahead:
            state[3] = time.time()
        self._selector.register(sock, selectors.EVENT_READ, "conn")

    def _sweep(self, now):
        """Close what idled too long, and heads that did not arrive in time."""
        for sock, (address, data, since, started) in list(self._open.items()):
            if started is None and now - since > self.IDLE_TIMEOUT or \
                    started is not None and now - started > self.HEAD_TIMEOUT:
                try:
                    self._selector.unregister(sock)
                except (KeyError, ValueError):
                    continue        # a worker has it
                self._close(sock)

    def _close(self, sock):
        self._open.pop(sock, None)
        try:
            self._selector.unregister(sock)
        except (KeyError, ValueError):
            pass
        try:
            sock.close()
        except OSError:
            pass

    def _give_back(self, sock, address, ahead):
        self._returned.append((sock, address, ahead))
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _refuse(self, sock, status):
        try:
            sock.setblocking(True)
            sock.settimeout(5)
            Connection(self, sock, None, None).refuse(status)
        except OSError:
            pass
        self._forget(sock)

    def _forget(self, sock):
        self._open.pop(sock, None)
        try:
            sock.close()
        except OSError:
            pass

    def _serve(self, sock, address, ahead):
        keep = False
        reader = SocketReader(sock, ahead)
        try:
            sock.setblocking(True)
            sock.settimeout(self.BODY_TIMEOUT)
            keep = self._handler(self, sock, address, reader).serve_one()
        except (OSError, socket.timeout):
            keep = False        # the client went away or stalled
        except Exception as e:   # a bug: this connection only
            say("error serving %s: %s" % (address[0] if address else "?", describe_error(e)))
            keep = False
        if keep and not self._stop.is_set():
            try:
                sock.setblocking(False)
            except OSError:
                keep = False
        if keep and not self._stop.is_set():
            self._give_back(sock, address, bytes(reader.buf))
        else:
            self._forget(sock)

    def shutdown(self):
        """Stop serve_forever (from another thread) and wait for it."""
        self._stop.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        self._stopped.wait(10)

    def server_close(self):
        self._stop.set()
        for sock in list(self._open):
            if sock.fileno() >= 0:
                try:
                    self._selector.unregister(sock)
                except (KeyError, ValueError):
                    continue       # with a worker: closed when it is done
                self._close(sock)
        for sock in (self.socket, self._wake_r, self._wake_w):
            try:
                sock.close()
            except OSError:
                pass
        for _ in self._threads:
            self._work.put(None)


def make_server(host, port, app, access_log=False, workers=64):
    return PooledServer((host, port), app, workers=workers, access_log=access_log)


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
# Assembly: the one way to build the service, whoever starts it
# ---------------------------------------------------------------------------


class Service(object):
    """Everything one running service owns: the database, the ingestor, the
    outbox sender, the web application (the API and the dashboard's pages).
    start() starts the background work, stop() ends it (long-polls answer
    at once) and closes the database."""

    def __init__(self, db, policy, keyring, log=None, outbox_poll=1.0, send_timeout=10.0,
                 backoff_scale=1.0, access=None, limiter=None, public=(), slurm=None,
                 watch_interval=15.0, spools=(), group_settle=60.0, switch_interval=0.0005,
                 hosts=None, beat_flush=None, beat_rate=None, mailprog_hold=MAILPROG_HOLD):
        self.db = db
        self.switch_interval = switch_interval
        self.policy = policy
        self.keyring = keyring
        self.metrics = Metrics()
        secrets = tuple(s for s in tuple(keyring.secrets()) + tuple(db.secrets()) +
                        tuple(policy.secrets()) if s)
        sink = log or say

        def diag(message):
            sink(redact(message, secrets))
        self.log = diag
        self.ingestor = Ingestor(db, policy, self.metrics)
        self.sender = OutboxSender(db, metrics=self.metrics, log=diag, poll=outbox_poll,
                                   timeout=send_timeout, backoff_scale=backoff_scale,
                                   smtp=policy.smtp, guard=policy.allow.guard,
                                   site=[d.url for d in policy.hooks])
        self.ingestor.notified = self.sender.wakeup.set
        self.ingestor.slurm = slurm
        self.ingestor.log = diag
        self.ingestor.mailprog_hold = mailprog_hold
        self.heartbeats = Heartbeats(db, private=bool(access is not None and access.private_jobs),
                                     log=diag, flush=beat_flush, rate=beat_rate)
        self.watchdog = Watchdog(db, self.ingestor, slurm, interval=watch_interval,
                                 spools=spools, private=keyring.tokens_file is not None,
                                 log=diag, group_settle=group_settle)
        keyring.log = diag
        keyring.sessions = Sessions(db)
        self.watchdog.heartbeats = self.heartbeats
        self.ingestor.written = self.heartbeats.learn
        self.app = make_app(db, self.ingestor, self.heartbeats, keyring, self.metrics, diag,
                            access=access,
                            limiter=limiter, public=public, pages=Dashboard(log=diag).install,
                            hosts=hosts, sender=self.sender)
        self.started = False

    def start(self):
        if not self.started:
            self.started = True
            # the writer of a group commit waits for the GIL after each database
            # round trip while dozens of request threads hold it in turns: a
            # shorter switch interval than the default 5 ms keeps the write
            # transaction (and so every request waiting on it) from stalling
            sys.setswitchinterval(self.switch_interval)
            self.sender.start()
            self.watchdog.start()
            self.heartbeats.start()
        return self

    def stop(self):
        self.ingestor.changes.close()     # long-polls answer now, not in 30 s
        if self.started:
            self.watchdog.stop()
            self.sender.stop()
            self.heartbeats.stop()        # what it holds is written
        self.db.close()


def request_limiter(spec):
    """SLM_RATE_LIMIT: 'REQUESTS[/s][,BURST]' per token (default 500/s, burst
    5000: an array of thousands of tasks ending at once is normal), or 'off'."""
    spec = spec.strip().lower()
    if spec == "off":
        return None
    if not spec:
        return RequestLimiter()
    m = re.match(r"(\d+(?:\.\d+)?)(?:/s)?(?:,(\d+))?\Z", spec)
    if not m or float(m.group(1)) <= 0:
        raise ConfigError("SLM_RATE_LIMIT must look like 500/s or 500/s,5000 (or off)")
    return RequestLimiter(float(m.group(1)), float(m.group(2)) if m.group(2) else None)


def build_service(env, db=None, log=None, spools=()):
    """The service as env (os.environ or the like), --db and --spool describe it.

    Raises ConfigError for a wrong setting.  Nothing runs until start().
    """
    policy = NotifyPolicy.from_env(env)
    keyring = Keyring(env.get("SLM_API_TOKEN", "").strip() or None,
                      env.get("SLM_TOKENS_FILE", "").strip() or None, log=log)
    private = env.get("SLM_PRIVATE_DATA", "").strip().lower()
    if private not in ("", "jobs", "none"):
        raise ConfigError("SLM_PRIVATE_DATA must be jobs (users see only their own) or none")
    public = [w.strip().lower() for w in env.get("SLM_PUBLIC", "").split(",") if w.strip()]
    if set(public) - {"healthz", "metrics"}:
        raise ConfigError("SLM_PUBLIC lists what answers without a token: healthz, metrics")
    reconcile = env.get("SLM_RECONCILE", "").strip().lower() or "auto"
    if reconcile not in ("auto", "off"):
        raise ConfigError("SLM_RECONCILE must be auto (ask Slurm when its commands are here) "
                          "or off")
    slurm = Slurm(log=log) if reconcile == "auto" and Slurm.present() else None
    spools = list(spools) + [p for p in env.get("SLM_SPOOLS", "").split(":") if p]
    for root in spools:
        if not os.path.isdir(root):
            raise ConfigError("--spool %s: no such directory" % root)
    database = open_database(db_config(env, db))
    return Service(database, policy, keyring, log=log, slurm=slurm, spools=spools,
                   watch_interval=env_seconds(env, "SLM_WATCH_INTERVAL", 15.0),
                   group_settle=env_seconds(env, "SLM_GROUP_SETTLE", 60.0),
                   outbox_poll=env_seconds(env, "SLM_OUTBOX_POLL", 1.0),
                   # SLM_RELAY_TIMEOUT: its first name, still read
                   send_timeout=env_seconds(env, "SLM_SEND_TIMEOUT", env_seconds(
                       env, "SLM_RELAY_TIMEOUT", 10.0)),
                   backoff_scale=env_seconds(env, "SLM_OUTBOX_BACKOFF_SCALE", 1.0),
                   access=Access(private_jobs=private == "jobs",
                                 site=[d.url for d in policy.hooks]),
                   limiter=request_limiter(env.get("SLM_RATE_LIMIT", "")), public=public,
                   switch_interval=env_seconds(env, "SLM_SWITCH_INTERVAL", 0.0005),
                   hosts=allowed_hosts(env, keyring.required),
                   beat_flush=env_seconds(env, "SLM_HEARTBEAT_FLUSH", Heartbeats.FLUSH),
                   beat_rate=env_seconds(env, "SLM_HEARTBEAT_RATE", Heartbeats.RATE),
                   mailprog_hold=env_seconds(env, "SLM_MAILPROG_HOLD", MAILPROG_HOLD))


class Application(object):
    """The WSGI entry point for other servers (gunicorn 'slm_api:application',
    uwsgi): the service built from the environment on the first request of
    each process, started (outbox sender included), exactly as main() runs
    it.  Built lazily: importing slm_api must not open a database.  A wrong
    setting, which makes main() say one line and exit 2, is said once in the
    server's log, and every request is answered 503 in JSON naming no
    setting (the caller may be anyone)."""

    def __init__(self):
        self._service = None
        self._pid = None
        self._refused = None
        self._lock = threading.Lock()

    @property
    def service(self):
        if self._service is None or self._pid != os.getpid():   # a fork starts its own
            with self._lock:
                if self._service is None or self._pid != os.getpid():
                    self._service = build_service(os.environ).start()
                    self._pid = os.getpid()
        return self._service

    def __call__(self, environ, start_response):
        if self._refused is None:
            try:
                return self.service.app(environ, start_response)
            except ConfigError as e:
                say(str(e))
                self._refused = json_error(503, "the service is misconfigured: see its log").body
        start_response("503 Service Unavailable", [
            ("Content-Type", "application/json"), ("Content-Length", str(len(self._refused)))])
        return [self._refused]


application = Application()


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


def build_parser():
    parser = argparse.ArgumentParser(
        prog="slm_api.py", description="The SLM login-node service (see the module docstring).",
        epilog="'slm_api.py token add|revoke|list' manages per-user tokens (SLM_TOKENS_FILE).")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=port_number, default=DEFAULT_PORT)
    parser.add_argument("--db", default=None, help="SQLite path or database URL "
                        "(default: SLM_DB_* from the environment, else ./slm.db)")
    parser.add_argument("--insecure", action="store_true",
                        help="allow a non-loopback address without SLM_API_TOKEN")
    parser.add_argument("--access-log", action="store_true", help="log each request to stderr")
    parser.add_argument("--spool", action="append", default=[], metavar="DIR",
                        help="also store the events waiting in this slm spool (a shared "
                        "filesystem, for nodes that cannot reach the service); repeatable")
    parser.add_argument("--version", action="version", version=__version__)
    return parser


def cmd_serve(args, env):
    try:
        service = build_service(env, db=args.db, spools=args.spool)
    except ConfigError as e:
        say(str(e))
        return 2
    if not service.keyring.required and not args.insecure and not is_loopback(args.host):
        say("refusing to listen on %s without SLM_API_TOKEN set (anyone could post "
            "events); set a token or pass --insecure" % (args.host or "all addresses"))
        service.db.close()
        return 2
    try:
        service.db.ping()
    except StoreError as e:
        if service.db.backend == "sqlite":   # a file it cannot use will not mend itself
            say("cannot use the SQLite database %s (%s): is its directory writable? (--db "
                "PATH)" % (service.db.describe().split(" ", 1)[-1], e))
            service.db.close()
            return 2
        service.log("database not reachable yet (%s); answering 503 until it is" % e)
    # the address it listens on is one of its names
    service.app.service_plugin.hosts = allowed_hosts(env, service.keyring.required, args.host)
    workers = env.get("SLM_WORKERS", "").strip() or "64"
    if not workers.isdigit() or not 4 <= int(workers) <= 4096:
        say("SLM_WORKERS must be a number from 4 to 4096 (threads that answer requests)")
        service.db.close()
        return 2
    # long-polls wait in workers: they may hold half of them, no more
    service.ingestor.changes.limit = int(workers) // 2
    try:
        server = make_server(args.host, args.port, service.app, access_log=args.access_log,
                             workers=int(workers))
    except OSError as e:
        say("cannot listen on %s:%d: %s" % (args.host, args.port, e.strerror or e))
        service.db.close()
        return 1
    host, port = server.server_address[:2]

    def stop(signum, frame):
        # long-polls answer at once (the requests in progress are waited for);
        # shutdown() waits for serve_forever(), which runs in this very thread
        service.ingestor.changes.close()
        threading.Thread(target=server.shutdown, daemon=True).start()
    if threading.current_thread() is threading.main_thread():
        # before the start-up line: whoever waits for it may signal us at once
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        if service.keyring.tokens_file:
            signal.signal(signal.SIGHUP, lambda signum, frame: service.keyring.reload())
    service.start()
    say("serving on http://%s:%d (%s, %s)" % (
        "[%s]" % host if ":" in host else host, port, service.db.describe(),
        "token required" if service.keyring.required else "no token"))
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
        server.wait_idle(10.0)
        service.stop()
    say("stopped")
    return 0


def token_parser():
    parser = argparse.ArgumentParser(
        prog="slm_api.py token", description="Per-user tokens in SLM_TOKENS_FILE (a token "
        "is printed once, when it is made; the file keeps only its SHA-256).  The running "
        "service reads the file again within a second.")
    parser.add_argument("--file", help="the tokens file (default: SLM_TOKENS_FILE)")
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    add = sub.add_parser("add", help="make a new token for USER and print it")
    add.add_argument("user", metavar="USER")
    add.add_argument("--admin", action="store_true", help="the token may read and post "
                     "for every user")
    revoke = sub.add_parser("revoke", help="remove every token of USER")
    revoke.add_argument("user", metavar="USER")
    sub.add_parser("list", help="users and roles (never the tokens)")
    return parser


def write_tokens_file(path, lines):
    """Replace the tokens file at once (a reader sees the old or the new), mode
    0600, owned by whoever owned the old one: `sudo slm_api.py token revoke`
    must not leave a file the service (another user) cannot read, for then
    the tokens it read before would stay in force."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, ".%s.%s" % (os.path.basename(path), uuid.uuid4().hex[:8]))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            old = os.stat(path)
        except FileNotFoundError:
            old = None
        if old is not None and (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
            os.fchown(fd, old.st_uid, old.st_gid)
        os.write(fd, "".join(lines).encode("utf-8"))
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.rename(tmp, path)


def cmd_token(argv, env):
    args = token_parser().parse_args(argv)
    path = args.file or env.get("SLM_TOKENS_FILE", "").strip()
    if not path:
        say("which tokens file? set SLM_TOKENS_FILE (as the service has it) or pass --file")
        return 2
    if args.action is None:
        token_parser().print_usage(sys.stderr)
        return 2
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        text = ""
    except (OSError, UnicodeDecodeError) as e:
        say("cannot read %s: %s" % (path, getattr(e, "strerror", None) or e))
        return 1
    try:
        tokens = parse_tokens(text, path)
    except ConfigError as e:
        say(str(e))
        return 1
    lines = [line + "\n" for line in text.splitlines()]
    if args.action == "list":
        for who in sorted(set(tokens.values()), key=lambda p: (p.user, p.role, p.key)):
            print("%s\t%s\t%s" % (who.user, who.role, who.key))
        return 0
    if not USER_RE.match(args.user):
        say("not a user name: %r" % args.user[:80])
        return 2
    if args.action == "revoke":
        kept = [line for line in lines if line.split(":", 1)[0].strip() != args.user
                or line.lstrip().startswith("#")]
        if len(kept) == len(lines):
            say("%s has no token in %s" % (args.user, path))
            return 1
        write_tokens_file(path, kept)
        say("revoked %d token(s) of %s" % (len(lines) - len(kept), args.user))
        return 0
    import secrets
    token = "slm_" + secrets.token_urlsafe(32)
    role = "admin" if args.admin else "user"
    try:
        write_tokens_file(path, lines + ["%s:%s:%s\n" % (args.user, role, token_digest(token))])
    except OSError as e:
        say("cannot write %s: %s" % (path, e.strerror or e))
        return 1
    say("a new %s token for %s is in %s; it is shown only now" % (role, args.user, path))
    print("token for %s (%s): %s" % (args.user, role, token))
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["token"]:
        return cmd_token(argv[1:], os.environ)
    args = build_parser().parse_args(argv)
    return cmd_serve(args, os.environ)


if __name__ == "__main__":
    sys.exit(main())
