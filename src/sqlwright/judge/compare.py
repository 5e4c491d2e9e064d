"""Result comparators: is the predicted result the gold result?

Each comparator is a named function ``(gold_rows, pred_rows, gold_sql) -> bool`` over lists
of row tuples as SQLite returns them. Values compare with Python's ``==``: ``1 == 1.0`` is
true, ``NULL`` (``None``) equals ``NULL``, and text never equals a number (``'1' != 1``).
Two empty results are equal. The same functions score evaluations, filter generated
training data and compute RL rewards, so there is one definition of correct.

Every built-in comparator accepts a result compared with itself: the same rows in the same
order, each value of the same type (``identical``). ``sqlwright.judge.service.compare``
answers such pairs without running the comparator (a prediction that is the gold, or
returns exactly its rows, is the common case and the test-suite search its dearest); a
comparator registered with ``reflexive=False`` is always run.

``bird``       (default) rows as a **set**: duplicates and row order ignored, column order
               counts. Exactly the official BIRD evaluator (``set(pred) == set(gold)``),
               used by the llama-cookbook's reported numbers.
``multiset``   rows as a **multiset**: duplicates count, row order ignored, column order
               counts.
``ordered``    when the gold query's outermost statement has ``ORDER BY``, the row
               **lists** must be equal (order and duplicates count); otherwise as
               ``multiset``. Ties in the gold's sort key can legitimately come back in
               another order, so expect this to be strict.
``test-suite`` taoyds/test-suite-sql-eval's ``result_eq``: a multiset comparison that also
               accepts any **permutation of columns**; like that evaluator, row order is
               enforced when the gold SQL contains ``order by`` anywhere (its rule).
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import product

Rows = Sequence[tuple]

# Bounds on the test-suite column-permutation search, so a wide result cannot hang a run:
# column assignments tried, and permuted rows compared.
MAX_ASSIGNMENTS = 100_000
MAX_PERMUTED_ROWS = 2_000_000


class NotComputed(Exception):
    """A comparator gave up within its bounds; the message says why (recorded, never a crash)."""


@dataclass(frozen=True)
class Comparator:
    name: str
    summary: str
    equal: Callable[[Rows, Rows, str], bool]
    reflexive: bool = True  # identical results are equal: the fast path may answer for it


COMPARATORS: dict[str, Comparator] = {}


def register(name: str, summary: str, reflexive: bool = True):
    def deco(fn):
        COMPARATORS[name] = Comparator(name, summary, fn, reflexive)
        return fn

    return deco


def get_comparator(name: str) -> Comparator:
    try:
        return COMPARATORS[name]
    except KeyError:
        raise KeyError(f"unknown comparator {name!r}; choose one of: {', '.join(COMPARATORS)}") from None


# -- the comparators ---------------------------------------------------------------------
@register("bird", "set of rows (official BIRD evaluator)")
def bird_equal(gold: Rows, pred: Rows, gold_sql: str = "") -> bool:
    return set(pred) == set(gold)


@register("multiset", "multiset of rows: duplicates count")
def multiset_equal(gold: Rows, pred: Rows, gold_sql: str = "") -> bool:
    return len(gold) == len(pred) and Counter(gold) == Counter(pred)


@register("ordered", "row order enforced when the gold's outermost query has ORDER BY")
def ordered_equal(gold: Rows, pred: Rows, gold_sql: str = "") -> bool:
    if has_outer_order_by(gold_sql):
        return list(gold) == list(pred)
    return multiset_equal(gold, pred)


@register("test-suite", "multiset, any column permutation (taoyds/test-suite-sql-eval)")
def test_suite_equal(gold: Rows, pred: Rows, gold_sql: str = "") -> bool:
    return _result_eq(list(gold), list(pred), order_matters="order by" in gold_sql.lower())


# -- helpers -----------------------------------------------------------------------------
def identical(gold: Rows, pred: Rows) -> bool:
    """The same rows in the same order, each value of the same type (``1`` and ``1.0`` are
    equal values but not identical: the test-suite port sorts values by their type's name)."""
    if gold is pred:  # one execution shared by a prediction and its gold (the pool's dedupe)
        return True
    if gold != pred:
        return False
    return all(type(a) is type(b) for g, p in zip(gold, pred, strict=True) for a, b in zip(g, p, strict=True))


_STRINGS_AND_COMMENTS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|`[^`]*`|\[[^\]]*\]|--[^\n]*|/\*.*?\*/", re.S)
_ORDER_BY = re.compile(r"\border\s+by\b", re.I)


def has_outer_order_by(sql: str) -> bool:
    """Does the outermost statement (not a subquery) end with an ORDER BY?"""
    text = _STRINGS_AND_COMMENTS.sub(" ", sql or "")
    depth, top = 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        elif depth == 0:
            top.append(ch)
            continue
        top.append(" ")
    return bool(_ORDER_BY.search("".join(top)))


def explain_mismatch(gold: Rows, pred: Rows) -> str:
    """A short human reason why two results differ (for reports)."""
    if gold and pred and len(gold[0]) != len(pred[0]):
        return f"{len(pred[0])} columns, gold has {len(gold[0])}"
    if set(gold) == set(pred):
        if Counter(gold) == Counter(pred):
            return "same rows in a different order"
        return "same distinct rows, different duplicates"
    if Counter(tuple(sorted(map(repr, r))) for r in gold) == Counter(tuple(sorted(map(repr, r))) for r in pred):
        return "same values, columns in another order"
    return f"different rows ({len(pred)} rows, gold has {len(gold)})"


# Port of taoyds/test-suite-sql-eval exec_eval.py (Apache-2.0); the random column
# sampling only prunes impossible permutations, so a seeded generator changes no verdict.
def _unorder_row(row: tuple) -> tuple:
    return tuple(sorted(row, key=lambda x: str(x) + str(type(x))))


def _quick_rej(r1: list, r2: list, order_matters: bool) -> bool:
    s1 = [_unorder_row(r) for r in r1]
    s2 = [_unorder_row(r) for r in r2]
    return s1 == s2 if order_matters else set(s1) == set(s2)


def _constraint_permutations(col_sets: list[set], r2: list) -> tuple[Iterator[tuple], int]:
    """The column assignments to try, and how many there are."""
    n = len(r2[0])
    constraints = [set(range(n)) for _ in range(n)]
    if n <= 3:
        return product(*constraints), n**n
    rng = random.Random(0)
    for _ in range(20):
        row = rng.choice(r2)
        for c1 in range(n):
            for c2 in set(constraints[c1]):
                if row[c2] not in col_sets[c1]:
                    constraints[c1].remove(c2)
    return product(*constraints), math.prod(len(c) for c in constraints)


def _result_eq(r1: list, r2: list, order_matters: bool) -> bool:
    if not r1 and not r2:
        return True
    if len(r1) != len(r2):
        return False
    n = len(r1[0])
    if len(r2[0]) != n:
        return False
    if not _quick_rej(r1, r2, order_matters):
        return False
    col_sets = [{row[i] for row in r1} for i in range(n)]
    perms, size = _constraint_permutations(col_sets, r2)
    if size > MAX_ASSIGNMENTS:
        raise NotComputed(f"test-suite: {size} column assignments to try for {n} columns (cap {MAX_ASSIGNMENTS})")
    compared = 0
    for perm in perms:
        if len(perm) != len(set(perm)):
            continue
        compared += len(r2)
        if compared > MAX_PERMUTED_ROWS:
            raise NotComputed(f"test-suite: more than {MAX_PERMUTED_ROWS} permuted rows to compare ({n} columns, {len(r2)} rows)")
        r2p = r2 if n == 1 else [tuple(row[i] for i in perm) for row in r2]
        if order_matters:
            if r1 == r2p:
                return True
        elif set(r1) == set(r2p) and Counter(r1) == Counter(r2p):
            return True
    return False
