"""Where a built dataset's databases are, on whichever machine it is read.

A dataset folder (``sqlwright data build``, ``sqlwright data cot``) records in
``dataset.json`` a ``db_root``: the folder its records' ``db_path`` values are relative to.
It is ``"databases"`` (relative: inside the dataset folder) for databases the build created
(``bird-questions``), or the absolute folder of a benchmark's or your own databases
(``<db_root>/<db_id>/<db_id>.sqlite``, or ``<db_root>/<db>.sqlite``). A ``db_path`` may also
be a URL, kept as it is. So a dataset that holds its databases can be moved anywhere, and one
whose databases live elsewhere is read with ``--db-root DIR`` (``db_root:`` for
``train sft``) naming where they are on this machine.

A database the source named but did not have when the dataset was built (Spider's ``wta_1``)
is listed as ``absent``: its questions score ``db_missing`` as they did then, instead of
stopping the run. Datasets built before ``dataset.json`` existed record absolute paths: those
are used as they are, or re-rooted under ``--db-root`` (``<db_root>/<db_id>/<file>``) when it
is given; they are refused only when none of their databases is there.

``resolve_records`` is the one place that turns references into targets; predict (``--vote
execution``), the dev-accuracy callback of ``train sft`` and ``data cot`` all call it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from sqlwright.errors import UserError

DATASET_FILE = "dataset.json"
DATABASES = "databases"  # where a build puts the databases it creates, inside the dataset folder


def is_url(ref: str) -> bool:
    return "://" in ref


def _sqlite_url_path(ref: str) -> str | None:
    """The file of a ``sqlite:///path`` URL (SQLAlchemy's form), else None."""
    scheme, _, rest = ref.partition("://")
    if scheme.split("+", 1)[0].lower() != "sqlite" or not rest.startswith("/"):
        return None
    return rest[1:].split("?", 1)[0] or None


def _unit(path: Path) -> Path:
    """The folder that holds a database: ``<root>`` for ``<root>/<db>/<db>.sqlite`` and for
    ``<root>/<db>.sqlite``."""
    return path.parent.parent if path.parent.name == path.stem else path.parent


def _tail(ref: str, db_id: str) -> str:
    """What a db_root must hold for this reference: ``<db_id>/<db_id>.sqlite`` or ``<db>.sqlite``."""
    p = Path(ref)
    if not p.is_absolute():
        return p.as_posix()
    return Path(p.parent.name, p.name).as_posix() if p.parent.name == db_id else p.name


def portable_refs(paths: Iterable[str | None], inside: Path | None = None) -> tuple[str | None, dict[str, str]]:
    """(the ``db_root`` to record, each database reference relative to it) for the ``db_path``
    values of a dataset's examples. Paths under ``inside`` (the folder being written, which
    becomes the dataset folder) are recorded relative to ``<dataset>/databases``; other files
    relative to the folder that holds them all; URLs as they are (a ``sqlite:///`` URL as its
    file). A dataset with both kinds keeps absolute paths for the outside ones."""
    files: dict[str, Path] = {}
    refs: dict[str, str] = {}
    for ref in {p for p in paths if p}:
        file = _sqlite_url_path(ref) if is_url(ref) else ref
        if file is None:
            from sqlwright.db.urls import drop_password

            refs[ref] = drop_password(ref)  # another dialect: its executor decides (never a password in a record)
        else:
            files[ref] = Path(file).resolve()
    inner = {r: p for r, p in files.items() if inside is not None and p.is_relative_to(inside.resolve() / DATABASES)}
    outer = {r: p for r, p in files.items() if r not in inner}
    if inner:
        base = inside.resolve() / DATABASES
        refs.update({r: p.relative_to(base).as_posix() for r, p in inner.items()})
        refs.update({r: str(p) for r, p in outer.items()})
        return DATABASES, refs
    if not outer:
        return None, refs
    root = Path(os.path.commonpath([str(_unit(p)) for p in outer.values()]))
    refs.update({r: p.relative_to(root).as_posix() for r, p in outer.items()})
    return str(root), refs


def absent_databases(examples: Iterable[tuple[str, str | None]]) -> list[str]:
    """The db_ids whose database file is not there now ((db_id, db_path) pairs; URLs not checked)."""
    return sorted({db for db, path in examples if path and not is_url(path) and not os.path.isfile(path)})


def write_dataset_file(folder: Path, db_root: str | None, absent: Iterable[str] = ()) -> None:
    (folder / DATASET_FILE).write_text(json.dumps({
        "db_root": db_root,
        "absent": sorted(absent),  # databases the source did not have at build time: they score db_missing
        "about": "each record's db_path is relative to db_root (a relative db_root: inside this folder); "
                 "pass --db-root DIR (train sft: db_root) when the databases are elsewhere on this machine",
    }, indent=2) + "\n")  # fmt: skip


def read_dataset_file(folder: str | Path) -> dict | None:
    """The dataset's ``dataset.json`` (None: an older dataset, which records absolute paths)."""
    path = Path(folder) / DATASET_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: unreadable ({e}); rebuild the dataset with `sqlwright data build`") from None
    return meta if isinstance(meta, dict) else {}


def recorded_root(folder: str | Path, meta: dict | None = None) -> Path | None:
    """The folder the dataset's relative references start from (None: an older dataset)."""
    meta = read_dataset_file(folder) if meta is None else meta
    root = (meta or {}).get("db_root")
    return Path(folder) / root if isinstance(root, str) and root else None  # an absolute db_root stays absolute


def resolve_ref(ref: str | None, db_id: str, root: Path | None, db_root: str | Path | None = None) -> str | None:
    """The target (a file path or URL) a record's ``db_path`` names; ``db_root`` (the user's
    ``--db-root``) replaces the recorded ``root``."""
    if not ref:
        return None
    if is_url(ref):
        return _sqlite_url_path(ref) or ref
    p = Path(ref)
    if db_root is not None:
        return str(Path(db_root) / _tail(ref, db_id))
    if p.is_absolute() or root is None:
        return ref
    return str(root / p)


def resolve_records(folder: str | Path, records: list[dict], db_root: str | Path | None = None,
                    require: bool = True, fix: str = "pass --db-root DIR") -> list[dict]:
    """``records`` (dicts with ``db_id`` and ``db_path``) with each ``db_path`` resolved to the
    target to execute on. With ``require``, every database must be usable: a missing file is
    named with the fix (exit 2), a URL of a dialect sqlwright cannot execute is refused — all
    before anything loads a model. ``fix`` says how to name another folder (``train sft``: a key)."""
    meta = read_dataset_file(folder)
    root = recorded_root(folder, meta or {})
    cache: dict[tuple[str, str], str | None] = {}
    out = []
    for r in records:
        ref = r.get("db_path")
        key = (str(r.get("db_id")), ref or "")
        if key not in cache:
            cache[key] = resolve_ref(ref, key[0], root, db_root)
        out.append({**r, "db_path": cache[key]})
    if require:
        targets = {k: v for k, v in cache.items() if v}
        if meta is None:  # an older dataset: refused only when none is there (it moved), else as before
            if any(os.path.isfile(t) for t in targets.values() if not is_url(t)):  # a missing one: db_missing
                targets = {k: v for k, v in targets.items() if is_url(v)}
        else:  # absent when the dataset was built (Spider's wta_1): its questions score db_missing, as then
            targets = {k: v for k, v in targets.items() if k[0] not in set(meta.get("absent") or ())}
        check_databases(targets, fix)
    return out


def check_databases(targets: dict[tuple[str, str], str], fix: str = "pass --db-root DIR") -> None:
    """(db_id, reference) -> target: refuse, in one line, targets that cannot be executed on."""
    from sqlwright.db.registry import check_targets

    check_targets({t for t in targets.values() if is_url(t)})
    missing = [(db, ref, t) for (db, ref), t in targets.items() if not is_url(t) and not os.path.isfile(t)]
    if missing:
        db, ref, path = missing[0]
        more = f" (and {len(missing) - 1} more of the {len(targets)} databases)" if len(missing) > 1 else ""
        raise UserError(f"{db}: database not found at {path}{more}; {fix} (the folder holding {_tail(ref, db)})")
