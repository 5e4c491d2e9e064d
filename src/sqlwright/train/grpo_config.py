"""The config of ``sqlwright train grpo``: one dataclass, with the SFT config's conventions
(the same keys where they mean the same thing), checked as a whole before any model loads.

The rewards are named (``rewards: [execution, format]``, the registry in
``sqlwright.train.rewards``) and weighted (``reward_weights``, one per reward; default all 1).
The resolved config is written to ``<output_dir>/sqlwright_grpo.yaml``; a rerun with the same
model, data and mode resumes from the last checkpoint.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from sqlwright.config import opt
from sqlwright.errors import did_you_mean
from sqlwright.train.config import OWNED, DevEval, LoraOptions, check_shared, cuda_available

RESOLVED_NAME = "sqlwright_grpo.yaml"
VLLM_MODES = ("colocate", "server")
LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo")
SCALE_REWARDS = ("group", "batch", "none")
# trl GRPOConfig arguments sqlwright sets from its own keys
GRPO_OWNED = {k: v for k, v in OWNED.items() if k not in ("max_length", "packing")} | {
    "num_generations": "num_generations", "max_completion_length": "max_completion_length",
    "temperature": "temperature", "top_p": "top_p", "beta": "beta", "epsilon": "epsilon",
    "loss_type": "loss_type", "scale_rewards": "scale_rewards", "num_iterations": "num_iterations",
    "reward_weights": "reward_weights", "use_vllm": "use_vllm", "vllm_mode": "vllm_mode",
}


@dataclass
class ExecutionOptions:
    """The execution reward: levels, comparator and limits (the rollouts' SQL runs read-only)."""

    correct: float = opt(1.0, "Reward when the result matches the gold's.")
    executes: float = opt(0.1, "Reward when the SQL runs but its result differs.")
    fails: float = opt(0.0, "Reward when there is no SQL, or it fails, times out or returns too many rows.")
    comparator: str = opt("bird", "Result comparator, as in eval (bird, multiset, ordered, test-suite).")
    timeout: float = opt(10.0, "Seconds per query: a runaway rollout is stopped and scores `fails`.")
    max_rows: int = opt(100_000, "Rows a query may return before it counts as too many.")
    workers: int = opt(2, "Execution worker processes (reused across steps).")


@dataclass
class GRPOTrainConfig:
    data: str = opt("", "Dataset folder written by `sqlwright data build`; its prompt.json renders the prompts.")
    db_root: str | None = opt(None, "Folder holding the databases (<db_id>/<db_id>.sqlite) on this machine, when not where the dataset records them.")
    output_dir: str = opt("", "Output folder: the model, checkpoints, sqlwright_grpo.yaml (a rerun resumes it).")
    model: str = opt("smollm2-135m", "Start from: a hub id, local folder, .gguf, alias, an SFT output folder or a LoRA adapter.")
    mode: Literal["full", "lora", "qlora"] = opt("lora", "full, lora or qlora (from an adapter, lora trains that adapter on).")
    lora: LoraOptions = opt(factory=LoraOptions)
    split: str = opt("train", "Split of the dataset to train on.")
    rewards: list[str] = opt(help="Rewards by name (repeat): execution, format, syntax, ngram.", factory=lambda: ["execution", "format"])
    reward_weights: list[float] | None = opt(None, "One weight per reward, in order (default: all 1).")
    execution: ExecutionOptions = opt(factory=ExecutionOptions)
    num_generations: int = opt(8, "Completions sampled per prompt (the group).")
    max_completion_length: int = opt(256, "Most tokens per completion.")
    max_prompt_length: int | None = opt(1024, "Prompts longer than this many tokens are left out (None: keep all).")
    temperature: float = opt(0.8, "Sampling temperature of the rollouts.")
    top_p: float = opt(1.0, "Nucleus sampling of the rollouts.")
    beta: float = opt(0.001, "KL coefficient against the starting model (0: no reference model).")
    epsilon: float = opt(0.2, "Clipping range.")
    loss_type: str = opt("dapo", "trl loss: grpo, dr_grpo, dapo, bnpo, cispo, sapo, luspo, vespo.")
    scale_rewards: str = opt("group", "Advantage scaling: group, batch or none.")
    num_iterations: int = opt(1, "Optimisation passes per generated batch.")
    drop_empty_gold: bool = opt(True, "Leave out questions whose gold fails or returns no rows (they reward nothing).")
    use_vllm: bool = opt(False, "Generate rollouts with vLLM (CUDA).")
    vllm_mode: str = opt("colocate", "vLLM: colocate (in the trainer's process) or server (`trl vllm-serve`).")
    epochs: float = opt(1.0, "Epochs (max_steps > 0 overrides it).")
    max_steps: int = opt(-1, "Optimizer steps; > 0 overrides epochs.")
    learning_rate: float = opt(1e-6, "Peak learning rate.")
    lr_scheduler: str = opt("constant", "Learning-rate schedule (a transformers scheduler name).")
    warmup: float = opt(0.0, "Warmup: a fraction of the steps (< 1) or a number of steps.")
    weight_decay: float = opt(0.0, "Weight decay.")
    batch_size: int = opt(8, "Completions per device per step (prompts per step = batch_size x grad_accum x devices / num_generations).")
    grad_accum: int = opt(1, "Gradient accumulation steps.")
    gradient_checkpointing: bool = opt(False, "Recompute activations to save memory.")
    precision: str = opt("auto", "auto, bf16, fp16 or fp32.")
    attention: str = opt("auto", "auto, sdpa, eager, flash_attention_2 or flash_attention_3.")
    liger: bool | None = opt(None, "Liger kernels (default: on when liger-kernel is installed and CUDA is used).")
    seed: int = opt(42, "Training seed.")
    logging_steps: int = opt(1, "Log every N steps.")
    save_steps: int = opt(50, "Save a checkpoint every N steps.")
    save_total_limit: int | None = opt(2, "Checkpoints kept.")
    report_to: list[str] = opt(help="Trackers (repeat): tensorboard, wandb, mlflow, trackio; --set report_to=[] for none.", factory=lambda: ["tensorboard"])
    dev_eval: DevEval = opt(factory=DevEval)
    trainer: dict = opt(help="Extra trl GRPOConfig arguments, passed as they are (YAML or --set).", factory=dict)
    max_examples: int | None = opt(None, "A seeded random sample of N training questions.")
    plot: bool = opt(True, "reward.png at the end.")
    max_minutes: float | None = opt(None, "Stop (and save) when training has run this long.")

    def check(self) -> list[str]:
        return check(self, "")


def check(cfg: GRPOTrainConfig, source: str = "config", extra_rewards: Collection[str] = ()) -> list[str]:
    """Every problem with ``cfg`` that can be found without loading a model, together.
    ``extra_rewards``: reward names a Python caller supplies beyond the registry."""
    from sqlwright.judge.compare import COMPARATORS
    from sqlwright.train.rewards import REWARDS

    where = f"{source}: " if source else ""
    p = check_shared(cfg, source, RESOLVED_NAME, "GRPOConfig", GRPO_OWNED)
    if not cfg.rewards:
        p.append(f"{where}rewards: name at least one ({', '.join(REWARDS)})")
    for name in cfg.rewards:
        if name not in REWARDS and name not in extra_rewards:
            p.append(f"{where}rewards: unknown reward {name!r}{did_you_mean(name, REWARDS)} (choose: {', '.join(REWARDS)})")
    if cfg.reward_weights is not None and len(cfg.reward_weights) != len(cfg.rewards):
        p.append(f"{where}reward_weights: {len(cfg.reward_weights)} weights for {len(cfg.rewards)} rewards "
                 f"({', '.join(cfg.rewards)}); give one weight per reward, in order, or drop reward_weights")
    if cfg.execution.comparator not in COMPARATORS:
        p.append(f"{where}execution.comparator: unknown {cfg.execution.comparator!r}{did_you_mean(cfg.execution.comparator, COMPARATORS)}")
    if cfg.execution.timeout <= 0 or cfg.execution.workers < 0:
        p.append(f"{where}execution.timeout must be positive and execution.workers >= 0")
    if cfg.num_generations < 2:
        p.append(f"{where}num_generations must be at least 2 (GRPO compares completions within a group), not {cfg.num_generations}")
    else:
        world = _world_size()
        per_step = cfg.batch_size * cfg.grad_accum * world
        if per_step % cfg.num_generations:
            fits = [n for n in range(2, per_step + 1) if per_step % n == 0]
            p.append(f"{where}num_generations {cfg.num_generations} does not divide the completions per step "
                     f"(batch_size {cfg.batch_size} x grad_accum {cfg.grad_accum} x {world} device(s) = {per_step}); "
                     f"set batch_size to a multiple of {cfg.num_generations}, or num_generations to one of {fits}")
    if not cfg.temperature > 0:
        p.append(f"{where}temperature must be positive (rollouts are sampled), not {cfg.temperature}")
    if cfg.loss_type not in LOSS_TYPES:
        p.append(f"{where}loss_type: unknown {cfg.loss_type!r}{did_you_mean(cfg.loss_type, LOSS_TYPES)} (choose: {', '.join(LOSS_TYPES)})")
    if cfg.scale_rewards not in SCALE_REWARDS:
        p.append(f"{where}scale_rewards must be one of {', '.join(SCALE_REWARDS)}, not {cfg.scale_rewards!r}")
    if cfg.beta < 0:
        p.append(f"{where}beta must be >= 0, not {cfg.beta}")
    if cfg.use_vllm:
        if cfg.vllm_mode not in VLLM_MODES:
            p.append(f"{where}vllm_mode must be colocate or server, not {cfg.vllm_mode!r}")
        if not cuda_available():
            p.append(f"{where}use_vllm needs a CUDA GPU; on this machine set use_vllm: false (rollouts then use transformers)")
        elif importlib.util.find_spec("vllm") is None:
            p.append(f"{where}use_vllm needs vllm: pip install 'sqlwright[vllm]'")
    return p


def _world_size() -> int:
    import os

    return int(os.environ.get("WORLD_SIZE", "1"))
