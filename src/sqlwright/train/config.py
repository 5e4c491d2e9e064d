"""The config of ``sqlwright train sft``: one dataclass, filled from a YAML recipe plus
``--set key=value`` overrides, checked as a whole before any model is loaded.

``check(cfg)`` returns every problem at once — a mode the hardware cannot run, a dataset that
is not a built dataset, an output directory that holds another run, an unknown trl option —
each naming the key and the fix. The resolved config is written to
``<output_dir>/sqlwright_train.yaml``; a rerun with the same model, data and mode resumes.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sqlwright.errors import UserError, did_you_mean

RESOLVED_NAME = "sqlwright_train.yaml"
MODES = ("full", "lora", "qlora")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
REPORTERS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "trackio": "trackio"}
# keys that make two runs the same run (a rerun with these unchanged resumes)
IDENTITY = ("model", "data", "mode")


@dataclass
class LoraOptions:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] | str = "all-linear"


@dataclass
class DevEval:
    """Execution accuracy on a fixed dev subset, every ``every`` optimizer steps (0: off)."""

    every: int = 0
    split: str = "validation"  # a split of the dataset (its <split>.jsonl)
    questions: int = 50
    max_new_tokens: int = 256
    batch_size: int = 16
    comparator: str = "bird"
    timeout: float = 10.0
    seed: int = 0  # which questions: a fixed sample, the same at every evaluation


@dataclass
class TrainConfig:
    data: str = ""  # a folder written by `sqlwright data build` (or `data cot`)
    output_dir: str = ""
    model: str = "smollm2-135m"  # hub id, local directory, .gguf file or alias
    mode: Literal["full", "lora", "qlora"] = "lora"
    lora: LoraOptions = field(default_factory=LoraOptions)
    split: str = "train"
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    learning_rate: float = 2e-4
    lr_scheduler: str = "cosine"
    warmup: float = 0.03  # a fraction of the steps (< 1) or a number of steps
    weight_decay: float = 0.0
    batch_size: int = 8  # sequences (or packed rows) per device per step
    grad_accum: int = 1
    max_length: int = 2048  # tokens per example, or per packed row
    packing: bool = True  # best-fit packing, padding-free; examples never attend to each other
    group_by_length: bool = True  # without packing: batches of similar lengths
    gradient_checkpointing: bool = False
    precision: str = "auto"  # auto: bf16 on GPUs and CPUs that have it, else fp16 on GPU, fp32 on CPU
    attention: str = "auto"  # auto: flash_attention_2 when installed on CUDA, else sdpa
    liger: bool | None = None  # None: on when liger-kernel is installed and CUDA is used
    seed: int = 42
    logging_steps: int = 10
    save_steps: int = 200
    save_total_limit: int | None = 2
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])
    dev_eval: DevEval = field(default_factory=DevEval)
    trainer: dict = field(default_factory=dict)  # extra trl SFTConfig arguments, passed as they are
    max_examples: int | None = None  # a seeded random sample of N training examples (quick runs)
    plot: bool = True  # loss.png at the end
    max_minutes: float | None = None  # stop (and save) when training has run this long


def check(cfg: TrainConfig, source: str = "config") -> list[str]:
    """Every problem with ``cfg`` that can be found without loading a model."""
    p: list[str] = []
    where = f"{source}: "
    if not cfg.data:
        p.append(f"{where}data is required: a folder from `sqlwright data build`")
    else:
        p += _check_data(cfg, where)
    if not cfg.output_dir:
        p.append(f"{where}output_dir is required")
    else:
        p += _check_output_dir(cfg, where)
    if cfg.precision not in PRECISIONS:
        p.append(f"{where}precision must be one of {', '.join(PRECISIONS)}, not {cfg.precision!r}")
    for key in ("batch_size", "grad_accum", "max_length", "logging_steps", "save_steps"):
        if getattr(cfg, key) < 1:
            p.append(f"{where}{key} must be at least 1, not {getattr(cfg, key)}")
    if cfg.max_steps <= 0 and cfg.epochs <= 0:
        p.append(f"{where}set epochs > 0 or max_steps > 0")
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
    p += _check_trainer_extras(cfg, where)
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
    return p


def identity(cfg: TrainConfig) -> dict:
    return {k: _norm(k, getattr(cfg, k)) for k in IDENTITY}


def _norm(key: str, value):
    if key == "data":
        return str(Path(value).resolve())
    if key == "model" and Path(value).expanduser().exists():
        return str(Path(value).expanduser().resolve())
    return value


def _check_output_dir(cfg: TrainConfig, where: str) -> list[str]:
    out = Path(cfg.output_dir)
    if out.exists() and not out.is_dir():
        return [f"{where}output_dir {out}: exists and is a file; choose another output_dir"]
    if not out.is_dir() or not any(out.iterdir()):
        return []
    previous = out / RESOLVED_NAME
    if not previous.is_file():
        return [f"{where}output_dir {out}: not empty and not a sqlwright training run; choose another output_dir"]
    import yaml

    try:
        old = yaml.safe_load(previous.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        return [f"{where}output_dir {out}: {RESOLVED_NAME} is unreadable; choose another output_dir"]
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


def _check_trainer_extras(cfg: TrainConfig, where: str) -> list[str]:
    if not cfg.trainer:
        return []
    try:
        from trl import SFTConfig
    except ImportError:
        return [f"{where}training needs trl: pip install 'sqlwright[train]'"]
    known = {f for f in SFTConfig.__dataclass_fields__}
    p = []
    for key in cfg.trainer:
        if key in OWNED:
            p.append(f"{where}trainer.{key}: set by sqlwright; use the top-level key {OWNED[key]!r} instead")
        elif key not in known:
            p.append(f"{where}trainer.{key}: not an argument of trl's SFTConfig{did_you_mean(key, known)}")
    return p


def raise_problems(problems: list[str]) -> None:
    if problems:
        from sqlwright.config import join_problems

        raise UserError(join_problems(problems))
