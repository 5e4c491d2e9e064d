"""Each comparator's exact semantics, pinned on hand-built results; and the metrics."""

from __future__ import annotations

import importlib
import time

import pytest

from sqlwright.eval.metrics import r_ves, r_ves_reward, soft_f1, time_ratio, ves
from sqlwright.judge.compare import COMPARATORS, NotComputed, has_outer_order_by

ORDERED_GOLD = "SELECT a, b FROM t ORDER BY a"
PLAIN_GOLD = "SELECT a, b FROM t"

# (gold rows, predicted rows, gold sql) -> expected verdict per comparator
CASES = {
    "identical": ([(1, "x"), (2, "y")], [(1, "x"), (2, "y")], PLAIN_GOLD,
                  dict(bird=True, multiset=True, ordered=True, **{"test-suite": True})),
    "row order, no ORDER BY": ([(1, "x"), (2, "y")], [(2, "y"), (1, "x")], PLAIN_GOLD,
                               dict(bird=True, multiset=True, ordered=True, **{"test-suite": True})),
    "row order, gold has ORDER BY": ([(1, "x"), (2, "y")], [(2, "y"), (1, "x")], ORDERED_GOLD,
                                     dict(bird=True, multiset=True, ordered=False, **{"test-suite": False})),
    "ORDER BY only in a subquery": ([(1,), (2,)], [(2,), (1,)], "SELECT a FROM (SELECT a FROM t ORDER BY a LIMIT 5)",
                                    dict(bird=True, multiset=True, ordered=True, **{"test-suite": False})),
    "duplicates differ": ([(1,), (1,), (2,)], [(1,), (2,)], PLAIN_GOLD,
                          dict(bird=True, multiset=False, ordered=False, **{"test-suite": False})),
    "duplicate counts differ, same length": ([(1,), (1,), (2,)], [(1,), (2,), (2,)], PLAIN_GOLD,
                                             dict(bird=True, multiset=False, ordered=False, **{"test-suite": False})),
    "columns swapped": ([(1, "x"), (2, "y")], [("x", 1), ("y", 2)], PLAIN_GOLD,
                        dict(bird=False, multiset=False, ordered=False, **{"test-suite": True})),
    "extra column": ([(1,), (2,)], [(1, "x"), (2, "y")], PLAIN_GOLD,
                     dict(bird=False, multiset=False, ordered=False, **{"test-suite": False})),
    "1 vs 1.0": ([(1,)], [(1.0,)], PLAIN_GOLD, dict(bird=True, multiset=True, ordered=True, **{"test-suite": True})),
    "NULL vs NULL": ([(None,)], [(None,)], PLAIN_GOLD, dict(bird=True, multiset=True, ordered=True, **{"test-suite": True})),
    "NULL vs 0": ([(None,)], [(0,)], PLAIN_GOLD, dict(bird=False, multiset=False, ordered=False, **{"test-suite": False})),
    "both empty": ([], [], ORDERED_GOLD, dict(bird=True, multiset=True, ordered=True, **{"test-suite": True})),
    "empty vs not": ([], [(1,)], PLAIN_GOLD, dict(bird=False, multiset=False, ordered=False, **{"test-suite": False})),
    "text vs number": ([("1",)], [(1,)], PLAIN_GOLD, dict(bird=False, multiset=False, ordered=False, **{"test-suite": False})),
    "different values": ([(1,)], [(2,)], PLAIN_GOLD, dict(bird=False, multiset=False, ordered=False, **{"test-suite": False})),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("name", ["bird", "multiset", "ordered", "test-suite"])
def test_comparator_semantics(case, name):
    gold, pred, sql, expected = CASES[case]
    assert COMPARATORS[name].equal(gold, pred, sql) is expected[name]


def test_every_comparator_is_pinned():
    assert set(COMPARATORS) == {"bird", "multiset", "ordered", "test-suite"}


def test_test_suite_permutation_with_many_columns():
    gold = [(1, 2, 3, 4, "a"), (5, 6, 7, 8, "b")]
    perm = [(r[4], r[3], r[2], r[1], r[0]) for r in gold]
    assert COMPARATORS["test-suite"].equal(gold, perm, "SELECT")
    assert not COMPARATORS["test-suite"].equal(gold, [(r[4], r[3], r[2], r[0], r[1]) for r in gold][:1] * 2, "SELECT")


def test_test_suite_gives_up_on_wide_results_quickly():
    # 12 columns of one value: every column fits every place, so no permutation is pruned (12^12)
    wide = [(7,) * 12] * 200
    t0 = time.monotonic()
    with pytest.raises(NotComputed, match=r"test-suite: \d+ column assignments to try for 12 columns"):
        COMPARATORS["test-suite"].equal(wide, list(wide), "SELECT * FROM wide")
    assert time.monotonic() - t0 < 1.0
    for name in ("bird", "multiset", "ordered"):  # the others have nothing to search
        assert COMPARATORS[name].equal(wide, list(wide), "SELECT * FROM wide") is True
    assert COMPARATORS["test-suite"].equal(wide, wide[:-1] + [(8,) * 12], "") is False  # cheap rejections still answer


def test_test_suite_caps_permuted_rows(monkeypatch):
    # six column orders, none of which matches (each row holds the same values): each compares
    # all 600 rows, so the second one passes the cap
    monkeypatch.setattr(importlib.import_module("sqlwright.judge.compare"), "MAX_PERMUTED_ROWS", 1000)
    gold, pred = [(1, 2, 3)] * 300 + [(3, 2, 1)] * 300, [(1, 2, 3)] * 300 + [(2, 1, 3)] * 300
    with pytest.raises(NotComputed, match="more than 1000 permuted rows to compare"):
        COMPARATORS["test-suite"].equal(gold, pred, "")
    monkeypatch.setattr(importlib.import_module("sqlwright.judge.compare"), "MAX_PERMUTED_ROWS", 10_000)
    assert COMPARATORS["test-suite"].equal(gold, pred, "") is False  # within the cap: a real answer


@pytest.mark.parametrize(
    "sql, expected",
    [
        ("SELECT a FROM t ORDER BY a", True),
        ("select a from t order  by a desc limit 3", True),
        ("SELECT a FROM t UNION SELECT b FROM u ORDER BY 1", True),
        ("SELECT a FROM (SELECT a FROM t ORDER BY a)", False),
        ("SELECT a FROM t WHERE b = 'order by'", False),
        ("SELECT a FROM t -- order by a", False),
        ("SELECT a FROM t", False),
    ],
)
def test_outer_order_by(sql, expected):
    assert has_outer_order_by(sql) is expected


def test_soft_f1():
    assert soft_f1([(1, "a")], [(1, "a")]) == 1.0
    assert soft_f1([], []) == 1.0
    assert soft_f1([(1,)], []) == 0.0
    # half the values of the only row match: precision = recall = 0.5
    assert soft_f1([(1, "a")], [(1, "b")]) == pytest.approx(0.5)
    # one of two gold rows found
    assert soft_f1([(1,), (2,)], [(1,)]) == pytest.approx(2 / 3)
    # duplicates are dropped first
    assert soft_f1([(1,), (1,)], [(1,)]) == 1.0


def test_ves_and_r_ves():
    assert time_ratio([2.0] * 5, [1.0] * 5) == pytest.approx(2.0)
    assert ves([4.0, 0.0]) == pytest.approx(100.0)  # (sqrt 4 + 0) / 2
    assert [r_ves_reward(x) for x in (0, 0.1, 0.3, 0.6, 1.0, 2.5)] == [0, 0.25, 0.5, 0.75, 1.0, 1.25]
    assert r_ves([2.5, 0.0]) == pytest.approx(62.5)


def test_identical_results_are_equal_without_running_the_comparator(monkeypatch):
    cmp = importlib.import_module("sqlwright.judge.compare")
    from sqlwright.judge.service import compare

    wide = ((7,) * 12,) * 200  # the test-suite search gives up on this one (see above)
    assert compare("test-suite", wide, wide, "SELECT * FROM wide") == (True, "")
    assert compare("test-suite", wide, tuple(wide), "") == (True, "")  # equal rows, another object
    # equal values of another type are not identical: the comparator decides (and still gives up)
    assert compare("test-suite", wide, ((7.0,) * 12,) * 200, "")[0] is None
    assert not cmp.identical(((1, "a"),), ((1.0, "a"),)) and cmp.identical(((1, "a"),), ((1, "a"),))
    assert not cmp.identical(((1,), (2,)), ((2,), (1,)))  # row order counts: the comparator decides
    assert compare("bird", ((1,), (2,)), ((2,), (1,)), "") == (True, "")

    calls = []
    monkeypatch.setitem(COMPARATORS, "strict", cmp.Comparator("strict", "never equal", lambda g, p, s: calls.append(1) or False,
                                                              reflexive=False))  # fmt: skip
    assert compare("strict", ((1,),), ((1,),), "") == (False, "") and calls == [1]
