"""Where people are: e-mail, Telegram, Matrix and the other services, per-destination filters, groups.

E-mail goes to a real SMTP server on loopback (aiosmtpd), from slm.py itself
and relayed by a real slm_api.py; the chat services (no internet here) are
checked against the bodies their documentation requires, with the scaffold's
sink standing in where a request must really be made.  Groups of jobs: in the
service here, on the real Slurm in tests/test_lifecycle.py.
"""
import json
import time

import pytest

from conftest import MAIN_PYTHON, run_slm
import scaffold
import slm

EVENT = {"schema": "slm.event/1", "event_id": "e1e2e3", "job_id": "4711", "job_name": "train",
         "status": "FAILED", "exit_code": 3, "user": "alice", "cluster": "c1",
         "partition": "gpu", "elapsed": 65.0, "output_tail": "step 9\nerror: boom",
         "reason": None}


def request(fmt, url, event=EVENT, **kw):
    method, target, body, token = slm.FORMATS[fmt].request(url, dict(event), **kw)
    return method, target, json.loads(body.decode("utf-8")), token


class Answer(object):
    def __init__(self, body, status=200):
        self.status, self.body, self.headers = status, json.dumps(body).encode(), {}

    def json(self):
        return json.loads(self.body.decode())


# ---------------------------------------------------------------------------
# The chat services, as their documentation says
# ---------------------------------------------------------------------------


def test_telegram_send_message():
    for url in ("tgram://123456:ABC-def_gh/-1001234567890",
                "https://api.telegram.org/bot123456:ABC-def_gh/sendMessage?chat_id=-1001234567890"):
        assert slm.webhook_format(url)[0] == "telegram"
        method, target, body, token = request("telegram", url)
        assert (method, target) == ("POST", "https://api.telegram.org/bot123456:ABC-def_gh/"
                                            "sendMessage")
        assert body["chat_id"] == "-1001234567890" and token is None
        assert body["text"].startswith("FAILED: job 4711 (train)") and "error: boom" in body["text"]
    with pytest.raises(slm.DeliveryError) as e:
        slm.FORMATS["telegram"].judge(Answer({"ok": False, "error_code": 429,
                                              "description": "Too Many Requests",
                                              "parameters": {"retry_after": 5}}))
    assert e.value.retry_after == 5 and not e.value.permanent
    with pytest.raises(slm.DeliveryError) as e:
        slm.FORMATS["telegram"].judge(Answer({"ok": False, "error_code": 400,
                                              "description": "chat not found"}))
    assert e.value.permanent
    slm.FORMATS["telegram"].judge(Answer({"ok": True, "result": {}}))
    assert slm.Destination("tgram://justtoken").problem()


def test_matrix_room_message_with_a_transaction_per_event_and_room():
    url = "matrixs://syt_TOKEN_sekrit@matrix.example.org:8448/!room:example.org"
    assert slm.webhook_format(url)[0] == "matrix"
    method, target, body, token = request("matrix", url)
    assert method == "PUT" and token == "syt_TOKEN_sekrit"
    room = "https://matrix.example.org:8448/_matrix/client/v3/rooms/%21room%3Aexample.org"
    assert target.startswith(room + "/send/m.room.message/slm-")
    # a retry is the same transaction; the same event in another room is another
    assert request("matrix", url)[1] == target
    other = request("matrix", url.replace("!room", "!other"))[1]
    assert other.rpartition("/")[2] != target.rpartition("/")[2]
    assert body["msgtype"] == "m.text" and "FAILED" in body["body"]
    assert request("matrix", url.replace("matrixs", "matrix"))[1].startswith("http://")
    with pytest.raises(slm.DeliveryError) as e:
        slm.FORMATS["matrix"].judge(Answer({"errcode": "M_LIMIT_EXCEEDED", "error": "slow",
                                            "retry_after_ms": 2500}))
    assert e.value.retry_after == 2.5
    assert "room id" in slm.Destination("matrixs://tok@host/#alias:host").problem()
    assert "syt_TOKEN" not in slm.Destination(url).shown()


def test_mattermost_rocketchat_googlechat_gotify_pushover():
    assert request("mattermost", "mmosts://chat.example.org/sub/TOKEN")[1] == \
        "https://chat.example.org/sub/hooks/TOKEN"
    assert slm.webhook_format("mattermost+https://mm.example.org/hooks/abc") == \
        ("mattermost", "https://mm.example.org/hooks/abc")
    assert request("mattermost", "https://mm.example.org/hooks/abc")[1] == \
        "https://mm.example.org/hooks/abc"
    _, target, body, _ = request("mattermost", "mmost://localhost:8065/abc")
    assert target == "http://localhost:8065/hooks/abc" and "FAILED" in body["text"]

    _, target, body, _ = request("rocketchat", "rockets://intid/TOKEN123@chat.example.org")
    assert target == "https://chat.example.org/hooks/intid/TOKEN123" and body["text"]
    with pytest.raises(slm.DeliveryError):
        slm.FORMATS["rocketchat"].judge(Answer({"success": False, "error": "nope"}))
    slm.FORMATS["rocketchat"].judge(Answer({"success": True}))

    _, target, body, _ = request("googlechat", "gchat://SPACE/KEY/TOKEN")
    assert target.startswith("https://chat.googleapis.com/v1/spaces/SPACE/messages?key=KEY&"
                             "token=TOKEN&messageReplyOption=")
    assert body["thread"]["threadKey"] == request("googlechat", "gchat://S/K/T",
                                                  dict(EVENT, status="RUNNING"))[2][
        "thread"]["threadKey"]                     # one thread per job

    method, target, body, token = request("gotify", "gotifys://push.example.org/sub/APPTOKEN")
    assert (target, token) == ("https://push.example.org/sub/message", "APPTOKEN")
    assert body["priority"] == 8 and body["title"].startswith("FAILED")

    _, target, body, _ = request("pushover", "pover://uUSERKEY@aAPPTOKEN")
    assert target == "https://api.pushover.net/1/messages.json"
    assert (body["user"], body["token"]) == ("uUSERKEY", "aAPPTOKEN")
    assert len(body["message"]) <= 1024 and len(body["title"]) <= 250
    with pytest.raises(slm.DeliveryError):
        slm.FORMATS["pushover"].judge(Answer({"status": 0, "errors": ["user key is invalid"]}))


@pytest.mark.parametrize("fmt,url", [
    ("telegram", "tgram://1:A/2"), ("matrix", "matrix://t@h/!r:h"),
    ("mattermost", "mmost://h/t"), ("rocketchat", "rocket://a/b@h"),
    ("googlechat", "gchat://s/k/t"), ("gotify", "gotify://h/t"), ("pushover", "pover://u@t")])
def test_every_format_keeps_to_its_documented_length(fmt, url):
    huge = dict(EVENT, message="m" * 200000, output_tail="t" * 200000)
    _, _, body, _ = request(fmt, url, huge)
    text = body.get("text") or body.get("body") or body.get("message")
    f = slm.FORMATS[fmt]
    size = len(text.encode("utf-8")) if f.unit == "bytes" else len(text)
    assert size <= f.limit and "[truncated]" in text


def test_secrets_in_destinations_are_never_printed(env, sink):
    secret = "SEKRIT-abc123"
    env["SLM_WEBHOOK"] = ",".join([
        "tgram://1111:%s/42" % secret, "matrixs://%s@m.example.org/!r:x" % secret,
        "gotifys://g.example.org/%s" % secret, "pover://u%s@a%s" % (secret, secret),
        "mailtos://alice:%s@example.org?to=bob@example.org" % secret])
    env["SLM_SMTP_HOST"] = "127.0.0.1"
    env["SLM_SMTP_PORT"] = str(scaffold.free_port())
    for args in (["doctor"], ["-v", "run", "--", "true"]):
        r = run_slm(MAIN_PYTHON, args, env)
        assert secret.encode() not in r.stdout + r.stderr, (args, r.stdout, r.stderr)


# ---------------------------------------------------------------------------
# Each destination its own filter
# ---------------------------------------------------------------------------


def test_two_destinations_each_get_exactly_their_events(env, sink):
    other = scaffold.HttpSink()
    try:
        env["SLM_WEBHOOK"] = "%s/a#on=final,%s/b#on=RUNNING,warnings" % (sink.url, other.url)
        r = run_slm(MAIN_PYTHON, ["run", "--", "sh", "-c", "exit 2"], env)
        assert r.returncode == 2
        assert [e["status"] for e in sink.events] == ["FAILED"]
        assert [e["status"] for e in other.events] == ["RUNNING"]
        r = run_slm(MAIN_PYTHON, ["doctor"], env)
        out = r.stdout.decode()
        assert "gets final" in out and "gets RUNNING,TIME_WARNING,MEMORY_WARNING,STALLED" in out
    finally:
        other.close()


def test_filters_travel_with_the_relay(env, tmp_path):
    hook = scaffold.HttpSink()
    svc = scaffold.ServiceProcess(str(tmp_path / "f.db"), tmp_path).start()
    try:
        env.update(SLM_API_URL=svc.url, SLM_WEBHOOK_VIA="api",
                   SLM_WEBHOOK="%s/a#on=final,%s/b#on=RUNNING" % (hook.url, hook.url))
        assert run_slm(MAIN_PYTHON, ["run", "--", "true"], env).returncode == 0
        hook.wait(lambda: len(hook.delivered) == 2)
        assert hook.quiet() == 0
        got = sorted((path, body["status"]) for path, _, body, _ in hook.requests)
        assert got == [("/a", "COMPLETED"), ("/b", "RUNNING")]
    finally:
        svc.stop()
        hook.close()


# ---------------------------------------------------------------------------
# E-mail, through a real SMTP server
# ---------------------------------------------------------------------------


@pytest.fixture
def mail():
    m = scaffold.MailServer().start()
    yield m
    m.stop()


def smtp_env(env, port, **extra):
    env.update(SLM_SMTP_HOST="127.0.0.1", SLM_SMTP_PORT=str(port), SLM_SMTP_TLS="none",
               SLM_SMTP_FROM="slm@cluster.example.org")
    env.update(extra)
    return env


def test_mail_from_slm_py_is_multipart_threaded_and_sortable(env, mail):
    smtp_env(env, mail.port, SLM_WEBHOOK="mailto:alice@example.org,bob@example.org")
    r = run_slm(MAIN_PYTHON, ["run", "--name", "train", "--", "sh", "-c", "echo boom; exit 3"],
                env)
    assert r.returncode == 3, r.stderr
    messages = mail.wait(2)                       # RUNNING and FAILED (SLM_NOTIFY_ON default)
    assert all(sorted(to) == ["alice@example.org", "bob@example.org"] for to, _ in messages)
    msgs = [m for _, m in messages]
    subjects = [m["Subject"] for m in msgs]
    assert subjects[0].startswith("[slm] RUNNING local-") and subjects[0].endswith(" train")
    assert subjects[1].startswith("[slm] FAILED local-")
    for m in msgs:
        assert m.get_content_type() == "multipart/alternative"
        text = m.get_body(("plain",)).get_content()
        html = m.get_body(("html",)).get_content()
        for fact in (m["Subject"].split()[1], m["Subject"].split()[2], "train"):
            assert fact in text and fact in html          # both parts, the same facts
        assert m["From"] == "slm@cluster.example.org"
    assert "exit code 3" in msgs[1].get_body(("plain",)).get_content()
    # a job's mails thread: one root they both refer to, ids of their own
    assert msgs[0]["References"] == msgs[1]["References"] == msgs[1]["In-Reply-To"]
    assert msgs[0]["Message-ID"] != msgs[1]["Message-ID"]
    assert b"Traceback" not in r.stderr


def test_mail_login_and_credentials_never_printed(env):
    from aiosmtpd.smtp import AuthResult

    def auth(server, session, envelope, mechanism, data):
        return AuthResult(success=data.login == b"slmbot" and data.password == b"Pw-SEKRIT-9")
    server = scaffold.MailServer(auth=auth).start()
    try:
        smtp_env(env, server.port, SLM_SMTP_USER="slmbot", SLM_SMTP_PASSWORD="Pw-SEKRIT-9",
                 SLM_WEBHOOK="mailto:alice@example.org#on=final")
        r = run_slm(MAIN_PYTHON, ["-v", "run", "--", "true"], env)
        assert r.returncode == 0 and b"Pw-SEKRIT-9" not in r.stderr
        assert server.wait(1)[0][1]["Subject"].startswith("[slm] COMPLETED")
        r = run_slm(MAIN_PYTHON, ["doctor"], env)
        out = r.stdout.decode()
        assert "ok    smtp" in out and "login accepted" in out and "SEKRIT" not in out
    finally:
        server.stop()


def test_no_password_in_clear_to_a_server_without_tls(env):
    from aiosmtpd.smtp import AuthResult
    tried = []

    def auth(server, session, envelope, mechanism, data):
        tried.append(data.login)
        return AuthResult(success=True)
    server = scaffold.MailServer(auth=auth).start()      # offers no STARTTLS
    try:
        smtp_env(env, server.port, SLM_SMTP_USER="slmbot", SLM_SMTP_PASSWORD="Pw-SEKRIT-9",
                 SLM_SMTP_TLS="auto", SLM_WEBHOOK="mailto:alice@example.org#on=final")
        r = run_slm(MAIN_PYTHON, ["run", "--name", "two\nlines", "--", "true"], env)
        assert r.returncode == 0 and b"Pw-SEKRIT-9" not in r.stderr
        assert b"offers no TLS: not logging in in clear" in r.stderr
        assert b"Traceback" not in r.stderr
        assert server.quiet(0.5) == 0 and tried == []
        # the site says plain is fine on its own network: sent, a name with a
        # line break in it on one header line
        env["SLM_SMTP_TLS"] = "none"
        r = run_slm(MAIN_PYTHON, ["run", "--name", "two\nlines", "--", "true"], env)
        assert r.returncode == 0, r.stderr
        subject = server.wait(1)[0][1]["Subject"]
        assert subject.startswith("[slm] COMPLETED") and subject.endswith("two lines")
        assert tried == [b"slmbot"]
    finally:
        server.stop()


def test_doctor_checks_the_mail_server(env, mail):
    smtp_env(env, mail.port, SLM_WEBHOOK="mailto:alice@example.org")
    out = run_slm(MAIN_PYTHON, ["doctor"], env).stdout.decode()
    assert "ok    smtp       127.0.0.1:%d answers" % mail.port in out
    env["SLM_SMTP_PORT"] = str(scaffold.free_port())
    r = run_slm(MAIN_PYTHON, ["doctor"], env)
    assert r.returncode == 1 and "FAIL  smtp" in r.stdout.decode()


def test_relayed_mail_waits_out_a_dead_smtp_server_and_is_sent_once(env, tmp_path):
    port = scaffold.free_port()
    svc = scaffold.ServiceProcess(str(tmp_path / "m.db"), tmp_path, env={
        "SLM_SMTP_HOST": "127.0.0.1", "SLM_SMTP_PORT": str(port), "SLM_SMTP_TLS": "none",
        "SLM_RELAY_ALLOW": "mailto"}).start()
    server = None
    try:
        env.update(SLM_API_URL=svc.url, SLM_WEBHOOK_VIA="api",
                   SLM_WEBHOOK="mailto:alice@example.org#on=final")
        r = run_slm(MAIN_PYTHON, ["run", "--name", "relayed", "--", "true"], env)
        assert r.returncode == 0
        job = svc.jobs(name="relayed")[0]["job_id"]
        rows = svc.wait_notifications(job, lambda rows: rows and rows[0]["attempts"] >= 1)
        assert rows[0]["state"] == "pending" and "connection refused" in rows[0]["last_error"]
        assert rows[0]["destination"] == "mailto:a…@example.org"
        server = scaffold.MailServer(port=port).start()       # the mail server is back
        got = server.wait(1, timeout=30)
        assert got[0][1]["Subject"].startswith("[slm] COMPLETED %s relayed" % job)
        svc.wait_notifications(job, lambda rows: rows[0]["state"] == "sent")
        assert server.quiet(1.0) == 0 and len(server.messages) == 1   # sent once
        assert [r["state"] for r in svc.notifications(job)] == ["sent"]
    finally:
        svc.stop()
        if server is not None:
            server.stop()


def test_relayed_mail_goes_only_through_the_services_own_server(env, tmp_path, mail):
    # a user's address may name a server of its own; the service never connects
    # there on the user's behalf (it would reach hosts of the site's network)
    other = scaffold.MailServer().start()
    svc = scaffold.ServiceProcess(str(tmp_path / "o.db"), tmp_path, env={
        "SLM_SMTP_HOST": "127.0.0.1", "SLM_SMTP_PORT": str(mail.port), "SLM_SMTP_TLS": "none",
        "SLM_RELAY_ALLOW": "mailto"}).start()
    try:
        env.update(SLM_API_URL=svc.url, SLM_WEBHOOK_VIA="api", SLM_WEBHOOK=(
            "mailto://bot:pw@127.0.0.1:%d/bob@example.org#on=final" % other.port))
        assert run_slm(MAIN_PYTHON, ["run", "--name", "own", "--", "true"], env).returncode == 0
        to, message = mail.wait(1)[0]
        assert to == ["bob@example.org"] and message["Subject"].endswith(" own")
        assert other.quiet(0.5) == 0
    finally:
        svc.stop()
        other.stop()


# ---------------------------------------------------------------------------
# Groups of jobs: a start, each failure, one roll-up
# ---------------------------------------------------------------------------


@pytest.fixture
def grouping(tmp_path):
    """A service (in-process) whose webhook hears every group notice, settling in 1 s."""
    hook = scaffold.HttpSink()
    svc = scaffold.build_service(tmp_path / "g.db", {
        "SLM_WEBHOOK": hook.hook_url, "SLM_OUTBOX_POLL": "0.05", "SLM_RECONCILE": "off",
        "SLM_WATCH_INTERVAL": "0.2", "SLM_GROUP_SETTLE": "1"}).start()
    yield svc, hook
    svc.stop()
    hook.close()


def test_a_group_gets_a_start_its_failures_and_one_rollup(grouping):
    svc, hook = grouping
    clock = [0]

    def report(job, status, seq, **extra):
        clock[0] += 1     # one second apart: which job ended last is plain
        scaffold.post(svc, scaffold.event(job, status, time.time() - 100 + clock[0], seq,
                                          user="alice", group="sweep", job_name="step-" + job,
                                          **extra), expect=200)
    for job in ("a", "b", "c"):
        report(job, "SUBMITTED", 0)
    report("a", "RUNNING", 1)
    report("a", "COMPLETED", 2, exit_code=0, elapsed=10.0)
    # the others are still open: no roll-up, however long the watchdog waits
    hook.wait(lambda: len(hook.delivered) == 1)           # the group's start
    assert hook.quiet(1.5) == 0 and not any(b.get("rollup") for b in hook.delivered)
    report("b", "RUNNING", 1)
    report("b", "FAILED", 2, exit_code=1, elapsed=30.0)
    report("c", "RUNNING", 1)
    report("c", "COMPLETED", 2, exit_code=0, elapsed=20.0)
    hook.wait(lambda: any(b.get("rollup") for b in hook.delivered))
    assert hook.quiet() == 0
    notices = [(b.get("kind"), b["status"], b["job_id"]) for b in hook.delivered
               if b["status"] != "SUBMITTED"]
    assert notices == [("group", "RUNNING", "a"), (None, "FAILED", "b"),
                       ("group", "FAILED", "c")]
    rollup = hook.delivered[-1]
    assert rollup["tasks"] == {"COMPLETED": 2, "FAILED": 1} and rollup["failed_tasks"] == ["b"]
    assert (rollup["total"], rollup["longest"]) == (60.0, 30.0)
    listed = scaffold.call(svc.app, "GET", "/api/v1/jobs?group=sweep").json
    assert listed["total"] == 3
    assert "group sweep" in slm.plain_notice(rollup, None, 4000).split("\n")[0]


def test_a_group_is_its_users_and_a_member_that_never_starts_ends_it(grouping):
    svc, hook = grouping

    def report(job, status, seq, user, **extra):
        scaffold.post(svc, scaffold.event(job, status, time.time() - 100 + seq, seq, user=user,
                                          group="sweep", **extra), expect=200)
    report("bob-1", "RUNNING", 1, "bob")          # bob's sweep runs on, and on
    report("a-1", "RUNNING", 1, "alice")
    report("a-1", "COMPLETED", 2, "alice", exit_code=0, elapsed=5.0)
    # alice's second job waits on a dependency that failed: Slurm says it never starts
    report("a-2", "SUBMITTED", 0, "alice")
    report("a-2", "PENDING", 3, "alice", source="slurm", reason="DependencyNeverSatisfied")
    hook.wait(lambda: any(b.get("rollup") for b in hook.delivered))
    assert hook.quiet() == 0
    starts = sorted((b["user"], b["job_id"]) for b in hook.delivered
                    if b.get("kind") == "group" and not b.get("rollup"))
    assert starts == [("alice", "a-1"), ("bob", "bob-1")]     # one start each
    rollups = [b for b in hook.delivered if b.get("rollup")]
    assert len(rollups) == 1 and rollups[0]["user"] == "alice"
    assert rollups[0]["status"] == "FAILED"
    assert rollups[0]["tasks"] == {"COMPLETED": 1, "PENDING": 1}
    assert rollups[0]["failed_tasks"] == ["a-2"]
