"""What ``sqlwright data cot`` and ``sqlwright data synth`` share: prompt templates with named
placeholders, a run folder that a rerun continues, and reading a built dataset back.

A teacher is any backend of ``sqlwright predict`` (``sqlwright.infer.backend``); results are
appended per example to JSON lines (``sqlwright.files.JsonlAppender``), so a killed run loses only
the work in flight and a rerun of the same command picks up where it stopped.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from sqlwright.data.dataset import resolve_records
from sqlwright.db.introspect import introspect_sqlite
from sqlwright.errors import UserError
from sqlwright.files import iter_jsonl
from sqlwright.infer.tokens import with_token_counter
from sqlwright.prompts.spec import PromptSpec
from sqlwright.types import Example, Schema

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


# -- prompt templates -----------------------------------------------------------------------
@dataclass(frozen=True)
class Template:
    text: str
    source: str  # "built-in" or the file it came from

    @classmethod
    def load(cls, path: str | None, default: str, known: tuple[str, ...], required: tuple[str, ...]) -> Template:
        """The default template, or the file's text checked for unknown and missing placeholders."""
        if path is None:
            return cls(default, "built-in")
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UserError(f"{path}: prompt file not found") from None
        except UnicodeDecodeError:
            raise UserError(f"{path}: not UTF-8 text; save the prompt file as UTF-8") from None
        names = set(_PLACEHOLDER.findall(text))
        unknown = sorted(n for n in names if n not in known)
        missing = [n for n in required if n not in names]
        problems = []
        if unknown:
            problems.append(f"unknown placeholder {', '.join('{' + n + '}' for n in unknown)}")
        if missing:
            problems.append(f"missing placeholder {', '.join('{' + n + '}' for n in missing)}")
        if problems:
            raise UserError(f"{path}: {'; '.join(problems)} (known: {', '.join('{' + n + '}' for n in known)})")
        return cls(text, str(path))

    def fill(self, **values: str) -> str:
        """One pass over the template: a value that itself holds ``{question}`` stays as it is."""
        return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), self.text)


# -- the run folder ---------------------------------------------------------------------------
def prepare_run_folder(out: Path, config: dict, must_match: tuple[str, ...], overwrite: bool, command: str) -> None:
    """Create ``out`` or check that it holds an earlier run of the same job, to continue it.

    ``config.json`` records the configuration; the keys in ``must_match`` must be equal for a
    rerun to continue (other settings, such as the teacher's endpoint, may change)."""
    cfg_path = out / "config.json"
    if out.exists() and overwrite:
        shutil.rmtree(out)
    if out.exists() and any(out.iterdir()):
        try:
            old = json.loads(cfg_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            raise UserError(f"{out}: exists and is not a `sqlwright data {command}` run folder; choose another --out or pass --overwrite") from None
        changed = [k for k in must_match if old.get(k) != config.get(k)]
        if old.get("command") != command or changed:
            what = ", ".join(f"{k} {old.get(k)!r} -> {config.get(k)!r}" for k in changed) or f"a `{old.get('command')}` run"
            raise UserError(f"{out}: holds another run ({what}); rerun with the same settings to continue it, "
                            "or choose another --out, or pass --overwrite to start again")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(json.dumps({"command": command, **config}, indent=2, default=str) + "\n")


def save_datasetdict(folder: Path, records: dict[str, list[dict]]) -> None:
    """``<folder>/`` as a ``datasets.DatasetDict`` (``save_to_disk``), replaced whole."""
    try:
        from datasets import Dataset, DatasetDict
        from datasets.utils.logging import disable_progress_bar
    except ImportError:
        raise UserError("writing datasets needs the datasets library: pip install 'sqlwright[data]'") from None
    disable_progress_bar()
    tmp = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    DatasetDict({s: Dataset.from_list(rs) for s, rs in records.items() if rs}).save_to_disk(str(tmp))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


# -- a built dataset, read back ---------------------------------------------------------------
@dataclass
class BuiltDataset:
    folder: Path
    spec: PromptSpec
    splits: dict[str, list[Example]]
    schemas: dict[str, Schema]


def _example(r: dict) -> Example:
    return Example(id=str(r["id"]), db_id=r["db_id"], question=r["question"], sql=r["sql"], evidence=r.get("evidence") or "",
                   difficulty=r.get("difficulty"), db_path=r.get("db_path"), context=r.get("context"))  # fmt: skip


def load_built(folder: str | Path, splits: list[str] | None = None, db_root: str | None = None,
               db_url: str | None = None) -> BuiltDataset:
    """A dataset from ``sqlwright data build``: its prompt spec, examples and schemas.

    Each example's ``db_path`` is resolved against the dataset's recorded root, or ``db_root``
    (``--db-root``) when given; a database that is not there is an error (exit 2) naming it.
    ``db_url`` (``--db-url``, a ``{db_id}`` template) names them on a server or in DuckDB files
    instead, and their schemas are read from there.

    Schemas are read again from the source the build recorded in ``stats.json`` (so Spider's
    keys and BIRD's column descriptions are the same as in the built prompts); a database the
    source cannot give is read from the example's ``db_path`` or CREATE TABLE ``context``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such dataset folder; create it with `sqlwright data build`")
    spec = with_token_counter(PromptSpec.load(folder))
    have = sorted(p.stem for p in folder.glob("*.jsonl"))
    wanted = splits or have
    missing = [s for s in wanted if s not in have]
    if missing or not wanted:
        raise UserError(f"{folder}: no split {', '.join(map(repr, missing)) or 'at all'} (has: {', '.join(have) or 'none'}); pass --split")
    data: dict[str, list[Example]] = {}
    for split in wanted:
        path = folder / f"{split}.jsonl"
        data[split] = []
        for n, rec in iter_jsonl(path, what="dataset split", hint="rebuild it with `sqlwright data build`"):
            try:
                data[split].append(_example(rec))
            except (KeyError, TypeError):
                raise UserError(f"{path}:{n}: not a dataset record (id, db_id, question, sql); rebuild it with `sqlwright data build`") from None
    examples = [ex for exs in data.values() for ex in exs]
    if db_url:
        from sqlwright.data.dataset import check_databases
        from sqlwright.db.urls import expand

        for ex in examples:
            ex.db_path = expand(db_url, ex.db_id)
        check_databases({(ex.db_id, ex.db_path): ex.db_path for ex in examples}, "check --db-url")
    else:
        resolved = resolve_records(folder, [{"db_id": ex.db_id, "db_path": ex.db_path} for ex in examples], db_root)
        for ex, r in zip(examples, resolved, strict=True):
            ex.db_path = r["db_path"]
    return BuiltDataset(folder, spec, data, _schemas(folder, data, spec, db_url))


def _schemas(folder: Path, data: dict[str, list[Example]], spec: PromptSpec, db_url: str | None = None) -> dict[str, Schema]:
    from sqlwright.data.sources import SourceConfig, load_source

    schemas: dict[str, Schema] = {}
    try:
        stats = json.loads((folder / "stats.json").read_text())
        src = SourceConfig(**stats["source_config"])
        src.work_dir = src.work_dir or str(folder)  # a source that builds databases: the dataset's own databases/
        src.examples, src.rows = max(src.examples, spec.examples), max(src.rows, spec.rows)
        if db_url and stats["source"] in ("spider", "bird", "sqlite"):
            src.db_url = db_url  # the build's template without its password: this run's
        schemas = load_source(stats["source"], src).schemas
    except (FileNotFoundError, KeyError, TypeError, json.JSONDecodeError, UserError, OSError):
        schemas = {}  # the source moved or is not at hand: read each database below
    for ex in (ex for exs in data.values() for ex in exs):
        if ex.db_id in schemas:
            continue
        if ex.context:
            from sqlwright.data.sources.sql_create_context import schema_from_context

            schemas[ex.db_id] = schema_from_context(ex.db_id, ex.context)
        elif ex.db_path and "://" in ex.db_path:
            from sqlwright.db.introspect import introspect_url

            schemas[ex.db_id] = introspect_url(ex.db_path, ex.db_id, examples=spec.examples, rows=spec.rows)
        elif ex.db_path and Path(ex.db_path).is_file():
            from sqlwright.data.sources.bird import add_descriptions

            schema = introspect_sqlite(ex.db_path, ex.db_id, examples=spec.examples, rows=spec.rows)
            schemas[ex.db_id] = add_descriptions(schema, Path(ex.db_path).parent / "database_description")
        else:
            raise UserError(f"{folder}: the database of {ex.db_id!r} is missing ({ex.db_path or 'no db_path'}); "
                            "rebuild the dataset with `sqlwright data build` where its databases are")  # fmt: skip
    return schemas
