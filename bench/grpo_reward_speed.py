"""Speed of the GRPO execution reward against computing each completion on its own.

    python bench/grpo_reward_speed.py --spider ../shared/data/spider --steps 5

A GRPO step scores 16 prompts x 8 completions. The rollouts here are built from real Spider
train questions (their databases in ``--spider``/database), 8 per question, in the proportions
a sampled group of a half-trained model has: 3 copies of the gold (spacing and case varied,
as sampling gives), 2 that run but differ (a condition dropped, another LIMIT), 2 that fail
(a column the schema lacks) and 1 with no SQL. Each step takes the next 16 questions.

* sqlwright: ``sqlwright.train.rewards`` ``execution`` through the judge (2 reused workers,
  each distinct (database, SQL) of a step executed once, gold results cached across steps);
  steps over new questions (cold golds), then the same steps again (an epoch later: warm golds).
* baseline, what most public GRPO text-to-SQL reward code does: for every completion, open a
  fresh ``sqlite3`` connection, run the gold and the completion each in a thread with Python's
  per-call timeout (``future.result(timeout)``), compare the row sets.

Prints the per-step seconds of both and the speed-up.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sqlite3
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path


def rollouts(question: dict, rng: random.Random) -> list[str]:
    gold = question["query"].strip().rstrip(";")
    same = [gold, " ".join(gold.split()), gold.replace("SELECT", "select", 1)]
    differs = [re.sub(r"\s+WHERE\s+.*?(?=(GROUP|ORDER|LIMIT|$))", " ", gold, count=1, flags=re.I | re.S),
               re.sub(r"\s+LIMIT\s+\d+", "", gold, flags=re.I) + " LIMIT 2"]
    fails = [re.sub(r"SELECT\s+", "SELECT no_such_col, ", gold, count=1, flags=re.I),
             gold.replace("FROM", "FROM missing_table_x JOIN", 1)]
    out = same + differs + fails + ["I cannot answer that."]
    rng.shuffle(out)
    return out


def baseline_reward(db: str, gold: str, sql: str, timeout: float) -> float:
    def run(conn, q):
        return conn.execute(q).fetchall()

    conn = sqlite3.connect(db, check_same_thread=False)
    try:
        with ThreadPoolExecutor(1) as ex:
            g = ex.submit(run, conn, gold).result(timeout)
            try:
                p = ex.submit(run, conn, sql).result(timeout)
            except FutureTimeout:
                return 0.0
            except Exception:
                return 0.0
            return 1.0 if set(g) == set(p) else 0.1
    finally:
        conn.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spider", required=True)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--generations", type=int, default=8)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    from sqlwright.judge import Judge
    from sqlwright.train.rewards import REWARDS, RewardContext, TRLReward
    from sqlwright.types import Limits

    spider = Path(args.spider)
    rng = random.Random(0)
    questions = [q for q in json.loads((spider / "train_spider.json").read_text())
                 if (spider / "database" / q["db_id"] / f"{q['db_id']}.sqlite").is_file()]
    rng.shuffle(questions)
    steps = []
    for s in range(args.steps):
        batch = questions[s * args.prompts:(s + 1) * args.prompts]
        rows = [(str(spider / "database" / q["db_id"] / f"{q['db_id']}.sqlite"), q["query"], c)
                for q in batch for c in rollouts(q, rng)]
        steps.append(rows)

    def ours(judge, rows):
        fn = TRLReward(REWARDS["execution"], RewardContext(judge=judge))
        return fn(completions=[c for _, _, c in rows], target=[t for t, _, _ in rows], gold_sql=[g for _, g, _ in rows])

    judge = Judge("bird", Limits(timeout=args.timeout), workers=args.workers, start_method="forkserver")
    ours(judge, steps[0][:2])  # workers started before timing
    judge._gold.clear()
    cold, warm, scores_ours = [], [], []
    for rows in steps:
        t = time.perf_counter()
        scores_ours.append(ours(judge, rows))
        cold.append(time.perf_counter() - t)
    for rows in steps:
        t = time.perf_counter()
        ours(judge, rows)
        warm.append(time.perf_counter() - t)
    judge.close()

    base, scores_base = [], []
    for rows in steps:
        t = time.perf_counter()
        scores_base.append([baseline_reward(db, g, c, args.timeout) if c.strip().lower().startswith(("select", "with")) else 0.0
                            for db, g, c in rows])
        base.append(time.perf_counter() - t)

    agree = sum(a == b for sa, sb in zip(scores_ours, scores_base, strict=True) for a, b in zip(sa, sb, strict=True))
    total = sum(len(s) for s in scores_ours)
    distinct = statistics.mean(len({(d, " ".join(c.lower().split())) for d, _, c in rows}) for rows in steps)
    m = statistics.median
    result = {"completions_per_step": args.prompts * args.generations, "steps": args.steps,
              "distinct_sql_per_step": round(distinct, 1),
              "baseline_s": round(m(base), 4), "sqlwright_cold_s": round(m(cold), 4), "sqlwright_warm_s": round(m(warm), 4),
              "speedup_cold": round(m(base) / m(cold), 2), "speedup_warm": round(m(base) / m(warm), 2),
              "rewards_agree": f"{agree}/{total}"}
    print(json.dumps(result, indent=2))
    print(f"| per step (median of {args.steps}) | baseline {result['baseline_s']} s | sqlwright {result['sqlwright_cold_s']} s "
          f"(golds new) / {result['sqlwright_warm_s']} s (golds cached) | {result['speedup_cold']}x / {result['speedup_warm']}x |",
          file=sys.stderr)


if __name__ == "__main__":
    main()
