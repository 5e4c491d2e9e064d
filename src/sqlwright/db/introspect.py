"""Read a database's schema: tables, columns, types, keys, stored DDL, example values.

SQLite files are opened read-only (``mode=ro&immutable=1``); other databases are read
through a SQLAlchemy URL (the ``[data]`` extra). Each database is read once per build.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from sqlwright.db.sqlite import readonly_uri
from sqlwright.errors import UserError, first_line
from sqlwright.types import Column, ForeignKey, Schema, Table


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def introspect_sqlite(path: str | Path, db_id: str | None = None, **kw) -> Schema:
    """The schema of a SQLite file (see ``introspect_connection`` for the options)."""
    path = Path(path)
    conn = sqlite3.connect(readonly_uri(path), uri=True)
    try:
        return introspect_connection(conn, db_id or path.stem, **kw)
    finally:
        conn.close()


def introspect_connection(
    conn: sqlite3.Connection, db_id: str, examples: int = 0, rows: int = 0, seconds_per_query: float = 2.0
) -> Schema:
    """Tables in ``sqlite_master`` order (as ``SELECT sql FROM sqlite_master`` lists them).

    ``examples``: distinct non-NULL values per column, shortest first; ``rows``: first rows
    per table. Sampling stops after ``seconds_per_query`` on very large tables.
    """
    listed = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall()
    tables = []
    for name, ddl in listed:
        cols = [Column(c[1], c[2] or "", bool(c[5])) for c in conn.execute(f"PRAGMA table_info({_q(name)})")]
        fks = [ForeignKey(f[3], f[2], f[4] or "") for f in conn.execute(f"PRAGMA foreign_key_list({_q(name)})")]
        table = Table(name, cols, fks, ddl or "", internal=name.startswith("sqlite_"))
        if not table.internal:
            if rows > 0:
                table.rows = _limited(conn, f"SELECT * FROM {_q(name)} LIMIT ?", (rows,), seconds_per_query)
            for col in cols if examples > 0 else ():
                c = _q(col.name)
                sql = f"SELECT DISTINCT {c} FROM {_q(name)} WHERE {c} IS NOT NULL ORDER BY length({c}), 1 LIMIT ?"
                col.examples = [v for (v,) in _limited(conn, sql, (examples,), seconds_per_query)]
        tables.append(table)
    return Schema(db_id, tables)


def _limited(conn: sqlite3.Connection, sql: str, params: tuple, seconds: float) -> list[tuple]:
    deadline = time.monotonic() + seconds
    conn.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError:  # interrupted, or an odd table: go without samples
        return []
    finally:
        conn.set_progress_handler(None, 0)


def introspect_url(url: str, db_id: str | None = None) -> Schema:
    """The schema of any database SQLAlchemy can reach (``postgresql://…``, ``mysql://…``)."""
    try:
        import sqlalchemy as sa
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ImportError("reading a database URL needs SQLAlchemy: pip install 'sqlwright[data]'") from e
    try:
        shown = sa.engine.make_url(url).render_as_string(hide_password=True)
        engine = sa.create_engine(url)
    except (ImportError, sa.exc.ArgumentError, ValueError) as e:  # no driver installed, not a URL
        shown = url.split("://", 1)[0] + "://" + url.rsplit("@", 1)[-1] if "@" in url else url
        raise UserError(f"{shown}: cannot open this database URL ({first_line(e)})") from None
    try:
        insp = sa.inspect(engine)
        tables = []
        for name in insp.get_table_names():
            pk = set(insp.get_pk_constraint(name).get("constrained_columns") or [])
            cols = [Column(c["name"], str(c["type"]), c["name"] in pk) for c in insp.get_columns(name)]
            fks = [
                ForeignKey(col, fk["referred_table"], ref)
                for fk in insp.get_foreign_keys(name)
                for col, ref in zip(fk["constrained_columns"], fk["referred_columns"], strict=False)
            ]
            tables.append(Table(name, cols, fks))
    except sa.exc.SQLAlchemyError as e:  # cannot connect, no permission...
        raise UserError(f"{shown}: cannot read the schema ({first_line(getattr(e, 'orig', None) or e)})") from None
    finally:
        engine.dispose()
    return Schema(db_id or (Path(engine.url.database).stem if engine.url.database else "db"), tables)


def apply_spider_keys(schema: Schema, entry: dict) -> Schema:
    """Take primary and foreign keys from a Spider ``tables.json`` entry (the official keys;
    many Spider SQLite files declare none)."""
    tnames = entry["table_names_original"]
    cols = entry["column_names_original"]
    by_name = {t.name.lower(): t for t in schema.tables}

    def col(i: int) -> tuple[Table | None, str]:
        t_idx, cname = cols[i]
        return by_name.get(tnames[t_idx].lower()), cname

    for t in schema.tables:
        for c in t.columns:
            c.primary_key = False
        t.foreign_keys = []
    for pk in entry.get("primary_keys", []):
        for i in pk if isinstance(pk, list) else [pk]:
            t, cname = col(i)
            if t is not None and (c := t.column(cname)) is not None:
                c.primary_key = True
    schema.fk_order = []
    for a, b in entry.get("foreign_keys", []):
        t, cname = col(a)
        rt, rname = col(b)
        if t is not None and rt is not None:
            fk = ForeignKey(cname, rt.name, rname)
            t.foreign_keys.append(fk)
            schema.fk_order.append((t.name, fk))
    return schema


def schema_from_spider_entry(entry: dict) -> Schema:
    """A schema from ``tables.json`` alone, for Spider databases whose file is absent."""
    tnames = entry["table_names_original"]
    tables = [Table(t, []) for t in tnames]
    for (t_idx, cname), ctype in zip(entry["column_names_original"], entry["column_types"], strict=False):
        if t_idx >= 0:
            tables[t_idx].columns.append(Column(cname, ctype))
    return apply_spider_keys(Schema(entry["db_id"], tables), entry)
