"""Read-only, time- and size-limited execution of one SQL string on a SQLite file.

Four locks keep a prediction from changing a database, any one of which suffices for the
common cases:

1. the file is opened with ``mode=ro&immutable=1`` (no writes, no journal, no -wal/-shm);
2. ``PRAGMA query_only`` is on;
3. an authorizer allows only reads (SELECT, column reads, functions, recursive CTEs and a
   few introspection PRAGMAs) and refuses everything else at compile time, which also
   stops what read-only mode lets through: ``ATTACH``, ``VACUUM INTO`` (writes a new
   file), ``CREATE TEMP TABLE``;
4. Python's sqlite3 refuses strings holding more than one statement.

The timeout is enforced inside SQLite by a progress handler that interrupts the running
statement, so nothing keeps burning CPU after it; the memory cap is SQLite's hard heap
limit with temporary tables kept in memory.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections import OrderedDict
from pathlib import Path

from sqlwright.types import DEFAULT_LIMITS, ExecResult, Limits, Status

_ALLOWED_ACTIONS = {
    sqlite3.SQLITE_SELECT,
    sqlite3.SQLITE_READ,
    sqlite3.SQLITE_FUNCTION,
    getattr(sqlite3, "SQLITE_RECURSIVE", 33),
}
_READ_PRAGMAS = {
    "table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo",
    "foreign_key_list", "collation_list", "function_list", "database_list",
}  # fmt: skip
_ACTION_NAMES = {
    getattr(sqlite3, name): name.removeprefix("SQLITE_")
    for name in dir(sqlite3)
    if name.startswith(("SQLITE_CREATE", "SQLITE_DROP", "SQLITE_ALTER", "SQLITE_DELETE"))
    or name
    in {"SQLITE_INSERT", "SQLITE_UPDATE", "SQLITE_ATTACH", "SQLITE_DETACH", "SQLITE_PRAGMA",
        "SQLITE_TRANSACTION", "SQLITE_REINDEX", "SQLITE_ANALYZE", "SQLITE_SAVEPOINT"}
}  # fmt: skip
_PROGRESS_STEPS = 1000  # VM instructions between two deadline checks
_FETCH_CHUNK = 1024


def _leading_keyword(sql: str) -> str:
    """The statement's first keyword, comments skipped: 'DROP', 'VACUUM', ..."""
    text = re.sub(r"--[^\n]*|/\*.*?\*/", " ", sql, flags=re.S).split()
    while text and text[0].upper() in ("EXPLAIN", "QUERY", "PLAN"):  # the validity check's EXPLAIN: name what it wraps
        text = text[1:]
    return text[0].upper() if text else "statement"


def readonly_uri(path: str | Path) -> str:
    """A SQLite URI that opens ``path`` read-only and immutable (no journal, no -wal/-shm)."""
    return Path(path).resolve().as_uri() + "?mode=ro&immutable=1"


class SQLiteExecutor:
    """Executes SQL on SQLite files, keeping a few read-only connections open.

    One instance per process; it is not thread-safe (nothing here needs threads).
    """

    dialect = "sqlite"

    def __init__(self, limits: Limits = DEFAULT_LIMITS, max_open: int = 16) -> None:
        self.limits = limits
        self.max_open = max_open
        self._conns: OrderedDict[str, sqlite3.Connection] = OrderedDict()
        self._deadline = 0.0
        self._denied: list[str] = []
        # Process-wide cap on SQLite's heap; a query over it fails with SQLITE_NOMEM.
        with sqlite3.connect(":memory:") as c:
            c.execute(f"PRAGMA hard_heap_limit={int(limits.memory_mb) * 1024 * 1024}")

    # -- connections ---------------------------------------------------------------
    def _authorize(self, action, arg1, arg2, _db, _trigger):
        if action in _ALLOWED_ACTIONS:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_PRAGMA and (arg1 or "").lower() in _READ_PRAGMAS:
            return sqlite3.SQLITE_OK
        name = _ACTION_NAMES.get(action, f"action {action}")
        self._denied.append(f"{name} {arg1}" if arg1 else name)
        return sqlite3.SQLITE_DENY

    def _progress(self) -> int:
        return 1 if time.monotonic() > self._deadline else 0

    def _connect(self, path: str) -> sqlite3.Connection:
        conn = self._conns.get(path)
        if conn is not None:
            self._conns.move_to_end(path)
            return conn
        conn = sqlite3.connect(readonly_uri(path), uri=True, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA query_only=1")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.set_authorizer(self._authorize)
        conn.set_progress_handler(self._progress, _PROGRESS_STEPS)
        self._conns[path] = conn
        if len(self._conns) > self.max_open:
            self._conns.popitem(last=False)[1].close()
        return conn

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()

    # -- execution -----------------------------------------------------------------
    def execute(self, path: str, sql: str) -> ExecResult:
        if not os.path.isfile(path):
            return ExecResult(Status.DB_MISSING, error=f"database file not found: {path}")
        if not sql or not sql.strip():
            return ExecResult(Status.SYNTAX_ERROR, error="empty SQL")
        try:
            conn = self._connect(path)
        except sqlite3.Error as e:
            return ExecResult(Status.RUNTIME_ERROR, error=f"cannot open database: {e}")
        limits = self.limits
        self._denied.clear()
        start = time.monotonic()
        self._deadline = start + limits.timeout
        cur = conn.cursor()
        try:
            cur.execute(sql)
            if cur.description is None:  # not a query: nothing to compare
                return ExecResult(
                    Status.FORBIDDEN, error="not a query: only SELECT statements are executed"
                )
            rows: list[tuple] = []
            while chunk := cur.fetchmany(_FETCH_CHUNK):
                rows.extend(chunk)
                if len(rows) > limits.max_rows:
                    return ExecResult(
                        Status.TOO_MANY_ROWS,
                        error=f"more than {limits.max_rows} rows (raise --max-rows)",
                        elapsed=time.monotonic() - start,
                    )
            columns = tuple(d[0] for d in cur.description)
            return ExecResult(Status.OK, tuple(rows), columns, elapsed=time.monotonic() - start)
        except (sqlite3.Error, sqlite3.Warning, OverflowError, ValueError, MemoryError) as e:
            elapsed = time.monotonic() - start
            return ExecResult(*self._classify(conn, sql, e), elapsed=elapsed)
        finally:
            cur.close()

    def _classify(self, conn: sqlite3.Connection, sql: str, e: Exception) -> tuple[Status, None, None, str]:
        msg = " ".join(str(e).split()) or type(e).__name__
        code = getattr(e, "sqlite_errorname", "")
        if self._denied:
            what = ", ".join(dict.fromkeys(self._denied))
            verb = _leading_keyword(sql)
            return Status.FORBIDDEN, None, None, f"refused, evaluation is read-only: {verb} ({what})"
        if "one statement at a time" in msg:
            return Status.FORBIDDEN, None, None, "multiple statements: send one SELECT"
        if code == "SQLITE_READONLY" or "readonly database" in msg:
            return Status.FORBIDDEN, None, None, "refused, evaluation is read-only: write"
        if code == "SQLITE_INTERRUPT" or msg == "interrupted":
            return Status.TIMEOUT, None, None, f"stopped after {self.limits.timeout:g} s"
        if code == "SQLITE_NOMEM" or isinstance(e, MemoryError) or "out of memory" in msg:
            return Status.RUNTIME_ERROR, None, None, f"out of memory (cap {self.limits.memory_mb} MiB)"
        if isinstance(e, sqlite3.OperationalError) and not self._compiles(conn, sql):
            return Status.SYNTAX_ERROR, None, None, msg
        return Status.RUNTIME_ERROR, None, None, msg

    def _compiles(self, conn: sqlite3.Connection, sql: str) -> bool:
        """Does the statement compile? EXPLAIN compiles without running the query."""
        self._deadline = time.monotonic() + self.limits.timeout
        try:
            conn.execute("EXPLAIN " + sql).fetchmany(1)
            return True
        except sqlite3.Error:
            return False
