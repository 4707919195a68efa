"""The wrapper watching its job: heartbeats, memory and time warnings, stalls, OOM kills.

slm.py runs the test child against the scaffold's sink (standing in for the
service) or a real slm_api.py; Slurm's side is faked where a fast test needs it
(squeue's start and end times on PATH, SLURM_MEM_PER_NODE, a cgroup tree in a
temp dir).  The real thing - an OOM kill under task/cgroup, a time limit - is in
tests/test_slurm.py.
"""
import os
import subprocess
import time

import pytest

from conftest import MAIN_PYTHON, SLM, Job, run_slm
from scaffold import await_true
import slm


def heartbeats(sink):
    return [body for path, _, body, status in sink.requests if path.endswith("/heartbeats")]


def events_of(sink, status):
    return [e for e in sink.events if e.get("status") == status]


@pytest.fixture
def watched(env, sink):
    env.update(SLM_API_URL=sink.url, SLM_HEARTBEAT="0.2", SLURM_JOB_ID="5151",
               SLURM_CLUSTER_NAME="c1")
    return env


def test_heartbeats_carry_what_the_job_uses(watched, sink):
    job = Job(MAIN_PYTHON, watched, ["--sleep", "30"])
    job.expect("ready")
    sink.wait(lambda: len(heartbeats(sink)) >= 3)
    job.signal(15)
    job.finish()
    running = events_of(sink, "RUNNING")[0]
    assert running["heartbeat"] == 0.2            # the service waits for beats from here on
    beats = heartbeats(sink)
    for beat in beats:
        assert beat["job_id"] == "5151" and beat["interval"] == 0.2
        assert beat["rss_mb"] > 0 and beat["cpu_time"] >= 0 and "output_bytes" in beat
        assert "status" not in beat and "event_id" not in beat    # not an event
    assert all(b["time"] < c["time"] for b, c in zip(beats, beats[1:]))
    assert not os.path.exists(os.path.join(watched["SLM_SPOOL_DIR"], "beats"))


def test_heartbeats_keep_the_pace_the_service_asks_for(watched, sink):
    """Each answer may ask for fewer beats ({"pace": s}, a big site's bound): the next
    beat still comes when the last one promised, and says the new interval; a pace
    past an hour is a service's bug, never a job's silence for longer."""
    sink.answer = {"pace": 1}
    job = Job(MAIN_PYTHON, watched, ["--sleep", "30"])
    job.expect("ready")
    sink.wait(lambda: len(heartbeats(sink)) >= 3, timeout=30)
    job.signal(15)
    job.finish()
    beats = heartbeats(sink)
    assert beats[0]["interval"] == 0.2 and all(b["interval"] == 1 for b in beats[1:3]), beats
    assert all(b["cluster"] == "c1" for b in beats)
    gap = slm.parse_utc(beats[2]["time"]) - slm.parse_utc(beats[1]["time"])
    assert gap >= 0.95, beats
    assert slm.heartbeat_pace(b'{"pace": 86400}') == 3600
    assert [slm.heartbeat_pace(b) for b in (b'{"pace": "x"}', b'[]', b'\xff', b'{}')] == [0] * 4


def test_no_heartbeat_when_disabled_or_without_a_service(env, sink):
    env.update(SLM_API_URL=sink.url, SLM_HEARTBEAT="0")
    r = run_slm(MAIN_PYTHON, ["run", "--", "sleep", "0.6"], env)
    assert r.returncode == 0 and heartbeats(sink) == []
    assert "heartbeat" not in events_of(sink, "RUNNING")[0]


def test_heartbeats_fall_back_to_the_spool(watched, refused_url):
    """No route to the service: the beat is a file a service reading the spool
    sees, saying whose run it is; it goes when the job ends."""
    watched.update(SLM_API_URL=refused_url, SLURM_RESTART_COUNT="1")
    spool = slm.Spool(watched["SLM_SPOOL_DIR"])
    job = Job(MAIN_PYTHON, watched, ["--sleep", "30"])
    job.expect("ready")
    beats = await_true(spool.heartbeats, what="a beat in the spool")
    assert [(job_id, sample["interval"], sample["restart_count"], sample["user"])
            for job_id, _, sample in beats] == [("5151", 0.2, 1, slm.user_name())]
    assert "time" not in beats[0][2] and "job_id" not in beats[0][2]   # the file says those
    job.signal(15)
    job.finish()
    assert spool.heartbeats() == []


def test_memory_warning_once_at_the_threshold(watched, sink):
    # a 40 MB --mem (no cgroup here: Slurm's variable says it) and a child that grows past 90 %
    watched.update(SLURM_MEM_PER_NODE="40", SLM_MEMORY_WARNING="50")
    code = ("import time\nb = []\nfor i in range(12):\n    b.append(bytearray(4 << 20))\n"
            "    for j in range(0, len(b[-1]), 4096): b[-1][j] = 1\n    time.sleep(0.15)\n"
            "time.sleep(1)\n")
    r = run_slm(MAIN_PYTHON, ["run", "--", MAIN_PYTHON, "-c", code], watched)
    assert r.returncode == 0, r.stderr
    warnings = events_of(sink, "MEMORY_WARNING")
    assert len(warnings) == 1
    w = warnings[0]
    assert w["memory_limit_mb"] == 40.0 and w["memory_used_mb"] >= 20
    assert "% of the job's limit" in w["message"]
    assert [e["status"] for e in sink.events][-1] == "COMPLETED"


def fake_squeue(tmp_path, env, start, end):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    squeue = bin_dir / "squeue"
    stamp = lambda t: time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t))  # noqa: E731
    squeue.write_text("#!/bin/sh\necho %s %s\n" % (stamp(start), stamp(end)))
    squeue.chmod(0o755)
    env["PATH"] = "%s:%s" % (bin_dir, env["PATH"])


def test_time_warnings_at_each_lead_before_the_end(watched, sink, tmp_path):
    now = time.time()
    fake_squeue(tmp_path, watched, now - 100, now + 63)
    watched["SLM_TIME_WARNING"] = "1m,1s"      # the first at once (62 s left), then at 1 s left
    job = Job(MAIN_PYTHON, watched, ["--sleep", "4"])
    job.expect("ready")
    sink.wait(lambda: len(events_of(sink, "TIME_WARNING")) >= 1, timeout=10)
    assert job.finish() == 0
    warnings = events_of(sink, "TIME_WARNING")
    assert len(warnings) == 1 and 50 <= warnings[0]["time_left"] <= 63
    assert "left before the time limit" in warnings[0]["message"]


def test_default_lead_is_ten_percent_of_a_short_limit(watched, sink, tmp_path):
    now = time.time()
    fake_squeue(tmp_path, watched, now - 27, now + 3)     # a 30 s limit: warned 3 s before
    job = Job(MAIN_PYTHON, watched, ["--sleep", "2"])
    job.expect("ready")
    sink.wait(lambda: events_of(sink, "TIME_WARNING"), timeout=10)
    job.finish()
    assert events_of(sink, "TIME_WARNING")[0]["time_left"] <= 3


def test_a_usr1_near_the_end_is_the_time_warning(watched, sink, tmp_path):
    now = time.time()
    fake_squeue(tmp_path, watched, now - 3600, now + 300)
    watched["SLM_TIME_WARNING"] = "1m"
    job = Job(MAIN_PYTHON, watched, ["--sleep", "30"])
    job.expect("ready")
    sink.wait_status("RUNNING")
    job.signal(10)                                     # --signal=B:USR1@300
    job.expect("got SIGUSR1")
    sink.wait(lambda: events_of(sink, "TIME_WARNING"), timeout=10)
    job.signal(15)
    job.finish()
    warning = events_of(sink, "TIME_WARNING")
    assert len(warning) == 1 and warning[0]["signal"] == "SIGUSR1"
    assert "SIGUSR1 from Slurm" in warning[0]["message"]


def test_stalled_output(watched, sink, tmp_path):
    watched["SLM_STALL"] = "1s"
    with open(str(tmp_path / "out.txt"), "wb") as out:
        r = subprocess.run([MAIN_PYTHON, SLM, "run", "--", "sh", "-c",
                            "echo a; sleep 2; echo b; sleep 0.3"], env=watched, stdout=out,
                           stderr=subprocess.PIPE, timeout=60)
    assert r.returncode == 0
    stalled = events_of(sink, "STALLED")
    assert len(stalled) == 1 and "no output for" in stalled[0]["message"]


def test_bad_watch_settings_are_named_once_and_ignored(env, sink):
    env.update(SLM_API_URL=sink.url, SLM_TIME_WARNING="soon", SLM_STALL="often",
               SLM_MEMORY_WARNING="lots")
    r = run_slm(MAIN_PYTHON, ["run", "--", "true"], env)
    err = r.stderr.decode()
    assert r.returncode == 0 and "Traceback" not in err
    for name in ("SLM_TIME_WARNING", "SLM_STALL", "SLM_MEMORY_WARNING"):
        assert err.count(name) == 1, err


# ---------------------------------------------------------------------------
# The memory cgroup as the kernel shows it (a fake tree: cgroup v1 and v2)
# ---------------------------------------------------------------------------


def cgroup_tree(tmp_path, version):
    root = tmp_path / "sys"
    if version == 1:
        path = "slurm_vm/uid_0/job_49/step_batch/task_0"
        proc = "4:memory:/%s\n9:name=systemd:/\n" % path
        base = root / "memory"
        files = {"slurm_vm/uid_0/job_49": {"memory.limit_in_bytes": str(100 << 20)},
                 "slurm_vm/uid_0/job_49/step_batch": {
                     "memory.limit_in_bytes": str(100 << 20),
                     "memory.usage_in_bytes": str(80 << 20),
                     "memory.max_usage_in_bytes": str(99 << 20),
                     "memory.stat": "cache 1\ntotal_inactive_file %d\n" % (10 << 20)},
                 path: {"memory.limit_in_bytes": "9223372036854771712",
                        "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n"}}
    else:
        path = "system.slice/slurmstepd.scope/job_49/step_batch/user/task_0"
        proc = "0::/%s\n" % path
        base = root
        (root).mkdir(parents=True, exist_ok=True)
        (root / "cgroup.controllers").write_text("memory pids\n")
        files = {"system.slice/slurmstepd.scope/job_49": {
            "memory.max": str(100 << 20), "memory.current": str(80 << 20),
            "memory.peak": str(99 << 20), "memory.stat": "inactive_file %d\n" % (10 << 20),
            "memory.events": "low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\n"},
            path: {"memory.max": "max"}}
    for folder, content in files.items():
        (base / folder).mkdir(parents=True, exist_ok=True)
        for name, text in content.items():
            (base / folder / name).write_text(text)
    (tmp_path / "cgroup").write_text(proc)
    return str(tmp_path / "cgroup"), str(root), base, path, files


@pytest.mark.parametrize("version", [1, 2])
def test_memory_cgroup_limit_usage_peak_and_oom_kills(tmp_path, version):
    proc, root, base, path, files = cgroup_tree(tmp_path, version)
    cg = slm.MemoryCgroup.find(proc, root)
    assert cg is not None and cg.version == version
    level, limit = cg.limit()
    assert limit == 100 << 20
    assert cg.usage(level) == 70 << 20           # without the inactive file cache
    assert cg.peak(level) == 99 << 20
    assert cg.oom_kills() == 0
    # another job's OOM kill, counted above ours (v2 counts descendants), is not ours
    above = base / path.split("/job_49")[0]
    (above / ("memory.oom_control" if version == 1 else "memory.events")).write_text(
        "oom_kill 5\n")
    assert cg.oom_kills() == 0
    if version == 1:     # an OOM kill is counted where the killed process lived
        (base / path / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\n"
                                                        "oom_kill 1\n")
    else:
        job = base / "system.slice/slurmstepd.scope/job_49"
        (job / "memory.events").write_text("low 0\nhigh 0\nmax 9\noom 2\noom_kill 1\n")
    assert cg.oom_kills() == 1


def test_a_cgroup_v2_job_directory_named_by_its_sluid_is_the_jobs(tmp_path, monkeypatch):
    """Slurm 25.11+ on cgroup v2 names a job's directory by its SLUID (not job_N):
    another job's OOM kill above it is still not ours."""
    root = tmp_path / "v2"
    job = "system.slice/slurmstepd.scope/s455M986PM8200"
    path = job + "/step_batch/user/task_0"
    (root / path).mkdir(parents=True)
    (root / "cgroup.controllers").write_text("memory pids\n")
    for folder in (job, path):
        (root / folder / "memory.events").write_text("oom_kill 0\n")
    (root / "system.slice/slurmstepd.scope/memory.events").write_text("oom_kill 4\n")
    (tmp_path / "cgroup").write_text("0::/%s\n" % path)
    monkeypatch.setenv("SLURM_JOB_SLUID", "s455M986PM8200")
    cg = slm.MemoryCgroup.find(str(tmp_path / "cgroup"), str(root))
    assert cg.job_levels()[-1] == str(root / job)
    assert cg.oom_kills() == 0
    (root / job / "memory.events").write_text("oom_kill 1\n")
    assert cg.oom_kills() == 1


def test_no_memory_cgroup_is_none(tmp_path):
    (tmp_path / "cgroup").write_text("4:memory:/\n0::/\n")
    assert slm.MemoryCgroup.find(str(tmp_path / "cgroup"), str(tmp_path / "nothing")) is None


def test_durations_and_time_warning_lists():
    assert slm.parse_duration("30m") == 1800 and slm.parse_duration("90s") == 90
    assert slm.parse_duration("1.5h") == 5400 and slm.parse_duration("10") == 600
    assert slm.parse_duration("soon") is None
    assert slm.parse_time_warning("5m,30m") == [1800, 300]
    assert slm.parse_time_warning("off") == [] and slm.parse_time_warning("") is None


def test_the_jobs_end_comes_from_slurms_environment_when_it_says_it(monkeypatch):
    """Slurm 23.02+ sets SLURM_JOB_START_TIME and SLURM_JOB_END_TIME in the job: no
    squeue call at start (22.05's jobs still ask it)."""
    monkeypatch.setenv("SLURM_JOB_START_TIME", "1796645541")
    monkeypatch.setenv("SLURM_JOB_END_TIME", "1796649141")

    def no_squeue(*args):
        raise AssertionError("squeue asked though the environment said")
    monkeypatch.setattr(slm, "slurm_times", no_squeue)
    settings = slm.Settings(slm.Console(quiet=True), environ={"HOME": "/nonexistent"})
    w = slm.Wrapper(["true"], settings, slm.Console(quiet=True),
                    job=slm.JobInfo(["true"], environ={"SLURM_JOB_ID": "7"}))
    w._learn_about_slurm()
    assert (w.end_time, w.time_limit) == (1796649141, 3600)


@pytest.mark.parametrize("stopped_for,told", [(0.0, True), (1.5, False)])
def test_a_delivery_that_fails_while_the_job_was_stopped_is_retried_silently(
        tmp_path, monkeypatch, stopped_for, told):
    """A suspended job's processes, slm's too, are frozen (cgroup) or SIGSTOPped
    (linuxproc): an answer's wait that ran out meanwhile is not the target's fault,
    and says nothing in the job's stderr (plain sbatch's says nothing either); a
    failure in the time the attempt allowed is told once, as always."""
    import io
    clock = [1000.0]
    monkeypatch.setattr(slm.time, "time", lambda: clock[0])

    class Target(object):
        key, kind, batches = "api", "api", True

        def describe(self):
            return "the service"

        def deliver(self, events, timeout):
            clock[0] += timeout + stopped_for      # the wait, and the time we were frozen
            raise slm.DeliveryError("timed out")
    out = io.StringIO()
    console = slm.Console(stream=out)
    spool = slm.Spool(str(tmp_path / "spool"))
    target = Target()
    target.url = "http://127.0.0.1:9"
    entry = spool.add(slm.EventFactory(slm.JobInfo(["true"])).make("PAUSED"), target)
    delivered, error = slm.deliver_entries(target, [entry], spool, console, 1.0)
    assert (delivered, str(error)) == (0, "timed out")
    assert len(spool.pending_names()) == 1          # kept for the next attempt either way
    assert ("events kept in the spool" in out.getvalue()) == told, out.getvalue()
