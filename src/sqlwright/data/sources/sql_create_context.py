"""sql-create-context (b-mc2/sql-create-context): question, CREATE TABLE context, answer.

From the hub through ``datasets`` (``--path b-mc2/sql-create-context``, the default), or a
local JSON / JSONL / Parquet copy. Each distinct context becomes a schema: its tables are
created in an in-memory SQLite database to read columns, and the ``ddl`` serializer gives
the context text verbatim."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

from sqlwright.data.sources import SourceConfig, SourceData
from sqlwright.db.introspect import introspect_connection
from sqlwright.errors import UserError
from sqlwright.files import read_jsonl
from sqlwright.types import Example, Schema, Table

HUB_ID = "b-mc2/sql-create-context"
FIELDS = ("question", "context", "answer")


def _rows(path: str) -> list[dict]:
    p = Path(path)
    if p.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(p).to_pylist()
    if p.suffix in (".json", ".jsonl"):
        text = p.read_text(encoding="utf-8")
        if text.lstrip().startswith("["):
            return json.loads(text)
        return read_jsonl(p, text=text)
    raise UserError(f"{p}: expected a .json, .jsonl or .parquet file (or the hub id {HUB_ID})")


def _hub(name: str, split: str) -> list[dict]:
    try:
        from datasets import load_dataset
    except ImportError:
        raise UserError("loading from the hub needs datasets: pip install 'sqlwright[data]'") from None
    try:
        return load_dataset(name, split=split).to_list()
    except Exception as e:  # offline, unknown id...
        raise UserError(f"cannot load {name!r} from the hub ({str(e).splitlines()[0]}); pass a local copy with --path FILE") from None


def schema_from_context(db_id: str, context: str) -> Schema:
    conn = sqlite3.connect(":memory:")
    try:
        for stmt in context.split(";"):
            if stmt.strip():
                conn.execute(stmt)
        schema = introspect_connection(conn, db_id)
    except sqlite3.Error:  # not valid SQLite: keep the text, no columns
        schema = Schema(db_id, [Table("context", [])])
    finally:
        conn.close()
    schema.ddl_text = context.strip()
    return schema


def load(cfg: SourceConfig) -> SourceData:
    path = cfg.path or HUB_ID
    rows = _rows(path) if Path(path).exists() else _hub(path, cfg.splits[0])
    examples, schemas = [], {}
    for i, row in enumerate(rows):
        missing = [k for k in FIELDS if not isinstance(row.get(k), str)]
        if missing:
            raise UserError(f"{path}: row {i + 1} lacks {', '.join(missing)} (sql-create-context rows have question, context, answer)")
        db_id = "ctx_" + hashlib.sha1(row["context"].encode()).hexdigest()[:12]
        if db_id not in schemas:
            schemas[db_id] = schema_from_context(db_id, row["context"])
        examples.append(Example(id=str(row.get("id", i)), db_id=db_id, question=row["question"], sql=row["answer"], context=row["context"]))
    return SourceData({cfg.splits[0]: examples}, schemas)
