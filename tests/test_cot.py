"""`sqlwright data cot` against a real OpenAI-compatible teacher on 127.0.0.1 with scripted answers."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("openai")
pytest.importorskip("datasets")

from conftest import SCHOOLS_DDL, make_db, write_jsonl  # noqa: E402
from helpers_teacher import teacher_config, teacher_server, tokens  # noqa: E402
from sqlwright.cli import main  # noqa: E402
from sqlwright.data.build import BuildConfig, build_dataset  # noqa: E402
from sqlwright.data.cot import COOKBOOK_REASONING_PROMPT, CotConfig, cot_target, run_cot  # noqa: E402
from sqlwright.data.sources import SourceConfig  # noqa: E402
from sqlwright.errors import UserError  # noqa: E402
from sqlwright.infer import openai_api  # noqa: E402
from sqlwright.prompts.formats import COOKBOOK_COT_SYSTEM  # noqa: E402
from sqlwright.prompts.spec import PromptSpec  # noqa: E402

RUNAWAY = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"
# question -> (gold SQL, scripted answers by attempt: text, or (HTTP status, message); the last repeats)
SCRIPT = {
    "How many schools are in Fresno?": ("SELECT COUNT(*) FROM schools WHERE city = 'Fresno'", [
        "Let me think through this step by step:\n\n1. Count rows of schools.\n2. Filter on city.\n\n"
        "Finally, the SQL statement for the text question is: \n```sql\nSELECT COUNT(*) FROM schools WHERE city = 'Fresno'\n```"]),
    "Name the schools rated 4.5.": ("SELECT name FROM schools WHERE rating = 4.5", [  # equivalent, written differently
        "1. The top rating is 4.5, so rating >= 4.5 selects the same schools.\n\n"
        "```sql\nSELECT s.name\nFROM schools AS s\nWHERE s.rating >= 4.5;\n```\nHope this helps!"]),
    "Cities with their number of schools.": ("SELECT city, COUNT(*) FROM schools GROUP BY city", [  # always wrong
        "1. List the cities.\n```sql\nSELECT DISTINCT city FROM schools\n```"]),
    "Best average math score per school name.": (
        "SELECT s.name, MAX(c.avg_math) FROM schools s JOIN scores c ON s.id = c.school_id GROUP BY s.name", [
        "I would join schools with scores and take the maximum per name."]),  # no SQL at all
    "Which schools are in Davis?": ("SELECT name FROM schools WHERE city = 'Davis'", [
        (500, "upstream overloaded"),  # a transient error: the backend retries it
        "1. Filter on Davis.\n```sql\nSELECT name FROM schools WHERE city = 'Davis'\n```"]),
    "How many students in total?": ("SELECT SUM(students) FROM schools", [
        "```sql\nSELECT SUM(pupils) FROM schools\n```"]),  # always an error
    "Count forever.": ("SELECT COUNT(*) FROM schools", [f"```sql\n{RUNAWAY}\n```"]),  # always a timeout
    "Which school has the most students?": ("SELECT name FROM schools ORDER BY students DESC LIMIT 1", [
        "```sql\nSELECT name FROM schools ORDER BY students ASC LIMIT 1\n```",  # greedy: wrong
        "1. Sort by students, largest first.\n```sql\nSELECT name FROM schools ORDER BY students DESC LIMIT 1\n```"]),
    "A broken gold query.": ("SELECT nothing FROM nowhere", ["```sql\nSELECT 1\n```"]),
}  # fmt: skip
EXPECTED_KEPT = {"How many schools are in Fresno?", "Name the schools rated 4.5.", "Which schools are in Davis?",
                 "Which school has the most students?"}  # fmt: skip
EXPECTED_DROPPED = {"Cities with their number of schools.": "different_result",
                    "Best average math score per school name.": "no_sql", "How many students in total?": "error",
                    "Count forever.": "timeout", "A broken gold query.": "gold_error"}  # fmt: skip


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    """Short waits between the teacher's retries: the SDK's backoff and ours (malformed bodies)."""
    import openai._base_client as sdk

    monkeypatch.setattr(openai_api, "MALFORMED_DELAY", 0.01)
    monkeypatch.setattr(sdk, "INITIAL_RETRY_DELAY", 0.01, raising=False)
    monkeypatch.setattr(sdk, "MAX_RETRY_DELAY", 0.05, raising=False)


def question_of(prompt: str) -> str:
    return re.search(r"-- Text Question Input: (.*)\n", prompt).group(1)


def build(tmp_path: Path, rows: list[dict], name: str = "ds") -> Path:
    make_db(tmp_path / "dbs" / "schools.sqlite", SCHOOLS_DDL)
    questions = write_jsonl(tmp_path / f"{name}.jsonl", rows)
    out = tmp_path / name
    build_dataset(BuildConfig("sqlite", str(out), SourceConfig(path=str(tmp_path / "dbs"), questions=str(questions)),
                              PromptSpec(), progress=False))  # fmt: skip
    return out


def scripted(given: list[str]):
    def respond(prompt, body, attempt):
        answers = SCRIPT[question_of(prompt)][1]
        answer = answers[min(attempt, len(answers)) - 1]
        if isinstance(answer, str):
            given.append(answer)
        return answer

    return respond


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_kept_set_is_exactly_the_verified_one(tmp_path):
    data = build(tmp_path, [{"id": f"q{i}", "question": q, "sql": sql} for i, (q, (sql, _)) in enumerate(SCRIPT.items())])
    given: list[str] = []
    out = tmp_path / "cot"
    with teacher_server(scripted(given)) as srv:
        stats = run_cot(CotConfig(str(data), str(out), teacher_config(srv), retries=2, sql_timeout=0.3, workers=0, progress=False))
        bodies = list(srv.bodies)

    kept = lines(out / "train.jsonl")
    assert {r["question"] for r in kept} == EXPECTED_KEPT
    dropped = lines(out / "dropped.jsonl")
    assert {r["question"]: r["reason"] for r in dropped} == EXPECTED_DROPPED
    assert stats.kept == 4 and stats.dropped == {"different_result": 1, "error": 1, "timeout": 1, "no_sql": 1, "gold_error": 1}
    assert stats.total == 9 and stats.unfinished == 0

    # the teacher saw the cookbook's prompt, one user message, greedy first and sampled retries
    first = next(b for b in bodies if question_of(b["messages"][0]["content"]) == "Cities with their number of schools.")
    assert len(first["messages"]) == 1 and first["messages"][0]["role"] == "user"
    prompt = first["messages"][0]["content"]
    assert prompt.startswith(COOKBOOK_REASONING_PROMPT.split("{db_schema}")[0])
    assert "-- Gold SQL Output: SELECT city, COUNT(*) FROM schools GROUP BY city\n" in prompt
    assert "CREATE TABLE schools" in prompt and "-- External Knowledge: \n" in prompt
    wrong = [b for b in bodies if question_of(b["messages"][0]["content"]) == "Cities with their number of schools."]
    assert [b["temperature"] for b in wrong] == [0.0, 0.7, 0.7] and wrong[1]["seed"] != wrong[2]["seed"]
    asked = {question_of(b["messages"][0]["content"]) for b in bodies}
    assert "A broken gold query." not in asked  # a gold that does not run is not sent to the teacher

    by_q = {r["question"]: r for r in dropped}
    assert len(by_q["Cities with their number of schools."]["attempts"]) == 3  # 1 + 2 retries
    assert by_q["Cities with their number of schools."]["detail"] == "1 columns, gold has 2"
    assert by_q["Count forever."]["attempts"][0]["reason"] == "timeout"
    assert by_q["A broken gold query."]["attempts"] == []

    # targets: reasoning, then one ```sql block with the teacher's verified SQL; the prompt is the CoT format
    kq = {r["question"]: r for r in kept}
    eq = kq["Name the schools rated 4.5."]
    assert eq["teacher_sql"] == "SELECT s.name\nFROM schools AS s\nWHERE s.rating >= 4.5" and eq["sql"] == "SELECT name FROM schools WHERE rating = 4.5"
    msgs = eq["messages"]
    assert msgs[0] == {"role": "system", "content": COOKBOOK_COT_SYSTEM}
    assert msgs[1]["content"].startswith("\n        -- DB Schema: CREATE TABLE schools")
    assert msgs[2]["content"] == ("1. The top rating is 4.5, so rating >= 4.5 selects the same schools.\n\n"
                                  "```sql\nSELECT s.name\nFROM schools AS s\nWHERE s.rating >= 4.5\n```")  # fmt: skip
    assert kq["Which school has the most students?"]["attempts"] == 2
    assert kq["Which schools are in Davis?"]["attempts"] == 1  # the HTTP 500 was retried by the backend
    assert PromptSpec.load(out).format == "cookbook-cot"
    assert (out / "dataset" / "dataset_dict.json").is_file()

    # stats: retries and the teacher's tokens, as the server reported them
    assert stats.retried == 5 and stats.kept_after_retry == 1  # wrong, no SQL, error, timeout x3; most students x2
    assert stats.attempts == 1 + 1 + 3 + 3 + 1 + 3 + 3 + 2 + 0
    assert stats.teacher_completion_tokens == sum(tokens(a) for a in given)
    saved = json.loads((out / "stats.json").read_text())
    assert saved["kept"] == 4 and saved["teacher_tokens"] == stats.teacher_tokens > 0


def test_rerun_continues_and_asks_nothing_again(tmp_path):
    rows = [{"id": f"q{i}", "question": q, "sql": sql} for i, (q, (sql, _)) in enumerate(SCRIPT.items()) if i < 3]
    data = build(tmp_path, rows)
    out = tmp_path / "cot"
    with teacher_server(scripted([])) as srv:
        cfg = CotConfig(str(data), str(out), teacher_config(srv), retries=1, workers=0, progress=False, limit=2)
        first = run_cot(cfg)
        assert first.total == 2 and first.done_now == 2
        asked = srv.total
        cfg.limit = None  # a larger run in the same folder continues it
        second = run_cot(cfg)
        assert second.already_done == 2 and second.done_now == 1 and second.total == 3
        assert srv.total == asked + 2  # only the third question (wrong, so 1 + 1 retry)
        again = run_cot(cfg)
        assert again.done_now == 0 and srv.total == asked + 2
    assert again.kept == 2 and again.dropped == {"different_result": 1}
    with pytest.raises(UserError, match="holds another run .*comparator"):
        run_cot(CotConfig(str(data), str(out), cfg.teacher, comparator="multiset", progress=False))


def test_prompt_file_and_bad_options(tmp_path, capsys):
    data = build(tmp_path, [{"id": "a", "question": "How many schools are in Fresno?", "sql": SCRIPT["How many schools are in Fresno?"][0]}])
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("Explain {question} using {db_schema}. The answer is {gold_SQL}; {nope}")
    assert main(["data", "cot", str(data), "-o", str(tmp_path / "x"), "-m", "t", "--prompt-file", str(prompt)]) == 2
    assert "prompt.txt: unknown placeholder {nope}" in capsys.readouterr().err
    prompt.write_text("Q: {question}\nGold: {gold_SQL}\nKnowledge: {external_knowledge} {not a placeholder}")
    with teacher_server(scripted([])) as srv:
        srv.respond = lambda p, b, a: "```sql\nSELECT count(*) FROM schools WHERE city = 'Fresno'\n```"
        stats = run_cot(CotConfig(str(data), str(tmp_path / "y"), teacher_config(srv), prompt_file=str(prompt), progress=False, workers=0))
        sent = srv.bodies[0]["messages"][0]["content"]
    assert sent == ("Q: How many schools are in Fresno?\nGold: SELECT COUNT(*) FROM schools WHERE city = 'Fresno'\n"
                    "Knowledge:  {not a placeholder}")  # fmt: skip
    assert stats.kept == 1
    assert main(["data", "cot", str(tmp_path / "nothing"), "-o", str(tmp_path / "z"), "-m", "t"]) == 2
    assert "no such dataset folder" in capsys.readouterr().err
    assert main(["data", "cot", str(data), "-o", str(tmp_path / "z"), "-m", "t", "--comparator", "birds", "--retries", "-1"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'bird'" in err and "--retries must be 0 or more" in err
    assert main(["data", "cot", str(data), "-o", str(tmp_path / "z"), "-m", "t", "--format", "cookbook"]) == 2
    assert "--format cookbook does not train on the reasoning" in capsys.readouterr().err
    assert main(["data", "cot", str(data), "-o", str(tmp_path / "z"), "-m", "t", "--split", "dev"]) == 2
    assert "no split 'dev' (has: train)" in capsys.readouterr().err


def test_cot_target_keeps_reasoning_and_one_final_block():
    text = "Step 1.\n```sql\nSELECT 1\n```\nStep 2, better:\n```SQL\nSELECT 2;\n```\nDone."
    assert cot_target(text, "SELECT 2") == "Step 1.\n```sql\nSELECT 1\n```\nStep 2, better:\n\n```sql\nSELECT 2\n```"
    assert cot_target("```sql\nSELECT 3\n```", "SELECT 3") == "```sql\nSELECT 3\n```"
    assert cot_target("Think.\n```sql\nSELECT 4", "SELECT 4") == "Think.\n\n```sql\nSELECT 4\n```"  # cut-off answer


N_BIG = 500


def test_killed_halfway_and_restarted_loses_nothing(tmp_path):
    rows = []
    for i in range(N_BIG):
        rows.append({"id": f"e{i}", "question": f"Question number {i}?", "sql": f"SELECT name FROM schools WHERE id = {i % 5 + 1}"})
    data = build(tmp_path, rows)

    def respond(prompt, body, attempt):
        i = int(re.search(r"Question number (\d+)\?", prompt).group(1))
        gold = re.search(r"-- Gold SQL Output: (.*)\n", prompt).group(1)
        if i % 10 == 3:
            return "```sql\nSELECT 'wrong'\n```"
        if i % 10 == 7:
            return "No idea."
        return f"1. Read the row.\n```sql\n{gold}\n```"

    out = tmp_path / "cot"
    with teacher_server(respond) as srv:
        cmd = [sys.executable, "-m", "sqlwright", "data", "cot", str(data), "-o", str(out), "-m", "teacher", "-b", "openai",
               "--base-url", srv.url, "--api-key-env", "SQLWRIGHT_TEST_NO_KEY", "--concurrency", "8", "--retries", "1",
               "--workers", "0", "--no-progress"]  # fmt: skip
        log = out / "log" / "train.jsonl"
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not log.exists() or log.read_text().count("\n") < N_BIG // 2):
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        partial = log.read_text().count("\n")
        assert N_BIG // 4 <= partial < N_BIG, partial  # really killed halfway
        assert not (out / "stats.json").exists()
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr

    kept = [r["id"] for r in lines(out / "train.jsonl")]
    dropped = [r["id"] for r in lines(out / "dropped.jsonl")]
    assert len(kept) + len(dropped) == N_BIG and set(kept) | set(dropped) == {r["id"] for r in rows}
    assert len(set(kept)) == len(kept) and not set(kept) & set(dropped)
    logged = [r["id"] for r in lines(out / "log" / "train.jsonl")]
    assert len(logged) == N_BIG and set(logged) == set(kept) | set(dropped)  # the log holds each example once
    assert len(dropped) == N_BIG // 5  # i % 10 in (3, 7)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["kept"] == 400 and stats["dropped"] == {"different_result": 50, "no_sql": 50} and stats["unfinished"] == 0
    assert stats["already_done"] == partial and stats["done_now"] == N_BIG - partial
    assert "kept 400" in done.stdout


# -- a dataset on another machine -----------------------------------------------------------
FRESNO = "How many schools are in Fresno?"


def test_moved_dataset_with_db_root(tmp_path, capsys):
    data = build(tmp_path, [{"id": "a", "question": FRESNO, "sql": SCRIPT[FRESNO][0]}])
    moved, dbs = tmp_path / "cluster" / "ds", tmp_path / "cluster" / "dbs"
    shutil.copytree(data, moved)
    shutil.rmtree(data)
    old = (tmp_path / "dbs").resolve()
    shutil.move(old, dbs)
    assert main(["data", "cot", str(moved), "-o", str(tmp_path / "x"), "-m", "t", "--no-progress"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: schools: database not found at {old}/schools.sqlite; pass --db-root DIR (the folder holding schools.sqlite)"]
    assert not (tmp_path / "x").exists()  # refused before the run folder or the teacher
    out = tmp_path / "cot"
    with teacher_server(scripted([])) as srv:
        stats = run_cot(CotConfig(str(moved), str(out), teacher_config(srv), workers=0, progress=False, db_root=str(dbs)))
    assert stats.kept == 1 and not stats.dropped  # the gold and the answer ran on the databases found there
    # the output is a dataset too: relative references to the root it was made with
    assert json.loads((out / "dataset.json").read_text())["db_root"] == str(dbs)
    assert lines(out / "train.jsonl")[0]["db_path"] == "schools.sqlite"


def test_dataset_holding_its_databases_moves_whole(tmp_path):
    ddl = SCHOOLS_DDL.split("INSERT")[0]  # bird-questions builds empty databases from CREATE TABLE text
    (tmp_path / "s.json").write_text(json.dumps({"schools": ddl}))
    (tmp_path / "q.json").write_text(json.dumps([{"db_id": "schools", "question": FRESNO, "SQL": SCRIPT[FRESNO][0]}]))
    built = tmp_path / "laptop" / "ds"
    build_dataset(BuildConfig("bird-questions", str(built), SourceConfig(questions=str(tmp_path / "q.json"),
                                                                          schemas=str(tmp_path / "s.json")), PromptSpec(), progress=False))  # fmt: skip
    moved = tmp_path / "cluster" / "ds"
    shutil.copytree(built, moved)
    shutil.rmtree(tmp_path / "laptop")
    (tmp_path / "q.json").unlink()  # the source is gone too: everything comes from the dataset
    (tmp_path / "s.json").unlink()
    out = tmp_path / "cluster" / "cot"
    with teacher_server(scripted([])) as srv:
        stats = run_cot(CotConfig(str(moved), str(out), teacher_config(srv), workers=0, progress=False))
    assert stats.kept == 1 and not stats.dropped
    assert json.loads((out / "dataset.json").read_text())["db_root"] == "databases"
    rec = lines(out / "train.jsonl")[0]
    assert rec["db_path"] == "schools/schools.sqlite" and (out / "databases" / "schools" / "schools.sqlite").is_file()
    from sqlwright.data.dataset import resolve_records

    again = tmp_path / "elsewhere" / "cot"  # the CoT dataset moves on its own as well
    shutil.copytree(out, again)
    assert resolve_records(again, [rec])[0]["db_path"] == str(again / "databases" / "schools" / "schools.sqlite")


def test_database_url_is_one_line_exit_2(tmp_path, capsys):
    data = build(tmp_path, [{"id": "a", "question": FRESNO, "sql": SCRIPT[FRESNO][0]}])
    split = data / "train.jsonl"
    split.write_text(json.dumps({**json.loads(split.read_text()), "db_path": "postgresql://u:pw@h/db"}) + "\n")
    assert main(["data", "cot", str(data), "-o", str(tmp_path / "x"), "-m", "t", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1  # no server named h: refused in one line, password masked
    assert err.startswith("error: postgresql://u:***@h/db: cannot connect: ")
    assert "pw" not in err
