"""Schemas of URL targets (PostgreSQL, MariaDB, DuckDB) read from the engine itself: tables,
the engine's own column types, primary and foreign keys, column comments, example values
read through the read-only executor; and the dialect-aware prompts built from them."""

from __future__ import annotations

import json

import pytest

from conftest import BIRD_QUESTIONS
from servers import PASSWORD, free_port, maria_admin, pg_admin
from sqlwright.cli import main
from sqlwright.db.copy import copy_sqlite
from sqlwright.db.introspect import DatabaseMissing, introspect_url
from sqlwright.db.urls import drop_password, expand
from sqlwright.errors import UserError
from sqlwright.infer import backend as backend_mod
from sqlwright.infer.backend import Completion

pytest.importorskip("duckdb")
pytest.importorskip("sqlalchemy")
ENGINES = ["postgresql", "mariadb", "duckdb"]

DDL = {
    "postgresql": [
        "CREATE TABLE city (id INTEGER PRIMARY KEY, name VARCHAR(40) NOT NULL, area DOUBLE PRECISION)",
        "CREATE TABLE school (sid BIGINT PRIMARY KEY, name TEXT, city_id INTEGER REFERENCES city(id), opened DATE, fee NUMERIC(8,2))",
        "COMMENT ON COLUMN school.fee IS 'yearly fee in   dollars'",
    ],
    "mariadb": [
        "CREATE TABLE city (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL, area DOUBLE) ENGINE=InnoDB",
        "CREATE TABLE school (sid BIGINT PRIMARY KEY, name TEXT COLLATE utf8mb4_bin, city_id INT, opened DATE, "
        "fee DECIMAL(8,2) COMMENT 'yearly fee in   dollars', FOREIGN KEY (city_id) REFERENCES city(id)) ENGINE=InnoDB",
    ],
    "duckdb": [
        "CREATE TABLE city (id INTEGER PRIMARY KEY, name VARCHAR NOT NULL, area DOUBLE)",
        "CREATE TABLE school (sid BIGINT PRIMARY KEY, name TEXT, city_id INTEGER REFERENCES city(id), opened DATE, fee DECIMAL(8,2))",
        "COMMENT ON COLUMN school.fee IS 'yearly fee in   dollars'",
    ],
}
ROWS = [
    "INSERT INTO city VALUES (1, 'Fresno', 2.5), (2, 'Davis', 1.0)",
    "INSERT INTO school VALUES (10, 'Oak', 1, DATE '2001-02-03', 100.50), (11, 'Elmwood', 1, NULL, 7), (12, 'Ash', 2, NULL, NULL)",
]
TYPES = {  # (city.id, city.name, city.area, school.sid, school.name, school.opened, school.fee) as each engine names them
    "postgresql": ["INTEGER", "VARCHAR(40)", "DOUBLE PRECISION", "BIGINT", "TEXT", "DATE", "NUMERIC(8, 2)"],
    "mariadb": ["INTEGER", "VARCHAR(40)", "DOUBLE", "BIGINT", "TEXT", "DATE", "DECIMAL(8, 2)"],  # display widths dropped
    "duckdb": ["INTEGER", "VARCHAR", "DOUBLE", "BIGINT", "VARCHAR", "DATE", "DECIMAL(8,2)"],
}


@pytest.fixture(scope="module")
def keyed(request, tmp_path_factory):
    """engine -> URL of a small database with keys and a comment, created in that engine."""
    made: dict[str, str] = {}

    def get(engine: str) -> str:
        if engine in made:
            return made[engine]
        if engine == "duckdb":
            import duckdb

            path = tmp_path_factory.mktemp("duck") / "keyed.duckdb"
            conn = duckdb.connect(str(path))
            for sql in DDL[engine] + ROWS:
                conn.execute(sql)
            conn.close()
            made[engine] = f"duckdb://{path}"
            return made[engine]
        server = request.getfixturevalue("pg_server" if engine == "postgresql" else "maria_server")
        admin = pg_admin(server) if engine == "postgresql" else maria_admin(server)
        with admin.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS keyed")
            cur.execute("CREATE DATABASE keyed")
        admin.close()
        conn = pg_admin(server, "keyed") if engine == "postgresql" else maria_admin(server, "keyed")
        with conn.cursor() as cur:
            for sql in DDL[engine] + ROWS:
                cur.execute(sql)
        conn.close()
        made[engine] = server.url("keyed")
        return made[engine]

    return get


@pytest.mark.parametrize("engine", ENGINES)
def test_schema_from_the_engine(engine, keyed):
    url = keyed(engine)
    schema = introspect_url(url, "keyed", examples=2, rows=2)
    assert schema.db_id == "keyed"
    assert sorted(t.name for t in schema.tables) == ["city", "school"]
    city, school = schema.table("city"), schema.table("school")
    assert [c.name for c in city.columns] == ["id", "name", "area"]
    assert [c.name for c in school.columns] == ["sid", "name", "city_id", "opened", "fee"]
    got = [c.type for c in city.columns] + [school.column(n).type for n in ("sid", "name", "opened", "fee")]
    assert got == TYPES[engine]
    assert [c.name for c in city.columns if c.primary_key] == ["id"]
    assert [c.name for c in school.columns if c.primary_key] == ["sid"]
    assert [(fk.column, fk.ref_table, fk.ref_column) for fk in school.foreign_keys] == [("city_id", "city", "id")]
    assert school.column("fee").description == "yearly fee in dollars"
    # example values: distinct, non-NULL, shortest first, normalised as SQLite gives them
    assert school.column("name").examples == ["Ash", "Oak"]
    assert school.column("opened").examples == ["2001-02-03"]
    assert school.column("fee").examples == [7, 100.5]
    assert len(city.rows) == 2 and sorted(r[1] for r in city.rows) == ["Davis", "Fresno"]


@pytest.mark.parametrize("engine", ["postgresql", "mariadb"])
def test_missing_database_and_bad_login(engine, keyed, request):
    keyed(engine)
    server = request.getfixturevalue("pg_server" if engine == "postgresql" else "maria_server")
    with pytest.raises(DatabaseMissing, match="database not found"):
        introspect_url(server.url("nosuchdb"))
    bad = server.url("keyed").replace(":" + server.url("keyed").split(":")[2].split("@")[0] + "@", ":wrong-pw-123@")
    with pytest.raises(UserError) as e:
        introspect_url(bad)
    assert "wrong-pw-123" not in str(e.value) and "\n" not in str(e.value) and "***" in str(e.value)


def test_duckdb_file_missing(tmp_path):
    with pytest.raises(DatabaseMissing):
        introspect_url(f"duckdb://{tmp_path}/absent.duckdb")


# -- data build, predict and data cot with --db-url ---------------------------------------------------
GOLD_BY_QUESTION = {q[2]: q[4] for q in BIRD_QUESTIONS}


class GoldBackend:
    """Answers each cookbook prompt with the question's gold SQL (a ```sql block), n times."""

    name = "gold"
    loaded = 0

    def __init__(self, cfg):
        GoldBackend.loaded += 1

    def generate(self, requests, config):
        for r in requests:
            sql = GOLD_BY_QUESTION.get(r.messages[-1]["content"].rsplit("-- Question: ", 1)[-1], "SELECT 1")
            yield Completion(r.id, [f"```sql\n{sql}\n```"] * config.n, prompt_tokens=3, completion_tokens=2, latency=0.0)

    def close(self):
        pass


@pytest.fixture
def gold_backend(monkeypatch):
    monkeypatch.setitem(backend_mod.BACKENDS, "gold", f"{__name__}:GoldBackend")
    GoldBackend.loaded = 0
    return GoldBackend


def template_for(engine: str, request, tmp_path) -> str:
    """A {db_id} template whose databases hold the tiny BIRD benchmark's schools and shop."""
    if engine == "duckdb":
        return f"duckdb://{tmp_path}/duck/{{db_id}}.duckdb"
    server = request.getfixturevalue("pg_server" if engine == "postgresql" else "maria_server")
    return server.url("bird_{db_id}")


def no_password_in(folder, *files):
    for path in [*(p for p in folder.rglob("*") if p.is_file()), *files]:
        assert PASSWORD.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("engine", ENGINES)
def test_build_predict_and_eval_on_the_engine(engine, bird_dir, tmp_path, request, gold_backend, monkeypatch, capsys):
    url = template_for(engine, request, tmp_path)
    for db in ("schools", "shop"):
        copy_sqlite(bird_dir / "dev_databases" / db / f"{db}.sqlite", expand(url, db), db, replace=True)
    ds = tmp_path / "ds"
    assert main(["data", "build", "bird", str(bird_dir), "--split", "dev", "--db-url", url, "-o", str(ds),
                 "--no-progress"]) == 0  # fmt: skip
    spec = json.loads((ds / "prompt.json").read_text())
    dialect = {"postgresql": "postgres", "mariadb": "mysql", "duckdb": "duckdb"}[engine]
    assert spec["dialect"] == dialect
    recs = [json.loads(x) for x in (ds / "dev.jsonl").read_text().splitlines()]
    name = {"postgres": "PostgreSQL", "mysql": "MySQL", "duckdb": "DuckDB"}[dialect]
    system, user = recs[0]["messages"][0]["content"], recs[0]["messages"][1]["content"]
    assert system.endswith(f"translate the following text question into a {name} select statement.")
    assert "CREATE TABLE schools (\n  id BIGINT," in user and "rating DOUBLE" in user  # the engine's types (db load's)
    assert recs[0]["db_path"] == drop_password(expand(url, "schools"))
    no_password_in(ds)

    # predict with voting on the engine (--db-url), then eval there: the golds score 100%
    preds = tmp_path / "p.jsonl"
    assert main(["predict", "-m", "x", "-b", "gold", "--data", str(ds), "-o", str(preds), "--n", "2", "--temperature", "0.8",
                 "--select", "vote", "--db-url", url, "--no-progress"]) == 0  # fmt: skip
    got = [json.loads(x) for x in preds.read_text().splitlines()]
    assert len(got) == 6 and all(r["vote"]["groups"] == [[0, 1]] and not r["vote"]["failed"] for r in got), got[0]
    assert "***" in (tmp_path / "p.jsonl.config.yaml").read_text() or engine == "duckdb"
    no_password_in(tmp_path, preds, tmp_path / "p.jsonl.config.yaml")
    assert main(["eval", str(preds), "--questions", str(bird_dir / "dev.json"), "--db-url", url, "-o", str(tmp_path / "ev"),
                 "--no-progress", "--workers", "0"]) == 0  # fmt: skip
    assert json.loads((tmp_path / "ev" / "summary.json").read_text())["ex"] == 100.0

    if engine == "postgresql":  # the dataset's own references (no password) and PGPASSWORD
        monkeypatch.setenv("PGPASSWORD", PASSWORD)
        assert main(["predict", "-m", "x", "-b", "gold", "--data", str(ds), "-o", str(tmp_path / "q.jsonl"), "--n", "2",
                     "--temperature", "0.8", "--select", "vote", "--no-progress"]) == 0  # fmt: skip
        assert all(not json.loads(x)["vote"]["failed"] for x in (tmp_path / "q.jsonl").read_text().splitlines())


def test_db_url_bad_input_is_one_line(bird_dir, tmp_path, capsys, gold_backend, dataset):
    bad = [
        (["data", "build", "bird", str(bird_dir), "--split", "dev", "-o", str(tmp_path / "a"), "--db-url", "postgresql://u:pw1@h/db"],
         "has no {db_id}"),
        (["data", "build", "bird", str(bird_dir), "--split", "dev", "-o", str(tmp_path / "b"), "--db-url", "oracle://u:pw1@h/{db_id}"],
         "no executor for oracle"),
        (["data", "build", "bird", str(bird_dir), "--split", "dev", "-o", str(tmp_path / "c"), "--db-url",
          f"postgresql://u:pw1@127.0.0.1:{free_port()}/{{db_id}}"], "cannot connect"),
        (["predict", "-m", "x", "-b", "gold", "--data", str(dataset), "-o", str(tmp_path / "p.jsonl"), "--db-url", "mysql://u:pw1@h/x"],
         "has no {db_id}"),
        (["predict", "-m", "x", "-b", "gold", "--data", str(dataset), "-o", str(tmp_path / "p.jsonl"), "--n", "2", "--temperature", "1",
          "--select", "vote", "--db-url", f"postgresql://u:pw1@127.0.0.1:{free_port()}/{{db_id}}"], "cannot connect"),
        (["data", "cot", str(dataset), "-o", str(tmp_path / "cot"), "-m", "t", "--db-url", "duckdb:///x/db.duckdb"], "has no {db_id}"),
    ]
    for argv, want in bad:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and want in err and "pw1" not in err, (argv, err)
    assert gold_backend.loaded == 0


def test_cot_on_postgres(pg_server, bird_dir, tmp_path):
    from helpers_teacher import teacher_config, teacher_server
    from sqlwright.data.cot import CotConfig, run_cot

    url = pg_server.url("bird_{db_id}")
    for db in ("schools", "shop"):
        copy_sqlite(bird_dir / "dev_databases" / db / f"{db}.sqlite", expand(url, db), db, replace=True)
    ds = tmp_path / "ds"
    assert main(["data", "build", "bird", str(bird_dir), "--split", "dev", "--db-url", url, "-o", str(ds), "--no-progress"]) == 0

    def respond(prompt, body, attempt):  # reason, then the gold (equivalent: it runs on PostgreSQL)
        gold = prompt.split("-- Gold SQL Output: ", 1)[1].split("\n", 1)[0]
        return f"1. Read the question.\n```sql\n{gold}\n```"

    out = tmp_path / "cot"
    with teacher_server(respond) as srv:
        stats = run_cot(CotConfig(str(ds), str(out), teacher_config(srv), retries=0, workers=0, progress=False, db_url=url))
    assert stats.kept == 6, stats
    spec = json.loads((out / "prompt.json").read_text())
    assert spec["format"] == "cookbook-cot" and spec["dialect"] == "postgres"
    rec = json.loads((out / "dev.jsonl").read_text().splitlines()[0])
    assert "final PostgreSQL select statement" in rec["messages"][0]["content"]
    assert "***" in (out / "config.json").read_text()
    no_password_in(out)


def test_bird_minidev_postgresql_golds_are_read_as_they_are(pg_server, tmp_path):
    """BIRD mini-dev's own PostgreSQL questions for `eval --questions` with a PostgreSQL
    --db-url: loaded, and their golds executed unchanged (the databases are not on this
    server: every question scores db_missing, nothing is transpiled)."""
    from conftest import SHARED_DATA

    qfile = SHARED_DATA / "bird-minidev" / "mini_dev_postgresql.json"
    if not qfile.is_file():
        pytest.skip("BIRD mini-dev (../shared/data/bird-minidev) is not present")
    items = json.loads(qfile.read_text())[:20]
    questions = tmp_path / "mini_dev_postgresql.json"
    questions.write_text(json.dumps(items))
    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps({"id": it["question_id"], "sql": it["SQL"]}) + "\n" for it in items))
    out = tmp_path / "ev"
    assert main(["eval", str(preds), "--questions", str(questions), "--db-url", pg_server.url("{db_id}"), "-o", str(out),
                 "--no-progress", "--workers", "0"]) == 0  # fmt: skip
    recs = [json.loads(x) for x in (out / "examples.jsonl").read_text().splitlines()]
    assert [r["gold"] for r in recs] == [it["SQL"] for it in items]
    assert [r["difficulty"] for r in recs] == [it["difficulty"] for it in items]
    assert {r["verdict"] for r in recs} == {"db_missing"}  # a reachable server without those databases
    no_password_in(out)


# -- dialect-aware prompts ----------------------------------------------------------------------------
def test_prompt_spec_records_the_dialect(tmp_path):
    from sqlwright.prompts.formats import (
        COOKBOOK_COT_SYSTEM,
        COOKBOOK_SYSTEM,
        DBGPT_INSTRUCTION,
        SCC_SYSTEM,
    )
    from sqlwright.prompts.spec import PromptSpec
    from sqlwright.types import Column, Example, Schema, Table

    schema = Schema("d", [Table("t", [Column("a", "DOUBLE PRECISION", True), Column("b", "TIMESTAMP WITH TIME ZONE")])])
    ex = Example("1", "d", "How many?", "SELECT 1")
    sqlite = {f: PromptSpec(format=f).render(ex, schema)[0]["messages"] for f in ("cookbook", "cookbook-cot", "dbgpt-hub", "sql-create-context")}
    assert sqlite["cookbook"][0]["content"] == COOKBOOK_SYSTEM and sqlite["cookbook-cot"][0]["content"] == COOKBOOK_COT_SYSTEM
    assert sqlite["dbgpt-hub"][0]["content"].startswith(DBGPT_INSTRUCTION.split("{}")[0])
    assert sqlite["sql-create-context"][0]["content"].startswith(SCC_SYSTEM.split("{}")[0])
    pg = {f: PromptSpec(format=f, dialect="postgresql").render(ex, schema)[0]["messages"] for f in sqlite}
    assert pg["cookbook"][0]["content"] == ("You are a text to SQL query translator. Using the PostgreSQL DB Schema and the External "
                                            "Knowledge, translate the following text question into a PostgreSQL select statement.")
    assert "the final PostgreSQL select statement" in pg["cookbook-cot"][0]["content"]
    assert "in front of an example PostgreSQL database" in pg["dbgpt-hub"][0]["content"]
    assert "generate a PostgreSQL SQL query" in pg["sql-create-context"][0]["content"]
    assert "a DOUBLE PRECISION,\n  b TIMESTAMP WITH TIME ZONE" in pg["cookbook"][1]["content"]  # the engine's types, as given
    assert PromptSpec(dialect="mariadb").dialect == "mysql"

    spec = PromptSpec(dialect="duckdb")
    spec.save(tmp_path / "prompt.json")
    assert json.loads((tmp_path / "prompt.json").read_text())["dialect"] == "duckdb"
    assert PromptSpec.load(tmp_path).dialect == "duckdb"
    old = {k: v for k, v in json.loads((tmp_path / "prompt.json").read_text()).items() if k != "dialect"}
    (tmp_path / "prompt.json").write_text(json.dumps(old))  # written before prompts knew dialects
    assert PromptSpec.load(tmp_path).dialect == "sqlite"
    with pytest.raises(UserError, match="unknown dialect 'oracle'"):
        PromptSpec(dialect="oracle")


def test_grpo_syntax_reward_reads_the_dialect_of_the_prompt():
    """train/grpo.py passes ``spec.dialect`` to sqlglot: prompt.json's names are sqlglot's."""
    sqlglot = pytest.importorskip("sqlglot")
    from sqlwright.prompts.formats import DIALECTS

    for dialect in DIALECTS:
        assert sqlglot.parse_one("SELECT 1", read=dialect) is not None


def test_dialect_must_match_the_db_url(bird_dir, tmp_path, capsys):
    assert main(["data", "build", "bird", str(bird_dir), "--split", "dev", "-o", str(tmp_path / "a"), "--dialect", "mysql",
                 "--db-url", "postgresql://u:pw1@h/{db_id}"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "--dialect mysql does not match --db-url (postgresql databases)" in err and "pw1" not in err
    # without --db-url the dialect is the user's choice (the SQLite databases still execute)
    assert main(["data", "build", "bird", str(bird_dir), "--split", "dev", "-o", str(tmp_path / "b"), "--dialect", "duckdb",
                 "--no-progress"]) == 0  # fmt: skip
    assert json.loads((tmp_path / "b" / "prompt.json").read_text())["dialect"] == "duckdb"
