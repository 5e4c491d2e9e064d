"""The report page: one self-contained HTML file (inline CSS and SVG, a few lines of optional
JavaScript for the question filter; the page reads fully without it and needs no network).

All text from run files (questions, SQL, messages, result cells, paths) goes through
:func:`e` before it reaches the page.
"""

from __future__ import annotations

import statistics
from datetime import datetime
from html import escape

from sqlwright.report import charts
from sqlwright.report.load import CATEGORIES, Comparison, RunData, TrainingLog, categorize

RUN_COLOUR = "#0969da"
OTHER_COLOUR = "#a475f9"
LIGHT = {"missing", "db_missing", "not_executed"}  # categories whose badge wants dark text
FLIPS_SHOWN = 10  # flipped questions listed before "N more"


def e(v: object) -> str:
    """Escape any value for HTML text and attribute values."""
    return escape("" if v is None else str(v), quote=True)


def pct(v: float | None, digits: int = 2) -> str:
    return "–" if v is None else f"{v:.{digits}f}%"


def _badge(cat: str, extra: str = "") -> str:
    label, colour, meaning = CATEGORIES[cat]
    cls = "badge light" if cat in LIGHT else "badge"
    return f'<span class="{cls}" style="background:{colour}" title="{e(meaning)}">{e(label)}{extra}</span>'


# -- page parts ---------------------------------------------------------------------------
def _names(run: RunData, cmp: Comparison | None) -> tuple[str, str | None]:
    if cmp is None:
        return run.name, None
    a, b = run.name, cmp.other.name
    if a == b:
        a, b = str(run.path), str(cmp.other.path)
    return a, b


def _header(run: RunData, name: str) -> str:
    s, c = run.summary, run.config
    when = datetime.fromtimestamp((run.path / "summary.json").stat().st_mtime).strftime("%Y-%m-%d %H:%M")
    bench = c.get("benchmark") or c.get("questions") or "?"
    meta = [f"benchmark <code>{e(bench)}</code>", f"split {e(c.get('split', '?'))}",
            f"<b>{e(s.get('comparator', '?'))}</b> comparator", f"predictions <code>{e(c.get('predictions', '?'))}</code>",
            f"evaluated {e(when)}", f"sqlwright {e(s.get('environment', {}).get('sqlwright', '?'))}"]  # fmt: skip
    return (f'<header><div class="wrap"><div class="kicker">sqlwright eval report</div><h1>{e(name)}</h1>'
            f'<div class="meta">{" · ".join(meta)}</div></div></header>')  # fmt: skip


def _headline(run: RunData, cmp: Comparison | None, names: tuple[str, str | None]) -> str:
    s = run.summary
    sub = [f"<b>{s.get('correct', 0)}</b> of {s.get('scored', s['questions'])} questions correct"]
    if s.get("scored", s["questions"]) != s["questions"]:
        sub.append(f"{s['questions'] - s['scored']} not scored")
    if s.get("soft_f1") is not None:
        sub.append(f"soft-F1 {pct(s['soft_f1'])}")
    if "ves" in s:
        sub.append(f"VES {s['ves']['ves']:.2f} · R-VES {s['ves']['r_ves']:.2f}")
    emb = s.get("embedding") or {}
    if emb.get("mean_distance") is not None:
        split = [f"{label} {emb[key]:.3f}" for key, label in (("mean_distance_correct", "correct"),
                                                              ("mean_distance_wrong", "wrong"))
                 if emb.get(key) is not None]  # fmt: skip
        sub.append(f'<span title="{e(emb.get("note", ""))}">embedding distance {emb["mean_distance"]:.3f}'
                   f'{" (" + ", ".join(split) + ")" if split else ""}, secondary, weaker than EX</span>')
    parts = [f'<div class="hero"><div class="label">Execution accuracy</div><div class="big">{pct(s["ex"])}</div>'
             f'<div class="sub">{" · ".join(sub)}</div></div>']  # fmt: skip
    if s.get("etype") == "match":
        parts = []
    parts += _spider_heroes(s)
    if cmp is not None:
        o = cmp.other.summary
        delta = _delta(s, o)
        cls = "flat" if not delta else ("up" if delta > 0 else "down")
        dtext = "–" if delta is None else f"{delta:+.2f} pts"
        parts.append(f'<div class="hero vs"><div class="label">compared with</div><div class="name">{e(names[1])}</div>'
                     f'<div class="mid">{pct(o["ex"])}</div><div class="delta {cls}">{dtext}</div>'
                     f'<div class="sub"><span class="up">{len(cmp.fixed)} wrong → right</span> · '
                     f'<span class="down">{len(cmp.broken)} right → wrong</span></div></div>')  # fmt: skip
    counts = run.category_counts()
    tiles = "".join(
        f'<div class="tile" style="border-top-color:{CATEGORIES[k][1]}"><b>{counts[k]}</b>{e(CATEGORIES[k][0])}</div>'
        for k in CATEGORIES if counts[k] or k in ("correct", "wrong")
    )
    parts.append(f'<div class="tiles">{tiles}</div>')
    return f'<section class="headline">{"".join(parts)}</section>'


def _spider_heroes(s: dict) -> list[str]:
    """Exact match and test-suite EX beside EX, when the run has them."""
    out = []
    em, ts = s.get("exact_match"), s.get("test_suite")
    if em is not None:
        sub = f"<b>{em['correct']}</b> of {em['scored']} questions · Spider's exact-set-match (values ignored)"
        out.append(f'<div class="hero"><div class="label">Exact match</div><div class="mid">{pct(em["em"])}</div>'
                   f'<div class="sub">{sub}</div></div>')  # fmt: skip
    if ts is not None:
        sub = (f"<b>{ts['correct']}</b> of {ts['count']} right on every database of {ts['suites']} suites "
               f"({ts['databases']} databases)")  # fmt: skip
        out.append(f'<div class="hero"><div class="label">Test-suite EX</div><div class="mid">{pct(ts["ex"])}</div>'
                   f'<div class="sub">{sub}</div></div>')  # fmt: skip
    return out


def _spider(run: RunData) -> str:
    """EX, test-suite EX and EM by hardness, and the official component table."""
    s = run.summary
    em, ts = s.get("exact_match"), s.get("test_suite")
    if em is None and ts is None:
        return ""
    series = ([("EX", RUN_COLOUR)] if s.get("etype") != "match" else []) + ([("test-suite EX", "#1a7f37")] if ts else []) \
        + ([("EM", "#8250df")] if em else [])  # fmt: skip
    keys = {"EX": "ex", "test-suite EX": "ts_ex", "EM": "em"}
    rows = []
    total = {"ex": s["ex"], "ts_ex": s.get("ts_ex"), "em": s.get("em")}
    for name, g in [*s["by_difficulty"].items(), ("total", total)]:
        rows.append((name, [(g.get(keys[label]), pct(g.get(keys[label]), 1)) for label, _ in series]))
    chart = charts.hbars(rows, series, f"Accuracy by {s.get('difficulty_kind', 'difficulty')}")
    blocks = [f"<div><h3>EX, test-suite EX and exact match</h3>{chart}</div>"]
    if em is not None:
        levels = [lv for lv in ("easy", "medium", "hard", "extra", "all") if lv in em["by_hardness"]]
        head = "<th>component (F1)</th>" + "".join(f"<th>{e(lv)}</th>" for lv in levels)
        by = em["by_hardness"]
        counts = "".join(f'<td class="n">{by[lv]["count"]}</td>' for lv in levels)
        exact = "".join(f'<td class="n"><b>{by[lv]["exact"]:.3f}</b></td>' for lv in levels)
        body = [f"<tr><td>count</td>{counts}</tr>", f"<tr><td><b>exact match</b></td>{exact}</tr>"]
        for comp in em["components"]:
            cells = "".join(
                f'<td class="n" title="acc {em["by_hardness"][lv]["components"][comp]["acc"]:.3f} · '
                f'rec {em["by_hardness"][lv]["components"][comp]["rec"]:.3f}">'
                f'{em["by_hardness"][lv]["components"][comp]["f1"]:.3f}</td>'
                for lv in levels
            )
            body.append(f"<tr><td>{e(comp)}</td>{cells}</tr>")
        notes = [f"{em['unparsed_predictions']} predictions the Spider parser cannot read (scored as empty queries)"] \
            if em.get("unparsed_predictions") else []  # fmt: skip
        if em.get("not_scored"):
            notes.append(f"{em['not_scored']} questions without EM (gold not parsable or no schema)")
        note = f'<p class="muted">{e(" · ".join(notes))}</p>' if notes else ""
        blocks.append(f'<div><h3>Exact-set-match components by hardness</h3>{note}<table class="data"><thead><tr>{head}'
                      f'</tr></thead><tbody>{"".join(body)}</tbody></table>'
                      '<p class="muted">Official rules: values and DISTINCT ignored, components compared as sets, '
                      'columns unified along foreign keys. Hover a cell for accuracy and recall.</p></div>')  # fmt: skip
    parts = [f'<div class="grid">{"".join(blocks)}</div>']
    if ts is not None:
        how = ("gold values plugged into the prediction" if ts["plug_value"] else "values as predicted") + \
            (", DISTINCT kept" if ts["keep_distinct"] else ", DISTINCT removed from both queries")  # fmt: skip
        parts.append(f'<p>Test suites from <code>{e(ts["dir"])}</code> ({e(how)}): '
                     f'<b>{ts["correct_on_one_wrong_on_suite"]}</b> predictions right on the original database are wrong '
                     f'on the suite; {ts["not_computed"]} comparisons not computed (permutation cap), '
                     f'{ts["gold_errors"]} golds fail on a suite database.</p>')  # fmt: skip
    return f'<section id="spider"><h2>Spider\'s own metrics</h2>{"".join(parts)}</section>'


def _spider_cell(r: dict) -> str:
    """A question's exact-match and test-suite verdicts, for its verdict cell."""
    parts = []
    if "exact_match" in r:
        if r["exact_match"] is None:
            parts.append(f"EM – ({e(r.get('match_error'))})")
        else:
            why = ", ".join(r.get("match_failed") or [])
            parts.append(("EM ✓" if r["exact_match"] else "EM ✗" + (f" ({e(why)})" if why else ""))
                         + (f" · {e(r['match_error'])}" if r.get("match_error") else ""))  # fmt: skip
    if "ts_correct" in r:
        parts.append(f"test suite {'✓' if r['ts_correct'] else '✗'} {r.get('ts_agreed')}/{r.get('ts_databases')} databases"
                     + (" (values plugged)" if r.get("ts_plugged") else ""))  # fmt: skip
    return f'<div class="spider">{"<br>".join(parts)}</div>' if parts else ""


def _delta(s: dict, o: dict) -> float | None:
    """Accuracy difference in points, from the counts (no rounding drift)."""
    if s.get("ex") is None or o.get("ex") is None:
        return None
    if s.get("scored") and o.get("scored") and "correct" in s and "correct" in o:
        return round(100 * (s["correct"] / s["scored"] - o["correct"] / o["scored"]), 2)
    return s["ex"] - o["ex"]


def _accuracy(run: RunData, cmp: Comparison | None, names: tuple[str, str | None]) -> str:
    s = run.summary
    o = cmp.other.summary if cmp else None
    kind = s.get("difficulty_kind", "difficulty")
    rows = []
    groups = [*s["by_difficulty"].items(), ("total", {"ex": s["ex"], "correct": s.get("correct"), "count": s.get("scored")})]
    for name, g in groups:
        vals = [(g["ex"], f'{pct(g["ex"], 1)} · {g["correct"]}/{g["count"]}')]
        if o is not None:
            og = o["by_difficulty"].get(name, {}) if name != "total" else {"ex": o["ex"], "correct": o.get("correct"), "count": o.get("scored")}
            vals.append((og.get("ex"), f'{pct(og.get("ex"), 1)} · {og.get("correct", "–")}/{og.get("count", "–")}'))
        rows.append((name, vals))
    series = [(names[0], RUN_COLOUR)] + ([(names[1], OTHER_COLOUR)] if cmp else [])
    chart = charts.hbars(rows, series, f"Execution accuracy by {kind}")
    head = "<th>database</th><th>questions</th><th>correct</th><th>EX</th>"
    if o is not None:
        head += f"<th>EX {e(names[1])}</th><th>Δ</th>"
    body = []
    for db, g in s["by_database"].items():
        bar = f'<div class="bar"><span style="width:{g["ex"] or 0:.1f}%"></span></div>'
        cells = f'<td>{e(db)}</td><td class="n">{g["questions"]}</td><td class="n">{g["correct"]}</td><td class="n">{pct(g["ex"], 1)}{bar}</td>'
        if o is not None:
            og = o["by_database"].get(db, {})
            d = None if g["ex"] is None or og.get("ex") is None else g["ex"] - og["ex"]
            cls = "" if not d else ("up" if d > 0 else "down")
            cells += f'<td class="n">{pct(og.get("ex"), 1)}</td><td class="n {cls}">{"–" if d is None else f"{d:+.1f}"}</td>'
        body.append(f"<tr>{cells}</tr>")
    table = f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    return (f'<section><h2>Accuracy</h2><div class="grid"><div><h3>By {e(kind)}</h3>{chart}</div>'
            f'<div><h3>By database</h3>{table}</div></div></section>')  # fmt: skip


def _errors(run: RunData, cmp: Comparison | None, names: tuple[str, str | None]) -> str:
    counts = run.category_counts()
    other = cmp.other.category_counts() if cmp else None
    total = len(run.records) or 1
    segs = "".join(
        f'<span style="width:{100 * counts[k] / total:.3f}%;background:{CATEGORIES[k][1]}" '
        f'title="{e(CATEGORIES[k][0])}: {counts[k]}"></span>'
        for k in CATEGORIES if counts[k]
    )
    head = "<th>category</th><th>questions</th><th>share</th>"
    if other is not None:
        head += f"<th>{e(names[1])}</th><th>Δ</th>"
    head += "<th>meaning</th>"
    body = []
    for k, (label, colour, meaning) in CATEGORIES.items():
        if not counts[k] and not (other and other[k]):
            continue
        cells = (f'<td><span class="dot" style="background:{colour}"></span>{e(label)}</td>'
                 f'<td class="n">{counts[k]}</td><td class="n">{100 * counts[k] / total:.1f}%</td>')  # fmt: skip
        if other is not None:
            d = counts[k] - other[k]
            good = (d > 0) == (k == "correct")
            cells += f'<td class="n">{other[k]}</td><td class="n {"" if not d else ("up" if good else "down")}">{d:+d}</td>'
        cells += f'<td class="muted">{e(meaning)}</td>'
        body.append(f"<tr>{cells}</tr>")
    return (f'<section><h2>Outcomes and errors</h2><div class="stack" role="img" '
            f'aria-label="share of questions per outcome">{segs}</div>'
            f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></section>')  # fmt: skip


GUIDED_ROWS = (  # (summary["guided"] key, label, whether more is better)
    ("questions", "predictions made with guidance", None),
    ("constrained", "generated under a grammar (--constrain)", None),
    ("grammar_ok", "answers that follow their grammar", True),
    ("selected", "chosen among samples (--select)", None),
    ("refined", "revised after seeing their execution (--refine)", None),
    ("rounds", "revision rounds, in all", None),
    ("refined_correct", "revised and correct", True),
    ("valid", "final SQL compiles", True),
    ("failed_to_run_before", "failed to run: first answer", False),
    ("failed_to_run_after", "failed to run: final answer", False),
    ("empty_before", "0 rows: first answer", False),
    ("empty_after", "0 rows: final answer", False),
)


def _guided(run: RunData, cmp: Comparison | None, names: tuple[str, str | None]) -> str:
    """Execution-guided inference: how the predictions were produced (predict --select / --refine)."""
    g = run.summary.get("guided")
    o = cmp.other.summary.get("guided") if cmp is not None else None
    if not g and not o:
        return ""
    g, o = g or {}, (o or {}) if cmp is not None else None
    head = f"<th></th><th>{e(names[0])}</th>" + (f"<th>{e(names[1])}</th><th>Δ</th>" if o is not None else "")
    body = []
    for key, label, better in GUIDED_ROWS:
        a = g.get(key, 0 if g else None)
        cells = f'<td>{e(label)}</td><td class="n">{"–" if a is None else a}</td>'
        if o is not None:
            b = o.get(key, 0 if o else None)
            d = None if a is None or b is None else a - b
            cls = "" if not d or better is None else ("up" if (d > 0) == better else "down")
            cells += f'<td class="n">{"–" if b is None else b}</td><td class="n {cls}">{"–" if d is None else f"{d:+d}"}</td>'
        body.append(f"<tr>{cells}</tr>")
    by = ", ".join(f"{e(k)} {v}" for k, v in g.get("selected_by", {}).items())
    notes = [f"selected by {by}"] if by else []
    if cmp is not None:
        mine = {r["id"]: r for r in run.records}
        fixed_refined = sum(bool(mine[q].get("refined_rounds")) for q in cmp.fixed)
        notes.append(f"{fixed_refined} of the {len(cmp.fixed)} questions wrong → right were revised in {e(names[0])}")
    note = f'<p class="muted">{" · ".join(notes)}. Execution statuses as predict saw them (its --vote-timeout).</p>'
    return (f'<section id="guided"><h2>Execution-guided inference</h2>{note}'
            f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></section>')  # fmt: skip


def _guided_cell(r: dict) -> str:
    """A question's selection and revisions, for its verdict cell."""
    parts = []
    if r.get("selected_by"):
        parts.append(f"selected by {e(r['selected_by'])}")
    if r.get("refined_rounds"):
        path = " → ".join(e(x.get("status")) for x in r.get("rounds") or [] if isinstance(x, dict))
        parts.append(f"revised {r['refined_rounds']}×" + (f" ({path})" if path else ""))
    if not parts:
        return ""
    return f'<div class="guided">{" · ".join(parts)}</div>'


def _rounds_html(r: dict) -> str:
    rounds = [x for x in r.get("rounds") or [] if isinstance(x, dict)]
    if len(rounds) < 2:
        return ""
    items = "".join(
        f'<li><span class="muted">round {i}: {e(x.get("status"))}'
        f'{" · " + e(x.get("rows")) + " rows" if x.get("rows") is not None else ""}'
        f'{" · " + e(_short(x.get("error"), 120)) if x.get("error") else ""}</span><pre>{e(x.get("sql"))}</pre></li>'
        for i, x in enumerate(rounds)
    )
    return f'<details class="rounds"><summary>{len(rounds)} rounds</summary><ol start="0">{items}</ol></details>'


def _latency(run: RunData, latencies: dict[str, float]) -> str:
    if latencies:
        values = latencies
        what = "Prediction latency (seconds the model took per question, from the predictions file)"
    else:
        values = {r["id"]: r["pred_elapsed"] for r in run.records if isinstance(r.get("pred_elapsed"), (int, float))}
        what = "Execution time of the predicted SQL (the predictions carry no latency)"
    if not values:
        return f'<section><h2>Latency</h2><p class="muted">{e(what)}: no timings in this run.</p></section>'
    v = sorted(values.values())
    p90 = v[min(len(v) - 1, int(0.9 * len(v)))]
    stats = [("questions", str(len(v))), ("median", charts.fmt_seconds(statistics.median(v))),
             ("p90", charts.fmt_seconds(p90)), ("max", charts.fmt_seconds(v[-1])), ("total", charts.fmt_seconds(sum(v)))]  # fmt: skip
    by_id = {r["id"]: (i, r) for i, r in enumerate(run.records)}
    slow = sorted(values.items(), key=lambda kv: -kv[1])[:3]
    slow_html = "".join(
        f'<li><a href="#q-{by_id[q][0]}">{e(q)}</a> {charts.fmt_seconds(t)} — {e(_short(by_id[q][1].get("question"), 70))}</li>'
        for q, t in slow if q in by_id
    )
    chart = charts.histogram(list(v), what, RUN_COLOUR)
    stat_html = "".join(f"<div><span>{e(k)}</span><b>{e(x)}</b></div>" for k, x in stats)
    return (f'<section><h2>Latency</h2><p class="muted">{e(what)}</p><div class="grid"><div>{chart}</div>'
            f'<div><div class="stats">{stat_html}</div><h3>Slowest</h3><ol class="slow">{slow_html}</ol></div></div></section>')  # fmt: skip


def _training(run: RunData, t: TrainingLog) -> str:
    facts = [f"from <code>{e(t.source)}</code>"]
    if t.global_step is not None:
        facts.append(f"step {t.global_step}" + (f" of {t.max_steps}" if t.max_steps else ""))
    if t.epoch is not None:
        facts.append(f"epoch {t.epoch:.2f}")
    if t.loss:
        facts.append(f"last training loss {t.loss[-1][1]:.4f}")
    if t.accuracy:
        best = max(t.accuracy, key=lambda p: p[1])
        facts.append(f"best in-training accuracy {best[1]:.2f}% at step {charts.fmt_num(best[0])}")
    blocks = []
    if t.loss or t.eval_loss:
        series = [("training loss", RUN_COLOUR, t.loss)] + ([("eval loss", "#e16f24", t.eval_loss)] if t.eval_loss else [])
        blocks.append(f"<div><h3>Loss</h3>{charts.lines(series, 'Training loss by step', 'loss')}</div>")
    else:
        blocks.append('<div><h3>Loss</h3><p class="muted">No entries with "loss" in log_history.</p></div>')
    if t.accuracy:
        refs = [(f"this eval: {pct(run.summary['ex'], 1)}", "#2da44e", run.summary["ex"])] if run.summary["ex"] is not None else []
        chart = charts.lines([("dev execution accuracy", "#2da44e", t.accuracy)], "In-training execution accuracy by step",
                             "execution accuracy %", refs)  # fmt: skip
        blocks.append(f"<div><h3>In-training execution accuracy</h3>{chart}</div>")
    else:
        blocks.append('<div><h3>In-training execution accuracy</h3><p class="muted">'
                      'No "dev_execution_accuracy" entries in log_history.</p></div>')  # fmt: skip
    if t.rewards:  # a GRPO run: the reward and its components by step
        palette = ("#1f2328", "#0969da", "#bf8700", "#8250df", "#cf222e", "#2da44e")
        series = [(name, palette[i % len(palette)], pts) for i, (name, pts) in enumerate(t.rewards.items())]
        last = t.rewards.get("reward")
        if last:
            facts.append(f"mean reward {last[0][1]:.3f} at the first step, {last[-1][1]:.3f} at the last")
        blocks.append(f"<div><h3>Reward</h3>{charts.lines(series, 'GRPO reward by step', 'reward / share')}</div>")
    return (f'<section><h2>Training</h2><p class="muted">{" · ".join(facts)}</p>'
            f'<div class="grid">{"".join(blocks)}</div></section>')  # fmt: skip


def _comparison(run: RunData, cmp: Comparison, names: tuple[str, str | None]) -> str:
    s, o = run.summary, cmp.other.summary
    rows = []
    for name, summ, path, colour in ((names[0], s, run.path, RUN_COLOUR), (names[1], o, cmp.other.path, OTHER_COLOUR)):
        where = f' <code class="muted">{e(path)}</code>' if str(path) != name else ""
        rows.append(f'<tr><td><span class="dot" style="background:{colour}"></span><b>{e(name)}</b>{where}</td>'
                    f'<td class="n">{pct(summ["ex"])}</td>'
                    f'<td class="n">{summ.get("correct")}/{summ.get("scored")}</td><td>{e(summ.get("comparator"))}</td></tr>')  # fmt: skip
    note = ""
    if s.get("comparator") != o.get("comparator"):
        note = (f'<p class="warn">The runs used different comparators ({e(s.get("comparator"))} and '
                f'{e(o.get("comparator"))}); some flips may come from that.</p>')  # fmt: skip
    index = {r["id"]: i for i, r in enumerate(run.records)}
    mine = {r["id"]: r for r in run.records}

    def flips(ids: list[str], title: str, cls: str) -> str:
        if not ids:
            return f'<div><h3 class="{cls}">{e(title)}: 0</h3><p class="muted">none</p></div>'
        items = [
            f'<li><a href="#q-{index[q]}">{e(q)}</a> <span class="muted">{e(mine[q].get("db_id"))}</span> '
            f'{e(mine[q].get("question"))} <span class="was">{_badge(categorize(cmp.other_by_id[q]))} → '
            f'{_badge(categorize(mine[q]))}</span></li>'
            for q in ids
        ]
        shown, rest = (items, []) if len(items) <= FLIPS_SHOWN + 2 else (items[:FLIPS_SHOWN], items[FLIPS_SHOWN:])
        more = (f'<details><summary>{len(rest)} more</summary><ul class="flips">{"".join(rest)}</ul></details>'
                if rest else "")  # fmt: skip
        return f'<div><h3 class="{cls}">{e(title)}: {len(ids)}</h3><ul class="flips">{"".join(shown)}</ul>{more}</div>'

    return (f'<section id="compare"><h2>Compared with {e(names[1])}</h2>{note}'
            f'<table class="data"><thead><tr><th>run</th><th>EX</th><th>correct</th><th>comparator</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>'
            f'<p class="muted">Matched by question id: {cmp.both_right} right in both, {cmp.both_wrong} wrong in both, '
            f'{len(cmp.fixed)} wrong → right, {len(cmp.broken)} right → wrong (net {len(cmp.fixed) - len(cmp.broken):+d}).</p>'
            f'<div class="grid">{flips(cmp.fixed, f"wrong → right (fixed in {names[0]})", "up")}'
            f'{flips(cmp.broken, f"right → wrong (broken in {names[0]})", "down")}</div></section>')  # fmt: skip


def _short(text: object, n: int) -> str:
    t = "" if text is None else " ".join(str(text).split())
    return t if len(t) <= n else t[: n - 1] + "…"


def _preview(rows: object, count: object, status: object, label: str) -> str:
    if not isinstance(rows, list):
        why = "not run" if status is None else str(status)
        return f'<div class="pv"><div class="pvh">{e(label)}: <i>{e(why)}</i></div></div>'
    head = f"{count} row{'s' if count != 1 else ''}" if isinstance(count, int) else f"{len(rows)} rows"
    if isinstance(count, int) and count > len(rows):
        head = f"first {len(rows)} of {count} rows"
    body = "".join(
        "<tr>" + "".join('<td class="null">NULL</td>' if c is None else f"<td>{e(c)}</td>" for c in (r if isinstance(r, list) else [r])) + "</tr>"
        for r in rows
    )
    table = f'<table class="mini"><tbody>{body}</tbody></table>' if rows else ""
    return f'<div class="pv"><div class="pvh">{e(label)} · {e(head)}</div>{table}</div>'


def _questions(run: RunData, cmp: Comparison | None, names: tuple[str, str | None]) -> str:
    counts = run.category_counts()
    opts = [f'<option value="">all questions ({len(run.records)})</option>',
            '<option value="!correct">not correct ({})</option>'.format(len(run.records) - counts["correct"])]  # fmt: skip
    opts += [f'<option value="{k}">{e(CATEGORIES[k][0])} ({counts[k]})</option>' for k in CATEGORIES if counts[k]]
    if cmp is not None:
        opts += [f'<option value="fixed">wrong → right ({len(cmp.fixed)})</option>',
                 f'<option value="broken">right → wrong ({len(cmp.broken)})</option>']  # fmt: skip
    fixed, broken = (set(cmp.fixed), set(cmp.broken)) if cmp else (set(), set())
    rows = []
    for i, r in enumerate(run.records):
        cat = categorize(r)
        flip = "fixed" if r["id"] in fixed else "broken" if r["id"] in broken else ""
        where = " · ".join(e(x) for x in (r.get("db_id"), r.get("difficulty")) if x)
        evidence = f'<div class="evidence">{e(r["evidence"])}</div>' if r.get("evidence") else ""
        pred = r.get("predicted")
        pred_html = f"<pre>{e(pred)}</pre>" if pred is not None else '<span class="muted">no prediction</span>'
        pred_html += _rounds_html(r)
        verdict = _badge(cat) + _guided_cell(r) + _spider_cell(r)
        if r.get("reason"):
            verdict += f'<div class="reason">{e(r["reason"])}</div>'
        if r.get("embedding_distance") is not None:
            verdict += f'<div class="muted">embedding distance {r["embedding_distance"]:.3f}</div>'
        if cmp is not None:
            o = cmp.other_by_id[r["id"]]
            tag = {"fixed": '<span class="flip up">▲ wrong → right</span>',
                   "broken": '<span class="flip down">▼ right → wrong</span>'}.get(flip, "")  # fmt: skip
            verdict += f'<div class="was">{e(names[1])}: {_badge(categorize(o))}</div>{tag}'
        preview = (_preview(r.get("gold_preview"), r.get("gold_rows"), r.get("gold_status"), "gold")
                   + _preview(r.get("pred_preview"), r.get("pred_rows"), r.get("pred_status") or "no prediction", "predicted"))  # fmt: skip
        rows.append(
            f'<tr id="q-{i}" data-cat="{cat}" data-flip="{flip}" class="c-{cat}">'
            f'<td><b>{e(r["id"])}</b><div class="muted">{where}</div></td>'
            f'<td class="question">{e(r.get("question"))}{evidence}</td>'
            f"<td><pre>{e(r.get('gold'))}</pre></td><td>{pred_html}</td><td>{verdict}</td><td>{preview}</td></tr>"
        )
    return (f'<section id="questions"><h2>Questions <span class="muted">({len(run.records)})</span></h2>'
            f'<div id="filters" class="filters" hidden><input id="q" type="search" '
            f'placeholder="Search questions, SQL, ids, databases, messages…" aria-label="search questions">'
            f'<select id="cat" aria-label="filter by outcome">{"".join(opts)}</select><span id="shown" class="muted"></span></div>'
            f'<table class="questions"><colgroup><col class="c-id"><col class="c-q"><col class="c-sql"><col class="c-sql">'
            f'<col class="c-v"><col class="c-pv"></colgroup><thead><tr><th>id</th><th>question</th><th>gold SQL</th>'
            f'<th>predicted SQL</th><th>verdict</th><th>result preview</th></tr></thead><tbody>{"".join(rows)}</tbody></table></section>')  # fmt: skip


CSS = """
:root{--ink:#1f2328;--muted:#656d76;--line:#d0d7de;--soft:#f6f8fa;--up:#1a7f37;--down:#cf222e;--run:#0969da}
*{box-sizing:border-box}
body{margin:0;color:var(--ink);background:#fff;font:14px/1.45 -apple-system,BlinkMacSystemFont,"Segoe UI",Helvetica,Arial,sans-serif}
.wrap,main{max-width:1360px;margin:0 auto;padding:0 28px}
header{background:#0d1117;color:#e6edf3;padding:18px 0 16px}
header code{color:#e6edf3}
.kicker{text-transform:uppercase;letter-spacing:.08em;font-size:11px;color:#9198a1}
h1{margin:2px 0 4px;font-size:22px;word-break:break-all}
.meta{color:#9198a1;font-size:13px}
h2{font-size:18px;margin:0 0 12px;padding-bottom:6px;border-bottom:1px solid var(--line)}
h3{font-size:14px;margin:4px 0 8px}
section{margin:28px 0}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
.muted{color:var(--muted)}
.up{color:var(--up)}.down{color:var(--down)}
.headline{display:flex;flex-wrap:wrap;align-items:stretch;gap:20px;margin-top:22px}
.hero{padding:14px 22px;border:1px solid var(--line);border-radius:10px;background:var(--soft);min-width:260px}
.hero .label{font-size:13px;color:var(--muted);text-transform:uppercase;letter-spacing:.05em}
.hero .big{font-size:60px;font-weight:700;line-height:1.05;color:var(--run)}
.hero .mid{font-size:40px;font-weight:700;line-height:1.1;color:#8250df}
.hero .name{font-weight:600;word-break:break-all}
.hero .sub{color:var(--muted);margin-top:4px}
.delta{font-size:20px;font-weight:700}.delta.flat{color:var(--muted)}
.tiles{display:flex;flex-wrap:wrap;gap:10px;align-content:center;flex:1}
.tile{border:1px solid var(--line);border-top:4px solid;border-radius:8px;padding:8px 14px;min-width:110px;color:var(--muted);font-size:13px}
.tile b{display:block;font-size:26px;color:var(--ink);line-height:1.1}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:28px}
.chart{max-width:100%;height:auto;display:block}
table.data{border-collapse:collapse;width:100%}
table.data th,table.data td{padding:4px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:middle}
table.data th{font-size:12px;color:var(--muted);font-weight:600}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.bar{display:inline-block;width:90px;height:8px;background:#eaeef2;border-radius:4px;margin-left:8px;vertical-align:middle}
.bar span{display:block;height:100%;background:var(--run);border-radius:4px}
.dot{display:inline-block;width:10px;height:10px;border-radius:50%;margin-right:6px;vertical-align:-1px}
.stack{display:flex;height:22px;border-radius:6px;overflow:hidden;margin:4px 0 14px;background:#eaeef2}
.stack span{display:block;height:100%}
.stats{display:flex;gap:22px;flex-wrap:wrap;margin:8px 0 14px}
.stats span{display:block;font-size:12px;color:var(--muted)}.stats b{font-size:20px}
.slow{padding-left:20px;margin:0}
.warn{background:#fff8c5;border:1px solid #d4a72c;padding:6px 10px;border-radius:6px}
.flips{padding-left:18px;margin:0}.flips li{margin:4px 0}
details summary{cursor:pointer;color:var(--run);margin:6px 0 0 18px}
.badge{display:inline-block;color:#fff;border-radius:10px;padding:0 8px;font-size:12px;font-weight:600;white-space:nowrap}
.badge.light{color:var(--ink)}
.reason{font-size:12px;color:var(--muted);margin-top:4px;word-break:break-word}
.was{font-size:12px;color:var(--muted);margin-top:4px}
.guided{font-size:12px;color:#8250df;margin-top:4px}
.spider{font-size:12px;color:var(--muted);margin-top:4px}
.rounds ol{padding-left:18px;margin:4px 0}.rounds li{margin:4px 0}
.flip{display:inline-block;font-size:12px;font-weight:700;margin-top:4px}
.filters{display:flex;gap:10px;align-items:center;margin:0 0 10px}
.filters input{flex:0 1 420px;padding:6px 10px;border:1px solid var(--line);border-radius:6px;font:inherit}
.filters select{padding:6px;border:1px solid var(--line);border-radius:6px;font:inherit}
table.questions{border-collapse:collapse;width:100%;table-layout:fixed}
table.questions th{position:sticky;top:0;background:var(--soft);text-align:left;font-size:12px;color:var(--muted);padding:6px 8px;border-bottom:1px solid var(--line)}
table.questions>tbody>tr>td{padding:8px;border-bottom:1px solid var(--line);vertical-align:top;word-wrap:break-word}
table.questions>tbody>tr.c-correct>td:first-child{box-shadow:inset 3px 0 #2da44e}
table.questions>tbody>tr:not(.c-correct)>td:first-child{box-shadow:inset 3px 0 #cf222e}
col.c-id{width:120px}col.c-q{width:20%}col.c-sql{width:20%}col.c-v{width:13%}
pre{margin:0;white-space:pre-wrap;word-break:break-word;background:var(--soft);padding:6px 8px;border-radius:6px}
.evidence{font-size:12px;color:var(--muted);margin-top:4px}
.evidence:before{content:"evidence: ";font-weight:600}
.pv{margin-bottom:6px}.pvh{font-size:11px;color:var(--muted)}
table.mini{border-collapse:collapse;font-size:12px;margin-top:2px;max-width:100%}
table.mini td{border:1px solid var(--line);padding:1px 5px;word-break:break-word}
td.null{color:var(--muted);font-style:italic}
footer{color:var(--muted);font-size:12px;border-top:1px solid var(--line);padding:14px 0 30px}
"""

JS = """
(function(){var f=document.getElementById('filters');if(!f)return;f.hidden=false;
var q=document.getElementById('q'),c=document.getElementById('cat'),n=document.getElementById('shown');
var rows=[].slice.call(document.querySelectorAll('table.questions>tbody>tr'));
var text=rows.map(function(r){return r.textContent.toLowerCase();});
function run(){var t=q.value.toLowerCase().trim(),k=c.value,shown=0;
rows.forEach(function(r,i){var d=r.dataset,ok=!k||(k==='!correct'?d.cat!=='correct':d.cat===k||d.flip===k);
ok=ok&&(!t||text[i].indexOf(t)>=0);r.hidden=!ok;if(ok)shown++;});
n.textContent=shown+' of '+rows.length+' shown';}
q.addEventListener('input',run);c.addEventListener('change',run);run();})();
"""


def render(run: RunData, cmp: Comparison | None = None, training: TrainingLog | None = None,
           latencies: dict[str, float] | None = None) -> str:  # fmt: skip
    """The whole page as one string."""
    names = _names(run, cmp)
    title = f"{pct(run.summary['ex'])} EX · {names[0]}"
    parts = [_headline(run, cmp, names), _accuracy(run, cmp, names), _spider(run), _errors(run, cmp, names)]
    if cmp is not None:
        parts.append(_comparison(run, cmp, names))
    parts.append(_guided(run, cmp, names))
    parts.append(_latency(run, latencies or {}))
    if training is not None:
        parts.append(_training(run, training))
    parts.append(_questions(run, cmp, names))
    env = run.summary.get("environment", {})
    footer = (f'<footer>Written by sqlwright {e(env.get("sqlwright", ""))} from <code>{e(run.path)}</code> '
              "(summary.json, examples.jsonl, config.json). A static page: it needs no network; "
              "the question filter uses a few lines of JavaScript and everything reads without it.</footer>")  # fmt: skip
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{e(title)}</title><style>{CSS}</style></head><body>{_header(run, names[0])}"
            f'<main>{"".join(parts)}{footer}</main><script>{JS}</script></body></html>\n')  # fmt: skip
