"""Read a benchmark directory in BIRD or Spider layout (detected, or given explicitly).

BIRD:   ``<dir>/<split>.json`` items with ``question_id, db_id, question, evidence, SQL,
        difficulty``; databases at ``<dir>/<split>_databases/<db>/<db>.sqlite`` with
        optional ``database_description/*.csv``.
Spider: ``<dir>/dev.json`` or ``train_spider.json`` items with ``db_id, question, query``;
        ``<dir>/tables.json``; databases at ``<dir>/database/<db>/<db>.sqlite``. Spider
        questions have no id field: a question's id is its position in the file, as in
        Spider's own gold/prediction files.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from sqlwright.errors import UserError
from sqlwright.types import Example

SPIDER_FILES = {"dev": "dev.json", "train": "train_spider.json"}
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):/+")  # scheme:// (two letters at least: not C:/)


@dataclass
class Benchmark:
    layout: str  # "bird" | "spider"
    questions_file: Path
    db_root: Path
    examples: list[Example]
    tables: dict[str, dict] = field(default_factory=dict)  # Spider tables.json by db_id

    def db_path(self, db_id: str) -> Path:
        return self.db_root / db_id / f"{db_id}.sqlite"

    @property
    def by_id(self) -> dict[str, Example]:
        return {ex.id: ex for ex in self.examples}


def read_json(path: Path) -> object:
    """A JSON file, or a UserError naming the file (and line) when absent or invalid."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None


def detect_layout(root: Path, split: str) -> str:
    if (root / "tables.json").is_file() and (root / "database").is_dir():
        return "spider"
    if (root / f"{split}_databases").is_dir() or (root / f"{split}.json").is_file():
        return "bird"
    raise UserError(
        f"{root}: not a benchmark directory: expected BIRD layout ({split}.json and "
        f"{split}_databases/) or Spider layout (tables.json and database/); "
        "or pass --questions FILE --db-root DIR"
    )


def load_benchmark(
    root: Path | str | None = None,
    split: str = "dev",
    questions: Path | str | None = None,
    db_root: Path | str | None = None,
) -> Benchmark:
    """Load a benchmark from a directory, or from explicit questions file + database root."""
    root = Path(root) if root else None
    if root is not None and not root.is_dir():
        raise UserError(f"{root}: benchmark directory not found")
    if root is None and (questions is None or db_root is None):
        raise UserError("give a benchmark directory (--benchmark DIR) or both --questions FILE and --db-root DIR")
    layout = detect_layout(root, split) if root is not None else None
    if questions is not None:
        qfile = Path(questions)
    elif layout == "spider":
        if split not in SPIDER_FILES:
            raise UserError(f"{root}: unknown Spider split {split!r}; choose dev or train")
        qfile = root / SPIDER_FILES[split]
    else:
        qfile = root / f"{split}.json"
    items = read_json(qfile)
    if not isinstance(items, list) or not items:
        raise UserError(f"{qfile}: expected a non-empty JSON list of questions")
    if layout is None:  # explicit files: tell the format by the items' keys
        layout = "bird" if "SQL" in items[0] else "spider"
    if db_root is not None:
        url = _URL.match(str(db_root))  # a database URL, not a folder (a Path has made :// into :/)
        if url:
            from sqlwright.db.urls import mask_url

            shown = mask_url(f"{url.group(1)}://{str(db_root)[url.end():]}")
            raise UserError(f"--db-root {shown} is a database URL; --db-root names a folder of SQLite files, "
                            f"--db-url a server's databases (e.g. '{url.group(1)}://user@host/{{db_id}}')")
        droot = Path(db_root)
    elif layout == "spider":
        droot = root / "database"
    else:
        droot = root / f"{split}_databases"
    if not droot.is_dir():
        raise UserError(f"{droot}: database folder not found (expected <db_id>/<db_id>.sqlite inside); pass --db-root DIR")
    examples = [_parse_item(layout, qfile, i, item) for i, item in enumerate(items)]
    for ex in examples:
        ex.db_path = str(droot / ex.db_id / f"{ex.db_id}.sqlite")
    seen: dict[str, int] = {}
    for i, ex in enumerate(examples):
        if ex.id in seen:
            raise UserError(f"{qfile}: item {i} repeats question id {ex.id!r} of item {seen[ex.id]}")
        seen[ex.id] = i
    tables: dict[str, dict] = {}
    tables_file = (root / "tables.json") if root is not None else qfile.parent / "tables.json"
    if layout == "spider" and tables_file.is_file():
        tables = {t["db_id"]: t for t in read_json(tables_file)}
    return Benchmark(layout, qfile, droot, examples, tables)


_REQUIRED = {"bird": ("db_id", "question", "SQL"), "spider": ("db_id", "question", "query")}


def _parse_item(layout: str, qfile: Path, i: int, item: object) -> Example:
    if not isinstance(item, dict):
        raise UserError(f"{qfile}: item {i} is not a JSON object")
    missing = [k for k in _REQUIRED[layout] if k not in item]
    if missing:
        raise UserError(f"{qfile}: item {i} lacks {', '.join(missing)} (a {layout.upper()} question needs {', '.join(_REQUIRED[layout])})")
    if layout == "bird":
        qid = item.get("question_id", i)
        return Example(
            id=str(qid), db_id=item["db_id"], question=item["question"], sql=item["SQL"],
            evidence=item.get("evidence") or "", difficulty=item.get("difficulty"),
        )  # fmt: skip
    return Example(id=str(i), db_id=item["db_id"], question=item["question"], sql=item["query"])
