"""Spider's exact-set-match: each official rule pinned on hand-built cases, and real dev gold-vs-gold."""

from __future__ import annotations

import json
import random
import time

import pytest

from sqlwright.eval.exact_match import (
    COMPONENTS,
    ExactMatcher,
    MatchResult,
    aggregate,
    foreign_key_map,
)

# singer(1 singer_id, 2 name, 3 country, 4 age) · concert(5 concert_id, 6 concert_name, 7 year)
# singer_in_concert(8 concert_id -> concert, 9 singer_id -> singer)
CONCERTS = {
    "db_id": "concerts",
    "table_names_original": ["singer", "concert", "singer_in_concert"],
    "column_names_original": [[-1, "*"], [0, "Singer_ID"], [0, "Name"], [0, "Country"], [0, "Age"],
                              [1, "Concert_ID"], [1, "Concert_Name"], [1, "Year"], [2, "Concert_ID"], [2, "Singer_ID"]],
    "foreign_keys": [[9, 1], [8, 5]],
}  # fmt: skip
JOIN = "FROM singer AS T1 JOIN singer_in_concert AS T2 ON T1.singer_id = T2.singer_id"


@pytest.fixture
def em() -> ExactMatcher:
    return ExactMatcher({"concerts": CONCERTS})


def match(m: ExactMatcher, gold: str, pred: str) -> MatchResult:
    return m.match("concerts", gold, pred)


# -- components are (multi)sets ------------------------------------------------------------
def test_select_items_are_a_set(em):
    r = match(em, "SELECT name, age FROM singer", "SELECT age, name FROM singer")
    assert r.exact is True and r.failed_components == [] and r.error is None


def test_a_different_column_fails_select_and_select_without_agg(em):
    r = match(em, "SELECT name FROM singer", "SELECT country FROM singer")
    assert r.exact is False
    assert r.failed_components == ["select", "select(no AGG)"]


def test_a_different_aggregate_fails_select_only(em):
    r = match(em, "SELECT avg(age) FROM singer", "SELECT max(age) FROM singer")
    assert r.exact is False and r.failed_components == ["select"]


def test_a_missing_select_item_counts_as_a_miss_even_if_the_rest_match(em):
    r = match(em, "SELECT name, age FROM singer", "SELECT name FROM singer")
    assert r.exact is False
    assert r.partial["select"] == {"acc": 0, "rec": 0, "f1": 0, "label_total": 2, "pred_total": 1}


def test_where_conditions_are_a_set_but_and_or_is_not_ignored(em):
    gold = "SELECT name FROM singer WHERE country = 'France' AND age > 20"
    assert match(em, gold, "SELECT name FROM singer WHERE age > 20 AND country = 'France'").exact is True
    r = match(em, gold, "SELECT name FROM singer WHERE age > 20 OR country = 'France'")
    assert r.exact is False and r.failed_components == ["and/or", "keywords"]


def test_operator_fails_where_but_not_where_without_op(em):
    r = match(em, "SELECT name FROM singer WHERE age > 20", "SELECT name FROM singer WHERE age < 20")
    assert r.exact is False and r.failed_components == ["where"]


def test_group_by_columns_compare_without_their_table_and_having_apart(em):
    gold = "SELECT country, count(*) FROM singer GROUP BY country HAVING count(*) > 1"
    r = match(em, gold, "SELECT country, count(*) FROM singer GROUP BY country")
    assert r.exact is False and r.failed_components == ["group", "keywords"]  # group(no Having) still 1


def test_order_compares_direction_and_limit_presence_not_limit_value(em):
    gold = "SELECT name FROM singer ORDER BY age DESC LIMIT 1"
    assert match(em, gold, "SELECT name FROM singer ORDER BY age DESC LIMIT 3").exact is True
    assert match(em, gold, "SELECT name FROM singer ORDER BY age DESC").failed_components == ["order", "keywords"]
    assert match(em, gold, "SELECT name FROM singer ORDER BY age ASC LIMIT 1").failed_components == ["order", "keywords"]


def test_from_tables_must_be_the_same(em):
    r = match(em, "SELECT count(*) FROM singer", "SELECT count(*) FROM concert")
    assert r.exact is False and r.failed_components == []  # every component agrees; the tables do not


# -- aliases and foreign keys ------------------------------------------------------------------
def test_aliases_do_not_matter(em):
    gold = f"SELECT T1.name {JOIN} WHERE T2.concert_id = 3"
    plain = ("SELECT singer.name FROM singer JOIN singer_in_concert ON singer.singer_id = singer_in_concert.singer_id "
             "WHERE singer_in_concert.concert_id = 3")  # fmt: skip
    renamed = "SELECT A.name FROM singer_in_concert AS B JOIN singer AS A ON B.singer_id = A.singer_id WHERE B.concert_id = 3"
    assert match(em, gold, plain).exact is True
    assert match(em, gold, renamed).exact is True


def test_foreign_key_columns_are_unified(em):
    """T2.singer_id (singer_in_concert) and T1.singer_id (singer) are one key: same column."""
    r = match(em, f"SELECT T1.singer_id {JOIN}", f"SELECT T2.singer_id {JOIN}")
    assert r.exact is True
    r = match(em, f"SELECT T1.name {JOIN} GROUP BY T1.singer_id", f"SELECT T1.name {JOIN} GROUP BY T2.singer_id")
    assert r.exact is True


def test_foreign_key_map_groups_as_the_official_script():
    assert foreign_key_map(CONCERTS) == {
        "__singer_in_concert.singer_id__": "__singer.singer_id__", "__singer.singer_id__": "__singer.singer_id__",
        "__singer_in_concert.concert_id__": "__concert.concert_id__", "__concert.concert_id__": "__concert.concert_id__",
    }  # fmt: skip
    # a pair joins the first group holding either end; groups are not merged afterwards
    entry = {"table_names_original": ["t"], "column_names_original": [[-1, "*"], [0, "a"], [0, "b"], [0, "c"], [0, "d"]],
             "foreign_keys": [[1, 2], [3, 4], [2, 3]]}  # fmt: skip
    assert foreign_key_map(entry) == {"__t.a__": "__t.a__", "__t.b__": "__t.a__", "__t.c__": "__t.c__", "__t.d__": "__t.c__"}


def test_only_columns_of_the_from_tables_are_renamed(em):
    # singer_in_concert.singer_id is renamed to singer.singer_id when its table is in FROM:
    # every component agrees, only the FROM tables differ
    r = match(em, "SELECT singer_id FROM singer", "SELECT singer_id FROM singer_in_concert")
    assert r.exact is False and r.failed_components == []
    # ... and kept when its table is not in FROM
    r = match(em, "SELECT singer.singer_id FROM singer", "SELECT singer_in_concert.singer_id FROM singer")
    assert r.exact is False and r.failed_components == ["select", "select(no AGG)"]


# -- values and DISTINCT ---------------------------------------------------------------------------
def test_values_are_ignored_and_can_be_compared_on_request(em):
    gold = "SELECT name FROM singer WHERE country = 'France' AND age > 20"
    pred = "SELECT name FROM singer WHERE country = 'Spain' AND age > 30"
    assert match(em, gold, pred).exact is True
    strict = ExactMatcher({"concerts": CONCERTS}, values=True)
    assert strict.match("concerts", gold, pred).failed_components == ["where"]


def test_the_value_placeholder_reads_as_a_number(em):
    r = match(em, "SELECT name FROM singer WHERE age > 20 AND country = 'x'",
              "SELECT name FROM singer WHERE age > value AND country = 'y'")  # fmt: skip
    assert r.exact is True and r.error is None


def test_distinct_is_ignored_outside_nested_queries(em):
    assert match(em, "SELECT DISTINCT country FROM singer", "SELECT country FROM singer").exact is True
    assert match(em, "SELECT count(DISTINCT country) FROM singer", "SELECT count(country) FROM singer").exact is True
    strict = ExactMatcher({"concerts": CONCERTS}, distinct=True)
    assert strict.match("concerts", "SELECT count(DISTINCT country) FROM singer", "SELECT count(country) FROM singer").exact is False
    # SELECT DISTINCT itself is in no component: the official script never compares it
    assert strict.match("concerts", "SELECT DISTINCT country FROM singer", "SELECT country FROM singer").exact is True
    # the official rebuild does not reach a WHERE subquery: its DISTINCT still counts
    gold = "SELECT name FROM singer WHERE singer_id IN (SELECT DISTINCT singer_id FROM singer_in_concert)"
    r = match(em, gold, gold.replace("DISTINCT ", ""))
    assert r.exact is False and r.failed_components == ["where"]


# -- nested queries and IUEN ---------------------------------------------------------------------------
def test_nested_queries_are_compared_whole(em):
    gold = "SELECT name FROM singer WHERE age > (SELECT avg(age) FROM singer)"
    assert match(em, gold, gold.lower()).exact is True
    assert match(em, gold, "SELECT name FROM singer WHERE age > (SELECT max(age) FROM singer)").failed_components == ["where"]
    assert match(em, gold, "SELECT name FROM singer WHERE age > 30").failed_components == ["where"]
    # values inside the subquery are ignored too
    g2 = "SELECT name FROM singer WHERE age > (SELECT avg(age) FROM singer WHERE country = 'France')"
    assert match(em, g2, g2.replace("France", "Peru")).exact is True


def test_intersect_union_except(em):
    a, b = "SELECT name FROM singer WHERE age > 20", "SELECT name FROM singer WHERE country = 'France'"
    gold = f"{a} INTERSECT {b}"
    assert match(em, gold, f"{a} INTERSECT {b.replace('France', 'Chile')}").exact is True
    assert match(em, gold, f"{a} UNION {b}").failed_components == ["IUEN", "keywords"]
    assert match(em, gold, f"{a} INTERSECT SELECT country FROM singer").failed_components == ["IUEN"]
    assert match(em, gold, a).failed_components == ["IUEN", "keywords"]


# -- what cannot be parsed ---------------------------------------------------------------------------
def test_an_unparsable_prediction_is_a_miss_with_a_reason(em):
    for pred in ("SELECT nickname FROM singer", "SELECT name FROM", "", None):
        r = match(em, "SELECT name FROM singer", pred)
        assert r.exact is False and r.hardness == "easy"
        assert r.error and ("does not parse" in r.error or r.error == "no prediction")
        assert r.partial["select"]["label_total"] == 1 and r.partial["select"]["pred_total"] == 0


def test_an_unparsable_gold_gets_no_verdict(em):
    r = match(em, "SELECT nickname FROM singer", "SELECT name FROM singer")
    assert r.exact is None and "gold does not parse" in r.error
    assert em.match("nowhere", "SELECT 1", "SELECT 1").error == "no tables.json entry for database 'nowhere'"


# -- the official table -----------------------------------------------------------------------------
def test_aggregate_follows_the_official_averaging(em):
    gold_w = "SELECT name FROM singer WHERE age > 20"
    results = [
        match(em, "SELECT name FROM singer", "SELECT name FROM singer"),  # easy, right
        match(em, "SELECT name FROM singer", "SELECT country FROM singer"),  # easy, wrong select
        match(em, gold_w, "SELECT name FROM singer WHERE age > 20 AND age < 50"),  # easy, extra condition
    ]
    t = aggregate(results)
    assert t["easy"]["count"] == 3 and t["all"]["count"] == 3 and t["hard"]["count"] == 0
    assert t["easy"]["exact"] == pytest.approx(1 / 3)
    sel = t["all"]["components"]["select"]
    assert sel["acc"] == pytest.approx(2 / 3) and sel["rec"] == pytest.approx(2 / 3) and sel["f1"] == pytest.approx(2 / 3)
    # where: only the third question has one; acc over predictions with WHERE, rec over golds with it
    assert t["all"]["components"]["where"] == {"acc": 0.0, "rec": 0.0, "f1": 1.0}  # official: 0 and 0 give F1 1
    # and/or: the official function swaps its totals on a mismatch, so only recall counts it
    assert t["all"]["components"]["and/or"]["rec"] == pytest.approx(2 / 3)
    assert t["all"]["components"]["and/or"]["acc"] == 1.0
    assert t["hard"]["components"]["IUEN"] == {"acc": 0.0, "rec": 0.0, "f1": 1.0}
    assert set(t["all"]["components"]) == set(COMPONENTS)


def test_questions_without_a_verdict_are_left_out_of_the_table(em):
    t = aggregate([match(em, "SELECT nickname FROM singer", "SELECT name FROM singer")])
    assert t["all"]["count"] == 0


# -- real Spider dev -----------------------------------------------------------------------------------
@pytest.mark.data
def test_spider_dev_gold_vs_gold_is_100_with_every_component_1(spider_data):
    dev = json.loads((spider_data / "dev.json").read_text())
    tables = {t["db_id"]: t for t in json.loads((spider_data / "tables.json").read_text())}
    m = ExactMatcher(tables)
    t0 = time.monotonic()
    results = [m.match(q["db_id"], q["query"], q["query"]) for q in dev]
    seconds = time.monotonic() - t0
    assert all(r.exact is True and r.error is None for r in results)
    table = aggregate(results)
    assert {lv: table[lv]["count"] for lv in table} == {"easy": 248, "medium": 446, "hard": 174, "extra": 166, "all": 1034}
    for lv, row in table.items():
        assert row["exact"] == 1.0, lv
        for name, c in row["components"].items():  # acc and rec are 0 only where no question has the component
            assert c["f1"] == 1.0 and (c["acc"], c["rec"]) in ((1.0, 1.0), (0.0, 0.0)), (lv, name)
    assert all(c == {"acc": 1.0, "rec": 1.0, "f1": 1.0} for c in table["all"]["components"].values())
    assert seconds < 10  # the bar is 5 s on two cores; bench/em_parity.py measures it


@pytest.mark.data
def test_spider_dev_a_changed_column_is_never_an_exact_match(spider_data):
    dev = json.loads((spider_data / "dev.json").read_text())
    tables = {t["db_id"]: t for t in json.loads((spider_data / "tables.json").read_text())}
    m = ExactMatcher(tables)
    rng = random.Random(3)
    checked = 0
    for q in rng.sample(dev, 120):
        cols = [c for _, c in tables[q["db_id"]]["column_names_original"][1:]]
        first = q["query"].split()[1]
        if first.lower() in ("distinct", "*") or "(" in first or "," in first:
            continue
        name = first.split(".")[-1]
        other = next(c for c in cols if c.lower() != name.lower())
        pred = q["query"].replace(first, first[: len(first) - len(name)] + other, 1)
        r = m.match(q["db_id"], q["query"], pred)
        assert r.exact is False, (q["query"], pred)
        checked += 1
    assert checked > 40
