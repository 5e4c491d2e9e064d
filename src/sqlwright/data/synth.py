"""``sqlwright data synth``: new, verified (question, SQL) pairs for your own databases.

**Pairs for a database** (``DATABASES``: a folder of SQLite files, or one file). Each teacher
request shows a sample of the database (a seed table, up to ``tables_per_request - 1`` tables
linked to it by foreign keys, up to ``columns_per_table`` columns each, a few example rows)
and asks for ``per_request`` realistic questions of one query shape (``simple``,
``aggregation``, ``join``, ``nested``), each with its SQL. A pair is kept when:

* its SQL executes on the database (read-only, ``--sql-timeout``) and returns at least one row;
* its SQL is not a repeat of a kept one after normalisation by sqlglot (keyword case,
  whitespace, quoting and identifier case are ignored; literals are not);
* its question is not a near-repeat of a kept one (``difflib`` ratio of the normalised
  texts at least ``question_similarity``).

Requests go in rounds until each database has ``per_database`` kept pairs or ``max_rounds``
have run; each round asks first for the (seed table, shape) bins with the fewest kept pairs,
and the final pick takes pairs round-robin over (shape, main table) bins, so no table or
shape crowds out the others. Output: ``questions.jsonl`` (``id, db_id, question, sql, shape,
tables``: ``sqlwright data build sqlite DATABASES --questions questions.jsonl`` turns it into
a dataset) and ``triplets.jsonl`` (``question, context, answer``: the CREATE TABLE statements
of the tables the SQL reads, verified as below; the ``sql-create-context`` source reads it).

**Self-contained triplets** (``--topic``, no database): 7B-SQLMaster's style. The teacher
writes, per topic, triplets of (CREATE TABLE context, question, answer); a triplet is kept
when its context holds only CREATE statements, builds an in-memory SQLite database, and the
answer executes on it without error (the tables are empty, so no rows are required), then
deduplicated as above. Output: ``triplets.jsonl``.

Every request's answer and each candidate's verdict go to ``log.jsonl`` as they finish
(rejected ones, with their reason, also to ``rejected.jsonl`` at the end); a rerun of the
same command continues. Reasons: ``no_sql``, ``error``, ``timeout``, ``empty_result``,
``bad_context``, ``duplicate_sql``, ``near_duplicate_question``; a teacher answer with no
readable pair at all counts as ``no_pairs`` (``teacher_error`` when the request failed).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import random
import re
import sqlite3
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlwright.config import opt, validate, write_config
from sqlwright.data.teacher import (
    Template,
    prepare_run_folder,
)
from sqlwright.db.introspect import introspect_sqlite
from sqlwright.db.sqltext import canonical_sql
from sqlwright.errors import UserError, did_you_mean
from sqlwright.files import (
    JsonlAppender,
    atomic_path,
    atomic_write_jsonl,
    atomic_write_text,
    read_log,
)
from sqlwright.infer.backend import (
    TEACHER_HELP,
    BackendConfig,
    GenerationConfig,
    Request,
    load_backend,
)
from sqlwright.judge import Item, Judge
from sqlwright.progress import progress_bar
from sqlwright.prompts.extract import extract_sql, extract_sql_block
from sqlwright.prompts.schema import SchemaOptions, serialize_schema
from sqlwright.types import ExecResult, Limits, Schema, Status, Table

SHAPES: dict[str, str] = {
    "simple": "Each query reads one table, with filters, ordering or LIMIT, and no aggregation.",
    "aggregation": "Each query aggregates (COUNT, SUM, AVG, MIN or MAX), with GROUP BY or HAVING where it fits.",
    "join": "Each query joins at least two of the tables on their keys.",
    "nested": "Each query has a nested subquery (IN, NOT IN, EXISTS, or a comparison with a subquery).",
}
DATABASE_PROMPT = """You write training data for a text-to-SQL model on a SQLite database.

Database: {db_id}
Tables, with a few example rows:
{schema}

Write {n} different questions that a user of this database would realistically ask, each with the one SQLite query that answers it. {shape_instruction} Use only the tables and columns shown, and values that occur in the data, so that every query returns at least one row.

Answer in exactly this format, once per question:
Question: <the question>
```sql
<the SQLite query>
```
"""
TOPIC_PROMPT = """You write training data for a text-to-SQL model, as (context, question, answer) triplets.

Topic: {topic}

Write {n} different triplets. Each has a context of one to three SQLite CREATE TABLE statements for the topic, a realistic question about those tables, and the one SQLite query that answers it. {shape_instruction}

Answer in exactly this format, once per triplet:
Context:
```sql
CREATE TABLE ...;
```
Question: <the question>
Answer:
```sql
<the SQLite query>
```
"""
DATABASE_PLACEHOLDERS = ("db_id", "schema", "n", "shape", "shape_instruction")
TOPIC_PLACEHOLDERS = ("topic", "n", "shape", "shape_instruction")
REASONS = ("no_sql", "error", "timeout", "empty_result", "bad_context", "duplicate_sql", "near_duplicate_question",
           "no_pairs", "teacher_error")  # fmt: skip


@dataclass
class SynthConfig:
    out: str = opt("data/synth", "Output folder: questions.jsonl, triplets.jsonl, rejected.jsonl, stats.json, config.yaml (a rerun resumes it).", short="-o")
    teacher: BackendConfig = opt(factory=lambda: BackendConfig(model="", backend="openai"), flatten=True, helps=TEACHER_HELP)
    databases: str | None = opt(None, "Folder of SQLite files (or one file) to write questions for.", argument=True)
    topics: list[str] = opt(help="Without DATABASES: self-contained (context, question, answer) triplets on this topic (repeat).", flag="--topic", factory=list)
    per_database: int = opt(20, "Pairs to keep per database (per topic).")
    per_request: int = opt(5, "Pairs asked for in one request.")
    max_rounds: int = opt(4, "Rounds of requests before giving up on a database's target.")
    shapes: list[str] = opt(help="Query shapes to ask for (repeat): simple, aggregation, join, nested (default: all).", flag="--shape", factory=lambda: list(SHAPES))
    tables_per_request: int = opt(3, "Most tables shown in one request.")
    columns_per_table: int = opt(12, "Most columns shown per table (keys always).")
    example_rows: int = opt(3, "Example rows shown per table.")
    question_similarity: float = opt(0.9, "Questions this similar (0-1) to a kept one are near-duplicates.")
    prompt_file: str | None = opt(None, "Prompt template ({db_id} {schema} {n} {shape} {shape_instruction}; with --topic: {topic} {n} ...).")
    max_new_tokens: int = opt(1024, "Most tokens per answer.")
    temperature: float = opt(0.8, "Sampling temperature.")
    top_p: float = opt(0.95, "Nucleus sampling.")
    seed: int = opt(0, "Seed for sampling tables, columns and the teacher.")
    sql_timeout: float = opt(10.0, "Seconds per query.")
    max_rows: int = opt(100_000, "Most rows a query may return.")
    memory_mb: int = opt(2048, "SQLite heap cap, MiB.")
    overwrite: bool = opt(False, "Start again in an existing --out folder.")
    progress: bool = opt(True, "Show a progress bar.")

    def check(self) -> list[str]:
        problems = []
        if not self.teacher.model:
            problems.append("no teacher model: pass --model (a hub id, local folder, alias or API model name)")
        if (self.databases is None) == (not self.topics):
            problems.append("give either DATABASES (a folder of SQLite files) or --topic (self-contained triplets), not both")
        for s in self.shapes:
            if s not in SHAPES:
                problems.append(f"unknown query shape {s!r}{did_you_mean(s, SHAPES)} (choose: {', '.join(SHAPES)})")
        if not self.shapes:
            problems.append(f"no query shape: pass --shape (choose: {', '.join(SHAPES)})")
        for name in ("per_database", "per_request", "max_rounds", "tables_per_request", "columns_per_table", "max_new_tokens"):
            if getattr(self, name) < 1:
                problems.append(f"--{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}")
        if not 0 < self.question_similarity <= 1:
            problems.append(f"--question-similarity must be in (0, 1], not {self.question_similarity}")
        if not self.sql_timeout > 0:
            problems.append(f"--sql-timeout must be positive, not {self.sql_timeout}")
        return problems


@dataclass
class SynthStats:
    out: str
    mode: str = "database"  # or "topic"
    targets: int = 0  # databases or topics
    requests: int = 0
    candidates: int = 0  # pairs read from the teacher's answers
    kept: int = 0  # passed execution and deduplication
    written: int = 0  # picked for questions.jsonl (topic mode: triplets.jsonl), balanced
    triplets: int = 0
    triplets_failed: int = 0  # database mode: pairs whose CREATE TABLE context did not verify
    rejected: dict[str, int] = field(default_factory=dict)  # by reason
    by_target: dict[str, int] = field(default_factory=dict)
    by_shape: dict[str, int] = field(default_factory=dict)
    by_table: dict[str, int] = field(default_factory=dict)
    teacher_prompt_tokens: int = 0
    teacher_completion_tokens: int = 0
    already_done: int = 0  # requests finished in earlier sessions
    done_now: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "teacher_tokens": self.teacher_prompt_tokens + self.teacher_completion_tokens}


# -- SQL analysis (sqlglot) -----------------------------------------------------------------
def analyze_sql(sql: str) -> tuple[str, list[str]]:
    """(shape, tables read): ``nested`` (a subquery or set operation), else ``join``, else
    ``aggregation``, else ``simple``; the tables in order of appearance, CTE names left out."""
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(sql, read="sqlite")
    except (sqlglot.errors.SqlglotError, ValueError, RecursionError):
        return "simple", []
    ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    tables = list(dict.fromkeys(t.name for t in tree.find_all(exp.Table) if t.name and t.name.lower() not in ctes))
    if len(list(tree.find_all(exp.Select))) > 1 or tree.find(exp.Union, exp.Intersect, exp.Except):
        shape = "nested"
    elif tree.find(exp.Join) or len(tables) > 1:
        shape = "join"
    elif tree.find(exp.AggFunc) or tree.find(exp.Group):
        shape = "aggregation"
    else:
        shape = "simple"
    return shape, tables


def _norm_question(q: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", q.lower()))


def near_duplicate(q: str, seen: list[str], threshold: float) -> bool:
    a = _norm_question(q)
    for b in seen:
        m = difflib.SequenceMatcher(None, a, b, autojunk=False)
        if a == b or (m.real_quick_ratio() >= threshold and m.quick_ratio() >= threshold and m.ratio() >= threshold):
            return True
    return False


# -- reading the teacher's answers ----------------------------------------------------------
_LABEL = r"^[ \t>]*(?:[-*+][ \t]+|\d+[.)][ \t]+|#+[ \t]*)?(?:\*\*|__)?{}(?:[ \t]*\d+)?(?:\*\*|__)?[ \t]*[:：](?:\*\*|__)?[ \t]*"
_QUESTION = re.compile(_LABEL.format("(?:question|q)"), re.I | re.M)
_CONTEXT = re.compile(_LABEL.format("(?:context|schema)"), re.I | re.M)
_ANSWER = re.compile(_LABEL.format("(?:answer|sql|query)"), re.I | re.M)
_SELECT = re.compile(r"\s*(?:select|with)\b", re.I)


def _clean_question(text: str) -> str:
    return text.strip().strip("*_`\"' ").strip()


def parse_pairs(text: str) -> list[tuple[str, str | None]]:
    """(question, SQL or None) for each ``Question:`` in the text; the SQL is the query between
    it and the next question (a fenced block, or a ``SELECT``/``WITH`` statement)."""
    marks = list(_QUESTION.finditer(text))
    pairs = []
    for i, m in enumerate(marks):
        rest = text[m.end() : marks[i + 1].start() if i + 1 < len(marks) else len(text)]
        line, _, body = rest.partition("\n")
        if not line.strip():  # the question is on the next line
            line, _, body = body.lstrip().partition("\n")
        question = _clean_question(line)
        sql = extract_sql(body)
        if question and not question.startswith("```"):
            pairs.append((question, sql if sql and _SELECT.match(sql) else None))
    return pairs


def parse_triplets(text: str) -> list[tuple[str | None, str, str | None]]:
    """(context, question, answer) for each ``Context:`` ... ``Question:`` ... ``Answer:`` group."""
    marks = list(_CONTEXT.finditer(text))
    out = []
    for i, m in enumerate(marks):
        chunk = text[m.end() : marks[i + 1].start() if i + 1 < len(marks) else len(text)]
        q = _QUESTION.search(chunk)
        if q is None:
            continue
        line_end = chunk.find("\n", q.end())
        line_end = len(chunk) if line_end < 0 else line_end
        context = extract_sql_block(chunk[: q.start()]) or chunk[: q.start()].strip() or None
        rest = chunk[line_end:]
        a = _ANSWER.search(rest)
        answer = extract_sql(rest[a.end() :] if a else rest)
        out.append((context, _clean_question(chunk[q.end() : line_end]), answer if answer and _SELECT.match(answer) else None))
    return out


# -- CREATE TABLE contexts ------------------------------------------------------------------
def context_database(context: str, folder: Path) -> tuple[str | None, str]:
    """Build ``context`` in an in-memory SQLite database and save it as a file the executor can
    open read-only: (path, "") or (None, why it is not a valid context)."""
    import sqlglot
    from sqlglot import exp

    try:
        statements = [s for s in sqlglot.parse(context, read="sqlite") if s is not None]
    except (sqlglot.errors.SqlglotError, ValueError, RecursionError) as e:
        return None, f"context does not parse: {str(e).splitlines()[0][:200]}"
    if not statements:
        return None, "empty context"
    for s in statements:
        if not (isinstance(s, exp.Create) and str(s.args.get("kind", "")).upper() in ("TABLE", "INDEX")):
            return None, f"context may only CREATE tables and indexes, not: {s.sql(dialect='sqlite')[:80]}"
    path = folder / (hashlib.sha1(context.encode()).hexdigest()[:16] + ".sqlite")
    if path.is_file():
        return str(path), ""
    mem = sqlite3.connect(":memory:")
    mem.set_authorizer(lambda action, *_: sqlite3.SQLITE_DENY if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_PRAGMA) else sqlite3.SQLITE_OK)
    try:
        mem.executescript(context)
        if not mem.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]:
            return None, "the context creates no table"
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            dest = sqlite3.connect(tmp)
            try:
                mem.backup(dest)
            finally:
                dest.close()
    except sqlite3.Error as e:
        return None, f"context does not build: {e}"
    finally:
        mem.close()
    return str(path), ""


# -- targets and requests ---------------------------------------------------------------------
@dataclass
class _Target:
    name: str  # db_id or topic
    db_path: str | None = None
    schema: Schema | None = None
    bins: list[tuple[str, str]] = field(default_factory=list)  # (seed table or topic, shape)


@dataclass
class _Req:
    id: str
    target: str
    seed: str
    shape: str
    round: int
    prompt: str


def _neighbours(schema: Schema) -> dict[str, list[str]]:
    names = {t.name.lower(): t.name for t in schema.user_tables}
    links: dict[str, list[str]] = {t.name: [] for t in schema.user_tables}
    for table, fk in schema.foreign_keys:
        ref = names.get(fk.ref_table.lower())
        if ref and table in links and ref != table:
            links[table].append(ref)
            links[ref].append(table)
    return {k: list(dict.fromkeys(v)) for k, v in links.items()}


def _sample_tables(schema: Schema, seed: str, shape: str, cfg: SynthConfig, rng: random.Random) -> Schema:
    links = _neighbours(schema)
    others = links[seed][:]
    rng.shuffle(others)
    want = cfg.tables_per_request - 1 if shape in ("join", "nested") else min(1, cfg.tables_per_request - 1)
    picked = [schema.table(seed)] + [schema.table(n) for n in others[:want]]
    tables = []
    for t in picked:
        keys = {c.name for c in t.columns if c.primary_key} | {fk.column for fk in t.foreign_keys}
        keys |= {fk.ref_column for _, fk in schema.foreign_keys if fk.ref_table.lower() == t.name.lower()}
        rest = [c for c in t.columns if c.name not in keys]
        rng.shuffle(rest)
        keep = {c.name for c in t.columns if c.name in keys} | {c.name for c in rest[: max(0, cfg.columns_per_table - len(keys))]}
        idx = [i for i, c in enumerate(t.columns) if c.name in keep]
        fks = [fk for fk in t.foreign_keys if fk.column in keep]
        rows = [tuple(r[i] for i in idx) for r in t.rows]
        tables.append(Table(t.name, [t.columns[i] for i in idx], fks, ddl="", rows=rows))
    return Schema(schema.db_id, tables)


def _load_targets(cfg: SynthConfig) -> list[_Target]:
    if cfg.topics:
        return [_Target(t, bins=[(t, s) for s in cfg.shapes]) for t in dict.fromkeys(cfg.topics)]
    from sqlwright.data.sources.sqlite import find_databases

    targets = []
    for db, path in find_databases(Path(cfg.databases)).items():
        try:
            schema = introspect_sqlite(path, db, rows=cfg.example_rows)
        except sqlite3.DatabaseError as e:
            raise UserError(f"{path}: not a readable SQLite database ({e})") from None
        if not schema.user_tables:
            raise UserError(f"{path}: the database has no tables")
        links = _neighbours(schema)
        bins = [(t.name, s) for t in schema.user_tables for s in cfg.shapes if s != "join" or links[t.name]]
        if not bins:  # only joins asked for, and no table has a foreign key
            raise UserError(f"{path}: no table is linked to another by a foreign key, so no join can be asked for; add another --shape")
        targets.append(_Target(db, str(path), schema, bins))
    return targets


def _plan(round_: int, targets: list[_Target], log: list[dict], cfg: SynthConfig, template: Template) -> list[_Req]:
    """The requests of round ``round_``, from what rounds before it kept: a pure function of the
    log and the seed, so a rerun plans the same requests and skips those already done."""
    earlier = [r for r in log if r["round"] < round_]
    kept_by_target: Counter = Counter()
    kept_by_bin: Counter = Counter()
    asked_by_bin: Counter = Counter()
    for r in earlier:
        asked_by_bin[(r["target"], r["seed"], r["shape"])] += 1
        for c in r["candidates"]:
            if c["reason"] is None:
                kept_by_target[r["target"]] += 1
                kept_by_bin[(r["target"], r["seed"], r["shape"])] += 1
    reqs = []
    for t in targets:
        need = cfg.per_database - kept_by_target[t.name]
        if need <= 0:
            continue
        rng = random.Random(f"{cfg.seed}/{t.name}/{round_}")
        order = t.bins[:]
        rng.shuffle(order)  # ties broken at random, the same way on every rerun
        planned: Counter = Counter()
        for k in range(math.ceil(need / cfg.per_request)):
            seed, shape = min(order, key=lambda b: (kept_by_bin[(t.name, *b)] + planned[b], asked_by_bin[(t.name, *b)] + planned[b]))
            planned[(seed, shape)] += 1
            values = {"n": str(cfg.per_request), "shape": shape, "shape_instruction": SHAPES[shape]}
            if t.schema is not None:
                sample = _sample_tables(t.schema, seed, shape, cfg, random.Random(f"{cfg.seed}/{t.name}/{round_}/{k}"))
                values.update(db_id=t.name, schema=serialize_schema(sample, "ddl", SchemaOptions(rows=cfg.example_rows)))
            else:
                values.update(topic=t.name)
            reqs.append(_Req(f"{t.name}/r{round_}/{k}", t.name, seed, shape, round_, template.fill(**values)))
    return reqs


# -- verifying one answer -------------------------------------------------------------------
@dataclass
class _Seen:
    sql: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    questions: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def add(self, target: str, question: str, sql: str) -> None:
        self.sql[target].add(canonical_sql(sql))
        self.questions[target].append(_norm_question(question))


def _exec_reason(res: ExecResult, need_rows: bool) -> tuple[str | None, str]:
    if res.status is Status.TIMEOUT:
        return "timeout", res.error
    if not res.ok:
        return "error", f"{res.status.value}: {res.error}"
    if need_rows and not res.rows:
        return "empty_result", "the query returns no rows"
    return None, ""


def _verify(req: _Req, text: str, target: _Target, judge: Judge, seen: _Seen, cfg: SynthConfig, ctx_dir: Path) -> list[dict]:
    cands: list[dict] = []
    if target.schema is not None:
        for q, sql in parse_pairs(text):
            cands.append({"question": q, "sql": sql, "context": None})
    else:
        for ctx, q, sql in parse_triplets(text):
            cands.append({"question": q, "sql": sql, "context": ctx})
    tasks, slots = [], []
    for c in cands:
        c.update(reason=None, detail="", rows=None)
        if not c["sql"]:
            c.update(reason="no_sql", detail="no SELECT query after the question")
            continue
        if target.schema is not None:
            db = target.db_path
        else:
            db, why = context_database(c["context"], ctx_dir) if c["context"] else (None, "no CREATE TABLE context")
            if db is None:
                c.update(reason="bad_context", detail=why)
                continue
        tasks.append((db, c["sql"]))
        slots.append(c)
    judged = judge.judge_many([Item(db, None, [sql]) for db, sql in tasks]) if tasks else []  # no gold: runs, and rows?
    for c, j in zip(slots, judged, strict=True):
        res = j.candidates[0].result
        reason, detail = _exec_reason(res, need_rows=target.schema is not None)
        c.update(reason=reason, detail=detail, rows=len(res.rows) if res.ok else None)
    for c in cands:
        if c["reason"] is not None:
            continue
        c["shape"], c["tables"] = analyze_sql(c["sql"])
        if canonical_sql(c["sql"]) in seen.sql[target.name]:
            c.update(reason="duplicate_sql", detail="the same query (normalised) was already kept")
        elif near_duplicate(c["question"], seen.questions[target.name], cfg.question_similarity):
            c.update(reason="near_duplicate_question", detail="a kept question reads nearly the same")
        else:
            seen.add(target.name, c["question"], c["sql"])
    return cands


# -- the command ------------------------------------------------------------------------------
def run_synth(cfg: SynthConfig) -> SynthStats:
    validate(cfg)
    mode = "database" if cfg.databases is not None else "topic"
    default, known, required = ((DATABASE_PROMPT, DATABASE_PLACEHOLDERS, ("schema",)) if mode == "database"
                                else (TOPIC_PROMPT, TOPIC_PLACEHOLDERS, ("topic",)))  # fmt: skip
    template = Template.load(cfg.prompt_file, default, known, required)
    targets = _load_targets(cfg)
    out = Path(cfg.out)
    run_config = {**asdict(cfg), "databases": str(Path(cfg.databases).resolve()) if cfg.databases else None,
                  "prompt": template.text}  # fmt: skip
    prepare_run_folder(out, run_config, ("databases", "topics", "prompt", "shapes", "per_request", "seed"), cfg.overwrite, "synth")
    write_config(cfg, out / "config.yaml")  # the resolved config: `--config` reads it back
    log_path = out / "log.jsonl"
    log = read_log(log_path)
    done = {str(r["id"]) for r in log}
    seen = _Seen()
    for r in log:  # replay: the kept pairs so far, for deduplication
        for c in r["candidates"]:
            if c["reason"] is None:
                seen.add(r["target"], c["question"], c["sql"])
    stats = SynthStats(str(out), mode, len(targets), already_done=len(done))
    by_name = {t.name: t for t in targets}
    t0 = time.monotonic()
    backend = None
    writer = JsonlAppender(log_path)
    judge = Judge(limits=Limits(cfg.sql_timeout, cfg.max_rows, cfg.memory_mb), workers=0)
    try:
        for round_ in range(cfg.max_rounds):
            plan = _plan(round_, targets, log, cfg, template)
            todo = [r for r in plan if r.id not in done]
            if not plan:
                break
            if not todo:
                continue
            backend = backend or load_backend(cfg.teacher)
            reqs = {r.id: r for r in todo}
            gen = GenerationConfig(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p, seed=cfg.seed + round_)
            kept_now = 0
            with progress_bar(len(todo), f"round {round_ + 1}/{cfg.max_rounds}", cfg.progress, unit="requests") as advance:
                for c in backend.generate([Request(r.id, [{"role": "user", "content": r.prompt}]) for r in todo], gen):
                    req = reqs[c.id]
                    text = c.texts[0] if c.texts else ""
                    cands = _verify(req, text, by_name[req.target], judge, seen, cfg, out / "contexts") if not c.error else []
                    rec = {"id": req.id, "target": req.target, "seed": req.seed, "shape": req.shape, "round": round_,
                           "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens, "error": c.error,
                           "text": text, "candidates": cands}  # fmt: skip
                    writer.write(rec)
                    log.append(rec)
                    stats.done_now += 1
                    kept_now += sum(x["reason"] is None for x in cands)
                    advance(1, note=f"kept {kept_now}")
    finally:
        writer.close()
        judge.close()
        if backend is not None:
            backend.close()
    stats.seconds = round(time.monotonic() - t0, 2)
    return _finalize(cfg, out, targets, log, stats)


def _pick(kept: list[dict], n: int) -> list[dict]:
    """Up to ``n`` pairs, round-robin over (shape, main table) bins in order of first appearance."""
    bins: dict[tuple, list[dict]] = {}
    for c in kept:
        bins.setdefault((c["shape"], (c.get("tables") or [""])[0].lower()), []).append(c)
    queues = list(bins.values())
    picked: list[dict] = []
    while len(picked) < n and any(queues):
        for q in queues:
            if q and len(picked) < n:
                picked.append(q.pop(0))
    return picked


def _table_context(schema: Schema, tables: list[str]) -> str:
    ddls = []
    for name in tables:
        t = next((t for t in schema.user_tables if t.name.lower() == name.lower()), None)
        if t is not None:
            ddl = t.ddl.strip().rstrip(";") if t.ddl else serialize_schema(Schema(schema.db_id, [t]), "ddl")
            ddls.append(ddl + ";")
    return "\n".join(ddls)


def _finalize(cfg: SynthConfig, out: Path, targets: list[_Target], log: list[dict], stats: SynthStats) -> SynthStats:
    rejected: Counter = Counter()
    rejected_records, kept_by_target = [], defaultdict(list)
    for r in log:
        stats.requests += 1
        stats.teacher_prompt_tokens += r["prompt_tokens"]
        stats.teacher_completion_tokens += r["completion_tokens"]
        if r["error"] or not r["candidates"]:
            why = "teacher_error" if r["error"] else "no_pairs"
            rejected[why] += 1
            rejected_records.append({"request": r["id"], "target": r["target"], "reason": why, "detail": r["error"] or r["text"][:500]})
        for c in r["candidates"]:
            stats.candidates += 1
            if c["reason"] is None:
                kept_by_target[r["target"]].append({**c, "request": r["id"]})
            else:
                rejected[c["reason"]] += 1
                rejected_records.append({"request": r["id"], "target": r["target"], **c})
    questions, triplets = [], []
    by_shape, by_table = Counter(), Counter()
    with Judge(limits=Limits(cfg.sql_timeout, cfg.max_rows, cfg.memory_mb), workers=0) as judge:
        for t in targets:
            kept = kept_by_target[t.name]
            stats.kept += len(kept)
            picked = _pick(kept, cfg.per_database)
            stats.by_target[t.name] = len(picked)
            for k, c in enumerate(picked):
                by_shape[c["shape"]] += 1
                for name in c["tables"]:
                    by_table[f"{t.name}.{name}" if t.schema is not None else name] += 1
                pid = f"synth-{t.name}-{k}" if t.schema is not None else f"synth-{re.sub(r'[^A-Za-z0-9]+', '-', t.name).strip('-')}-{k}"
                if t.schema is not None:
                    questions.append({"id": pid, "db_id": t.name, "question": c["question"], "sql": c["sql"],
                                      "shape": c["shape"], "tables": c["tables"]})  # fmt: skip
                    context = _table_context(t.schema, c["tables"])
                    db, _ = context_database(context, out / "contexts") if context else (None, "")
                    if db is None or not judge.judge(db, None, [c["sql"]]).candidates[0].executed:
                        stats.triplets_failed += 1
                        continue
                    triplets.append({"id": pid, "db_id": t.name, "question": c["question"], "context": context, "answer": c["sql"], "shape": c["shape"]})
                else:
                    triplets.append({"id": pid, "topic": t.name, "question": c["question"], "context": c["context"], "answer": c["sql"], "shape": c["shape"]})
    stats.written = len(questions) if stats.mode == "database" else len(triplets)
    stats.triplets = len(triplets)
    stats.rejected = {k: rejected[k] for k in REASONS if rejected[k]}
    stats.by_shape = {s: by_shape[s] for s in SHAPES if by_shape[s]}
    stats.by_table = dict(sorted(by_table.items()))
    if stats.mode == "database":
        atomic_write_jsonl(out / "questions.jsonl", questions)
    atomic_write_jsonl(out / "triplets.jsonl", triplets)
    atomic_write_jsonl(out / "rejected.jsonl", rejected_records)
    atomic_write_text(out / "stats.json", json.dumps({**stats.to_dict(), "teacher": asdict(cfg.teacher)}, indent=2) + "\n")
    return stats
