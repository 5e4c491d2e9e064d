"""Which executor runs a database target. One line per dialect.

A target is a SQLite file path, or a URL whose scheme names the engine
(``postgresql://…``, ``mysql://…`` / ``mariadb://…``, ``duckdb:///…``; see
``sqlwright.db.urls``). Every executor has ``execute(target, sql) -> ExecResult``,
``close()``, and for URL targets ``probe(target)`` (open, or raise ``ConnectFailed``).
"""

from __future__ import annotations

from importlib import import_module

from sqlwright.db.urls import mask_in, mask_url
from sqlwright.errors import UserError
from sqlwright.types import DEFAULT_LIMITS, Limits

EXECUTORS: dict[str, str] = {
    "sqlite": "sqlwright.db.sqlite:SQLiteExecutor",
    "postgresql": "sqlwright.db.postgres:PostgresExecutor",
    "mysql": "sqlwright.db.mysql:MySQLExecutor",
    "duckdb": "sqlwright.db.duckdb:DuckDBExecutor",
}
# The statement that compiles a query without running it, per dialect: the validity check
# (``Judge.check_many``) sends it through the same read-only executor, so it is time-limited
# and a write is refused when it is prepared.
COMPILE_ONLY: dict[str, str] = {
    "sqlite": "EXPLAIN {sql}",
    "postgresql": "EXPLAIN {sql}",  # plans, does not run
    "mysql": "EXPLAIN {sql}",
    "duckdb": "EXPLAIN {sql}",
}
# sqlglot's name for each dialect (for transpiling gold SQL and parsing predictions)
SQLGLOT_DIALECTS = {"sqlite": "sqlite", "postgresql": "postgres", "mysql": "mysql", "duckdb": "duckdb"}
_URL_SCHEMES = {"postgresql": "postgresql", "postgres": "postgresql", "pg": "postgresql", "mysql": "mysql",
                "mariadb": "mysql", "duckdb": "duckdb"}


def dialect_of(target: str) -> str:
    """``sqlite`` for a file path; for a URL, the dialect its scheme names."""
    if "://" not in target:
        return "sqlite"
    scheme = target.split("://", 1)[0].split("+", 1)[0].lower()
    return scheme if scheme in EXECUTORS else _URL_SCHEMES.get(scheme, scheme)


def compile_only(target: str, sql: str) -> str:
    """``sql`` wrapped so that executing it only compiles it (``EXPLAIN <sql>`` on SQLite)."""
    return COMPILE_ONLY.get(dialect_of(target), COMPILE_ONLY["sqlite"]).format(sql=sql)


def check_targets(targets: set[str], probe: bool = True) -> None:
    """Refuse, before anything runs, targets no executor can open (one line, exit code 2):
    a URL scheme without an executor, a driver that is not installed, and (``probe``) a server
    that cannot be reached or refuses the login. A database missing on a reachable server is
    not refused here: its questions score ``db_missing``, as a missing SQLite file does.

    One target is probed per server and login (``server_of``): reaching a server and logging
    in do not depend on which of its databases is named, and a probe costs a connection (on
    Spider dev's 19 PostgreSQL databases, 19 SCRAM logins and backends; on DuckDB, opening
    every file). A database the server refuses on its own (a per-database ``pg_hba.conf``
    rule) fails its questions with the server's one-line reason instead."""
    urls = sorted(t for t in targets if "://" in t)
    for target in urls:
        dialect = dialect_of(target)
        if dialect not in EXECUTORS:
            shown = target.split("://", 1)[0] + "://" + target.rsplit("@", 1)[-1] if "@" in target else target  # no password
            known = ", ".join(sorted(s for s in _URL_SCHEMES if _URL_SCHEMES[s] in EXECUTORS))
            raise UserError(f"{shown}: no executor for {dialect} databases; sqlwright executes SQLite files "
                            f"(a folder of .sqlite files with --db-root) and URLs of {known}")
    if not probe or not urls:
        return
    from sqlwright.db.server import ConnectFailed

    cache: dict = {}
    probed: set[tuple] = set()
    try:
        for target in urls:
            if (key := server_of(target)) in probed:  # one probe per server and login
                continue
            probed.add(key)
            try:
                probe_one = getattr(executor_for(target, DEFAULT_LIMITS, cache), "probe", None)
                if probe_one is not None:  # an executor without probe (a test's) opens on first use
                    probe_one(target)
            except ImportError as e:
                raise UserError(f"{mask_url(target)}: {e}") from None
            except ConnectFailed as e:
                if e.unreachable:
                    raise UserError(mask_in(str(e), target)) from None
    finally:
        for ex in cache.values():
            ex.close()


def server_of(target: str) -> tuple:
    """What a probe of ``target`` checks: its server and login (DuckDB: the driver only)."""
    from sqlwright.db.urls import Url

    dialect = dialect_of(target)
    if dialect == "duckdb":
        return (dialect,)
    url = Url.parse(target)
    settings = tuple(sorted((k, v) for k, v in url.query.items() if k != "options"))  # options: a schema each
    return (dialect, url.user, url.password, url.host, url.port, settings)


def executor_for(target: str, limits: Limits, cache: dict) -> object:
    """The (cached) executor for ``target``'s dialect."""
    dialect = dialect_of(target)
    ex = cache.get(dialect)
    if ex is None:
        if dialect not in EXECUTORS:
            raise NotImplementedError(f"no executor for {dialect} databases yet ({target})")
        module, cls = EXECUTORS[dialect].split(":")
        ex = cache[dialect] = getattr(import_module(module), cls)(limits)
    return ex
