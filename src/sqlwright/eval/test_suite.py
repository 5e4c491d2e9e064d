"""Test-suite execution accuracy (Zhong, Yu and Klein 2020): correct only on every database.

A test suite is a folder per database, ``DIR/<db_id>/*.sqlite``: the original database and
distilled copies whose rows tell apart queries that agree on the original by chance (the
official ``database_ts`` download; Spider's own ``database/`` folder is the suite of one
database each). A prediction is correct when its result equals the gold's on every one of
them, under the official comparison (:func:`sqlwright.judge.compare.test_suite_equal`:
multiset of rows, any column permutation, order when the gold says ``order by``; the
permutation search is bounded and gives "not computed" past its cap).

The queries are prepared as taoyds/test-suite-sql-eval's ``eval_exec_match`` prepares them:
``" value "`` becomes ``" 1 "`` in the prediction, ``> =`` becomes ``>=`` (and ``< =``,
``! =``), ``YEAR(CURDATE())`` becomes ``2020``, and **DISTINCT is removed from both
queries** unless ``keep_distinct``. With ``plug_value`` the gold's values are also plugged
into the prediction's value slots in every combination (the official
``get_all_preds_for_execution``; it needs ``sqlparse``): the prediction counts as correct
when it, or one plugged variant, passes on every database. Variants are tried on the first
database before the others, and at most ``MAX_PLUGGED`` of them (recorded when cut).

Every execution goes through the judge (read-only, time-limited, each distinct (database,
SQL) once); nothing here opens a database.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlwright.errors import UserError
from sqlwright.judge import Item, Judge
from sqlwright.progress import progress_bar

MAX_PLUGGED = 200  # plugged variants tried per question (the official script tries them all)
_SLOT = "VALUERARE"  # the official placeholder for a value slot
_QUOTED = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|`[^`]*`|\[[^\]]*\]")
_DISTINCT = re.compile(r"\bdistinct\b", re.I)
_CUR_YEAR = re.compile(r"YEAR\s*\(\s*CURDATE\s*\(\s*\)\s*\)\s*", re.I)


# -- the suites ---------------------------------------------------------------------------------
def suite_databases(root: str | Path, db_ids: Sequence[str]) -> dict[str, list[str]]:
    """``db_id`` -> its suite's SQLite files (``<db_id>.sqlite`` first, then by name), or one
    ``UserError`` naming every database the folder lacks."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"--test-suite {root}: folder not found; it should hold <db_id>/*.sqlite "
                        "(the official test suites unpack to database_ts/, see the README)")  # fmt: skip
    out: dict[str, list[str]] = {}
    missing = []
    for db in sorted(set(db_ids)):
        folder = root / db
        files = sorted(folder.glob("*.sqlite"), key=lambda p: (p.name != f"{db}.sqlite", p.name)) if folder.is_dir() else []
        if files:
            out[db] = [str(p) for p in files]
        else:
            missing.append(db)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise UserError(f"--test-suite {root}: no databases for {shown} (looked for {root}/<db_id>/*.sqlite); "
                        "use the full test-suite download or score only the questions it covers")  # fmt: skip
    return out


# -- preparing the queries (the official eval_exec_match) ------------------------------------------
def remove_distinct(sql: str) -> str:
    """``sql`` without its DISTINCT keywords (quoted text untouched)."""
    out, last = [], 0
    for m in _QUOTED.finditer(sql):
        out.append(_DISTINCT.sub("", sql[last : m.start()]))
        out.append(m.group(0))
        last = m.end()
    out.append(_DISTINCT.sub("", sql[last:]))
    return "".join(out)


def _tidy(sql: str) -> str:
    return sql.replace("> =", ">=").replace("< =", "<=").replace("! =", "!=")


def prepare(gold: str, pred: str | None, keep_distinct: bool = False) -> tuple[str, str | None]:
    """The gold and predicted SQL as the official execution scoring runs them."""
    gold = _CUR_YEAR.sub("2020", _tidy(gold))
    if pred is not None:
        pred = _CUR_YEAR.sub("2020", _tidy(pred.replace(" value ", " 1 ")))
    if not keep_distinct:
        gold = remove_distinct(gold)
        pred = remove_distinct(pred) if pred is not None else None
    return gold, pred


def _sqlparse():
    try:
        import sqlparse
    except ImportError:
        raise UserError("--plug-value needs sqlparse; install with: pip install 'sqlwright[spider]'") from None
    return sqlparse


def _value_slots(sql: str) -> tuple[list[str], set[str]]:
    """(tokens with each value replaced by a slot, the values), as the official
    ``extract_query_values`` finds them: quoted strings, then decimals, then integers not
    glued to a ``t``/``T`` (so ``T1`` stays a table alias)."""
    sqlparse = _sqlparse()
    from sqlparse import tokens as T

    text = sql.strip().replace(";", "").replace("\t", "")
    text = " ".join(t.value for t in sqlparse.parse(text)[0].flatten() if t.ttype != T.Whitespace)
    for star in ("t1.*", "t2.*", "t3.*", "T1.*", "T2.*", "T3.*"):
        text = text.replace(star, "*")
    text = sqlparse.format(text, reindent=False, keyword_case="upper")
    text = re.sub(r"(T\d+\.)\s", r"\1", text)
    values: list[str] = []
    for tok in sqlparse.parse(text)[0].flatten():
        if tok.ttype in (T.Literal.String.Single, T.Literal.String.Symbol):
            values.append(tok.value)
            text = text.replace(tok.value.strip(), _SLOT)
    words = text.split()
    decimals = re.findall(r"[-+]?\d*\.\d+", text)
    values += [w for w in words if w in decimals]
    words = [_SLOT if w in decimals else w for w in words]
    integers = [i.strip() for i in re.findall(r"[^tT]\d+", " ".join(words))]
    values += [w for w in words if w in integers]
    words = [_SLOT if w in integers else w for w in words]
    out: list[str] = []
    for w in words:
        if "." in w and re.findall(r"[Tt]\d+\.", w):
            out.extend(part.lower() for part in w.replace(".", " . ").split())
        elif w:
            out.append(w.lower())
    return out, set(values)


def plugged_variants(gold: str, pred: str, cap: int = MAX_PLUGGED) -> tuple[int, list[str]]:
    """(how many ways there are, up to ``cap`` of them): the prediction with the gold's values
    plugged into its value slots, every combination (the official ``--plug_value``)."""
    _, gold_values = _value_slots(gold)
    tokens, _ = _value_slots(pred)
    slots = [i for i, t in enumerate(tokens) if t == _SLOT.lower()]
    total = len(gold_values) ** len(slots)
    out = []
    for combo in itertools.islice(itertools.product(sorted(gold_values), repeat=len(slots)), cap):
        filled = list(tokens)
        for i, v in zip(slots, combo, strict=True):
            filled[i] = v
        out.append(" ".join(filled))
    return total, out


# -- scoring ----------------------------------------------------------------------------------------
@dataclass
class SuiteResult:
    """One question's test-suite verdict."""

    correct: bool
    agreed: int  # suite databases where the prediction (or its winning plugged variant) matched
    databases: int
    reason: str = ""  # why not, from the first database that disagreed ("" when correct)
    plugged: str | None = None  # the plugged variant that passed, when one did
    plug_total: int | None = None  # ways to plug values (None: not plugged)
    gold_error: bool = False
    not_computed: bool = False
    per_database: list[bool] = field(default_factory=list)


@dataclass
class SuiteQuestion:
    gold: str
    pred: str | None
    databases: list[str]


def _run(judge: Judge, pairs: list[tuple[int, str, str, str | None]], show: bool = False, what: str = "") -> list:
    if not pairs:
        return []
    items = [Item(db, gold, [pred]) for _, db, gold, pred in pairs]
    with progress_bar(judge.distinct(items), what, show, unit="queries") as advance:
        return judge.judge_many(items, progress=advance)


def score_suites(judge: Judge, questions: Sequence[SuiteQuestion], keep_distinct: bool = False,
                 plug_value: bool = False, progress: bool = False) -> list[SuiteResult]:
    """Score every question on every database of its suite (``judge`` compares with the
    ``test-suite`` comparator); one judge call per stage."""
    prepared = [prepare(q.gold, q.pred, keep_distinct) for q in questions]
    pairs = [(i, db, g, p) for i, (q, (g, p)) in enumerate(zip(questions, prepared, strict=True)) for db in q.databases]
    judged = _run(judge, pairs, progress, "test suites")
    per: list[list] = [[] for _ in questions]
    for (i, *_), j in zip(pairs, judged, strict=True):
        per[i].append(j)
    results = []
    for q, js in zip(questions, per, strict=True):
        ok = [j.candidates[0].correct for j in js]
        first_bad = next((j for j in js if not j.candidates[0].correct), None)
        reason = ""
        if first_bad is not None:
            v = first_bad.candidates[0]
            name = Path(q.databases[js.index(first_bad)]).name
            reason = f"{name}: {v.reason}" if v.reason else name
        results.append(SuiteResult(all(ok), sum(ok), len(ok), reason, per_database=ok,
                                   gold_error=any(j.candidates[0].verdict == "gold_error" for j in js),
                                   not_computed=any("not computed" in j.candidates[0].reason for j in js)))  # fmt: skip
    if plug_value:
        _plug(judge, questions, prepared, results)
    return results


def _plug(judge: Judge, questions, prepared, results: list[SuiteResult]) -> None:
    """Try plugged variants for the questions not already correct: on the first database,
    then the survivors on the rest."""
    variants: dict[int, list[str]] = {}
    for i, ((g, p), r) in enumerate(zip(prepared, results, strict=True)):
        if r.correct or r.gold_error or not p:
            continue
        try:
            r.plug_total, variants[i] = plugged_variants(g, p)
        except (ValueError, IndexError, AssertionError) as e:  # sqlparse on text it cannot read
            r.plug_total, r.reason = 0, f"{r.reason} · values not plugged ({type(e).__name__})"
            continue
        if r.plug_total > len(variants[i]):
            r.reason += f" · tried {len(variants[i])} of {r.plug_total} ways to plug the gold's values (cap {MAX_PLUGGED})"
    first = [(i, questions[i].databases[0], prepared[i][0], v) for i, vs in variants.items() for v in vs]
    survivors = [pair for pair, j in zip(first, _run(judge, first), strict=True) if j.candidates[0].correct]
    rest = [(i, db, g, v) for i, _, g, v in survivors for db in questions[i].databases[1:]]
    fails: dict[tuple[int, str], int] = {}
    for (i, _, _, v), j in zip(rest, _run(judge, rest), strict=True):
        fails[(i, v)] = fails.get((i, v), 0) + (not j.candidates[0].correct)
    for i, _, _, v in survivors:
        r = results[i]
        if r.correct:
            continue
        if fails.get((i, v), 0) == 0:
            r.correct, r.agreed, r.plugged, r.reason = True, r.databases, v, ""
            r.per_database = [True] * r.databases
