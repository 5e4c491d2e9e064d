"""Fit a schema into a token budget by keeping what the question is about.

When the serialized schema is over budget, tables are ranked by how much of the question
they cover (table and column names split into words, and example values found in the
question), then the best are kept, in their original order, while the text fits. If even
the best table alone is too large, its columns are pruned the same way (keys kept).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import replace

from sqlwright.types import Schema, Table

_WORD = re.compile(r"[A-Za-z][a-z]+|[A-Z]+(?![a-z])|\d+")
_STOP = {"the", "of", "and", "for", "in", "on", "to", "is", "are", "what", "which", "how", "many",
         "with", "that", "by", "from", "all", "each", "its", "their", "show", "list", "give", "find", "name"}  # fmt: skip


def approx_tokens(text: str) -> int:
    """A tokenizer-free estimate (about 4 characters per token for English and SQL)."""
    return math.ceil(len(text) / 4)


def words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)} - _STOP


def _score_column(col, q_words: set[str], q_text: str) -> float:
    score = 2.0 * len(words(col.name) & q_words)
    score += sum(3.0 for v in col.examples if isinstance(v, str) and len(v) > 2 and v.lower() in q_text)
    return score


def _score_table(t: Table, q_words: set[str], q_text: str) -> float:
    return 3.0 * len(words(t.name) & q_words) + sum(_score_column(c, q_words, q_text) for c in t.columns)


def fit_schema(
    schema: Schema,
    question: str,
    serialize: Callable[[Schema], str],
    budget: int,
    count: Callable[[str], int] = approx_tokens,
) -> tuple[str, bool]:
    """(schema text within ``budget`` tokens if at all possible, whether anything was cut)."""
    text = serialize(schema)
    if count(text) <= budget:
        return text, False
    q_words, q_text = words(question), question.lower()
    user = schema.user_tables
    ranked = sorted(user, key=lambda t: -_score_table(t, q_words, q_text))
    kept: list[Table] = []
    for t in ranked:
        trial = [x for x in user if x in kept or x is t]
        if count(serialize(replace(schema, tables=trial, fk_order=_fks(schema, trial), ddl_text=None))) > budget:
            if kept:
                continue
            t = _prune_columns(t, schema, q_words, q_text, serialize, budget, count)
            trial = [t]
        kept = trial
    sub = replace(schema, tables=kept, fk_order=_fks(schema, kept), ddl_text=None)
    return serialize(sub), True


def _fks(schema: Schema, tables: list[Table]):
    names = {t.name for t in tables}
    return [(t, fk) for t, fk in schema.foreign_keys if t in names and fk.ref_table in names]


def _prune_columns(t: Table, schema, q_words, q_text, serialize, budget, count) -> Table:
    keys = {fk.column.lower() for fk in t.foreign_keys}
    ranked = sorted(t.columns, key=lambda c: (not (c.primary_key or c.name.lower() in keys), -_score_column(c, q_words, q_text)))
    kept: list = []
    for c in ranked:
        trial = [x for x in t.columns if x in kept or x is c]
        cand = replace(t, columns=trial, ddl="", foreign_keys=[fk for fk in t.foreign_keys if fk.column.lower() in {x.name.lower() for x in trial}])
        if kept and count(serialize(replace(schema, tables=[cand], fk_order=[], ddl_text=None))) > budget:
            break
        kept = trial
    return replace(t, columns=kept, ddl="", foreign_keys=[fk for fk in t.foreign_keys if fk.column.lower() in {x.name.lower() for x in kept}])
