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
  Reported three ways: the statements alone (driver only); + opening one connection per
  database, which any evaluator must do; and + the per-statement read-only protocol issue 15
  requires of every evaluator that runs untrusted SQL on a server (PostgreSQL: ``BEGIN READ
  ONLY`` … ``ROLLBACK``; MariaDB: ``START TRANSACTION READ ONLY`` … ``ROLLBACK``; DuckDB and
  SQLite: nothing per statement, their read-only mode is the connection's), timed the same
  way through the plain driver. The last is the cost floor of a *safe* evaluation; the gap
  above it is sqlwright's own (guard, watchdog, pool, comparing).

* **floor on all cores** (``floor_on_all_cores``): the same plain-driver work, run at once on
  as many processes as ``sqlwright eval`` has workers, the databases dealt out evenly, each
  process opening its connections; the slowest process's wall time. This is the issue's
  "each distinct query once, on all cores" measured rather than assumed: on this machine the
  server's backends share the cores with the clients, and the sum divided by the workers
  is not reachable even by the plain driver.

Reports the median of the rounds, and the ratios of the execution phase to each floor, as
a markdown table and JSON.
"""

from __future__ import annotations

import contextlib
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
from sqlwright.db.mysql import _connection_class, connect_args  # noqa: E402
from sqlwright.db.postgres import conninfo  # noqa: E402
from sqlwright.db.urls import expand  # noqa: E402

TIMEOUT = 30.0  # seconds per query, eval and floor alike (golds: none comes near it)


# -- the floor: plain driver connections ----------------------------------------------------
def _connect(engine: str, target: str, read_only_protocol: bool = False):
    """(connection, run(sql) -> rows) for one database through the engine's plain driver;
    ``read_only_protocol``: each statement in a read-only transaction, rolled back."""
    if engine == "sqlite":
        conn = sqlite3.connect(f"file:{target}?mode=ro", uri=True)
        return conn, lambda sql: conn.execute(sql).fetchall()
    if engine == "postgresql":
        import psycopg

        conn = psycopg.connect(conninfo(target), autocommit=not read_only_protocol)
        conn.execute(f"SET statement_timeout = {int(TIMEOUT * 1000)}")
        if not read_only_protocol:
            return conn, lambda sql: conn.execute(sql).fetchall()
        conn.commit()
        conn.read_only = True  # psycopg sends BEGIN READ ONLY before the statement

        def run_ro(sql: str) -> list:
            try:
                return conn.execute(sql).fetchall()
            finally:
                conn.rollback()

        return conn, run_ro
    if engine == "mariadb":
        import pymysql

        # a buffered cursor, autocommit; PyMySQL's connection with its TLS context built once
        # per process, as sqlwright's executor builds it (else ~22 ms a connection: db/mysql.py)
        conn = _connection_class()(**connect_args(target), cursorclass=pymysql.cursors.Cursor)
        cur = conn.cursor()
        cur.execute(f"SET SESSION max_statement_time = {TIMEOUT:g}")

        def run(sql: str) -> tuple:
            if read_only_protocol:
                cur.execute("START TRANSACTION READ ONLY")
            try:
                cur.execute(sql)
                return cur.fetchall()
            finally:
                if read_only_protocol:
                    cur.execute("ROLLBACK")

        return conn, run
    if engine == "duckdb":
        import duckdb

        # one thread per query, as sqlwright's executor runs it: the sum is divided by the cores
        conn = duckdb.connect(target.split("://", 1)[1], read_only=True, config={"threads": 1})
        return conn, lambda sql: conn.execute(sql).fetchall()
    raise ValueError(engine)


def floor(engine: str, queries: list[tuple[str, str]], workers: int, read_only_protocol: bool = False) -> dict:
    counts = {"ok": 0, "error": 0}
    total = 0.0
    conns: dict[str, tuple] = {}
    t0 = time.perf_counter()
    for target, _ in queries:
        if target not in conns:
            conns[target] = _connect(engine, target, read_only_protocol)
    connect_s = time.perf_counter() - t0  # one connection per database, which any evaluator opens
    try:
        for target, sql in queries:
            run = conns[target][1]
            t0 = time.perf_counter()
            try:
                run(sql)
                counts["ok"] += 1
            except Exception:  # a gold that does not compile on this engine: its error costs time too
                counts["error"] += 1  # (rolled back above with the read-only protocol; else autocommit)
            total += time.perf_counter() - t0
    finally:
        for conn, _ in conns.values():
            conn.close()
    return {"distinct": len(queries), **counts, "total_s": total, "per_core_s": total / workers,
            "connect_s": connect_s, "with_connect_per_core_s": (total + connect_s) / workers}


def _floor_part(engine: str, queries: list[tuple[str, str]], read_only_protocol: bool, barrier, out) -> None:
    barrier.wait()  # every part starts together: the wall time is the slowest part's
    t0 = time.perf_counter()
    conns = {t: _connect(engine, t, read_only_protocol) for t in dict.fromkeys(t for t, _ in queries)}
    for target, sql in queries:
        with contextlib.suppress(Exception):  # a gold that does not compile here costs its error
            conns[target][1](sql)
    out.put(time.perf_counter() - t0)
    for conn, _ in conns.values():
        conn.close()


def floor_on_all_cores(engine: str, queries: list[tuple[str, str]], workers: int, read_only_protocol: bool = False) -> float:
    """Wall seconds for the plain driver to execute every distinct query once on ``workers``
    processes at the same time: the databases dealt out so each process has about as many
    queries (largest first), one connection per database, each process's connections opened
    and its queries executed and fetched; the slowest process counts. Unlike ``floor``'s sum
    divided by the workers, this pays what running on all cores costs here: the processes,
    and on a server engine its backends, share the machine's cores."""
    import importlib
    import multiprocessing as mp

    driver = {"postgresql": "psycopg", "mariadb": "pymysql", "duckdb": "duckdb"}.get(engine)
    if driver:  # imported once here, not in each process's timed part
        importlib.import_module(driver)
    by_db: dict[str, list] = {}
    for q in queries:
        by_db.setdefault(q[0], []).append(q)
    parts: list[list] = [[] for _ in range(workers)]
    for db in sorted(by_db, key=lambda d: -len(by_db[d])):
        min(parts, key=len).extend(by_db[db])
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=_floor_part, args=(engine, part, read_only_protocol, barrier, out)) for part in parts]
    for p in procs:
        p.start()
    took = max(out.get(timeout=600) for _ in procs)
    for p in procs:
        p.join()
    return took


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

        runs: dict[str, dict[str, list]] = {name: {"eval": [], "floor": [], "safe": [], "all": [], "all_safe": []}
                                            for name, *_ in plan}  # fmt: skip
        for k in range(repeat):
            for name, target_args, queries, preds in plan:
                ev = run_eval(preds, target_args)
                r = runs[name]
                r["eval"].append(ev)
                r["floor"].append(floor(name, queries, ev["workers"]))
                r["safe"].append(floor(name, queries, ev["workers"], read_only_protocol=True))
                r["all"].append(floor_on_all_cores(name, queries, ev["workers"]))
                r["all_safe"].append(floor_on_all_cores(name, queries, ev["workers"], read_only_protocol=True))
                print(f"round {k + 1} {name}: eval {ev['wall_s']:.2f} s (execution {ev['execute_wall_s']:.3f} s), "
                      f"floor {r['floor'][-1]['per_core_s']:.3f} s, on all cores {r['all'][-1]:.3f} s, "
                      f"read-only protocol on all cores {r['all_safe'][-1]:.3f} s", file=sys.stderr)  # fmt: skip
    finally:
        for s in started:
            s.stop()

    cores = len(os.sched_getaffinity(0))
    print(f"\ncores: {cores}, rounds: {repeat} (median), timeout {TIMEOUT:g} s\n")
    print("Floors (s): the sum of the statements over one process divided by the workers (driver only; + one connection "
          "per database; + the read-only protocol), and measured on all cores at once (with connections; + the read-only "
          "protocol). Ratios: sqlwright eval's execution phase over each.\n")  # fmt: skip
    print("| engine | distinct | sum / workers: driver only | + connections | + read-only protocol | on all cores "
          "| on all cores, read-only protocol | eval wall (s) | eval execution phase (s) | ÷ driver only | ÷ + connections "
          "| ÷ + read-only protocol | ÷ on all cores | ÷ on all cores, read-only protocol | correct |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for name, r in runs.items():
        med = {k: statistics.median(x[k] for x in r["eval"]) for k in ("wall_s", "execute_wall_s")}
        floors = {"driver_only": statistics.median(x["per_core_s"] for x in r["floor"]),
                  "with_connections": statistics.median(x["with_connect_per_core_s"] for x in r["floor"]),
                  "read_only_protocol": statistics.median(x["with_connect_per_core_s"] for x in r["safe"]),
                  "all_cores": statistics.median(r["all"]), "all_cores_read_only_protocol": statistics.median(r["all_safe"])}  # fmt: skip
        ev, ex = r["eval"][0], med["execute_wall_s"]
        ratios = {k: ex / v for k, v in floors.items()}
        rows.append({"engine": name, "eval_median": med, "floors_median_s": floors, "ratios_execution": ratios, "runs": r})
        print(f"| {name} | {ev['distinct']} | " + " | ".join(f"{v:.3f}" for v in floors.values()) +
              f" | {med['wall_s']:.2f} | {ex:.3f} | " + " | ".join(f"{v:.2f}" for v in ratios.values()) +
              f" | {ev['correct']} / {ev['total']} |")  # fmt: skip
    print("\n" + json.dumps(rows, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
