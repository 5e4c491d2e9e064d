"""``sqlwright data build``: a fine-tuning dataset from any source, in one prompt format.

Writes, into ``--out``:

* ``dataset/``: a ``datasets.DatasetDict`` (``save_to_disk``), one split per source split
  (or ``train`` / ``validation`` split by database);
* ``<split>.jsonl``: the same records as JSON lines;
* ``prompt.json``: format, serializer and options; training and prediction read it;
* ``config.yaml``: the resolved config (``sqlwright data build --config`` repeats the build);
* ``stats.json`` and ``lengths.png``: counts, what was dropped and why, schema cuts, and
  prompt lengths (tokens with ``--tokenizer``, else characters);
* ``dataset.json``: the ``db_root`` each record's ``db_path`` is relative to, and
  ``databases/`` holding the databases a build creates (``bird-questions``), so the folder can
  be moved to another machine (see ``sqlwright.data.dataset``).

Everything is written to a temporary folder beside ``--out`` and moved into place at the
end, so a failed build never leaves a dataset that looks complete.
"""

from __future__ import annotations

import json
import random
import shutil
import statistics
import tempfile
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from sqlwright.config import opt, validate, write_config
from sqlwright.data.dataset import absent_databases, portable_refs, write_dataset_file
from sqlwright.data.sources import SourceConfig, load_source
from sqlwright.errors import UserError
from sqlwright.infer.tokens import with_token_counter
from sqlwright.progress import progress_bar
from sqlwright.prompts.spec import PromptSpec
from sqlwright.types import Example

SPLIT_BY = ("source", "database")


@dataclass
class BuildConfig:
    source: str = opt(help="spider, bird, bird-questions, sql-create-context or sqlite.", argument=True)
    out: str = opt("data/built", "Output folder.", short="-o")
    source_config: SourceConfig = opt(factory=SourceConfig, flatten=True)
    prompt: PromptSpec = opt(factory=PromptSpec, flatten=True)
    split_by: str = opt("source", "source (keep its splits) or database (train/validation, no database in both).")
    val_fraction: float = opt(0.1, "With --split-by database: share of questions in validation.")
    seed: int = opt(0, "Seed for the database split.")
    dedupe: bool = opt(True, "Drop exact (question, SQL) repeats.")
    overwrite: bool = opt(False, "Replace an existing --out folder.")
    progress: bool = opt(True, "Show a progress bar.")

    def check(self) -> list[str]:
        p = []
        if self.source_config.db_url is not None:
            from sqlwright.db.registry import SQLGLOT_DIALECTS, dialect_of
            from sqlwright.db.urls import check_template

            url = self.source_config.db_url
            if problem := check_template(url):
                p.append(problem)
            elif dialect_of(url) not in SQLGLOT_DIALECTS:
                try:
                    from sqlwright.db.registry import check_targets

                    check_targets({url}, probe=False)
                except UserError as e:
                    p.append(str(e))
            elif self.source not in ("spider", "bird", "sqlite"):
                p.append(f"--db-url names the databases of a benchmark (spider, bird) or of your questions (sqlite), not of {self.source}")
            elif self.prompt.dialect not in ("sqlite", SQLGLOT_DIALECTS.get(dialect_of(url))):
                p.append(f"--dialect {self.prompt.dialect} does not match --db-url ({dialect_of(url)} databases)")
        if self.split_by not in SPLIT_BY:
            p.append(f"--split-by must be one of {', '.join(SPLIT_BY)}, not {self.split_by!r}")
        if not 0 < self.val_fraction < 1:
            p.append(f"--val-fraction must be between 0 and 1, not {self.val_fraction}")
        return p


@dataclass
class BuildResult:
    out: Path
    stats: dict


def split_by_database(examples: list[Example], fraction: float, seed: int) -> dict[str, list[Example]]:
    """Whole databases go to validation until it holds about ``fraction`` of the questions."""
    by_db: dict[str, list[Example]] = defaultdict(list)
    for ex in examples:
        by_db[ex.db_id].append(ex)
    dbs = sorted(by_db)
    if len(dbs) < 2:
        raise UserError(f"--split-by database needs at least two databases; the source has {len(dbs)}")
    random.Random(seed).shuffle(dbs)
    target, val = fraction * len(examples), set()
    for db in dbs[:-1]:  # keep at least one database for training
        if sum(len(by_db[d]) for d in val) >= target:
            break
        val.add(db)
    return {
        "train": [ex for ex in examples if ex.db_id not in val],
        "validation": [ex for ex in examples if ex.db_id in val],
    }


def dataset_record(ex: Example, split: str, rendered: dict) -> dict:
    """One line of a built dataset's ``<split>.jsonl``: the example's fields and its rendered prompt."""
    return {"id": ex.id, "split": split, "db_id": ex.db_id, "question": ex.question, "evidence": ex.evidence,
            "sql": ex.sql, "difficulty": ex.difficulty, "db_path": ex.db_path, "context": ex.context, **rendered}  # fmt: skip


def record_lengths(records: list[dict], spec: PromptSpec) -> list[int]:
    """Each record's prompt and answer length: tokens of the spec's tokenizer, else characters."""
    def text(r):
        if "messages" in r:
            return "".join(m["content"] for m in r["messages"])
        return r["prompt"] + r["completion"]

    count = spec.count_tokens if spec.tokenizer else len
    return [count(text(r)) for r in records]


def length_percentiles(values: list[int]) -> dict:
    """p50, p95, max and mean of ``values`` (``{}`` for none), as ``stats.json`` records them."""
    if not values:
        return {}
    q = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else [values[0]] * 99
    return {"p50": round(q[49]), "p95": round(q[94]), "max": max(values), "mean": round(statistics.fmean(values))}


def _plot(lengths: dict[str, list[int]], unit: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for split, values in lengths.items():
        ax.hist(values, bins=50, alpha=0.6, label=f"{split} ({len(values)})")
    ax.set_xlabel(f"example length ({unit})")
    ax.set_ylabel("examples")
    ax.set_title("Prompt + target length")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def build_dataset(cfg: BuildConfig) -> BuildResult:
    validate(cfg)
    out = Path(cfg.out)
    if out.exists() and any(out.iterdir()) and not cfg.overwrite:
        raise UserError(f"{out}: already exists and is not empty; choose another --out or pass --overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        return _build(cfg, out, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _masked(src: SourceConfig) -> SourceConfig:
    """``src`` with the passwords of its URLs masked: what a file of the dataset may record."""
    from sqlwright.db.urls import mask_url

    return replace(src, url=src.url and mask_url(src.url), db_url=src.db_url and mask_url(src.db_url))


def _unlocked(src: SourceConfig) -> SourceConfig:
    """``src`` with the passwords dropped from its URLs: stats.json's copy, read again by ``data
    cot``, which then takes the password from the engine's usual places (or its own --db-url)."""
    from sqlwright.db.urls import drop_password

    return replace(src, url=src.url and drop_password(src.url), db_url=src.db_url and drop_password(src.db_url))


def _build(cfg: BuildConfig, out: Path, tmp: Path) -> BuildResult:
    write_config(replace(cfg, source_config=_masked(cfg.source_config)), tmp / "config.yaml")  # `--config` reads it back
    spec = with_token_counter(cfg.prompt)
    src = cfg.source_config
    if src.db_url:  # prompts ask for the engine's SQL (its name, its types)
        from sqlwright.db.registry import SQLGLOT_DIALECTS, dialect_of

        spec.dialect = SQLGLOT_DIALECTS[dialect_of(src.db_url)]
    src.examples, src.rows = max(src.examples, spec.examples), max(src.rows, spec.rows)
    src.work_dir = str(tmp)  # databases a source creates go into the dataset: <out>/databases/
    data = load_source(cfg.source, src)
    # database references relative to a root recorded in dataset.json, so the folder can move
    every = [ex for exs in data.splits.values() for ex in exs]
    absent = absent_databases((ex.db_id, ex.db_path) for ex in every)  # e.g. Spider's wta_1: scored db_missing
    db_root, refs = portable_refs((ex.db_path for ex in every), inside=tmp)
    for ex in every:
        ex.db_path = refs.get(ex.db_path, ex.db_path) if ex.db_path else None
    splits = data.splits
    if cfg.split_by == "database":
        splits = split_by_database([ex for exs in splits.values() for ex in exs], cfg.val_fraction, cfg.seed)

    dropped: Counter = Counter()
    records: dict[str, list[dict]] = {}
    cut = 0
    total = sum(len(v) for v in splits.values())
    with progress_bar(total, "building prompts", cfg.progress, unit="examples") as advance:
        for split, examples in splits.items():
            records[split] = []
            seen: set[tuple[str, str]] = set()  # within a split: a benchmark's dev set stays whole
            for ex in examples:
                advance(1)
                key = (ex.question.strip(), ex.sql.strip())
                if cfg.dedupe and key in seen:
                    dropped["duplicate"] += 1
                    continue
                seen.add(key)
                rendered, was_cut = spec.render(ex, data.schemas[ex.db_id])
                cut += was_cut
                records[split].append(dataset_record(ex, split, rendered))

    unit = "tokens" if spec.tokenizer else "characters"
    lengths = {s: record_lengths(rs, spec) for s, rs in records.items()}
    stats = {
        "source": cfg.source,
        "splits": {s: len(rs) for s, rs in records.items()},
        "databases": {s: len({r["db_id"] for r in rs}) for s, rs in records.items()},
        "dropped": dict(dropped),
        "schema_cut": cut,
        "max_schema_tokens": spec.max_schema_tokens,
        "length_unit": unit,
        "lengths": {s: length_percentiles(v) for s, v in lengths.items()},
        "split_by": cfg.split_by,
        "seed": cfg.seed,
        "source_config": {**asdict(_unlocked(src)), "work_dir": None},  # the build's own folder: databases/ of the dataset
    }
    _write(out, tmp, records, spec, stats, lengths, unit, cfg.overwrite, db_root, absent)
    return BuildResult(out, stats)


def _write(out: Path, tmp: Path, records, spec: PromptSpec, stats: dict, lengths, unit: str, overwrite: bool,
           db_root: str | None, absent: list[str]) -> None:
    try:
        from datasets import Dataset, DatasetDict
        from datasets.utils.logging import disable_progress_bar
    except ImportError:
        raise UserError("writing datasets needs the datasets library: pip install 'sqlwright[data]'") from None
    disable_progress_bar()  # ours already showed progress
    try:
        for split, rs in records.items():
            with open(tmp / f"{split}.jsonl", "w", encoding="utf-8") as f:
                for r in rs:
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")
        DatasetDict({s: Dataset.from_list(rs) for s, rs in records.items() if rs}).save_to_disk(str(tmp / "dataset"))
        spec.save(tmp / "prompt.json")
        _plot(lengths, unit, tmp / "lengths.png")
        (tmp / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
        write_dataset_file(tmp, db_root, absent)
        if out.exists():
            if not overwrite:
                raise UserError(f"{out}: appeared while building; choose another --out")
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
