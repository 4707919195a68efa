"""The HTTP side of slm_api.py: in-process WSGI calls, and the real server.

Most tests call the Bottle app directly with a hand-built WSGI environ (as a
WSGI server would build it), on a throw-away SQLite store.  The last ones run
`python slm_api.py` as a subprocess: keep-alive, refusal to listen
unprotected, signals, and secrets kept out of its stderr.
"""
import functools
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from wsgiref.util import setup_testing_defaults

import pytest

import scaffold
import slm_api
from scaffold import call, post

SLM_API = scaffold.SLM_API

NASTY = "x'); DROP TABLE slurm_jobs; -- \" \\ % _ ` <b>&amp; 🚀 数据 é \u0000 \t end"

# the events of this file happen at one fixed time, unless they say otherwise
event = functools.partial(scaffold.event, when="2026-11-30T03:40:41.123Z")


def assert_json_error(r, status):
    assert r.status == status, (r.status, r.body)
    assert r.headers["content-type"].startswith("application/json")
    assert isinstance(r.json["error"], str) and r.json["error"]
    return r.json["error"]


def make_service(db, logs, **env):
    """The service in this process, with diagnostics into logs."""
    return scaffold.build_service(db, env, log=logs.append)


@pytest.fixture
def logs():
    return []


@pytest.fixture
def service_in_process(tmp_path, logs):
    s = make_service(tmp_path / "api.db", logs)
    yield s
    s.stop()


@pytest.fixture
def app(service_in_process):
    return service_in_process.app


def q(text):
    return urllib.parse.quote(text, safe="")


# ---------------------------------------------------------------------------
# POST /api/v1/events
# ---------------------------------------------------------------------------


def test_post_one_event_then_read_it_back(app):
    e = event(user="alice", job_name="train", command=["python", "train.py"], future_field=[1])
    r = post(app, e)
    assert (r.status, r.json) == (200, {"accepted": 1, "duplicates": 0})
    job = call(app, "GET", "/api/v1/jobs/100").json
    assert job["job_id"] == "100" and job["status"] == "RUNNING"
    assert job["user"] == "alice" and job["job_name"] == "train"
    assert job["started_at"] == "2026-11-30T03:40:41.123000Z"
    assert job["meta"]["command"] == ["python", "train.py"]
    assert job["meta"]["future_field"] == [1]
    assert call(app, "GET", "/api/v1/jobs/100/events").json == {"events": [e]}


def test_post_batch_and_idempotency(app):
    a, b = event(), event(status="COMPLETED", when="2026-11-30T03:41:00Z", exit_code=0)
    assert post(app, {"events": [a, b]}).json == {"accepted": 2, "duplicates": 0}
    assert post(app, a).json == {"accepted": 0, "duplicates": 1}
    assert post(app, {"events": [a, b, event()]}).json == {"accepted": 1, "duplicates": 2}
    assert len(call(app, "GET", "/api/v1/jobs/100/events").json["events"]) == 3
    assert call(app, "GET", "/api/v1/jobs/100").json["event_count"] == 3


def test_out_of_order_arrival_keeps_final_status(app):
    post(app, event(status="COMPLETED", when="2026-11-30T03:45:00Z", exit_code=0))
    post(app, event(status="RUNNING", when="2026-11-30T03:46:00Z"))
    post(app, event(status="SUBMITTED", when="2026-11-30T03:30:00Z"))
    job = call(app, "GET", "/api/v1/jobs/100").json
    assert job["status"] == "COMPLETED" and job["exit_code"] == 0
    assert job["submitted_at"] == "2026-11-30T03:30:00.000000Z"
    assert job["ended_at"] == "2026-11-30T03:45:00.000000Z"


@pytest.mark.parametrize("body", [
    b"{not json", b"", b"[]", b"[{}]", b"42", b"\"x\"", b"null", b"\xff\xfe{}",
    b'{"event_id": NaN}', b"[" * 100000 + b"]" * 100000,
    b'{"events": {}}', b'{"events": []}', b'{"events": "x"}',
], ids=["broken", "empty", "list", "list-of-obj", "number", "string", "null", "not-utf8",
        "nan", "deep", "events-obj", "events-empty", "events-str"])
def test_bad_bodies_are_400(app, body):
    assert_json_error(post(app, body), 400)


def test_lone_surrogate_is_400(app):
    body = json.dumps(event(user="\ud800")).encode()
    assert "Unicode" in assert_json_error(post(app, body), 400)


@pytest.mark.parametrize("field,value", [
    ("event_id", ""), ("event_id", "a" * 65), ("event_id", "has space"), ("event_id", 5),
    ("event_id", "é"), ("job_id", ""), ("job_id", "x" * 129), ("job_id", "a\u0000b"),
    ("job_id", 12), ("job_id", " 12"), ("job_id", "a\nb"), ("status", "running"),
    ("status", "BOGUS"), ("status", None), ("time", "2026-11-30 03:40:41"),
    ("time", "2026-11-30T03:40:41"), ("time", "2026-11-30T03:40:41+01:00"),
    ("time", "2026-02-30T03:40:41Z"), ("time", 1764474041), ("time", "yesterday"),
    ("exit_code", "3"), ("exit_code", 1.5), ("exit_code", True), ("exit_code", 2 ** 64),
    ("seq", "1"), ("seq", -1), ("elapsed", "1"), ("elapsed", -1), ("elapsed", True),
    ("command", "python x"), ("command", ["a", 1]), ("command", [["a"]]),
    ("script_args", {"a": 1}), ("user", 5), ("user", "u" * 4097), ("host", ["h"]),
    ("monitored", "yes"), ("signal", 15), ("array_task_id", 3),
])
def test_wrong_field_is_400(app, field, value):
    e = event()
    e[field] = value
    error = assert_json_error(post(app, e), 400)
    assert field in error or "status" in error
    assert call(app, "GET", "/api/v1/jobs").json["total"] == 0


@pytest.mark.parametrize("field", ["event_id", "job_id", "status", "time"])
def test_missing_required_field_is_400(app, field):
    e = event()
    del e[field]
    assert field in assert_json_error(post(app, e), 400)


def test_unicode_digits_are_not_a_time(app):
    """Found by the fuzzer: a regex \\d matches '２', and int() reads it."""
    for when in ("２０２６-11-30T03:40:41Z", "2026-11-30T03:40:4١Z"):
        assert "time" in assert_json_error(post(app, event(when=when)), 400)
    assert_json_error(call(app, "GET", "/api/v1/jobs?since=" + q("２０２６-11-30")), 400)


def test_good_time_forms_accepted(app):
    for i, when in enumerate(["2026-11-30T03:40:41Z", "2026-11-30T03:40:41.5Z",
                              "2026-11-30T03:40:41.123456789+00:00"]):
        assert post(app, event(job_id="t%d" % i, when=when)).status == 200
    assert call(app, "GET", "/api/v1/jobs/t2").json["first_seen"] == "2026-11-30T03:40:41.123456Z"


def test_bad_event_in_batch_rejects_all_and_names_index(app):
    batch = [event(), event(), event(exit_code="bad"), event()]
    error = assert_json_error(post(app, {"events": batch}), 400)
    assert "event 2" in error and "exit_code" in error
    assert call(app, "GET", "/api/v1/jobs").json["total"] == 0


def test_batch_limits(app):
    assert post(app, {"events": [event(job_id="j%d" % i) for i in range(1000)]}).json == \
        {"accepted": 1000, "duplicates": 0}
    error = assert_json_error(post(app, {"events": [event() for _ in range(1001)]}), 413)
    assert "1000" in error


def test_huge_body_is_413_without_reading_it(app):
    class Untouchable(io.RawIOBase):
        def read(self, *a):
            raise AssertionError("the body was read")
    environ_body = b"{}"
    r = call(app, "POST", "/api/v1/events", environ_body,
             headers={})
    assert r.status == 400
    # Content-Length over the limit: refused before reading anything
    environ = {}
    setup_testing_defaults(environ)
    environ.update(REQUEST_METHOD="POST", PATH_INFO="/api/v1/events",
                   CONTENT_TYPE="application/json", CONTENT_LENGTH=str(slm_api.MAX_BODY + 1),
                   **{"wsgi.input": Untouchable()})
    got = {}
    out = b"".join(app(environ, lambda s, h, e=None: got.update(status=s)))
    assert got["status"].startswith("413") and "error" in json.loads(out)


def test_body_just_over_limit_is_413(app):
    body = json.dumps(event(message="m" * 4000, padding="p" * slm_api.MAX_BODY)).encode()
    assert_json_error(post(app, body), 413)


def test_chunked_body_is_411(app):
    r = call(app, "POST", "/api/v1/events", headers={"Transfer-Encoding": "chunked",
                                                     "Content-Type": "application/json"})
    assert_json_error(r, 411)


def test_text_fields_stored_and_returned_verbatim(app):
    job_id = "j'; DELETE FROM slurm_events;-- 🚀 数据/é"
    # (a cluster's name is part of a job's key: plain, and tested apart)
    fields = dict((name, NASTY) for name in slm_api.TEXT_FIELDS if name not in ("schema",
                                                                              "cluster"))
    e = event(job_id=job_id, command=[NASTY, "🚀"], script_args=[NASTY], **fields)
    assert post(app, e).json == {"accepted": 1, "duplicates": 0}
    job = call(app, "GET", "/api/v1/jobs/" + q(job_id)).json
    assert job["job_id"] == job_id
    for name in slm_api.META_COLUMNS:
        if name in fields:
            assert job[name] == NASTY, name
    assert job["meta"]["command"] == [NASTY, "🚀"]
    assert call(app, "GET", "/api/v1/jobs/%s/events" % q(job_id)).json["events"] == [e]
    r = call(app, "GET", "/api/v1/jobs?user=%s&name=%s&partition=%s"
             % (q(NASTY), q(NASTY), q(NASTY)))
    assert r.json["total"] == 1 and r.json["jobs"][0]["job_id"] == job_id
    # the tables are still there
    assert call(app, "GET", "/api/v1/jobs").json["total"] == 1


def test_array_tasks_linked(app):
    for i in range(1, 4):
        post(app, event(job_id="12_%d" % i, array_job_id="12", array_task_id=str(i)))
    post(app, event(job_id="13"))
    r = call(app, "GET", "/api/v1/jobs?array_job_id=12").json
    assert r["total"] == 3 and {j["array_task_id"] for j in r["jobs"]} == {"1", "2", "3"}
    assert call(app, "GET", "/api/v1/jobs/12").status == 404


# ---------------------------------------------------------------------------
# GET /api/v1/jobs
# ---------------------------------------------------------------------------


def test_list_filters_and_pagination(app):
    batch = [event(job_id="job%02d" % i, when="2026-11-%02dT10:00:00Z" % (i + 1),
                   status=("FAILED", "RUNNING", "COMPLETED")[i % 3], user="u%d" % (i % 2),
                   partition="p%d" % (i % 4), job_name="n%d" % (i % 5)) for i in range(25)]
    post(app, {"events": batch})
    r = call(app, "GET", "/api/v1/jobs").json
    assert r["total"] == 25 and len(r["jobs"]) == 25
    assert r["jobs"][0]["job_id"] == "job24"       # most recently active first
    page = call(app, "GET", "/api/v1/jobs?limit=10&offset=20").json
    assert [j["job_id"] for j in page["jobs"]] == ["job04", "job03", "job02", "job01", "job00"]
    assert page["total"] == 25
    r = call(app, "GET", "/api/v1/jobs?status=failed,COMPLETED").json
    assert r["total"] == 17 and {j["status"] for j in r["jobs"]} == {"FAILED", "COMPLETED"}
    r = call(app, "GET", "/api/v1/jobs?user=u0&partition=p2").json
    assert {j["job_id"] for j in r["jobs"]} == {"job02", "job06", "job10", "job14", "job18",
                                                "job22"}
    assert call(app, "GET", "/api/v1/jobs?name=n3").json["total"] == 5
    r = call(app, "GET", "/api/v1/jobs?since=2026-11-20&until=2026-11-22T10:00:00Z").json
    assert [j["job_id"] for j in r["jobs"]] == ["job21", "job20", "job19"]
    assert call(app, "GET", "/api/v1/jobs?limit=1000").status == 200


@pytest.mark.parametrize("query", [
    "limit=0", "limit=1001", "limit=abc", "limit=-1", "offset=-1", "offset=x", "status=BOGUS",
    "status=RUNNING,NOPE", "since=yesterday", "until=2026-13-01", "bogus=1", "limit=1&limit=2",
])
def test_bad_list_parameters_are_400(app, query):
    assert_json_error(call(app, "GET", "/api/v1/jobs?" + query), 400)


# ---------------------------------------------------------------------------
# Errors, auth, health, metrics
# ---------------------------------------------------------------------------


def test_404_and_405_are_json(app):
    assert assert_json_error(call(app, "GET", "/api/v1/jobs/nope"), 404)
    assert_json_error(call(app, "GET", "/api/v1/jobs/nope/events"), 404)
    assert_json_error(call(app, "GET", "/nothing/here"), 404)
    assert_json_error(call(app, "GET", "/api/v2/events"), 404)
    assert_json_error(call(app, "DELETE", "/api/v1/events"), 405)
    assert_json_error(call(app, "GET", "/api/v1/events"), 405)
    assert_json_error(call(app, "PUT", "/api/v1/jobs/1"), 405)


def test_token_required(tmp_path, logs):
    app = make_service(tmp_path / "t.db", logs, SLM_API_TOKEN="s3cret-token").app
    e = event()
    assert "token" in assert_json_error(post(app, e), 401)
    r = post(app, e, token="wrong-token")
    assert_json_error(r, 401)
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert_json_error(post(app, e, headers={"Authorization": "Basic czNjcmV0LXRva2Vu"}), 401)
    assert_json_error(post(app, e, headers={"Authorization": "Bearer"}), 401)
    assert_json_error(call(app, "GET", "/api/v1/jobs"), 401)
    assert_json_error(call(app, "GET", "/api/v1/nothing"), 401)   # no probing without a token
    assert post(app, e, token="s3cret-token").json == {"accepted": 1, "duplicates": 0}
    assert call(app, "GET", "/api/v1/jobs/100", token="s3cret-token").status == 200
    # what only a token reads, unless the site opened it (SLM_PUBLIC)
    assert_json_error(call(app, "GET", "/healthz"), 401)
    assert_json_error(call(app, "GET", "/metrics"), 401)
    assert call(app, "GET", "/healthz", token="s3cret-token").status == 200
    assert call(app, "GET", "/metrics", token="s3cret-token").status == 200
    assert call(app, "GET", "/openapi.json").status == 200
    opened = make_service(tmp_path / "o.db", logs, SLM_API_TOKEN="s3cret-token",
                          SLM_PUBLIC="healthz,metrics").app
    assert call(opened, "GET", "/healthz").status == 200
    assert call(opened, "GET", "/metrics").status == 200
    assert not any("s3cret" in line or "wrong-token" in line for line in logs)


def test_healthz(app, service_in_process):
    r = call(app, "GET", "/healthz")
    assert (r.status, r.json) == (200, {"ok": True, "backend": "sqlite",
                                        "database": "reachable"})
    service_in_process.db.close()
    r = call(app, "GET", "/healthz")
    assert (r.status, r.json) == (503, {"ok": False, "backend": "sqlite",
                                        "database": "unreachable"})


def test_database_down_is_503(app, service_in_process, logs):
    service_in_process.db.close()
    assert "database" in assert_json_error(post(app, event()), 503)
    assert_json_error(call(app, "GET", "/api/v1/jobs"), 503)
    assert_json_error(call(app, "GET", "/api/v1/jobs/1"), 503)
    assert any("database unavailable" in line for line in logs)
    text = call(app, "GET", "/metrics").body.decode()
    assert "slm_db_up 0" in text and "slm_jobs{" not in text
    assert "slm_db_errors_total 4" in text      # the scrape's own attempt counts too


def test_mysql_refusing_connections_is_503(logs):
    pytest.importorskip("pymysql")
    port = scaffold.free_port()
    app = make_service("mysql://root:pw-SECRET-1@127.0.0.1:%d/slm" % port, logs).app
    assert_json_error(post(app, event()), 503)
    r = call(app, "GET", "/healthz")
    assert r.status == 503 and r.json["backend"] == "mysql"
    assert logs and not any("pw-SECRET-1" in line for line in logs)


class FakeDatabase(object):
    """A database whose transactions fail as the test says."""

    backend = "fake"

    def __init__(self, error, secrets=()):
        self.error = error
        self._secrets = secrets

    def run(self, work, write=False):
        raise self.error

    def ping(self):
        raise self.error

    def secrets(self):
        return self._secrets

    def describe(self):
        return "fake"

    def close(self):
        pass


def test_secrets_redacted_from_logs(logs):
    db = FakeDatabase(slm_api.StoreUnavailable("cannot log in with db-pass-XYZ or tok-ABC"),
                      secrets=("db-pass-XYZ",))
    app = slm_api.Service(db, slm_api.NotifyPolicy(), slm_api.Keyring("tok-ABC"),
                          log=logs.append).app
    assert_json_error(post(app, event(), token="tok-ABC"), 503)
    assert logs and "***" in logs[0]
    assert not any("db-pass-XYZ" in line or "tok-ABC" in line for line in logs)


def test_unexpected_exception_is_json_500(logs):
    app = slm_api.Service(FakeDatabase(RuntimeError("boom")), slm_api.NotifyPolicy(),
                          slm_api.Keyring(), log=logs.append).app
    assert assert_json_error(call(app, "GET", "/api/v1/jobs/1"), 500) == "internal error"
    assert any("boom" in line for line in logs)


def test_metrics(app):
    post(app, event(status="RUNNING"))
    post(app, event(job_id="2", status="COMPLETED"))
    e = event(job_id="3", status="COMPLETED")
    post(app, e)
    post(app, e)
    post(app, b"junk")
    call(app, "GET", "/api/v1/jobs/100")
    r = call(app, "GET", "/metrics")
    assert r.status == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.body.decode()
    assert 'slm_events_ingested_total{status="COMPLETED"} 2' in text
    assert 'slm_events_ingested_total{status="RUNNING"} 1' in text
    assert "slm_events_duplicate_total 1" in text
    assert 'slm_jobs{status="COMPLETED"} 2' in text
    assert 'slm_jobs{status="RUNNING"} 1' in text
    assert 'slm_http_requests_total{route="/api/v1/events",code="200"} 4' in text
    assert 'slm_http_requests_total{route="/api/v1/events",code="400"} 1' in text
    assert 'slm_http_requests_total{route="/api/v1/jobs/<job_id:path>",code="200"} 1' in text
    assert 'slm_http_request_duration_seconds_count{route="/api/v1/events"} 5' in text
    assert "slm_db_errors_total 0" in text
    for line in text.splitlines():
        assert line.startswith("#") or len(line.rsplit(" ", 1)) == 2


def test_services_are_independent(tmp_path):
    a = make_service(tmp_path / "a.db", []).app
    b = make_service(tmp_path / "b.db", [], SLM_API_TOKEN="t").app
    assert post(a, event()).status == 200
    assert post(b, event()).status == 401
    assert call(b, "GET", "/api/v1/jobs", token="t").json["total"] == 0
    assert 'code="401"' not in call(a, "GET", "/metrics").body.decode()


def test_module_level_application_built_once_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SLM_DB_URL", "sqlite:///" + str(tmp_path / "env.db"))
    monkeypatch.delenv("SLM_API_TOKEN", raising=False)
    entry = slm_api.Application()
    try:
        assert post(entry, event()).status == 200
        first = entry.service
        assert call(entry, "GET", "/api/v1/jobs/100").status == 200
        assert entry.service is first and first.db.describe().endswith("env.db")
        assert first.sender.is_alive()     # the outbox is sent, as under main()
    finally:
        entry.service.stop()


# ---------------------------------------------------------------------------
# What no client may write: the service's own ids and fields
# ---------------------------------------------------------------------------


def test_an_event_id_belongs_to_its_job(app):
    """The same id on two jobs is two events (nobody can take another job's
    event by its id); the same id again on the same job is a duplicate."""
    a = event(job_id="j1", event_id="same-id")
    b = event(job_id="j2", event_id="same-id", status="COMPLETED", exit_code=0)
    assert post(app, a).json == {"accepted": 1, "duplicates": 0}
    assert post(app, b).json == {"accepted": 1, "duplicates": 0}
    assert post(app, b).json == {"accepted": 0, "duplicates": 1}
    assert post(app, {"events": [event(job_id="j3", event_id="twin"),
                                 event(job_id="j4", event_id="twin")]}).json == \
        {"accepted": 2, "duplicates": 0}
    for job_id, status in (("j1", "RUNNING"), ("j2", "COMPLETED"), ("j3", "RUNNING"),
                           ("j4", "RUNNING")):
        job = call(app, "GET", "/api/v1/jobs/" + job_id).json
        assert (job["status"], job["event_count"]) == (status, 1), job_id
    assert call(app, "GET", "/api/v1/jobs/j2/events").json == {"events": [b]}


@pytest.mark.parametrize("prefix", ["service-", "slurm-", "rollup-", "group-"])
def test_the_services_own_event_ids_are_refused(app, prefix):
    """LOST, Slurm's verdicts, roll-ups and groups' notices have ids of the
    service's making: a client that could post one first would suppress it."""
    for body in (event(event_id=prefix + "0a1b2c3d4e5f"),
                 {"events": [event(), event(event_id=prefix + "x")]}):
        assert prefix in assert_json_error(post(app, body), 400)
    assert call(app, "GET", "/api/v1/jobs").json["total"] == 0
    assert post(app, event(event_id="my-" + prefix + "1")).status == 200   # not at the start


@pytest.mark.parametrize("field,value", [
    ("tasks", {"COMPLETED": 2}), ("tasks", "x"), ("failed_tasks", ["3"]), ("rollup", True),
    ("kind", "group"), ("usage", {"rss_mb": 1.0}), ("usage", "x"), ("warnings", ["STALLED"]),
    ("warnings", "x"), ("total", 60.0), ("longest", 30.0)])
def test_fields_only_the_service_writes_are_refused(app, field, value):
    """A roll-up's counts, a group's notice, a job's usage and warnings are the
    service's: from a client they are forgeries (and odd ones broke readers)."""
    assert field in assert_json_error(post(app, event(status="FAILED", **{field: value})), 400)
    assert call(app, "GET", "/api/v1/jobs").json["total"] == 0


def test_an_odd_warnings_field_then_a_warning_is_no_5xx(app):
    """Found by a red-team pass: "warnings": "x" stored, the next TIME_WARNING
    was a 500, which slm.py retries for ever."""
    post(app, event(job_id="w1"), expect=200)
    odd = post(app, event(job_id="w1", seq=2, warnings="x"))
    warned = post(app, event(job_id="w1", seq=3, status="TIME_WARNING", time_left=60))
    assert warned.status == 200, warned.body
    assert odd.status == 400 and "warnings" in odd.json["error"]
    assert call(app, "GET", "/api/v1/jobs/w1").json["meta"]["warnings"] == ["TIME_WARNING"]


def test_unknown_fields_are_kept_as_received(app):
    """What a newer slm.py sends is stored and given back, never read."""
    e = event(x_future={"nested": [1, "two", None, {"deep": True}]}, x_list=[1.5, "a"])
    assert post(app, e).json == {"accepted": 1, "duplicates": 0}
    assert call(app, "GET", "/api/v1/jobs/100/events").json == {"events": [e]}


# ---------------------------------------------------------------------------
# What a web page may not do: write without asking, or read through its own name
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("ctype", ["text/plain", "text/plain;charset=UTF-8",
                                   "application/x-www-form-urlencoded",
                                   "multipart/form-data; boundary=x", None])
def test_a_post_that_is_not_json_is_415(tmp_path, ctype):
    """A page on any site can make a browser send these without asking first
    (a form, a no-cors fetch; None: a body with no type): never read, with or
    without tokens."""
    for env in ({}, {"SLM_API_TOKEN": "tok"}):
        app = make_service(tmp_path / ("t%d.db" % len(env)), [], **env).app
        token = env.get("SLM_API_TOKEN")
        body = json.dumps(event()).encode()
        assert_json_error(call(app, "POST", "/api/v1/events", body, token=token,
                               headers={"Content-Type": ctype}), 415)
        beat = json.dumps({"job_id": "100", "interval": 60, "time": "2026-11-30T03:40:42Z"})
        assert_json_error(call(app, "POST", "/api/v1/heartbeats", beat.encode(), token=token,
                               headers={"Content-Type": ctype}), 415)
        assert call(app, "GET", "/api/v1/jobs", token=token).json["total"] == 0
        # JSON, with parameters, is what clients send
        assert post(app, body, token=token,
                    headers={"Content-Type": "application/json; charset=utf-8"}).status == 200


@pytest.mark.parametrize("headers", [
    {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
    {"Origin": "http://evil.example"}, {"Origin": "http://127.0.0.1:8080"},
    {"Origin": "http://127.0.0.1.evil.example"},
    {"Sec-Fetch-Site": "same-origin", "Origin": "http://evil.example"}],
    ids=["cross-site", "same-site", "foreign-origin", "another-port", "lookalike-origin",
         "said-same-origin"])
def test_a_write_from_another_site_is_403(tmp_path, headers):
    """What a browser says of a request a foreign page made (the Host here is
    127.0.0.1): refused, with or without tokens."""
    for env in ({}, {"SLM_API_TOKEN": "tok"}):
        app = make_service(tmp_path / ("x%d.db" % len(env)), [], **env).app
        token = env.get("SLM_API_TOKEN")
        assert_json_error(post(app, event(), token=token, headers=headers), 403)
        assert call(app, "GET", "/api/v1/jobs", token=token).json["total"] == 0
        # this service's own pages, and clients that say nothing, write
        for own in ({"Sec-Fetch-Site": "same-origin", "Origin": "http://127.0.0.1"},
                    {"Sec-Fetch-Site": "none"}, {}):
            assert post(app, event(), token=token, headers=own).status == 200, own


def test_a_tokenless_service_answers_only_the_names_it_serves(tmp_path):
    """DNS rebinding: a page of evil.example whose name now points at 127.0.0.1
    reads this service through its own name; the Host header gives it away."""
    app = make_service(tmp_path / "h.db", []).app
    post(app, event(), expect=200)
    for host in ("evil.example", "evil.example:9008", "127.0.0.1.evil.example", "10.1.2.3",
                 "localhost.evil.example:9008"):
        for method, path in (("GET", "/api/v1/jobs"), ("GET", "/healthz"),
                             ("POST", "/api/v1/events")):
            r = call(app, method, path, event() if method == "POST" else None,
                     headers={"Host": host})
            assert "SLM_ALLOWED_HOSTS" in assert_json_error(r, 400), (host, path)
    for host in ("127.0.0.1", "127.0.0.1:9008", "localhost", "localhost:1", "[::1]:9008",
                 socket.gethostname(), socket.getfqdn() + ":9008"):
        assert call(app, "GET", "/api/v1/jobs", headers={"Host": host}).json["total"] == 1, host
    assert call(app, "GET", "/api/v1/jobs", headers={"Host": "evil.example"}).status == 400
    # the site names more (a tunnel's, a proxy's), or any
    named = make_service(tmp_path / "n.db", [], SLM_ALLOWED_HOSTS="dash.example.org,x.test").app
    assert call(named, "GET", "/healthz", headers={"Host": "dash.example.org:443"}).status == 200
    assert call(named, "GET", "/healthz", headers={"Host": "localhost"}).status == 200
    assert call(named, "GET", "/healthz", headers={"Host": "evil.example"}).status == 400
    anyone = make_service(tmp_path / "a.db", [], SLM_ALLOWED_HOSTS="*").app
    assert call(anyone, "GET", "/healthz", headers={"Host": "evil.example"}).status == 200


def test_with_tokens_the_host_is_checked_only_when_named(tmp_path):
    app = make_service(tmp_path / "t.db", [], SLM_API_TOKEN="tok").app
    assert call(app, "GET", "/api/v1/jobs", token="tok",
                headers={"Host": "slm.example.org"}).status == 200
    named = make_service(tmp_path / "n.db", [], SLM_API_TOKEN="tok",
                         SLM_ALLOWED_HOSTS="slm.example.org").app
    assert call(named, "GET", "/api/v1/jobs", token="tok",
                headers={"Host": "slm.example.org"}).status == 200
    assert "SLM_ALLOWED_HOSTS" in assert_json_error(call(
        named, "GET", "/api/v1/jobs", token="tok", headers={"Host": "evil.example"}), 400)


# ---------------------------------------------------------------------------
# The real server, as a subprocess
# ---------------------------------------------------------------------------


clean_env = scaffold.clean_env


@pytest.fixture
def server_factory(tmp_path):
    """slm_api.py started with these options and this environment, awaited
    until it says it serves (its database may be down on purpose)."""
    started = []

    def start(db, args=(), **env):
        s = scaffold.ServiceProcess(db, tmp_path, args=args, env=env)
        started.append(s)
        return s.start(healthy=False)
    yield start
    for s in started:
        s.kill()


def request(conn, method, path, body=None, headers=None):
    """One request on a kept connection: (status, headers, body); a body is JSON."""
    headers = dict(headers or {})
    if body is not None:
        body = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    return r.status, dict(r.getheaders()), data


def test_real_server_keep_alive_and_sigterm(server_factory, tmp_path):
    srv = server_factory(str(tmp_path / "ka.db"))
    conn = srv.connection()
    status, headers, data = request(conn, "GET", "/healthz")
    assert status == 200 and json.loads(data)["ok"] is True
    sock = conn.sock
    assert sock is not None
    for i in range(5):
        status, headers, data = request(conn, "POST", "/api/v1/events", event(job_id="ka%d" % i))
        assert (status, json.loads(data)) == (200, {"accepted": 1, "duplicates": 0})
        assert conn.sock is sock, "the server closed the connection"
    # error answers keep the connection too, even when the body went unread
    status, _, data = request(conn, "POST", "/api/v1/events", b"x" * 5000,
                              headers={"Authorization": "Bearer unused"})
    assert status == 400 and conn.sock is sock
    status, _, data = request(conn, "GET", "/api/v1/nothing")
    assert status == 404 and json.loads(data)["error"] and conn.sock is sock
    status, headers, data = request(conn, "GET", "/api/v1/jobs?limit=2")
    assert status == 200 and json.loads(data)["total"] == 5 and conn.sock is sock
    assert headers["Content-Length"] == str(len(data))
    status, _, data = request(conn, "POST", "/api/v1/events",
                              b"{" + b" " * (slm_api.MAX_BODY + 10) + b"}")
    assert status == 413 and json.loads(data)["error"]
    conn.close()

    # a thread per connection: one idle keep-alive connection blocks nobody
    idle = srv.connection()
    request(idle, "GET", "/healthz")
    results = []

    def poster(n):
        c = srv.connection()
        results.append(request(c, "POST", "/api/v1/events",
                               {"events": [event(job_id="t%d" % n) for _ in range(3)]})[0])
        c.close()
    threads = [threading.Thread(target=poster, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [200] * 8
    idle.close()
    srv.stop()
    log = srv.output()
    assert "stopped" in log
    assert "Traceback" not in log
    assert "/healthz" not in log and "HTTP/1.1" not in log  # no access log


def test_real_server_sigint(server_factory, tmp_path):
    server_factory(str(tmp_path / "int.db")).stop(signal.SIGINT)   # exits 0


def test_refuses_non_loopback_without_token(tmp_path):
    p = subprocess.run([sys.executable, SLM_API, "--host", "0.0.0.0", "--port", "0",
                        "--db", str(tmp_path / "x.db")], env=clean_env(), cwd=str(tmp_path),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    err = p.stderr.decode()
    assert p.returncode == 2
    assert err.startswith("slm-api: ") and err.count("\n") == 1
    assert "SLM_API_TOKEN" in err and "--insecure" in err
    assert not os.path.exists(str(tmp_path / "x.db"))


def test_non_loopback_with_insecure_or_token_listens(server_factory, tmp_path):
    server_factory(str(tmp_path / "a.db"), ["--host", "0.0.0.0", "--insecure"]).stop()
    server_factory(str(tmp_path / "b.db"), ["--host", "0.0.0.0"], SLM_API_TOKEN="tok").stop()


def test_secrets_never_in_server_output(server_factory, tmp_path):
    pytest.importorskip("pymysql")
    dead_port = scaffold.free_port()
    token, password, wrong = "TOKEN-sekrit-1", "PASSWORD-sekrit-2", "WRONG-sekrit-3"
    srv = server_factory("mysql://root:%s@127.0.0.1:%d/slm" % (password, dead_port),
                         ["--access-log"], SLM_API_TOKEN=token)
    assert "mysql://root:***@127.0.0.1:%d/slm" % dead_port in srv.output()
    conn = srv.connection()
    status, _, _ = request(conn, "POST", "/api/v1/events", event(),
                           headers={"Authorization": "Bearer " + wrong})
    assert status == 401
    status, _, _ = request(conn, "POST", "/api/v1/events", event(),
                           headers={"Authorization": "Bearer " + token})
    assert status == 503
    status, _, _ = request(conn, "GET", "/healthz", headers={"Authorization": "Bearer " + token})
    assert status == 503
    conn.close()
    srv.stop()
    log = srv.output()
    assert "database" in log and "POST /api/v1/events" in log
    for secret in (token, password, wrong, "sekrit"):
        assert secret not in log


def test_bad_db_url_exits_2(tmp_path):
    p = subprocess.run([sys.executable, SLM_API, "--db", "postgres://x/y"], env=clean_env(),
                       cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=30)
    assert p.returncode == 2 and p.stderr.decode().startswith("slm-api: ")


def test_a_rebound_name_reaches_no_tokenless_server(server_factory, tmp_path):
    """The DNS rebinding attack on the real server: the browser connects to
    127.0.0.1 and says Host: evil.example."""
    srv = server_factory(tmp_path / "rebind.db")
    assert srv.post(event(job_id="mine"))[0] == 200
    status, body = scaffold.http_call("GET", srv.url + "/api/v1/jobs",
                                      headers={"Host": "evil.example:%d" % srv.port})
    assert status == 400 and "SLM_ALLOWED_HOSTS" in body["error"], (status, body)
    assert srv.get("/api/v1/jobs")[1]["total"] == 1       # Host: 127.0.0.1:PORT
    srv.stop()
    assert "Traceback" not in srv.output()


def open_files_for(count):
    """Raise this process's soft limit of open files (its children inherit it)
    to hold count sockets more; skip where the hard limit is lower."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = count + 256
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip("RLIMIT_NOFILE's hard limit %d is under the %d sockets needed" % (hard,
                                                                                     wanted))
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return soft, hard


def threads_of(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"^Threads:\s+(\d+)", f.read(), re.M).group(1))


def test_idle_connections_cost_a_socket_not_a_thread(tmp_path):
    """1,500 idle keep-alive connections and 200 that sent half a request head
    (what a slow or hostile client holds open): a normal request is still
    answered within 2 s, and the service's threads stay under SLM_WORKERS + 16."""
    import resource
    limits = open_files_for(1700)
    srv = scaffold.ServiceProcess(tmp_path / "idle.db", tmp_path).start()
    held = []
    try:
        for n in range(1500):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
            held.append(s)
            if n % 2:     # one request answered, then the connection kept, idle
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                assert s.recv(65536).startswith(b"HTTP/1.1 200"), n
        for n in range(200):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
            held.append(s)
            s.sendall(b"POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
        started = time.monotonic()
        status, body = scaffold.http_call("GET", srv.url + "/healthz", timeout=30)
        took = time.monotonic() - started
        assert status == 200 and body["ok"] is True
        assert took < 2.0, took
        assert srv.post(event(job_id="amid-idle"))[0] == 200
        assert threads_of(srv.proc.pid) < 64 + 16       # SLM_WORKERS' default: 64
    finally:
        for s in held:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, limits)
        srv.stop()
    assert "Traceback" not in srv.output()


def test_long_polls_beyond_half_the_workers_are_429(tmp_path):
    """Long-polls hold a worker each: at most SLM_WORKERS // 2 at once, the
    others are told to come back (429, Retry-After), and short requests are
    still served."""
    srv = scaffold.ServiceProcess(tmp_path / "polls.db", tmp_path,
                                  env={"SLM_WORKERS": "8"}).start()
    waiting = []
    try:
        for _ in range(4):
            conn = srv.connection()
            conn.timeout = 60
            conn.request("GET", "/api/v1/feed?wait=25")
            waiting.append(conn)

        def long_polls():
            text = srv.get("/metrics")[1]
            text = text.decode() if isinstance(text, bytes) else str(text)
            return int(re.search(r"^slm_long_polls (\d+)$", text, re.M).group(1))
        # requests race to the workers: the four must be waiting before a fifth
        scaffold.await_true(lambda: long_polls() == 4, 20, "four long-polls waiting")

        def turned_away():
            conn = srv.connection()
            try:
                conn.request("GET", "/api/v1/feed?wait=1")
                r = conn.getresponse()
                r.read()
                return r.status == 429 and r.getheader("Retry-After")
            finally:
                conn.close()
        assert int(turned_away())
        assert srv.get("/healthz")[0] == 200
        assert srv.post(event(job_id="news"))[0] == 200       # the waiting four answer
        for conn in waiting:
            r = conn.getresponse()
            assert r.status == 200 and json.loads(r.read())["events"]
    finally:
        for conn in waiting:
            conn.close()
        srv.stop()


# ---------------------------------------------------------------------------
# One way to build the service: main() and a WSGI server behave the same
# ---------------------------------------------------------------------------


def relayed_failure(job_id, hook_url):
    e = event(job_id=job_id, status="FAILED", exit_code=1, user="alice")
    e["relay"] = {"to": [{"url": hook_url, "format": "json"}], "send": True}
    return e


def test_module_level_application_sends_relayed_notifications(tmp_path, monkeypatch):
    """The WSGI entry point starts the outbox sender, as `python slm_api.py` does."""
    hook = scaffold.HttpSink()
    monkeypatch.setenv("SLM_DB_URL", "sqlite:///" + str(tmp_path / "wsgi.db"))
    monkeypatch.setenv("SLM_RELAY_ALLOW", scaffold.RELAY_ALLOW)
    monkeypatch.setenv("SLM_OUTBOX_POLL", "0.1")
    monkeypatch.delenv("SLM_API_TOKEN", raising=False)
    entry = slm_api.Application()
    try:
        assert post(entry, relayed_failure("wsgi-1", hook.hook_url)).json == \
            {"accepted": 1, "duplicates": 0}
        hook.wait(lambda: len(hook.delivered) == 1)
        assert hook.delivered[0]["job_id"] == "wsgi-1" and "relay" not in hook.delivered[0]
    finally:
        entry.service.stop()
        hook.close()


def test_a_wrong_setting_under_a_wsgi_server_is_one_log_line_and_json_503(
        tmp_path, monkeypatch, capsys):
    """python slm_api.py says it in one line and exits 2; a WSGI server, which
    cannot be stopped from inside a request, says it once and answers 503."""
    monkeypatch.setenv("SLM_DB_URL", "sqlite:///" + str(tmp_path / "bad.db"))
    monkeypatch.setenv("SLM_RATE_LIMIT", "bogus")
    entry = slm_api.Application()
    for _ in range(2):
        got = call(entry, "GET", "/healthz")
        assert got.status == 503 and got.headers["content-type"] == "application/json"
        assert got.json == {"error": "the service is misconfigured: see its log"}
    err = capsys.readouterr().err
    assert err.count("SLM_RATE_LIMIT must look like") == 1 and "Traceback" not in err
    assert not os.path.exists(str(tmp_path / "bad.db"))   # built nothing
    svc = scaffold.ServiceProcess(str(tmp_path / "bad2.db"), tmp_path,
                                  env={"SLM_RATE_LIMIT": "bogus"})
    with pytest.raises(AssertionError):
        svc.start(timeout=10)
    assert svc.proc.returncode == 2 and "SLM_RATE_LIMIT must look like" in svc.output()
    wsgi = gunicorn(str(tmp_path / "bad3.db"), tmp_path, None, {"SLM_RATE_LIMIT": "bogus"})
    try:
        wsgi.start(healthy=False)

        def answer():
            try:
                return scaffold.http_call("GET", wsgi.url + "/healthz", timeout=5)
            except OSError:
                return None      # not listening yet
        status, body = scaffold.await_true(answer, 30, "gunicorn to answer")
        assert (status, body) == (503, {"error": "the service is misconfigured: see its log"})
        wsgi.stop()
        assert "SLM_RATE_LIMIT must look like" in wsgi.output()
        assert "Traceback" not in wsgi.output()
    finally:
        wsgi.kill()


def gunicorn(db, tmp_path, token, env):
    """slm_api:application under gunicorn: 2 workers of 4 threads."""
    path = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    if not os.path.exists(path):
        pytest.fail("gunicorn is not installed (tests/requirements.txt has it)")
    return scaffold.WsgiProcess([path, "--chdir", scaffold.ROOT, "-b", "127.0.0.1:PORT",
                                 "-w", "2", "--threads", "4", "slm_api:application"],
                                db, tmp_path, token=token, env=env)


@pytest.mark.parametrize("server", ["slm_api.py", "gunicorn"])
def test_main_and_gunicorn_behave_the_same(server, tmp_path):
    """Stored events, errors, the token, and relayed notifications sent once."""
    hook = scaffold.HttpSink()
    db = str(tmp_path / "same.db")
    settings = {"SLM_API_TOKEN": "tok-same", "SLM_OUTBOX_POLL": "0.1"}
    if server == "gunicorn":
        svc = gunicorn(db, tmp_path, "tok-same", settings)
    else:
        svc = scaffold.ServiceProcess(db, tmp_path, token="tok-same", env=settings)
    try:
        svc.start(timeout=30)
        url = svc.url
        status, answer = scaffold.http_call("POST", url + "/api/v1/events",
                                            relayed_failure("same-1", hook.hook_url),
                                            token="tok-same")
        assert (status, answer) == (200, {"accepted": 1, "duplicates": 0})
        assert scaffold.http_call("POST", url + "/api/v1/events", event(),
                                  token="wrong")[0] == 401
        status, answer = scaffold.http_call("POST", url + "/api/v1/events", b"{",
                                            token="tok-same")
        assert status == 400 and "JSON" in answer["error"]
        status, job = scaffold.http_call("GET", url + "/api/v1/jobs/same-1", token="tok-same")
        assert status == 200 and job["status"] == "FAILED"
        hook.wait(lambda: len(hook.delivered) == 1)
        assert hook.quiet() == 0          # two gunicorn workers, still sent once
        assert hook.delivered[0]["event_id"]
        status, rows = scaffold.http_call("GET", url + "/api/v1/jobs/same-1/notifications",
                                          token="tok-same")
        assert [r["state"] for r in rows["notifications"]] == ["sent"]
        svc.stop()     # SIGTERM: exits 0
    finally:
        svc.kill()
        hook.close()
