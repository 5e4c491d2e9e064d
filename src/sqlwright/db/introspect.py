"""Read a database's schema: tables, columns, types, keys, stored DDL, example values.

SQLite files are opened read-only (``mode=ro&immutable=1``); PostgreSQL and MySQL/MariaDB
URLs through SQLAlchemy's inspector on a read-only session, DuckDB files from DuckDB's
catalog, example values through the read-only executor (``introspect_url``). Each database
is read once per build.
"""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path

from sqlwright.db.sqlite import readonly_uri
from sqlwright.db.urls import mask_in, mask_url
from sqlwright.errors import UserError, first_line
from sqlwright.types import Column, ForeignKey, Schema, Status, Table


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


class DatabaseMissing(UserError):
    """The server answers but has no such database (a source may fall back, as for a missing file)."""


def introspect_target(target: str, db_id: str | None = None, **kw) -> Schema:
    """The schema of a SQLite file or of a database URL (see ``introspect_url``)."""
    return introspect_url(target, db_id, **kw) if "://" in str(target) else introspect_sqlite(target, db_id, **kw)


def introspect_url(url: str, db_id: str | None = None, examples: int = 0, rows: int = 0,
                   seconds_per_query: float = 2.0) -> Schema:
    """The schema of a database URL: tables, columns with the engine's own types, primary and
    foreign keys, column comments as descriptions.

    PostgreSQL and MySQL/MariaDB are read through SQLAlchemy's inspector on a read-only
    session; DuckDB (SQLAlchemy has no DuckDB dialect of its own) from its catalog functions.
    Example values and rows (``examples``, ``rows``) are read through the read-only executor,
    each query stopped after ``seconds_per_query``. Any other URL SQLAlchemy can open
    (``sqlite:///…``) is read by the inspector alone."""
    from sqlwright.db.registry import EXECUTORS, dialect_of

    dialect = dialect_of(url)
    if dialect not in EXECUTORS or dialect == "sqlite":
        return _introspect_sqlalchemy(url, db_id)
    from sqlwright.db.urls import Url

    if db_id is None:
        db_id = Path(Url.parse(url).database).stem or "db"
    from sqlwright.db.registry import executor_for
    from sqlwright.db.server import ConnectFailed
    from sqlwright.types import Limits

    cache: dict = {}
    limits = Limits(timeout=seconds_per_query, max_rows=1_000_000)  # the catalog queries too; samples have a LIMIT
    try:
        try:
            ex = executor_for(url, limits, cache)
            ex.probe(url)
        except ImportError as e:
            raise UserError(f"{mask_url(url)}: {e}") from None
        except ConnectFailed as e:
            if e.status is Status.DB_MISSING:
                raise DatabaseMissing(mask_in(str(e), url)) from None
            raise UserError(mask_in(str(e), url)) from None
        if dialect == "duckdb":
            schema = _introspect_duckdb(url, db_id, ex)
        else:
            schema = _introspect_sqlalchemy(url, db_id, _creator(url, dialect))
        q = _quoter(dialect)
        text = "CHAR" if dialect == "mysql" else "TEXT"
        length = "CHAR_LENGTH" if dialect == "mysql" else "length"
        for table in schema.tables:
            t = q(table.name)
            if rows > 0:
                res = ex.execute(url, f"SELECT * FROM {t} LIMIT {int(rows)}")
                table.rows = list(res.rows) if res.ok else []
            for col in table.columns if examples > 0 else ():
                c = q(col.name)
                res = ex.execute(url, f"SELECT v FROM (SELECT DISTINCT {c} AS v FROM {t} WHERE {c} IS NOT NULL) d "
                                      f"ORDER BY {length}(CAST(v AS {text})), CAST(v AS {text}) LIMIT {int(examples)}")
                col.examples = [r[0] for r in res.rows] if res.ok else []  # too slow, odd type: no samples
        return schema
    finally:
        for ex in cache.values():
            ex.close()


def _quoter(dialect: str):
    if dialect == "mysql":
        return lambda name: "`" + name.replace("`", "``") + "`"
    return _q


def _creator(url: str, dialect: str):
    """A DB-API connection factory for SQLAlchemy: the executor's connection parameters (its
    password sources too), the session read-only."""
    if dialect == "postgresql":
        import psycopg

        from sqlwright.db.postgres import CONNECT_TIMEOUT, conninfo

        def connect():
            conn = psycopg.connect(conninfo(url), connect_timeout=CONNECT_TIMEOUT, application_name="sqlwright")
            with conn.cursor() as cur:
                cur.execute("SET default_transaction_read_only = on")
            conn.commit()
            return conn

        return connect
    import pymysql

    from sqlwright.db.mysql import connect_args

    def connect():
        conn = pymysql.connect(**connect_args(url))
        with conn.cursor() as cur:
            cur.execute("SET SESSION TRANSACTION READ ONLY")
        return conn

    return connect


_SQLALCHEMY_SCHEMES = {"postgresql": "postgresql+psycopg://", "mysql": "mysql+pymysql://"}
_COLLATE = re.compile(r"\s+(COLLATE|CHARACTER SET)\s+\S+", re.I)
_DISPLAY_WIDTH = re.compile(r"^((?:TINY|SMALL|MEDIUM|BIG)?INT(?:EGER)?)\(\d+\)", re.I)  # MariaDB's INT(11): no meaning


def _introspect_sqlalchemy(url: str, db_id: str | None, creator=None) -> Schema:
    try:
        import sqlalchemy as sa
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ImportError("reading a database URL needs SQLAlchemy: pip install 'sqlwright[engines]'") from e
    shown = mask_url(url)
    try:
        if creator is not None:
            from sqlwright.db.registry import dialect_of

            engine = sa.create_engine(_SQLALCHEMY_SCHEMES[dialect_of(url)], creator=creator, poolclass=sa.pool.NullPool)
        else:
            engine = sa.create_engine(url)
    except (ImportError, sa.exc.ArgumentError, ValueError) as e:  # no driver installed, not a URL
        raise UserError(f"{shown}: cannot open this database URL ({first_line(e)})") from None
    try:
        insp = sa.inspect(engine)
        tables = []
        for name in insp.get_table_names():
            pk = set(insp.get_pk_constraint(name).get("constrained_columns") or [])
            cols = [Column(c["name"], _type_name(c["type"], engine.dialect), c["name"] in pk, " ".join((c.get("comment") or "").split()))
                    for c in insp.get_columns(name)]
            fks = [
                ForeignKey(col, fk["referred_table"], ref)
                for fk in insp.get_foreign_keys(name)
                for col, ref in zip(fk["constrained_columns"], fk["referred_columns"], strict=False)
            ]
            tables.append(Table(name, cols, fks))
    except sa.exc.SQLAlchemyError as e:  # cannot connect, no permission...
        raise UserError(f"{shown}: cannot read the schema ({mask_in(first_line(getattr(e, 'orig', None) or e), url)})") from None
    except Exception as e:  # a driver's own error raised by the creator
        if type(e).__module__.split(".")[0] not in ("psycopg", "pymysql"):
            raise
        raise UserError(f"{shown}: cannot read the schema ({mask_in(first_line(e), url)})") from None
    finally:
        engine.dispose()
    if db_id is None:
        db_id = Path(engine.url.database).stem if engine.url.database else "db"
    return Schema(db_id, tables)


def _type_name(type_, dialect) -> str:
    """A column type as the engine writes it (``DOUBLE PRECISION``, ``VARCHAR(20)``, ``BIGINT``)."""
    try:
        text = type_.compile(dialect=dialect)
    except Exception:  # a type SQLAlchemy reflects but cannot compile (NullType)
        text = str(type_)
    return _DISPLAY_WIDTH.sub(r"\1", _COLLATE.sub("", text))


def _introspect_duckdb(url: str, db_id: str, ex) -> Schema:
    def rows(sql: str) -> list[tuple]:
        res = ex.execute(url, sql)
        if not res.ok:
            raise UserError(f"{mask_url(url)}: cannot read the schema ({res.error})")
        return list(res.rows)

    where = "schema_name = current_schema() AND NOT internal"
    names = [r[0] for r in rows(f"SELECT table_name FROM duckdb_tables() WHERE {where} AND NOT temporary ORDER BY table_name")]
    tables = {n: Table(n, []) for n in names}
    for t, name, typ, comment in rows(f"SELECT table_name, column_name, data_type, comment FROM duckdb_columns() "
                                      f"WHERE {where} ORDER BY table_name, column_index"):
        if t in tables:
            tables[t].columns.append(Column(name, typ, False, " ".join((comment or "").split())))
    keys = "schema_name = current_schema()"
    for t, name in rows(f"SELECT table_name, unnest(constraint_column_names) FROM duckdb_constraints() "
                        f"WHERE {keys} AND constraint_type = 'PRIMARY KEY'"):
        if t in tables and (c := tables[t].column(name)) is not None:
            c.primary_key = True
    for t, name, ref_t, ref_c in rows(f"SELECT table_name, unnest(constraint_column_names), referenced_table, "
                                      f"unnest(referenced_column_names) FROM duckdb_constraints() "
                                      f"WHERE {keys} AND constraint_type = 'FOREIGN KEY' ORDER BY constraint_index"):
        if t in tables:
            tables[t].foreign_keys.append(ForeignKey(name, ref_t, ref_c))
    return Schema(db_id, list(tables.values()))


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
