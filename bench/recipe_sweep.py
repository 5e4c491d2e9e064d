"""The CPU recipe chosen by measurement: a sweep on a held-apart split of the quickstart slice's
own training databases (never on its 100 dev questions).

    python bench/recipe_sweep.py --out /tmp/sweep --minutes 4 \\
        --try base: --try lr2e-3:learning_rate=2e-3 --try qkvo:lora.target_modules=q_proj,k_proj,v_proj,o_proj

Each ``--try NAME:KEY=VALUE,...`` changes the quickstart's recipe (``quickstart.run.RECIPE``;
keys of ``TrainConfig``, ``lora.*``, and ``serializer`` / ``examples`` for the prompt's schema)
and then, like the quickstart: builds the dataset, trains LoRA by time (``schedule_by_time``,
``--minutes``), predicts the held-apart questions greedily and scores them by execution.
The held-apart databases (``--holdout``, default ``student_1``) are taken out of training; their
train questions are the scored set. One JSON line per try goes to ``<out>/sweep.jsonl``; a try
already there is skipped, so a killed sweep continues.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path


def _split(out: Path, holdout: list[str]) -> Path:
    """A Spider-layout folder: the slice's train questions minus ``holdout`` as train, the
    ``holdout`` databases' train questions as dev."""
    from sqlwright.quickstart.run import SLICE

    bench = out / f"bench-{'-'.join(holdout)}"
    if (bench / "dev.json").is_file():
        return bench
    tmp = out / ".bench.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(SLICE, tmp, copy_function=shutil.copyfile)
    train = json.loads((SLICE / "train_spider.json").read_text(encoding="utf-8"))
    (tmp / "train_spider.json").write_text(json.dumps([q for q in train if q["db_id"] not in holdout], indent=1))
    (tmp / "dev.json").write_text(json.dumps([q for q in train if q["db_id"] in holdout], indent=1))
    tmp.rename(bench)
    return bench


def _parse(spec: str) -> tuple[str, dict]:
    import yaml

    name, _, rest = spec.partition(":")
    changes: dict = {}
    for kv in filter(None, rest.split(";")):
        k, v = kv.split("=", 1)
        try:
            value = float(v) if any(c in v for c in ".e") and not v.isalpha() else yaml.safe_load(v)
        except ValueError:
            value = yaml.safe_load(v)
        if k.endswith("target_modules") and isinstance(value, str) and "," in value:
            value = value.split(",")
        changes[k] = value
    return name, changes


def run_try(out: Path, bench: Path, name: str, changes: dict, minutes: float, questions: int | None) -> dict:
    from sqlwright.data.build import BuildConfig, build_dataset
    from sqlwright.data.sources import SourceConfig
    from sqlwright.prompts.spec import PromptSpec
    from sqlwright.quickstart.run import DATASET, recipe_config
    from sqlwright.train.sft import sft

    if "bench" in changes:  # another benchmark folder (e.g. other training databases), same held-apart dev
        bench = Path(changes.pop("bench"))
    prompt = {k: changes.pop(k) for k in ("serializer", "examples") if k in changes}
    spec = PromptSpec(format=DATASET["format"], serializer=prompt.get("serializer", DATASET["serializer"]),
                      examples=prompt.get("examples", 0))  # fmt: skip
    data = out / f"data-{bench.name}-{spec.serializer}-{spec.examples}"
    if not (data / "stats.json").is_file():
        shutil.rmtree(data, ignore_errors=True)
        build_dataset(BuildConfig("spider", str(data), SourceConfig(path=str(bench), splits=["train", "dev"]), spec,
                                  progress=False))  # fmt: skip
    folder = out / name
    shutil.rmtree(folder, ignore_errors=True)
    tc = recipe_config(str(data), str(folder / "model"))
    for k, v in changes.items():
        obj, _, attr = k.rpartition(".")
        setattr(getattr(tc, obj) if obj else tc, attr, v)
    tc.max_minutes, tc.schedule_by_time, tc.plot = minutes, True, False
    t0 = time.monotonic()
    sft(tc, source="sweep")
    train_s = time.monotonic() - t0
    training = json.loads((folder / "model" / "train_summary.json").read_text())
    row = {"name": name, "changes": {**changes, **prompt}, "data": str(data), "bench": str(bench),
           **score(folder, folder / "model", data, bench, questions, ""),
           "steps": training["global_step"], "train_loss": training["train_loss"],
           "tokens_per_second": training["tokens_per_second"], "examples": training["examples"],
           "train_wall_s": round(train_s, 1)}  # fmt: skip
    return row


def score(folder: Path, model: Path, data: Path, bench: Path, questions: int | None, guided: str) -> dict:
    """Predict the held-apart questions (greedy, or ``guided``: constrained to the schema) and score them."""
    from sqlwright.eval.evaluate import EvalConfig, evaluate
    from sqlwright.infer.backend import BackendConfig, GenerationConfig
    from sqlwright.predict import PredictConfig, predict

    name = f"predictions{'-' + guided if guided else ''}"
    preds = folder / f"{name}.jsonl"
    predict(PredictConfig(BackendConfig(model=str(model), backend="hf", batch_size=16), str(preds),
                          data=str(data), split="dev", limit=questions, progress=False,
                          generation=GenerationConfig(max_new_tokens=128, temperature=0.0),
                          **({"constrain": guided} if guided else {})))  # fmt: skip
    run = evaluate(EvalConfig(predictions=str(preds), benchmark=str(bench), split="dev", out=str(folder / f"eval-{name}"),
                              only_predicted=True, progress=False))  # fmt: skip
    s, c = run.summary, run.summary["counts"]
    key = f"{guided}_" if guided else ""
    return {f"{key}ex": s["ex"], f"{key}correct": s["correct"], "scored": s["scored"],
            f"{key}failed_to_run": c["error"] + c["timeout"] + c["too_many_rows"], f"{key}wrong": c["wrong"]}


def add_guided(out: Path, log: Path, questions: int | None) -> None:
    """Score every try's model again with --constrain schema (the quickstart's guided run)."""
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    for row in rows:
        if "schema_ex" in row:
            continue
        folder = out / row["name"]
        ch = row.get("changes", {})
        data = Path(row.get("data") or out / f"data-{ch.get('serializer', 'compact')}-{ch.get('examples', 0)}")
        bench = Path(row.get("bench") or next(out.glob("bench-*")))
        row.update(score(folder, folder / "model", data, bench, questions, "schema"))
        print(json.dumps(row))
        log.write_text("".join(json.dumps(r) + "\n" for r in rows))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=4.0, help="training time per try")
    ap.add_argument("--holdout", action="append", default=None, help="held-apart database (repeatable)")
    ap.add_argument("--questions", type=int, default=None, help="score only the first N held-apart questions")
    ap.add_argument("--try", dest="tries", action="append", default=[], help="NAME:KEY=VALUE;KEY=VALUE")
    ap.add_argument("--guided", action="store_true", help="also score each try with --constrain schema")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bench = _split(out, args.holdout or ["student_1"])
    log = out / "sweep.jsonl"
    done = {json.loads(line)["name"] for line in log.read_text().splitlines()} if log.is_file() else set()
    for spec in args.tries:
        name, changes = _parse(spec)
        if name in done:
            print(f"{name}: done already")
            continue
        row = run_try(out, bench, name, changes, args.minutes, args.questions)
        print(json.dumps(row))
        with open(log, "a") as f:
            f.write(json.dumps(row) + "\n")
    if args.guided and log.is_file():
        add_guided(out, log, args.questions)


if __name__ == "__main__":
    main()
