"""Read-only, time- and size-limited execution on PostgreSQL through psycopg 3.

Locks, strongest last:

1. the text guard (``sqlwright.db.guard``): one statement, and a query, so ``COPY … TO
   'file'``, ``SET``, ``DO`` and functions with effects outside the transaction are refused
   before anything is sent;
2. every statement is sent with the extended protocol (in one libpq pipeline with its
   ``BEGIN READ ONLY`` and ``ROLLBACK``, or prepared where libpq has no pipelines), which
   the server refuses for a string holding several statements;
3. every statement runs in its own ``BEGIN READ ONLY`` transaction, rolled back afterwards
   (whatever it set, ``set_config`` included, is undone), and the session's
   ``default_transaction_read_only`` is on: a write fails with ``cannot execute … in a
   read-only transaction`` even for a superuser;
4. a login role without write privileges (README: "A read-only role") is the strongest
   lock, and what to give sqlwright on a database that matters.

The timeout is the server's ``statement_timeout``; the watchdog sends a cancel request
shortly after in case it did not fire, and ``client_connection_check_interval`` makes the
server notice a worker that was killed mid-query.
"""

from __future__ import annotations

import functools
import select
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


class _Rows:
    """A statement's result as the executor reads it from a cursor: ``description`` (None:
    not a query) and ``fetchmany``."""

    def __init__(self, description: list[tuple[str]] | None, rows: list[tuple]) -> None:
        self.description = description
        self._rows = rows
        self._at = 0

    def fetchmany(self, size: int) -> list[tuple]:
        chunk = self._rows[self._at : self._at + size]
        self._at += len(chunk)
        return chunk

    def close(self) -> None:
        self._rows = []


def _wait(pgconn: Any, write: bool) -> None:
    """Block (without the GIL, so the watchdog runs) until the socket can be read, or also
    written when ``write``; then take in what arrived."""
    fd = pgconn.socket
    if hasattr(select, "poll"):  # no limit on the descriptor's number, unlike select()
        poller = select.poll()
        poller.register(fd, select.POLLIN | (select.POLLOUT if write else 0))
        poller.poll()
    else:  # Windows
        select.select([fd], [fd] if write else [], [])
    pgconn.consume_input()


def _read_only_round_trip(conn: Any, sql: str, max_rows: int) -> _Rows:
    """``BEGIN READ ONLY``, the statement, Sync, ``ROLLBACK``, Sync: sent at once in a libpq
    pipeline and answered in one round trip. Every command goes with the extended protocol,
    so the server refuses a string of several statements; the Sync after the statement ends
    its transaction's segment, so the ``ROLLBACK`` runs whether or not the statement failed.
    psycopg's cursor spent 4 waits and most of a statement's client time on the same work
    (bench/RESULTS.md, issue 15's fourth pass); its libpq wrapper and its loaders (the same
    values as a cursor gives) do it here. At most ``max_rows + 1`` rows are loaded: one more
    tells the caller there are too many. A statement's error is raised after the round trip,
    with the connection idle again; a failure of the connection itself closes it."""
    psycopg = _driver()
    from psycopg.adapt import Transformer
    from psycopg.errors import error_from_result

    pq = psycopg.pq
    pg = conn.pgconn
    encoding = conn.info.encoding
    try:
        text = sql.encode(encoding)
    except UnicodeEncodeError as e:
        name = conn.info.parameter_status("client_encoding") or encoding
        raise psycopg.DataError(f"the statement cannot be sent in the client encoding {name}: {e.reason}") from None
    try:
        pg.enter_pipeline_mode()
        pg.send_query_params(b"BEGIN READ ONLY", None)
        pg.send_query_params(text, None)
        pg.pipeline_sync()
        pg.send_query_params(b"ROLLBACK", None)
        pg.pipeline_sync()
        while pg.flush():
            _wait(pg, write=True)
        results, syncs = [], 0
        while syncs < 2:
            while pg.is_busy():
                _wait(pg, write=False)
            res = pg.get_result()
            if res is None:  # the end of one command's results
                continue
            if res.status == pq.ExecStatus.PIPELINE_SYNC:
                syncs += 1
            elif res.status in (pq.ExecStatus.COPY_OUT, pq.ExecStatus.COPY_IN, pq.ExecStatus.COPY_BOTH):
                # COPY … TO STDOUT / FROM STDIN (the guard refuses COPY; this is the lock below it):
                # the connection waits for the copy, so it goes, closed below
                raise psycopg.errors.InsufficientPrivilege("COPY is not executed: only queries are")
            else:
                results.append(res)
        pg.exit_pipeline_mode()
    except BaseException:
        conn.close()  # the protocol is half way through: the connection cannot be reused
        raise
    begin, res = results[0], results[1]
    for r in (begin, res):
        if r.status == pq.ExecStatus.FATAL_ERROR:
            raise error_from_result(r, encoding)
    if res.status != pq.ExecStatus.TUPLES_OK:  # a command, not a query (or an empty string)
        return _Rows(None, [])
    tx = Transformer(conn)
    tx.set_pgresult(res)
    rows = tx.load_rows(0, min(res.ntuples, max_rows + 1), tuple)
    return _Rows([(res.fname(i).decode(encoding),) for i in range(res.nfields)], rows)


class PostgresExecutor(ServerExecutor):
    dialect = "postgresql"
    # the result is whole on arrival: nothing to stop past the row cap (a cancel sent then
    # could only reach the connection's next statement)
    streams_rows = False

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
        if not _pipeline_supported():  # libpq before 14: prepared, the extended protocol again
            cur = conn.cursor()
            cur.execute(sql, prepare=True)
            return cur
        return _read_only_round_trip(conn, sql, self.limits.max_rows)

    def _closed(self, conn: Any) -> bool:
        return conn.closed

    def _interrupt(self, conn: Any) -> None:
        (getattr(conn, "cancel_safe", None) or conn.cancel)()

    def _finish(self, conn: Any, cursor: Any) -> None:
        if cursor is not None:
            cursor.close()
        # the prepared path's transaction (a round trip ends its own); a closed connection raises here
        if conn.pgconn.transaction_status != _driver().pq.TransactionStatus.IDLE:
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
