"""Test-suite execution accuracy on suites built here, and `sqlwright eval --etype`."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_db, write_jsonl
from sqlwright.cli import main
from sqlwright.errors import UserError
from sqlwright.eval.evaluate import EvalConfig, evaluate
from sqlwright.eval.test_suite import plugged_variants, prepare, remove_distinct, suite_databases

# spider_dir's shop: (1 pen 2 100) (2 book 12 10) (3 lamp 30 0) (4 mug 8 25)
# a suite copy whose rows tell apart queries that agree on the original by chance
SUITE_ROWS = "INSERT INTO products VALUES (5, 'cup', 11, 3), (6, 'pad', 11, 0), (7, 'ink', 40, 1), (8, 'cap', 10, 2);"


def make_suite(root: Path, spider_dir: Path) -> Path:
    folder = root / "suite" / "shop"
    folder.mkdir(parents=True)
    shutil.copy(spider_dir / "database" / "shop" / "shop.sqlite", folder / "shop.sqlite")
    shutil.copy(folder / "shop.sqlite", folder / "shop_2.sqlite")
    conn = sqlite3.connect(folder / "shop_2.sqlite")
    conn.executescript(SUITE_ROWS)
    conn.commit()
    conn.close()
    return root / "suite"


def spider_run(spider_dir, tmp_path, preds: list[str], **kw):
    path = tmp_path / "pred.sql"
    path.write_text("".join(p + "\n" for p in preds))
    return evaluate(EvalConfig(str(path), benchmark=str(spider_dir), out=str(tmp_path / "r"), progress=False, workers=0, **kw))


GOLD = ["SELECT count(*) FROM products", "SELECT title, price FROM products ORDER BY price",
        "SELECT title FROM products WHERE stock > 0 AND price < (SELECT avg(price) FROM products) ORDER BY price LIMIT 1"]  # fmt: skip


def test_right_on_the_original_database_but_wrong_on_the_suite(spider_dir, tmp_path):
    suite = make_suite(tmp_path, spider_dir)
    preds = [
        "SELECT count(*) FROM products WHERE pid < 5",  # 4 on the original, 4 (not 8) on the suite copy
        "SELECT price, title FROM products ORDER BY price",  # columns permuted: still right
        GOLD[2],
    ]
    run = spider_run(spider_dir, tmp_path, preds, test_suite=str(suite))
    r = run.records
    assert [x["correct"] for x in r] == [True, False, True]  # the bird comparator: column order counts
    assert [x["ts_correct"] for x in r] == [False, True, True]
    assert (r[0]["ts_agreed"], r[0]["ts_databases"]) == (1, 2)
    assert r[0]["ts_reason"].startswith("shop_2.sqlite")
    assert (r[1]["ts_agreed"], r[1]["ts_databases"]) == (2, 2)
    ts = run.summary["test_suite"]
    assert ts["correct"] == 2 and ts["count"] == 3 and ts["databases"] == 2 and ts["suites"] == 1
    assert ts["correct_on_one_wrong_on_suite"] == 1
    assert run.summary["ts_ex"] == pytest.approx(66.67)
    assert run.summary["by_difficulty"]["easy"]["ts_ex"] == 0.0
    assert run.summary["by_database"]["shop"]["ts_ex"] == pytest.approx(66.67)


def test_row_order_counts_when_the_gold_orders(spider_dir, tmp_path):
    suite = make_suite(tmp_path, spider_dir)
    run = spider_run(spider_dir, tmp_path, [GOLD[0], "SELECT title, price FROM products ORDER BY pid", GOLD[2]],
                     test_suite=str(suite))  # fmt: skip
    assert [x["ts_correct"] for x in run.records] == [True, False, True]


def test_distinct_is_removed_unless_kept(spider_dir, tmp_path):
    suite = make_suite(tmp_path, spider_dir)
    preds = ["SELECT count(DISTINCT price) FROM products", GOLD[1], GOLD[2]]  # 4 = 4 on the original; 7 vs 8 on the copy
    assert spider_run(spider_dir, tmp_path, preds, test_suite=str(suite)).records[0]["ts_correct"] is True
    kept = spider_run(spider_dir, tmp_path, preds, test_suite=str(suite), keep_distinct=True)
    assert kept.records[0]["ts_correct"] is False and kept.records[0]["ts_agreed"] == 1
    assert kept.summary["test_suite"]["keep_distinct"] is True


def test_plug_value_tries_the_golds_values(spider_dir, tmp_path):
    pytest.importorskip("sqlparse")
    suite = make_suite(tmp_path, spider_dir)
    spider_dir.joinpath("dev.json").write_text(json.dumps([
        {"db_id": "shop", "question": "Products over 10?", "query": "SELECT title FROM products WHERE price > 10"}]))
    wrong_value = ["SELECT title FROM products WHERE price > 9"]  # same rows on the original, not on the copy
    plain = spider_run(spider_dir, tmp_path, wrong_value, test_suite=str(suite))
    assert plain.records[0]["correct"] is True and plain.records[0]["ts_correct"] is False
    plugged = spider_run(spider_dir, tmp_path, wrong_value, test_suite=str(suite), plug_value=True)
    rec = plugged.records[0]
    assert rec["ts_correct"] is True and "10" in rec["ts_plugged"] and rec["ts_agreed"] == 2
    assert plugged.summary["test_suite"]["plugged"] == 1
    # exact match ignores values with or without plugging
    assert rec["exact_match"] is True and plain.records[0]["exact_match"] is True


def test_plugged_variants_follow_the_official_slots():
    pytest.importorskip("sqlparse")
    total, variants = plugged_variants("SELECT name FROM t WHERE a = 'x' AND b > 3", "SELECT name FROM t WHERE a = 'y'")
    assert total == 2 and sorted(variants) == ["select name from t where a = 'x'", "select name from t where a = 3"]
    total, variants = plugged_variants("SELECT T1.name FROM t AS T1 WHERE T1.a = 5", "SELECT T1.name FROM t AS T1 WHERE T1.a = 7")
    assert total == 1 and variants == ["select t1 . name from t as t1 where t1 . a = 5"]  # T1 is no value


def test_prepare_is_the_official_preparation():
    gold, pred = prepare("SELECT DISTINCT a FROM t WHERE b > = 1", "SELECT distinct a FROM t WHERE b = value ")
    assert gold == "SELECT  a FROM t WHERE b >= 1" and pred == "SELECT  a FROM t WHERE b = 1 "
    assert remove_distinct("SELECT DISTINCT name FROM t WHERE x = 'distinct'") == "SELECT  name FROM t WHERE x = 'distinct'"
    assert prepare("SELECT YEAR(CURDATE()) - y FROM t", None, keep_distinct=True) == ("SELECT 2020- y FROM t", None)


def test_a_suite_missing_a_database_is_one_line(spider_dir, tmp_path):
    empty = tmp_path / "suite"
    (empty / "other").mkdir(parents=True)
    with pytest.raises(UserError, match=r"no databases for shop \(looked for .*/<db_id>/\*\.sqlite\)"):
        suite_databases(empty, ["shop"])
    path = write_jsonl(tmp_path / "p.jsonl", [{"id": i, "sql": g} for i, g in enumerate(GOLD)])
    proc = subprocess.run([sys.executable, "-m", "sqlwright", "eval", str(path), "-b", str(spider_dir), "--test-suite",
                           str(empty), "-o", str(tmp_path / "r"), "--no-progress"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no databases for shop" in lines[0]


def test_suite_databases_lists_the_original_first(tmp_path):
    for name in ("b_3.sqlite", "shop.sqlite", "a_1.sqlite"):
        make_db(tmp_path / "shop" / name, "CREATE TABLE x (a INT);")
    (tmp_path / "shop" / "notes.txt").write_text("not a database")
    assert [Path(p).name for p in suite_databases(tmp_path, ["shop"])["shop"]] == ["shop.sqlite", "a_1.sqlite", "b_3.sqlite"]


# -- --etype ---------------------------------------------------------------------------------------------
def test_etype_match_all_and_exec_on_the_cli(spider_dir, tmp_path, capsys):
    preds = write_jsonl(tmp_path / "p.jsonl", [{"id": 0, "sql": GOLD[0]}, {"id": 1, "sql": "SELECT title, price FROM products"},
                                               {"id": 2, "sql": "SELECT nickname FROM products"}])  # fmt: skip
    assert main(["eval", str(preds), "-b", str(spider_dir), "--etype", "match", "-o", str(tmp_path / "m"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "EM %" in out and "EX %" not in out and "exact match" in out and "Exact-set-match by hardness" in out
    s = json.loads((tmp_path / "m" / "summary.json").read_text())
    assert s["etype"] == "match" and s["ex"] is None and s["em"] == pytest.approx(33.33)
    assert s["timing"]["distinct_queries"] == 0
    recs = [json.loads(x) for x in (tmp_path / "m" / "examples.jsonl").read_text().splitlines()]
    assert [r["verdict"] for r in recs] == ["not_executed"] * 3
    assert [r["exact_match"] for r in recs] == [True, False, False]
    assert recs[1]["match_failed"] == ["order", "keywords"] and recs[1]["match_error"] is None
    assert recs[2]["match_error"].startswith("prediction does not parse")

    # the default on a Spider benchmark with tables.json: both, EM beside EX
    assert main(["eval", str(preds), "-b", str(spider_dir), "-o", str(tmp_path / "a"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "EX %" in out and "EM %" in out
    s = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert s["etype"] == "all" and s["ex"] == pytest.approx(66.67) and s["em"] == pytest.approx(33.33)  # bird ignores order
    assert s["by_difficulty"]["easy"]["em"] == 100.0 and s["exact_match"]["by_hardness"]["all"]["count"] == 3

    assert main(["eval", str(preds), "-b", str(spider_dir), "--etype", "exec", "-o", str(tmp_path / "x"), "--no-progress"]) == 0
    s = json.loads((tmp_path / "x" / "summary.json").read_text())
    assert "em" not in s and "exact_match" not in s
    recs = [json.loads(x) for x in (tmp_path / "x" / "examples.jsonl").read_text().splitlines()]
    assert "exact_match" not in recs[0]


def test_report_shows_em_beside_ex_and_the_component_table(spider_dir, tmp_path):
    suite = make_suite(tmp_path, spider_dir)
    spider_run(spider_dir, tmp_path, ["SELECT count(*) FROM products WHERE pid < 5", GOLD[1], GOLD[2]], test_suite=str(suite))
    assert main(["report", str(tmp_path / "r")]) == 0
    page = (tmp_path / "r" / "report.html").read_text()
    assert "Exact match" in page and "Test-suite EX" in page and "Spider's own metrics" in page
    assert "group(no Having)" in page and "test suite ✗ 1/2 databases" in page and "EM ✗ (where, where(no OP), keywords)" in page


def test_exact_match_without_tables_is_one_line(bird_dir, tmp_path, capsys):
    preds = write_jsonl(tmp_path / "p.jsonl", [{"id": 0, "sql": "SELECT 1"}])
    assert main(["eval", str(preds), "-b", str(bird_dir), "--etype", "match", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exact match needs the schemas in Spider's tables.json format" in err[0] and "--tables" in err[0]
    assert main(["eval", str(preds), "-b", str(bird_dir), "--etype", "everything", "--no-progress"]) == 2
    assert "--etype must be one of auto, exec, match, all" in capsys.readouterr().err
    assert main(["eval", str(preds), "-b", str(bird_dir), "--plug-value", "--no-progress"]) == 2
    assert "--plug-value changes test-suite execution only" in capsys.readouterr().err
    # BIRD defaults to execution only, with no EM
    assert main(["eval", str(preds), "-b", str(bird_dir), "-o", str(tmp_path / "r"), "--no-progress"]) == 0
    assert "em" not in json.loads((tmp_path / "r" / "summary.json").read_text())


@pytest.mark.data
def test_spider_dev_gold_on_its_own_database_folder_as_suites(spider_data, tmp_path):
    dev = json.loads((spider_data / "dev.json").read_text())
    sample = [(i, q) for i, q in enumerate(dev) if q["db_id"] != "wta_1"][::8]
    preds = write_jsonl(tmp_path / "g.jsonl", [{"id": i, "sql": q["query"]} for i, q in sample])
    run = evaluate(EvalConfig(str(preds), benchmark=str(spider_data), out=str(tmp_path / "r"), progress=False,
                              only_predicted=True, test_suite=str(spider_data / "database")))  # fmt: skip
    assert run.summary["em"] == 100.0 and run.summary["ts_ex"] == 100.0 and run.summary["ex"] == 100.0
    assert all(r["ts_databases"] == 1 for r in run.records)
