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

Execution-guided inference (``--select``, ``--refine``; see ``sqlwright.predict.guided``):
the samples are selected and the answer revised through the judge. The questions that need
another round are generated together, one ``backend.generate`` call per round (so hf batches
them); a question's record is appended only when all its rounds are done, so an interrupted
run loses only the questions still in a round, and a rerun asks them again from the start.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from sqlwright.config import opt, validate, write_config
from sqlwright.db.introspect import introspect_sqlite
from sqlwright.db.urls import mask_url
from sqlwright.errors import UserError, did_you_mean
from sqlwright.eval.evaluate import guided_summary
from sqlwright.files import JsonlAppender, atomic_write_jsonl, iter_jsonl, read_log
from sqlwright.infer.backend import (
    BackendConfig,
    GenerationConfig,
    Request,
    load_backend,
)
from sqlwright.infer.constrain import CONSTRAIN_MODES
from sqlwright.infer.tokens import with_token_counter
from sqlwright.judge import Judge, check_comparator
from sqlwright.predict.guided import REFINE_UNTIL, SELECTS, Conversation, Guidance
from sqlwright.progress import progress_bar
from sqlwright.prompts.spec import PromptSpec
from sqlwright.types import Limits, Schema

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
    vote: str = opt("none", "none, or execution (self-consistency over the n samples; the same as --select vote).")
    select: str | None = opt(None, "Choose among the --n samples by execution: vote (self-consistency), first-valid "
                                   "(the first that compiles and runs) or vote-valid (vote among those that compile).")
    refine: int = opt(0, "Self-correction: up to K more rounds in which the model sees its SQL's execution "
                         "(the error, 0 rows, or the first rows) and revises it.")
    refine_until: str = opt("rows", "When a round's answer is final: rows (it runs and returns rows), ok (it runs), "
                                    "or unchanged (the model repeats its SQL; every result is shown to it).")
    constrain: str = opt("none", "Constrained decoding: grammar (answers are SQL that parses) or schema (... naming only "
                         "the database's tables and columns); hf and vllm. An openai API cannot be constrained: its "
                         "answers are checked against the grammar afterwards.")
    comparator: str = opt("bird", "How --select vote / vote-valid group samples: the comparator you score with.")
    vote_timeout: float = opt(10.0, "Seconds per query when executing samples (--select, --refine).")
    limit: int | None = opt(None, "Only the first N questions.")
    progress: bool = opt(True, "Show a progress bar.")
    db_root: str | None = opt(None, "Folder holding the databases (<db_id>/<db_id>.sqlite) on this machine, when not where the dataset records them.")
    db_url: str | None = opt(None, "Or the databases on a server or in DuckDB files (--select, --refine, --constrain schema): "
                                   "a URL template with {db_id}, e.g. 'postgresql://user@host:5432/{db_id}'.")

    def check(self) -> list[str]:
        p = []
        if self.db_url is not None:
            from sqlwright.db.urls import check_template

            if problem := check_template(self.db_url):
                p.append(problem)
        if self.vote not in VOTES:
            p.append(f"--vote must be one of {', '.join(VOTES)}, not {self.vote!r}")
        try:
            check_comparator(self.comparator)
        except UserError as e:
            p.append(str(e))
        if self.vote == "execution" and self.generation.n < 2:
            p.append("--vote execution needs several samples: pass --n 8 (and a --temperature above 0)")
        if self.select is not None and self.select not in SELECTS:
            p.append(f"--select must be one of {', '.join(SELECTS)}, not {self.select!r}{did_you_mean(self.select, SELECTS)}")
        elif self.select is not None and self.generation.n < 2:
            p.append(f"--select {self.select} chooses among samples: pass --n 4 or more (and a --temperature above 0)")
        if self.vote == "execution" and self.select not in (None, "vote"):
            p.append(f"--vote execution is --select vote; drop --vote to --select {self.select}")
        if self.refine < 0:
            p.append(f"--refine must be 0 (no self-correction) or more rounds, not {self.refine}")
        if self.refine_until not in REFINE_UNTIL:
            p.append(f"--refine-until must be one of {', '.join(REFINE_UNTIL)}, not {self.refine_until!r}"
                     f"{did_you_mean(self.refine_until, REFINE_UNTIL)}")
        if self.constrain not in CONSTRAIN_MODES:
            p.append(f"--constrain must be one of {', '.join(CONSTRAIN_MODES)}, not {self.constrain!r}"
                     f"{did_you_mean(self.constrain, CONSTRAIN_MODES)}")
        if not self.vote_timeout > 0:
            p.append(f"--vote-timeout must be positive, not {self.vote_timeout}")
        if (self.data is None) == (self.benchmark is None):
            p.append("give either --data DIR (a dataset from `sqlwright data build`) or --benchmark DIR with --prompt")
        return p

    @property
    def guidance(self) -> Guidance:
        """The selection and self-correction this run does (``--vote execution`` is ``--select vote``)."""
        return Guidance("vote" if self.vote == "execution" else self.select, self.refine, self.refine_until)


def config_path(out: str | Path) -> Path:
    """Where ``predict`` writes its resolved config: beside the predictions, ``<out>.config.yaml``."""
    out = Path(out)
    return out.with_name(f"{out.name}.config.yaml")


@dataclass
class Item:
    request: Request
    db_id: str
    db_path: str | None
    schema: Schema | None = None  # known when predicting on a benchmark (for --constrain schema)
    sql_grammar: str | None = None  # --constrain: the grammar of the SQL alone, to check the final answer


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
    selection and self-correction execute on them, so a missing one is an error before the model loads."""
    from sqlwright.data.dataset import check_databases, resolve_records

    if cfg.db_url:  # a template names them instead of the dataset's references
        from sqlwright.db.urls import expand

        for it in items:
            it.db_path = expand(cfg.db_url, it.db_id)
        if cfg.guidance.executes or cfg.constrain == "schema":
            check_databases({(it.db_id, it.db_path): it.db_path for it in items}, "check --db-url")
        return items
    refs = [{"db_id": it.db_id, "db_path": it.db_path} for it in items]
    for it, r in zip(items, resolve_records(cfg.data, refs, cfg.db_root, require=cfg.guidance.executes or cfg.constrain == "schema"), strict=True):
        it.db_path = r["db_path"]
    return items


def _from_benchmark(cfg: PredictConfig) -> list[Item]:
    from sqlwright.data.sources import SourceConfig, load_source

    if not cfg.prompt:
        raise UserError("predicting on --benchmark needs --prompt: the prompt.json of the dataset the model was trained on (or its folder)")
    spec = with_token_counter(PromptSpec.load(cfg.prompt))
    split = cfg.split or "dev"
    data = load_source(cfg.source, SourceConfig(path=cfg.benchmark, splits=[split], db_root=cfg.db_root,
                                                db_url=cfg.db_url, examples=spec.examples, rows=spec.rows))
    items = []
    for ex in data.splits[split]:
        rendered, _ = spec.render(ex, data.schemas[ex.db_id], target=False)
        msgs = rendered.get("messages") or [{"role": "user", "content": rendered["prompt"]}]
        items.append(Item(Request(ex.id, msgs), ex.db_id, ex.db_path, data.schemas[ex.db_id]))
    return items


def _spec(cfg: PredictConfig) -> PromptSpec:
    return PromptSpec.load(cfg.data or cfg.prompt)


def _constrain(cfg: PredictConfig, items: list[Item], spec: PromptSpec) -> None:
    """Give each request its grammar: its database's names (``schema``) or SQL syntax (``grammar``).
    Reasoning prompts (cookbook-cot) constrain only the final ```sql block."""
    from sqlwright.infer.constrain import grammar_for

    answer = "reasoning" if spec.format == "cookbook-cot" else "sql"
    schemas: dict[str, Schema] = {}
    for it in items:
        schema = it.schema
        if cfg.constrain == "schema" and schema is None:
            if it.db_path not in schemas:
                if it.db_path and "://" in it.db_path:
                    from sqlwright.db.introspect import introspect_url

                    schemas[it.db_path] = introspect_url(it.db_path, it.db_id)
                elif not it.db_path or not Path(it.db_path).is_file():
                    raise UserError(f"{it.db_id}: --constrain schema needs the database ({it.db_path or 'no db_path'}); "
                                    "pass --db-root DIR, or --constrain grammar for syntax only")
                else:
                    schemas[it.db_path] = introspect_sqlite(it.db_path, it.db_id)
            schema = schemas[it.db_path]
        it.request.grammar = grammar_for(schema, cfg.constrain, answer)
        it.sql_grammar = it.request.grammar if answer == "sql" else grammar_for(schema, cfg.constrain, "sql")


def _record(item: Item, conv: Conversation, constrain: str) -> dict:
    """The question's line in ``--out``: the final answer, how it was produced, tokens over all rounds."""
    texts, sqls = conv.texts, conv.sqls
    k = conv.choice.index if conv.choice is not None else 0
    rec = {"id": item.request.id, "db_id": item.db_id, "sql": sqls[k] if sqls else "", "raw": texts[k] if texts else ""}
    if len(texts) > 1:
        rec["samples"], rec["sqls"] = texts, sqls
    if constrain != "none" and texts:  # does the final SQL follow the grammar (an API's too, checked here)?
        from sqlwright.infer.constrain import check_sql

        rec["constrained"] = constrain
        rec["grammar_ok"] = bool(rec["sql"]) and check_sql(item.sql_grammar, rec["sql"]) is None
    rec.update(conv.fields())
    rec.update(prompt_tokens=conv.tokens[0], completion_tokens=conv.tokens[1], latency=round(conv.latency, 4))
    if conv.error:
        rec["error"] = conv.error
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
    if cfg.constrain != "none":
        _constrain(cfg, todo, _spec(cfg))
        if cfg.backend.backend == "openai":  # nothing to send the grammar to: check the answers afterwards
            print("sqlwright: an OpenAI-compatible API cannot be constrained; answers are checked against the grammar "
                  "after the fact (grammar_ok in each record)", file=sys.stderr)
        cfg.backend.constrained = True
    backend = load_backend(cfg.backend)
    shown = replace(cfg, db_url=mask_url(cfg.db_url)) if cfg.db_url else cfg  # never a password on disk
    write_config(shown, config_path(out))  # the resolved config: `sqlwright predict --config` repeats the run
    by_id = {it.request.id: it for it in todo}
    if retry:  # their failed lines go; the new answers are appended below
        atomic_write_jsonl(out, [r for r in earlier if str(r["id"]) not in retry])
    writer = JsonlAppender(out)
    guidance = cfg.guidance
    judge = Judge(cfg.comparator, Limits(timeout=cfg.vote_timeout), workers=0) if guidance.executes else None
    order = {it.request.id: n for n, it in enumerate(todo)}
    pending = [Conversation(it.request, it.db_path, guidance) for it in todo]
    written: list[dict] = []
    tokens = 0
    t0 = time.monotonic()
    try:
        with progress_bar(len(todo), "predicting", cfg.progress, unit="examples") as advance:
            for round_ in range(guidance.refine + 1):  # the first answers, then each round of revisions
                if not pending:
                    break
                convs = {conv.id: conv for conv in pending}
                again = []
                for c in backend.generate([conv.request() for conv in pending], cfg.generation):
                    conv = convs[c.id]
                    tokens += c.completion_tokens
                    if not conv.take(c, judge):
                        again.append(conv)
                        continue
                    rec = _record(by_id[c.id], conv, cfg.constrain)
                    writer.write(rec)  # only when all its rounds are done
                    written.append({k: v for k, v in rec.items() if k not in ("rounds", "samples", "sqls", "raw", "vote")})
                    summary["written"] += 1
                    summary["errors"] += bool(conv.error)
                    summary["completion_tokens"] += conv.tokens[1]
                    revising = f", revision {round_}" if round_ else ""
                    advance(1, note=f"{tokens / max(1e-9, time.monotonic() - t0):,.0f} tok/s{revising}")
                pending = sorted(again, key=lambda conv: order[conv.id])
    finally:
        writer.close()
        backend.close()
        if judge is not None:
            judge.close()
    if guidance.executes or cfg.constrain != "none":
        summary["guided"] = guided_summary(written) or {}
    summary["seconds"] = round(time.monotonic() - t0, 2)
    summary["tokens_per_second"] = round(summary["completion_tokens"] / max(1e-9, summary["seconds"]), 2)
    return summary
