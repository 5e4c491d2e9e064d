"""Read-only, time- and size-limited execution on MySQL and MariaDB through PyMySQL.

Locks, strongest last:

1. the text guard (``sqlwright.db.guard``): one statement, and a query. This matters more
   here than anywhere: MySQL's DDL (``DROP``, ``CREATE``, ``ALTER``) commits implicitly and
   so escapes a transaction, and ``SELECT … INTO OUTFILE`` writes a file from a query;
2. the client does not ask for multi-statement support, so the server parses one statement;
3. the session's transactions are read-only (``SET SESSION TRANSACTION READ ONLY``) and each
   statement runs in its own ``START TRANSACTION READ ONLY``, rolled back afterwards: a
   write fails with error 1792 even for a login with ALL PRIVILEGES;
4. a login with only ``SELECT`` (README: "A read-only role") is the strongest lock.

The timeout is the server's: ``max_statement_time`` (MariaDB, seconds) or
``max_execution_time`` (MySQL, milliseconds, SELECT only); the watchdog sends ``KILL QUERY``
on a second connection shortly after, so a statement the server's limit does not cover
stops too. Rows are streamed (an unbuffered cursor), so the row cap holds memory down.

A password comes from the URL, else ``MYSQL_PWD``, else the ``[client]`` section of
``~/.my.cnf`` (the client's usual places).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from typing import Any

from sqlwright.db.server import ConnectFailed, ServerExecutor, missing_driver
from sqlwright.db.urls import Url, mask_url
from sqlwright.errors import first_line
from sqlwright.types import Status

CONNECT_TIMEOUT = 10
# MySQL/MariaDB error numbers, by what they mean for a prediction
TIMEOUT_CODES = {1969, 3024, 1317, 1028}  # max_statement_time, max_execution_time, KILL QUERY, sort aborted
FORBIDDEN_CODES = {1792, 1227, 1142, 1143, 1044, 1370, 1290, 1086, 1045}  # read-only, access denied, --secure-file-priv, file exists
SYNTAX_CODES = {
    1064, 1146, 1054, 1305, 1630, 1052, 1109, 1111, 1055, 1056, 1140, 1241, 1248, 1222, 1060, 1066,
    1247, 1582, 1583, 1584, 1463, 1271, 1267, 1235, 1093, 1250, 1221, 1234, 1327, 4076, 4078, 1149,
}  # fmt: skip
MISSING_DB = 1049
LOST = {2003, 2006, 2013, 2014, 2055, 0}


def _driver():
    try:
        import pymysql
    except ImportError:
        raise missing_driver("PyMySQL", "mysql") from None
    return pymysql


_CONNECTION = None


def _connection_class():
    """PyMySQL's Connection, with the TLS context of its default (PREFERRED) mode built once
    per process instead of once per connection: building it loads the system's CA store,
    about 22 ms, more than the connection itself. The context is the same (TLS when the
    server offers it, verification as PyMySQL sets it); explicit ``ssl_*`` options are
    built as PyMySQL builds them."""
    global _CONNECTION
    if _CONNECTION is None:
        from pymysql.connections import Connection

        class _Connection(Connection):
            _preferred_ctx = None

            def _create_ssl_ctx(self, sslp):
                if isinstance(sslp, dict) and not sslp:  # PREFERRED mode's default context
                    cls = type(self)
                    if cls._preferred_ctx is None:
                        cls._preferred_ctx = super()._create_ssl_ctx(sslp)
                    return cls._preferred_ctx
                return super()._create_ssl_ctx(sslp)

        _CONNECTION = _Connection
    return _CONNECTION


def connect_args(target: str) -> dict:
    """PyMySQL's arguments for a ``mysql://`` / ``mariadb://`` URL (password from the URL,
    ``MYSQL_PWD`` or ``~/.my.cnf``)."""
    u = Url.parse(target)
    args: dict[str, Any] = {"host": u.host or "localhost", "port": u.port or 3306, "database": u.database or None,
                            "charset": "utf8mb4", "autocommit": True, "connect_timeout": CONNECT_TIMEOUT}  # fmt: skip
    if u.user:
        args["user"] = u.user
    if "unix_socket" in u.query:
        args["unix_socket"] = u.query["unix_socket"]
    if u.password is not None:
        args["password"] = u.password
    elif os.environ.get("MYSQL_PWD"):
        args["password"] = os.environ["MYSQL_PWD"]
    cnf = os.path.expanduser("~/.my.cnf")
    if os.path.isfile(cnf):
        args["read_default_file"] = cnf
    return args


class MySQLExecutor(ServerExecutor):
    dialect = "mysql"

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self._meta: dict[int, tuple[str, dict]] = {}  # id(conn) -> (target, connect args) for KILL QUERY

    def _open(self, target: str) -> Any:
        pymysql = _driver()
        from pymysql.cursors import SSCursor

        args = connect_args(target)
        try:
            conn = _connection_class()(**args, cursorclass=SSCursor)
        except pymysql.MySQLError as e:
            code = e.args[0] if e.args and isinstance(e.args[0], int) else 0
            if code == MISSING_DB:
                raise ConnectFailed(Status.DB_MISSING, f"database not found: {mask_url(target)}") from None
            msg = str(e.args[1]) if len(e.args) > 1 else first_line(e)
            raise ConnectFailed(Status.RUNTIME_ERROR, f"{mask_url(target)}: cannot connect: {msg}", unreachable=True) from None
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT VERSION(), CONNECTION_ID()")
                ((version, _),) = cur.fetchall()
                cur.execute("SET SESSION TRANSACTION READ ONLY")
                if "mariadb" in str(version).lower():
                    cur.execute(f"SET SESSION max_statement_time = {self.limits.timeout:g}")
                else:
                    cur.execute(f"SET SESSION max_execution_time = {max(1, int(self.limits.timeout * 1000))}")
        except pymysql.MySQLError as e:
            conn.close()
            raise ConnectFailed(Status.RUNTIME_ERROR, f"{mask_url(target)}: cannot set up the session: {first_line(e)}") from None
        self._meta[id(conn)] = (target, args)
        return conn

    def _disconnect(self, conn: Any) -> None:
        self._meta.pop(id(conn), None)
        conn.close()

    def _start(self, conn: Any, sql: str) -> Any:
        cur = conn.cursor()
        cur.execute("START TRANSACTION READ ONLY")
        cur.execute(sql)
        return cur

    def _interrupt(self, conn: Any) -> None:
        _, args = self._meta[id(conn)]
        killer = _connection_class()(**{**args, "database": None, "connect_timeout": 5})
        try:
            with killer.cursor() as cur:
                cur.execute(f"KILL QUERY {int(conn.thread_id())}")
        finally:
            killer.close()

    def _finish(self, conn: Any, cursor: Any) -> None:
        pymysql = _driver()
        with warnings.catch_warnings():  # "previous unbuffered result was left incomplete": after KILL QUERY
            warnings.simplefilter("ignore")
            if cursor is not None:
                with contextlib.suppress(pymysql.MySQLError):
                    cursor.close()  # an unbuffered cursor reads what is left of the result
            with conn.cursor() as cur:
                cur.execute("ROLLBACK")

    def _classify(self, e: Exception) -> tuple[Status, str] | None:
        pymysql = _driver()
        if not isinstance(e, pymysql.MySQLError):
            return None
        code = e.args[0] if e.args and isinstance(e.args[0], int) else 0
        msg = str(e.args[1]) if len(e.args) > 1 else first_line(e)
        if code in TIMEOUT_CODES:
            return Status.TIMEOUT, msg
        if code in FORBIDDEN_CODES:
            return Status.FORBIDDEN, f"refused, evaluation is read-only: {msg}"
        if code in SYNTAX_CODES:
            return Status.SYNTAX_ERROR, msg
        if code in LOST or isinstance(e, pymysql.err.InterfaceError):
            return Status.RUNTIME_ERROR, f"connection lost: {msg}"
        return Status.RUNTIME_ERROR, f"({code}) {msg}" if code else msg
