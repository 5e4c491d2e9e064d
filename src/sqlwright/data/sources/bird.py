"""BIRD: ``train`` / ``dev`` with evidence, difficulty and the column descriptions of
``<db>/database_description/<table>.csv``."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from sqlwright.data.sources import SourceConfig, SourceData, benchmark_splits, url_schema
from sqlwright.db.introspect import introspect_sqlite
from sqlwright.errors import UserError
from sqlwright.types import Schema


def load(cfg: SourceConfig) -> SourceData:
    splits, schemas = {}, {}
    for split, bench in benchmark_splits(cfg, "bird"):
        splits[split] = bench.examples
        for ex in bench.examples:
            if ex.db_id not in schemas:
                path = bench.db_path(ex.db_id)
                if cfg.db_url:  # on a server or in DuckDB: the engine's schema, BIRD's descriptions when at hand
                    schemas[ex.db_id] = add_descriptions(url_schema(ex.db_path, ex.db_id, cfg), path.parent / "database_description")
                    continue
                if not path.is_file():
                    raise UserError(f"{path}: database missing for db_id {ex.db_id!r}; for BIRD questions without databases use the 'bird-questions' source")
                schemas[ex.db_id] = add_descriptions(
                    introspect_sqlite(path, ex.db_id, examples=cfg.examples, rows=cfg.rows),
                    path.parent / "database_description",
                )
    return SourceData(splits, schemas)


def read_text_any(path: Path) -> str:
    """BIRD's description files come in UTF-8 (with or without BOM) and in cp1252."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def add_descriptions(schema: Schema, folder: Path) -> Schema:
    """Fill ``Column.description`` from ``<table>.csv`` (column_description, plus
    value_description when given)."""
    if not folder.is_dir():
        return schema
    for table in schema.user_tables:
        csv_path = folder / f"{table.name}.csv"
        if not csv_path.is_file():
            continue
        for row in csv.DictReader(io.StringIO(read_text_any(csv_path))):
            row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
            col = table.column(row.get("original_column_name", ""))
            if col is None:
                continue
            text = " ".join(row.get("column_description", "").split())
            values = " ".join(row.get("value_description", "").split())
            col.description = f"{text}; {values}" if text and values else text or values
    return schema
