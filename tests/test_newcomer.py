"""Issue #23, a newcomer's walls, each as what a user sees (stdout, stderr, exit code).

- set-up: `slm setup --webhook URL` writes a private config and its test arrives;
- tools that tell the truth: the service's refusal to relay is said by `slm run`,
  `slm flush` and `slm doctor --send-test` (through the relay, the way events go);
- a spool you can manage: `slm spool` lists and drops, a fixed webhook gets what
  waited, old events become dead letters that doctor names;
- finding your job: `slm run` names it, `status last`/`status NAME`, a local
  `watch` ends at the job's end, ids on several clusters;
- per-job choices: #SLM lines and --notify-on/--webhook, Slurm's --mail-type words;
- `slm notify` from inside a job;
- one-line errors with the fix.

The service is the real slm_api.py (scaffold.ServiceProcess) where its answer
matters; where only slm.py's reading of an answer is tested, a small stand-in
answers as scripted.
"""
import json
import os
import re
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import scaffold
from conftest import MAIN_PYTHON, ROOT, SLM, run_slm, spool_files
from scaffold import HttpSink, ServiceProcess, await_true

import slm


def lines(data):
    return data.decode("utf-8", "replace").splitlines()


def one_error_line(r, code):
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    err = lines(r.stderr)
    assert len(err) == 1 and err[0].startswith("slm: "), err
    assert b"Traceback" not in r.stderr
    return err[0]


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """One service for the module's jobs (127.0.0.1 may be relayed to)."""
    where = tmp_path_factory.mktemp("newcomer")
    s = ServiceProcess(where / "slm.db", where).start()
    yield s
    s.kill()


@pytest.fixture
def strict(tmp_path):
    """A service whose relay allow-list holds no loopback address: the most
    common silent failure of issue #23 (a destination outside SLM_RELAY_ALLOW)."""
    s = ServiceProcess(tmp_path / "strict.db", tmp_path,
                       env={"SLM_RELAY_ALLOW": "ntfy.example.org"}).start()
    yield s
    s.kill()


def ntfy_sink():
    sink = HttpSink()
    sink.ntfy = "ntfy+%s/phone-topic" % sink.url
    return sink


# ---------------------------------------------------------------------------
# slm setup
# ---------------------------------------------------------------------------


def test_setup_writes_a_private_config_and_its_test_arrives(env, tmp_path):
    sink = ntfy_sink()
    try:
        config = os.path.join(env["HOME"], ".slm", "config")
        os.makedirs(os.path.dirname(config))
        with open(config, "w") as f:
            f.write("# mine\nSLM_API_TOKEN=tok-Secret-1\nSLM_WEBHOOK=https://old.example/x\n"
                    "SLM_TIMEOUT=3\n")
        os.chmod(config, 0o644)       # setup makes it private, whatever it was
        r = run_slm(MAIN_PYTHON, ["setup", "--webhook", sink.ntfy], env)
        assert r.returncode == 0, r.stdout + r.stderr
        assert os.stat(config).st_mode & 0o777 == 0o600
        text = open(config).read()
        assert text.splitlines() == ["# mine", "SLM_API_TOKEN=tok-Secret-1",
                                     "SLM_WEBHOOK=%s" % sink.ntfy, "SLM_TIMEOUT=3",
                                     "SLM_WEBHOOK_VIA=direct"]
        out = r.stdout.decode()
        assert "wrote %s (mode 600)" % config in out
        assert re.search(r"^ok +test +http://127\.0\.0\.1:\d+/… \(ntfy\) accepted a test "
                         r"notification", out, re.M), out
        # the test arrived, as ntfy's JSON publishing, and it says it is a test
        sink.wait(lambda: sink.delivered)
        body = sink.delivered[0]
        assert body["topic"] == "phone-topic" and body["title"] == "slm: test notification"
        assert body["message"] == "test notification from slm doctor on %s" % os.uname()[1]
        assert "click" not in body                 # no job, no link
        for secret in (b"tok-Secret-1", b"phone-topic"):
            assert secret not in r.stdout + r.stderr
    finally:
        sink.close()


def test_setup_relays_when_this_host_cannot_reach_the_destination(env, service, refused_url):
    """A node without internet: the destination cannot be reached from here,
    the service can: SLM_WEBHOOK_VIA=api."""
    r = run_slm(MAIN_PYTHON, ["setup", "--webhook", refused_url + "/hook", "--api-url",
                              service.url], env)
    text = open(os.path.join(env["HOME"], ".slm", "config")).read()
    assert "SLM_WEBHOOK_VIA=api\n" in text and "SLM_API_URL=%s\n" % service.url in text
    assert "this host cannot reach http://127.0.0.1:" in r.stderr.decode()
    assert "the SLM service will send your notices (SLM_WEBHOOK_VIA=api)" in r.stderr.decode()
    # the service tries for real: nothing listens there, and setup says so (or, from a
    # service older than /api/v1/notify-test, that it cannot test the relay)
    assert r.returncode == 1, r.stdout + r.stderr


def test_setup_via_the_service_needs_the_service(env):
    line = one_error_line(run_slm(MAIN_PYTHON, ["setup", "--webhook", "https://ntfy.sh/x",
                                                "--via", "api"], env), 2)
    assert line == "slm: --via api: the SLM service sends the notices, so say where it is " \
        "(--api-url URL)"


def test_setup_outside_a_terminal_needs_webhook(env):
    line = one_error_line(run_slm(MAIN_PYTHON, ["setup"], env, stdin=subprocess.DEVNULL), 2)
    assert "slm setup --webhook URL" in line
    assert not os.path.exists(os.path.join(env["HOME"], ".slm", "config"))


def test_setup_refuses_what_is_not_a_destination(env):
    line = one_error_line(run_slm(MAIN_PYTHON, ["setup", "--webhook", "notaurl"], env), 2)
    assert "not a URL: a destination looks like https://ntfy.sh/YOUR-TOPIC" in line
    assert not os.path.exists(os.path.join(env["HOME"], ".slm", "config"))


def test_setup_in_a_terminal_offers_ntfy_with_a_random_topic(env):
    """The interactive first run: choice 1 makes a topic, the answers are
    read from the terminal, the config names the ntfy destination."""
    import pty
    pid, fd = pty.fork()
    if pid == 0:   # pragma: no cover (the child)
        os.execve(MAIN_PYTHON, [MAIN_PYTHON, SLM, "setup", "--via", "direct"], env)
    said = b""

    def read_until(text):
        nonlocal said
        deadline = time.time() + 20
        while text not in said:
            assert time.time() < deadline, said
            try:
                said += os.read(fd, 4096)
            except OSError:
                break
    # an unreachable ntfy server: the config is written, the test fails (exit 1)
    port = scaffold.free_port()
    for prompt, answer in ((b"1 or 2", b"1"), (b"ntfy server", b"http://127.0.0.1:%d" % port),
                           (b"Press Enter", b""), (b"SLM service", b"")):
        read_until(prompt)
        os.write(fd, answer + b"\n")
    read_until(b"problem")
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    config = open(os.path.join(env["HOME"], ".slm", "config")).read()
    topic = re.search(r"^SLM_WEBHOOK=ntfy\+http://127\.0\.0\.1:%d/(slm-[a-z2-7]{16})$" % port,
                      config, re.M)
    assert topic, config
    assert topic.group(1).encode() in said          # shown once, to subscribe to
    assert os.WEXITSTATUS(status) == 1


# ---------------------------------------------------------------------------
# The relay's refusals, said
# ---------------------------------------------------------------------------


def test_run_says_when_the_service_refuses_to_relay(env, strict):
    env.update(SLM_API_URL=strict.url, SLM_WEBHOOK="https://hooks.example.net/T/secret-part",
               SLM_WEBHOOK_VIA="api")
    r = run_slm(MAIN_PYTHON, ["run", "--", "true"], env)
    assert r.returncode == 0
    refused = [l for l in lines(r.stderr) if "refused to relay" in l]
    # said once, however many requests the job's events took
    assert len(refused) == 1 and re.match(
        r"slm: the service refused to relay [12] notification\(s\) to https://hooks\.example"
        r"\.net/…: ask its admin to add hooks\.example\.net to SLM_RELAY_ALLOW \(its events "
        r"are stored; `slm doctor --send-test` checks the relay\)\Z", refused[0]), refused
    assert b"secret-part" not in r.stderr
    # -q: nothing
    r = run_slm(MAIN_PYTHON, ["-q", "run", "--", "true"], env)
    assert r.stderr == b""


def test_flush_says_when_the_service_refuses_to_relay(env, strict, refused_url):
    env.update(SLM_API_URL=refused_url, SLM_WEBHOOK="https://hooks.example.net/T/x",
               SLM_WEBHOOK_VIA="api")
    run_slm(MAIN_PYTHON, ["run", "--", "true"], env)
    assert len(spool_files(env)) == 2
    env["SLM_API_URL"] = strict.url
    r = run_slm(MAIN_PYTHON, ["flush"], env)
    assert r.returncode == 0
    assert [l for l in lines(r.stderr) if "refused to relay 2 notification(s) to "
            "https://hooks.example.net/…" in l], r.stderr


class StandIn(object):
    """A stand-in for the service's POST /api/v1/notify-test: answers as scripted
    (status, body), records what it was sent."""

    def __init__(self, status, body):
        self.requests = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                stand_in.requests.append((self.path, json.loads(raw.decode())))
                answer = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def do_GET(self):
                self.do_POST()

            def log_message(self, *args):
                pass
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def doctor_lines(r, what):
    return [l for l in lines(r.stdout) if re.match(r"(ok|info|FAIL) +%s " % what, l) or
            (l.startswith("      ") and "->" in l)]


@pytest.mark.parametrize("state,fix", [
    ("refused", "-> ask the service's admin to add hooks.example.net to SLM_RELAY_ALLOW"),
    ("failed", "-> the service could not deliver it: is the URL right")])
def test_doctor_send_test_goes_through_the_relay(env, state, fix):
    stand_in = StandIn(200, {"results": [{"destination": "https://hooks.example.net/…",
                                          "format": "json", "state": state,
                                          "reason": "host not in SLM_RELAY_ALLOW"
                                          if state == "refused" else "HTTP 404"}]})
    try:
        env.update(SLM_API_URL=stand_in.url, SLM_WEBHOOK="https://hooks.example.net/T/SeCrEt-9f",
                   SLM_WEBHOOK_VIA="api", SLM_DASHBOARD_URL="http://dash.example/")
        r = run_slm(MAIN_PYTHON, ["doctor", "--send-test"], env)
        assert r.returncode == 1
        out = r.stdout.decode()
        assert re.search(r"^FAIL +webhook +https://hooks\.example\.net/… \(json\): the test "
                         r"notification %s through the service" % slm.TestResult.SAID[state],
                         out, re.M), out
        assert fix in out
        assert lines(r.stdout)[-1].endswith("problem(s) found")
        path, body = [req for req in stand_in.requests if req[0] == "/api/v1/notify-test"][0]
        # the relay request a job's events carry, every destination told to send
        assert body["relay"]["to"] == [{"url": "https://hooks.example.net/T/SeCrEt-9f",
                                        "format": "json", "send": True}]
        assert body["relay"]["dashboard_url"] == "http://dash.example/"
        assert b"SeCrEt-9f" not in r.stdout + r.stderr
    finally:
        stand_in.close()


def test_doctor_send_test_through_an_older_service_says_it_cannot_test(env):
    stand_in = StandIn(404, {"error": "not found"})
    try:
        env.update(SLM_API_URL=stand_in.url, SLM_WEBHOOK="https://hooks.example.net/T/x",
                   SLM_WEBHOOK_VIA="api")
        r = run_slm(MAIN_PYTHON, ["doctor", "--send-test"], env)
        assert r.returncode == 1
        assert "too old to test relays (no /api/v1/notify-test)" in r.stdout.decode()
    finally:
        stand_in.close()


def test_doctor_send_test_refused_by_the_real_service(env, strict):
    env.update(SLM_API_URL=strict.url, SLM_WEBHOOK="https://hooks.example.net/T/x",
               SLM_WEBHOOK_VIA="api")
    r = run_slm(MAIN_PYTHON, ["doctor", "--send-test"], env)
    out = r.stdout.decode()
    if "too old to test relays" in out:
        pytest.skip("slm_api.py has no POST /api/v1/notify-test yet (the service's half of "
                    "issue #23)")
    assert r.returncode == 1
    assert re.search(r"^FAIL +webhook +https://hooks\.example\.net/… \(json\): the test "
                     r"notification was refused through the service", out, re.M), out
    assert "-> ask the service's admin to add hooks.example.net to SLM_RELAY_ALLOW" in out


def test_doctor_send_test_direct_is_a_test_not_a_job(env, sink):
    env.update(SLM_WEBHOOK=sink.url + "/hook/T0/SECRETPART",
               SLM_DASHBOARD_URL="http://dash.example")
    r = run_slm(MAIN_PYTHON, ["doctor", "--send-test"], env)
    assert r.returncode == 0, r.stdout
    event = sink.wait_for(lambda evs: evs)[0]
    assert event["status"] == "MESSAGE" and event["kind"] == "test"
    assert event["message"] == "test notification from slm doctor on %s" % os.uname()[1]
    assert "job_id" not in event
    text = slm.plain_notice(event, "http://dash.example", 4000)
    assert text.splitlines()[0] == "slm: test notification" and "dash.example" not in text
    assert b"SECRETPART" not in r.stdout + r.stderr


# ---------------------------------------------------------------------------
# The spool
# ---------------------------------------------------------------------------


def spool_rows(env):
    r = run_slm(MAIN_PYTHON, ["spool", "--json"], env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.decode())


def test_a_fixed_webhook_gets_what_waited_for_the_wrong_one(env, sink, refused_url):
    """A mistyped SLM_WEBHOOK strands nothing: fixed, the waiting notices go
    to the destination configured now (the spool's one rule)."""
    env["SLM_WEBHOOK"] = refused_url + "/hook/typo"
    r = run_slm(MAIN_PYTHON, ["run", "--name", "stranded", "--", "true"], env)
    assert r.returncode == 0
    rows = spool_rows(env)
    assert [(row["state"], row["destination"], row["event"].split()[1]) for row in rows] == \
        [("waiting", "%s/…" % refused_url, "RUNNING"),
         ("waiting", "%s/…" % refused_url, "COMPLETED")]
    assert rows[0]["why"] == "connection refused"
    table = run_slm(MAIN_PYTHON, ["spool"], env).stdout.decode()
    assert table.split("\n")[0].split() == ["ID", "SINCE", "STATE", "DESTINATION", "EVENT", "WHY"]
    assert b"typo" not in run_slm(MAIN_PYTHON, ["spool"], env).stdout
    env["SLM_WEBHOOK"] = sink.url + "/hook/fixed"
    r = run_slm(MAIN_PYTHON, ["flush"], env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert lines(r.stdout)[0].startswith("delivered 2 event(s); 0 still waiting")
    assert [e["status"] for e in sink.events] == ["RUNNING", "COMPLETED"]
    assert {req[0] for req in sink.requests} == {"/hook/fixed"}
    assert spool_rows(env) == []
    assert sink.quiet(0.3) == 0


def test_a_destination_that_already_had_the_event_does_not_get_it_again(env, sink,
                                                                         refused_url):
    """Two destinations, one mistyped: fixing it sends the waiting notices to
    the fixed one only (the other had them)."""
    good, other = HttpSink(), sink
    try:
        env["SLM_WEBHOOK"] = "%s/hook/a,%s/hook/typo" % (good.url, refused_url)
        run_slm(MAIN_PYTHON, ["run", "--", "true"], env)
        good.wait_for(lambda evs: len(evs) == 2)
        env["SLM_WEBHOOK"] = "%s/hook/a,%s/hook/b" % (good.url, other.url)
        run_slm(MAIN_PYTHON, ["flush"], env)
        assert [e["status"] for e in other.events] == ["RUNNING", "COMPLETED"]
        assert good.quiet(0.3) == 0 and len(good.events) == 2
    finally:
        good.close()


def test_spool_drop_by_id_age_and_all(env, refused_url):
    env["SLM_API_URL"] = refused_url
    for _ in range(3):
        run_slm(MAIN_PYTHON, ["run", "--", "true"], env)
    rows = spool_rows(env)
    assert len(rows) == 6 and all(row["state"] == "waiting" for row in rows)
    r = run_slm(MAIN_PYTHON, ["spool", "drop", rows[0]["id"], rows[1]["id"][:5]], env)
    assert (r.returncode, r.stdout.decode()) == (0, "dropped 2 event(s) from %s\n"
                                                 % env["SLM_SPOOL_DIR"])
    assert [row["id"] for row in spool_rows(env)] == [row["id"] for row in rows[2:]]
    # an age: the two oldest made to look two days old
    pending = os.path.join(env["SLM_SPOOL_DIR"], "pending")
    for name in sorted(os.listdir(pending))[:2]:
        old = "%013d%s" % ((time.time() - 2 * 86400) * 1000, name[13:])
        os.rename(os.path.join(pending, name), os.path.join(pending, old))
    r = run_slm(MAIN_PYTHON, ["spool", "drop", "--older-than", "1d"], env)
    assert r.stdout.decode().startswith("dropped 2 event(s)")
    assert len(spool_rows(env)) == 2
    line = one_error_line(run_slm(MAIN_PYTHON, ["spool", "drop", "zzzz"], env), 1)
    assert line == "slm: zzzz: no such spool entry (`slm spool` lists them)"
    one_error_line(run_slm(MAIN_PYTHON, ["spool", "drop"], env), 2)
    assert run_slm(MAIN_PYTHON, ["spool", "drop", "--all"], env).stdout.startswith(
        b"dropped 2 event(s)")
    assert spool_rows(env) == []
    assert run_slm(MAIN_PYTHON, ["spool"], env).stderr.decode() == \
        "slm: nothing waits in %s\n" % env["SLM_SPOOL_DIR"]


def age(env, days):
    """Make every waiting event look `days` old."""
    pending = os.path.join(env["SLM_SPOOL_DIR"], "pending")
    for name in os.listdir(pending):
        old = "%013d%s" % ((time.time() - days * 86400) * 1000, name[13:])
        os.rename(os.path.join(pending, name), os.path.join(pending, old))


def test_doctor_names_events_waiting_more_than_a_day(env, refused_url):
    env["SLM_API_URL"] = refused_url
    run_slm(MAIN_PYTHON, ["run", "--", "true"], env)
    r = run_slm(MAIN_PYTHON, ["doctor"], env)
    assert not re.search(r"^FAIL +spool", r.stdout.decode(), re.M)
    age(env, 2)
    r = run_slm(MAIN_PYTHON, ["doctor"], env)
    out = r.stdout.decode()
    assert r.returncode == 1
    assert re.search(r"^FAIL +spool +2 event\(s\) waiting for more than 1d00h \(the oldest "
                     r"since [-0-9: ]+: connection refused\)$", out, re.M), out
    assert "`slm spool` shows what waits and why" in out


def test_old_events_become_dead_letters_that_doctor_names(env, refused_url, sink):
    env["SLM_API_URL"] = refused_url
    run_slm(MAIN_PYTHON, ["run", "--", "true"], env)
    age(env, 8)
    env["SLM_API_URL"] = sink.url
    r = run_slm(MAIN_PYTHON, ["flush"], env)
    assert "2 dead letter(s) (refused for good, or expired)" in r.stdout.decode()
    assert sink.events == []
    rows = spool_rows(env)
    assert [row["state"] for row in rows] == ["dead", "dead"]
    assert rows[0]["why"] == "expired: waited more than 7d00h without being delivered"
    out = run_slm(MAIN_PYTHON, ["doctor"], env).stdout.decode()
    assert re.search(r"^FAIL +spool +2 dead letter\(s\) in \S+/dead: refused for good, or "
                     r"expired$", out, re.M), out
    run_slm(MAIN_PYTHON, ["spool", "drop", "--all"], env)
    assert run_slm(MAIN_PYTHON, ["doctor"], env).returncode == 0


# ---------------------------------------------------------------------------
# Finding your job
# ---------------------------------------------------------------------------


def test_run_names_its_job_at_start(env, sink):
    env.update(SLM_API_URL=sink.url)
    r = run_slm(MAIN_PYTHON, ["run", "--", "true"], env)
    job_id = sink.events[0]["job_id"]
    assert re.match(r"local-[^-]+-[0-9a-f]{10}\Z", job_id), job_id
    assert lines(r.stderr) == ["slm: job %s (`slm status last` shows it)" % job_id]
    env["SLM_DASHBOARD_URL"] = "http://dash.example:9008/"
    r = run_slm(MAIN_PYTHON, ["run", "--", "true"], env)
    job_id = sink.events[-1]["job_id"]
    assert lines(r.stderr) == ["slm: job %s, http://dash.example:9008/jobs/%s"
                               % (job_id, job_id)]
    # -q, no service, a batch job's output: nothing
    assert run_slm(MAIN_PYTHON, ["-q", "run", "--", "true"], env).stderr == b""
    env["SLURM_JOB_ID"] = "4321"
    assert run_slm(MAIN_PYTHON, ["run", "--", "true"], env).stderr == b""


def test_status_events_watch_of_last_and_of_a_name(env, service):
    env.update(SLM_API_URL=service.url, USER="nc-finder")
    run_slm(MAIN_PYTHON, ["run", "--name", "prep", "--", "true"], env)
    run_slm(MAIN_PYTHON, ["run", "--name", "train", "--", "sh", "-c", "exit 3"], env)
    run_slm(MAIN_PYTHON, ["run", "--name", "prep", "--", "true"], env)
    jobs = service.jobs(user="nc-finder")
    newest_prep = [j for j in jobs if j["job_name"] == "prep"][0]["job_id"]
    train = [j for j in jobs if j["job_name"] == "train"][0]["job_id"]
    out = run_slm(MAIN_PYTHON, ["status", "last"], env).stdout.decode()
    assert out.split("\n")[1].split()[:2] == [newest_prep, "prep"], out
    out = run_slm(MAIN_PYTHON, ["status", "train"], env).stdout.decode()
    assert out.split("\n")[1].split()[:4] == [train, "train", "nc-finder", "FAILED"], out
    events = json.loads(run_slm(MAIN_PYTHON, ["events", "train", "--json"], env).stdout)
    assert [e["status"] for e in events["events"]] == ["RUNNING", "FAILED"]
    r = run_slm(MAIN_PYTHON, ["watch", "train"], env)
    assert r.returncode == 1 and r.stderr.decode() == "slm: job %s ended FAILED (exit 3)\n" % train
    line = one_error_line(run_slm(MAIN_PYTHON, ["status", "no-such-name"], env), 1)
    assert line == "slm: unknown job: no-such-name (no job has that id, and none of yours " \
        "that name)"
    env["USER"] = "nc-nobody"
    line = one_error_line(run_slm(MAIN_PYTHON, ["status", "last"], env), 1)
    assert "knows no job of yours yet" in line


def test_watch_of_a_job_slurm_never_knew_returns_at_its_end(env, service):
    """A local job cancelled: no Slurm record will come, so no minute's wait."""
    env.update(SLM_API_URL=service.url, USER="nc-watcher")
    job = subprocess.Popen([MAIN_PYTHON, SLM, "run", "--name", "local-cancel", "--", "sleep",
                            "30"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    found = service.wait_job(lambda j: j["status"] == "RUNNING", name="local-cancel")
    job.terminate()
    job.communicate(timeout=30)
    service.wait_job(lambda j: j["status"] == "CANCELLED", job_id=found["job_id"])
    started = time.time()
    r = run_slm(MAIN_PYTHON, ["watch", "local-cancel"], env)
    assert time.time() - started < 8, r.stderr
    assert r.returncode == 1
    assert r.stderr.decode() == "slm: job %s ended CANCELLED (SIGTERM)\n" % found["job_id"]


def test_an_id_on_several_clusters(env, service):
    env.update(SLM_API_URL=service.url)
    service.post({"events": [
        scaffold.event("880011", "RUNNING", seq=1, user="alice", cluster="north",
                       job_name="n"),
        scaffold.event("880011", "COMPLETED", seq=2, user="alice", cluster="south",
                       job_name="s", exit_code=0)]})
    line = one_error_line(run_slm(MAIN_PYTHON, ["status", "880011"], env), 2)
    assert line == "slm: job 880011 is a job on several clusters (north, south): say which " \
        "with --cluster NAME"
    out = run_slm(MAIN_PYTHON, ["status", "880011", "--cluster", "south"], env).stdout.decode()
    assert out.split("\n")[1].split()[:2] == ["880011", "s"] and "cluster: south" in out
    env["SLURM_CLUSTER_NAME"] = "north"     # this host's cluster decides
    out = run_slm(MAIN_PYTHON, ["status", "880011"], env).stdout.decode()
    assert out.split("\n")[1].split()[:2] == ["880011", "n"], out
    events = json.loads(run_slm(MAIN_PYTHON, ["events", "880011", "--json"], env).stdout)
    assert [e["status"] for e in events["events"]] == ["RUNNING"]
    r = run_slm(MAIN_PYTHON, ["watch", "880011", "--cluster", "south"], env)
    assert (r.returncode, r.stderr.decode()) == (0, "slm: job 880011 ended COMPLETED (exit 0)\n")
    # list: a CLUSTER column where the jobs are on more than one
    out = run_slm(MAIN_PYTHON, ["list", "--user", "alice"], env).stdout.decode()
    header = out.split("\n")[0].split()
    assert header[:2] == ["JOBID", "CLUSTER"], out


# ---------------------------------------------------------------------------
# Per-job choices
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("text,statuses", [
    ("END,FAIL", slm.NOTIFY_GROUPS["end"]),
    ("fail", ("SUBMIT_FAILED", "FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "LOST")),
    ("BEGIN,END", ("RUNNING",) + slm.NOTIFY_GROUPS["end"]),
    ("NONE", ()),
    ("TIME_LIMIT_80,REQUEUE", ("TIME_WARNING", "REQUEUED")),
    ("INVALID_DEPEND", ("PENDING",)),
    ("ALL", slm.STATUSES),
    ("failed", ("FAILED",)),
    ("default", slm.NOTIFY_DEFAULT),
])
def test_slurms_mail_type_words(text, statuses):
    assert slm.parse_notify_on(text) == frozenset(statuses)


def test_the_default_includes_messages_and_the_start():
    assert "MESSAGE" in slm.NOTIFY_DEFAULT and "RUNNING" in slm.NOTIFY_DEFAULT
    assert "SUBMITTED" not in slm.NOTIFY_DEFAULT


def test_run_notify_on_and_webhook_choose_for_this_job(env, sink):
    env["SLM_WEBHOOK"] = sink.url + "/hook/everyday"
    other = HttpSink()
    try:
        r = run_slm(MAIN_PYTHON, ["run", "--notify-on", "END,FAIL", "--webhook",
                                  other.url + "/hook/this-job", "--", "true"], env)
        assert r.returncode == 0, r.stderr
        other.wait_for(lambda evs: evs)
        assert [e["status"] for e in other.events] == ["COMPLETED"]
        assert sink.quiet(0.3) == 0 and sink.events == []
    finally:
        other.close()


FAKE_SBATCH = os.path.join(ROOT, "tests", "helpers", "sbatch")


@pytest.fixture
def fake(env, tmp_path):
    state = tmp_path / "sbatch"
    state.mkdir()
    env.update(FAKE_SBATCH_DIR=str(state), SLM_SBATCH=FAKE_SBATCH, SLM_PYTHON=MAIN_PYTHON)
    return state


def fake_done(state, job_id, timeout=30):
    await_true(lambda: os.path.exists(os.path.join(str(state), "done-%d" % job_id)), timeout,
               "the fake job %d to end" % job_id)
    with open(os.path.join(str(state), "job-%d.json" % job_id)) as f:
        return json.load(f)


@pytest.mark.parametrize("export", [[], ["--export=NONE"]])
def test_slm_lines_choose_and_stay_out_of_the_batch_script(env, sink, fake, tmp_path, export):
    """#SLM lines read like #SBATCH lines; the job's notices follow them
    (--export=NONE too); the webhook is in no file others may read."""
    env["SLM_WEBHOOK"] = sink.url + "/hook/everyday"
    mine = HttpSink()
    try:
        script = tmp_path / "job.sh"
        script.write_text("#!/bin/bash\n#SBATCH -J slmlines\n#SLM --notify-on=END,FAIL\n"
                          "#SLM --webhook=%s/hook/PRIVATE-part  # my phone\necho ran; "
                          "grep -c '^#SLM' \"$0\"; grep '^#SLM' \"$0\"\n" % mine.url)
        r = run_slm(MAIN_PYTHON, ["submit"] + export + [str(script)], env,
                    cwd=str(tmp_path))
        assert r.returncode == 0, r.stderr
        record = fake_done(fake, 1000)
        mine.wait_for(lambda evs: evs)
        assert [e["status"] for e in mine.events] == ["COMPLETED"]
        assert sink.quiet(0.3) == 0 and sink.events == []
        assert "PRIVATE-part" not in record["script"] + " ".join(record["argv"])
        out = open(os.path.join(str(fake), "slurm-1000.out")).read()
        assert out == "ran\n2\n#SLM\n#SLM\n"          # the job's copy: lines kept, blanked
        assert "PRIVATE" not in r.stderr.decode() + r.stdout.decode()
    finally:
        mine.close()


def test_the_command_line_wins_over_slm_lines(env, sink, fake, tmp_path):
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\n#SLM --notify-on=NONE\nexit 2\n")
    env["SLM_WEBHOOK"] = sink.url + "/hook"
    r = run_slm(MAIN_PYTHON, ["submit", "--notify-on", "fail", str(script)], env,
                cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    fake_done(fake, 1000)
    sink.wait_for(lambda evs: evs)
    assert [e["status"] for e in sink.events] == ["FAILED"]


@pytest.mark.parametrize("line,error", [
    ("#SLM --notify-of=END", "job.sh line 2: unknown option --notify-of (did you mean "
                             "--notify-on?); #SLM lines take --notify-on, --webhook, --group"),
    ("#SLM --notify-on=failrues", "job.sh line 2: --notify-on unknown word 'failrues' (did "
                                  "you mean failures?)"),
    ("#SLM --webhook=notaurl", "job.sh line 2: --webhook not a URL: a destination looks like"),
])
def test_a_wrong_slm_line_is_one_line_before_anything_is_submitted(env, fake, tmp_path, line,
                                                                   error):
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\n%s\ntrue\n" % line)
    r = run_slm(MAIN_PYTHON, ["submit", str(script)], env, cwd=str(tmp_path))
    err = one_error_line(r, 2)
    assert err.startswith("slm: " + error), err
    assert not os.path.exists(os.path.join(str(fake), "job-1000.json"))


# ---------------------------------------------------------------------------
# slm notify
# ---------------------------------------------------------------------------


def test_notify_inside_a_job_reaches_the_webhook_and_the_history(env, service, sink):
    env.update(SLM_API_URL=service.url, SLM_WEBHOOK=sink.url + "/hook", USER="nc-notify")
    r = run_slm(MAIN_PYTHON, ["run", "--name", "talker", "--", MAIN_PYTHON, SLM, "notify",
                              "epoch 50: val 0.91"], env)
    assert r.returncode == 0, r.stderr
    job = service.jobs(user="nc-notify")[0]
    events = service.events(job["job_id"])
    assert [e["status"] for e in events] == ["RUNNING", "MESSAGE", "COMPLETED"]
    assert events[1]["message"] == "epoch 50: val 0.91"
    assert job["status"] == "COMPLETED"                 # a note is never the job's status
    out = run_slm(MAIN_PYTHON, ["status", "last"], env).stdout.decode()
    assert "MESSAGE" not in out and "warnings" not in out, out     # nor a warning
    sink.wait_for(lambda evs: len(evs) == 3)
    message = [e for e in sink.events if e["status"] == "MESSAGE"][0]
    assert message["job_id"] == job["job_id"] and "command" not in message


def test_notify_elsewhere_needs_a_job_and_is_rate_limited(env, sink):
    line = one_error_line(run_slm(MAIN_PYTHON, ["notify", "hello"], env), 2)
    assert "elsewhere say --job ID" in line
    env["SLM_WEBHOOK"] = sink.url + "/hook"
    for i in range(5):
        r = run_slm(MAIN_PYTHON, ["notify", "--job", "4242", "message %d" % i], env)
        assert r.returncode == 0 and r.stderr == b"", r.stderr
    r = run_slm(MAIN_PYTHON, ["notify", "--job", "4242", "one too many"], env)
    assert r.returncode == 0
    assert lines(r.stderr) == ["slm: not sent: job 4242 sent 5 messages in the last 1m00s "
                               "already (at most 5 a minute, 60 a hour)"]
    sink.wait_for(lambda evs: len(evs) == 5)
    assert sink.quiet(0.3) == 0
    assert [e["message"] for e in sink.events] == ["message %d" % i for i in range(5)]


# ---------------------------------------------------------------------------
# One-line errors with the fix
# ---------------------------------------------------------------------------


def test_api_v1_in_the_service_url_is_taken_off_and_said(env, sink):
    env["SLM_API_URL"] = sink.url + "/api/v1/"
    r = run_slm(MAIN_PYTHON, ["run", "--", "true"], env)
    assert r.returncode == 0
    assert lines(r.stderr)[0] == "slm: SLM_API_URL ends in /api/v1: using %s (set SLM_API_URL " \
        "to the service's base URL, without /api/v1)" % sink.url
    assert {req[0] for req in sink.requests} == {"/api/v1/events"}


def test_a_webhook_that_is_not_a_url(env):
    env["SLM_WEBHOOK"] = "notaurl"
    r = run_slm(MAIN_PYTHON, ["run", "--", "true"], env)
    assert lines(r.stderr)[0] == "slm: ignoring an SLM_WEBHOOK entry: not a URL: a " \
        "destination looks like https://ntfy.sh/YOUR-TOPIC, https://hooks.slack.com/services/…" \
        ", mailto:you@example.org or tgram://BOT_TOKEN/CHAT_ID"
    out = run_slm(MAIN_PYTHON, ["doctor"], env).stdout.decode()
    assert re.search(r"^FAIL +webhook +SLM_WEBHOOK's entry 1 \(<not a URL>\): not a URL", out,
                     re.M), out
    assert "-> set SLM_WEBHOOK to such URLs, comma-separated" in out
    assert "notaurl" not in out


def test_smtp_host_with_a_port_is_taken(env):
    pytest.importorskip("aiosmtpd")
    mail = scaffold.MailServer().start()
    try:
        env.update(SLM_SMTP_HOST="127.0.0.1:%d" % mail.port, SLM_SMTP_TLS="none",
                   SLM_WEBHOOK="mailto:me@example.org")
        r = run_slm(MAIN_PYTHON, ["run", "--", "true"], env)
        assert r.returncode == 0, r.stderr
        assert len(mail.wait(2)) == 2
    finally:
        mail.stop()


def test_missing_sbatch_asks_whether_slurm_is_loaded(env, tmp_path):
    env["PATH"] = str(tmp_path)      # no sbatch anywhere
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\ntrue\n")
    r = run_slm(MAIN_PYTHON, ["-q", "submit", str(script)], env)
    assert r.returncode == 127
    err = [l for l in lines(r.stderr) if "node-local" not in l]
    assert err == ["slm: cannot run sbatch: No such file or directory (is Slurm's module "
                   "loaded? e.g. `module load slurm`; or set SLM_SBATCH to sbatch's path)"]


def test_a_misspelled_config_key_gets_a_suggestion(env):
    path = os.path.join(env["HOME"], ".slm", "config")
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as f:
        f.write("SLM_WEBHOK=https://ntfy.sh/x\n")
    os.chmod(path, 0o600)
    r = run_slm(MAIN_PYTHON, ["run", "--", "true"], env)
    assert lines(r.stderr)[0] == "slm: %s line 1: unknown setting SLM_WEBHOK (did you mean " \
        "SLM_WEBHOOK?); ignored" % path


@pytest.mark.parametrize("word,suggestion", [("rn", "run"), ("stauts", "status"),
                                             ("doctr", "doctor"), ("xyzzy", None)])
def test_a_misspelled_command_gets_a_suggestion(env, word, suggestion):
    line = one_error_line(run_slm(MAIN_PYTHON, [word, "x"], env), 2)
    assert line.startswith("slm: unknown command %r%s: the commands are run, submit" % (
        word, " (did you mean %s?)" % suggestion if suggestion else ""))


@pytest.mark.parametrize("args", [["status", "-v", "1"], ["list", "--no-db"],
                                  ["watch", "--no-db", "1"], ["doctor", "-v"]])
def test_options_are_offered_only_where_they_mean_something(env, args):
    line = one_error_line(run_slm(MAIN_PYTHON, args, env), 2)
    assert "unrecognized arguments" in line


def test_every_argument_has_help():
    import argparse
    parser = slm.build_parser()
    missing = []
    for action in parser._subparsers._group_actions[0].choices.items():
        name, sub = action
        for arg in sub._actions:
            if arg.help is None:
                missing.append((name, arg.dest))
    assert missing == []
    hidden = [(name, a.dest) for name, sub in
              parser._subparsers._group_actions[0].choices.items()
              for a in sub._actions if a.help == argparse.SUPPRESS]
    assert hidden == [("run", "cleanup"), ("run", "settings")]   # slm submit's, not a user's


def test_no_cpu_efficiency_for_a_job_shorter_than_a_second(env, sink):
    env["SLM_API_URL"] = sink.url
    run_slm(MAIN_PYTHON, ["run", "--", "true"], env)
    final = sink.events[-1]
    assert final["status"] == "COMPLETED" and "cpu_time" in final
    assert "cpu_efficiency" not in final
    run_slm(MAIN_PYTHON, ["run", "--", MAIN_PYTHON, "-c",
                          "import time\nt = time.time()\nwhile time.time() - t < 1.2: pass"], env)
    assert 0 < sink.events[-1]["cpu_efficiency"] <= 100
