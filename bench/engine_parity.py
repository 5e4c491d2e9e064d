"""Gold parity of Spider dev on PostgreSQL, MariaDB and DuckDB.

Starts throwaway servers (tests/servers.py: real processes on 127.0.0.1), runs
``sqlwright db load SPIDER --url … --transpile-gold DIALECT`` for each engine, then scores the
transpiled golds as predictions on that engine (``sqlwright eval --questions … --db-url …``):
gold-vs-gold must be 100% on the golds that pass parity.

    python bench/engine_parity.py [../shared/data/spider] [--databases a,b,...]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import servers  # noqa: E402
from sqlwright.cli import main  # noqa: E402


def one(name: str, url: str, dialect: str, spider: Path, out: Path, dbs: list[str]) -> dict:
    extra = [a for d in dbs for a in ("--databases", d)]
    t0 = time.monotonic()
    assert main(["db", "load", str(spider), "--url", url, "--transpile-gold", dialect, "-o", str(out / name),
                 "--no-progress", "--replace", *extra]) == 0  # fmt: skip
    load_s = time.monotonic() - t0
    parity = json.loads((out / name / "parity.json").read_text())
    recs = [json.loads(x) for x in (out / name / "parity.jsonl").read_text().splitlines()]
    qfile = next((out / name).glob("dev_*.json"))
    preds = out / name / "gold_preds.jsonl"
    preds.write_text("".join(json.dumps({"id": r["id"], "sql": r["transpiled"] or r["gold"]}) + "\n" for r in recs))
    t1 = time.monotonic()
    assert main(["eval", str(preds), "--questions", str(qfile), "--db-url", url, "-o", str(out / name / "eval"),
                 "--no-progress", "--only-predicted"]) == 0  # fmt: skip
    eval_s = time.monotonic() - t1
    ev = [json.loads(x) for x in (out / name / "eval" / "examples.jsonl").read_text().splitlines()]
    same_ids = {r["id"] for r in recs if r["same"]}
    g2g = sum(e["correct"] for e in ev if e["id"] in same_ids)
    return {"engine": name, **parity, "load_s": round(load_s, 1), "eval_s": round(eval_s, 1),
            "gold_vs_gold_on_parity": f"{g2g}/{len(same_ids)}"}  # fmt: skip


def main_(argv: list[str]) -> None:
    spider = Path(argv[0]) if argv and not argv[0].startswith("--") else Path(__file__).resolve().parents[2] / "shared/data/spider"
    dbs = argv[argv.index("--databases") + 1].split(",") if "--databases" in argv else []
    out = Path(tempfile.mkdtemp(prefix="sqlwright-parity-"))
    pg, maria = servers.start_postgres(), servers.start_mariadb()
    try:
        rows = [one("postgresql", pg.url("{db_id}"), "postgres", spider, out, dbs),
                one("mariadb", maria.url("{db_id}"), "mysql", spider, out, dbs),
                one("duckdb", f"duckdb://{out}/duck/{{db_id}}.duckdb", "duckdb", spider, out, dbs)]
    finally:
        pg.stop()
        maria.stop()
    for r in rows:
        print(json.dumps(r))
    print(f"reports in {out}")


if __name__ == "__main__":
    main_(sys.argv[1:])
