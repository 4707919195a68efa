"""The query commands (status, list, events) and doctor, against the real service.

One slm_api.py subprocess per module is filled by POSTing events directly:
several users, statuses and partitions, an array job 7_1/7_2, a unicode job
name and one that looks like SQL injection.  The commands' answers are
compared with what the API itself says.  Times are shown in local time, so
the environment says TZ=UTC.
"""
import functools
import json
import os
import re
import subprocess

import pytest

import scaffold
from conftest import MAIN_PYTHON, SLM, run_slm
from scaffold import HttpSink, ServiceProcess

UNICODE_NAME = "数据-ünï-🚀"
INJECTION_NAME = "x'; DROP TABLE slurm_jobs; --"
TOKEN = "tok-query-Secret-91c3e0"
WRONG = "tok-query-Wrong-04d7aa"

# the one event builder, with this file's node: ev(job_id, status, when, seq, **fields)
ev = functools.partial(scaffold.event, host="node1", slm_version="0.1.0")


def job_events(job_id, day, statuses, **fields):
    """One event per status, a minute apart, on 2026-11-<day> at 10:00 UTC."""
    out = []
    for i, status in enumerate(statuses):
        extra = dict(fields)
        if isinstance(status, tuple):
            status, more = status
            extra.update(more)
        out.append(ev(job_id, status, "2026-11-%02dT10:%02d:00.000Z" % (day, i), i + 1, **extra))
    return out


def fill(service):
    events = []
    events += job_events("101", 20, ["RUNNING"], user="alice", job_name="train",
                         partition="gpu", nodelist="gpu[1-2]")
    events += job_events("102", 21, ["RUNNING", ("COMPLETED", {"exit_code": 0})],
                         user="alice", job_name="prep", partition="cpu")
    events += job_events("103", 22, ["RUNNING", "RUNNING", "RUNNING", "RUNNING", "RUNNING",
                                     ("FAILED", {"exit_code": 2, "message": "boom"})],
                         user="alice", job_name="train", partition="cpu", nodelist="cpu7")
    events += job_events("104", 23, ["RUNNING", ("TERMINATING", {"signal": "SIGTERM"}),
                                     ("TIMEOUT", {"signal": "SIGTERM", "reason": "time_limit"})],
                         user="bob", job_name="sim", partition="gpu")
    events += job_events("105", 24, ["SUBMITTED"], user="bob", job_name="sim", partition="cpu")
    events += job_events("7_1", 25, ["RUNNING", ("COMPLETED", {"exit_code": 0})], user="alice",
                         job_name="arr", partition="gpu", array_job_id="7", array_task_id="1",
                         slurm_job_id="8")
    events += [ev("7_2", "RUNNING", "2026-11-25T11:00:00.000Z", 1, user="alice", job_name="arr",
                  partition="gpu", array_job_id="7", array_task_id="2", slurm_job_id="9")]
    events += job_events("201", 26, ["RUNNING"], user="carol", job_name=UNICODE_NAME,
                         partition="gpu")
    events += job_events("202", 27, ["RUNNING", ("FAILED", {"exit_code": 1})], user="carol",
                         job_name=INJECTION_NAME, partition="cpu")
    events += job_events("300", 28, [
        "RUNNING", ("PAUSED", {"signal": "SIGTSTP"}), ("RESUMED", {"signal": "SIGCONT"}),
        ("SIGNALED", {"signal": "SIGUSR1"}),
        ("TERMINATING", {"signal": "SIGTERM", "reason": "cancelled"}),
        ("CANCELLED", {"exit_code": 143, "reason": "cancelled"})],
        user="alice", job_name="life", partition="gpu", host="node9")
    status, body = service.post({"events": events})
    assert status == 200 and body == {"accepted": len(events), "duplicates": 0}, body


ALICE = ["300", "7_2", "7_1", "103", "102", "101"]          # most recently active first
EVERYONE = ["300", "202", "201", "7_2", "7_1", "105", "104", "103", "102", "101"]


def module_service(tmp_path_factory, name, filler=None):
    """A service process for a module's tests, filled by filler(service)."""
    where = tmp_path_factory.mktemp(name)
    s = ServiceProcess(where / "slm.db", where).start()
    try:
        if filler:
            filler(s)
        yield s
    finally:
        s.kill()


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    yield from module_service(tmp_path_factory, "query", fill)


@pytest.fixture
def qenv(env, svc):
    env["SLM_API_URL"] = svc.url
    env["USER"] = "alice"
    env.pop("LOGNAME", None)
    env["TZ"] = "UTC"
    return env


COLUMNS = ("JOBID", "NAME", "USER", "STATE", "PARTITION", "NODELIST", "TIME", "EXIT",
           "LAST EVENT")


def parse_table(text, headers=COLUMNS):
    """Rows of a table as dicts, cut at the header's column positions."""
    lines = text.rstrip("\n").split("\n")
    header = lines[0]
    starts, at = [], 0
    for name in headers:
        at = header.index(name, at)
        starts.append(at)
    assert header.split() == " ".join(headers).split(), header
    rows = []
    for line in lines[1:]:
        cells = [line[a:b].strip() for a, b in zip(starts, starts[1:] + [None])]
        rows.append(dict(zip(headers, cells)))
    return rows


def ok(r):
    assert r.returncode == 0, r.stderr
    assert b"Traceback" not in r.stderr
    return r.stdout.decode("utf-8")


def one_error_line(r, code):
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.decode("utf-8", "replace").splitlines()
    assert len(lines) == 1 and lines[0].startswith("slm: "), lines
    assert r.stdout == b""
    return lines[0]


# ---------------------------------------------------------------------------
# status
# ---------------------------------------------------------------------------


def test_status_table(py, qenv):
    r = run_slm(py, ["status", "103"], qenv)
    out = ok(r)
    assert r.stderr == b""
    lines = out.splitlines()
    assert lines[-1] == "reason: boom"
    rows = parse_table("\n".join(lines[:-1]))
    assert rows == [{"JOBID": "103", "NAME": "train", "USER": "alice", "STATE": "FAILED",
                     "PARTITION": "cpu", "NODELIST": "cpu7", "TIME": "5m00s", "EXIT": "2",
                     "LAST EVENT": "2026-11-22 10:05:00"}]


def test_status_json_matches_the_api(py, qenv, svc):
    data = json.loads(ok(run_slm(py, ["status", "7_1", "--json"], qenv)))
    assert data == svc.job("7_1")
    assert (data["array_job_id"], data["array_task_id"], data["status"]) == \
        ("7", "1", "COMPLETED")


def test_status_signal_ending_and_array_task(qenv):
    rows = parse_table(ok(run_slm(MAIN_PYTHON, ["status", "104"], qenv)).split("\nreason")[0])
    assert (rows[0]["STATE"], rows[0]["EXIT"], rows[0]["USER"]) == ("TIMEOUT", "SIGTERM", "bob")
    rows = parse_table(ok(run_slm(MAIN_PYTHON, ["status", "7_2"], qenv)))
    assert (rows[0]["JOBID"], rows[0]["STATE"], rows[0]["EXIT"]) == ("7_2", "RUNNING", "-")


def test_status_of_odd_names(qenv, svc):
    rows = parse_table(ok(run_slm(MAIN_PYTHON, ["status", "201"], qenv)))
    assert rows[0]["NAME"] == UNICODE_NAME
    rows = parse_table(ok(run_slm(MAIN_PYTHON, ["status", "202"], qenv)))
    assert rows[0]["NAME"] == INJECTION_NAME[:23] + "~"       # long names are cut, marked
    data = json.loads(ok(run_slm(MAIN_PYTHON, ["status", "202", "--json"], qenv)))
    assert data["job_name"] == INJECTION_NAME
    # and the table is still there, whole
    status, body = svc.get("/api/v1/jobs", {"limit": 1000})
    assert status == 200 and body["total"] == len(EVERYONE)


def test_unicode_name_in_a_c_locale(py, qenv, request):
    """Batch jobs and cron often run with LANG=C: the output must still be printed."""
    qenv["LC_ALL"] = "C"
    qenv["LANG"] = "C"
    qenv.pop("PYTHONIOENCODING", None)
    qenv.pop("PYTHONUTF8", None)
    for args in (["status", "201"], ["status", "201", "--json"], ["list", "--all"]):
        r = run_slm(py, args, qenv)
        assert r.returncode == 0 and b"Traceback" not in r.stderr, (args, r.stderr)
        assert UNICODE_NAME.encode("utf-8") in r.stdout or \
            UNICODE_NAME.encode("ascii", "backslashreplace") in r.stdout, (args, r.stdout)


def test_status_unknown_job_is_exit_1(py, qenv):
    line = one_error_line(run_slm(py, ["status", "999999"], qenv), 1)
    assert "unknown job" in line and "999999" in line


def test_a_busy_service_is_waited_out_as_it_asks(env):
    """429 with Retry-After (a token's long-polls are bounded): asked again,
    not a failure."""
    busy = HttpSink(mode="404")
    busy.script = ["429", "429"]
    try:
        env["SLM_API_URL"] = busy.url
        line = one_error_line(run_slm(MAIN_PYTHON, ["status", "4242"], env), 1)
        assert "unknown job" in line
        # then, no such id: is it a job's name?
        assert [(path.split("?")[0], status) for path, _, _, status in busy.requests] == \
            [("/api/v1/jobs/4242", 429)] * 2 + [("/api/v1/jobs/4242", 404),
                                                ("/api/v1/search", 404)]
    finally:
        busy.close()


# ---------------------------------------------------------------------------
# list
# ---------------------------------------------------------------------------


def job_ids(out):
    return [row["JOBID"] for row in parse_table(out)]


def test_list_defaults_to_the_current_user(py, qenv, svc):
    r = run_slm(py, ["list"], qenv)
    rows = parse_table(ok(r))
    assert [row["JOBID"] for row in rows] == ALICE
    assert {row["USER"] for row in rows} == {"alice"}
    assert [j["job_id"] for j in svc.jobs(user="alice")] == ALICE
    assert r.stderr == b""
    # --mine says the same; another user sees their own
    assert job_ids(ok(run_slm(py, ["list", "--mine"], qenv))) == ALICE
    qenv["USER"] = "bob"
    assert job_ids(ok(run_slm(py, ["list"], qenv))) == ["105", "104"]


def test_list_json_is_the_apis_answer(py, qenv, svc):
    data = json.loads(ok(run_slm(py, ["list", "--json"], qenv)))
    status, api = svc.get("/api/v1/jobs", {"user": "alice", "limit": 50})
    assert status == 200
    assert data == api
    assert data["total"] == len(ALICE)


def test_list_all_and_user(qenv, svc):
    assert job_ids(ok(run_slm(MAIN_PYTHON, ["list", "--all"], qenv))) == EVERYONE
    assert [j["job_id"] for j in svc.jobs()] == EVERYONE
    assert job_ids(ok(run_slm(MAIN_PYTHON, ["list", "--user", "carol"], qenv))) == ["202", "201"]
    out = ok(run_slm(MAIN_PYTHON, ["list", "--user", "nobody"], qenv))
    assert out.splitlines()[0].split() == " ".join(COLUMNS).split()
    assert job_ids(out) == []


@pytest.mark.parametrize("args,expected", [
    (["--status", "FAILED,COMPLETED"], ["202", "7_1", "103", "102"]),
    (["--status", "failed"], ["202", "103"]),
    (["-t", "RUNNING"], ["201", "7_2", "101"]),
    (["--partition", "cpu"], ["202", "105", "103", "102"]),
    (["--name", "train"], ["103", "101"]),
    (["--name", UNICODE_NAME], ["201"]),
    (["--name", INJECTION_NAME], ["202"]),
    (["--name", "x' OR '1'='1"], []),
    (["--since", "2026-11-25"], ["300", "202", "201", "7_2", "7_1"]),
    (["--until", "2026-11-21"], ["101"]),
    (["--since", "2026-11-22", "--until", "2026-11-24", "-p", "gpu"], ["104"]),
])
def test_list_filters(qenv, args, expected):
    assert job_ids(ok(run_slm(MAIN_PYTHON, ["list", "--all"] + args, qenv))) == expected


def test_list_limit(qenv):
    r = run_slm(MAIN_PYTHON, ["list", "--limit", "2"], qenv)
    assert job_ids(ok(r)) == ALICE[:2]
    lines = r.stderr.decode().splitlines()
    assert lines == ["slm: 2 of %d jobs shown (--limit, --offset for more)" % len(ALICE)]
    r = run_slm(MAIN_PYTHON, ["list", "--all", "--limit", "3", "--json"], qenv)
    data = json.loads(ok(r))
    assert [j["job_id"] for j in data["jobs"]] == EVERYONE[:3]
    assert data["total"] == len(EVERYONE)


def test_list_injection_left_the_database_alone(qenv, svc):
    run_slm(MAIN_PYTHON, ["list", "--all", "--name", INJECTION_NAME, "--user", "x"], qenv)
    ok(run_slm(MAIN_PYTHON, ["list", "--all", "--name", INJECTION_NAME], qenv))
    assert [j["job_id"] for j in svc.jobs()] == EVERYONE
    assert svc.job("202")["job_name"] == INJECTION_NAME


# ---------------------------------------------------------------------------
# events
# ---------------------------------------------------------------------------


def test_events_table_in_order(py, qenv):
    out = ok(run_slm(py, ["events", "300"], qenv))
    rows = parse_table(out, ("TIME", "STATUS", "HOST", "DETAIL"))
    assert [r["STATUS"] for r in rows] == ["RUNNING", "PAUSED", "RESUMED", "SIGNALED",
                                           "TERMINATING", "CANCELLED"]
    assert [r["TIME"] for r in rows] == ["2026-11-28 10:%02d:00" % i for i in range(6)]
    assert {r["HOST"] for r in rows} == {"node9"}
    assert rows[0]["DETAIL"] == "-"
    assert rows[3]["DETAIL"] == "signal=SIGUSR1"
    assert rows[4]["DETAIL"] == "signal=SIGTERM reason=cancelled"
    assert rows[5]["DETAIL"] == "exit_code=143 reason=cancelled"


def test_events_json_is_the_apis_answer(qenv, svc):
    data = json.loads(ok(run_slm(MAIN_PYTHON, ["events", "103", "--json"], qenv)))
    assert data == {"events": svc.events("103")}
    assert [e["seq"] for e in data["events"]] == [1, 2, 3, 4, 5, 6]
    data = json.loads(ok(run_slm(MAIN_PYTHON, ["events", "7_2", "--json"], qenv)))
    assert [(e["job_id"], e["status"]) for e in data["events"]] == [("7_2", "RUNNING")]


def test_events_unknown_job_is_exit_1(qenv):
    line = one_error_line(run_slm(MAIN_PYTHON, ["events", "nope-42"], qenv), 1)
    assert "unknown job: nope-42" in line


# ---------------------------------------------------------------------------
# When the service cannot answer, or will not
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["status", "101"], ["list"], ["events", "101"]])
def test_service_down_is_exit_3_naming_the_url(qenv, refused_url, args):
    qenv["SLM_API_URL"] = refused_url
    line = one_error_line(run_slm(MAIN_PYTHON, args, qenv), 3)
    assert "SLM_API_URL" in line and refused_url in line


def test_service_down_under_every_python(py, qenv, refused_url):
    qenv["SLM_API_URL"] = refused_url
    line = one_error_line(run_slm(py, ["list"], qenv), 3)
    assert "SLM_API_URL" in line


@pytest.mark.parametrize("args", [["status", "101"], ["list", "--all"], ["events", "101"]])
def test_no_service_url_is_exit_3_with_a_message(qenv, args):
    del qenv["SLM_API_URL"]
    line = one_error_line(run_slm(MAIN_PYTHON, args, qenv), 3)
    assert "SLM_API_URL is not set" in line


@pytest.fixture
def token_svc(tmp_path):
    s = ServiceProcess(tmp_path / "slm.db", tmp_path, token=TOKEN).start()
    status, body = s.post({"events": job_events("501", 29, ["RUNNING"], user="alice",
                                                job_name="guarded")})
    assert status == 200, body
    yield s
    s.kill()


@pytest.mark.parametrize("args", [["status", "501"], ["list"], ["events", "501"]])
def test_wrong_token_is_exit_1_and_never_printed(qenv, token_svc, args):
    qenv["SLM_API_URL"] = token_svc.url
    qenv["SLM_API_TOKEN"] = WRONG
    line = one_error_line(run_slm(MAIN_PYTHON, ["-v"] + args, qenv), 1)
    assert "SLM_API_TOKEN is wrong" in line
    assert WRONG not in line and TOKEN not in line
    del qenv["SLM_API_TOKEN"]
    line = one_error_line(run_slm(MAIN_PYTHON, args, qenv), 1)
    assert "SLM_API_TOKEN is not set" in line
    qenv["SLM_API_TOKEN"] = TOKEN
    r = run_slm(MAIN_PYTHON, args, qenv)
    assert ("501" in ok(r) or "RUNNING" in ok(r)) and TOKEN.encode() not in r.stdout + r.stderr
    assert TOKEN not in token_svc.output() and WRONG not in token_svc.output()


# ---------------------------------------------------------------------------
# Usage
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["list", "--limit", "x"], ["status"], ["events"], ["list", "--all", "--user", "bob"],
    ["list", "--bogus"], ["status", "1", "2"], ["list", "--limit", "-3"],
])
def test_bad_arguments_are_one_line_exit_2(qenv, args):
    line = one_error_line(run_slm(MAIN_PYTHON, args, qenv), 2)
    assert "--help" in line


@pytest.mark.parametrize("args", [["list", "--since", "yesterday"],
                                  ["list", "--status", "BOGUS"],
                                  ["list", "--until", "2026-11-30T05:00:00+01:00"]])
def test_filters_the_service_refuses_are_usage_errors(qenv, args):
    """The service judges filter values; its 400 is the user's bad usage: exit 2."""
    one_error_line(run_slm(MAIN_PYTHON, args, qenv), 2)


@pytest.mark.parametrize("args", [["list", "--limit", "0"], ["list", "--limit", "5000"]])
def test_limit_out_of_the_services_range_is_usage(qenv, args):
    one_error_line(run_slm(MAIN_PYTHON, args, qenv), 2)


@pytest.mark.parametrize("args", [["status", "--help"], ["list", "--help"],
                                  ["events", "--help"], ["watch", "--help"], ["doctor", "--help"]])
def test_query_help(qenv, args):
    out = ok(run_slm(MAIN_PYTHON, args, qenv))
    assert "usage:" in out and "examples:" in out


# ---------------------------------------------------------------------------
# A reader that leaves early: slm list | head -1
# ---------------------------------------------------------------------------


@pytest.fixture
def crowded(tmp_path):
    s = ServiceProcess(tmp_path / "slm.db", tmp_path).start()
    events = [ev("bulk-%04d" % i, "RUNNING", "2026-11-29T%02d:%02d:%02d.000Z"
                 % (i // 3600, i // 60 % 60, i % 60), 1, user="alice",
                 job_name="a-rather-long-job-name", partition="gpu",
                 nodelist="node[%d-%d]" % (i, i + 9)) for i in range(1000)]
    status, body = s.post({"events": events})
    assert status == 200 and body["accepted"] == 1000, body
    yield s
    s.kill()


def test_list_into_head_has_no_traceback(qenv, crowded):
    qenv["SLM_API_URL"] = crowded.url
    qenv.pop("PYTHONUNBUFFERED", None)     # stdout buffered, as in real use
    slm = subprocess.Popen([MAIN_PYTHON, SLM, "list", "--limit", "1000"], env=qenv,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = subprocess.Popen(["head", "-1"], stdin=slm.stdout, stdout=subprocess.PIPE)
    slm.stdout.close()
    first, _ = head.communicate(timeout=30)
    err = slm.stderr.read()
    code = slm.wait(timeout=30)
    assert first.decode().split() == " ".join(COLUMNS).split()
    assert b"Traceback" not in err and b"BrokenPipe" not in err and b"Exception" not in err, err
    assert code in (0, 1), (code, err)


@pytest.mark.parametrize("args", [["list"], ["status", "101"], ["events", "300"]])
def test_reader_gone_before_any_output(qenv, args):
    """Like `slm list | true`: stdout is a pipe nobody reads any more (a short output)."""
    qenv.pop("PYTHONUNBUFFERED", None)     # stdout buffered, as in real use
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.Popen([MAIN_PYTHON, SLM] + args, env=qenv, stdout=write_end,
                                stderr=subprocess.PIPE)
    finally:
        os.close(write_end)
    _, err = proc.communicate(timeout=30)
    assert b"Traceback" not in err and b"Exception" not in err and b"BrokenPipe" not in err, err
    assert proc.returncode in (0, 1), (proc.returncode, err)


# ---------------------------------------------------------------------------
# doctor
# ---------------------------------------------------------------------------

VERDICT = re.compile(r"(ok|info|FAIL)  +(\S+) +(\S.*)\Z")


def doctor(env, *args):
    r = run_slm(MAIN_PYTHON, ["doctor"] + list(args), env)
    out = r.stdout.decode("utf-8")
    assert b"Traceback" not in r.stderr
    verdicts = {}
    lines = out.splitlines()
    for line in lines[:-1]:
        m = VERDICT.match(line)
        if m:
            verdicts.setdefault(m.group(2), []).append((m.group(1), m.group(3)))
        else:
            assert re.match(r" {6,}-> ", line), line          # advice under a FAIL
    return r, verdicts, lines[-1]


def test_doctor_all_well(qenv, svc):
    r, verdicts, last = doctor(qenv)
    assert r.returncode == 0, r.stdout
    assert last == "all is well"
    assert [v for v, _ in verdicts["service"]] == ["ok"]
    assert svc.url in verdicts["service"][0][1]
    assert [v for v, _ in verdicts["python"]] == ["ok"]
    assert [v for v, _ in verdicts["spool"]] == ["ok"]
    assert [v for v, _ in verdicts["webhook"]] == ["info"]
    assert not any(v == "FAIL" for vs in verdicts.values() for v, _ in vs)


def test_doctor_service_unreachable(qenv, refused_url):
    qenv["SLM_API_URL"] = refused_url
    r, verdicts, last = doctor(qenv)
    assert r.returncode == 1
    assert verdicts["service"][0][0] == "FAIL"
    assert refused_url in verdicts["service"][0][1]
    assert last == "1 problem(s) found"


def test_doctor_wrong_token(qenv, token_svc):
    qenv["SLM_API_URL"] = token_svc.url
    qenv["SLM_API_TOKEN"] = WRONG
    r, verdicts, last = doctor(qenv)
    assert r.returncode == 1
    assert verdicts["service"][0][0] == "FAIL"
    assert "token" in verdicts["service"][0][1]
    assert WRONG.encode() not in r.stdout + r.stderr
    qenv["SLM_API_TOKEN"] = TOKEN
    r, verdicts, last = doctor(qenv)
    assert r.returncode == 0 and verdicts["service"][0][0] == "ok", r.stdout
    assert TOKEN.encode() not in r.stdout + r.stderr


@pytest.mark.parametrize("hook", ["htp:/nowhere", "http://", "http://host:port/x"])
def test_doctor_malformed_webhook(qenv, hook):
    qenv["SLM_WEBHOOK"] = hook
    r, verdicts, last = doctor(qenv)
    assert r.returncode == 1
    assert [v for v, _ in verdicts["webhook"]] == ["FAIL"]
    assert verdicts["service"][0][0] == "ok"


def test_doctor_send_test(qenv, sink):
    qenv["SLM_WEBHOOK"] = sink.url + "/hook/T0/B0/SECRETPART"
    r, verdicts, last = doctor(qenv, "--send-test")
    assert r.returncode == 0, r.stdout
    assert [v for v, _ in verdicts["webhook"]] == ["ok"]
    events = sink.wait_for(lambda evs: len(evs) >= 1)
    assert len(events) == 1 and len(sink.requests) == 1
    assert sink.requests[0][0] == "/hook/T0/B0/SECRETPART"
    assert events[0]["kind"] == "test" and events[0]["status"] == "MESSAGE"
    assert b"SECRETPART" not in r.stdout + r.stderr


def test_doctor_send_test_refused(qenv, sink):
    qenv["SLM_WEBHOOK"] = sink.url + "/hook"
    sink.statuses = [404]
    r, verdicts, last = doctor(qenv, "--send-test")
    assert r.returncode == 1
    assert [v for v, _ in verdicts["webhook"]] == ["FAIL"]


def test_doctor_spool_not_writable(qenv, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    qenv["SLM_SPOOL_DIR"] = str(blocker / "spool")
    r, verdicts, last = doctor(qenv)
    assert r.returncode == 1
    assert [v for v, _ in verdicts["spool"]] == ["FAIL"]
    assert str(blocker) in verdicts["spool"][0][1]
    assert verdicts["service"][0][0] == "ok"


def test_job_ids_that_need_quoting_in_a_url(qenv, tmp_path):
    s = ServiceProcess(tmp_path / "slm.db", tmp_path).start()
    try:
        odd = ["a b#c?d%e&f=g", "ünï/x", "local-node1-20261130-42"]
        status, body = s.post({"events": [ev(j, "RUNNING", "2026-11-29T10:00:00.000Z", 1,
                                             user="alice") for j in odd]})
        assert status == 200 and body["accepted"] == len(odd), body
        qenv["SLM_API_URL"] = s.url
        for job_id in odd:
            rows = parse_table(ok(run_slm(MAIN_PYTHON, ["status", job_id], qenv)))
            assert [r["JOBID"] for r in rows] == [job_id]
            data = json.loads(ok(run_slm(MAIN_PYTHON, ["events", job_id, "--json"], qenv)))
            assert [e["job_id"] for e in data["events"]] == [job_id]
        # a prefix of an id is not that id
        one_error_line(run_slm(MAIN_PYTHON, ["status", "a b"], qenv), 1)
    finally:
        s.kill()


# ---------------------------------------------------------------------------
# watch: a job's events as they arrive, and its end as the exit status
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wsvc(tmp_path_factory):
    """A service of its own for the jobs these tests make (the list tests count svc's)."""
    yield from module_service(tmp_path_factory, "watch")


@pytest.fixture
def wenv(qenv, wsvc):
    qenv["SLM_API_URL"] = wsvc.url
    return qenv


class Watch(object):
    """`slm watch` in the background; its stdout lines, awaited one by one."""

    def __init__(self, env, *args):
        import queue
        import threading
        self.proc = subprocess.Popen([MAIN_PYTHON, SLM, "watch"] + list(args), env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.decode("utf-8").rstrip("\n"))
        self.lines.put(None)

    def line(self, timeout=20):
        line = self.lines.get(timeout=timeout)
        assert line is not None, "watch ended early: %r" % self.proc.stderr.read()
        return line

    def end(self, timeout=30):
        code = self.proc.wait(timeout)
        rest = []
        while True:
            line = self.lines.get(timeout=5)
            if line is None:
                return code, rest, self.proc.stderr.read().decode("utf-8")
            rest.append(line)


def watch_status(line):
    return line.split("  ")[1].strip()


@pytest.mark.parametrize("job_id,code,ending", [("102", 0, "COMPLETED (exit 0)"),
                                                ("103", 1, "FAILED (exit 2)"),
                                                ("104", 1, "TIMEOUT (SIGTERM)")])
def test_watch_of_an_ended_job_shows_its_events_and_its_end(py, qenv, job_id, code, ending):
    r = run_slm(py, ["watch", job_id], qenv)
    assert r.returncode == code, r.stderr
    assert [watch_status(l) for l in r.stdout.decode().splitlines()] == \
        [e["status"] for e in json.loads(ok(run_slm(MAIN_PYTHON, ["events", job_id, "--json"],
                                                    qenv)))["events"]]
    assert r.stderr.decode() == "slm: job %s ended %s\n" % (job_id, ending)


def test_watch_follows_a_running_job_until_it_completes(wenv, wsvc):
    w = Watch(wenv, "w-live")
    try:
        wsvc.post(ev("w-live", "SUBMITTED", "2026-11-29T10:00:00.000Z", 1, user="alice"))
        assert watch_status(w.line()) == "SUBMITTED"
        wsvc.post(ev("w-live", "RUNNING", "2026-11-29T10:01:00.000Z", 2, user="alice"))
        assert watch_status(w.line()) == "RUNNING"
        wsvc.post(ev("w-live", "MEMORY_WARNING", "2026-11-29T10:02:00.000Z", 3, user="alice",
                    memory_used_mb=950))
        line = w.line()
        assert watch_status(line) == "MEMORY_WARNING" and "memory_used_mb=950" in line
        wsvc.post(ev("w-live", "COMPLETED", "2026-11-29T10:03:00.000Z", 4, user="alice",
                    exit_code=0))
        code, rest, err = w.end()
        assert code == 0 and [watch_status(l) for l in rest] == ["COMPLETED"], (rest, err)
        assert err.endswith("slm: job w-live ended COMPLETED (exit 0)\n")
    finally:
        w.proc.kill()


def test_watch_json_is_one_event_per_line(qenv, svc):
    # 300 was CANCELLED: the watch would wait a minute for Slurm's word, but
    # its --timeout comes first, and it ends with what it knows
    r = run_slm(MAIN_PYTHON, ["watch", "300", "--json", "-q", "--timeout", "2"], qenv)
    assert r.returncode == 1 and r.stderr == b""
    events = [json.loads(l) for l in r.stdout.decode().splitlines()]
    assert events == svc.events("300")


def test_a_cancel_that_was_a_requeue_does_not_end_the_watch(wenv, wsvc):
    """The wrapper sees SIGTERM and reports CANCELLED; Slurm's record says the
    job was requeued: the watch goes on, through the next run, to the end.  (A
    job Slurm never knew ends at its CANCELLED: test_newcomer.py.)"""
    job = dict(user="alice", job_name="rq", cluster="c1")   # a job Slurm knows
    wsvc.post({"events": [ev("770001", "RUNNING", "2026-11-29T11:00:00.000Z", 1, **job),
                         ev("770001", "CANCELLED", "2026-11-29T11:01:00.000Z", 2,
                            reason="cancelled", exit_code=143, **job)]})
    w = Watch(wenv, "770001")
    try:
        assert [watch_status(w.line()) for _ in range(2)] == ["RUNNING", "CANCELLED"]
        wsvc.post(ev("770001", "REQUEUED", "2026-11-29T11:01:30.000Z", 0, source="slurm",
                    reason="requeued", **job))
        assert watch_status(w.line()) == "REQUEUED"
        wsvc.post({"events": [
            ev("770001", "RUNNING", "2026-11-29T11:05:00.000Z", 1, restart_count=1, **job),
            ev("770001", "COMPLETED", "2026-11-29T11:06:00.000Z", 2, restart_count=1,
               exit_code=0, **job)]})
        code, rest, err = w.end()
        assert [watch_status(l) for l in rest] == ["RUNNING", "COMPLETED"], (rest, err)
        assert "run=2" in rest[0] and code == 0, err
        assert "waiting up to 1m00s for Slurm's record" in err
    finally:
        w.proc.kill()


def test_watch_gives_up_at_its_timeout(qenv):
    r = run_slm(MAIN_PYTHON, ["watch", "101", "--timeout", "1"], qenv)
    assert r.returncode == 1
    assert [watch_status(l) for l in r.stdout.decode().splitlines()] == ["RUNNING"]
    assert r.stderr.decode() == "slm: job 101 is still RUNNING after 1s (--timeout)\n"


def test_watch_of_an_unknown_job_is_exit_1(qenv):
    line = one_error_line(run_slm(MAIN_PYTHON, ["watch", "nope-43", "--timeout", "1"], qenv), 1)
    assert "unknown job: nope-43" in line


def test_watch_of_an_unreachable_service_is_exit_3_at_once(qenv, refused_url):
    qenv["SLM_API_URL"] = refused_url
    line = one_error_line(run_slm(MAIN_PYTHON, ["watch", "101"], qenv, timeout=20), 3)
    assert refused_url in line


@pytest.mark.parametrize("value", ["0", "soon", "-5", "1w"])
def test_watch_timeout_must_be_a_duration(qenv, value):
    line = one_error_line(run_slm(MAIN_PYTHON, ["watch", "101", "--timeout", value], qenv), 2)
    assert "is not a duration" in line


# ---------------------------------------------------------------------------
# What a job's row cannot show: Slurm's verdict, requeues, warnings, LOST
# ---------------------------------------------------------------------------


def test_status_tells_slurms_verdict_runs_and_warnings(wenv, wsvc):
    job = dict(user="alice", job_name="verdict")
    wsvc.post({"events": [
        ev("w-v", "RUNNING", "2026-11-29T12:00:00.000Z", 1, **job),
        ev("w-v", "MEMORY_WARNING", "2026-11-29T12:00:30.000Z", 2, **job),
        ev("w-v", "RUNNING", "2026-11-29T12:05:00.000Z", 1, restart_count=1, **job),
        ev("w-v", "COMPLETED", "2026-11-29T12:06:00.000Z", 2, restart_count=1, exit_code=0,
           **job),
        ev("w-v", "OUT_OF_MEMORY", "2026-11-29T12:07:00.000Z", 0, restart_count=1,
           source="slurm", corrects="COMPLETED", reason="oom", **job)]})
    out = ok(run_slm(MAIN_PYTHON, ["status", "w-v"], wenv)).splitlines()
    assert parse_table("\n".join(out[:2]))[0]["STATE"] == "OUT_OF_MEMORY"
    assert "end: from Slurm's own record (the wrapper reported COMPLETED)" in out
    assert "runs: 2 (Slurm requeued the job 1 time; this is the latest run)" in out
    rows = parse_table(ok(run_slm(MAIN_PYTHON, ["events", "w-v"], wenv)),
                       ("TIME", "STATUS", "HOST", "DETAIL"))
    assert rows[-1]["STATUS"] == "OUT_OF_MEMORY"
    assert rows[-1]["DETAIL"].startswith("run=2 from=slurm reason=oom corrects=COMPLETED")


def test_status_of_a_lost_job_says_who_found_out(wenv, wsvc):
    wsvc.post({"events": [
        ev("w-lost", "RUNNING", "2026-11-29T13:00:00.000Z", 1, user="alice", heartbeat=60),
        ev("w-lost", "LOST", "2026-11-29T13:04:00.000Z", 0, user="alice", source="service",
           reason="no_heartbeat")]})
    out = ok(run_slm(MAIN_PYTHON, ["status", "w-lost"], wenv)).splitlines()
    assert any(l.startswith("end: the service heard nothing from the job since "
                            "2026-11-29 13:00:00") for l in out), out
