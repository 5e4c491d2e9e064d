"""`sqlwright data build`: sources, prompt formats, the prompt.json contract, bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest

from conftest import SHOP_DDL, make_db
from sqlwright.cli import main
from sqlwright.data.build import BuildConfig, build_dataset, split_by_database
from sqlwright.data.dataset import resolve_records
from sqlwright.data.sources import SourceConfig, load_source
from sqlwright.db.introspect import introspect_sqlite
from sqlwright.errors import UserError
from sqlwright.prompts.schema import serialize_schema
from sqlwright.prompts.spec import PromptSpec

COOKBOOK_DB = """
CREATE TABLE frpm (CDSCode TEXT not null primary key, "School Name" TEXT, Enrollment INTEGER);
CREATE TABLE satscores (cds TEXT not null primary key REFERENCES frpm (CDSCode), AvgScrMath INTEGER);
CREATE TABLE logs (id INTEGER PRIMARY KEY AUTOINCREMENT, note TEXT);
INSERT INTO frpm VALUES ('01', 'Oak High', 300), ('02', 'Elm High', 120);
INSERT INTO satscores VALUES ('01', 560), ('02', 480);
INSERT INTO logs (note) VALUES ('x');
"""

# The llama-cookbook's create_sft_dataset.py output for this database, written out by hand:
# sqlite_master order, CREATE text as stored, sqlite_sequence included (its own loop keeps it).
COOKBOOK_USER = (
    "-- DB Schema: CREATE TABLE frpm (CDSCode TEXT not null primary key, \"School Name\" TEXT, Enrollment INTEGER)\n\n"
    "CREATE TABLE satscores (cds TEXT not null primary key REFERENCES frpm (CDSCode), AvgScrMath INTEGER)\n\n"
    "CREATE TABLE logs (id INTEGER PRIMARY KEY AUTOINCREMENT, note TEXT)\n\n"
    "CREATE TABLE sqlite_sequence(name,seq)\n\n"
    "-- External Knowledge: Enrollment refers to students\n\n"
    "-- Question: How many students are enrolled at Oak High?"
)
COOKBOOK_SYSTEM = (
    "You are a text to SQL query translator. Using the SQLite DB Schema and the External Knowledge, "
    "translate the following text question into a SQLite SQL select statement."
)


@pytest.fixture
def cookbook_bench(tmp_path):
    root = tmp_path / "bird"
    make_db(root / "train_databases" / "cal" / "cal.sqlite", COOKBOOK_DB)
    make_db(root / "train_databases" / "shop" / "shop.sqlite", SHOP_DDL)
    desc = root / "train_databases" / "cal" / "database_description"
    desc.mkdir()
    (desc / "frpm.csv").write_bytes("original_column_name,column_name,column_description,data_format,value_description\n"
                                   "Enrollment,Enrollment,number of students enrolled,integer,\n"
                                   "CDSCode,CDSCode,school code,text,caf\xe9 codes\n".encode("cp1252"))  # fmt: skip
    items = [
        {"question_id": 0, "db_id": "cal", "question": "How many students are enrolled at Oak High?",
         "evidence": "Enrollment refers to students", "SQL": "SELECT Enrollment FROM frpm WHERE `School Name` = 'Oak High'"},
        {"question_id": 1, "db_id": "shop", "question": "Which products are out of stock?", "evidence": "",
         "SQL": "SELECT title FROM products WHERE stock = 0"},
        {"question_id": 2, "db_id": "shop", "question": "Which products are out of stock?", "evidence": "",
         "SQL": "SELECT title FROM products WHERE stock = 0"},
        {"question_id": 3, "db_id": "shop", "question": "Priciest product?", "evidence": "",
         "SQL": "SELECT title FROM products ORDER BY price DESC LIMIT 1"},
    ]  # fmt: skip
    (root / "train.json").write_text(json.dumps(items))
    return root


def build(source, out, style="messages", **src):
    src.setdefault("splits", ["train"])
    return build_dataset(BuildConfig(source, str(out), SourceConfig(**src), PromptSpec(style=style), progress=False))


def test_cookbook_prompt_is_the_seed_text(cookbook_bench, tmp_path):
    result = build("bird", tmp_path / "ds", path=str(cookbook_bench))
    rec = json.loads((result.out / "train.jsonl").read_text().splitlines()[0])
    assert rec["messages"] == [
        {"role": "system", "content": COOKBOOK_SYSTEM},
        {"role": "user", "content": COOKBOOK_USER},
        {"role": "assistant", "content": "SELECT Enrollment FROM frpm WHERE `School Name` = 'Oak High'"},
    ]
    assert result.stats["dropped"] == {"duplicate": 1} and result.stats["splits"] == {"train": 3}
    for name in ("prompt.json", "stats.json", "lengths.png", "train.jsonl", "dataset"):
        assert (result.out / name).exists()
    from datasets import load_from_disk

    assert load_from_disk(str(result.out / "dataset"))["train"][0]["messages"][1]["content"] == COOKBOOK_USER


def test_prompt_json_contract_training_equals_prediction(cookbook_bench, tmp_path):
    """The prompt built at training time is byte-identical to the one rebuilt from prompt.json."""
    for style, fmt, serializer in [("messages", "cookbook", None), ("prompt-completion", "dbgpt-hub", None),
                                   ("messages", "cookbook-cot", "compact")]:  # fmt: skip
        spec = PromptSpec(format=fmt, serializer=serializer, style=style, examples=2, max_schema_tokens=60)
        out = tmp_path / f"ds-{fmt}"
        build_dataset(BuildConfig("bird", str(out), SourceConfig(path=str(cookbook_bench), splits=["train"]), spec, progress=False))
        trained = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()]
        # prediction time: a fresh process state, only prompt.json and the source
        loaded = PromptSpec.load(out)
        data = load_source("bird", SourceConfig(path=str(cookbook_bench), splits=["train"], examples=loaded.examples))
        by_id = {ex.id: ex for ex in data.splits["train"]}
        for rec in trained:
            prompt, _ = loaded.render(by_id[rec["id"]], data.schemas[rec["db_id"]], target=False)
            if style == "messages":
                assert json.dumps(prompt["messages"]) == json.dumps(rec["messages"][:-1])
            else:
                assert prompt["prompt"].encode() == rec["prompt"].encode()


def test_descriptions_and_examples_in_compact(cookbook_bench, tmp_path):
    data = load_source("bird", SourceConfig(path=str(cookbook_bench), splits=["train"], examples=2))
    text = serialize_schema(data.schemas["cal"], "compact", PromptSpec(serializer="compact", examples=2).options)
    assert "Enrollment INTEGER -- number of students enrolled e.g. 120, 300" in text
    assert "CDSCode TEXT PK -- school code; caf\u00e9 codes" in text  # cp1252 CSV read
    assert "sqlite_sequence" not in text


def test_budget_keeps_the_tables_the_question_is_about(tmp_path):
    ddl = "".join(f"CREATE TABLE t{i} (id INTEGER PRIMARY KEY, c{i}_value TEXT, c{i}_other INTEGER);" for i in range(30))
    ddl += "CREATE TABLE singer (singer_id INTEGER PRIMARY KEY, name TEXT, country TEXT);"
    make_db(tmp_path / "dbs" / "big.sqlite", ddl)
    q = tmp_path / "q.jsonl"
    q.write_text(json.dumps({"question": "Which country is each singer from?", "sql": "SELECT name, country FROM singer"}) + "\n")
    spec = PromptSpec(max_schema_tokens=80)
    result = build_dataset(BuildConfig("sqlite", str(tmp_path / "ds"), SourceConfig(path=str(tmp_path / "dbs"), questions=str(q)), spec, progress=False))
    user = json.loads((result.out / "train.jsonl").read_text())["messages"][1]["content"]
    assert result.stats["schema_cut"] == 1
    assert "CREATE TABLE singer" in user and "CREATE TABLE t29" not in user
    schema = user.split("-- External Knowledge")[0]
    assert len(schema) / 4 <= 80 + 5


def test_split_by_database_is_disjoint_and_seeded(cookbook_bench):
    data = load_source("bird", SourceConfig(path=str(cookbook_bench), splits=["train"]))
    a = split_by_database(data.splits["train"], 0.3, seed=1)
    b = split_by_database(data.splits["train"], 0.3, seed=1)
    assert {x.db_id for x in a["train"]}.isdisjoint({x.db_id for x in a["validation"]})
    assert [x.id for x in a["validation"]] == [x.id for x in b["validation"]]
    assert a["train"] and a["validation"]


def test_sql_create_context_local_copy(tmp_path):
    rows = [
        {"question": "How many heads are older than 56?", "context": "CREATE TABLE head (age INTEGER)",
         "answer": "SELECT COUNT(*) FROM head WHERE age > 56"},
        {"question": "Names of departments?", "context": "CREATE TABLE department (name VARCHAR); CREATE TABLE head (age INTEGER)",
         "answer": "SELECT name FROM department"},
    ]  # fmt: skip
    path = tmp_path / "scc.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = PromptSpec(format="sql-create-context")
    result = build_dataset(BuildConfig("sql-create-context", str(tmp_path / "ds"), SourceConfig(path=str(path)), spec, progress=False))
    recs = [json.loads(x) for x in (result.out / "train.jsonl").read_text().splitlines()]
    assert recs[1]["messages"][0]["content"].endswith("SCHEMA:\nCREATE TABLE department (name VARCHAR); CREATE TABLE head (age INTEGER)")
    assert recs[1]["messages"][1] == {"role": "user", "content": "Names of departments?"}
    assert recs[0]["db_id"] != recs[1]["db_id"]


def test_bird_questions_build_empty_databases(tmp_path):
    schemas = {"works": 'CREATE TABLE "chapters" (id INTEGER primary key autoincrement, Act INTEGER not null);\n'
                        "CREATE TABLE sqlite_sequence(name,seq);"}  # fmt: skip
    (tmp_path / "s.json").write_text(json.dumps(schemas))
    (tmp_path / "q.json").write_text(json.dumps([{"db_id": "works", "question": "How many acts?", "evidence": "",
                                                  "SQL": "SELECT COUNT(DISTINCT Act) FROM chapters"}]))  # fmt: skip
    data = load_source("bird-questions", SourceConfig(questions=str(tmp_path / "q.json"), schemas=str(tmp_path / "s.json"), work_dir=str(tmp_path / "w")))
    ex = data.splits["train"][0]
    assert [t.name for t in data.schemas["works"].user_tables] == ["chapters"]
    from sqlwright.db.sqlite import SQLiteExecutor

    res = SQLiteExecutor().execute(ex.db_path, ex.sql)  # compiles and runs on the empty database
    assert res.ok and res.rows == ((0,),)


BAD = {
    "missing column": (b"question,query,db_id\nHow many?,SELECT 1,shop\n", "missing column 'sql'"),
    "unknown db_id": (b"question,sql,db_id\nHow many?,SELECT 1,shop\nAnd?,SELECT 2,shoq\n", "q.csv:3: unknown db_id 'shoq'"),
    "bad encoding": (b"question,sql,db_id\nHow many?,SELECT 1,shop\nCaf\xe9?,SELECT 2,shop\n", "q.csv:3: not UTF-8"),
    "empty value": (b"question,sql,db_id\n,SELECT 1,shop\n", "q.csv:2: empty or missing 'question'"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_one_line_and_no_dataset(tmp_path, case):
    content, words = BAD[case]
    make_db(tmp_path / "dbs" / "shop.sqlite", SHOP_DDL)
    make_db(tmp_path / "dbs" / "cal.sqlite", COOKBOOK_DB)
    (tmp_path / "q.csv").write_bytes(content)
    out = tmp_path / "ds"
    proc = subprocess.run([sys.executable, "-m", "sqlwright", "data", "build", "sqlite", str(tmp_path / "dbs"),
                           "--questions", str(tmp_path / "q.csv"), "-o", str(out), "--no-progress"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in proc.stderr
    assert not out.exists() and not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_unreadable_database(tmp_path, capsys):
    (tmp_path / "dbs").mkdir()
    (tmp_path / "dbs" / "broken.sqlite").write_bytes(b"this is not a database" * 100)
    (tmp_path / "q.jsonl").write_text('{"question": "How many?", "sql": "SELECT 1"}\n')
    code = main(["data", "build", "sqlite", str(tmp_path / "dbs"), "--questions", str(tmp_path / "q.jsonl"), "-o", str(tmp_path / "ds"), "--no-progress"])
    assert code == 2
    assert "broken.sqlite: not a readable SQLite database" in capsys.readouterr().err
    assert not (tmp_path / "ds").exists()


def test_refuses_to_overwrite(cookbook_bench, tmp_path, capsys):
    out = tmp_path / "ds"
    args = ["data", "build", "bird", str(cookbook_bench), "-o", str(out), "--no-progress"]
    assert main(args) == 0
    assert main(args) == 2 and "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0


@pytest.mark.data
def test_spider_train_every_prompt_has_its_own_schema_only(spider_data, tmp_path):
    t0 = time.monotonic()
    result = build("spider", tmp_path / "ds", path=str(spider_data))
    took = time.monotonic() - t0
    recs = [json.loads(x) for x in (result.out / "train.jsonl").read_text().splitlines()]
    assert len(recs) + result.stats["dropped"].get("duplicate", 0) == 7000
    own = {}
    for r in recs:
        db = r["db_id"]
        if db not in own:
            path = spider_data / "database" / db / f"{db}.sqlite"
            own[db] = serialize_schema(introspect_sqlite(path), "ddl") if path.is_file() else None
        schema = r["messages"][1]["content"].removeprefix("-- DB Schema: ").split("\n\n-- External Knowledge: ")[0]
        if own[db] is not None:
            assert schema == own[db]  # exactly its own database's schema, nothing of another
    print(f"built {len(recs)} Spider train examples in {took:.1f} s")


def test_sqlalchemy_url_source(tmp_path):
    """A database reached through a SQLAlchemy URL (here SQLite's own URL form)."""
    db = make_db(tmp_path / "shop.sqlite", SHOP_DDL)
    q = tmp_path / "q.jsonl"
    q.write_text(json.dumps({"question": "How many products?", "sql": "SELECT count(*) FROM products"}) + "\n")
    spec = PromptSpec(serializer="sentences")
    result = build_dataset(BuildConfig("sqlite", str(tmp_path / "ds"), SourceConfig(url=f"sqlite:///{db}", questions=str(q)), spec, progress=False))
    user = json.loads((result.out / "train.jsonl").read_text())["messages"][1]["content"]
    assert "Table products has columns such as pid, title, price, stock. pid is the primary key." in user


def test_sql_create_context_parquet_copy(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "scc.parquet"
    pq.write_table(pa.Table.from_pylist([{"question": "Oldest head?", "context": "CREATE TABLE head (age INTEGER)",
                                          "answer": "SELECT MAX(age) FROM head"}]), path)  # fmt: skip
    data = load_source("sql-create-context", SourceConfig(path=str(path)))
    ex = data.splits["train"][0]
    assert ex.sql == "SELECT MAX(age) FROM head" and ex.context == "CREATE TABLE head (age INTEGER)"
    assert [c.name for c in data.schemas[ex.db_id].tables[0].columns] == ["age"]


# -- portable datasets: database references relative to a recorded root ----------------------
def test_built_databases_live_in_the_dataset_and_move_with_it(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps({"works": "CREATE TABLE chapters (id INTEGER PRIMARY KEY, Act INTEGER)"}))
    (tmp_path / "q.json").write_text(json.dumps([{"db_id": "works", "question": "How many acts?", "evidence": "",
                                                  "SQL": "SELECT COUNT(DISTINCT Act) FROM chapters"}]))  # fmt: skip
    out = tmp_path / "laptop" / "ds"
    assert main(["data", "build", "bird-questions", str(tmp_path / "q.json"), "--schemas", str(tmp_path / "s.json"),
                 "-o", str(out), "--no-progress"]) == 0  # fmt: skip
    assert (out / "databases" / "works" / "works.sqlite").is_file()
    assert [p.name for p in out.parent.iterdir()] == ["ds"]  # nothing beside the dataset (no hidden sibling)
    assert json.loads((out / "dataset.json").read_text())["db_root"] == "databases"
    assert json.loads((out / "stats.json").read_text())["source_config"]["work_dir"] is None
    rec = json.loads((out / "train.jsonl").read_text())
    assert rec["db_path"] == "works/works.sqlite"

    moved = tmp_path / "cluster" / "ds"
    shutil.copytree(out, moved)
    shutil.rmtree(tmp_path / "laptop")
    (r,) = resolve_records(moved, [rec])
    assert r["db_path"] == str(moved / "databases" / "works" / "works.sqlite")
    from sqlwright.db.sqlite import SQLiteExecutor

    assert SQLiteExecutor().execute(r["db_path"], rec["sql"]).rows == ((0,),)


def test_outside_databases_are_relative_to_a_recorded_root(cookbook_bench, tmp_path):
    result = build("bird", tmp_path / "ds", path=str(cookbook_bench))
    old = (cookbook_bench / "train_databases").resolve()
    assert json.loads((result.out / "dataset.json").read_text())["db_root"] == str(old)
    recs = [json.loads(x) for x in (result.out / "train.jsonl").read_text().splitlines()]
    assert [r["db_path"] for r in recs] == ["cal/cal.sqlite", "shop/shop.sqlite", "shop/shop.sqlite"]
    assert [r["db_path"] for r in resolve_records(result.out, recs)] == [str(old / r["db_path"]) for r in recs]

    new = tmp_path / "cluster" / "dbs"  # another machine: the databases are somewhere else
    shutil.move(old, new)
    with pytest.raises(UserError) as e:
        resolve_records(result.out, recs)
    assert str(e.value) == (f"cal: database not found at {old}/cal/cal.sqlite (and 1 more of the 2 databases); "
                            "pass --db-root DIR (the folder holding cal/cal.sqlite)")  # fmt: skip
    assert resolve_records(result.out, recs, require=False)[0]["db_path"] == str(old / "cal/cal.sqlite")  # not checked
    resolved = resolve_records(result.out, recs, db_root=str(new))
    assert [r["db_path"] for r in resolved] == [str(new / r["db_path"]) for r in recs]


def test_older_datasets_with_absolute_paths_still_resolve(cookbook_bench, tmp_path):
    result = build("bird", tmp_path / "ds", path=str(cookbook_bench))
    old = (cookbook_bench / "train_databases").resolve()
    (result.out / "dataset.json").unlink()  # as builds wrote datasets before: absolute paths, no root
    recs = [{**json.loads(x), "db_path": str(old / json.loads(x)["db_path"])} for x in (result.out / "train.jsonl").read_text().splitlines()]
    assert [r["db_path"] for r in resolve_records(result.out, recs)] == [r["db_path"] for r in recs]
    new = tmp_path / "cluster" / "dbs"
    shutil.move(old, new)
    with pytest.raises(UserError, match=r"^cal: database not found at .*; pass --db-root DIR \(the folder holding cal/cal.sqlite\)$"):
        resolve_records(result.out, recs)
    assert [r["db_path"] for r in resolve_records(result.out, recs, db_root=str(new))] == [
        str(new / "cal/cal.sqlite"), str(new / "shop/shop.sqlite"), str(new / "shop/shop.sqlite")]
    shutil.rmtree(new / "cal")  # one of them missing, the others there: as before, that one scores db_missing
    assert resolve_records(result.out, recs, db_root=str(new))[0]["db_path"] == str(new / "cal/cal.sqlite")


def test_folder_of_sqlite_files_and_sqlite_urls_are_recorded_as_files(tmp_path):
    db = make_db(tmp_path / "dbs" / "shop.sqlite", SHOP_DDL)
    q = tmp_path / "q.jsonl"
    q.write_text(json.dumps({"question": "How many products?", "sql": "SELECT count(*) FROM products"}) + "\n")
    for name, src in (("folder", SourceConfig(path=str(tmp_path / "dbs"), questions=str(q))),
                      ("url", SourceConfig(url=f"sqlite:///{db}", questions=str(q)))):  # fmt: skip
        out = build_dataset(BuildConfig("sqlite", str(tmp_path / name), src, PromptSpec(), progress=False)).out
        rec = json.loads((out / "train.jsonl").read_text())
        assert rec["db_path"] == "shop.sqlite", name
        assert json.loads((out / "dataset.json").read_text())["db_root"] == str((tmp_path / "dbs").resolve())
        assert resolve_records(out, [rec])[0]["db_path"] == str(db.resolve())


def test_a_database_absent_at_build_time_is_not_an_error_later(spider_dir, tmp_path):
    tables = json.loads((spider_dir / "tables.json").read_text())
    tables.append({**tables[0], "db_id": "gone"})  # in tables.json, no database file (like Spider's wta_1)
    (spider_dir / "tables.json").write_text(json.dumps(tables))
    dev = json.loads((spider_dir / "dev.json").read_text()) + [{"db_id": "gone", "question": "Any?", "query": "SELECT 1"}]
    (spider_dir / "dev.json").write_text(json.dumps(dev))
    out = build("spider", tmp_path / "ds", path=str(spider_dir), splits=["dev"]).out
    assert json.loads((out / "dataset.json").read_text())["absent"] == ["gone"]
    recs = [json.loads(x) for x in (out / "dev.jsonl").read_text().splitlines()]
    resolved = resolve_records(out, recs)  # the others are checked; "gone" scores db_missing, as at build time
    assert resolved[-1]["db_path"] == str((spider_dir / "database" / "gone" / "gone.sqlite").resolve())
    (spider_dir / "database" / "shop" / "shop.sqlite").unlink()
    with pytest.raises(UserError, match="^shop: database not found at "):
        resolve_records(out, recs)


def test_database_url_that_cannot_be_read_is_one_line(tmp_path, capsys):
    (tmp_path / "q.jsonl").write_text('{"question": "How many?", "sql": "SELECT 1"}\n')
    code = main(["data", "build", "sqlite", "--url", "postgresql://u:pw@127.0.0.1:1/db", "--questions", str(tmp_path / "q.jsonl"),
                 "-o", str(tmp_path / "ds"), "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: postgresql://") and "127.0.0.1:1/db: cannot " in err  # no driver, or no server
    assert "pw" not in err and not (tmp_path / "ds").exists()
