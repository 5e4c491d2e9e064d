"""Read-only, time- and size-limited execution on PostgreSQL through psycopg 3.

Locks, strongest last:

1. the text guard (``sqlwright.db.guard``): one statement, and a query, so ``COPY … TO
   'file'``, ``SET``, ``DO`` and functions with effects outside the transaction are refused
   before anything is sent;
2. every statement is sent with the extended protocol (in a pipeline with its ``BEGIN READ
   ONLY``, or prepared where libpq has no pipelines), which the server refuses for a string
   holding several statements;
3. every statement runs in its own ``BEGIN READ ONLY`` transaction, rolled back afterwards,
   and the session's ``default_transaction_read_only`` is on: a write fails with
   ``cannot execute … in a read-only transaction`` even for a superuser;
4. a login role without write privileges (README: "A read-only role") is the strongest
   lock, and what to give sqlwright on a database that matters.

The timeout is the server's ``statement_timeout``; the watchdog sends a cancel request
shortly after in case it did not fire, and ``client_connection_check_interval`` makes the
server notice a worker that was killed mid-query.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlwright.db.server import ConnectFailed, ServerExecutor, missing_driver
from sqlwright.db.urls import mask_url
from sqlwright.errors import first_line
from sqlwright.types import Status

CONNECT_TIMEOUT = 10


def _driver():
    try:
        import psycopg
    except ImportError:
        raise missing_driver("psycopg", "postgres") from None
    return psycopg


@functools.cache
def _pipeline_supported() -> bool:
    return bool(_driver().Pipeline.is_supported())


def conninfo(target: str) -> str:
    """The libpq URL of a target (a SQLAlchemy-style ``+driver`` dropped)."""
    scheme, rest = target.split("://", 1)
    return "postgresql://" + rest if "+" in scheme or scheme == "postgres" else target


class PostgresExecutor(ServerExecutor):
    dialect = "postgresql"

    def _open(self, target: str) -> Any:
        psycopg = _driver()
        try:
            # autocommit while the session is set up: the SETs are one round trip, no BEGIN/COMMIT
            conn = psycopg.connect(conninfo(target), connect_timeout=CONNECT_TIMEOUT, application_name="sqlwright",
                                   autocommit=True)  # fmt: skip
        except psycopg.Error as e:
            msg = first_line(e)
            if getattr(e, "sqlstate", None) == "3D000" or "does not exist" in msg and "database" in msg:
                raise ConnectFailed(Status.DB_MISSING, f"database not found: {mask_url(target)}") from None
            raise ConnectFailed(Status.RUNTIME_ERROR, f"{mask_url(target)}: cannot connect: {msg}", unreachable=True) from None
        try:
            sets = [f"SET statement_timeout = {max(1, int(self.limits.timeout * 1000))}",
                    "SET default_transaction_read_only = on", "SET idle_in_transaction_session_timeout = 60000",
                    f"SET work_mem = '{max(4, min(self.limits.memory_mb // 8, 2047))}MB'"]  # fmt: skip
            if conn.info.server_version >= 140000:
                sets.append("SET client_connection_check_interval = 1000")
            with conn.cursor() as cur:
                cur.execute("; ".join(sets))  # our own text, one round trip (the simple protocol)
            conn.autocommit = False
            conn.read_only = True  # psycopg starts each transaction with BEGIN READ ONLY
        except psycopg.Error as e:
            conn.close()
            raise ConnectFailed(Status.RUNTIME_ERROR, f"{mask_url(target)}: cannot set up the session: {first_line(e)}") from None
        return conn

    def _start(self, conn: Any, sql: str) -> Any:
        cur = conn.cursor()
        if _pipeline_supported():
            # a pipeline sends BEGIN READ ONLY and the statement in one round trip, the statement
            # with the extended protocol (every pipeline does): one statement only. ~10% faster
            # on Spider dev than preparing it (bench/RESULTS.md, issue 15's third pass).
            with conn.pipeline():
                cur.execute(sql)
        else:  # libpq before 14: prepare it, the extended protocol again
            cur.execute(sql, prepare=True)
        return cur

    def _interrupt(self, conn: Any) -> None:
        (getattr(conn, "cancel_safe", None) or conn.cancel)()

    def _finish(self, conn: Any, cursor: Any) -> None:
        if cursor is not None:
            cursor.close()
        conn.rollback()
        if conn.closed or conn.broken:
            raise ConnectionError("connection lost")

    def _classify(self, e: Exception) -> tuple[Status, str] | None:
        psycopg = _driver()
        if not isinstance(e, psycopg.Error):
            return None
        state = getattr(e, "sqlstate", None) or ""
        msg = first_line(e)
        if state == "57014":  # query_canceled: statement_timeout or the watchdog's cancel
            return Status.TIMEOUT, msg
        if state in ("25006", "42501") or state.startswith("25"):  # read-only transaction, insufficient privilege
            return Status.FORBIDDEN, f"refused, evaluation is read-only: {msg}"
        if state == "42601" and "multiple commands" in msg:
            return Status.FORBIDDEN, "multiple statements: send one SELECT"
        if state.startswith("42"):  # syntax error or access rule violation: did not compile
            return Status.SYNTAX_ERROR, msg
        if state.startswith("53"):
            return Status.RUNTIME_ERROR, f"out of resources: {msg}"
        return Status.RUNTIME_ERROR, msg
