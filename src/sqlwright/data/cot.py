"""``sqlwright data cot``: verified chain-of-thought data from a teacher model.

For every example of a dataset built by ``sqlwright data build``, a teacher (any backend of
``sqlwright predict``: an OpenAI-compatible API, vLLM or a local model) is shown the schema,
external knowledge, question and gold SQL, and asked to reason step by step from the question
to the SQL (the llama-cookbook's rationalisation prompt by default; ``--prompt-file`` replaces
it). The final ```sql block of its answer is executed and compared with the gold's result by
the evaluator's own comparator (``bird`` by default): the example is kept when the results
match, so reasoning that reaches an equivalent query written differently is kept, and
reasoning that reaches a different query is not, whatever the strings look like (the cookbook
compares strings). A failed example is asked again, up to ``--retries`` times, with sampling;
after that it is dropped with its reason:

``different_result``  the SQL ran and returned another result than the gold
``error``             the SQL failed (syntax, unknown column, refused write, too many rows)
``timeout``           the SQL ran past ``--sql-timeout``
``no_sql``            the answer has no fenced SQL block
``teacher_error``     the teacher failed to answer (HTTP error after its own retries, ...)
``gold_error``        the gold SQL itself does not run (the teacher is not asked)

Output, in ``--out``: the kept examples as a dataset in the build's format (``<split>.jsonl``,
``dataset/``, ``prompt.json`` with the ``cookbook-cot`` format, whose targets are the reasoning
ending in one ```sql block with the verified SQL), ``dropped.jsonl`` (each dropped example
with its reason and every attempt), ``stats.json`` and ``config.json``. ``log/<split>.jsonl``
holds one line per finished example, appended as it finishes: a rerun of the same command
skips those, so a killed run loses only the work in flight.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from sqlwright.config import opt, validate, write_config
from sqlwright.data.build import dataset_record, length_percentiles, record_lengths
from sqlwright.data.dataset import DATABASES, portable_refs, write_dataset_file
from sqlwright.data.teacher import (
    Template,
    load_built,
    prepare_run_folder,
    save_datasetdict,
)
from sqlwright.db.pool import default_workers
from sqlwright.db.urls import mask_url
from sqlwright.errors import did_you_mean
from sqlwright.files import JsonlAppender, atomic_write_jsonl, atomic_write_text, read_log
from sqlwright.infer.backend import (
    TEACHER_HELP,
    BackendConfig,
    Completion,
    GenerationConfig,
    Request,
    load_backend,
)
from sqlwright.judge import COMPARATORS, Item, Judge
from sqlwright.progress import progress_bar
from sqlwright.prompts.extract import extract_sql_block
from sqlwright.prompts.formats import FORMATS
from sqlwright.prompts.spec import PromptSpec
from sqlwright.types import Example, ExecResult, Limits

# The llama-cookbook's rationalisation prompt, character for character (the indentation and
# the trailing space after "is:" included): meta-llama/llama-cookbook,
# end-to-end-use-cases/coding/text2sql/fine-tuning/create_reasoning_dataset.py,
# ``prompt_to_generate_reasoning``. It is sent as the only (user) message, as there.
COOKBOOK_REASONING_PROMPT = (
    "\n"
    "        You are a text to SQL query translator. Based on the DB Schema and External Knowledge, "
    "given the Text Question Input and its Gold SQL Output below, generate the step-by-step reasoning "
    "to infer the Gold SQL Output from the Text Question Input.\n"
    "\n"
    "        -- DB Schema: {db_schema}\n"
    "        -- External Knowledge: {external_knowledge}\n"
    "        -- Text Question Input: {question}\n"
    "        -- Gold SQL Output: {gold_SQL}\n"
    "\n"
    "        Your response should be as follows:\n\n\n"
    "        Let me think through this step by step:\n\n1. First, I need to consider...\n2. Then...\n"
    "3. Next...\n...\n\nFinally, the SQL statement for the text question is: \n"
    "        ```sql ...```\n\n"
    "\n"
    "        "
)
PLACEHOLDERS = ("db_schema", "external_knowledge", "question", "gold_SQL")
REASONS = ("different_result", "error", "timeout", "no_sql", "teacher_error", "gold_error")
_VERDICT_REASON = {"wrong": "different_result", "error": "error", "too_many_rows": "error", "timeout": "timeout"}


@dataclass
class CotConfig:
    data: str = opt(help="Dataset folder from `sqlwright data build`.", argument=True)
    out: str = opt(help="Output folder: the CoT dataset, dropped.jsonl, stats.json, config.yaml (a rerun resumes it).", short="-o")
    teacher: BackendConfig = opt(factory=lambda: BackendConfig(model="", backend="openai"), flatten=True, helps=TEACHER_HELP)
    splits: list[str] | None = opt(None, "Split(s) to annotate (repeat; default: all).", flag="--split")
    prompt_file: str | None = opt(None, "Prompt template with {db_schema} {external_knowledge} {question} {gold_SQL} (default: the llama-cookbook's).")
    retries: int = opt(2, "Sampled retries for an example whose SQL does not match the gold.")
    temperature: float = opt(0.0, "First attempt (0: greedy, as the cookbook).")
    retry_temperature: float = opt(0.7, "Retries.")
    top_p: float = opt(0.95, "Nucleus sampling, for the sampled retries.")
    max_new_tokens: int = opt(1024, "Most tokens per answer.")
    seed: int = opt(0, "Sampling seed.")
    format: str = opt("cookbook-cot", "Prompt format of the output dataset.")
    comparator: str = opt("bird", "Result comparator, as in eval: bird, multiset, ordered, test-suite.", short="-c")
    sql_timeout: float = opt(30.0, "Seconds per query.")
    max_rows: int = opt(1_000_000, "Most rows a query may return.")
    memory_mb: int = opt(2048, "SQLite heap cap per worker, MiB.")
    workers: int | None = opt(None, "Processes executing the gold SQL (default: all cores).")
    limit: int | None = opt(None, "Only the first N examples of each split.")
    overwrite: bool = opt(False, "Start again in an existing --out folder.")
    progress: bool = opt(True, "Show a progress bar.")
    db_root: str | None = opt(None, "Folder holding the databases (<db_id>/<db_id>.sqlite) on this machine, when not where the dataset records them.")
    db_url: str | None = opt(None, "Or the databases on a server or in DuckDB files: a URL template with {db_id}, e.g. "
                                   "'postgresql://user@host:5432/{db_id}' (password: PGPASSWORD, ~/.pgpass, MYSQL_PWD).")

    def check(self) -> list[str]:
        problems = []
        if self.db_url is not None:
            from sqlwright.db.urls import check_template

            if problem := check_template(self.db_url):
                problems.append(problem)
        if not self.teacher.model:
            problems.append("no teacher model: pass --model (a hub id, local folder, alias or API model name)")
        if self.comparator not in COMPARATORS:
            problems.append(f"unknown comparator {self.comparator!r}{did_you_mean(self.comparator, COMPARATORS)}; choose one of: {', '.join(COMPARATORS)}")
        if self.retries < 0:
            problems.append(f"--retries must be 0 or more, not {self.retries}")
        if self.retries and not self.retry_temperature > 0:
            problems.append(f"--retry-temperature must be above 0 so that retries sample something new, not {self.retry_temperature}")
        if not self.sql_timeout > 0:
            problems.append(f"--sql-timeout must be positive, not {self.sql_timeout}")
        if self.max_new_tokens < 1:
            problems.append(f"--max-new-tokens must be at least 1, not {self.max_new_tokens}")
        if self.limit is not None and self.limit < 1:
            problems.append(f"--limit must be at least 1, not {self.limit}")
        if self.workers is not None and self.workers < 0:
            problems.append(f"--workers must be 0 (in-process) or more, not {self.workers}")
        fmt = FORMATS.get(self.format)
        if fmt is None:
            problems.append(f"unknown prompt format {self.format!r}{did_you_mean(self.format, FORMATS)} (choose: {', '.join(FORMATS)})")
        elif fmt.target(Example("", "", "", "", extra={"reasoning": "\0"})) != "\0":
            problems.append(f"--format {self.format} does not train on the reasoning (its target is the SQL); use cookbook-cot")
        return problems


@dataclass
class CotStats:
    """The whole run folder's counts (earlier sessions included) and this session's work."""

    out: str
    total: int = 0  # examples asked for (after --limit)
    unfinished: int = 0  # not finished yet (an interrupted run): the next run does them
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # by reason
    retried: int = 0  # examples that needed at least one retry
    kept_after_retry: int = 0
    attempts: int = 0  # teacher answers, all examples
    teacher_prompt_tokens: int = 0
    teacher_completion_tokens: int = 0
    splits: dict[str, dict] = field(default_factory=dict)  # split -> {kept, dropped}
    already_done: int = 0  # finished in earlier sessions
    done_now: int = 0  # finished in this session
    seconds: float = 0.0  # this session
    lengths: dict = field(default_factory=dict)

    @property
    def teacher_tokens(self) -> int:
        return self.teacher_prompt_tokens + self.teacher_completion_tokens

    def to_dict(self) -> dict:
        return {**asdict(self), "teacher_tokens": self.teacher_tokens}


# -- one answer -------------------------------------------------------------------------------
_FENCE = re.compile(r"`{3,}")


def cot_target(text: str, sql: str) -> str:
    """The training target: the teacher's reasoning up to the fenced block that holds its final
    SQL, then that SQL in one ```sql block (prose after the block is dropped)."""
    fences = [m.start() for m in _FENCE.finditer(text)]
    start = None
    for i in range(0, len(fences), 2):  # fences pair up in order: opener, closer
        end = fences[i + 1] if i + 1 < len(fences) else len(text)
        if extract_sql_block(text[fences[i] : end + 3]) == sql:
            start = fences[i]
    reasoning = text[:start].rstrip() if start is not None else ""
    block = f"```sql\n{sql}\n```"
    return f"{reasoning}\n\n{block}" if reasoning else block


@dataclass
class _Item:
    key: str  # "<split>/<id>": request ids are unique across splits
    split: str
    ex: Example
    prompt: str
    gold: ExecResult | None = None
    attempts: list[dict] = field(default_factory=list)


def _attempt(item: _Item, c: Completion, round_: int, gen: GenerationConfig, judge: Judge) -> dict:
    a = {"round": round_, "temperature": gen.temperature, "prompt_tokens": c.prompt_tokens,
         "completion_tokens": c.completion_tokens, "text": c.texts[0] if c.texts else None, "sql": None}  # fmt: skip
    if c.error or not c.texts:
        return {**a, "reason": "teacher_error", "detail": c.error or "no answer"}
    sql = extract_sql_block(c.texts[0])
    if not sql:
        return {**a, "reason": "no_sql", "detail": "no fenced SQL block in the answer"}
    a["sql"] = sql
    v = judge.judge(item.ex.db_path or "", item.ex.sql, [sql]).candidates[0]
    if v.correct:
        return {**a, "reason": None, "detail": ""}
    return {**a, "reason": _VERDICT_REASON.get(v.verdict, "error"), "detail": v.reason}


def _finished(item: _Item, kept: bool) -> dict:
    last = item.attempts[-1] if item.attempts else {}
    rec = {"id": item.ex.id, "split": item.split, "db_id": item.ex.db_id, "kept": kept,
           "reason": None if kept else last.get("reason", "gold_error"), "detail": last.get("detail", ""),
           "question": item.ex.question, "gold": item.ex.sql, "attempts": item.attempts}  # fmt: skip
    if kept:
        rec["sql"], rec["target"] = last["sql"], cot_target(last["text"], last["sql"])
    return rec


# -- the command ------------------------------------------------------------------------------
def run_cot(cfg: CotConfig) -> CotStats:
    validate(cfg)
    template = Template.load(cfg.prompt_file, COOKBOOK_REASONING_PROMPT, PLACEHOLDERS, required=("question",))
    built = load_built(cfg.data, cfg.splits, cfg.db_root, cfg.db_url)
    out_spec = replace(built.spec, format=cfg.format)  # validated by PromptSpec
    out = Path(cfg.out)
    shown = replace(cfg, db_url=mask_url(cfg.db_url)) if cfg.db_url else cfg  # never a password in the run folder
    run_config = {**asdict(shown), "data": str(Path(cfg.data).resolve()), "prompt": template.text, "splits": list(built.splits)}
    prepare_run_folder(out, run_config, ("data", "prompt", "comparator", "splits"), cfg.overwrite, "cot")
    write_config(shown, out / "config.yaml")  # the resolved config: `--config` reads it back
    (out / "log").mkdir(exist_ok=True)

    examples = {s: exs[: cfg.limit] if cfg.limit else exs for s, exs in built.splits.items()}
    done = {s: {str(r["id"]) for r in read_log(out / "log" / f"{s}.jsonl")} for s in examples}
    todo: list[_Item] = []
    for split, exs in examples.items():
        for ex in exs:
            if ex.id not in done[split]:
                values = {"db_schema": built.spec.schema_text(built.schemas[ex.db_id], ex.question)[0],
                          "external_knowledge": ex.evidence, "question": ex.question, "gold_SQL": ex.sql.strip()}  # fmt: skip
                todo.append(_Item(f"{split}/{ex.id}", split, ex, template.fill(**values)))
    t0 = time.monotonic()
    if todo:
        _generate(cfg, todo, out)
    return _finalize(cfg, out, out_spec, built, examples, done, len(todo), time.monotonic() - t0)


def _execute_gold(cfg: CotConfig, todo: list[_Item], limits: Limits) -> Judge:
    """Run every gold once on all cores; the in-process judge that checks answers keeps them."""
    items = [Item(it.ex.db_path or "", it.ex.sql) for it in todo]
    workers = default_workers() if cfg.workers is None else cfg.workers
    with Judge(cfg.comparator, limits, workers) as judge:  # closed before the teacher starts any thread
        distinct = judge.distinct(items)
        judge.pool.start(min(workers, distinct))
        with progress_bar(distinct, "executing gold SQL", cfg.progress, unit="queries") as advance:
            for it, j in zip(todo, judge.judge_many(items, progress=advance), strict=True):
                it.gold = j.gold
        return judge.in_process()


def _generate(cfg: CotConfig, todo: list[_Item], out: Path) -> None:
    limits = Limits(cfg.sql_timeout, cfg.max_rows, cfg.memory_mb)
    judge = _execute_gold(cfg, todo, limits)  # one query per answer from here, in this process
    writers = {s: JsonlAppender(out / "log" / f"{s}.jsonl") for s in {it.split for it in todo}}
    pending = []
    for it in todo:
        if it.gold.ok:
            pending.append(it)
        else:  # the teacher cannot be checked against a gold that does not run
            why = f"gold SQL failed ({it.gold.status.value}): {it.gold.error}" if it.ex.db_path else "no database to execute on (no db_path)"
            writers[it.split].write({**_finished(it, False), "reason": "gold_error", "detail": why})
    counts: Counter = Counter()
    tokens = 0
    t0 = time.monotonic()
    backend = load_backend(cfg.teacher) if pending else None
    try:
        with progress_bar(len(todo), "reasoning", cfg.progress, unit="examples") as advance:
            advance(len(todo) - len(pending), note="")
            for round_ in range(cfg.retries + 1):
                if not pending:
                    break
                gen = GenerationConfig(
                    max_new_tokens=cfg.max_new_tokens,
                    temperature=cfg.temperature if round_ == 0 else cfg.retry_temperature,
                    top_p=1.0 if round_ == 0 and cfg.temperature == 0 else cfg.top_p,
                    seed=cfg.seed + round_,
                )
                by_key = {it.key: it for it in pending}
                requests = [Request(it.key, [{"role": "user", "content": it.prompt}]) for it in pending]
                pending = []
                for c in backend.generate(requests, gen):
                    it = by_key.pop(c.id)
                    a = _attempt(it, c, round_, gen, judge)
                    it.attempts.append(a)
                    tokens += c.completion_tokens
                    kept = a["reason"] is None
                    if kept or round_ == cfg.retries:
                        writers[it.split].write(_finished(it, kept))
                        counts["kept" if kept else "dropped"] += 1
                        rate = tokens / max(1e-9, time.monotonic() - t0)
                        advance(1, note=f"kept {counts['kept']} dropped {counts['dropped']} · {rate:,.0f} tok/s")
                    else:
                        pending.append(it)
                for it in by_key.values():  # a backend that skipped a request: count it as failed
                    it.attempts.append({"round": round_, "reason": "teacher_error", "detail": "no answer from the backend",
                                        "prompt_tokens": 0, "completion_tokens": 0, "text": None, "sql": None})  # fmt: skip
                    if round_ == cfg.retries:
                        writers[it.split].write(_finished(it, False))
                        advance(1)
                    else:
                        pending.append(it)
    finally:
        for w in writers.values():
            w.close()
        judge.close()
        if backend is not None:
            backend.close()


def _portable_databases(out: Path, data: Path, records: dict[str, list[dict]]) -> None:
    """The output is a dataset too: its records' ``db_path`` relative to a recorded root, and
    the databases the input dataset holds (built ones, small) copied into it."""
    db_root, refs = portable_refs(r.get("db_path") for rs in records.values() for r in rs)
    inner = data.resolve() / DATABASES
    if db_root and Path(db_root).is_relative_to(inner):
        shutil.copytree(inner, out / DATABASES, dirs_exist_ok=True)
        prefix = Path(db_root).relative_to(inner)
        db_root, refs = DATABASES, {k: v if "://" in v else (prefix / v).as_posix() for k, v in refs.items()}
    for rs in records.values():
        for r in rs:
            if r.get("db_path"):
                r["db_path"] = refs.get(r["db_path"], r["db_path"])
    write_dataset_file(out, db_root)


def _finalize(cfg, out: Path, spec: PromptSpec, built, examples, done_before, done_now: int, seconds: float) -> CotStats:
    stats = CotStats(out=str(out), already_done=sum(len(d) for d in done_before.values()), done_now=done_now,
                     seconds=round(seconds, 2))  # fmt: skip
    dropped: Counter = Counter()
    kept_records: dict[str, list[dict]] = {}
    dropped_records: list[dict] = []
    for split, exs in examples.items():
        by_id = {r["id"]: r for r in read_log(out / "log" / f"{split}.jsonl")}
        kept_records[split] = []
        n_kept = n_dropped = 0
        for ex in exs:  # in the dataset's order, whatever order the answers came in
            r = by_id.get(ex.id)
            if r is None:  # not finished (interrupted): the next run does it
                stats.unfinished += 1
                continue
            stats.attempts += len(r["attempts"])
            stats.teacher_prompt_tokens += sum(a.get("prompt_tokens", 0) for a in r["attempts"])
            stats.teacher_completion_tokens += sum(a.get("completion_tokens", 0) for a in r["attempts"])
            stats.retried += len(r["attempts"]) > 1
            if r["kept"]:
                n_kept += 1
                stats.kept_after_retry += len(r["attempts"]) > 1
                cot_ex = replace(ex, extra={**ex.extra, "reasoning": r["target"]})
                rendered, _ = spec.render(cot_ex, built.schemas[ex.db_id])
                kept_records[split].append({**dataset_record(cot_ex, split, rendered), "teacher_sql": r["sql"],
                                            "attempts": len(r["attempts"])})  # fmt: skip
            else:
                n_dropped += 1
                dropped[r["reason"]] += 1
                dropped_records.append(r)
        stats.splits[split] = {"examples": len(exs), "kept": n_kept, "dropped": n_dropped}
    stats.kept = sum(s["kept"] for s in stats.splits.values())
    stats.dropped = {k: dropped[k] for k in REASONS if dropped[k]}
    stats.lengths = {s: length_percentiles(record_lengths(rs, spec)) for s, rs in kept_records.items()}
    stats.total = sum(len(exs) for exs in examples.values())
    _portable_databases(out, Path(cfg.data), kept_records)
    for split, rs in kept_records.items():
        atomic_write_jsonl(out / f"{split}.jsonl", rs)
    atomic_write_jsonl(out / "dropped.jsonl", dropped_records)
    if any(kept_records.values()):
        save_datasetdict(out / "dataset", kept_records)
    spec.save(out / "prompt.json")
    atomic_write_text(out / "stats.json", json.dumps({**stats.to_dict(), "comparator": cfg.comparator,
                                                       "teacher": asdict(cfg.teacher)}, indent=2) + "\n")  # fmt: skip
    return stats
