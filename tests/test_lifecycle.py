"""The deaths a wrapper cannot report, and the jobs that come back, on the real Slurm.

Two slm_api.py instances share one throw-away MariaDB database (as a site
that outgrew one login node runs them) with short watchdog rounds; jobs post
to one or the other; the service-wide webhook (one sink) must hear of each
thing once.  Every scenario is submitted when the module starts and checked
by its own test, so the slow ones (a time limit, a requeue that runs again
after ~2.5 minutes) run side by side.  Once per proctrack mode (conftest's
cluster fixture); needs root, Slurm with accounting (slurmdbd) and memory
enforced (tests/slurm-cluster.sh sets it up).
"""
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import MAIN_PYTHON, SLM, run_slm
from scaffold import HttpSink, ScratchDatabase, ServiceProcess, await_true

WATCH = "1"          # seconds between watchdog rounds
BEAT = "2"           # the jobs' heartbeat interval


class Lifecycle(object):
    """The services, the webhook, and every scenario's submission."""

    def __init__(self, cluster):
        self.dir = cluster.workdir
        self.db = ScratchDatabase("slm_life")
        self.hook = HttpSink()
        self.spool = os.path.join(self.dir, "firewalled-spool")
        os.makedirs(self.spool, exist_ok=True)
        env = {"SLM_WATCH_INTERVAL": WATCH, "SLM_WEBHOOK": self.hook.hook_url,
               "SLM_GROUP_SETTLE": "5",
               "SLM_NOTIFY_ON": "all", "SLM_RELAY_ALLOW": "127.0.0.1"}
        self.services = [ServiceProcess(self.db, self.dir, env=env,
                                        args=["--spool", self.spool]).start()
                         for _ in range(2)]
        # a third, on its own SQLite, on a host where accounting is off: its sacct
        # says so (as sacct does without slurmdbd), squeue and scontrol are Slurm's
        shims = os.path.join(self.dir, "no-accounting-bin")
        os.makedirs(shims, exist_ok=True)
        with open(os.path.join(shims, "sacct"), "w") as f:
            f.write("#!/bin/sh\necho 'sacct: error: Slurm accounting storage is disabled' >&2\n"
                    "exit 1\n")
        os.chmod(os.path.join(shims, "sacct"), 0o755)
        blind = dict(env, PATH=shims + os.pathsep + os.environ["PATH"])
        del blind["SLM_WEBHOOK"]
        self.services.append(ServiceProcess(os.path.join(self.dir, "no-accounting.db"),
                                            self.dir, env=blind).start())
        self.jobs, self.via = {}, {}

    def submit(self, name, script, sbatch_args=(), via=0, **env):
        """slm submit [--group G] SBATCH_ARGS job.sh, posting to service `via`."""
        folder = os.path.join(self.dir, name)
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, "job.sh")
        with open(path, "w") as f:
            f.write(script)
        os.chmod(path, 0o755)
        e = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SLM_"))}
        e.update(SLM_API_URL=self.services[via].url, SLM_HEARTBEAT=BEAT, SLM_TIMEOUT="2",
                 SLM_SPOOL_DIR=os.path.join(folder, "spool"), PYTHONDONTWRITEBYTECODE="1")
        e.update(env)
        ours = list(sbatch_args[:2]) if sbatch_args[:1] == ["--group"] else []
        r = run_slm(MAIN_PYTHON, ["submit"] + ours + ["-o", os.path.join(folder, "out.txt")] +
                    list(sbatch_args[len(ours):]) + [path], e, cwd=folder)
        assert r.returncode == 0, r.stderr
        job_id = re.search(rb"Submitted batch job (\d+)", r.stdout).group(1).decode()
        self.jobs[name] = (job_id, folder)
        self.via[name] = via
        return job_id

    def job(self, name):     # read from the other instance than the job posts to
        return self.services[1 if self.via[name] < 2 else 2].job(self.jobs[name][0])

    def events(self, name):
        return self.services[0 if self.via[name] < 2 else 2].events(self.jobs[name][0])

    def wait(self, name, predicate, timeout=120):
        seen = {}

        def check():
            seen["job"] = self.job(name)
            return seen["job"] is not None and predicate(seen["job"])
        try:
            await_true(check, timeout, name, interval=0.5)
        except AssertionError:
            raise AssertionError("%s never got there: %r\nevents: %r" % (
                name, seen.get("job"), [(e["status"], e.get("source")) for e in
                                        (self.events(name) if seen.get("job") else [])]))
        return seen["job"]

    def notices(self, name):
        job_id = self.jobs[name][0]
        return [(b["status"], b.get("source")) for b in self.hook.delivered
                if b.get("job_id") == job_id]

    def marker(self, name, what, timeout=60):
        path = os.path.join(self.jobs[name][1], what)
        await_true(lambda: os.path.exists(path) and open(path).read().strip(), timeout,
                   "%s's %s" % (name, what))
        return open(path).read().strip()

    def watch(self, name):
        """`slm watch` of the job, in the background, as its user would run it."""
        e = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SLM_"))}
        e.update(SLM_API_URL=self.services[0].url, TZ="UTC")
        return subprocess.Popen([MAIN_PYTHON, SLM, "watch", self.jobs[name][0]], env=e,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def close(self):
        for job_id, _ in self.jobs.values():
            subprocess.run(["scancel", job_id], stderr=subprocess.DEVNULL)
        for s in self.services:
            s.stop()
        self.hook.close()
        self.db.drop()


SLEEPER = "#!/bin/bash\necho $PPID > slm.pid\nsleep 300\n"
# jobs submitted with --no-monitor: (name, what the batch script does)
UNMONITORED = [("exits-137", "exit 137"), ("exits-9", "exit 9"), ("dies-of-kill", "kill -9 $$")]


@pytest.fixture(scope="module")
def life(cluster):
    if not subprocess.run(["sacct", "-n", "-j", "1"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE).returncode == 0:
        pytest.fail("Slurm accounting is off: tests/slurm-cluster.sh configures slurmdbd")
    lc = Lifecycle(cluster)
    try:
        lc.submit("killed", SLEEPER, via=0)
        lc.submit("suspended", SLEEPER, via=1)
        lc.submit("suspended-no-accounting", SLEEPER, via=2)
        lc.submit("oom", "#!/bin/bash\n%s -c 'import time\nb = []\nfor i in range(100):\n"
                  "    b.append(bytearray(4 << 20))\n    time.sleep(0.4)\n'\necho after=$?\n"
                  % MAIN_PYTHON, ["--mem=100M"], SLM_HEARTBEAT="0.5")
        lc.submit("timeout", "#!/bin/bash\nsleep 300\n", ["-t", "1"], SLM_TIME_WARNING="30s")
        failing = lc.submit("failing", "#!/bin/bash\nexit 1\n")
        lc.submit("never", "#!/bin/bash\ntrue\n", ["--dependency=afterok:%s" % failing])
        lc.submit("requeued", "#!/bin/bash\necho run ${SLURM_RESTART_COUNT:-0} >> runs\n"
                  "[ \"${SLURM_RESTART_COUNT:-0}\" -gt 0 ] && exit 0\nsleep 300\n",
                  ["--requeue", "--open-mode=append"], via=1)
        # a pipeline of three dependent jobs in one group, the last one failing
        first = lc.submit("chain-1", "#!/bin/bash\ntrue\n", ["--group", "chain"])
        second = lc.submit("chain-2", "#!/bin/bash\ntrue\n",
                           ["--group", "chain", "--dependency=afterok:%s" % first], via=1)
        lc.submit("chain-3", "#!/bin/bash\nexit 4\n",
                  ["--group", "chain", "--dependency=afterok:%s" % second])
        # a pipeline whose first step fails: the second will never start
        broken = lc.submit("broken-1", "#!/bin/bash\nexit 2\n", ["--group", "broken"])
        lc.submit("broken-2", "#!/bin/bash\ntrue\n",
                  ["--group", "broken", "--dependency=afterok:%s" % broken], via=1)
        # not monitored: only Slurm's record tells how these ended, and the verdict must
        # mean the same on every release (for an exit of 137, sacct prints 9:0 on 22.05
        # and 24.11, 137:0 on 26.05; scontrol and jobcomp say 137:0 on all three)
        for name, body in UNMONITORED:
            lc.submit(name, "#!/bin/bash\n%s\n" % body, ["--no-monitor"])
        # no route from the node to the service: only the shared spool it reads
        lc.submit("firewalled", "#!/bin/bash\nsleep 8\necho done\n",
                  SLM_API_URL="http://127.0.0.1:9", SLM_SPOOL_DIR=lc.spool)
        yield lc
    finally:
        lc.close()


def test_wrapper_killed_ends_with_slurms_verdict_within_a_round(life):
    # The wrapper cannot say a word of its own SIGKILL. The watchdog asks Slurm's queue
    # about every open job each round, so Slurm's verdict (the batch step died of
    # SIGKILL) comes long before the silence would count as LOST; a LOST in between is
    # allowed (a loaded box) but the job must end with Slurm's word, told once.
    life.wait("killed", lambda j: j["status"] == "RUNNING")
    pid = int(life.marker("killed", "slm.pid"))
    watch = life.watch("killed")
    os.kill(pid, signal.SIGKILL)
    killed = time.time()
    job = life.wait("killed", lambda j: j["meta"].get("source") == "slurm", timeout=90)
    assert (job["status"], job["signal"]) == ("FAILED", "SIGKILL")
    assert time.time() - killed < 60
    statuses = [(e["status"], e.get("source")) for e in life.events("killed")]
    assert statuses[-1] == ("FAILED", "slurm"), statuses
    for status, source in statuses:
        assert status in ("SUBMITTED", "RUNNING", "FAILED") or (status, source) == (
            "LOST", "service"), statuses
    # two instances, one database: each told once
    await_true(lambda: ("FAILED", "slurm") in life.notices("killed"), 30, "verdict notice")
    life.hook.quiet(3 * float(WATCH) + 1)     # other jobs may be heard meanwhile
    notices = life.notices("killed")
    assert notices.count(("FAILED", "slurm")) == 1 and notices.count(("LOST", "service")) <= 1
    # `slm watch` ended with Slurm's word
    code, statuses, err = watched(watch, 30)
    assert code == 1 and statuses[-1] == "FAILED", (statuses, err)
    assert "ended FAILED (SIGKILL, from Slurm's record)" in err


def test_cancel_of_a_suspended_job_is_cancelled_by_the_reconciler(life):
    job_id = life.jobs["suspended"][0]
    life.wait("suspended", lambda j: j["status"] == "RUNNING")
    life.marker("suspended", "slm.pid")
    subprocess.check_call(["scontrol", "suspend", job_id])
    life.wait("suspended", lambda j: j["status"] == "PAUSED")
    subprocess.check_call(["scancel", job_id])     # SIGKILL at once: the wrapper says nothing
    job = life.wait("suspended", lambda j: j["status"] == "CANCELLED", timeout=90)
    assert job["meta"]["source"] == "slurm"
    assert [e["status"] for e in life.events("suspended")][-1] == "CANCELLED"
    assert "LOST" not in [e["status"] for e in life.events("suspended")]   # PAUSED: frozen


def test_without_accounting_squeue_gives_the_verdict(life):
    # the same story on a cluster without slurmdbd: slurmctld still remembers
    # the job for MinJobAge, and squeue -t all says how it ended
    name = "suspended-no-accounting"
    life.wait(name, lambda j: j["status"] == "RUNNING")
    life.marker(name, "slm.pid")
    subprocess.check_call(["scontrol", "suspend", life.jobs[name][0]])
    life.wait(name, lambda j: j["status"] == "PAUSED")
    subprocess.check_call(["scancel", life.jobs[name][0]])
    job = life.wait(name, lambda j: j["status"] == "CANCELLED", timeout=90)
    assert job["meta"]["source"] == "slurm" and job["reason"] == "cancelled"
    assert "sacct cannot tell" in life.services[2].output()
    assert "accounting storage is disabled" in life.services[2].output()


def test_out_of_memory_with_a_warning_before(life):
    job = life.wait("oom", lambda j: j["status"] in ("OUT_OF_MEMORY", "FAILED", "COMPLETED"),
                    timeout=120)
    assert job["status"] == "OUT_OF_MEMORY", job
    statuses = [e["status"] for e in life.events("oom")]
    assert "MEMORY_WARNING" in statuses
    assert statuses.index("MEMORY_WARNING") < statuses.index("OUT_OF_MEMORY")
    end = [e for e in life.events("oom") if e["status"] == "OUT_OF_MEMORY"][0]
    assert end["memory_limit_mb"] == 100.0 and 90 <= end["peak_memory_mb"] <= 101
    assert end.get("source") is None              # the wrapper knew: no correction needed
    assert "MEMORY_WARNING" in job["meta"]["warnings"]


def test_time_warning_then_timeout(life):
    job = life.wait("timeout", lambda j: j["status"] == "TIMEOUT", timeout=180)
    statuses = [e["status"] for e in life.events("timeout")]
    assert statuses.index("TIME_WARNING") < statuses.index("TERMINATING") < \
        statuses.index("TIMEOUT"), statuses
    warning = [e for e in life.events("timeout") if e["status"] == "TIME_WARNING"][0]
    assert warning["time_left"] <= 31
    assert job["reason"] == "time_limit"


@pytest.mark.parametrize("name,verdict", [
    ("exits-137", {"exit_code": 137, "signal": None}),     # an exit status, not a signal
    ("exits-9", {"exit_code": 9, "signal": None}),
    ("dies-of-kill", {"signal": "SIGKILL"})])
def test_an_unmonitored_jobs_end_means_the_same_on_every_release(life, name, verdict):
    """The watchdog's verdict from Slurm's record: a script that exits 137 exited
    137 (it was not killed by signal 9), whatever the release's sacct prints."""
    job = life.wait(name, lambda j: j["meta"].get("source") == "slurm", timeout=90)
    got = {k: job.get(k) for k in verdict}
    assert (job["status"], got) == ("FAILED", verdict), "%s: %r" % (job.get("message"), job)


def test_a_job_that_never_starts_is_told_with_slurms_reason(life):
    job = life.wait("never", lambda j: j["status"] == "PENDING", timeout=90)
    assert job["reason"] == "DependencyNeverSatisfied" and job["meta"]["source"] == "slurm"
    await_true(lambda: ("PENDING", "slurm") in life.notices("never"), 30, "pending notice")


def watched(proc, timeout):
    """(exit status, the STATUS column of each line, stderr) of a finished watch."""
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, [l.split("  ")[1] for l in out.decode().splitlines()], err.decode()


def test_a_requeued_job_is_requeued_then_runs_again(life):
    job_id = life.jobs["requeued"][0]
    life.wait("requeued", lambda j: j["status"] == "RUNNING")
    watch = life.watch("requeued")     # the user follows the job all along
    life.marker("requeued", "runs")
    subprocess.check_call(["scontrol", "requeue", job_id])
    life.wait("requeued", lambda j: j["status"] == "REQUEUED", timeout=90)
    job = life.wait("requeued", lambda j: j["status"] == "COMPLETED", timeout=300)
    assert job["restarts"] == 1 and job["reason"] is None
    runs = [(e["status"], e.get("restart_count", 0)) for e in life.events("requeued")]
    assert ("REQUEUED", 0) in runs and ("RUNNING", 1) in runs and ("COMPLETED", 1) in runs
    notices = life.notices("requeued")
    # the CANCELLED the wrapper saw was held, and REQUEUED told instead
    assert ("REQUEUED", "slurm") in notices and not any(s == "CANCELLED" for s, _ in notices)
    # and `slm watch` went on through the requeue, to the second run's end
    code, statuses, err = watched(watch, 60)
    assert code == 0 and "REQUEUED" in statuses and statuses[-1] == "COMPLETED", (statuses, err)
    assert statuses.index("REQUEUED") < statuses.index("RUNNING", statuses.index("REQUEUED"))


def test_a_node_without_a_route_reports_through_the_shared_spool(life):
    job = life.wait("firewalled", lambda j: j["status"] == "COMPLETED", timeout=120)
    statuses = [e["status"] for e in life.events("firewalled")]
    assert sorted(statuses) == ["COMPLETED", "RUNNING", "SUBMITTED"], statuses
    assert "LOST" not in statuses and job["heartbeat_at"]
    assert (job.get("beat") or {}).get("rss_mb", 0) > 0, job     # the last beat's sample
    assert os.listdir(os.path.join(life.spool, "pending")) == []
    # every event once, though both instances read the spool
    ids = [e["event_id"] for e in life.events("firewalled")]
    assert len(ids) == len(set(ids)) == 3 and job["event_count"] == 3


def test_a_group_of_dependent_jobs_gets_a_start_its_failure_and_one_rollup(life):
    life.wait("chain-3", lambda j: j["status"] == "FAILED", timeout=120)
    ids = [life.jobs["chain-%d" % n][0] for n in (1, 2, 3)]
    await_true(lambda: any(b.get("kind") == "group" and b.get("rollup") and
                           b["group"] == "chain" for b in life.hook.delivered),
               30, "the group's roll-up")
    life.hook.quiet(3 * float(WATCH) + 1)
    heard = [(b.get("kind"), b["status"], b["job_id"]) for b in life.hook.delivered
             if b.get("group") == "chain" and b["status"] != "SUBMITTED"]
    assert heard == [("group", "RUNNING", ids[0]), (None, "FAILED", ids[2]),
                     ("group", "FAILED", ids[2])], heard
    rollup = [b for b in life.hook.delivered if b.get("kind") == "group" and b.get("rollup")
              and b["group"] == "chain"][0]
    assert rollup["tasks"] == {"COMPLETED": 2, "FAILED": 1} and rollup["failed_tasks"] == [ids[2]]
    listed = life.services[0].jobs(group="chain")
    assert sorted(j["job_id"] for j in listed) == sorted(ids)


def test_a_group_whose_first_job_fails_ends_when_slurm_says_the_rest_never_start(life):
    life.wait("broken-2", lambda j: j["status"] == "PENDING", timeout=120)
    ids = [life.jobs["broken-%d" % n][0] for n in (1, 2)]
    rollup = await_true(lambda: [b for b in life.hook.delivered if b.get("rollup") and
                                 b.get("group") == "broken"], 60, "the group's roll-up")[0]
    assert rollup["status"] == "FAILED"
    assert rollup["tasks"] == {"FAILED": 1, "PENDING": 1}
    assert sorted(rollup["failed_tasks"]) == sorted(ids)
    life.hook.quiet(3 * float(WATCH) + 1)
    assert len([b for b in life.hook.delivered if b.get("rollup") and
                b.get("group") == "broken"]) == 1
