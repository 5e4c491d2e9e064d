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


def load(name: str, url: str, dialect: str, spider: Path, out: Path, dbs: list[str]) -> tuple[float, list[dict], Path, Path]:
    """``sqlwright db load … --transpile-gold`` into ``out/name``; returns (load seconds,
    parity records, the transpiled questions file, the transpiled golds as predictions)."""
    extra = [a for d in dbs for a in ("--databases", d)]
    t0 = time.monotonic()
    assert main(["db", "load", str(spider), "--url", url, "--transpile-gold", dialect, "-o", str(out / name),
                 "--no-progress", "--replace", *extra]) == 0  # fmt: skip
    load_s = time.monotonic() - t0
    recs = [json.loads(x) for x in (out / name / "parity.jsonl").read_text().splitlines()]
    qfile = next((out / name).glob("dev_*.json"))
    preds = out / name / "gold_preds.jsonl"
    preds.write_text("".join(json.dumps({"id": r["id"], "sql": r["transpiled"] or r["gold"]}) + "\n" for r in recs))
    return load_s, recs, qfile, preds


def engines(out: Path) -> tuple[list, list[tuple[str, str, str]]]:
    """Start throwaway PostgreSQL and MariaDB servers; returns (servers to stop, and per
    engine (name, URL template, sqlglot dialect) for PostgreSQL, MariaDB and DuckDB files
    under ``out/duck``)."""
    pg = servers.start_postgres()
    try:
        maria = servers.start_mariadb()
    except BaseException:
        pg.stop()
        raise
    return [pg, maria], [("postgresql", pg.url("{db_id}"), "postgres"), ("mariadb", maria.url("{db_id}"), "mysql"),
                         ("duckdb", f"duckdb://{out}/duck/{{db_id}}.duckdb", "duckdb")]  # fmt: skip


def one(name: str, url: str, dialect: str, spider: Path, out: Path, dbs: list[str]) -> dict:
    load_s, recs, qfile, preds = load(name, url, dialect, spider, out, dbs)
    parity = json.loads((out / name / "parity.json").read_text())
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
    started, targets = engines(out)
    try:
        rows = [one(name, url, dialect, spider, out, dbs) for name, url, dialect in targets]
    finally:
        for s in started:
            s.stop()
    for r in rows:
        print(json.dumps(r))
    print(f"reports in {out}")


if __name__ == "__main__":
    main_(sys.argv[1:])
