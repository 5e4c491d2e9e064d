"""``sqlwright report``: one self-contained HTML page about an eval run.

``write_report(ReportConfig) -> ReportResult`` reads the run folder ``sqlwright eval``
wrote (``summary.json``, ``examples.jsonl``, ``config.json``) and writes a page with the
headline execution accuracy, accuracy by difficulty and database, error categories, a
latency chart, every question with both SQL strings and result previews (and, for
predictions made with ``predict --select / --refine``, how each was selected and revised,
with a section counting them), and optionally:

* ``compare``: a second run on the same questions: both accuracies and the questions that
  flipped (matched by id);
* ``train``: a training output folder: the loss curve and in-training accuracy
  (``dev_execution_accuracy``) from the Trainer's ``trainer_state.json``. Without it, the
  predictions file's folder is used when it holds one.

Standard library only: the page has inline CSS and SVG and needs no network to view.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlwright.config import opt, write_config
from sqlwright.errors import UserError
from sqlwright.files import atomic_write_text


@dataclass
class ReportConfig:
    run: str = opt(help="Eval run folder (what `sqlwright eval --out` wrote).", argument=True, metavar="RUN_DIR")
    compare: str | None = opt(None, "Another eval run on the same questions: both accuracies and the questions that flipped.")
    train: str | None = opt(None, "Training output folder (trainer_state.json or checkpoint-*/): loss and in-training accuracy.")
    out: str | None = opt(None, "HTML file to write (default RUN_DIR/report.html).", short="-o")
    auto_train: bool = opt(True, "Without --train: look for trainer_state.json beside the predictions.")


@dataclass
class ReportResult:
    out: Path
    ex: float | None
    other_ex: float | None = None
    fixed: int = 0  # wrong in the compared run, right in this one
    broken: int = 0  # right in the compared run, wrong in this one
    training: Path | None = None  # the trainer_state.json shown


def write_report(cfg: ReportConfig) -> ReportResult:
    from sqlwright.report.html import render
    from sqlwright.report.load import (
        auto_training_dir,
        compare_runs,
        load_run,
        load_training,
        prediction_latencies,
    )

    run = load_run(cfg.run)
    cmp = compare_runs(run, load_run(cfg.compare, role="--compare run")) if cfg.compare else None
    train_dir = Path(cfg.train) if cfg.train else (auto_training_dir(run) if cfg.auto_train else None)
    training = load_training(train_dir) if train_dir is not None else None
    page = render(run, cmp, training, prediction_latencies(run))

    out = Path(cfg.out) if cfg.out else run.path / "report.html"
    if out.is_dir():
        out = out / "report.html"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, page)
        write_config(cfg, out.with_name(out.stem + ".config.yaml"))  # the resolved config: `--config` repeats it
    except OSError as e:
        raise UserError(f"{out}: cannot write the report ({e.strerror}); choose another --out") from None
    return ReportResult(out, run.summary["ex"], cmp.other.summary["ex"] if cmp else None,
                        len(cmp.fixed) if cmp else 0, len(cmp.broken) if cmp else 0,
                        training.source if training else None)  # fmt: skip
