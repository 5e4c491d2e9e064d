"""`sqlwright predict`: prompts from prompt.json, resumable output, voting, clear errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import BIRD_QUESTIONS, SHOP_DDL, make_db
from sqlwright.cli import main
from sqlwright.eval.evaluate import EvalConfig, evaluate
from sqlwright.infer import backend as backend_mod
from sqlwright.infer.backend import BackendConfig, Completion, GenerationConfig
from sqlwright.judge import Judge
from sqlwright.predict import PredictConfig, predict
from sqlwright.types import Limits

GOLD = {q[2]: q[4] for q in BIRD_QUESTIONS}  # question text -> gold SQL


class EchoBackend:
    """Answers each question with its gold SQL (found in the prompt), in a ```sql block.
    ``fail_after`` raises KeyboardInterrupt after that many results, like a Ctrl-C;
    ``fail_ids`` answer with a failure record (``Completion.error``), like a server that is down."""

    name = "echo"
    seen: list = []
    configs: list = []
    fail_after: int | None = None
    fail_ids: set = set()

    def __init__(self, cfg):
        self.cfg = cfg
        EchoBackend.configs.append(cfg)

    def generate(self, requests, config):
        for k, r in enumerate(requests):
            if self.fail_after is not None and k >= self.fail_after:
                raise KeyboardInterrupt
            EchoBackend.seen.append(r.id)
            if r.id in self.fail_ids:
                yield Completion(r.id, [], latency=0.01, error="connection error: ConnectError: [Errno 111] Connection refused")
                continue
            question = r.messages[-1]["content"].rsplit("-- Question: ", 1)[-1]
            sql = GOLD.get(question, "SELECT 1")
            texts = [f"Here you go:\n```sql\n{sql};\n```"] * config.n
            yield Completion(r.id, texts, prompt_tokens=10, completion_tokens=5 * config.n, latency=0.01)

    def close(self):
        pass


@pytest.fixture
def echo(monkeypatch):
    monkeypatch.setitem(backend_mod.BACKENDS, "echo", f"{__name__}:EchoBackend")
    EchoBackend.seen, EchoBackend.configs, EchoBackend.fail_after, EchoBackend.fail_ids = [], [], None, set()
    return EchoBackend


def cfg(dataset, out, **kw):
    return PredictConfig(BackendConfig(model="x", backend="echo"), str(out), data=str(dataset), progress=False, **kw)


def lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_predictions_score_with_eval(echo, dataset, bird_dir, tmp_path):
    out = tmp_path / "preds.jsonl"
    summary = predict(cfg(dataset, out))
    assert summary["written"] == 6
    recs = lines(out)
    assert recs[0]["sql"] == GOLD[BIRD_QUESTIONS[0][2]] and recs[0]["raw"].startswith("Here you go")
    assert {"id", "db_id", "sql", "raw", "prompt_tokens", "completion_tokens", "latency"} <= set(recs[0])
    run = evaluate(EvalConfig(str(out), benchmark=str(bird_dir), out=str(tmp_path / "r"), progress=False))
    assert run.summary["ex"] == 100.0


def test_interrupted_run_resumes_without_duplicates(echo, dataset, tmp_path):
    out = tmp_path / "preds.jsonl"
    echo.fail_after = 4
    with pytest.raises(KeyboardInterrupt):
        predict(cfg(dataset, out))
    assert len(lines(out)) == 4
    echo.fail_after = None
    echo.seen = []
    summary = predict(cfg(dataset, out))
    assert summary["already_done"] == 4 and len(echo.seen) == 2  # only the rest was asked for
    ids = [r["id"] for r in lines(out)]
    assert sorted(ids) == sorted({str(q[0]) for q in BIRD_QUESTIONS}) and len(ids) == 6
    assert predict(cfg(dataset, out))["written"] == 0  # nothing left to do


def test_partial_last_line_from_a_killed_process_is_redone(echo, dataset, tmp_path):
    out = tmp_path / "preds.jsonl"
    predict(cfg(dataset, out, limit=3))
    with open(out, "a") as f:
        f.write('{"id": "3", "db_id": "sch')  # killed mid-write
    predict(cfg(dataset, out))
    ids = [r["id"] for r in lines(out)]
    assert len(ids) == 6 and len(set(ids)) == 6


def test_rerun_retries_failed_predictions(echo, dataset, bird_dir, tmp_path, capsys):
    out = tmp_path / "preds.jsonl"
    ids = [str(q[0]) for q in BIRD_QUESTIONS]
    echo.fail_ids = {ids[1], ids[4]}  # the server was down for these two
    first = predict(cfg(dataset, out))
    assert first["written"] == 6 and first["errors"] == 2 and first["retried"] == 0
    assert sum("error" in r for r in lines(out)) == 2
    finished = [line for line in out.read_text().splitlines() if '"error"' not in line]

    echo.fail_ids, echo.seen = set(), []
    second = predict(cfg(dataset, out))
    assert sorted(echo.seen) == sorted([ids[1], ids[4]])  # only the failed ones were asked again
    assert second["retried"] == 2 and second["already_done"] == 4 and second["written"] == 2 and second["errors"] == 0
    recs = lines(out)
    assert sorted(r["id"] for r in recs) == sorted(ids) and not any("error" in r for r in recs)  # one line per id
    assert out.read_text().splitlines()[:4] == finished  # the finished lines kept as they were
    run = evaluate(EvalConfig(str(out), benchmark=str(bird_dir), out=str(tmp_path / "r"), progress=False))
    assert run.summary["ex"] == 100.0  # eval sees no second prediction for a retried id

    assert predict(cfg(dataset, out))["written"] == 0  # nothing failed: nothing left to do
    echo.fail_ids = {ids[0]}  # a retry that fails again stays one (failed) line, retried next time
    out.write_text(out.read_text().replace(f'"id": "{ids[0]}", ', f'"id": "{ids[0]}", "error": "HTTP 500", ', 1))
    assert main(["predict", "-m", "x", "-b", "echo", "-o", str(out), "--data", str(dataset), "--no-progress"]) == 0
    assert "1 failed before and were retried" in capsys.readouterr().out
    recs = lines(out)
    assert len(recs) == 6 and [r["id"] for r in recs if "error" in r] == [ids[0]]


@pytest.mark.parametrize("bad", ["not json", "missing key"])
def test_malformed_dataset_line_is_one_line(echo, dataset, tmp_path, capsys, bad):
    split = dataset / "dev.jsonl"
    rows = split.read_text().splitlines()
    rows[1] = rows[1][:40] if bad == "not json" else json.dumps({k: v for k, v in json.loads(rows[1]).items() if k != "db_id"})
    split.write_text("\n".join(rows) + "\n")
    assert main(["predict", "-m", "x", "-b", "echo", "-o", str(tmp_path / "p.jsonl"), "--data", str(dataset), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{split}:2: " in err[0] and "Traceback" not in err[0], err
    assert ("not valid JSON" if bad == "not json" else "not a dataset record") in err[0]
    assert not (tmp_path / "p.jsonl").exists() and echo.seen == []


def test_self_consistency_vote_by_execution(tmp_path):
    db = str(make_db(tmp_path / "shop.sqlite", SHOP_DDL))
    candidates = [
        "SELECT title FROM products WHERE stock = 0",  # lamp
        "SELECT title FROM products WHERE price > 20",  # lamp: same result, votes with 0
        "SELECT title FROM products WHERE price < 5",  # pen
        "SELECT nope FROM products",  # fails: does not vote
        "SELECT title FROM products WHERE stock > 50",  # pen
    ]
    with Judge("bird", Limits(timeout=5), workers=0) as judge:
        v = judge.judge(db, None, candidates)
        assert v.groups == [[0, 1], [2, 4]] and v.failed == [3]
        assert v.chosen == 0  # tie 2-2: the group that came first
        v2 = judge.judge(db, None, candidates[2:])
        assert v2.chosen == 0 and v2.groups == [[0, 2]]
        assert judge.judge(db, None, ["SELEC 1", "SELECT nope"]).chosen == 0  # none runs: first kept


def test_vote_groups_by_the_chosen_comparator(tmp_path):
    db = str(make_db(tmp_path / "shop.sqlite", SHOP_DDL))
    candidates = [
        "SELECT 'x' FROM products",  # one row per product: 'x' three times
        "SELECT 'x'",  # one row
        "SELECT 'x' FROM products UNION ALL SELECT 'x' FROM products",  # six rows
        "SELECT 'x' FROM products",
    ]
    with Judge("bird", Limits(timeout=5), workers=0) as judge:  # sets: all four alike
        assert judge.judge(db, None, candidates).groups == [[0, 1, 2, 3]]
    with Judge("multiset", Limits(timeout=5), workers=0) as judge:  # duplicates count
        assert judge.judge(db, None, candidates).groups == [[0, 3], [1], [2]]


def test_predict_vote_uses_comparator(echo, dataset, tmp_path):
    out = tmp_path / "preds.jsonl"
    predict(cfg(dataset, out, generation=GenerationConfig(n=3, temperature=0.8), vote="execution", comparator="multiset"))
    assert lines(out)[0]["vote"]["comparator"] == "multiset"


def test_vote_in_predict_records_samples(echo, dataset, tmp_path):
    out = tmp_path / "preds.jsonl"
    predict(cfg(dataset, out, generation=GenerationConfig(n=3, temperature=0.8), vote="execution"))
    rec = lines(out)[0]
    assert len(rec["samples"]) == 3 and len(rec["sqls"]) == 3
    assert rec["vote"]["chosen"] == 0 and rec["vote"]["groups"] == [[0, 1, 2]]


def test_moved_dataset_votes_on_the_databases_given_by_db_root(echo, dataset, bird_dir, tmp_path, capsys):
    moved, dbs = tmp_path / "cluster" / "ds", tmp_path / "cluster" / "dbs"
    shutil.copytree(dataset, moved)
    shutil.rmtree(dataset)
    old = (bird_dir / "dev_databases").resolve()
    shutil.move(old, dbs)  # the databases are elsewhere on this machine
    out = tmp_path / "preds.jsonl"
    vote = ["predict", "-m", "x", "-b", "echo", "--data", str(moved), "-o", str(out), "--n", "3", "--temperature", "0.8",
            "--vote", "execution", "--no-progress"]  # fmt: skip
    assert main(vote) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: schools: database not found at {old}/schools/schools.sqlite (and 1 more of the 2 databases); "
        "pass --db-root DIR (the folder holding schools/schools.sqlite)"]
    assert echo.configs == [] and not out.exists()  # said before any model loaded
    assert main([*vote, "--db-root", str(dbs)]) == 0
    recs = lines(out)
    assert len(recs) == 6 and all(r["vote"]["groups"] == [[0, 1, 2]] and r["vote"]["failed"] == [] for r in recs)  # executed
    assert main(["predict", "-m", "x", "-b", "echo", "--data", str(moved), "-o", str(tmp_path / "plain.jsonl"),
                 "--no-progress"]) == 0  # no voting: no database needed  # fmt: skip


def test_vote_on_a_database_url_is_refused_before_the_model_loads(echo, dataset, tmp_path, capsys):
    split = dataset / "dev.jsonl"
    split.write_text("".join(json.dumps({**json.loads(x), "db_path": "postgresql://u:pw@h/db"}) + "\n"
                             for x in split.read_text().splitlines()))  # fmt: skip
    out = tmp_path / "preds.jsonl"
    assert main(["predict", "-m", "x", "-b", "echo", "--data", str(dataset), "-o", str(out), "--n", "2",
                 "--temperature", "0.8", "--vote", "execution", "--no-progress"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1  # no server named h: refused in one line, password masked
    assert err.startswith("error: postgresql://u:***@h/db: cannot connect: ")
    assert "pw" not in err and echo.configs == [] and not out.exists()


def test_bad_input(echo, dataset, tmp_path, capsys):
    (tmp_path / "nodata").mkdir()
    assert main(["predict", "-m", "x", "-b", "echo", "-o", str(tmp_path / "p.jsonl"), "--data", str(tmp_path / "nodata")]) == 2
    assert "no prompt.json; build the dataset with `sqlwright data build`" in capsys.readouterr().err
    assert main(["predict", "-m", "x", "-b", "gpt", "-o", str(tmp_path / "p.jsonl"), "--data", str(dataset)]) == 2
    assert "unknown backend 'gpt'" in capsys.readouterr().err
    assert main(["predict", "-m", "x", "-b", "echo", "-o", str(tmp_path / "p.jsonl"), "--data", str(dataset), "--vote", "execution"]) == 2
    assert "--n 8" in capsys.readouterr().err
    assert main(["predict", "-m", "x", "-b", "echo", "-o", str(tmp_path / "p.jsonl"), "--data", str(dataset), "--split", "test"]) == 2
    assert "no split 'test' (has: dev)" in capsys.readouterr().err


def test_cli_backend_options_reach_the_backend(echo, dataset, tmp_path):
    base = ["predict", "-m", "x", "-b", "echo", "--data", str(dataset)]
    assert main([*base, "-o", str(tmp_path / "a.jsonl"), "--batch-size", "4"]) == 0
    assert main([*base, "-o", str(tmp_path / "b.jsonl"), "--no-share-prefix"]) == 0
    (on, off) = echo.configs
    assert on.share_prefix and on.batch_size == 4
    assert not off.share_prefix and off.batch_size == 8
    assert len(lines(tmp_path / "b.jsonl")) == 6


class _SlowChat(BaseHTTPRequestHandler):
    delay = 0.15

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        time.sleep(self.delay)
        content = json.dumps({
            "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "```sql\nSELECT 1\n```"}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        }).encode()  # fmt: skip
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, *args):
        pass


def test_killed_process_loses_only_in_flight_work(dataset, tmp_path):
    pytest.importorskip("openai")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowChat)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out = tmp_path / "preds.jsonl"
    cmd = [sys.executable, "-m", "sqlwright", "predict", "-m", "stub", "-b", "openai", "--base-url",
           f"http://127.0.0.1:{server.server_port}/v1", "--concurrency", "1", "--data", str(dataset),
           "-o", str(out), "--no-progress"]  # fmt: skip
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 2):
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        first = len(lines(out))
        assert 2 <= first < 6
        subprocess.run(cmd, check=True, timeout=60, capture_output=True)
        ids = [r["id"] for r in lines(out)]
        assert len(ids) == 6 and len(set(ids)) == 6
    finally:
        server.shutdown()


def test_vllm_backend_says_how_to_install_or_runs():
    from sqlwright.errors import UserError
    from sqlwright.infer.backend import load_backend

    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(UserError, match=r"pip install 'sqlwright\[vllm\]'"):
            load_backend(BackendConfig(model="smollm2-135m", backend="vllm"))
        return
    pytest.importorskip("torch").cuda.is_available() or pytest.skip("vLLM needs a GPU")
    backend = load_backend(BackendConfig(model="HuggingFaceTB/SmolLM2-135M-Instruct", backend="vllm"))
    from sqlwright.infer.backend import Request

    outs = list(backend.generate([Request("1", [{"role": "user", "content": "SELECT 1?"}])], GenerationConfig(n=2, temperature=0.7, max_new_tokens=8)))
    assert len(outs) == 1 and len(outs[0].texts) == 2


def test_constrain_gives_each_request_its_database_grammar(echo, dataset, tmp_path, monkeypatch):
    pytest.importorskip("llguidance")
    from sqlwright.infer.constrain import check_sql

    grammars = {}
    real_generate = EchoBackend.generate

    def generate(self, requests, config):
        grammars.update({r.id: r.grammar for r in requests})
        yield from real_generate(self, requests, config)

    monkeypatch.setattr(EchoBackend, "generate", generate)
    out = tmp_path / "preds.jsonl"
    s = predict(cfg(dataset, out, constrain="schema"))
    recs = lines(out)
    assert len(recs) == 6 and all(r["constrained"] == "schema" and r["grammar_ok"] for r in recs)  # gold SQL passes
    assert s["guided"]["constrained"] == 6 and s["guided"]["grammar_ok"] == 6
    by_db = {r["id"]: r["db_id"] for r in recs}
    shop = next(g for i, g in grammars.items() if by_db[i] == "shop")
    schools = next(g for i, g in grammars.items() if by_db[i] == "schools")
    assert check_sql(shop, "SELECT title FROM products") is None  # each request: its own database's names
    assert check_sql(shop, "SELECT name FROM schools") is not None and check_sql(schools, "SELECT name FROM schools") is None
    assert "constrain: schema" in (tmp_path / "preds.jsonl.config.yaml").read_text()


def test_constrain_bad_value_and_missing_database(echo, dataset, tmp_path, capsys):
    assert main(["predict", "-m", "x", "-b", "echo", "--data", str(dataset), "-o", str(tmp_path / "p.jsonl"),
                 "--constrain", "schemas", "--no-progress"]) == 2  # fmt: skip
    assert "--constrain must be one of none, grammar, schema, not 'schemas'; did you mean 'schema'?" in capsys.readouterr().err
    (tmp_path / "elsewhere").mkdir()
    assert main(["predict", "-m", "x", "-b", "echo", "--data", str(dataset), "-o", str(tmp_path / "p.jsonl"),
                 "--constrain", "schema", "--db-root", str(tmp_path / "elsewhere"), "--no-progress"]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert "database not found" in err and "--db-root" in err and "\n" not in err
    assert not EchoBackend.configs  # before any model loads
