"""The storage layer of slm_api.py, on SQLite and on a real MariaDB.

The MariaDB half needs PyMySQL and a server (SLM_TEST_MARIADB_URL, default
mysql://root@127.0.0.1:3306); it skips without them unless
SLM_REQUIRE_MARIADB=1.  Each run works in a throw-away database
slm_test_<random> that is dropped afterwards.
"""
import functools
import itertools
import json
import os
import threading

import pytest

import scaffold
from conftest import ROOT
from scaffold import ScratchDatabase, await_true, mariadb_params

import slm_api

# the events of this file happen at one fixed time, unless they say otherwise
event = functools.partial(scaffold.event, when="2026-11-30T03:40:41.123Z")


class Store(object):
    """The storage driven as the service drives it: writes through the
    Ingestor (group commit), reads in one transaction each."""

    def __init__(self, db):
        self.db = db if isinstance(db, slm_api.Database) else slm_api.open_database(
            slm_api.db_config({}, db))
        self.ingestor = slm_api.Ingestor(self.db, slm_api.NotifyPolicy())

    def ingest(self, events):
        """(accepted, duplicates); ValueError for an invalid event (nothing stored)."""
        answer = self.ingestor.submit([slm_api.validate_event(e) for e in events])
        return answer["accepted"], answer["duplicates"]

    def _read(self, name, *args):
        return self.db.run(lambda tx: getattr(tx, name)(*args))

    def get_job(self, job_id, cluster=None):
        return self._read("get_job", slm_api.job_key_of(cluster, job_id))

    def job_events(self, job_id, cluster=None):
        return self._read("job_events", slm_api.job_key_of(cluster, job_id))

    def list_jobs(self, filters, limit, offset):
        return self._read("list_jobs", filters, limit, offset)

    def job_counts_by_status(self):
        return self._read("job_counts")

    def ping(self):
        return self.db.ping()

    def schema_version(self):
        return self.db.schema_version()

    def close(self):
        self.db.close()

    def __getattr__(self, name):      # the pool's internals, for the reconnect tests
        return getattr(self.db, name)


def mysql_store(host, port, user, password, database, **kw):
    return Store(slm_api.Database(slm_api.MySQLDialect(host, port, user, password, database,
                                                       **kw)))


class Backend(object):
    """A store plus a separate raw connection to look behind its back: on a
    SQLite file, or on a scratch MariaDB database (scaffold.ScratchDatabase)."""

    def __init__(self, kind, tmp_path):
        self.kind = kind
        self.dbname = self.scratch = None
        if kind == "sqlite":
            self.path = str(tmp_path / "slm.db")
            self.store = Store(self.path)
        else:
            self.scratch = ScratchDatabase()
            self.admin, self.dbname = self.scratch.admin, self.scratch.name
            p = self.scratch.params
            self.store = mysql_store(p["host"], p["port"], p["user"], p["password"],
                                     self.dbname)

    def raw(self):
        if self.kind == "sqlite":
            import sqlite3
            return sqlite3.connect(self.path, isolation_level=None)
        return self.scratch.connect()

    def query(self, sql, args=()):
        conn = self.raw()
        try:
            cur = conn.cursor()
            cur.execute(sql.replace("?", "%s") if self.kind == "mysql" else sql, args)
            rows = cur.fetchall()
            cur.close()
            return [tuple(r) for r in rows]
        finally:
            conn.close()

    def tables(self):
        if self.kind == "sqlite":
            return {r[0] for r in self.query("SELECT name FROM sqlite_master WHERE type='table'")}
        return {r[0] for r in self.query("SHOW TABLES")}

    def close(self):
        self.store.close()
        if self.scratch is not None:
            self.scratch.drop()


@pytest.fixture(params=["sqlite", "mysql"], ids=["sqlite", "mariadb"])
def db(request, tmp_path):
    b = Backend(request.param, tmp_path)
    yield b
    b.close()


@pytest.fixture
def mariadb(tmp_path):
    b = Backend("mysql", tmp_path)
    yield b
    b.close()


# ---------------------------------------------------------------------------
# Schema
# ---------------------------------------------------------------------------


def test_schema_sql_matches_embedded_schema():
    with open(os.path.join(ROOT, "schema.sql"), encoding="utf-8") as f:
        assert f.read() == slm_api.MYSQL_SCHEMA


def test_tables_and_schema_version_created(db):
    assert not {"slurm_jobs", "slurm_events", "slm_meta"} & db.tables()
    assert db.store.ping() is True
    assert {"slurm_jobs", "slurm_events", "slm_meta"} <= db.tables()
    assert db.store.schema_version() == slm_api.SCHEMA_VERSION
    assert db.query("SELECT value FROM slm_meta WHERE name = ?", ("schema_version",)) == \
        [(str(slm_api.SCHEMA_VERSION),)]


def test_tables_recreated_when_dropped_while_running(db):
    assert db.store.ingest([event()]) == (1, 0)
    conn = db.raw()
    cur = conn.cursor()
    cur.execute("DROP TABLE slurm_events")
    cur.execute("DROP TABLE slurm_jobs")
    cur.close()
    conn.close()
    assert db.store.ingest([event(job_id="7")]) == (1, 0)
    assert db.store.get_job("7")["status"] == "RUNNING"


def test_second_store_on_same_database_is_fine(db):
    db.store.ingest([event()])
    if db.kind == "sqlite":
        other = Store(db.path)
    else:
        p = mariadb_params()
        other = mysql_store(p["host"], p["port"], p["user"], p["password"], db.dbname)
    try:
        assert other.get_job("100")["event_count"] == 1
        assert other.schema_version() == slm_api.SCHEMA_VERSION
    finally:
        other.close()


# ---------------------------------------------------------------------------
# Ingestion and the job row
# ---------------------------------------------------------------------------


def test_idempotent_ingest(db):
    e = event()
    assert db.store.ingest([e]) == (1, 0)
    assert db.store.ingest([e]) == (0, 1)
    assert db.store.ingest([e, e]) == (0, 2)
    f = event(status="COMPLETED", when="2026-11-30T03:41:00Z")
    assert db.store.ingest([f, f]) == (1, 1)
    assert db.query("SELECT COUNT(*) FROM slurm_events") == [(2,)]
    assert db.store.get_job("100")["event_count"] == 2


def test_invalid_event_stores_nothing(db):
    with pytest.raises(ValueError):
        db.store.ingest([event(), event(status="BOGUS")])
    assert db.store.list_jobs({}, 10, 0) == ([], 0)


def test_out_of_order_final_status_stays(db):
    db.store.ingest([event(status="COMPLETED", when="2026-11-30T03:45:00Z", seq=3, exit_code=0,
                           host="node1")])
    db.store.ingest([event(status="RUNNING", when="2026-11-30T03:40:00Z", seq=2, host="node1",
                           nodelist="node1")])
    db.store.ingest([event(status="SUBMITTED", when="2026-11-30T03:39:00Z", seq=1,
                           host="login", user="alice")])
    job = db.store.get_job("100")
    assert job["status"] == "COMPLETED"
    assert job["exit_code"] == 0
    assert job["host"] == "node1"          # from the event holding the status
    assert job["user"] == "alice"          # gap filled from a later-arriving event
    assert job["nodelist"] == "node1"
    assert job["submitted_at"] == "2026-11-30T03:39:00.000000Z"
    assert job["started_at"] == "2026-11-30T03:40:00.000000Z"
    assert job["ended_at"] == "2026-11-30T03:45:00.000000Z"
    assert job["first_seen"] == "2026-11-30T03:39:00.000000Z"
    assert job["last_event_time"] == "2026-11-30T03:45:00.000000Z"
    assert job["event_count"] == 3


def test_final_never_overwritten_by_later_non_final(db):
    db.store.ingest([event(status="CANCELLED", when="2026-11-30T03:45:00Z", reason="cancelled")])
    db.store.ingest([event(status="RUNNING", when="2026-11-30T04:00:00Z")])
    db.store.ingest([event(status="LOST", when="2026-11-30T05:00:00Z")])
    job = db.store.get_job("100")
    assert job["status"] == "CANCELLED"
    assert job["reason"] == "cancelled"
    assert job["ended_at"] == "2026-11-30T03:45:00.000000Z"
    assert job["last_event_time"] == "2026-11-30T05:00:00.000000Z"


def test_submitted_overwrites_nothing(db):
    db.store.ingest([event(status="RUNNING", when="2026-11-30T03:40:00Z")])
    db.store.ingest([event(status="SUBMITTED", when="2026-11-30T03:50:00Z")])
    assert db.store.get_job("100")["status"] == "RUNNING"
    db.store.ingest([event(job_id="200", status="SUBMITTED", when="2026-11-30T03:50:00Z")])
    assert db.store.get_job("200")["status"] == "SUBMITTED"
    # a compute node whose clock is behind the login node still wins
    db.store.ingest([event(job_id="200", status="RUNNING", when="2026-11-30T03:49:00Z")])
    assert db.store.get_job("200")["status"] == "RUNNING"


def test_latest_of_same_class_wins(db):
    db.store.ingest([event(status="PAUSED", when="2026-11-30T03:41:00Z", seq=3),
                     event(status="RESUMED", when="2026-11-30T03:41:00Z", seq=4),
                     event(status="RUNNING", when="2026-11-30T03:40:00Z", seq=2)])
    assert db.store.get_job("100")["status"] == "RESUMED"
    db.store.ingest([event(status="FAILED", when="2026-11-30T03:42:00Z", exit_code=3),
                     event(status="TIMEOUT", when="2026-11-30T03:43:00Z", reason="time_limit")])
    job = db.store.get_job("100")
    assert (job["status"], job["reason"], job["ended_at"]) == \
        ("TIMEOUT", "time_limit", "2026-11-30T03:43:00.000000Z")


def test_array_task_linked_to_array(db):
    db.store.ingest([event(job_id="12_%d" % i, array_job_id="12", array_task_id=str(i),
                           slurm_job_id=str(13 + i)) for i in range(3)])
    db.store.ingest([event(job_id="99")])
    rows, total = db.store.list_jobs({"array_job_id": "12"}, 10, 0)
    assert total == 3
    assert sorted(r["array_task_id"] for r in rows) == ["0", "1", "2"]
    assert db.store.get_job("12") is None     # the parent row need not exist


def test_a_new_jobs_row_is_what_the_database_made(db):
    """A job row made by the ingest is known without reading it back (MySQL:
    the insert says it made it): what the database holds is the same row."""
    made = db.store.run(lambda tx: tx.lock_jobs(["c1/77", "/78"]), write=True)
    select, decode = db.store.dialect.job_row_select()
    for key in ("c1/77", "/78"):
        stored = db.store.run(lambda tx: [decode(r) for r in tx.rows(
            "SELECT %s FROM slurm_jobs WHERE job_key = ?" % select, (key,))])
        assert stored == [slm_api.blank_job_row(key)] == [made[key]]


def test_merge_is_order_independent():
    events = [event(status="SUBMITTED", when="2026-11-30T03:39:00Z", seq=1, user="a"),
              event(status="RUNNING", when="2026-11-30T03:40:00Z", seq=2, host="n1"),
              event(status="SIGNALED", when="2026-11-30T03:41:00Z", seq=3, signal="SIGTERM"),
              event(status="CANCELLED", when="2026-11-30T03:42:00Z", seq=4, reason="cancelled"),
              event(status="RUNNING", when="2026-11-30T03:43:00Z", seq=5)]
    normal = [slm_api.validate_event(e).event for e in events]
    seen = set()
    keys = ("status", "first_seen", "submitted_at", "started_at", "ended_at",
            "last_event_time", "event_count", "reason")
    for order in itertools.permutations(normal):
        row = {}
        for e in order:
            slm_api.merge_event(row, e)
        seen.add(tuple(row[k] for k in keys))
    assert len(seen) == 1
    assert seen.pop()[:1] == ("CANCELLED",)


def test_text_stored_verbatim(db):
    nasty = "x'); DROP TABLE slurm_jobs; -- \" \\ % _ ` 🚀 数据 \u00e9 \u0000 \U0001F600"
    job_id = "j'; DELETE FROM slurm_events; -- 🚀 数据"
    e = event(job_id=job_id, user=nasty, job_name=nasty, partition=nasty, host=nasty,
              nodelist=nasty, message=nasty, command=[nasty, "b"], cwd=nasty, extra_field=nasty)
    assert db.store.ingest([e]) == (1, 0)
    job = db.store.get_job(job_id)
    for key in ("user", "job_name", "partition", "host", "nodelist", "message"):
        assert job[key] == nasty, key
    assert job["meta"] and json.loads(job["meta"])["command"] == [nasty, "b"]
    assert db.store.job_events(job_id) == [e]
    rows, total = db.store.list_jobs({"user": nasty, "name": nasty, "partition": nasty}, 10, 0)
    assert total == 1 and rows[0]["job_id"] == job_id
    assert {"slurm_jobs", "slurm_events"} <= db.tables()


def test_job_ids_are_case_sensitive(db):
    db.store.ingest([event(job_id="abc"), event(job_id="ABC", status="FAILED")])
    assert db.store.get_job("abc")["status"] == "RUNNING"
    assert db.store.get_job("ABC")["status"] == "FAILED"


def test_job_events_in_time_seq_order(db):
    evs = [event(status="RUNNING", when="2026-11-30T03:40:00Z", seq=2),
           event(status="SUBMITTED", when="2026-11-30T03:40:00Z", seq=1),
           event(status="COMPLETED", when="2026-11-30T03:40:00.5+00:00", seq=3),
           event(status="PAUSED", when="2026-11-30T03:40:00.25Z", seq=9)]
    db.store.ingest(evs[2:])
    db.store.ingest(evs[:2])
    got = [e["status"] for e in db.store.job_events("100")]
    assert got == ["SUBMITTED", "RUNNING", "PAUSED", "COMPLETED"]
    assert db.store.job_events("nope") == []


def test_list_filters_and_pagination(db):
    batch = []
    for i in range(30):
        batch.append(event(job_id="job%02d" % i, status="COMPLETED" if i % 3 == 0 else "RUNNING",
                           when="2026-11-%02dT12:00:00Z" % (i + 1), user="u%d" % (i % 2),
                           job_name="n%d" % (i % 5), partition="p%d" % (i % 3)))
    db.store.ingest(batch)
    rows, total = db.store.list_jobs({}, 10, 0)
    assert total == 30
    assert [r["job_id"] for r in rows] == ["job%02d" % i for i in range(29, 19, -1)]
    rows2, _ = db.store.list_jobs({}, 10, 10)
    assert [r["job_id"] for r in rows2] == ["job%02d" % i for i in range(19, 9, -1)]
    assert db.store.list_jobs({}, 10, 30) == ([], 30)
    rows, total = db.store.list_jobs({"status": ["COMPLETED"]}, 100, 0)
    assert total == 10 and all(r["status"] == "COMPLETED" for r in rows)
    _, total = db.store.list_jobs({"status": ["COMPLETED", "RUNNING"]}, 100, 0)
    assert total == 30
    _, total = db.store.list_jobs({"user": "u1", "partition": "p0"}, 100, 0)
    assert total == len([i for i in range(30) if i % 2 == 1 and i % 3 == 0])
    _, total = db.store.list_jobs({"name": "n4"}, 100, 0)
    assert total == 6
    rows, total = db.store.list_jobs({"since": "2026-11-10T00:00:00.000000Z",
                                      "until": "2026-11-12T12:00:00.000000Z"}, 100, 0)
    assert [r["job_id"] for r in rows] == ["job11", "job10", "job09"]
    _, total = db.store.list_jobs({"user": "U1"}, 100, 0)
    assert total == 0


def test_concurrent_ingest_from_8_threads(db):
    per_thread = [[event(job_id="job%d" % (n % 5), seq=n,
                         when="2026-11-30T03:%02d:%02dZ" % (t, n % 60))
                   for n in range(40)] for t in range(8)]
    results, errors = [], []
    start = threading.Barrier(8)

    def work(t):
        try:
            start.wait()
            mine = per_thread[t]
            theirs = per_thread[(t + 1) % 8]   # every event is also sent by another thread
            for i in range(0, 40, 5):
                results.append(db.store.ingest(mine[i:i + 5] + theirs[i:i + 2]))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert sum(a for a, d in results) == 8 * 40
    assert sum(d for a, d in results) == 8 * 8 * 2
    assert db.query("SELECT COUNT(*), COUNT(DISTINCT event_id) FROM slurm_events") == \
        [(320, 320)]
    rows, total = db.store.list_jobs({}, 100, 0)
    assert total == 5
    assert sum(r["event_count"] for r in rows) == 320
    assert db.store.job_counts_by_status() == {"RUNNING": 5}


# ---------------------------------------------------------------------------
# Failure and recovery
# ---------------------------------------------------------------------------


def test_closed_store_is_unavailable(db):
    db.store.ping()
    db.store.close()
    with pytest.raises(slm_api.StoreUnavailable):
        db.store.ingest([event()])
    with pytest.raises(slm_api.StoreUnavailable):
        db.store.ping()


def test_unreachable_mysql_is_unavailable():
    pytest.importorskip("pymysql")
    store = mysql_store("127.0.0.1", scaffold.free_port(), "root", "pw", "nodb",
                        connect_timeout=2)
    with pytest.raises(slm_api.StoreUnavailable):
        store.ping()
    with pytest.raises(slm_api.StoreUnavailable):
        store.ingest([event()])


def test_sqlite_unopenable_is_unavailable(tmp_path):
    store = Store(str(tmp_path / "no" / "such" / "dir" / "slm.db"))
    with pytest.raises(slm_api.StoreUnavailable):
        store.ping()


def idle_connection(db):
    db.store.ping()            # leaves one connection idle in the pool
    assert len(db.store._idle) == 1
    return db.store._idle[-1]


def connections_gone(mariadb, thread_ids, why, timeout=10):
    """Await the end of these connections on the server."""
    def gone():
        with mariadb.admin.cursor() as cur:
            cur.execute("SELECT ID FROM information_schema.PROCESSLIST")
            return not set(thread_ids) & set(r[0] for r in cur.fetchall())
    await_true(gone, timeout, why)


def killed(mariadb, *thread_ids):
    """KILL these connections and await their end on the server."""
    with mariadb.admin.cursor() as cur:
        for thread_id in thread_ids:
            cur.execute("KILL %d" % thread_id)
    connections_gone(mariadb, thread_ids, "the killed connections to end")


def test_mariadb_reconnects_after_kill(mariadb):
    mariadb.store.ingest([event()])
    conn = idle_connection(mariadb)
    victim = conn.thread_id()
    killed(mariadb, victim)
    late = event(status="COMPLETED", when="2026-11-30T04:00:00Z")
    assert mariadb.store.ingest([late]) == (1, 0)
    assert mariadb.store.get_job("100")["status"] == "COMPLETED"
    assert idle_connection(mariadb).thread_id() != victim


def test_mariadb_survives_all_pooled_connections_dying(mariadb):
    # what a server restart looks like from here: every idle connection is dead
    mariadb.store.ping()
    conns = [mariadb.store._acquire() for _ in range(3)]
    for conn in conns:
        mariadb.store._release(conn, True)
    assert len(mariadb.store._idle) == 3
    killed(mariadb, *[conn.thread_id() for conn in conns])
    assert mariadb.store.ingest([event()]) == (1, 0)
    assert mariadb.store.get_job("100")["event_count"] == 1


def test_mariadb_reconnects_after_wait_timeout(mariadb):
    conn = idle_connection(mariadb)
    with conn.cursor() as cur:
        cur.execute("SET SESSION wait_timeout = 1")
    conn.commit()
    # the server ends the idle connection a second on, the pool does not know
    connections_gone(mariadb, [conn.thread_id()], "the server to close the idle connection")
    assert mariadb.store.ingest([event()]) == (1, 0)
    assert mariadb.store.get_job("100")["status"] == "RUNNING"


def test_mariadb_tables_are_utf8mb4_bin(mariadb):
    mariadb.store.ping()
    rows = mariadb.query("SELECT table_name, table_collation FROM information_schema.tables"
                         " WHERE table_schema = ?", (mariadb.dbname,))
    assert {r[1] for r in rows} == {"utf8mb4_bin"}


# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------


def test_db_config_default_and_sqlite_urls():
    assert slm_api.db_config({}) == {"backend": "sqlite", "path": "slm.db"}
    assert slm_api.db_config({}, "/x/y.db") == {"backend": "sqlite", "path": "/x/y.db"}
    assert slm_api.db_config({"SLM_DB_URL": "sqlite:///rel.db"})["path"] == "rel.db"
    assert slm_api.db_config({"SLM_DB_URL": "sqlite:////abs/s.db"})["path"] == "/abs/s.db"
    with pytest.raises(slm_api.ConfigError):
        slm_api.db_config({"SLM_DB_URL": "postgres://h/db"})


def test_db_config_mysql_url_and_env():
    c = slm_api.db_config({"SLM_DB_URL": "mysql://bob:p%40ss@db.example:3307/jobs"})
    assert c == {"backend": "mysql", "host": "db.example", "port": 3307, "user": "bob",
                 "password": "p@ss", "database": "jobs", "ssl_ca": None}
    assert slm_api.db_config({"SLM_DB_HOST": "h", "SLM_DB_SSL_CA": "/etc/ca.pem"})["ssl_ca"] \
        == "/etc/ca.pem"
    c = slm_api.db_config({"SLM_DB_URL": "mysql://bob:pw@db/jobs", "SLM_DB_PASSWORD": "other",
                           "SLM_DB_PORT": "3310"})
    assert (c["password"], c["port"], c["host"]) == ("other", 3310, "db")
    c = slm_api.db_config({"SLM_DB_HOST": "h"})
    assert (c["backend"], c["port"], c["user"], c["database"]) == ("mysql", 3306, "slm", "slm")
    with pytest.raises(slm_api.ConfigError):
        slm_api.db_config({"SLM_DB_HOST": "h", "SLM_DB_PORT": "x"})


def test_mysql_describe_redacts_password():
    pytest.importorskip("pymysql")
    store = mysql_store("h", 3306, "bob", "s3cret-pw", "jobs")
    assert "s3cret-pw" not in store.describe()
    assert store.secrets() == ("s3cret-pw",)


def test_mysql_connections_build_no_tls_context_unless_asked():
    pytest.importorskip("pymysql")
    assert slm_api.MySQLDialect("h").params["ssl_disabled"] is True
    asked = slm_api.MySQLDialect("h", ssl_ca="/etc/ca.pem").params
    assert asked["ssl_ca"] == "/etc/ca.pem" and "ssl_disabled" not in asked


def test_a_version_1_database_is_upgraded_in_place(db):
    """A database made by the first slm_api.py: its jobs stay, the new columns come."""
    name = "schema-v1-%s.sql" % ("sqlite" if db.kind == "sqlite" else "mysql")
    with open(os.path.join(ROOT, "tests", "data", name), encoding="utf-8") as f:
        script = f.read()
    conn = db.raw()
    cur = conn.cursor()
    for statement in slm_api.split_statements(script):
        cur.execute(statement)
    old = event(job_id="old-1", status="COMPLETED", exit_code=0)
    cur.execute(("INSERT INTO slm_meta (name, value) VALUES ('schema_version', '1')"))
    cur.execute("INSERT INTO slurm_events (event_id, job_id, status, time, seq, received_at, raw)"
                " VALUES (%s)" % ", ".join(["?" if db.kind == "sqlite" else "%s"] * 7),
                (old["event_id"], "old-1", "COMPLETED", "2026-11-30T03:40:41.123000Z", 1,
                 "2026-11-30T03:40:41.123000Z", json.dumps(old)))
    cur.execute("INSERT INTO slurm_jobs (job_id, status, status_time, event_count, exit_code,"
                " ended_at, last_event_time) VALUES ('old-1', 'COMPLETED', "
                "'2026-11-30T03:40:41.123000Z', 1, 0, '2026-11-30T03:40:41.123000Z',"
                " '2026-11-30T03:40:41.123000Z')")
    if db.kind == "sqlite":
        conn.commit()
    conn.close()
    assert db.store.ingest([event(job_id="new-1", restart_count=1)]) == (1, 0)
    assert db.store.schema_version() == slm_api.SCHEMA_VERSION
    old_job = db.store.get_job("old-1")
    assert (old_job["status"], old_job["exit_code"], old_job["restarts"]) == ("COMPLETED", 0, 0)
    assert db.store.get_job("new-1")["restarts"] == 1
    assert [e["event_id"] for e in db.store.job_events("old-1")] == [old["event_id"]]
    def columns(tx, table):
        return tx.dialect.table_columns(tx.cur, table)
    assert {"restarts", "heartbeat_at", "heartbeat_interval", "checked_at", "asked_at", "job_group",
            "relay"} <= db.store.db.run(lambda tx: columns(tx, "slurm_jobs"))
    assert "event_id" in db.store.db.run(lambda tx: columns(tx, "slm_outbox"))
    if db.kind == "mysql":   # a state as long as 'superseded' fits
        assert db.query("SELECT character_maximum_length FROM information_schema.columns"
                        " WHERE table_schema = DATABASE() AND table_name = 'slm_outbox' AND"
                        " column_name = 'state'") == [(16,)]
    assert "slm_leases" in db.tables()
