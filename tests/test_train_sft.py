"""`sqlwright train sft` on CPU with a tiny random Llama: LoRA and full fine-tuning really train,
only the assistant's tokens are learned, packed examples stay apart, checkpoints reload and
resume, bad configs are reported at once, and dev execution accuracy is measured."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")
pytest.importorskip("peft")

from helpers_tiny_model import make_tiny_model  # noqa: E402
from sqlwright.cli import main  # noqa: E402
from sqlwright.config import load_config  # noqa: E402
from sqlwright.data.build import BuildConfig, build_dataset  # noqa: E402
from sqlwright.data.sources import SourceConfig  # noqa: E402
from sqlwright.errors import UserError  # noqa: E402
from sqlwright.prompts.spec import PromptSpec  # noqa: E402
from sqlwright.train.config import TrainConfig  # noqa: E402
from sqlwright.train.sft import sft  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def dataset(bird_dir, tmp_path) -> Path:
    """train / validation by database, from the 6-question BIRD fixture (compact schema: short prompts)."""
    out = tmp_path / "ds"
    build_dataset(BuildConfig("bird", str(out), SourceConfig(path=str(bird_dir), splits=["dev"]),
                              PromptSpec(format="cookbook", serializer="compact"), split_by="database",
                              val_fraction=0.5, progress=False))
    return out


def config(tiny: Path, data: Path, out: Path, **kw) -> TrainConfig:
    sets = {"model": str(tiny), "data": str(data), "output_dir": str(out), "max_steps": 6, "batch_size": 2,
            "learning_rate": 1e-2, "max_length": 512, "logging_steps": 1, "save_steps": 3, "report_to": [],
            "warmup": 0, "lr_scheduler": "constant", "plot": True, "precision": "fp32", **kw}
    return load_config(TrainConfig, None, [f"{k}={json.dumps(v)}" for k, v in sets.items()])


def snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def losses(result) -> list[float]:
    return [h["loss"] for h in result.trainer.state.log_history if "loss" in h]


def test_lora_trains_only_the_adapter_and_saves_a_predictable_model(tiny, dataset, tmp_path):
    from transformers import AutoModelForCausalLM

    base = snapshot(AutoModelForCausalLM.from_pretrained(tiny))
    out = tmp_path / "run"
    r = sft(config(tiny, dataset, out, max_steps=12, epochs=50.0))
    ls = losses(r)
    assert r.global_step == 12 and len(ls) >= 10
    assert sum(ls[-3:]) / 3 < 0.7 * sum(ls[:3]) / 3  # loss falls
    trained = snapshot(r.trainer.model)
    lora = {n: p for n, p in trained.items() if "lora_" in n}
    assert lora and all(n.endswith(".weight") for n in lora)
    assert any(not torch.equal(p, torch.zeros_like(p)) for n, p in lora.items() if "lora_B" in n)  # B left zero-init
    frozen = {n.replace("base_model.model.", "").replace(".base_layer", ""): p for n, p in trained.items() if "lora_" not in n}
    assert set(frozen) == set(base)
    assert all(torch.equal(frozen[n], base[n]) for n in base)  # the base is untouched

    # the output folder: adapter pointing at the named base, tokenizer, prompt.json, config, summary, curve
    adapter_cfg = json.loads((out / "adapter_config.json").read_text())
    assert adapter_cfg["base_model_name_or_path"] == str(tiny.resolve())
    for name in ("adapter_model.safetensors", "prompt.json", "sqlwright_train.yaml", "train_summary.json", "loss.png", "tokenizer.json"):
        assert (out / name).is_file(), name
    assert PromptSpec.load(out) == PromptSpec.load(dataset)
    ckpts = sorted(p.name for p in out.glob("checkpoint-*"))
    assert ckpts == ["checkpoint-12", "checkpoint-9"]  # every 3 steps, the last 2 kept
    for ckpt in ckpts:
        assert (out / ckpt / "prompt.json").is_file() and (out / ckpt / "adapter_config.json").is_file()
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["global_step"] == 12 and summary["train_tokens"] > 0

    # reload through the predict backend: identical logits to the model in memory
    from sqlwright.infer.backend import BackendConfig
    from sqlwright.infer.hf import HFBackend

    reloaded = HFBackend(BackendConfig(model=str(out), device="cpu", dtype="float32")).model
    ids = torch.tensor([[5, 17, 42, 99, 7, 3]])
    r.trainer.model.eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(ids).logits, r.trainer.model(ids).logits, atol=1e-5)


def test_full_fine_tuning_changes_every_weight(tiny, dataset, tmp_path):
    from transformers import AutoModelForCausalLM

    base = snapshot(AutoModelForCausalLM.from_pretrained(tiny))
    r = sft(config(tiny, dataset, tmp_path / "full", mode="full", learning_rate=1e-3, max_steps=8, epochs=50.0))
    ls = losses(r)
    assert ls[-1] < ls[0]
    trained = snapshot(r.trainer.model)
    assert set(trained) == set(base)
    changed = [n for n in base if not torch.equal(trained[n], base[n])]
    assert len(changed) == len(base)
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "full")
    ids = torch.tensor([[5, 17, 42, 99]])
    r.trainer.model.eval()
    with torch.no_grad():
        assert torch.allclose(saved(ids).logits, r.trainer.model(ids).logits, atol=1e-5)


def test_resume_continues_from_the_last_checkpoint(tiny, dataset, tmp_path):
    out = tmp_path / "run"
    first = sft(config(tiny, dataset, out, max_steps=3, epochs=50.0))
    assert first.resumed_from is None and (out / "checkpoint-3").is_dir()
    second = sft(config(tiny, dataset, out, max_steps=6, epochs=50.0))
    assert second.resumed_from and second.resumed_from.endswith("checkpoint-3")
    assert second.global_step == 6
    steps = [h["step"] for h in second.trainer.state.log_history if "loss" in h]
    assert steps[0] <= 3 and steps[-1] == 6  # the history carries on; nothing restarted at 1


def test_loss_is_on_the_assistant_tokens_only(tiny, dataset, tmp_path):
    r = sft(config(tiny, dataset, tmp_path / "run", max_steps=1, packing=False))
    trainer = r.trainer
    tok = trainer.processing_class
    batch = trainer.data_collator([trainer.train_dataset[0]])
    labels = batch["labels"][0]
    learned = tok.decode([t for t in labels.tolist() if t != -100])
    record = json.loads((dataset / "train.jsonl").read_text().splitlines()[0])
    answer = record["messages"][-1]["content"]
    assert learned.startswith(answer)  # the answer (then its end-of-turn), nothing of the prompt
    assert record["question"] not in learned
    assert "<|im_end|>" in learned  # the model learns to stop


def test_packed_examples_do_not_attend_to_each_other(tiny):
    from transformers import AutoModelForCausalLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    model = AutoModelForCausalLM.from_pretrained(tiny, attn_implementation="sdpa").eval()
    a, b = [5, 17, 42, 99, 7, 3, 11], [8, 9, 10, 64, 65]
    collate = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)
    packed = collate([{"input_ids": a + b, "seq_lengths": [len(a), len(b)]}])
    assert "attention_mask" not in packed
    inputs = {k: v for k, v in packed.items() if k != "labels"}
    with torch.no_grad():  # as trl's SFTTrainer.compute_loss calls it: the collated batch, no KV cache
        together = model(**inputs, use_cache=False).logits[0]
        alone_a = model(input_ids=torch.tensor([a])).logits[0]
        alone_b = model(input_ids=torch.tensor([b])).logits[0]
    assert torch.allclose(together[: len(a)], alone_a, atol=1e-4)
    assert torch.allclose(together[len(a):], alone_b, atol=1e-4)  # b sees nothing of a


def test_dev_execution_accuracy_rises_when_the_model_learns_the_answers(tiny, dataset, bird_dir, tmp_path):
    # train on the validation questions themselves: a memorising model must reach accuracy 1
    data = tmp_path / "memo"
    shutil.copytree(dataset, data)
    shutil.copy(data / "validation.jsonl", data / "train.jsonl")
    dbs = tmp_path / "cluster" / "dbs"  # the databases are elsewhere on this machine: db_root names them
    shutil.move(bird_dir / "dev_databases", dbs)
    r = sft(config(tiny, data, tmp_path / "run", mode="full", learning_rate=3e-3, max_steps=40, epochs=100.0,
                   logging_steps=10, save_steps=100, db_root=str(dbs), **{"dev_eval.every": 20, "dev_eval.max_new_tokens": 48}))
    acc = dict(r.dev_accuracy)
    assert set(acc) == {20, 40}
    assert acc[40] == 1.0
    logged = [h for h in r.trainer.state.log_history if "dev_execution_accuracy" in h]
    assert [h["step"] for h in logged] == [20, 40]


def test_dev_eval_finds_moved_databases_or_says_which_is_missing(tmp_path, dataset, bird_dir, capsys, monkeypatch):
    import sqlwright.train.sft as sft_module
    from sqlwright.train.config import check, dev_records

    monkeypatch.setattr(sft_module, "load_model_and_tokenizer", lambda *a: pytest.fail("loaded a model"))
    moved, dbs = tmp_path / "cluster" / "ds", tmp_path / "cluster" / "dbs"
    shutil.copytree(dataset, moved)
    old = (bird_dir / "dev_databases").resolve()
    shutil.move(old, dbs)
    db = json.loads((moved / "validation.jsonl").read_text().splitlines()[0])["db_id"]
    sets = [f"data={moved}", f"output_dir={tmp_path / 'run'}", "report_to=[]", "dev_eval.every=5", "precision=fp32"]
    assert main(["train", "sft", *[a for s in sets for a in ("--set", s)]]) == 2
    assert capsys.readouterr().err == (f"error: dev_eval: {db}: database not found at {old}/{db}/{db}.sqlite; "
                                       f"pass --db-root DIR or set db_root: DIR (the folder holding {db}/{db}.sqlite)\n")  # fmt: skip
    cfg = load_config(TrainConfig, None, [*sets, f"db_root={dbs}"])
    assert check(cfg) == []
    assert {r["db_path"] for r in dev_records(cfg)} == {str(dbs / db / f"{db}.sqlite")}


def test_dev_accuracy_counts_an_answer_without_sql_as_wrong(dataset, monkeypatch):
    from types import SimpleNamespace

    from sqlwright.data.dataset import resolve_records
    from sqlwright.infer import hf
    from sqlwright.infer.backend import Completion
    from sqlwright.judge import Judge
    from sqlwright.train.callbacks import dev_accuracy
    from sqlwright.train.data import read_split
    from sqlwright.types import Limits

    records = resolve_records(dataset, read_split(dataset, "train") + read_split(dataset, "validation"))
    assert len(records) == 6
    gold = {str(r["id"]): r["sql"] for r in records}
    empty = {str(records[0]["id"]), str(records[1]["id"])}  # an empty answer, and no answer at all

    class Canned:
        def generate(self, requests, gen):
            for r in requests:
                if r.id in empty:
                    yield Completion(r.id, [] if r.id == str(records[1]["id"]) else [""])
                else:
                    yield Completion(r.id, [f"```sql\n{gold[r.id]}\n```"])

    class Recording(Judge):
        def judge_many(self, items, **kw):
            self.items, self.judged = list(items), super().judge_many(items, **kw)
            return self.judged

    monkeypatch.setattr(hf.HFBackend, "from_loaded", classmethod(lambda cls, *a, **kw: Canned()))
    model = torch.nn.Linear(1, 1)
    model.config = SimpleNamespace(use_cache=False)
    with Recording("bird", Limits(timeout=5), workers=0) as judge:
        acc = dev_accuracy(model, object(), records, 16, 4, judge)
    assert [it.candidates for it in judge.items[:2]] == [[""], [""]]  # nothing extracted: nothing sent (not "SELECT")
    assert [(j.candidates[0].verdict, j.candidates[0].reason) for j in judge.judged[:2]] == [("no_sql", "no SQL in the answer")] * 2
    assert not any(j.candidates[0].correct for j in judge.judged[:2])
    assert all(j.candidates[0].verdict == "correct" for j in judge.judged[2:])
    assert acc == 4 / 6
    assert model.training and model.config.use_cache is False  # left as it was


def test_bad_config_reports_every_problem_before_loading_a_model(tmp_path, dataset, capsys, monkeypatch):
    other = tmp_path / "taken"
    other.mkdir()
    (other / "notes.txt").write_text("someone else's files")
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(
        f"model: /nonexistent/model\ndata: {dataset}\noutput_dir: {other}\nmode: qlora\n"
        "learning_rate: fast\nlora:\n  rank: 8\nbatch_sise: 4\nreport_to: []\n")
    import sqlwright.train.sft as sft_module

    monkeypatch.setattr(sft_module, "load_model_and_tokenizer", lambda *a: pytest.fail("loaded a model"))
    code = main(["train", "sft", "--config", str(recipe)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    expected = ["learning_rate must be a number, not 'fast'", "unknown key 'lora.rank' (keys: r, alpha, dropout, target_modules)",
                "unknown key 'batch_sise'; did you mean 'batch_size'", "not a sqlwright training run"]
    if not torch.cuda.is_available():
        expected.append("mode qlora needs a CUDA GPU")
    for text in expected:
        assert text in err, text
    assert err.startswith(f"error: {len(expected)} problems in the config: ") and str(recipe) in err

    # --set fixes keys; what remains is still reported
    code = main(["train", "sft", "--config", str(recipe), "--set", "learning_rate=1e-4", "--set", "mode=lora",
                 "--set", "lora={r: 8}", "--set", f"output_dir={tmp_path / 'new'}"])
    err = capsys.readouterr().err
    # the one problem left is printed bare: no "N problems in the config:" count in front of it
    assert code == 2 and err == f"error: {recipe}: unknown key 'batch_sise'; did you mean 'batch_size'?\n"


def test_hardware_and_output_dir_problems(tmp_path, dataset, tiny):
    other = tmp_path / "taken"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    cfg = config(tiny, dataset, other, mode="qlora")
    with pytest.raises(UserError) as e:
        sft(cfg)
    msg = str(e.value)
    if not torch.cuda.is_available():
        assert "mode qlora needs a CUDA GPU" in msg and "--set mode=lora" in msg
    assert "not a sqlwright training run" in msg


def test_output_dir_of_another_run_is_refused(tiny, dataset, tmp_path):
    out = tmp_path / "run"
    sft(config(tiny, dataset, out, max_steps=1, save_steps=1))
    with pytest.raises(UserError, match="holds another run.*mode 'lora' there, 'full' here"):
        sft(config(tiny, dataset, out, max_steps=1, mode="full"))


def test_trainer_passthrough_is_checked(tiny, dataset, tmp_path):
    with pytest.raises(UserError) as e:
        sft(config(tiny, dataset, tmp_path / "x", trainer={"learning_rat": 1, "per_device_train_batch_size": 4}))
    assert "trainer.learning_rat: not an argument of trl's SFTConfig" in str(e.value)
    assert "trainer.per_device_train_batch_size: set by sqlwright; use the top-level key 'batch_size'" in str(e.value)


def test_examples_longer_than_max_length_are_left_out_not_cut(tiny, dataset):
    from transformers import AutoTokenizer

    from sqlwright.train.data import conversation_tokens, sft_dataset

    tok = AutoTokenizer.from_pretrained(tiny)
    full, dropped = sft_dataset(dataset, "train", tok, 10_000)
    assert dropped == 0
    lengths = sorted(conversation_tokens(tok, r) for r in full)
    cut = lengths[0]  # the shortest: every longer example goes
    kept, dropped = sft_dataset(dataset, "train", tok, cut)
    assert dropped == sum(n > cut for n in lengths) > 0
    assert all(conversation_tokens(tok, r) <= cut for r in kept)
    with pytest.raises(UserError, match="every example is longer than max_length 3"):
        sft_dataset(dataset, "train", tok, 3)
    sample, _ = sft_dataset(dataset, "train", tok, 10_000, max_examples=2, seed=1)
    again, _ = sft_dataset(dataset, "train", tok, 10_000, max_examples=2, seed=1)
    assert len(sample) == 2 and sample.to_list() == again.to_list()


def test_time_budget_stops_and_saves(tiny, dataset, tmp_path):
    out = tmp_path / "run"
    r = sft(config(tiny, dataset, out, max_steps=10_000, epochs=1000.0, save_steps=10_000, max_minutes=0.05))
    assert 0 < r.global_step < 10_000
    assert (out / f"checkpoint-{r.global_step}").is_dir()
    assert json.loads((out / "train_summary.json").read_text())["stopped_by_time_budget"] is True


def test_schedule_by_time_uses_the_whole_budget_and_ends_its_schedule_with_it(tiny, dataset, tmp_path):
    out = tmp_path / "run"
    r = sft(config(tiny, dataset, out, max_steps=3, epochs=1.0, save_steps=10_000, max_minutes=0.1,
                   schedule_by_time=True, lr_scheduler="cosine", warmup=0.1, learning_rate=1e-2))
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["stopped_by_time_budget"] is True and summary["train_runtime_s"] >= 5.5
    assert r.global_step > 3  # epochs and max_steps no longer end it: the time does
    lrs = [h["learning_rate"] for h in r.trainer.state.log_history if "learning_rate" in h]
    peak = max(lrs)
    assert 0.5e-2 < peak <= 1e-2 and lrs.index(peak) > 0  # warmed up to about the peak
    assert lrs[-1] < 0.25 * peak  # and the cosine is near its end when the budget is


def test_a_slow_step_does_not_run_over_the_time_budget(tiny, dataset, tmp_path, monkeypatch):
    """Each step deliberately slowed to ~1 s: training stops before the 6 s budget, not one step after it."""
    import time

    from trl import SFTTrainer

    step = SFTTrainer.training_step

    def slow_step(self, *a, **k):
        time.sleep(1.0)
        return step(self, *a, **k)

    monkeypatch.setattr(SFTTrainer, "training_step", slow_step)
    out = tmp_path / "run"
    r = sft(config(tiny, dataset, out, max_steps=3, epochs=1.0, save_steps=10_000, max_minutes=0.1,
                   schedule_by_time=True, learning_rate=1e-2))
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["stopped_by_time_budget"] is True
    assert 4.0 <= summary["time_budget_used_s"] <= 6.0  # most of the budget, and none past it (final save included)
    assert 4 <= r.global_step <= 6


def test_schedule_by_time_needs_max_minutes(tiny, dataset, tmp_path):
    with pytest.raises(UserError, match="schedule_by_time needs max_minutes"):
        sft(config(tiny, dataset, tmp_path / "run", schedule_by_time=True))


def test_resume_passes_over_a_checkpoint_whose_save_was_killed(tmp_path):
    from sqlwright.train.callbacks import last_checkpoint

    assert last_checkpoint(tmp_path / "none") is None
    for step in (2, 4, 10):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-2" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-4" / "trainer_state.json").write_text('{"global_step": 4}')
    (tmp_path / "checkpoint-10" / "adapter_model.safetensors").write_bytes(b"")  # killed before trainer_state.json
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")
    (tmp_path / "checkpoint-10" / "trainer_state.json").write_text('{"global_st')  # torn while writing it
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")
