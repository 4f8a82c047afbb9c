"""The HTML report: one self-contained file that works offline.

Everything is inline — CSS, the script (``assets/report.css`` and
``assets/report.js``, shipped in the package), SVG charts — and a
Content-Security-Policy forbids loading anything else. Every number on the
page is rendered here from the aggregate (the object ``--json`` prints) and
carries its JSON value in ``data-value``; the aggregate itself is embedded as
JSON (``id="report-data"``). The runs follow, packed
(:mod:`lakevec.report.drilldown`): the index the script reads as soon as the
browser reaches it, then the prompts and text chunks it parses on demand, so
the summary shows and the run list works while the browser still reads them.
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import datetime
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any

from lakevec import __version__
from lakevec.errors import ReportError
from lakevec.files import TMP_PREFIX
from lakevec.report.aggregate import SPLITS
from lakevec.report.charts import rate_chart, runs_chart
from lakevec.report.fmt import count, interval, pct
from lakevec.settings import REPORT_PAGE_SIZE

__all__ = ["render_html", "script_json", "write_html"]

CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
       "img-src data:")
_RATE_HEAD = ("<th>runs</th><th>pass rate</th><th>95% CI</th><th>escalation</th>"
              "<th>95% CI</th><th>median ms</th>")


def _asset(name: str) -> str:
    return resources.files("lakevec.report").joinpath("assets", name).read_text("utf-8")


def script_json(obj: Any) -> str:
    """JSON safe inside ``<script type="application/json">``: no ``<`` at all
    (so no ``</script>`` or ``<!--``), the same value for ``JSON.parse``."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str)
    return text.replace("<", "\\u003c")


def _value(value: Any) -> str:
    return escape(json.dumps(value), quote=True)


def _cell(field: str, value: Any, text: str, cls: str = "num") -> str:
    return (f'<td class="{cls}" data-field="{field}" data-value="{_value(value)}">'
            f"{escape(text)}</td>")


def _rate_cells(row: dict[str, Any]) -> str:
    ms = row["median_duration_ms"]
    return "".join([
        _cell("runs", row["runs"], count(row["runs"])),
        _cell("pass_rate", row["pass_rate"], pct(row["pass_rate"])),
        _cell("pass_ci", row["pass_ci"], interval(row["pass_ci"]), "ci"),
        _cell("escalation_rate", row["escalation_rate"], pct(row["escalation_rate"])),
        _cell("escalation_ci", row["escalation_ci"], interval(row["escalation_ci"]), "ci"),
        _cell("median_duration_ms", ms, "–" if ms is None else f"{ms:,.0f}"),
    ])


def _split_table(name: str, caption: str, rows: list[dict[str, Any]]) -> str:
    body = "".join(
        f'<tr data-key="{escape(r["key"])}"><th scope="row">{escape(r["key"])}</th>'
        f"{_rate_cells(r)}</tr>" for r in rows
    )
    return (f'<table class="split" data-split="{name}"><caption>by {escape(caption)}</caption>'
            f"<thead><tr><th>{escape(name)}</th>{_RATE_HEAD}</tr></thead>"
            f"<tbody>{body}</tbody></table>")


def _experiments(experiments: list[dict[str, Any]]) -> str:
    if not experiments:
        return ('<p class="empty" id="no-experiments">No run is tagged with an experiment '
                "(<code>lakevec.experiment</code>).</p>")
    rows = []
    for exp in experiments:
        for i, arm in enumerate(exp["arms"]):
            head = (f'<th scope="rowgroup" rowspan="{len(exp["arms"])}">'
                    f'{escape(exp["experiment"])}</th>' if i == 0 else "")
            rate, ci = arm["verdict_rate"], arm["verdict_ci"]
            rows.append(f'<tr data-experiment="{escape(exp["experiment"])}" '
                        f'data-arm="{escape(arm["arm"])}">{head}<td>{escape(arm["arm"])}</td>'
                        f'{_cell("verdict_rate", rate, pct(rate))}'
                        f'{_cell("verdict_ci", ci, interval(ci), "ci")}{_rate_cells(arm)}</tr>')
    return (f'<table id="experiments"><thead><tr><th>experiment</th><th>arm</th>'
            f"<th>verdict pass rate</th><th>95% CI</th>{_RATE_HEAD}</tr></thead>"
            f'<tbody>{"".join(rows)}</tbody></table><p class="legend">Verdict: the '
            "experiment's own judgement of each run (<code>lakevec.experiment.verdict</code>, "
            "one gate for every arm); pass rate: the pipeline's gate. All tagged runs count; "
            "<code>lakevec ab</code> compares arms over paired, complete tasks.</p>")


def _failures(failures: dict[str, Any]) -> str:
    if not failures["top"]:
        return '<p class="empty">No failed run.</p>'
    rows = "".join(
        f'<tr data-reason="{escape(f["reason"])}"><td class="reason" '
        f'title="example: {escape(f["example"])}">{escape(f["reason"])}</td>'
        f'{_cell("runs", f["runs"], count(f["runs"]))}'
        f'{_cell("share", f["share"], pct(f["share"]))}</tr>' for f in failures["top"]
    )
    return (f'<table id="failures"><caption>of {count(failures["failed_runs"])} failed runs'
            f"</caption><thead><tr><th>reason (normalised; hover for an example)</th>"
            f"<th>runs</th><th>share</th></tr></thead><tbody>{rows}</tbody></table>")


def _verify(verify: dict[str, int] | None) -> str:
    if verify is None:
        return ""
    rows = "".join(f'<tr data-status="{escape(k)}"><td>{escape(k)}</td>'
                   f'{_cell("runs", v, count(v))}</tr>' for k, v in verify.items())
    return (f'<section><h2>Verification</h2><table id="verify"><thead><tr><th>status</th>'
            f"<th>runs</th></tr></thead><tbody>{rows}</tbody></table></section>")


def _bad_lines(sources: list[dict[str, Any]]) -> str:
    total = sum(src["bad_lines"] for src in sources)
    if not total:
        return ""
    rows = "".join(
        f'<tr data-path="{escape(src["path"])}" data-line="{b["line"]}"><td>'
        f'{escape(src["path"])}</td><td class="num">{b["line"]}</td><td>{escape(b["reason"])}'
        f"</td></tr>" for src in sources for b in src["bad"]
    )
    listed = sum(len(src["bad"]) for src in sources)
    more = f"<p>{total - listed:,} more not listed.</p>" if total > listed else ""
    return (f'<section><h2>Bad lines</h2><table id="bad-lines"><thead><tr><th>file</th>'
            f"<th>line</th><th>why it was skipped</th></tr></thead><tbody>{rows}</tbody>"
            f"</table>{more}</section>")


def _card(metric: str, value: Any, big: str, small: str = "") -> str:
    return (f'<div class="card" data-metric="{metric}" data-value="{_value(value)}">'
            f'<div class="big">{escape(big)}</div><div class="small">{escape(small)}</div></div>')


def _cards(t: dict[str, Any], include_dry_run: bool) -> str:
    dry = (_card("dry_runs", t["dry_runs"], count(t["dry_runs"]), "dry runs counted")
           if include_dry_run else
           _card("dry_runs_left_out", t["dry_runs_left_out"], count(t["dry_runs_left_out"]),
                 "dry runs left out"))
    return "".join([
        _card("runs", t["runs"], count(t["runs"]), f'over {t["days"]:,} days'),
        _card("pass_rate", t["pass_rate"], pct(t["pass_rate"]),
              f'gate pass rate, 95% CI {interval(t["pass_ci"])}'),
        _card("escalation_rate", t["escalation_rate"], pct(t["escalation_rate"]),
              f'escalated, 95% CI {interval(t["escalation_ci"])}'),
        dry,
        _card("bad_lines", t["bad_lines"], count(t["bad_lines"]), "bad lines skipped"),
    ])


def _summary(aggregate: dict[str, Any], generated_at: datetime) -> str:
    t, filters = aggregate["totals"], aggregate["filters"]
    span = f'{t["first_day"]} … {t["last_day"]}' if t["first_day"] else "no runs"
    since = f' · since {escape(filters["since"])}' if filters["since"] else ""
    sources = ", ".join(escape(s["path"]) for s in aggregate["sources"])
    splits = "".join(_split_table(name, caption, aggregate["splits"][name])
                     for name, caption in SPLITS.items())
    per_day = aggregate["per_day"]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>lakevec report · {count(t["runs"])} runs</title>
<style>{_asset("report.css")}</style></head>
<body data-page-size="{REPORT_PAGE_SIZE}">
<header><h1>lakevec report</h1><p class="meta">{escape(span)}{since} · from {sources} ·
generated {escape(generated_at.isoformat(timespec="seconds"))} by lakevec {__version__}</p>
</header>
<main>
<section class="cards">{_cards(t, filters["include_dry_run"])}</section>
<section><h2>Runs per day</h2><p class="legend"><span class="key ok"></span>passed
<span class="key bad"></span>failed · click a day to list its runs</p>
<div id="chart-runs">{runs_chart(per_day)}</div></section>
<section class="pair"><div><h2>Gate pass rate per day</h2>
<div id="chart-pass">{rate_chart(per_day, "pass", "gate pass rate per day")}</div></div>
<div><h2>Escalation rate per day</h2>
<div id="chart-escalation">{rate_chart(per_day, "escalation", "escalation rate per day")}</div>
</div><p class="legend">Points are daily rates; whiskers their Wilson 95% intervals.</p>
</section>
<section><h2>Splits</h2><div class="splits">{splits}</div></section>
<section><h2>A/B experiments</h2>{_experiments(aggregate["experiments"])}</section>
<section><h2>Most common failure reasons</h2>{_failures(aggregate["failure_reasons"])}</section>
{_verify(aggregate["verify"])}
{_bad_lines(aggregate["sources"])}
<section id="runs"><h2>Runs</h2>
<div class="controls"><input id="q" type="search" placeholder="search task or run id">
<select id="outcome"><option value="">all outcomes</option><option value="passed">passed</option>
<option value="failed">failed</option><option value="escalated">escalated</option></select>
<select id="runtime"><option value="">all runtimes</option></select>
<span id="day-filter" hidden></span>
<span id="count" class="meta">loading runs…</span>
<button id="prev" type="button">‹ newer</button><button id="next" type="button">older ›</button>
</div>
<table id="run-list"><thead><tr><th>recorded at</th><th>runtime</th><th>model</th>
<th>retriever</th><th>gate</th><th>task</th></tr></thead><tbody></tbody></table>
<div id="drilldown" hidden></div>
</section>
</main>
<script type="application/json" id="report-data">{script_json(aggregate)}</script>
"""


def render_html(
    aggregate: dict[str, Any], runs: dict[str, Any], generated_at: datetime
) -> list[str]:
    """The whole page, in chunks: the summary, the runs' index and the script, then
    the prompts and text chunks the script parses on demand."""
    return [
        _summary(aggregate, generated_at),
        '<script type="application/json" id="runs-index">', script_json(runs["index"]),
        f'</script>\n<script>{_asset("report.js")}</script>\n',
        '<script type="application/json" id="runs-prompts">', script_json(runs["prompts"]),
        "</script>\n",
        *(f'<script type="application/json" id="runs-text-{i}">{script_json(chunk)}</script>\n'
          for i, chunk in enumerate(runs["texts"])),
        "</body></html>\n",
    ]


def write_html(
    path: Path, aggregate: dict[str, Any], runs: dict[str, Any], generated_at: datetime
) -> int:
    """Write the page to ``path`` atomically (temp file, fsync, rename); returns its
    size in bytes.

    A lone surrogate (possible in a row's text, via a ``\\udXXXX`` escape) is
    written as that escape, which inside the JSON blobs is the same string.
    """
    path = Path(path)
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}-{secrets.token_hex(4)}")
    size = 0
    try:
        with tmp.open("wb") as out:
            for chunk in render_html(aggregate, runs, generated_at):
                data = chunk.encode("utf-8", "backslashreplace")
                out.write(data)
                size += len(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise ReportError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return size
