"""Hand-written on purpose: a few escaped SVG shapes keep the report one offline file, no plotting library.

Small inline SVG charts (no JavaScript, no network): grouped bars, a histogram, lines.

Each function returns an ``<svg>`` element as text; every label is escaped here.
"""

from __future__ import annotations

import math
from html import escape

FONT = 'font-family="inherit" font-size="12"'
AXIS = "#8c959f"
GRID = "#eaeef2"
INK = "#1f2328"
MUTED = "#656d76"


def _svg(width: int, height: int, title: str, body: list[str]) -> str:
    return (f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>{"".join(body)}</svg>')  # fmt: skip


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi]."""
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    v = start
    while v < hi + step * 0.999:
        ticks.append(round(v, 10))
        v += step
    return ticks


def fmt_num(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def fmt_seconds(v: float) -> str:
    if v == 0:
        return "0"
    if v < 1e-3:
        return f"{v * 1e6:.0f} µs"
    if v < 1:
        return f"{v * 1e3:.3g} ms"
    if v < 120:
        return f"{v:.3g} s"
    return f"{v / 60:.3g} min"


def hbars(rows: list[tuple[str, list[tuple[float | None, str]]]], series: list[tuple[str, str]],
          title: str, width: int = 560) -> str:  # fmt: skip
    """Horizontal bars on a 0-100 scale: one group per row, one bar per series.

    ``rows``: (label, [(percent or None, caption), ...]); ``series``: (name, colour)."""
    label_w, cap_w, bar_h, gap = 110, 120, 16, 10
    plot_w = width - label_w - cap_w
    group_h = bar_h * len(series) + gap
    top = 22 if len(series) > 1 else 8
    height = top + group_h * len(rows) + 22
    body = []
    if len(series) > 1:
        x = label_w
        for name, colour in series:
            body.append(f'<rect x="{x}" y="4" width="10" height="10" fill="{colour}"/>'
                        f'<text x="{x + 14}" y="13" {FONT} fill="{INK}">{escape(name)}</text>')  # fmt: skip
            x += 24 + 7 * len(name)
    bottom = top + group_h * len(rows)
    for t in (0, 25, 50, 75, 100):
        x = label_w + plot_w * t / 100
        body.append(f'<line x1="{x:.1f}" y1="{top - 2}" x2="{x:.1f}" y2="{bottom}" stroke="{GRID}"/>'
                    f'<text x="{x:.1f}" y="{bottom + 14}" {FONT} fill="{MUTED}" text-anchor="middle">{t}%</text>')  # fmt: skip
    for i, (label, values) in enumerate(rows):
        y0 = top + i * group_h
        body.append(f'<text x="{label_w - 8}" y="{y0 + group_h / 2 - gap / 2 + 4:.1f}" {FONT} fill="{INK}" '
                    f'text-anchor="end" font-weight="600">{escape(label)}</text>')  # fmt: skip
        for j, ((pct, caption), (_, colour)) in enumerate(zip(values, series, strict=True)):
            y = y0 + j * bar_h
            w = plot_w * max(0.0, min(100.0, pct or 0.0)) / 100
            body.append(f'<rect x="{label_w}" y="{y + 1}" width="{w:.1f}" height="{bar_h - 3}" rx="2" fill="{colour}"/>')
            body.append(f'<text x="{label_w + plot_w + 6}" y="{y + bar_h - 4}" {FONT} fill="{INK}">{escape(caption)}</text>')
    body.append(f'<line x1="{label_w}" y1="{top - 2}" x2="{label_w}" y2="{bottom}" stroke="{AXIS}"/>')
    return _svg(width, height, title, body)


def histogram(values: list[float], title: str, colour: str = "#0969da", width: int = 560, height: int = 220) -> str:
    """Counts of ``values`` (seconds) in bins; a log axis when they span more than 20x."""
    vals = sorted(v for v in values if v >= 0)
    positive = [v for v in vals if v > 0] or [1e-6]
    lo, hi = positive[0], positive[-1]
    log = hi / lo > 20
    nbins = max(6, min(30, int(math.sqrt(len(vals)) * 2)))
    if log:
        a, b = math.log10(lo), math.log10(hi)
        edges = [10 ** (a + (b - a) * i / nbins) for i in range(nbins + 1)]
    else:
        lo, hi = 0.0, hi if hi > 0 else 1.0
        edges = [hi * i / nbins for i in range(nbins + 1)]
    counts = [0] * nbins
    for v in vals:
        k = 0 if v <= edges[0] else min(nbins - 1, next((i for i in range(nbins) if v <= edges[i + 1]), nbins - 1))
        counts[k] += 1
    left, right, top, bottom = 44, 12, 10, 36
    pw, ph = width - left - right, height - top - bottom
    ymax_ticks = nice_ticks(0, max(counts) or 1, 4)
    ymax = ymax_ticks[-1] or 1

    def xpos(v: float) -> float:
        if log:
            return left + pw * (math.log10(max(v, edges[0])) - math.log10(edges[0])) / (math.log10(edges[-1]) - math.log10(edges[0]) or 1)
        return left + pw * (v - edges[0]) / ((edges[-1] - edges[0]) or 1)

    body = []
    for t in ymax_ticks:
        y = top + ph - ph * t / ymax
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="{GRID}"/>'
                    f'<text x="{left - 6}" y="{y + 4:.1f}" {FONT} fill="{MUTED}" text-anchor="end">{fmt_num(t)}</text>')  # fmt: skip
    for i, c in enumerate(counts):
        if not c:
            continue
        x0, x1 = xpos(edges[i]), xpos(edges[i + 1])
        h = ph * c / ymax
        body.append(f'<rect x="{x0 + 0.5:.1f}" y="{top + ph - h:.1f}" width="{max(1.0, x1 - x0 - 1):.1f}" height="{h:.1f}" '
                    f'fill="{colour}"><title>{c} between {fmt_seconds(edges[i])} and {fmt_seconds(edges[i + 1])}</title></rect>')  # fmt: skip
    if log:
        ticks = [m * 10**k for k in range(math.floor(math.log10(edges[0])), math.ceil(math.log10(edges[-1])) + 1)
                 for m in (1, 2, 5) if edges[0] <= m * 10**k <= edges[-1]]  # fmt: skip
        while len(ticks) > 7:
            ticks = ticks[::2]
    else:
        ticks = [t for t in nice_ticks(0, edges[-1], 5) if t <= edges[-1]]
    for t in ticks:
        x = xpos(t)
        body.append(f'<line x1="{x:.1f}" y1="{top + ph}" x2="{x:.1f}" y2="{top + ph + 4}" stroke="{AXIS}"/>'
                    f'<text x="{x:.1f}" y="{top + ph + 17}" {FONT} fill="{MUTED}" text-anchor="middle">{fmt_seconds(t)}</text>')  # fmt: skip
    body.append(f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="{AXIS}"/>')
    body.append(f'<text x="{left + pw / 2}" y="{height - 3}" {FONT} fill="{MUTED}" text-anchor="middle">'
                f'seconds{" (log scale)" if log else ""} · questions per bin</text>')  # fmt: skip
    return _svg(width, height, title, body)


def lines(series: list[tuple[str, str, list[tuple[float, float]]]], title: str, y_label: str,
          refs: list[tuple[str, str, float]] = (), y_floor_zero: bool = True, width: int = 560, height: int = 240) -> str:  # fmt: skip
    """Line chart over training steps. ``series``: (name, colour, [(step, value)]);
    ``refs``: horizontal reference lines (name, colour, value)."""
    pts = [p for _, _, s in series for p in s]
    xs = [x for x, _ in pts] or [0.0, 1.0]
    ys = [y for _, y in pts] + [v for _, _, v in refs]
    x_lo, x_hi = min(xs), max(xs)
    if x_hi == x_lo:
        x_lo, x_hi = x_lo - 1, x_hi + 1
    y_lo = 0.0 if y_floor_zero else min(ys)
    yt = nice_ticks(y_lo, max(ys) if ys else 1.0, 4)
    y_lo, y_hi = yt[0], yt[-1]
    left, right, top, bottom = 48, 14, 26, 34
    pw, ph = width - left - right, height - top - bottom

    def pos(x: float, y: float) -> tuple[float, float]:
        return left + pw * (x - x_lo) / (x_hi - x_lo), top + ph - ph * (y - y_lo) / ((y_hi - y_lo) or 1)

    body = []
    for t in yt:
        _, y = pos(x_lo, t)
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="{GRID}"/>'
                    f'<text x="{left - 6}" y="{y + 4:.1f}" {FONT} fill="{MUTED}" text-anchor="end">{fmt_num(t)}</text>')  # fmt: skip
    for t in nice_ticks(x_lo, x_hi, 5):
        if x_lo <= t <= x_hi:
            x, _ = pos(t, y_lo)
            body.append(f'<text x="{x:.1f}" y="{top + ph + 16}" {FONT} fill="{MUTED}" text-anchor="middle">{fmt_num(t)}</text>')
    body.append(f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="{AXIS}"/>'
                f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="{AXIS}"/>'
                f'<text x="{left + pw / 2}" y="{height - 3}" {FONT} fill="{MUTED}" text-anchor="middle">step</text>'
                f'<text x="{left}" y="14" {FONT} fill="{MUTED}">{escape(y_label)}</text>')  # fmt: skip
    for name, colour, value in refs:
        _, y = pos(x_lo, value)
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="{colour}" stroke-dasharray="5 4"/>'
                    f'<text x="{left + pw - 4}" y="{y - 5:.1f}" {FONT} fill="{colour}" text-anchor="end">{escape(name)}</text>')  # fmt: skip
    lx = left + 150
    for name, colour, points in series:
        if not points:
            continue
        xy = [pos(x, y) for x, y in sorted(points)]
        body.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" stroke-linejoin="round" '
                    f'points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in xy)}"/>')  # fmt: skip
        if len(points) <= 40:
            body.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>' for x, y in xy)
        body.append(f'<rect x="{lx}" y="5" width="10" height="10" fill="{colour}"/>'
                    f'<text x="{lx + 14}" y="14" {FONT} fill="{INK}">{escape(name)}</text>')  # fmt: skip
        lx += 30 + 7 * len(name)
    return _svg(width, height, title, body)
