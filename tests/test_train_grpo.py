"""`sqlwright train grpo` on CPU with a tiny random Llama and tiny SQLite databases: the rewards
score what they say (execution 1 / 0.1 / 0, a runaway query stopped at its timeout, destructive
SQL refused with every database byte unchanged), a reward never raises, bad configs are reported
together before a model loads, a few GRPO steps run and log what a user watches, the policy moves
toward the reward, it starts from an adapter, and a run killed with -9 resumes from its checkpoint."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")
pytest.importorskip("peft")

from conftest import make_db  # noqa: E402
from helpers_tiny_model import make_tiny_model  # noqa: E402
from sqlwright.cli import main  # noqa: E402
from sqlwright.config import load_config  # noqa: E402
from sqlwright.judge import Judge  # noqa: E402
from sqlwright.train import rewards as R  # noqa: E402
from sqlwright.train.grpo import grpo  # noqa: E402
from sqlwright.train.grpo_config import GRPOTrainConfig  # noqa: E402
from sqlwright.types import Limits  # noqa: E402

DDL = """
CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, city TEXT);
INSERT INTO t VALUES (1, 'a', 'x'), (2, 'b', 'x'), (3, 'c', 'y');
"""
RUNAWAY = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT COUNT(*) FROM r"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def db(tmp_path) -> Path:
    return make_db(tmp_path / "t" / "t.sqlite", DDL)


def config(tiny: Path, data: Path, out: Path, **kw) -> GRPOTrainConfig:
    sets = {"model": str(tiny), "data": str(data), "output_dir": str(out), "split": "dev", "max_steps": 2,
            "batch_size": 4, "num_generations": 4, "max_completion_length": 12, "learning_rate": 1e-3,
            "logging_steps": 1, "save_steps": 2, "report_to": [], "precision": "fp32",
            "execution": {"workers": 0, "timeout": 2.0}, **kw}
    return load_config(GRPOTrainConfig, None, [f"{k}={json.dumps(v)}" for k, v in sets.items()])


def run_reward(name: str, texts: list[str], target: str = "", gold: str = "", judge=None, **ctx) -> tuple[list[float], list[str]]:
    fn = R.TRLReward(R.REWARDS[name], R.RewardContext(judge=judge, **ctx))
    extra, metrics = {}, {}
    scores = fn(prompts=[[]] * len(texts), completions=[[{"role": "assistant", "content": t}] for t in texts],
                target=[target] * len(texts), gold_sql=[gold] * len(texts),
                log_extra=lambda k, v: extra.setdefault(k, []).extend(v),
                log_metric=lambda k, v: metrics.setdefault(k, []).append(v))
    return scores, extra.get(f"{name}_reason", [""] * len(texts)), metrics


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- the rewards ---------------------------------------------------------------------------------
def test_execution_reward_levels_and_a_runaway_query_stopped_at_its_timeout(db):
    gold = "SELECT name FROM t WHERE city = 'x'"
    texts = ["SELECT name FROM t WHERE city = 'x'",  # correct
             "```sql\nSELECT name FROM t WHERE city = 'y'\n```",  # runs, differs
             "SELECT teacher FROM t",  # no such column
             "I do not know",  # no SQL that runs
             RUNAWAY]  # stopped by the timeout
    with Judge("bird", Limits(timeout=1.0), workers=1) as judge:
        start = time.monotonic()
        scores, reasons, metrics = run_reward("execution", texts, str(db), gold, judge=judge)
        took = time.monotonic() - start
    assert scores == [1.0, 0.1, 0.0, 0.0, 0.0]
    assert reasons[0] == "correct" and reasons[1].startswith("wrong")
    assert "no such column" in reasons[2]
    assert reasons[4].startswith("timeout")
    assert took < 30  # the runaway did not run on
    assert metrics["execution/executes"] == [pytest.approx(2 / 5)]
    assert metrics["execution/correct"] == [pytest.approx(1 / 5)]


def test_execution_levels_are_configurable(db):
    with Judge("bird", Limits(timeout=2.0), workers=0) as judge:
        scores, _, _ = run_reward("execution", ["SELECT 1", "SELECT id FROM t", "SELECT nope FROM t"], str(db),
                                  "SELECT id FROM t", judge=judge, levels=R.Levels(correct=2.0, executes=0.5, fails=-1.0))
    assert scores == [0.5, 2.0, -1.0]


def test_destructive_rollout_sql_changes_no_byte(db):
    before = digest(db)
    texts = ["DROP TABLE t", "DELETE FROM t", "UPDATE t SET name = 'z'", "INSERT INTO t VALUES (9, 'q', 'q')",
             "CREATE TABLE u (a)", "PRAGMA journal_mode = DELETE", "ATTACH DATABASE 'evil.db' AS e",
             "SELECT 1; DROP TABLE t"]
    with Judge("bird", Limits(timeout=2.0), workers=1) as judge:
        scores, reasons, _ = run_reward("execution", texts, str(db), "SELECT id FROM t", judge=judge)
    assert scores[:7] == [0.0] * 7
    assert digest(db) == before
    assert not (db.parent / "evil.db").exists()


def test_a_reward_never_raises_it_scores_zero_with_the_reason():
    scores, reasons, _ = run_reward("execution", ["SELECT 1", "SELECT 2"], "x.sqlite", "SELECT 1", judge=None)
    assert scores == [0.0, 0.0]
    assert all(r.startswith("reward failed: AttributeError") for r in reasons)


def test_format_reward_checks_the_answer_shape():
    texts = ["SELECT a FROM t", "```sql\nSELECT a FROM t\n```", "The answer is SELECT a FROM t, I think.",
             "SELECT a FROM t\nThis selects a.", ""]
    assert run_reward("format", texts)[0] == [1.0, 1.0, 0.0, 0.0, 0.0]
    cot = ["First find t's rows.\n```sql\nSELECT a FROM t\n```", "```sql\nSELECT a FROM t\n```",
           "Reasoning.\n```sql\nSELECT a FROM t\n```\nDone."]
    assert run_reward("format", cot, answer="reasoning-sql")[0] == [1.0, 0.0, 0.0]


def test_syntax_reward_parses_in_the_dialect():
    scores, reasons, _ = run_reward("syntax", ["SELECT a FROM t WHERE b = 1", "SELECT FROM WHERE (", "no sql here", "DROP TABLE t"])
    assert scores == [1.0, 0.0, 0.0, 0.0]
    assert reasons[1].startswith("does not parse")


def test_ngram_reward_is_overlap_with_the_gold():
    scores, _, _ = run_reward("ngram", ["SELECT a FROM t", "SELECT a FROM u", "DELETE"], gold="SELECT a FROM t")
    assert scores[0] == pytest.approx(1.0) and 0 < scores[1] < 1 and scores[2] == 0.0


def test_every_reward_has_a_docstring():
    assert set(R.REWARDS) >= {"execution", "format", "syntax", "ngram"}
    assert all(r.summary for r in R.REWARDS.values())


# -- the config ----------------------------------------------------------------------------------
def test_bad_config_reports_every_problem_before_a_model_loads(dataset, tmp_path, capsys):
    code = main(["train", "grpo", "--data", str(dataset), "--output-dir", str(tmp_path / "o"), "--model", "no/such-model",
                 "--set", "rewards=[execution, formt]", "--set", "reward_weights=[1.0]",
                 "--set", "num_generations=3", "--set", "batch_size=4", "--set", "use_vllm=true", "--set", "split=dev"])
    err = capsys.readouterr().err
    assert code == 2
    assert "unknown reward 'formt'" in err and "did you mean 'format'" in err
    assert "reward_weights: 1 weights for 2 rewards" in err
    assert "num_generations 3 does not divide" in err
    assert "use_vllm needs a CUDA GPU" in err
    assert "cannot load" not in err  # nothing loaded


# -- training ------------------------------------------------------------------------------------
def test_a_few_steps_run_and_log_what_a_user_watches(tiny, dataset, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "grpo", "--config", _yaml(tmp_path, config(tiny, dataset, out, rewards=["execution", "format", "syntax"],
                                                                     reward_weights=[3.0, 1.0, 1.0],
                                                                     dev_eval={"every": 2, "split": "dev", "questions": 2,
                                                                               "max_new_tokens": 8}))]) == 0
    for name in ("adapter_model.safetensors", "prompt.json", "sqlwright_grpo.yaml", "train_summary.json", "reward.png", "tokenizer.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["global_step"] == 2 and summary["rewards"] == ["execution", "format", "syntax"]
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    logged = set().union(*state["log_history"])
    assert {"reward", "rewards/execution/mean", "rewards/format/mean", "rewards/syntax/mean", "execution/executes",
            "execution/correct", "completions/mean_length", "reward_seconds/execution", "dev_execution_accuracy"} <= logged
    assert summary["dev_execution_accuracy"] and summary["dev_execution_accuracy"][-1][0] == 2
    assert summary["reward_seconds"] > 0 and summary["reward_share_of_time"] < 1


def test_the_policy_moves_toward_the_reward(tiny, dataset, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny)
    planted, planted_share = planted_reward(len(tok))

    def p_planted(model) -> float:
        from sqlwright.train.data import read_split, to_conversation

        probs = []
        for r in read_split(dataset, "dev"):
            ids = tok.apply_chat_template(to_conversation(r)["prompt"], add_generation_prompt=True, return_tensors="pt")
            ids = ids["input_ids"] if hasattr(ids, "keys") else ids
            with torch.no_grad():
                probs.append(torch.softmax(model(ids).logits[0, -1].float(), -1)[planted].sum().item())
        return sum(probs) / len(probs)

    before = p_planted(AutoModelForCausalLM.from_pretrained(tiny))
    r = grpo(config(tiny, dataset, tmp_path / "run", rewards=["planted_share"], max_steps=16, learning_rate=5e-3,
                    batch_size=8, num_generations=8, max_completion_length=2,
                    beta=0.0, temperature=1.0, mode="full", drop_empty_gold=False),
             extra_rewards={"planted_share": planted_share})
    after = p_planted(r.trainer.model)
    assert after > before + 0.1, (before, after)
    rewards = [v for _, v in r.reward]
    assert sum(rewards[-3:]) / 3 > sum(rewards[:3]) / 3


def planted_reward(vocab: int):
    """(the planted tokens, a scripted reward: 1 when a completion opens with one of them)."""
    planted = torch.zeros(vocab, dtype=torch.bool)
    planted[: vocab // 2] = True  # the first half of the vocabulary

    def planted_share(completion_ids, **kw):
        return [float(bool(ids) and bool(planted[ids[0]])) for ids in completion_ids]

    return planted, planted_share


def test_starts_from_an_adapter_and_trains_it_on(tiny, dataset, tmp_path):
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sqlwright.prompts.spec import PromptSpec

    adapter = tmp_path / "sft"
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny), LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    model.save_pretrained(adapter)
    PromptSpec.load(dataset).save(adapter / "prompt.json")
    start = load_file(adapter / "adapter_model.safetensors")
    out = tmp_path / "run"
    _, reward = planted_reward(len(AutoTokenizer.from_pretrained(tiny)))  # random weights: execution would reward nothing
    grpo(config(adapter, dataset, out, learning_rate=5e-2, rewards=["planted"], drop_empty_gold=False), extra_rewards={"planted": reward})
    trained = load_file(out / "adapter_model.safetensors")
    assert set(trained) == set(start)  # the same adapter, trained on
    assert any(not torch.equal(trained[k], start[k]) for k in start)
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny.resolve())


def test_resume_after_kill_9_continues_from_the_last_checkpoint(tiny, dataset, tmp_path):
    out = tmp_path / "run"
    cfg = _yaml(tmp_path, config(tiny, dataset, out, max_steps=40, save_steps=2, save_total_limit=None))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "sqlwright", "train", "grpo", "--config", cfg],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not (out / "checkpoint-4" / "trainer_state.json").is_file():
            assert proc.poll() is None and time.monotonic() < deadline, "training ended or hung before checkpoint-4"
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done = sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*") if (p / "trainer_state.json").is_file())
    assert done and done[-1] < 40
    r = grpo(config(tiny, dataset, out, max_steps=done[-1] + 2, save_steps=2, save_total_limit=None))
    assert r.resumed_from is not None and r.resumed_from.endswith(f"checkpoint-{done[-1]}")
    assert r.global_step == done[-1] + 2


def _yaml(tmp_path: Path, cfg: GRPOTrainConfig) -> str:
    import yaml

    from sqlwright.config import to_dict

    path = tmp_path / "grpo.yaml"
    path.write_text(yaml.safe_dump(to_dict(cfg)))
    return str(path)


@pytest.mark.parametrize("path", sorted((Path(__file__).parent.parent / "configs" / "grpo").glob("*.yaml")), ids=lambda p: p.name)
def test_grpo_recipes_load_with_known_keys(path):
    import yaml

    cfg = load_config(GRPOTrainConfig, str(path), [])
    assert cfg.rewards and all(r in R.REWARDS for r in cfg.rewards)
    assert (cfg.batch_size * cfg.grad_accum) % cfg.num_generations == 0
    assert set(yaml.safe_load(path.read_text())) <= {f for f in GRPOTrainConfig.__dataclass_fields__}
    assert f"sqlwright train grpo --config configs/grpo/{path.name}" in path.read_text()
