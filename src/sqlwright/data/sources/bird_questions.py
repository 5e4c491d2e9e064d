"""BIRD questions whose databases are not at hand: schemas given as CREATE TABLE text
(``{db_id: "CREATE TABLE ..."}``, e.g. ``bird_train_schemas.json``). Empty SQLite databases
are built from them, so prompts have a schema and SQL can at least be compiled."""

from __future__ import annotations

import re
import sqlite3
import tempfile
from pathlib import Path

from sqlwright.data.benchmark import read_json
from sqlwright.data.sources import SourceConfig, SourceData
from sqlwright.db.introspect import introspect_sqlite
from sqlwright.errors import UserError, did_you_mean
from sqlwright.types import Example


def split_statements(script: str) -> list[str]:
    """Split a SQL script into complete statements (semicolons inside literals kept)."""
    out, buf = [], ""
    for part in script.split(";"):
        buf += part + ";"
        if sqlite3.complete_statement(buf):
            if buf.strip(" \n\t;"):
                out.append(buf.strip())
            buf = ""
    if buf.strip(" \n\t;"):
        out.append(buf.strip().rstrip(";"))
    return out


_INTERNAL = re.compile(r"^\s*CREATE\s+TABLE\s+[\"`\[]?sqlite_", re.I)


def build_database(path: Path, ddl: str) -> None:
    """An empty SQLite database with the given tables (rebuilt when the DDL changes)."""
    stamp = path.with_suffix(".ddl")
    if path.is_file() and stamp.is_file() and stamp.read_text() == ddl:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    try:  # sqlite_sequence & co are SQLite's own: they come with AUTOINCREMENT
        conn.executescript(";\n".join(st for st in split_statements(ddl) if not _INTERNAL.match(st)))
    finally:
        conn.close()
    stamp.write_text(ddl)


def load(cfg: SourceConfig) -> SourceData:
    qfile = Path(cfg.questions or cfg.path or "")
    if not cfg.schemas:
        raise UserError("the bird-questions source needs --schemas FILE (JSON {db_id: \"CREATE TABLE ...\"})")
    items, ddls = read_json(qfile), read_json(Path(cfg.schemas))
    if not isinstance(items, list) or not isinstance(ddls, dict):
        raise UserError(f"{qfile}: expected a JSON list of questions and {cfg.schemas}: a JSON object {{db_id: DDL}}")
    work = Path(cfg.work_dir or tempfile.mkdtemp(prefix="sqlwright-bird-")) / "databases"
    examples, schemas = [], {}
    for i, item in enumerate(items):
        missing = [k for k in ("db_id", "question", "SQL") if k not in item]
        if missing:
            raise UserError(f"{qfile}: item {i} lacks {', '.join(missing)}")
        db = item["db_id"]
        if db not in ddls:
            raise UserError(f"{qfile}: item {i}: unknown db_id {db!r}{did_you_mean(db, ddls)}; {cfg.schemas} has no schema for it")
        if db not in schemas:
            path = work / db / f"{db}.sqlite"
            try:
                build_database(path, ddls[db])
            except sqlite3.Error as e:
                raise UserError(f"{cfg.schemas}: the schema of {db!r} does not run in SQLite ({e})") from None
            schemas[db] = introspect_sqlite(path, db)
        examples.append(Example(
            id=str(item.get("question_id", i)), db_id=db, question=item["question"], sql=item["SQL"],
            evidence=item.get("evidence") or "", difficulty=item.get("difficulty"),
            db_path=str(work / db / f"{db}.sqlite"),
        ))  # fmt: skip
    return SourceData({cfg.splits[0]: examples}, schemas)
