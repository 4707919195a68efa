"""One service, many users: per-user tokens, who may write and read what, abuse limits.

A tokens file (SLM_TOKENS_FILE) made with `slm_api.py token add`, two users
and an admin; the service in-process (through the scaffold's caller) and as
a process for what needs one (reloading the file, SIGHUP, start-up errors).
"""
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import scaffold
import slm_api
from scaffold import call, event, heartbeat, post


def token_cli(path, *words):
    r = subprocess.run([sys.executable, scaffold.SLM_API, "token"] + list(words),
                       env=dict(os.environ, SLM_TOKENS_FILE=str(path)), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def add_token(path, user, admin=False):
    code, out, err = token_cli(path, "add", user, *(["--admin"] if admin else []))
    assert code == 0, err
    return out.split()[-1]          # the token is the last word


@pytest.fixture
def tokens(tmp_path):
    path = tmp_path / "tokens"
    return path, {"alice": add_token(path, "alice"), "bob": add_token(path, "bob"),
                  "root": add_token(path, "root", admin=True)}


def make_app(tmp_path, tokens_path, logs=None, **env):
    """The service in this process with the tokens file, not started."""
    return scaffold.build_service(tmp_path / "access.db", dict(
        env, SLM_TOKENS_FILE=str(tokens_path)), log=(logs if logs is not None else []).append)


@pytest.fixture
def service_in_process(tmp_path, tokens):
    s = make_app(tmp_path, tokens[0])
    yield s
    s.stop()


def job_of(user, job_id, status="RUNNING", **extra):
    return event(job_id, status, user=user, command=["python", "secret.py", "--key=K"],
                 **extra)


# ---------------------------------------------------------------------------
# Tokens: made, listed, revoked
# ---------------------------------------------------------------------------


def test_token_cli_prints_a_token_once_and_keeps_only_its_hash(tmp_path):
    path = tmp_path / "tokens"
    token = add_token(path, "alice")
    assert re.match(r"slm_[A-Za-z0-9_-]{40,}\Z", token)
    assert oct(os.stat(str(path)).st_mode & 0o777) == "0o600"
    text = path.read_text()
    assert token not in text and slm_api.token_digest(token) in text
    code, out, _ = token_cli(path, "list")
    assert code == 0 and out.split()[:2] == ["alice", "user"] and token not in out
    assert token_cli(path, "revoke", "nobody")[0] == 1
    assert token_cli(path, "revoke", "alice")[0] == 0
    assert slm_api.parse_tokens(path.read_text()) == {}
    assert token_cli(path, "add", "bad name")[0] == 2
    code, _, err = token_cli("", "list")
    assert code == 2 and "SLM_TOKENS_FILE" in err


def test_whoami_names_the_tokens_user(service_in_process, tokens):
    _, t = tokens
    app = service_in_process.app
    assert call(app, "GET", "/api/v1/whoami", token=t["alice"]).json == \
        {"user": "alice", "role": "user", "private_jobs": False}
    assert call(app, "GET", "/api/v1/whoami", token=t["root"]).json["role"] == "admin"
    assert call(app, "GET", "/api/v1/whoami", token="slm_nope").status == 401


# ---------------------------------------------------------------------------
# Writes: a token posts for its own user's jobs only
# ---------------------------------------------------------------------------


def test_each_user_posts_and_reads_their_own(service_in_process, tokens):
    _, t = tokens
    app = service_in_process.app
    assert post(app, job_of("alice", "a1"), t["alice"]).json["accepted"] == 1
    assert post(app, job_of("bob", "b1"), t["bob"]).json["accepted"] == 1
    assert call(app, "GET", "/api/v1/jobs/a1", token=t["alice"]).json["user"] == "alice"
    assert call(app, "GET", "/api/v1/jobs/b1", token=t["bob"]).json["user"] == "bob"


def test_posting_for_another_users_job_is_403_and_stores_and_notifies_nothing(
        tmp_path, tokens):
    _, t = tokens
    hook = scaffold.HttpSink()
    svc = make_app(tmp_path, tokens[0], SLM_WEBHOOK=hook.hook_url, SLM_NOTIFY_ON="all",
                   SLM_OUTBOX_POLL="0.05").start()
    try:
        app = svc.app
        assert post(app, job_of("bob", "b1"), t["bob"]).status == 200
        hook.wait(lambda: len(hook.delivered) == 1)
        # bob's job, alice's token: as alice ...
        r = post(app, job_of("alice", "b1", "COMPLETED", exit_code=0), t["alice"])
        assert r.status == 403 and "another user" in r.json["error"]
        # ... or pretending to be bob
        r = post(app, job_of("bob", "b1", "FAILED", exit_code=1), t["alice"])
        assert r.status == 403 and "alice" in r.json["error"]
        # a batch with one foreign event is refused whole
        r = post(app, {"events": [job_of("alice", "a9"), job_of("bob", "b1", "FAILED")]},
                 t["alice"])
        assert r.status == 403
        job = call(app, "GET", "/api/v1/jobs/b1", token=t["root"]).json
        assert (job["status"], job["event_count"]) == ("RUNNING", 1)
        assert call(app, "GET", "/api/v1/jobs/a9", token=t["root"]).status == 404
        assert hook.quiet() == 0 and len(hook.delivered) == 1
        # an admin may post for anyone
        assert post(app, job_of("bob", "b1", "COMPLETED", exit_code=0), t["root"]).status == 200
    finally:
        svc.stop()
        hook.close()


def test_a_task_under_another_users_array_never_joins_it(tmp_path, tokens):
    """A task names its array: bob's token cannot add a task to alice's array,
    and a task bob posted under her future array's id before she submitted
    it does not count in her roll-up nor make the array his."""
    _, t = tokens
    hook = scaffold.HttpSink()
    svc = make_app(tmp_path, tokens[0], SLM_PRIVATE_DATA="jobs", SLM_WEBHOOK=hook.hook_url,
                   SLM_NOTIFY_ON="all", SLM_OUTBOX_POLL="0.05").start()
    try:
        app = svc.app
        # before alice submits 4711: a guessed task of it, "ended"
        fake = job_of("bob", "4711_0", "FAILED", array_job_id="4711", array_task_id="0",
                      exit_code=1)
        assert post(app, fake, t["bob"]).status == 200
        assert call(app, "GET", "/api/v1/jobs/4711", token=t["root"]).status == 404
        assert post(app, job_of("alice", "4711", "SUBMITTED", array="1-2"),
                    t["alice"]).status == 200
        late = job_of("bob", "4711_9", "FAILED", array_job_id="4711", array_task_id="9")
        got = post(app, late, t["bob"])
        assert got.status == 403 and "4711 belongs to another user" in got.json["error"]
        for n in ("1", "2"):
            task = job_of("alice", "4711_" + n, "COMPLETED", array_job_id="4711",
                          array_task_id=n, exit_code=0)
            assert post(app, task, t["alice"]).status == 200
        array = call(app, "GET", "/api/v1/jobs/4711", token=t["alice"]).json
        assert (array["user"], array["status"]) == ("alice", "COMPLETED")
        rollup = [e for e in call(app, "GET", "/api/v1/jobs/4711/events",
                                  token=t["alice"]).json["events"] if e.get("rollup")]
        assert len(rollup) == 1 and rollup[0]["tasks"] == {"COMPLETED": 2}
        assert call(app, "GET", "/api/v1/jobs/4711", token=t["bob"]).status == 404
        hook.wait(lambda: any(b.get("rollup") for b in hook.delivered))
        assert [b["tasks"] for b in hook.delivered if b.get("rollup")] == [{"COMPLETED": 2}]
    finally:
        svc.stop()
        hook.close()


def fake_slurm_commands(tmp_path, monkeypatch, squeue_lines):
    """squeue (and an sacct that knows nothing) on PATH, answering as given."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "squeue").write_text("#!/bin/sh\nprintf '%s'\n" % "\\n".join(squeue_lines))
    (bin_dir / "sacct").write_text("#!/bin/sh\nexit 0\n")
    for name in ("squeue", "sacct"):
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", "%s:%s" % (bin_dir, os.environ["PATH"]))


def test_a_guessed_job_id_is_the_user_slurm_says_submitted_it(tmp_path, tokens, monkeypatch):
    """bob posts for job ids alice is about to get: when alice's job reports,
    Slurm (asked only now) says the id is hers, and bob's rows are forgotten.
    With no Slurm commands on the service's host, the first writer keeps it."""
    _, t = tokens
    fake_slurm_commands(tmp_path, monkeypatch, ["5000|alice", "5001|bob"])
    logs = []
    svc = make_app(tmp_path, tokens[0], logs, SLM_RECONCILE="auto")
    try:
        app = svc.app
        for job_id in ("5000", "5001"):
            assert post(app, job_of("bob", job_id, "SUBMITTED"), t["bob"]).status == 200
        assert post(app, job_of("alice", "5000", "RUNNING"), t["alice"]).json == \
            {"accepted": 1, "duplicates": 0}
        job = call(app, "GET", "/api/v1/jobs/5000", token=t["root"]).json
        assert (job["user"], job["status"], job["event_count"]) == ("alice", "RUNNING", 1)
        assert any("5000: Slurm says they are alice's" in line for line in logs)
        # Slurm says 5001 is bob's: alice is refused, bob keeps it
        assert post(app, job_of("alice", "5001", "RUNNING"), t["alice"]).status == 403
        assert call(app, "GET", "/api/v1/jobs/5001", token=t["root"]).json["user"] == "bob"
    finally:
        svc.stop()
    (tmp_path / "x").mkdir()
    offline = make_app(tmp_path / "x", tokens[0], SLM_RECONCILE="off")
    try:
        assert post(offline.app, job_of("bob", "6000", "SUBMITTED"), t["bob"]).status == 200
        assert post(offline.app, job_of("alice", "6000", "RUNNING"), t["alice"]).status == 403
    finally:
        offline.stop()


def test_two_users_first_events_for_one_new_job_in_one_group_commit(service_in_process,
                                                                      tokens):
    """Written in the same transaction, the first writer owns the new job."""
    _, t = tokens
    writes = [slm_api.Write([slm_api.validate_event(job_of(user, "7000"))],
                            service_in_process.keyring.identify("Bearer " + t[user]))
              for user in ("alice", "bob")]
    service_in_process.ingestor._commit(writes)
    assert writes[0].error is None and writes[0].answer["accepted"] == 1
    assert writes[1].error is not None and writes[1].error.status == 403
    job = call(service_in_process.app, "GET", "/api/v1/jobs/7000", token=t["root"]).json
    assert (job["user"], job["event_count"]) == ("alice", 1)


def test_the_sites_own_destinations_are_the_admins_to_see(tmp_path, tokens):
    """The service's SLM_WEBHOOK hears of every job; a user sees the notices of
    their own relay request only, never the site's host or its errors."""
    _, t = tokens
    site = scaffold.HttpSink(500)
    mine = scaffold.HttpSink()
    svc = make_app(tmp_path, tokens[0], SLM_WEBHOOK=site.hook_url, SLM_NOTIFY_ON="all",
                   SLM_OUTBOX_POLL="0.05").start()
    try:
        e = job_of("alice", "s1", "FAILED", exit_code=1)
        e["relay"] = {"to": [{"url": mine.hook_url, "format": "json", "send": True}],
                      "send": True}
        assert post(svc.app, e, t["alice"]).status == 200
        site.wait(lambda: site.requests)
        mine.wait(lambda: mine.delivered)
        for path in ("/api/v1/jobs/s1/notifications", "/api/v1/notifications"):
            theirs = call(svc.app, "GET", path, token=t["alice"]).json["notifications"]
            everything = call(svc.app, "GET", path, token=t["root"]).json["notifications"]
            assert len(theirs) == 1 and len(everything) == 2, path
            assert str(mine.port) in theirs[0]["destination"]
    finally:
        svc.stop()
        site.close()
        mine.close()


def test_a_token_holds_a_bounded_number_of_long_polls(service_in_process, tokens):
    """Each long-poll holds a thread: a token's beyond MAX_WAITERS get 429."""
    _, t = tokens
    app = service_in_process.app
    changes = service_in_process.ingestor.changes
    alice = service_in_process.keyring.identify("Bearer " + t["alice"])
    held = 0
    try:
        for _ in range(slm_api.MAX_WAITERS - 1):   # as if alice's other tabs waited
            assert changes.enter(alice.key, slm_api.MAX_WAITERS)
            held += 1
        got = call(app, "GET", "/api/v1/feed?wait=0.2", token=t["alice"])
        assert got.status == 200        # the last free one
        assert changes.enter(alice.key, slm_api.MAX_WAITERS)
        held += 1
        got = call(app, "GET", "/api/v1/feed?wait=5", token=t["alice"])
        assert got.status == 429 and got.headers["retry-after"] == "1"
        assert "long-polls" in got.json["error"]
        # not waiting, it is a plain read; other tokens wait as before
        assert call(app, "GET", "/api/v1/feed", token=t["alice"]).status == 200
        assert call(app, "GET", "/api/v1/feed?wait=0.2", token=t["bob"]).status == 200
    finally:
        for _ in range(held):
            changes.leave(alice.key)


def test_shared_token_alone_keeps_working(tmp_path):
    svc = scaffold.build_service(tmp_path / "s.db", {"SLM_API_TOKEN": "shared-tok"})
    try:
        assert post(svc.app, job_of("alice", "1"), "shared-tok").status == 200
        assert post(svc.app, job_of("bob", "2"), "shared-tok").status == 200
        assert call(svc.app, "GET", "/api/v1/jobs", token="shared-tok").json["total"] == 2
        assert call(svc.app, "GET", "/api/v1/whoami", token="shared-tok").json == \
            {"user": None, "role": "admin", "private_jobs": False}
    finally:
        svc.stop()


# ---------------------------------------------------------------------------
# Ownership: every job is somebody's, and stays theirs
# ---------------------------------------------------------------------------


def test_an_event_without_a_user_is_the_tokens_users(service_in_process, tokens):
    _, t = tokens
    app = service_in_process.app
    for who, job_id in (("alice", "mine-1"), ("root", "admin-1")):
        assert post(app, event(job_id), t[who]).json == {"accepted": 1, "duplicates": 0}
        job = call(app, "GET", "/api/v1/jobs/" + job_id, token=t["root"]).json
        assert job["user"] == who, job_id
        assert [e.get("user") for e in call(app, "GET", "/api/v1/jobs/%s/events" % job_id,
                                           token=t[who]).json["events"]] in ([who], [None])


def test_an_admins_job_without_a_user_cannot_be_taken_over(tmp_path, tokens):
    """The admin posts without naming a user: the job is the admin's, so bob's
    COMPLETED naming himself is refused, and with private jobs he reads none of it."""
    _, t = tokens
    svc = make_app(tmp_path, tokens[0], SLM_PRIVATE_DATA="jobs", SLM_RECONCILE="off")
    try:
        app = svc.app
        assert post(app, event("adm-1", command=["secret.sh", "--key=K"]),
                    t["root"]).status == 200
        taken = post(app, job_of("bob", "adm-1", "COMPLETED", exit_code=0), t["bob"])
        assert taken.status == 403, taken.body
        for path in ("/api/v1/jobs/adm-1", "/api/v1/jobs/adm-1/events"):
            assert call(app, "GET", path, token=t["bob"]).status == 404, path
        job = call(app, "GET", "/api/v1/jobs/adm-1", token=t["root"]).json
        assert (job["user"], job["status"], job["event_count"]) == ("root", "RUNNING", 1)
    finally:
        svc.stop()


def test_a_job_nobody_owns_is_no_users_to_take(tmp_path, tokens):
    """A row with no owner (the shared SLM_API_TOKEN's, or a database from
    before per-user tokens): a user's token may not write to it."""
    _, t = tokens
    svc = make_app(tmp_path, tokens[0], SLM_API_TOKEN="shared-tok", SLM_RECONCILE="off")
    try:
        app = svc.app
        assert post(app, event("legacy-1"), "shared-tok").status == 200
        assert call(app, "GET", "/api/v1/jobs/legacy-1", token=t["root"]).json["user"] is None
        taken = post(app, job_of("bob", "legacy-1", "COMPLETED", exit_code=0), t["bob"])
        assert taken.status == 403, taken.body
        job = call(app, "GET", "/api/v1/jobs/legacy-1", token=t["root"]).json
        assert (job["user"], job["status"], job["event_count"]) == (None, "RUNNING", 1)
        # the shared token (an admin's) still writes there
        assert post(app, event("legacy-1", "COMPLETED", seq=2, exit_code=0),
                    "shared-tok").status == 200
    finally:
        svc.stop()


# ---------------------------------------------------------------------------
# The service's own events: ids no user can take first
# ---------------------------------------------------------------------------


def test_bob_cannot_squat_the_id_of_alices_lost(tmp_path, tokens):
    """The LOST the watchdog writes has an id anyone can work out (job, run,
    the last heartbeat's time, all readable): bob posts it on his own job
    first, and alice's silent job must still become LOST."""
    _, t = tokens
    svc = make_app(tmp_path, tokens[0], SLM_WATCH_INTERVAL="0.2", SLM_RECONCILE="off").start()
    try:
        app = svc.app
        assert post(app, job_of("alice", "a-quiet"), t["alice"]).status == 200
        assert call(app, "POST", "/api/v1/heartbeats", heartbeat("a-quiet", 1.0),
                    token=t["alice"]).json["accepted"] == 1
        row = call(app, "GET", "/api/v1/jobs/a-quiet", token=t["bob"]).json
        lost = slm_api.slurm_event(row, "LOST", row["restarts"] or 0, "now", source="service",
                                   episode=row["heartbeat_at"], reason="no_heartbeat")
        squat = post(app, job_of("bob", "b-own", event_id=lost["event_id"]), t["bob"])

        def alices():
            return call(app, "GET", "/api/v1/jobs/a-quiet", token=t["alice"]).json
        scaffold.await_true(lambda: alices()["status"] == "LOST", 15,
                            lambda: "alice's silent job LOST (it is %s)" % alices()["status"])
        events = call(app, "GET", "/api/v1/jobs/a-quiet/events", token=t["alice"]).json
        assert [(e["status"], e.get("source")) for e in events["events"]] == \
            [("RUNNING", None), ("LOST", "service")]
        assert squat.status == 400 and "service-" in squat.json["error"], squat.body
    finally:
        svc.stop()


def test_bob_cannot_squat_the_id_of_alices_array_rollup(tmp_path, tokens):
    """The roll-up of an array has an id made of the array's id: bob posts it
    first; alice's array still ends, and she is still told."""
    _, t = tokens
    hook = scaffold.HttpSink()
    svc = make_app(tmp_path, tokens[0], SLM_OUTBOX_POLL="0.05", SLM_RECONCILE="off").start()
    try:
        app = svc.app
        relay = {"to": [{"url": hook.hook_url, "format": "json"}], "send": False}
        assert post(app, job_of("alice", "4711", "SUBMITTED", array="1-2", relay=relay),
                    t["alice"]).status == 200
        rollup_id = "rollup-" + hashlib.sha1(b"4711").hexdigest()
        squat = post(app, job_of("bob", "b-own", event_id=rollup_id), t["bob"])
        for n in ("1", "2"):
            assert post(app, job_of("alice", "4711_" + n, "COMPLETED", array_job_id="4711",
                                    array_task_id=n, exit_code=0, relay=relay),
                        t["alice"]).status == 200
        hook.wait(lambda: any(b.get("rollup") for b in hook.delivered), 10,
                  "alice's roll-up delivered")
        rollup, = [b for b in hook.delivered if b.get("rollup")]
        assert (rollup["job_id"], rollup["tasks"]) == ("4711", {"COMPLETED": 2})
        array = call(app, "GET", "/api/v1/jobs/4711", token=t["alice"]).json
        assert (array["user"], array["status"]) == ("alice", "COMPLETED")
        assert squat.status == 400 and "rollup-" in squat.json["error"], squat.body
    finally:
        svc.stop()
        hook.close()


def test_bob_cannot_squat_the_id_of_slurms_verdict_on_alices_job(tmp_path, tokens):
    """Slurm's verdict has an id of the job, the state and the run: bob posts
    it first; the verdict on alice's job is still stored."""
    _, t = tokens
    sacct = [{"JobID": "4800", "State": "OUT_OF_MEMORY", "ExitCode": "0:125", "Reason": "None"}]

    class Knows(slm_api.Slurm):
        """sacct as it answers for alice's job, OOM-killed."""

        def __init__(self):
            slm_api.Slurm.__init__(self)
            self.cluster = "c1"

        def runs(self, ids):
            return dict((i, sacct) for i in ids if i == "4800")
    svc = make_app(tmp_path, tokens[0], SLM_RECONCILE="off")
    try:
        app = svc.app
        assert post(app, job_of("alice", "4800", "FAILED", when=time.time() - 600, cluster="c1",
                                exit_code=137, signal="SIGKILL"), t["alice"]).status == 200
        row = call(app, "GET", "/api/v1/jobs/4800", token=t["bob"]).json
        verdict = slm_api.slurm_verdict(dict(row, meta=json.dumps(row["meta"])), sacct,
                                        "now")[0][0]
        squat = post(app, job_of("bob", "b-own", event_id=verdict["event_id"]), t["bob"])
        slm_api.Watchdog(svc.db, svc.ingestor, Knows(), interval=60).ask_slurm(time.time())
        job = call(app, "GET", "/api/v1/jobs/4800", token=t["alice"]).json
        assert (job["status"], job["user"]) == ("OUT_OF_MEMORY", "alice"), job
        said = [e for e in call(app, "GET", "/api/v1/jobs/4800/events",
                                token=t["alice"]).json["events"] if e.get("source") == "slurm"]
        assert [(e["status"], e["corrects"]) for e in said] == [("OUT_OF_MEMORY", "FAILED")]
        assert squat.status == 400 and "slurm-" in squat.json["error"], squat.body
    finally:
        svc.stop()


# ---------------------------------------------------------------------------
# Reads: everyone's list (Slurm's default) or private jobs; secrets to owners
# ---------------------------------------------------------------------------


def fill(app, t):
    for user in ("alice", "bob"):
        assert post(app, job_of(user, user[0] + "1", "FAILED", exit_code=1,
                                output_tail="key=K"), t[user]).status == 200


def test_default_everyone_lists_everyone_but_command_lines_are_the_owners(service_in_process,
                                                                          tokens):
    _, t = tokens
    app = service_in_process.app
    fill(app, t)
    listed = call(app, "GET", "/api/v1/jobs", token=t["alice"]).json
    assert listed["total"] == 2
    mine = dict((j["job_id"], j) for j in listed["jobs"])
    assert mine["a1"]["meta"]["command"] == ["python", "secret.py", "--key=K"]
    assert "command" not in mine["b1"]["meta"] and "output_tail" not in mine["b1"]["meta"]
    events = call(app, "GET", "/api/v1/jobs/b1/events", token=t["alice"]).json["events"]
    assert events and all("command" not in e and "output_tail" not in e for e in events)
    assert "K" not in json.dumps(call(app, "GET", "/api/v1/jobs/b1", token=t["alice"]).json)
    assert call(app, "GET", "/api/v1/jobs/b1/notifications", token=t["alice"]).status == 403
    assert call(app, "GET", "/api/v1/jobs/b1/notifications", token=t["bob"]).status == 200
    theirs = call(app, "GET", "/api/v1/jobs/b1", token=t["root"]).json
    assert theirs["meta"]["command"] and theirs["meta"]["output_tail"] == "key=K"


def test_private_jobs_show_only_ones_own_and_admins_see_all(tmp_path, tokens):
    _, t = tokens
    svc = make_app(tmp_path, tokens[0], SLM_PRIVATE_DATA="jobs")
    try:
        app = svc.app
        fill(app, t)
        listed = call(app, "GET", "/api/v1/jobs", token=t["alice"]).json
        assert [j["job_id"] for j in listed["jobs"]] == ["a1"] and listed["total"] == 1
        assert call(app, "GET", "/api/v1/jobs?user=bob", token=t["alice"]).status == 403
        assert call(app, "GET", "/api/v1/jobs/b1", token=t["alice"]).status == 404
        assert call(app, "GET", "/api/v1/jobs/b1/events", token=t["alice"]).status == 404
        assert call(app, "GET", "/api/v1/jobs/b1/notifications", token=t["alice"]).status == 404
        assert call(app, "GET", "/api/v1/jobs", token=t["root"]).json["total"] == 2
        assert call(app, "GET", "/api/v1/whoami", token=t["bob"]).json["private_jobs"] is True
    finally:
        svc.stop()


def test_private_jobs_answer_a_heartbeat_for_anothers_job_as_for_none(tmp_path, tokens):
    """With private jobs, a 403 for alice's job and a 200 for a missing one
    would tell bob which job ids exist: both are "unknown"."""
    _, t = tokens
    svc = make_app(tmp_path, tokens[0], SLM_PRIVATE_DATA="jobs", SLM_RECONCILE="off")
    try:
        app = svc.app
        assert post(app, job_of("alice", "a-secret"), t["alice"]).status == 200
        answers = [call(app, "POST", "/api/v1/heartbeats", heartbeat(job_id, 60, user="bob"),
                        token=t["bob"]) for job_id in ("a-secret", "never-was")]
        assert [(a.status, a.json["accepted"], a.json["unknown"]) for a in answers] == \
            [(200, 0, 1)] * 2 and answers[0].json == answers[1].json
        job = call(app, "GET", "/api/v1/jobs/a-secret", token=t["alice"]).json
        assert job["heartbeat_at"] is None and job["heartbeat_interval"] is None
    finally:
        svc.stop()


def test_private_jobs_keep_a_feed_cursor_per_user(tmp_path, tokens):
    """The feed's next moves only with the asking user's own events: others'
    posting says nothing to alice (not even that they post)."""
    _, t = tokens
    svc = make_app(tmp_path, tokens[0], SLM_PRIVATE_DATA="jobs", SLM_RECONCILE="off")
    try:
        app = svc.app
        assert post(app, job_of("alice", "a1"), t["alice"]).status == 200
        mine = call(app, "GET", "/api/v1/feed", token=t["alice"]).json
        assert [e["job_id"] for e in mine["events"]] == ["a1"]
        end = mine["next"]
        for n in range(3):
            assert post(app, job_of("bob", "b%d" % n), t["bob"]).status == 200
        again = call(app, "GET", "/api/v1/feed?after=%d" % end, token=t["alice"]).json
        assert (again["events"], again["next"]) == ([], end)
        waited = call(app, "GET", "/api/v1/feed?after=%d&wait=0.3" % end, token=t["alice"]).json
        assert (waited["events"], waited["next"]) == ([], end)
        assert post(app, job_of("alice", "a2"), t["alice"]).status == 200
        later = call(app, "GET", "/api/v1/feed?after=%d" % end, token=t["alice"]).json
        assert [e["job_id"] for e in later["events"]] == ["a2"] and later["next"] > end
        # an admin's feed is everyone's
        assert len(call(app, "GET", "/api/v1/feed", token=t["root"]).json["events"]) == 5
    finally:
        svc.stop()


def test_metrics_are_the_admins_unless_the_site_opens_them(tmp_path, tokens):
    """/metrics counts every user's jobs by status: not a user's to read."""
    _, t = tokens
    svc = make_app(tmp_path, tokens[0], SLM_RECONCILE="off")
    try:
        assert post(svc.app, job_of("alice", "a1"), t["alice"]).status == 200
        for who in ("alice", "bob"):
            r = call(svc.app, "GET", "/metrics", token=t[who])
            assert r.status == 403 and r.json["error"], who
        r = call(svc.app, "GET", "/metrics", token=t["root"])
        assert r.status == 200 and 'slm_jobs{status="RUNNING"} 1' in r.body.decode()
    finally:
        svc.stop()
    (tmp_path / "open").mkdir()
    opened = make_app(tmp_path / "open", tokens[0], SLM_PUBLIC="metrics", SLM_RECONCILE="off")
    try:
        assert call(opened.app, "GET", "/metrics").status == 200
    finally:
        opened.stop()


# ---------------------------------------------------------------------------
# Changing the tokens file while the service runs
# ---------------------------------------------------------------------------


def test_revoked_token_is_refused_at_once_without_a_restart(tmp_path, tokens):
    path, t = tokens
    svc = scaffold.ServiceProcess(str(tmp_path / "r.db"), tmp_path, token=t["root"],
                                  env={"SLM_TOKENS_FILE": str(path)}).start()
    try:
        assert svc.get("/api/v1/whoami", token=t["alice"])[0] == 200
        assert token_cli(path, "revoke", "alice")[0] == 0
        scaffold.await_true(lambda: svc.get("/api/v1/whoami", token=t["alice"])[0] == 401,
                            timeout=3, what="the revoked token refused")
        assert svc.get("/api/v1/whoami", token=t["bob"])[0] == 200
        # a new token works as soon as it is written, and SIGHUP reads the file now
        carol = add_token(path, "carol")
        svc.proc.send_signal(signal.SIGHUP)
        scaffold.await_true(lambda: svc.get("/api/v1/whoami", token=carol)[0] == 200,
                            timeout=3, what="the new token accepted")
        # a bad line is reported and applied not at all: the tokens in force stay
        with open(str(path), "a") as f:
            f.write("mallory:root:%s\n" % ("0" * 64))
        svc.proc.send_signal(signal.SIGHUP)
        scaffold.await_true(lambda: "line 4" in svc.output(), timeout=3,
                            what="the bad line reported")
        assert svc.get("/api/v1/whoami", token=carol)[0] == 200
        assert svc.get("/api/v1/whoami", token="0" * 64)[0] == 401
        # ... once for that version of the file, not at every look (once a second,
        # when a request comes): requests for a bounded period, nothing more said
        assert svc.output().count("stay in force") == 1

        def whoami():
            assert svc.get("/api/v1/whoami", token=carol)[0] == 200
        assert scaffold.repeat_for(2.5, whoami) > 2
        assert svc.output().count("stay in force") == 1
        # the file deleted: every per-user token with it (the shared token stays)
        os.unlink(str(path))
        scaffold.await_true(lambda: svc.get("/api/v1/whoami", token=carol)[0] == 401,
                            timeout=3, what="the tokens of a deleted file refused")
        assert svc.get("/api/v1/whoami", token=t["root"])[0] == 200
        assert svc.output().count("is gone") == 1
    finally:
        svc.stop()
    for token in t.values():
        assert token not in svc.output()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the service's user is another")
def test_token_commands_keep_the_files_owner(tmp_path, tokens):
    """`sudo slm_api.py token revoke` leaves a file the service's user can read."""
    path, _ = tokens
    os.chown(str(path), 65534, 65534)
    assert token_cli(path, "revoke", "bob")[0] == 0
    st = os.stat(str(path))
    assert (st.st_uid, st.st_gid, oct(st.st_mode & 0o777)) == (65534, 65534, "0o600")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_bad_tokens_file_at_start_is_one_line_and_exit_2(tmp_path):
    path = tmp_path / "tokens"
    path.write_text("# ok\nalice:user:%s\nbob:superuser:%s\n" % ("a" * 64, "b" * 64))
    r = subprocess.run([sys.executable, scaffold.SLM_API, "--port", "0", "--db",
                        str(tmp_path / "x.db")], env=dict(os.environ, SLM_TOKENS_FILE=str(path)),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    err = r.stderr.decode()
    assert r.returncode == 2 and err.count("\n") == 1, err
    assert "line 3" in err and "nothing of the file was applied" in err
    assert "Traceback" not in err


# ---------------------------------------------------------------------------
# Fuzzing the Authorization header
# ---------------------------------------------------------------------------

header_values = st.one_of(
    st.text(max_size=80), st.just(""), st.just("Bearer"), st.just("Bearer "),
    st.builds(lambda s: "Bearer " + s, st.text(max_size=200)),
    st.builds(lambda s: "bearer " + s, st.text(alphabet="abcdef0123456789_-", max_size=64)),
    st.builds(lambda s: "Basic " + s, st.text(max_size=40)),
    st.builds(lambda n: "Bearer " + "x" * n, st.integers(1000, 70000)),
    st.sampled_from(["Bearer \u0000", "Bearer 数据🚀", "Bearer slm_\udcff", "Token abc",
                     "Bearer  slm_", "BEARER x", "Bearer\tx"]))


@settings(max_examples=400, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(value=header_values, path=st.sampled_from(["/api/v1/jobs", "/api/v1/whoami",
                                                  "/api/v1/events", "/api/v1/jobs/x",
                                                  "/api/v1/nothing", "/metrics"]))
def test_fuzzed_authorization_headers_never_5xx(value, path, fuzz_service):
    svc, t = fuzz_service
    # what a server hands over: latin-1 text of the header's bytes
    header = value.encode("utf-8", "surrogatepass").decode("latin-1")
    r = call(svc.app, "POST" if path == "/api/v1/events" else "GET", path,
             body=event() if path == "/api/v1/events" else None,
             headers={"Authorization": header})
    assert r.status == 401, (value, r.status, r.body)
    assert r.json["error"] and r.headers["www-authenticate"].startswith("Bearer")


@pytest.fixture(scope="module")
def fuzz_service(tmp_path_factory):
    d = tmp_path_factory.mktemp("authfuzz")
    path = d / "tokens"
    t = {"alice": add_token(path, "alice")}
    s = scaffold.build_service(d / "f.db", {"SLM_TOKENS_FILE": str(path),
                                            "SLM_API_TOKEN": "shared-secret"})
    yield s, t
    s.stop()


def test_the_shared_token_is_compared_in_constant_time(monkeypatch):
    seen = []
    real = slm_api.hmac.compare_digest

    def spy(a, b):
        seen.append((a, b))
        return real(a, b)
    monkeypatch.setattr(slm_api.hmac, "compare_digest", spy)
    ring = slm_api.Keyring("the-shared-one")
    with pytest.raises(slm_api.ApiError):
        ring.identify("Bearer the-shared-onX")
    assert ring.identify("Bearer the-shared-one").role == "admin"
    assert seen == [(b"the-shared-onX", b"the-shared-one"), (b"the-shared-one",
                                                             b"the-shared-one")]


# ---------------------------------------------------------------------------
# Abuse limits: per token, answered 429 with Retry-After
# ---------------------------------------------------------------------------


def test_a_flood_at_its_rate_limit_gets_429_and_others_are_served(tmp_path, tokens):
    _, t = tokens
    svc = make_app(tmp_path, tokens[0], SLM_RATE_LIMIT="5/s,10")
    try:
        answers = []
        while len(answers) < 30 and 429 not in [a.status for a in answers]:
            answers.append(call(svc.app, "GET", "/api/v1/whoami", token=t["alice"]))
        codes = [a.status for a in answers]
        assert codes[:10] == [200] * 10 and codes[-1] == 429
        limited = answers[-1]
        assert int(limited.headers["retry-after"]) >= 1 and "slow down" in limited.json["error"]
        assert call(svc.app, "GET", "/api/v1/whoami", token=t["bob"]).status == 200
    finally:
        svc.stop()


def test_a_tokens_bodies_are_limited_in_bytes_too(tmp_path, tokens):
    """Few requests of big bodies: the byte bucket (8 MiB/s, bursts of 32 MiB)
    answers 429 before the request bucket does."""
    _, t = tokens
    svc = make_app(tmp_path, tokens[0])
    try:
        # bodies of the largest size taken, refused once read (400): counted all the same
        big = b"{" + b" " * (slm_api.MAX_BODY - 2) + b"}"
        codes = []
        while len(codes) < 60 and 429 not in codes:
            codes.append(post(svc.app, big, t["alice"]).status)
        assert set(codes[:-1]) == {400} and codes[-1] == 429, codes
        assert len(codes) >= 30        # 32 MiB of burst first (8 MiB/s more meanwhile)
        assert post(svc.app, job_of("bob", "b-small"), t["bob"]).status == 200
    finally:
        svc.stop()


def test_the_group_commit_takes_every_tokens_writes_in_turn(service_in_process, tokens):
    """A burst from one token queued first cannot fill a transaction: the
    writer takes one request from each token in turn."""
    _, t = tokens
    who = dict((u, service_in_process.keyring.identify("Bearer " + t[u]))
               for u in ("alice", "bob"))
    ingestor = service_in_process.ingestor

    def write(user, n):
        return slm_api.Write([slm_api.validate_event(job_of(user, "%s-%d" % (user, n)))],
                             who[user])
    first = write("alice", 0)
    ingestor._queue = [first] + [write("alice", n) for n in range(1, 400)] + \
        [write("bob", n) for n in range(3)]
    group = ingestor._take(first)
    assert len(group) == ingestor.MAX_REQUESTS
    bobs = [w for w in group if w.who.user == "bob"]
    assert len(bobs) == 3 and group.index(bobs[-1]) <= 6     # near the front, in turn
    assert all(w not in ingestor._queue for w in group)
    ingestor._queue = []


def test_a_poison_event_holds_no_other_users_notice_back(tmp_path, tokens):
    """One group commit (concurrent requests) writes a big batch, alice's event
    with a field the outbox cannot format ("tasks": "x", once accepted) and
    bob's relayed failure: bob's notice still goes out within a few outbox
    polls, not after the poison row's lease."""
    _, t = tokens
    poisoned, bobs = scaffold.HttpSink(), scaffold.HttpSink()
    svc = make_app(tmp_path, tokens[0], SLM_OUTBOX_POLL="0.1", SLM_RECONCILE="off").start()
    ingestor = svc.ingestor
    answers = {}
    requests = (
        ("big", {"events": [job_of("carol", "big-%d" % n) for n in range(1000)]}, "root"),
        ("poison", job_of("alice", "a-poison", "FAILED", exit_code=1, tasks="x", relay={
            "to": [{"url": poisoned.hook_url, "format": "slack"}], "send": True}), "alice"),
        ("bob", job_of("bob", "b-fails", "FAILED", exit_code=1, relay={
            "to": [{"url": bobs.hook_url, "format": "json"}], "send": True}), "bob"))
    try:
        # hold the writer while the three queue up, in this order: then one
        # transaction takes them all (the group commit)
        with ingestor._cond:
            ingestor._writing = True
        threads = []
        for name, body, who in requests:
            queued = len(ingestor._queue)
            thread = threading.Thread(target=lambda n=name, b=body, w=who: answers.__setitem__(
                n, post(svc.app, b, t[w])))
            thread.start()
            threads.append(thread)
            # queued behind the held writer (or refused at the door already)
            scaffold.await_true(lambda: len(ingestor._queue) > queued or not thread.is_alive(),
                                10, "the %s request queued" % name, interval=0.005)
        with ingestor._cond:
            ingestor._writing = False
            ingestor._cond.notify_all()
        for thread in threads:
            thread.join(30)
        assert answers["bob"].status == 200 and answers["big"].status == 200
        bobs.wait(lambda: bobs.delivered, 3, "bob's notice sent promptly")
        assert bobs.delivered[0]["job_id"] == "b-fails"
        poison = answers["poison"]
        assert poison.status == 400 and "tasks" in poison.json["error"], poison.body
        assert poisoned.quiet(0.3) == 0 and poisoned.received == []
    finally:
        with ingestor._cond:
            ingestor._writing = False
            ingestor._cond.notify_all()
        svc.stop()
        poisoned.close()
        bobs.close()


def test_bad_access_settings_are_config_errors(tmp_path):
    for env in ({"SLM_PRIVATE_DATA": "secret"}, {"SLM_PUBLIC": "everything"},
                {"SLM_RATE_LIMIT": "fast"}):
        with pytest.raises(slm_api.ConfigError):
            slm_api.build_service(env, db=str(tmp_path / "c.db"))


def test_doctor_fails_when_the_token_is_another_users(tmp_path, tokens, env):
    """A user's token posts that user's events only: slm doctor says so before a
    job's events are refused."""
    from conftest import MAIN_PYTHON, run_slm
    svc = scaffold.ServiceProcess(str(tmp_path / "d.db"), tmp_path, token=tokens[1]["root"],
                                  env={"SLM_TOKENS_FILE": str(tokens[0])}).start()
    try:
        env.update(SLM_API_URL=svc.url, SLM_API_TOKEN=tokens[1]["bob"], USER="alice")
        env.pop("LOGNAME", None)
        r = run_slm(MAIN_PYTHON, ["doctor"], env)
        out = r.stdout.decode()
        assert r.returncode == 1 and "FAIL  service" in out and "it is bob's, not alice's" in out
        assert tokens[1]["bob"] not in out + r.stderr.decode()
        env["SLM_API_TOKEN"] = tokens[1]["alice"]
        out = run_slm(MAIN_PYTHON, ["doctor"], env).stdout.decode()
        assert "token accepted: alice (user" in out and "FAIL  service" not in out
    finally:
        svc.stop()
