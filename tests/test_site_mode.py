"""Site mode on the real Slurm (conftest's `cluster`; every release and mode that
./test_slm.sh runs): `slm.py mailprog` installed as an admin would (README, Site
mode) behind the test clusters' MailProg dispatcher (tests/slurm-cluster.sh,
tests/slurm-release.sh), for a job an ordinary user submits with plain sbatch and
--mail-type / --mail-user.  slurmctld calls it as SlurmUser with only SLURM_*
variables; the notice reaches the destination the user named, through the service.
"""
import os
import pwd
import re
import shutil
import struct
import subprocess

import pytest

from scaffold import HttpSink, ServiceProcess, await_true

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADMIN = "site-mode-admin-token-0123456789"
LIB = "/usr/local/lib/slm-test"
CONFIG = "/etc/slm-test/site.conf"
SPOOL = "/var/spool/slm-test-mailprog"
MAILPROG = "/usr/local/libexec/slm-test-site-mailprog"
TARGET = "/run/slm-test-mailprog/target"
USER = "slmuser"


@pytest.fixture
def site(cluster, tmp_path):
    """The admin's installation (root's files, SlurmUser's spool), a service with an
    admin token, and the dispatcher pointed at it; undone after."""
    if os.geteuid() != 0 or not os.path.exists("/usr/local/libexec/slm-test-mailprog"):
        pytest.skip("site mode needs root and the test clusters' MailProg dispatcher")
    subprocess.run(["id", USER], check=True, stdout=subprocess.DEVNULL)
    hook = HttpSink()
    svc = ServiceProcess(tmp_path / "site.db", tmp_path, token=ADMIN,
                         env={"SLM_MAILPROG_HOLD": "0.5", "SLM_WATCH_INTERVAL": "2"}).start()
    os.makedirs(LIB, exist_ok=True)
    shutil.copy(os.path.join(ROOT, "slm.py"), LIB + "/slm.py")
    os.chmod(LIB + "/slm.py", 0o644)
    shutil.rmtree(SPOOL, ignore_errors=True)
    os.makedirs(SPOOL)
    shutil.chown(SPOOL, "slurm", "slurm")
    os.chmod(SPOOL, 0o700)
    os.makedirs(os.path.dirname(CONFIG), exist_ok=True)
    with open(CONFIG, "w") as f:
        f.write("SLM_API_URL=%s\nSLM_API_TOKEN=%s\nSLM_SPOOL_DIR=%s\n"
                "SLM_MAILPROG_USER_CONFIG=yes\n" % (svc.url, ADMIN, SPOOL))
    shutil.chown(CONFIG, "root", "slurm")
    os.chmod(CONFIG, 0o640)
    with open(MAILPROG, "w") as f:
        f.write("#!/bin/sh\nPATH=/usr/sbin:/usr/bin:/sbin:/bin; export PATH\n"
                "exec /usr/bin/python3 %s/slm.py mailprog --config %s \"$@\"\n" % (LIB, CONFIG))
    os.chmod(MAILPROG, 0o755)
    os.makedirs(os.path.dirname(TARGET), exist_ok=True)
    with open(TARGET, "w") as f:
        f.write(MAILPROG + "\n")
    # the user's job directory, one SlurmUser may traverse (a 0700 home, Debian's
    # default, keeps MailProg from the output file: no tail then, as the README says)
    where = "/var/tmp/slm-site-%s-%s" % (cluster.version, cluster.mode)
    shutil.rmtree(where, ignore_errors=True)
    subprocess.run(["runuser", "-u", USER, "--", "mkdir", "-m", "0755", where], check=True)
    try:
        yield svc, hook, where
    finally:
        os.unlink(TARGET)
        svc.stop()
        hook.close()


def sbatch_as_user(where, *words):
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": where}
    r = subprocess.run(["runuser", "-u", USER, "--", "sbatch"] + list(words), cwd=where,
                       env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    m = re.search(rb"Submitted batch job (\d+)", r.stdout)
    assert m, r.stdout
    return m.group(1).decode()


def test_a_plain_sbatch_jobs_mail_is_slms_notice_and_history(site):
    """--mail-type=ALL --mail-user=<a webhook>: Slurm's Began and Failed calls become
    RUNNING and FAILED (exit 3) in the service's history, and the user's destination
    gets the FAILED notice with the tail of the job's own output file."""
    svc, hook, where = site
    job = sbatch_as_user(where, "--mail-type=ALL", "--mail-user=%s" % hook.hook_url,
                         "-o", os.path.join(where, "out-%j.txt"), "-t", "2",
                         "--wrap", "echo the last words; exit 3")
    # Slurm's Began and Failed calls run in parallel threads, in no fixed order: the
    # history gets both; a start told after the end is not notified (stale news)
    row = svc.wait_job(lambda j: j["status"] == "FAILED" and j["event_count"] == 2,
                       job_id=job, timeout=120)
    assert row["exit_code"] == 3 and row["user"] == USER, row
    events = svc.events(job)
    assert sorted((e["status"], e.get("via")) for e in events) == [
        ("FAILED", "mailprog"), ("RUNNING", "mailprog")], events
    hook.wait_for(lambda evs: any(e.get("status") == "FAILED" for e in evs), timeout=60)
    hook.quiet(1.0)
    notices = [e for e in hook.events if e["job_id"] == job]
    failed = [e for e in notices if e["status"] == "FAILED"]
    assert len(failed) == 1 and [e["status"] for e in notices].count("RUNNING") <= 1
    assert "the last words" in (failed[0].get("output_tail") or ""), failed[0]
    # everything delivered: nothing waits in the site spool
    assert os.listdir(os.path.join(SPOOL, "pending")) == []


def journalled():
    return [n for d in ("pending", "work") if os.path.isdir(os.path.join(SPOOL, d))
            for n in os.listdir(os.path.join(SPOOL, d))]


def test_a_dead_service_costs_slurmctld_nothing_and_hears_of_it_later(site):
    """The service is down when Slurm mails: each call is journalled and returns (Slurm
    never retries), and the job's history and notices arrive once it is back."""
    svc, hook, where = site
    svc.stop()
    job = sbatch_as_user(where, "--mail-type=BEGIN,END", "--mail-user=%s" % hook.hook_url,
                         "-t", "2", "--wrap", "true")
    await_true(lambda: len(journalled()) >= 2, 90, "both of Slurm's calls journalled")
    # slurmctld is not held: it answers and runs the next job's mail at once
    assert subprocess.run(["scontrol", "ping"], stdout=subprocess.DEVNULL,
                          timeout=10).returncode == 0
    svc.start()
    svc.wait_job(lambda j: j["status"] == "COMPLETED" and j["event_count"] == 2,
                 job_id=job, timeout=180)
    hook.wait_for(lambda evs: any(e.get("job_id") == job and e["status"] == "COMPLETED"
                                  for e in evs), timeout=60)
    await_true(lambda: journalled() == [], 60, "the site spool drained")
    hook.quiet(1.0)
    told = [e["status"] for e in hook.events if e.get("job_id") == job]
    assert told.count("COMPLETED") == 1 and told.count("RUNNING") <= 1, told


def test_an_arrays_end_mail_is_one_notice_for_the_array(site):
    """--array=1-3 --mail-type=END (no ARRAY_TASKS): Slurm mails once when the last task
    has ended; a task that failed makes that one notice FAILED, with the worst exit."""
    svc, hook, where = site
    job = sbatch_as_user(where, "--array=1-3", "--mail-type=END",
                         "--mail-user=%s" % hook.hook_url, "-t", "2", "-o", "/dev/null",
                         "--wrap", 'exit $(( SLURM_ARRAY_TASK_ID == 2 ? 2 : 0 ))')
    row = svc.wait_job(lambda j: j["status"] in ("FAILED", "COMPLETED"), job_id=job,
                       timeout=120)
    assert (row["status"], row["exit_code"]) == ("FAILED", 2), row
    notices = hook.wait_for(lambda evs: any(e.get("job_id") == job for e in evs), timeout=60)
    assert hook.quiet(2.0) == 0
    mine = [e for e in hook.events if str(e.get("job_id", "")).startswith(job)]
    assert [(e["job_id"], e["status"]) for e in mine] == [(job, "FAILED")], notices


def setfacl(path, uid, perm):
    """setfacl -m u:UID:PERM, on a file or directory of the owner's rights only
    (what the README tells a user to run; written here without the acl package)."""
    owner = (os.stat(path).st_mode >> 6) & 7
    entries = [(0x01, owner, 0xFFFFFFFF), (0x02, perm, uid), (0x04, 0, 0xFFFFFFFF),
               (0x10, perm, 0xFFFFFFFF), (0x20, 0, 0xFFFFFFFF)]
    os.setxattr(path, "system.posix_acl_access",
                struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries))


@pytest.fixture
def private_home():
    """The user's home, private (0700) as on most clusters, with ~/.slm/config naming
    their destination; restored after."""
    user = pwd.getpwnam(USER)
    home = user.pw_dir
    os.makedirs(home, exist_ok=True)
    mode = os.stat(home).st_mode & 0o7777
    os.chmod(home, 0o700)
    dot = os.path.join(home, ".slm")
    shutil.rmtree(dot, ignore_errors=True)
    try:
        yield user, home, dot
    finally:
        shutil.rmtree(dot, ignore_errors=True)
        try:
            os.removexattr(home, "system.posix_acl_access")
        except OSError:
            pass
        os.chmod(home, mode)


def test_with_no_mail_user_the_users_own_config_is_the_destination(site, private_home):
    """The site allows it (SLM_MAILPROG_USER_CONFIG=yes) and the user gave no
    --mail-user: Slurm's default recipient (the user's name) becomes the SLM_WEBHOOK of
    their own ~/.slm/config, once they let SlurmUser read it (README, Site mode); before
    that the history says why no notice went out."""
    svc, hook, where = site
    user, home, dot = private_home
    os.makedirs(dot, mode=0o700)
    config = os.path.join(dot, "config")
    with open(config, "w") as f:
        f.write("SLM_WEBHOOK=%s\n" % hook.hook_url)
    os.chmod(config, 0o600)
    for path in (dot, config):
        os.chown(path, user.pw_uid, user.pw_gid)
    first = sbatch_as_user(where, "--mail-type=END", "-t", "2", "-o", "/dev/null",
                           "--wrap", "true")
    svc.wait_job(lambda j: j["status"] == "COMPLETED", job_id=first, timeout=120)
    assert any("no notice: SlurmUser may not read ~/.slm/config" in (e.get("message") or "")
               for e in svc.events(first)), svc.events(first)
    slurm = pwd.getpwnam("slurm").pw_uid
    try:
        setfacl(home, slurm, 1)
        setfacl(dot, slurm, 1)
        setfacl(config, slurm, 4)
    except OSError as e:
        pytest.fail("no POSIX ACLs on %s (%s)" % (home, e))
    # END,FAIL: 22.05 mails a failed job's end only for FAIL (docs/mailprog.md)
    job = sbatch_as_user(where, "--mail-type=END,FAIL", "-t", "2", "-o", "/dev/null",
                         "--wrap", "exit 5")
    svc.wait_job(lambda j: j["status"] == "FAILED", job_id=job, timeout=120)
    await_true(lambda: any(e.get("job_id") == job for e in hook.events), 60,
               lambda: "the notice, after %s" % svc.events(job))
    assert hook.quiet(1.0) == 0
    told = [(e["job_id"], e["status"], e.get("exit_code")) for e in hook.events]
    assert told == [(job, "FAILED", 5)], told
