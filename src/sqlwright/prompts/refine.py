"""The observation turn of self-correction (``sqlwright predict --refine K``).

After a round, predict executes the chosen SQL (read-only, time-limited, no gold) and, when
the round is not accepted, appends two turns to the conversation: the model's own answer
(``assistant``) and an observation (``user``) made from this template, then asks again.

``OBSERVATION_TEMPLATE`` is the whole user turn; ``{result}`` is one of ``RESULT_TEMPLATES``
and ``{instruction}`` one of ``INSTRUCTIONS`` (``check`` after rows, ``fix`` after anything else):

* ``error``:   the database's error text (syntax error, no such column, refused write, ...);
* ``timeout``: the query was stopped at the time limit;
* ``too_many_rows``: more rows than the limit;
* ``empty``:   it ran and returned 0 rows;
* ``rows``:    it ran: the row count and the first ``ROWS_SHOWN`` rows, as a small table
  (shown with ``--refine-until unchanged``, where every result goes back to the model);
* ``no_sql``:  the answer held no SQL.

For example, after ``SELECT nope FROM t``::

    Executing your SQL on the database failed with this error:
    no such column: nope

    Correct the query so that it answers the question. Reply with the complete corrected SQL
    query in a ```sql block.

Imports only ``sqlwright.types`` (prompts stand on the leaves).
"""

from __future__ import annotations

from sqlwright.types import ExecResult, Status

OBSERVATION_TEMPLATE = "Executing your SQL on the database {result}\n\n{instruction}"
RESULT_TEMPLATES: dict[str, str] = {
    "error": "failed with this error:\n{error}",
    "timeout": "did not finish: {error} (the time limit). Write a query that needs less work.",
    "too_many_rows": "returned too many rows: {error}.",
    "empty": "returned 0 rows. Check the tables, columns, values and conditions you used.",
    "rows": "returned {count} row{s}{first}:\n{table}",
    "no_sql": "was not possible: your answer contains no SQL query.",
}
INSTRUCTIONS: dict[str, str] = {
    "fix": "Correct the query so that it answers the question. Reply with the complete corrected SQL query in a ```sql block.",
    "check": "If this result answers the question, reply with the same query again; otherwise correct it. "
             "Reply with the complete SQL query in a ```sql block.",
}  # fmt: skip
ROWS_SHOWN = 5  # rows of a result shown to the model
CELL_CHARS = 60  # characters of a cell shown


def outcome(result: ExecResult | None) -> str:
    """The key of ``RESULT_TEMPLATES`` that describes ``result`` (None: no SQL)."""
    if result is None:
        return "no_sql"
    if result.ok:
        return "rows" if result.rows else "empty"
    if result.status is Status.TIMEOUT:
        return "timeout"
    if result.status is Status.TOO_MANY_ROWS:
        return "too_many_rows"
    return "error"


def _cell(v: object) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bytes):
        return f"<{len(v)} bytes>"
    text = " ".join(str(v).split())
    return text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "…"


def result_table(result: ExecResult, rows: int = ROWS_SHOWN) -> str:
    """The column names and the first ``rows`` rows, one line each, cells joined by `` | ``."""
    lines = [" | ".join(result.columns or ())] if result.columns else []
    lines += [" | ".join(_cell(v) for v in row) for row in (result.rows or ())[:rows]]
    return "\n".join(lines)


def describe(result: ExecResult | None) -> str:
    """The ``{result}`` part: what executing the SQL gave."""
    key = outcome(result)
    if key == "rows":
        count = len(result.rows)
        first = f"; the first {ROWS_SHOWN}" if count > ROWS_SHOWN else ""
        return RESULT_TEMPLATES[key].format(count=count, s="" if count == 1 else "s", first=first, table=result_table(result))
    error = (result.error if result is not None else "").removesuffix(" (raise --max-rows)")
    return RESULT_TEMPLATES[key].format(error=error or "unknown error")


def observation(result: ExecResult | None) -> str:
    """The whole observation turn for ``result`` (None: the answer had no SQL)."""
    instruction = INSTRUCTIONS["check" if outcome(result) == "rows" else "fix"]
    return OBSERVATION_TEMPLATE.format(result=describe(result), instruction=instruction)
