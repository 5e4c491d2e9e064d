"""`sqlwright data synth` against a real OpenAI-compatible teacher on 127.0.0.1 with scripted answers."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

pytest.importorskip("openai")

from conftest import SCHOOLS_DDL, SHOP_DDL, make_db  # noqa: E402
from helpers_teacher import teacher_config, teacher_server, tokens  # noqa: E402
from sqlwright.cli import main  # noqa: E402
from sqlwright.data.synth import (  # noqa: E402
    SynthConfig,
    _pick,
    analyze_sql,
    context_database,
    parse_pairs,
    parse_triplets,
    run_synth,
)
from sqlwright.db.sqltext import canonical_sql, normalize_sql  # noqa: E402

RUNAWAY = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"
SCHOOLS_ANSWER = f"""Here are the questions.

1. Question: How many schools are in Fresno?
```sql
SELECT COUNT(*) FROM schools WHERE city = 'Fresno'
```
2. Question: How many schools are located in the city of Fresno?
```sql
select count(*)
from SCHOOLS   where city='Fresno';
```
3. **Question:** How many schools are in Fresno ?
```sql
SELECT COUNT(id) FROM schools WHERE city = 'Fresno'
```
4. Question: Which schools are in Paris?
```sql
SELECT name FROM schools WHERE city = 'Paris'
```
5. Question: What is the average rating?
```sql
SELECT AVG(ratings) FROM schools
```
6. Question: Which school had the best math score in 2021?
```sql
SELECT s.name FROM schools AS s JOIN scores AS c ON s.id = c.school_id WHERE c.year = 2021 ORDER BY c.avg_math DESC LIMIT 1
```
7. Question: Which schools have more students than average?
```sql
SELECT name FROM schools WHERE students > (SELECT AVG(students) FROM schools)
```
8. Question: List the names of all schools.
SQL: SELECT name FROM schools
9. Question: What do you think about schools?
I think they are great.
10. Question: Count forever.
```sql
{RUNAWAY}
```
"""
SHOP_ANSWERS = [
    "Question: Which products cost more than 10?\n```sql\nSELECT title FROM products WHERE price > 10\n```\n",
    "Question: Which products cost more than ten?\n```sql\nSELECT title FROM products WHERE price > 10\n```\n"
    "Question: What is the total stock?\n```sql\nSELECT SUM(stock) FROM products\n```\n",
]
EXPECTED_SCHOOLS = {"How many schools are in Fresno?", "Which school had the best math score in 2021?",
                    "Which schools have more students than average?", "List the names of all schools."}  # fmt: skip


def databases(tmp_path: Path) -> Path:
    make_db(tmp_path / "dbs" / "schools.sqlite", SCHOOLS_DDL)
    make_db(tmp_path / "dbs" / "shop.sqlite", SHOP_DDL)
    return tmp_path / "dbs"


def db_teacher(given: list[str]):
    shop_calls = []

    def respond(prompt, body, attempt):
        db = re.search(r"^Database: (\w+)$", prompt, re.M).group(1)
        if db == "schools":
            answer = SCHOOLS_ANSWER
        else:
            answer = SHOP_ANSWERS[min(len(shop_calls), len(SHOP_ANSWERS) - 1)]
            shop_calls.append(prompt)
        given.append(answer)
        return answer

    return respond


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_pairs_for_databases_are_verified_deduplicated_and_balanced(tmp_path):
    given: list[str] = []
    out = tmp_path / "synth"
    with teacher_server(db_teacher(given)) as srv:
        cfg = SynthConfig(str(out), teacher_config(srv), databases=str(databases(tmp_path)), per_database=4, per_request=5,
                          max_rounds=3, sql_timeout=0.3, progress=False)  # fmt: skip
        stats = run_synth(cfg)
        bodies = list(srv.bodies)

    qs = lines(out / "questions.jsonl")
    assert {q["question"] for q in qs if q["db_id"] == "schools"} == EXPECTED_SCHOOLS
    assert {q["question"] for q in qs if q["db_id"] == "shop"} == {"Which products cost more than 10?", "What is the total stock?"}
    shapes = {q["question"]: q["shape"] for q in qs}
    assert shapes["Which school had the best math score in 2021?"] == "join"
    assert shapes["Which schools have more students than average?"] == "nested"
    assert shapes["How many schools are in Fresno?"] == "aggregation" and shapes["List the names of all schools."] == "simple"
    assert stats.by_shape == {"simple": 2, "aggregation": 2, "join": 1, "nested": 1}
    # schools: one request (4 kept of 10 reach the target); shop: 1 kept per round until max_rounds
    assert sum("Database: schools" in b["messages"][0]["content"] for b in bodies) == 1
    assert sum("Database: shop" in b["messages"][0]["content"] for b in bodies) == 3
    assert stats.requests == 4 and stats.kept == 6 and stats.written == 6
    assert stats.rejected == {"no_sql": 1, "error": 1, "timeout": 1, "empty_result": 1, "duplicate_sql": 4,
                              "near_duplicate_question": 1}  # fmt: skip
    reasons = {(r["question"], r["reason"]) for r in lines(out / "rejected.jsonl")}
    assert ("How many schools are located in the city of Fresno?", "duplicate_sql") in reasons
    assert ("How many schools are in Fresno ?", "near_duplicate_question") in reasons
    assert ("Which schools are in Paris?", "empty_result") in reasons and ("Count forever.", "timeout") in reasons
    assert stats.teacher_completion_tokens == sum(tokens(a) for a in given)
    assert stats.by_table["schools.schools"] == 4 and stats.by_table["schools.scores"] == 1

    # each round asks first for the (table, shape) bins with the fewest kept pairs: shop's three
    # requests (one table, no foreign key: no join) ask for three different shapes
    asked = [r["shape"] for r in lines(out / "log.jsonl") if r["target"] == "shop"]
    assert sorted(asked) == ["aggregation", "nested", "simple"]
    # the prompt shows sampled tables with example rows and the shape asked for
    first = bodies[0]["messages"][0]["content"]
    assert "CREATE TABLE" in first and "example rows" in first and "Question: <the question>" in first

    # triplets: the CREATE TABLE statements of the tables each query reads, verified in memory
    trips = lines(out / "triplets.jsonl")
    assert len(trips) == 6 and stats.triplets == 6
    join = next(t for t in trips if t["question"] == "Which school had the best math score in 2021?")
    assert "CREATE TABLE schools" in join["context"] and "CREATE TABLE scores" in join["context"]
    for t in trips:
        conn = sqlite3.connect(":memory:")
        conn.executescript(t["context"])
        conn.execute(t["answer"]).fetchall()
        conn.close()

    # a rerun of the finished command asks nothing and writes the same files
    with teacher_server(db_teacher([])) as srv:
        again = run_synth(SynthConfig(**{**cfg.__dict__, "teacher": teacher_config(srv)}))
        assert srv.total == 0
    assert again.written == 6 and again.already_done == 4 and lines(out / "questions.jsonl") == qs

    # and the questions build into a dataset
    assert main(["data", "build", "sqlite", str(tmp_path / "dbs"), "--questions", str(out / "questions.jsonl"),
                 "-o", str(tmp_path / "ds"), "--no-progress"]) == 0  # fmt: skip
    assert len(lines(tmp_path / "ds" / "train.jsonl")) == 6


def test_topic_triplets_are_verified_in_memory(tmp_path):
    answer = """Context:
```sql
CREATE TABLE ships (id INTEGER PRIMARY KEY, name TEXT, tonnage INTEGER);
```
Question: Which ships weigh more than 1000 tons?
Answer:
```sql
SELECT name FROM ships WHERE tonnage > 1000
```
Context:
```sql
CREATE TABLE ports (id INTEGER, city TEXT); DROP TABLE ports;
```
Question: How many ports are there?
Answer:
```sql
SELECT COUNT(*) FROM ports
```
Context:
```sql
CREATE TABLE crew (id INTEGER, ship_id INTEGER, role TEXT);
```
Question: How many captains are there?
Answer:
```sql
SELECT COUNT(*) FROM crew WHERE rank = 'captain'
```
Context:
```sql
CREATE TABLE ships (id INTEGER PRIMARY KEY, name TEXT, tonnage INTEGER);
```
Question: Name the ships heavier than 1000 tons.
Answer:
```sql
select NAME from SHIPS where tonnage > 1000
```
Context:
```sql
CREATE TABLE crew (id INTEGER, ship_id INTEGER, role TEXT);
CREATE TABLE ships (id INTEGER PRIMARY KEY, name TEXT);
```
Question: Which ships have a cook?
Answer:
```sql
SELECT s.name FROM ships s JOIN crew c ON c.ship_id = s.id WHERE c.role = 'cook'
```
"""
    out = tmp_path / "trip"
    with teacher_server(lambda p, b, a: answer) as srv:
        stats = run_synth(SynthConfig(str(out), teacher_config(srv), topics=["shipping"], per_database=5, per_request=5,
                                      max_rounds=1, shapes=["join"], progress=False))  # fmt: skip
        prompt = srv.bodies[0]["messages"][0]["content"]
    assert "Topic: shipping" in prompt and "joins at least two" in prompt
    trips = lines(out / "triplets.jsonl")
    assert [t["question"] for t in trips] == ["Which ships weigh more than 1000 tons?", "Which ships have a cook?"]
    assert trips[1]["context"].count("CREATE TABLE") == 2 and trips[1]["shape"] == "join" and trips[1]["topic"] == "shipping"
    assert stats.rejected == {"bad_context": 1, "error": 1, "duplicate_sql": 1}
    assert not (out / "questions.jsonl").exists() and stats.written == 2 and stats.mode == "topic"


def test_resume_plans_the_same_rounds(tmp_path):
    out = tmp_path / "synth"
    dbs = databases(tmp_path)
    with teacher_server(db_teacher([])) as srv:
        base = dict(out=str(out), teacher=teacher_config(srv), databases=str(dbs), per_database=4, sql_timeout=0.3, progress=False)
        first = run_synth(SynthConfig(**base, max_rounds=1))
        assert srv.total == 2 and first.written == 5  # schools 4, shop 1
        second = run_synth(SynthConfig(**base, max_rounds=3))  # continues: round 0 is not asked again
        assert srv.total == 4 and second.written == 6 and second.already_done == 2
    with pytest.raises(Exception, match="holds another run"):
        run_synth(SynthConfig(**{**base, "per_request": 2}))


def test_parsers_and_sql_analysis():
    text = ("**Question 1:** How many?\n```sql\nSELECT 1;\n```\n- Q: What else?\nSQL: SELECT 2\n\n"
            "Question: And prose?\nNo query here.\n")  # fmt: skip
    assert parse_pairs(text) == [("How many?", "SELECT 1"), ("What else?", "SELECT 2"), ("And prose?", None)]
    assert parse_pairs("Question:\n\n  Which one?\n```sql\nSELECT 3\n```\nQuestion:\n") == [("Which one?", "SELECT 3")]
    assert parse_triplets("Context: CREATE TABLE t (a INT);\nQuestion: Count?\nAnswer: SELECT COUNT(*) FROM t") == [
        ("CREATE TABLE t (a INT);", "Count?", "SELECT COUNT(*) FROM t")]
    assert canonical_sql("select  count(*) from SCHOOLS where city='Fresno';") == canonical_sql("SELECT COUNT(*) FROM schools WHERE city = 'Fresno'")
    assert canonical_sql("SELECT 1 FROM t WHERE a = 'X'") != canonical_sql("SELECT 1 FROM t WHERE a = 'x'")
    # the execution key is stricter: only outer whitespace, never a change inside the query
    assert normalize_sql("  SELECT a FROM t\n") == "SELECT a FROM t" != normalize_sql("select a from t")
    assert analyze_sql("SELECT a FROM t UNION SELECT b FROM u") == ("nested", ["t", "u"])
    assert analyze_sql("WITH x AS (SELECT 1) SELECT * FROM x") == ("nested", [])
    assert analyze_sql("SELECT city, COUNT(*) FROM s GROUP BY city")[0] == "aggregation"
    assert analyze_sql("SELECT * FROM a, b WHERE a.id = b.id")[0] == "join"


def test_balanced_pick_round_robins_over_shapes_and_tables():
    kept = [{"shape": "aggregation", "tables": ["a"]} for _ in range(6)]
    kept += [{"shape": "join", "tables": ["a", "b"]}, {"shape": "simple", "tables": ["b"]}, {"shape": "simple", "tables": ["a"]}]
    picked = _pick(kept, 4)
    assert sorted((p["shape"], p["tables"][0]) for p in picked) == [("aggregation", "a"), ("join", "a"), ("simple", "a"), ("simple", "b")]


def test_context_database_refuses_anything_but_create(tmp_path):
    assert context_database("CREATE TABLE t (a INT); INSERT INTO t VALUES (1)", tmp_path)[0] is None
    assert context_database("ATTACH DATABASE 'x.db' AS x", tmp_path)[0] is None
    assert "does not build" in context_database("CREATE TABLE t (a INT); CREATE TABLE t (b INT);", tmp_path)[1]
    path, _ = context_database("CREATE TABLE t (a INT, b TEXT)", tmp_path)
    assert sqlite3.connect(path).execute("PRAGMA table_info(t)").fetchall()[1][1] == "b"
    assert list(tmp_path.iterdir()) == [Path(path)]  # nothing else written


def test_bad_options(tmp_path, capsys):
    assert main(["data", "synth", str(tmp_path), "--topic", "x", "-m", "t", "-o", str(tmp_path / "o")]) == 2
    assert "either DATABASES" in capsys.readouterr().err
    assert main(["data", "synth", "--topic", "x", "-m", "t", "--shape", "joins", "-o", str(tmp_path / "o")]) == 2
    assert "unknown query shape 'joins'; did you mean 'join'?" in capsys.readouterr().err
    assert main(["data", "synth", str(tmp_path / "none"), "-m", "t", "-o", str(tmp_path / "o")]) == 2
    assert "no such folder of SQLite databases" in capsys.readouterr().err
    prompt = tmp_path / "p.txt"
    prompt.write_text("Write about {topic}")
    make_db(tmp_path / "dbs" / "shop.sqlite", SHOP_DDL)
    assert main(["data", "synth", str(tmp_path / "dbs"), "-m", "t", "-o", str(tmp_path / "o"), "--prompt-file", str(prompt)]) == 2
    assert "p.txt: unknown placeholder {topic}; missing placeholder {schema}" in capsys.readouterr().err
