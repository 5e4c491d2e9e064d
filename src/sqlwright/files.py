"""The house's file helpers: one JSON-lines reader, one append-only JSON-lines writer for
resumable output, and writes that land whole or not at all.

Reading: a line that is not JSON is a ``UserError`` naming the file and line
(``{path}:{n}: not valid JSON (...)``) and blank lines are skipped. Lines are split on
``\\n`` only, so a JSON string holding U+2028 and the like stays one record.

Appending: a finished record is one line, written and flushed at once (it survives a killed
process); with ``SQLWRIGHT_FSYNC=1`` (or ``fsync=True``) each line is also fsynced (it survives
a power cut too, at a cost per line). A line cut short by a killed process is dropped when
the file is opened again, so a record is never half there.

Atomic writes: the content goes to a temporary file in the same folder, then ``os.replace``
puts it in place; a reader sees the old file or the new one, never a part.

This module is a leaf: it imports nothing of sqlwright but ``sqlwright.errors``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from sqlwright.errors import UserError

FSYNC_ENV = "SQLWRIGHT_FSYNC"


def fsync_wanted(fsync: bool | None = None) -> bool:
    """``fsync`` when given, else whether ``SQLWRIGHT_FSYNC`` is set (to anything but 0/false/no)."""
    if fsync is not None:
        return fsync
    return os.environ.get(FSYNC_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


# -- reading ----------------------------------------------------------------------------------
def repair_partial_line(path: str | Path) -> bool:
    """Cut a last line that has no ``\\n`` (a write cut off by a killed process) from an
    append-only log; True when something was cut. A missing file is left missing."""
    path = Path(path)
    if not path.is_file():
        return False
    size = path.stat().st_size
    if size == 0:
        return False
    with open(path, "r+b") as f:
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return False
        # walk back to the last newline, a block at a time
        end, block = size, 1 << 16
        while end > 0:
            start = max(0, end - block)
            f.seek(start)
            chunk = f.read(end - start)
            i = chunk.rfind(b"\n")
            if i >= 0:
                f.truncate(start + i + 1)
                return True
            end = start
        f.truncate(0)
        return True


def _lines(path: Path, text: str | None, what: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of ``text``, or of the file read as UTF-8 (a BOM is dropped)."""
    if text is not None:
        for n, line in enumerate(text.split("\n"), 1):
            yield n, line
        return
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below, also when the caller stops early
    except FileNotFoundError:
        raise UserError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, not a {what}") from None
    with f:
        offset = 0
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if n == 1 else "utf-8")
            except UnicodeDecodeError as e:
                at = offset + e.start
                raise UserError(f"{path}:{n}: not UTF-8 text ({e.reason} at byte {at}); save the file as UTF-8") from None
            offset += len(raw)
            yield n, line


def iter_jsonl(
    path: str | Path, *, what: str = "JSON lines file", hint: str = "", text: str | None = None, repair: bool = False
) -> Iterator[tuple[int, Any]]:
    """``(line number, record)`` for each non-blank line of a JSON-lines file.

    ``what`` names the file in messages (``"{path}: {what} not found"``); ``hint`` is added to
    the message for a line that is not JSON (``"...: not valid JSON (...); {hint}"``).
    ``text``: parse this text instead of reading ``path`` (still named in messages).
    ``repair``: first cut a partial last line (for append-only logs; see ``repair_partial_line``)."""
    path = Path(path)
    if repair and text is None:
        repair_partial_line(path)
    tail = f"; {hint}" if hint else ""
    for n, line in _lines(path, text, what):
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{n}: not valid JSON ({e.msg}){tail}") from None


def read_jsonl(
    path: str | Path, *, what: str = "JSON lines file", hint: str = "", text: str | None = None, repair: bool = False
) -> list[Any]:
    """Every record of a JSON-lines file (see ``iter_jsonl`` for the options)."""
    return [rec for _, rec in iter_jsonl(path, what=what, hint=hint, text=text, repair=repair)]


def read_log(path: str | Path, *, what: str = "log", hint: str = "", key: str = "id") -> list[dict]:
    """Every record of an append-only log written by ``JsonlAppender``: ``[]`` when the file
    does not exist yet; a partial last line is cut first (it will be redone); each record must
    be an object with ``key``, else a ``UserError`` naming the line."""
    path = Path(path)
    if not path.exists():
        return []
    tail = f"; {hint}" if hint else ""
    records = []
    for n, rec in iter_jsonl(path, what=what, hint=hint, repair=True):
        if not isinstance(rec, dict) or key not in rec:
            raise UserError(f"{path}:{n}: not a record of this {what} (no {key!r}){tail}")
        records.append(rec)
    return records


# -- appending --------------------------------------------------------------------------------
class JsonlAppender:
    """An append-only JSON-lines file for resumable output: one line per finished record,
    flushed at once (and fsynced when ``fsync``, default ``SQLWRIGHT_FSYNC``). Opening it cuts a
    partial last line a killed process left behind."""

    def __init__(self, path: str | Path, *, fsync: bool | None = None, default: Callable[[Any], Any] | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_partial_line(self.path)
        self._fsync = fsync_wanted(fsync)
        self._default = default
        self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held for the whole run

    def write(self, record: Any) -> None:
        self._f.write(json.dumps(record, ensure_ascii=False, default=self._default) + "\n")
        self._f.flush()  # in the kernel now: survives a killed process
        if self._fsync:  # and a power cut too, at a cost per line
            os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- atomic writes ----------------------------------------------------------------------------
def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")


@contextlib.contextmanager
def atomic_path(path: str | Path, *, fsync: bool | None = None) -> Iterator[Path]:
    """A temporary path next to ``path`` to write to (by any means: a library's ``save``,
    SQLite's backup...); moved onto ``path`` when the block ends without an error, deleted
    when it raises. The temporary name has no suffix of ``path``'s: tell writers the format."""
    path = Path(path)
    tmp = _temp_name(path)
    try:
        yield tmp
        if fsync_wanted(fsync) and tmp.is_file():
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: str | Path, data: bytes, *, fsync: bool | None = None) -> None:
    """Write ``data`` to ``path`` whole or not at all (a temporary file, then ``os.replace``)."""
    with atomic_path(path, fsync=fsync) as tmp, open(tmp, "xb") as f:
        f.write(data)


def atomic_write_text(path: str | Path, text: str, *, fsync: bool | None = None) -> None:
    """Write ``text`` (UTF-8) to ``path`` whole or not at all."""
    atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)


def atomic_write_jsonl(
    path: str | Path, records: Iterable[Any], *, default: Callable[[Any], Any] | None = None, fsync: bool | None = None
) -> None:
    """Write ``records`` as JSON lines to ``path`` whole or not at all."""
    with atomic_path(path, fsync=fsync) as tmp, open(tmp, "x", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False, default=default) + "\n")
