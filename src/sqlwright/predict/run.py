"""``sqlwright predict``: run a model over a dataset built by ``sqlwright data build`` (or a
benchmark with a ``prompt.json``) and write predictions that ``sqlwright eval`` scores.

Prompts come from the dataset's ``prompt.json`` so prediction matches training. Each
finished example is appended to ``--out`` at once (id, db_id, raw text, extracted SQL, all
samples when n > 1, the vote, tokens, latency); a rerun continues where the last stopped.
A rerun also retries the predictions that failed (a record with ``"error"``: the server was
down, the request gave up after its retries): their lines are dropped from ``--out`` (the file
is rewritten atomically, finished lines kept as they were) and the new answers appended, so
each id keeps one line and ``sqlwright eval`` reads the file as it is.
The resolved config is written beside it, to ``<out>.config.yaml`` (``--config`` reads it back).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from sqlwright.config import opt, validate, write_config
from sqlwright.errors import UserError
from sqlwright.files import JsonlAppender, atomic_write_jsonl, iter_jsonl, read_log
from sqlwright.infer.backend import (
    BackendConfig,
    Completion,
    GenerationConfig,
    Request,
    load_backend,
)
from sqlwright.infer.tokens import with_token_counter
from sqlwright.judge import Judge, check_comparator
from sqlwright.progress import progress_bar
from sqlwright.prompts.extract import extract_sql
from sqlwright.prompts.spec import PromptSpec
from sqlwright.types import Limits

VOTES = ("none", "execution")


@dataclass
class PredictConfig:
    backend: BackendConfig = opt(flatten=True)
    out: str = opt(help="Predictions JSONL (a rerun resumes it); the resolved config goes beside it, in <out>.config.yaml.", short="-o")
    data: str | None = opt(None, "Dataset folder from `sqlwright data build` (uses its prompt.json).")
    split: str | None = opt(None, "Split to predict (default: dev/validation/test when present).")
    benchmark: str | None = opt(None, "Or a benchmark folder, with --source and --prompt.")
    source: str = opt("spider", "Source of --benchmark: spider or bird.")
    prompt: str | None = opt(None, "prompt.json (file, or a dataset/model folder holding it).")
    generation: GenerationConfig = opt(factory=GenerationConfig, flatten=True)
    vote: str = opt("none", "none, or execution (self-consistency over the n samples).")
    comparator: str = opt("bird", "How --vote execution groups samples: the comparator you score with.")
    vote_timeout: float = opt(10.0, "Seconds per query when voting by execution.")
    limit: int | None = opt(None, "Only the first N questions.")
    progress: bool = opt(True, "Show a progress bar.")
    db_root: str | None = opt(None, "Folder holding the databases (<db_id>/<db_id>.sqlite) on this machine, when not where the dataset records them.")

    def check(self) -> list[str]:
        p = []
        if self.vote not in VOTES:
            p.append(f"--vote must be one of {', '.join(VOTES)}, not {self.vote!r}")
        try:
            check_comparator(self.comparator)
        except UserError as e:
            p.append(str(e))
        if self.vote == "execution" and self.generation.n < 2:
            p.append("--vote execution needs several samples: pass --n 8 (and a --temperature above 0)")
        if (self.data is None) == (self.benchmark is None):
            p.append("give either --data DIR (a dataset from `sqlwright data build`) or --benchmark DIR with --prompt")
        return p


def config_path(out: str | Path) -> Path:
    """Where ``predict`` writes its resolved config: beside the predictions, ``<out>.config.yaml``."""
    out = Path(out)
    return out.with_name(f"{out.name}.config.yaml")


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
    rebuild = "rebuild it with `sqlwright data build`"
    items = []
    for n, r in iter_jsonl(path, what="dataset split", hint=rebuild):
        try:
            if spec.style == "messages":
                msgs = [m for m in r["messages"] if m["role"] != "assistant"]
            else:
                msgs = [{"role": "user", "content": r["prompt"]}]
            items.append(Item(Request(str(r["id"]), msgs), r["db_id"], r.get("db_path")))
        except (KeyError, TypeError):
            need = "'messages'" if spec.style == "messages" else "'prompt'"
            raise UserError(f"{path}:{n}: not a dataset record (needs 'id', 'db_id' and {need}, as prompt.json says); {rebuild}") from None
    return items


def _resolve_databases(cfg: PredictConfig, items: list[Item]) -> list[Item]:
    """Each item's database as this machine has it (the dataset's recorded root or --db-root);
    voting executes on them, so a missing one is an error before the model loads."""
    from sqlwright.data.dataset import resolve_records

    refs = [{"db_id": it.db_id, "db_path": it.db_path} for it in items]
    for it, r in zip(items, resolve_records(cfg.data, refs, cfg.db_root, require=cfg.vote == "execution"), strict=True):
        it.db_path = r["db_path"]
    return items


def _from_benchmark(cfg: PredictConfig) -> list[Item]:
    from sqlwright.data.sources import SourceConfig, load_source

    if not cfg.prompt:
        raise UserError("predicting on --benchmark needs --prompt: the prompt.json of the dataset the model was trained on (or its folder)")
    spec = with_token_counter(PromptSpec.load(cfg.prompt))
    split = cfg.split or "dev"
    data = load_source(cfg.source, SourceConfig(path=cfg.benchmark, splits=[split], db_root=cfg.db_root,
                                                examples=spec.examples, rows=spec.rows))
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
    validate(cfg)
    items = _from_dataset(cfg) if cfg.data else _from_benchmark(cfg)
    if cfg.limit:
        items = items[: cfg.limit]
    out = Path(cfg.out)
    earlier = read_log(out, what="predictions file", hint="is --out pointing at another file?")
    finished = {str(r["id"]) for r in earlier if not r.get("error")}
    failed = {str(r["id"]) for r in earlier if r.get("error")} - finished
    todo = [it for it in items if it.request.id not in finished]
    retry = {it.request.id for it in todo} & failed
    summary = {"total": len(items), "already_done": len(items) - len(todo), "retried": len(retry), "written": 0,
               "errors": 0, "completion_tokens": 0, "out": str(out)}  # fmt: skip
    if not todo:
        return summary
    if cfg.data:
        todo = _resolve_databases(cfg, todo)
    backend = load_backend(cfg.backend)
    write_config(cfg, config_path(out))  # the resolved config: `sqlwright predict --config` repeats the run
    by_id = {it.request.id: it for it in todo}
    if retry:  # their failed lines go; the new answers are appended below
        atomic_write_jsonl(out, [r for r in earlier if str(r["id"]) not in retry])
    writer = JsonlAppender(out)
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
