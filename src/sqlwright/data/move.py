"""``sqlwright db load``: copy SQLite benchmark databases into PostgreSQL, MySQL/MariaDB or
DuckDB, and (``--transpile-gold DIALECT``) rewrite the gold SQL with sqlglot and verify it by
execution on both engines.

Writes to ``--out``:

* ``load.json``: per database, tables, rows, seconds and the column types chosen (URLs masked);
* with ``--transpile-gold``: ``parity.jsonl``, one line per question (id, db_id, the SQLite
  gold, the transpiled gold, ``same`` and the reason when not), ``parity.json`` (how many
  golds give the same result on both engines, the rest counted by reason), and the questions
  file with each gold replaced by its transpiled form (``<split>_<dialect>.json``, same layout
  and order, so Spider's positional ids still pair), ready for
  ``sqlwright eval … --questions that.json --db-url URL``.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from sqlwright.config import opt, validate
from sqlwright.data.benchmark import load_benchmark, read_json
from sqlwright.db.copy import copy_sqlite
from sqlwright.db.registry import SQLGLOT_DIALECTS, check_targets, dialect_of
from sqlwright.db.urls import check_template, expand, mask_url
from sqlwright.errors import UserError, did_you_mean, first_line
from sqlwright.files import atomic_write_jsonl, atomic_write_text
from sqlwright.judge import COMPARATORS, Judge
from sqlwright.judge.compare import explain_mismatch
from sqlwright.judge.service import compare
from sqlwright.progress import progress_bar
from sqlwright.types import Limits

DIALECT_NAMES = {"postgres": "postgresql", "postgresql": "postgresql", "pg": "postgresql", "mysql": "mysql",
                 "mariadb": "mysql", "duckdb": "duckdb"}  # fmt: skip


@dataclass
class LoadConfig:
    source: str = opt(help="Benchmark folder (Spider or BIRD layout) or a folder of <db_id>/<db_id>.sqlite.", argument=True)
    url: str = opt(help="Where to copy: a URL template with {db_id}, e.g. 'postgresql://user@host:5432/{db_id}', "
                        "'mysql://user@host/{db_id}', 'duckdb:///data/{db_id}.duckdb'.")  # fmt: skip
    transpile_gold: str | None = opt(None, "Rewrite the gold SQL into this dialect (postgres, mysql, duckdb) and verify it by execution on both engines.")
    split: str = opt("dev", "Which questions' databases (and golds) to take from a benchmark folder.")
    questions: str | None = opt(None, "Questions file, instead of the split's.")
    databases: list[str] = opt(help="Only these db_ids (default: those the questions use; every one in a plain folder).", factory=list)
    replace: bool = opt(False, "Drop and copy again databases that are already there (default: leave them).")
    comparator: str = opt("bird", "How parity compares results: bird (set of rows), multiset, ordered, test-suite.", short="-c")
    timeout: float = opt(30.0, "Seconds per query when verifying golds.")
    workers: int | None = opt(None, "Worker processes for verifying (default: all cores).")
    out: str | None = opt(None, "Folder for load.json and the parity report (default runs/load-<timestamp>).", short="-o")
    progress: bool = opt(True, "Show progress bars.")

    def check(self) -> list[str]:
        problems = []
        if problem := check_template(self.url, "--url"):
            problems.append(problem)
        elif dialect_of(self.url) not in ("postgresql", "mysql", "duckdb"):
            problems.append(f"--url {mask_url(self.url)!r}: db load copies into postgresql://, mysql:// (mariadb://) or duckdb:// URLs")
        if self.transpile_gold is not None and self.transpile_gold.lower() not in DIALECT_NAMES:
            problems.append(f"--transpile-gold {self.transpile_gold!r}: unknown dialect{did_you_mean(self.transpile_gold, DIALECT_NAMES)}; "
                            f"choose one of: postgres, mysql, duckdb")  # fmt: skip
        if self.comparator not in COMPARATORS:
            problems.append(f"unknown comparator {self.comparator!r}; choose one of: {', '.join(COMPARATORS)}")
        if not self.timeout > 0:
            problems.append(f"--timeout must be positive, not {self.timeout}")
        return problems


@dataclass
class LoadResult:
    out: Path
    loaded: list[dict]
    parity: dict | None = None
    questions_file: Path | None = None
    records: list[dict] = field(default_factory=list)


def _sources(cfg: LoadConfig):
    """(benchmark or None, {db_id: sqlite path})."""
    root = Path(cfg.source)
    if not root.is_dir():
        raise UserError(f"{root}: folder not found (give a benchmark folder or a folder of <db_id>/<db_id>.sqlite)")
    bench = None
    try:
        bench = load_benchmark(root, cfg.split, cfg.questions)
    except UserError:
        if cfg.transpile_gold or cfg.questions:
            raise
    if bench is not None:
        used = list(dict.fromkeys(ex.db_id for ex in bench.examples))
        paths = {db: bench.db_path(db) for db in used}
    else:
        paths = {p.parent.name: p for p in sorted(root.glob("*/*.sqlite")) if p.stem == p.parent.name}
    if cfg.databases:
        unknown = [d for d in cfg.databases if d not in paths]
        if unknown:
            raise UserError(f"--databases: unknown db_id {unknown[0]!r}{did_you_mean(unknown[0], paths)}")
        paths = {d: paths[d] for d in cfg.databases}
    present = {d: p for d, p in paths.items() if Path(p).is_file()}
    if not present:
        raise UserError(f"{root}: no SQLite database found (expected <db_id>/<db_id>.sqlite)")
    return bench, present, sorted(set(paths) - set(present))


def run_load(cfg: LoadConfig) -> LoadResult:
    validate(cfg)
    bench, paths, absent = _sources(cfg)
    dialect = dialect_of(cfg.url)
    out = Path(cfg.out) if cfg.out else Path("runs") / datetime.now().strftime("load-%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    targets = {db: expand(cfg.url, db) for db in paths}
    loaded = []
    with progress_bar(len(paths), f"copying into {dialect}", cfg.progress, unit="databases") as advance:
        for db, path in paths.items():
            loaded.append(asdict(copy_sqlite(path, targets[db], db, replace=cfg.replace)))
            advance(1)
    atomic_write_text(out / "load.json", json.dumps({"url": mask_url(cfg.url), "dialect": dialect, "databases": loaded,
                                                     "absent": absent}, indent=2) + "\n")  # fmt: skip
    result = LoadResult(out, loaded)
    if cfg.transpile_gold:
        _parity(cfg, bench, paths, targets, result)
    return result


def transpile(sql: str, dialect: str, columns: set[str] | None = None) -> tuple[str | None, str]:
    """(the gold in ``dialect``, "") or (None, why sqlglot could not).

    SQLite reads a double-quoted word that names no column as a string (``WHERE country =
    "France"``, common in Spider's golds); other engines read it as a column. With the
    database's ``columns`` (lower case), such words become string literals first."""
    import sqlglot
    from sqlglot import exp

    try:
        trees = sqlglot.parse(sql, read="sqlite")
        if len(trees) != 1 or trees[0] is None:
            return None, f"sqlglot: {len(trees)} statements"
        tree = trees[0]
        if columns is not None:
            for col in list(tree.find_all(exp.Column)):
                ident = col.this
                if isinstance(ident, exp.Identifier) and ident.quoted and not col.table and ident.name.lower() not in columns:
                    col.replace(exp.Literal.string(ident.name))
        return tree.sql(dialect=SQLGLOT_DIALECTS[dialect], unsupported_level=sqlglot.ErrorLevel.RAISE), ""
    except (sqlglot.errors.SqlglotError, ValueError, RecursionError) as e:
        return None, f"sqlglot: {first_line(e)}"


def sqlite_columns(path) -> set[str]:
    """Every column name of a SQLite database, lower case."""
    import sqlite3

    from sqlwright.db.sqlite import readonly_uri

    conn = sqlite3.connect(readonly_uri(path), uri=True)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {r[1].lower() for t in tables for r in conn.execute("SELECT * FROM pragma_table_info(?)", (t,))}
    finally:
        conn.close()


def _parity(cfg: LoadConfig, bench, paths: dict, targets: dict, result: LoadResult) -> None:
    want = DIALECT_NAMES[cfg.transpile_gold.lower()]
    dialect = dialect_of(cfg.url)
    if want != dialect:
        raise UserError(f"--transpile-gold {cfg.transpile_gold} does not match --url {mask_url(cfg.url)} ({dialect})")
    examples = [ex for ex in bench.examples if ex.db_id in paths]
    check_targets(set(targets.values()))
    columns = {db: sqlite_columns(p) for db, p in paths.items()}
    rewritten = [transpile(ex.sql, dialect, columns[ex.db_id]) for ex in examples]
    src_tasks = [(str(paths[ex.db_id]), ex.sql) for ex in examples]
    dst_tasks = [(targets[ex.db_id], sql) for ex, (sql, _) in zip(examples, rewritten, strict=True) if sql]
    with (Judge(cfg.comparator, Limits(timeout=cfg.timeout), cfg.workers) as judge,
          progress_bar(len(src_tasks) + len(dst_tasks), "verifying golds", cfg.progress, unit="queries") as advance):
        src = judge.execute(src_tasks + dst_tasks, progress=advance)
    dst = iter(src[len(src_tasks):])
    records = []
    for ex, (sql, why), s in zip(examples, rewritten, src[: len(src_tasks)], strict=True):
        d = next(dst) if sql else None
        rec = {"id": ex.id, "db_id": ex.db_id, "gold": ex.sql, "transpiled": sql, "same": False}
        if not s.ok:
            rec.update(kind="source_error", reason=f"the SQLite gold fails ({s.status.value}): {s.error}")
        elif sql is None:
            rec.update(kind="transpile_error", reason=why)
        elif not d.ok:
            rec.update(kind=f"target_{d.status.value}", reason=f"{dialect} {d.status.value}: {d.error}")
        else:
            same, not_computed = compare(cfg.comparator, s.rows, d.rows, ex.sql)
            rec["same"] = bool(same)
            if not same:
                rec.update(kind="different_result", reason=not_computed or explain_mismatch(s.rows, d.rows))
        records.append(rec)
    kinds = Counter(r.get("kind") for r in records if not r["same"])
    same = sum(r["same"] for r in records)
    parity = {"dialect": dialect, "url": mask_url(cfg.url), "comparator": cfg.comparator, "questions": len(records),
              "same": same, "parity": round(100 * same / len(records), 2) if records else None,
              "not_same": dict(kinds.most_common()), "databases": len(paths)}  # fmt: skip
    atomic_write_jsonl(result.out / "parity.jsonl", records)
    atomic_write_text(result.out / "parity.json", json.dumps(parity, indent=2) + "\n")
    # the questions, golds rewritten (original order: Spider ids are positions)
    items = read_json(bench.questions_file)
    key = "SQL" if bench.layout == "bird" else "query"
    by_pos = {ex.id: r for ex, r in zip(examples, records, strict=True)}
    for i, item in enumerate(items):
        ex_id = str(item.get("question_id", i)) if bench.layout == "bird" else str(i)
        r = by_pos.get(ex_id)
        if r is not None and r["transpiled"]:
            item["sqlite_" + key] = item[key]
            item[key] = r["transpiled"]
    qfile = result.out / f"{bench.questions_file.stem}_{dialect}.json"
    atomic_write_text(qfile, json.dumps(items, indent=1) + "\n")
    tables = bench.questions_file.parent / "tables.json"
    if bench.layout == "spider" and tables.is_file():
        shutil.copyfile(tables, result.out / "tables.json")
    result.parity, result.questions_file, result.records = parity, qfile, records
