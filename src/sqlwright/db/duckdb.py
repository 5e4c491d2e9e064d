"""Read-only, time- and size-limited execution on DuckDB files (``duckdb:///path.duckdb``).

Locks: the text guard (one statement, a query: no ``ATTACH``, ``COPY``, ``INSTALL``,
``SET``); the file opened with ``read_only=True`` (several worker processes may share it);
external access off (no reading or writing other files, no extensions) with the
configuration locked, so SQL cannot turn it back on. The timeout is ``interrupt()`` from
the watchdog; ``memory_limit`` is the memory cap.
"""

from __future__ import annotations

import os
from typing import Any

from sqlwright.db.server import ConnectFailed, ServerExecutor, missing_driver
from sqlwright.db.urls import Url
from sqlwright.errors import first_line
from sqlwright.types import Status


def _driver():
    try:
        import duckdb
    except ImportError:
        raise missing_driver("duckdb", "duckdb") from None
    return duckdb


def path_of(target: str) -> str:
    return Url.parse(target).database


class DuckDBExecutor(ServerExecutor):
    dialect = "duckdb"
    watchdog_slack = 0.0  # the watchdog is the timeout

    def __init__(self, *a, **kw) -> None:
        kw.setdefault("max_open", 16)
        super().__init__(*a, **kw)

    def _open(self, target: str) -> Any:
        duckdb = _driver()
        path = path_of(target)
        if not os.path.isfile(path):
            raise ConnectFailed(Status.DB_MISSING, f"database file not found: {path}")
        config = {"enable_external_access": False, "autoinstall_known_extensions": False,
                  "autoload_known_extensions": False, "memory_limit": f"{int(self.limits.memory_mb)}MB",
                  "threads": 1, "lock_configuration": True}  # fmt: skip
        try:
            return duckdb.connect(path, read_only=True, config=config)
        except duckdb.Error as e:
            raise ConnectFailed(Status.RUNTIME_ERROR, f"cannot open {path}: {first_line(e)}") from None

    def _start(self, conn: Any, sql: str) -> Any:
        return conn.execute(sql)

    def _interrupt(self, conn: Any) -> None:
        conn.interrupt()

    def _classify(self, e: Exception) -> tuple[Status, str] | None:
        duckdb = _driver()
        if not isinstance(e, duckdb.Error):
            return None
        msg = first_line(e)
        if isinstance(e, duckdb.InterruptException):
            return Status.TIMEOUT, msg
        if isinstance(e, duckdb.PermissionException) or "read-only" in msg:
            return Status.FORBIDDEN, f"refused, evaluation is read-only: {msg}"
        if isinstance(e, (duckdb.ParserException, duckdb.CatalogException, duckdb.BinderException)):
            return Status.SYNTAX_ERROR, msg
        if isinstance(e, duckdb.OutOfMemoryException):
            return Status.RUNTIME_ERROR, f"out of memory (cap {self.limits.memory_mb} MiB)"
        return Status.RUNTIME_ERROR, msg
