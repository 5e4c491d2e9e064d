"""`sqlwright eval` end to end on small BIRD- and Spider-layout benchmarks."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import BIRD_QUESTIONS, make_db, write_jsonl
from sqlwright.cli import main
from sqlwright.eval.evaluate import EvalConfig, evaluate


def gold_predictions():
    return [{"id": q[0], "sql": q[4]} for q in BIRD_QUESTIONS]


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sqlwright", *map(str, args)], capture_output=True, text=True, timeout=120)


def test_bird_gold_scores_100_and_writes_run_folder(bird_dir, tmp_path):
    preds = write_jsonl(tmp_path / "p.jsonl", gold_predictions()[::-1])  # order must not matter
    out = tmp_path / "run"
    proc = run_cli("eval", preds, "--benchmark", bird_dir, "--out", out, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "simple" in proc.stdout and "challenging" in proc.stdout and "100.00" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ex"] == 100.0 and summary["questions"] == 6
    assert summary["by_difficulty"]["simple"]["count"] == 3
    assert summary["by_difficulty"]["moderate"]["ex"] == 100.0
    assert summary["by_database"]["shop"]["count"] == 2
    assert summary["comparator"] == "bird" and summary["settings"]["timeout"] == 30.0
    assert summary["environment"]["sqlwright"] and summary["environment"]["cpu_count"] >= 1
    lines = [json.loads(x) for x in (out / "examples.jsonl").read_text().splitlines()]
    assert [r["id"] for r in lines] == [str(q[0]) for q in BIRD_QUESTIONS]
    rec = lines[3]
    assert rec["difficulty"] == "challenging" and rec["verdict"] == "correct"
    assert rec["gold"] == rec["predicted"] and rec["gold_elapsed"] >= 0 and rec["gold_preview"]
    assert json.loads((out / "config.json").read_text())["comparator"] == "bird"


def test_verdicts_and_missing(bird_dir, tmp_path):
    preds = [
        {"id": 0, "sql": "SELECT COUNT(*) FROM schools WHERE city = 'Fresno'"},  # right
        {"id": 1, "sql": "SELECT name FROM schools"},  # wrong result
        {"id": 2, "sql": "SELECT city, COUNT(*) FROM schol GROUP BY city"},  # unknown table
        {"id": "4", "sql": "DELETE FROM products", "model": "x"},  # refused; extra fields allowed
        {"id": 5, "sql": "SELECT AVG(price) FROM products WHERE stock > 0;"},  # right
    ]  # id 3 missing
    run = evaluate(EvalConfig(str(write_jsonl(tmp_path / "p.jsonl", preds)), benchmark=str(bird_dir),
                              out=str(tmp_path / "r"), progress=False))  # fmt: skip
    verdicts = {r["id"]: (r["verdict"], r["pred_status"]) for r in run.records}
    assert verdicts == {
        "0": ("correct", "ok"), "1": ("wrong", "ok"), "2": ("error", "syntax_error"),
        "3": ("missing", None), "4": ("error", "forbidden"), "5": ("correct", "ok"),
    }  # fmt: skip
    assert run.summary["counts"]["missing"] == 1 and run.summary["counts"]["error"] == 2
    assert run.summary["ex"] == pytest.approx(100 * 2 / 6, abs=0.01)


@pytest.mark.parametrize("fmt", ["bird", "spider"])
def test_other_tools_formats(bird_dir, tmp_path, fmt):
    if fmt == "bird":
        path = tmp_path / "predict_dev.json"
        path.write_text(json.dumps({str(q[0]): f"{q[4]}\t----- bird -----\t{q[1]}" for q in BIRD_QUESTIONS}))
    else:
        path = tmp_path / "pred.sql"
        path.write_text("".join(f"{q[4]}\t{q[1]}\n" for q in BIRD_QUESTIONS))
    run = evaluate(EvalConfig(str(path), benchmark=str(bird_dir), out=str(tmp_path / "r"), progress=False))
    assert run.summary["predictions_format"] == fmt
    assert run.summary["ex"] == 100.0


def test_spider_layout_hardness(spider_dir, tmp_path):
    path = tmp_path / "pred.sql"
    path.write_text("SELECT count(*) FROM products\nSELECT title, price FROM products ORDER BY price DESC\nSELECT 1\n")
    run = evaluate(EvalConfig(str(path), benchmark=str(spider_dir), comparator="ordered", out=str(tmp_path / "r"), progress=False))
    assert [r["difficulty"] for r in run.records] == ["easy", "medium", "extra"]
    assert [r["verdict"] for r in run.records] == ["correct", "wrong", "wrong"]
    assert run.summary["ex_by_comparator"]["bird"] == pytest.approx(66.67)  # order ignored there
    assert run.summary["difficulty_kind"] == "hardness"


def test_exit_code_zero_whatever_the_score(bird_dir, tmp_path):
    preds = write_jsonl(tmp_path / "p.jsonl", [{"id": 0, "sql": "SELECT 42"}])
    assert main(["eval", str(preds), "-b", str(bird_dir), "-o", str(tmp_path / "r"), "--no-progress"]) == 0


BAD_INPUTS = {
    "malformed line": ('{"id": 0, "sql": "SELECT 1"}\n{"id": 1, "sql": \n', "p.jsonl:2"),
    "missing key": ('{"id": 0, "query": "SELECT 1"}\n', "p.jsonl:1"),
    "empty file": ("", "empty"),
    "unknown id": ('{"id": 77, "sql": "SELECT 1"}\n', "'77'"),
    "unknown db_id": ('{"id": 0, "sql": "SELECT 1", "db_id": "schoolz"}\n', "did you mean 'schools'"),
    "wrong db_id": ('{"id": 0, "sql": "SELECT 1", "db_id": "shop"}\n', "is on 'schools'"),
    "duplicate id": ('{"id": 0, "sql": "SELECT 1"}\n{"id": "0", "sql": "SELECT 2"}\n', "second prediction"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_clear_line(bird_dir, tmp_path, case):
    text, words = BAD_INPUTS[case]
    preds = tmp_path / "p.jsonl"
    preds.write_text(text)
    proc = run_cli("eval", preds, "-b", bird_dir, "-o", tmp_path / "r", "--no-progress")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert words in lines[0]


def test_bad_layout_and_missing_databases(bird_dir, tmp_path, capsys):
    preds = write_jsonl(tmp_path / "p.jsonl", gold_predictions())
    assert main(["eval", str(preds), "-b", str(tmp_path), "--no-progress"]) == 2
    assert "not a benchmark directory" in capsys.readouterr().err
    empty = tmp_path / "nodbs"
    empty.mkdir()
    assert main(["eval", str(preds), "-b", str(bird_dir), "--db-root", str(empty), "--no-progress"]) == 2
    assert "none of the 2 databases" in capsys.readouterr().err
    assert main(["eval", str(preds), "-b", str(bird_dir), "-c", "sets", "--no-progress"]) == 2
    assert "unknown comparator 'sets'" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "none.jsonl"), "-b", str(bird_dir)]) == 2
    assert "not found" in capsys.readouterr().err


def test_spider_text_with_wrong_line_count(spider_dir, tmp_path, capsys):
    path = tmp_path / "pred.sql"
    path.write_text("SELECT 1\n")
    assert main(["eval", str(path), "-b", str(spider_dir), "--no-progress"]) == 2
    assert "has 1 lines but" in capsys.readouterr().err


def test_bird_keyed_by_position(bird_dir, tmp_path):
    items = json.loads((bird_dir / "dev.json").read_text())
    for i, it in enumerate(items):
        it["question_id"] = 1000 + i
    (bird_dir / "dev.json").write_text(json.dumps(items))
    path = tmp_path / "predict_dev.json"
    path.write_text(json.dumps({str(i): f"{q[4]}\t----- bird -----\t{q[1]}" for i, q in enumerate(BIRD_QUESTIONS)}))
    with pytest.raises(Exception, match="--pred-key index"):
        evaluate(EvalConfig(str(path), benchmark=str(bird_dir), progress=False, out=str(tmp_path / "r")))
    run = evaluate(EvalConfig(str(path), benchmark=str(bird_dir), pred_key="index", progress=False, out=str(tmp_path / "r")))
    assert run.summary["ex"] == 100.0 and run.records[0]["id"] == "1000"


def test_ves(bird_dir, tmp_path):
    preds = write_jsonl(tmp_path / "p.jsonl", gold_predictions())
    run = evaluate(EvalConfig(str(preds), benchmark=str(bird_dir), ves=True, ves_repeat=3, progress=False, out=str(tmp_path / "r")))
    assert run.summary["ves"]["ves"] > 0 and run.summary["ves"]["r_ves"] > 0
    assert all(r["time_ratio"] > 0 for r in run.records)


def test_help_is_quick_and_lists_eval():
    proc = run_cli("--help")
    assert proc.returncode == 0 and "eval" in proc.stdout
    proc = run_cli("eval", "--help")
    assert "--comparator" in proc.stdout
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import sqlwright.cli"], capture_output=True, text=True).stderr
    assert "torch" not in out and "sqlglot" not in out  # heavy imports stay out of --help


def test_readme_example_runs(tmp_path):
    """The README's first `sqlwright eval` command, on the example shipped in the repo."""
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        ["sqlwright", "eval", "examples/tiny_bird/predictions.jsonl", "--benchmark", "examples/tiny_bird",
         "--out", str(tmp_path / "run")], cwd=root, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "83.33" in proc.stdout  # 5 of 6 right; the sixth names a table that does not exist
    assert (tmp_path / "run" / "summary.json").is_file()


def test_only_predicted_scores_the_predicted_subset(bird_dir, tmp_path, capsys):
    preds = write_jsonl(tmp_path / "p.jsonl", [{"id": "0", "sql": "SELECT 1"}])
    assert main(["eval", str(preds), "--benchmark", str(bird_dir), "--out", str(tmp_path / "all"), "--no-progress"]) == 0
    everything = json.loads((tmp_path / "all" / "summary.json").read_text())
    assert main(["eval", str(preds), "--benchmark", str(bird_dir), "--only-predicted", "--out", str(tmp_path / "sub"), "--no-progress"]) == 0
    subset = json.loads((tmp_path / "sub" / "summary.json").read_text())
    assert everything["questions"] == 6 and everything["counts"]["missing"] == 5
    assert subset["questions"] == 1 and subset["counts"]["missing"] == 0
    assert "scoring the 1 of 6 questions" in capsys.readouterr().err


def wide_bench(root: Path) -> Path:
    """A BIRD-layout benchmark whose first question returns 12 columns of one value in 300 rows
    (every column permutation fits, so test-suite's search has 12^12 orders to try)."""
    cols = ", ".join(f"c{i} INTEGER" for i in range(12))
    rows = ", ".join(["(" + ", ".join(["7"] * 12) + ")"] * 300)
    make_db(root / "dev_databases" / "wide" / "wide.sqlite", f"CREATE TABLE wide ({cols}); INSERT INTO wide VALUES {rows};")
    items = [{"question_id": 0, "db_id": "wide", "question": "Everything.", "evidence": "", "SQL": "SELECT * FROM wide", "difficulty": "simple"},
             {"question_id": 1, "db_id": "wide", "question": "How many rows?", "evidence": "", "SQL": "SELECT count(*) FROM wide", "difficulty": "simple"}]  # fmt: skip
    (root / "dev.json").write_text(json.dumps(items))
    return root


def test_wide_results_do_not_hang_eval_and_are_recorded_as_not_computed(tmp_path):
    bench = wide_bench(tmp_path / "wide")
    # other SQL, equal values; one column as REAL, so the rows are not identical (identical
    # rows are equal under every comparator without a search) and test-suite must search
    reversed_cols = ", ".join([f"c{i}" for i in reversed(range(1, 12))] + ["CAST(c0 AS REAL)"])
    preds = write_jsonl(tmp_path / "p.jsonl", [{"id": 0, "sql": f"SELECT {reversed_cols} FROM wide"}, {"id": 1, "sql": "SELECT 300"}])
    t0 = time.monotonic()
    run = evaluate(EvalConfig(str(preds), benchmark=str(bench), comparator="bird", out=str(tmp_path / "bird"), progress=False, workers=0))
    assert time.monotonic() - t0 < 30
    wide, count = run.records
    assert wide["verdict"] == "correct" and wide["correct"] and count["verdict"] == "correct"
    assert wide["equal"] == {"bird": True, "multiset": True, "ordered": True, "test-suite": None}  # None: not computed
    assert count["equal"]["test-suite"] is True
    assert run.summary["ex"] == 100.0
    assert run.summary["not_computed_by_comparator"] == {"test-suite": 1}
    assert run.summary["ex_by_comparator"] == {"bird": 100.0, "multiset": 100.0, "ordered": 100.0, "test-suite": 50.0}
    written = json.loads((tmp_path / "bird" / "summary.json").read_text())
    assert written["not_computed_by_comparator"] == {"test-suite": 1}

    run = evaluate(EvalConfig(str(preds), benchmark=str(bench), comparator="test-suite", out=str(tmp_path / "ts"), progress=False, workers=0))
    wide, count = run.records
    assert wide["verdict"] == "wrong" and not wide["correct"]
    assert wide["reason"].startswith("not computed: test-suite: ") and "12 columns" in wide["reason"]
    assert count["verdict"] == "correct" and run.summary["ex"] == 50.0
    assert run.summary["counts"]["wrong"] == 1 and run.summary["not_computed_by_comparator"] == {"test-suite": 1}
