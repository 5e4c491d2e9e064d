"""The execution pool: each distinct query once, results in order, stuck workers replaced."""

from __future__ import annotations

import time

import psutil
import pytest

from conftest import SCHOOLS_DDL, make_db
from sqlwright.db import registry
from sqlwright.db.pool import ExecutionPool
from sqlwright.types import ExecResult, Limits, Status


@pytest.fixture
def db(tmp_path):
    return str(make_db(tmp_path / "s" / "s.sqlite", SCHOOLS_DDL))


@pytest.mark.parametrize("workers", [0, 2])
def test_results_follow_tasks_and_duplicates_run_once(db, workers):
    tasks = [(db, "SELECT count(*) FROM schools"), (db, "SELECT max(students) FROM schools"),
             (db, "  SELECT count(*) FROM schools  "), (db, "SELECT nope"), (db, "SELECT count(*) FROM schools")]  # fmt: skip
    with ExecutionPool(Limits(timeout=5), workers) as pool:
        res = pool.run(tasks)
        assert pool.last_stats["tasks"] == 5 and pool.last_stats["executed"] == 3
    assert [r.rows for r in res] == [((5,),), ((500,),), ((5,),), None, ((5,),)]
    assert res[0] is res[2] is res[4]  # one execution shared
    assert res[3].status is Status.SYNTAX_ERROR


def test_pool_is_reusable_and_closes_its_workers(db):
    pool = ExecutionPool(Limits(timeout=5), workers=2)
    for _ in range(2):
        assert pool.run([(db, f"SELECT {i}") for i in range(50)])[49].rows == ((49,),)
    children = psutil.Process().children(recursive=True)
    assert len(children) == 2
    pool.close()
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


class _StuckExecutor:
    """Stands for a C call that never returns to SQLite's interrupt check."""

    def __init__(self, limits):
        pass

    def execute(self, target, sql):
        if "stuck" in sql:
            time.sleep(60)
        return ExecResult(Status.OK, ((sql,),), ("x",))

    def close(self):
        pass


def test_watchdog_kills_a_stuck_worker_and_carries_on(monkeypatch):
    monkeypatch.setitem(registry.EXECUTORS, "stuck", f"{__name__}:_StuckExecutor")
    tasks = [("stuck://db", f"q{i}") for i in range(6)] + [("stuck://db", "stuck!")] + [("stuck://db", f"r{i}") for i in range(6)]
    t0 = time.monotonic()
    with ExecutionPool(Limits(timeout=0.5), workers=2, grace=0.5) as pool:
        res = pool.run(tasks)
    took = time.monotonic() - t0
    assert res[6].status is Status.TIMEOUT and "killed" in res[6].error
    assert all(r.ok for i, r in enumerate(res) if i != 6)
    assert took < 0.5 + 1.0 + 1.0  # timeout + grace, plus start-up slack
