"""Rewards for ``sqlwright train grpo``, chosen by name and weighted in the config.

A reward is a small function ``(texts, columns, ctx) -> (scores, reasons)``: the completions'
text, the dataset columns of each completion's prompt (``gold_sql``, ``target``), and the
shared ``RewardContext`` (the judge, the execution levels, the answer shape, the dialect).
``reasons`` says, per completion, why it scored what it did ("" when there is nothing to say).

``trl_rewards(names, ctx)`` wraps each one as a trl reward function (its ``__name__`` is the
reward's name, so trl logs ``rewards/<name>/mean``). A reward function never raises: a failure
scores 0 with the failure as its reason. Reasons go to trl's completions table
(``log_extra``); the execution reward also logs the share of completions that execute and
the share that match the gold (``log_metric``), and the seconds spent judging.

``execution`` is the one definition of correct that ``sqlwright eval`` uses: the judge
executes every distinct (database, SQL) of a step once, on its pool of read-only workers with
real timeouts, and caches the gold results across steps.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlwright.prompts.extract import extract_sql

Scores = tuple[list[float], list[str]]
RewardFn = Callable[[list[str], dict[str, list], "RewardContext"], Scores]


@dataclass
class Levels:
    """The execution reward's levels (Arctic-Text2SQL-R1's by default)."""

    correct: float = 1.0  # the result matches the gold's under the comparator
    executes: float = 0.1  # runs, but the result differs
    fails: float = 0.0  # no SQL, does not run, times out, too many rows


@dataclass
class RewardContext:
    judge: object | None = None  # a sqlwright.judge.Judge (the execution reward needs one)
    levels: Levels = field(default_factory=Levels)
    answer: str = "sql"  # the answer's shape: "sql" or "reasoning-sql" (PromptFormat.answer)
    dialect: str = "sqlite"  # sqlglot dialect for the syntax reward


@dataclass(frozen=True)
class Reward:
    name: str
    fn: RewardFn
    needs_judge: bool = False

    @property
    def summary(self) -> str:
        return (self.fn.__doc__ or "").strip().splitlines()[0]


REWARDS: dict[str, Reward] = {}


def register(name: str, needs_judge: bool = False):
    """Add a reward to the registry (also for your own: ``@register("mine")``)."""

    def deco(fn: RewardFn) -> RewardFn:
        REWARDS[name] = Reward(name, fn, needs_judge)
        return fn

    return deco


def completion_text(completion) -> str:
    """The text of one trl completion: a string, or a conversation's last message."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content") or "")
    return str(completion or "")


@register("execution", needs_judge=True)
def execution(texts: list[str], columns: dict[str, list], ctx: RewardContext) -> Scores:
    """The result matches the gold's: ``correct`` (1), runs but differs: ``executes`` (0.1), else ``fails`` (0)."""
    from sqlwright.judge import Item

    sqls = [extract_sql(t) for t in texts]
    items = [Item(target, gold, [sql or None]) for target, gold, sql in
             zip(columns["target"], columns["gold_sql"], sqls, strict=True)]
    judged = ctx.judge.judge_many(items)
    scores, reasons = [], []
    lv = ctx.levels
    for j in judged:
        v = j.candidates[0]
        if v.correct:
            scores.append(lv.correct)
        elif v.verdict == "wrong":
            scores.append(lv.executes)
        else:
            scores.append(lv.fails)
        reasons.append(v.verdict if v.correct else f"{v.verdict}: {v.reason}")
    return scores, reasons


_FENCE_RE = re.compile(r"\A```[ \t]*(?:sql|sqlite)?[ \t]*\n(?P<body>.*?)\n?[ \t]*```\Z", re.S | re.I)
_COT_RE = re.compile(r"\A(?P<reasoning>.*\S)\s*```[ \t]*sql[ \t]*\n(?P<body>.*?)\n?[ \t]*```\Z", re.S | re.I)
_STARTS_QUERY = re.compile(r"\A\(*\s*(select|with)\b", re.I)


def _norm(sql: str) -> str:
    return " ".join(sql.strip().rstrip(";").split())


@register("format")
def format_(texts: list[str], columns: dict[str, list], ctx: RewardContext) -> Scores:
    """1 when the answer has the expected shape: the query alone (a ```sql fence allowed), or reasoning then a final ```sql block."""
    scores, reasons = [], []
    for text in texts:
        t = text.strip()
        if ctx.answer == "reasoning-sql":
            m = _COT_RE.match(t)
            ok = bool(m) and bool(_STARTS_QUERY.match(m.group("body").strip()))
            why = "" if ok else "expected reasoning, then the query in a final ```sql block"
        else:
            m = _FENCE_RE.match(t)
            body = m.group("body").strip() if m else t
            ok = bool(_STARTS_QUERY.match(body)) and _norm(extract_sql(body)) == _norm(body)
            why = "" if ok else "expected the query alone (SELECT/WITH, no prose)"
        scores.append(1.0 if ok else 0.0)
        reasons.append(why)
    return scores, reasons


@register("syntax")
def syntax(texts: list[str], columns: dict[str, list], ctx: RewardContext) -> Scores:
    """1 when the answer's SQL parses, as one query, in the target dialect (sqlglot)."""
    import sqlglot
    from sqlglot import exp

    scores, reasons = [], []
    for text in texts:
        sql = extract_sql(text)
        if not sql:
            scores.append(0.0)
            reasons.append("no SQL")
            continue
        try:
            trees = [t for t in sqlglot.parse(sql, read=ctx.dialect) if t is not None]
        except Exception as e:  # ParseError, TokenError
            scores.append(0.0)
            reasons.append(f"does not parse: {str(e).splitlines()[0][:160]}")
            continue
        ok = len(trees) == 1 and isinstance(trees[0], exp.Query)
        scores.append(1.0 if ok else 0.0)
        reasons.append("" if ok else "not a single query")
    return scores, reasons


_TOKEN_RE = re.compile(r"\w+|[^\w\s]")


def _bigrams(sql: str) -> Counter:
    toks = _TOKEN_RE.findall(sql.lower())
    return Counter(zip(toks, toks[1:], strict=False))


@register("ngram")
def ngram(texts: list[str], columns: dict[str, list], ctx: RewardContext) -> Scores:
    """F1 of token bigrams shared with the gold SQL: a shaping signal only, and one a policy can game."""
    scores = []
    for text, gold in zip(texts, columns["gold_sql"], strict=True):
        pred, ref = _bigrams(extract_sql(text)), _bigrams(gold or "")
        common = sum((pred & ref).values())
        if not common:
            scores.append(0.0)
            continue
        p, r = common / sum(pred.values()), common / sum(ref.values())
        scores.append(2 * p * r / (p + r))
    return scores, [""] * len(texts)


class TRLReward:
    """One registered reward as a trl reward function: never raises, logs its reasons."""

    def __init__(self, reward: Reward, ctx: RewardContext):
        self.reward, self.ctx = reward, ctx
        self.__name__ = reward.name  # trl names the logged metric after it
        self.seconds = 0.0  # time spent in this reward, over the run
        self.failures = 0  # calls that failed as a whole (scored 0)

    def __call__(self, prompts=None, completions=None, **kwargs) -> list[float]:
        texts = [completion_text(c) for c in (completions or [])]
        columns = {k: v for k, v in kwargs.items() if isinstance(v, list)}
        start = time.perf_counter()
        try:
            scores, reasons = self.reward.fn(texts, columns, self.ctx)
        except Exception as e:  # a reward never stops training: the step scores 0, with the reason
            self.failures += 1
            scores, reasons = [0.0] * len(texts), [f"reward failed: {type(e).__name__}: {e}"] * len(texts)
        elapsed = time.perf_counter() - start
        self.seconds += elapsed
        log_extra, log_metric = kwargs.get("log_extra"), kwargs.get("log_metric")
        if log_extra is not None and any(reasons):
            log_extra(f"{self.reward.name}_reason", reasons)
        if log_metric is not None and texts:
            log_metric(f"reward_seconds/{self.reward.name}", elapsed)
            if self.reward.name == "execution":
                verdicts = [r.split(":", 1)[0] for r in reasons]  # the execution reward's reasons start with the verdict
                log_metric("execution/executes", sum(v in ("correct", "wrong") for v in verdicts) / len(texts))
                log_metric("execution/correct", verdicts.count("correct") / len(texts))
        return [float(s) for s in scores]


def trl_rewards(names: list[str], ctx: RewardContext) -> list[TRLReward]:
    return [TRLReward(REWARDS[n], ctx) for n in names]
