"""Notifications from slm.py: chat formats, signatures, the filter, the summary and output tail."""
import base64
import hashlib
import hmac
import json
import os
import urllib.parse

import pytest

import scaffold
from conftest import MAIN_PYTHON, Sink, run_slm, spool_files

import slm

FAILED = {"schema": "slm.event/1", "event_id": "e1", "job_id": "4242", "status": "FAILED",
          "time": "2026-11-30T04:00:00.000Z", "seq": 3, "user": "alice", "cluster": "c1",
          "host": "node7", "job_name": "train", "partition": "gpu", "nodelist": "node[7-8]",
          "exit_code": 3, "elapsed": 3725.0, "cpu_time": 7000.0, "cpus": 4,
          "cpu_efficiency": 47.0, "max_rss_mb": 2048.5, "output_tail": "step 9\nerror: boom"}


def body_of(fmt, event=FAILED, url="https://example.org/hook/x", **kw):
    """(the URL posted to, the JSON body) of the notice in format fmt."""
    _, post_url, body, _ = slm.FORMATS[fmt].request(url, event, **kw)
    return post_url, json.loads(body.decode("utf-8"))


# ---------------------------------------------------------------------------
# Formats: the fields each service requires
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("url,fmt", [
    ("https://hooks.slack.com/services/T0/B0/x", "slack"),
    ("https://discord.com/api/webhooks/1/abc", "discord"),
    ("https://discordapp.com/api/webhooks/1/abc", "discord"),
    ("https://acme.webhook.office.com/webhookb2/x", "teams"),
    ("https://prod-12.westus.logic.azure.com:443/workflows/x", "teams"),
    ("https://open.feishu.cn/open-apis/bot/v2/hook/x", "feishu"),
    ("https://open.larksuite.com/open-apis/bot/v2/hook/x", "feishu"),
    ("https://oapi.dingtalk.com/robot/send?access_token=x", "dingtalk"),
    ("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=x", "wecom"),
    ("https://ntfy.sh/my-topic", "ntfy"),
    ("https://example.org/hook", "json"),
    ("https://hooks.slack.com.evil.org/x", "json"),
])
def test_format_detected_from_host(url, fmt):
    assert slm.webhook_format(url) == (fmt, url)


def test_format_prefix_and_default():
    assert slm.webhook_format("ntfy+https://push.example.org/t") == \
        ("ntfy", "https://push.example.org/t")
    assert slm.webhook_format("https://chat.example.org/x", "slack") == \
        ("slack", "https://chat.example.org/x")
    assert slm.webhook_format("bogus+https://x.org/y") == ("json", "bogus+https://x.org/y")


def test_json_is_the_event_itself():
    _, body = body_of("json")
    assert body == FAILED


@pytest.mark.parametrize("fmt,field", [("slack", "text"), ("discord", "content")])
def test_slack_and_discord_text(fmt, field):
    _, body = body_of(fmt, dashboard_url="https://dash.example.org")
    text = body[field]
    assert text.startswith("FAILED: job 4242 (train)")
    for part in ("alice@c1", "partition gpu, nodes node[7-8]", "ran 1h02m", "exit code 3",
                 "47.0% of 4 CPUs", "max RSS 2048.5 MB", "error: boom",
                 "https://dash.example.org/jobs/4242"):
        assert part in text, part
    if fmt == "discord":
        assert body["allowed_mentions"] == {"parse": []}   # a job name cannot ping @everyone


def test_teams_adaptive_card():
    _, body = body_of("teams", dashboard_url="https://dash.example.org")
    assert body["type"] == "message"
    attachment = body["attachments"][0]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"]
    assert card["body"][0]["text"] == "FAILED: job 4242 (train)"
    assert card["actions"][0]["url"] == "https://dash.example.org/jobs/4242"


def test_feishu_text_and_signature():
    _, body = body_of("feishu", secret="s3cr3t", now=1700000000)
    assert body["msg_type"] == "text"
    assert body["content"]["text"].startswith("FAILED: job 4242")
    assert body["timestamp"] == "1700000000"
    # Feishu's documented Python sample: HMAC-SHA256 with key "timestamp\nsecret" over b""
    key = ("%s\n%s" % ("1700000000", "s3cr3t")).encode("utf-8")
    expected = base64.b64encode(hmac.new(key, b"", digestmod=hashlib.sha256).digest()).decode()
    assert body["sign"] == expected
    _, unsigned = body_of("feishu")
    assert "sign" not in unsigned


def test_dingtalk_signed_url():
    url = "https://oapi.dingtalk.com/robot/send?access_token=abc"
    post_url, body = body_of("dingtalk", url=url, secret="SECxyz", now=1700000000.123)
    assert body["msgtype"] == "text" and body["text"]["content"].startswith("FAILED")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(post_url).query)
    assert query["access_token"] == ["abc"]
    assert query["timestamp"] == ["1700000000123"]
    # DingTalk's documented Python sample
    string_to_sign = "{}\n{}".format("1700000000123", "SECxyz").encode("utf-8")
    code = hmac.new(b"SECxyz", string_to_sign, digestmod=hashlib.sha256).digest()
    assert query["sign"] == [base64.b64encode(code).decode()]
    assert urllib.parse.quote_plus(base64.b64encode(code)) in post_url


def test_wecom_text():
    _, body = body_of("wecom")
    assert body == {"msgtype": "text", "text": {"content": body["text"]["content"]}}


def test_ntfy_json_publish():
    post_url, body = body_of("ntfy", url="https://ntfy.example.org/base/jobs-alice",
                             dashboard_url="https://dash.example.org")
    assert post_url == "https://ntfy.example.org/base/"
    assert body["topic"] == "jobs-alice"
    assert body["title"] == "FAILED: job 4242 (train)"
    assert body["priority"] == 4 and "failed" in body["tags"]
    assert body["click"] == "https://dash.example.org/jobs/4242"
    running = dict(FAILED, status="RUNNING")
    assert body_of("ntfy", event=running, url="https://ntfy.sh/t")[1]["priority"] == 2


@pytest.mark.parametrize("fmt", ["slack", "discord", "teams", "feishu", "dingtalk", "wecom",
                                 "ntfy"])
def test_huge_messages_are_truncated_not_refused(fmt):
    event = dict(FAILED, job_name="名" * 5000, message="x" * 50000,
                 output_tail="\n".join("line %d %s" % (i, "é" * 80) for i in range(500)))
    _, body = body_of(fmt, event, "https://example.org/h/t")
    texts = {"slack": lambda b: b["text"], "discord": lambda b: b["content"],
             "feishu": lambda b: b["content"]["text"], "dingtalk": lambda b: b["text"]["content"],
             "wecom": lambda b: b["text"]["content"], "ntfy": lambda b: b["message"],
             "teams": lambda b: "".join(x["text"] for x in
                                        b["attachments"][0]["content"]["body"])}
    text = texts[fmt](body)
    limit = slm.FORMATS[fmt].limit
    unit_size = len(text.encode()) if fmt in ("feishu", "dingtalk", "wecom", "ntfy") \
        else len(text)
    assert unit_size <= limit + (30000 if fmt == "teams" else 0)
    assert "truncated" in text or "…" in text


def test_chat_errors_inside_200():
    ok = slm.HttpResult(200, b'{"errcode":0,"errmsg":"ok"}')
    slm.FORMATS["dingtalk"].judge(ok)
    with pytest.raises(slm.DeliveryError) as e:
        slm.FORMATS["dingtalk"].judge(slm.HttpResult(200, b'{"errcode":310000,'
                                                          b'"errmsg":"sign not match"}'))
    assert e.value.permanent
    with pytest.raises(slm.DeliveryError) as e:
        slm.FORMATS["feishu"].judge(slm.HttpResult(200, b'{"code":9499,"msg":"too fast"}'))
    assert not e.value.permanent
    slm.FORMATS["slack"].judge(slm.HttpResult(200, b"ok"))


# ---------------------------------------------------------------------------
# What to send
# ---------------------------------------------------------------------------


def test_notify_on_parsing():
    assert slm.parse_notify_on("") == frozenset(slm.NOTIFY_DEFAULT)
    assert "SUBMITTED" not in slm.parse_notify_on("")
    assert slm.parse_notify_on("all") == frozenset(slm.STATUSES)
    assert slm.parse_notify_on("final") >= {"COMPLETED", "FAILED", "TIMEOUT"}
    assert "RUNNING" not in slm.parse_notify_on("final")
    assert slm.parse_notify_on("failed, timeout,nonsense") == {"FAILED", "TIMEOUT"}


@pytest.mark.parametrize("policy,status,expected", [
    ("failures", "RUNNING", False), ("failures", "COMPLETED", False),
    ("failures", "FAILED", True), ("failures", "TIMEOUT", True),
    ("each", "RUNNING", True), ("each", "COMPLETED", True),
    ("summary", "FAILED", False),
])
def test_array_tasks_policy(policy, status, expected):
    event = {"status": status, "array_task_id": "3", "array_job_id": "7", "job_id": "7_3"}
    assert slm.wants_notice(event, slm.parse_notify_on("all"), policy) is expected
    plain = {"status": status, "job_id": "8"}
    assert slm.wants_notice(plain, slm.parse_notify_on("all"), policy) is True


def test_filter_applies_to_webhooks_not_to_the_service(env, sink):
    hook = Sink()
    try:
        env.update(SLM_API_URL=sink.url, SLM_WEBHOOK=hook.url + "/h", SLM_NOTIFY_ON="final")
        r = run_slm(MAIN_PYTHON, ["run", "--", "true"], env)
        assert r.returncode == 0
        assert [e["status"] for e in sink.events] == ["RUNNING", "COMPLETED"]
        assert [e["status"] for e in hook.events] == ["COMPLETED"]
        assert spool_files(env) == []
    finally:
        hook.close()


def run_to_file(env, args, out):
    import subprocess
    from conftest import SLM
    with open(str(out), "wb") as f:
        return subprocess.run([MAIN_PYTHON, SLM] + args, env=env, stdout=f, stderr=f, timeout=60)


def test_chat_format_end_to_end_with_tail_from_an_output_file(env, sink, tmp_path):
    env["SLM_WEBHOOK"] = "slack+" + sink.url + "/services/T/B/secret"
    out = tmp_path / "job.out"
    r = run_to_file(env, ["-q", "run", "--", "sh", "-c",
                          "for i in $(seq 100); do echo line $i; done; "
                          "printf 'bin\\377ary\\n' >&2; exit 4"], out)
    assert r.returncode == 4
    texts = [req[2]["text"] for req in sink.requests]
    assert texts[0].startswith("RUNNING: job local-")
    final = texts[-1]
    assert final.startswith("FAILED: job local-") and "exit code 4" in final
    tail = final.split("last lines of output:\n", 1)[1]
    assert "line 100" in tail and "line 80" not in tail and "[…]" in tail
    assert "bin\ufffdary" in tail
    assert out.read_bytes().endswith(b"line 100\nbin\xffary\n")   # the file is untouched


def test_tail_lines_zero_disables(env, sink, tmp_path):
    env.update(SLM_API_URL=sink.url, SLM_TAIL_LINES="0")
    run_to_file(env, ["-q", "run", "--", "sh", "-c", "echo x; exit 1"], tmp_path / "o")
    assert "output_tail" not in sink.events[-1]


def test_no_tail_for_a_pipe_or_a_success(env, sink, tmp_path):
    env["SLM_API_URL"] = sink.url
    run_slm(MAIN_PYTHON, ["-q", "run", "--", "sh", "-c", "echo x; exit 1"], env)  # pipes
    assert "output_tail" not in sink.events[-1]
    run_to_file(env, ["-q", "run", "--", "sh", "-c", "echo x"], tmp_path / "o")
    assert "output_tail" not in sink.events[-1]


def test_resource_summary_sees_200_mb(env, sink):
    env["SLM_API_URL"] = sink.url
    code = "b = bytearray(220 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096])"
    r = run_slm(MAIN_PYTHON, ["-q", "run", "--", MAIN_PYTHON, "-c", code], env)
    assert r.returncode == 0
    final = sink.events[-1]
    assert final["max_rss_mb"] >= 200
    assert final["cpu_time"] >= 0 and final["cpus"] >= 1
    # a short, busy child may be measured before a whole tick of CPU time
    assert final.get("cpu_efficiency") is None or 0 <= final["cpu_efficiency"]


def test_relay_via_the_service(env, sink):
    """SLM_WEBHOOK_VIA=api: no direct webhook call; the service gets what it needs."""
    hook = Sink()
    try:
        env.update(SLM_API_URL=sink.url, SLM_WEBHOOK="feishu+" + hook.url + "/bot",
                   SLM_WEBHOOK_SECRET="sek", SLM_WEBHOOK_VIA="api", SLM_NOTIFY_ON="final")
        r = run_slm(MAIN_PYTHON, ["run", "--", "true"], env)
        assert r.returncode == 0
        assert hook.requests == []
        relays = [e["relay"] for e in sink.events]
        assert [r["send"] for r in relays] == [False, True]
        assert relays[1]["to"] == [{"url": hook.url + "/bot", "format": "feishu",
                                    "secret": "sek", "send": True}]
        assert [t["send"] for t in relays[0]["to"]] == [False]
        assert relays[1]["notify_on"] == sorted(slm.parse_notify_on("final"))
        assert b"sek" not in r.stderr and hook.url.encode() not in r.stderr
    finally:
        hook.close()


def test_relay_without_a_service_notifies_directly(env, sink):
    env.update(SLM_WEBHOOK=sink.url + "/h", SLM_WEBHOOK_VIA="api")
    r = run_slm(MAIN_PYTHON, ["run", "--", "true"], env)
    assert [e["status"] for e in sink.events] == ["RUNNING", "COMPLETED"]
    assert b"SLM_WEBHOOK_VIA" in r.stderr


def test_doctor_send_test_uses_the_format(env, sink):
    env["SLM_WEBHOOK"] = "discord+" + sink.url + "/api/webhooks/1/x"
    r = run_slm(MAIN_PYTHON, ["doctor", "--send-test"], env)
    assert b"accepted a test notification" in r.stdout
    assert "content" in sink.requests[0][2]
    assert os.path.basename(sink.requests[0][0]) == "x"


def test_tail_leaves_out_what_the_file_held_before(env, sink, tmp_path):
    """An earlier step's output in the same -o file is not this job's."""
    env["SLM_API_URL"] = sink.url
    out = tmp_path / "steps.out"
    out.write_text("".join("earlier step line %d\n" % i for i in range(50)))
    import subprocess
    from conftest import SLM
    with open(str(out), "ab") as f:
        subprocess.run([MAIN_PYTHON, SLM, "-q", "run", "--", "sh", "-c", "echo mine; exit 2"],
                       env=env, stdout=f, stderr=f, timeout=60)
    assert sink.events[-1]["output_tail"] == "mine"


def test_webhook_url_with_credentials_uses_basic_auth(env, sink):
    host = sink.url.split("://", 1)[1]
    env["SLM_WEBHOOK"] = "ntfy+http://alice:s%40cret@" + host + "/jobs"
    r = run_slm(MAIN_PYTHON, ["-v", "run", "--", "true"], env)
    assert r.returncode == 0
    assert spool_files(env) == []
    headers = sink.requests[0][1]
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"alice:s@cret").decode()
    assert sink.requests[0][2]["topic"] == "jobs"
    assert b"cret" not in r.stderr and b"alice" not in r.stderr


# ---------------------------------------------------------------------------
# Mail the service relays: whom to, and any name in it
# ---------------------------------------------------------------------------


@pytest.fixture
def mail():
    m = scaffold.MailServer().start()
    yield m
    m.stop()


@pytest.fixture
def mail_relay(tmp_path, mail):
    """mail_relay(**env): slm_api.py as a process relaying mail to the mail
    fixture's server (stopped after the test)."""
    started = []

    def start(**env):
        svc = scaffold.ServiceProcess(tmp_path / ("mail-%d.db" % len(started)), tmp_path,
                                      env=dict({"SLM_SMTP_HOST": "127.0.0.1",
                                                "SLM_SMTP_PORT": str(mail.port),
                                                "SLM_SMTP_TLS": "none",
                                                "SLM_SMTP_FROM": "slm@site.example",
                                                "SLM_RELAY_ALLOW": "mailto"}, **env))
        started.append(svc.start())
        return svc
    yield start
    for svc in started:
        svc.stop()


def mailed(job_id, url, **fields):
    """A job's failure, relayed to the mail destination url."""
    return scaffold.event(job_id, "FAILED", exit_code=1, user="alice", relay={
        "to": [{"url": url, "format": "email"}], "send": True}, **fields)


@pytest.mark.parametrize("url", ["mailto:alice@a.org,eve@evil.example",
                                 "mailto:alice@a.org?to=eve@evil.example",
                                 "mailto:alice@a.org?cc=eve@evil.example",
                                 "mailto:alice@a.org?bcc=eve@evil.example",
                                 "mailto://bot@a.org/alice@a.org/eve@evil.example"])
def test_a_relayed_mail_goes_to_one_recipient(mail_relay, mail, url):
    """A user's relay request must not make the site's mail server (and its
    From address) mail anyone they like: one recipient per destination."""
    svc = mail_relay()
    status, answer = svc.post(mailed("m1", url))
    assert status == 200 and answer["accepted"] == 1, answer
    rows = svc.notifications("m1")
    assert mail.quiet(1.0) == 0 and mail.messages == []
    assert answer.get("refused_notifications") == 1, answer
    assert [r["state"] for r in rows] == ["refused"], rows
    assert "recipient" in rows[0]["last_error"], rows
    assert svc.job("m1")["status"] == "FAILED"       # the event itself is stored


def test_the_site_chooses_how_many_recipients_and_which_domains(mail_relay, mail):
    svc = mail_relay(SLM_RELAY_MAIL_RECIPIENTS="2", SLM_RELAY_MAIL_DOMAINS="a.org,b.edu")
    outcomes = {}
    for job_id, url in (("two", "mailto:alice@a.org,bob@b.edu"),
                        ("three", "mailto:alice@a.org,bob@b.edu,carol@a.org"),
                        ("elsewhere", "mailto:mallory@c.com"),
                        ("mixed", "mailto:alice@a.org?cc=mallory@c.com")):
        status, answer = svc.post(mailed(job_id, url))
        assert status == 200, answer
        outcomes[job_id] = answer.get("refused_notifications", 0)
    (to, message), = mail.wait(1)
    assert sorted(to) == ["alice@a.org", "bob@b.edu"] and " two" in message["Subject"]
    assert mail.quiet(1.0) == 0
    assert outcomes == {"two": 0, "three": 1, "elsewhere": 1, "mixed": 1}
    for job_id in ("three", "elsewhere", "mixed"):
        assert [r["state"] for r in svc.notifications(job_id)] == ["refused"], job_id


@pytest.mark.parametrize("name", ["a\u2028b", "a\u2029b", "a\x85b", "a\x0bb", "a\x0cb",
                                  "a\x00b", "\u202eevil\u202c name", "\u200f\u061c\u2066x",
                                  "n" * 4000],
                         ids=["LS", "PS", "NEL", "VT", "FF", "NUL", "bidi", "rlm", "4000"])
def test_any_name_gives_a_mail_with_a_one_line_subject(mail_relay, mail, name):
    """A job name is the user's to choose: whatever it holds, the mail goes
    out (a line separator once lost it), its Subject on one line."""
    svc = mail_relay()
    status, _ = svc.post(mailed("n1", "mailto:alice@a.org", job_name=name))
    assert status == 200
    (to, message), = mail.wait(1)
    subject = message["Subject"]
    assert to == ["alice@a.org"] and subject.startswith("[slm] FAILED n1"), subject
    assert not any(c in subject for c in "\r\n\x0b\x0c\x85\u2028\u2029"), subject
    svc.wait_notifications("n1", lambda rows: [r["state"] for r in rows] == ["sent"])
    assert "Traceback" not in svc.output()
