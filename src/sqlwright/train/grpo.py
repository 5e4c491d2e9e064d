"""``sqlwright train grpo``: reinforcement learning with an execution reward, on trl's ``GRPOTrainer``.

What sqlwright adds to trl:

* one typed config (``GRPOTrainConfig``), checked as a whole before any model is loaded, with
  the SFT config's conventions (LoRA or full, resume, ``max_minutes``, ``report_to``, the
  resolved config and ``prompt.json`` saved with every checkpoint);
* the prompts of a dataset built by ``sqlwright data build``, rendered by its ``prompt.json``
  exactly as SFT and predict render them (the system and user turns; the gold answer is not
  shown), and the databases resolved on this machine;
* rewards by name (``sqlwright.train.rewards``), the execution reward computed by the judge
  service that ``sqlwright eval`` uses: one definition of correct;
* what to watch per step: each reward's mean (trl's ``rewards/<name>/mean``), the share of
  completions that execute and that match the gold, completion length, seconds spent in rewards,
  and the in-training dev execution accuracy (``dev_eval``, as in SFT); all in
  ``trainer_state.json``, so ``sqlwright report --train`` draws them; ``reward.png`` at the end.

It starts from a base model, an SFT output folder, or a LoRA adapter (``mode: lora`` trains
that adapter further, so the output is an adapter on the same base).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from sqlwright.config import to_dict
from sqlwright.errors import UserError
from sqlwright.files import atomic_write_text
from sqlwright.train.grpo_config import RESOLVED_NAME, GRPOTrainConfig, check


@dataclass
class GRPOResult:
    output_dir: Path
    global_step: int
    resumed_from: str | None
    reward: list[tuple[int, float]]  # (step, mean total reward)
    dev_accuracy: list[tuple[int, float]]
    dropped: dict[str, int]  # questions left out, by reason
    reward_seconds: float
    train_seconds: float
    trainer: object = None


def trl_config(cfg: GRPOTrainConfig, precision: str):
    from trl import GRPOConfig

    from sqlwright.train.sft import build_trl_config, shared_trl_args

    args = shared_trl_args(cfg, precision)
    args.update(
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        beta=cfg.beta,
        epsilon=cfg.epsilon,
        loss_type=cfg.loss_type,
        scale_rewards=cfg.scale_rewards,
        num_iterations=cfg.num_iterations,
        reward_weights=cfg.reward_weights,
        use_vllm=cfg.use_vllm,
        vllm_mode=cfg.vllm_mode,
        remove_unused_columns=False,  # the rewards read gold_sql and target
    )
    return build_trl_config(GRPOConfig, cfg, args)


def prompt_rows(cfg: GRPOTrainConfig) -> list[dict]:
    """The training questions as GRPO rows: ``prompt`` (the conversation without the answer),
    ``gold_sql``, ``target`` (the database on this machine) and ``db_id``."""
    import random

    from sqlwright.data.dataset import resolve_records
    from sqlwright.train.data import read_split, to_conversation

    records = read_split(cfg.data, cfg.split)
    if not all(r.get("db_path") and r.get("sql") for r in records):
        raise UserError(f"{cfg.data}/{cfg.split}.jsonl: records need sql and db_path for the execution reward; "
                        "build the dataset from a benchmark with databases")
    if cfg.max_examples and len(records) > cfg.max_examples:
        records = random.Random(cfg.seed).sample(records, cfg.max_examples)
    records = resolve_records(cfg.data, records, cfg.db_root, fix="pass --db-root DIR or set db_root: DIR")
    path = Path(cfg.data) / f"{cfg.split}.jsonl"
    return [{"prompt": to_conversation(r, f"{path} record {i + 1}")["prompt"], "gold_sql": r["sql"],
             "target": r["db_path"], "db_id": str(r.get("db_id"))} for i, r in enumerate(records)]


def keep_rewardable(rows: list[dict], judge, tokenizer, max_prompt_length: int | None,
                    drop_empty_gold: bool) -> tuple[list[dict], dict[str, int]]:
    """Rows whose prompt fits and (with ``drop_empty_gold``) whose gold runs and returns rows
    (Arctic-Text2SQL-R1 drops empty-result golds: every completion that runs would tie with them).
    The golds run once, on the judge's pool; their results stay in its cache for training."""
    from sqlwright.judge import Item
    from sqlwright.train.data import conversation_tokens

    dropped = {"prompt_too_long": 0, "gold_fails": 0, "gold_empty": 0}
    kept = []
    for row in rows:
        if max_prompt_length and conversation_tokens(tokenizer, {"prompt": row["prompt"], "completion": []}) > max_prompt_length:
            dropped["prompt_too_long"] += 1
        else:
            kept.append(row)
    if drop_empty_gold and kept:
        golds = judge.judge_many([Item(r["target"], r["gold_sql"], []) for r in kept])
        rows, kept = kept, []
        for row, j in zip(rows, golds, strict=True):
            if j.gold is None or not j.gold.ok:
                dropped["gold_fails"] += 1
            elif not j.gold.rows:
                dropped["gold_empty"] += 1
            else:
                kept.append(row)
    return kept, {k: v for k, v in dropped.items() if v}


def grpo(cfg: GRPOTrainConfig, source: str = "config", extra_rewards: dict | None = None) -> GRPOResult:
    """Train ``cfg.model`` with GRPO on ``cfg.data``. ``extra_rewards``: reward functions by name
    beyond the registry (Python callers; trl's signature), used when ``cfg.rewards`` names them."""
    try:
        import trl  # noqa: F401
    except ImportError:
        raise UserError("training needs trl, peft and torch: pip install 'sqlwright[train]'") from None
    from sqlwright.train import rewards as R

    extra_rewards = extra_rewards or {}
    from sqlwright.train.config import raise_problems

    raise_problems(check(cfg, source, extra_rewards))
    from datasets import Dataset
    from trl import GRPOTrainer

    from sqlwright.judge import Judge
    from sqlwright.prompts.formats import FORMATS
    from sqlwright.prompts.spec import PromptSpec
    from sqlwright.train.callbacks import fix_adapter_base, last_checkpoint, training_callbacks
    from sqlwright.train.sft import _is_main, _peft_config, _precision, load_model_and_tokenizer
    from sqlwright.types import Limits

    out = Path(cfg.output_dir)
    spec = PromptSpec.load(cfg.data)
    precision = _precision(cfg)
    rows = prompt_rows(cfg)  # databases resolved (missing ones named) before the model loads
    if _is_main():
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / RESOLVED_NAME, _yaml(to_dict(cfg)))
        spec.save(out / "prompt.json")
    args = trl_config(cfg, precision)
    model, tok = load_model_and_tokenizer(cfg, precision, from_adapter=True)
    already_peft = hasattr(model, "peft_config")
    ex = cfg.execution
    judge = Judge(ex.comparator, Limits(timeout=ex.timeout, max_rows=ex.max_rows), workers=ex.workers,
                  start_method="forkserver")
    try:
        rows, dropped = keep_rewardable(rows, judge, tok, cfg.max_prompt_length, cfg.drop_empty_gold)
        if not rows:
            raise UserError(f"{cfg.data}/{cfg.split}.jsonl: no question left to train on ({dropped}); "
                            "raise max_prompt_length or set drop_empty_gold: false")
        if dropped and _is_main():
            print(f"sqlwright: left out {sum(dropped.values())} questions ({', '.join(f'{k} {v}' for k, v in dropped.items())})",
                  file=sys.stderr)
        fmt = FORMATS.get(spec.format)
        ctx = R.RewardContext(judge=judge, levels=R.Levels(ex.correct, ex.executes, ex.fails),
                              answer=fmt.answer if fmt else "sql", dialect=getattr(spec, "dialect", None) or "sqlite")
        funcs = [extra_rewards[n] if n in extra_rewards else R.TRLReward(R.REWARDS[n], ctx) for n in cfg.rewards]

        callbacks, budget, dev = training_callbacks(cfg, out, RESOLVED_NAME, spec.style)
        trainer = GRPOTrainer(model=model, reward_funcs=funcs, args=args, train_dataset=Dataset.from_list(rows),
                              processing_class=tok, peft_config=None if already_peft else _peft_config(cfg),
                              callbacks=callbacks)
        if dev is not None:
            dev.trainer = trainer
        last = last_checkpoint(out)
        start = time.perf_counter()
        trainer.train(resume_from_checkpoint=last)
        wall = time.perf_counter() - start
        if dev is not None and (not dev.history or dev.history[-1][0] != trainer.state.global_step):
            dev.evaluate(trainer.state, trainer.model, tok)
        trainer.save_model(str(out))
    finally:
        judge.close()
    reward_s = sum(getattr(f, "seconds", 0.0) for f in funcs)
    curve = [(h["step"], h["reward"]) for h in trainer.state.log_history if "reward" in h and "step" in h]
    if trainer.is_world_process_zero():
        tok.save_pretrained(str(out))
        fix_adapter_base(out, _base_name(cfg.model))
        summary = {
            "global_step": trainer.state.global_step,
            "train_runtime_s": round(wall, 2),
            "reward_seconds": round(reward_s, 4),
            "reward_share_of_time": round(reward_s / wall, 4) if wall else None,
            "resumed_from": last,
            "questions": len(rows),
            "dropped": dropped,
            "rewards": cfg.rewards,
            "reward_weights": cfg.reward_weights or [1.0] * len(cfg.rewards),
            "reward_curve": curve,
            "stopped_by_time_budget": budget.stopped_at is not None if budget else False,
            "time_budget_used_s": budget.used_s if budget else None,
            "precision": precision,
            "mode": cfg.mode,
            "dev_execution_accuracy": dev.history if dev else [],
        }
        (out / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        if cfg.plot:
            plot_rewards(trainer.state.log_history, cfg.rewards, out / "reward.png")
    return GRPOResult(out, trainer.state.global_step, last, curve, dev.history if dev else [], dropped,
                      reward_s, wall, trainer)


def _base_name(model: str) -> str:
    """The base an output adapter points at: the starting adapter's own base when it was one."""
    from sqlwright.infer.models import resolve_model

    resolved = resolve_model(model)
    return resolved.base if resolved.adapter and resolved.base else model


def _yaml(d: dict) -> str:
    import yaml

    return yaml.safe_dump(d, sort_keys=False)


def plot_rewards(history: list[dict], names: list[str], path: Path) -> None:
    """Mean reward, each component, the share matching the gold, and dev accuracy by step."""
    from sqlwright.train.callbacks import METRIC
    from sqlwright.train.sft import save_plot, series

    total = series(history, "reward")
    if not total:
        return

    def draw(fig, ax):
        ax.plot(*zip(*total, strict=True), label="reward (weighted sum)", color="black")
        for name in names:
            if s := series(history, f"rewards/{name}/mean"):
                ax.plot(*zip(*s, strict=True), label=name, alpha=0.7)
        for key, label in (("execution/correct", "share matching gold"), (METRIC, "dev execution accuracy")):
            if s := series(history, key):
                ax.plot(*zip(*s, strict=True), "o-" if key == METRIC else "--", label=label)
        ax.set_ylabel("reward / share")
        ax.legend(fontsize=8)

    save_plot(path, "sqlwright train grpo", draw)
