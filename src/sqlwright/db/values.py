"""Result values as SQLite would give them, so the comparators mean the same on every engine.

SQLite returns only ``int``, ``float``, ``str``, ``bytes`` and ``None``. Other drivers return
richer types; each value is mapped onto those five:

* ``Decimal`` (PostgreSQL ``numeric``: ``SUM``/``AVG`` of integers; MySQL ``DECIMAL``): an
  ``int`` when integral, else a ``float`` (``SUM(x)`` → ``6``, ``AVG(x)`` → ``2.5``);
* ``bool`` → ``0``/``1``;
* dates, times and timestamps → ISO text as SQLite stores it (``2020-01-02``,
  ``2020-01-02 10:30:00``, ``10:30:00``); MySQL ``TIME`` (a ``timedelta``) → ``HH:MM:SS``;
* ``memoryview``/``bytearray`` → ``bytes``; UUIDs → text; lists and structs (DuckDB,
  PostgreSQL arrays) → their text form; JSON documents → JSON text.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

_PLAIN = {int, float, str, bytes, type(None)}


def value(v):
    t = type(v)
    if t in _PLAIN:
        return v
    if t is bool:
        return int(v)
    if t is Decimal:
        if not v.is_finite():
            return float(v)
        i = int(v)
        return i if v == i else float(v)
    if t is dt.datetime:
        return v.isoformat(sep=" ")
    if t in (dt.date, dt.time):
        return v.isoformat()
    if t is dt.timedelta:
        total = int(v.total_seconds())
        sign, total = ("-", -total) if total < 0 else ("", total)
        frac = f".{v.microseconds:06d}" if v.microseconds and sign == "" else ""
        return f"{sign}{total // 3600:02d}:{total // 60 % 60:02d}:{total % 60:02d}{frac}"
    if t in (memoryview, bytearray):
        return bytes(v)
    if isinstance(v, int):  # numpy-like or IntEnum
        return int(v)
    if isinstance(v, float):
        return float(v)
    if isinstance(v, (list, tuple, dict)):
        try:
            return json.dumps(v, default=str, sort_keys=True)
        except (TypeError, ValueError):
            return str(v)
    return str(v)


def rows(raw) -> tuple[tuple, ...]:
    """Rows with every value as SQLite would give it (plain rows pass through cheaply)."""
    out = []
    for row in raw:
        if all(type(v) in _PLAIN for v in row):
            out.append(tuple(row))
        else:
            out.append(tuple(value(v) for v in row))
    return tuple(out)
