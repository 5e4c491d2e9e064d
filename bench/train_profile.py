"""Where the CPU time of one SFT step goes, on the quickstart's own data (short packed rows).

    python bench/train_profile.py --out /tmp/prof                     # the quickstart's recipe
    python bench/train_profile.py --out /tmp/prof --set precision=fp32 --set lora.target_modules=q_proj,v_proj

Builds the quickstart's dataset from the embedded Spider slice (cookbook prompt, compact
schema), trains the CPU recipe (``quickstart.run.RECIPE``) for ``--steps`` steps through
``sqlwright.train.sft.sft`` and profiles steps 3 to ``--steps`` with ``torch.profiler``. Prints
the ops that take the most CPU time, the time per step split into forward, backward,
optimizer and data collation, and the training tokens per second of the profiled steps
(measured without the profiler, on the same run's steps before it starts).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def _set(cfg, key: str, value: str) -> None:
    import yaml

    obj, *path = key.split(".")
    target = cfg if not path else getattr(cfg, obj)
    name = path[-1] if path else obj
    v = yaml.safe_load(value)
    if name == "target_modules" and isinstance(v, str) and "," in v:
        v = v.split(",")
    setattr(target, name, v)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--set", action="append", default=[], help="KEY=VALUE on the recipe's TrainConfig (lora.r=8)")
    ap.add_argument("--no-profile", action="store_true", help="only time the steps")
    ap.add_argument("--trl-head", action="store_true",
                    help="leave trl's fused LM head scoring every position on the CPU (sqlwright before this change)")
    args = ap.parse_args()

    import torch
    from transformers import TrainerCallback

    import sqlwright.train.sft as sft_mod
    from sqlwright.quickstart.run import QuickstartConfig, _build, _copy_benchmark, recipe_config

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    qc = QuickstartConfig(out=str(out / "qs"), progress=False)
    (out / "qs").mkdir(exist_ok=True)
    data = _build(out / "qs", _copy_benchmark(out / "qs", 100), qc)
    import shutil

    shutil.rmtree(out / "run", ignore_errors=True)  # a fresh run: sft() would resume from its checkpoints
    tc = recipe_config(str(data), str(out / "run"))
    tc.max_steps, tc.save_steps, tc.logging_steps, tc.plot = args.steps, 10_000, 1, False
    for kv in args.set:
        k, v = kv.split("=", 1)
        _set(tc, k, v)

    if args.trl_head:
        sft_mod.score_label_positions_only = lambda: None
    step_times: list[float] = []
    phases = {"forward": 0.0, "backward": 0.0, "optimizer": 0.0}
    prof_box: dict = {}

    class Timing(TrainerCallback):
        def on_step_begin(self, a, state, control, **kw):
            self.t = time.perf_counter()
            if state.global_step == 2 and not args.no_profile:
                p = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
                p.__enter__()
                prof_box["p"] = p

        def on_step_end(self, a, state, control, **kw):
            step_times.append(time.perf_counter() - self.t)

    import sqlwright.train.callbacks as cb_mod

    orig = cb_mod.training_callbacks

    def callbacks(*a, **k):
        cbs, budget, dev = orig(*a, **k)
        return cbs + [Timing()], budget, dev

    cb_mod.training_callbacks = callbacks  # sft() imports it when it runs
    # the phases of a step, timed around the trainer's own calls
    from trl import SFTTrainer

    orig_loss = SFTTrainer.compute_loss

    def timed_loss(self, *a, **k):
        t = time.perf_counter()
        r = orig_loss(self, *a, **k)
        phases["forward"] += time.perf_counter() - t
        return r

    SFTTrainer.compute_loss = timed_loss
    orig_backward = None

    def patch_accelerator(trainer):
        nonlocal orig_backward
        acc = trainer.accelerator
        orig_backward = acc.backward

        def backward(loss, **k):
            t = time.perf_counter()
            orig_backward(loss, **k)
            phases["backward"] += time.perf_counter() - t

        acc.backward = backward

    orig_train = SFTTrainer.train

    def train(self, *a, **k):
        patch_accelerator(self)
        opt_step = None

        orig_create = self.create_optimizer

        def create_optimizer(*aa, **kk):
            o = orig_create(*aa, **kk)
            nonlocal opt_step
            opt_step = o.step

            def step(*s, **ss):
                t = time.perf_counter()
                r = opt_step(*s, **ss)
                phases["optimizer"] += time.perf_counter() - t
                return r

            o.step = step
            return o

        self.create_optimizer = create_optimizer
        return orig_train(self, *a, **k)

    SFTTrainer.train = train
    result = sft_mod.sft(tc, source="bench")
    p = prof_box.get("p")
    if p is not None:
        p.__exit__(None, None, None)
        table = p.key_averages().table(sort_by="self_cpu_time_total", row_limit=30)
        print(table)
        (out / "profile.txt").write_text(table)
    hist = result.trainer.state.log_history
    tokens = [h.get("num_tokens") for h in hist if "num_tokens" in h]
    n = len(step_times)
    total = sum(step_times)
    per_step_tokens = tokens[-1] / result.global_step if tokens and result.global_step else None  # cumulative count
    losses = [h["loss"] for h in hist if "loss" in h]
    later = step_times[1:] or step_times
    summary = {
        "set": args.set, "trl_head": args.trl_head, "profiled": not args.no_profile, "losses": losses[:4], "steps": n, "step_s": [round(s, 3) for s in step_times],
        "mean_step_s_first_2": round(sum(step_times[:2]) / 2, 3) if n >= 2 else None,
        "phases_s_per_step": {k: round(v / max(n, 1), 3) for k, v in phases.items()},
        "tokens_per_step": per_step_tokens,
        "tokens_per_s_unprofiled": round(per_step_tokens / (sum(step_times[:2]) / 2), 1) if per_step_tokens and n >= 2 else None,
        "torch_threads": torch.get_num_threads(),
        "total_s": round(total, 1),
    }
    if args.no_profile and per_step_tokens and n:
        summary["tokens_per_s_after_first_step"] = round(per_step_tokens / (sum(later) / len(later)), 1)
    print(json.dumps(summary, indent=2))
    with open(out / "summary.jsonl", "a") as f:
        f.write(json.dumps(summary) + "\n")


if __name__ == "__main__":
    main()
