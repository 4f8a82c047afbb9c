"""`lakevec report --html` on a large synthetic evidence log, and the page in Chromium.

Writes (once, cached in .bench/) a synthetic log of N rows in the three
runtimes' shapes (lakevec with provenance, tapes and A/B tags; TypeScript;
Go with RFC3339Nano times), ~10 % dry runs and a few bad lines
(lakevec.report.synthetic), then runs `lakevec report --evidence LOG --html
OUT` as a fresh process R times and reports the median wall time, the CPU time
(user+sys; on a shared machine wall time includes waiting for a core), peak
RSS and the HTML size. With --browser it opens the page in headless Chromium
(/usr/bin/chromium via playwright) and times the summary, the run list, the
first drill-down and the end of parsing. --screenshot PATH writes a 1280x900
screenshot of a report of --screenshot-rows rows (docs/report-screenshot.png).

    python scripts/bench/bench_report.py [--rows 100000] [--runs 3] [--browser]
    python scripts/bench/bench_report.py --screenshot docs/report-screenshot.png
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import bench_dir, lakevec_cmd, machine, median, save_result

from lakevec.report.synthetic import write_synthetic_log

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def synthetic_log(rows: int) -> Path:
    path = bench_dir() / f"report-log-{rows}.jsonl"
    if not path.exists():
        print(f"writing {rows:,} synthetic rows to {path} …", file=sys.stderr)
        write_synthetic_log(path.with_suffix(".tmp"), rows, seed=0, bad=max(1, rows // 5000))
        path.with_suffix(".tmp").rename(path)
    return path


def time_report(log: Path, out: Path, runs: int) -> dict[str, Any]:
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run([*lakevec_cmd(), "report", "--evidence", log.name, "--html", str(out)],
                       check=True, stdout=subprocess.DEVNULL, cwd=log.parent)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return {
        "wall_s": [round(w, 2) for w in walls], "median_wall_s": round(median(walls), 2),
        "median_cpu_s": round(median(cpus), 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
        "html_mb": round(out.stat().st_size / 1e6, 1), "log_mb": round(log.stat().st_size / 1e6, 1),
    }


def browse(page_path: Path, screenshot: Path | None = None) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    marks: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=ARGS,
            viewport={"width": 1280, "height": 900})
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        start = time.perf_counter()
        page.goto(page_path.as_uri(), wait_until="commit")
        page.wait_for_selector("#chart-runs svg", state="attached", timeout=300_000)
        marks["summary_s"] = round(time.perf_counter() - start, 2)
        page.wait_for_selector("body[data-ready='1']", timeout=300_000)
        marks["run_list_s"] = round(time.perf_counter() - start, 2)
        if screenshot is not None:
            page.screenshot(path=str(screenshot))
        page.click("#run-list tbody tr:nth-child(3)")
        page.wait_for_selector("#drilldown .dd-task")
        marks["first_drilldown_s"] = round(time.perf_counter() - start, 2)
        page.wait_for_function("() => document.readyState === 'complete'", timeout=300_000)
        marks["page_parsed_s"] = round(time.perf_counter() - start, 2)
        marks["console_errors"] = errors
        context.close()
    return marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--browser", action="store_true")
    parser.add_argument("--screenshot", type=Path, default=None)
    parser.add_argument("--screenshot-rows", type=int, default=1200)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.screenshot is not None:
        page = bench_dir() / "report-screenshot.html"
        log = bench_dir() / "screenshot" / "replay_runs.jsonl"  # the name the page shows
        log.parent.mkdir(exist_ok=True)
        log.write_bytes(synthetic_log(args.screenshot_rows).read_bytes())
        time_report(log, page, 1)
        print(browse(page, args.screenshot.resolve()))
        return
    page = bench_dir() / f"report-{args.rows}.html"
    result: dict[str, Any] = {"machine": machine(), "rows": args.rows,
                              **time_report(synthetic_log(args.rows), page, args.runs)}
    if args.browser:
        result["browser"] = browse(page)
    print(result)
    save_result(f"report-{args.rows}", result)


if __name__ == "__main__":
    main()
