#!/usr/bin/env python3
"""The dashboard's first page in a real browser (bench/dashboard.py [--quick]).

bench/fill.py writes 100,000 jobs / 1,000,000 events into SQLite (--quick:
10,000 / 100,000), a real slm_api.py serves them, and headless Chromium
(Debian's /usr/bin/chromium through Playwright, a fresh context per load:
nothing cached) loads, interleaved round by round:
  baseline   a static copy of the same page and its assets, from a plain
             http.server (what the browser alone costs)
  first      / signed in as u0, the heavy user (40 % of the jobs): the
             default view, "your jobs", first page (50 jobs, summary strip)
  everyone   /?all=1: everyone's jobs (informational)
  filtered   /?status=FAILED&user=u3 (informational)
Times are the page's own Navigation Timing, from navigation start: the
later of DOMContentLoaded's end (rows parsed, stylesheet applied, script
run) and the first contentful paint.  Also the page's whole transfer on a
cold load (HTML, CSS, script, icon: Resource Timing's transferSize).
Targets (PASS/MISS): first page rendered <= 300 ms median; transfer <= 100 kB.
"""

import argparse
import http.client
import http.server
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import fill  # noqa: E402
from common import median, pct, result  # noqa: E402

CHROMIUM = os.environ.get("SLM_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PAGES = [("first", "/"), ("everyone", "/?all=1"), ("filtered", "/?status=FAILED&user=u3")]
USER, TOKEN = "u0", "slm_bench-dashboard-token"     # signed in: the dashboard's default view
MEASURE = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const paint = performance.getEntriesByName("first-contentful-paint")[0];
  const all = [nav].concat(performance.getEntriesByType("resource"));
  return {dcl: nav.domContentLoadedEventEnd, fcp: paint ? paint.startTime : null,
          bytes: all.reduce((n, e) => n + (e.transferSize || 0), 0),
          rows: document.querySelectorAll("#rows tr").length,
          files: all.map(e => e.name.replace(location.origin, ""))};
}"""


def fill_database(db, jobs, per_job):
    """bench/fill.py's data."""
    return fill.fill(db, jobs, per_job, quiet=True)


_COOKIE = []


def sign_in(port):
    """The sign-in cookie: computed from the token where the service derives
    it so, else made by the service as its form makes it (POST /signin)."""
    import slm_api
    import urllib.parse
    if hasattr(slm_api, "session_value"):
        _COOKIE[:] = [slm_api.SESSION_COOKIE, slm_api.session_value(slm_api.token_digest(TOKEN))]
        return
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", "/signin", urllib.parse.urlencode({"token": TOKEN, "next": "/"}),
                     {"Content-Type": "application/x-www-form-urlencoded",
                      "Accept": "text/html", "Origin": "http://127.0.0.1:%d" % port})
        answer = conn.getresponse()
        answer.read()
    finally:
        conn.close()
    name, _, rest = (answer.getheader("Set-Cookie") or "").partition("=")
    value = rest.split(";")[0]
    if answer.status != 303 or not value:
        raise RuntimeError("signing in: POST /signin -> %d, no cookie" % answer.status)
    _COOKIE[:] = [name, value]


def session_cookie():
    return tuple(_COOKIE)


def get(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path, headers={"Accept": "text/html",
                                           "Cookie": "%s=%s" % session_cookie()})
        answer = conn.getresponse()
        body = answer.read()
    finally:
        conn.close()
    if answer.status != 200:
        raise RuntimeError("GET %s -> %d %s" % (path, answer.status, body[:200]))
    return body


def static_copy(svc, root):
    """The first page and its assets as files, served by a plain http.server."""
    import re
    html = get(svc.port, "/")
    with open(os.path.join(root, "index.html"), "wb") as f:
        f.write(html)
    os.makedirs(os.path.join(root, "static"))
    for name in re.findall(rb'/static/([a-z.]+)\?v=', html):
        with open(os.path.join(root, "static", name.decode()), "wb") as f:
            f.write(get(svc.port, "/static/" + name.decode()))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            http.server.SimpleHTTPRequestHandler.__init__(self, *a, directory=root, **kw)

        def log_message(self, *a):
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    common.on_exit(server.shutdown)
    return "http://127.0.0.1:%d/index.html" % server.server_address[1]


def load(browser, url):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    name, value = session_cookie()
    context.add_cookies([{"name": name, "value": value, "url": url}])
    try:
        page = context.new_page()
        page.goto(url, wait_until="load")
        page.wait_for_selector("html[data-ready]")
        # a function, not an expression: the page's CSP forbids eval()
        page.wait_for_function("() => performance.getEntriesByName("
                               "'first-contentful-paint').length > 0")
        return page.evaluate(MEASURE)
    finally:
        context.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=None)
    args = ap.parse_args()
    jobs = args.jobs or (10000 if args.quick else 100000)
    per_job = 10
    rounds = args.rounds or (7 if args.quick else 21)
    common.header("dashboard: first page over %d jobs / %d events in headless Chromium, %d "
                  "rounds" % (jobs, jobs * per_job, rounds))
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("Playwright is not installed (tests/requirements.txt): no figures")
        return 1
    if not os.access(CHROMIUM, os.X_OK):
        print("%s is missing (apt-get install chromium): no figures" % CHROMIUM)
        return 1
    tmp = common.tempdir("dashboard")
    db = os.path.join(tmp, "dashboard.db")
    took = fill_database(db, jobs, per_job)
    print("sqlite: filled %d jobs / %d events in %.1f s" % (jobs, jobs * per_job, took))
    import slm_api
    tokens = os.path.join(tmp, "tokens")
    with open(tokens, "w") as f:
        f.write("%s:user:%s\n" % (USER, slm_api.token_digest(TOKEN)))
    svc = common.Service(db, tmp, env={"SLM_TOKENS_FILE": tokens, "SLM_PUBLIC": "healthz"})
    sign_in(svc.port)
    root = os.path.join(tmp, "static-copy")
    os.makedirs(root)
    try:
        baseline = static_copy(svc, root)
        urls = [("baseline", baseline)] + [(n, svc.url + p) for n, p in PAGES]
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                for name, url in urls:     # warm the service and the browser once
                    seen = load(browser, url)
                    print("  %-9s %-45s %d rows, %d files, %.1f kB" % (
                        name, url.replace(svc.url, ""), seen["rows"], len(seen["files"]),
                        seen["bytes"] / 1000.0))
                times = dict((n, []) for n, _ in urls)
                sizes = dict((n, []) for n, _ in urls)
                parts = dict((n, ([], [])) for n, _ in urls)
                for _ in range(rounds):
                    for name, url in urls:
                        seen = load(browser, url)
                        times[name].append(max(seen["dcl"], seen["fcp"] or 0) / 1000.0)
                        sizes[name].append(seen["bytes"])
                        parts[name][0].append(seen["dcl"])
                        parts[name][1].append(seen["fcp"] or 0)
            finally:
                browser.close()
    finally:
        svc.stop()
    base = median(times["baseline"])
    for name, _ in urls:
        m = median(times[name])
        print("  %-9s median %7.1f ms  p90 %7.1f ms  %5.2fx static copy; DOMContentLoaded "
              "%5.1f ms, first paint %5.1f ms; %.1f kB"
              % (name, m * 1e3, pct(times[name], 90) * 1e3, m / base, median(parts[name][0]),
                 median(parts[name][1]), median(sizes[name]) / 1000.0))
    m = median(times["first"])
    result("dashboard first page rendered (%dk jobs, signed in as a user with 40 %% of them, "
           "Chromium)" % (jobs // 1000),
           "%.0f ms median = %.2fx static copy %.0f ms" % (m * 1e3, m / base, base * 1e3),
           "<= 300 ms", m <= 0.300)
    size = median(sizes["first"])
    result("dashboard first page transfer (HTML+CSS+JS+icon)", "%.1f kB" % (size / 1000.0),
           "<= 100 kB", size <= 100000)
    return 0


if __name__ == "__main__":
    sys.exit(main())
