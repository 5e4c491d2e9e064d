"""Destructive and runaway predictions: databases stay byte-identical, runaways stop in time,
and nothing keeps using CPU afterwards."""

from __future__ import annotations

import hashlib
import time

import psutil

from conftest import child_processes, write_jsonl
from sqlwright.eval.evaluate import EvalConfig, evaluate

TIMEOUT = 1.0
RUNAWAYS = {
    0: "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r) SELECT max(x) FROM r",
    2: "SELECT count(*) FROM schools a, schools b, schools c, schools d, schools e, schools f, "
       "schools g, schools h, schools i, schools j, schools k, schools l, schools m, schools n",
    5: "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r) SELECT x FROM r ORDER BY x DESC LIMIT 1",
}  # fmt: skip
DESTRUCTIVE = {
    1: "DROP TABLE schools",
    3: "UPDATE schools SET rating = 0; DELETE FROM scores",
    4: "VACUUM INTO '{tmp}/stolen.db'",
}


def tree_digest(root) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_destructive_and_runaway_predictions(bird_dir, tmp_path):
    before = tree_digest(bird_dir)
    preds = [{"id": i, "sql": sql.format(tmp=tmp_path)} for i, sql in {**RUNAWAYS, **DESTRUCTIVE}.items()]
    path = write_jsonl(tmp_path / "p.jsonl", preds)
    me = psutil.Process()
    t0 = time.monotonic()
    run = evaluate(EvalConfig(str(path), benchmark=str(bird_dir), timeout=TIMEOUT, workers=2, out=str(tmp_path / "r"), progress=False))
    wall = time.monotonic() - t0

    assert tree_digest(bird_dir) == before  # every byte of every database file
    assert not (tmp_path / "stolen.db").exists()
    by_id = {r["id"]: r for r in run.records}
    for i in RUNAWAYS:
        assert by_id[str(i)]["verdict"] == "timeout"
        assert by_id[str(i)]["pred_elapsed"] <= TIMEOUT + 1.0
    for i in DESTRUCTIVE:
        assert by_id[str(i)]["pred_status"] == "forbidden"
        assert by_id[str(i)]["reason"]
    # three runaways on two workers: two rounds of the timeout, plus start-up
    assert wall < 2 * (TIMEOUT + 1.0) + 2.0

    # no worker left, and no CPU burnt once evaluate() has returned
    assert not child_processes()
    cpu0 = sum(me.cpu_times()[:2])
    time.sleep(1.0)
    assert sum(me.cpu_times()[:2]) - cpu0 < 0.1
