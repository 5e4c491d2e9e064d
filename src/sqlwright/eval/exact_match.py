"""Spider's exact-set-match accuracy (EM) and its component scores.

The rules are those of the official evaluator, ``evaluation.py`` of taoyds/test-suite-sql-eval
(identical in taoyds/spider; Apache-2.0), applied to the trees of the ported Spider parser
(:mod:`sqlwright.eval.spider_sql`). Written anew from that reference, quirks kept, because
the published EM numbers come from them:

* **Values are ignored.** Every literal on the right of a condition becomes ``None``,
  and so does a column there (``t1.id = t2.id`` keeps only ``t1.id``); nested queries
  stay and are compared (values stripped inside them too, FROM subqueries excepted).
* **DISTINCT is ignored.** ``SELECT DISTINCT`` is in no component (even with the official
  switch off), and the DISTINCT of a column (``count(DISTINCT x)``) is dropped throughout
  the outer query; nested queries in WHERE/HAVING keep theirs (the rebuild does not reach them).
* **Foreign keys unify columns.** A column of a table in the query's FROM that is one end
  of a foreign key is renamed to the lowest-numbered column of its key group
  (``build_foreign_key_map`` from ``tables.json``), so ``t2.singer_id`` and
  ``t1.singer_id`` of the same key compare equal. IUEN parts use the outer query's tables.
* **Components are sets** (multisets): SELECT items, WHERE conditions, GROUP BY columns
  (table prefix dropped), keywords; ORDER BY and HAVING compare whole, LIMIT by presence.
  A component scores 1 only when the prediction and the gold have the same number of
  units and all match; EM needs every component at 1 and the same FROM tables.
* **A prediction the parser cannot read** is scored as an empty query (EM 0, component
  scores against nothing), with the reason recorded. The official script crashes on a gold
  it cannot parse; here that question gets no EM (``None``) and a reason.
* ``" value "`` in a prediction becomes ``" 1 "`` first (the official placeholder rule).

``--plug-value`` and ``--keep-distinct`` of the official script change its *execution*
scoring only (see :mod:`sqlwright.eval.test_suite`); EM ignores values and DISTINCT either
way. :class:`ExactMatcher` keeps ``values`` / ``distinct`` switches (the official module's
``DISABLE_VALUE`` / ``DISABLE_DISTINCT`` constants) for Python callers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlwright.eval.hardness import spider_hardness
from sqlwright.eval.spider_sql import (
    AGG_OPS,
    WHERE_OPS,
    Schema,
    SpiderParseError,
    parse_sql,
    schema_from_tables_json,
)

__all__ = ["COMPONENTS", "LEVELS", "ExactMatcher", "MatchResult", "aggregate", "foreign_key_map", "partial_scores"]

# In the order the official evaluator prints them.
COMPONENTS = ("select", "select(no AGG)", "where", "where(no OP)", "group(no Having)", "group", "order",
              "and/or", "IUEN", "keywords")  # fmt: skip
LEVELS = ("easy", "medium", "hard", "extra", "all")

_IN = WHERE_OPS.index("in")
_LIKE = WHERE_OPS.index("like")
_NO_AGG = AGG_OPS.index("none")


def _empty_sql() -> dict:
    """What the official evaluator scores in place of a prediction it cannot parse."""
    return {"except": None, "from": {"conds": [], "table_units": []}, "groupBy": [], "having": [],
            "intersect": None, "limit": None, "orderBy": [], "select": (False, []), "union": None, "where": []}  # fmt: skip


# -- foreign keys ----------------------------------------------------------------------
def foreign_key_map(entry: Mapping[str, Any]) -> dict[str, str]:
    """Column id -> the id standing for its foreign-key group (one ``tables.json`` entry).

    Keys are grouped as the official ``build_foreign_key_map`` does: each pair joins the
    first group that holds either end (groups are not merged further), and every column
    of a group maps to the group's lowest column index.
    """
    tables = entry["table_names_original"]
    names = [f"__{tables[t].lower()}.{c.lower()}__" if t >= 0 else "__all__" for t, c in entry["column_names_original"]]
    groups: list[set[int]] = []
    for a, b in entry.get("foreign_keys", []):
        group = next((g for g in groups if a in g or b in g), None)
        if group is None:
            group = set()
            groups.append(group)
        group.update((a, b))
    out: dict[str, str] = {}
    for group in groups:
        head = names[min(group)]
        for i in sorted(group):
            out[names[i]] = head
    return out


# -- normalisation (the official rebuild_sql_val / rebuild_sql_col) ----------------------
def _strip_condition_values(cond: list) -> list:
    out = []
    for i, unit in enumerate(cond):
        if i % 2:
            out.append(unit)
            continue
        not_op, op_id, val_unit, v1, v2 = unit
        out.append((not_op, op_id, val_unit, _strip_values(v1) if isinstance(v1, dict) else None,
                    _strip_values(v2) if isinstance(v2, dict) else None))  # fmt: skip
    return out


def _strip_values(sql: dict | None) -> dict | None:
    if sql is None:
        return None
    sql = dict(sql)
    sql["from"] = {**sql["from"], "conds": _strip_condition_values(sql["from"]["conds"])}
    sql["where"] = _strip_condition_values(sql["where"])
    sql["having"] = _strip_condition_values(sql["having"])
    for op in ("intersect", "except", "union"):
        sql[op] = _strip_values(sql[op])
    return sql


class _Columns:
    """Renames columns along foreign keys (only those of the FROM tables) and drops DISTINCT."""

    def __init__(self, valid: set[str], kmap: Mapping[str, str], keep_distinct: bool):
        self.valid, self.kmap, self.keep_distinct = valid, kmap, keep_distinct

    def col(self, cu):
        if cu is None:
            return None
        agg, col, distinct = cu
        if col in self.kmap and col in self.valid:
            col = self.kmap[col]
        return agg, col, distinct if self.keep_distinct else None

    def val(self, vu):
        if vu is None:
            return None
        op, c1, c2 = vu
        return op, self.col(c1), self.col(c2)

    def cond(self, cond: list) -> list:  # the value side is left alone (nested queries too)
        return [(u[0], u[1], self.val(u[2]), u[3], u[4]) if i % 2 == 0 else u for i, u in enumerate(cond)]

    def sql(self, sql: dict | None) -> dict | None:
        if sql is None:
            return None
        sql = dict(sql)
        distinct, items = sql["select"]
        sql["select"] = (distinct if self.keep_distinct else None, [(agg, self.val(vu)) for agg, vu in items])
        sql["from"] = {"table_units": list(sql["from"]["table_units"]), "conds": self.cond(sql["from"]["conds"])}
        sql["where"] = self.cond(sql["where"])
        sql["groupBy"] = [self.col(cu) for cu in sql["groupBy"]]
        if sql["orderBy"]:
            direction, units = sql["orderBy"]
            sql["orderBy"] = (direction, [self.val(vu) for vu in units])
        sql["having"] = self.cond(sql["having"])
        for op in ("intersect", "except", "union"):
            sql[op] = self.sql(sql[op])  # with the outer query's tables, as the official script
        return sql


def _valid_columns(table_units: list, schema: Schema) -> set[str]:
    """Ids of the columns of the FROM clause's tables (official ``build_valid_col_units``)."""
    prefixes = {unit[1][:-2] for unit in table_units if unit[0] == "table_unit"}
    return {v for v in schema.id_map.values() if "." in v and v[: v.index(".")] in prefixes}


# -- component scores (the official eval_* functions) ---------------------------------------
def _score(count: int, pred_total: int, label_total: int) -> int:
    return 1 if pred_total == label_total and count == pred_total else 0


def _multiset_hits(pred: list, label: list) -> int:
    rest = list(label)
    hits = 0
    for unit in pred:
        if unit in rest:
            hits += 1
            rest.remove(unit)
    return hits


def _keywords(sql: dict) -> set[str]:
    out = set()
    for key, name in (("where", "where"), ("groupBy", "group"), ("having", "having")):
        if sql[key]:
            out.add(name)
    if sql["orderBy"]:
        out.update((sql["orderBy"][0], "order"))
    if sql["limit"] is not None:
        out.add("limit")
    out.update(op for op in ("except", "union", "intersect") if sql[op] is not None)
    if "or" in sql["from"]["conds"][1::2] + sql["where"][1::2] + sql["having"][1::2]:
        out.add("or")
    units = sql["from"]["conds"][::2] + sql["where"][::2] + sql["having"][::2]
    if any(u[0] for u in units):
        out.add("not")
    if any(u[1] == _IN for u in units):
        out.add("in")
    if any(u[1] == _LIKE for u in units):
        out.add("like")
    return out


def _totals(pred: dict, label: dict) -> dict[str, tuple[int, int, int]]:
    """component -> (label_total, pred_total, count), as the official eval_* functions return."""
    out: dict[str, tuple[int, int, int]] = {}
    p_sel, l_sel = pred["select"][1], label["select"][1]
    out["select"] = (len(l_sel), len(p_sel), _multiset_hits(p_sel, l_sel))
    out["select(no AGG)"] = (len(l_sel), len(p_sel), _multiset_hits([u[1] for u in p_sel], [u[1] for u in l_sel]))
    p_where, l_where = pred["where"][::2], label["where"][::2]
    out["where"] = (len(l_where), len(p_where), _multiset_hits(p_where, l_where))
    out["where(no OP)"] = (len(l_where), len(p_where), _multiset_hits([u[2] for u in p_where], [u[2] for u in l_where]))

    def bare(cols: list[str]) -> list[str]:
        return [c.split(".")[1] if "." in c else c for c in cols]

    p_grp, l_grp = [u[1] for u in pred["groupBy"]], [u[1] for u in label["groupBy"]]
    out["group(no Having)"] = (len(l_grp), len(p_grp), _multiset_hits(bare(p_grp), bare(l_grp)))
    pt, lt = int(bool(pred["groupBy"])), int(bool(label["groupBy"]))
    out["group"] = (lt, pt, int(pt == lt == 1 and p_grp == l_grp and pred["having"] == label["having"]))
    pt, lt = int(bool(pred["orderBy"])), int(bool(label["orderBy"]))
    same_limit = (pred["limit"] is None) == (label["limit"] is None)
    out["order"] = (lt, pt, int(bool(label["orderBy"]) and pred["orderBy"] == label["orderBy"] and same_limit))
    p_ao, l_ao = set(pred["where"][1::2]), set(label["where"][1::2])
    # the official eval_and_or returns its totals swapped when they differ; kept (it moves acc/rec counts)
    out["and/or"] = (1, 1, 1) if p_ao == l_ao else (len(p_ao), len(l_ao), 0)
    lt = pt = cnt = 0
    for op in ("intersect", "except", "union"):
        p, g = pred[op], label[op]
        pt += p is not None
        lt += g is not None
        if p is not None and g is not None:
            cnt += int(_exact(p, g)[0])
    out["IUEN"] = (lt, pt, cnt)
    p_kw, l_kw = _keywords(pred), _keywords(label)
    out["keywords"] = (len(l_kw), len(p_kw), len(p_kw & l_kw))
    return out


def partial_scores(pred: dict, label: dict) -> dict[str, dict]:
    """Per component: ``acc``, ``rec``, ``f1`` (each 0 or 1), ``label_total``, ``pred_total``,
    of two normalised trees (the official ``eval_partial_match``)."""
    out = {}
    for name, (label_total, pred_total, count) in _totals(pred, label).items():
        s = _score(count, pred_total, label_total)
        out[name] = {"acc": s, "rec": s, "f1": s, "label_total": label_total, "pred_total": pred_total}
    return out


def _table_key(unit) -> tuple:
    kind, what = unit
    return kind, what if isinstance(what, str) else json.dumps(what, sort_keys=True, default=str)


def _exact(pred: dict, label: dict) -> tuple[bool, dict[str, dict]]:
    partial = partial_scores(pred, label)
    if any(s["f1"] != 1 for s in partial.values()):
        return False, partial
    if label["from"]["table_units"]:  # same FROM tables, as a multiset
        same = sorted(map(_table_key, label["from"]["table_units"])) == sorted(map(_table_key, pred["from"]["table_units"]))
        return same, partial
    return True, partial


# -- the matcher ---------------------------------------------------------------------------
@dataclass
class MatchResult:
    """One question's exact-set-match verdict."""

    exact: bool | None  # None: not scored (the gold does not parse)
    hardness: str | None = None
    partial: dict[str, dict] | None = None  # per component, see partial_scores
    error: str | None = None  # why the parser failed (prediction or gold), else None

    @property
    def failed_components(self) -> list[str]:
        return [c for c in COMPONENTS if self.partial and self.partial[c]["f1"] != 1]


@dataclass
class ExactMatcher:
    """Exact-set-match against the schemas and foreign keys of a ``tables.json``.

    ``tables``: ``db_id`` -> its ``tables.json`` entry. ``schemas``: optional ready
    :class:`Schema` per ``db_id`` (default: built from the entry).
    """

    tables: Mapping[str, Mapping[str, Any]]
    schemas: dict[str, Schema] = field(default_factory=dict)
    values: bool = False  # compare values (the official DISABLE_VALUE = True turns this off)
    distinct: bool = False  # compare DISTINCT (the official DISABLE_DISTINCT = True turns this off)
    _kmaps: dict[str, dict[str, str]] = field(default_factory=dict, repr=False)

    def _schema(self, db_id: str) -> tuple[Schema, dict[str, str]]:
        if db_id not in self._kmaps:
            entry = self.tables[db_id]
            self.schemas.setdefault(db_id, schema_from_tables_json(entry))
            self._kmaps[db_id] = foreign_key_map(entry)
        return self.schemas[db_id], self._kmaps[db_id]

    def normalize(self, sql: dict, schema: Schema, kmap: Mapping[str, str]) -> dict:
        valid = _valid_columns(sql["from"]["table_units"], schema)
        if not self.values:
            sql = _strip_values(sql)
        return _Columns(valid, kmap, self.distinct).sql(sql)

    def match(self, db_id: str, gold: str, pred: str | None) -> MatchResult:
        """EM of one prediction (``None``: no prediction, scored as unparsable)."""
        if db_id not in self.tables:
            return MatchResult(None, error=f"no tables.json entry for database {db_id!r}")
        schema, kmap = self._schema(db_id)
        try:
            g = parse_sql(gold, schema)
        except SpiderParseError as e:
            return MatchResult(None, error=f"gold does not parse: {e}")
        hardness = spider_hardness(g)
        error = None
        if pred is None or not pred.strip():
            p, error = _empty_sql(), "no prediction"
        else:
            try:
                p = parse_sql(pred.replace(" value ", " 1 "), schema)
            except SpiderParseError as e:
                p, error = _empty_sql(), f"prediction does not parse: {e}"
        exact, partial = _exact(self.normalize(p, schema, kmap), self.normalize(g, schema, kmap))
        return MatchResult(bool(exact), hardness, partial, error)


# -- the official table ------------------------------------------------------------------------
def aggregate(results: list[MatchResult]) -> dict:
    """EM and component scores by hardness, computed as the official ``evaluate`` does.

    Per level (``easy`` … ``extra``, ``all``): ``count``, ``exact`` (fraction), and per
    component ``acc`` (mean over questions whose prediction has that component), ``rec``
    (mean over questions whose gold has it) and ``f1`` of the two (1 when both are 0, the
    official rule). Questions without a verdict (gold unparsable) are left out.
    """
    sums = {lv: {"count": 0, "exact": 0, "partial": {c: [0, 0, 0, 0] for c in COMPONENTS}} for lv in LEVELS}
    for r in results:
        if r.exact is None or r.partial is None:
            continue
        for lv in (r.hardness, "all"):
            if lv not in sums:
                continue
            s = sums[lv]
            s["count"] += 1
            s["exact"] += int(r.exact)
            for c in COMPONENTS:
                p, acc = r.partial[c], s["partial"][c]
                if p["pred_total"] > 0:
                    acc[0] += p["acc"]
                    acc[1] += 1
                if p["label_total"] > 0:
                    acc[2] += p["rec"]
                    acc[3] += 1
    out = {}
    for lv, s in sums.items():
        comps = {}
        for c, (a, na, r, nr) in s["partial"].items():
            acc = a / na if na else 0.0
            rec = r / nr if nr else 0.0
            f1 = 1.0 if acc == 0 and rec == 0 else 2 * acc * rec / (acc + rec)
            comps[c] = {"acc": round(acc, 6), "rec": round(rec, 6), "f1": round(f1, 6)}
        out[lv] = {"count": s["count"], "exact": round(s["exact"] / s["count"], 6) if s["count"] else 0.0,
                   "components": comps}  # fmt: skip
    return out
