"""PostgreSQL, MariaDB and DuckDB executors against real engines: the same data as a SQLite
file (copied by ``sqlwright.db.copy``), the same answers, the same refusals, real timeouts.

The servers are real processes (tests/servers.py, one each per session); the logins are
privileged (a superuser, ALL PRIVILEGES), so the read-only locks are tested without the help
of a read-only role.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time

import pytest

from conftest import SCHOOLS_DDL, fails_if_it_hangs, make_db, write_jsonl
from servers import PASSWORD, free_port, maria_admin, pg_admin
from sqlwright.db.copy import copy_sqlite
from sqlwright.db.pool import ExecutionPool
from sqlwright.db.registry import check_targets, executor_for
from sqlwright.db.sqlite import SQLiteExecutor
from sqlwright.errors import UserError
from sqlwright.judge import Judge
from sqlwright.types import Limits, Status

pytest.importorskip("duckdb")
ENGINES = ["postgresql", "mariadb", "duckdb"]


@pytest.fixture(scope="module")
def schools_sqlite(tmp_path_factory):
    return make_db(tmp_path_factory.mktemp("src") / "schools.sqlite", SCHOOLS_DDL)


@pytest.fixture(scope="module")
def targets(request, schools_sqlite, tmp_path_factory):
    """dialect -> URL of the schools database copied into that engine (each engine on demand)."""
    made: dict[str, str] = {}

    def get(engine: str) -> str:
        if engine not in made:
            if engine == "duckdb":
                url = f"duckdb://{tmp_path_factory.mktemp('duck') / 'schools.duckdb'}"
            else:
                server = request.getfixturevalue("pg_server" if engine == "postgresql" else "maria_server")
                url = server.url("schools")
            copy_sqlite(schools_sqlite, url, "schools", replace=True)
            made[engine] = url
        return made[engine]

    return get


@pytest.fixture(params=ENGINES)
def engine(request, targets):
    return request.param, targets(request.param)


def run(url: str, sql: str, **limits):
    cache: dict = {}
    try:
        return executor_for(url, Limits(**{"timeout": 5, **limits}), cache).execute(url, sql)
    finally:
        for ex in cache.values():
            ex.close()


def checksum(url: str) -> str:
    """Every table's rows, sorted, hashed: what a write would change."""
    tables = sorted(r[0].lower() for r in run(url, _LIST[url.split(":")[0]]).rows)
    h = hashlib.sha256(repr(tables).encode())
    for t in tables:
        res = run(url, f"SELECT * FROM {t}")
        assert res.ok, res.error
        h.update(repr(sorted(map(repr, res.rows))).encode())
    return h.hexdigest()


_LIST = {
    "postgresql": "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
    "mariadb": "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()",
    "duckdb": "SELECT table_name FROM information_schema.tables",
}


# -- values -------------------------------------------------------------------------------------
def test_same_rows_as_sqlite(engine, schools_sqlite):
    dialect, url = engine
    sqlite = SQLiteExecutor(Limits(timeout=5))
    for sql in ("SELECT id, name, city, students, rating FROM schools ORDER BY id",
                "SELECT city, COUNT(*), SUM(students), AVG(rating), MAX(rating) FROM schools GROUP BY city ORDER BY city",
                "SELECT s.name, c.year, c.avg_math FROM schools s JOIN scores c ON s.id = c.school_id ORDER BY 1, 2"):  # fmt: skip
        want = sqlite.execute(str(schools_sqlite), sql)
        got = run(url, sql)
        assert got.ok, got.error
        assert got.rows == want.rows, (dialect, sql)
        assert [type(v) for r in got.rows for v in r] == [type(v) for r in want.rows for v in r], (dialect, sql)
    assert [c.lower() for c in run(url, "SELECT id, name FROM schools").columns] == ["id", "name"]
    sqlite.close()


TYPED = {
    "postgresql": "SELECT DATE '2020-01-02', TIMESTAMP '2020-01-02 10:30:00', TIME '10:30:00', TRUE, FALSE, "
                  "1.50::numeric, 6::numeric, SUM(students), AVG(students), NULL FROM schools WHERE students IS NOT NULL",
    "mariadb": "SELECT DATE '2020-01-02', TIMESTAMP '2020-01-02 10:30:00', TIME '10:30:00', TRUE, FALSE, "
               "CAST(1.50 AS DECIMAL(5,2)), CAST(6 AS DECIMAL(5,0)), SUM(students), AVG(students), NULL FROM schools WHERE students IS NOT NULL",
    "duckdb": "SELECT DATE '2020-01-02', TIMESTAMP '2020-01-02 10:30:00', TIME '10:30:00', TRUE, FALSE, "
              "1.50::DECIMAL(5,2), 6::DECIMAL(5,0), SUM(students), AVG(students), NULL FROM schools WHERE students IS NOT NULL",
}  # fmt: skip


def test_values_are_normalised_as_sqlite_gives_them(engine):
    dialect, url = engine
    res = run(url, TYPED[dialect])
    assert res.ok, res.error
    (row,) = res.rows
    assert row == ("2020-01-02", "2020-01-02 10:30:00", "10:30:00", 1, 0, 1.5, 6, 1000, 250, None)
    assert [type(v) for v in row[:8]] == [str, str, str, int, int, float, int, int]  # AVG: int or float, equal values
    assert isinstance(row[8], (int, float)) and row[9] is None


# -- safety -------------------------------------------------------------------------------------
DESTRUCTIVE = {
    "all": ["DROP TABLE schools", "DELETE FROM scores", "UPDATE schools SET rating = 0", "INSERT INTO schools (id) VALUES (9)",
            "CREATE TABLE stolen AS SELECT * FROM schools", "TRUNCATE scores", "ALTER TABLE schools ADD COLUMN x INT",
            "SELECT 1; DROP TABLE schools", "SELECT * FROM schools; DELETE FROM scores",
            "/* hi */ DROP TABLE scores -- bye", "WITH x AS (SELECT 1) DELETE FROM scores"],
    "postgresql": ["COPY schools TO '{tmp}/stolen.csv'", "COPY (SELECT * FROM schools) TO PROGRAM 'touch {tmp}/stolen'",
                   "SELECT * INTO stolen FROM schools", "WITH d AS (DELETE FROM scores RETURNING *) SELECT count(*) FROM d",
                   "SELECT 1; COMMIT; DROP TABLE schools", "SET default_transaction_read_only = off",
                   "DO $$ BEGIN DELETE FROM scores; END $$", "SELECT pg_terminate_backend(pg_backend_pid())",
                   "SELECT lo_export(1, '{tmp}/stolen')", "EXPLAIN ANALYZE DELETE FROM scores"],
    "mariadb": ["SELECT * FROM schools INTO OUTFILE '{tmp}/stolen.csv'", "SELECT name FROM schools LIMIT 1 INTO DUMPFILE '{tmp}/stolen'",
                "REPLACE INTO schools (id) VALUES (1)", "RENAME TABLE schools TO gone", "CREATE DATABASE stolen",
                "SELECT 1; COMMIT; DROP TABLE schools", "SET SESSION TRANSACTION READ WRITE", "LOAD DATA INFILE '/etc/passwd' INTO TABLE scores"],
    "duckdb": ["ATTACH '{tmp}/stolen.duckdb' AS s", "COPY schools TO '{tmp}/stolen.csv'", "INSTALL httpfs",
               "SELECT * FROM read_csv('/etc/passwd')", "SET enable_external_access = true", "CHECKPOINT",
               "EXPORT DATABASE '{tmp}/stolen'", "CREATE TABLE s AS SELECT 1"],
}  # fmt: skip


def test_writes_are_refused_and_change_nothing(engine, tmp_path):
    dialect, url = engine
    before = checksum(url)
    for sql in DESTRUCTIVE["all"] + DESTRUCTIVE[dialect]:
        res = run(url, sql.format(tmp=tmp_path))
        assert not res.ok, (dialect, sql)
        assert res.status in (Status.FORBIDDEN, Status.SYNTAX_ERROR, Status.RUNTIME_ERROR), (sql, res)
        assert res.error
        if sql.split()[0] in ("DROP", "DELETE", "UPDATE", "INSERT", "COPY", "ATTACH") or ";" in sql:
            assert res.status is Status.FORBIDDEN, (dialect, sql, res)
    assert checksum(url) == before  # no row and no table changed
    assert list(tmp_path.iterdir()) == []  # no file written
    assert run(url, "SELECT COUNT(*) FROM schools").rows == ((5,),)  # and the connection still works


RUNAWAYS = {
    "postgresql": ["SELECT pg_sleep(30)", "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r) SELECT max(x) FROM r"],
    "mariadb": ["SELECT SLEEP(30)", "SELECT COUNT(*) FROM information_schema.columns a, information_schema.columns b, information_schema.columns c"],
    "duckdb": ["SELECT COUNT(*) FROM range(100000000000) a", "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r) SELECT max(x) FROM r"],
}  # fmt: skip


def running_on_server(request, dialect: str) -> list:
    """Queries still running for the test login (other than this one)."""
    if dialect == "postgresql":
        with pg_admin(request.getfixturevalue("pg_server")) as c:
            return c.execute("SELECT query FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid() "
                             "AND application_name = 'sqlwright'").fetchall()  # fmt: skip
    if dialect == "mariadb":
        c = maria_admin(request.getfixturevalue("maria_server"))
        try:
            with c.cursor() as cur:
                cur.execute("SELECT info FROM information_schema.processlist WHERE command = 'Query' AND id <> CONNECTION_ID()")
                return list(cur.fetchall())
        finally:
            c.close()
    return []


@pytest.mark.parametrize("watchdog_only", [False, True], ids=["engine-timeout", "watchdog"])
def test_runaways_stop_at_the_timeout_and_nothing_keeps_running(engine, request, watchdog_only):
    dialect, url = engine
    if watchdog_only and dialect == "duckdb":
        pytest.skip("DuckDB has no engine timeout: the watchdog's interrupt() is its timeout (tested above)")
    timeout = 1.0
    cache: dict = {}
    ex = executor_for(url, Limits(timeout=timeout), cache)
    try:
        if watchdog_only:  # the server's own limit off: the watchdog alone must stop the query
            conn = ex.connection(url)
            off = "SET statement_timeout = 0" if dialect == "postgresql" else "SET SESSION max_statement_time = 0"
            cur = conn.cursor()
            cur.execute(off)
            conn.commit()
            cur.close()
        for sql in RUNAWAYS[dialect]:
            t0 = time.monotonic()
            res = ex.execute(url, sql)
            took = time.monotonic() - t0
            assert res.status is Status.TIMEOUT, (sql, res)
            assert took <= timeout + 1.0, (sql, took)
            assert res.error == f"stopped after {timeout:g} s"
            time.sleep(0.2)
            assert running_on_server(request, dialect) == []
        assert ex.execute(url, "SELECT COUNT(*) FROM schools").rows == ((5,),)  # usable afterwards
    finally:
        ex.close()


def test_runaways_in_the_pool_stop_and_leave_nothing(engine, request):
    dialect, url = engine
    tasks = [(url, sql) for sql in RUNAWAYS[dialect]] + [(url, "SELECT COUNT(*) FROM scores")]
    t0 = time.monotonic()
    with ExecutionPool(Limits(timeout=1.0), workers=2) as pool:
        res = pool.run(tasks)
    assert [r.status for r in res] == [Status.TIMEOUT, Status.TIMEOUT, Status.OK]
    assert time.monotonic() - t0 < 1.0 + 1.0 + 2.0
    time.sleep(0.2)
    assert running_on_server(request, dialect) == []


# -- errors -------------------------------------------------------------------------------------
def test_errors_map_onto_the_same_statuses(engine):
    dialect, url = engine
    cases = {
        "SELEC name FROM schools": Status.SYNTAX_ERROR,
        "SELECT name FROM schools WHERE": Status.SYNTAX_ERROR,
        "SELECT name FROM nowhere": Status.SYNTAX_ERROR,
        "SELECT nope FROM schools": Status.SYNTAX_ERROR,
        "SELECT no_such_function(1)": Status.SYNTAX_ERROR,
        "SELECT (SELECT id FROM schools)": Status.RUNTIME_ERROR,  # a scalar subquery with 5 rows
        "   ": Status.SYNTAX_ERROR,
    }
    for sql, want in cases.items():
        res = run(url, sql)
        assert res.status is want, (dialect, sql, res)
        assert res.error and "\n" not in res.error
    assert run(url, "SELECT * FROM scores", max_rows=3).status is Status.TOO_MANY_ROWS
    assert run(url, "SELECT * FROM scores", max_rows=6).ok
    assert run(url, "EXPLAIN SELECT * FROM schools").ok  # the validity check's statement
    missing = url.replace("schools", "nowhere")
    assert run(missing, "SELECT 1").status is Status.DB_MISSING


@pytest.mark.parametrize("pipelines", [True, False], ids=["pipeline", "prepared"])
def test_postgres_protocol_refuses_several_statements_without_the_guard(targets, tmp_path, monkeypatch, pipelines):
    # lock 2 on its own: with the text guard switched off, the server still refuses a string of
    # several statements, in a pipeline and (libpq before 14 has none) prepared
    from sqlwright.db import postgres, server

    url = targets("postgresql")
    monkeypatch.setattr(postgres, "_pipeline_supported", lambda: pipelines)
    before = checksum(url)
    with monkeypatch.context() as m:
        m.setattr(server, "refusal", lambda sql, dialect: None)
        res = run(url, "SELECT 1; DELETE FROM schools")
        assert res.status is Status.FORBIDDEN and "multiple statements" in res.error
        assert run(url, "SELECT 'a%b', COUNT(*) FROM schools").rows == (("a%b", 5),)
        # lock 3: what a statement sets is rolled back with it, so it cannot unlock the next one
        ex = executor_for(url, Limits(timeout=5), {})
        try:
            assert ex.execute(url, "SELECT set_config('default_transaction_read_only', 'off', false)").ok
            assert ex.execute(url, "SELECT current_setting('default_transaction_read_only')").rows == (("on",),)
            res = ex.execute(url, "DELETE FROM schools")
            assert res.status is Status.FORBIDDEN and "read-only" in res.error, res
            # a COPY to the client leaves the connection waiting for the copy: refused, no hang
            with fails_if_it_hangs(20, "COPY … TO STDOUT hung"):
                res = ex.execute(url, "COPY (SELECT * FROM schools) TO STDOUT")
            assert not res.ok and res.rows is None, res
            assert ex.execute(url, "SELECT COUNT(*) FROM schools").rows == ((5,),)
        finally:
            ex.close()
    assert checksum(url) == before
    test_writes_are_refused_and_change_nothing(("postgresql", url), tmp_path)
    test_errors_map_onto_the_same_statuses(("postgresql", url))


def test_postgres_statement_interrupted_half_way_leaves_nothing_open(targets, request, monkeypatch):
    # Ctrl-C inside the round trip (here: while waiting for the answer) leaves the protocol half
    # way; the connection goes, nothing stays open on the server, the next statement reconnects
    from sqlwright.db import postgres

    url = targets("postgresql")
    ex = executor_for(url, Limits(timeout=5), {})
    try:
        assert ex.execute(url, "SELECT COUNT(*) FROM schools").rows == ((5,),)
        first = ex.connection(url)
        real = postgres._wait

        def interrupted(pgconn, write):
            real(pgconn, write)
            raise KeyboardInterrupt

        with monkeypatch.context() as m:
            m.setattr(postgres, "_wait", interrupted)
            with pytest.raises(KeyboardInterrupt):
                ex.execute(url, "SELECT pg_sleep(0.3), COUNT(*) FROM schools")
        assert first.closed
        assert ex.execute(url, "SELECT COUNT(*) FROM schools").rows == ((5,),)
        assert ex.connection(url) is not first
        time.sleep(0.5)
        assert running_on_server(request, "postgresql") == []
    finally:
        ex.close()


def test_postgres_statement_the_client_encoding_cannot_carry_is_an_error(targets):
    url = targets("postgresql") + "?client_encoding=latin1"
    res = run(url, "SELECT '\N{SNOWMAN}' AS s, COUNT(*) FROM schools")
    assert res.status is Status.RUNTIME_ERROR and "LATIN1" in res.error.upper(), res
    assert run(url, "SELECT 'caf\N{LATIN SMALL LETTER E WITH ACUTE}' AS s").rows == (("caf\N{LATIN SMALL LETTER E WITH ACUTE}",),)


# -- the judge agrees across engines ------------------------------------------------------------
MIXED = [
    "SELECT COUNT(*) FROM schools WHERE city = 'Fresno'",  # correct
    "SELECT count(*) FROM schools WHERE city = 'Fresno' AND students > 100",  # correct (both have > 100)
    "SELECT COUNT(*) FROM schools",  # wrong
    "SELECT COUNT(*) FROM schools WHERE city = 'fresno'",  # wrong: text compares case-sensitively everywhere
    "SELECT COUNT(*) FROM school",  # error
    "DROP TABLE schools",  # error (forbidden)
    None,  # no SQL
]


def test_verdicts_are_equal_across_engines(targets, schools_sqlite):
    gold = "SELECT COUNT(*) FROM schools WHERE city = 'Fresno'"
    verdicts = {}
    with Judge("bird", Limits(timeout=5), workers=0) as judge:
        for target in [str(schools_sqlite)] + [targets(e) for e in ENGINES]:
            j = judge.judge(target, gold, MIXED)
            verdicts[target] = [(v.verdict, v.status.value if v.status else None) for v in j.candidates]
            assert [v.verdict for v in j.candidates] == ["correct", "correct", "wrong", "wrong", "error", "error", "no_sql"]
            assert j.groups[0] == [0, 1]
    assert len({json.dumps(v) for v in verdicts.values()}) == 1, verdicts


# -- bad input ----------------------------------------------------------------------------------
def test_unreachable_server_wrong_password_and_unknown_scheme_are_one_line(pg_server, maria_server):
    port = free_port()
    for url in (f"postgresql://u:{PASSWORD}@127.0.0.1:{port}/db", f"mysql://u:{PASSWORD}@127.0.0.1:{port}/db",
                pg_server.url("schools").replace(PASSWORD, "wrong-" + PASSWORD),
                maria_server.url("schools").replace(PASSWORD, "wrong-" + PASSWORD),
                f"oracle://u:{PASSWORD}@h/db"):  # fmt: skip
        with pytest.raises(UserError) as e:
            check_targets({url})
        msg = str(e.value)
        assert PASSWORD not in msg and "\n" not in msg, msg
        assert msg.startswith(url.split("://")[0] + "://"), msg


def test_eval_on_a_server_writes_no_password(engine, bird_dir, tmp_path, request):
    dialect, url = engine
    template = url.replace("schools", "{db_id}")
    if dialect == "duckdb":
        pytest.skip("DuckDB URLs have no password")
    preds = write_jsonl(tmp_path / "p.jsonl", [{"id": 0, "sql": "SELECT COUNT(*) FROM schools WHERE city = 'Fresno'"},
                                               {"id": 1, "sql": "SELECT name FROM schools WHERE rating = 4.5"},
                                               {"id": 2, "sql": "DROP TABLE schools"}])  # fmt: skip
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "sqlwright", "eval", str(preds), "-b", str(bird_dir), "--db-url", template,
                           "-o", str(out), "--no-progress", "--only-predicted", "--workers", "2"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["correct"] == 2 and summary["scored"] == 3
    recs = [json.loads(x) for x in (out / "examples.jsonl").read_text().splitlines()]
    assert recs[2]["pred_status"] == "forbidden"
    assert json.loads((out / "config.json").read_text())["db_url"] == template.replace(PASSWORD, "***")
    for f in out.rglob("*"):
        if f.is_file():
            assert PASSWORD not in f.read_text(errors="replace"), f
    assert PASSWORD not in proc.stdout + proc.stderr
    # a template without {db_id}, and an unreachable server: one line, exit 2, no password
    for bad in (url, template.replace(str(request.getfixturevalue("pg_server" if dialect == "postgresql" else "maria_server").port),
                                      str(free_port()))):  # fmt: skip
        proc = subprocess.run([sys.executable, "-m", "sqlwright", "eval", str(preds), "-b", str(bird_dir), "--db-url", bad,
                               "-o", str(tmp_path / "bad"), "--no-progress"], capture_output=True, text=True, timeout=120)  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and PASSWORD not in proc.stderr, proc.stderr
