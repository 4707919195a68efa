"""The dashboard: slm_api.py's pages at /, and the API routes they read.

The first half calls the service in-process through the scaffold's caller:
escaping, the Content-Security-Policy, the sign-in cookie (GET only), pages
that obey private jobs, the feed's after= semantics, long-polls that answer
early when an event arrives and after `wait` otherwise, 4xx for bad
parameters.  The second half drives a real headless Chromium (Debian's
/usr/bin/chromium through Playwright; `playwright install` is never run)
against a running service (scaffold.ServiceProcess) with real data, one
browser for the module: the list, a filter kept in the URL, a live event,
a job's lifeline to scale, an XSS name, the token prompt, a phone's width
and axe-core's accessibility check (from tests/node_modules, never a CDN).
Without Chromium, Playwright or axe-core the browser tests skip with the
reason; SLM_REQUIRE_BROWSER=1 (CI) makes them fail instead.  Screenshots of
the list and of a job page go to SLM_SCREENSHOTS (default: a temp dir).
"""
import hashlib
import json
import os
import re
import secrets
import threading
import time
import urllib.parse

import pytest

import scaffold
import slm_api
from scaffold import call, event, iso_time, need, post

HERE = os.path.dirname(os.path.abspath(__file__))
CHROMIUM = os.environ.get("SLM_CHROMIUM", "/usr/bin/chromium")
AXE = os.path.join(HERE, "node_modules", "axe-core", "axe.min.js")
XSS = "<img src=x onerror=alert(1)>"
HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def life_events(job_id, t0, user="alice", **extra):
    """A job that waited 60 s, ran 100 s, was paused 40 s, ran 100 s, completed."""
    fields = dict(dict(user=user, job_name="train", partition="gpu", host="node17",
                       time_limit="00:10:00"), **extra)
    steps = [("SUBMITTED", 0), ("RUNNING", 60), ("PAUSED", 160), ("RESUMED", 200),
             ("COMPLETED", 300)]
    out = [event(job_id, status, t0 + dt, seq, **fields) for seq, (status, dt) in
           enumerate(steps, 1)]
    out[-1].update(exit_code=0, elapsed=240.0, cpu_time=400.0, cpus=2, max_rss_mb=512.0,
                   memory_limit_mb=2048.0)
    return out


def page(app, path, token=None, headers=None):
    """A page as a browser asks for it."""
    return call(app, "GET", path, token=token, headers=dict(HTML, **(headers or {})))


def text(answer):
    return answer.body.decode("utf-8")


def make_token_file(path, **users):
    """USER:ROLE:SHA256 lines; returns {user: token}."""
    tokens, lines = {}, []
    for user, role in users.items():
        tokens[user] = "slm_" + secrets.token_urlsafe(32)
        lines.append("%s:%s:%s\n" % (user, role, slm_api.token_digest(tokens[user])))
    path.write_text("".join(lines))
    return tokens


@pytest.fixture
def service_in_process(tmp_path):
    s = scaffold.build_service(tmp_path / "dash.db", {"SLM_RECONCILE": "off"})
    yield s
    s.stop()


@pytest.fixture
def tokens(tmp_path):
    return make_token_file(tmp_path / "tokens", alice="user", bob="user", root="admin")


def tokened(tmp_path, **env):
    """The service in this process with the tokens fixture's file, not started."""
    return scaffold.build_service(tmp_path / "dash-tokens.db", dict(
        {"SLM_TOKENS_FILE": str(tmp_path / "tokens"), "SLM_RECONCILE": "off"}, **env))


# ---------------------------------------------------------------------------
# Pages: HTML, escaped, under a strict CSP
# ---------------------------------------------------------------------------


def test_pages_are_html_under_a_csp_without_inline_code(service_in_process):
    post(service_in_process, {"events": life_events("4242", time.time() - 600)}, expect=200)
    for path in ("/", "/jobs/4242", "/delivery", "/signin", "/?all=1&window=7d"):
        r = page(service_in_process.app, path)
        assert r.status == 200, (path, r.body[:300])
        assert r.headers["content-type"] == "text/html; charset=utf-8"
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["cache-control"] == "no-store"
        body = text(r)
        # scripts only from this service's files; no inline handlers, styles or remote origins
        assert re.findall(r"<script[^>]*>", body) == [
            '<script src="/static/slm.js?v=%s" defer>' % re.search(
                r"slm\.js\?v=([0-9a-f]+)", body).group(1)]
        assert not re.search(r"\son[a-z]+\s*=", body, re.I), path
        assert " style=" not in body and "<style" not in body
        assert not re.search(r"(src|href|action)=\"(https?:)?//", body), path
    for asset in ("slm.js", "slm.css", "icon.svg"):
        r = call(service_in_process.app, "GET", "/static/" + asset)
        assert r.status == 200 and r.headers["x-content-type-options"] == "nosniff"
        assert "http://" not in text(r).replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in text(r)
    assert call(service_in_process.app, "GET", "/static/nothing.js").status == 404


def test_api_clients_get_json_from_a_page_address(service_in_process):
    for headers in ({}, {"Accept": "application/json"}):
        r = call(service_in_process.app, "GET", "/", headers=headers)
        assert r.status == 406 and r.headers["content-type"] == "application/json"
        assert "/api/v1/" in r.json["error"]
    assert page(service_in_process.app, "/", headers={"Accept": "*/*"}).status == 200   # curl


def test_every_user_controlled_string_is_escaped(service_in_process):
    nasty = dict(user="u<script>x</script>", job_name=XSS, partition="<b>p</b>",
                 reason="<i>r</i>", message="<svg onload=alert(2)>", host="<h>",
                 command=["<script>alert(3)</script>"], output_tail="<img src=y onerror=alert(4)>",
                 cluster="c-1", group="<g>")
    t0 = time.time() - 400
    post(service_in_process, {"events": [
        event("x<1>", "SUBMITTED", t0, 1, **nasty), event("x<1>", "RUNNING", t0 + 5, 2, **nasty),
        event("x<1>", "FAILED", t0 + 9, 3, exit_code=1, signal="<SIG>", **nasty)]}, expect=200)
    bodies = [text(page(service_in_process.app, p)) for p in (
        "/", "/?all=1", "/jobs/" + urllib.parse.quote("x<1>", safe=""), "/delivery",
        "/?name_contains=" + urllib.parse.quote(XSS))]
    for body in bodies:
        for raw in ("<script>x", XSS, "<b>p</b>", "<i>r</i>", "<svg onload", "<h>",
                    "<script>alert", "<img src=y", "<c>", "<g>", "<SIG>", "x<1>"):
            assert raw not in body
    assert html_escaped(XSS) in bodies[0] and html_escaped("<img src=y onerror=alert(4)>") \
        in bodies[2]
    # an error page quotes the request's text escaped as well
    r = page(service_in_process.app, "/?status=" + urllib.parse.quote("<x>"))
    assert r.status == 400 and "<x>" not in text(r) and "&lt;x&gt;" not in text(r).split(
        "<main")[0]


def html_escaped(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def test_bad_parameters_are_4xx_pages_or_json_never_5xx(service_in_process):
    post(service_in_process, {"events": life_events("1", time.time() - 400)}, expect=200)
    for path in ("/?status=BOGUS", "/?cursor=zz", "/?window=2y", "/?limit=0", "/?since=yesterday",
                 "/?nothing=1", "/?user=a&user=b", "/delivery?state=lost", "/delivery?before=x",
                 "/?sort=name", "/?arrays=maybe"):
        r = page(service_in_process.app, path)
        assert r.status == 400, (path, r.status)
        assert r.headers["content-type"].startswith("text/html") and 'role="alert"' in text(r)
    assert page(service_in_process.app, "/jobs/nope").status == 404
    for path in ("/api/v1/search?sort=x", "/api/v1/search?cursor=%00", "/api/v1/search?limit=1001",
                 "/api/v1/search?cursor=" + slm_api.encode_cursor(
                     "-active", {"last_event_time": "x", "job_id": "y"}) + "&sort=-submitted",
                 "/api/v1/summary?since=2026-12-01&until=2026-11-01",
                 "/api/v1/summary?since=2026-01-01&until=2026-12-01", "/api/v1/summary?x=1",
                 "/api/v1/notifications?state=lost", "/api/v1/notifications?before=-1",
                 "/api/v1/feed?after=-1", "/api/v1/feed?wait=31", "/api/v1/feed?wait=1e3",
                 "/api/v1/feed?wait=", "/api/v1/feed?limit=0", "/api/v1/feed?what=1",
                 "/api/v1/jobs/1/events?after=nope", "/api/v1/jobs/1/events?wait=-1",
                 "/api/v1/jobs/1/events?x=1", "/api/v1/jobs/1/events?wait=30.0001"):
        r = call(service_in_process.app, "GET", path)
        if path.endswith("wait="):
            assert r.status == 200, path      # empty: no wait, as every empty parameter
            continue
        assert r.status == 400, (path, r.status, r.body)
        assert r.json["error"]


# ---------------------------------------------------------------------------
# Who may read what: the sign-in cookie (GET only) and Access
# ---------------------------------------------------------------------------


def signin(app, token, next_="/", headers=None):
    body = urllib.parse.urlencode({"token": token, "next": next_}).encode()
    return call(app, "POST", "/signin", body, headers=dict(
        HTML, **dict({"Content-Type": "application/x-www-form-urlencoded",
                      "Sec-Fetch-Site": "same-origin"}, **(headers or {}))))


def cookie_of(answer):
    """The Cookie header a browser sends after this sign-in's answer."""
    return {"Cookie": answer.headers["set-cookie"].split(";", 1)[0]}


def cookie(app, token):
    """Signed in through the service's own form, as a browser is: its cookie."""
    r = signin(app, token)
    assert r.status == 303, r.body
    return cookie_of(r)


# the cookie of a sign-in the service does not know (ended, or never made)
UNKNOWN_SESSION = {"Cookie": "%s=s1.%s" % (slm_api.SESSION_COOKIE, "0" * 64)}


def test_the_sign_in_cookie_reads_but_never_writes(tmp_path, tokens):
    svc = tokened(tmp_path)
    try:
        app = svc.app
        alice = cookie(app, tokens["alice"])
        assert call(app, "GET", "/api/v1/whoami", headers=alice).json["user"] == "alice"
        # a write with the cookie alone is refused: another site's form could send it
        r = call(app, "POST", "/api/v1/events", event("c1", user="alice"), headers=alice)
        assert r.status == 401
        assert call(app, "GET", "/api/v1/jobs", token=tokens["root"]).json["total"] == 0
        post(app, event("a1", user="alice", job_name="mine"), token=tokens["alice"], expect=200)
        listed = page(app, "/", headers=alice)
        assert listed.status == 200 and "Your jobs" in text(listed) and "a1" in text(listed)
        assert "Sign out" in text(listed) and tokens["alice"] not in text(listed)
        # no cookie: the sign-in form, never a blank page
        r = page(app, "/jobs/a1")
        assert r.status == 401 and 'action="/signin"' in text(r)
        assert 'name="next" value="/jobs/a1"' in text(r)
        r = page(app, "/", headers=UNKNOWN_SESSION)
        assert r.status == 401 and "no longer accepted" in text(r)
        # the cookie's value is no token: as a bearer token it reads and writes
        # nothing, and a token put in the cookie is no sign-in either
        value = alice["Cookie"].partition("=")[2]
        assert call(app, "GET", "/api/v1/whoami", token=value).status == 401
        assert call(app, "POST", "/api/v1/events", event("c2", user="alice"),
                    token=value).status == 401
        raw = {"Cookie": "%s=%s" % (slm_api.SESSION_COOKIE, tokens["alice"])}
        assert call(app, "GET", "/api/v1/whoami", headers=raw).status == 401
        # a link from another site carries no SameSite=Strict cookie: ask again from here
        r = page(app, "/jobs/a1", headers={"Sec-Fetch-Site": "cross-site"})
        assert '<meta http-equiv="refresh" content="0">' in text(r)
    finally:
        svc.stop()


def test_sign_in_sets_an_httponly_samesite_strict_cookie_and_explains_a_wrong_token(
        tmp_path, tokens):
    svc = tokened(tmp_path)
    try:
        app = svc.app
        r = signin(app, tokens["bob"], "/jobs/b%201?x=1")
        assert r.status == 303 and r.headers["location"] == "/jobs/b%201?x=1"
        set_cookie = r.headers["set-cookie"]
        assert re.match(r"%s=[^;\s]{32,};" % slm_api.SESSION_COOKIE, set_cookie), set_cookie
        assert tokens["bob"] not in set_cookie
        for attribute in ("HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="):
            assert attribute in set_cookie
        for elsewhere in ("//evil.example/x", "https://evil.example/", "/\\evil", "jobs"):
            assert signin(app, tokens["bob"], elsewhere).headers["location"] == "/"
        r = signin(app, "slm_wrong")
        assert r.status == 401 and "set-cookie" not in r.headers
        assert "not accepted" in text(r) and 'role="alert"' in text(r)
        assert "slm_wrong" not in text(r)
        # only this service's own form may sign in or out
        assert signin(app, tokens["bob"], headers={"Sec-Fetch-Site": "cross-site"}).status == 403
        assert signin(app, tokens["bob"], headers={"Sec-Fetch-Site": "same-origin",
                                                   "Origin": "https://evil.example"}).status \
            == 403
        r = call(app, "POST", "/signout", b"", headers=dict(HTML, **cookie(app, tokens["bob"])))
        assert r.status == 303 and "Max-Age=0" in r.headers["set-cookie"]
    finally:
        svc.stop()
    assert slm_api.safe_next("/ok?a=b") == "/ok?a=b"


def test_signing_out_ends_that_sign_in_and_no_other(tmp_path, tokens):
    """Each sign-in is a session of its own, kept by the service (so every
    instance on the database knows it): signing out ends it for good; the
    token's other sign-ins go on until the token is revoked."""
    svc, other = tokened(tmp_path), tokened(tmp_path)     # two instances, one database
    try:
        app = svc.app
        first, second = cookie(app, tokens["alice"]), cookie(app, tokens["alice"])
        assert first != second and tokens["alice"] not in first["Cookie"] + second["Cookie"]
        for where in (app, other.app):
            for signed_in in (first, second):
                assert call(where, "GET", "/api/v1/whoami",
                            headers=signed_in).json["user"] == "alice"
        r = call(app, "POST", "/signout", b"", headers=dict(
            HTML, **dict(first, **{"Sec-Fetch-Site": "same-origin"})))
        assert r.status == 303 and "Max-Age=0" in r.headers["set-cookie"]
        for where in (app, other.app):
            # the old cookie (kept by a browser, or copied) reads nothing any more
            assert call(where, "GET", "/api/v1/whoami", headers=first).status == 401
            ended = page(where, "/", headers=first)
            assert ended.status == 401 and 'action="/signin"' in text(ended)
            assert call(where, "GET", "/api/v1/whoami", headers=second).json["user"] == "alice"
        # revoking the token ends the rest
        path = tmp_path / "tokens"
        path.write_text("".join(line for line in path.read_text().splitlines(True)
                                if not line.startswith("alice:")))
        scaffold.await_true(lambda: call(app, "GET", "/api/v1/whoami",
                                         headers=second).status == 401, 5,
                            "the revoked token's sign-in ended")
        assert call(app, "GET", "/api/v1/whoami", headers=cookie(app, tokens["bob"])).json[
            "user"] == "bob"
    finally:
        svc.stop()
        other.stop()


@pytest.mark.parametrize("field,value", [("usage", "x"), ("usage", {"rss_mb": "x"}),
                                         ("usage", {"output_bytes": [1]}), ("warnings", 5),
                                         ("warnings", "x"), ("tasks", "x")])
def test_an_odd_field_breaks_no_page(tmp_path, tokens, field, value):
    """Found by a red-team pass: one such event made the job's page a 500 for
    every viewer, admins included.  Refused at the door now; every page and
    the job's API answer render."""
    svc = tokened(tmp_path)
    try:
        app = svc.app
        post(app, event("odd-1", user="alice", job_name="odd"), token=tokens["alice"],
             expect=200)
        odd = post(app, event("odd-1", "FAILED", seq=2, user="alice", exit_code=1,
                              **{field: value}), token=tokens["alice"])
        for who in ("alice", "bob", "root"):
            signed_in = cookie(app, tokens[who])
            for path in ("/jobs/odd-1", "/", "/?all=1", "/delivery"):
                r = page(app, path, headers=signed_in)
                assert r.status == 200, (who, path, r.status, r.body[-300:])
            assert call(app, "GET", "/api/v1/jobs/odd-1", headers=signed_in).status == 200
        assert odd.status == 400 and field in odd.json["error"], odd.body
    finally:
        svc.stop()


def test_the_delivery_page_says_what_is_retried_and_what_was_given_up(tmp_path):
    """Why a notification did not arrive: retrying (attempts, the error, the
    next try) and given up (the reason), on /delivery and on the job's page."""
    refuses, fails = scaffold.HttpSink(400), scaffold.HttpSink(500)
    svc = scaffold.build_service(tmp_path / "d.db", {
        "SLM_RECONCILE": "off", "SLM_OUTBOX_POLL": "0.05", "SLM_OUTBOX_BACKOFF_SCALE": "100",
        "SLM_NOTIFY_ON": "all", "SLM_WEBHOOK": "%s,%s" % (refuses.hook_url, fails.hook_url)}
    ).start()
    try:
        post(svc.app, event("d-1", "FAILED", user="erin", exit_code=1), expect=200)
        refuses.wait(lambda: len(refuses.requests) == 1)
        fails.wait(lambda: len(fails.requests) == 1)

        def rows(path):
            return re.findall(r'<tr><td[^>]*><time.*?</tr>', text(page(svc.app, path)))

        def states(path):
            return sorted(re.findall(r'<span class="ob ob-\w+">([^<]*)</span>',
                                     "".join(rows(path))))
        scaffold.await_true(lambda: states("/delivery") == ["given up", "retrying"], 10,
                            "both rows' states shown")
        given_up, = [r for r in rows("/delivery") if "given up" in r]
        retrying, = [r for r in rows("/delivery") if "retrying" in r]
        for row, error in ((given_up, "HTTP 400"), (retrying, "HTTP 500")):
            assert re.search(r'<td class="num"[^>]*>1</td>', row) and error in row  # attempts, why
            assert "d-1" in row and "FAILED" in row
        assert "<time" in retrying.split("HTTP 500")[1]                  # its next try
        assert states("/jobs/d-1") == ["given up", "retrying"]
        assert states("/delivery?state=failed") == ["given up"]
    finally:
        svc.stop()
        refuses.close()
        fails.close()


def test_pages_obey_private_jobs_and_owner_only_fields(tmp_path, tokens):
    for private in (False, True):
        svc = tokened(tmp_path, SLM_PRIVATE_DATA="jobs" if private else "none")
        try:
            app = svc.app
            for user in ("alice", "bob"):
                post(app, {"events": [event(
                    user[0] + "-job", "FAILED", user=user, job_name=user + "-train",
                    command=["python", user + "-secret.py"], output_tail=user + "-tail",
                    relay={"to": [{"url": "https://%s.example/hook/SECRETPATH" % user}],
                           "send": True})]}, token=tokens[user], expect=200)
            alice = cookie(app, tokens["alice"])
            everyone = text(page(app, "/?all=1", headers=alice))
            assert "alice-train" in everyone
            assert ("bob-train" in everyone) is (not private)
            theirs = page(app, "/jobs/b-job", headers=alice)
            if private:
                assert theirs.status == 404
            else:
                assert theirs.status == 200 and "bob-train" in text(theirs)
                assert "bob-secret" not in text(theirs) and "bob-tail" not in text(theirs)
            own = text(page(app, "/jobs/a-job", headers=alice))
            assert "alice-secret" in own and "alice-tail" in own
            # the outbox: one's own jobs' rows, destinations as scheme://host only
            delivery = text(page(app, "/delivery", headers=alice))
            assert "a-job" in delivery and "b-job" not in delivery
            assert "https://alice.example/…" in delivery and "SECRETPATH" not in delivery
            rows = call(app, "GET", "/api/v1/notifications", headers=alice).json["notifications"]
            assert [(n["job_id"], n["state"], n["status"]) for n in rows] == \
                [("a-job", "refused", "FAILED")]
            assert len(call(app, "GET", "/api/v1/notifications", token=tokens["root"])
                       .json["notifications"]) == 2
            assert "b-job" in text(page(app, "/delivery", headers=cookie(app, tokens["root"])))
            found = call(app, "GET", "/api/v1/search?all=1", headers=alice)
            assert found.status == 400     # all= is the page's, not the API's
            found = call(app, "GET", "/api/v1/search", headers=alice).json
            assert {j["job_id"] for j in found["jobs"]} == ({"a-job"} if private
                                                            else {"a-job", "b-job"})
        finally:
            svc.stop()
        os.remove(str(tmp_path / "dash-tokens.db"))


# ---------------------------------------------------------------------------
# The read routes the pages use: search, feed, job events, summary
# ---------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "mariadb"])
def service_on_backend(request, tmp_path):
    """The service in this process on SQLite, then on a scratch MariaDB database."""
    db = scaffold.database(request.param, tmp_path)
    svc = scaffold.build_service(db, {"SLM_RECONCILE": "off"})
    yield svc
    svc.stop()
    scaffold.drop_database(db)


def test_search_pages_by_keyset_through_every_job_once(service_on_backend):
    app = service_on_backend.app
    t0 = time.time() - 10000
    # equal first events on purpose: the job id breaks the tie
    post(app, {"events": [event("k%02d" % i, "SUBMITTED", t0 + (i // 3) * 60, user="u%d" % (i % 2),
                                job_name="Train-%d" % i) for i in range(23)]}, expect=200)
    for sort in ("-submitted", "submitted", "-active", "active"):
        seen, cursor = [], None
        while True:
            r = call(app, "GET", "/api/v1/search?limit=5&sort=%s%s" % (
                sort, "&cursor=" + cursor if cursor else ""))
            assert r.status == 200 and r.json["total"] == 23
            seen += [j["job_id"] for j in r.json["jobs"]]
            cursor = r.json["next"]
            if cursor is None:
                break
        expected = sorted(seen, key=lambda j: (int(j[1:]) // 3, j), reverse=sort[0] == "-")
        assert seen == expected, sort
    r = call(app, "GET", "/api/v1/search?name_contains=TRAIN-1&user=u1").json
    assert sorted(j["job_id"] for j in r["jobs"]) == ["k01", "k11", "k13", "k15", "k17", "k19"]
    assert r["total"] == 6 and r["next"] is None and r["tasks"] == {}


def test_arrays_are_one_row_with_task_counts(service_on_backend):
    app = service_on_backend.app
    now = time.time()
    post(app, {"events": [event("90", "SUBMITTED", now - 100, user="a", array="1-3")] + [
        event("90_%d" % i, status, now - 50 + i, user="a", array_job_id="90",
              array_task_id=str(i)) for i, status in ((1, "RUNNING"), (2, "RUNNING"),
                                                       (3, "FAILED"))] +
        [event("91_1", "RUNNING", now - 10, user="a", array_job_id="91", array_task_id="1")]},
        expect=200)
    r = call(app, "GET", "/api/v1/search?arrays=group").json
    # an array without a row of its own keeps its tasks in the list
    assert [j["job_id"] for j in r["jobs"]] == ["91_1", "90"] and r["total"] == 2
    assert r["tasks"] == {"90": {"RUNNING": 2, "FAILED": 1}}
    assert call(app, "GET", "/api/v1/search").json["total"] == 5
    body = text(page(app, "/"))
    assert "2 running, 1 failed" in body and "90_1" not in body
    assert "90_1" in text(page(app, "/?array_job_id=90&all=1"))


def test_feed_after_is_what_was_stored_since(service_on_backend):
    app = service_on_backend.app
    now = time.time()
    first = call(app, "GET", "/api/v1/feed").json
    assert first == {"events": [], "next": 0, "more": False}
    # stored out of time order: the feed keeps the order of storing
    late, early = event("f1", "RUNNING", now, user="a"), event("f1", "SUBMITTED", now - 60,
                                                              user="a")
    post(app, late, expect=200)
    post(app, early, expect=200)
    post(app, event("f2", "RUNNING", now, user="b"), expect=200)
    r = call(app, "GET", "/api/v1/feed?after=0").json
    assert [e["event_id"] for e in r["events"]][:2] == [late["event_id"], early["event_id"]]
    assert len(r["events"]) == 3 and r["more"] is False
    end = r["next"]
    assert call(app, "GET", "/api/v1/feed?after=%d" % end).json == {"events": [], "next": end,
                                                                     "more": False}
    part = call(app, "GET", "/api/v1/feed?after=0&limit=2").json
    assert len(part["events"]) == 2 and part["more"] is True
    rest = call(app, "GET", "/api/v1/feed?after=%d&limit=2" % part["next"]).json
    assert [e["job_id"] for e in rest["events"]] == ["f2"] and rest["next"] == end
    only_b = call(app, "GET", "/api/v1/feed?after=0&user=b").json
    assert [e["job_id"] for e in only_b["events"]] == ["f2"] and only_b["next"] == end
    # a cursor past the end (a database replaced) comes back to the end
    assert call(app, "GET", "/api/v1/feed?after=999999").json["next"] == end
    # a job's events: after= is "after that one in this endpoint's order" (time, seq)
    events = call(app, "GET", "/api/v1/jobs/f1/events").json["events"]
    assert [e["status"] for e in events] == ["SUBMITTED", "RUNNING"]
    after = call(app, "GET", "/api/v1/jobs/f1/events?after=" + events[0]["event_id"]).json
    assert [e["event_id"] for e in after["events"]] == [late["event_id"]]
    assert call(app, "GET", "/api/v1/jobs/f1/events?after=" + late["event_id"]).json == \
        {"events": []}
    assert call(app, "GET", "/api/v1/jobs/f2/events?after=" + late["event_id"]).status == 400


def test_feed_hides_private_jobs_and_owner_only_fields(tmp_path, tokens):
    svc = tokened(tmp_path, SLM_PRIVATE_DATA="jobs")
    try:
        app = svc.app
        for user in ("bob", "alice"):      # alice's is the feed's second event
            post(app, event(user + "-1", user=user, command=[user + "-cmd"]),
                 token=tokens[user], expect=200)
        mine = call(app, "GET", "/api/v1/feed", token=tokens["alice"]).json
        assert [e["job_id"] for e in mine["events"]] == ["alice-1"]
        assert mine["events"][0]["command"] == ["alice-cmd"] and mine["next"] == 2
        assert call(app, "GET", "/api/v1/feed?user=bob", token=tokens["alice"]).status == 403
        assert len(call(app, "GET", "/api/v1/feed", token=tokens["root"]).json["events"]) == 2
    finally:
        svc.stop()
    svc = tokened(tmp_path)     # not private: everyone's events, command lines the owner's
    try:
        seen = call(svc.app, "GET", "/api/v1/feed", token=tokens["alice"]).json["events"]
        assert [(e["job_id"], "command" in e) for e in seen] == [("bob-1", False),
                                                                  ("alice-1", True)]
    finally:
        svc.stop()


def later(seconds, fn):
    timer = threading.Timer(seconds, fn)
    timer.start()
    return timer


def test_long_polls_answer_when_an_event_arrives_and_after_wait_otherwise(service_in_process):
    app = service_in_process.app
    post(app, event("w1", user="a"), expect=200)

    def end():
        return call(app, "GET", "/api/v1/feed").json["next"]

    def last():
        return call(app, "GET", "/api/v1/jobs/w1/events").json["events"][-1]["event_id"]
    for path in (lambda: "/api/v1/feed?after=%d&wait=20" % end(),
                 lambda: "/api/v1/jobs/w1/events?after=%s&wait=20" % last(),
                 lambda: "/api/v1/jobs/w2/events?wait=20"):      # a job not known yet
        path = path()
        job = "w2" if "w2" in path else "w1"
        timer = later(0.3, lambda: post(app, event(job, "COMPLETED", user="a", exit_code=0),
                                        expect=200))
        started = time.monotonic()
        r = call(app, "GET", path)
        took = time.monotonic() - started
        timer.join()
        assert r.status == 200 and [e["status"] for e in r.json["events"]][-1:] == \
            ["COMPLETED"], path
        assert 0.25 < took < 10, (path, took)
    for path, code in (("/api/v1/feed?after=%d&wait=1.2" % end(), 200),
                       ("/api/v1/jobs/w1/events?after=%s&wait=1.2" % last(), 200),
                       ("/api/v1/jobs/never/events?wait=1.2", 404)):
        started = time.monotonic()
        r = call(app, "GET", path)
        took = time.monotonic() - started
        assert r.status == code and 1.2 <= took < 4, (path, r.status, took)
        if code == 200:
            assert r.json["events"] == []
    # stopping the service answers a waiting request at once
    timer = later(0.3, service_in_process.ingestor.changes.close)
    started = time.monotonic()
    assert call(app, "GET", "/api/v1/feed?after=%d&wait=20" % end()).status == 200
    assert time.monotonic() - started < 5
    timer.join()


def test_another_instance_s_events_are_seen_within_seconds(tmp_path):
    """Two services on one database: a waiter on one hears of the other's event
    by looking again (about once a second), without the ingestor's signal."""
    db = str(tmp_path / "two.db")
    one = scaffold.build_service(db, {"SLM_RECONCILE": "off"})
    two = scaffold.build_service(db, {"SLM_RECONCILE": "off"})
    try:
        timer = later(0.3, lambda: post(two.app, event("t1", user="a"), expect=200))
        started = time.monotonic()
        r = call(one.app, "GET", "/api/v1/feed?after=0&wait=10")
        timer.join()
        assert [e["job_id"] for e in r.json["events"]] == ["t1"]
        # posted at 0.3 s, seen at the waiter's next look (RECHECK), with room for a busy CI
        assert time.monotonic() - started < 0.3 + slm_api.Changes.RECHECK + 2.0
    finally:
        one.stop()
        two.stop()


def test_summary_counts_what_ended_in_the_window_by_hour(service_on_backend):
    app = service_on_backend.app
    hour = (int(time.time()) // 3600 - 5) * 3600
    statuses = [("COMPLETED", 0), ("COMPLETED", 1), ("FAILED", 1), ("TIMEOUT", 2),
                ("CANCELLED", 2), ("OUT_OF_MEMORY", 4)]
    post(app, {"events": [event("s%d" % i, status, hour + h * 3600 + 60, user="a")
                          for i, (status, h) in enumerate(statuses)] +
               [event("s-run", "RUNNING", hour + 60, user="a"),
                event("s-lost", "LOST", hour + 3 * 3600 + 5, user="b"),
                event("s-old", "FAILED", hour - 7200, user="a")]}, expect=200)
    r = call(app, "GET", "/api/v1/summary?since=%s&until=%s" % (iso_time(hour),
                                                                 iso_time(hour + 5 * 3600)))
    assert r.status == 200, r.body
    s = r.json
    assert s["counts"] == {"COMPLETED": 2, "FAILED": 1, "TIMEOUT": 1, "CANCELLED": 1,
                           "OUT_OF_MEMORY": 1, "LOST": 1}
    assert (s["ended"], s["failed"], s["bucket"]) == (7, 4, "hour")
    assert s["failure_rate"] == round(4 / 7, 4)
    assert [b["counts"] for b in s["series"]] == [
        {"COMPLETED": 1}, {"COMPLETED": 1, "FAILED": 1}, {"TIMEOUT": 1, "CANCELLED": 1},
        {"LOST": 1}, {"OUT_OF_MEMORY": 1}]
    assert s["series"][0]["start"] == iso_time(hour)[:19] + ".000000Z"
    mine = call(app, "GET", "/api/v1/summary?user=b&since=%s" % iso_time(hour)).json
    assert mine["counts"] == {"LOST": 1} and mine["failure_rate"] == 1.0
    week = call(app, "GET", "/api/v1/summary?since=%s" % iso_time(hour - 6 * 86400)).json
    assert week["bucket"] == "day" and week["ended"] == 8


def test_the_openapi_document_has_the_new_routes(service_in_process):
    doc = call(service_in_process.app, "GET", "/openapi.json").json
    for path in ("/api/v1/search", "/api/v1/feed", "/api/v1/summary", "/api/v1/notifications"):
        assert "get" in doc["paths"][path], path
    params = {p["name"] for p in doc["paths"]["/api/v1/jobs/{job_id}/events"]["get"]
              ["parameters"]}
    assert params == {"job_id", "after", "wait", "cluster"}   # a job is its id on its cluster
    assert not [p for p in doc["paths"] if not p.startswith(("/api/", "/healthz", "/metrics",
                                                              "/openapi"))]


def test_the_lifeline_of_a_paused_and_requeued_job():
    t0 = 1764474000.0
    events = [event("L", s, t0 + dt, seq, **extra) for seq, (s, dt, extra) in
              enumerate([("SUBMITTED", 0, {}), ("RUNNING", 10, {}), ("PAUSED", 20, {}),
                         ("RESUMED", 30, {}), ("SIGNALED", 35, {}), ("CANCELLED", 40, {}),
                         ("REQUEUED", 45, {"source": "slurm"}),
                         ("RUNNING", 60, {"restart_count": 1}),
                         ("COMPLETED", 90, {"restart_count": 1}),
                         ("OUT_OF_MEMORY", 200, {"restart_count": 1, "source": "slurm",
                                                 "corrects": "COMPLETED"})], 1)]
    stretches, marks = slm_api.lifeline(events, now=t0 + 1000)
    assert [(s["kind"], s["start"] - t0, s["end"] - t0, s["run"]) for s in stretches] == [
        ("pending", 0, 10, 0), ("running", 10, 20, 0), ("paused", 20, 30, 0),
        ("running", 30, 40, 0), ("pending", 40, 60, 1), ("running", 60, 90, 1)]
    assert [(m["status"], m["time"] - t0) for m in marks] == [
        ("SIGNALED", 35), ("CANCELLED", 40), ("REQUEUED", 45), ("COMPLETED", 90),
        ("OUT_OF_MEMORY", 200)]
    # still running: up to now
    running, _ = slm_api.lifeline(events[:2], now=t0 + 100)
    assert running[-1]["end"] == t0 + 100
    assert slm_api.limit_seconds("1-02:03:04") == 93784
    assert [slm_api.limit_seconds(v) for v in ("90", "5:30", "01:00:00", "2-12", "x", None)] == \
        [5400, 330, 3600, 216000, None, None]


# ---------------------------------------------------------------------------
# In a real browser
# ---------------------------------------------------------------------------

LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync"]
TIMEOUT = 15000      # ms, for every awaited condition


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        need(False, "BROWSER", "Playwright for Python is not installed (%s; tests/requirements"
             ".txt has it)" % e)
    need(os.access(CHROMIUM, os.X_OK), "BROWSER", "%s is missing (apt-get install chromium)"
         % CHROMIUM)
    from playwright.sync_api import expect
    expect.set_options(timeout=TIMEOUT)     # every awaited condition, not Playwright's 5 s
    manager = sync_playwright().start()
    try:
        # launch() starts the browser on a fresh temporary profile of its own (a user
        # data dir it removes afterwards); each test then takes a new context
        browser = manager.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
    except Exception as e:
        manager.stop()
        need(False, "BROWSER", "chromium does not start under Playwright: %s" % e)
    yield browser
    browser.close()
    manager.stop()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory):
    where = os.environ.get("SLM_SCREENSHOTS") or str(tmp_path_factory.mktemp("screenshots"))
    os.makedirs(where, exist_ok=True)
    return where


@pytest.fixture(scope="module")
def live_service(tmp_path_factory):
    """A running service with a day of real jobs."""
    work = tmp_path_factory.mktemp("dash-service")
    svc = scaffold.ServiceProcess(str(work / "dash.db"), work, env={"SLM_RECONCILE": "off"})
    svc.start()
    now = time.time()
    svc.t_life = now - 900
    events = life_events("4242", svc.t_life, user="alice")
    events += [event("4243", "SUBMITTED", now - 300, 1, user="alice", job_name=XSS,
                     partition="debug", time_limit="60"),
               event("4243", "RUNNING", now - 240, 2, user="alice", job_name=XSS,
                     partition="debug", command=[XSS])]
    events += [event("777", "SUBMITTED", now - 600, 1, user="bob", job_name="sweep",
                     array="1-4", partition="batch")]
    events += [event("777_%d" % i, "RUNNING" if i < 3 else "COMPLETED", now - 500 + i, 1,
                     user="bob", job_name="sweep", array_job_id="777", array_task_id=str(i),
                     partition="batch", **({"exit_code": 0} if i >= 3 else {}))
               for i in range(1, 5)]
    finals = ["COMPLETED", "FAILED", "TIMEOUT", "COMPLETED", "CANCELLED", "OUT_OF_MEMORY"]
    for i in range(40):
        status = finals[i % len(finals)]
        t = now - 86000 + i * 2000
        events += [event("5%03d" % i, "RUNNING", t, 1, user="u%d" % (i % 3),
                         job_name="job-%d" % i, partition=("batch", "gpu")[i % 2]),
                   event("5%03d" % i, status, t + 600, 2, user="u%d" % (i % 3),
                         job_name="job-%d" % i, partition=("batch", "gpu")[i % 2],
                         exit_code=0 if status == "COMPLETED" else 1, elapsed=600.0)]
    status, answer = svc.post({"events": events})
    assert status == 200 and answer["accepted"] == len(events), answer
    yield svc
    svc.stop()


class Watch(object):
    """What a page did that it should not: console errors (a CSP violation is
    one), uncaught exceptions, dialogs (an alert() means an XSS)."""

    def __init__(self, page):
        self.errors, self.dialogs = [], []
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(str(e)))

        def dialog(d):
            self.dialogs.append(d.message)
            d.dismiss()
        page.on("dialog", dialog)


@pytest.fixture
def tab(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT)
    page = context.new_page()
    page.watch = Watch(page)
    yield page
    context.close()
    assert page.watch.errors == [] and page.watch.dialogs == []


def ready(page, url):
    page.goto(url)
    page.wait_for_selector("html[data-ready]")


def test_the_list_loads_and_a_filter_survives_a_reload(tab, live_service, screenshots):
    from playwright.sync_api import expect
    ready(tab, live_service.url + "/")
    rows = tab.locator("#rows tr")
    expect(rows).to_have_count(43)          # 40 + 4242 + 4243 + the array, its tasks grouped
    expect(tab.locator("#rows tr").first).to_have_attribute("data-job", "4243")
    expect(tab.locator("tr[data-job='777'] .tasks")).to_contain_text("2 running, 2 completed")
    expect(tab.locator("tr[data-job='4242'] .st")).to_have_text("COMPLETED")
    expect(tab.locator("#summary")).to_contain_text("ended")
    assert tab.locator("#summary svg.chart rect").count() >= 6
    tab.screenshot(path=os.path.join(screenshots, "dashboard-list.png"))
    tab.fill("input[name=name_contains]", "JOB-1")
    tab.select_option("select[name=status]", label="failed (any way)")
    tab.click("form.filters button[type=submit]")
    tab.wait_for_url(re.compile(r"name_contains=JOB-1"))
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(tab.url).query)
    assert query["name_contains"] == ["JOB-1"] and "user" not in query   # empty fields left out
    expected = sorted("5%03d" % i for i in range(40) if str(i).startswith("1") and
                      ["COMPLETED", "FAILED", "TIMEOUT", "COMPLETED", "CANCELLED",
                       "OUT_OF_MEMORY"][i % 6] in ("FAILED", "TIMEOUT", "OUT_OF_MEMORY"))
    got = lambda: sorted(tab.locator("#rows tr").evaluate_all(
        "rows => rows.map(r => r.dataset.job)"))
    expect(rows).to_have_count(len(expected))
    assert got() == expected
    tab.reload()
    tab.wait_for_selector("html[data-ready]")
    expect(rows).to_have_count(len(expected))
    assert got() == expected
    expect(tab.locator("input[name=name_contains]")).to_have_value("JOB-1")
    # sorting is in the address too: oldest first
    tab.click("th a:has-text('Submitted')")
    tab.wait_for_url(re.compile(r"sort=submitted"))
    assert got() == expected and tab.locator("#rows tr").first.get_attribute(
        "data-job") == expected[0]


def test_a_new_event_appears_live(tab, live_service):
    from playwright.sync_api import expect
    ready(tab, live_service.url + "/")
    expect(tab.locator("#live")).to_have_text("live")
    assert tab.locator("tr[data-job='live-1']").count() == 0
    status, _ = live_service.post(event("live-1", "RUNNING", user="carol",
                                        job_name="arrives-live"))
    assert status == 200
    expect(tab.locator("tr[data-job='live-1']")).to_be_visible()
    expect(tab.locator("tr[data-job='live-1'] td.name")).to_have_text("arrives-live")
    expect(tab.locator("#announce")).to_contain_text("live-1")
    # the same address's next event: its state changes in place
    live_service.post(event("live-1", "COMPLETED", user="carol", exit_code=0))
    expect(tab.locator("tr[data-job='live-1'] .st")).to_have_text("COMPLETED")
    expect(tab.locator("#announce")).to_contain_text("COMPLETED")
    # paused: nothing more arrives until resumed, then what was missed comes at once
    tab.click("#pause")
    expect(tab.locator("#live")).to_have_text("paused")
    expect(tab.locator("#pause")).to_have_attribute("aria-pressed", "true")
    live_service.post(event("live-2", "RUNNING", user="carol"))
    assert tab.locator("tr[data-job='live-2']").count() == 0
    tab.click("#pause")
    expect(tab.locator("tr[data-job='live-2']")).to_be_visible()
    expect(tab.locator("#live")).to_have_text("live")


def test_a_job_page_follows_its_job_live_late_events_included(tab, live_service):
    """The job page follows the events as they are stored: one flushed late
    from a spool, with an earlier time than the page's last, shows too."""
    from playwright.sync_api import expect
    t0 = time.time() - 120
    live_service.post(event("follow-1", "RUNNING", t0 + 60, 2, user="carol"))
    ready(tab, live_service.url + "/jobs/follow-1")
    expect(tab.locator("#live")).to_have_text("live")
    live_service.post(event("follow-1", "SUBMITTED", t0, 1, user="carol", job_name="late"))
    expect(tab.locator("table.events")).to_contain_text("SUBMITTED")
    live_service.post(event("follow-1", "COMPLETED", t0 + 90, 3, user="carol", exit_code=0))
    expect(tab.locator("h1 .st")).to_have_text("COMPLETED")
    expect(tab.locator("#announce")).to_contain_text("COMPLETED")


def test_live_stale_offline_and_back_with_what_was_missed(browser, tmp_path):
    """The service goes away: the page says so (text, not only colour) and
    retries; back, it says live and shows what was stored meanwhile."""
    from playwright.sync_api import expect
    svc = scaffold.ServiceProcess(str(tmp_path / "o.db"), tmp_path,
                                  env={"SLM_RECONCILE": "off"}).start()
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT)
    try:
        svc.post(event("off-1", "RUNNING", user="dave"))
        page = context.new_page()
        ready(page, svc.url + "/")
        expect(page.locator("#live")).to_have_text("live")
        svc.stop()
        expect(page.locator("#live")).to_have_text(re.compile(r"^(stale|offline): retrying$"))
        expect(page.locator("#live")).to_have_text("offline: retrying")
        svc.start()
        svc.post(event("off-2", "RUNNING", user="dave", job_name="while-away"))
        expect(page.locator("#live")).to_have_text("live")
        expect(page.locator("tr[data-job='off-2']")).to_be_visible()
    finally:
        context.close()
        svc.kill()


def test_the_job_page_draws_the_paused_job_to_scale(tab, live_service, screenshots):
    from playwright.sync_api import expect
    ready(tab, live_service.url + "/jobs/4242")
    expect(tab.locator("h1")).to_contain_text("4242")
    expect(tab.locator(".why")).to_contain_text("COMPLETED")
    segments = tab.locator("svg.lifeline rect.seg")
    expect(segments).to_have_count(4)
    box = tab.locator("svg.lifeline").bounding_box()
    drawn = [(s.get_attribute("data-kind"), s.bounding_box()) for s in segments.all()]
    assert [kind for kind, _ in drawn] == ["pending", "running", "paused", "running"]
    # 60 s waiting, 100 s running, 40 s paused, 100 s running: of 300 s
    expected = [(0, 60), (60, 160), (160, 200), (200, 300)]
    for (kind, b), (start, end) in zip(drawn, expected):
        assert abs((b["x"] - box["x"]) / box["width"] - start / 300.0) < 0.005, kind
        assert abs(b["width"] / box["width"] - (end - start) / 300.0) < 0.005, kind
    xs = [b["x"] for _, b in drawn]
    assert xs == sorted(xs)
    expect(tab.locator("ol.steps li").first).to_contain_text("Pending 1m00s")
    expect(tab.locator("dl.res")).to_contain_text("512")          # MB of memory
    expect(tab.locator("table.events tbody tr")).to_have_count(5)
    tab.screenshot(path=os.path.join(screenshots, "dashboard-job.png"), full_page=True)
    tab.click("details#raw summary")
    expect(tab.locator("details#raw pre")).to_contain_text('"job_id": "4242"')


def test_an_xss_name_renders_as_text_and_no_dialog_opens(tab, live_service):
    from playwright.sync_api import expect
    for path in ("/", "/jobs/4243", "/?name_contains=" + urllib.parse.quote("<img")):
        ready(tab, live_service.url + path)
        cell = tab.locator("tr[data-job='4243'] td.name") if path != "/jobs/4243" else \
            tab.locator("h1 .name")
        expect(cell).to_have_text(XSS)
        assert tab.locator("img[src=x]").count() == 0
    tab.evaluate("() => new Promise(done => setTimeout(done, 300))")   # let onerror fire, if any
    assert tab.watch.dialogs == []


def test_the_token_prompt_signs_in_and_explains_a_wrong_token(browser, tmp_path):
    from playwright.sync_api import expect
    tokens = make_token_file(tmp_path / "tokens", alice="user")
    svc = scaffold.ServiceProcess(str(tmp_path / "t.db"), tmp_path, env={
        "SLM_TOKENS_FILE": str(tmp_path / "tokens"), "SLM_RECONCILE": "off"})
    svc.token = tokens["alice"]
    svc.start()
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT)
    try:
        svc.post(event("t-1", user="alice", job_name="tokened"))
        page = context.new_page()
        watch = Watch(page)
        page.goto(svc.url + "/jobs/t-1")
        expect(page.locator("h1")).to_have_text("Sign in")
        page.fill("#token", "slm_not-the-right-one")
        page.click("button:has-text('Sign in')")
        expect(page.locator("#problem")).to_contain_text("not accepted")
        page.fill("#token", tokens["alice"])
        page.click("button:has-text('Sign in')")
        expect(page.locator("h1")).to_contain_text("t-1")       # back where it was going
        expect(page.locator(".who")).to_contain_text("alice")
        jar = [c for c in context.cookies() if c["name"] == slm_api.SESSION_COOKIE]
        assert jar and jar[0]["httpOnly"] is True and jar[0]["sameSite"] == "Strict"
        assert jar[0]["value"] and tokens["alice"] not in jar[0]["value"]   # not the token
        assert page.evaluate("document.cookie") == ""            # no script can read it
        page.goto(svc.url + "/")
        expect(page.locator("#rows tr[data-job='t-1']")).to_be_visible()
        expect(page.locator("#live")).to_have_text("live")       # the feed takes the cookie
        page.click("button:has-text('Sign out')")
        expect(page.locator("h1")).to_have_text("Sign in")
        page.goto(svc.url + "/")
        expect(page.locator("h1")).to_have_text("Sign in")
        # 401s answered while signed out are the page's own (never a console error of ours)
        assert [e for e in watch.errors if "401" not in e] == [] and watch.dialogs == []
        assert tokens["alice"] not in svc.output()
    finally:
        context.close()
        svc.stop()


def test_a_phone_width_has_no_page_scroll_and_keeps_the_key_content(browser, live_service,
                                                                     screenshots):
    """At 390 x 844 every page reads without horizontal scrolling and no text
    column is squeezed: the job list's rows become cards (the id and the state,
    the name across the card, the time and the ending), the event and delivery
    tables lists of labelled lines."""
    from playwright.sync_api import expect
    long_id = "local-login1-20261207101120-17442"
    status, _ = live_service.post({"events": [
        event(long_id, "RUNNING", time.time() - 30, 1, user="alice",
              job_name="a rather long job name that a phone must wrap, not squeeze")]})
    assert status == 200
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                                  has_touch=True, device_scale_factor=2)
    context.set_default_timeout(TIMEOUT)
    try:
        page = context.new_page()
        watch = Watch(page)
        for path, key in (("/", "tr[data-job='4242']"), ("/jobs/4242", "svg.lifeline"),
                          ("/delivery", "h1")):
            ready(page, live_service.url + path)
            assert page.evaluate("document.documentElement.scrollWidth") <= 390, path
            expect(page.locator(key)).to_be_visible()
            box = page.locator(key).bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= 390.5, (path, box)
        ready(page, live_service.url + "/")
        row = page.locator("tr[data-job='4242']")
        for part in ("td.id a", "td.name", "td.state .st", "td.num"):
            cell = row.locator(part)
            expect(cell).to_be_visible()
            b = cell.bounding_box()
            assert b["x"] >= 0 and b["x"] + b["width"] <= 390.5, (part, b)
        # a long id and a long name: the name gets the card's width, a line or two
        card = page.locator("tr[data-job='%s']" % long_id)
        name = card.locator("td.name").bounding_box()
        line = page.evaluate("parseFloat(getComputedStyle(document.body).lineHeight)")
        assert name["width"] >= 300 and name["height"] <= 3 * line + 2, name
        page.screenshot(path=os.path.join(screenshots, "dashboard-phone-list.png"))
        ready(page, live_service.url + "/jobs/4242")
        page.screenshot(path=os.path.join(screenshots, "dashboard-phone-job.png"),
                        full_page=True)
        assert watch.errors == [] and watch.dialogs == []
    finally:
        context.close()


def test_axe_finds_no_serious_accessibility_violation(browser, live_service):
    need(os.path.exists(AXE), "BROWSER", "axe-core is not installed in tests/node_modules "
         "(cd tests && npm install)")
    # the check is injected from the local file, which the pages' CSP would refuse
    context = browser.new_context(bypass_csp=True)
    context.set_default_timeout(TIMEOUT)
    try:
        page = context.new_page()
        found = {}
        for path in ("/", "/jobs/4242", "/jobs/777", "/delivery", "/signin",
                     "/?status=BOGUS"):
            page.goto(live_service.url + path)
            page.add_script_tag(path=AXE)
            found[path] = page.evaluate(
                "async () => (await axe.run(document, {resultTypes: ['violations']}))"
                ".violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
                " nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 3)}))")
        bad = dict((p, [v for v in vs if v["impact"] in ("serious", "critical")])
                   for p, vs in found.items())
        assert not any(bad.values()), json.dumps(bad, indent=1)
    finally:
        context.close()


def test_keyboard_moves_between_rows(tab, live_service):
    from playwright.sync_api import expect
    ready(tab, live_service.url + "/")
    first = tab.locator("#rows tr").nth(0).locator("a").first
    first.focus()
    tab.keyboard.press("ArrowDown")
    expect(tab.locator("#rows tr").nth(1).locator("a").first).to_be_focused()
    tab.keyboard.press("k")
    expect(first).to_be_focused()
    tab.keyboard.press("Enter")
    tab.wait_for_url(re.compile(r"/jobs/"))


def test_a_checksum_of_the_assets_names_them(service_in_process):
    """The page names each asset by a hash of its text: a new version is never an old cache."""
    body = text(page(service_in_process.app, "/"))
    name = re.search(r"/static/slm\.js\?v=([0-9a-f]+)", body).group(1)
    assert name == hashlib.sha256(slm_api.DASHBOARD_JS.encode()).hexdigest()[:12]
    r = call(service_in_process.app, "GET", "/static/slm.js?v=" + name)
    assert "immutable" in r.headers["cache-control"]
    again = call(service_in_process.app, "GET", "/static/slm.js",
                 headers={"If-None-Match": r.headers["etag"]})
    assert again.status == 304 and again.body == b""
