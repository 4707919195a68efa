"""The relay: slm_api.py sends notifications for nodes without internet (SLM_WEBHOOK_VIA=api).

A real slm_api.py subprocess, the scaffold's webhook sink (answering 500, 429
with Retry-After, 400, or nothing at all, as told), and slm.py jobs or direct
posts.  "Nothing more is sent" is checked with one bounded quiet period after
the expected state was awaited.
"""
import json
import re
import threading
import time

import pytest

import scaffold
import slm_api
from conftest import MAIN_PYTHON, run_slm
from scaffold import HttpSink, ScratchDatabase, ServiceProcess, event


@pytest.fixture
def hook():
    h = HttpSink()
    h.url = h.hook_url
    yield h
    h.close()


@pytest.fixture
def start_service(tmp_path):
    """start_service(db=None, **env): slm_api.py as a process (SQLite in
    tmp_path unless db says otherwise), stopped after the test."""
    made = []

    def start(db=None, **env):
        s = ServiceProcess(db or str(tmp_path / "relay.db"), tmp_path, env=env).start()
        made.append(s)
        return s
    yield start
    for s in made:
        s.stop()


def Hook():
    """(for tests/test_slurm.py's roll-up scenario)"""
    return HttpSink()


def Service(db, workdir, **env):
    """(for tests/test_slurm.py's roll-up scenario)"""
    return ServiceProcess(db, workdir, env=env).start()


def relay_to(*urls, **how):
    """The relay request of an event (SLM_WEBHOOK_VIA=api): these URLs as JSON
    hooks, send: whether this event is to be sent (default True)."""
    return {"to": [{"url": u, "format": how.get("format", "json")} for u in urls],
            "send": how.get("send", True)}


def relayed_env(env, svc, hook_url, **extra):
    env.update(SLM_API_URL=svc.url, SLM_WEBHOOK=hook_url, SLM_WEBHOOK_VIA="api")
    env.update(extra)
    return env


# ---------------------------------------------------------------------------


def test_job_notification_relayed_retried_and_delivered_once(env, hook, start_service):
    svc = start_service()
    hook.script = [500, 500]
    r = run_slm(MAIN_PYTHON, ["run", "--", "sh", "-c", "exit 3"],
                relayed_env(env, svc, "slack+" + hook.url, SLM_NOTIFY_ON="final"))
    assert r.returncode == 3
    assert hook.received == [] or all("text" in b for _, b in hook.received)
    hook.wait(lambda: len(hook.delivered) == 1)
    assert hook.delivered[0]["text"].startswith("FAILED: job local-")
    job_id = re.search(r"job (\S+)", hook.delivered[0]["text"]).group(1)
    rows = svc.wait_notifications(job_id, lambda rows: rows and rows[0]["state"] == "sent")
    assert len(rows) == 1 and rows[0]["attempts"] == 3 and rows[0]["format"] == "slack"
    assert rows[0]["destination"] == "http://127.0.0.1:%d/…" % hook.port
    assert hook.quiet() == 0   # a second send would happen within a few polls
    assert len(hook.received) == 3 and len(hook.delivered) == 1
    # the destination (a secret) is not part of the stored events
    status, events = svc.get("/api/v1/jobs/%s/events" % job_id)
    assert all("relay" not in e for e in events["events"])
    assert hook.url not in json.dumps(events)


def test_429_retry_after_is_honoured(hook, start_service):
    svc = start_service()
    hook.script = [429]
    assert svc.post(event("r429", "FAILED", user="alice", relay=relay_to(hook.url)))[0] == 200
    hook.wait(lambda: len(hook.delivered) == 1)
    first, second = hook.received[0][0], hook.received[1][0]
    assert second - first >= 0.9     # Retry-After: 1, though the backoff is 0.1 s here


def test_400_is_given_up_with_its_reason(hook, start_service):
    svc = start_service()
    hook.script = [400]
    svc.post(event("r400", "FAILED", user="alice", relay=relay_to(hook.url)))
    rows = svc.wait_notifications("r400", lambda rows: rows and rows[0]["state"] == "failed")
    assert "HTTP 400" in rows[0]["last_error"] and "scripted" in rows[0]["last_error"]
    assert hook.quiet() == 0
    assert len(hook.received) == 1


def test_webhook_that_never_answers_is_retried(hook, start_service):
    svc = start_service()
    hook.script = ["hang"]
    svc.post(event("rhang", "COMPLETED", user="alice", relay=relay_to(hook.url)))
    hook.wait(lambda: len(hook.delivered) == 1, timeout=30)
    rows = svc.wait_notifications("rhang", lambda rows: rows[0]["state"] == "sent")
    assert rows[0]["attempts"] == 2
    assert "timed out" in rows[0]["last_error"]


def test_restart_with_a_full_outbox_loses_and_repeats_nothing(hook, start_service):
    svc = start_service()
    hook.script = [503] * 1000
    ids = []
    for i in range(5):
        e = event("restart-%d" % i, "COMPLETED", user="alice", relay=relay_to(hook.url))
        ids.append(e["event_id"])
        svc.post(e)
    hook.wait(lambda: len(hook.received) >= 5)
    svc.stop()
    hook.script = []
    svc.start()
    hook.wait(lambda: len(hook.delivered) == 5)
    assert hook.quiet() == 0
    assert sorted(b["event_id"] for b in hook.delivered) == sorted(ids)
    svc.stop()
    svc.start()          # nothing acknowledged is sent again
    assert hook.quiet(0.8) == 0
    assert len(hook.delivered) == 5


def test_relay_outside_the_allow_list_is_refused(hook, start_service):
    svc = start_service(SLM_RELAY_ALLOW="hooks.slack.com")
    status, answer = svc.post(event("refused-1", "FAILED", user="alice",
                                    relay=relay_to(hook.url)))
    assert status == 200 and answer["accepted"] == 1
    assert answer["refused_notifications"] == 1
    rows = svc.notifications("refused-1")
    assert rows[0]["state"] == "refused" and "SLM_RELAY_ALLOW" in rows[0]["last_error"]
    assert hook.quiet() == 0
    assert hook.received == []
    assert svc.get("/api/v1/jobs/refused-1")[1]["status"] == "FAILED"


def test_an_allowed_host_is_allowed_on_its_schemes_port_only(hook, start_service):
    """SLM_RELAY_ALLOW=HOST allows that host's URLs on port 80 (443 for https):
    a user's relay request reaches no other service of an allowed host."""
    svc = start_service(SLM_RELAY_ALLOW="127.0.0.1")
    status, answer = svc.post(event("port-1", "FAILED", user="alice", relay=relay_to(hook.url)))
    assert status == 200 and answer["accepted"] == 1
    assert hook.quiet() == 0 and hook.received == []
    assert answer.get("refused_notifications") == 1, answer
    rows = svc.notifications("port-1")
    assert rows[0]["state"] == "refused" and "SLM_RELAY_ALLOW" in rows[0]["last_error"]


@pytest.mark.parametrize("entry", ["127.0.0.1:PORT", "127.0.0.1:*", "127.0.0.0/8:*",
                                   "hooks.example.org,127.0.0.1:PORT"])
def test_allow_entries_name_their_ports(hook, start_service, entry):
    """HOST:PORT, HOST:* and an address range (CIDR) with a port allow it."""
    svc = start_service(SLM_RELAY_ALLOW=entry.replace("PORT", str(hook.port)))
    status, answer = svc.post(event("ports", "FAILED", user="alice", relay=relay_to(hook.url)))
    assert status == 200 and "refused_notifications" not in answer, answer
    hook.wait(lambda: len(hook.delivered) == 1)
    assert hook.delivered[0]["job_id"] == "ports"


def test_a_host_name_that_parsers_read_differently_is_refused(hook, start_service):
    """http://127.0.0.1%23.hooks.slack.com:PORT/ passes a check of its host
    against hooks.slack.com while a connection goes elsewhere: a host of other
    characters than letters, digits, '-' and '.' is refused where it is posted."""
    svc = start_service(SLM_RELAY_ALLOW="hooks.slack.com")
    odd = "http://127.0.0.1%%23.hooks.slack.com:%d/hook" % hook.port
    status, answer = svc.post(event("odd-host", "FAILED", user="alice", relay=relay_to(odd)))
    assert hook.quiet() == 0 and hook.received == []
    if status == 200:      # the event kept, its relay refused
        assert answer.get("refused_notifications") == 1, answer
        assert [r["state"] for r in svc.notifications("odd-host")] == ["refused"]
    else:
        assert status == 400 and "relay" in answer["error"], (status, answer)


def test_a_name_that_resolves_to_a_private_address_gets_nothing(hook, start_service):
    """An allowed name may resolve to a loopback or private address (the
    service's own network): without an address entry covering it, the row
    fails for good and nothing is connected."""
    svc = start_service(SLM_RELAY_ALLOW="localhost:*")
    url = "http://localhost:%d/hook" % hook.port
    status, answer = svc.post(event("private", "FAILED", user="alice", relay=relay_to(url)))
    assert status == 200 and "refused_notifications" not in answer, answer
    rows = svc.wait_notifications("private", lambda rows: rows and rows[0]["state"] != "pending")
    assert rows[0]["state"] == "failed" and "private address" in rows[0]["last_error"], rows
    assert hook.quiet() == 0 and hook.received == []


def test_a_name_is_connected_to_at_the_address_it_was_checked_for(hook, start_service):
    """Resolved once, checked, and that very address connected to, the name
    kept for the Host header (and TLS)."""
    import socket
    found = set(info[4][0] for info in socket.getaddrinfo("localhost", hook.port,
                                                          proto=socket.IPPROTO_TCP))
    if found != {"127.0.0.1"}:
        pytest.skip("localhost is %s here, not 127.0.0.1 alone (the sink's)" % sorted(found))
    # the name is listed; its (loopback) address is allowed by the network entry
    svc = start_service(SLM_RELAY_ALLOW="localhost:*,127.0.0.1:*")
    url = "http://localhost:%d/hook" % hook.port
    status, answer = svc.post(event("by-name", "FAILED", user="alice", relay=relay_to(url)))
    assert status == 200 and "refused_notifications" not in answer, answer
    hook.wait(lambda: len(hook.delivered) == 1)
    path, headers, body, _ = hook.requests[0]
    assert headers["Host"] == "localhost:%d" % hook.port and body["job_id"] == "by-name"


def test_a_notification_that_cannot_be_built_fails_alone(tmp_path, hook, start_service):
    """Belt and braces, for rows stored before the service typed every field
    (a roll-up's "tasks": "x" once got in): the row that cannot be formatted
    is failed with its reason, never left pending, and the row claimed with
    it is sent as if it were alone."""
    import sqlite3
    db = tmp_path / "legacy.db"
    svc = start_service(str(db))
    poison = event("poison", "FAILED", user="mallory", tasks="x", rollup=True)
    fine = event("fine", "FAILED", user="alice", exit_code=1)
    now = scaffold.iso_time(time.time())
    conn = sqlite3.connect(str(db))
    with conn:       # one transaction: the sender claims both in one go, poison first
        for n, (e, fmt) in enumerate(((poison, "slack"), (fine, "json"))):
            conn.execute("INSERT INTO slm_outbox (dedup_key, job_key, job_id, destination,"
                         " format, payload, state, next_attempt_at, created_at, event_id) VALUES"
                         " (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
                         ("legacy:%d" % n, slm_api.job_key_of(None, e["job_id"]), e["job_id"],
                          hook.url, fmt, json.dumps(e), now, now, e["event_id"]))
    conn.close()
    hook.wait(lambda: [b.get("job_id") for b in hook.delivered] == ["fine"], 5,
              "the other row sent promptly")
    rows = svc.wait_notifications("poison", lambda rows: rows[0]["state"] != "pending", 10)
    assert rows[0]["state"] == "failed" and rows[0]["last_error"], rows
    # (its answer was read: its row is settled a moment after the sink got it)
    svc.wait_notifications("fine", lambda rows: [r["state"] for r in rows] == ["sent"], 5)
    assert "Traceback" not in svc.output()


def test_send_false_stores_without_notifying(hook, start_service):
    svc = start_service()
    svc.post(event("quiet-1", "RUNNING", user="alice", relay=relay_to(hook.url, send=False)))
    svc.post(event("quiet-1", "COMPLETED", seq=2, user="alice", relay=relay_to(hook.url)))
    hook.wait(lambda: len(hook.delivered) == 1)
    assert hook.delivered[0]["status"] == "COMPLETED"


def test_admin_webhook_hears_every_job(hook, start_service):
    svc = start_service(SLM_WEBHOOK=hook.url, SLM_NOTIFY_ON="final")
    svc.post(event("admin-1", "RUNNING", user="alice"))
    svc.post(event("admin-1", "TIMEOUT", seq=2, user="alice"))
    hook.wait(lambda: len(hook.delivered) == 1)
    assert hook.delivered[0]["status"] == "TIMEOUT"


def test_bad_relay_field_is_400(start_service):
    svc = start_service()
    bad = event("badrelay", "RUNNING", user="alice")
    bad["relay"] = {"to": [{"url": "ftp://x"}], "send": True}
    status, answer = svc.post(bad)
    assert status == 400 and "relay" in answer["error"]


def test_array_rollup_after_the_last_task(env, hook, start_service):
    """Five tasks through the real wrapper, one failing: a failure notice and one roll-up."""
    svc = start_service()
    relayed_env(env, svc, hook.url)
    env.update(SLURM_ARRAY_JOB_ID="7700", SLURM_ARRAY_TASK_COUNT="5", SLURM_JOB_NAME="sweep")
    for task in range(1, 6):
        env.update(SLURM_JOB_ID=str(7700 + task), SLURM_ARRAY_TASK_ID=str(task))
        r = run_slm(MAIN_PYTHON, ["-q", "run", "--", "sh", "-c", "exit %d" % (task == 3)], env)
        assert r.returncode == (task == 3)
        if task < 5:
            assert not any(b.get("rollup") for b in hook.delivered)
    hook.wait(lambda: any(b.get("rollup") for b in hook.delivered))
    assert hook.quiet() == 0
    rollups = [b for b in hook.delivered if b.get("rollup")]
    notices = [b for b in hook.delivered if not b.get("rollup")]
    assert len(rollups) == 1
    assert rollups[0]["job_id"] == "7700" and rollups[0]["status"] == "FAILED"
    assert rollups[0]["tasks"] == {"COMPLETED": 4, "FAILED": 1}
    assert rollups[0]["failed_tasks"] == ["3"]
    # per-task notices only for the failure (SLM_ARRAY_NOTIFY=failures, the default)
    assert [(n["job_id"], n["status"]) for n in notices] == [("7700_3", "FAILED")]
    # the array's own row ends too, through a stored roll-up event
    status, parent = svc.get("/api/v1/jobs/7700")
    assert status == 200 and parent["status"] == "FAILED" and parent["ended_at"]
    _, events = svc.get("/api/v1/jobs/7700/events")
    assert [e.get("rollup") for e in events["events"]] == [True]
    assert events["events"][0]["tasks"] == {"COMPLETED": 4, "FAILED": 1}


def test_array_rows_without_a_known_size_get_no_rollup(start_service):
    svc = start_service()
    for task in ("1", "2"):
        svc.post(event("9900_" + task, "COMPLETED", user="alice", array_job_id="9900",
                       array_task_id=task))
    assert svc.get("/api/v1/jobs/9900")[0] == 404      # no placeholder row left behind
    svc.post(event("9901_1", "COMPLETED", user="alice", array_job_id="9901",
                   array_task_id="1", array_task_count=1))
    assert svc.get("/api/v1/jobs/9901")[1]["status"] == "COMPLETED"


def test_two_instances_on_one_mariadb_send_each_notification_once(hook, start_service):
    scratch = ScratchDatabase()
    try:
        one, two = start_service(scratch.url), start_service(scratch.url)
        ids = []
        errors = []

        def burst(svc, start):
            for i in range(start, 120, 2):
                e = event("burst-%d" % i, "COMPLETED", user="alice", relay=relay_to(hook.url))
                ids.append(e["event_id"])
                status, answer = svc.post(e)
                if status != 200:
                    errors.append(answer)
        threads = [threading.Thread(target=burst, args=(svc, k)) for k, svc in
                   enumerate((one, two))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        hook.wait(lambda: len(hook.delivered) >= 120, timeout=60)
        assert hook.quiet(1.0) == 0
        got = [b["event_id"] for b in hook.delivered]
        assert len(got) == 120 and sorted(got) == sorted(ids)
    finally:
        scratch.drop()


def test_rate_limit_spaces_a_burst_to_one_destination():
    import slm_api
    limiter = slm_api.RateLimiter()
    now = 1000.0
    sent = [limiter.delay("d", "feishu", now) for _ in range(5)]
    assert sent == [0.0] * 5
    assert 0 < limiter.delay("d", "feishu", now) <= 1.0      # the 6th within a second waits
    assert limiter.delay("other", "feishu", now) == 0.0     # per destination
    t = now
    for _ in range(95):
        t += 1.0
        while limiter.delay("d", "feishu", t) > 0:
            t += 0.05
    assert limiter.delay("d", "feishu", t) > 0 or t - now >= 60  # 100 per minute at most


def test_array_size_spec():
    import slm_api
    assert slm_api.array_size("1-5") == 5
    assert slm_api.array_size("1-10%4") == 10
    assert slm_api.array_size("1,3,5-7") == 5
    assert slm_api.array_size("0-15:4") == 4
    assert slm_api.array_size("x") is None and slm_api.array_size(None) is None


# ---------------------------------------------------------------------------
# srun -n N slm.py run -- CMD: every task's wrapper speaks, the job ends once
# ---------------------------------------------------------------------------


def task_end(job_id, task, ntasks, host, exit_code=0, step="0", relay=None, **extra):
    """The TASK_ENDED a task's wrapper sends when its command ends."""
    fields = dict(extra, exit_code=exit_code, relay=relay)
    return event(job_id, "TASK_ENDED", user="alice", task_id=task, ntasks=ntasks, step_id=step,
                 host=host, cpu_time=1.5, max_rss_mb=100.0 + task,
                 **dict((k, v) for k, v in fields.items() if v is not None))


def test_a_steps_tasks_end_the_job_once_by_sruns_rule(hook, start_service):
    """Three wrapped tasks of one step: task 1 on node2 exits 3, the others 0.
    No task's end is a notice of its own; when the last ends, the job ends
    FAILED with exit 3 (srun's exit: the highest of its tasks'), one notice,
    from the wrappers' word (source "tasks"), whatever order they arrive in."""
    svc = start_service()
    relay = relay_to(hook.url, send=False)
    assert svc.post(event("900", "RUNNING", user="alice", relay=relay_to(hook.url)))[0] == 200
    hook.wait(lambda: len(hook.delivered) == 1)
    ends = [task_end("900", 2, 3, "node3", relay=relay), task_end("900", 1, 3, "node2", 3,
                                                                   relay=relay)]
    for body in ends:
        assert svc.post(body)[0] == 200
        assert svc.post(body)[1]["duplicates"] == 1          # a resent end counts once
    assert svc.job("900")["status"] == "RUNNING"
    assert svc.post(task_end("900", 0, 3, "node1", relay=relay))[0] == 200
    job = svc.wait_job(lambda j: j["status"] == "FAILED", "900")
    assert job["exit_code"] == 3 and "task 1 on node2 exited 3" in job["message"]
    final = [e for e in svc.events("900") if e["status"] == "FAILED"]
    assert len(final) == 1 and final[0]["source"] == "tasks" and final[0]["cpu_time"] == 4.5
    assert final[0]["max_rss_mb"] == 102.0
    hook.wait(lambda: len(hook.delivered) == 2)
    assert hook.quiet() == 0
    assert [b["status"] for b in hook.delivered] == ["RUNNING", "FAILED"]


def test_a_task_a_signal_ended_leaves_the_verdict_to_slurm(start_service):
    """A cancel, a time limit and a crash look alike from inside one task: the
    tasks' ends conclude nothing then (the watchdog asks Slurm every round)."""
    svc = start_service()
    for body in (event("901", "RUNNING", user="alice"), task_end("901", 0, 2, "node1"),
                 task_end("901", 1, 2, "node2", exit_code=None, signal="SIGTERM")):
        assert svc.post(body)[0] == 200
    assert svc.job("901")["status"] == "RUNNING"
    assert [e["status"] for e in svc.events("901")] == ["RUNNING", "TASK_ENDED", "TASK_ENDED"]


def test_each_step_and_each_run_counts_on_its_own(start_service):
    """A second step's tasks are not the first's, and a requeued run counts afresh."""
    svc = start_service()
    for body in (event("902", "RUNNING", user="alice"), task_end("902", 0, 2, "node1", step="0"),
                 task_end("902", 1, 2, "node2", step="1")):
        assert svc.post(body)[0] == 200
    assert svc.job("902")["status"] == "RUNNING"
    for body in (task_end("902", 0, 2, "node1", step="0", restart_count=1),
                 task_end("902", 0, 2, "node1", 5, step="0"),    # the first run's, late
                 task_end("902", 1, 2, "node2", step="0", restart_count=1)):
        assert svc.post(body)[0] == 200
    job = svc.wait_job(lambda j: j["status"] == "COMPLETED", "902")
    assert job["restarts"] == 1 and job["exit_code"] == 0
