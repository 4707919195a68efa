"""What no wrapper can report: silence (LOST), Slurm's verdict, requeues, spools read by the service.

Slurm's record is given to slurm_verdict() as sacct prints it (the shapes are
those measured on the test cluster); the real cluster is in tests/test_slurm.py.
The LOST watchdog and the spool reader run in a real service (in-process or a
process), with intervals shrunk by SLM_WATCH_INTERVAL.
"""
import json
import os
import time

import pytest

import scaffold
import slm
import slm_api
from scaffold import call, event, heartbeat

NOW = "2026-12-01T10:00:00.000000Z"


def row(status, source=None, restarts=0, **meta):
    if source:
        meta["source"] = source
    return {"job_id": "4711", "status": status, "restarts": restarts, "user": "alice",
            "meta": json.dumps(meta)}


def run(state, exit_code="0:0", reason="None"):
    return {"JobID": "4711", "State": state, "ExitCode": exit_code, "Reason": reason}


# ---------------------------------------------------------------------------
# Slurm's verdict, decided
# ---------------------------------------------------------------------------


def test_slurm_agreeing_adds_nothing_and_lets_held_notices_go():
    assert slm_api.slurm_verdict(row("CANCELLED"), [run("CANCELLED by 0")], NOW) == \
        ([], "release")
    assert slm_api.slurm_verdict(row("FAILED"), [run("FAILED", "3:0")], NOW) == ([], "release")


def test_out_of_memory_corrects_the_wrappers_failed():
    events, holds = slm_api.slurm_verdict(row("FAILED", signal="SIGKILL"),
                                          [run("OUT_OF_MEMORY", "0:125")], NOW)
    assert holds == "release" and len(events) == 1
    e = events[0]
    assert (e["status"], e["source"], e["corrects"], e["reason"]) == \
        ("OUT_OF_MEMORY", "slurm", "FAILED", "oom")
    assert "OUT_OF_MEMORY" in e["message"] and "FAILED" in e["message"]
    assert slm_api.validate_event(e, client=False)     # a well-formed event (the service's)
    # the same verdict from another instance has the same id: stored once
    again, _ = slm_api.slurm_verdict(row("FAILED"), [run("OUT_OF_MEMORY", "0:125")], NOW)
    assert again[0]["event_id"] == e["event_id"]


def test_a_silent_job_gets_slurms_end():
    for ours in ("RUNNING", "PAUSED", "TERMINATING"):
        events, _ = slm_api.slurm_verdict(row(ours), [run("CANCELLED by 1000", "0:9")], NOW)
        assert [(e["status"], e.get("signal")) for e in events] == [("CANCELLED", "SIGKILL")]
        assert "corrects" not in events[0]
    events, _ = slm_api.slurm_verdict(row("LOST", "service"), [run("NODE_FAIL", "0:0")], NOW)
    assert events[0]["status"] == "NODE_FAIL" and events[0]["exit_code"] == 0


def test_a_requeued_run_is_requeued_not_cancelled():
    sacct = [run("REQUEUED"), run("PENDING", reason="BeginTime")]
    events, holds = slm_api.slurm_verdict(row("CANCELLED"), sacct, NOW)
    assert holds == "supersede"
    assert [(e["status"], e.get("restart_count", 0), e["reason"]) for e in events] == \
        [("REQUEUED", 0, "requeued")]
    # within seconds of the requeue sacct has only the requeued run's record
    events, holds = slm_api.slurm_verdict(row("CANCELLED"), [run("REQUEUED")], NOW)
    assert [(e["status"], e.get("restart_count", 0)) for e in events] == [("REQUEUED", 0)]
    assert holds == "supersede"
    # the second run ended: its verdict is run 1's, the first run stays REQUEUED
    sacct = [run("REQUEUED"), run("COMPLETED")]
    events, _ = slm_api.slurm_verdict(row("RUNNING", restarts=1), sacct, NOW)
    assert [(e["status"], e.get("restart_count", 0)) for e in events] == \
        [("REQUEUED", 0), ("COMPLETED", 1)]
    # without accounting, squeue's PENDING BeginTime after a cancel says the same
    events, holds = slm_api.slurm_verdict(row("CANCELLED"), [run("PENDING",
                                                                 reason="BeginTime")], NOW)
    assert [e["status"] for e in events] == ["REQUEUED"] and holds == "supersede"


def test_a_job_that_never_starts_is_told_with_slurms_reason():
    events, _ = slm_api.slurm_verdict(row("SUBMITTED"),
                                      [run("PENDING", reason="DependencyNeverSatisfied")], NOW)
    assert [(e["status"], e["reason"]) for e in events] == [("PENDING",
                                                             "DependencyNeverSatisfied")]
    assert slm_api.slurm_verdict(row("SUBMITTED"), [run("PENDING", reason="Priority")],
                                 NOW)[0] == []
    assert slm_api.slurm_verdict(row("RUNNING"), [run("RUNNING")], NOW)[0] == []


def test_newer_releases_states_and_reasons():
    # 23.11 says Constraints where 22.05 said BadConstraints: a job that will never start
    for reason in ("BadConstraints", "Constraints"):
        events, _ = slm_api.slurm_verdict(row("SUBMITTED"), [run("PENDING", reason=reason)],
                                          NOW)
        assert [(e["status"], e["reason"]) for e in events] == [("PENDING", reason)]
    # 25.11's EXPEDITING (--requeue=expedite) waits to run again, like PENDING
    assert "EXPEDITING" in slm_api.QUEUE_WAITING


def test_exit_codes_as_sacct_prints_them():
    assert slm_api.slurm_exit("3:0") == {"exit_code": 3}
    assert slm_api.slurm_exit("0:9") == {"signal": "SIGKILL"}
    assert slm_api.slurm_exit("0:125") == {"exit_code": 0}
    assert slm_api.slurm_exit("") == {}


# ---------------------------------------------------------------------------
# Precedence: Slurm's verdict beats the wrapper, which beats a LOST that raced it
# ---------------------------------------------------------------------------


def merged(*events):
    r = {"job_id": "4711"}
    for e in events:
        slm_api.merge_event(r, slm_api.validate_event(e).event)
    return r


def test_precedence_in_any_order():
    import itertools
    running = event("4711", "RUNNING", "2026-12-01T09:00:00Z", 1)
    lost = event("4711", "LOST", "2026-12-01T09:30:00Z", 0, source="service")
    failed = event("4711", "FAILED", "2026-12-01T09:29:00Z", 2, signal="SIGKILL")
    oom = event("4711", "OUT_OF_MEMORY", "2026-12-01T09:31:00Z", 0, source="slurm",
                corrects="FAILED")
    for order in itertools.permutations([running, lost, failed]):
        assert merged(*order)["status"] == "FAILED"          # the wrapper beats LOST
    for order in itertools.permutations([running, lost, failed, oom]):
        r = merged(*order)
        assert r["status"] == "OUT_OF_MEMORY" and json.loads(r["meta"])["source"] == "slurm"
    for order in itertools.permutations([running, lost]):
        assert merged(*order)["status"] == "LOST"


def test_a_second_run_shows_as_the_job_with_one_restart():
    first = [event("4711", "RUNNING", "2026-12-01T09:00:00Z", 1, nodelist="n1"),
             event("4711", "TERMINATING", "2026-12-01T09:05:00Z", 2, reason="cancelled"),
             event("4711", "CANCELLED", "2026-12-01T09:05:01Z", 3, reason="cancelled",
                   elapsed=301.0),
             event("4711", "REQUEUED", "2026-12-01T09:05:10Z", 0, source="slurm",
                   reason="requeued")]
    second = [event("4711", "RUNNING", "2026-12-01T09:08:00Z", 1, restart_count=1,
                    nodelist="n2"),
              event("4711", "COMPLETED", "2026-12-01T09:09:00Z", 2, restart_count=1,
                    exit_code=0, elapsed=60.0)]
    import itertools
    for order in itertools.islice(itertools.permutations(first + second), 0, 5040, 97):
        r = merged(*order)
        meta = json.loads(r["meta"])
        assert (r["status"], r["restarts"], r["started_at"]) == \
            ("COMPLETED", 1, "2026-12-01T09:08:00.000000Z")
        assert r["reason"] is None and r["elapsed"] == 60.0 and r["nodelist"] == "n2", order
        assert r["event_count"] == 6 and "cancelled" not in json.dumps(meta)
    # before the second run: the first run was requeued, not cancelled
    assert merged(*first)["status"] == "REQUEUED"


# ---------------------------------------------------------------------------
# LOST: heartbeats that stop
# ---------------------------------------------------------------------------


@pytest.fixture
def hook():
    h = scaffold.HttpSink()
    yield h
    h.close()


def watched(tmp_path, **env):
    """The service in this process, started, its watchdog looking every 0.2 s."""
    return scaffold.build_service(tmp_path / "watch.db", dict(
        {"SLM_WATCH_INTERVAL": "0.2", "SLM_RECONCILE": "off", "SLM_OUTBOX_POLL": "0.05"},
        **env)).start()


def test_silent_job_is_lost_after_three_intervals_and_notified_once(tmp_path, hook):
    svc = watched(tmp_path)
    try:
        app = svc.app
        relay = {"to": [{"url": hook.hook_url, "format": "json"}], "send": False}
        for job_id in ("quiet", "paused", "talking"):
            assert call(app, "POST", "/api/v1/events",
                        dict(event(job_id, "RUNNING", user="alice"), relay=relay)).status == 200
        assert call(app, "POST", "/api/v1/events", event("paused", "PAUSED", seq=2,
                                                         user="alice")).status == 200
        started = time.time()
        answer = call(app, "POST", "/api/v1/heartbeats", {"heartbeats": [
            heartbeat("quiet", 0.3), heartbeat("paused", 0.3), heartbeat("talking", 30),
            heartbeat("nobody-knows", 0.3)]}).json
        assert (answer["accepted"], answer["unknown"]) == (3, 1)
        assert answer["pace"] == 1      # 3 jobs beating: the service asks for no slower pace

        scaffold.await_true(lambda: call(app, "GET", "/api/v1/jobs/quiet").json["status"] ==
                            "LOST", timeout=10, what="quiet job LOST")
        assert time.time() - started >= 0.9          # 3 intervals of silence first
        lost = [e for e in call(app, "GET", "/api/v1/jobs/quiet/events").json["events"]
                if e["status"] == "LOST"]
        assert len(lost) == 1 and lost[0]["source"] == "service"
        assert "no heartbeat" in lost[0]["message"]
        # the wrapper is dead: the service tells the user, through the job's own relay
        hook.wait(lambda: len(hook.delivered) == 1)
        assert hook.delivered[0]["job_id"] == "quiet"
        assert call(app, "GET", "/api/v1/jobs/paused").json["status"] == "PAUSED"
        assert call(app, "GET", "/api/v1/jobs/talking").json["status"] == "RUNNING"
        assert hook.quiet(1.0) == 0
        # the wrapper's own final event, arriving late, still wins over LOST
        call(app, "POST", "/api/v1/events", event("quiet", "COMPLETED", seq=2, user="alice",
                                                  exit_code=0))
        assert call(app, "GET", "/api/v1/jobs/quiet").json["status"] == "COMPLETED"
    finally:
        svc.stop()


def test_silence_while_the_service_was_down_is_not_the_jobs(tmp_path):
    # the job beat every second until a minute ago, when the service went down
    svc = watched(tmp_path)
    try:
        app, started = svc.app, time.time()
        assert call(app, "POST", "/api/v1/events", event("patient", "RUNNING",
                                                         user="alice")).status == 200
        assert call(app, "POST", "/api/v1/heartbeats", heartbeat(
            "patient", 1.0, time.time() - 60)).json["accepted"] == 1
        rounds = svc.watchdog.rounds
        scaffold.await_true(lambda: svc.watchdog.rounds >= rounds + 3, timeout=10,
                            what="three watchdog rounds")
        assert call(app, "GET", "/api/v1/jobs/patient").json["status"] == "RUNNING"
        # three intervals of silence the service heard: now it is LOST
        scaffold.await_true(lambda: call(app, "GET", "/api/v1/jobs/patient").json["status"] ==
                            "LOST", timeout=15, what="patient job LOST")
        assert time.time() - svc.watchdog.listening_since >= 3.0
        assert svc.watchdog.listening_since >= started - 1
    finally:
        svc.stop()


def test_a_lost_job_heard_from_again_runs_again_and_can_be_lost_again(tmp_path, hook):
    svc = watched(tmp_path)
    try:
        app = svc.app
        relay = {"to": [{"url": hook.hook_url, "format": "json", "on": "LOST,RUNNING"}],
                 "send": False}
        assert call(app, "POST", "/api/v1/events", dict(event("cut-off", "RUNNING", user="alice"),
                                                        relay=relay)).status == 200

        def status():
            return call(app, "GET", "/api/v1/jobs/cut-off").json["status"]

        def statuses():
            return [(e["status"], e.get("source"))
                    for e in call(app, "GET", "/api/v1/jobs/cut-off/events").json["events"]]
        call(app, "POST", "/api/v1/heartbeats", heartbeat("cut-off", 0.3))
        scaffold.await_true(lambda: status() == "LOST", timeout=10, what="LOST")
        # the network comes back: the next heartbeat shows the job alive
        call(app, "POST", "/api/v1/heartbeats", heartbeat("cut-off", 0.3))
        scaffold.await_true(lambda: status() == "RUNNING", timeout=10, what="RUNNING again")
        running = [e for e in call(app, "GET", "/api/v1/jobs/cut-off/events").json["events"]
                   if e.get("source") == "service" and e["status"] == "RUNNING"]
        assert len(running) == 1 and "heard from again" in running[0]["message"]
        # and silent again: a second LOST, its own event
        scaffold.await_true(lambda: status() == "LOST", timeout=10, what="LOST again")
        assert statuses() == [("RUNNING", None), ("LOST", "service"), ("RUNNING", "service"),
                              ("LOST", "service")]
        hook.wait(lambda: len(hook.delivered) == 3)
        assert [d["status"] for d in hook.delivered] == ["LOST", "RUNNING", "LOST"]
    finally:
        svc.stop()


def test_every_open_job_is_compared_with_slurms_queue_each_round(tmp_path):
    """Slurm's verdict beats a beat: every open job (up to ASK_LIMIT a round,
    least recently asked first) is compared with Slurm's queue each round,
    and accounting is asked about the ones the queue shows over or forgot: a
    job that ended is ended here within a round, and 250 jobs Slurm never
    heard of keep no other job waiting."""
    class Knows(slm_api.Slurm):
        def __init__(self):
            slm_api.Slurm.__init__(self)
            self.cluster, self.queued, self.asked = "c1", [], []

        def queue(self, ids):
            self.queued.append(list(ids))
            return dict((i, {"JobID": i, "State": "RUNNING", "Reason": "None", "ExitCode": ""})
                        for i in ids if i == "1000")

        def runs(self, ids):
            self.asked.append(list(ids))
            return dict((i, [{"JobID": i, "State": "COMPLETED", "ExitCode": "0:0",
                              "Reason": "None"}]) for i in ids if i == "999")

        def usage(self, ids):
            return {}
    svc = scaffold.build_service(tmp_path / "q.db", {"SLM_RECONCILE": "off",
                                                     "SLM_WATCH_INTERVAL": "3600"}).start()
    try:
        old = slm.iso_utc(time.time() - 600)
        for i in range(250):
            call(svc.app, "POST", "/api/v1/events", event(str(i + 1), "RUNNING", old,
                                                          cluster="c1", user="alice"))
        for job_id in ("999", "1000"):
            call(svc.app, "POST", "/api/v1/events", event(job_id, "RUNNING", old, cluster="c1",
                                                          user="alice"))
        slurm = Knows()
        dog = slm_api.Watchdog(svc.db, svc.ingestor, slurm, interval=60)
        dog.ASK_LIMIT = 100
        for n in range(3):
            dog.ask_slurm(time.time() + n * 61)
        asked = [i for ids in slurm.queued for i in ids]
        assert len(slurm.queued[0]) == 100 and len(set(asked)) == 252
        assert "1000" not in [i for ids in slurm.asked for i in ids]   # the queue runs it
        assert call(svc.app, "GET", "/api/v1/jobs/999").json["status"] == "COMPLETED"
        job = call(svc.app, "GET", "/api/v1/jobs/1000").json
        assert (job["status"], job["slurm_state"]) == ("RUNNING", "RUNNING")
    finally:
        svc.stop()


def test_two_clusters_on_one_database_each_get_their_slurm_asked(tmp_path):
    """One database, an instance on each cluster's login node: each asks its
    own Slurm about its own cluster's jobs every round (the LOST watch is one
    instance's work at a time, Slurm's is one per cluster)."""
    class Cluster(slm_api.Slurm):
        def __init__(self, name):
            slm_api.Slurm.__init__(self)
            self.cluster, self.queued = name, []

        def learn_cluster(self):
            return self.cluster

        def queue(self, ids):
            self.queued += ids
            return dict((i, {"JobID": i, "State": "RUNNING", "Reason": "None", "ExitCode": ""})
                        for i in ids)

        def runs(self, ids):
            return {}

        def usage(self, ids):
            return {}
    svc = scaffold.build_service(tmp_path / "two.db", {"SLM_RECONCILE": "off",
                                                       "SLM_WATCH_INTERVAL": "3600"}).start()
    try:
        old = slm.iso_utc(time.time() - 600)      # quiet for a while: asked this round
        for cluster in ("alpha", "beta"):
            call(svc.app, "POST", "/api/v1/events", event("4242", "RUNNING", old,
                                                          cluster=cluster, user="alice"))
        alpha, beta = Cluster("alpha"), Cluster("beta")
        dogs = [slm_api.Watchdog(svc.db, svc.ingestor, slurm, interval=60)
                for slurm in (alpha, beta)]
        for dog in dogs:
            dog.run_once()
        assert (alpha.queued, beta.queued) == (["4242"], ["4242"])
        jobs = call(svc.app, "GET", "/api/v1/jobs").json["jobs"]
        assert sorted((j["cluster"], j["slurm_state"]) for j in jobs) == \
            [("alpha", "RUNNING"), ("beta", "RUNNING")]
    finally:
        svc.stop()


def test_slurms_commands_are_asked_about_at_most_500_jobs_a_call():
    """5,000 ids on one command line would be 50 KB of argv for one squeue:
    the calls take AT_ONCE ids each, and their answers make one."""
    class Counting(slm_api.Slurm):
        def __init__(self):
            slm_api.Slurm.__init__(self)
            self.calls = []

        def _run(self, argv):
            ids = argv[argv.index("-j") + 1].split(",")
            self.calls.append((argv[0], len(ids)))
            return "".join("%s|RUNNING|None\n" % i for i in ids), ""
    slurm = Counting()
    found = slurm.queue([str(i) for i in range(1, 1201)])
    assert slurm.calls == [("squeue", 500), ("squeue", 500), ("squeue", 200)]
    assert sorted(found, key=int) == [str(i) for i in range(1, 1201)]


def test_the_services_own_notices_follow_each_destinations_filter(tmp_path, hook):
    # one destination wants only starts, the other only failures: the wrapper
    # judged RUNNING for each; the service judges its LOST the same way
    failures = scaffold.HttpSink()
    svc = watched(tmp_path)
    try:
        relay = {"to": [{"url": hook.hook_url, "format": "json", "send": True,
                         "notify_on": ["RUNNING"]},
                        {"url": failures.hook_url, "format": "json", "send": False,
                         "notify_on": ["LOST", "FAILED"]}],
                 "send": True, "notify_on": ["RUNNING", "COMPLETED"]}
        assert call(svc.app, "POST", "/api/v1/events", dict(
            event("filtered", "RUNNING", user="alice"), relay=relay)).status == 200
        call(svc.app, "POST", "/api/v1/heartbeats", heartbeat("filtered", 0.2))
        failures.wait(lambda: len(failures.delivered) == 1)
        assert failures.delivered[0]["status"] == "LOST"
        hook.wait(lambda: len(hook.delivered) == 1)
        assert hook.delivered[0]["status"] == "RUNNING" and hook.quiet(0.5) == 0
        bad = dict(relay, to=[dict(relay["to"][0], notify_on=["NOPE"])])
        answer = call(svc.app, "POST", "/api/v1/events", dict(event("f2", user="alice"),
                                                              relay=bad))
        assert answer.status == 400 and "notify_on" in answer.json["error"]
    finally:
        svc.stop()
        failures.close()


def test_heartbeats_are_validated_and_owned(tmp_path):
    path = tmp_path / "tokens"
    path.write_text("alice:user:%s\nbob:user:%s\n" % (slm_api.token_digest("ta"),
                                                      slm_api.token_digest("tb")))
    svc = scaffold.build_service(tmp_path / "b.db", {"SLM_TOKENS_FILE": str(path)})
    try:
        app = svc.app
        assert call(app, "POST", "/api/v1/events", event("a1", user="alice"),
                    token="ta").status == 200
        answer = call(app, "POST", "/api/v1/heartbeats", heartbeat("a1", 60), token="ta").json
        assert (answer["accepted"], answer["unknown"]) == (1, 0)
        assert call(app, "POST", "/api/v1/heartbeats", heartbeat("a1", 60, user="bob"),
                    token="tb").status == 403
        for bad in ({"job_id": "a1"}, heartbeat("a1", 0), heartbeat("a1", -1),
                    heartbeat("a1", "60"), heartbeat("a1", 60, rss_mb=-5),
                    heartbeat("a1", 60, time="yesterday"), [1]):
            r = call(app, "POST", "/api/v1/heartbeats", bad, token="ta")
            assert r.status == 400 and r.json["error"], bad
        svc.heartbeats.flush()       # (held in memory, written every few seconds)
        job = call(app, "GET", "/api/v1/jobs/a1", token="ta").json
        assert job["heartbeat_interval"] == 60 and job["heartbeat_at"]
    finally:
        svc.stop()


def test_two_instances_on_one_mariadb_say_lost_once(tmp_path, hook):
    scratch = scaffold.ScratchDatabase()
    services = []
    try:
        env = {"SLM_WATCH_INTERVAL": "0.2", "SLM_RECONCILE": "off"}
        services = [scaffold.ServiceProcess(scratch, tmp_path, env=env).start()
                    for _ in range(2)]
        relay = {"to": [{"url": hook.hook_url, "format": "json"}], "send": False}
        status, _ = services[0].post(dict(event("both-lost", "RUNNING", user="alice"),
                                          relay=relay))
        assert status == 200
        assert services[1].request("POST", "/api/v1/heartbeats",
                                   heartbeat("both-lost", 0.2))[0] == 200
        services[0].wait_job(lambda j: j["status"] == "LOST", job_id="both-lost")
        hook.wait(lambda: len(hook.delivered) == 1)
        assert hook.quiet(1.5) == 0
        assert [e["status"] for e in services[1].events("both-lost")] == ["RUNNING", "LOST"]
    finally:
        for s in services:
            s.stop()
        scratch.drop()


# ---------------------------------------------------------------------------
# A spool the service reads (nodes that cannot reach the service at all)
# ---------------------------------------------------------------------------


def test_the_service_reads_a_spool_like_slm_flush(tmp_path):
    root = str(tmp_path / "spool")
    spool = slm.Spool(root)
    target = slm.ServiceTarget("http://nowhere.invalid:1")
    events = [event("spooled-1", "RUNNING", user="alice"),
              event("spooled-1", "COMPLETED", seq=2, user="alice", exit_code=0),
              event("spooled-2", "RUNNING", user="alice", heartbeat=60)]
    for e in events:
        spool.release(spool.add(e, target))
    # a job that runs beats through the spool; one that ended leaves its file
    # behind (its wrapper was killed): the service removes it
    spool.beat("spooled-2", {"interval": 60, "rss_mb": 12.5})
    spool.beat("spooled-1", {"interval": 60, "rss_mb": 99.0})
    svc = scaffold.build_service(tmp_path / "s.db", {"SLM_WATCH_INTERVAL": "0.1",
                                                     "SLM_RECONCILE": "off"},
                                 spools=[root]).start()
    try:
        job = scaffold.await_true(lambda: (lambda j: j if j.get("status") == "COMPLETED"
                                           else None)(call(svc.app, "GET",
                                                           "/api/v1/jobs/spooled-1").json),
                                  timeout=10, what="the spooled job stored")
        assert job["event_count"] == 2
        running = scaffold.await_true(lambda: (lambda j: j if j.get("beat") else None)(
            call(svc.app, "GET", "/api/v1/jobs/spooled-2").json), timeout=10,
            what="the spooled beat recorded")
        assert running["heartbeat_interval"] == 60 and running["beat"]["rss_mb"] == 12.5
        scaffold.await_true(lambda: sorted(os.listdir(spool.beats)) == ["spooled-2"], 10,
                            "the ended job's beat file removed")
        assert spool.pending_names() == [] and os.listdir(spool.work) == []
        # a flush racing the service finds nothing left to send: stored once
        assert slm.flush_spool(spool, slm.Settings(slm.Console(quiet=True),
                                                   environ={"SLM_API_URL": "http://x:1"}),
                               slm.Console(quiet=True), time.time() + 1)[0] == 0
    finally:
        svc.stop()
