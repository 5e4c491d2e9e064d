"""``sqlwright quickstart``: from nothing to a fine-tuned text-to-SQL model and a before/after
report, on the machine at hand, within a time budget.

``quickstart(QuickstartConfig) -> QuickstartResult`` runs five stages into one folder (``--out``):

1. ``benchmark/``: the Spider slice shipped in the package (``spider_mini/``), its dev set cut
   to ``--questions``; ``data/``: the dataset built from it (the CPU recipe's: cookbook prompts,
   compact schemas);
2. ``baseline/``: the base model's predictions (``predictions.jsonl``) and their evaluation
   (``eval/``);
3. ``model/``: a LoRA fine-tune with the settings of ``configs/sft/smollm2-135m-cpu-lora.yaml``
   (kept here in ``RECIPE``, since an installed package cannot read ``configs/``), given what
   the budget leaves once both predictions are paid for, by time: the cosine schedule is laid
   over those minutes (``schedule_by_time``), epochs run as many as fit, and training stops when
   the minutes are up, on a fast machine or a slow one;
4. ``finetuned/``: the same for the fine-tuned adapter;
5. ``report.html``: the fine-tuned run against the baseline, with the training loss curve.

A rerun with the same ``--out`` skips what is finished: predictions resume by themselves,
training resumes from its last checkpoint, a finished evaluation is reused.
``quickstart.json`` records the options (a rerun must use the same ones) and what was measured.
"""

from __future__ import annotations

import bisect
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlwright import __version__
from sqlwright.config import opt, validate, write_config
from sqlwright.errors import UserError
from sqlwright.files import atomic_write_text, read_jsonl
from sqlwright.train.config import LoraOptions, TrainConfig

SLICE = Path(__file__).resolve().parent / "spider_mini"
TRAIN_QUESTIONS, DEV_QUESTIONS = 465, 100  # questions in the slice's train_spider.json and dev.json
MODEL = "smollm2-135m"
STATE_NAME = "quickstart.json"
# the dataset of the CPU recipe (its "# Dataset:" line): cookbook prompts with compact schemas
DATASET = {"source": "spider", "splits": ["train", "dev"], "format": "cookbook", "serializer": "compact"}
# configs/sft/smollm2-135m-cpu-lora.yaml without data, output_dir and max_examples (the quickstart
# sets those); tests/test_quickstart.py checks that the two stay equal
RECIPE: dict = {
    "model": MODEL,
    "mode": "lora",
    "lora": {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"},
    "max_length": 512,
    "packing": False,
    "group_by_length": True,
    "epochs": 1,
    "learning_rate": 1.0e-3,
    "lr_scheduler": "cosine",
    "warmup": 0.05,
    "batch_size": 10,
    "grad_accum": 1,
    "logging_steps": 5,
    "save_steps": 50,
    "report_to": [],
}
# --guided: predict options of the guided run of each model, and its cost relative to greedy
# (measured on the 100 questions, bench/RESULTS.md: constrained ~1.3x, two refinement rounds ~2x)
GUIDED: dict[str, tuple[dict, float]] = {
    "none": ({}, 0.0),
    "schema": ({"constrain": "schema"}, 1.3),
    "refine": ({"refine": 2}, 2.0),
    "schema+refine": ({"constrain": "schema", "refine": 2}, 2.3),
}
# options that make two runs in one folder the same run (a rerun with these unchanged resumes)
IDENTITY = ("questions", "train_examples", "max_new_tokens")

# Time estimates (seconds). Prediction, before it is measured: model load + per question, on two
# CPU cores (bench/RESULTS.md: ~1.3 s per question at 128 new tokens, batch 16) or one GPU.
LOAD_S = {"cpu": 15.0, "cuda": 20.0}
PER_QUESTION_S = {"cpu": (0.3, 0.008), "cuda": (0.02, 0.0005)}  # (fixed, per new token)
EVAL_S = 10.0  # one evaluation of at most 100 questions, start-up included
TRAIN_OVERHEAD_S = {"cpu": 40.0, "cuda": 40.0}  # model load, tokenizing, the final save: outside max_minutes
MIN_TRAIN_S = 30.0
# Training speed from the baseline's: prediction time ~ (prompt tokens + DECODE_WEIGHT x completion
# tokens) / rate, and LoRA training runs at about TRAIN_PER_RATE x that rate: 0.40 in the full
# 20-minute run on two idle CPU cores (unpacked batches of similar length, trl's LM head on the
# labelled positions only: 453 training tokens/s; bench/RESULTS.md). It only says how many steps
# to expect: the schedule follows the clock.
DECODE_WEIGHT = 6.0
TRAIN_PER_RATE = 0.40


@dataclass
class QuickstartConfig:
    out: str = opt("runs/quickstart", "Folder for everything (a rerun with the same folder continues).", short="-o")
    minutes: float = opt(20.0, "Budget for the whole run; training gets what predicting and scoring leave.")
    questions: int = opt(DEV_QUESTIONS, f"Dev questions to score (the first N of {DEV_QUESTIONS}).")
    train_examples: int = opt(TRAIN_QUESTIONS, f"Training examples (a seeded sample of the {TRAIN_QUESTIONS}).")
    max_new_tokens: int = opt(128, "Most tokens generated per answer.")
    batch_size: int = opt(16, "Prompts per generation batch.")
    guided: str = opt("schema", "Execution-guided inference for both models, shown beside greedy: schema (constrained "
                      "decoding: only the database's names), refine (2 rounds of self-correction), schema+refine, or none.")
    progress: bool = opt(True, "Show progress bars.")

    def check(self) -> list[str]:
        p = []
        if not self.minutes > 0:
            p.append(f"--minutes must be positive, not {self.minutes}")
        if not 1 <= self.questions <= DEV_QUESTIONS:
            p.append(f"--questions must be between 1 and {DEV_QUESTIONS} (the slice's dev questions), not {self.questions}")
        if not 1 <= self.train_examples <= TRAIN_QUESTIONS:
            p.append(f"--train-examples must be between 1 and {TRAIN_QUESTIONS} (the slice's train questions), not {self.train_examples}")
        if self.max_new_tokens < 1:
            p.append(f"--max-new-tokens must be at least 1, not {self.max_new_tokens}")
        if self.batch_size < 1:
            p.append(f"--batch-size must be at least 1, not {self.batch_size}")
        if self.guided not in GUIDED:
            from sqlwright.errors import did_you_mean

            p.append(f"--guided must be one of {', '.join(GUIDED)}, not {self.guided!r}{did_you_mean(self.guided, GUIDED)}")
        return p


@dataclass
class QuickstartResult:
    out: Path
    report: Path
    baseline: dict  # summary.json of the baseline evaluation
    finetuned: dict  # summary.json of the fine-tuned model's evaluation
    training: dict  # train_summary.json
    seconds: float  # this invocation, wall clock
    reused: list[str] = field(default_factory=list)  # stages finished by an earlier run
    guided: dict = field(default_factory=dict)  # --guided: {"baseline": summary, "finetuned": summary}


def recipe_config(data: str, output_dir: str) -> TrainConfig:
    """The CPU recipe's ``TrainConfig`` for ``data``, written to ``output_dir``."""
    values = {k: v for k, v in RECIPE.items() if k != "lora"}
    return TrainConfig(data=data, output_dir=output_dir, lora=LoraOptions(**RECIPE["lora"]), **values)


# -- the folder -------------------------------------------------------------------------------
class _State:
    """``quickstart.json``: the options of the run in this folder and what was measured."""

    def __init__(self, path: Path, data: dict):
        self.path, self.data = path, data

    def get(self, key, default=None):
        return self.data.get(key, default)

    def set(self, **values) -> None:
        self.data.update(values)
        atomic_write_text(self.path, json.dumps(self.data, indent=2) + "\n")


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _open_out(out: Path, cfg: QuickstartConfig, finished: bool = False) -> _State:
    """The folder's state; a new run records its options (``quickstart.json``, ``config.yaml``),
    a ``finished`` one is left as it is (a rerun rewrites only the report)."""
    state_file = out / STATE_NAME
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: is a file; choose a folder for --out")
    if out.is_dir() and any(out.iterdir()) and not state_file.is_file():
        raise UserError(f"{out}: not empty and not a quickstart folder (no {STATE_NAME}); choose another --out")
    mine = {k: getattr(cfg, k) for k in IDENTITY}
    if state_file.is_file():
        try:
            data = json.loads(state_file.read_text(encoding="utf-8"))
            theirs = data["identity"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise UserError(f"{state_file}: unreadable; delete {out} or choose another --out") from None
        if theirs != mine:
            was = " ".join(f"{_flag(k)} {theirs.get(k)}" for k in IDENTITY)
            raise UserError(f"{out}: holds a quickstart run made with {was}; rerun with those options to resume it, "
                            "or choose another --out")  # fmt: skip
        if not finished:
            data["config"] = asdict(cfg)
    else:
        data = {"sqlwright": __version__, "identity": mine, "config": asdict(cfg)}
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{out}: cannot create the folder ({e.strerror}); choose another --out") from None
    state = _State(state_file, data)
    if not finished:
        state.set()
        write_config(cfg, out / "config.yaml")  # the resolved config: `sqlwright quickstart --config` repeats it
    return state


def _copy_benchmark(out: Path, questions: int) -> Path:
    """``out/benchmark``: the shipped slice with its dev set cut to the first ``questions``."""
    bench = out / "benchmark"
    if (bench / "dev.json").is_file():
        return bench
    if not (SLICE / "dev.json").is_file() or not (SLICE / "database").is_dir():
        raise UserError(f"{SLICE}: the Spider slice is missing from the installed package; reinstall sqlwright")
    tmp = out / ".benchmark.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(SLICE, tmp, copy_function=shutil.copyfile)
    dev = json.loads((SLICE / "dev.json").read_text(encoding="utf-8"))[:questions]
    (tmp / "dev.json").write_text(json.dumps(dev, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.rename(bench)
    return bench


# -- estimates --------------------------------------------------------------------------------
def _device() -> str:
    from sqlwright.train.config import cuda_available

    return "cuda" if cuda_available() else "cpu"


def predict_estimate(questions: int, max_new_tokens: int, device: str) -> float:
    """Seconds to load the model and predict ``questions``, before anything is measured."""
    fixed, per_token = PER_QUESTION_S[device]
    return LOAD_S[device] + questions * (fixed + per_token * max_new_tokens)


def packed_rows(lengths: list[int], capacity: int) -> int:
    """Rows that best-fit-decreasing packing (trl's ``bfd``) fills with examples of ``lengths``."""
    free: list[int] = []  # remaining room per row, sorted
    for n in sorted(lengths, reverse=True):
        i = bisect.bisect_left(free, n)
        room = (free.pop(i) if i < len(free) else capacity) - n
        bisect.insort(free, room)
    return len(free)


def _read_predictions(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return read_jsonl(path, what="predictions file", repair=True)  # a killed predict may have cut its last line


def _effective_rate(records: list[dict]) -> float | None:
    """Tokens per second of prediction, decode tokens weighted by ``DECODE_WEIGHT``."""
    seconds = sum(r.get("latency") or 0.0 for r in records)
    work = sum((r.get("prompt_tokens") or 0) + DECODE_WEIGHT * (r.get("completion_tokens") or 0) for r in records)
    return work / seconds if seconds > 0 and work > 0 else None


def _plan_steps(tc: TrainConfig, seconds: float, train_tps: float | None) -> dict:
    """What is expected to fit in ``seconds`` of training (shown, not enforced: the schedule
    follows the clock)."""
    from sqlwright.infer.hf import load_tokenizer
    from sqlwright.infer.models import resolve_model
    from sqlwright.train.data import conversation_tokens, sft_dataset

    tok = load_tokenizer(resolve_model(tc.model), tc.model)
    dataset, too_long = sft_dataset(tc.data, tc.split, tok, tc.max_length, tc.max_examples, tc.seed)
    lengths = [conversation_tokens(tok, r) for r in dataset]
    rows = packed_rows(lengths, tc.max_length) if tc.packing else len(lengths)
    steps_per_epoch = math.ceil(rows / (tc.batch_size * tc.grad_accum))
    epoch_steps = math.ceil(steps_per_epoch * tc.epochs)  # the recipe's schedule
    plan = {"examples": len(lengths), "too_long": too_long, "tokens": sum(lengths), "packed_rows": rows,
            "epoch_steps": epoch_steps, "train_tokens_per_second": round(train_tps, 1) if train_tps else None,
            "budget_s": round(seconds)}  # fmt: skip
    if train_tps:
        tokens_per_step = sum(lengths) / steps_per_epoch
        budget_steps = max(1, int(seconds * train_tps / tokens_per_step))
        plan["budget_steps"] = budget_steps
    else:
        plan["budget_steps"] = None
    return plan


# -- console ----------------------------------------------------------------------------------
def _minutes(seconds: float) -> str:
    return "< 1 min" if seconds < 60 else f"~{seconds / 60:.0f} min" if seconds >= 600 else f"~{seconds / 60:.1f} min"


def _print_plan(console, cfg: QuickstartConfig, out: Path, device: str, est: dict, done: dict) -> None:
    from rich.table import Table

    console.print(f"[bold]sqlwright quickstart[/]: fine-tune {MODEL} (SmolLM2-135M-Instruct) for text-to-SQL on a "
                  f"slice of Spider, within {cfg.minutes:g} minutes on the {'GPU' if device == 'cuda' else 'CPU'}. "
                  f"Everything goes to {out}/.")  # fmt: skip
    table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
    table.add_column("step")
    table.add_column("what")
    table.add_column("about", justify="right")
    n, t = cfg.questions, cfg.train_examples
    g = f", greedy and guided ({cfg.guided})" if GUIDED[cfg.guided][0] else ""
    rows = [
        ("1", f"build the dataset: {TRAIN_QUESTIONS} train and {n} dev questions (cookbook prompt, compact schema)", est["build"]),
        ("2", f"baseline: {MODEL} predicts the {n} dev questions{g}; execute and score them", est["baseline"]),
        ("3", f"fine-tune (LoRA, CPU recipe) on {'all the' if t >= TRAIN_QUESTIONS else f'{t} of the'} training examples, "
              "for what the budget leaves", est["train"]),
        ("4", f"fine-tuned: predict and score the same questions{g}", est["finetuned"]),
        ("5", "compare: before/after table and report.html", est["report"]),
    ]
    for (step, what, seconds), key in zip(rows, ("build", "baseline", "train", "finetuned", "report"), strict=True):
        table.add_row(step, what, "done, reused" if done.get(key) else _minutes(seconds))
    console.print(table)
    console.print("Progress bars show each stage; stop any time with Ctrl-C and run the same command to continue.")


def _header(console, step: int, title: str) -> None:
    console.print()
    console.rule(f"[bold]{step}/5 · {title}", align="left")


def _failed(summary: dict) -> int:
    """Predictions that did not run: errors, timeouts and too many rows."""
    c = summary["counts"]
    return c["error"] + c["timeout"] + c["too_many_rows"]


def _pct(v) -> str:
    return "-" if v is None else f"{v:.1f}%"


def _diff(a, b) -> str:
    if a is None or b is None:
        return ""
    d = b - a
    style = "green" if d > 0 else "red" if d < 0 else ""
    text = f"{d:+.1f}"
    return f"[{style}]{text}[/]" if style else text


def print_comparison(console, base: dict, tuned: dict, training: dict) -> None:
    """The before/after table: execution accuracy overall and by hardness, and what went wrong."""
    from rich.table import Table

    table = Table(title="Before and after fine-tuning (execution accuracy on the dev questions)")
    table.add_column("", style="bold")
    table.add_column("baseline", justify="right")
    table.add_column("fine-tuned", justify="right")
    table.add_column("change", justify="right")
    table.add_row("execution accuracy", _pct(base["ex"]), _pct(tuned["ex"]), _diff(base["ex"], tuned["ex"]))
    table.add_row("correct / total", f"{base['correct']}/{base['scored']}", f"{tuned['correct']}/{tuned['scored']}",
                  f"{tuned['correct'] - base['correct']:+d}")  # fmt: skip
    for name, group in tuned.get("by_difficulty", {}).items():
        other = base.get("by_difficulty", {}).get(name, {})
        table.add_row(f"  {name} ({group['count']})", _pct(other.get("ex")), _pct(group["ex"]),
                      _diff(other.get("ex"), group["ex"]))  # fmt: skip

    table.add_row("SQL that failed to run", str(_failed(base)), str(_failed(tuned)), f"{_failed(tuned) - _failed(base):+d}")
    table.add_row("ran, wrong result", str(base["counts"]["wrong"]), str(tuned["counts"]["wrong"]),
                  f"{tuned['counts']['wrong'] - base['counts']['wrong']:+d}")  # fmt: skip
    console.print(table)
    if training:
        loss = training.get("train_loss")
        stop = " (stopped by the time budget)" if training.get("stopped_by_time_budget") else ""
        console.print(f"training: {training.get('global_step')} steps on {training.get('examples')} examples in "
                      f"{(training.get('train_runtime_s') or 0) / 60:.1f} min{stop}, mean loss "
                      f"{'-' if loss is None else f'{loss:.3f}'}")  # fmt: skip


def print_guided(console, mode: str, base: dict, tuned: dict, base_g: dict, tuned_g: dict) -> None:
    """The 2 x 2 table: zero-shot / fine-tuned x greedy / guided, with failed-to-run counts."""
    from rich.table import Table

    table = Table(title=f"Greedy and execution-guided ({mode}), the same questions")
    table.add_column("", style="bold")
    table.add_column("greedy", justify="right")
    table.add_column(f"guided ({mode})", justify="right")
    table.add_column("change", justify="right")
    for name, g, x in (("zero-shot", base, base_g), ("fine-tuned", tuned, tuned_g)):
        table.add_row(name, f"{_pct(g['ex'])} ({_failed(g)} failed to run)", f"{_pct(x['ex'])} ({_failed(x)} failed to run)",
                      _diff(g["ex"], x["ex"]))  # fmt: skip
    console.print(table)


# -- stages -----------------------------------------------------------------------------------
def _stage_dirs(stage: Path, cfg: QuickstartConfig) -> list[Path]:
    """The folders of a model's predictions: greedy (the stage folder) and guided, when asked."""
    return [stage] + ([stage / f"guided-{cfg.guided}"] if GUIDED[cfg.guided][0] else [])


def _guided_stage(model: str, data: Path, bench: Path, stage: Path, cfg: QuickstartConfig, console, label: str) -> dict | None:
    """The guided run of one model (``--guided``), beside its greedy run; its summary."""
    options = GUIDED[cfg.guided][0]
    if not options:
        return None
    folder = stage / f"guided-{cfg.guided}"
    console.print(f"{label}, guided ({cfg.guided}: {', '.join(f'--{k} {v}' for k, v in options.items())}):")
    _predict(model, data, folder / "predictions.jsonl", cfg, **options)
    summary, _ = _evaluate(folder / "predictions.jsonl", bench, folder / "eval", cfg)
    _score_line(console, f"{label}, guided", summary)
    return summary



def _build(out: Path, bench: Path, cfg: QuickstartConfig) -> Path:
    from sqlwright.data.build import BuildConfig, build_dataset
    from sqlwright.data.sources import SourceConfig
    from sqlwright.prompts.spec import PromptSpec

    data = out / "data"
    if (data / "stats.json").is_file():
        return data
    spec = PromptSpec(format=DATASET["format"], serializer=DATASET["serializer"])
    src = SourceConfig(path=str(bench), splits=list(DATASET["splits"]))
    build_dataset(BuildConfig(DATASET["source"], str(data), src, spec, progress=cfg.progress))
    return data


def _predict(model: str, data: Path, preds: Path, cfg: QuickstartConfig, **guided) -> tuple[dict, float | None]:
    """Predict the dev split (``guided``: --constrain / --refine options); (predict's summary,
    the seconds a whole prediction takes, or None when nothing was left to predict)."""
    from sqlwright.infer.backend import BackendConfig, GenerationConfig
    from sqlwright.predict import PredictConfig, predict

    before = _read_predictions(preds)
    preds.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    s = predict(PredictConfig(BackendConfig(model=model, backend="hf", batch_size=cfg.batch_size), str(preds),
                              data=str(data), split="dev", progress=cfg.progress,
                              generation=GenerationConfig(max_new_tokens=cfg.max_new_tokens, temperature=0.0),
                              **guided))  # fmt: skip
    if not s["written"]:
        print(f"all {s['total']} questions already predicted in {preds} (reused)")
        return s, None
    # this run's wall clock plus the generation time of what an earlier run had predicted
    return s, time.monotonic() - t0 + sum(r.get("latency") or 0.0 for r in before)


def _evaluate(preds: Path, bench: Path, run_dir: Path, cfg: QuickstartConfig) -> tuple[dict, bool]:
    """(summary, reused): a finished evaluation newer than the predictions is reused."""
    from sqlwright.eval.evaluate import EvalConfig, evaluate

    summary = run_dir / "summary.json"
    if summary.is_file() and summary.stat().st_mtime >= preds.stat().st_mtime:
        print(f"already evaluated: {run_dir} (reused)")
        return json.loads(summary.read_text(encoding="utf-8")), True
    run = evaluate(EvalConfig(predictions=str(preds), benchmark=str(bench), split="dev", out=str(run_dir),
                              progress=cfg.progress))  # fmt: skip
    return run.summary, False


def _score_line(console, label: str, s: dict) -> None:
    console.print(f"{label}: execution accuracy [bold]{_pct(s['ex'])}[/] ({s['correct']}/{s['scored']} correct, "
                  f"{s['counts']['wrong']} wrong result, {_failed(s)} failed to run)")  # fmt: skip


def _train(out: Path, data: Path, cfg: QuickstartConfig, state: _State, seconds: float, train_tps: float | None,
           console) -> tuple[dict, bool]:  # fmt: skip
    from sqlwright.train.sft import sft

    model_dir = out / "model"
    summary = model_dir / "train_summary.json"
    if summary.is_file():
        console.print(f"already trained by an earlier run: {model_dir} (reused)")
        return json.loads(summary.read_text(encoding="utf-8")), True
    tc = recipe_config(str(data), str(model_dir))
    tc.max_examples = cfg.train_examples
    tc.max_minutes = round(seconds / 60, 2)
    plan = state.get("train_plan")
    resuming = plan is not None and any(model_dir.glob("checkpoint-*/trainer_state.json"))
    # the whole budget, by time: the cosine schedule is laid over the minutes (not over a step count
    # estimated from a speed), epochs run as many as fit, and training stops when the minutes are up
    tc.schedule_by_time = True
    if resuming:
        console.print(f"resuming from the last checkpoint in {model_dir}; training for the {tc.max_minutes:.1f} min left")
    else:
        plan = _plan_steps(tc, seconds, train_tps)
        state.set(train_plan=plan)
        if plan["budget_steps"]:
            what = (f"at ~{plan['train_tokens_per_second']:.0f} tokens/s about {plan['budget_steps']} steps "
                    f"(~{plan['budget_steps'] / max(plan['epoch_steps'], 1):.1f} epochs of {plan['epoch_steps']}) fit")  # fmt: skip
        else:
            what = "the speed is not measured yet"
        rows = (f"packed into ~{plan['packed_rows']} rows of {tc.max_length}" if tc.packing
                else f"in batches of {tc.batch_size} of similar length")  # fmt: skip
        console.print(f"{plan['examples']} examples, {plan['tokens']:,} tokens {rows}; {what}. Training runs for {tc.max_minutes:.1f} min, the learning-rate "
                      "schedule laid over that time, as many epochs as fit.")  # fmt: skip
    sft(tc, source="quickstart")
    return json.loads(summary.read_text(encoding="utf-8")), False


def _report(out: Path):
    from sqlwright.report import ReportConfig, write_report
    from sqlwright.report.load import find_trainer_state

    model_dir = out / "model"
    train = str(model_dir) if find_trainer_state(model_dir) is not None else None
    return write_report(ReportConfig(run=str(out / "finetuned" / "eval"), compare=str(out / "baseline" / "eval"),
                                     train=train, out=str(out / "report.html"), auto_train=False))  # fmt: skip


# The run-to-run spread of the default run: (lowest, mean, highest) execution accuracy in percent
# over SPREAD_RUNS full runs with the defaults on two idle CPU cores (bench/RESULTS.md).
SPREAD_RUNS = 3
SPREAD: dict[str, tuple[float, float, float]] = {  # 2026-12-02: runs of 18.4, 17.6 and 18.0 minutes
    "zero-shot": (0.0, 0.0, 0.0),
    "fine-tuned greedy": (20.0, 21.0, 22.0),
    "fine-tuned guided": (27.0, 27.7, 28.0),
}
SPREAD_DEFAULTS = {"minutes": 20.0, "questions": DEV_QUESTIONS, "train_examples": TRAIN_QUESTIONS, "max_new_tokens": 128,
                   "guided": "schema"}  # fmt: skip


def print_spread(console, cfg: QuickstartConfig) -> None:
    """What the default run gives from run to run, so one run's figure can be read against it."""
    same = all(getattr(cfg, k) == v for k, v in SPREAD_DEFAULTS.items())
    parts = ", ".join(f"{name} {lo:.0f}-{hi:.0f}% (mean {mean:.1f}%)" for name, (lo, mean, hi) in SPREAD.items())
    where = "" if same else " (with the default options; this run's differ, so it may differ more)"
    console.print(f"run to run: over {SPREAD_RUNS} full default runs on two idle CPU cores, {parts}{where}. "
                  "Each figure is of 100 questions, so it also carries about 4 points of sampling error "
                  "(bench/RESULTS.md).")  # fmt: skip


# -- the command ------------------------------------------------------------------------------
def quickstart(cfg: QuickstartConfig) -> QuickstartResult:
    from rich.console import Console

    start = time.monotonic()
    validate(cfg)
    console = Console(highlight=False)
    out = Path(cfg.out)
    done = {
        "build": (out / "data" / "stats.json").is_file(),
        "baseline": all((d / "eval" / "summary.json").is_file() for d in _stage_dirs(out / "baseline", cfg)),
        "train": (out / "model" / "train_summary.json").is_file(),
        "finetuned": all((d / "eval" / "summary.json").is_file() for d in _stage_dirs(out / "finetuned", cfg)),
    }
    finished = all(done.values()) and (out / STATE_NAME).is_file()
    state = _open_out(out, cfg, finished)
    device = _device()
    budget = cfg.minutes * 60
    margin = max(20.0, 0.05 * budget)
    predict_s = state.get("baseline_predict_s") or predict_estimate(cfg.questions, cfg.max_new_tokens, device)
    guided, factor = GUIDED[cfg.guided]
    stage_s = predict_s * (1 + factor) + EVAL_S * (2 if guided else 1)  # greedy, and guided when asked
    est = {"build": 10.0, "baseline": stage_s, "finetuned": stage_s, "report": 5.0}
    est["train"] = max(MIN_TRAIN_S, budget - margin - TRAIN_OVERHEAD_S[device] - sum(est.values())) + TRAIN_OVERHEAD_S[device]
    _print_plan(console, cfg, out, device, est, done)
    if not done["train"] and sum(v for k, v in est.items() if k != "train") + margin + MIN_TRAIN_S > budget:
        console.print(f"[yellow]--minutes {cfg.minutes:g} leaves almost no time to train once both predictions are "
                      f"paid for; training gets at least {MIN_TRAIN_S:.0f} s, so this will run over[/]")  # fmt: skip
    reused = [k for k, v in done.items() if v]

    _header(console, 1, "Build the dataset from the embedded Spider slice")
    bench = _copy_benchmark(out, cfg.questions)
    data = _build(out, bench, cfg)
    stats = json.loads((data / "stats.json").read_text(encoding="utf-8"))
    console.print(f"dataset in {data}: {', '.join(f'{k} {v}' for k, v in stats['splits'].items())} examples")

    _header(console, 2, f"Baseline: {MODEL} before fine-tuning")
    base_preds = out / "baseline" / "predictions.jsonl"
    _, seconds = _predict(MODEL, data, base_preds, cfg)
    if seconds is not None:
        state.set(baseline_predict_s=round(seconds, 1))
    predict_s = state.get("baseline_predict_s") or predict_s
    t_eval = time.monotonic()
    base, eval_reused = _evaluate(base_preds, bench, out / "baseline" / "eval", cfg)
    if not eval_reused:
        state.set(eval_s=round(time.monotonic() - t_eval + 3.0, 1))  # + start-up of the pool
    _score_line(console, "baseline", base)
    base_g = _guided_stage(MODEL, data, bench, out / "baseline", cfg, console, "baseline")

    _header(console, 3, "Fine-tune with LoRA (the CPU recipe) within the budget")
    rate = _effective_rate(_read_predictions(base_preds))
    train_tps = TRAIN_PER_RATE * rate if rate else None
    left = budget - (time.monotonic() - start)
    reserve = (predict_s * (1 + factor) + state.get("eval_s", EVAL_S) * (2 if guided else 1) + 5.0 + margin
               + TRAIN_OVERHEAD_S[device])
    train_s = left - reserve
    if train_s < MIN_TRAIN_S and not done["train"]:
        console.print(f"[yellow]the budget is spent ({left / 60:.1f} min left, ~{reserve / 60:.1f} min needed after "
                      f"training); training for {MIN_TRAIN_S:.0f} s anyway[/]")  # fmt: skip
        train_s = MIN_TRAIN_S
    training, _ = _train(out, data, cfg, state, train_s, train_tps, console)

    _header(console, 4, "Fine-tuned: predict and score the same questions")
    tuned_preds = out / "finetuned" / "predictions.jsonl"
    _predict(str(out / "model"), data, tuned_preds, cfg)
    tuned, _ = _evaluate(tuned_preds, bench, out / "finetuned" / "eval", cfg)
    _score_line(console, "fine-tuned", tuned)
    tuned_g = _guided_stage(str(out / "model"), data, bench, out / "finetuned", cfg, console, "fine-tuned")

    _header(console, 5, "Compare")
    print_comparison(console, base, tuned, training)
    if base_g is not None and tuned_g is not None:
        print_guided(console, cfg.guided, base, tuned, base_g, tuned_g)
    report = _report(out)
    print_spread(console, cfg)
    seconds = time.monotonic() - start
    if not finished:  # a rerun of a finished run measures nothing new: quickstart.json stays as it is
        state.set(last_run_s=round(seconds, 1), baseline_ex=base["ex"], finetuned_ex=tuned["ex"],
                  **({f"baseline_{cfg.guided}_ex": base_g["ex"], f"finetuned_{cfg.guided}_ex": tuned_g["ex"]} if base_g and tuned_g else {}))
    path = report.out.resolve()
    console.print(f"\nreport: {path}\nopen it in any browser (it needs no network): {path.as_uri()}\n"
                  f"  or: python -m webbrowser {path.as_uri()}")  # fmt: skip
    console.print(f"done in {seconds / 60:.1f} min (budget {cfg.minutes:g} min)")
    return QuickstartResult(out, report.out, base, tuned, training, round(seconds, 1), reused,
                            {"baseline": base_g, "finetuned": tuned_g} if base_g and tuned_g else {})
