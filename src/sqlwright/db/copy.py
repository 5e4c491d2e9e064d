"""Copy a SQLite database into PostgreSQL, MySQL/MariaDB or DuckDB, types mapped.

How, per engine, and why: each engine's own bulk path through the driver sqlwright already
executes with (no other tool to install): PostgreSQL ``COPY … FROM STDIN`` (psycopg's
``copy``), MySQL multi-row ``INSERT`` (PyMySQL's ``executemany``), DuckDB an Arrow table
(``pyarrow``, else ``executemany``). DuckDB's SQLite scanner would be the natural choice
there, but it is an extension downloaded at run time, which offline machines cannot do;
pgloader is a separate binary; SQLAlchemy would add a layer without adding speed or types
(the mapping below is the part that matters, and it needs the values, not the declarations).

Types come from the values, not only from the declared type: SQLite stores any value in any
column, so a column's type is chosen from the storage classes its values actually have
(``typeof``): only integers → ``BIGINT``; integers and reals → ``DOUBLE PRECISION``
(``DOUBLE``); any text → ``TEXT`` (numbers in it become text, as SQLite compares them with
text); any blob → ``BYTEA`` / ``LONGBLOB`` / ``BLOB``; no values → from the declared type's
affinity. Constraints are not copied (benchmark data breaks its own keys); the copy is for
executing queries, and names keep their spelling, lower-cased on PostgreSQL when they are
plain identifiers (PostgreSQL folds unquoted names to lower case; the gold SQL is unquoted).
MySQL tables use the ``utf8mb4_bin`` collation: text compares case-sensitively, as in SQLite.
"""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlwright.db.sqlite import readonly_uri
from sqlwright.db.urls import Url, mask_url
from sqlwright.errors import UserError, first_line

TYPES = {  # storage class -> per engine
    "integer": {"postgresql": "BIGINT", "mysql": "BIGINT", "duckdb": "BIGINT"},
    "real": {"postgresql": "DOUBLE PRECISION", "mysql": "DOUBLE", "duckdb": "DOUBLE"},
    "text": {"postgresql": "TEXT", "mysql": "LONGTEXT", "duckdb": "VARCHAR"},
    "blob": {"postgresql": "BYTEA", "mysql": "LONGBLOB", "duckdb": "BLOB"},
}
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
BATCH = 5000


@dataclass
class CopyStats:
    db_id: str
    target: str  # masked
    tables: int = 0
    rows: int = 0
    seconds: float = 0.0
    skipped: bool = False  # already there (not --replace)
    types: dict[str, int] = field(default_factory=dict)  # target type -> columns


def affinity(declared: str) -> str:
    """SQLite's type affinity of a declared type, as a storage class for an empty column."""
    d = (declared or "").upper()
    if "INT" in d:
        return "integer"
    if any(k in d for k in ("CHAR", "CLOB", "TEXT")):
        return "text"
    if "BLOB" in d or not d:
        return "text" if not d else "blob"
    if any(k in d for k in ("REAL", "FLOA", "DOUB")):
        return "real"
    if any(k in d for k in ("DEC", "NUM", "BOOL")):
        return "real" if "DEC" in d or "NUM" in d else "integer"
    return "text"  # DATE, DATETIME, VARCHAR-like names: text in every Spider/BIRD database


def _qs(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def target_name(name: str, dialect: str) -> str:
    return name.lower() if dialect == "postgresql" and _PLAIN.match(name) else name


def quote(name: str, dialect: str) -> str:
    name = target_name(name, dialect)
    if dialect == "mysql":
        return "`" + name.replace("`", "``") + "`"
    return '"' + name.replace('"', '""') + '"'


def read_tables(conn: sqlite3.Connection) -> list[tuple[str, list[tuple[str, str]]]]:
    """(table, [(column, storage class)]) for every user table, storage classes from the values."""
    out = []
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid")]
    for t in names:
        cols = []
        for _, name, declared, *_ in conn.execute(f"PRAGMA table_info({_qs(t)})"):
            kinds = {k for (k,) in conn.execute(f"SELECT DISTINCT typeof({_qs(name)}) FROM {_qs(t)}")} - {"null"}
            if "blob" in kinds:
                kind = "blob"
            elif "text" in kinds:
                kind = "text"
            elif "real" in kinds:
                kind = "real"
            elif "integer" in kinds:
                kind = "integer"
            else:
                kind = affinity(declared)
            cols.append((name, kind))
        out.append((t, cols))
    return out


def _convert(row: tuple, kinds: list[str]) -> tuple:
    out = []
    for v, k in zip(row, kinds, strict=True):
        if v is None:
            out.append(None)
        elif k == "text" and not isinstance(v, str):
            out.append(v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v))
        elif k == "blob" and not isinstance(v, bytes):
            out.append(str(v).encode())
        elif k == "real" and isinstance(v, int):
            out.append(float(v))
        else:
            out.append(v)
    return tuple(out)


# -- per engine: create the database, open a writing connection ----------------------------
def _pg_open(url: Url, target: str, replace: bool):
    import psycopg

    from sqlwright.db.postgres import conninfo

    try:
        try:
            conn = psycopg.connect(conninfo(target), autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as e:
            if "does not exist" not in str(e):
                raise
            admin = psycopg.connect(conninfo(target.replace(f"/{url.database}", "/postgres", 1)), autocommit=True, connect_timeout=10)
            with admin:
                admin.execute(f"CREATE DATABASE {_qs(url.database)}")
            conn = psycopg.connect(conninfo(target), autocommit=True, connect_timeout=10)
    except psycopg.Error as e:
        raise UserError(f"{mask_url(target)}: cannot connect to load: {first_line(e)}") from None
    return conn


def _mysql_open(url: Url, target: str, replace: bool):
    import pymysql

    from sqlwright.db.mysql import connect_args

    args = connect_args(target)
    db = args.pop("database")
    if not db:
        raise UserError(f"{mask_url(target)}: name the database in the URL (…/{{db_id}})")
    try:
        conn = pymysql.connect(**args, local_infile=False)
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
            cur.execute(f"USE `{db}`")
    except pymysql.MySQLError as e:
        raise UserError(f"{mask_url(target)}: cannot connect to load: {e.args[-1] if e.args else first_line(e)}") from None
    return conn


def copy_sqlite(sqlite_path: str | Path, target: str, db_id: str, replace: bool = False) -> CopyStats:
    """Copy every user table of ``sqlite_path`` into ``target`` (a URL). An existing database
    with tables is left alone unless ``replace`` (its tables are dropped and copied again)."""
    from sqlwright.db.registry import dialect_of

    t0 = time.monotonic()
    dialect = dialect_of(target)
    if dialect not in TYPES["text"]:
        raise UserError(f"{mask_url(target)}: db load copies into postgresql, mysql/mariadb or duckdb URLs")
    url = Url.parse(target)
    src = sqlite3.connect(readonly_uri(sqlite_path), uri=True)
    src.text_factory = lambda b: b.decode("utf-8", "replace")
    stats = CopyStats(db_id, mask_url(target))
    try:
        tables = read_tables(src)
        if dialect == "duckdb":
            _copy_duckdb(src, tables, url, replace, stats)
        else:
            conn = _pg_open(url, target, replace) if dialect == "postgresql" else _mysql_open(url, target, replace)
            try:
                _copy_server(src, conn, tables, dialect, replace, stats)
            finally:
                conn.close()
    finally:
        src.close()
    stats.seconds = round(time.monotonic() - t0, 3)
    return stats


def _existing(conn, dialect: str) -> set[str]:
    cur = conn.cursor()
    if dialect == "postgresql":
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
    else:
        cur.execute("SHOW TABLES")
    names = {r[0] for r in cur.fetchall()}
    cur.close()
    return names


def _copy_server(src, conn, tables, dialect: str, replace: bool, stats: CopyStats) -> None:
    have = _existing(conn, dialect)
    wanted = {target_name(t, dialect) for t, _ in tables}
    if have & wanted and not replace:
        stats.skipped = True
        return
    cur = conn.cursor()
    for t, cols in tables:
        qt = quote(t, dialect)
        cur.execute(f"DROP TABLE IF EXISTS {qt}")
        spec = ", ".join(f"{quote(c, dialect)} {TYPES[k][dialect]}" for c, k in cols)
        cur.execute(f"CREATE TABLE {qt} ({spec})" + (" CHARACTER SET utf8mb4 COLLATE utf8mb4_bin" if dialect == "mysql" else ""))
        kinds = [k for _, k in cols]
        names = ", ".join(quote(c, dialect) for c, _ in cols)
        rows = src.execute(f"SELECT {', '.join(_qs(c) for c, _ in cols)} FROM {_qs(t)}")
        if dialect == "postgresql":
            with cur.copy(f"COPY {qt} ({names}) FROM STDIN") as cp:
                for row in rows:
                    cp.write_row(_convert(row, kinds))
                    stats.rows += 1
        else:
            sql = f"INSERT INTO {qt} ({names}) VALUES ({', '.join(['%s'] * len(cols))})"
            while batch := rows.fetchmany(BATCH):
                cur.executemany(sql, [_convert(r, kinds) for r in batch])
                stats.rows += len(batch)
        stats.tables += 1
        for _, k in cols:
            stats.types[TYPES[k][dialect]] = stats.types.get(TYPES[k][dialect], 0) + 1
    cur.close()
    if dialect == "mysql":
        conn.commit()


def _copy_duckdb(src, tables, url: Url, replace: bool, stats: CopyStats) -> None:
    import duckdb

    path = Path(url.database)
    if path.exists() and not replace:
        stats.skipped = True
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.unlink(missing_ok=True)
    con = duckdb.connect(str(tmp))
    try:
        try:
            import pyarrow as pa
        except ImportError:
            pa = None
        arrow = {"integer": "int64", "real": "float64", "text": "string", "blob": "binary"}
        for t, cols in tables:
            qt = quote(t, "duckdb")
            spec = ", ".join(f"{quote(c, 'duckdb')} {TYPES[k]['duckdb']}" for c, k in cols)
            con.execute(f"CREATE TABLE {qt} ({spec})")
            kinds = [k for _, k in cols]
            data = [_convert(r, kinds) for r in src.execute(f"SELECT {', '.join(_qs(c) for c, _ in cols)} FROM {_qs(t)}")]
            if data and pa is not None:
                table = pa.table({f"c{i}": pa.array([r[i] for r in data], type=getattr(pa, arrow[k])())
                                  for i, k in enumerate(kinds)})  # fmt: skip
                con.register("_sqlwright_rows", table)
                con.execute(f"INSERT INTO {qt} SELECT * FROM _sqlwright_rows")
                con.unregister("_sqlwright_rows")
            elif data:
                con.executemany(f"INSERT INTO {qt} VALUES ({', '.join(['?'] * len(cols))})", data)
            stats.rows += len(data)
            stats.tables += 1
            for _, k in cols:
                stats.types[TYPES[k]["duckdb"]] = stats.types.get(TYPES[k]["duckdb"], 0) + 1
        con.execute("CHECKPOINT")
    finally:
        con.close()
    tmp.replace(path)
