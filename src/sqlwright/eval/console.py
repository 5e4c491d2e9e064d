"""The console view of an evaluation summary (rich)."""

from __future__ import annotations

from pathlib import Path


def render_summary(summary: dict, out_dir: Path | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    kind = summary["difficulty_kind"]
    groups = {k: v for k, v in summary["by_difficulty"].items()}
    title = f"Execution accuracy ({summary['comparator']} comparator) by {kind}"
    if summary.get("etype") == "match":
        title = f"Exact-set-match by {kind} (nothing executed)"
    table = Table(title=title)
    table.add_column("", style="bold")
    for name in groups:
        table.add_column(name, justify="right")
    table.add_column("total", justify="right", style="bold")
    total = {"questions": summary["questions"], "count": summary["scored"], "ex": summary["ex"],
             "soft_f1": summary["soft_f1"]}  # fmt: skip
    cols = [*groups.values(), total]
    if summary["questions"] != summary["scored"]:
        table.add_row("questions", *[str(g["questions"]) for g in cols])
    table.add_row("scored" if summary["questions"] != summary["scored"] else "count", *[str(g["count"]) for g in cols])
    executed = summary.get("etype") != "match"
    if executed:
        table.add_row("EX %", *[_pct(g["ex"]) for g in cols])
    if "test_suite" in summary:
        total["ts_ex"] = summary["ts_ex"]
        table.add_row("test-suite EX %", *[_pct(g.get("ts_ex")) for g in cols])
    if "exact_match" in summary:
        total["em"] = summary["em"]
        table.add_row("EM %", *[_pct(g.get("em")) for g in cols])
    if executed:
        table.add_row("soft-F1 %", *[_pct(g["soft_f1"]) for g in cols])
    console.print(table)
    if "exact_match" in summary:
        console.print(component_table(summary["exact_match"]))

    if "test_suite" in summary:
        console.print(test_suite_line(summary["test_suite"]))
    if not executed:
        if out_dir is not None:
            console.print(f"run folder: {out_dir}")
        return
    c = summary["counts"]
    parts = [f"{c['correct']} correct", f"{c['wrong']} wrong result", f"{c['error']} errors"]
    for key, label in (("timeout", "timeouts"), ("too_many_rows", "too many rows"), ("missing", "missing"),
                       ("gold_error", "gold failed")):  # fmt: skip
        if c[key]:
            parts.append(f"{c[key]} {label}")
    console.print(" · ".join(parts))
    if c["db_missing"]:
        missing = sorted(db for db, g in summary["by_database"].items() if g["count"] == 0)
        console.print(f"[yellow]{c['db_missing']} questions not scored: database missing ({', '.join(missing)})[/]")
    others = ", ".join(f"{k} {_pct(v)}" for k, v in summary["ex_by_comparator"].items() if k != summary["comparator"])
    console.print(f"other comparators: {others}")
    if "ves" in summary:
        console.print(f"VES {summary['ves']['ves']:.2f} · R-VES {summary['ves']['r_ves']:.2f}")
    if "guided" in summary:
        console.print(guided_line(summary["guided"]))
    t = summary["timing"]
    console.print(f"{t['distinct_queries']} distinct queries executed ({t['executions_saved']} repeats skipped) "
                  f"in {t['execute_wall_s']:.2f} s on {summary['settings']['workers']} workers")  # fmt: skip
    if out_dir is not None:
        console.print(f"run folder: {out_dir}")


def _pct(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def guided_line(g: dict) -> str:
    """One line about execution-guided predictions (predict --select / --refine)."""
    by = ", ".join(f"{k} {v}" for k, v in g.get("selected_by", {}).items())
    return (f"execution-guided: {g['selected']} of {g['questions']} selected{f' ({by})' if by else ''}, "
            f"{g['refined']} refined in {g['rounds']} rounds ({g['refined_correct']} of them correct); "
            f"failed to run: {g['failed_to_run_before']} before, {g['failed_to_run_after']} after refinement")


def component_table(em: dict):
    """Spider's component F1 by hardness, rows and columns as the official evaluator prints them."""
    from rich.table import Table

    levels = [lv for lv in ("easy", "medium", "hard", "extra", "all") if lv in em["by_hardness"]]
    note = f" · {em['unparsed_predictions']} predictions the Spider parser cannot read" if em.get("unparsed_predictions") else ""
    table = Table(title=f"Exact-set-match components (F1) by hardness{note}")
    table.add_column("", style="bold")
    for lv in levels:
        table.add_column(lv, justify="right", style="bold" if lv == "all" else None)
    table.add_row("count", *[str(em["by_hardness"][lv]["count"]) for lv in levels])
    table.add_row("exact match", *[f"{em['by_hardness'][lv]['exact']:.3f}" for lv in levels])
    for comp in em["components"]:
        table.add_row(comp, *[f"{em['by_hardness'][lv]['components'][comp]['f1']:.3f}" for lv in levels])
    return table


def test_suite_line(ts: dict) -> str:
    how = [f"{ts['databases']} databases in {ts['suites']} suites"]
    how.append("values plugged" if ts["plug_value"] else "values as predicted")
    how.append("DISTINCT kept" if ts["keep_distinct"] else "DISTINCT removed")
    line = (f"test-suite EX {_pct(ts['ex'])} ({ts['correct']}/{ts['count']}; {', '.join(how)}); "
            f"{ts['correct_on_one_wrong_on_suite']} right on the original database but wrong on the suite")
    if ts["not_computed"] or ts["gold_errors"]:
        line += f"; {ts['not_computed']} not computed, {ts['gold_errors']} with a gold that fails on a suite database"
    return line
