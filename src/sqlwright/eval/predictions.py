"""Read predictions in the formats users bring, and pair them with questions by id.

``jsonl``   sqlwright's own: one object per line, ``{"id": ..., "sql": ...}``; extra fields
            are kept (``db_id``, when present, is checked). A JSON list of such objects works too.
``bird``    BIRD's ``predict_dev.json``: ``{"<question_id>": "SQL\\t----- bird -----\\t<db_id>"}``.
``spider``  Spider's text file: one query per line (optionally ``SQL\\t<db_id>``), line *i*
            answering question *i* of the questions file, as Spider's evaluator reads it.

Pairing is by id, never by position, except where the format itself is positional
(Spider's text) or the user says so (``key="index"``: BIRD mini-dev scripts key
``predict_*.json`` by position rather than ``question_id``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlwright.data.benchmark import Benchmark
from sqlwright.errors import UserError, did_you_mean
from sqlwright.files import iter_jsonl

BIRD_SEP = "\t----- bird -----\t"


@dataclass
class Prediction:
    key: str  # question id, or position when the format is positional
    sql: str
    db_id: str | None = None
    where: str = ""  # "file:line" for messages
    extra: dict = field(default_factory=dict)


def _read_text(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: predictions file not found") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if not text.strip():
        raise UserError(f"{path}: predictions file is empty; expected predictions (JSONL lines like {{\"id\": ..., \"sql\": ...}})")
    return text


def read_jsonl(path: Path, text: str) -> list[Prediction]:
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
        rows = [(i + 1, item) for i, item in enumerate(items)]
        unit = "item"
    else:
        hint = 'each line must be an object like {"id": ..., "sql": ...}'
        rows = list(iter_jsonl(path, text=text, hint=hint))
        unit = "line"
    preds = []
    for n, obj in rows:
        if not isinstance(obj, dict) or "id" not in obj or "sql" not in obj:
            raise UserError(f"{path}:{n}: {unit} needs an object with 'id' and 'sql' keys")
        sql = obj["sql"]
        if sql is not None and not isinstance(sql, str):
            raise UserError(f"{path}:{n}: 'sql' must be a string, got {type(sql).__name__}")
        extra = {k: v for k, v in obj.items() if k not in ("id", "sql", "db_id")}
        preds.append(Prediction(str(obj["id"]), sql or "", obj.get("db_id"), f"{path}:{n}", extra))
    return preds


def read_bird(path: Path, text: str) -> list[Prediction]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(obj, dict):
        raise UserError(f"{path}: a BIRD predictions file is a JSON object {{\"<question_id>\": \"SQL\\t----- bird -----\\t<db_id>\"}}")
    preds = []
    for key, value in obj.items():
        if not isinstance(value, str):
            raise UserError(f"{path}: key {key!r}: value must be a string \"SQL\\t----- bird -----\\t<db_id>\"")
        sql, _, db_id = value.partition(BIRD_SEP)
        preds.append(Prediction(str(key), sql, db_id.strip() or None, f"{path}: key {key!r}"))
    return preds


def read_spider(path: Path, text: str) -> list[Prediction]:
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    preds = []
    for i, line in enumerate(lines):
        sql, _, db_id = line.partition("\t")
        preds.append(Prediction(str(i), sql.strip(), db_id.strip() or None, f"{path}:{i + 1}"))
    return preds


READERS: dict[str, Callable[[Path, str], list[Prediction]]] = {
    "jsonl": read_jsonl,
    "bird": read_bird,
    "spider": read_spider,
}
POSITIONAL = {"spider"}


def detect_format(path: Path, text: str) -> str:
    suffix = path.suffix.lower()
    if suffix in (".sql", ".txt"):
        return "spider"
    head = text.lstrip()[:1]
    if suffix == ".json" and head == "{":
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            return "jsonl"  # several objects: JSON lines in a .json file
        return "bird" if isinstance(obj, dict) and "sql" not in obj else "jsonl"
    if head in ("{", "["):
        return "jsonl"
    raise UserError(f"{path}: cannot tell the predictions format; pass --format jsonl, bird or spider")


def read_predictions(path: Path | str, fmt: str = "auto") -> tuple[list[Prediction], str]:
    """Returns the predictions and the format used."""
    path = Path(path)
    text = _read_text(path)
    if fmt == "auto":
        fmt = detect_format(path, text)
    if fmt not in READERS:
        raise UserError(f"unknown predictions format {fmt!r}; choose auto, {', '.join(READERS)}")
    return READERS[fmt](path, text), fmt


def pair_predictions(
    bench: Benchmark, preds: list[Prediction], fmt: str, key: str = "id"
) -> dict[str, Prediction]:
    """Map question id -> prediction, checking ids and db_ids; raise UserError on any mismatch."""
    examples = bench.examples
    positional = fmt in POSITIONAL or key == "index"
    if fmt in POSITIONAL and len(preds) != len(examples):
        where = preds[0].where.rsplit(":", 1)[0] if preds else "predictions"
        raise UserError(
            f"{where}: has {len(preds)} lines but {bench.questions_file} has {len(examples)} "
            "questions; a Spider text file holds one query per question, in question order"
        )
    by_id = {ex.id: ex for ex in examples}
    db_ids = {ex.db_id for ex in examples}
    paired: dict[str, Prediction] = {}
    first_seen: dict[str, str] = {}
    for p in preds:
        if positional:
            if not p.key.isdigit() or int(p.key) >= len(examples):
                raise UserError(f"{p.where}: position {p.key!r} is not a question index 0..{len(examples) - 1} of {bench.questions_file}")
            ex = examples[int(p.key)]
        else:
            ex = by_id.get(p.key)
            if ex is None:
                hint = did_you_mean(p.key, by_id)
                if not hint and p.key.isdigit() and fmt == "bird":
                    hint = "; if the file is keyed by position, pass --pred-key index"
                raise UserError(f"{p.where}: id {p.key!r} is not a question of {bench.questions_file}{hint}")
        if ex.id in first_seen:
            raise UserError(f"{p.where}: second prediction for question {ex.id!r} (first at {first_seen[ex.id]})")
        if p.db_id is not None and p.db_id != ex.db_id:
            if p.db_id not in db_ids:
                raise UserError(f"{p.where}: unknown db_id {p.db_id!r}{did_you_mean(p.db_id, db_ids)}")
            raise UserError(f"{p.where}: db_id {p.db_id!r} but question {ex.id!r} is on {ex.db_id!r}; are the predictions in another order or for another split?")
        first_seen[ex.id] = p.where
        paired[ex.id] = p
    return paired
