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
    deadline = time.time() + timeout
    while not os.path.exists(done):
        assert time.time() < deadline, "the fake job %d never ended" % job_id
        time.sleep(0.05)
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
    assert batch.startswith("#!/bin/sh\n")
    assert "#SBATCH -J myjob" in batch.split("\n\n")[0] or "#SBATCH -J myjob" in batch


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


def test_interpreter_line():
    import slm
    assert slm.interpreter(b"#!/bin/bash -l\necho") == ["/bin/bash", "-l"]
    assert slm.interpreter(b"#! /usr/bin/env python3\n") == ["/usr/bin/env", "python3"]
    assert slm.interpreter(b"echo no shebang\n") is None


def test_generated_script_is_valid_sh(env, fake, tmp_path):
    script = write(tmp_path / "we'ird $name.sh", "#!/bin/sh\n#SBATCH --time=5\necho ok\n")
    r = run_slm(MAIN_PYTHON, ["-q", "submit", str(script), "it's", "$HOME", "`x`"], env,
                cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    batch = recorded(fake, 1000)["script"]
    check = subprocess.run(["sh", "-n"], input=batch.encode())
    assert check.returncode == 0
    assert "ok" in job_output(fake, 1000)
