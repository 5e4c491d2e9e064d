"""Regenerate the Spider slice that ships inside the package for ``sqlwright quickstart``.

    python bench/make_spider_mini.py --spider ../shared/data/spider

Writes ``src/sqlwright/quickstart/spider_mini/`` in Spider layout: ``train_spider.json`` (15
questions of each of 31 small train databases), ``dev.json`` (the questions of three dev databases),
``tables.json`` (only those eight databases), ``database/<db>/<db>.sqlite`` and
``ATTRIBUTION.md``. Questions keep their original order and every original field, so the
existing ``spider`` source loads the slice unchanged. Running it twice gives the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

# Training: many small databases with few questions each. On a held-apart database, 30 databases
# of 15 questions left 30 of 68 answers failing to run where 4 databases of ~90 left 53
# (bench/recipe_sweep.py, bench/RESULTS.md): a 135M model learns to read the schema it is given
# when the schemas vary, and to reuse the training schemas' names when they do not.
TRAIN_DBS = ["soccer_2", "movie_1", "network_2", "manufactory_1", "student_1",
             "assets_maintenance", "city_record", "college_3", "csu_1", "customers_and_invoices",
             "customers_and_products_contacts", "debate", "department_management", "e_learning", "entrepreneur",
             "farm", "flight_1", "icfp_1", "inn_1", "insurance_fnol", "insurance_policies", "local_govt_and_lot",
             "medicine_enzyme_interaction", "musical", "riding_club", "roller_coaster", "school_player", "solvency_ii",
             "sports_competition", "station_weather", "theme_gallery"]  # fmt: skip
PER_DB = 15  # train questions per database: a seeded sample, in Spider's order
DEV_DBS = ["singer", "course_teach", "poker_player"]
OUT = Path(__file__).resolve().parents[1] / "src" / "sqlwright" / "quickstart" / "spider_mini"

ATTRIBUTION = """\
# Spider mini: a slice of the Spider benchmark

This folder holds a small part of **Spider**, a large-scale human-labeled dataset for complex
and cross-domain semantic parsing and text-to-SQL, used by `sqlwright quickstart`:

> Tao Yu, Rui Zhang, Kai Yang, Michihiro Yasunaga, Dongxu Wang, Zifan Li, James Ma, Irene Li,
> Qingning Yao, Shanelle Roman, Zilin Zhang and Dragomir Radev. 2018. *Spider: A Large-Scale
> Human-Labeled Dataset for Complex and Cross-Domain Semantic Parsing and Text-to-SQL Task.*
> EMNLP 2018. https://yale-lily.github.io/spider

Spider is licensed under the **Creative Commons Attribution-ShareAlike 4.0 International
License (CC BY-SA 4.0)**, https://creativecommons.org/licenses/by-sa/4.0/. This slice is
shared under the same license. Changes made: only the questions, schemas and databases
listed below were kept; questions keep their original order and fields; nothing else was
modified.

What was selected:

{selection}

Regenerate it from a copy of Spider with `python bench/make_spider_mini.py --spider DIR`.
"""


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _sample(train: list[dict]) -> list[dict]:
    """``PER_DB`` questions of each of ``TRAIN_DBS`` (seeded by the database's name), in Spider's order."""
    import random

    keep = []
    for db in TRAIN_DBS:
        idx = [i for i, q in enumerate(train) if q["db_id"] == db]
        keep += random.Random(db).sample(idx, min(PER_DB, len(idx)))
    return [train[i] for i in sorted(keep)]


def make(spider: Path, out: Path) -> dict:
    train = json.loads((spider / "train_spider.json").read_text(encoding="utf-8"))
    dev = json.loads((spider / "dev.json").read_text(encoding="utf-8"))
    tables = json.loads((spider / "tables.json").read_text(encoding="utf-8"))
    keep = set(TRAIN_DBS) | set(DEV_DBS)
    picked = {
        "train_spider.json": _sample(train),
        "dev.json": [q for q in dev if q["db_id"] in DEV_DBS],
    }
    kept_tables = [t for t in tables if t["db_id"] in keep]
    missing = keep - {t["db_id"] for t in kept_tables}
    if missing:
        raise SystemExit(f"{spider / 'tables.json'}: no entry for {', '.join(sorted(missing))}")
    if out.exists():
        shutil.rmtree(out)
    (out / "database").mkdir(parents=True)
    for name, items in picked.items():
        _write_json(out / name, items)
    _write_json(out / "tables.json", kept_tables)
    lines = []
    for split, name, dbs in (("train", "train_spider.json", TRAIN_DBS), ("dev", "dev.json", DEV_DBS)):
        items = picked[name]
        counts = {db: sum(q["db_id"] == db for q in items) for db in dbs}
        lines.append(f"* `{name}` ({split}): {len(items)} questions of Spider's `{name}` on "
                     + ", ".join(f"`{db}` ({n})" for db, n in counts.items()))
    for db in sorted(keep):
        src = spider / "database" / db / f"{db}.sqlite"
        (out / "database" / db).mkdir()
        shutil.copyfile(src, out / "database" / db / f"{db}.sqlite")  # contents only: not Spider's read-only mode
    lines.append(f"* `tables.json`: the entries of those {len(keep)} databases; "
                 f"`database/<db>/<db>.sqlite`: their SQLite files, unchanged")
    (out / "ATTRIBUTION.md").write_text(ATTRIBUTION.format(selection="\n".join(lines)), encoding="utf-8")
    digest = hashlib.sha256()
    for f in sorted(p for p in out.rglob("*") if p.is_file()):
        digest.update(f.relative_to(out).as_posix().encode() + b"\0" + f.read_bytes())
    return {"train": len(picked["train_spider.json"]), "dev": len(picked["dev.json"]), "sha256": digest.hexdigest()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spider", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "spider",
                    help="Spider folder (train_spider.json, dev.json, tables.json, database/)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    made = make(args.spider, args.out)
    print(f"wrote {made['train']} train and {made['dev']} dev questions to {args.out} (sha256 {made['sha256'][:16]})")


if __name__ == "__main__":
    main()
