"""Issue #23 on the real Slurm (conftest's `cluster`; skips without one unless
SLM_REQUIRE_SLURM=1): a job's own notice choice in its #SLM lines, and why a
job waits, from Slurm's queue to `slm status`.

Runs under the cluster's current proctrack plugin, or each of
SLM_SLURM_MODES in turn (the `cluster` fixture restarts it).
"""
import os
import re
import subprocess

import pytest

from conftest import MAIN_PYTHON, run_slm
from scaffold import HttpSink, ServiceProcess


def job_env(cluster, name, **extra):
    where = os.path.join(cluster.workdir, name)
    os.makedirs(where, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SLM_", "SBATCH_"))}
    env.update(SLM_SPOOL_DIR=os.path.join(where, "spool"), SLM_TIMEOUT="2",
               PYTHONDONTWRITEBYTECODE="1", HOME=os.path.join(where, "home"))
    os.makedirs(env["HOME"], exist_ok=True)
    env.update(extra)
    return env, where


def submit(env, where, name, body, *sbatch):
    script = os.path.join(where, name)
    with open(script, "w") as f:
        f.write(body)
    r = run_slm(MAIN_PYTHON, ["submit", "-o", os.path.join(where, name + ".out")] +
                list(sbatch) + [script], env, cwd=where)
    m = re.search(rb"Submitted batch job (\d+)", r.stdout)
    assert r.returncode == 0 and m, r.stdout + r.stderr
    return m.group(1).decode()


@pytest.mark.parametrize("exit_code,heard", [(0, []), (3, ["FAILED"])])
def test_slm_line_notify_on_failed_silences_a_completed_job(cluster, exit_code, heard):
    """`#SLM --notify-on=failed`: a COMPLETED job notifies nobody, a FAILED one
    does; the service hears of both (it always gets every event)."""
    service, phone = HttpSink(), HttpSink()
    try:
        env, where = job_env(cluster, "notify-on-%d" % exit_code, SLM_API_URL=service.url)
        submit(env, where, "job.sh", "#!/bin/bash\n#SBATCH -t 2\n#SLM --notify-on=failed\n"
               "#SLM --webhook=%s/hook/phone\nexit %d\n" % (phone.url, exit_code))
        final = "COMPLETED" if exit_code == 0 else "FAILED"
        service.wait_for(lambda evs: any(e["status"] == final for e in evs), timeout=120)
        if heard:
            phone.wait_for(lambda evs: len(evs) >= len(heard))
        assert phone.quiet(1.0) == 0
        assert [e["status"] for e in phone.events] == heard
        assert {r[0] for r in phone.requests} <= {"/hook/phone"}
    finally:
        service.close()
        phone.close()


def test_why_a_job_waits_reaches_slm_status(cluster, tmp_path):
    """A job held by a dependency: the service asks Slurm's queue, `slm status`
    and `slm list` say PENDING (Dependency)."""
    svc = ServiceProcess(tmp_path / "slm.db", tmp_path, env={"SLM_WATCH_INTERVAL": "1"}).start()
    first = second = None
    try:
        env, where = job_env(cluster, "waits", SLM_API_URL=svc.url)
        first = submit(env, where, "first.sh", "#!/bin/sh\n#SBATCH -t 2\nsleep 60\n")
        second = submit(env, where, "second.sh", "#!/bin/sh\n#SBATCH -t 2\ntrue\n",
                        "--dependency=afterok:%s" % first)
        job = svc.wait_job(lambda j: j.get("slurm_reason") == "Dependency", job_id=second,
                           timeout=90)
        assert job["slurm_state"] == "PENDING"
        r = run_slm(MAIN_PYTHON, ["status", second], env)
        out = r.stdout.decode()
        assert r.returncode == 0, r.stderr
        assert re.search(r"^queue: PENDING \(Dependency\) in Slurm's queue \(asked [-0-9: ]+\)$",
                         out, re.M), out
        row = out.splitlines()[1].split()
        assert row[0] == second and "(Dependency)" in row, out
        out = run_slm(MAIN_PYTHON, ["list"], env).stdout.decode()
        assert any(l.split()[0] == second and "(Dependency)" in l.split()
                   for l in out.splitlines()[1:]), out
    finally:
        for job_id in (first, second):
            if job_id:
                subprocess.run(["scancel", job_id])
        svc.kill()
