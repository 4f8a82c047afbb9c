"""The terminal summary of the aggregate (what ``lakevec report`` prints without ``--json``)."""

from __future__ import annotations

from typing import Any

from lakevec.report.aggregate import SPLITS
from lakevec.report.fmt import count, pct, rate_with_ci

__all__ = ["format_summary"]

#: Days shown in the per-day table (the latest ones).
DAYS_SHOWN = 14
BAD_LINES_SHOWN = 5


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        padded = [c.ljust(w) if i == 0 else c.rjust(w)
                  for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return ("  " + "  ".join(padded)).rstrip()

    return [line(head), *(line(r) for r in rows)]


def _rate_rows(rows: list[dict[str, Any]], label: str) -> list[list[str]]:
    return [
        [str(r[label]), count(r["runs"]), rate_with_ci(r["pass_rate"], r["pass_ci"]),
         rate_with_ci(r["escalation_rate"], r["escalation_ci"])]
        for r in rows
    ]


def _bad_lines(aggregate: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for src in aggregate["sources"]:
        if not src["bad_lines"]:
            continue
        shown = src["bad"][:BAD_LINES_SHOWN]
        more = src["bad_lines"] - len(shown)
        out.append(f"  {src['path']}: {src['bad_lines']:,} bad lines skipped")
        out += [f"    line {b['line']}: {b['reason']}" for b in shown]
        if more:
            out.append(f"    … {more:,} more (--json lists up to 200 per file)")
    return out


def format_summary(aggregate: dict[str, Any]) -> str:
    t, filters = aggregate["totals"], aggregate["filters"]
    span = f"{t['first_day']} … {t['last_day']}, {t['days']:,} days" if t["first_day"] else "none"
    files = ", ".join(src["path"] for src in aggregate["sources"])
    out = [f"lakevec report — {count(t['runs'])} runs ({span}) from {files}"]
    left = []
    if filters["include_dry_run"]:
        left.append(f"{t['dry_runs']:,} dry runs counted")
    elif t["dry_runs_left_out"]:
        left.append(f"{t['dry_runs_left_out']:,} dry runs left out (--include-dry-run counts them)")
    if t["before_since"]:
        left.append(f"{t['before_since']:,} runs before {filters['since']} left out")
    if left:
        out.append("  " + "; ".join(left))
    out += _bad_lines(aggregate)
    out += [
        "",
        f"gate pass rate   {rate_with_ci(t['pass_rate'], t['pass_ci'])}  "
        f"({count(t['passed'])}/{count(t['runs'])}, Wilson 95% interval)",
        f"escalation rate  {rate_with_ci(t['escalation_rate'], t['escalation_ci'])}  "
        f"({count(t['escalated'])}/{count(t['runs'])})",
    ]
    head = ["", "runs", "gate pass rate [95% CI]", "escalation rate [95% CI]"]
    for name, caption in SPLITS.items():
        rows = aggregate["splits"][name]
        if rows:
            out += ["", f"by {caption}:", *_table([name, *head[1:]], _rate_rows(rows, "key"))]
    days = aggregate["per_day"][-DAYS_SHOWN:]
    if days:
        title = "per day" if len(days) == len(aggregate["per_day"]) else f"last {len(days)} days"
        out += ["", f"{title}:", *_table(["day", *head[1:]], _rate_rows(days, "day"))]
    for exp in aggregate["experiments"]:
        rows = [[r[0], r[1], rate_with_ci(arm["verdict_rate"], arm["verdict_ci"]), *r[2:]]
                for r, arm in zip(_rate_rows(exp["arms"], "arm"), exp["arms"], strict=True)]
        out += ["", f"experiment {exp['experiment']} ({exp['runs']:,} runs):",
                *_table(["arm", "runs", "verdict [95% CI]", *head[2:]], rows)]
    failures = aggregate["failure_reasons"]
    if failures["top"]:
        out += ["", f"most common failure reasons ({failures['failed_runs']:,} failed runs):"]
        out += [f"  {f['runs']:>7,}  {pct(f['share']):>6}  {f['reason']}" for f in failures["top"]]
    if aggregate["verify"] is not None:
        out += ["", "verification: " + ", ".join(
            f"{k} {v:,}" for k, v in aggregate["verify"].items())]
    return "\n".join(out)
