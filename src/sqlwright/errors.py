"""User-facing errors: one line that names the file, key or value and says what to do.

The CLI prints ``error: <message>`` and exits with code 2; tracebacks are for bugs.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A mistake in the user's input, files or options (exit code 2)."""

    exit_code = 2


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none), for
    ``UserError`` messages that wrap a library's error."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` when a close choice exists, else ``""``."""
    match = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
    return f"; did you mean {match[0]!r}?" if match else ""
