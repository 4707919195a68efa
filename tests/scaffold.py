"""The one test scaffold: the service in-process and as a process, a webhook
sink, a mail server, an in-process caller, throw-away MariaDB databases, an
event builder, free ports and the one way to wait.

Every suite and bench/ use these (bench/ imports this file by path), so a
change in how slm_api.py starts or answers is made here once.

    event(job_id, status, when, seq, **fields)   an event as slm.py sends it
    heartbeat(job_id, interval, when, user)   a heartbeat as slm.py sends it
    build_service(db, env)   slm_api.build_service with a test's settings
    call(app, method, path, ...)   one request through a WSGI app in-process
    post(app, body, token)   POST /api/v1/events through it
    ServiceProcess(db, workdir, token=None, env=None)   slm_api.py as a process:
        start(), stop() (SIGTERM, exit 0), kill() (SIGKILL), url, get/post/...
    WsgiProcess(argv, db, workdir)   the same service under gunicorn & co.
    HttpSink(mode="ok")   a webhook or a stand-in for the service: answers
        as scripted (ok, an HTTP status, "hang", "reset"), records everything
    MailServer()          an SMTP server on loopback (aiosmtpd) keeping what it gets
    ScratchDatabase()     a MariaDB database made for one test, dropped after
    free_port()           a loopback port nobody listens on
    await_true(predicate, timeout, what)   every wait: a condition, polled,
        that fails loudly at its deadline (repeat_for: a bounded period)
"""
import http.client
import io
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, urlencode
from wsgiref.util import setup_testing_defaults

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLM = os.path.join(ROOT, "slm.py")
SLM_API = os.path.join(ROOT, "slm_api.py")
MARIADB_URL = os.environ.get("SLM_TEST_MARIADB_URL", "mysql://root@127.0.0.1:3306")


def required(name):
    return os.environ.get("SLM_REQUIRE_" + name, "") not in ("", "0")


def need(condition, name, why):
    """Skip (or, when CI requires the service, fail) unless condition."""
    import pytest
    if condition:
        return
    if required(name):
        pytest.fail("%s is required here (SLM_REQUIRE_%s=1) but %s" % (name.lower(), name, why))
    pytest.skip("%s: %s" % (name.lower(), why))


def free_port():
    """A loopback port nobody listens on (for now)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# What a test's service relays to: the loopback sinks on any port.  The first
# entry is how the service reads SLM_RELAY_ALLOW since issue #21 (HOST:* for
# every port); the second how it read it before (a host, any port).
RELAY_ALLOW = "127.0.0.1:*"


def iso_time(epoch):
    """An epoch as slm.py writes times: UTC, milliseconds, Z."""
    return "%s.%03dZ" % (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)),
                         int(epoch * 1000) % 1000)


def event(job_id="100", status="RUNNING", when=None, seq=1, **extra):
    """An event as slm.py sends it.  when: its time as text, or an epoch
    (seconds), or None for now; extra: any other field (event_id too)."""
    if when is None:
        when = time.time()
    e = {"schema": "slm.event/1", "event_id": uuid.uuid4().hex, "job_id": job_id,
         "status": status, "seq": seq,
         "time": iso_time(when) if isinstance(when, (int, float)) else when}
    e.update(extra)
    return e


def heartbeat(job_id, interval, when=None, user="alice", **extra):
    """A heartbeat as slm.py sends it (time: as event()'s; extra: samples,
    or any field to override)."""
    beat = {"job_id": job_id, "interval": interval, "user": user,
            "time": iso_time(time.time() if when is None else when)
            if not isinstance(when, str) else when}
    beat.update(extra)
    return beat


def await_true(predicate, timeout=20.0, what="condition", interval=0.05):
    """Poll predicate() until it returns something true; return that.  At the
    deadline fail, saying what (text, or a callable telling the last state)."""
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError("%s not reached within %gs" % (
                what() if callable(what) else what, timeout))
        time.sleep(interval)


def wait_on(cond, predicate, timeout, what):
    """await_true for state a thread changes under cond (notifying it):
    woken at each change instead of polling.  Hold no lock when calling."""
    deadline = time.time() + timeout
    with cond:
        while not predicate():
            left = deadline - time.time()
            if left <= 0:
                raise AssertionError("%s not reached within %gs" % (
                    what() if callable(what) else what, timeout))
            cond.wait(left)


def repeat_for(seconds, action):
    """One bounded period (not a wait for a condition: what must not happen
    in it): action() again and again until it is over; how many times."""
    end = time.time() + seconds
    count = 0
    while time.time() < end:
        action()
        count += 1
    return count


# ---------------------------------------------------------------------------
# In-process: one request through a WSGI app
# ---------------------------------------------------------------------------


class Answer(object):
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    @property
    def json(self):
        return json.loads(self.body.decode("utf-8"))


def call(app, method, path, body=None, headers=None, token=None, query=None):
    """One request through the WSGI app, the environ built as a server would.

    path is what a client sends (percent-encoded), query string included
    unless given apart; PATH_INFO gets its decoded bytes as latin-1 (PEP 3333).
    A body is JSON (Content-Type: application/json) unless headers say
    otherwise (a header given as None is not sent).  Every answer but HEAD's
    says its length.
    """
    if query is None:
        path, _, query = path.partition("?")
    environ = {}
    setup_testing_defaults(environ)
    environ["REQUEST_METHOD"] = method
    environ["PATH_INFO"] = urllib.parse.unquote_to_bytes(path).decode("latin-1")
    environ["QUERY_STRING"] = query
    if body is not None:
        if not isinstance(body, bytes):
            body = json.dumps(body).encode("utf-8")
        environ["CONTENT_LENGTH"] = str(len(body))
        environ["CONTENT_TYPE"] = "application/json"
        environ["wsgi.input"] = io.BytesIO(body)
    if token:
        environ["HTTP_AUTHORIZATION"] = "Bearer " + token
    for key, value in (headers or {}).items():
        key = key.upper().replace("-", "_")
        # a server hands these two over without the HTTP_ prefix (PEP 3333)
        key = key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = value
    got = {}

    def start_response(status, response_headers, exc_info=None):
        got["status"] = status
        got["headers"] = dict((k.lower(), v) for k, v in response_headers)
    out = b"".join(app(environ, start_response))
    if method != "HEAD":
        assert got["headers"].get("content-length") == str(len(out)), (method, path, got)
    return Answer(int(got["status"][:3]), got["headers"], out)


def post(app, body, token=None, headers=None, expect=None):
    """POST body (an event, {"events": [...]}, or bytes) to /api/v1/events of
    app (a WSGI app or a built service); expect: the status it must answer."""
    answer = call(getattr(app, "app", app), "POST", "/api/v1/events", body, headers, token)
    if expect is not None:
        assert answer.status == expect, (answer.status, answer.body[:500])
    return answer


# ---------------------------------------------------------------------------
# A webhook sink (also a stand-in for the service)
# ---------------------------------------------------------------------------


class HttpSink(object):
    """Answers each POST (or GET) as scripted, and records it.

    mode: what to answer when script is empty: "ok" (200), an HTTP status
    (429 comes with Retry-After: 1), "hang" (read the request, never answer)
    or "reset" (read it, close with an RST).  script: one action per request,
    popped first.  Recorded: requests (path, headers, body, status),
    received (time, body) of every request read, delivered (bodies answered
    2xx) and events (those bodies' events, batches flattened).
    """

    def __init__(self, mode="ok", host="127.0.0.1"):
        self.mode = mode
        self.script = []
        self.answer = {}     # more fields of a 2xx answer's body (a service's "pace")
        self.requests = []
        self.received = []
        self.delivered = []
        self.events = []
        self.cond = threading.Condition()
        self.closing = threading.Event()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw.decode("utf-8"))
                except ValueError:
                    body = None
                with sink.cond:
                    action = sink.script.pop(0) if sink.script else sink.mode
                    sink.received.append((time.time(), body))
                    sink.cond.notify_all()
                if action == "hang":
                    sink.closing.wait(30)
                    self.close_connection = True
                    return
                if action == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                               struct.pack("ii", 1, 0))
                    self.close_connection = True
                    return
                status = 200 if action == "ok" else int(action)
                with sink.cond:
                    sink.requests.append((self.path, dict(self.headers), body, status))
                    if status < 300:
                        sink.delivered.append(body)
                        # events: one, or a batch; heartbeats and chat bodies are not
                        if isinstance(body, dict) and "event_id" in body:
                            sink.events.append(body)
                        elif isinstance(body, dict) and isinstance(body.get("events"), list):
                            sink.events.extend(body["events"])
                    sink.cond.notify_all()
                answer = json.dumps(dict({"ok": True, "accepted": 1}, **sink.answer)
                                    if status < 300 else {"error": "scripted"}).encode()
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", "1")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = do_POST      # a GET is answered (and recorded) as scripted too

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = "http://%s:%d" % (host, self.port)
        self.hook_url = self.url + "/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    # the fake service's historical spelling: statuses to answer, in order
    @property
    def statuses(self):
        return self.script

    @statuses.setter
    def statuses(self, value):
        self.script = value

    def wait(self, predicate, timeout=30.0, what="sink"):
        """Wait until predicate() is true."""
        wait_on(self.cond, predicate, timeout, lambda: "%s; received %r" % (
            what, [b for _, b in self.received][-10:]))

    def wait_for(self, predicate, timeout=15.0):
        """Wait until predicate(events) is true; return the events."""
        self.wait(lambda: predicate(self.events), timeout,
                  "events %s" % [e.get("status") for e in self.events])
        return list(self.events)

    def wait_status(self, status, timeout=15.0):
        return self.wait_for(lambda evs: any(e.get("status") == status for e in evs), timeout)

    def statuses_seen(self):
        return [e.get("status") for e in self.events]

    def quiet(self, period=0.5):
        """After the expected state was awaited: one bounded period in which
        nothing more may arrive.  Returns how many requests came in it."""
        with self.cond:
            before = len(self.received)
        self.closing.wait(period)
        with self.cond:
            return len(self.received) - before

    def close(self):
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()


class MailServer(object):
    """aiosmtpd on loopback, keeping what it is sent: messages, a list of
    (recipients, email.message.EmailMessage).  start()/stop() on one port
    (given, or a free one); auth: an aiosmtpd authenticator."""

    def __init__(self, port=None, auth=None):
        import email
        import email.policy
        import pytest
        controller = pytest.importorskip("aiosmtpd.controller")
        self.messages = []
        self.cond = threading.Condition()
        self.port = port or free_port()
        server = self

        class Handler(object):
            async def handle_DATA(self, smtp, session, envelope):
                with server.cond:
                    server.messages.append((envelope.rcpt_tos, email.message_from_bytes(
                        envelope.content, policy=email.policy.default)))
                    server.cond.notify_all()
                return "250 OK"
        kwargs = {}
        if auth:
            kwargs = {"authenticator": auth, "auth_require_tls": False}
        self.controller = controller.Controller(Handler(), hostname="127.0.0.1", port=self.port,
                                                **kwargs)

    def start(self):
        self.controller.start()
        return self

    def stop(self):
        self.controller.stop()

    def quiet(self, period):
        """After the awaited state: how many mails came in one bounded period."""
        with self.cond:
            before = len(self.messages)
        threading.Event().wait(period)
        with self.cond:
            return len(self.messages) - before

    def wait(self, count, timeout=20):
        """Wait for count mails in all; return them."""
        wait_on(self.cond, lambda: len(self.messages) >= count, timeout,
                lambda: "%d mail(s), not %d" % (len(self.messages), count))
        with self.cond:
            return list(self.messages)


# ---------------------------------------------------------------------------
# MariaDB: throw-away databases on the test server
# ---------------------------------------------------------------------------


def mariadb_params():
    u = urllib.parse.urlsplit(MARIADB_URL)
    return dict(host=u.hostname or "127.0.0.1", port=u.port or 3306, user=u.username or "root",
                password=urllib.parse.unquote(u.password or ""))


def mariadb_admin():
    """A connection to the test server, or skip/fail as SLM_REQUIRE_MARIADB says."""
    try:
        import pymysql
    except ImportError:
        need(False, "MARIADB", "PyMySQL is not installed")
    try:
        return pymysql.connect(connect_timeout=3, autocommit=True, **mariadb_params())
    except Exception as e:
        need(False, "MARIADB", "no MariaDB server at %s (%s)" % (MARIADB_URL, e))


class ScratchDatabase(object):
    """A database slm_test_<random> on the test server, for one test."""

    def __init__(self, prefix="slm_test"):
        self.admin = mariadb_admin()
        self.name = "%s_%s" % (prefix, uuid.uuid4().hex[:12])
        with self.admin.cursor() as cur:
            cur.execute("CREATE DATABASE `%s` CHARACTER SET utf8mb4" % self.name)
        p = self.params = mariadb_params()
        self.url = "mysql://%s:%s@%s:%d/%s" % (p["user"], p["password"], p["host"], p["port"],
                                               self.name)

    def connect(self):
        import pymysql
        return pymysql.connect(database=self.name, autocommit=True, charset="utf8mb4",
                               **self.params)

    def query(self, sql, args=()):
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return [tuple(r) for r in cur.fetchall()]
        finally:
            conn.close()

    def drop(self):
        try:
            admin = mariadb_admin()
            with admin.cursor() as cur:
                cur.execute("DROP DATABASE IF EXISTS `%s`" % self.name)
            admin.close()
        finally:
            self.admin.close()


def database(kind, workdir):
    """A fresh database for one test: a SQLite path in workdir, or (kind
    "mariadb") a ScratchDatabase.  Drop the latter with drop_database()."""
    if kind == "sqlite":
        return os.path.join(str(workdir), "slm-%s.db" % uuid.uuid4().hex[:6])
    return ScratchDatabase()


def drop_database(db):
    if isinstance(db, ScratchDatabase):
        db.drop()


def rows_per_event(db):
    """event_id -> how many rows the database (a SQLite path or a
    ScratchDatabase) holds for it: looked up behind the service's back."""
    if isinstance(db, ScratchDatabase):
        return dict((k, int(n)) for k, n in db.query(
            "SELECT event_id, COUNT(*) FROM slurm_events GROUP BY event_id"))
    import sqlite3
    conn = sqlite3.connect(db)
    try:
        return dict(conn.execute("SELECT event_id, COUNT(*) FROM slurm_events"
                                 " GROUP BY event_id").fetchall())
    finally:
        conn.close()


# ---------------------------------------------------------------------------
# The service in this process
# ---------------------------------------------------------------------------


def build_service(db, env=None, log=None, spools=()):
    """slm_api.build_service in this process with what a test's service runs
    with (see service_env: relays to loopback allowed), then env.  Not started."""
    import slm_api
    settings = {"SLM_RELAY_ALLOW": RELAY_ALLOW}
    settings.update(env or {})
    return slm_api.build_service(settings, db=db.url if isinstance(db, ScratchDatabase)
                                 else str(db), log=log, spools=spools)


# ---------------------------------------------------------------------------
# The service as a process
# ---------------------------------------------------------------------------


def http_call(method, url, body=None, token=None, timeout=10, headers=None):
    """(status, parsed JSON or text) of one request on a fresh connection."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        headers = dict(headers or {})
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
            headers.setdefault("Content-Type", "application/json")
        if token:
            headers["Authorization"] = "Bearer %s" % token
        conn.request(method, u.path + ("?" + u.query if u.query else ""), data, headers)
        r = conn.getresponse()
        raw = r.read()
        text = raw.decode("utf-8", "replace")
        if "json" in (r.getheader("Content-Type") or ""):
            return r.status, json.loads(text)
        return r.status, text
    finally:
        conn.close()


def clean_env(**extra):
    """This environment without SLM_* (a test sets what it means), plus extra."""
    env = dict((k, v) for k, v in os.environ.items() if not k.startswith("SLM_"))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


class ServerProcess(object):
    """A server of the service as a process on a fixed port, its output in a
    log file: start() until /healthz answers (or, healthy=False, until the
    server says it serves), stop(signal) and its exit code, start() again
    (same port, same database), kill() for a SIGKILL."""

    name = "server"

    def __init__(self, argv, workdir, env, token=None):
        self.argv = argv
        self.workdir = str(workdir)
        self.env = env
        self.token = token
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.log_path = os.path.join(self.workdir, "%s-%s.log" % (self.name,
                                                                  uuid.uuid4().hex[:6]))
        self.proc = None
        self.starts = 0

    def command(self):
        return [a.replace("PORT", str(self.port)) for a in self.argv]

    def serving(self):
        """Whether the server says it serves (before it may be healthy)."""
        return True

    def start(self, timeout=20, healthy=True):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command(), env=self.env, stdout=log, stderr=log,
                                         cwd=self.workdir)
        self.starts += 1

        def up():
            if self.proc.poll() is not None:
                raise AssertionError("%s exited (%s): %s"
                                     % (self.name, self.proc.returncode, self.output()))
            if not healthy:
                return self.serving()
            try:
                status, body = http_call("GET", self.url + "/healthz", timeout=2,
                                         token=self.token)
                return status == 200 and body.get("ok") is True
            except (OSError, ValueError, http.client.HTTPException):
                return False
        try:
            await_true(up, timeout, "%s to answer /healthz" % self.name)
        except AssertionError as e:
            self.kill()      # a test that fails here must not leave a server behind
            raise AssertionError("%s; its output: %s" % (e, self.output()))
        return self

    def stop(self, sig=signal.SIGTERM):
        """SIGTERM: the requests in progress finish, the process exits 0."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=20)
        assert code == 0, self.output()
        try:    # nothing answers on the port any more
            socket.create_connection(("127.0.0.1", self.port), timeout=2).close()
        except OSError:
            return
        raise AssertionError("port %d still answers after the server stopped" % self.port)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def output(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def connection(self):
        """A keep-alive connection of one's own."""
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    # -- the API ------------------------------------------------------------

    def request(self, method, path, body=None, token=None, timeout=30, headers=None):
        return http_call(method, self.url + path, body, token=token or self.token, timeout=timeout,
                    headers=headers)

    def get(self, path, params=None, token=None):
        url = quote(path, safe="/")
        if params:
            url += "?" + urlencode(params)
        return self.request("GET", url, token=token)

    def post(self, body, token=None, headers=None):
        return self.request("POST", "/api/v1/events", body, token=token, headers=headers)

    def job(self, job_id):
        status, body = self.get("/api/v1/jobs/" + job_id)
        return body if status == 200 else None

    def events(self, job_id):
        status, body = self.get("/api/v1/jobs/%s/events" % job_id)
        assert status == 200, body
        return body["events"]

    def jobs(self, **params):
        status, body = self.get("/api/v1/jobs", dict(params, limit=1000))
        assert status == 200, body
        return body["jobs"]

    def notifications(self, job_id):
        status, body = self.get("/api/v1/jobs/%s/notifications" % job_id)
        assert status == 200, body
        return body["notifications"]

    def metric(self, name):
        status, text = http_call("GET", self.url + "/metrics", token=self.token)
        assert status == 200
        m = re.search(r"^%s (\d+)$" % re.escape(name), text, re.M)
        assert m, text
        return int(m.group(1))

    def wait_job(self, predicate, job_id=None, name=None, timeout=20):
        """Poll until the job (by id, or the one job of that name) satisfies predicate."""
        seen = {}

        def check():
            if job_id is not None:
                seen["job"] = self.job(job_id)
            else:
                found = self.jobs(name=name)
                assert len(found) <= 1, found
                seen["job"] = found[0] if found else None
            return seen["job"] is not None and predicate(seen["job"]) and seen["job"]
        try:
            return await_true(check, timeout, "job %s" % (job_id or name))
        except AssertionError:
            raise AssertionError("job %s never got there; last seen %r"
                                 % (job_id or name, seen.get("job")))

    def wait_notifications(self, job_id, predicate, timeout=30):
        seen = {}

        def check():
            seen["rows"] = self.notifications(job_id)
            return predicate(seen["rows"])
        try:
            await_true(check, timeout, "notifications of %s" % job_id, interval=0.1)
        except AssertionError:
            raise AssertionError("notifications of %s: %r" % (job_id, seen.get("rows")))
        return seen["rows"]



def service_env(token=None, env=None):
    """What a test's service runs with: the outbox polled quickly and retried
    with short waits, 127.0.0.1 allowed as a destination, then env."""
    out = clean_env(SLM_RELAY_ALLOW=RELAY_ALLOW, SLM_OUTBOX_POLL="0.1",
                    SLM_OUTBOX_BACKOFF_SCALE="0.05", SLM_SEND_TIMEOUT="1")
    if token:
        out["SLM_API_TOKEN"] = token
    out.update(env or {})
    return out


class ServiceProcess(ServerProcess):
    """slm_api.py as a process (python slm_api.py --port P --db DB).

    db: a SQLite path, a database URL or a ScratchDatabase.  env: extra
    variables (the rest of SLM_* is cleared; see service_env).  args: more
    of slm_api.py's options (--host, --access-log, --spool...).
    """

    name = "slm_api"

    def __init__(self, db, workdir, token=None, env=None, args=(), python=None):
        self.db = db.url if isinstance(db, ScratchDatabase) else str(db)
        self.args = list(args)
        self.python = python or sys.executable
        ServerProcess.__init__(self, [], workdir, service_env(token, env), token)

    def command(self):
        return [self.python, SLM_API, "--port", str(self.port), "--db", self.db] + self.args

    def banners(self):
        return re.findall(r"slm-api: serving on http://[^:]+:(\d+) \(", self.output())

    def serving(self):
        return len(self.banners()) == self.starts

    def start(self, timeout=20, healthy=True):
        ServerProcess.start(self, timeout, healthy)
        # the start-up line names the port it serves on
        banners = self.banners()
        assert len(banners) == self.starts and int(banners[-1]) == self.port, self.output()
        return self


class WsgiProcess(ServerProcess):
    """slm_api:application under another WSGI server: argv names the port as PORT."""

    def __init__(self, argv, db, workdir, token=None, env=None, name=None):
        self.name = name or os.path.basename(argv[0])
        ServerProcess.__init__(self, argv, workdir, service_env(token, dict(
            {"SLM_DB_URL": db if "://" in db else "sqlite:///" + db, "PYTHONPATH": ROOT},
            **(env or {}))), token)
