"""Sources: one small loader each, all producing ``Example`` records and one ``Schema`` per
database (read once, however many questions use it). Looked up by name in ``SOURCES``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

from sqlwright.config import opt
from sqlwright.data.benchmark import Benchmark, load_benchmark
from sqlwright.errors import UserError, did_you_mean
from sqlwright.types import Example, Schema


@dataclass
class SourceConfig:
    path: str | None = opt(None, "Benchmark folder, dataset file or hub id, or folder of SQLite files.", argument=True)
    splits: list[str] = opt(help="Source split(s) to build (repeat): train, dev.", flag="--split", factory=lambda: ["train"])
    questions: str | None = opt(None, "Questions file (bird-questions: JSON; sqlite: JSONL or CSV).")
    db_root: str | None = opt(None, "Database folder, when not in the benchmark's layout.")
    schemas: str | None = opt(None, "bird-questions: JSON {db_id: CREATE TABLE text}.")
    url: str | None = opt(None, "sqlite: a SQLAlchemy URL instead of a folder.")
    db_url: str | None = opt(None, "The databases on a server or in DuckDB files instead of SQLite files: a URL template "
                                   "with {db_id}, e.g. 'postgresql://user@host:5432/{db_id}'; the schema is read from the engine.")
    # where sources that build databases put them (data build: the dataset folder)
    work_dir: str | None = opt(None, cli=False)
    examples: int = opt(0, cli=False)  # example values per column to read (data build: the prompt's)
    rows: int = opt(0, cli=False)  # example rows per table to read (data build: the prompt's)


@dataclass
class SourceData:
    splits: dict[str, list[Example]]
    schemas: dict[str, Schema]  # by db_id


SOURCES: dict[str, str] = {
    "spider": "sqlwright.data.sources.spider:load",
    "bird": "sqlwright.data.sources.bird:load",
    "bird-questions": "sqlwright.data.sources.bird_questions:load",
    "sql-create-context": "sqlwright.data.sources.sql_create_context:load",
    "sqlite": "sqlwright.data.sources.sqlite:load",
}


def benchmark_splits(cfg: SourceConfig, layout: str) -> Iterator[tuple[str, Benchmark]]:
    """Each requested split of a benchmark folder, checked to be in ``layout``. With ``db_url``
    each example's ``db_path`` is its database's URL (and the server is checked first)."""
    db_root = cfg.db_root
    if cfg.db_url:
        check_db_url(cfg.db_url)
        if not cfg.path and not db_root and cfg.questions:  # no SQLite folder needed
            db_root = str(Path(cfg.questions).parent)
    for split in cfg.splits:
        bench = load_benchmark(cfg.path, split, cfg.questions, db_root)
        if cfg.db_url:
            from sqlwright.db.urls import expand

            for ex in bench.examples:
                ex.db_path = expand(cfg.db_url, ex.db_id)
        if bench.layout != layout:
            raise UserError(f"{cfg.path}: a {bench.layout.upper()} benchmark, not {layout.upper()}; use the {bench.layout!r} source")
        yield split, bench


def check_db_url(template: str, option: str = "--db-url") -> None:
    """Refuse, in one line, a template without ``{db_id}``, a scheme without an executor, an
    unreachable server or a refused login (probed on the template's first database)."""
    from sqlwright.db.registry import check_targets
    from sqlwright.db.urls import check_template

    if problem := check_template(template, option):
        raise UserError(problem)
    check_targets({template}, probe=False)


def url_schema(target: str, db_id: str, cfg: SourceConfig, fallback: Schema | None = None) -> Schema:
    """The schema of a database URL, read from the engine (``fallback`` when the server has no
    such database, e.g. Spider's tables.json entry)."""
    from sqlwright.db.introspect import DatabaseMissing, introspect_url

    try:
        return introspect_url(target, db_id, examples=cfg.examples, rows=cfg.rows)
    except DatabaseMissing:
        if fallback is None:
            raise
        return fallback


def get_source(name: str) -> Callable[[SourceConfig], SourceData]:
    if name not in SOURCES:
        raise UserError(f"unknown source {name!r}{did_you_mean(name, SOURCES)}; choose one of: {', '.join(SOURCES)}")
    module, fn = SOURCES[name].split(":")
    return getattr(import_module(module), fn)


def load_source(name: str, cfg: SourceConfig) -> SourceData:
    return get_source(name)(cfg)
