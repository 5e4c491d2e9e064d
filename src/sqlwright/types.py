"""The records every stage shares: questions (``Example``), database schemas (``Schema``) and
execution outcomes (``ExecResult``, ``Status``, ``Limits``).

A leaf: this module imports nothing else of sqlwright, so ``db``, ``prompts`` and every
stage above them can depend on it without depending on each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


# -- questions --------------------------------------------------------------------------
@dataclass
class Example:
    id: str  # unique within its benchmark/dataset; predictions are paired by it
    db_id: str
    question: str
    sql: str  # gold SQL
    evidence: str = ""  # BIRD "external knowledge"
    difficulty: str | None = None  # BIRD: simple/moderate/challenging; Spider: easy..extra
    db_path: str | None = None  # the database to execute on (a SQLite file or a URL)
    context: str | None = None  # schema given as CREATE TABLE text (sql-create-context)
    extra: dict[str, Any] = field(default_factory=dict)


# -- schemas ----------------------------------------------------------------------------
@dataclass
class Column:
    name: str
    type: str = ""
    primary_key: bool = False
    description: str = ""  # e.g. from BIRD's database_description/*.csv
    examples: list = field(default_factory=list)


@dataclass
class ForeignKey:
    column: str
    ref_table: str
    ref_column: str


@dataclass
class Table:
    name: str
    columns: list[Column]
    foreign_keys: list[ForeignKey] = field(default_factory=list)
    ddl: str = ""  # the CREATE TABLE statement as the database stores it
    internal: bool = False  # sqlite_sequence & co: listed by sqlite_master, not user data
    rows: list[tuple] = field(default_factory=list)  # first rows, when asked for

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name.lower() == name.lower()), None)


@dataclass
class Schema:
    db_id: str
    tables: list[Table]
    fk_order: list[tuple[str, ForeignKey]] | None = None  # the source's own order, when it has one
    ddl_text: str | None = None  # the schema exactly as the source gave it (CREATE TABLE text)

    @property
    def foreign_keys(self) -> list[tuple[str, ForeignKey]]:
        """(table, key) pairs, in the source's order (Spider's tables.json) or table order."""
        if self.fk_order is not None:
            return self.fk_order
        return [(t.name, fk) for t in self.tables for fk in t.foreign_keys]

    def table(self, name: str) -> Table:
        return next(t for t in self.tables if t.name.lower() == name.lower())

    @property
    def user_tables(self) -> list[Table]:
        return [t for t in self.tables if not t.internal]


# -- execution --------------------------------------------------------------------------
class Status(str, Enum):
    """Outcome of one execution. The string values appear in run files and reports."""

    OK = "ok"
    SYNTAX_ERROR = "syntax_error"  # did not compile: bad syntax, unknown table/column/function
    RUNTIME_ERROR = "runtime_error"  # compiled, then failed while running (includes memory cap)
    FORBIDDEN = "forbidden"  # would write, attach, or run several statements: refused
    TIMEOUT = "timeout"
    TOO_MANY_ROWS = "too_many_rows"
    DB_MISSING = "db_missing"


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-execution limits. ``memory_mb`` caps the SQL engine's own heap."""

    timeout: float = 30.0
    max_rows: int = 1_000_000
    memory_mb: int = 2048


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class ExecResult:
    status: Status
    rows: tuple[tuple, ...] | None = None  # only when status is OK
    columns: tuple[str, ...] | None = None
    error: str = ""  # one line: why it failed
    elapsed: float = 0.0  # seconds spent executing (and fetching)

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    def to_wire(self) -> tuple:
        """A plain tuple, cheap to pickle between processes."""
        return (self.status.value, self.rows, self.columns, self.error, self.elapsed)

    @classmethod
    def from_wire(cls, t: tuple) -> ExecResult:
        return cls(Status(t[0]), t[1], t[2], t[3], t[4])
