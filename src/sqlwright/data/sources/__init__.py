"""Sources: one small loader each, all producing ``Example`` records and one ``Schema`` per
database (read once, however many questions use it). Looked up by name in ``SOURCES``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import import_module

from sqlwright.data.benchmark import Benchmark, load_benchmark
from sqlwright.errors import UserError, did_you_mean
from sqlwright.types import Example, Schema


@dataclass
class SourceConfig:
    path: str | None = None  # benchmark folder, questions/dataset file, or folder of databases
    splits: list[str] = field(default_factory=lambda: ["train"])
    questions: str | None = None  # explicit questions file
    db_root: str | None = None  # explicit database folder
    schemas: str | None = None  # bird-questions: JSON {db_id: "CREATE TABLE ..."}
    url: str | None = None  # sqlite: a SQLAlchemy URL instead of a folder
    work_dir: str | None = None  # where sources that build databases put them
    examples: int = 0  # example values per column to read
    rows: int = 0  # example rows per table to read


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
    """Each requested split of a benchmark folder, checked to be in ``layout``."""
    for split in cfg.splits:
        bench = load_benchmark(cfg.path, split, cfg.questions, cfg.db_root)
        if bench.layout != layout:
            raise UserError(f"{cfg.path}: a {bench.layout.upper()} benchmark, not {layout.upper()}; use the {bench.layout!r} source")
        yield split, bench


def get_source(name: str) -> Callable[[SourceConfig], SourceData]:
    if name not in SOURCES:
        raise UserError(f"unknown source {name!r}{did_you_mean(name, SOURCES)}; choose one of: {', '.join(SOURCES)}")
    module, fn = SOURCES[name].split(":")
    return getattr(import_module(module), fn)


def load_source(name: str, cfg: SourceConfig) -> SourceData:
    return get_source(name)(cfg)
