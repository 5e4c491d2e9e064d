"""Speed of ``sqlwright eval`` on the gold Spider dev set on each engine, against its floor.

    python bench/engine_speed.py [../shared/data/spider] [--repeat 3] [--databases a,b,...]

Starts throwaway PostgreSQL and MariaDB servers and loads the Spider dev databases into
them and into DuckDB files once (bench/engine_parity.py's ``engines`` and ``load``:
``sqlwright db load … --transpile-gold DIALECT``); SQLite, the reference, reads Spider's own
files. Then, ``--repeat`` rounds, interleaved (PostgreSQL eval, PostgreSQL floor, MariaDB
eval, MariaDB floor, …) so that other load on the machine falls on both sides alike:

* **eval**: ``sqlwright eval GOLD_PREDS --questions <transpiled dev> --db-url TEMPLATE
  --only-predicted`` as a subprocess (SQLite: ``--benchmark SPIDER``), the golds as their own
  predictions. Wall time around the command, and the execution phase it reports
  (``timing.execute_wall_s``: workers started, connections opened, every distinct query
  executed and compared).
* **floor**: every distinct (db, SQL) of the same set executed once, sequentially in this
  process, through the engine's plain driver (psycopg, PyMySQL, duckdb, sqlite3) on one
  connection per database opened beforehand; only execute + fetch all rows is timed. The sum
  divided by the workers ``sqlwright eval`` used (its ``settings.workers``: all cores).

Reports the median of the rounds, and the ratios eval / floor (whole command and execution
phase), as a markdown table and JSON.
"""

from __future__ import annotations

import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import engine_parity  # noqa: E402  (also puts tests/ on sys.path for servers)
from sqlwright.db.mysql import connect_args  # noqa: E402
from sqlwright.db.postgres import conninfo  # noqa: E402
from sqlwright.db.urls import expand  # noqa: E402

TIMEOUT = 30.0  # seconds per query, eval and floor alike (golds: none comes near it)


# -- the floor: plain driver connections ----------------------------------------------------
def _connect(engine: str, target: str):
    """(connection, run(sql) -> rows) for one database through the engine's plain driver."""
    if engine == "sqlite":
        conn = sqlite3.connect(f"file:{target}?mode=ro", uri=True)
        return conn, lambda sql: conn.execute(sql).fetchall()
    if engine == "postgresql":
        import psycopg

        conn = psycopg.connect(conninfo(target), autocommit=True)
        conn.execute(f"SET statement_timeout = {int(TIMEOUT * 1000)}")
        return conn, lambda sql: conn.execute(sql).fetchall()
    if engine == "mariadb":
        import pymysql

        conn = pymysql.connect(**connect_args(target))  # a buffered cursor, autocommit
        cur = conn.cursor()
        cur.execute(f"SET SESSION max_statement_time = {TIMEOUT:g}")

        def run(sql: str) -> tuple:
            cur.execute(sql)
            return cur.fetchall()

        return conn, run
    if engine == "duckdb":
        import duckdb

        # one thread per query, as sqlwright's executor runs it: the sum is divided by the cores
        conn = duckdb.connect(target.split("://", 1)[1], read_only=True, config={"threads": 1})
        return conn, lambda sql: conn.execute(sql).fetchall()
    raise ValueError(engine)


def floor(engine: str, queries: list[tuple[str, str]], workers: int) -> dict:
    counts = {"ok": 0, "error": 0}
    total = 0.0
    conns: dict[str, tuple] = {}
    t0 = time.perf_counter()
    for target, _ in queries:
        if target not in conns:
            conns[target] = _connect(engine, target)
    connect_s = time.perf_counter() - t0  # one connection per database, which any evaluator opens
    try:
        for target, sql in queries:
            run = conns[target][1]
            t0 = time.perf_counter()
            try:
                run(sql)
                counts["ok"] += 1
            except Exception:  # a gold that does not compile on this engine: its error costs time too
                counts["error"] += 1  # (PostgreSQL: autocommit, nothing to roll back)
            total += time.perf_counter() - t0
    finally:
        for conn, _ in conns.values():
            conn.close()
    return {"distinct": len(queries), **counts, "total_s": total, "per_core_s": total / workers,
            "connect_s": connect_s, "with_connect_per_core_s": (total + connect_s) / workers}


# -- sqlwright eval ------------------------------------------------------------------------
def run_eval(preds: Path, target_args: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as out:
        cmd = ["sqlwright", "eval", str(preds), *target_args, "--timeout", f"{TIMEOUT:g}", "-o", out,
               "--no-progress", "--only-predicted", "--etype", "exec"]  # fmt: skip
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        s = json.loads((Path(out) / "summary.json").read_text())
    return {"wall_s": wall, "execute_wall_s": s["timing"]["execute_wall_s"], "workers": s["settings"]["workers"],
            "distinct": s["timing"]["distinct_queries"], "correct": s["correct"], "total": s["questions"]}  # fmt: skip


def distinct_queries(qfile: Path, recs: list[dict], template: str, sql_key: str) -> list[tuple[str, str]]:
    """The distinct (target, SQL) pairs eval executes: the questions' golds and the predictions."""
    dev = json.loads(qfile.read_text())
    out = set()
    for r in recs:
        target = expand(template, r["db_id"])
        out.add((target, dev[int(r["id"])]["query"]))
        out.add((target, r["transpiled"] or r["gold"]) if sql_key == "transpiled" else (target, r["gold"]))
    return sorted(out)


def main(argv: list[str]) -> None:
    args = list(argv)
    spider = Path(args.pop(0)) if args and not args[0].startswith("--") else Path(__file__).resolve().parents[2] / "shared/data/spider"
    spider = spider.resolve()
    repeat = int(args[args.index("--repeat") + 1]) if "--repeat" in args else 3
    dbs = args[args.index("--databases") + 1].split(",") if "--databases" in args else []
    out = Path(tempfile.mkdtemp(prefix="sqlwright-speed-"))
    started, targets = engine_parity.engines(out)
    try:
        plan = []  # (engine, eval target args, floor queries, preds)
        for name, url, dialect in targets:
            load_s, recs, qfile, preds = engine_parity.load(name, url, dialect, spider, out, dbs)
            print(f"{name}: loaded in {load_s:.1f} s", file=sys.stderr)
            plan.append((name, ["--questions", str(qfile), "--db-url", url], distinct_queries(qfile, recs, url, "transpiled"), preds))
        # SQLite, the reference: Spider's own files and golds (the same questions)
        sq_preds = out / "sqlite_gold_preds.jsonl"
        sq_preds.write_text("".join(json.dumps({"id": r["id"], "sql": r["gold"]}) + "\n" for r in recs))
        sq_template = str(spider / "database" / "{db_id}" / "{db_id}.sqlite")
        plan.append(("sqlite", ["--benchmark", str(spider)], distinct_queries(spider / "dev.json", recs, sq_template, "gold"), sq_preds))

        runs: dict[str, dict[str, list]] = {name: {"eval": [], "floor": []} for name, *_ in plan}
        for k in range(repeat):
            for name, target_args, queries, preds in plan:
                ev = run_eval(preds, target_args)
                fl = floor(name, queries, ev["workers"])
                runs[name]["eval"].append(ev)
                runs[name]["floor"].append(fl)
                print(f"round {k + 1} {name}: eval {ev['wall_s']:.2f} s (execution {ev['execute_wall_s']:.3f} s), "
                      f"floor {fl['per_core_s']:.3f} s", file=sys.stderr)  # fmt: skip
    finally:
        for s in started:
            s.stop()

    cores = len(os.sched_getaffinity(0))
    print(f"\ncores: {cores}, rounds: {repeat} (median), timeout {TIMEOUT:g} s\n")
    print("| engine | distinct (eval / floor) | floor: sum (s) | floor / workers (s) | + one connection per db, / workers (s) "
          "| eval wall (s) | eval execution phase (s) | execution / floor | execution / floor with connections "
          "| wall / floor | correct |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for name, r in runs.items():
        med = {k: statistics.median(x[k] for x in r["eval"]) for k in ("wall_s", "execute_wall_s")}
        fsum = statistics.median(x["total_s"] for x in r["floor"])
        fcore = statistics.median(x["per_core_s"] for x in r["floor"])
        fconn = statistics.median(x["with_connect_per_core_s"] for x in r["floor"])
        ev, fl = r["eval"][0], r["floor"][0]
        rows.append({"engine": name, "eval_median": med, "floor_sum_median_s": fsum, "floor_per_core_median_s": fcore,
                     "floor_with_connect_per_core_median_s": fconn, "ratio_execution_with_connect": med["execute_wall_s"] / fconn,
                     "ratio_execution": med["execute_wall_s"] / fcore, "ratio_wall": med["wall_s"] / fcore, "runs": r})  # fmt: skip
        print(f"| {name} | {ev['distinct']} / {fl['distinct']} | {fsum:.3f} | {fcore:.3f} | {fconn:.3f} | {med['wall_s']:.2f} | "
              f"{med['execute_wall_s']:.3f} | {med['execute_wall_s'] / fcore:.2f} | {med['execute_wall_s'] / fconn:.2f} | "
              f"{med['wall_s'] / fcore:.1f} | "
              f"{ev['correct']} / {ev['total']} |")  # fmt: skip
    print("\n" + json.dumps(rows, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
