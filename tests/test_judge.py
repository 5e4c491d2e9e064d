"""The judge service: each distinct (target, SQL) executed once per call, gold results cached
across calls, one verdict with a reason per candidate, every comparator on demand, voting
groups by the chosen comparator, and one judge shared by threads, asyncio and a trainer."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading

import pytest

from conftest import SHOP_DDL, make_db
from sqlwright.judge import COMPARATORS, Item, Judge
from sqlwright.types import Limits, Status

RUNAWAY = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"
GOLD = "SELECT title FROM products WHERE stock = 0"  # lamp


@pytest.fixture
def db(tmp_path) -> str:
    return str(make_db(tmp_path / "shop" / "shop.sqlite", SHOP_DDL))


@pytest.fixture(params=[0, 2], ids=["in-process", "2-workers"])
def judge(request):
    with Judge("bird", Limits(timeout=0.5), workers=request.param) as j:
        yield j


def test_each_distinct_query_runs_once_per_call(judge, db):
    items = [
        Item(db, GOLD, ["SELECT title FROM products WHERE price > 20", "  SELECT title FROM products WHERE price > 20 "]),
        Item(db, f" {GOLD}  ", [GOLD, "SELECT 1"]),  # the same gold (outer spaces aside); a candidate equal to it
        Item(db, GOLD, ["SELECT 1", "", None]),  # repeats; no SQL is not executed
    ]
    out = judge.judge_many(items)
    # distinct: the gold, "price > 20", "SELECT 1" (the candidate equal to the gold shares its run)
    assert judge.last_stats["tasks"] == 8 and judge.last_stats["executed"] == 3
    assert [v.verdict for v in out[0].candidates] == ["correct", "correct"]
    assert [v.verdict for v in out[1].candidates] == ["correct", "wrong"]
    assert [v.verdict for v in out[2].candidates] == ["wrong", "no_sql", "no_sql"]
    assert out[0].gold is out[1].gold is out[2].gold  # one execution, shared


def test_gold_is_cached_across_calls(judge, db):
    judge.judge_many([Item(db, GOLD, ["SELECT 1"])])
    assert judge.last_stats["executed"] == 2
    again = judge.judge_many([Item(db, GOLD, ["SELECT 2", "SELECT 3"]), Item(db, GOLD, ["SELECT 2"])])
    assert judge.last_stats["executed"] == 2  # the two new candidates only: the gold came from the cache
    assert again[0].gold.rows == (("lamp",),)
    assert judge.distinct([Item(db, GOLD, ["SELECT 4"])]) == 1
    judge.judge_many([Item(db, "SELECT count(*) FROM products", [])])
    assert judge.last_stats["executed"] == 1  # another gold is executed


def test_verdicts_and_reasons(db, tmp_path):
    with Judge("bird", Limits(timeout=0.3), workers=0) as judge:
        j = judge.judge(db, GOLD, [
            "SELECT title FROM products WHERE price >= 30",  # correct: same rows, other SQL
            "SELECT title FROM products WHERE price < 5",  # wrong
            "SELECT nope FROM products",  # error
            RUNAWAY,  # timeout
            "",  # no SQL
            None,
            "DROP TABLE products",  # refused: an error too
        ])  # fmt: skip
        v = j.candidates
        assert [c.verdict for c in v] == ["correct", "wrong", "error", "timeout", "no_sql", "no_sql", "error"]
        assert v[0].correct and v[0].reason == "" and v[0].executed
        assert not any(c.correct for c in v[1:])
        assert v[1].reason == "different rows (1 rows, gold has 1)"
        assert v[2].reason == "syntax_error: no such column: nope" and v[2].status is Status.SYNTAX_ERROR
        assert v[3].reason == "timeout: stopped after 0.3 s" and v[3].status is Status.TIMEOUT
        assert v[4].reason == "no SQL in the answer" and v[4].result is None and v[4].status is None
        assert v[6].reason.startswith("forbidden: refused, evaluation is read-only: DROP")
        assert j.failed == [2, 3, 4, 5, 6] and j.groups == [[0], [1]]

        missing = str(tmp_path / "gone" / "gone.sqlite")
        m = judge.judge(missing, GOLD, [GOLD, ""]).candidates
        assert [c.verdict for c in m] == ["db_missing", "db_missing"]  # whatever the candidate: not scored
        assert m[0].reason == f"database file not found: {missing}"

        g = judge.judge(db, "SELECT name FROM nowhere", ["SELECT 1"]).candidates[0]
        assert g.verdict == "gold_error" and not g.correct
        assert g.reason == "gold SQL failed (syntax_error): no such table: nowhere"


def test_an_answer_without_sql_is_no_sql_and_wrong(db):
    # the dev-accuracy callback sends "" when nothing was extracted (it once sent the literal "SELECT")
    with Judge("bird", Limits(timeout=5), workers=0) as judge:
        (v,) = judge.judge(db, GOLD, [""]).candidates
        assert judge.last_stats["executed"] == 1  # the gold only: an empty answer is not executed
        assert (v.verdict, v.reason, v.correct, v.result) == ("no_sql", "no SQL in the answer", False, None)
        (select,) = judge.judge(db, GOLD, ["SELECT"]).candidates
        assert select.verdict == "error"  # what the literal used to give: a syntax error, not "no SQL"


def test_all_comparators_fills_every_answer(db):
    gold = "SELECT title FROM products ORDER BY price"
    with Judge("bird", Limits(timeout=5), workers=0) as judge:
        reverse, dupes, swapped = judge.judge_many([
            Item(db, gold, ["SELECT title FROM products ORDER BY price DESC"]),
            Item(db, "SELECT title FROM products", ["SELECT title FROM products UNION ALL SELECT 'pen'"]),
            Item(db, "SELECT title, price FROM products", ["SELECT price, title FROM products"]),
        ], all_comparators=True)  # fmt: skip
        plain = judge.judge(db, gold, ["SELECT title FROM products ORDER BY price DESC"]).candidates[0]
    for j in (reverse, dupes, swapped):
        assert set(j.candidates[0].equal) == set(COMPARATORS)
    assert reverse.candidates[0].equal == {"bird": True, "multiset": True, "ordered": False, "test-suite": False}
    assert dupes.candidates[0].equal == {"bird": True, "multiset": False, "ordered": False, "test-suite": False}
    assert swapped.candidates[0].equal == {"bird": False, "multiset": False, "ordered": False, "test-suite": True}
    assert reverse.candidates[0].verdict == "correct"  # judged by the judge's own comparator (bird)
    assert swapped.candidates[0].verdict == "wrong" and swapped.candidates[0].reason == "same values, columns in another order"
    assert plain.equal == {}  # only when asked


def test_groups_follow_the_comparator(db):
    candidates = [
        "SELECT 'x' FROM products",  # four rows of 'x'
        "SELECT 'x'",  # one row
        "SELECT 'x' FROM products UNION ALL SELECT 'x' FROM products",  # eight rows
        "SELECT 'x' FROM products WHERE pid < 5",  # four rows again
        "SELECT oops",
    ]
    with Judge("bird", Limits(timeout=5), workers=0) as judge:
        j = judge.judge(db, "SELECT 'x'", candidates)
        assert j.groups == [[0, 1, 2, 3]] and j.failed == [4] and j.chosen == 0
        assert [c.verdict for c in j.candidates] == ["correct"] * 4 + ["error"]
        assert [c.group for c in j.candidates] == [0, 0, 0, 0, None]
    with Judge("multiset", Limits(timeout=5), workers=0) as judge:
        j = judge.judge(db, "SELECT 'x'", candidates)
        assert j.groups == [[0, 3], [1], [2]] and j.chosen == 0
        assert [c.verdict for c in j.candidates] == ["wrong", "correct", "wrong", "wrong", "error"]
        assert [c.group for c in j.candidates] == [0, 1, 2, 0, None]


def test_threads_share_one_judge(db):
    errors: list[BaseException] = []
    with Judge("bird", Limits(timeout=5), workers=2) as judge:
        def work(t: int) -> None:
            try:
                for round_ in range(5):
                    k = 100 * t + round_
                    items = [Item(db, f"SELECT {k}", [f"SELECT {k}", f"SELECT {k} + 1", f"SELECT {k} FROM nowhere"]),
                             Item(db, f"SELECT {k}, 'x'", [f"SELECT {k}, 'x'"])]
                    out = judge.judge_many(items)
                    assert [c.verdict for c in out[0].candidates] == ["correct", "wrong", "error"], (t, round_)
                    assert out[0].gold.rows == ((k,),) and out[0].candidates[1].result.rows == ((k + 1,),)
                    assert out[1].candidates[0].correct and out[1].gold.rows == ((k, "x"),)
            except BaseException as e:  # noqa: BLE001 - reported by the main thread
                errors.append(e)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert not errors, errors[0]
    assert not any(t.is_alive() for t in threads)


def test_ajudge_many_from_asyncio(db):
    async def main(judge: Judge) -> list:
        calls = [judge.ajudge_many([Item(db, f"SELECT {k}", [f"SELECT {k}", "SELECT -1", ""])]) for k in range(6)]
        return await asyncio.gather(*calls)

    with Judge("bird", Limits(timeout=5), workers=2) as judge:
        results = asyncio.run(main(judge))
    for k, (j,) in enumerate(results):
        assert j.gold.rows == ((k,),)
        assert [c.verdict for c in j.candidates] == ["correct", "wrong", "no_sql"]


TRAINER = """
import sys
import threading
import time

from sqlwright.judge import Item, Judge
from sqlwright.types import Limits

GOLD = {gold!r}


def main(db):
    stop = threading.Event()
    for _ in range(3):  # a trainer's threads (data loader, logger, ...)
        threading.Thread(target=stop.wait, daemon=True).start()
    assert threading.active_count() == 4
    with Judge("bird", Limits(timeout=5), workers=2, start_method="forkserver") as judge:
        assert judge.pool._ctx.get_start_method() == "forkserver"
        for _ in range(2):  # the same workers serve every call
            out = judge.judge_many([Item(db, GOLD, [GOLD, "SELECT title FROM products WHERE stock > 50"]),
                                    Item(db, "SELECT count(*) FROM products", ["SELECT 4"])])
            assert [c.verdict for c in out[0].candidates] == ["correct", "wrong"], out
            assert out[1].candidates[0].correct
            pids = sorted(w.proc.pid for w in judge.pool._workers)
            assert len(pids) == 2 and all(w.proc.is_alive() for w in judge.pool._workers)
        workers = [w.proc for w in judge.pool._workers]
    assert not any(p.is_alive() for p in workers)  # closed with the judge
    stop.set()
    print("ok", pids)


if __name__ == "__main__":
    main(sys.argv[1])
"""


def test_forkserver_judge_from_a_threaded_process(db, tmp_path):
    # in a process of its own, as a trainer is (and so no forkserver outlives this test's process)
    script = tmp_path / "trainer.py"
    script.write_text(TRAINER.format(gold=GOLD))
    proc = subprocess.run([sys.executable, str(script), db], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok ")
