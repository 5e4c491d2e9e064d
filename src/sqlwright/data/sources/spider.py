"""Spider: ``train`` (train_spider.json) and ``dev``; keys from ``tables.json``."""

from __future__ import annotations

from sqlwright.data.sources import SourceConfig, SourceData, benchmark_splits, url_schema
from sqlwright.db.introspect import apply_spider_keys, introspect_sqlite, schema_from_spider_entry
from sqlwright.errors import UserError


def load(cfg: SourceConfig) -> SourceData:
    splits, schemas = {}, {}
    for split, bench in benchmark_splits(cfg, "spider"):
        splits[split] = bench.examples
        for ex in bench.examples:
            if ex.db_id in schemas:
                continue
            path, entry = bench.db_path(ex.db_id), bench.tables.get(ex.db_id)
            if cfg.db_url:  # on a server or in DuckDB: the engine's schema, Spider's keys
                schema = url_schema(ex.db_path, ex.db_id, cfg, schema_from_spider_entry(entry) if entry else None)
                schemas[ex.db_id] = apply_spider_keys(schema, entry) if entry else schema
            elif path.is_file():
                schema = introspect_sqlite(path, ex.db_id, examples=cfg.examples, rows=cfg.rows)
                schemas[ex.db_id] = apply_spider_keys(schema, entry) if entry else schema
            elif entry:  # database file absent: the schema still comes from tables.json
                schemas[ex.db_id] = schema_from_spider_entry(entry)
            else:
                raise UserError(f"{bench.questions_file}: db_id {ex.db_id!r} has neither a database under {bench.db_root} nor an entry in tables.json")
    return SourceData(splits, schemas)
