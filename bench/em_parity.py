"""Parity of sqlwright's exact match (EM) and test-suite execution (EX) with the official
evaluator (taoyds/test-suite-sql-eval), question by question, on Spider dev.

    python bench/em_parity.py --official DIR [--spider ../shared/data/spider] [--plug-value] [--keep-distinct]

``DIR`` is a checkout of the official evaluator (evaluation.py, exec_eval.py, process_sql.py,
parse.py; it needs nltk, sqlparse and tqdm installed). No copy of it lives in this repository.
NLTK's ``word_tokenize`` needs the Punkt data for its sentence split, which cannot be
downloaded here; the official parser is run with ``word_tokenize(s, preserve_line=True)``
(NLTK's own word tokenizer on the whole string; SQL has no sentence break to split at).

Two prediction sets over the questions whose database is present: the golds themselves, and
the golds with one systematic edit each (by question index: DISTINCT dropped or added,
conditions swapped, values changed, a selected column changed, ORDER BY removed, SELECT
items reordered, LIMIT changed, a truncated unparsable query, an operator flipped). Both
evaluators score both sets; the script prints per-question agreement of EM, of every
component score, and of EX (official ``eval_exec_match`` against ``sqlwright eval
--test-suite <spider>/database``, the Spider database folder being a suite of one database
per db_id), the official EM/F1 table against sqlwright's, and the time EM takes.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import sys
import tempfile
import time
from pathlib import Path

from sqlwright.eval.evaluate import EvalConfig, evaluate
from sqlwright.eval.exact_match import COMPONENTS, LEVELS, ExactMatcher

EDITS = ("none", "distinct", "swap_conditions", "values", "column", "drop_order", "reorder_select", "limit",
         "unparsable", "operator")  # fmt: skip


def perturb(sql: str, kind: str, columns: list[str]) -> str:
    """One systematic edit of a gold query (unchanged when the edit does not apply)."""
    s = sql.strip().rstrip(";")
    if kind == "distinct":
        if re.search(r"\bdistinct\b", s, re.I):
            return re.sub(r"\bdistinct\s+", "", s, count=1, flags=re.I)
        return re.sub(r"^\s*select\s+", "SELECT DISTINCT ", s, count=1, flags=re.I)
    if kind == "swap_conditions":
        m = re.search(r"\bwhere\s+(.+?)\s+and\s+(.+?)(?=\s+(?:group|order|limit|intersect|union|except)\b|\)|$)", s, re.I)
        if m and " between " not in m.group(0).lower():
            return s[: m.start()] + f"WHERE {m.group(2)} AND {m.group(1)}" + s[m.end():]
        return s
    if kind == "values":
        s2 = re.sub(r"(?<![\w.])(\d+)(?![\w.])", lambda m: str(int(m.group(1)) + 1), s)
        return re.sub(r"'([^']*)'", lambda m: f"'{m.group(1)}x'", s2)
    if kind == "column":
        m = re.match(r"^\s*select\s+(?:distinct\s+)?([A-Za-z_][\w.]*)", s, re.I)
        if m:
            col = m.group(1).split(".")[-1]
            other = next((c for c in columns if c.lower() != col.lower()), None)
            if other:
                prefix = m.group(1)[: -len(col)]
                return s[: m.start(1)] + prefix + other + s[m.end(1):]
        return s
    if kind == "drop_order":
        return re.sub(r"\s+order\s+by\s+[^()]*?(?=\s+limit\b|$)", "", s, count=1, flags=re.I)
    if kind == "reorder_select":
        m = re.match(r"^\s*select\s+(?!distinct)([^()]*?)\s+from\b", s, re.I)
        if m and "," in m.group(1):
            items = [x.strip() for x in m.group(1).split(",")]
            return s[: m.start(1)] + ", ".join(reversed(items)) + s[m.end(1):]
        return s
    if kind == "limit":
        if re.search(r"\blimit\s+\d+", s, re.I):
            return re.sub(r"\blimit\s+(\d+)", lambda m: f"LIMIT {int(m.group(1)) + 2}", s, flags=re.I)
        return s
    if kind == "unparsable":
        return " ".join(s.split()[: max(2, len(s.split()) // 2)])
    if kind == "operator":
        for a, b in ((" > ", " < "), (" >= ", " <= "), (" = ", " != "), (" < ", " > ")):
            if a in s:
                return s.replace(a, b, 1)
        return s
    return s


def load_official(path: Path):
    sys.path.insert(0, str(path))
    import evaluation  # noqa: F401  (the official modules, from --official)
    import exec_eval  # noqa: F401
    import nltk
    import process_sql

    process_sql.word_tokenize = lambda s: nltk.word_tokenize(s, preserve_line=True)
    return evaluation, exec_eval, process_sql


def official_one(mods, db: str, gold: str, pred: str, kmap: dict, plug: bool, keep: bool) -> dict:
    """What the official evaluate() loop computes for one question (its own functions)."""
    evaluation, exec_eval, process_sql = mods
    p_str = pred.replace(" value ", " 1 ")
    schema = process_sql.Schema(process_sql.get_schema(db))
    g_sql = process_sql.get_sql(schema, gold)
    hardness = evaluation.Evaluator().eval_hardness(g_sql)
    try:
        p_sql = process_sql.get_sql(schema, p_str)
        parsed = True
    except Exception:
        parsed = False
        p_sql = {"except": None, "from": {"conds": [], "table_units": []}, "groupBy": [], "having": [],
                 "intersect": None, "limit": None, "orderBy": [], "select": [False, []], "union": None, "where": []}  # fmt: skip
    try:
        ex = bool(exec_eval.eval_exec_match(db=db, p_str=p_str, g_str=gold, plug_value=plug, keep_distinct=keep,
                                            progress_bar_for_each_datapoint=False))  # fmt: skip
    except AssertionError as e:  # the gold failed on a database
        ex = f"crash: {e}"
    gv = evaluation.build_valid_col_units(g_sql["from"]["table_units"], schema)
    g_sql = evaluation.rebuild_sql_col(gv, evaluation.rebuild_sql_val(g_sql), kmap)
    pv = evaluation.build_valid_col_units(p_sql["from"]["table_units"], schema)
    p_sql = evaluation.rebuild_sql_col(pv, evaluation.rebuild_sql_val(p_sql), kmap)
    ev = evaluation.Evaluator()
    exact = bool(ev.eval_exact_match(p_sql, g_sql))
    failed = sorted(c for c in COMPONENTS if ev.partial_scores[c]["f1"] != 1)
    return {"exact": exact, "failed": failed, "ex": ex, "hardness": hardness, "parsed": parsed}


def official_table(mods, gold_file: Path, pred_file: Path, db_dir: Path, tables: Path) -> dict:
    """The official evaluate(--etype match) printout, read back into {row: {level: value}}."""
    evaluation = mods[0]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        evaluation.evaluate(str(gold_file), str(pred_file), str(db_dir), "match",
                            evaluation.build_foreign_key_map_from_json(str(tables)), False, False, False)  # fmt: skip
    out: dict[str, dict] = {}
    section = ""
    for line in buf.getvalue().splitlines():
        if "PARTIAL MATCHING" in line:
            section = line.split("PARTIAL MATCHING")[1].strip(" -")
            continue
        name, rest = line[:20].strip(), line[20:].split()
        if name and len(rest) == len(LEVELS) and all(re.fullmatch(r"\d+(\.\d+)?", x) for x in rest):
            key = f"{name} {section}".strip() if name in COMPONENTS else name
            out[key] = dict(zip(LEVELS, map(float, rest), strict=True))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", required=True, type=Path, help="checkout of taoyds/test-suite-sql-eval")
    ap.add_argument("--spider", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/spider")
    ap.add_argument("--plug-value", action="store_true")
    ap.add_argument("--keep-distinct", action="store_true")
    ap.add_argument("--limit", type=int, default=None, help="first N questions only")
    args = ap.parse_args(argv)
    mods = load_official(args.official)
    spider = args.spider
    dev = json.loads((spider / "dev.json").read_text())
    tables = {t["db_id"]: t for t in json.loads((spider / "tables.json").read_text())}
    kmaps = mods[0].build_foreign_key_map_from_json(str(spider / "tables.json"))
    present = [(i, q) for i, q in enumerate(dev) if (spider / "database" / q["db_id"] / f"{q['db_id']}.sqlite").is_file()]
    present = present[: args.limit] if args.limit else present
    print(f"{len(present)} of {len(dev)} dev questions have their database", file=sys.stderr)

    # EM speed over the whole dev set (1,034 questions, databases not needed)
    m = ExactMatcher(tables)
    t0 = time.perf_counter()
    for q in dev:
        m.match(q["db_id"], q["query"], q["query"])
    em_seconds = time.perf_counter() - t0

    out = Path(tempfile.mkdtemp(prefix="sqlwright-em-parity-"))
    report = {"questions": len(present), "em_seconds_1034": round(em_seconds, 3), "sets": {}}
    for name in ("gold", "perturbed"):
        preds = {}
        for i, q in present:
            t = tables[q["db_id"]]
            cols = [c for _, c in t["column_names_original"][1:]]
            kind = "none" if name == "gold" else EDITS[i % len(EDITS)]
            preds[i] = perturb(q["query"], kind, cols) if kind != "none" else q["query"]
        pf = out / f"{name}.jsonl"
        pf.write_text("".join(json.dumps({"id": i, "sql": s}) + "\n" for i, s in preds.items()))
        t1 = time.perf_counter()
        run = evaluate(EvalConfig(str(pf), benchmark=str(spider), out=str(out / f"run-{name}"), progress=False,
                                  only_predicted=True, etype="all", comparator="test-suite",
                                  test_suite=str(spider / "database"), plug_value=args.plug_value,
                                  keep_distinct=args.keep_distinct))  # fmt: skip
        ours_s = time.perf_counter() - t1
        ours = {r["id"]: r for r in run.records}
        t2 = time.perf_counter()
        theirs = {}
        for i, q in present:
            db = str(spider / "database" / q["db_id"] / f"{q['db_id']}.sqlite")
            theirs[str(i)] = official_one(mods, db, q["query"], preds[i], kmaps[q["db_id"]], args.plug_value, args.keep_distinct)
        official_s = time.perf_counter() - t2
        em_diff = [k for k, o in theirs.items() if o["exact"] != ours[k]["exact_match"]]
        comp_diff = [k for k, o in theirs.items() if o["failed"] != sorted(ours[k].get("match_failed", []))]
        ex_diff = [k for k, o in theirs.items() if o["ex"] != ours[k]["ts_correct"]]
        hard_diff = [k for k, o in theirs.items() if o["hardness"] != ours[k]["difficulty"]]
        # the official aggregate table, from its own evaluate() and files
        gold_file, pred_file = out / f"{name}_gold.txt", out / f"{name}_pred.txt"
        gold_file.write_text("".join(f"{q['query']}\t{q['db_id']}\n" for _, q in present))
        pred_file.write_text("".join(" ".join(preds[i].split()) + "\n" for i, _ in present))
        table = official_table(mods, gold_file, pred_file, spider / "database", spider / "tables.json")
        ours_table = run.summary["exact_match"]["by_hardness"]
        table_diff = []
        for lv in LEVELS:
            if float(f'{ours_table[lv]["exact"]:.3f}') != table["exact match"][lv]:  # as the official prints it
                table_diff.append(("exact match", lv, ours_table[lv]["exact"], table["exact match"][lv]))
            for c in COMPONENTS:
                for key, sec in (("acc", "ACCURACY"), ("rec", "RECALL"), ("f1", "F1")):
                    theirs_v = table.get(f"{c} {sec}", {}).get(lv)
                    if theirs_v is None or float(f'{ours_table[lv]["components"][c][key]:.3f}') != theirs_v:
                        table_diff.append((c, key, lv, ours_table[lv]["components"][c][key], theirs_v))
        n = len(present)
        report["sets"][name] = {
            "em_official": round(100 * sum(o["exact"] for o in theirs.values()) / n, 2),
            "em_sqlwright": run.summary["em"],
            "ex_official": round(100 * sum(o["ex"] is True for o in theirs.values()) / n, 2),
            "ex_sqlwright_test_suite": run.summary["ts_ex"],
            "em_agreement": f"{n - len(em_diff)}/{n}", "component_agreement": f"{n - len(comp_diff)}/{n}",
            "ex_agreement": f"{n - len(ex_diff)}/{n}", "hardness_agreement": f"{n - len(hard_diff)}/{n}",
            "table_cells_differing": len(table_diff), "unparsed_predictions": sum(not o["parsed"] for o in theirs.values()),
            "sqlwright_eval_s": round(ours_s, 2), "official_s": round(official_s, 2),
            "disagreements": [{"id": k, "gold": dev[int(k)]["query"], "pred": preds[int(k)],
                               "official": theirs[k], "sqlwright": {"exact": ours[k]["exact_match"],
                               "failed": ours[k].get("match_failed"), "ts": ours[k]["ts_correct"],
                               "ts_reason": ours[k]["ts_reason"], "match_error": ours[k]["match_error"]}}
                              for k in sorted(set(em_diff) | set(comp_diff) | set(ex_diff), key=int)][:20],
            "table_diff": table_diff[:20],
        }  # fmt: skip
        if name == "perturbed":  # per edit: how many it changed, and EM / EX (both evaluators agree above)
            by_edit = {}
            for i, q in present:
                kind = EDITS[i % len(EDITS)]
                e = by_edit.setdefault(kind, {"questions": 0, "changed": 0, "em": 0, "ex": 0})
                e["questions"] += 1
                e["changed"] += preds[i] != q["query"]
                e["em"] += bool(ours[str(i)]["exact_match"])
                e["ex"] += bool(ours[str(i)]["ts_correct"])
            report["sets"][name]["by_edit"] = by_edit
    print(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
