"""``sqlwright db load``: SQLite benchmark databases copied into another engine, golds
transpiled with sqlglot and verified by execution there (the parity report), and the
transpiled golds scoring 100% against themselves on that engine."""

from __future__ import annotations

import json

import pytest

from conftest import SCHOOLS_DDL, make_db, write_jsonl
from sqlwright.cli import main

pytest.importorskip("duckdb")
GOLDS = [
    "SELECT count(*) FROM schools WHERE city = 'Fresno'",
    "SELECT name FROM schools WHERE rating = 4.5 ORDER BY name",
    "SELECT city, avg(students) FROM schools GROUP BY city",
    "SELECT s.name, max(c.avg_math) FROM schools s JOIN scores c ON s.id = c.school_id GROUP BY s.name",
    "SELECT name FROM schools WHERE students > 100 ORDER BY students DESC LIMIT 2",
    "SELECT name FROM schools GROUP BY city",  # SQLite allows a bare column; stricter engines refuse it
]


@pytest.fixture
def bench(tmp_path):
    root = tmp_path / "spider"
    make_db(root / "database" / "schools" / "schools.sqlite", SCHOOLS_DDL)
    (root / "tables.json").write_text("[]")
    (root / "dev.json").write_text(json.dumps([{"db_id": "schools", "question": f"q{i}", "query": q} for i, q in enumerate(GOLDS)]))
    return root


@pytest.mark.parametrize("engine", ["duckdb", "postgresql", "mariadb"])
def test_load_transpile_and_score_golds_on_the_engine(engine, bench, tmp_path, request, capsys):
    if engine == "duckdb":
        url, dialect = f"duckdb://{tmp_path}/duck/{{db_id}}.duckdb", "duckdb"
    else:
        server = request.getfixturevalue("pg_server" if engine == "postgresql" else "maria_server")
        url, dialect = server.url("{db_id}").replace("/{db_id}", "/load_{db_id}"), ("postgres" if engine == "postgresql" else "mysql")
    out = tmp_path / "load"
    assert main(["db", "load", str(bench), "--url", url, "--transpile-gold", dialect, "-o", str(out), "--no-progress",
                 "--replace", "--workers", "0"]) == 0  # fmt: skip
    said = capsys.readouterr().out
    assert "gold parity" in said
    loaded = json.loads((out / "load.json").read_text())
    assert [(d["db_id"], d["tables"], d["rows"]) for d in loaded["databases"]] == [("schools", 2, 11)]
    parity = json.loads((out / "parity.json").read_text())
    recs = [json.loads(x) for x in (out / "parity.jsonl").read_text().splitlines()]
    assert parity["questions"] == 6 and parity["same"] == sum(r["same"] for r in recs)
    assert all(r["same"] for r in recs[:5]), recs  # portable golds agree
    if engine != "mariadb":  # MySQL, like SQLite, accepts a bare column with GROUP BY
        assert not recs[5]["same"] and recs[5]["kind"] == "target_syntax_error" and recs[5]["reason"]
    qfile = next(out.glob("dev_*.json"))
    items = json.loads(qfile.read_text())
    assert [it["sqlite_query"] for it in items] == GOLDS  # same order: Spider ids are positions

    # the transpiled golds, as predictions, on the engine: 100% on those that pass parity
    preds = write_jsonl(tmp_path / "g.jsonl", [{"id": i, "sql": it["query"]} for i, it in enumerate(items)])
    assert main(["eval", str(preds), "--questions", str(qfile), "--db-url", url, "-o", str(tmp_path / "ev"),
                 "--no-progress", "--workers", "0"]) == 0  # fmt: skip
    ev = [json.loads(x) for x in (tmp_path / "ev" / "examples.jsonl").read_text().splitlines()]
    assert all(e["correct"] for e, r in zip(ev, recs, strict=True) if r["same"])

    # again without --replace: the databases are left as they are
    assert main(["db", "load", str(bench), "--url", url, "-o", str(tmp_path / "again"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "again" / "load.json").read_text())["databases"][0]["skipped"] is True


def test_bad_input_is_one_line(bench, tmp_path, capsys):
    for argv, part in ((["--url", "postgresql://u:pw@h/bench"], "has no {db_id}"),
                       (["--url", "oracle://u@h/{db_id}"], "db load copies into"),
                       (["--url", "duckdb:///x/{db_id}.duckdb", "--transpile-gold", "postgress"], "did you mean 'postgres'"),
                       (["--url", "duckdb:///x/{db_id}.duckdb", "--databases", "school"], "did you mean 'schools'")):  # fmt: skip
        assert main(["db", "load", str(bench), *argv, "-o", str(tmp_path / "o"), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and part in err and ":pw@" not in err, err
