"""The report's numbers, computed once: ``--json`` prints them and the HTML shows them.

:class:`Aggregator` takes runs one at a time (constant memory per run besides
one duration per run for medians) and :meth:`Aggregator.finish` returns one
JSON-ready dict, the *aggregate*. Every rate comes with its Wilson score
interval (:func:`lakevec.ab.stats.wilson_interval`, 95 %).

**Failure reasons** are counted once per failed run after normalisation, so
one cause is one line: whitespace is collapsed; a number standing alone
becomes ``N`` except a threshold after ``min``/``max`` and a status after
``HTTP``/``Errno`` (``response too short (57 chars; min 80)`` →
``response too short (N chars; min 80)``); the body after ``HTTP 503:`` and
after ``body starts`` becomes ``…``; the result is cut to 160 characters.
Each line keeps one raw example.
"""

from __future__ import annotations

import functools
import re
import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from lakevec.ab.stats import wilson_interval
from lakevec.report.rows import BadLine, Run, SourceFile
from lakevec.settings import REPORT_MAX_BAD_LINES, REPORT_TOP_REASONS

__all__ = ["REPORT_SCHEMA", "SPLITS", "Aggregator", "normalise_reason"]

REPORT_SCHEMA = "lakevec.report.v1"
#: Split name → what it groups by (the HTML's table captions).
SPLITS: dict[str, str] = {
    "runtime": "runtime that wrote the row",
    "model": "first model tried",
    "retriever": "retriever",
    "retrieval": "with or without retrieval",
}
NO_REASON = "(failed without a recorded reason)"
REASON_CHARS = 160
_DIGITS = 6

_SPACE = re.compile(r"\s+")
_HTTP_BODY = re.compile(r"(HTTP \d{3}): .*")
_BODY_STARTS = re.compile(r"(body starts) .*")
# A number standing alone (not part of a name, version, URL or time), unless it
# follows one of the words whose number names the cause.
_NUMBER = re.compile(
    r"(?<![\w.:/-])(?<!min )(?<!max )(?<!HTTP )(?<!Errno )\d+(?:[.,]\d+)*(?![\w:/])"
)


@functools.lru_cache(maxsize=1 << 16)  # the same few reasons recur in thousands of runs
def normalise_reason(reason: str) -> str:
    """One line per cause (see the module doc)."""
    text = _SPACE.sub(" ", reason).strip()
    text = _HTTP_BODY.sub(r"\1: …", text)
    text = _BODY_STARTS.sub(r"\1 …", text)
    text = _NUMBER.sub("N", text)
    return text[:REASON_CHARS] or NO_REASON


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, _DIGITS) if whole else None


def _interval(part: int, whole: int) -> list[float] | None:
    if not whole:
        return None
    low, high = wilson_interval(part, whole)
    return [round(low, _DIGITS), round(high, _DIGITS)]


@dataclass
class _Tally:
    runs: int = 0
    passed: int = 0
    escalated: int = 0
    durations: list[int] = field(default_factory=list)

    def add(self, run: Run) -> None:
        self.runs += 1
        self.passed += run.passed
        self.escalated += run.escalated
        if run.duration_ms is not None:
            self.durations.append(run.duration_ms)

    def rates(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "passed": self.passed,
            "pass_rate": _ratio(self.passed, self.runs),
            "pass_ci": _interval(self.passed, self.runs),
            "escalated": self.escalated,
            "escalation_rate": _ratio(self.escalated, self.runs),
            "escalation_ci": _interval(self.escalated, self.runs),
            "median_duration_ms": (
                round(statistics.median(self.durations), 1) if self.durations else None
            ),
        }


def _ranked(tallies: dict[str, _Tally], label: str) -> list[dict[str, Any]]:
    order = sorted(tallies.items(), key=lambda kv: (-kv[1].runs, kv[0]))
    return [{label: key, **tally.rates()} for key, tally in order]


@dataclass
class Aggregator:
    """Accumulates runs and bad lines; :meth:`finish` returns the aggregate."""

    since: str | None = None
    include_dry_run: bool = False
    top_reasons: int = REPORT_TOP_REASONS
    total: _Tally = field(default_factory=_Tally)
    days: dict[str, _Tally] = field(default_factory=dict)
    splits: dict[str, dict[str, _Tally]] = field(
        default_factory=lambda: {name: {} for name in SPLITS}
    )
    experiments: dict[str, dict[str, _Tally]] = field(default_factory=dict)
    verdicts: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # judged, passed
    reasons: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    failed: int = 0
    dry_runs: int = 0
    dry_runs_left_out: int = 0
    before_since: int = 0
    bad: list[BadLine] = field(default_factory=list)
    verify: Counter[str] | None = None

    def add_bad(self, bad: BadLine) -> None:
        self.bad.append(bad)

    def left_out(self, *, dry_run: bool) -> None:
        """Count a run the filters leave out (a dry run, or one before --since)."""
        if dry_run:
            self.dry_runs_left_out += 1
        else:
            self.before_since += 1

    def add(self, run: Run, verify: str | None = None) -> None:
        self.total.add(run)
        self.days.setdefault(run.day, _Tally()).add(run)
        keys = {
            "runtime": run.runtime,
            "model": run.model,
            "retriever": run.retriever,
            "retrieval": "with retrieval" if run.retrieval else "without retrieval",
        }
        for name, key in keys.items():
            self.splits[name].setdefault(key, _Tally()).add(run)
        if run.experiment is not None:
            arm = run.arm or f"{run.model} / {run.retriever}"
            self.experiments.setdefault(run.experiment, {}).setdefault(arm, _Tally()).add(run)
            if run.verdict is not None:
                counts = self.verdicts.setdefault((run.experiment, arm), [0, 0])
                counts[0] += 1
                counts[1] += run.verdict
        self.dry_runs += run.dry_run
        if verify is not None:
            if self.verify is None:
                self.verify = Counter()
            self.verify[verify] += 1
        if not run.passed:
            self.failed += 1
            seen = set()
            for raw in run.reasons or ("",):
                reason = normalise_reason(raw)
                if reason not in seen:
                    seen.add(reason)
                    self.reasons[reason] += 1
                    self.examples.setdefault(reason, raw)

    def _verdict(self, experiment: str, arm: str) -> dict[str, Any]:
        """The experiment's own pass rate of an arm (its verdicts), besides the gate's."""
        judged, passed = self.verdicts.get((experiment, arm), (0, 0))
        return {"judged": judged, "verdict_passed": passed,
                "verdict_rate": _ratio(passed, judged), "verdict_ci": _interval(passed, judged)}

    def finish(self, sources: Iterable[SourceFile]) -> dict[str, Any]:
        """The aggregate: one JSON-ready dict (see README, `lakevec report`)."""
        days = sorted(self.days)
        bad_by_path: dict[str, list[BadLine]] = {}
        for bad in self.bad:
            bad_by_path.setdefault(bad.path, []).append(bad)
        top = sorted(self.reasons.items(), key=lambda kv: (-kv[1], kv[0]))[: self.top_reasons]
        return {
            "schema": REPORT_SCHEMA,
            "filters": {"since": self.since, "include_dry_run": self.include_dry_run},
            "sources": [
                {
                    "path": src.path,
                    "lines": src.lines,
                    "rows": src.rows,
                    "bad_lines": src.bad,
                    "bad": [
                        {"line": b.line, "reason": b.reason}
                        for b in bad_by_path.get(src.path, [])[:REPORT_MAX_BAD_LINES]
                    ],
                }
                for src in sources
            ],
            "totals": {
                **self.total.rates(),
                "dry_runs": self.dry_runs,
                "dry_runs_left_out": self.dry_runs_left_out,
                "before_since": self.before_since,
                "bad_lines": len(self.bad),
                "first_day": days[0] if days else None,
                "last_day": days[-1] if days else None,
                "days": len(days),
            },
            "per_day": [{"day": day, **self.days[day].rates()} for day in days],
            "splits": {name: _ranked(self.splits[name], "key") for name in SPLITS},
            "experiments": [
                {
                    "experiment": name,
                    "runs": sum(t.runs for t in arms.values()),
                    "arms": [{**arm, **self._verdict(name, arm["arm"])}
                             for arm in _ranked(arms, "arm")],
                }
                for name, arms in sorted(self.experiments.items())
            ],
            "failure_reasons": {
                "failed_runs": self.failed,
                "top": [
                    {
                        "reason": reason,
                        "runs": count,
                        "share": _ratio(count, self.failed),
                        "example": self.examples[reason],
                    }
                    for reason, count in top
                ],
            },
            "verify": dict(sorted(self.verify.items())) if self.verify is not None else None,
        }
