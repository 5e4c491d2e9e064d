"""The two keys under which SQL texts count as the same, in one place, named for what they are for.

``normalize_sql``  the execution key: queries equal up to outer whitespace run once (the pool
                   and the judge's gold cache). It must never merge two queries that could
                   answer differently, so it changes nothing inside the text.
``canonical_sql``  the duplicate key for generated data (``sqlwright data synth``): sqlglot's
                   rendering, so spacing, keyword case, identifier case and a trailing ``;``
                   do not make a near-duplicate new. String literals are kept as written.
"""

from __future__ import annotations


def normalize_sql(sql: str) -> str:
    """The key under which equal queries are executed once: outer whitespace trimmed."""
    return sql.strip() if sql else ""


def canonical_sql(sql: str) -> str:
    """The key under which two queries count as duplicates: sqlglot's SQLite rendering,
    identifiers in lower case; whitespace and case folded when sqlglot cannot parse it."""
    import sqlglot

    try:
        tree = sqlglot.parse_one(sql, read="sqlite")
        return tree.sql(dialect="sqlite", normalize=True, comments=False)
    except (sqlglot.errors.SqlglotError, ValueError, RecursionError):
        return " ".join(sql.rstrip("; \n").split()).lower()
