"""The config of ``sqlwright train sft``: one dataclass, filled from a YAML recipe plus
``--set key=value`` overrides, checked as a whole before any model is loaded.

``check(cfg)`` returns every problem at once — a mode the hardware cannot run, a dataset that
is not a built dataset, an output directory that holds another run, an unknown trl option —
each naming the key and the fix. The resolved config is written to
``<output_dir>/sqlwright_train.yaml``; a rerun with the same model, data and mode resumes.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sqlwright.config import opt
from sqlwright.errors import UserError, did_you_mean

RESOLVED_NAME = "sqlwright_train.yaml"
MODES = ("full", "lora", "qlora")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
REPORTERS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "trackio": "trackio"}
# keys that make two runs the same run (a rerun with these unchanged resumes)
IDENTITY = ("model", "data", "mode")


@dataclass
class LoraOptions:
    r: int = opt(16, "LoRA rank.")
    alpha: int = opt(32, "LoRA alpha (scale: alpha / r).")
    dropout: float = opt(0.05, "LoRA dropout.")
    target_modules: list[str] | str = opt("all-linear", "Modules to adapt: all-linear or a list of names (YAML or --set).")


@dataclass
class DevEval:
    """Execution accuracy on a fixed dev subset, every ``every`` optimizer steps (0: off)."""

    every: int = opt(0, "Dev execution accuracy every N optimizer steps (0: off).")
    split: str = opt("validation", "Split of the dataset to measure it on (its <split>.jsonl).")
    questions: int = opt(50, "Dev questions (a fixed sample).")
    max_new_tokens: int = opt(256, "Most tokens generated per dev answer.")
    batch_size: int = opt(16, "Prompts per generation batch.")
    comparator: str = opt("bird", "Result comparator, as in eval.")
    timeout: float = opt(10.0, "Seconds per query.")
    seed: int = opt(0, "Which questions: a fixed sample, the same at every evaluation.")


@dataclass
class TrainConfig:
    data: str = opt("", "Dataset folder written by `sqlwright data build` (or `data cot`).")
    db_root: str | None = opt(None, "dev_eval: folder holding the databases (<db_id>/<db_id>.sqlite) on this machine, when not where the dataset records them.")
    output_dir: str = opt("", "Output folder: the model, checkpoints, sqlwright_train.yaml (a rerun resumes it).")
    model: str = opt("smollm2-135m", "Hub id, local folder, .gguf file or alias.")
    mode: Literal["full", "lora", "qlora"] = opt("lora", "full, lora or qlora.")
    lora: LoraOptions = opt(factory=LoraOptions)
    split: str = opt("train", "Split of the dataset to train on.")
    epochs: float = opt(1.0, "Epochs (max_steps > 0 overrides it).")
    max_steps: int = opt(-1, "Optimizer steps; > 0 overrides epochs.")
    learning_rate: float = opt(2e-4, "Peak learning rate.")
    lr_scheduler: str = opt("cosine", "Learning-rate schedule (a transformers scheduler name).")
    warmup: float = opt(0.03, "Warmup: a fraction of the steps (< 1) or a number of steps.")
    weight_decay: float = opt(0.0, "Weight decay.")
    batch_size: int = opt(8, "Sequences (or packed rows) per device per step.")
    grad_accum: int = opt(1, "Gradient accumulation steps.")
    max_length: int = opt(2048, "Tokens per example, or per packed row.")
    packing: bool = opt(True, "Best-fit packing, padding-free; examples never attend to each other.")
    group_by_length: bool = opt(True, "Without packing: batches of similar lengths.")
    gradient_checkpointing: bool = opt(False, "Recompute activations to save memory.")
    precision: str = opt("auto", "auto, bf16, fp16 or fp32 (auto: bf16 where the hardware has it, else fp16 on GPU, fp32 on CPU).")
    attention: str = opt("auto", "auto, sdpa, eager, flash_attention_2 or flash_attention_3 (auto: flash_attention_2 when installed on CUDA).")
    liger: bool | None = opt(None, "Liger kernels (default: on when liger-kernel is installed and CUDA is used).")
    seed: int = opt(42, "Training seed.")
    logging_steps: int = opt(10, "Log every N steps.")
    save_steps: int = opt(200, "Save a checkpoint every N steps.")
    save_total_limit: int | None = opt(2, "Checkpoints kept.")
    report_to: list[str] = opt(help="Trackers (repeat): tensorboard, wandb, mlflow, trackio; --set report_to=[] for none.", factory=lambda: ["tensorboard"])
    dev_eval: DevEval = opt(factory=DevEval)
    trainer: dict = opt(help="Extra trl SFTConfig arguments, passed as they are (YAML or --set).", factory=dict)
    max_examples: int | None = opt(None, "A seeded random sample of N training examples (quick runs).")
    plot: bool = opt(True, "loss.png at the end.")
    max_minutes: float | None = opt(None, "Stop (and save) when training has run this long.")
    schedule_by_time: bool = opt(False, "With max_minutes: lay the learning-rate schedule over the minutes, not over steps, and train as many epochs as fit (epochs and max_steps are then ignored).")

    def check(self) -> list[str]:
        """Every problem that can be found without loading a model (``check`` below)."""
        return check(self, "")


def check(cfg: TrainConfig, source: str = "config") -> list[str]:
    """Every problem with ``cfg`` that can be found without loading a model."""
    return check_shared(cfg, source, RESOLVED_NAME, "SFTConfig", OWNED)


# keys every training config has that must be at least 1 (those a config has)
POSITIVE = ("batch_size", "grad_accum", "max_length", "logging_steps", "save_steps",
            "num_generations", "max_completion_length", "max_prompt_length")


def check_shared(cfg, source: str, resolved: str, trl_config: str, owned: dict[str, str]) -> list[str]:
    """The checks every ``sqlwright train`` config shares (SFT's and GRPO's): data, output
    folder, precision, positive counts, schedule, LoRA, trackers, dev accuracy, hardware and the
    extra trl arguments (``trl_config``: the trl config class they go to)."""
    p: list[str] = []
    where = f"{source}: " if source else ""
    if not cfg.data:
        p.append(f"{where}data is required: a folder from `sqlwright data build`")
    else:
        p += _check_data(cfg, where)
    if not cfg.output_dir:
        p.append(f"{where}output_dir is required")
    else:
        p += _check_output_dir(cfg, where, resolved)
    if cfg.precision not in PRECISIONS:
        p.append(f"{where}precision must be one of {', '.join(PRECISIONS)}, not {cfg.precision!r}")
    for key in POSITIVE:
        if hasattr(cfg, key) and getattr(cfg, key) is not None and getattr(cfg, key) < 1:
            p.append(f"{where}{key} must be at least 1, not {getattr(cfg, key)}")
    if cfg.max_steps <= 0 and cfg.epochs <= 0:
        p.append(f"{where}set epochs > 0 or max_steps > 0")
    if getattr(cfg, "schedule_by_time", False):
        if not cfg.max_minutes:
            p.append(f"{where}schedule_by_time needs max_minutes: the minutes the schedule is laid over")
        if cfg.lr_scheduler not in ("cosine", "linear", "constant"):
            p.append(f"{where}schedule_by_time: lr_scheduler must be cosine, linear or constant, not {cfg.lr_scheduler!r}")
    if cfg.max_minutes is not None and cfg.max_minutes <= 0:
        p.append(f"{where}max_minutes must be positive, not {cfg.max_minutes}")
    if cfg.learning_rate <= 0:
        p.append(f"{where}learning_rate must be positive, not {cfg.learning_rate}")
    if cfg.mode != "full" and cfg.lora.r < 1:
        p.append(f"{where}lora.r must be at least 1, not {cfg.lora.r}")
    for name in cfg.report_to:
        if name not in REPORTERS:
            p.append(f"{where}report_to: unknown tracker {name!r}{did_you_mean(name, REPORTERS)} (choose: {', '.join(REPORTERS)}, or [] for none)")
        elif importlib.util.find_spec(REPORTERS[name]) is None:
            p.append(f"{where}report_to: {name} is not installed; pip install {name}, or drop it with --set report_to=[]")
    if cfg.dev_eval.every < 0 or cfg.dev_eval.questions < 1:
        p.append(f"{where}dev_eval.every must be >= 0 and dev_eval.questions >= 1")
    if cfg.dev_eval.every:
        from sqlwright.judge.compare import COMPARATORS

        if cfg.dev_eval.comparator not in COMPARATORS:
            p.append(f"{where}dev_eval.comparator: unknown {cfg.dev_eval.comparator!r}{did_you_mean(cfg.dev_eval.comparator, COMPARATORS)}")
    p += _check_hardware(cfg, where)
    p += _check_trainer_extras(cfg, where, trl_config, owned)
    return p


def _check_data(cfg: TrainConfig, where: str) -> list[str]:
    data = Path(cfg.data)
    if not data.is_dir():
        return [f"{where}data {cfg.data}: folder not found; build one with `sqlwright data build --out {cfg.data} ...`"]
    p = []
    if not (data / "prompt.json").is_file():
        p.append(f"{where}data {cfg.data}: no prompt.json; is it a folder written by `sqlwright data build`?")
    have = sorted(f.stem for f in data.glob("*.jsonl"))
    if not (data / f"{cfg.split}.jsonl").is_file():
        p.append(f"{where}split {cfg.split!r}: {cfg.data} has no {cfg.split}.jsonl (has: {', '.join(have) or 'none'})")
    if cfg.dev_eval.every and not (data / f"{cfg.dev_eval.split}.jsonl").is_file():
        p.append(f"{where}dev_eval.split {cfg.dev_eval.split!r}: {cfg.data} has no {cfg.dev_eval.split}.jsonl (has: {', '.join(have) or 'none'})")
    elif cfg.dev_eval.every:
        try:  # the dev questions' databases must be at hand: found now, not at the first evaluation
            dev_records(cfg)
        except UserError as e:
            p.append(f"{where}dev_eval: {e}")
    return p


def dev_records(cfg: TrainConfig) -> list[dict]:
    """The fixed dev subset of ``dev_eval``, each ``db_path`` resolved to a database on this
    machine (the dataset's recorded root, or ``db_root``)."""
    from sqlwright.data.dataset import resolve_records
    from sqlwright.train.data import dev_subset

    e = cfg.dev_eval
    records = dev_subset(cfg.data, e.split, e.questions, e.seed)
    if not all(r.get("db_path") for r in records):
        raise UserError(f"{cfg.data}/{e.split}.jsonl records have no db_path to execute on; set dev_eval.every: 0")
    return resolve_records(cfg.data, records, cfg.db_root, fix="pass --db-root DIR or set db_root: DIR")


def identity(cfg: TrainConfig) -> dict:
    return {k: _norm(k, getattr(cfg, k)) for k in IDENTITY}


def _norm(key: str, value):
    if key == "data":
        return str(Path(value).resolve())
    if key == "model" and Path(value).expanduser().exists():
        return str(Path(value).expanduser().resolve())
    return value


def _check_output_dir(cfg, where: str, resolved: str = RESOLVED_NAME) -> list[str]:
    out = Path(cfg.output_dir)
    if out.exists() and not out.is_dir():
        return [f"{where}output_dir {out}: exists and is a file; choose another output_dir"]
    if not out.is_dir() or not any(out.iterdir()):
        return []
    previous = out / resolved
    if not previous.is_file():
        kind = "sqlwright training run of this kind" if any(out.glob("sqlwright_*.yaml")) else "sqlwright training run"
        return [f"{where}output_dir {out}: not empty and not a {kind} (no {resolved}); choose another output_dir"]
    import yaml

    try:
        old = yaml.safe_load(previous.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        return [f"{where}output_dir {out}: {resolved} is unreadable; choose another output_dir"]
    mine = identity(cfg)
    theirs = {k: _norm(k, old.get(k)) if old.get(k) is not None else None for k in IDENTITY}
    diffs = [f"{k} {theirs[k]!r} there, {mine[k]!r} here" for k in IDENTITY if theirs[k] != mine[k]]
    if diffs:
        return [f"{where}output_dir {out} holds another run ({'; '.join(diffs)}); choose a new output_dir "
                "(a rerun with the same model, data and mode resumes)"]
    return []


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _check_hardware(cfg: TrainConfig, where: str) -> list[str]:
    p = []
    cuda = cuda_available()
    if cfg.mode == "qlora":
        if not cuda:
            p.append(f"{where}mode qlora needs a CUDA GPU (4-bit bitsandbytes); on this machine use mode lora (--set mode=lora)")
        elif importlib.util.find_spec("bitsandbytes") is None:
            p.append(f"{where}mode qlora needs bitsandbytes: pip install bitsandbytes")
    if cfg.precision == "fp16" and not cuda:
        p.append(f"{where}precision fp16 needs a CUDA GPU; use fp32 or bf16 on CPU")
    if cfg.precision == "bf16" and cuda:
        import torch

        if not torch.cuda.is_bf16_supported():
            p.append(f"{where}precision bf16: this GPU has no bfloat16; use fp16")
    if cfg.attention not in ("auto", "sdpa", "eager", "flash_attention_2", "flash_attention_3"):
        p.append(f"{where}attention must be auto, sdpa, eager, flash_attention_2 or flash_attention_3, not {cfg.attention!r}")
    elif cfg.attention.startswith("flash") and (not cuda or importlib.util.find_spec("flash_attn") is None):
        p.append(f"{where}attention {cfg.attention} needs CUDA and the flash-attn package; use sdpa")
    if cfg.liger and (not cuda or importlib.util.find_spec("liger_kernel") is None):
        p.append(f"{where}liger: true needs CUDA and liger-kernel (pip install liger-kernel); set liger: null")
    return p


# trl SFTConfig arguments sqlwright sets itself from its own keys (set those keys instead)
OWNED = {
    "output_dir": "output_dir", "num_train_epochs": "epochs", "max_steps": "max_steps",
    "learning_rate": "learning_rate", "lr_scheduler_type": "lr_scheduler", "warmup_steps": "warmup",
    "per_device_train_batch_size": "batch_size", "gradient_accumulation_steps": "grad_accum",
    "max_length": "max_length", "packing": "packing", "gradient_checkpointing": "gradient_checkpointing",
    "bf16": "precision", "fp16": "precision", "seed": "seed", "report_to": "report_to",
    "use_liger_kernel": "liger", "save_steps": "save_steps", "logging_steps": "logging_steps",
}


def _check_trainer_extras(cfg, where: str, trl_config: str = "SFTConfig", owned: dict[str, str] = OWNED) -> list[str]:
    if not cfg.trainer:
        return []
    try:
        import trl
    except ImportError:
        return [f"{where}training needs trl: pip install 'sqlwright[train]'"]
    known = set(getattr(trl, trl_config).__dataclass_fields__)
    p = []
    for key in cfg.trainer:
        if key in owned:
            p.append(f"{where}trainer.{key}: set by sqlwright; use the top-level key {owned[key]!r} instead")
        elif key not in known:
            p.append(f"{where}trainer.{key}: not an argument of trl's {trl_config}{did_you_mean(key, known)}")
    return p


def raise_problems(problems: list[str]) -> None:
    if problems:
        from sqlwright.config import join_problems

        raise UserError(join_problems(problems))
