"""Your own databases: a folder of SQLite files (``<db>.sqlite``/``.db``/``.sqlite3``, or
``<db>/<db>.sqlite``) or one SQLAlchemy URL, plus a questions file (JSONL or CSV with
``question``, ``sql`` and ``db_id``; ``evidence`` optional; ``db_id`` optional when there is
one database)."""

from __future__ import annotations

import csv
import io
import sqlite3
from pathlib import Path

from sqlwright.data.sources import SourceConfig, SourceData, check_db_url, url_schema
from sqlwright.db.introspect import introspect_sqlite, introspect_url
from sqlwright.errors import UserError, did_you_mean
from sqlwright.files import iter_jsonl
from sqlwright.types import Example

REQUIRED = ("question", "sql")
SUFFIXES = (".sqlite", ".db", ".sqlite3")


class _Template(dict):
    """db_id -> its URL under a ``{db_id}`` template (every db_id has one)."""

    def __init__(self, template: str) -> None:
        super().__init__()
        self.template = template

    def __contains__(self, db: object) -> bool:
        return bool(db)

    def __missing__(self, db: str) -> str:
        from sqlwright.db.urls import expand

        return expand(self.template, db)


def find_databases(folder: Path) -> dict[str, Path]:
    if folder.is_file():
        return {folder.stem: folder}
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder of SQLite databases")
    found = {p.stem: p for p in sorted(folder.iterdir()) if p.suffix in SUFFIXES and p.is_file()}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        for suffix in SUFFIXES:
            if (sub / f"{sub.name}{suffix}").is_file():
                found.setdefault(sub.name, sub / f"{sub.name}{suffix}")
    if not found:
        raise UserError(f"{folder}: no SQLite databases found (looked for *.sqlite, *.db, *.sqlite3 and <db>/<db>.sqlite)")
    return found


def read_questions(path: Path) -> list[tuple[int, dict]]:
    """(row number, row) pairs; row numbers count lines of the file (CSV header = 1)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: questions file not found") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x}); save the file as UTF-8") from None
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        missing = [k for k in REQUIRED if k not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path}: missing column {', '.join(map(repr, missing))} (has: {', '.join(reader.fieldnames or [])}); needs question, sql and db_id")
        return [(n, row) for n, row in enumerate(reader, 2)]
    return list(iter_jsonl(path, text=text, hint="one object per line with question, sql, db_id"))


def load(cfg: SourceConfig) -> SourceData:
    if not cfg.questions:
        raise UserError("the sqlite source needs --questions FILE (JSONL or CSV with question, sql, db_id)")
    qpath = Path(cfg.questions)
    if cfg.db_url:  # a URL template: any db_id the questions name
        check_db_url(cfg.db_url)
        schemas, targets = {}, _Template(cfg.db_url)
    elif cfg.url:
        schema = introspect_url(cfg.url, examples=cfg.examples, rows=cfg.rows)
        schemas, targets = {schema.db_id: schema}, {schema.db_id: cfg.url}
    else:
        targets = {db: str(p) for db, p in find_databases(Path(cfg.path or ".")).items()}
        schemas = {}
    examples = []
    for n, row in read_questions(qpath):
        if not isinstance(row, dict):
            raise UserError(f"{qpath}:{n}: expected an object with question, sql, db_id")
        for key in REQUIRED:
            if not str(row.get(key) or "").strip():
                raise UserError(f"{qpath}:{n}: empty or missing {key!r}")
        db = str(row.get("db_id") or "").strip() or (next(iter(targets)) if len(targets) == 1 else "")
        if db not in targets:
            if cfg.db_url:
                raise UserError(f"{qpath}:{n}: no db_id (with --db-url each question names its database)")
            what = f"unknown db_id {db!r}{did_you_mean(db, targets)}" if db else "no db_id, and there are several databases"
            raise UserError(f"{qpath}:{n}: {what} (databases: {', '.join(targets)})")
        if db not in schemas and cfg.db_url:
            schemas[db] = url_schema(targets[db], db, cfg)
        elif db not in schemas:
            try:
                schemas[db] = introspect_sqlite(targets[db], db, examples=cfg.examples, rows=cfg.rows)
            except sqlite3.DatabaseError as e:
                raise UserError(f"{targets[db]}: not a readable SQLite database ({e})") from None
        examples.append(Example(
            id=str(row.get("id", n)), db_id=db, question=str(row["question"]).strip(), sql=str(row["sql"]).strip(),
            evidence=str(row.get("evidence") or ""), db_path=targets[db],
        ))  # fmt: skip
    if not examples:
        raise UserError(f"{qpath}: no questions in the file")
    return SourceData({cfg.splits[0]: examples}, schemas)
