"""Trainer callbacks: ``prompt.json`` in every checkpoint, and execution accuracy while training.

``DevAccuracy`` generates SQL for a fixed dev subset every N steps with the model being
trained (greedy, batched), executes gold and prediction with the evaluator's engine and
comparator, and logs ``dev_execution_accuracy`` — so it shows up in TensorBoard / W&B, in
``trainer_state.json`` and in ``sqlwright report``, and checkpoints can be picked by it.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from transformers import TrainerCallback

METRIC = "dev_execution_accuracy"


def fix_adapter_base(folder: Path, model_name: str) -> None:
    """Point a saved adapter at the model the user named (an alias or hub id, not a cache path)."""
    cfg_path = folder / "adapter_config.json"
    if not cfg_path.is_file():
        return
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    local = Path(model_name).expanduser()
    cfg["base_model_name_or_path"] = str(local.resolve()) if local.exists() else model_name
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")


def last_checkpoint(folder: Path | str) -> str | None:
    """The newest *complete* ``checkpoint-N`` in ``folder`` to resume from, or None.

    The Trainer writes ``trainer_state.json`` last when it saves a checkpoint, so a folder
    without a readable one is a save that was killed halfway (``kill -9``, a lost machine):
    resuming from it fails ("Can't find a valid checkpoint"), so it is passed over."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    found = []
    for p in folder.glob("checkpoint-*"):
        suffix = p.name.rsplit("-", 1)[-1]
        if p.is_dir() and suffix.isdigit():
            found.append((int(suffix), p))
    for _, p in sorted(found, reverse=True):
        try:
            json.loads((p / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        return str(p)
    return None


class SaveWithCheckpoint(TrainerCallback):
    """Copy ``prompt.json`` (and the resolved config) into each checkpoint; fix adapter bases."""

    def __init__(self, files: list[Path], model_name: str):
        self.files, self.model_name = files, model_name

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if ckpt.is_dir():
            for f in self.files:
                if f.is_file():
                    shutil.copy2(f, ckpt / f.name)
            fix_adapter_base(ckpt, self.model_name)


class TimeBudget(TrainerCallback):
    """Stop training (saving a checkpoint) before ``minutes`` have passed since it began: a step
    starts only if the last one's duration still fits, so a slow step cannot run over the
    budget. ``used_s``: the seconds from the start to the end of training (the save included)."""

    def __init__(self, minutes: float):
        self.seconds, self.start, self.stopped_at = minutes * 60, None, None
        self.step_start, self.used_s = None, None

    def on_train_begin(self, args, state, control, **kwargs):
        import time

        self.start = time.monotonic()

    def on_step_begin(self, args, state, control, **kwargs):
        import time

        self.step_start = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        import time

        if self.start is None:
            return
        now = time.monotonic()
        last = now - self.step_start if self.step_start is not None else 0.0
        if now - self.start + last >= self.seconds:  # the next step, as long as this one, would not fit
            control.should_training_stop = True
            control.should_save = True
            self.stopped_at = state.global_step

    def on_train_end(self, args, state, control, **kwargs):
        import time

        if self.start is not None:
            self.used_s = round(time.monotonic() - self.start, 2)


class TimeSchedule(TrainerCallback):
    """The learning-rate schedule laid over wall time instead of over a step count.

    The schedule's position is the share of ``minutes`` that has passed since training began
    (not ``step / max_steps``): warmup over the first ``warmup`` share, then ``kind`` (cosine,
    linear or constant) down to the end of the budget. With ``TimeBudget`` stopping at the same
    moment and epochs left open, a run trains as long as the budget allows on any machine —
    more steps on a fast one, fewer on a slow one — and its schedule always ends with the budget.
    It takes over the trainer's ``LambdaLR`` (every transformers schedule is one), so the logged
    learning rate is the one applied."""

    KINDS = ("cosine", "linear", "constant")

    def __init__(self, minutes: float, kind: str = "cosine", warmup: float = 0.05):
        if kind not in self.KINDS:
            raise ValueError(f"time schedule {kind!r}: choose one of {', '.join(self.KINDS)}")
        self.seconds, self.kind, self.warmup = minutes * 60, kind, warmup if 0 <= warmup < 1 else 0.05
        self.start = None

    def fraction(self) -> float:
        import time

        return 0.0 if self.start is None else min(1.0, (time.monotonic() - self.start) / self.seconds)

    def factor(self, _step: int = 0) -> float:
        import math

        f = self.fraction()
        if f < self.warmup:
            return max(f / self.warmup, 0.01)
        p = (f - self.warmup) / (1 - self.warmup)
        return {"cosine": 0.5 * (1 + math.cos(math.pi * p)), "linear": 1 - p, "constant": 1.0}[self.kind]

    def on_log(self, args, state, control, logs=None, **kwargs):
        """The progress that means something when epochs are left open: time, not steps."""
        if state.is_world_process_zero and self.start is not None:
            loss = f", loss {logs['loss']:.4f}" if logs and isinstance(logs.get("loss"), (int, float)) else ""
            print(f"training: step {state.global_step}, {self.fraction() * self.seconds / 60:.1f} of "
                  f"{self.seconds / 60:.1f} min{loss}", file=sys.stderr, flush=True)

    def on_train_begin(self, args, state, control, lr_scheduler=None, **kwargs):
        import time

        self.start = time.monotonic()
        if lr_scheduler is None or not hasattr(lr_scheduler, "lr_lambdas"):
            raise RuntimeError("TimeSchedule needs the trainer's LambdaLR scheduler")
        lr_scheduler.lr_lambdas = [self.factor for _ in lr_scheduler.lr_lambdas]
        for group, base in zip(lr_scheduler.optimizer.param_groups, lr_scheduler.base_lrs, strict=True):
            group["lr"] = base * self.factor()
        lr_scheduler._last_lr = [g["lr"] for g in lr_scheduler.optimizer.param_groups]  # what the first log shows


def training_callbacks(cfg, out: Path, resolved_name: str, style: str) -> tuple[list, TimeBudget | None, DevAccuracy | None]:
    """The callbacks every ``sqlwright train`` command uses, from its config: ``prompt.json`` and
    the resolved config in each checkpoint, the time budget (``max_minutes``), the schedule over
    time (``schedule_by_time``) and the dev execution accuracy (``dev_eval``).
    Returns (callbacks, the budget or None, the dev-accuracy callback or None)."""
    from sqlwright.train.config import dev_records

    callbacks: list = [SaveWithCheckpoint([out / "prompt.json", out / resolved_name], cfg.model)]
    budget = TimeBudget(cfg.max_minutes) if cfg.max_minutes else None
    if budget:
        callbacks.append(budget)
    if getattr(cfg, "schedule_by_time", False):  # the schedule over the minutes, epochs as many as fit
        callbacks.append(TimeSchedule(cfg.max_minutes, cfg.lr_scheduler, cfg.warmup))
    dev = None
    if cfg.dev_eval.every:
        e = cfg.dev_eval
        dev = DevAccuracy(dev_records(cfg), e.every, e.max_new_tokens, e.batch_size, e.comparator, e.timeout, style)
        callbacks.append(dev)
    return callbacks, budget, dev


class DevAccuracy(TrainerCallback):
    def __init__(self, records: list[dict], every: int, max_new_tokens: int, batch_size: int,
                 comparator: str, timeout: float, style: str):
        self.records, self.every = records, every
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        self.comparator, self.timeout, self.style = comparator, timeout, style
        self.trainer = None  # set by sft() once the trainer exists (to log through it)
        self.history: list[tuple[int, float]] = []
        self._judge = None  # started at the first evaluation, reused, closed when training ends

    @property
    def judge(self):
        if self._judge is None:
            from sqlwright.judge import Judge
            from sqlwright.types import Limits

            # a small pool of reused workers, started without forking the trainer's threads
            self._judge = Judge(self.comparator, Limits(timeout=self.timeout), workers=2, start_method="forkserver")
        return self._judge

    def on_train_end(self, args, state, control, **kwargs):
        if self._judge is not None:
            self._judge.close()
            self._judge = None

    def on_step_end(self, args, state, control, **kwargs):
        if self.every and state.global_step % self.every == 0:
            self.evaluate(state, kwargs["model"], kwargs.get("processing_class") or kwargs.get("tokenizer"))

    def evaluate(self, state, model, tokenizer) -> float | None:
        if not state.is_world_process_zero or tokenizer is None:
            return None
        acc = dev_accuracy(model, tokenizer, self.records, self.max_new_tokens, self.batch_size, self.judge, self.style)
        self.history.append((state.global_step, acc))
        print(f"step {state.global_step}: {METRIC} {acc:.3f} on {len(self.records)} questions", file=sys.stderr)
        if self.trainer is not None:
            self.trainer.log({METRIC: acc})
        return acc


def dev_accuracy(model, tokenizer, records: list[dict], max_new_tokens: int, batch_size: int,
                 judge, style: str = "messages") -> float:
    """Execution accuracy of ``model`` (greedy) on ``records`` of a built dataset, as ``judge``
    (a ``sqlwright.judge.Judge``) scores it; an answer with no SQL counts as wrong ("no SQL")."""
    import torch

    from sqlwright.infer.backend import GenerationConfig, Request
    from sqlwright.infer.hf import HFBackend
    from sqlwright.judge import Item
    from sqlwright.prompts.extract import extract_sql

    unwrapped = getattr(model, "module", model)  # DDP
    was_training = unwrapped.training
    unwrapped.eval()
    backend = HFBackend.from_loaded(unwrapped, tokenizer, batch_size=batch_size)
    requests = []
    for r in records:
        if style == "messages" and "messages" in r:
            msgs = [m for m in r["messages"] if m["role"] != "assistant"]
        else:
            msgs = [{"role": "user", "content": r["prompt"]}]
        requests.append(Request(str(r["id"]), msgs))
    gen = GenerationConfig(max_new_tokens=max_new_tokens, temperature=0.0)
    use_cache = getattr(unwrapped.config, "use_cache", True)
    unwrapped.config.use_cache = True
    try:
        with torch.no_grad():
            texts = {c.id: (c.texts[0] if c.texts else "") for c in backend.generate(requests, gen)}
    finally:
        unwrapped.config.use_cache = use_cache
        if was_training:
            unwrapped.train()
    items = [Item(r["db_path"], r["sql"], [extract_sql(texts.get(str(r["id"]), ""))]) for r in records]
    judged = judge.judge_many(items)
    correct = sum(j.candidates[0].correct for j in judged)
    return correct / len(records) if records else 0.0
