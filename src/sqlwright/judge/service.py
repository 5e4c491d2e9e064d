"""The judge: the one definition of correct.

``Judge.judge_many(items)`` takes questions, each a database target, its gold SQL and zero or
more candidate SQL strings, executes every distinct (target, SQL) of the whole call once on
the execution pool (read-only, real timeouts), and returns per question the gold's result,
a verdict with a reason for each candidate, and the candidates grouped by the comparator
(candidates whose results it calls equal vote together). Evaluation, chain-of-thought
filtering, synthetic-data checks, the in-training dev accuracy, voting, and the RL reward
all call it.

From a training process: ``Judge(workers=2, start_method="forkserver")`` keeps a small pool
of reused workers started without forking the trainer; calls are serialised by a lock, so
threads (an async reward function's ``await judge.ajudge_many(...)``) may share one judge.
Gold results are cached across calls (``gold_cache``), so a training loop that sees the same
question every epoch executes its gold once.

The validity check, ``Judge.check_many(items)``: does each candidate compile against its
database? It sends ``EXPLAIN <sql>`` (SQLite) through the same pool and read-only executor,
so it is time-limited, writes are refused when the statement is prepared (``DROP TABLE`` is
``forbidden``, the file untouched), and nothing is run; each candidate gets a ``Validity``
(ok, the error text, the status). ``judge_many(items, validate=True)`` checks first and
executes only the candidates that compile (the others keep their check's error as their
result), and records which were valid (``Judgement.valid``); ``last_stats`` counts the
checked and the invalid candidates.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlwright.db.pool import ExecutionPool
from sqlwright.db.registry import compile_only
from sqlwright.db.sqltext import normalize_sql
from sqlwright.errors import UserError, did_you_mean
from sqlwright.judge.compare import COMPARATORS, NotComputed, explain_mismatch, identical
from sqlwright.types import DEFAULT_LIMITS, ExecResult, Limits, Status

# Verdicts, in the order reports list them. ``correct`` is the only one that counts;
# ``executed``: ran, and there was no gold to compare with (voting without a reference).
VERDICTS = ("correct", "wrong", "executed", "error", "timeout", "too_many_rows", "no_sql", "missing", "db_missing", "gold_error")


@dataclass(frozen=True)
class Item:
    """One question to judge: where to run, the gold SQL (None: no gold, e.g. voting
    without a reference), and the candidates."""

    target: str
    gold: str | None
    candidates: Sequence[str | None] = ()


@dataclass
class Verdict:
    verdict: str  # one of VERDICTS
    reason: str  # why, in one line ("" when correct)
    correct: bool
    result: ExecResult | None  # the candidate's execution (None when it was not run: no SQL)
    group: int | None = None  # index into Judgement.groups, when the candidate executed
    equal: dict[str, bool | None] = field(default_factory=dict)  # per comparator, when asked; None: not computed

    @property
    def status(self) -> Status | None:
        return self.result.status if self.result is not None else None

    @property
    def elapsed(self) -> float:
        return self.result.elapsed if self.result is not None else 0.0

    @property
    def executed(self) -> bool:
        return self.result is not None and self.result.ok


@dataclass(frozen=True)
class Validity:
    """Whether one candidate compiles against its database (the validity check)."""

    ok: bool
    error: str = ""  # the database's error text ("" when ok)
    status: Status | None = None  # Status.OK, SYNTAX_ERROR, FORBIDDEN, TIMEOUT, DB_MISSING ...; None: no SQL

    def __iter__(self):  # ok, error = validity
        return iter((self.ok, self.error))


NO_SQL = Validity(False, "no SQL in the answer", None)


@dataclass
class Judgement:
    gold: ExecResult | None  # None when the item has no gold
    candidates: list[Verdict]
    groups: list[list[int]]  # candidate indices per equal-result group, largest first, ties by first index
    failed: list[int]  # candidates that did not execute (or had no SQL)
    valid: list[Validity] | None = None  # per candidate, when judged with validate=True

    @property
    def invalid(self) -> list[int]:
        """Candidates that did not compile (empty when not validated)."""
        return [i for i, v in enumerate(self.valid or ()) if not v.ok]

    @property
    def chosen(self) -> int:
        """Self-consistency: the first candidate of the largest group (the first candidate
        when none executed)."""
        return self.groups[0][0] if self.groups else 0


def check_comparator(name: str) -> None:
    if name not in COMPARATORS:
        raise UserError(f"unknown comparator {name!r}{did_you_mean(name, COMPARATORS)}; choose one of: {', '.join(COMPARATORS)}")


def compare(comparator: str, gold_rows, pred_rows, gold_sql: str, same_rows: bool | None = None) -> tuple[bool | None, str]:
    """(equal, why not computed) under one comparator; never raises for a bounded search.
    ``same_rows``: ``identical(gold_rows, pred_rows)`` when the caller has it already."""
    if COMPARATORS[comparator].reflexive and (identical(gold_rows, pred_rows) if same_rows is None else same_rows):
        return True, ""
    try:
        return COMPARATORS[comparator].equal(gold_rows, pred_rows, gold_sql), ""
    except NotComputed as e:
        return None, f"not computed: {e}"


def verdict_of(gold: ExecResult, pred: ExecResult | None, gold_sql: str, comparator: str,
               same: bool | None = None, why: str = "") -> tuple[str, str, bool]:
    """(verdict, reason, correct) for one candidate given both executions (``pred`` None: the
    candidate had no SQL). ``same``: the comparator's answer when the caller has it."""
    if gold.status is Status.DB_MISSING:
        return "db_missing", gold.error, False
    if pred is None:
        return "no_sql", "no SQL in the answer", False
    if not gold.ok:
        return "gold_error", f"gold SQL failed ({gold.status.value}): {gold.error}", False
    if not pred.ok:
        verdict = {Status.TIMEOUT: "timeout", Status.TOO_MANY_ROWS: "too_many_rows"}.get(pred.status, "error")
        return verdict, f"{pred.status.value}: {pred.error}", False
    if same is None and not why:
        same, why = compare(comparator, gold.rows, pred.rows, gold_sql)
    if same:
        return "correct", "", True
    return "wrong", why or explain_mismatch(gold.rows, pred.rows), False


class Judge:
    """Execute-and-compare over one reusable execution pool; use as a context manager."""

    def __init__(self, comparator: str = "bird", limits: Limits = DEFAULT_LIMITS, workers: int | None = None,
                 start_method: str | None = None, gold_cache: int = 100_000, pool: ExecutionPool | None = None):
        check_comparator(comparator)
        self.comparator = comparator
        self.pool = pool if pool is not None else ExecutionPool(limits, workers, start_method=start_method)
        self._own_pool = pool is None
        self._lock = threading.Lock()
        self._gold: OrderedDict[tuple[str, str], ExecResult] = OrderedDict()
        self._gold_cap = gold_cache
        self.last_stats: dict = {}

    def __enter__(self) -> Judge:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._own_pool:
            self.pool.close()

    def in_process(self) -> Judge:
        """A judge that executes in this process (no workers) and shares this one's gold
        cache: for the phase of a command after threads exist (a teacher's HTTP client)."""
        j = Judge(self.comparator, self.pool.limits, workers=0, gold_cache=self._gold_cap)
        j._gold = self._gold
        return j

    # -- execution -----------------------------------------------------------------------
    def execute(self, tasks: Sequence[tuple[str, str]], progress: Callable[[int], None] | None = None,
                repeat: int = 1) -> list[ExecResult]:
        """Plain execution of (target, SQL) pairs, each distinct pair once (thread-safe)."""
        with self._lock:
            out = self.pool.run(tasks, progress=progress, repeat=repeat)
            self.last_stats = dict(self.pool.last_stats)
            self.last_times = self.pool.last_times
            return out

    def distinct(self, items: Sequence[Item]) -> int:
        """How many executions ``judge_many(items)`` needs at most (for progress bars)."""
        keys = set()
        for it in items:
            if it.gold is not None and (it.target, normalize_sql(it.gold)) not in self._gold:
                keys.add((it.target, normalize_sql(it.gold)))
            keys.update((it.target, normalize_sql(c)) for c in it.candidates if c and c.strip())
        return len(keys)

    # -- the validity check --------------------------------------------------------------
    def check(self, target: str, candidates: Sequence[str | None]) -> list[Validity]:
        return self.check_many([Item(target, None, candidates)])[0]

    def check_many(self, items: Sequence[Item], progress: Callable[[int], None] | None = None) -> list[list[Validity]]:
        """Per item, per candidate: does it compile against the item's database? One pool call
        of ``EXPLAIN <sql>`` for the whole batch (each distinct pair once); gold is ignored.
        ``last_stats`` gains ``checked`` and ``invalid``."""
        tasks: list[tuple[str, str]] = []
        slots: list[list[int | None]] = []
        for it in items:
            row = []
            for c in it.candidates:
                if c is None or not c.strip():
                    row.append(None)
                else:
                    row.append(len(tasks))
                    tasks.append((it.target, compile_only(it.target, c)))
            slots.append(row)
        with self._lock:
            results = self.pool.run(tasks, progress=progress) if tasks else []
            stats = dict(self.pool.last_stats) if tasks else {"tasks": 0, "executed": 0, "execute_seconds": 0.0}
        out = [[NO_SQL if s is None else _validity(results[s]) for s in row] for row in slots]
        stats.update(checked=sum(len(row) for row in out), invalid=sum(not v.ok for row in out for v in row))
        self.last_stats = stats
        return out

    # -- judging -------------------------------------------------------------------------
    def judge(self, target: str, gold: str | None, candidates: Sequence[str | None], **kw) -> Judgement:
        return self.judge_many([Item(target, gold, candidates)], **kw)[0]

    def judge_many(self, items: Sequence[Item], all_comparators: bool = False,
                   progress: Callable[[int], None] | None = None, validate: bool = False) -> list[Judgement]:
        """Judge every item; one pool call for the whole batch. With ``all_comparators`` each
        executed candidate also records every comparator's answer (``Verdict.equal``). With
        ``validate`` the candidates are checked first (``check_many``, one more pool call) and
        only those that compile are executed; the others fail with their check's error."""
        checks = self.check_many(items) if validate else None
        check_stats = {k: self.last_stats[k] for k in ("checked", "invalid")} if validate else {}
        tasks: list[tuple[str, str]] = []
        gold_slot: list[int | tuple[str, str] | None] = []
        cand_slots: list[list[int | None]] = []
        for it in items:
            if it.gold is None:
                gold_slot.append(None)
            else:
                key = (it.target, normalize_sql(it.gold))
                if key in self._gold:
                    gold_slot.append(key)
                else:
                    gold_slot.append(len(tasks))
                    tasks.append((it.target, it.gold))
            slots: list[int | ExecResult | None] = []
            for k, c in enumerate(it.candidates):
                if c is None or not c.strip():
                    slots.append(None)
                elif checks is not None and not checks[len(cand_slots)][k].ok:
                    v = checks[len(cand_slots)][k]
                    slots.append(ExecResult(v.status or Status.SYNTAX_ERROR, error=v.error))  # not executed
                else:
                    slots.append(len(tasks))
                    tasks.append((it.target, c))
            cand_slots.append(slots)
        with self._lock:
            results = self.pool.run(tasks, progress=progress) if tasks else []
            self.last_stats = dict(self.pool.last_stats) if tasks else {"tasks": 0, "executed": 0, "execute_seconds": 0.0}
            self.last_stats.update(check_stats)
            out = []
            for n, (it, gs, slots) in enumerate(zip(items, gold_slot, cand_slots, strict=True)):
                if isinstance(gs, tuple):
                    self._gold.move_to_end(gs)
                    gold = self._gold[gs]
                elif gs is None:
                    gold = None
                else:
                    gold = results[gs]
                    self._remember(it, gold)
                cands = [s if isinstance(s, ExecResult) else results[s] if s is not None else None for s in slots]
                j = self._judge_one(it, gold, cands, all_comparators)
                j.valid = checks[n] if checks is not None else None
                out.append(j)
            return out

    async def ajudge_many(self, items: Sequence[Item], **kw) -> list[Judgement]:
        """``judge_many`` from async code (an async reward function): runs in a thread."""
        import asyncio  # here, not at import: the judge is on every command's path

        return await asyncio.to_thread(self.judge_many, items, **kw)

    def _remember(self, it: Item, gold: ExecResult) -> None:
        if self._gold_cap <= 0 or gold.status is Status.TIMEOUT:  # a timeout may be load: try again next time
            return
        self._gold[(it.target, normalize_sql(it.gold or ""))] = gold
        while len(self._gold) > self._gold_cap:
            self._gold.popitem(last=False)

    def _judge_one(self, it: Item, gold: ExecResult | None, cands: list[ExecResult | None], all_comparators: bool) -> Judgement:
        reference = it.gold or ""
        groups: list[list[int]] = []
        group_of: dict[int, int] = {}
        for i, res in enumerate(cands):
            if res is None or not res.ok:
                continue
            for g, members in enumerate(groups):  # compare with each group's first member
                head = cands[members[0]]
                if compare(self.comparator, head.rows, res.rows, it.candidates[members[0]] or "")[0]:
                    members.append(i)
                    group_of[i] = g
                    break
            else:
                group_of[i] = len(groups)
                groups.append([i])
        order = sorted(range(len(groups)), key=lambda g: (-len(groups[g]), groups[g][0]))
        rank = {g: r for r, g in enumerate(order)}
        verdicts = []
        for i, res in enumerate(cands):
            equal: dict[str, bool | None] = {}
            if gold is None:
                if res is None:
                    v = ("no_sql", "no SQL in the answer", False)
                elif res.ok:
                    v = ("executed", "", False)
                else:
                    v = verdict_of(ExecResult(Status.OK, ()), res, "", self.comparator)
            else:
                same, why = None, ""
                if res is not None and res.ok and gold.ok:
                    if all_comparators:
                        ident = identical(gold.rows, res.rows)  # once, not once per comparator
                        answers = {name: compare(name, gold.rows, res.rows, reference, ident) for name in COMPARATORS}
                        equal = {name: a[0] for name, a in answers.items()}
                        same, why = answers[self.comparator]
                    else:
                        same, why = compare(self.comparator, gold.rows, res.rows, reference)
                v = verdict_of(gold, res, reference, self.comparator, same, why)
            verdicts.append(Verdict(*v, result=res, group=rank.get(group_of.get(i)) if i in group_of else None, equal=equal))
        failed = [i for i, res in enumerate(cands) if res is None or not res.ok]
        return Judgement(gold, verdicts, [groups[g] for g in order], failed)


def _validity(res: ExecResult) -> Validity:
    return Validity(True, "", Status.OK) if res.ok else Validity(False, res.error, res.status)
