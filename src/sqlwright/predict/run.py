"""``sqlwright predict``: run a model over a dataset built by ``sqlwright data build`` (or a
benchmark with a ``prompt.json``) and write predictions that ``sqlwright eval`` scores.

Prompts come from the dataset's ``prompt.json`` so prediction matches training. Each
finished example is appended to ``--out`` at once (id, db_id, raw text, extracted SQL, all
samples when n > 1, the vote, tokens, latency); a rerun continues where the last stopped.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlwright.errors import UserError
from sqlwright.infer.backend import (
    BackendConfig,
    Completion,
    GenerationConfig,
    Request,
    load_backend,
)
from sqlwright.infer.output import PredictionWriter, read_done
from sqlwright.infer.tokens import with_token_counter
from sqlwright.judge import Judge, check_comparator
from sqlwright.progress import progress_bar
from sqlwright.prompts.extract import extract_sql
from sqlwright.prompts.spec import PromptSpec
from sqlwright.types import Limits

VOTES = ("none", "execution")


@dataclass
class PredictConfig:
    backend: BackendConfig
    out: str  # predictions JSONL (appended; reruns resume)
    data: str | None = None  # a built dataset folder (prompt.json + <split>.jsonl)
    split: str | None = None  # default: dev, validation or test when present, else train
    benchmark: str | None = None  # or a benchmark folder + --source + --prompt
    source: str = "spider"
    prompt: str | None = None  # prompt.json (a dataset or model folder, or the file)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    vote: str = "none"
    comparator: str = "bird"  # how --vote execution groups samples: the comparator you score with
    vote_timeout: float = 10.0
    limit: int | None = None  # first N examples only
    progress: bool = True


@dataclass
class Item:
    request: Request
    db_id: str
    db_path: str | None


def _from_dataset(cfg: PredictConfig) -> list[Item]:
    data = Path(cfg.data)
    spec = PromptSpec.load(data)  # a clear error when prompt.json is missing
    split = cfg.split or next((s for s in ("dev", "validation", "test", "train") if (data / f"{s}.jsonl").is_file()), None)
    path = data / f"{split}.jsonl"
    if split is None or not path.is_file():
        have = sorted(p.stem for p in data.glob("*.jsonl"))
        raise UserError(f"{data}: no split {split!r} (has: {', '.join(have) or 'none'}); pass --split")
    items = []
    for line in path.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        if spec.style == "messages":
            msgs = [m for m in r["messages"] if m["role"] != "assistant"]
        else:
            msgs = [{"role": "user", "content": r["prompt"]}]
        items.append(Item(Request(str(r["id"]), msgs), r["db_id"], r.get("db_path")))
    return items


def _from_benchmark(cfg: PredictConfig) -> list[Item]:
    from sqlwright.data.sources import SourceConfig, load_source

    if not cfg.prompt:
        raise UserError("predicting on --benchmark needs --prompt: the prompt.json of the dataset the model was trained on (or its folder)")
    spec = with_token_counter(PromptSpec.load(cfg.prompt))
    split = cfg.split or "dev"
    data = load_source(cfg.source, SourceConfig(path=cfg.benchmark, splits=[split], examples=spec.examples, rows=spec.rows))
    items = []
    for ex in data.splits[split]:
        rendered, _ = spec.render(ex, data.schemas[ex.db_id], target=False)
        msgs = rendered.get("messages") or [{"role": "user", "content": rendered["prompt"]}]
        items.append(Item(Request(ex.id, msgs), ex.db_id, ex.db_path))
    return items


def _record(item: Item, c: Completion, judge: Judge | None) -> dict:
    sqls = [extract_sql(t) for t in c.texts]
    rec = {"id": item.request.id, "db_id": item.db_id, "sql": sqls[0] if sqls else "", "raw": c.texts[0] if c.texts else ""}
    if len(c.texts) > 1:
        rec["samples"], rec["sqls"] = c.texts, sqls
        if judge is not None and item.db_path:
            j = judge.judge(item.db_path, None, sqls)
            rec["sql"], rec["raw"] = sqls[j.chosen], c.texts[j.chosen]
            rec["vote"] = {"chosen": j.chosen, "groups": j.groups, "failed": j.failed, "comparator": judge.comparator}
    rec.update(prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens, latency=round(c.latency, 4))
    if c.error:
        rec["error"] = c.error
    return rec


def predict(cfg: PredictConfig) -> dict:
    if cfg.vote not in VOTES:
        raise UserError(f"--vote must be one of {', '.join(VOTES)}, not {cfg.vote!r}")
    check_comparator(cfg.comparator)
    if cfg.vote == "execution" and cfg.generation.n < 2:
        raise UserError("--vote execution needs several samples: pass --n 8 (and a --temperature above 0)")
    if (cfg.data is None) == (cfg.benchmark is None):
        raise UserError("give either --data DIR (a dataset from `sqlwright data build`) or --benchmark DIR with --prompt")
    items = _from_dataset(cfg) if cfg.data else _from_benchmark(cfg)
    if cfg.limit:
        items = items[: cfg.limit]
    out = Path(cfg.out)
    done = read_done(out)
    todo = [it for it in items if it.request.id not in done]
    summary = {"total": len(items), "already_done": len(items) - len(todo), "written": 0, "errors": 0,
               "completion_tokens": 0, "out": str(out)}  # fmt: skip
    if not todo:
        return summary
    backend = load_backend(cfg.backend)
    by_id = {it.request.id: it for it in todo}
    writer = PredictionWriter(out)
    judge = Judge(cfg.comparator, Limits(timeout=cfg.vote_timeout), workers=0) if cfg.vote == "execution" else None
    t0 = time.monotonic()
    try:
        with progress_bar(len(todo), "predicting", cfg.progress, unit="examples") as advance:
            for c in backend.generate([it.request for it in todo], cfg.generation):
                writer.write(_record(by_id[c.id], c, judge))
                summary["written"] += 1
                summary["errors"] += bool(c.error)
                summary["completion_tokens"] += c.completion_tokens
                advance(1, note=f"{summary['completion_tokens'] / max(1e-9, time.monotonic() - t0):,.0f} tok/s")
    finally:
        writer.close()
        backend.close()
        if judge is not None:
            judge.close()
    summary["seconds"] = round(time.monotonic() - t0, 2)
    summary["tokens_per_second"] = round(summary["completion_tokens"] / max(1e-9, summary["seconds"]), 2)
    return summary
