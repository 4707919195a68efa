"""Site mode: `slm.py mailprog` as Slurm's MailProg (README, Site mode; docs/mailprog.md).

slurmctld calls MailProg as SlurmUser with `-s SUBJECT RECIPIENT` and the job in
SLURM_* variables only, waits until the pipe it gave is closed (120 s at most) and
never retries. These tests call it exactly so: the environments are the ones measured
on 22.05, 24.11 and 26.05 (docs/mailprog.md, sections 3 and 4), against a real
service and webhook sink. The real-Slurm scenario is in test_slurm.py.
"""
import os
import subprocess

import pytest

import slm
from conftest import MAIN_PYTHON
from scaffold import HttpSink, ServiceProcess, await_true

SLM = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "slm.py")
ADMIN = "site-admin-token-0123456789"


def call_env(**extra):
    """A MailProg call's whole environment (22.05's Ended call of a job that exited 3)."""
    env = {"SLURM_CLUSTER_NAME": "c1", "SLURM_JOB_ID": "300", "SLURM_JOBID": "300",
           "SLURM_JOB_NAME": "ok", "SLURM_JOB_USER": "alice", "SLURM_JOB_UID": "1000",
           "SLURM_JOB_GID": "1000", "SLURM_JOB_PARTITION": "debug",
           "SLURM_JOB_NODELIST": "vm", "SLURM_JOB_MAIL_TYPE": "Failed",
           "SLURM_JOB_STATE": "FAILED", "SLURM_JOB_EXIT_CODE_MAX": "3",
           "SLURM_JOB_EXIT_CODE": "768", "SLURM_JOB_EXIT_CODE2": "3:0",
           "SLURM_JOB_RESTART_COUNT": "0", "SLURM_JOB_RUN_TIME": "00:00:06",
           "SLURM_JOB_WORK_DIR": "/home/alice/jobs"}
    env.update(extra)
    return dict((k, v) for k, v in env.items() if v is not None)


# (mail type, state, EXIT_CODE2) as Slurm sets them -> (status, exit_code, signal)
CALLS = [
    ("Began", "RUNNING", None, "RUNNING", None, None),
    ("Ended", "COMPLETED", "0:0", "COMPLETED", 0, None),
    ("Failed", "FAILED", "3:0", "FAILED", 3, None),
    ("Ended", "FAILED", "4:0", "FAILED", 4, None),          # 24.11+ with END only
    ("Failed", "FAILED", "137:0", "FAILED", 137, None),
    ("Failed", "FAILED", "0:9", "FAILED", None, "SIGKILL"),   # kill -9 $$
    ("Failed", "OUT_OF_MEMORY", "0:125", "OUT_OF_MEMORY", 0, None),
    ("Failed", "TIMEOUT", "0:0", "TIMEOUT", 0, None),
    ("Ended", "CANCELLED", "0:0", "CANCELLED", 0, None),
    ("Failed", "NODE_FAIL", "0:0", "NODE_FAIL", 0, None),
    ("Requeued", "PENDING", None, "REQUEUED", None, None),
    ("Reached 90% of time limit", "RUNNING", None, "TIME_WARNING", None, None),
    ("Reached time limit", "RUNNING", None, "TIME_WARNING", None, None),
    ("Invalid dependency", "PENDING", None, "MESSAGE", None, None),
    ("Some word of 27.05", "SOMETHING_NEW", None, "MESSAGE", None, None),
]


@pytest.mark.parametrize("mail_type,state,code2,status,exit_code,signal", CALLS)
def test_each_call_is_the_event_slurms_environment_says(mail_type, state, code2, status,
                                                        exit_code, signal):
    env = call_env(SLURM_JOB_MAIL_TYPE=mail_type, SLURM_JOB_STATE=state,
                   SLURM_JOB_EXIT_CODE2=code2)
    e = slm.mailprog_event("Slurm Job_id=300 Name=ok %s" % mail_type, "ntfy:t", env)
    assert (e["status"], e.get("exit_code"), e.get("signal")) == (status, exit_code, signal)
    assert e["via"] == "mailprog" and e["job_id"] == "300" and e["user"] == "alice"
    assert e["cluster"] == "c1" and e["event_id"].startswith("mailprog-")
    # the same call twice is one event (Slurm's threads may repeat nothing, but a
    # deliverer may); another mail type of the same job is another
    assert slm.mailprog_event("x", "ntfy:t", env)["event_id"] == e["event_id"]
    other = dict(env, SLURM_JOB_MAIL_TYPE="Began", SLURM_JOB_STATE="RUNNING")
    assert slm.mailprog_event("x", "ntfy:t", other)["event_id"] != e["event_id"] or \
        mail_type == "Began"


def test_array_calls_are_tasks_and_the_summary_is_the_arrays_end():
    task = call_env(SLURM_JOB_ID="305", SLURM_ARRAY_JOB_ID="303", SLURM_ARRAY_TASK_ID="2",
                    SLURM_ARRAY_TASK_COUNT="3")
    e = slm.mailprog_event("Slurm Array Task Job_id=303_2 (305) Name=a Failed", "", task)
    assert (e["job_id"], e["array_job_id"], e["array_task_id"], e["array_task_count"]) == \
        ("303_2", "303", "2", 3)
    summary = call_env(SLURM_JOB_ID="303", SLURM_ARRAY_JOB_ID="303", SLURM_ARRAY_TASK_ID="3",
                       SLURM_JOB_MAIL_TYPE="Failed", SLURM_JOB_STATE="COMPLETED",
                       SLURM_JOB_EXIT_CODE_MIN="0", SLURM_JOB_EXIT_CODE_MAX="2",
                       SLURM_JOB_EXIT_CODE2="0:0")
    e = slm.mailprog_event("Slurm Array Summary Job_id=303_* (303) Name=a Failed, Mixed, "
                           "ExitCode [0-2]", "", summary)
    # the summary carries the last task's own state: the array's is in the exit codes
    assert (e["job_id"], e["status"], e["exit_code"]) == ("303", "FAILED", 2)
    assert "array_job_id" not in e and "0 to 2" in e["message"]


@pytest.mark.parametrize("recipient,kept", [
    ("alice@example.org", ["mailto:alice@example.org"]),
    ("ntfy:topic-1", ["https://ntfy.sh/topic-1"]),
    ("a@b.c,https://hooks.example.org/x", ["mailto:a@b.c", "https://hooks.example.org/x"]),
    ("alice", []),                              # a user name: no MailDomain, no address
    ("x;touch /tmp/pwned $(id)", []),           # data, never a shell's
    ("--flush", []),
])
def test_the_recipient_chooses_the_destinations_by_form_only(recipient, kept):
    assert [d.url for d in slm.mailprog_recipients(recipient)] == kept


def test_output_tail_only_from_the_job_owners_own_file(tmp_path):
    """MailProg runs as SlurmUser: a user's -o naming a file SlurmUser may read (the site
    configuration, with its token) must never put that file in the user's notice."""
    out = tmp_path / "ok-300.out"
    out.write_text("line 1\nthe error\n")
    mine = os.stat(str(out)).st_uid
    env = call_env(SLURM_JOB_STDOUT=str(tmp_path / "%x-%j.out"), SLURM_JOB_UID=str(mine + 1))
    assert slm.mailprog_output_tail(env, 20) is None          # not the job owner's
    os.symlink(str(out), str(tmp_path / "link-300.out"))
    env = call_env(SLURM_JOB_STDOUT=str(tmp_path / "link-%j.out"), SLURM_JOB_UID="1000")
    assert slm.mailprog_output_tail(env, 20) is None          # never through a link
    os.mkfifo(str(tmp_path / "fifo-300.out"))
    env = call_env(SLURM_JOB_STDOUT=str(tmp_path / "fifo-%j.out"), SLURM_JOB_UID=str(mine))
    assert slm.mailprog_output_tail(env, 20) is None          # only a regular file
    if mine != 0:
        env = call_env(SLURM_JOB_STDOUT="%x-%j.out", SLURM_JOB_WORK_DIR=str(tmp_path),
                       SLURM_JOB_UID=str(mine))
        assert slm.mailprog_output_tail(env, 20) == "line 1\nthe error"


def acl(*entries):
    """A POSIX ACL's bytes (system.posix_acl_access): (tag, perm, id) entries."""
    import struct
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


def grant_read(path, uid=None, gid=None):
    """setfacl -m u:UID:r (or g:GID:r) on a file of mode 600; skips where ACLs are off."""
    entries = [(0x01, 6, 0xFFFFFFFF)]
    if uid is not None:
        entries.append((0x02, 4, uid))
    entries.append((0x04, 0, 0xFFFFFFFF))
    if gid is not None:
        entries.append((0x08, 4, gid))
    entries += [(0x10, 4, 0xFFFFFFFF), (0x20, 0, 0xFFFFFFFF)]
    try:
        os.setxattr(str(path), "system.posix_acl_access", acl(*entries))
    except OSError as e:
        pytest.skip("no POSIX ACLs here (%s)" % e)


def users_config(home, text, mode=0o600, owner=None):
    (home / ".slm").mkdir(parents=True, exist_ok=True)
    config = home / ".slm" / "config"
    config.write_text(text)
    os.chmod(str(config), mode)
    if owner is not None:
        os.chown(str(config), owner, -1)
    return config


def test_with_the_sites_leave_a_users_own_config_names_the_default_destination(tmp_path):
    """SLM_MAILPROG_USER_CONFIG=yes: a job whose --mail-user is Slurm's default (the
    user's name) goes to its owner's SLM_WEBHOOK, read with SlurmUser's rights from the
    owner's own private file only; what keeps it from being used is said in the history."""
    owner = 4321 if os.geteuid() == 0 else os.geteuid()
    env = call_env(SLURM_JOB_UID=str(owner))
    console = slm.Console()
    home = tmp_path / "home"
    assert slm.mailprog_user_destinations(env, console, str(home)) == (None, None, None)
    config = users_config(home, "SLM_WEBHOOK=ntfy://ntfy.example.org/alice-topic\n"
                          "SLM_WEBHOOK_FORMAT=ntfy\n", owner=owner)
    assert slm.mailprog_user_destinations(env, console, str(home)) == \
        ("ntfy://ntfy.example.org/alice-topic", "ntfy", None)
    # a secret others may read is no secret
    os.chmod(str(config), 0o644)
    assert "chmod 600" in slm.mailprog_user_destinations(env, console, str(home))[2]
    os.chmod(str(config), 0o600)
    # the reader the user chose (setfacl -m u:slurm:r) keeps it private; a group does not
    grant_read(config, uid=64030)
    assert os.stat(str(config)).st_mode & 0o777 == 0o640          # the mask shows there
    assert slm.mailprog_user_destinations(env, console, str(home))[0].startswith("ntfy://")
    grant_read(config, gid=100)
    assert slm.mailprog_user_destinations(env, console, str(home))[0] is None
    # never another user's file, never through a link, never root's
    other = dict(env, SLURM_JOB_UID=str(owner + 1))
    assert "not the user's own" in slm.mailprog_user_destinations(other, console,
                                                                   str(home))[2]
    config.unlink()
    os.symlink(str(users_config(tmp_path / "elsewhere", "SLM_WEBHOOK=ntfy:x\n",
                                owner=owner)), str(config))
    assert "not the user's own" in slm.mailprog_user_destinations(env, console,
                                                                   str(home))[2]
    root = dict(env, SLURM_JOB_UID="0")
    assert slm.mailprog_user_destinations(root, console, str(home)) == (None, None, None)


def test_a_users_own_acl_for_slurmuser_keeps_their_config_private_to_slm_too(tmp_path):
    """The wrapper reads the same file: a read grant to one named user (site mode's
    SlurmUser) still counts as private there, so SLM_WEBHOOK is taken."""
    config = users_config(tmp_path, "SLM_WEBHOOK=https://hooks.example.org/x\n")
    grant_read(config, uid=64030)
    console = slm.Console()
    settings = slm.SettingsFile(str(config), console)
    assert settings.values.get("SLM_WEBHOOK") == "https://hooks.example.org/x"
    grant_read(config, gid=100)
    assert slm.SettingsFile(str(config), console).refused == ["SLM_WEBHOOK"]


def test_the_site_file_is_for_slurmusers_group_alone_acls_included(tmp_path):
    """The site file holds the admin token: mode 640 for SlurmUser's group, and no ACL
    may add a reader (its group bits would then show only the mask); an unknown
    SLM_MAILPROG_USER_CONFIG value is said and taken as no."""
    site = tmp_path / "site.conf"
    site.write_text("SLM_API_TOKEN=%s\nSLM_MAILPROG_USER_CONFIG=on\n" % ADMIN)
    os.chmod(str(site), 0o640)
    console = slm.Console()
    assert slm.SettingsFile(str(site), console, site=True,
                            extra_keys=slm.SITE_KEYS).values.get("SLM_API_TOKEN") == ADMIN
    grant_read(site, uid=4321)
    assert slm.SettingsFile(str(site), console, site=True,
                            extra_keys=slm.SITE_KEYS).refused == ["SLM_API_TOKEN"]
    r = subprocess.run([MAIN_PYTHON, SLM, "mailprog", "--config", str(site), "--flush"],
                       env={"PATH": os.environ["PATH"]}, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    assert b"SLM_MAILPROG_USER_CONFIG=on" in r.stderr and b"taken as no" in r.stderr


@pytest.mark.parametrize("recipient,mail_domain,default", [
    ("alice", None, True),                        # Slurm's default without MailDomain
    ("", None, True),
    ("alice@uni.example", "uni.example", True),   # ... and with it
    ("alice@gmail.example", "uni.example", False),   # an address the user chose
    ("bob", None, False),
    ("ntfy:alice", None, False),
])
def test_slurms_default_recipient_is_the_user_having_chosen_none(tmp_path, recipient,
                                                                  mail_domain, default):
    conf = tmp_path / "slurm.conf"
    conf.write_text("ClusterName=c1\n" + ("MailDomain=%s\n" % mail_domain
                                          if mail_domain else ""))
    env = call_env(SLURM_CONF=str(conf))
    assert slm.mailprog_is_default_recipient(recipient, env) is default


@pytest.fixture
def site(tmp_path):
    """A site: its configuration (root's, 0640), its spool, a service that relays."""
    class Site(object):
        pass
    s = Site()
    s.hook = HttpSink()
    s.spool = tmp_path / "site-spool"
    s.config = tmp_path / "site.conf"
    s.db = str(tmp_path / "site.db")
    s.tmp = tmp_path
    s.service = None
    yield s
    if s.service is not None:
        s.service.stop()
    s.hook.close()


def start_site_service(site, start=True):
    site.service = ServiceProcess(site.db, site.tmp, token=ADMIN,
                                  env={"SLM_MAILPROG_HOLD": "0.5"})
    return site.service.start() if start else site.service


def write_site_config(site, url, mode=0o640):
    site.config.write_text("SLM_API_URL=%s\nSLM_API_TOKEN=%s\nSLM_SPOOL_DIR=%s\n"
                           % (url, ADMIN, site.spool))
    os.chmod(str(site.config), mode)


def mailprog(site, recipient, env, timeout=30):
    """Call it as slurmscriptd does: one pipe for stdout and stderr, read to EOF (a
    detached deliverer that kept it open would hold this call for its whole life)."""
    return subprocess.run([MAIN_PYTHON, SLM, "mailprog", "--config", str(site.config), "-s",
                           "Slurm Job_id=%s Name=ok Failed" % env["SLURM_JOB_ID"], recipient],
                          env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, cwd=str(site.tmp), timeout=timeout)


def test_a_call_returns_at_once_with_the_service_down_and_is_delivered_later(site):
    svc = start_site_service(site, start=False)     # its port chosen, nothing listening
    write_site_config(site, svc.url)
    r = mailprog(site, site.hook.hook_url, call_env())
    assert (r.returncode, r.stdout) == (0, b"")
    # journalled before it returned
    pending = os.listdir(str(site.spool / "pending"))
    assert len(pending) == 1, pending
    # the service comes up: the detached deliverer, still retrying, delivers it
    svc.start()
    job = site.service.wait_job(lambda j: j["status"] == "FAILED", "300", timeout=60)
    assert job["exit_code"] == 3 and job["user"] == "alice"
    events = site.service.events("300")
    # Slurm's word through its mail: via mailprog (a wrapper's own word would win)
    assert [(e["status"], e.get("via")) for e in events] == [("FAILED", "mailprog")]
    site.hook.wait_status("FAILED", 30)
    await_true(lambda: not os.listdir(str(site.spool / "pending")), 30, "spool drained")
    site.hook.quiet(1.0)
    assert [b.get("status") for b in site.hook.events] == ["FAILED"]


def test_a_burst_of_calls_is_delivered_once_each(site):
    svc = start_site_service(site)
    write_site_config(site, svc.url)
    jobs = [str(400 + n) for n in range(12)]
    procs = [subprocess.Popen([MAIN_PYTHON, SLM, "mailprog", "--config", str(site.config),
                               "-s", "Slurm Job_id=%s Ended" % j, site.hook.hook_url],
                              env=call_env(SLURM_JOB_ID=j, SLURM_JOB_MAIL_TYPE="Ended",
                                           SLURM_JOB_STATE="COMPLETED",
                                           SLURM_JOB_EXIT_CODE2="0:0"),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for j in jobs]
    assert [p.communicate(timeout=60)[0] for p in procs] == [b""] * len(jobs)
    assert [p.returncode for p in procs] == [0] * len(jobs)
    site.hook.wait_for(lambda evs: len(evs) >= len(jobs), 60)
    await_true(lambda: not os.listdir(str(site.spool / "pending")), 30, "spool drained")
    site.hook.quiet(1.0)
    assert sorted(b["job_id"] for b in site.hook.events) == sorted(jobs)


def test_the_site_token_is_refused_from_a_file_others_may_read(site):
    svc = start_site_service(site)
    write_site_config(site, svc.url, mode=0o644)
    r = mailprog(site, "ntfy:t", call_env())
    assert r.returncode == 0
    # no token: the service refuses the event, which stays journalled (never lost)
    out = subprocess.run([MAIN_PYTHON, SLM, "mailprog", "--config", str(site.config),
                          "--flush", "--max-time", "5"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env={"PATH": os.environ["PATH"]})
    assert b"ignoring SLM_API_TOKEN" in out.stderr and b"chmod 640" in out.stderr
    assert ADMIN.encode() not in out.stdout + out.stderr
    assert svc.job("300") is None


@pytest.mark.parametrize("argv,env,says", [
    (["--config", "/nonexistent/site.conf", "-s", "x", "y"], call_env(),
     "cannot read the site configuration"),
    (["--config", "SITE", "-s", "x", "y"], {"PATH": "/usr/bin:/bin"}, "no SLURM_JOB_ID"),
])
def test_a_call_that_cannot_be_journalled_says_one_line_and_fails(site, argv, env, says):
    write_site_config(site, "http://127.0.0.1:9")
    argv = [str(site.config) if a == "SITE" else a for a in argv]
    r = subprocess.run([MAIN_PYTHON, SLM, "mailprog"] + argv, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    lines = r.stdout.decode().splitlines()
    assert r.returncode == 1 and len(lines) == 1 and says in lines[0], lines


def test_an_unwritable_spool_loses_the_call_with_one_line_for_slurmctlds_log(site):
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    write_site_config(site, "http://127.0.0.1:9")
    site.spool.mkdir(mode=0o500)
    r = mailprog(site, "ntfy:t", call_env())
    assert r.returncode == 1 and b"cannot journal job 300's FAILED" in r.stdout


def test_a_job_its_user_also_wraps_is_told_of_once_by_its_wrapper(site):
    """Slurm's mail and the job's own wrapper tell of the same job (its id on its
    cluster): one RUNNING and one COMPLETED notice, the wrapper's (it sees more); the
    mail's notices, held SLM_MAILPROG_HOLD for the wrapper's first word, are not sent."""
    from scaffold import event
    site.service = ServiceProcess(site.db, site.tmp, token=ADMIN,
                                  env={"SLM_MAILPROG_HOLD": "3"}).start()
    svc = site.service
    write_site_config(site, svc.url)
    relay = {"to": [{"url": site.hook.hook_url, "format": "json"}], "send": True}
    began = call_env(SLURM_JOB_ID="600", SLURM_JOB_MAIL_TYPE="Began",
                     SLURM_JOB_STATE="RUNNING", SLURM_JOB_EXIT_CODE2=None)
    assert mailprog(site, site.hook.hook_url, began).returncode == 0
    svc.post(dict(event("600", "RUNNING", user="alice", cluster="c1"), relay=relay))
    ended = call_env(SLURM_JOB_ID="600", SLURM_JOB_MAIL_TYPE="Ended",
                     SLURM_JOB_STATE="COMPLETED", SLURM_JOB_EXIT_CODE2="0:0")
    svc.post(dict(event("600", "COMPLETED", seq=2, user="alice", cluster="c1",
                        exit_code=0), relay=relay))
    assert mailprog(site, site.hook.hook_url, ended).returncode == 0
    svc.wait_job(lambda j: j["event_count"] == 4, "600", timeout=60)
    site.hook.wait_for(lambda evs: [e["status"] for e in evs] == ["RUNNING", "COMPLETED"])
    site.hook.quiet(4.0)       # past the hold: the mail's notices never follow
    assert [(e["status"], e.get("via")) for e in site.hook.events] == \
        [("RUNNING", None), ("COMPLETED", None)]


def test_a_mail_user_outside_the_allow_list_is_refused_and_said(site):
    svc = start_site_service(site)
    write_site_config(site, svc.url)
    r = mailprog(site, "https://hooks.example.org/x", call_env(SLURM_JOB_ID="700"))
    assert r.returncode == 0
    rows = svc.wait_notifications("700", lambda rows: rows and all(
        r["state"] == "refused" for r in rows), timeout=60)
    assert "SLM_RELAY_ALLOW" in rows[0]["last_error"], rows
    svc.wait_job(lambda j: j["status"] == "FAILED", "700")    # the history has it all the same
    assert site.hook.quiet(1.0) == 0


def test_a_start_mailed_after_the_end_is_history_not_news(site):
    """Slurm mails from parallel threads in no fixed order (a short job's Ended may
    come before its Began; TIMEOUT before "Reached 90%"): what is older than the job's
    end is stored, not notified."""
    svc = start_site_service(site)
    write_site_config(site, svc.url)
    ended = call_env(SLURM_JOB_ID="800", SLURM_JOB_MAIL_TYPE="Ended",
                     SLURM_JOB_STATE="COMPLETED", SLURM_JOB_EXIT_CODE2="0:0")
    assert mailprog(site, site.hook.hook_url, ended).returncode == 0
    svc.wait_job(lambda j: j["status"] == "COMPLETED", "800")
    for mail_type in ("Began", "Reached 90% of time limit"):
        late = call_env(SLURM_JOB_ID="800", SLURM_JOB_MAIL_TYPE=mail_type,
                        SLURM_JOB_STATE="RUNNING", SLURM_JOB_EXIT_CODE2=None)
        assert mailprog(site, site.hook.hook_url, late).returncode == 0
    svc.wait_job(lambda j: j["event_count"] == 3, "800", timeout=60)
    site.hook.wait_status("COMPLETED", 30)
    site.hook.quiet(1.5)
    assert [e["status"] for e in site.hook.events] == ["COMPLETED"]
