"""``sqlwright quickstart``: the Spider slice it ships, the recipe it trains with, the folder
checks, and (slow) the whole run end to end with the real smollm2-135m model on CPU."""

from __future__ import annotations

import json
from fnmatch import fnmatch
from pathlib import Path

import pytest

from sqlwright.cli import main
from sqlwright.config import parse_config, to_dict
from sqlwright.data.sources import SourceConfig, load_source
from sqlwright.quickstart import (
    DATASET,
    DEV_QUESTIONS,
    RECIPE,
    SLICE,
    TRAIN_QUESTIONS,
    recipe_config,
)
from sqlwright.quickstart.run import packed_rows
from sqlwright.train.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
RECIPE_FILE = ROOT / "configs" / "sft" / "smollm2-135m-cpu-lora.yaml"
TRAIN_DBS = set([
    "soccer_2", "movie_1", "network_2", "manufactory_1", "student_1", "assets_maintenance", "city_record", "college_3",
    "csu_1", "customers_and_invoices", "customers_and_products_contacts", "debate", "department_management", "e_learning",
    "entrepreneur", "farm", "flight_1", "icfp_1", "inn_1", "insurance_fnol", "insurance_policies", "local_govt_and_lot",
    "medicine_enzyme_interaction", "musical", "riding_club", "roller_coaster", "school_player", "solvency_ii",
    "sports_competition", "station_weather", "theme_gallery"])  # fmt: skip
DEV_DBS = {"singer", "course_teach", "poker_player"}


# -- the recipe ---------------------------------------------------------------------------------
def test_training_settings_equal_the_cpu_recipe():
    from_yaml, problems = parse_config(TrainConfig, RECIPE_FILE)
    assert problems == []
    ours = to_dict(recipe_config("OUT/data", "OUT/model"))
    theirs = to_dict(from_yaml)
    for key in ("data", "output_dir", "max_examples", "max_minutes"):  # the quickstart sets these
        ours.pop(key), theirs.pop(key)
    assert ours == theirs
    assert ours["model"] == RECIPE["model"] == "smollm2-135m"


def test_dataset_settings_equal_the_cpu_recipe():
    dataset_line = next(line for line in RECIPE_FILE.read_text().splitlines() if line.startswith("# Dataset:"))
    assert f"data build {DATASET['source']} " in dataset_line
    assert f"--format {DATASET['format']}" in dataset_line and f"--serializer {DATASET['serializer']}" in dataset_line
    assert all(f"--split {s}" in dataset_line for s in DATASET["splits"])


# -- the slice ----------------------------------------------------------------------------------
def test_slice_loads_with_the_spider_source():
    data = load_source("spider", SourceConfig(path=str(SLICE), splits=["train", "dev"]))
    train, dev = data.splits["train"], data.splits["dev"]
    assert (len(train), len(dev)) == (TRAIN_QUESTIONS, DEV_QUESTIONS) == (465, 100)
    assert all(sum(ex.db_id == db for ex in train) == 15 for db in TRAIN_DBS)  # 15 questions on each of 31 databases
    assert {ex.db_id for ex in train} == TRAIN_DBS and {ex.db_id for ex in dev} == DEV_DBS
    assert set(data.schemas) == TRAIN_DBS | DEV_DBS
    assert all(Path(ex.db_path).is_file() for ex in train + dev)
    assert all(data.schemas[db].tables for db in data.schemas)
    tables = json.loads((SLICE / "tables.json").read_text())
    assert {t["db_id"] for t in tables} == TRAIN_DBS | DEV_DBS


def test_slice_keeps_spider_questions_in_order_with_their_fields(spider_data):
    dev = [q for q in json.loads((spider_data / "dev.json").read_text()) if q["db_id"] in DEV_DBS]
    assert json.loads((SLICE / "dev.json").read_text()) == dev
    train = json.loads((spider_data / "train_spider.json").read_text())
    kept = json.loads((SLICE / "train_spider.json").read_text())
    positions = [train.index(q) for q in kept]  # each one of Spider's, unchanged, in Spider's order
    assert positions == sorted(positions) and len(set(positions)) == len(kept)
    for db in TRAIN_DBS | DEV_DBS:
        assert (SLICE / "database" / db / f"{db}.sqlite").read_bytes() == (spider_data / "database" / db / f"{db}.sqlite").read_bytes()


def test_attribution_and_every_slice_file_ship_in_the_package():
    text = (SLICE / "ATTRIBUTION.md").read_text()
    for needed in ("Spider", "Yu", "2018", "https://yale-lily.github.io/spider", "CC BY-SA 4.0",
                   "soccer_2", "poker_player", "465", "100"):  # fmt: skip
        assert needed in text
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["sqlwright.quickstart"]
    package = SLICE.parent
    files = [p.relative_to(package).as_posix() for p in SLICE.rglob("*") if p.is_file()]
    assert "spider_mini/ATTRIBUTION.md" in files and len(files) == 4 + len(TRAIN_DBS | DEV_DBS)
    unshipped = [f for f in files if not any(fnmatch(f, g) for g in globs)]
    assert unshipped == []


def test_packed_rows_is_best_fit_decreasing():
    assert packed_rows([300, 300, 200, 200], 512) == 2
    assert packed_rows([500, 12, 400, 100, 10], 512) == 2
    assert packed_rows([512] * 3, 512) == 3


# -- user mistakes: one line, exit code 2 -------------------------------------------------------
def test_refuses_a_folder_that_holds_something_else(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["quickstart", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "not a quickstart folder" in err and "\n" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_refuses_to_resume_with_other_options(tmp_path, capsys):
    out = tmp_path / "qs"
    out.mkdir()
    identity = {"questions": 8, "train_examples": 24, "max_new_tokens": 48}
    (out / "quickstart.json").write_text(json.dumps({"identity": identity}))
    assert main(["quickstart", "--out", str(out), "--questions", "10", "--train-examples", "24", "--max-new-tokens", "48"]) == 2
    err = capsys.readouterr().err
    assert "--questions 8 --train-examples 24 --max-new-tokens 48" in err and "another --out" in err


def test_bad_options_are_reported_together(tmp_path, capsys):
    assert main(["quickstart", "--out", str(tmp_path / "x"), "--minutes", "0", "--questions", "101"]) == 2
    err = capsys.readouterr().err
    assert "--minutes must be positive" in err and "--questions must be between 1 and 100" in err
    assert not (tmp_path / "x").exists()


# -- end to end ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_quickstart_end_to_end_on_cpu(tmp_path, capsys, smollm2):
    out = tmp_path / "qs"
    args = ["quickstart", "--out", str(out), "--minutes", "3", "--questions", "8", "--train-examples", "24",
            "--max-new-tokens", "48", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    summaries = {}
    for stage in ("baseline", "finetuned"):
        assert len((out / stage / "predictions.jsonl").read_text().splitlines()) == 8
        summaries[stage] = json.loads((out / stage / "eval" / "summary.json").read_text())
        assert summaries[stage]["questions"] == summaries[stage]["scored"] == 8
    for stage in ("baseline", "finetuned"):  # --guided schema (the default): a constrained run beside greedy
        guided = json.loads((out / stage / "guided-schema" / "eval" / "summary.json").read_text())
        assert guided["scored"] == 8 and guided["guided"]["constrained"] == 8
    assert "Greedy and execution-guided (schema)" in printed
    training = json.loads((out / "model" / "train_summary.json").read_text())
    assert training["global_step"] >= 1 and (out / "model" / "adapter_config.json").is_file()
    assert training["stopped_by_time_budget"] is True  # trained by time: the budget, not an epoch count, ended it
    report = (out / "report.html").read_text()
    assert "baseline" in report and "finetuned" in report and "loss" in report.lower()
    assert "Before and after fine-tuning" in printed and str((out / "report.html").resolve()) in printed
    # a rerun finds every stage finished and redoes none of them; only the report is written again
    finished = [out / "data" / "stats.json", out / "baseline" / "predictions.jsonl", out / "baseline" / "eval" / "summary.json",
                out / "baseline" / "guided-schema" / "eval" / "summary.json",
                out / "model" / "train_summary.json", out / "finetuned" / "predictions.jsonl",
                out / "finetuned" / "eval" / "summary.json"]  # fmt: skip
    stamps = [p.stat().st_mtime_ns for p in finished]
    every = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.rglob("*") if p.is_file() and not p.name.startswith("report.")}
    assert out / "quickstart.json" in every and out / "config.yaml" in every
    assert main(args) == 0
    assert "reused" in capsys.readouterr().out
    assert [p.stat().st_mtime_ns for p in finished] == stamps
    # nothing but the report (report.html, report.config.yaml) changes: not quickstart.json, not config.yaml, no file added
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.rglob("*") if p.is_file() and not p.name.startswith("report.")}
    assert after == every
