"""``lakevec report`` as a library call: read the logs once, aggregate, pack, render.

:func:`build_report` streams every evidence file line by line (a row is
dropped as soon as it is counted and, for the HTML page, packed), so memory
grows with the packed runs, not with the log. The aggregate it returns is the
one object both ``--json`` and the HTML page show.

**Seams for tapes and verification** (wired by the caller, ``None`` today):
``tape_loader`` is called with a row's ``lakevec.tape`` digest and returns its
recorded exchanges (shown in the drill-down, in order); ``verify_status`` is
called with each counted row (a :class:`~lakevec.report.drilldown.LoggedRow`:
the parsed row, its exact line bytes, file and line number) and returns its
status (shown per run and counted in the aggregate's ``verify``). See
:mod:`lakevec.report.drilldown`.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lakevec.clock import SYSTEM_CLOCK, Clock
from lakevec.errors import UsageProblem
from lakevec.report.aggregate import Aggregator
from lakevec.report.drilldown import LoggedRow, RunPack, TapeLoader, VerifyStatus, call_seam
from lakevec.report.html import write_html
from lakevec.report.rows import BadLine, Row, SourceFile, read_rows

__all__ = ["BuiltReport", "build_report", "parse_since", "run_report", "tape_digest"]


@dataclass(frozen=True)
class BuiltReport:
    """The aggregate (what ``--json`` prints) and, when asked for, the packed runs."""

    aggregate: dict[str, Any]
    runs: dict[str, Any] | None
    html_path: Path | None = None
    html_bytes: int | None = None


def parse_since(text: str) -> datetime:
    """``--since``: a date (``2026-05-01``, midnight UTC) or an ISO-8601 time (UTC when
    it names no zone). Raises :class:`UsageProblem`."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageProblem(
            f"--since {text!r} is not a date or time; use e.g. 2026-05-01 or 2026-05-01T12:00Z"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def tape_digest(row: Mapping[str, Any]) -> str | None:
    """The digest ``tape_loader`` is called with: ``lakevec.tape``, when the row has one."""
    lk = row.get("lakevec")
    digest = lk.get("tape") if isinstance(lk, dict) else None
    return digest if isinstance(digest, str) and digest else None


#: What the drill-down gets for a run's tape (see :func:`_tape`).
TapeView = list[dict[str, Any]] | dict[str, str] | str | None


def _tape(row: Row, loader: TapeLoader | None) -> TapeView:
    """What the drill-down shows of the run's tape: its exchanges, ``{"digest": d}``
    when no loader is wired, or why there are none."""
    digest = tape_digest(row)
    if loader is None:
        return {"digest": digest} if digest else None
    if digest is None:
        return "this run has no tape"
    exchanges, problem = call_seam(loader, digest)
    return problem if problem is not None else list(exchanges)


def build_report(
    paths: Sequence[Path],
    *,
    since: datetime | None = None,
    include_dry_run: bool = False,
    with_runs: bool = False,
    tape_loader: TapeLoader | None = None,
    verify_status: VerifyStatus | None = None,
) -> BuiltReport:
    """Read ``paths`` (in order) and aggregate every counted run.

    A run is counted unless it was recorded before ``since`` or is a dry run
    (unless ``include_dry_run``); left-out runs and bad lines are counted too.
    ``with_runs`` also packs every counted run for the HTML drill-down.
    Raises :class:`~lakevec.errors.EvidenceError` when a file cannot be read.
    """
    agg = Aggregator(
        since=since.isoformat().replace("+00:00", "Z") if since is not None else None,
        include_dry_run=include_dry_run,
    )
    pack = RunPack() if with_runs else None
    sources: list[SourceFile] = []
    # Seams run foreign code, which may make cycles: collect as usual then.
    paused = tape_loader is None and verify_status is None
    with _collector_paused() if paused else contextlib.nullcontext():
        aggregate = _read(paths, sources, agg, pack, since, include_dry_run, tape_loader,
                          verify_status)
    return BuiltReport(aggregate, pack.payload(_names(sources)) if pack is not None else None)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while reading (restored after): the packed runs
    hold no reference cycles, and passes over them as they grow cost ~10 % of the time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _read(paths: Sequence[Path], sources: list[SourceFile], agg: Aggregator,
          pack: RunPack | None, since: datetime | None, include_dry_run: bool,
          tape_loader: TapeLoader | None, verify_status: VerifyStatus | None) -> dict[str, Any]:
    for item in read_rows(paths, sources):
        if isinstance(item, BadLine):
            agg.add_bad(item)
            continue
        run, row, raw = item
        if since is not None and run.recorded_at < since:
            agg.left_out(dry_run=False)
            continue
        if run.dry_run and not include_dry_run:
            agg.left_out(dry_run=True)
            continue
        verify: str | None = None
        if verify_status is not None:
            logged = LoggedRow(sources[run.source].path, run.line, raw, row)
            status, problem = call_seam(verify_status, logged)
            verify = problem if problem is not None else str(status)
        agg.add(run, verify)
        if pack is not None:
            pack.add(run, row, tape=_tape(row, tape_loader), verify=verify)
    return agg.finish(sources)


def _names(sources: Iterable[SourceFile]) -> list[str]:
    return [src.path for src in sources]


def run_report(
    paths: Sequence[Path],
    *,
    since: datetime | None = None,
    include_dry_run: bool = False,
    html: Path | None = None,
    tape_loader: TapeLoader | None = None,
    verify_status: VerifyStatus | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> BuiltReport:
    """``lakevec report``: the aggregate, and the HTML page written to ``html`` if given."""
    built = build_report(paths, since=since, include_dry_run=include_dry_run,
                         with_runs=html is not None, tape_loader=tape_loader,
                         verify_status=verify_status)
    if html is None or built.runs is None:
        return built
    size = write_html(html, built.aggregate, built.runs, clock.now())
    return BuiltReport(built.aggregate, None, html, size)
