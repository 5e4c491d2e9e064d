"""Which executor runs a database target. One line per dialect.

A target is a SQLite file path today; URLs (``postgresql://…``, ``mysql://…``,
``duckdb:///…``) will map to their executors here. Every executor has
``execute(target, sql) -> ExecResult`` and ``close()``.
"""

from __future__ import annotations

from importlib import import_module

from sqlwright.errors import UserError
from sqlwright.types import Limits

EXECUTORS: dict[str, str] = {
    "sqlite": "sqlwright.db.sqlite:SQLiteExecutor",
}
# The statement that compiles a query without running it, per dialect: the validity check
# (``Judge.check_many``) sends it through the same read-only executor, so it is time-limited
# and a write is refused when it is prepared.
COMPILE_ONLY: dict[str, str] = {
    "sqlite": "EXPLAIN {sql}",
}
_URL_SCHEMES = {"postgresql": "postgresql", "postgres": "postgresql", "mysql": "mysql", "duckdb": "duckdb"}


def dialect_of(target: str) -> str:
    """``sqlite`` for a file path; for a URL, the dialect its scheme names."""
    if "://" not in target:
        return "sqlite"
    scheme = target.split("://", 1)[0].split("+", 1)[0].lower()
    return scheme if scheme in EXECUTORS else _URL_SCHEMES.get(scheme, scheme)


def compile_only(target: str, sql: str) -> str:
    """``sql`` wrapped so that executing it only compiles it (``EXPLAIN <sql>`` on SQLite)."""
    return COMPILE_ONLY.get(dialect_of(target), COMPILE_ONLY["sqlite"]).format(sql=sql)


def check_targets(targets: set[str]) -> None:
    """Refuse, before anything runs, targets no executor can open (one line, exit code 2)."""
    for target in targets:
        dialect = dialect_of(target)
        if dialect not in EXECUTORS:
            shown = target.split("://", 1)[0] + "://" + target.rsplit("@", 1)[-1] if "@" in target else target  # no password
            raise UserError(f"{shown}: {dialect} databases are not supported yet; sqlwright executes SQLite files "
                            f"(give a folder of .sqlite files with --db-root)")


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
