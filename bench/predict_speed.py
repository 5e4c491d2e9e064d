"""Throughput of the `hf` backend: batched generation vs one prompt at a time.

    sqlwright data build spider ../shared/data/spider --split dev -o bench/out/spider-dev --overwrite
    python bench/predict_speed.py --data bench/out/spider-dev --model smollm2-135m --n 100 --batch-size 16 \\
        --runs shared,plain,single --interleave

Greedy decoding of the first N prompts of the dataset's dev split, with the same model
loaded once, in the modes listed by ``--runs``: one after the other in that order (a mode
may repeat, to bracket the others when the machine's load drifts), or with ``--interleave``
all at once in one thread: each step runs the next batch (or prompt) of the mode that has
completed the smallest share of its prompts, so every mode's work is spread over the whole
run and sees the same load. Each mode's time is the sum of its own steps.

* ``single``: one prompt at a time, as the llama-cookbook's local path does;
* ``plain``: batched with left padding and length-sorted batches (``share_prefix=False``);
* ``shared``: batched, prompts that share a prefix (one database's system prompt + schema)
  batched together and the prefix run once per batch from a shared KV cache (the default);
* ``schema`` / ``grammar``: as ``shared``, with constrained decoding (``predict --constrain``):
  each prompt's answer limited by its database's grammar (llguidance), or by SQL syntax only.

A batched mode may name its own batch size (``shared:64``); otherwise ``--batch-size``.

Tokens counted are the generated tokens up to each sequence's own end-of-turn. Each run
records wall and process CPU seconds and the 1-minute load average before and after it.
Prints a markdown table, the speed-ups against the (first) single run, whether every mode
produced the same texts, and JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from sqlwright.infer.backend import BackendConfig, GenerationConfig, Request
from sqlwright.infer.hf import HFBackend

MODES = ("single", "plain", "shared", "schema", "grammar")
CONSTRAINED = ("schema", "grammar")


def requests_from(data: Path, split: str, n: int) -> tuple[list[Request], list[dict]]:
    from sqlwright.data.dataset import resolve_records

    rows = resolve_records(data, [json.loads(x) for x in (data / f"{split}.jsonl").read_text().splitlines()[:n]])
    return [Request(str(r["id"]), [m for m in r["messages"] if m["role"] != "assistant"]) for r in rows], rows


def constrained(reqs: list[Request], rows: list[dict], mode: str) -> list[Request]:
    """``reqs`` with each one's grammar for ``mode`` (``schema``: its database's names)."""
    from sqlwright.db.introspect import introspect_sqlite
    from sqlwright.infer.constrain import grammar_for

    schemas: dict[str, object] = {}
    out = []
    for req, r in zip(reqs, rows, strict=True):
        if mode == "schema" and r["db_path"] not in schemas:
            schemas[r["db_path"]] = introspect_sqlite(r["db_path"], r["db_id"])
        out.append(Request(req.id, req.messages, grammar=grammar_for(schemas.get(r["db_path"]), mode)))
    return out


def load1() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0]) if Path("/proc/loadavg").exists() else float("nan")


def mode_backend(backend: HFBackend, mode: str, batch_size: int, concat_cache: bool = False) -> HFBackend:
    """A backend over the already loaded model, set up for ``mode`` (``shared:64``: batch size 64)."""
    mode, _, size = mode.partition(":")
    batch_size = int(size) if size else batch_size
    b = HFBackend.from_loaded(backend.model, backend.tokenizer, batch_size=1 if mode == "single" else batch_size,
                              name=backend.cfg.model)
    b.share_prefix = mode in ("shared", *CONSTRAINED)
    b.grow_cache_in_place = not concat_cache
    return b


def decode_steps(outs: list) -> int:
    """Decoding steps the batches ran: each batch runs until its longest row ends, so a batch of
    16 costs max(completion tokens) steps of 16 rows whatever its shorter rows generated."""
    steps, i = 0, 0
    while i < len(outs):
        size = max(1, outs[i].extra.get("batch_size", 1))
        steps += max(o.completion_tokens for o in outs[i:i + size])
        i += size
    return steps


def summary(mode: str, b: HFBackend, outs: list, secs: float, cpu: float, load_before: float) -> dict:
    tokens = sum(o.completion_tokens for o in outs)
    steps = decode_steps(outs)
    shared = [o.extra.get("shared_prefix_tokens", 0) for o in outs]
    return {"mode": mode, "batch_size": b.batch_size, "seconds": round(secs, 2), "cpu_seconds": round(cpu, 2),
            "completion_tokens": tokens, "tokens_per_s": round(tokens / secs, 2),
            "decode_steps": steps, "ms_per_step": round(1000 * secs / steps, 1) if steps else None,
            "prompt_tokens": sum(o.prompt_tokens for o in outs), "shared_prefix_tokens": sum(shared),
            "load1_before": load_before, "load1_after": load1(),
            "errors": sum(o.error is not None for o in outs), "texts": {o.id: o.texts[0] for o in outs}}  # fmt: skip


def run(backend: HFBackend, reqs: dict[str, list[Request]], mode: str, batch_size: int, max_new: int,
        concat_cache: bool = False) -> dict:
    b = mode_backend(backend, mode, batch_size, concat_cache)
    load_before, t0, c0 = load1(), time.perf_counter(), time.process_time()
    outs = list(b.generate(reqs[mode.partition(":")[0]], GenerationConfig(max_new_tokens=max_new)))
    return summary(mode, b, outs, time.perf_counter() - t0, time.process_time() - c0, load_before)


def run_interleaved(backend: HFBackend, by_mode: dict[str, list[Request]], modes: list[str], batch_size: int,
                    max_new: int, concat_cache: bool = False) -> list[dict]:
    """All ``modes`` at once, a batch at a time: always the mode with the least share done."""
    load_before = load1()
    state = []
    reqs = by_mode["plain"]
    for mode in modes:
        b = mode_backend(backend, mode, batch_size, concat_cache)
        gen = b.generate(by_mode[mode.partition(":")[0]], GenerationConfig(max_new_tokens=max_new))
        state.append({"mode": mode, "b": b, "gen": gen,
                      "outs": [], "secs": 0.0, "cpu": 0.0, "pending": None})
    while live := [s for s in state if len(s["outs"]) < len(reqs)]:
        s = min(live, key=lambda s: len(s["outs"]))
        t0, c0 = time.perf_counter(), time.process_time()
        first = next(s["gen"])  # runs one batch; its other completions come without compute
        size = first.extra.get("batch_size", 1)
        batch = [first] + [next(s["gen"]) for _ in range(size - 1)]
        s["secs"] += time.perf_counter() - t0
        s["cpu"] += time.process_time() - c0
        s["outs"] += batch
        print(f"# {s['mode']}: {len(s['outs'])}/{len(reqs)} in {s['secs']:.1f} s", file=sys.stderr, flush=True)
    return [summary(s["mode"], s["b"], s["outs"], s["secs"], s["cpu"], load_before) for s in state]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--split", default="dev")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--dtype", default=None, help="float32 (default on CPU), bfloat16, ...")
    ap.add_argument("--runs", default="shared,single,plain",
                    help=f"comma-separated modes to run in this order, from {', '.join(MODES)} (repeats allowed)")
    ap.add_argument("--interleave", action="store_true", help="run the modes at once, a batch at a time")
    ap.add_argument("--concat-cache", action="store_true",
                    help="transformers' own DynamicCache (concatenated each step) instead of the in-place one")
    ap.add_argument("--batched-only", action="store_true", help="skip the (slow) one-at-a-time runs")
    ap.add_argument("--json-out", type=Path, help="also write every run (with its texts) to this file")
    args = ap.parse_args()
    modes = [m.strip() for m in args.runs.split(",") if m.strip()]
    if bad := [m for m in modes if m.partition(":")[0] not in MODES]:
        ap.error(f"unknown mode(s) {bad}; choose from {', '.join(MODES)}")
    if args.batched_only:
        modes = [m for m in modes if not m.startswith("single")]
    reqs, rows = requests_from(args.data, args.split, args.n)
    by_mode = {m: constrained(reqs, rows, m) if m in CONSTRAINED else reqs for m in MODES}
    backend = HFBackend(BackendConfig(model=args.model, batch_size=args.batch_size, dtype=args.dtype))
    device = (f"{platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
              f"torch threads {__import__('torch').get_num_threads()}")
    runs = []
    if args.interleave:
        if len(set(modes)) != len(modes):
            ap.error("--interleave runs each mode once; do not repeat modes")
        runs = run_interleaved(backend, by_mode, modes, args.batch_size, args.max_new_tokens, args.concat_cache)
    for mode in [] if args.interleave else modes:
        runs.append(run(backend, by_mode, mode, args.batch_size, args.max_new_tokens, args.concat_cache))
        r = runs[-1]
        print(f"# {mode}: {r['seconds']} s, {r['tokens_per_s']} tokens/s, load {r['load1_before']} -> {r['load1_after']}",
              flush=True)
    if args.json_out:
        args.json_out.write_text(json.dumps({"device": device, "model": args.model, "runs": runs}, indent=1))

    print(f"\ndevice: {device}; model {args.model} ({backend.dtype}); {len(reqs)} prompts; greedy; "
          f"max_new_tokens {args.max_new_tokens}; {'interleaved' if args.interleave else 'one run after another'}; "
          f"KV cache {'concatenated (transformers DynamicCache)' if args.concat_cache else 'written in place'}\n")
    print("| run | mode | seconds | CPU seconds | completion tokens | tokens/s | decoding steps | ms per step | load (1 min) before → after |")
    print("|---|---|---|---|---|---|---|---|---|")
    for i, r in enumerate(runs, 1):
        kind = r["mode"].partition(":")[0]
        sharing = {"shared": "shared prefix", "plain": "no sharing"}.get(kind, f"shared prefix, constrained: {kind}")
        name = "one at a time" if kind == "single" else f"batched ({r['batch_size']}), {sharing}"
        print(f"| {i} | {name} | {r['seconds']} | {r['cpu_seconds']} | {r['completion_tokens']} | "
              f"{r['tokens_per_s']} | {r['decode_steps']} | {r['ms_per_step']} | {r['load1_before']} → {r['load1_after']} |")
    single = next((r for r in runs if r["mode"].startswith("single")), None)
    if single:
        print()
        for i, r in enumerate(runs, 1):
            if r is not single:
                print(f"run {i} ({r['mode']}) vs one at a time: {r['tokens_per_s'] / single['tokens_per_s']:.2f}x "
                      f"wall, {single['cpu_seconds'] / r['cpu_seconds'] * r['completion_tokens'] / single['completion_tokens']:.2f}x CPU")
    ref = runs[0]["texts"]
    for i, r in enumerate(runs[1:], 2):
        same = sum(r["texts"].get(k) == v for k, v in ref.items())
        print(f"run {i} ({r['mode']}) texts identical to run 1 ({runs[0]['mode']}): {same}/{len(ref)}")
    for r in runs:
        r.pop("texts")
    print(json.dumps({"runs": runs, "device": device}))


if __name__ == "__main__":
    main()
