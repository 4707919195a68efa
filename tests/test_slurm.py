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


# ---------------------------------------------------------------------------
# sbatch options newer than slm's table: never mistaken for the script
# ---------------------------------------------------------------------------

# 22.05's value-taking long options: `sbatch --OPT </dev/null` says "option '--OPT'
# requires an argument" (--power is gone in 24.11; --export-file is still there in 26.05)
OLD_VALUE_OPTIONS = frozenset("""
    --account --acctg-freq --array --batch --bb --bbf --begin --chdir --cluster-constraint
    --clusters --comment --constraint --container --core-spec --cores-per-socket --cpu-freq
    --cpus-per-gpu --cpus-per-task --deadline --delay-boot --dependency --distribution --error
    --exclude --export --export-file --extra-node-info --gid --gpu-bind --gpu-freq --gpus
    --gpus-per-node --gpus-per-socket --gpus-per-task --gres --gres-flags --hint --input
    --job-name --kill-on-invalid-dep --license --licenses --mail-type --mail-user --mcs-label
    --mem --mem-bind --mem-per-cpu --mem-per-gpu --mincpus --network --nodefile --nodelist
    --nodes --ntasks --ntasks-per-core --ntasks-per-gpu --ntasks-per-node --ntasks-per-socket
    --open-mode --output --partition --power --prefer --priority --profile --qos --reservation
    --signal --sockets-per-node --switches --thread-spec --threads-per-core --time --time-min
    --tmp --uid --wait-all-nodes --wckey --wrap""".split())
# the value-taking options added since, each with a value for this cluster (it accepts
# them all but --resources: "Invalid license specification", a refusal to compare too)
NEW_VALUE_OPTIONS = {
    "--tres-per-task": "cpu=1",             # 23.02
    "--extra": "x",                         # 23.11 (22.05 took it for --extra-node-info)
    "--segment": "1",                       # 24.05
    "--tres-bind": "gres/gpu:closest",      # 24.11
    "--container-id": "c1",                 # 24.11
    "--container-type": "oci",              # 26.05
    "--mem-update": "20@1",                 # 26.05
    "--resources": "flat:1",                # 26.05
}


def sbatch_says(option):
    """What this release's sbatch makes of OPTION alone: "value", "unknown" or "other"
    (a flag, or an optional value): getopt answers before anything is submitted, and
    an empty stdin is an empty script, refused."""
    r = subprocess.run(["sbatch", option], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
    first = (r.stdout.decode(errors="replace").splitlines() or [""])[0]
    if "requires an argument" in first:
        return "value"
    return "unknown" if "unrecognized option" in first else "other"


def test_the_table_of_newer_value_options_is_complete(cluster):
    """Every value-taking option this release's sbatch has (the names in its man page,
    --help and --usage, asked one by one) is 22.05's or in NEW_VALUE_OPTIONS, so that
    the next test tries each new one."""
    texts = []
    for cmd in (["sh", "-c", "zcat /usr/share/man/man1/sbatch.1.gz 2>/dev/null"],
                ["sbatch", "--help"], ["sbatch", "--usage"]):
        texts.append(subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
                                    ).stdout.decode(errors="replace").replace("\\-", "-"))
    names = set(re.findall(r"--[a-z][a-z0-9]*(?:-[a-z0-9]+)*", "\n".join(texts)))
    assert "--job-name" in names and "--wrap" in names, sorted(names)
    taking = {n for n in names - {"--help", "--usage", "--version"} if sbatch_says(n) == "value"}
    assert taking - OLD_VALUE_OPTIONS - set(NEW_VALUE_OPTIONS) == set(), \
        "Slurm %s's sbatch has value-taking options the tests do not try" % cluster.version


@pytest.mark.parametrize("form", ["separate", "joined"])
@pytest.mark.parametrize("option", sorted(NEW_VALUE_OPTIONS))
def test_submit_with_a_newer_value_option_is_monitored_and_named_as_sbatch_names_it(
        cluster, option, form):
    """`slm submit OPT VALUE job a` (and OPT=VALUE) must hand sbatch the same words, and
    run the job monitored and named as plain sbatch runs and names it: an option slm's
    table lacks must not make its value the script."""
    if sbatch_says(option) != "value":
        pytest.skip("Slurm %s's sbatch has no %s" % (cluster.version, option))
    value = NEW_VALUE_OPTIONS[option]
    words = [option, value] if form == "separate" else ["%s=%s" % (option, value)]
    script = "#!/bin/bash\necho \"name=$SLURM_JOB_NAME args=$*\"\n"
    name = "opt%s-%s" % (option, form)
    plain_dir = os.path.join(cluster.workdir, name + "-plain")
    os.makedirs(plain_dir)
    with open(os.path.join(plain_dir, "job"), "w") as f:
        f.write(script)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_"))}
    plain = subprocess.run(["sbatch", "-o", os.path.join(plain_dir, "out.txt")] + words +
                           ["job", "a"], cwd=plain_dir, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    s = Submission(cluster, name, script, sbatch_args=words, script_args=["a"])
    try:
        m = re.search(rb"Submitted batch job (\d+)", plain.stdout)
        assert s.result.returncode == plain.returncode, s.result.stderr
        if not m:    # refused: the same words, so the same refusal (and slm's own warning
            # when the checkout under test is in /tmp, as CI's clean clone is)
            assert re.sub(rb"(?m)^slm: warning: \S+ is in a node-local directory.*\n", b"",
                          s.result.stderr) == plain.stderr
            s.wait("SUBMIT_FAILED", timeout=10)
            assert s.statuses() == ["SUBMIT_FAILED"]
            assert s.events("SUBMIT_FAILED")[0]["job_name"] == "job"
            return
        assert s.job_id, s.result.stdout
        shown = subprocess.run(["scontrol", "show", "job", m.group(1).decode()],
                               stdout=subprocess.PIPE).stdout.decode()
        plain_name = re.search(r"JobName=(\S+)", shown).group(1)
        s.wait("SUBMITTED", timeout=10)
        assert s.events("SUBMITTED")[0]["job_name"] == plain_name
        s.wait("COMPLETED")
        assert s.statuses() == ["SUBMITTED", "RUNNING", "COMPLETED"]
        assert {e["job_name"] for e in s.sink.events} == {plain_name}
        plain_out = s.wait_output("name=", path=os.path.join(plain_dir, "out.txt"))
        assert s.wait_output("name=") == plain_out == "name=%s args=a\n" % plain_name
    finally:
        s.close()
        if plain.returncode == 0:
            subprocess.run(["scancel", plain.stdout.split()[-1].decode()],
                           stderr=subprocess.DEVNULL)


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
