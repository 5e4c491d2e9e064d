"""Execute many (database, SQL) pairs across worker processes, each distinct pair once.

``ExecutionPool.run`` is the one entry point the evaluator, data filters, voting and RL
rewards share. Guarantees:

* each distinct (database, SQL) pair in a call is executed once, however often it appears;
* work is spread over worker processes with guided self-scheduling (chunks shrink as the
  queue drains, so one slow query does not hold a long chunk hostage); chunks hold one
  database and a worker keeps to one database while it has work (affinity), so each
  database is opened by about one worker and connections are reused;
* a query that overruns is interrupted inside SQLite by its worker; if a worker is still on
  one task ``timeout + grace`` seconds after it began (a C call that never checks the
  interrupt), or dies, the parent kills it, charges that task and starts another worker:
  nothing is left running. Workers write which task they are on, and since when, to shared
  memory, so results can travel in batches (``FLUSH_S``) and the charge still falls on the
  right task.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing as mp
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait

from sqlwright.db.registry import check_targets, executor_for
from sqlwright.db.sqltext import normalize_sql
from sqlwright.types import DEFAULT_LIMITS, ExecResult, Limits, Status

Task = tuple[str, str]  # (database target: a file path or URL, SQL)


def dedupe(tasks: Sequence[Task]) -> tuple[list[Task], list[int]]:
    """The distinct tasks, and for each task the index of its distinct twin."""
    keys: dict[Task, int] = {}
    index = [keys.setdefault((t, normalize_sql(s)), len(keys)) for t, s in tasks]
    return list(keys), index


# Results travel in batches, at a chunk's end and at most this many seconds apart (so a
# progress bar moves): a message per result cost the parent a wake-up per query, which on
# Spider-sized queries was a fifth of the work. Which task a worker is running, and since
# when, it writes to shared memory instead, where the parent's watchdog reads it.
FLUSH_S = 0.05


def _worker_main(conn: Connection, limits: Limits, running) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    executors: dict[str, object] = {}
    while True:
        try:
            chunk = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if chunk is None:
            return
        batch: list = []
        flushed = time.monotonic()
        for pos, (idx, target, sql, repeat) in enumerate(chunk):
            running[0] = time.monotonic()  # the start first, then the task: see _Worker.running
            running[1] += 1  # this worker's task count: the parent knows which task that is
            ex = executor_for(target, limits, executors)
            res = ex.execute(target, sql)
            if repeat > 1 and res.ok:  # timing runs (VES): report the mean-free list of times
                times = [res.elapsed] + [ex.execute(target, sql).elapsed for _ in range(repeat - 1)]
                batch.append((idx, res.to_wire(), times))
            else:
                batch.append((idx, res.to_wire(), None))
            if pos + 1 == len(chunk) or time.monotonic() - flushed >= FLUSH_S:
                conn.send(batch)
                batch, flushed = [], time.monotonic()


@dataclass
class _Worker:
    proc: mp.process.BaseProcess
    conn: Connection
    state: object  # shared: (start time, count) of the task the worker is running; count -1: none yet
    tasks: list = field(default_factory=list)  # sent and not answered yet, in the order sent
    done: int = 0  # of ``tasks``, answered (the first ``done``)
    base: int = 0  # the worker's count of ``tasks[0]``
    ends: deque = field(default_factory=deque)  # where each chunk sent ends in ``tasks``
    since: float = 0.0  # the last send or answer: no task not begun can have begun before it

    @property
    def busy(self) -> bool:
        return self.done < len(self.tasks)

    def send(self, chunk: list, now: float) -> None:
        if not self.busy:  # everything answered: start the list afresh
            self.base += len(self.tasks)
            self.tasks, self.done = [], 0
            self.since = now
        self.tasks.extend(chunk)
        self.ends.append(len(self.tasks))
        self.conn.send(chunk)

    def answered(self, n: int, now: float) -> None:
        self.done += n
        self.since = now
        while self.ends and self.ends[0] <= self.done:
            self.ends.popleft()

    def running(self) -> tuple[int, float]:
        """(index in ``tasks``, start time) of the task the worker is on. The worker writes the
        start before the count, so a count read here never comes with an older start. A count
        of a task already answered means the next has not begun: it is ``done``, from ``since``."""
        at, started = int(self.state[1]) - self.base, self.state[0]
        if at < self.done:
            return self.done, self.since
        return at, started


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


class ExecutionPool:
    """A reusable pool of execution workers; use as a context manager.

    ``workers=0`` executes in this process (no watchdog: the SQLite interrupt only).
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS, workers: int | None = None, grace: float = 0.5,
                 start_method: str | None = None):
        self.limits = limits
        self.n_workers = default_workers() if workers is None else max(0, int(workers))
        self.grace = grace
        self._workers: list[_Worker] = []
        self._local: dict[str, object] = {}
        self._checked: set[str] = set()  # targets check_targets passed (URLs: reached once)
        # fork (default on Linux): instant start, and no re-import of the caller's __main__
        # (which spawn does: a script without a __main__ guard would run again in every
        # worker). From a process with threads (a trainer), ask for "forkserver".
        self._ctx = mp.get_context(start_method or ("fork" if sys.platform == "linux" else "spawn"))

    # -- lifecycle -------------------------------------------------------------------
    def __enter__(self) -> ExecutionPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _spawn(self) -> _Worker:
        parent, child = self._ctx.Pipe()
        state = self._ctx.RawArray("d", [0.0, -1.0])
        proc = self._ctx.Process(target=_worker_main, args=(child, self.limits, state), daemon=True)
        # a forked worker's collector leaves what it inherits alone: its full collections do not
        # scan the parent's heap (~26 ms on eval's) nor write to its pages (copy-on-write);
        # here nothing changes, so nothing that is garbage now is kept
        gc.freeze()
        try:
            proc.start()
        finally:
            gc.unfreeze()
        child.close()
        return _Worker(proc, parent, state)

    def start(self, n: int | None = None) -> None:
        """Start up to ``n`` workers now (before any threads, e.g. a progress bar, exist)."""
        n = self.n_workers if n is None else min(n, self.n_workers)
        while len(self._workers) < n:
            self._workers.append(self._spawn())

    def _kill(self, w: _Worker) -> None:
        if w.proc.is_alive():
            w.proc.kill()
        w.proc.join(timeout=5)
        w.conn.close()

    def trust(self, targets) -> None:
        """Targets the caller has just passed through ``check_targets``: ``run`` does not
        probe them again (a probe opens a connection per database: 19 on Spider dev)."""
        self._checked |= set(targets)

    def close(self) -> None:
        for w in self._workers:
            with contextlib.suppress(OSError, ValueError):
                w.conn.send(None)
        deadline = time.monotonic() + 2
        for w in self._workers:
            w.proc.join(timeout=max(0.0, deadline - time.monotonic()))
            self._kill(w)
        self._workers.clear()
        for ex in self._local.values():
            ex.close()
        self._local.clear()

    # -- running ---------------------------------------------------------------------
    def run(
        self,
        tasks: Sequence[Task],
        progress: Callable[[int], None] | None = None,
        repeat: int = 1,
    ) -> list[ExecResult]:
        """Execute every task; equal tasks share one execution. Results follow ``tasks``.

        With ``repeat > 1`` each successful query runs that many times and
        ``self.last_times[i]`` holds the list of elapsed seconds for task ``i``.
        """
        unique, index = dedupe(tasks)
        new = {t for t, _ in unique} - self._checked
        if new:
            check_targets(new)
            self._checked |= new
        # Same database together: connections are reused; order is otherwise stable.
        order = sorted(range(len(unique)), key=lambda i: unique[i][0])
        results: list[tuple | None] = [None] * len(unique)
        times: list[list[float] | None] = [None] * len(unique)
        if self.n_workers == 0 or len(unique) <= 1:
            self._run_local(unique, order, results, times, progress, repeat)
        else:
            self._run_pool(unique, order, results, times, progress, repeat)
        out = [ExecResult.from_wire(r) for r in results]
        self.last_stats = {
            "tasks": len(tasks),
            "executed": len(unique),
            "execute_seconds": sum(r.elapsed for r in out),  # summed over the distinct executions
        }
        self.last_times = [times[i] for i in index]
        return [out[i] for i in index]

    def _run_local(self, unique, order, results, times, progress, repeat) -> None:
        for i in order:
            target, sql = unique[i]
            ex = executor_for(target, self.limits, self._local)
            res = ex.execute(target, sql)
            results[i] = res.to_wire()
            if repeat > 1 and res.ok:
                times[i] = [res.elapsed] + [ex.execute(target, sql).elapsed for _ in range(repeat - 1)]
            if progress:
                progress(1)

    def _run_pool(self, unique, order, results, times, progress, repeat) -> None:
        self.start(min(self.n_workers, len(unique)))
        # database affinity: one queue per database; a worker keeps to its database while that
        # has work, then takes the largest database no other worker holds (the largest of all
        # at the end), so each database is opened by about one worker instead of every worker
        by_db: dict[str, deque] = {}
        for i in order:
            by_db.setdefault(unique[i][0], deque()).append(i)
        home: dict[int, str] = {}  # id(worker) -> its database
        left = len(unique)  # tasks not handed out yet
        requeued: deque[list] = deque()
        remaining = len(unique)
        budget = self.limits.timeout * max(1, repeat) + self.grace

        def next_chunk(w: _Worker) -> list:
            nonlocal left
            if requeued:
                return requeued.popleft()
            db = home.get(id(w))
            if db not in by_db:
                held = set(home.values())
                free = [d for d in by_db if d not in held]
                db = home[id(w)] = max(free or by_db, key=lambda d: len(by_db[d]))
            q = by_db[db]
            # guided self-scheduling: chunks shrink as the work drains
            size = max(1, min(64, left // (4 * len(self._workers)), len(q)))
            chunk = [(i, *unique[i], repeat) for i in (q.popleft() for _ in range(size))]
            if not q:
                del by_db[db]
            left -= len(chunk)
            return chunk

        def replace(w: _Worker, status: Status, why: str) -> None:
            """Charge the task ``w`` is running, requeue the rest of what it was sent (results
            it had not sent yet included), and start a new worker in its place."""
            nonlocal remaining
            at, started = w.running()
            idx = w.tasks[at][0]
            results[idx] = ExecResult(status, error=why, elapsed=time.monotonic() - started).to_wire()
            remaining -= 1
            if progress:
                progress(1)
            rest = w.tasks[w.done : at] + w.tasks[at + 1 :]
            if rest:
                requeued.append(rest)
            self._kill(w)
            self._workers[self._workers.index(w)] = self._spawn()

        try:
            while remaining:
                now = time.monotonic()
                for w in list(self._workers):
                    # two chunks out per worker: the next waits in its pipe while it runs one, so it
                    # never idles for the parent (on 2 cores the parent is not always scheduled)
                    while len(w.ends) < 2 and (by_db or requeued):
                        try:
                            w.send(next_chunk(w), now)
                        except OSError:  # died while idle; its first task is charged, rest requeued
                            replace(w, Status.RUNTIME_ERROR, "execution worker crashed")
                            break
                busy = [w for w in self._workers if w.busy]
                if not busy:
                    continue
                first_deadline = min(w.running()[1] + budget for w in busy)
                ready = wait([w.conn for w in busy], timeout=max(0.0, first_deadline - now))
                by_conn = {id(w.conn): w for w in busy}
                for conn in ready:
                    w = by_conn[id(conn)]
                    try:
                        while conn.poll():
                            batch = conn.recv()
                            for idx, wire, t in batch:
                                results[idx], times[idx] = wire, t
                            w.answered(len(batch), time.monotonic())
                            remaining -= len(batch)
                            if progress:
                                progress(len(batch))
                    except (EOFError, OSError):
                        replace(w, Status.RUNTIME_ERROR, "execution worker crashed (out of memory?)")
                now = time.monotonic()
                for w in list(self._workers):
                    if w.busy and now - w.running()[1] > budget:
                        replace(w, Status.TIMEOUT, f"stopped after {self.limits.timeout:g} s (worker killed)")
        except BaseException:
            # interrupted (Ctrl-C, an error in a progress callback): what the workers still hold
            # would answer the next run's tasks with this run's results; those workers go
            for w in [w for w in self._workers if w.busy]:
                self._kill(w)
                self._workers.remove(w)
            raise


def execute_many(
    tasks: Sequence[Task], limits: Limits = DEFAULT_LIMITS, workers: int | None = None
) -> list[ExecResult]:
    """One-shot helper: execute tasks in a fresh pool and close it."""
    with ExecutionPool(limits, workers) as pool:
        return pool.run(tasks)
