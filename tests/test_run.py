"""`slm run`: the wrapper's table, row by row, under every CPython 3.6..3.13 found.

Each test runs the real slm.py in a subprocess against a local HTTP sink (the
stand-in for the service) and a test child (tests/helpers/child.py) that
reports the signals it gets on stdout, so every step is awaited, not slept.
"""
import os
import signal
import subprocess
import time

import pytest

import slm

from conftest import CHILD, MAIN_PYTHON, SLM, Job, run_slm, spool_files
from scaffold import await_true

REQUIRED_FIELDS = ("schema", "event_id", "job_id", "status", "time", "seq", "host", "user",
                   "job_name", "cwd", "command", "slm_version")


def statuses(sink):
    return [e["status"] for e in sink.events]


def final(sink):
    return sink.events[-1]


@pytest.fixture
def api(env, sink):
    env["SLM_API_URL"] = sink.url
    return sink


# ---------------------------------------------------------------------------
# The table, under every interpreter
# ---------------------------------------------------------------------------


def test_completed(py, env, api):
    r = run_slm(py, ["run", "--", py, "-c", "print('hello')"], env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"hello\n"
    assert statuses(api) == ["RUNNING", "COMPLETED"]
    for event in api.events:
        for field in REQUIRED_FIELDS:
            assert field in event, (field, event)
        assert event["schema"] == "slm.event/1"
        assert event["time"].endswith("Z")
        assert event["command"] == [py, "-c", "print('hello')"]
    assert final(api)["exit_code"] == 0
    assert [e["seq"] for e in api.events] == [1, 2]
    assert len({e["event_id"] for e in api.events}) == 2
    assert api.events[0]["job_id"].startswith("local-")
    assert spool_files(env) == []


def test_failed_exit_code(py, env, api):
    r = run_slm(py, ["run", "--", "sh", "-c", "exit 3"], env)
    assert r.returncode == 3
    assert statuses(api) == ["RUNNING", "FAILED"]
    assert final(api)["exit_code"] == 3


def test_killed_by_signal(py, env, api):
    """slm dies of the signal that killed the command, after reporting it."""
    r = run_slm(py, ["run", "--", "sh", "-c", "kill -KILL $$"], env)
    assert r.returncode == -signal.SIGKILL
    assert statuses(api) == ["RUNNING", "FAILED"]
    assert final(api)["signal"] == "SIGKILL"


@pytest.mark.parametrize("cmd,code", [(["no-such-command-slm"], 127), (["/etc/passwd"], 126)])
def test_cannot_execute(py, env, api, cmd, code):
    r = run_slm(py, ["run", "--"] + cmd, env)
    assert r.returncode == code
    assert statuses(api) == ["FAILED"]
    assert final(api)["exit_code"] == code
    assert final(api)["message"]
    assert b"Traceback" not in r.stderr
    assert r.stderr.decode().startswith("slm: ")


def test_pause_resume(py, env, api):
    job = Job(py, env, ["--sleep", "5"])
    job.expect("ready")
    api.wait_status("RUNNING")
    job.signal(signal.SIGTSTP)
    api.wait_status("PAUSED")
    job.signal(signal.SIGCONT)
    job.expect("got SIGCONT")
    api.wait_status("RESUMED")
    job.signal(signal.SIGTERM)
    assert job.finish() == 100 + signal.SIGTERM
    assert statuses(api) == ["RUNNING", "PAUSED", "RESUMED", "TERMINATING", "CANCELLED"]


def test_cancel_prelude_cont_is_not_a_resume(py, env, api):
    """scancel sends SIGCONT then SIGTERM: no RESUMED, CANCELLED with the child's code."""
    job = Job(py, env)
    job.expect("ready")
    api.wait_status("RUNNING")
    job.signal(signal.SIGCONT)
    job.expect("got SIGCONT")      # forwarded all the same
    job.signal(signal.SIGTERM)
    job.expect("got SIGTERM")
    assert job.finish() == 100 + signal.SIGTERM
    assert statuses(api) == ["RUNNING", "TERMINATING", "CANCELLED"]
    assert api.events[1]["reason"] == "cancelled"
    assert final(api)["exit_code"] == 100 + signal.SIGTERM


def test_term_reaches_grandchild_once(py, env, api):
    job = Job(py, env, ["--grandchild"])
    job.expect("grandchild ready")
    job.expect("ready")
    job.signal(signal.SIGTERM)
    assert job.finish() == 100 + signal.SIGTERM
    out = job.lines
    assert out.count("got SIGTERM") == 1, out
    assert out.count("grandchild got SIGTERM") == 1, out


def test_usr1_is_signaled_and_reaches_the_child_only(py, env, api):
    """As Slurm delivers --signal=B:USR1 to a plain batch script: the script
    gets it, its children do not (TERM still reaches the whole tree)."""
    job = Job(py, env, ["--grandchild"])
    job.expect("grandchild ready")
    job.expect("ready")
    job.signal(signal.SIGUSR1)
    job.expect("got SIGUSR1")
    api.wait_status("SIGNALED")
    job.signal(signal.SIGTERM)
    job.expect("grandchild got SIGTERM")   # a USR1 sent to it would have come first
    job.finish()
    assert "grandchild got SIGUSR1" not in job.lines
    signaled = [e for e in api.events if e["status"] == "SIGNALED"]
    assert [e["signal"] for e in signaled] == ["SIGUSR1"]


@pytest.mark.parametrize("sig", [signal.SIGALRM, signal.SIGXCPU, signal.SIGURG])
def test_other_signals_reach_the_child_and_do_not_kill_slm(env, api, sig):
    """Slurm may send the batch process any signal (`scancel -b -s ALRM`):
    the script gets it, as without slm; slm does not die of it."""
    name = signal.Signals(sig).name
    code = ("import signal, sys, time\n"
            "signal.signal(%d, lambda s, f: (print('got', s, flush=True), sys.exit(3)))\n"
            "print('ready', flush=True)\ntime.sleep(30)\n" % sig)
    job = Job(MAIN_PYTHON, env, command=[MAIN_PYTHON, "-c", code])
    job.expect("ready")
    job.signal(sig)
    job.expect("got %d" % sig)
    assert job.finish() == 3, name
    assert statuses(api) == ["RUNNING", "FAILED"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP])
def test_int_and_hup_cancel(py, env, api, sig):
    job = Job(py, env)
    job.expect("ready")
    job.signal(sig)
    assert job.finish() == 100 + sig
    assert job.lines.count("got %s" % signal.Signals(sig).name) == 1
    assert statuses(api) == ["RUNNING", "TERMINATING", "CANCELLED"]


def test_child_ignoring_term_ends_cancelled_with_its_code(py, env, api):
    job = Job(py, env, ["--ignore-term", "--sleep", "1.5", "--exit", "0"])
    job.expect("ready")
    job.signal(signal.SIGTERM)
    job.expect("got SIGTERM")
    assert job.finish() == 0
    assert statuses(api) == ["RUNNING", "TERMINATING", "CANCELLED"]
    assert final(api)["exit_code"] == 0


def test_term_while_paused_wakes_the_child(py, env, api):
    job = Job(py, env)
    job.expect("ready")
    job.signal(signal.SIGTSTP)
    api.wait_status("PAUSED")
    job.signal(signal.SIGTERM)
    assert job.finish() == 100 + signal.SIGTERM
    assert statuses(api) == ["RUNNING", "PAUSED", "TERMINATING", "CANCELLED"]


def fake_slurmstepd(tmp_path, env, proctrack):
    """A sender named slurmstepd (what slm checks), and a slurm.conf naming proctrack."""
    conf = tmp_path / "slurm.conf"
    conf.write_text("ClusterName=fake\n# ProctrackType=proctrack/pgid\n"
                    "ProctrackType=proctrack/%s  # the plugin\n" % proctrack)
    stepd = tmp_path / "slurmstepd"
    stepd.write_text("#!%s\nimport os, sys, time\npids = [int(p) for p in sys.argv[1].split(',')]\n"
                     "for name in sys.argv[2:]:\n    for pid in pids:\n"
                     "        os.kill(pid, getattr(__import__('signal'), 'SIG' + name))\n"
                     "    time.sleep(0.05)\n" % MAIN_PYTHON)
    stepd.chmod(0o755)
    env.update(SLURM_CONF=str(conf), SLURM_JOB_ID="4242")
    return str(stepd)


def test_linuxproc_cancel_reaches_the_child_once(env, api, tmp_path):
    """Under proctrack/linuxproc slurmstepd sends a cancel's CONT and TERM to
    every process itself: slm must not send the child a second copy."""
    stepd = fake_slurmstepd(tmp_path, env, "linuxproc")
    job = Job(MAIN_PYTHON, env, ["--grandchild"])
    grandchild = int(job.expect("grandchild ready").split()[2])
    child = int(job.expect("ready").split()[1])
    everyone = "%d,%d,%d" % (job.proc.pid, child, grandchild)
    subprocess.check_call([stepd, everyone, "CONT", "TERM"])
    assert job.finish() == 100 + signal.SIGTERM
    assert job.lines.count("got SIGTERM") == 1, job.lines
    # the grandchild inherited the child's CONT handler: one line each, a copy from slm is a third
    assert job.lines.count("got SIGCONT") == 2, job.lines
    assert job.lines.count("grandchild got SIGTERM") == 1, job.lines
    assert statuses(api) == ["RUNNING", "TERMINATING", "CANCELLED"]


def test_linuxproc_batch_only_signals_are_handed_on(env, api, tmp_path):
    """`scancel -b --signal=USR1` / `--signal=B:TERM@T` reach the batch process
    only, under every plugin: slm hands them on (USR1 to the child alone)."""
    stepd = fake_slurmstepd(tmp_path, env, "linuxproc")
    job = Job(MAIN_PYTHON, env, ["--grandchild"])
    job.expect("grandchild ready")
    job.expect("ready")
    subprocess.check_call([stepd, str(job.proc.pid), "USR1"])
    job.expect("got SIGUSR1")
    subprocess.check_call([stepd, str(job.proc.pid), "TERM"])
    job.expect("grandchild got SIGTERM")
    assert job.finish() == 100 + signal.SIGTERM
    assert job.lines.count("got SIGTERM") == 1
    assert "grandchild got SIGUSR1" not in job.lines


def test_cgroup_cancel_is_handed_on(env, api, tmp_path):
    """proctrack/cgroup signals the batch process alone: slm hands on the CONT
    (to its child) and the TERM (to the whole tree)."""
    stepd = fake_slurmstepd(tmp_path, env, "cgroup")
    job = Job(MAIN_PYTHON, env, ["--grandchild"])
    job.expect("grandchild ready")
    job.expect("ready")
    subprocess.check_call([stepd, str(job.proc.pid), "CONT", "TERM"])
    job.expect("grandchild got SIGTERM")
    assert job.finish() == 100 + signal.SIGTERM
    assert job.lines.count("got SIGTERM") == 1 and job.lines.count("got SIGCONT") == 1


def test_proctrack_from_slurm_conf_includes(tmp_path):
    import slm
    (tmp_path / "extra.conf").write_text("ProctrackType = proctrack/LinuxProc\n")
    (tmp_path / "slurm.conf").write_text("ClusterName=x\nInclude extra.conf\n")
    assert slm.slurm_conf_value(str(tmp_path / "slurm.conf"), "proctracktype") == \
        "proctrack/LinuxProc"
    assert slm.slurm_conf_value(str(tmp_path / "none.conf"), "ProctrackType") is None


@pytest.mark.parametrize("proctrack,cgroup_conf,says", [
    ("proctrack/linuxproc", None, "linuxproc"),
    ("proctrack/cgroup", None, "cgroup"),
    ("proctrack/cgroup", "ConstrainRAMSpace=yes\n", "cgroup"),
    # 23.11+: cgroup then signals every process, as linuxproc does; slm must not
    # send the job a second copy
    ("proctrack/cgroup", "SignalChildrenProcesses=Yes\n", "linuxproc"),
])
def test_who_slurm_signals_is_read_from_slurm_conf_and_cgroup_conf(
        tmp_path, monkeypatch, proctrack, cgroup_conf, says):
    import slm
    (tmp_path / "slurm.conf").write_text("ProctrackType=%s\n" % proctrack)
    if cgroup_conf:
        (tmp_path / "cgroup.conf").write_text(cgroup_conf)
    monkeypatch.setattr(slm, "_proctrack", [])
    assert slm.slurm_proctrack({"SLURM_CONF": str(tmp_path / "slurm.conf")}) == says


def test_the_child_gets_the_environment_slm_was_given(env):
    """Not Python's changes to it: a C locale makes Python 3.7+ set LC_CTYPE."""
    clean = {k: v for k, v in env.items() if not k.startswith(("LC_", "LANG"))}
    clean["WEIRD"] = "x"
    script = "exec env -u LANG LC_ALL= %s %s -q run -- env" % (MAIN_PYTHON, SLM)
    r = subprocess.run(["sh", "-c", script], env=clean, stdout=subprocess.PIPE, timeout=60)
    child = dict(line.split("=", 1) for line in r.stdout.decode().splitlines())
    assert "LC_CTYPE" not in child
    assert child["LC_ALL"] == ""
    assert child["SLM_JOB_ID"].startswith("local-") and child["SLM_ACTIVE"] == ""
    parent = dict(clean, LC_ALL="")
    extra = set(child) - set(parent)
    assert extra <= {"SLM_JOB_ID", "SLM_ACTIVE", "PWD", "SHLVL", "_"}, extra


def test_undecodable_environment_bytes_reach_the_child(env):
    env_bytes = {os.fsencode(k): os.fsencode(v) for k, v in env.items()}
    env_bytes[b"RAW"] = b"\xff\xfe"
    r = subprocess.run([MAIN_PYTHON, SLM, "-q", "run", "--", "sh", "-c", 'printf %s "$RAW"'],
                       env=env_bytes, stdout=subprocess.PIPE, timeout=60)
    assert r.stdout == b"\xff\xfe"


def test_task_pid_is_the_commands_own(env):
    """SLURM_TASK_PID names the batch process: when slm is it, the command is it now."""
    script = "SLURM_TASK_PID=$$ exec %s %s -q run -- sh -c 'echo $SLURM_TASK_PID $$'" % (
        MAIN_PYTHON, SLM)
    out = subprocess.run(["sh", "-c", script], env=env, stdout=subprocess.PIPE,
                         timeout=60).stdout.split()
    assert out[0] == out[1]


# ---------------------------------------------------------------------------
# Exit codes and passthrough (main interpreter: these are about the OS, not Python)
# ---------------------------------------------------------------------------


def test_every_exit_code_passes_through(env):
    env["SLM_SPOOL_DIR"] = os.devnull + "-unused"
    script = ("for c in $(seq 0 255); do %s %s -q run -- sh -c \"exit $c\"; "
              "echo \"$c $?\"; done" % (MAIN_PYTHON, SLM))
    out = subprocess.run(["sh", "-c", script], env=env, stdout=subprocess.PIPE,
                         timeout=300).stdout.decode().split("\n")
    pairs = [line.split() for line in out if line]
    assert len(pairs) == 256
    assert all(a == b for a, b in pairs), [p for p in pairs if p[0] != p[1]]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGSEGV, signal.SIGUSR2, signal.SIGINT,
                                 signal.SIGQUIT, signal.SIGABRT])
def test_signal_deaths_are_the_same_signal(env, sig, tmp_path):
    """A shell (or sacct) sees the wait status it would see without slm; slm
    leaves no core file of its own for a core-dumping signal."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    script = "ulimit -c 0; %s %s -q run -- sh -c 'kill -%d $$'; echo $?" % (MAIN_PYTHON, SLM, sig)
    plain = "ulimit -c 0; sh -c 'kill -%d $$'; echo $?" % sig
    with_slm = subprocess.run(["sh", "-c", script], env=env, cwd=str(cwd),
                              stdout=subprocess.PIPE, timeout=60).stdout
    without = subprocess.run(["sh", "-c", plain], env=env, cwd=str(cwd),
                             stdout=subprocess.PIPE, timeout=60).stdout
    assert with_slm == without == b"%d\n" % (128 + sig)
    r = run_slm(MAIN_PYTHON, ["-q", "run", "--", "sh", "-c", "kill -%d $$" % sig], env,
                cwd=str(cwd))
    assert r.returncode == -sig
    assert os.listdir(str(cwd)) == []   # no core file


def test_output_passes_through_byte_exact(py, env, api):
    payload = bytes(range(256)) * 64 + b"\r\n\x00no newline at end"
    code = ("import sys; sys.stdout.buffer.write(%r); sys.stderr.buffer.write(%r[::-1])"
            % (payload, payload))
    r = run_slm(py, ["-q", "run", "--", py, "-c", code], env)
    assert r.returncode == 0
    assert r.stdout == payload
    assert r.stderr == payload[::-1]


def test_stdin_passes_through(env):
    r = run_slm(MAIN_PYTHON, ["-q", "run", "--", "cat"], env, input=b"abc\x00def")
    assert r.stdout == b"abc\x00def"


def test_quiet_prints_nothing_without_targets(env):
    r = run_slm(MAIN_PYTHON, ["-q", "run", "--", "true"], env)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")


def test_no_target_prints_events_on_stderr(env):
    r = run_slm(MAIN_PYTHON, ["run", "--", "true"], env)
    lines = r.stderr.decode().splitlines()
    assert [line.split()[2] for line in lines] == ["RUNNING", "COMPLETED"]
    assert all(line.startswith("slm: [local-") for line in lines)


# ---------------------------------------------------------------------------
# Delivery: spool, flush, bounded delays, webhooks, tokens
# ---------------------------------------------------------------------------


def test_service_down_spools_then_flush_delivers_once(py, env, refused_url, sink):
    env["SLM_API_URL"] = refused_url
    r = run_slm(py, ["run", "--", "true"], env)
    assert r.returncode == 0
    assert len(spool_files(env)) == 2
    assert b"Traceback" not in r.stderr
    assert r.stderr.count(b"\n") <= 3, r.stderr     # one line per problem, not per retry
    env["SLM_API_URL"] = sink.url
    r = run_slm(py, ["flush"], env)
    assert r.returncode == 0, r.stderr
    assert statuses(sink) == ["RUNNING", "COMPLETED"]
    assert spool_files(env) == []
    r = run_slm(py, ["flush"], env)
    assert r.returncode == 0
    assert len(sink.events) == 2


def test_two_concurrent_flushers_deliver_once(env, refused_url, sink):
    env["SLM_API_URL"] = refused_url
    for _ in range(20):
        run_slm(MAIN_PYTHON, ["-q", "run", "--", "true"], env)
    assert len(spool_files(env)) == 40
    env["SLM_API_URL"] = sink.url
    procs = [subprocess.Popen([MAIN_PYTHON, SLM, "flush"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for _ in range(2)]
    for p in procs:
        p.communicate(timeout=60)
    ids = [e["event_id"] for e in sink.events]
    assert len(ids) == 40
    assert len(set(ids)) == 40
    assert spool_files(env) == []


def test_later_command_delivers_the_backlog(env, refused_url, sink):
    env["SLM_API_URL"] = refused_url
    run_slm(MAIN_PYTHON, ["-q", "run", "--", "true"], env)
    env["SLM_API_URL"] = sink.url
    run_slm(MAIN_PYTHON, ["-q", "run", "--", "true"], env)
    assert len(sink.events) == 4
    assert len({e["job_id"] for e in sink.events}) == 2
    assert spool_files(env) == []


@pytest.mark.parametrize("kind", ["blackhole", "mute_server"])
def test_unanswering_service_costs_at_most_one_timeout(py, env, request, kind):
    env["SLM_API_URL"] = request.getfixturevalue(kind)
    timeout = 3.0     # wide enough to tell "before a delivery attempt" on a loaded box
    env["SLM_TIMEOUT"] = str(timeout)
    started = time.time()
    r = run_slm(py, ["run", "--", py, "-c", "import time; print(repr(time.time()))"], env)
    took = time.time() - started
    assert r.returncode == 0
    child_started = float(r.stdout)
    # the child starts first, not after a delivery attempt (which would cost a timeout)
    assert child_started - started < timeout
    # bounded: one SLM_TIMEOUT at exit plus interpreter start-up, never a retry ladder
    assert took < timeout + 2.5, took
    assert len(spool_files(env)) == 2
    assert b"timed out" in r.stderr or b"no answer within" in r.stderr


def test_permanent_refusal_goes_to_dead_letters(env, sink):
    env["SLM_API_URL"] = sink.url
    sink.statuses = [400] * 10
    r = run_slm(MAIN_PYTHON, ["run", "--", "true"], env)
    assert r.returncode == 0
    assert spool_files(env) == []
    assert len(spool_files(env, "dead")) >= 2
    assert b"HTTP 400" in r.stderr


def test_temporary_refusal_stays_pending(env, sink):
    env["SLM_API_URL"] = sink.url
    sink.statuses = [503] * 50
    r = run_slm(MAIN_PYTHON, ["run", "--", "true"], env)
    assert r.returncode == 0
    assert len(spool_files(env)) == 2
    sink.statuses = []
    assert run_slm(MAIN_PYTHON, ["-q", "flush"], env).returncode == 0
    assert statuses(sink) == ["RUNNING", "COMPLETED"]


def test_token_is_sent_and_never_printed(env, sink):
    env["SLM_API_URL"] = sink.url
    env["SLM_API_TOKEN"] = "s3cret-token-value"
    sink.statuses = [401]
    r = run_slm(MAIN_PYTHON, ["-v", "run", "--", "true"], env)
    auth = [req[1].get("Authorization") for req in sink.requests]
    assert "Bearer s3cret-token-value" in auth
    assert b"s3cret" not in r.stderr + r.stdout


def test_webhook_gets_each_event_and_url_secret_stays_hidden(env, sink):
    env["SLM_WEBHOOK"] = sink.url + "/hook/T000/B000/SECRETPART"
    r = run_slm(MAIN_PYTHON, ["-v", "run", "--", "true"], env)
    assert r.returncode == 0
    assert statuses(sink) == ["RUNNING", "COMPLETED"]
    assert all(req[0] == "/hook/T000/B000/SECRETPART" for req in sink.requests)
    assert b"SECRETPART" not in r.stderr


def test_webhook_and_service_both_get_events(env, sink):
    from conftest import Sink
    hook = Sink()
    try:
        env["SLM_API_URL"] = sink.url
        env["SLM_WEBHOOK"] = hook.url
        run_slm(MAIN_PYTHON, ["run", "--", "true"], env)
        assert statuses(sink) == statuses(hook) == ["RUNNING", "COMPLETED"]
    finally:
        hook.close()


def test_no_db_skips_the_service(env, sink):
    env["SLM_API_URL"] = sink.url
    r = run_slm(MAIN_PYTHON, ["--no-db", "run", "--", "true"], env)
    assert r.returncode == 0
    assert sink.events == []
    assert spool_files(env) == []


def test_paused_is_on_disk_before_the_freeze(env, blackhole):
    """Suspend gives 2 s before SIGSTOP: PAUSED must be journalled by then."""
    env["SLM_API_URL"] = blackhole
    job = Job(MAIN_PYTHON, env)
    job.expect("ready")
    await_true(lambda: spool_files(env) + spool_files(env, "work"), 10,
               "the job's RUNNING journalled")

    def journalled():
        texts = []
        for sub in ("pending", "work"):
            for name in spool_files(env, sub):
                try:
                    with open(os.path.join(env["SLM_SPOOL_DIR"], sub, name)) as f:
                        texts.append(f.read())
                except OSError:
                    pass    # moved between pending and work meanwhile
        return any('"PAUSED"' in t for t in texts)
    job.signal(signal.SIGTSTP)
    await_true(journalled, 2.0, lambda: "PAUSED journalled within the 2 s before a freeze "
               "(spool: %s)" % (spool_files(env) + spool_files(env, "work")), interval=0.01)
    job.signal(signal.SIGCONT)
    job.signal(signal.SIGTERM)
    job.finish()


# ---------------------------------------------------------------------------
# Slurm identity, nesting, multi-task steps (environment only; real Slurm elsewhere)
# ---------------------------------------------------------------------------


def slurm_env(env, **extra):
    env.update({"SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "train", "SLURM_JOB_PARTITION": "gpu",
                "SLURM_JOB_NODELIST": "node[1-2]", "SLURM_CLUSTER_NAME": "c1"})
    env.update(extra)
    return env


def test_slurm_identity(py, env, api):
    slurm_env(env)
    run_slm(py, ["run", "--", "true"], env)
    e = api.events[0]
    assert (e["job_id"], e["job_name"], e["partition"], e["nodelist"]) == \
        ("4242", "train", "gpu", "node[1-2]")


def test_array_identity(env, api):
    slurm_env(env, SLURM_ARRAY_JOB_ID="4240", SLURM_ARRAY_TASK_ID="2")
    run_slm(MAIN_PYTHON, ["run", "--", "true"], env)
    e = api.events[0]
    assert (e["job_id"], e["slurm_job_id"], e["array_job_id"], e["array_task_id"]) == \
        ("4240_2", "4242", "4240", "2")


def test_only_task_zero_reports(env, api):
    slurm_env(env, SLURM_PROCID="1")
    r = run_slm(MAIN_PYTHON, ["run", "--", "sh", "-c", "echo task; exit 4"], env)
    assert (r.returncode, r.stdout) == (4, b"task\n")
    assert api.requests == []


def test_nested_run_is_transparent(env, api):
    slurm_env(env)
    inner = "%s %s run -- sh -c 'echo inner; exit 5'" % (MAIN_PYTHON, SLM)
    r = run_slm(MAIN_PYTHON, ["run", "--", "sh", "-c", inner], env)
    assert (r.returncode, r.stdout) == (5, b"inner\n")
    assert statuses(api) == ["RUNNING", "FAILED"]


def test_warns_when_not_the_batch_process(env, api):
    # slm's parent is the shell whose pid is SLURM_TASK_PID: bash did not exec it
    script = "SLURM_TASK_PID=$$ %s %s run -- true; true" % (MAIN_PYTHON, SLM)
    r = subprocess.run(["sh", "-c", script], env=slurm_env(env), stderr=subprocess.PIPE,
                       timeout=60)
    warnings = [line for line in r.stderr.decode().splitlines() if "exec" in line]
    assert len(warnings) == 1, r.stderr
    assert warnings[0].startswith("slm: ")


def test_time_limit_reason_from_squeue(env, api, tmp_path):
    """A SIGTERM within minutes of squeue's end time is the time limit."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    squeue = bin_dir / "squeue"
    start, end = (time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() + d))
                  for d in (-30, 30))
    asked = tmp_path / "asked"
    # -o '%S %e'; then its pid, to see slm reap it once the answer is read
    squeue.write_text("#!/bin/sh\necho %s %s\necho $$ > %s\n" % (start, end, asked))
    squeue.chmod(0o755)
    env["PATH"] = "%s:%s" % (bin_dir, env["PATH"])
    slurm_env(env)
    job = Job(MAIN_PYTHON, env)
    job.expect("ready")
    api.wait_status("RUNNING")
    # the squeue lookup runs in the background: await its answer read (squeue
    # reaped: slm's communicate() returned), then what slm does with two words
    await_true(lambda: asked.exists() and asked.read_text().strip(), 10, "slm to ask squeue")
    pid = int(asked.read_text())
    await_true(lambda: not os.path.exists("/proc/%d" % pid), 10, "slm to read squeue's answer")
    job.signal(signal.SIGTERM)
    job.finish()
    assert statuses(api) == ["RUNNING", "TERMINATING", "TIMEOUT"]
    assert api.events[1]["reason"] == "time_limit"


def test_srun_steps_figures_are_awaited_until_slurms_accounting_has_their_end(tmp_path,
                                                                              monkeypatch):
    """A multi-node job's srun steps have ended when its script does, but slurmdbd may
    not have heard yet (sacct still shows the step RUNNING, without TotalCPU or MaxRSS):
    the wrapper asks again, within its 5 s, rather than report the batch node alone."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    (bin_dir / "sacct").write_text(
        "#!/bin/sh\necho x >> %s\n"
        "echo '11|RUNNING||2|'\necho '11.batch|RUNNING||1|'\n"
        "if [ $(wc -l < %s) -lt 3 ]; then echo '11.0|RUNNING||2|'; else\n"
        "echo '11.0|COMPLETED|00:06.291|2|167500K'; fi\n" % (calls, calls))
    (bin_dir / "sacct").chmod(0o755)
    monkeypatch.setenv("PATH", "%s:%s" % (bin_dir, os.environ["PATH"]))
    got = slm.job_steps_usage("11", 5.0)
    assert calls.read_text().count("x") == 3
    assert got == {"cpu_time": 6.291, "max_rss_mb": pytest.approx(163.6, abs=0.05),
                   "cpus": 2}
    # a step Slurm never closes (slurmdbd down): what there is, within the bound
    (bin_dir / "sacct").write_text("#!/bin/sh\necho '12|RUNNING||4|'\n"
                                   "echo '12.0|RUNNING|00:01.000|4|'\n")
    started = time.time()
    assert slm.job_steps_usage("12", 1.0) == {"cpu_time": 1.0, "max_rss_mb": 0.0, "cpus": 4}
    assert time.time() - started < 3.0


# ---------------------------------------------------------------------------
# Interactive use: a real terminal
# ---------------------------------------------------------------------------


def run_in_pty(env, argv, actions):
    """Run argv on a new pty; actions(write, read_until) drives it. Returns (code, output)."""
    import pty
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(argv[0], argv, env)
    buf = []

    def read_until(text, timeout=15):
        import select

        def shown():
            while select.select([fd], [], [], 0)[0]:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise AssertionError("terminal closed before %r: %r" % (text, b"".join(buf)))
                buf.append(chunk)
            return text in b"".join(buf).decode(errors="replace")
        await_true(shown, timeout, lambda: "%r on the terminal (got %r)" % (text, b"".join(buf)),
                   interval=0.01)

    try:
        actions(lambda b: os.write(fd, b), read_until)
        while True:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf.append(chunk)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") \
        else (status >> 8), b"".join(buf).decode(errors="replace")


def test_ctrl_c_in_a_terminal_interrupts_once(env, api):
    def actions(write, read_until):
        read_until("ready")
        api.wait_status("RUNNING")
        write(b"\x03")
        read_until("got SIGINT")
    code, out = run_in_pty(env, [MAIN_PYTHON, SLM, "run", "--", MAIN_PYTHON, CHILD], actions)
    assert code == 100 + signal.SIGINT
    assert out.count("got SIGINT") == 1, out
    assert statuses(api) == ["RUNNING", "TERMINATING", "CANCELLED"]
    assert api.events[1]["reason"] == "interrupted"


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    [], ["bogus"], ["run"], ["run", "--"], ["--nope", "run", "--", "true"],
    ["flush", "--max-time", "soon"], ["run", "--name"],
])
def test_bad_usage_is_one_line_exit_2(py, env, args):
    r = run_slm(py, args, env)
    assert r.returncode == 2, (args, r.stderr)
    lines = r.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("slm: "), lines
    assert r.stdout == b""


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["submit", "--help"],
                                  ["flush", "--help"]])
def test_help(env, args):
    r = run_slm(MAIN_PYTHON, args, env)
    assert r.returncode == 0
    assert b"usage:" in r.stdout
    if args[0] != "--help":
        assert b"examples:" in r.stdout


def test_version(py, env):
    r = run_slm(py, ["--version"], env)
    assert r.returncode == 0
    assert r.stdout.decode().startswith("slm ")


def test_malformed_service_url_keeps_events_for_later(env, sink):
    """A typo in SLM_API_URL must not cost the job anything, nor lose its events."""
    env["SLM_API_URL"] = "ftp://nowhere"
    r = run_slm(MAIN_PYTHON, ["run", "--", "true"], env)
    assert r.returncode == 0
    problems = [line for line in r.stderr.decode().splitlines() if "SLM_API_URL" in line]
    assert len(problems) == 1 and problems[0].startswith("slm: "), r.stderr
    assert len(spool_files(env)) == 2
    r = run_slm(MAIN_PYTHON, ["flush"], env)
    assert r.returncode == 1 and b"SLM_API_URL" in r.stderr and b"Traceback" not in r.stderr
    env["SLM_API_URL"] = sink.url
    assert run_slm(MAIN_PYTHON, ["flush"], env).returncode == 0
    assert statuses(sink) == ["RUNNING", "COMPLETED"]


@pytest.mark.parametrize("value", ["abc", "-1", "0"])
def test_bad_timeout_is_reported_and_defaulted(env, value):
    env["SLM_TIMEOUT"] = value
    r = run_slm(MAIN_PYTHON, ["run", "--", "true"], env)
    assert r.returncode == 0
    assert b"SLM_TIMEOUT" in r.stderr and b"Traceback" not in r.stderr


def test_runs_as_symlink_named_slm(env, tmp_path):
    link = tmp_path / "slm"
    link.symlink_to(SLM)
    r = subprocess.run([str(link), "-q", "run", "--", "true"], env=env, timeout=60)
    assert r.returncode == 0


def test_empty_command_name_is_not_found(env):
    r = run_slm(MAIN_PYTHON, ["run", "--", ""], env)
    assert r.returncode == 127


def test_service_url_credentials_and_query_are_never_printed(env):
    env["SLM_API_URL"] = "http://user:URLPWSECRET@127.0.0.1:1/?token=QSECRET"
    for args in (["-v", "run", "--", "true"], ["list"], ["doctor"]):
        r = run_slm(MAIN_PYTHON, args, env)
        assert b"URLPWSECRET" not in r.stdout + r.stderr, args
        assert b"QSECRET" not in r.stdout + r.stderr, args
