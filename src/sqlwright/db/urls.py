"""Database URLs: read them, mask their passwords, fill ``{db_id}`` templates.

A target that is not a file path is a URL whose scheme names the engine:
``postgresql://user@host:port/db`` (also ``postgres://``, ``postgresql+psycopg://``),
``mysql://user@host:port/db`` / ``mariadb://…`` and ``duckdb:///abs/path.duckdb`` (or
``duckdb://relative/path.duckdb``). A password in a URL is never shown: every message and
every file sqlwright writes uses ``mask_url``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

from sqlwright.errors import UserError

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+://)([^@/?#]*)@")
DB_ID = "{db_id}"


def is_url(target: str) -> bool:
    return bool(_URL.match(str(target)))


def mask_url(text: str) -> str:
    """``text`` with the password of a URL in it replaced by ``***`` (``u:***@h``)."""

    def sub(m: re.Match) -> str:
        user, sep, _ = m.group(2).partition(":")
        return f"{m.group(1)}{user}{':***' if sep else ''}@"

    return _USERINFO.sub(sub, str(text))


def drop_password(url: str) -> str:
    """``url`` without its password (``u@h``): what a dataset records, so that reading it again
    takes the password from the engine's usual places (``PGPASSWORD``, ``~/.pgpass``, ``MYSQL_PWD``)."""
    return _USERINFO.sub(lambda m: f"{m.group(1)}{m.group(2).partition(':')[0]}@", str(url))


def mask_in(text: str, url: str) -> str:
    """A driver's error text with ``url``'s password (if any) removed wherever it appears."""
    pw = Url.parse(url).password if is_url(url) else None
    return text.replace(pw, "***") if pw else text


@dataclass(frozen=True)
class Url:
    scheme: str  # as written, driver suffix dropped: postgresql, mysql, mariadb, duckdb
    user: str | None = None
    password: str | None = None
    host: str | None = None
    port: int | None = None
    database: str = ""  # the path without its leading slash (a file path for duckdb)
    query: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, url: str) -> Url:
        m = _URL.match(url)
        if not m:
            raise UserError(f"{mask_url(url)}: not a database URL (expected scheme://…)")
        scheme = m.group(1).split("+", 1)[0].lower()
        if scheme == "duckdb":
            rest = url[m.end():].split("?", 1)
            return cls(scheme, database=unquote(rest[0]), query=dict(parse_qsl(rest[1])) if len(rest) > 1 else {})
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            raise UserError(f"{mask_url(url)}: the port is not a number") from None
        return cls(scheme, unquote(parts.username) if parts.username else None,
                   unquote(parts.password) if parts.password is not None else None,
                   parts.hostname, port, unquote(parts.path.lstrip("/")), dict(parse_qsl(parts.query)))  # fmt: skip


def expand(template: str, db_id: str) -> str:
    """The target of database ``db_id`` under a URL template (``…/{db_id}``)."""
    return template.replace(DB_ID, db_id)


def check_template(template: str, option: str = "--db-url") -> str | None:
    """The problem with a URL template, or None."""
    if not is_url(template):
        return f"{option} {mask_url(template)!r} is not a database URL; give e.g. 'postgresql://user@host:5432/{DB_ID}'"
    if DB_ID not in template:
        return (f"{option} {mask_url(template)!r} has no {DB_ID}: each database needs its own target, e.g. "
                f"'…/{DB_ID}' (a database each) or '…/bench?options=-csearch_path%3D{DB_ID}' (a PostgreSQL schema each)")
    return None
