"""End to end on a real single-node Slurm: sbatch, scontrol suspend/resume, scancel, time limits.

Needs a running cluster (tests/slurm-cluster.sh start, as root).  Skips when
there is none, unless SLM_REQUIRE_SLURM=1 (CI), which makes it fail.
SLM_SLURM_MODES="linuxproc cgroup" runs the whole module once per proctrack
plugin, restarting the cluster with tests/slurm-cluster.sh in between (root);
the `cluster` fixture (conftest.py) is shared with test_transparency.py, so the
cluster restarts once per mode.  Without it the module runs once against the
cluster as it is.
"""
import os
import re
import subprocess
import time

import pytest

from conftest import CHILD, MAIN_PYTHON, SLM, Sink, run_slm


class Submission(object):
    """One `slm submit` with its own sink, spool and output file."""

    def __init__(self, cluster, name, script, sbatch_args=(), script_args=(), slm_args=(),
                 output_option=True, extra_env=None):
        self.dir = os.path.join(cluster.workdir, name)
        os.makedirs(self.dir)
        self.sink = Sink()
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("SLURM_", "SLM_", "SBATCH_"))}
        self.env.update(SLM_API_URL=self.sink.url, SLM_SPOOL_DIR=os.path.join(self.dir, "spool"),
                        SLM_TIMEOUT="2", PYTHONDONTWRITEBYTECODE="1")
        self.env.update(extra_env or {})
        self.script = os.path.join(self.dir, "job")
        with open(self.script, "w") as f:
            f.write(script)
        os.chmod(self.script, 0o755)
        self.output = os.path.join(self.dir, "out.txt")
        output = ["-o", self.output] if output_option else []
        args = list(slm_args) + ["submit"] + output + list(sbatch_args) + \
            [self.script] + list(script_args)
        self.result = run_slm(MAIN_PYTHON, args, self.env, cwd=self.dir)
        m = re.search(rb"Submitted batch job (\d+)", self.result.stdout)
        self.job_id = m.group(1).decode() if m else None

    def statuses(self):
        return [e["status"] for e in sorted(self.sink.events, key=order)]

    def events(self, status):
        return [e for e in self.sink.events if e["status"] == status]

    def wait(self, status, timeout=60):
        return self.sink.wait_status(status, timeout)

    def wait_output(self, text, timeout=60, path=None):
        deadline = time.time() + timeout
        while True:
            content = self.read_output(path)
            if text in content:
                return content
            if time.time() > deadline:
                raise AssertionError("no %r in the job's output: %r" % (text, content))
            time.sleep(0.1)

    def wait_line(self, prefix, timeout=60):
        """Wait for an output line starting with prefix; return the output."""
        deadline = time.time() + timeout
        while True:
            content = self.read_output()
            if any(line.startswith(prefix) for line in content.splitlines()):
                return content
            if time.time() > deadline:
                raise AssertionError("no line %r in the job's output: %r" % (prefix, content))
            time.sleep(0.1)

    def read_output(self, path=None):
        try:
            with open(path or self.output) as f:
                return f.read()
        except OSError:
            return ""

    def close(self):
        if self.job_id:
            subprocess.run(["scancel", self.job_id], stderr=subprocess.DEVNULL)
        self.sink.close()


def order(event):
    # SUBMITTED comes from the submitting process, the rest from the job's slm (seq)
    return (0 if event["status"] in ("SUBMITTED", "SUBMIT_FAILED") else 1, event["seq"])


@pytest.fixture
def submit(cluster):
    made = []

    def do(name, script, **kw):
        s = Submission(cluster, name, script, **kw)
        made.append(s)
        assert s.result.returncode == 0, s.result.stderr.decode()
        return s
    yield do
    for s in made:
        s.close()


CHILD_JOB = "#!/bin/bash\n%s %s \"$@\"\n" % (MAIN_PYTHON, CHILD)
# --signal=B:USR1 is for the batch script, which slm's child now is: bash without
# a trap would die of it, as it would without slm; this one hands it on to python
CHILD_EXEC_JOB = "#!/bin/bash\nexec %s %s \"$@\"\n" % (MAIN_PYTHON, CHILD)


# The time-limit job takes 60-90 s: it is submitted when the module starts and
# checked by the last test, so the other scenarios run meanwhile.
@pytest.fixture(scope="module")
def time_limited(cluster):
    s = Submission(cluster, "timelimit", CHILD_EXEC_JOB,
                   sbatch_args=["-t", "1", "--signal=B:USR1@50"], script_args=["--sleep", "600"])
    yield s
    s.close()


def test_complete(submit, cluster, time_limited):
    s = submit("complete", "#!/bin/bash\n#SBATCH -J e2e-complete\necho hello from $SLURM_JOB_ID\n")
    assert s.result.stdout.decode() == "Submitted batch job %s\n" % s.job_id
    s.wait("COMPLETED")
    assert s.statuses() == ["SUBMITTED", "RUNNING", "COMPLETED"]
    assert {e["job_id"] for e in s.sink.events} == {s.job_id}
    assert {e["job_name"] for e in s.sink.events} == {"e2e-complete"}
    running = s.events("RUNNING")[0]
    assert running["partition"] == "debug" and running["nodelist"]
    assert "hello from %s" % s.job_id in s.wait_output("hello")
    assert "slm:" not in s.read_output()   # slm is the batch process: no warning


def test_nonzero_exit(submit):
    s = submit("nonzero", "#!/bin/sh\necho failing\nexit 3\n")
    s.wait("FAILED")
    assert s.statuses() == ["SUBMITTED", "RUNNING", "FAILED"]
    failed = s.events("FAILED")[0]
    assert failed["exit_code"] == 3
    # the last lines of the job's -o file, read back by slm for the notice
    assert failed["output_tail"].endswith("failing")
    assert failed["max_rss_mb"] > 0 and failed["cpus"] >= 1


def test_suspend_resume_then_cancel(submit, cluster):
    s = submit("suspend", CHILD_JOB)
    s.wait("RUNNING")
    s.wait_output("ready")
    subprocess.check_call(["scontrol", "suspend", s.job_id])
    s.wait("PAUSED")
    subprocess.check_call(["scontrol", "resume", s.job_id])
    s.wait("RESUMED")
    subprocess.check_call(["scancel", s.job_id])
    s.wait("CANCELLED")
    assert s.statuses() == ["SUBMITTED", "RUNNING", "PAUSED", "RESUMED", "TERMINATING",
                            "CANCELLED"]
    assert s.events("TERMINATING")[0]["reason"] == "cancelled"
    assert "got SIGTERM" in s.wait_output("got SIGTERM")


def test_scancel(submit, cluster):
    s = submit("scancel", CHILD_JOB, script_args=["--grandchild"])
    s.wait("RUNNING")
    s.wait_output("grandchild ready")
    s.wait_line("ready")
    subprocess.check_call(["scancel", s.job_id])
    s.wait("CANCELLED")
    # scancel's SIGCONT prelude is not a resume
    assert s.statuses() == ["SUBMITTED", "RUNNING", "TERMINATING", "CANCELLED"]
    s.wait_output("grandchild got SIGTERM")
    assert "got SIGTERM" in s.wait_line("got SIGTERM")
    cancelled = s.events("CANCELLED")[0]
    # bash, the job's direct child here, dies of the SIGTERM itself
    assert cancelled.get("signal") == "SIGTERM" or cancelled.get("exit_code") == 100 + 15


def test_array(submit):
    s = submit("array", "#!/bin/bash\n[ \"$SLURM_ARRAY_TASK_ID\" != 2 ]\n",
               sbatch_args=["--array=1-3", "-o", "/dev/null"])
    s.sink.wait_for(lambda evs: len([e for e in evs if e["status"] in
                                     ("COMPLETED", "FAILED")]) == 3, timeout=90)
    ends = {e["job_id"]: e["status"] for e in s.sink.events
            if e["status"] in ("COMPLETED", "FAILED")}
    assert ends == {s.job_id + "_1": "COMPLETED", s.job_id + "_2": "FAILED",
                    s.job_id + "_3": "COMPLETED"}
    for e in s.events("RUNNING"):
        assert e["array_job_id"] == s.job_id
        assert e["job_id"] == "%s_%s" % (s.job_id, e["array_task_id"])
    submitted = s.events("SUBMITTED")[0]
    assert submitted["job_id"] == s.job_id and submitted["array"] == "1-3"


def test_sbatch_failure(cluster, tmp_path):
    s = Submission(cluster, "badpart", "#!/bin/sh\ntrue\n", sbatch_args=["-p", "nosuchpart"])
    try:
        assert s.result.returncode == 1
        assert b"invalid partition" in s.result.stderr
        assert s.statuses() == ["SUBMIT_FAILED"]
        assert s.events("SUBMIT_FAILED")[0]["exit_code"] == 1
    finally:
        s.close()


def test_bad_option_exit_code_passes_through(cluster):
    s = Submission(cluster, "badtime", "#!/bin/sh\ntrue\n", sbatch_args=["-t", "bogus"])
    try:
        assert s.result.returncode == 255
        assert s.statuses() == ["SUBMIT_FAILED"]
    finally:
        s.close()


def test_unmodified_bash_script_with_sbatch_lines(submit, cluster):
    s = submit("bashdirectives", "#!/bin/bash\n#SBATCH --job-name=from-directive\n"
               "#SBATCH --output=directive-%j.log\n#SBATCH -t 5\n"
               "echo \"name=$SLURM_JOB_NAME shell=$BASH_VERSION args=$*\"; pwd\n",
               script_args=["x", "y z"])
    s.wait("COMPLETED")
    # the command line's -o wins over the #SBATCH line, as with plain sbatch
    out = s.wait_output("name=")
    assert "name=from-directive" in out and "args=x y z" in out and "shell=5" in out
    assert s.dir in out
    info = subprocess.run(["scontrol", "show", "job", s.job_id], stdout=subprocess.PIPE
                          ).stdout.decode()
    assert "TimeLimit=00:05:00" in info


def test_unmodified_python_script_with_sbatch_lines(submit):
    script = ("#!%s\n#SBATCH -J py-directive\n#SBATCH -o pyjob-%%j.out\n"
              "import os, sys\nprint('python', sys.version_info[0], os.environ['SLURM_JOB_NAME'],"
              " sys.argv[1:], os.getcwd())\n" % MAIN_PYTHON)
    s = submit("pydirectives", script, script_args=["arg1"], output_option=False)
    s.wait("COMPLETED")
    path = os.path.join(s.dir, "pyjob-%s.out" % s.job_id)
    out = s.wait_output("python", path=path)
    assert "python 3 py-directive ['arg1'] %s" % s.dir in out
    assert {e["job_name"] for e in s.sink.events} == {"py-directive"}


def test_exec_line_in_an_existing_script(submit, cluster):
    """The README's way for scripts one keeps: `exec slm run -- ...` as the last line."""
    s = submit("execline", "#!/bin/bash\necho setup\nexec %s %s run -- %s %s\n"
               % (MAIN_PYTHON, SLM, MAIN_PYTHON, CHILD), slm_args=["--no-db"])
    # --no-db applies to the submission; the job's own slm reports as usual
    s.wait("RUNNING")
    s.wait_line("ready")
    subprocess.check_call(["scancel", s.job_id])
    s.wait("CANCELLED")
    assert "got SIGTERM" in s.wait_output("got SIGTERM")


def test_time_limit_with_warning_signal(time_limited):
    s = time_limited
    assert s.result.returncode == 0, s.result.stderr
    s.wait("TIMEOUT", timeout=180)
    statuses = s.statuses()
    assert statuses[:2] == ["SUBMITTED", "RUNNING"]
    assert statuses[-2:] == ["TERMINATING", "TIMEOUT"]
    assert s.events("TERMINATING")[0]["reason"] == "time_limit"
    assert [e["signal"] for e in s.events("SIGNALED")] == ["SIGUSR1"]
    assert "got SIGUSR1" in s.read_output()
    assert "got SIGTERM" in s.read_output()
    assert s.events("TIMEOUT")[0]["exit_code"] == 100 + 15


def test_array_rollup_through_the_service(cluster, tmp_path):
    """--array=1-5 with task 3 failing, notifications relayed by slm_api.py:
    one failure notice and one roll-up, nothing per successful task."""
    from test_relay import Hook, Service
    hook = Hook()
    svc = Service(str(tmp_path / "relay.db"), tmp_path)
    s = None
    try:
        s = Submission(cluster, "array-rollup",
                       "#!/bin/bash\n[ \"$SLURM_ARRAY_TASK_ID\" != 3 ]\n",
                       sbatch_args=["--array=1-5", "-o", "/dev/null"],
                       extra_env={"SLM_API_URL": svc.url, "SLM_WEBHOOK": hook.url,
                                  "SLM_WEBHOOK_VIA": "api"})
        assert s.result.returncode == 0, s.result.stderr
        s.sink.close()   # the job's slm talks to the service, which notifies the hook
        hook.wait(lambda: any(b.get("rollup") for b in hook.delivered), timeout=120)
        assert hook.quiet(1.0) == 0
        rollups = [b for b in hook.delivered if b.get("rollup")]
        assert len(rollups) == 1
        assert rollups[0]["job_id"] == s.job_id
        assert rollups[0]["tasks"] == {"COMPLETED": 4, "FAILED": 1}
        assert rollups[0]["failed_tasks"] == ["3"]
        others = sorted((b["job_id"], b["status"]) for b in hook.delivered if not b.get("rollup"))
        assert others == [(s.job_id + "_3", "FAILED")]
    finally:
        if s is not None and s.job_id:
            subprocess.run(["scancel", s.job_id], stderr=subprocess.DEVNULL)
        svc.stop()
        hook.close()
