"""The HTML report in a real browser: headless Chromium (Debian's ``chromium``) via playwright.

It renders without a console error or a network request, its numbers are
those of ``lakevec report --json``, and a run's drill-down opens on click.
Skips with a reason where playwright or /usr/bin/chromium is missing
(``bash scripts/test.sh`` installs both).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from lakevec.cli import main
from lakevec.replay.bundle import ContextBundle
from lakevec.replay.prompt import build_prompt
from lakevec.report import drilldown
from lakevec.report.synthetic import write_synthetic_log
from tests.test_report_rows import seed_row

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
MARKER = "drilldown-marker-7731"
EVIL_TASK = f"{MARKER}: close </script><b id='injected'>bold</b> & ünïcode ✓ 🚀"

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed "
                               "(pip install -e '.[test]')")
if not CHROMIUM.exists():
    pytest.skip(f"no browser at {CHROMIUM} (bash scripts/test.sh installs Debian's chromium)",
                allow_module_level=True)


def go_shaped(task: str, recorded_at: str) -> dict[str, Any]:
    suffix = hashlib.sha256(recorded_at.encode()).hexdigest()[:12]
    return seed_row(input_task=task, recorded_at=recorded_at,
                    recorded_run_id=f"replay:{'f' * 16}:{suffix}")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A 1,200-row log of every runtime (dry runs, bad lines, a hostile task) as HTML + JSON."""
    tmp = tmp_path_factory.mktemp("browser")
    log = write_synthetic_log(tmp / "replay_runs.jsonl", 1200, seed=11, bad=6)
    extra = go_shaped(EVIL_TASK, "2026-05-02T12:00:00.123456789Z")
    with log.open("a", encoding="utf-8") as out:
        out.write(json.dumps(extra, ensure_ascii=False) + "\n")
    page = tmp / "report.html"
    runner = CliRunner()
    with pytest.MonkeyPatch.context() as mp:  # several text chunks, as in a large log
        mp.setattr(drilldown, "TEXT_CHUNK", 32)
        html = runner.invoke(main, ["report", "--evidence", str(log), "--html", str(page)])
    assert html.exit_code == 0, html.output
    assert page.read_text(encoding="utf-8").count('id="runs-text-') > 30
    as_json = runner.invoke(main, ["report", "--evidence", str(log), "--json"])
    assert as_json.exit_code == 0
    rows = {}
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "recorded_run_id" in row:
            rows[row["recorded_run_id"]] = row
    return {"page": page, "json": json.loads(as_json.stdout), "evil": extra, "tmp": tmp,
            "rows": rows}


@pytest.fixture(scope="module")
def browser(report: dict[str, Any]) -> Iterator[Any]:
    """Headless Chromium with a fresh profile (user data dir)."""
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(report["tmp"] / "profile"), executable_path=str(CHROMIUM), headless=True,
            args=ARGS, viewport={"width": 1280, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


def open_page(browser: Any, path: Path) -> Any:
    """A new tab showing ``path`` once its run list is ready, recording console errors
    (``tab.errors``) and requests (``tab.requests``)."""
    tab = browser.new_page()
    errors: list[str] = []
    requests: list[str] = []
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: errors.append(str(e)))
    tab.on("request", lambda r: requests.append(r.url))
    tab.goto(path.as_uri())
    tab.wait_for_selector("body[data-ready='1']", timeout=60_000)
    tab.errors, tab.requests = errors, requests
    return tab


@pytest.fixture(scope="module")
def page(report: dict[str, Any], browser: Any) -> Any:
    """The report opened once."""
    return open_page(browser, report["page"])


def test_renders_without_console_errors_or_network(page: Any, report: dict[str, Any]) -> None:
    assert page.errors == []
    assert page.requests == [report["page"].as_uri()]  # the file itself, nothing else
    assert page.locator("#run-list tbody tr").count() == 50
    assert page.evaluate("document.getElementById('injected')") is None


COLLECT = """() => {
  const val = (el) => JSON.parse(el.getAttribute('data-value'));
  const cells = (tr) => Object.fromEntries([...tr.querySelectorAll('td[data-field]')]
                          .map((td) => [td.dataset.field, val(td)]));
  const out = {cards: {}, days: [], pass: [], escalation: [], splits: {}, experiments: [],
               failures: [], bad: []};
  document.querySelectorAll('.card').forEach((c) => {
    out.cards[c.dataset.metric] = {value: val(c), text: c.querySelector('.big').textContent};
  });
  document.querySelectorAll('#chart-runs g.day').forEach((g) => out.days.push(
    [g.dataset.day, +g.dataset.runs, +g.dataset.passed]));
  for (const key of ['pass', 'escalation']) {
    document.querySelectorAll(`#chart-${key} g.pt`).forEach((g) => out[key].push(
      [g.dataset.day, +g.dataset.rate, +g.dataset.lo, +g.dataset.hi]));
  }
  document.querySelectorAll('table.split').forEach((t) => {
    out.splits[t.dataset.split] = [...t.tBodies[0].rows].map((tr) =>
      ({key: tr.dataset.key, ...cells(tr)}));
  });
  document.querySelectorAll('#experiments tbody tr').forEach((tr) => out.experiments.push(
    {experiment: tr.dataset.experiment, arm: tr.dataset.arm, ...cells(tr)}));
  document.querySelectorAll('#failures tbody tr').forEach((tr) => out.failures.push(
    {reason: tr.dataset.reason, ...cells(tr)}));
  document.querySelectorAll('#bad-lines tbody tr').forEach((tr) => out.bad.push(
    +tr.dataset.line));
  return out;
}"""
RATE_FIELDS = ("runs", "pass_rate", "pass_ci", "escalation_rate", "escalation_ci",
               "median_duration_ms")


def test_numbers_equal_report_json(page: Any, report: dict[str, Any]) -> None:
    agg, shown = report["json"], page.evaluate(COLLECT)
    t = agg["totals"]
    assert t["runs"] > 1000 and t["dry_runs_left_out"] > 0 and t["bad_lines"] == 6
    cards = {k: v["value"] for k, v in shown["cards"].items()}
    assert cards == {k: t[k] for k in ("runs", "pass_rate", "escalation_rate",
                                        "dry_runs_left_out", "bad_lines")}
    assert shown["cards"]["runs"]["text"] == f"{t['runs']:,}"
    assert shown["cards"]["pass_rate"]["text"] == f"{100 * t['pass_rate']:.1f}%"
    assert shown["days"] == [[d["day"], d["runs"], d["passed"]] for d in agg["per_day"]]
    for key in ("pass", "escalation"):
        assert shown[key] == [[d["day"], d[f"{key}_rate"], *d[f"{key}_ci"]]
                              for d in agg["per_day"]]
    for name, rows in agg["splits"].items():
        assert shown["splits"][name] == [{"key": r["key"], **{f: r[f] for f in RATE_FIELDS}}
                                         for r in rows]
    assert {r["key"] for r in agg["splits"]["runtime"]} == {"lakevec", "typescript", "go"}
    assert shown["experiments"] == [
        {"experiment": e["experiment"], "arm": a["arm"],
         **{f: a[f] for f in ("verdict_rate", "verdict_ci", *RATE_FIELDS)}}
        for e in agg["experiments"] for a in e["arms"]]
    assert all(a["judged"] for e in agg["experiments"] for a in e["arms"])
    assert shown["failures"] == [{"reason": f["reason"], "runs": f["runs"], "share": f["share"]}
                                 for f in agg["failure_reasons"]["top"]]
    assert shown["bad"] == [b["line"] for s in agg["sources"] for b in s["bad"]]


def test_a_click_opens_the_drilldown(page: Any, report: dict[str, Any]) -> None:
    evil = report["evil"]
    page.fill("#q", MARKER)
    page.wait_for_selector(f"#run-list tbody tr[data-run='{evil['recorded_run_id']}']")
    page.click("#run-list tbody tr")
    page.wait_for_selector("#drilldown .dd-task")
    assert page.inner_text("#drilldown .dd-task") == EVIL_TASK
    expected = build_prompt(EVIL_TASK, ContextBundle.model_validate(evil["context_bundle"]))
    assert page.text_content("#drilldown .dd-prompt") == expected.user
    assert page.text_content("#drilldown .dd-response") == evil["model_response"]
    retrieved = page.inner_text("#drilldown .dd-retrieved")
    assert "pb-1" in retrieved and "T (score 0.5)" in retrieved
    assert page.evaluate("document.getElementById('injected')") is None
    assert page.errors == []


def test_clicking_a_day_lists_its_runs(page: Any, report: dict[str, Any]) -> None:
    page.fill("#q", "")
    day = max(report["json"]["per_day"], key=lambda d: d["runs"])
    page.click(f"#chart-runs g.day[data-day='{day['day']}']")
    page.wait_for_function(
        "n => document.getElementById('count').textContent.endsWith(' of ' + n + ' runs')",
        arg=f"{day['runs']:,}")
    page.click("#day-filter button")  # clear the day filter again
    page.wait_for_function(
        "n => document.getElementById('count').textContent.endsWith(' of ' + n + ' runs')",
        arg=f"{report['json']['totals']['runs']:,}")
    assert page.errors == []


def test_runs_on_later_pages_open_from_their_text_chunk(page: Any, report: dict[str, Any]) -> None:
    page.fill("#q", "")
    page.select_option("#outcome", "failed")
    page.click("#next")
    page.wait_for_selector("#count >> text=/^51–/")
    for nth in (3, 40):
        row = page.locator(f"#run-list tbody tr:nth-child({nth})")
        run_id = row.get_attribute("data-run")
        row.click()
        page.wait_for_selector(f"#drilldown h3:text-is('Run {run_id}')")
        expected = report["rows"][run_id]
        assert page.text_content("#drilldown .dd-response") == expected["model_response"]
        assert page.inner_text("#drilldown .dd-task") == expected["input_task"]
        assert "FAILED" in page.inner_text("#drilldown")
    page.select_option("#outcome", "")
    assert page.errors == []


def test_an_empty_log_renders_too(browser: Any, tmp_path: Path) -> None:
    log = tmp_path / "replay_runs.jsonl"
    log.write_text("not json\n", encoding="utf-8")
    page_path = tmp_path / "empty.html"
    result = CliRunner().invoke(main, ["report", "--evidence", str(log), "--html", str(page_path)])
    assert result.exit_code == 0
    tab = open_page(browser, page_path)
    assert tab.errors == []
    assert tab.inner_text("#count") == "no run matches"
    assert tab.get_attribute(".card[data-metric='pass_rate']", "data-value") == "null"
    assert tab.inner_text("#bad-lines tbody").startswith(str(log))
    tab.close()
