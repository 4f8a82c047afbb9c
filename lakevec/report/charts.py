"""Inline SVG charts of the aggregate's per-day series (no script, no library).

Every mark carries its numbers as ``data-*`` attributes (and a ``<title>``
tooltip), taken from the aggregate as they are, so a test can read the chart
and compare it with ``lakevec report --json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from html import escape
from typing import Any

from lakevec.report.fmt import interval, pct

__all__ = ["rate_chart", "runs_chart"]

LEFT, RIGHT, TOP, BOTTOM = 52, 14, 12, 30
MAX_X_LABELS = 8


class _Box:
    """Size of one chart's viewBox and of its plot area."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.plot_w, self.plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM


#: The runs chart spans the page; the two rate charts share a row.
WIDE, HALF = _Box(1100, 200), _Box(560, 230)


def _days(per_day: Sequence[dict[str, Any]]) -> list[str]:
    """Every calendar day from the first to the last day with runs."""
    if not per_day:
        return []
    first, last = date.fromisoformat(per_day[0]["day"]), date.fromisoformat(per_day[-1]["day"])
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def _nice_max(value: int) -> int:
    """The smallest 1, 1.5, 2, 3, 4, 5, 6 or 8 × 10^k at or above ``value`` (at least 1)."""
    step = 1
    while True:
        for factor in (1, 1.5, 2, 3, 4, 5, 6, 8):
            if step * factor >= value and float(step * factor).is_integer():
                return int(step * factor)
        step *= 10


def _frame(box: _Box, label: str, y_ticks: list[tuple[float, str]], days: list[str],
           body: list[str]) -> str:
    out = [
        f'<svg class="chart" viewBox="0 0 {box.width} {box.height}" role="img" '
        f'aria-label="{escape(label)}" preserveAspectRatio="xMidYMid meet">'
    ]
    for frac, text in y_ticks:
        y = TOP + box.plot_h * (1 - frac)
        out.append(f'<line class="grid" x1="{LEFT}" x2="{box.width - RIGHT}" y1="{y:.1f}" '
                   f'y2="{y:.1f}"/><text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" '
                   f'text-anchor="end">{escape(text)}</text>')
    if days:
        step = max(1, -(-len(days) // MAX_X_LABELS))
        slot = box.plot_w / len(days)
        cut = 5 if days[0][:4] == days[-1][:4] else 0  # MM-DD within one year
        for i in range(0, len(days), step):
            x = LEFT + slot * (i + 0.5)
            out.append(f'<text class="tick" x="{x:.1f}" y="{box.height - 10}" '
                       f'text-anchor="middle">{days[i][cut:]}</text>')
    out.extend(body)
    out.append("</svg>")
    return "".join(out)


def runs_chart(per_day: Sequence[dict[str, Any]]) -> str:
    """Runs per day, stacked: passed below, failed above; a bar per day with runs."""
    days, box = _days(per_day), WIDE
    top = _nice_max(max((d["runs"] for d in per_day), default=1))
    slot = box.plot_w / max(1, len(days))
    width = max(1.0, slot * 0.8)
    position = {day: i for i, day in enumerate(days)}
    body: list[str] = []
    for d in per_day:
        x = LEFT + slot * position[d["day"]] + (slot - width) / 2
        passed_h = box.plot_h * d["passed"] / top
        failed_h = box.plot_h * (d["runs"] - d["passed"]) / top
        base = TOP + box.plot_h
        body.append(
            f'<g class="day" data-day="{d["day"]}" data-runs="{d["runs"]}" '
            f'data-passed="{d["passed"]}" tabindex="0">'
            f'<title>{d["day"]}: {d["runs"]:,} runs, {d["passed"]:,} passed</title>'
            f'<rect class="hit" x="{LEFT + slot * position[d["day"]]:.2f}" y="{TOP}" '
            f'width="{slot:.2f}" height="{box.plot_h}"/>'
            f'<rect class="ok" x="{x:.2f}" y="{base - passed_h:.2f}" width="{width:.2f}" '
            f'height="{passed_h:.2f}"/>'
            f'<rect class="bad" x="{x:.2f}" y="{base - passed_h - failed_h:.2f}" '
            f'width="{width:.2f}" height="{failed_h:.2f}"/></g>'
        )
    ticks = [(0.0, "0"), (0.5, f"{top / 2:g}"), (1.0, f"{top:,}")]
    return _frame(box, "runs per day", ticks, days, body)


def rate_chart(per_day: Sequence[dict[str, Any]], key: str, label: str) -> str:
    """``key``'s rate per day (``pass`` or ``escalation``): a point, the Wilson 95 %
    interval as a whisker, and a line through the points."""
    days, box = _days(per_day), HALF
    slot = box.plot_w / max(1, len(days))
    position = {day: i for i, day in enumerate(days)}
    points: list[str] = []
    body: list[str] = []
    radius = min(3.5, max(1.5, slot / 3))
    for d in per_day:
        rate, ci = d[f"{key}_rate"], d[f"{key}_ci"]
        if rate is None or ci is None:
            continue
        x = LEFT + slot * (position[d["day"]] + 0.5)
        y, lo, hi = (TOP + box.plot_h * (1 - v) for v in (rate, ci[0], ci[1]))
        points.append(f"{x:.2f},{y:.2f}")
        body.append(
            f'<g class="pt" data-day="{d["day"]}" data-rate="{rate}" data-lo="{ci[0]}" '
            f'data-hi="{ci[1]}" data-runs="{d["runs"]}">'
            f'<title>{d["day"]}: {pct(rate)} ({interval(ci)}), n={d["runs"]:,}</title>'
            f'<line class="ci" x1="{x:.2f}" x2="{x:.2f}" y1="{lo:.2f}" y2="{hi:.2f}"/>'
            f'<circle cx="{x:.2f}" cy="{y:.2f}" r="{radius:.1f}"/></g>'
        )
    line = [f'<polyline class="trend" points="{" ".join(points)}"/>'] if len(points) > 1 else []
    ticks = [(f, f"{round(f * 100)}%") for f in (0.0, 0.25, 0.5, 0.75, 1.0)]
    return _frame(box, label, ticks, days, line + body)
