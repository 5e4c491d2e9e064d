"""The execution pool: each distinct query once, results in order, stuck workers replaced."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import time
import weakref

import psutil
import pytest

from conftest import SCHOOLS_DDL, child_processes, fails_if_it_hangs, make_db
from sqlwright.db import registry
from sqlwright.db.pool import ExecutionPool
from sqlwright.errors import UserError
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
    children = child_processes()
    assert len(children) == 2
    pool.close()
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


def test_starting_workers_keeps_no_garbage_alive(db):
    # the heap is frozen for the collector only while a worker forks: a cycle that is garbage
    # then (a dropped model, say) is still collected afterwards
    class Node:
        pass

    gc.disable()  # so that nothing collects the cycle before the workers start
    try:
        a, b = Node(), Node()
        a.other, b.other = b, a
        alive = weakref.ref(a)
        del a, b
        pool = ExecutionPool(Limits(timeout=5), workers=2)
        pool.start()
        assert alive() is not None  # still uncollected garbage when the workers forked
    finally:
        gc.enable()
    with pool:
        gc.collect()
        assert alive() is None
        assert pool.run([(db, "SELECT 1"), (db, "SELECT 2")])[1].rows == ((2,),)


class _StuckExecutor:
    """Stands for a C call that never returns to SQLite's interrupt check."""

    def __init__(self, limits):
        pass

    def execute(self, target, sql):
        if "stuck" in sql:
            time.sleep(60)
        if "crash" in sql:
            os._exit(1)
        return ExecResult(Status.OK, ((sql,),), ("x",))

    def close(self):
        pass


def test_watchdog_kills_a_stuck_worker_and_carries_on(monkeypatch):
    monkeypatch.setitem(registry.EXECUTORS, "stuck", f"{__name__}:_StuckExecutor")
    # chunks of several tasks, two out per worker: the stuck task is charged, not the ones
    # before it in its chunk (answered, not sent yet) nor those queued behind it
    tasks = [("stuck://db", f"q{i}") for i in range(40)] + [("stuck://db", "stuck!")] + [("stuck://db", f"r{i}") for i in range(40)]
    t0 = time.monotonic()
    with ExecutionPool(Limits(timeout=0.5), workers=2, grace=0.5) as pool:
        res = pool.run(tasks)
    took = time.monotonic() - t0
    assert res[40].status is Status.TIMEOUT and "killed" in res[40].error
    assert [r.rows for i, r in enumerate(res) if i != 40] == [((t[1],),) for i, t in enumerate(tasks) if i != 40]
    assert took < 0.5 + 1.0 + 1.0  # timeout + grace, plus start-up slack


def test_a_crash_is_charged_to_the_task_that_crashed(monkeypatch):
    # results travel in batches at a chunk's end: those answered before the crash in its
    # chunk (tasks 38 and 39 of chunks of 10, 8, 7, 7, 6, 5) were not sent, and must be run
    # again, not charged
    monkeypatch.setitem(registry.EXECUTORS, "stuck", f"{__name__}:_StuckExecutor")
    tasks = [("stuck://db", f"q{i}") for i in range(40)] + [("stuck://db", "crash!")] + [("stuck://db", f"r{i}") for i in range(40)]
    with ExecutionPool(Limits(timeout=5), workers=2) as pool:
        res = pool.run(tasks)
        assert [r.ok for r in pool.run([("stuck://db", "a"), ("stuck://db", "b")])] == [True, True]  # it carries on
    assert res[40].status is Status.RUNTIME_ERROR and "crashed" in res[40].error
    assert [r.rows for i, r in enumerate(res) if i != 40] == [((t[1],),) for i, t in enumerate(tasks) if i != 40]


@pytest.mark.parametrize("workers", [0, 2])
def test_url_targets_are_refused_in_one_line_without_the_password(db, workers):
    with ExecutionPool(Limits(timeout=5), workers) as pool:
        for url in ("postgresql://u:pw@h/db", "postgresql+psycopg://u:pw@h:5432/db"):
            with pytest.raises(UserError) as e:
                pool.run([(db, "SELECT 1"), (url, "SELECT 1")])
            msg = str(e.value)
            assert msg.startswith(f"{url.split('://')[0]}://u:***@h") and ": cannot connect: " in msg  # no server named h
            assert "pw" not in msg and "\n" not in msg
        with pytest.raises(UserError) as e:
            pool.run([(db, "SELECT 1"), ("oracle://u:pw@h/db", "SELECT 1")])
        assert str(e.value).startswith("oracle://h/db: no executor for oracle databases") and "pw" not in str(e.value)
        assert not pool._workers  # refused before anything ran: no worker started, none crashed
        assert pool.run([(db, "SELECT 1")])[0].rows == ((1,),)  # and the pool still works


def test_eval_with_a_database_url_exits_2_in_one_line(bird_dir, tmp_path):
    (tmp_path / "p.jsonl").write_text('{"id": 0, "sql": "SELECT 1"}\n')
    for root in ("postgresql://u:pw@h/db", "mysql://u:pw@h/db"):
        proc = subprocess.run([sys.executable, "-m", "sqlwright", "eval", str(tmp_path / "p.jsonl"), "-b", str(bird_dir),
                               "--db-root", root, "-o", str(tmp_path / "r"), "--no-progress"],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        dialect = root.split(":")[0]
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().splitlines() == [
            f"error: --db-root {dialect}://u:***@h/db is a database URL; --db-root names a folder of SQLite files, "
            f"--db-url a server's databases (e.g. '{dialect}://user@host/{{db_id}}')"]
        assert "worker crashed" not in proc.stderr and "pw" not in proc.stderr


def test_one_login_check_per_server_and_login():
    # check_targets probes one target per key: a login does not depend on the database named
    key = registry.server_of
    assert key("postgresql://u:pw@h:5432/a") == key("postgresql://u:pw@h:5432/b") == key("postgres://u:pw@h:5432/c")
    assert key("postgresql://u@h/bench?options=-csearch_path%3Da") == key("postgresql://u@h/bench?options=-csearch_path%3Db")
    assert len({key("postgresql://u@h:1/a"), key("postgresql://v@h:1/a"), key("postgresql://u@h:2/a"),
                key("postgresql://u@g:1/a"), key("postgresql://u:x@h:1/a"), key("postgresql://u@h:1/a?sslmode=require"),
                key("mysql://u@h:1/a")}) == 7  # fmt: skip
    assert key("duckdb:///x/a.duckdb") == key("duckdb:///y/b.duckdb")  # files: the driver only


def test_an_interrupted_run_leaves_nothing_for_the_next(db):
    # a progress callback that raises (as Ctrl-C does) stops the run with chunks still out:
    # the next run must not receive their answers as its own
    def stop(n):
        raise KeyboardInterrupt

    hang = "the run after an interrupted one hung (stale answers counted as its own)"
    with fails_if_it_hangs(30, hang), ExecutionPool(Limits(timeout=5), workers=2) as pool:
        with pytest.raises(KeyboardInterrupt):
            pool.run([(db, f"SELECT {i}") for i in range(300)], progress=stop)
        res = pool.run([(db, f"SELECT 'b', {i}") for i in range(300)])
    assert [r.rows for r in res] == [(("b", i),) for i in range(300)]
