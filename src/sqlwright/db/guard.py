"""The text checks a server or DuckDB executor makes before it sends anything: one
statement, and that statement a query.

The engine's own read-only mode (a read-only transaction, DuckDB's ``read_only``) is the
lock that refuses writes; these checks close what read-only mode lets through: several
statements in one string (``SELECT 1; COMMIT; DROP TABLE t``), statements that are not
queries but are allowed in a read-only transaction (PostgreSQL ``COPY … TO 'file'``, ``SET``,
``DO``; MySQL DDL, which commits implicitly and so escapes the transaction; DuckDB
``ATTACH``, ``COPY``, ``INSTALL``), and the few functions that act outside the transaction.
"""

from __future__ import annotations

import re

READ_STARTS = {"SELECT", "WITH", "VALUES", "TABLE", "("}
DIALECT_READ_STARTS = {"duckdb": {"FROM", "PIVOT", "UNPIVOT"}}  # DuckDB's FROM-first queries
# Statements that are not queries: refused (``forbidden``). Any other first word is not a
# statement at all (``syntax_error``), as the engine would say.
_STARTS = READ_STARTS | {
    "INSERT", "UPDATE", "DELETE", "MERGE", "REPLACE", "UPSERT", "CREATE", "DROP", "ALTER", "TRUNCATE",
    "RENAME", "COMMENT", "COPY", "DO", "CALL", "EXEC", "EXECUTE", "PREPARE", "DEALLOCATE", "SET", "RESET",
    "GRANT", "REVOKE", "LOAD", "HANDLER", "ATTACH", "DETACH", "INSTALL", "UNINSTALL", "PRAGMA", "VACUUM",
    "ANALYZE", "ANALYSE", "CHECKPOINT", "EXPORT", "IMPORT", "USE", "LOCK", "UNLOCK", "BEGIN", "START",
    "COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE", "DECLARE", "FETCH", "MOVE", "CLOSE",
    "LISTEN", "NOTIFY", "UNLISTEN", "DISCARD", "SECURITY", "REFRESH", "REINDEX", "CLUSTER", "KILL",
    "FLUSH", "PURGE", "OPTIMIZE", "REPAIR", "CHECK", "CHECKSUM", "SHUTDOWN", "RESTART", "CACHE", "XA",
    "BINLOG", "CHANGE", "SHOW", "DESCRIBE", "DESC", "HELP", "SUMMARIZE", "FORCE",
}  # fmt: skip
# Functions with effects a rollback does not undo (sessions killed, files written, locks kept).
_EFFECTS = {
    "postgresql": r"pg_terminate_backend|pg_cancel_backend|pg_reload_conf|pg_rotate_logfile|pg_promote|"
                  r"pg_switch_wal|pg_create_restore_point|pg_advisory_lock\w*|pg_try_advisory_lock\w*|lo_export|"
                  r"lo_import|pg_file_write|pg_file_rename|pg_file_unlink|dblink\w*|pg_logical_emit_message",
    "mysql": r"get_lock|release_lock|release_all_locks|sys_exec|sys_eval",
    "duckdb": r"",
}  # fmt: skip
_NOT_A_STATEMENT = "syntax error: a statement cannot start with "
_INTO_FILE = re.compile(r"\bINTO\s+(OUTFILE|DUMPFILE)\b", re.I)


_PLAIN_QUOTES_COMMENTS = r"['\"`]|--|/\*"
_SPECIAL = {  # where a literal, quoted identifier or comment may start
    "": re.compile(_PLAIN_QUOTES_COMMENTS),
    "mysql": re.compile(_PLAIN_QUOTES_COMMENTS + "|#"),
    "postgresql": re.compile(_PLAIN_QUOTES_COMMENTS + r"|\$"),
    "duckdb": re.compile(_PLAIN_QUOTES_COMMENTS + r"|\$"),
}
_ESCAPED = {c: re.compile(rf"[\\{c}]") for c in "'\""}  # MySQL: a backslash escapes in strings
_WORDS = re.compile(r"\(|[A-Za-z_]+")
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_]\w*)?\$")


def _closing_quote(sql: str, c: str, j: int, backslash: bool) -> int:
    """Index of the quote that closes a literal opened before ``j``, or -1."""
    n = len(sql)
    while True:
        if backslash:
            m = _ESCAPED[c].search(sql, j)
            if m is None:
                return -1
            j = m.start()
            if sql[j] == "\\":
                j += 2
                continue
        else:
            j = sql.find(c, j)
            if j < 0:
                return -1
        if j + 1 < n and sql[j + 1] == c:  # doubled quote
            j += 2
            continue
        return j


def skeleton(sql: str, dialect: str) -> str | None:
    """``sql`` with string literals, quoted identifiers and comments blanked (kept: keywords,
    punctuation), or None when a quote or comment is not closed."""
    special = _SPECIAL.get(dialect, _SPECIAL[""])
    mysql = dialect == "mysql"
    out: list[str] = []
    i = 0
    while (m := special.search(sql, i)) is not None:
        k = m.start()
        out.append(sql[i:k])  # plain text up to the next special character, copied at once
        c = sql[k]
        if c in "'\"`":
            j = _closing_quote(sql, c, k + 1, mysql and c != "`")
            if j < 0:
                return None
            out.append(" x " if c != "'" else " '' ")
            i = j + 1
        elif c in "-#":  # -- or (MySQL) # to the end of the line
            j = sql.find("\n", k)
            i = len(sql) if j < 0 else j + 1
            out.append(" ")
        elif c == "/":
            j = sql.find("*/", k + 2)
            if j < 0:
                return None
            out.append(" ")
            i = j + 2
        else:  # $: a dollar-quoted string ($$…$$, $tag$…$tag$), or a plain $ ($1, a name)
            tag = _DOLLAR_TAG.match(sql, k)
            if tag and not (k > 0 and (sql[k - 1].isalnum() or sql[k - 1] == "_")):
                end = sql.find(tag.group(0), k + len(tag.group(0)))
                if end < 0:
                    return None
                out.append(" '' ")
                i = end + len(tag.group(0))
            else:
                out.append(c)
                i = k + 1
    out.append(sql[i:])
    return "".join(out)


def refusal(sql: str, dialect: str) -> str | None:
    """Why ``sql`` must not be sent (one line), or None when it is one query."""
    text = skeleton(sql, dialect)
    if text is None:
        return None  # an unclosed quote: let the engine report the syntax error
    parts = [p for p in text.split(";") if p.strip()]
    if len(parts) > 1:
        return "multiple statements: send one SELECT"
    words = _WORDS.finditer(parts[0] if parts else "")  # lazily: the first word or two decide
    word = next(words, None)
    if word is None:
        return None
    first = word.group(0).upper()
    if first == "EXPLAIN":  # the validity check: what it explains must be a query too
        first = next((w.upper() for w in (m.group(0) for m in words) if w.upper() in _STARTS and w != "("), "SELECT")
    if first in READ_STARTS or first in DIALECT_READ_STARTS.get(dialect, ()):
        pass
    elif first in _STARTS:
        return f"refused, evaluation is read-only: {first} (only queries are executed)"
    else:
        return f"{_NOT_A_STATEMENT}{word.group(0)!r}"
    if dialect == "mysql" and _INTO_FILE.search(text):
        return "refused, evaluation is read-only: SELECT … INTO OUTFILE/DUMPFILE writes a file"
    if _EFFECTS.get(dialect) and (m := re.search(rf"\b({_EFFECTS[dialect]})\s*\(", text, re.I)):
        return f"refused, evaluation is read-only: {m.group(1)}() acts outside the transaction"
    return None
