"""What a report shows, read from disk: an eval run folder, the predictions' own latencies,
and a Hugging Face Trainer's ``trainer_state.json``. Standard library only.

Every problem with the user's input is one :class:`~sqlwright.errors.UserError` line that
names the file and says what to do.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sqlwright.errors import UserError
from sqlwright.files import iter_jsonl

# Error categories derived from a per-example record, in display order:
# key -> (label, colour, what it means).
CATEGORIES: dict[str, tuple[str, str, str]] = {
    "correct": ("correct", "#2da44e", "same result as the gold SQL"),
    "wrong": ("wrong result", "#e16f24", "ran, but the rows differ from the gold's"),
    "unknown_name": ("unknown column/table", "#bf3989", "names a column or table the database lacks"),
    "syntax_error": ("syntax error", "#cf222e", "did not compile (bad syntax, unknown function, ...)"),
    "runtime_error": ("runtime error", "#a40e26", "compiled, then failed while running"),
    "timeout": ("timeout", "#8250df", "stopped at the time limit"),
    "too_many_rows": ("too many rows", "#6639ba", "returned more rows than the limit"),
    "forbidden": ("forbidden", "#57606a", "would write, attach or run several statements: refused"),
    "missing": ("missing prediction", "#8c959f", "no prediction for this question"),
    "gold_error": ("gold SQL failed", "#9a6700", "the gold query itself failed"),
    "db_missing": ("database missing", "#d0d7de", "not scored: the database file is absent"),
    "not_executed": ("not executed", "#afb8c1", "exact match only (--etype match): nothing was run"),
}
_UNKNOWN_NAME = re.compile(r"no such (column|table)", re.I)
_ERROR_STATUS = {"syntax_error", "runtime_error", "forbidden", "timeout", "too_many_rows"}


def categorize(rec: dict) -> str:
    """The error category of one ``examples.jsonl`` record (a key of :data:`CATEGORIES`)."""
    verdict = rec.get("verdict")
    if verdict == "error":
        status = rec.get("pred_status")
        if status == "syntax_error" and _UNKNOWN_NAME.search(rec.get("reason") or ""):
            return "unknown_name"
        return status if status in _ERROR_STATUS else "runtime_error"
    return verdict if verdict in CATEGORIES else "runtime_error"


@dataclass
class RunData:
    """One eval run folder as ``sqlwright eval`` wrote it."""

    path: Path
    summary: dict
    records: list[dict]
    config: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.resolve().name

    def category_counts(self) -> Counter:
        return Counter(categorize(r) for r in self.records)


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: not valid JSON ({e.msg}); run `sqlwright eval` again to rewrite it") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def load_run(path: Path | str, role: str = "RUN_DIR") -> RunData:
    """Read ``summary.json``, ``examples.jsonl`` and (optional) ``config.json`` of a run folder."""
    path = Path(path)
    make = f"create one with: sqlwright eval PREDICTIONS --benchmark DIR --out {path}"
    if path.is_file() and path.name in ("summary.json", "examples.jsonl", "config.json"):
        path = path.parent
    if not path.exists():
        raise UserError(f"{path}: {role} not found; pass the folder `sqlwright eval --out` wrote, or {make}")
    if not path.is_dir():
        raise UserError(f"{path}: {role} must be an eval run folder (holding summary.json and examples.jsonl), not a file")
    missing = [n for n in ("summary.json", "examples.jsonl") if not (path / n).is_file()]
    if missing:
        raise UserError(f"{path}: not an eval run folder (no {' or '.join(missing)}); {make}")
    summary = _read_json(path / "summary.json")
    need = ("ex", "questions", "counts", "by_difficulty", "by_database")
    if not isinstance(summary, dict) or any(k not in summary for k in need):
        lacks = [k for k in need if not isinstance(summary, dict) or k not in summary]
        raise UserError(f"{path / 'summary.json'}: not a summary written by `sqlwright eval` (no {', '.join(map(repr, lacks))})")
    records = []
    ex_file = path / "examples.jsonl"
    for n, rec in iter_jsonl(ex_file, hint="run `sqlwright eval` again to rewrite it"):
        if not isinstance(rec, dict) or "id" not in rec or "verdict" not in rec:
            raise UserError(f"{ex_file}:{n}: not a record written by `sqlwright eval` (needs 'id' and 'verdict')")
        rec["id"] = str(rec["id"])
        records.append(rec)
    if len(records) != summary["questions"]:
        raise UserError(f"{ex_file}: has {len(records)} records but summary.json counts {summary['questions']} "
                        "questions; the run folder is incomplete, run `sqlwright eval` again")  # fmt: skip
    config = {}
    if (path / "config.json").is_file():
        loaded = _read_json(path / "config.json")
        config = loaded if isinstance(loaded, dict) else {}
    return RunData(path, summary, records, config)


# -- comparing two runs -----------------------------------------------------------------
@dataclass
class Comparison:
    """How RUN differs from OTHER, question by question (matched by id)."""

    other: RunData
    other_by_id: dict[str, dict]
    fixed: list[str]  # ids wrong in OTHER, right in RUN
    broken: list[str]  # ids right in OTHER, wrong in RUN
    both_right: int
    both_wrong: int


def compare_runs(run: RunData, other: RunData) -> Comparison:
    """Pair the two runs' records by question id; both must be on the same questions."""
    mine = {r["id"]: r for r in run.records}
    theirs = {r["id"]: r for r in other.records}
    only_mine, only_theirs = sorted(mine.keys() - theirs.keys()), sorted(theirs.keys() - mine.keys())
    if only_mine or only_theirs:
        parts = []
        if only_mine:
            parts.append(f"{len(only_mine)} question ids only in {run.path} (e.g. {only_mine[0]!r})")
        if only_theirs:
            parts.append(f"{len(only_theirs)} only in {other.path} (e.g. {only_theirs[0]!r})")
        raise UserError(f"--compare {other.path}: not the same questions as {run.path}: {', '.join(parts)}; "
                        "compare two evals of the same benchmark split")  # fmt: skip
    for qid, r in mine.items():
        o = theirs[qid]
        if (r.get("db_id"), r.get("question")) != (o.get("db_id"), o.get("question")):
            raise UserError(f"--compare {other.path}: question {qid!r} differs from {run.path}'s "
                            f"({o.get('db_id')}: {o.get('question')!r} vs {r.get('db_id')}: {r.get('question')!r}); "
                            "compare two evals of the same benchmark split")  # fmt: skip
    fixed = [q for q in mine if mine[q].get("correct") and not theirs[q].get("correct")]
    broken = [q for q in mine if not mine[q].get("correct") and theirs[q].get("correct")]
    both_right = sum(bool(mine[q].get("correct") and theirs[q].get("correct")) for q in mine)
    return Comparison(other, theirs, fixed, broken, both_right, len(mine) - both_right - len(fixed) - len(broken))


# -- latency ------------------------------------------------------------------------------
def prediction_latencies(run: RunData) -> dict[str, float]:
    """``latency`` (seconds) per question id from the run's predictions file, when that file
    is sqlwright JSONL (``sqlwright predict`` writes it) and still readable; else ``{}``."""
    pred = run.config.get("predictions")
    if not pred or run.summary.get("predictions_format") not in (None, "jsonl"):
        return {}
    path = Path(pred)
    if not path.is_file():
        return {}
    ids = {r["id"] for r in run.records}
    out: dict[str, float] = {}
    try:
        for _, obj in iter_jsonl(path):
            lat = obj.get("latency") if isinstance(obj, dict) else None
            if isinstance(lat, (int, float)) and not isinstance(lat, bool) and lat >= 0 and str(obj.get("id")) in ids:
                out[str(obj["id"])] = float(lat)
    except (OSError, UserError):
        return {}  # the file changed since the eval; fall back to execution times
    return out


# -- training -----------------------------------------------------------------------------
@dataclass
class TrainingLog:
    """Curves from a Trainer's ``log_history``: (step, value) pairs."""

    source: Path
    loss: list[tuple[float, float]]
    eval_loss: list[tuple[float, float]]
    accuracy: list[tuple[float, float]]  # in percent
    accuracy_key: str | None
    global_step: int | None
    max_steps: int | None
    epoch: float | None
    # GRPO: the mean total reward, each reward's mean (``rewards/<name>/mean``) and the share of
    # completions matching the gold, by step ({} for supervised runs)
    rewards: dict[str, list[tuple[float, float]]] = field(default_factory=dict)


def _step_of(path: Path) -> int:
    m = re.search(r"(\d+)$", path.name)
    return int(m.group(1)) if m else -1


def find_trainer_state(path: Path) -> Path | None:
    """``trainer_state.json`` in a training folder, else in its last ``checkpoint-*``."""
    if path.is_file():
        return path if path.suffix == ".json" else None
    if (path / "trainer_state.json").is_file():
        return path / "trainer_state.json"
    checkpoints = sorted((p for p in path.glob("checkpoint-*") if (p / "trainer_state.json").is_file()), key=_step_of)
    return checkpoints[-1] / "trainer_state.json" if checkpoints else None


def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def load_training(path: Path | str) -> TrainingLog:
    """Read the loss curve and in-training accuracy (``dev_execution_accuracy``, a fraction
    or a percent) from a training folder, its last checkpoint, or the json file itself."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: --train folder not found; pass the training output folder (the Trainer's output_dir)")
    state_file = find_trainer_state(path)
    if state_file is None:
        raise UserError(f"{path}: no trainer_state.json there or in a checkpoint-* folder; pass the Trainer's output_dir")
    state = _read_json(state_file)
    history = state.get("log_history") if isinstance(state, dict) else None
    if not isinstance(history, list):
        raise UserError(f"{state_file}: no 'log_history' list; is this a Hugging Face Trainer's trainer_state.json?")
    loss, eval_loss, acc = [], [], []
    rewards: dict[str, list[tuple[float, float]]] = {}
    acc_key = None
    for i, entry in enumerate(history):
        if not isinstance(entry, dict):
            continue
        step = _num(entry.get("step"))
        step = float(i) if step is None else step
        if _num(entry.get("loss")) is not None:
            loss.append((step, _num(entry["loss"])))
        if _num(entry.get("eval_loss")) is not None:
            eval_loss.append((step, _num(entry["eval_loss"])))
        for key, value in entry.items():
            if (key == "reward" or (key.startswith("rewards/") and key.endswith("/mean")) or key == "execution/correct") \
                    and _num(value) is not None:
                name = "reward" if key == "reward" else "matches gold" if key == "execution/correct" else key.split("/")[1]
                rewards.setdefault(name, []).append((step, _num(value)))
            if key.endswith("dev_execution_accuracy") and _num(value) is not None:
                acc.append((step, _num(value)))
                acc_key = key
    if acc and max(v for _, v in acc) <= 1.0:
        acc = [(s, 100 * v) for s, v in acc]
    gs, ms = _num(state.get("global_step")), _num(state.get("max_steps"))
    return TrainingLog(state_file, loss, eval_loss, acc, acc_key, int(gs) if gs is not None else None,
                       int(ms) if ms is not None else None, _num(state.get("epoch")), rewards)  # fmt: skip


def auto_training_dir(run: RunData) -> Path | None:
    """The predictions file's folder when it holds a Trainer's state (predictions written
    into the training output folder); ``None`` otherwise."""
    pred = run.config.get("predictions")
    if not pred:
        return None
    folder = Path(pred).parent
    return folder if folder.is_dir() and find_trainer_state(folder) is not None else None
