"""``lakevec report``: what the evidence log says, in the terminal, as JSON or as one HTML file."""

from __future__ import annotations

from pathlib import Path

import click

from lakevec.cli.common import domain_errors, emit_json, root_from, warn
from lakevec.paths import default_evidence


@click.command("report")
@click.option(
    "--evidence", "evidence_paths", type=click.Path(dir_okay=False, path_type=Path),
    multiple=True,
    help="Evidence log to read (repeat for several; rows of every runtime). "
    "Default: <root>/data/_kb/replay_runs.jsonl.",
)
@click.option("--since", default=None, metavar="DATE",
              help="Count only runs recorded at or after DATE (2026-05-01 = midnight UTC, "
              "or an ISO-8601 time).")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, metavar="FILE",
              help="Also write one self-contained HTML report (works offline) to FILE.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the aggregate (the numbers the HTML shows) as one JSON object.")
@click.option("--include-dry-run", is_flag=True,
              help="Count dry runs too (left out by default).")
@click.option("--tapes/--no-tapes", "with_tapes", default=True, show_default=True,
              help="Show every recorded model exchange (from the tapes beside each log) in "
              "the HTML drill-down.")
@click.option("--verify/--no-verify", "with_verify", default=True, show_default=True,
              help="Show each run's `lakevec verify` verdict in the HTML drill-down (replays "
              "every taped run offline; --no-verify for very large logs).")
@click.pass_context
@domain_errors
def report_cmd(
    ctx: click.Context,
    evidence_paths: tuple[Path, ...],
    since: str | None,
    html_path: Path | None,
    as_json: bool,
    include_dry_run: bool,
    with_tapes: bool,
    with_verify: bool,
) -> None:
    """Summarise replay runs: runs per day, gate pass and escalation rates with
    Wilson 95% intervals, splits by runtime, model and retriever, A/B
    experiments, the most common failure reasons, and (with --html) every run.

    Reads replay_run.v1 rows written by lakevec, the TypeScript seed and the Go
    port. Bad lines are counted and listed with their line numbers. Exit 0 on
    success, 1 when a log cannot be read or FILE cannot be written, 2 for a bad
    --since.
    """
    from lakevec.report.build import parse_since, run_report
    from lakevec.report.seams import TapeSeams
    from lakevec.report.terminal import format_summary

    paths = list(evidence_paths) or [default_evidence(root_from(ctx))]
    seams = TapeSeams()
    result = run_report(
        paths,
        since=parse_since(since) if since is not None else None,
        include_dry_run=include_dry_run,
        html=html_path,
        tape_loader=seams.tape_loader(paths) if with_tapes and html_path else None,
        verify_status=seams.verify_status() if with_verify else None,
    )
    bad = result.aggregate["totals"]["bad_lines"]
    if as_json:
        emit_json(result.aggregate)
        if bad:
            warn(f"{bad:,} bad lines skipped (listed under sources[].bad)")
    else:
        click.echo(format_summary(result.aggregate))
    if result.html_path is not None and result.html_bytes is not None:
        message = f"wrote {result.html_path} ({result.html_bytes / 1e6:.1f} MB)"
        if as_json:
            warn(message)
        else:
            click.echo(message)
