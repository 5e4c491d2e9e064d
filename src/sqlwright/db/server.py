"""What the PostgreSQL, MySQL/MariaDB and DuckDB executors share: the text guard, a few
reused connections per worker, a watchdog that stops a query that overruns, the row cap and
value normalisation. Each engine supplies how to connect, run, interrupt and classify.

``execute(target, sql) -> ExecResult`` never raises for anything a query can do. The
engine's own timeout stops a query first; the watchdog interrupts it ``WATCHDOG_SLACK``
seconds later in case the engine did not (PostgreSQL cancel request, MySQL ``KILL QUERY``,
DuckDB ``interrupt()``), and after a watchdog stop the connection is checked and dropped
when it is not usable, so nothing keeps running on the server. The watchdog is one thread
per executor, armed for each statement and disarmed after it (a thread started per
statement cost more than the statement on Spider's queries: bench/RESULTS.md, issue 15's
speed section); disarming waits for an interrupt already under way, so it never reaches
the next statement.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import OrderedDict
from typing import Any

from sqlwright.db import values
from sqlwright.db.guard import refusal
from sqlwright.db.urls import mask_in, mask_url
from sqlwright.types import DEFAULT_LIMITS, ExecResult, Limits, Status

WATCHDOG_SLACK = 0.25  # seconds after the engine's own timeout
FETCH_CHUNK = 1024


class ConnectFailed(Exception):
    """Opening a target failed: ``status`` (DB_MISSING, RUNTIME_ERROR) and a one-line reason."""

    def __init__(self, status: Status, message: str, unreachable: bool = False):
        super().__init__(message)
        self.status = status
        self.unreachable = unreachable  # the server or login itself failed (not one database)


def missing_driver(package: str, extra: str) -> ImportError:
    return ImportError(f"{package} is not installed; install with: pip install 'sqlwright[{extra}]'")


class Watchdog:
    """A daemon thread that calls the armed action once its deadline passes, unless it is
    disarmed first. One statement at a time: ``arm`` replaces what was armed.

    Arming wakes the thread only when it sleeps past the new deadline (nothing armed
    before): a run of short statements, each armed for the same timeout, wakes it about
    once per timeout, not once per statement."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._deadline = 0.0
        self._action: Any = None
        self._running = False
        self._wake_at = math.inf  # when the sleeping thread next looks (inf: only when notified)
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float, action: Any) -> None:
        with self._cond:
            if self._thread is None or not self._thread.is_alive():  # first use, or in a forked child
                self._thread = threading.Thread(target=self._loop, name="sqlwright-watchdog", daemon=True)
                self._thread.start()
            self._deadline = time.monotonic() + seconds
            self._action = action
            if self._deadline < self._wake_at:
                self._cond.notify_all()

    def disarm(self) -> None:
        """Cancel what is armed; if its action is running, wait until it has finished."""
        with self._cond:
            self._action = None
            while self._running:
                self._cond.wait()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._action is None or (now := time.monotonic()) < self._deadline:
                    self._wake_at = math.inf if self._action is None else self._deadline
                    self._cond.wait(None if self._action is None else self._deadline - now)
                self._wake_at = math.inf
                action, self._action, self._running = self._action, None, True
            try:
                with contextlib.suppress(Exception):
                    action()
            finally:
                with self._cond:
                    self._running = False
                    self._cond.notify_all()


class ServerExecutor:
    dialect = ""
    watchdog_slack = WATCHDOG_SLACK
    streams_rows = True  # rows arrive as they are fetched: past the row cap, the query is stopped

    def __init__(self, limits: Limits = DEFAULT_LIMITS, max_open: int = 4) -> None:
        self.limits = limits
        self.max_open = max_open
        self._conns: OrderedDict[str, Any] = OrderedDict()
        self._watchdog = Watchdog()

    # -- what an engine provides --------------------------------------------------------
    def _open(self, target: str) -> Any:  # raises ConnectFailed
        raise NotImplementedError

    def _start(self, conn: Any, sql: str) -> Any:
        """Run ``sql`` on ``conn``; return a cursor with ``description`` and ``fetchmany``."""
        raise NotImplementedError

    def _interrupt(self, conn: Any) -> None:
        raise NotImplementedError

    def _finish(self, conn: Any, cursor: Any) -> None:
        """End the statement's transaction (rollback); raise when the connection is unusable."""

    def _classify(self, e: Exception) -> tuple[Status, str] | None:
        """(status, message) for a driver error; None: not a driver error (re-raise)."""
        raise NotImplementedError

    def _disconnect(self, conn: Any) -> None:
        conn.close()

    def _closed(self, conn: Any) -> bool:
        """Whether a reused connection was closed since (an interrupted statement closes it)."""
        return False

    # -- connections --------------------------------------------------------------------
    def connection(self, target: str) -> Any:
        conn = self._conns.get(target)
        if conn is not None and not self._closed(conn):
            self._conns.move_to_end(target)
            return conn
        conn = self._conns[target] = self._open(target)
        while len(self._conns) > self.max_open:
            self._drop(next(iter(self._conns)))
        return conn

    def probe(self, target: str) -> None:
        """Open ``target`` (raises ConnectFailed) and close it again."""
        self._disconnect(self._open(target))

    def _drop(self, target: str) -> None:
        conn = self._conns.pop(target, None)
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken
                self._disconnect(conn)

    def close(self) -> None:
        for target in list(self._conns):
            self._drop(target)

    # -- execution ----------------------------------------------------------------------
    def execute(self, target: str, sql: str) -> ExecResult:
        if not sql or not sql.strip():
            return ExecResult(Status.SYNTAX_ERROR, error="empty SQL")
        why = refusal(sql, self.dialect)
        if why:
            return ExecResult(Status.SYNTAX_ERROR if why.startswith("syntax error") else Status.FORBIDDEN, error=why)
        try:
            conn = self.connection(target)
        except ConnectFailed as e:
            return ExecResult(e.status, error=mask_in(str(e), target))
        limits = self.limits
        fired = threading.Event()

        def stop() -> None:
            fired.set()
            with contextlib.suppress(Exception):  # the connection went away meanwhile
                self._interrupt(conn)

        watchdog = self._watchdog
        start = time.monotonic()
        cursor = None
        result: ExecResult
        watchdog.arm(limits.timeout + self.watchdog_slack, stop)
        try:
            cursor = self._start(conn, sql)
            if cursor.description is None:
                result = ExecResult(Status.FORBIDDEN, error="not a query: only SELECT statements are executed")
            else:
                rows: list = []
                while chunk := cursor.fetchmany(FETCH_CHUNK):
                    rows.extend(chunk)
                    if len(rows) > limits.max_rows:
                        if self.streams_rows:
                            stop()  # the rest is not wanted: stop sending it
                        return self._done(target, conn, cursor, ExecResult(
                            Status.TOO_MANY_ROWS, error=f"more than {limits.max_rows} rows (raise --max-rows)",
                            elapsed=time.monotonic() - start))  # fmt: skip
                columns = tuple(str(d[0]) for d in cursor.description)
                result = ExecResult(Status.OK, values.rows(rows), columns, elapsed=time.monotonic() - start)
        except Exception as e:
            got = self._classify(e)
            if got is None:
                watchdog.disarm()
                raise
            status, msg = got
            if fired.is_set() and status is not Status.TIMEOUT:
                status, msg = Status.TIMEOUT, ""
            if status is Status.TIMEOUT:
                msg = f"stopped after {limits.timeout:g} s"
            result = ExecResult(status, error=mask_in(" ".join(msg.split()), target), elapsed=time.monotonic() - start)
        return self._done(target, conn, cursor, result)

    def _done(self, target: str, conn: Any, cursor: Any, result: ExecResult) -> ExecResult:
        self._watchdog.disarm()
        try:
            self._finish(conn, cursor)
        except Exception:  # broken, or left busy by an interrupt: open a fresh one next time
            self._drop(target)
        return result

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(mask_url(t) for t in self._conns)})"
