"""Execution-guided inference: the validity check, selection among samples (--select) and
self-correction (--refine) in `sqlwright predict`, and how eval and the report count them.

Self-correction runs against a real OpenAI-compatible server on 127.0.0.1 that is scripted
like a model that learns from the observation turn: it answers a question first with SQL
naming a missing column, and with the gold SQL once the conversation holds the database's
error text ("no such column: nope")."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from conftest import BIRD_QUESTIONS, make_db
from helpers_teacher import TeacherServer, teacher_server
from sqlwright.cli import main
from sqlwright.eval.evaluate import EvalConfig, evaluate
from sqlwright.infer import backend as backend_mod
from sqlwright.infer.backend import BackendConfig, Completion, GenerationConfig
from sqlwright.judge import Judge
from sqlwright.predict import PredictConfig, predict
from sqlwright.predict.guided import choose
from sqlwright.prompts.refine import observation
from sqlwright.report import ReportConfig, write_report
from sqlwright.types import Limits, Status

GOLD = {q[2]: q[4] for q in BIRD_QUESTIONS}  # question text -> gold SQL
IDS = [str(q[0]) for q in BIRD_QUESTIONS]
STUBBORN = BIRD_QUESTIONS[4][2]  # "Which products are out of stock?": never fixed
EMPTY_FIRST = BIRD_QUESTIONS[1][2]  # "Name the schools rated 4.5.": first an answer with 0 rows
RUNAWAY = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"


def question_of(messages: list[dict]) -> str:
    first = next(m["content"] for m in messages if m["role"] == "user")
    return first.rsplit("-- Question: ", 1)[-1]


def bad_sql(question: str) -> str:
    return f"SELECT nope FROM {'products' if 'products' in GOLD[question] else 'schools'}"


def scripted_answer(messages: list[dict]) -> str:
    """The scripted model: wrong first, right after seeing the error (or the 0 rows)."""
    q = question_of(messages)
    last = messages[-1]["content"] if messages[-1]["role"] == "user" and len(messages) > 2 else ""
    if q == STUBBORN:
        return bad_sql(q)
    if q == EMPTY_FIRST and not last:
        return "SELECT name FROM schools WHERE rating = 5"
    if "no such column: nope" in last or "returned 0 rows" in last:
        return GOLD[q]
    return bad_sql(q)


def scripted(prompt: str, body: dict, attempt: int) -> str:
    """The fake server's answer (helpers_teacher): the script above, in a ```sql block."""
    return f"Here it is:\n```sql\n{scripted_answer(body['messages'])};\n```"


@pytest.fixture
def server():
    pytest.importorskip("openai")
    with teacher_server(scripted) as srv:
        yield srv


def api(server: TeacherServer, **kw) -> BackendConfig:
    return BackendConfig(model="stub", backend="openai", base_url=server.url, api_key_env="SQLWRIGHT_TEST_NO_KEY",
                         concurrency=4, max_retries=0, timeout=10, **kw)  # fmt: skip


def lines(path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def by_id(path) -> dict[str, dict]:
    return {r["id"]: r for r in lines(path)}


# -- the validity check ---------------------------------------------------------------------
@pytest.fixture
def tiny(tmp_path) -> str:
    return str(make_db(tmp_path / "t.sqlite", "CREATE TABLE t (a INTEGER, b TEXT); INSERT INTO t VALUES (1, 'x'), (2, 'y'), (3, 'y');"))


@pytest.mark.parametrize("workers", [0, 2], ids=["in-process", "2-workers"])
def test_validity_check_gives_the_error_text_and_refuses_writes(tiny, workers):
    before = _digest(tiny)
    with Judge("bird", Limits(timeout=2), workers=workers) as judge:
        bad, good, drop, empty, runaway = judge.check(tiny, ["SELECT nope FROM t", "SELECT a FROM t", "DROP TABLE t", "", RUNAWAY])
        assert judge.last_stats["checked"] == 5 and judge.last_stats["invalid"] == 3
    assert (bad.ok, bad.error, bad.status) == (False, "no such column: nope", Status.SYNTAX_ERROR)
    ok, error = good  # unpacks as (ok, error)
    assert ok and error == ""
    assert not drop.ok and drop.status is Status.FORBIDDEN and drop.error.startswith("refused, evaluation is read-only: DROP")
    assert not empty.ok and empty.status is None
    assert runaway.ok  # compiled, not run: it would never finish
    assert _digest(tiny) == before
    assert sqlite3.connect(tiny).execute("SELECT count(*) FROM t").fetchone() == (3,)


def _digest(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_judge_many_validate_executes_only_what_compiles(tiny):
    with Judge("bird", Limits(timeout=2), workers=0) as judge:
        j = judge.judge_many([_item(tiny, ["SELECT b FROM t", "SELEC 1", "SELECT nope FROM t", "SELECT b FROM t WHERE a > 0"])],
                             validate=True)[0]  # fmt: skip
        assert judge.last_stats["executed"] == 2 and judge.last_stats["invalid"] == 2  # the two invalid were not executed
    assert j.invalid == [1, 2] and j.groups == [[0, 3]] and j.failed == [1, 2]
    assert j.candidates[2].reason == "syntax_error: no such column: nope"


def _item(target, candidates):
    from sqlwright.judge import Item

    return Item(target, None, candidates)


# -- selection ------------------------------------------------------------------------------
def test_first_valid_skips_what_does_not_compile_or_run(tiny):
    sqls = ["SELECT nope FROM t", RUNAWAY, "SELECT a FROM t WHERE a > 9", "SELECT a FROM t"]
    with Judge("bird", Limits(timeout=0.3), workers=0) as judge:
        c = choose(judge, tiny, sqls, "first-valid")
        assert c.index == 2 and c.result.ok and c.result.rows == ()  # compiles and runs (0 rows is running)
        assert c.selection == {"chosen": 2, "valid": [False, True, True, True], "tried": [1, 2],
                               "statuses": ["syntax_error", "timeout", "ok", None]}  # the last was never executed  # fmt: skip
        none_runs = choose(judge, tiny, ["SELEC 1", RUNAWAY], "first-valid")
        assert none_runs.index == 1 and none_runs.result.status is Status.TIMEOUT  # the first that compiles
        nothing = choose(judge, tiny, ["SELEC 1", "SELECT nope FROM t"], "first-valid")
        assert nothing.index == 0 and nothing.result.status is Status.SYNTAX_ERROR


def test_vote_valid_ignores_failing_candidates_and_saves_groups(tiny):
    sqls = ["SELECT nope FROM t", "SELECT b FROM t WHERE a = 1", "SELECT nope FROM t", "SELECT nope FROM t",
            "SELECT b FROM t WHERE a > 1", "SELECT DISTINCT b FROM t WHERE a >= 2"]  # fmt: skip
    with Judge("bird", Limits(timeout=0.3), workers=0) as judge:
        c = choose(judge, tiny, sqls, "vote-valid")
        assert c.index == 4 and c.result.rows == (("y",), ("y",))
        assert c.vote["groups"] == [[4, 5], [1]] and c.vote["invalid"] == [0, 2, 3] and c.vote["comparator"] == "bird"
        assert c.selection["valid"] == [False, True, False, False, True, True]
        # none runs: plain vote keeps the first sample, vote-valid the first that compiles
        assert choose(judge, tiny, ["SELEC 1", RUNAWAY], "vote").index == 0
        assert choose(judge, tiny, ["SELEC 1", RUNAWAY], "vote-valid").index == 1


class Samples:
    """An in-process backend: per question, the samples of each round (``script``); records
    every generate call's request ids (a round is one call) and the messages it saw."""

    name = "samples"
    script: dict = {}
    calls: list = []
    messages: dict = {}

    def __init__(self, cfg):
        self.cfg = cfg

    def generate(self, requests, config):
        Samples.calls.append([r.id for r in requests])
        for r in requests:
            Samples.messages[r.id] = r.messages
            rounds = Samples.script[question_of(r.messages)]
            k = sum(m["role"] == "assistant" for m in r.messages)  # the round
            texts = [f"```sql\n{s}\n```" for s in rounds[min(k, len(rounds) - 1)]][: config.n]
            yield Completion(r.id, texts, prompt_tokens=4, completion_tokens=3, latency=0.01)

    def close(self):
        pass


@pytest.fixture
def samples(monkeypatch):
    monkeypatch.setitem(backend_mod.BACKENDS, "samples", f"{__name__}:Samples")
    Samples.calls, Samples.messages = [], {}
    Samples.script = {q: [[bad_sql(q), GOLD[q], GOLD[q]]] for q in GOLD}
    return Samples


def local(dataset, out, **kw) -> PredictConfig:
    return PredictConfig(BackendConfig(model="x", backend="samples"), str(out), data=str(dataset), progress=False, **kw)


@pytest.mark.parametrize("how", ["vote", "first-valid", "vote-valid"])
def test_select_in_predict(samples, dataset, bird_dir, tmp_path, how):
    out = tmp_path / "p.jsonl"
    s = predict(local(dataset, out, generation=GenerationConfig(n=3, temperature=0.8), select=how))
    recs = lines(out)
    assert all(r["selected_by"] == how and r["selection"]["chosen"] == 1 and r["sql"] == r["sqls"][1] for r in recs)
    assert all(r["exec_status"] == "ok" and r["valid"] is True and "rounds" not in r for r in recs)
    if how != "first-valid":
        assert all(r["vote"]["groups"] == [[1, 2]] for r in recs)
    if how == "vote-valid":
        assert all(r["vote"]["invalid"] == [0] for r in recs)
    if how == "first-valid":
        assert all(r["selection"]["tried"] == [1] for r in recs)  # the third sample was not executed
    assert s["guided"]["selected"] == 6 and s["guided"]["selected_other"] == 6 and s["guided"]["selected_by"] == {how: 6}
    run = evaluate(EvalConfig(str(out), benchmark=str(bird_dir), out=str(tmp_path / "r"), progress=False, workers=0))
    assert run.summary["ex"] == 100.0 and run.summary["guided"]["selected_by"] == {how: 6}


def test_vote_execution_is_select_vote(samples, dataset, tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    gen = GenerationConfig(n=3, temperature=0.8)
    predict(local(dataset, a, generation=gen, vote="execution"))
    predict(local(dataset, b, generation=gen, select="vote"))
    strip = lambda r: {k: v for k, v in r.items() if k != "latency"}  # noqa: E731
    assert [strip(r) for r in lines(a)] == [strip(r) for r in lines(b)]


def test_select_and_refine_together_refine_the_selected_candidate(samples, dataset, tmp_path):
    samples.script = {q: [[bad_sql(q)] * 2, [bad_sql(q), GOLD[q]]] for q in GOLD}  # round 0: nothing valid
    out = tmp_path / "p.jsonl"
    s = predict(local(dataset, out, generation=GenerationConfig(n=2, temperature=0.8), select="first-valid", refine=2))
    assert samples.calls == [IDS, IDS]  # every question in each round, one call per round (hf batches it)
    for r in lines(out):
        assert r["selected_by"] == "first-valid" and r["refined_rounds"] == 1 and r["sql"] == GOLD[question_of(samples.messages[r["id"]])]
        assert [x["status"] for x in r["rounds"]] == ["syntax_error", "ok"] and r["rounds"][1]["chosen"] == 1
        assert r["exec_status_before"] == "syntax_error" and r["exec_status"] == "ok"
        assert r["completion_tokens"] == 6 and r["prompt_tokens"] == 8  # both rounds counted
    assert s["guided"]["refined"] == 6 and s["guided"]["failed_to_run_before"] == 6 and s["guided"]["failed_to_run_after"] == 0


def test_only_the_questions_needing_a_round_are_asked_again(samples, dataset, tmp_path):
    q = BIRD_QUESTIONS[2][2]
    samples.script = {k: [[GOLD[k]]] for k in GOLD} | {q: [["SELECT nope FROM schools"], ["SELECT nope FROM schools"], [GOLD[q]]]}
    out = tmp_path / "p.jsonl"
    predict(local(dataset, out, refine=3))
    assert samples.calls == [IDS, ["2"], ["2"]]
    recs = by_id(out)
    assert recs["2"]["refined_rounds"] == 2 and recs["2"]["sql"] == GOLD[q]
    assert all(recs[i]["refined_rounds"] == 0 and len(recs[i]["rounds"]) == 1 for i in IDS if i != "2")
    convo = samples.messages["2"]  # the last round's conversation: two answers, two observations
    assert [m["role"] for m in convo] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert convo[3]["content"] == observation(_error("no such column: nope")) == convo[5]["content"]


def _error(text):
    from sqlwright.types import ExecResult

    return ExecResult(Status.SYNTAX_ERROR, error=text)


def test_refine_until(samples, dataset, tmp_path):
    q = EMPTY_FIRST
    samples.script = {k: [[GOLD[k]]] for k in GOLD} | {q: [["SELECT name FROM schools WHERE rating = 5"], [GOLD[q]]]}
    rows, ok, same = (tmp_path / f"{n}.jsonl" for n in ("rows", "ok", "same"))
    predict(local(dataset, rows, refine=2))
    predict(local(dataset, ok, refine=2, refine_until="ok"))
    predict(local(dataset, same, refine=2, refine_until="unchanged"))
    assert by_id(rows)["1"]["refined_rounds"] == 1 and "returned 0 rows" in by_id(rows)["1"]["rounds"][0]["observation"]
    assert by_id(ok)["1"]["refined_rounds"] == 0 and by_id(ok)["1"]["exec_rows"] == 0  # it ran: accepted
    same_recs = by_id(same)  # every result goes back; it stops when the model repeats its SQL
    assert same_recs["0"]["refined_rounds"] == 1 and same_recs["1"]["refined_rounds"] == 2
    shown = samples.messages["0"][3]["content"]
    assert "returned 1 row:\nCOUNT(*)\n2" in shown


# -- self-correction against an OpenAI-compatible server -------------------------------------
def test_refine_revises_after_an_error_and_stops_on_success(server, dataset, bird_dir, tmp_path):
    out = tmp_path / "p.jsonl"
    s = predict(PredictConfig(api(server), str(out), data=str(dataset), progress=False, refine=2))
    recs = by_id(out)
    assert sorted(recs) == sorted(IDS)
    for i, q in zip(IDS, GOLD, strict=True):
        r = recs[i]
        if q == STUBBORN:  # never fixed: K rounds, then the last answer
            assert r["refined_rounds"] == 2 and [x["status"] for x in r["rounds"]] == ["syntax_error"] * 3
            assert r["exec_status"] == "syntax_error" and r["valid"] is False
            continue
        assert r["refined_rounds"] == 1 and r["sql"] == GOLD[q] and r["exec_status"] == "ok" and r["valid"] is True
        first, second = r["rounds"]
        assert second == {"round": 1, "sql": GOLD[q], "raw": f"Here it is:\n```sql\n{GOLD[q]};\n```", "status": "ok",
                          "rows": second["rows"], "error": "", "observation": None} and second["rows"] > 0  # fmt: skip
        if q == EMPTY_FIRST:
            assert (first["status"], first["rows"]) == ("ok", 0) and "returned 0 rows" in first["observation"]
        else:
            assert (first["status"], first["error"]) == ("syntax_error", "no such column: nope")
            assert first["sql"] == bad_sql(q) and "no such column: nope" in first["observation"]
    # what the server saw in the second round: its own answer, then the observation with the error text
    revisions = [b["messages"] for b in server.bodies if len(b["messages"]) > 2]
    assert len(server.bodies) == 6 + 6 + 1 and len(revisions) == 7
    m = next(m for m in revisions if question_of(m) == BIRD_QUESTIONS[0][2])
    assert [x["role"] for x in m] == ["system", "user", "assistant", "user"]
    assert "SELECT nope FROM schools" in m[2]["content"] and m[3]["content"] == observation(_error("no such column: nope"))
    g = s["guided"]
    assert (g["refined"], g["rounds"], g["failed_to_run_before"], g["failed_to_run_after"], g["empty_before"]) == (6, 7, 5, 1, 1)

    run = evaluate(EvalConfig(str(out), benchmark=str(bird_dir), out=str(tmp_path / "r"), progress=False, workers=0))
    assert run.summary["correct"] == 5
    assert run.summary["guided"] == {"questions": 6, "constrained": 0, "grammar_ok": 0, "refined": 6, "rounds": 7, "refined_correct": 5, "selected": 0,
                                     "selected_by": {}, "selected_other": 0, "valid": 5, "failed_to_run_before": 5, "failed_to_run_after": 1,
                                     "empty_before": 1, "empty_after": 0}  # fmt: skip
    examples = {r["id"]: r for r in lines(tmp_path / "r" / "examples.jsonl")}
    assert examples["0"]["refined_rounds"] == 1 and examples["0"]["exec_status_before"] == "syntax_error"
    assert [x["status"] for x in examples["0"]["rounds"]] == ["syntax_error", "ok"] and "observation" not in examples["0"]["rounds"][0]
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["guided"]["rounds"] == 7

    # the report, compared with the first answers alone
    plain = tmp_path / "plain.jsonl"
    predict(PredictConfig(api(server), str(plain), data=str(dataset), progress=False))
    evaluate(EvalConfig(str(plain), benchmark=str(bird_dir), out=str(tmp_path / "base"), progress=False, workers=0))
    assert "guided" not in json.loads((tmp_path / "base" / "summary.json").read_text())
    result = write_report(ReportConfig(str(tmp_path / "r"), compare=str(tmp_path / "base")))
    assert result.fixed == 5
    page = result.out.read_text()
    assert '<section id="guided"><h2>Execution-guided inference</h2>' in page
    assert "5 of the 5 questions wrong → right were revised" in page
    assert "revised 1× (syntax_error → ok)" in page and "revised 2× (syntax_error → syntax_error → syntax_error)" in page
    assert '<td>failed to run: first answer</td><td class="n">5</td><td class="n">–</td>' in page
    assert "Execution-guided" not in write_report(ReportConfig(str(tmp_path / "base"), out=str(tmp_path / "b.html"))).out.read_text()


def test_killed_refining_run_loses_nothing_finished(dataset, tmp_path):
    pytest.importorskip("openai")
    srv = TeacherServer(scripted)
    srv.delay = 0.1
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    out = tmp_path / "p.jsonl"
    cmd = [sys.executable, "-m", "sqlwright", "predict", "-m", "stub", "-b", "openai", "--base-url", srv.url,
           "--api-key-env", "SQLWRIGHT_TEST_NO_KEY", "--concurrency", "1", "--data", str(dataset), "-o", str(out),
           "--refine", "2", "--no-progress"]  # fmt: skip

    def finished(r: dict) -> bool:  # all its rounds are in the record
        last = r["rounds"][-1]
        return len(r["rounds"]) == r["refined_rounds"] + 1 and (last["status"] == "ok" and last["rows"] or r["refined_rounds"] == 2)

    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 2):
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        before = []
        for line in out.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):  # killed mid-line: not finished
                before.append(json.loads(line))
        assert 2 <= len(before) < 6 and all(finished(r) for r in before)  # STUBBORN needs a third round: never done yet
        done = subprocess.run(cmd, timeout=120, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        after = lines(out)
        assert sorted(r["id"] for r in after) == sorted(IDS) and all(finished(r) for r in after)
        assert all(r in after for r in before)  # what was finished is kept as it was
        assert "refined in" in done.stdout
    finally:
        srv.shutdown()
        srv.server_close()


def test_refine_with_the_hf_backend_batches_each_round(dataset, tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    from helpers_tiny_model import make_tiny_model
    from sqlwright.infer.hf import HFBackend

    model = make_tiny_model(tmp_path / "tiny")  # random weights: its SQL never compiles
    calls = []
    generate = HFBackend.generate

    def spy(self, requests, config):
        calls.append([len(r.messages) for r in requests])
        yield from generate(self, requests, config)

    monkeypatch.setattr(HFBackend, "generate", spy)
    out = tmp_path / "p.jsonl"
    predict(PredictConfig(BackendConfig(model=str(model), device="cpu", batch_size=8), str(out), data=str(dataset),
                          progress=False, refine=1, generation=GenerationConfig(max_new_tokens=6)))  # fmt: skip
    assert calls == [[2] * 6, [4] * 6]  # one batch per round; the second with the answer and the observation
    recs = lines(out)
    assert len(recs) == 6 and all(r["refined_rounds"] == 1 and r["exec_status"] != "ok" for r in recs)
    assert all(r["rounds"][0]["observation"].startswith("Executing your SQL on the database") for r in recs)


# -- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["--refine", "-1"], "--refine must be 0 (no self-correction) or more rounds, not -1"),
    (["--select", "vote"], "--select vote chooses among samples: pass --n 4 or more"),
    (["--select", "first-valid", "--n", "1"], "--select first-valid chooses among samples: pass --n 4 or more"),
    (["--select", "firstvalid", "--n", "4"], "--select must be one of vote, first-valid, vote-valid, not 'firstvalid'; "
                                              "did you mean 'first-valid'?"),
    (["--refine", "1", "--refine-until", "never"], "--refine-until must be one of rows, ok, unchanged, not 'never'"),
    (["--vote", "execution", "--select", "first-valid", "--n", "4"], "--vote execution is --select vote; drop --vote to --select first-valid"),
])  # fmt: skip
def test_bad_input_is_one_line(samples, dataset, tmp_path, capsys, args, message):
    out = tmp_path / "p.jsonl"
    assert main(["predict", "-m", "x", "-b", "samples", "--data", str(dataset), "-o", str(out), "--no-progress", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith("error: "), err
    assert samples.calls == [] and not out.exists()


def test_cli_flags_reach_the_config(samples, dataset, tmp_path, capsys):
    out = tmp_path / "p.jsonl"
    argv = ["predict", "-m", "x", "-b", "samples", "--data", str(dataset), "-o", str(out), "--no-progress",
            "--n", "3", "--temperature", "0.7", "--select", "vote-valid", "--refine", "1", "--refine-until", "ok"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "execution-guided: 6 selected (vote-valid 6), 0 refined in 0 rounds" in printed
    assert all(r["selected_by"] == "vote-valid" and r["refined_rounds"] == 0 for r in lines(out))
