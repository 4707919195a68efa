"""`slm submit` with a fake sbatch (tests/helpers/sbatch) that runs the job locally.

The real sbatch, #SBATCH handling and signals are tested in test_slurm.py; here
we check the command line split, the generated batch script, and the events.
"""
import json
import os
import subprocess
import time

import pytest

from conftest import HELPERS, MAIN_PYTHON, run_slm
from scaffold import await_true

FAKE = os.path.join(HELPERS, "sbatch")


@pytest.fixture
def fake(env, sink, tmp_path):
    state = tmp_path / "sbatch"
    state.mkdir()
    env["FAKE_SBATCH_DIR"] = str(state)
    env["SLM_SBATCH"] = FAKE
    env["SLM_API_URL"] = sink.url
    # the fake runs under the PATH python3; the job's slm runs under ours
    env["SLM_PYTHON"] = MAIN_PYTHON
    return state


def diagnostics(result):
    """stderr without the warning every checkout under /tmp gets (slm.py not shared)."""
    return "".join(line for line in result.stderr.decode().splitlines(True)
                   if "node-local directory" not in line)


def recorded(state, job_id):
    with open(os.path.join(str(state), "job-%d.json" % job_id)) as f:
        return json.load(f)


def job_output(state, job_id, timeout=30):
    done = os.path.join(str(state), "done-%d" % job_id)
    await_true(lambda: os.path.exists(done), timeout, "the fake job %d to end" % job_id)
    with open(os.path.join(str(state), "slurm-%d.out" % job_id)) as f:
        return f.read()


def write(path, text, mode=0o755):
    path.write_text(text)
    path.chmod(mode)
    return path


def test_submit_runs_the_unmodified_script_monitored(py, env, sink, fake, tmp_path):
    script = write(tmp_path / "job.sh", "#!/bin/bash\n#SBATCH -J myjob\n"
                   "echo \"args: $1|$2\"; echo \"cwd: $PWD\"; echo \"bash: $BASH_VERSION\"\n"
                   "exit 4\n")
    workdir = tmp_path / "work"
    workdir.mkdir()
    r = run_slm(py, ["submit", "-p", "debug", str(script), "a", "b c"], env, cwd=str(workdir))
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"Submitted batch job 1000\n"
    script.unlink()   # the job must not need the file any more (sbatch snapshots it)
    out = job_output(fake, 1000)
    assert "args: a|b c" in out
    assert "cwd: %s" % workdir in out
    assert "bash: " in out and "bash: \n" not in out
    sink.wait_status("FAILED")
    assert [e["status"] for e in sink.events] == ["SUBMITTED", "RUNNING", "FAILED"] or \
        sorted(e["status"] for e in sink.events) == ["FAILED", "RUNNING", "SUBMITTED"]
    submitted = [e for e in sink.events if e["status"] == "SUBMITTED"][0]
    assert submitted["job_id"] == "1000"
    assert submitted["script"] == str(script)
    assert submitted["script_args"] == ["a", "b c"]
    assert submitted["submit_dir"] == str(workdir)
    assert submitted["job_name"] == "myjob"
    assert submitted["partition"] == "debug"
    failed = [e for e in sink.events if e["status"] == "FAILED"][0]
    assert failed["exit_code"] == 4 and failed["job_id"] == "1000"
    # sbatch got the user's options, in order, and a script whose header it honours
    argv = recorded(fake, 1000)["argv"]
    assert argv[:2] == ["-p", "debug"]
    batch = recorded(fake, 1000)["script"]
    # a Python program that slurmstepd runs directly: no shell between the job's
    # environment and slm; -I keeps the job's PYTHON* variables out of slm's imports
    assert batch.startswith("#!%s -I\n" % MAIN_PYTHON)
    assert "\n#SBATCH -J myjob\n" in batch


def test_submit_python_script_uses_its_interpreter(env, sink, fake, tmp_path):
    script = write(tmp_path / "job.py", "#!%s\nimport sys\nprint('py', sys.argv[1:])\n"
                   % MAIN_PYTHON)
    r = run_slm(MAIN_PYTHON, ["submit", str(script), "x"], env, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "py ['x']" in job_output(fake, 1000)
    sink.wait_status("COMPLETED")


def test_submit_wrap(env, sink, fake, tmp_path):
    r = run_slm(MAIN_PYTHON, ["submit", "--wrap", "echo wrapped; exit 0"], env,
                cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "wrapped" in job_output(fake, 1000)
    sink.wait_status("COMPLETED")
    submitted = [e for e in sink.events if e["status"] == "SUBMITTED"][0]
    assert submitted["wrap"] == "echo wrapped; exit 0"


def test_submit_parsable_output_passes_through(env, sink, fake, tmp_path):
    script = write(tmp_path / "job.sh", "#!/bin/sh\ntrue\n")
    r = run_slm(MAIN_PYTHON, ["-q", "submit", "--parsable", str(script)], env)
    assert r.stdout == b"1000\n"
    assert diagnostics(r) == ""


def test_no_monitor_submits_untouched(env, sink, fake, tmp_path):
    text = "#!/bin/sh\necho plain\n"
    script = write(tmp_path / "job.sh", text)
    r = run_slm(MAIN_PYTHON, ["submit", "--no-monitor", str(script)], env)
    assert r.returncode == 0
    assert recorded(fake, 1000)["script"] == text
    assert recorded(fake, 1000)["argv"] == [str(script)]
    job_output(fake, 1000)
    sink.wait_status("SUBMITTED")
    assert [e["status"] for e in sink.events] == ["SUBMITTED"]
    assert sink.events[0]["monitored"] is False


def test_sbatch_failure_is_reported_and_its_code_passed_on(env, sink, fake, tmp_path):
    script = write(tmp_path / "job.sh", "#!/bin/sh\ntrue\n")
    env["FAKE_SBATCH_FAIL"] = "invalid partition specified: nope"
    r = run_slm(MAIN_PYTHON, ["submit", "-p", "nope", str(script)], env)
    assert r.returncode == 1
    assert diagnostics(r).startswith("sbatch: error: invalid partition")
    assert [e["status"] for e in sink.events] == ["SUBMIT_FAILED"]
    assert sink.events[0]["exit_code"] == 1
    assert "invalid partition" in sink.events[0]["message"]


def test_missing_sbatch_is_127_and_reported(env, sink, tmp_path):
    env["SLM_SBATCH"] = str(tmp_path / "no-sbatch")
    env["SLM_API_URL"] = sink.url
    script = write(tmp_path / "job.sh", "#!/bin/sh\ntrue\n")
    r = run_slm(MAIN_PYTHON, ["submit", str(script)], env)
    assert r.returncode == 127
    assert diagnostics(r).startswith("slm: cannot run")
    assert [e["status"] for e in sink.events] == ["SUBMIT_FAILED"]


def test_submit_help_is_ours_and_sbatch_help_is_sbatchs(env, fake):
    r = run_slm(MAIN_PYTHON, ["submit", "--help"], env)
    assert b"examples:" in r.stdout
    r = run_slm(MAIN_PYTHON, ["submit", "-p", "x", "--help"], env)
    assert r.stdout.startswith(b"Usage: sbatch")


def test_script_from_stdin(env, sink, fake, tmp_path):
    r = run_slm(MAIN_PYTHON, ["submit"], env, input=b"#!/bin/sh\necho from-stdin\n",
                cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "from-stdin" in job_output(fake, 1000)
    sink.wait_status("COMPLETED")


def test_missing_script_is_sbatchs_error(env, sink, fake, tmp_path):
    r = run_slm(MAIN_PYTHON, ["submit", str(tmp_path / "nope.sh")], env)
    assert r.returncode == 1
    assert diagnostics(r).startswith("sbatch: error: Unable to open file")
    assert [e["status"] for e in sink.events] == ["SUBMIT_FAILED"]


@pytest.mark.parametrize("words,script,args", [
    (["-p", "debug", "job.sh", "-p", "x"], "job.sh", ["-p", "x"]),
    (["--partition=debug", "--array=1-3", "job.sh"], "job.sh", []),
    (["-N", "2", "--exclusive", "job.sh", "a"], "job.sh", ["a"]),
    (["--exclusive=user", "job.sh"], "job.sh", []),
    (["--part", "debug", "job.sh"], "job.sh", []),     # getopt_long prefix
    (["-Jname", "job.sh"], "job.sh", []),
    (["--wrap", "x", "--parsable"], None, []),
])
def test_sbatch_command_split(words, script, args):
    import slm
    cmd = slm.SbatchCommand(words)
    assert cmd.script == script
    assert cmd.script_args == args


def test_an_option_newer_than_slms_table_is_asked_of_sbatch(tmp_path, monkeypatch):
    """An option slm does not know (a future sbatch's) is asked of the installed
    sbatch, alone and with nothing on stdin: its value is never taken for the script."""
    import slm
    sbatch = tmp_path / "sbatch"
    write(sbatch, "#!/bin/sh\necho \"$@\" >> %s/asked\ncase $1 in\n"
          "--brand-new) echo \"sbatch: option '--brand-new' requires an argument\" >&2;;\n"
          "*) echo 'sbatch: error: Batch script is empty!' >&2;;\nesac\nexit 1\n" % tmp_path)
    monkeypatch.setenv("SLM_SBATCH", str(sbatch))
    monkeypatch.setattr(slm, "_sbatch_answers", {})
    cmd = slm.SbatchCommand(["--brand-new", "v", "--new-flag", "job.sh", "a"])
    assert (cmd.script, cmd.script_args, cmd.values) == ("job.sh", ["a"], {"brand-new": "v"})
    assert slm.SbatchCommand(["--brand-new=v", "job.sh"]).script == "job.sh"
    # asked once each; the table's own options (a newer release's too) never
    for words in (["--tres-per-task", "cpu=1", "job.sh"], ["--mem-update", "20@1", "job.sh"]):
        assert slm.SbatchCommand(words).script == "job.sh"
    assert (tmp_path / "asked").read_text().split() == ["--brand-new", "--new-flag"]


@pytest.mark.parametrize("words,ours,sbatch", [
    (["--group", "g", "-t", "10", "job.sh"], ["--group", "g"], ["-t", "10", "job.sh"]),
    (["-t", "10", "--group", "g", "-J", "x", "job.sh"], ["--group", "g"],
     ["-t", "10", "-J", "x", "job.sh"]),
    (["-t10", "--group=g", "--no-db", "job.sh", "--group", "a"], ["--group=g", "--no-db"],
     ["-t10", "job.sh", "--group", "a"]),              # the script's own --group is its own
    (["-p", "debug", "--group", "g", "--wrap", "true"], ["--group", "g"],
     ["-p", "debug", "--wrap", "true"]),
])
def test_group_is_ours_anywhere_among_sbatchs_options(words, ours, sbatch):
    import slm
    assert slm.split_argv(["submit"] + words) == (["submit"] + ours, sbatch)


def test_interpreter_line():
    import slm
    assert slm.interpreter(b"#!/bin/bash -l\necho") == ["/bin/bash", "-l"]
    assert slm.interpreter(b"#! /usr/bin/env python3\n") == ["/usr/bin/env", "python3"]
    assert slm.interpreter(b"echo no shebang\n") is None


def test_generated_script_is_valid_python(env, fake, tmp_path):
    script = write(tmp_path / "we'ird $name.sh", "#!/bin/sh\n#SBATCH --time=5\n"
                   "# caf\xe9 in latin-1 below\n#SBATCH --comment=x\n\necho ok\n#SBATCH -J late\n")
    script.write_bytes(script.read_bytes().replace("\xe9".encode("utf-8"), b"\xe9"))
    r = run_slm(MAIN_PYTHON, ["-q", "submit", str(script), "it's", "$HOME", "`x`", "\u6570"],
                env, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    with open(os.path.join(str(fake), "batch-1000"), "rb") as f:
        batch = f.read()
    compile(batch, "batch", "exec")
    # sbatch reads the original's header, and only it: the late #SBATCH line stays out
    head = batch.split(b"\nimport ", 1)[0]
    assert b"#SBATCH --time=5\n" in head and b"#SBATCH --comment=x\n" in head
    assert b"-J late" not in batch
    out = job_output(fake, 1000)
    assert "ok" in out


def run_batch(tmp_path, batch):
    """Run a generated batch script as slurmd would: an executable file, a bare environment."""
    path = tmp_path / "batch"
    path.write_bytes(batch)
    path.chmod(0o755)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    return subprocess.run([str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                          timeout=60)


def test_python_path_the_kernel_cannot_run_falls_back_to_sh(tmp_path):
    """An interpreter path with a space cannot be a #! line: sh hands the file on."""
    import slm
    spaced = tmp_path / "my python"
    spaced.mkdir()
    link = spaced / "python3"
    link.symlink_to(MAIN_PYTHON)
    batch = slm.monitored_script(b"#!/bin/sh\n#SBATCH -t 5\necho fallback \"$1\"\n", "job.sh",
                                 ["arg"], str(link), slm.__file__)
    assert batch.startswith(b"#!/bin/sh\n")
    compile(batch, "batch", "exec")
    r = run_batch(tmp_path, batch)
    assert (r.returncode, r.stdout) == (0, b"fallback arg\n"), r.stderr


def test_renamed_slm_file_is_loaded_by_path(tmp_path):
    import slm
    copy = tmp_path / "slm-tool"
    copy.write_bytes(open(slm.__file__, "rb").read())
    batch = slm.monitored_script(b"#!/bin/sh\necho renamed\n", "job.sh", [], MAIN_PYTHON,
                                 str(copy))
    r = run_batch(tmp_path, batch)
    assert (r.returncode, r.stdout) == (0, b"renamed\n"), r.stderr


@pytest.mark.parametrize("body", [b"#!/bin/sh\r\necho dos\r\n", b"#!/bin/sh\necho \0nul\n"])
def test_scripts_sbatch_refuses_reach_sbatch_as_they_are(env, fake, tmp_path, body):
    script = tmp_path / "job.sh"
    script.write_bytes(body)
    run_slm(MAIN_PYTHON, ["-q", "submit", str(script)], env, cwd=str(tmp_path))
    with open(os.path.join(str(fake), "batch-1000"), "rb") as f:
        assert f.read() == body


# ---------------------------------------------------------------------------
# Settings: the configuration file, and the snapshot that survives --export=NONE
# ---------------------------------------------------------------------------

SECRETS = ("TOKEN-s3cr3t-9f", "HOOKPATH-s3cr3t-77", "SIGNKEY-s3cr3t-41")


def secret_env(env, sink):
    env["SLM_API_TOKEN"] = SECRETS[0]
    env["SLM_WEBHOOK"] = sink.url + "/hook/" + SECRETS[1]
    env["SLM_WEBHOOK_SECRET"] = SECRETS[2]
    return env


@pytest.mark.parametrize("export", [["--export=NONE"], ["--export=PATH"], "SBATCH_EXPORT"])
def test_settings_reach_a_job_that_does_not_inherit_the_environment(env, sink, fake, tmp_path,
                                                                   export):
    """--export=NONE: the job's events still arrive, token and webhook included;
    no secret is written where others can read it."""
    secret_env(env, sink)
    if export == "SBATCH_EXPORT":
        env["SBATCH_EXPORT"] = "NONE"
        export = []
    script = write(tmp_path / "job.sh", "#!/bin/sh\necho job-env; env | sort\n")
    r = run_slm(MAIN_PYTHON, ["submit"] + export + [str(script)], env, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    out = job_output(fake, 1000)
    events = sink.wait_for(lambda evs: [e["status"] for e in evs if "status" in e].count(
        "COMPLETED") == 2)   # once to the service, once to the webhook
    service = [req for req in sink.requests if req[0] == "/api/v1/events"]
    hook = [req for req in sink.requests if req[0].startswith("/hook/")]
    assert service and hook, sink.requests
    assert {req[1].get("Authorization") for req in service} == {"Bearer " + SECRETS[0]}
    # SUBMITTED notifies no webhook by default (SLM_NOTIFY_ON)
    assert sorted(e["status"] for e in events) == sorted(["SUBMITTED", "RUNNING", "COMPLETED",
                                                          "RUNNING", "COMPLETED"])
    # the job's environment is what sbatch gave it: no settings were exported into it
    job_env = out.split("job-env\n", 1)[1]
    assert "SLM_API_TOKEN" not in job_env and "SLM_WEBHOOK" not in job_env
    # nowhere readable by others: the batch script (slurmctld keeps it), sbatch's
    # arguments (ps), the job's output
    record = recorded(fake, 1000)
    readable = record["script"] + " ".join(record["argv"]) + out + r.stderr.decode()
    for secret in SECRETS:
        assert secret not in readable
    snapshots = os.listdir(os.path.join(env["HOME"], ".slm", "settings"))
    assert len(snapshots) == 1
    path = os.path.join(env["HOME"], ".slm", "settings", snapshots[0])
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert path in record["script"]
    assert "SLM_SETTINGS=%s" % path in job_env   # the job's own slm commands find it


def test_same_settings_share_one_snapshot_and_old_ones_are_swept(env, sink, fake, tmp_path):
    env["SLM_API_URL"] = sink.url
    script = write(tmp_path / "job.sh", "#!/bin/sh\ntrue\n")
    folder = os.path.join(env["HOME"], ".slm", "settings")
    os.makedirs(folder)
    stale = os.path.join(folder, "0" * 32 + ".conf")
    with open(stale, "w") as f:
        f.write("SLM_API_URL=http://old\n")
    os.utime(stale, (time.time() - 100 * 86400,) * 2)
    for _ in range(2):
        assert run_slm(MAIN_PYTHON, ["-q", "submit", str(script)], env,
                       cwd=str(tmp_path)).returncode == 0
    assert len(os.listdir(folder)) == 1 and not os.path.exists(stale)


def own_lines(stderr):
    """slm's lines on stderr but the one naming a local job at its start."""
    return [l for l in stderr.decode().splitlines() if not l.startswith("slm: job local-")]


def write_config(home, text, mode=0o600):
    folder = os.path.join(home, ".slm")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "config")
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def test_config_file_settings_are_used(env, sink):
    del env["SLM_SPOOL_DIR"]
    write_config(env["HOME"], "# my slm\n\nSLM_API_URL=%s\nexport SLM_TIMEOUT = '3'\n"
                 "SLM_API_TOKEN=\"%s\"\n" % (sink.url, SECRETS[0]))
    r = run_slm(MAIN_PYTHON, ["run", "--", "true"], env)
    assert r.returncode == 0 and own_lines(r.stderr) == [], r.stderr
    assert [e["status"] for e in sink.events] == ["RUNNING", "COMPLETED"]
    assert sink.requests[0][1]["Authorization"] == "Bearer " + SECRETS[0]


def test_environment_overrides_the_config_file(env, sink, refused_url):
    write_config(env["HOME"], "SLM_API_URL=%s\n" % refused_url)
    env["SLM_API_URL"] = sink.url
    run_slm(MAIN_PYTHON, ["run", "--", "true"], env)
    assert [e["status"] for e in sink.events] == ["RUNNING", "COMPLETED"]


def test_slm_config_names_another_file(env, sink, tmp_path):
    other = tmp_path / "elsewhere.conf"
    other.write_text("SLM_API_URL=%s\n" % sink.url)
    env["SLM_CONFIG"] = str(other)
    run_slm(MAIN_PYTHON, ["run", "--", "true"], env)
    assert [e["status"] for e in sink.events] == ["RUNNING", "COMPLETED"]


def test_secret_in_a_readable_config_file_is_refused_with_one_line(env, sink):
    path = write_config(env["HOME"], "SLM_API_URL=%s\nSLM_API_TOKEN=%s\nSLM_WEBHOOK=%s/h\n"
                        % (sink.url, SECRETS[0], sink.url), mode=0o644)
    r = run_slm(MAIN_PYTHON, ["run", "--", "true"], env)
    assert r.returncode == 0
    lines = own_lines(r.stderr)
    assert lines == ["slm: ignoring SLM_API_TOKEN, SLM_WEBHOOK in %s: the file holds secrets "
                     "but others may read it (chmod 600 %s)" % (path, path)], lines
    # the rest of the file is used; the token was not sent
    assert [e["status"] for e in sink.events] == ["RUNNING", "COMPLETED"]
    assert all("Authorization" not in req[1] for req in sink.requests)
    assert SECRETS[0].encode() not in r.stderr


def test_bad_config_lines_are_named_once(env, sink):
    path = write_config(env["HOME"], "SLM_API_URL=%s\nnonsense\nSLM_NOPE=1\n" % sink.url)
    r = run_slm(MAIN_PYTHON, ["run", "--", "true"], env)
    assert r.returncode == 0
    assert own_lines(r.stderr) == [
        "slm: %s line 2: not KEY=VALUE; ignored" % path,
        "slm: %s line 3: unknown setting SLM_NOPE; ignored" % path]


def test_home_from_the_password_database_when_home_is_unset(monkeypatch):
    import pwd
    import slm
    monkeypatch.delenv("HOME", raising=False)
    assert slm.home_dir() == pwd.getpwuid(os.getuid()).pw_dir
    assert slm.home_dir({"HOME": ""}) == pwd.getpwuid(os.getuid()).pw_dir
    assert slm.home_dir({"HOME": "/h"}) == "/h"


def test_doctor_names_each_settings_source(env, sink, tmp_path):
    write_config(env["HOME"], "SLM_WEBHOOK=%s/hook/%s\n" % (sink.url, SECRETS[1]))
    snap = tmp_path / "snap.conf"
    snap.write_text("SLM_API_TOKEN=%s\nSLM_TIMEOUT=4\n" % SECRETS[0])
    snap.chmod(0o600)
    env["SLM_API_URL"] = sink.url
    env["SLM_SETTINGS"] = str(snap)
    del env["SLM_TIMEOUT"]
    r = run_slm(MAIN_PYTHON, ["doctor"], env)
    out = r.stdout.decode()
    assert "SLM_API_URL=%s (environment)" % sink.url in out
    assert "SLM_WEBHOOK=(hidden) (config file %s/.slm/config)" % env["HOME"] in out
    assert "SLM_API_TOKEN=(hidden) (submit-time snapshot %s)" % snap in out
    assert "SLM_TIMEOUT=4 (submit-time snapshot" in out
    for secret in SECRETS:
        assert secret not in out


def test_submit_wait_reports_submitted_before_the_job_runs(env, sink, fake, tmp_path):
    """sbatch --wait returns when the job ends: SUBMITTED must not wait for that."""
    wrapper = tmp_path / "sbatch-wait"
    wrapper.write_text("#!/bin/sh\n%s \"$@\" || exit\nwhile [ ! -e %s/done-1000 ]; do "
                       "sleep 0.05; done\nexit 5\n" % (FAKE, fake))
    wrapper.chmod(0o755)
    env["SLM_SBATCH"] = str(wrapper)
    script = write(tmp_path / "job.sh", "#!/bin/sh\nsleep 0.5\n")
    r = run_slm(MAIN_PYTHON, ["submit", "--wait", str(script)], env, cwd=str(tmp_path))
    assert r.returncode == 5
    assert [e["status"] for e in sink.events] == ["SUBMITTED", "RUNNING", "COMPLETED"]
