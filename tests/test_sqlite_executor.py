"""The SQLite executor: outcomes as values, read-only, limits that really stop queries."""

from __future__ import annotations

import hashlib

import pytest

from conftest import SCHOOLS_DDL, make_db
from sqlwright.db.sqlite import SQLiteExecutor
from sqlwright.types import Limits, Status


@pytest.fixture
def db(tmp_path):
    return str(make_db(tmp_path / "s" / "s.sqlite", SCHOOLS_DDL))


def digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_ok_returns_rows_columns_and_time(db):
    res = SQLiteExecutor().execute(db, "SELECT name, students FROM schools WHERE city = 'Davis' ORDER BY id")
    assert res.status is Status.OK
    assert res.rows == (("Pine", 500), ("Ash", None))
    assert res.columns == ("name", "students")
    assert res.elapsed >= 0


@pytest.mark.parametrize(
    "sql, status, words",
    [
        ("SELEC name FROM schools", Status.SYNTAX_ERROR, "syntax error"),
        ("SELECT nme FROM schools", Status.SYNTAX_ERROR, "no such column"),
        ("SELECT * FROM school", Status.SYNTAX_ERROR, "no such table"),
        ("", Status.SYNTAX_ERROR, "empty"),
        ("SELECT abs(-9223372036854775808)", Status.RUNTIME_ERROR, "integer overflow"),
    ],
)
def test_errors_are_classified(db, sql, status, words):
    res = SQLiteExecutor().execute(db, sql)
    assert res.status is status
    assert words in res.error
    assert res.rows is None


def test_missing_database(tmp_path):
    res = SQLiteExecutor().execute(str(tmp_path / "nope.sqlite"), "SELECT 1")
    assert res.status is Status.DB_MISSING
    assert "nope.sqlite" in res.error


DESTRUCTIVE = [
    "DROP TABLE schools",
    "DELETE FROM schools",
    "UPDATE schools SET name = 'x'",
    "INSERT INTO schools (id, name) VALUES (99, 'x')",
    "CREATE TABLE t (a)",
    "CREATE TEMP TABLE t (a)",
    "CREATE INDEX i ON schools(name)",
    "ALTER TABLE schools ADD COLUMN z",
    "ATTACH DATABASE '{tmp}/other.db' AS other",
    "PRAGMA user_version = 7",
    "PRAGMA journal_mode = WAL",
    "VACUUM INTO '{tmp}/copy.db'",
    "VACUUM",
    "REINDEX",
    "SELECT 1; DROP TABLE schools",
    "SELECT name FROM schools; DELETE FROM scores",
    "BEGIN",
]


@pytest.mark.parametrize("sql", DESTRUCTIVE)
def test_writes_are_refused_and_file_unchanged(db, tmp_path, sql):
    before = digest(db)
    sql = sql.format(tmp=tmp_path)
    res = SQLiteExecutor().execute(db, sql)
    assert res.status is Status.FORBIDDEN, res
    assert res.error  # a clear reason
    assert digest(db) == before
    assert not (tmp_path / "copy.db").exists() and not (tmp_path / "other.db").exists()
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["s.sqlite"]  # no journal/wal files


def test_read_pragmas_still_work(db):
    res = SQLiteExecutor().execute(db, "PRAGMA table_info(schools)")
    assert res.status is Status.OK and len(res.rows) == 5


def test_timeout_interrupts_runaway(db):
    ex = SQLiteExecutor(Limits(timeout=0.5))
    res = ex.execute(db, "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r) SELECT max(x) FROM r")
    assert res.status is Status.TIMEOUT
    assert 0.5 <= res.elapsed < 1.5
    # the connection is usable right after
    assert ex.execute(db, "SELECT count(*) FROM schools").rows == ((5,),)


def test_row_cap(db):
    res = SQLiteExecutor(Limits(max_rows=3)).execute(db, "SELECT * FROM schools")
    assert res.status is Status.TOO_MANY_ROWS
    assert SQLiteExecutor(Limits(max_rows=5)).execute(db, "SELECT * FROM schools").ok


def test_memory_cap(db):
    ex = SQLiteExecutor(Limits(memory_mb=8, timeout=20))
    # sorting ~64 MB of distinct strings must exceed an 8 MiB heap
    sql = ("WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r WHERE x < 200000) "
           "SELECT DISTINCT printf('%0300d', x) FROM r ORDER BY 1 DESC LIMIT 1")  # fmt: skip
    res = ex.execute(db, sql)
    assert res.status is Status.RUNTIME_ERROR
    assert "memory" in res.error
