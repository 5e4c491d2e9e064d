"""``sqlwright train sft``: supervised fine-tuning (full, LoRA, QLoRA) on a built dataset.

A thin layer over trl's ``SFTTrainer`` + peft + accelerate. What sqlwright adds:

* one typed config (``TrainConfig``), checked as a whole before any model is loaded;
* the dataset's ``prompt.json`` saved with every checkpoint and with the final model, so
  ``sqlwright predict`` builds exactly the training prompts;
* throughput defaults: best-fit packing, padding-free (examples in a packed row do not attend
  to each other: position ids restart per example), loss on the assistant's tokens only;
  flash attention / Liger kernels when installed on CUDA; bf16 and tf32 on GPUs;
* automatic resume from the last checkpoint of the same run; the resolved config, a
  ``train_summary.json`` and a ``loss.png`` in the output directory;
* optional execution accuracy on a fixed dev subset every N steps (``dev_eval.every``).

Under ``accelerate launch`` or ``torchrun`` the same function runs data parallel (DDP, FSDP2 or
DeepSpeed per the accelerate config); only the main process writes files.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from sqlwright.config import to_dict
from sqlwright.errors import UserError, first_line
from sqlwright.files import atomic_path, atomic_write_text
from sqlwright.train.config import (
    RESOLVED_NAME,
    TrainConfig,
    check,
    cuda_available,
    raise_problems,
)


@dataclass
class SFTResult:
    output_dir: Path
    global_step: int
    train_loss: float | None
    tokens_per_second: float | None
    resumed_from: str | None
    dev_accuracy: list[tuple[int, float]]
    trainer: object = None  # the trl SFTTrainer (for Python callers and tests)


def _precision(cfg: TrainConfig) -> str:
    if cfg.precision != "auto":
        return cfg.precision
    import torch

    if cuda_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    # CPUs with native bfloat16 (AVX512-BF16, AMX): bf16 autocast trains faster (bench/RESULTS.md)
    native = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)() or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    return "bf16" if native else "fp32"


def _attention(cfg: TrainConfig) -> str:
    if cfg.attention != "auto":
        return cfg.attention
    import importlib.util

    if cuda_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def _liger(cfg: TrainConfig) -> bool:
    if cfg.liger is not None:
        return cfg.liger
    import importlib.util

    return cuda_available() and importlib.util.find_spec("liger_kernel") is not None


def load_model_and_tokenizer(cfg: TrainConfig, precision: str, from_adapter: bool = False):
    """(model, tokenizer) for ``cfg.model``. An adapter is refused unless ``from_adapter``:
    then its base is loaded and the adapter applied on top, trainable in ``lora`` mode (training
    goes on with the same adapter) and merged into the weights in ``full`` mode."""
    import torch
    import transformers

    from sqlwright.infer.hf import forget_gguf_quantization, load_tokenizer
    from sqlwright.infer.models import resolve_model

    resolved = resolve_model(cfg.model)
    if resolved.adapter and not from_adapter:
        raise UserError(f"model {cfg.model}: is a LoRA adapter; merge it first (sqlwright merge) or train from its base {resolved.base}")
    if resolved.adapter and cfg.mode == "qlora":
        raise UserError(f"model {cfg.model}: is a LoRA adapter; QLoRA starts from a base model: merge it first (sqlwright merge) or use mode lora")
    gguf = {"gguf_file": resolved.gguf_file} if resolved.gguf_file else {}
    tok = load_tokenizer(resolved, f"model {cfg.model}")
    if not getattr(tok, "chat_template", None):
        raise UserError(f"model {cfg.model}: its tokenizer has no chat template; use an instruct/chat model or set one")
    kwargs: dict = {"attn_implementation": _attention(cfg), **gguf}
    # LoRA/QLoRA: frozen base in the compute dtype; full: fp32 master weights (+ bf16 autocast)
    if cfg.mode in ("lora", "qlora") and precision in ("bf16", "fp16"):
        kwargs["dtype"] = torch.bfloat16 if precision == "bf16" else torch.float16
    else:
        kwargs["dtype"] = torch.float32
    if cfg.mode == "qlora":
        from accelerate import PartialState

        kwargs["device_map"] = {"": PartialState().local_process_index}  # each rank its own GPU
        kwargs["quantization_config"] = transformers.BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16)
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(resolved.path_or_id, **kwargs)
    except (OSError, ValueError) as e:
        raise UserError(f"model {cfg.model}: cannot load ({first_line(e)})") from None
    if resolved.gguf_file:
        forget_gguf_quantization(model)
    if resolved.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, resolved.adapter, is_trainable=cfg.mode == "lora")
        if cfg.mode == "full":
            model = model.merge_and_unload()
    return model, tok


def _peft_config(cfg: TrainConfig):
    if cfg.mode == "full":
        return None
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=cfg.lora.target_modules, task_type="CAUSAL_LM")


def shared_trl_args(cfg, precision: str) -> dict:
    """The trl config arguments every ``sqlwright train`` command sets the same way from its
    own keys (``schedule_by_time``: epochs left open, the schedule driven by ``TimeSchedule``)."""
    by_time = getattr(cfg, "schedule_by_time", False)
    return dict(
        output_dir=cfg.output_dir,
        num_train_epochs=TIME_EPOCHS if by_time else cfg.epochs,
        max_steps=-1 if by_time else cfg.max_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type="constant" if by_time else cfg.lr_scheduler,  # TimeSchedule drives it
        warmup_steps=0 if by_time else cfg.warmup,
        weight_decay=cfg.weight_decay,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_liger_kernel=_liger(cfg),
        seed=cfg.seed,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        report_to=list(cfg.report_to) or "none",
        use_cpu=not cuda_available(),
        ddp_find_unused_parameters=False,
        **({"disable_tqdm": True} if by_time else {}),  # a step bar over open epochs says nothing; TimeSchedule prints time
    )


def build_trl_config(config_cls, cfg, args: dict):
    """``config_cls(**args)`` with activation checkpointing and the ``trainer:`` extras added;
    a setting trl rejects is one line (exit 2)."""
    # transformers >= 5 calls it activation checkpointing (the old name still works, with a warning)
    ckpt = "activation_checkpointing" if "activation_checkpointing" in config_cls.__dataclass_fields__ else "gradient_checkpointing"
    args[ckpt] = cfg.gradient_checkpointing
    if cfg.gradient_checkpointing:
        args[f"{ckpt}_kwargs"] = {"use_reentrant": False}
    args.update(cfg.trainer)
    try:
        return config_cls(**args)
    except (ValueError, TypeError) as e:
        raise UserError(f"trainer settings rejected by trl: {e}") from None


def trl_config(cfg: TrainConfig, precision: str):
    from trl import SFTConfig

    args = shared_trl_args(cfg, precision)
    args.update(max_length=cfg.max_length, packing=cfg.packing, packing_strategy="bfd", completion_only_loss=True,
                tf32=True if (cuda_available() and precision != "fp32") else None)
    if not cfg.packing and cfg.group_by_length:
        args["train_sampling_strategy"] = "group_by_length"
    return build_trl_config(SFTConfig, cfg, args)


def score_label_positions_only() -> None:
    """Make trl's fused LM head score only the positions that have a label on every device.

    trl (1.16) projects through the LM head, in vocabulary tiles, only the labelled positions on
    Triton devices, but every position elsewhere, to keep tile shapes fixed for compilers that
    recompile on a new shape (Neuron). On the CPU in eager mode a fixed shape buys nothing: with
    completion-only loss on short prompts, about four positions in five are prompt tokens
    without a label, and scoring them took 40% of a step (bench/train_profile.py,
    bench/RESULTS.md). The decision is the module-level ``_use_triton`` that
    ``trl.trainer.utils`` imported; only that name is replaced, so the kernel keeps choosing
    Triton or plain torch for itself. Idempotent; does nothing on a trl without that name."""
    import trl.trainer.utils as trl_utils

    current = getattr(trl_utils, "_use_triton", None)
    if current is None or getattr(current, "_sqlwright", False):
        return

    def compact(device) -> bool:
        return device.type == "cpu" or current(device)

    compact._sqlwright = True
    trl_utils._use_triton = compact


# epochs left open under schedule_by_time: the time budget, not the epoch count, ends training
TIME_EPOCHS = 1000


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def sft(cfg: TrainConfig, source: str = "config") -> SFTResult:
    try:
        import trl  # noqa: F401
    except ImportError:
        raise UserError("training needs trl, peft and torch: pip install 'sqlwright[train]'") from None
    raise_problems(check(cfg, source))
    from trl import SFTTrainer

    score_label_positions_only()

    from sqlwright.prompts.spec import PromptSpec
    from sqlwright.train.callbacks import fix_adapter_base, last_checkpoint, training_callbacks
    from sqlwright.train.data import sft_dataset

    out = Path(cfg.output_dir)
    spec = PromptSpec.load(cfg.data)
    precision = _precision(cfg)
    if _is_main():
        out.mkdir(parents=True, exist_ok=True)
        _write_resolved(cfg, out)
        spec.save(out / "prompt.json")
    # the training arguments first: they set up the distributed state, which FSDP's rank-0-only
    # loading and DeepSpeed ZeRO-3's sharded initialisation need before from_pretrained runs
    args = trl_config(cfg, precision)
    model, tok = load_model_and_tokenizer(cfg, precision)
    dataset, too_long = sft_dataset(cfg.data, cfg.split, tok, cfg.max_length, cfg.max_examples, cfg.seed)
    if too_long and _is_main():
        print(f"sqlwright: left out {too_long} examples longer than max_length {cfg.max_length} tokens", file=sys.stderr)
    callbacks, budget, dev = training_callbacks(cfg, out, RESOLVED_NAME, spec.style)

    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset,
                         processing_class=tok, peft_config=_peft_config(cfg), callbacks=callbacks)
    if dev is not None:
        dev.trainer = trainer
    last = last_checkpoint(out)
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=last)
    wall = time.perf_counter() - start
    if dev is not None and (not dev.history or dev.history[-1][0] != trainer.state.global_step):
        dev.evaluate(trainer.state, trainer.model, tok)

    if getattr(trainer, "is_fsdp_enabled", False):  # sharded checkpoints for resuming, one full model at the end
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    trainer.save_model(str(out))
    tokens = _trained_tokens(trainer)
    if trainer.is_world_process_zero():
        tok.save_pretrained(str(out))
        fix_adapter_base(out, cfg.model)
        summary = {
            "global_step": trainer.state.global_step,
            "train_loss": result.training_loss,
            "train_runtime_s": round(wall, 2),
            "train_tokens": tokens,
            "tokens_per_second": round(tokens / wall, 2) if tokens and wall else None,
            "resumed_from": last,
            "examples": len(dataset),
            "stopped_by_time_budget": budget.stopped_at is not None if budget else False,
            "time_budget_used_s": budget.used_s if budget else None,
            "examples_too_long": too_long,
            "precision": precision,
            "mode": cfg.mode,
            "world_size": trainer.args.world_size,
            "dev_execution_accuracy": dev.history if dev else [],
        }
        (out / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        if cfg.plot:
            plot_loss(trainer.state.log_history, out / "loss.png")
    return SFTResult(out, trainer.state.global_step, result.training_loss,
                     round(tokens / wall, 2) if tokens and wall else None, last,
                     dev.history if dev else [], trainer)


def _trained_tokens(trainer) -> int | None:
    """Tokens seen in this process's run (trl logs ``num_tokens``, cumulative over all ranks)."""
    seen = [h["num_tokens"] for h in trainer.state.log_history if "num_tokens" in h]
    return int(seen[-1]) if seen else None


def _write_resolved(cfg: TrainConfig, out: Path) -> None:
    import yaml

    atomic_write_text(out / RESOLVED_NAME, yaml.safe_dump(to_dict(cfg), sort_keys=False))


def series(history: list[dict], key: str) -> list[tuple]:
    """(step, value) of ``key`` in a Trainer's ``log_history``."""
    return [(h["step"], h[key]) for h in history if key in h and "step" in h]


def save_plot(path: Path, title: str, draw) -> None:
    """A 7x4 PNG at ``path`` (written atomically): ``draw(fig, ax)`` draws on it. Nothing when
    matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    draw(fig, ax)
    ax.set_xlabel("step")
    ax.set_title(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def plot_loss(history: list[dict], path: Path) -> None:
    """Training loss (and dev execution accuracy when logged) against the step."""
    from sqlwright.train.callbacks import METRIC

    loss, acc = series(history, "loss"), series(history, METRIC)
    if not loss:
        return

    def draw(fig, ax):
        ax.plot(*zip(*loss, strict=True), label="training loss", color="tab:blue")
        ax.set_ylabel("loss")
        if acc:
            ax2 = ax.twinx()
            ax2.plot(*zip(*acc, strict=True), "o-", color="tab:green", label="dev execution accuracy")
            ax2.set_ylabel("dev execution accuracy")
            ax2.set_ylim(0, 1)

    save_plot(path, "sqlwright train sft", draw)
