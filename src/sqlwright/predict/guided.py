"""Execution-guided inference for ``sqlwright predict``: selection among samples
(``--select``) and self-correction (``--refine K``), both through the judge (read-only,
time-limited execution; no gold).

Selection (``--n N --select ...``, N > 1):

* ``vote``: self-consistency (``--vote execution`` is the same): every sample is executed,
  samples whose results the ``--comparator`` calls equal form a group, the first sample of the
  largest group wins (ties: the group that came first); samples that fail join no group; none
  ran: the first sample.
* ``first-valid``: the samples are checked for validity (``EXPLAIN``, ``Judge.check_many``),
  then executed one at a time in order, only those that compile, until one runs: that one
  wins (none ran: the first sample that compiles, else the first).
* ``vote-valid``: the validity check first, then the vote among the samples that compile
  (only those are executed); the groups are saved with the record. None ran: the first
  sample that compiles, else the first.

Self-correction (``--refine K``): each round's chosen SQL is executed; a round that is not
accepted (``--refine-until rows``: it failed, timed out or returned 0 rows; ``ok``: it failed
or timed out; ``unchanged``: until the model repeats its SQL) gets an observation turn
(``sqlwright.prompts.refine``) and the model answers again, up to K more rounds. With
selection, every round samples N and selects again: the selected candidate is refined
(without it, the first sample is).

Each finished question's record says how it was produced: ``selected_by``, ``selection``
(chosen index, per-sample validity and statuses), ``vote`` (groups), ``refined_rounds``,
``rounds`` (the transcript: each round's SQL, raw answer, status, row count, error, and the
observation sent to the model after it: null for the last round), ``valid`` (the final SQL
compiles), ``exec_status`` / ``exec_rows`` and ``exec_status_before`` / ``exec_rows_before``
(the first round's).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlwright.db.sqltext import normalize_sql
from sqlwright.infer.backend import Completion, Request
from sqlwright.judge import Item, Judge
from sqlwright.prompts.extract import extract_sql
from sqlwright.prompts.refine import observation
from sqlwright.types import ExecResult, Status

SELECTS = ("vote", "first-valid", "vote-valid")
REFINE_UNTIL = ("rows", "ok", "unchanged")
NOT_COMPILED = {Status.SYNTAX_ERROR, Status.FORBIDDEN}  # statuses of SQL that does not compile


@dataclass
class Choice:
    index: int  # the chosen sample
    result: ExecResult | None  # its execution (None: it had no SQL)
    selection: dict = field(default_factory=dict)  # record["selection"]
    vote: dict | None = None  # record["vote"]: the groups (vote, vote-valid)


def execute(judge: Judge, target: str, sql: str) -> ExecResult | None:
    """One SQL's read-only execution; None when there is no SQL."""
    return judge.execute([(target, sql)])[0] if sql and sql.strip() else None


def choose(judge: Judge, target: str, sqls: list[str], how: str) -> Choice:
    """Pick one of ``sqls`` by ``how`` (one of ``SELECTS``)."""
    if how == "vote":
        j = judge.judge(target, None, sqls)
        chosen = j.chosen
        vote = {"chosen": chosen, "groups": j.groups, "failed": j.failed, "comparator": judge.comparator}
        statuses = [v.status.value if v.status else None for v in j.candidates]
        return Choice(chosen, j.candidates[chosen].result, {"chosen": chosen, "statuses": statuses}, vote)
    if how == "vote-valid":
        j = judge.judge_many([Item(target, None, sqls)], validate=True)[0]
        valid = [v.ok for v in j.valid]
        chosen = j.groups[0][0] if j.groups else (valid.index(True) if any(valid) else 0)
        vote = {"chosen": chosen, "groups": j.groups, "failed": j.failed, "invalid": j.invalid, "comparator": judge.comparator}
        statuses = [v.status.value if v.status else None for v in j.candidates]
        return Choice(chosen, j.candidates[chosen].result, {"chosen": chosen, "valid": valid, "statuses": statuses}, vote)
    if how == "first-valid":
        checks = judge.check(target, sqls)
        valid = [v.ok for v in checks]
        statuses: list[str | None] = [None if v.ok else (v.status.value if v.status else None) for v in checks]
        tried, first_result = [], None
        for i, ok in enumerate(valid):
            if not ok:
                continue
            res = execute(judge, target, sqls[i])
            tried.append(i)
            statuses[i] = res.status.value
            first_result = first_result or (i, res)
            if res.ok:
                return Choice(i, res, {"chosen": i, "valid": valid, "statuses": statuses, "tried": tried})
        if first_result is not None:  # none ran: the first that compiles
            i, res = first_result
        else:  # none compiles: the first, with its check's error
            i, v = 0, checks[0]
            res = None if v.status is None else ExecResult(v.status, error=v.error)
        return Choice(i, res, {"chosen": i, "valid": valid, "statuses": statuses, "tried": tried})
    raise ValueError(f"unknown selection {how!r}")


def accepted(result: ExecResult | None, until: str, sql: str, previous: str | None) -> bool:
    """Is this round's answer final (no observation turn, no more rounds)?"""
    if result is not None and result.status is Status.DB_MISSING:
        return True  # nothing to learn from: no database
    if until == "unchanged":
        return previous is not None and normalize_sql(sql) == normalize_sql(previous)
    if result is None or not result.ok:
        return False
    return until == "ok" or bool(result.rows)


@dataclass
class Guidance:
    """The guided-inference settings of one predict run."""

    select: str | None  # one of SELECTS, or None
    refine: int = 0  # rounds of self-correction after the first
    until: str = "rows"  # one of REFINE_UNTIL

    @property
    def executes(self) -> bool:
        return self.select is not None or self.refine > 0


class Conversation:
    """One question's rounds: the messages so far, each round's answer and its observation."""

    def __init__(self, request: Request, target: str | None, guidance: Guidance):
        self.id = request.id
        self.messages = list(request.messages)
        self.target = target
        self.g = guidance
        self.rounds: list[dict] = []
        self.texts: list[str] = []  # the last round's samples (the last with an answer)
        self.sqls: list[str] = []
        self.error: str | None = None
        self.tokens = [0, 0]  # prompt, completion, over every round
        self.latency = 0.0
        self.choice: Choice | None = None
        self.result: ExecResult | None = None
        self.first_result: ExecResult | None = None
        self.executed = False  # the answers were executed (a judge and a database)
        self.grammar = request.grammar  # --constrain: every round's answer follows it

    def request(self) -> Request:
        return Request(self.id, self.messages, grammar=self.grammar)

    def take(self, c: Completion, judge: Judge | None) -> bool:
        """Add round ``c``; True when the question is finished."""
        self.tokens[0] += c.prompt_tokens
        self.tokens[1] += c.completion_tokens
        self.latency += c.latency
        if c.error:  # a failed request: the record says so (with the rounds before), a rerun retries it
            self.error = c.error
            return True
        texts = c.texts or [""]
        sqls = [extract_sql(t) for t in texts]
        previous = self.rounds[-1]["sql"] if self.rounds else None
        executes = judge is not None and bool(self.target)  # no database: nothing to guide by
        if not executes:
            choice = Choice(0, None)
        elif self.g.select and len(sqls) > 1:
            choice = choose(judge, self.target, sqls, self.g.select)
        else:
            choice = Choice(0, execute(judge, self.target, sqls[0]))
        self.texts, self.sqls, self.choice, self.result = list(c.texts), sqls, choice, choice.result
        self.executed = executes
        if not self.rounds:
            self.first_result = choice.result
        sql, raw = sqls[choice.index], texts[choice.index]
        entry = {"round": len(self.rounds), "sql": sql, "raw": raw, **_outcome(choice.result), "observation": None}
        if len(sqls) > 1:
            entry["sqls"], entry["chosen"] = sqls, choice.index
        self.rounds.append(entry)
        if not executes or self.g.refine <= len(self.rounds) - 1 or accepted(choice.result, self.g.until, sql, previous):
            return True
        entry["observation"] = text = observation(choice.result)  # the next user turn
        self.messages += [{"role": "assistant", "content": raw}, {"role": "user", "content": text}]
        return False

    def fields(self) -> dict:
        """What the record says about how its answer was produced."""
        out: dict = {}
        if self.choice is not None and self.choice.selection:
            out["selected_by"] = self.g.select
            out["selection"] = self.choice.selection
        if self.choice is not None and self.choice.vote is not None:
            out["vote"] = self.choice.vote
        if self.g.refine > 0:
            out["refined_rounds"] = max(0, len(self.rounds) - 1)
            out["rounds"] = self.rounds
        if self.executed:
            out["valid"] = _valid(self.result)
            out["exec_status"] = _status(self.result)
            out["exec_status_before"] = _status(self.first_result)
            out["exec_rows"] = _rows(self.result)
            out["exec_rows_before"] = _rows(self.first_result)
        return out


def _status(res: ExecResult | None) -> str:
    return res.status.value if res is not None else "no_sql"


def _rows(res: ExecResult | None) -> int | None:
    return len(res.rows) if res is not None and res.ok else None


def _valid(res: ExecResult | None) -> bool | None:
    """Does the SQL compile? None: not known (no database)."""
    if res is None:
        return False
    if res.status is Status.DB_MISSING:
        return None
    return res.status not in NOT_COMPILED


def _outcome(res: ExecResult | None) -> dict:
    return {"status": _status(res), "rows": _rows(res),
            "error": res.error if res is not None and not res.ok else ""}  # fmt: skip
