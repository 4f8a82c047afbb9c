"""What an experiment will cost before it runs: calls × measured seconds per call.

Prompts with a context bundle are several times longer than without one (and
a small model answers them at more length), so the two kinds of call are
estimated apart. For each kind the seconds per call are, in this order:

1. the median wall time of the latest earlier calls of the same model
   (api, model name and, for a local model, the same GGUF file) with the same
   ``max_tokens`` and ``temperature``, read from the tapes of the rows at the
   end of the evidence log (at least ``AB_ESTIMATE_MIN_CALLS`` of them, at
   most ``AB_ESTIMATE_CALLS``);
2. otherwise one calibration call: the first task's prompt of that kind with
   the experiment's options, timed and thrown away (not logged, no tape).

Earlier calls may have run at another machine load; the estimate says which
source it used.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import JsonValue

from lakevec import jsonsafe
from lakevec.clock import SYSTEM_CLOCK, Clock
from lakevec.errors import TapeError
from lakevec.replay.chat import ChatGateway, ChatOptions, RecordingGateway
from lakevec.replay.tape import TapeStore
from lakevec.settings import AB_ESTIMATE_CALLS, AB_ESTIMATE_MIN_CALLS, AB_ESTIMATE_SCAN_ROWS

__all__ = ["Estimate", "KindEstimate", "calibrate", "earlier_calls", "tail_lines"]

_TAIL_BYTES_PER_ROW = 16 * 1024


@dataclass(frozen=True)
class KindEstimate:
    kind: str  # "retrieval" or "no-retrieval"
    calls: int
    seconds_per_call: float
    source: str


@dataclass(frozen=True)
class Estimate:
    parts: tuple[KindEstimate, ...]
    jobs: int = 1  # calls run this many at a time

    @property
    def calls(self) -> int:
        return sum(p.calls for p in self.parts)

    @property
    def seconds(self) -> float:
        """Wall time: the calls' time shared by the jobs (assumes jobs do not slow each other)."""
        return sum(p.calls * p.seconds_per_call for p in self.parts) / self.jobs

    def text(self) -> str:
        minutes = self.seconds / 60
        jobs = f" with {self.jobs} jobs" if self.jobs > 1 else ""
        head = f"Estimate: {self.calls} model calls ≈ {minutes:.1f} min{jobs}"
        parts = [
            f"{p.calls} {p.kind} × {p.seconds_per_call:.1f} s ({p.source})"
            for p in self.parts if p.calls
        ]
        return head + (": " + "; ".join(parts) if parts else "")

    def as_json(self) -> dict[str, JsonValue]:
        return {
            "calls": self.calls,
            "jobs": self.jobs,
            "seconds": round(self.seconds, 1),
            "parts": [
                {"kind": p.kind, "calls": p.calls, "seconds_per_call": round(p.seconds_per_call, 3),
                 "source": p.source}
                for p in self.parts
            ],
        }


def tail_lines(path: Path, rows: int = AB_ESTIMATE_SCAN_ROWS) -> list[bytes]:
    """The last ``rows`` complete lines of ``path`` (fewer near its start; [] when absent)."""
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            start = max(0, size - rows * _TAIL_BYTES_PER_ROW)
            fh.seek(start)
            data = fh.read()
    except OSError:
        return []
    lines = data.split(b"\n")
    if start > 0:
        lines = lines[1:]  # cut mid-line
    return [line for line in lines if line.strip()][-rows:]


def _rows_newest_first(evidence_path: Path) -> Iterator[dict[str, JsonValue]]:
    for raw in reversed(tail_lines(evidence_path)):
        try:
            row = jsonsafe.loads(raw.decode("utf-8"), max_nesting=64)
        except ValueError:
            continue
        if isinstance(row, dict):
            yield row


def earlier_calls(
    evidence_path: Path,
    tape_dir: Path,
    gateway: ChatGateway,
    model: str,
    options: ChatOptions,
    *,
    limit: int = AB_ESTIMATE_CALLS,
) -> dict[bool, list[float]]:
    """Seconds of the latest earlier calls like the ones planned, by ``no_retrieval``."""
    found: dict[bool, list[float]] = {False: [], True: []}
    store = TapeStore(tape_dir)
    gguf = gateway.tape_config().get("gguf") if isinstance(gateway, RecordingGateway) else None
    for row in _rows_newest_first(evidence_path):
        if all(len(v) >= limit for v in found.values()):
            break
        lk, path = row.get("lakevec"), row.get("escalation_path")
        if not isinstance(lk, dict) or lk.get("gateway_api") != gateway.api:
            continue
        digest = lk.get("tape")
        if not isinstance(digest, str) or not isinstance(path, list) or path[:1] != [model]:
            continue
        try:
            tape = store.load(digest)
        except TapeError:
            continue
        run = tape.run
        if (run.max_tokens, run.temperature) != (options.max_tokens, options.temperature):
            continue
        if gguf is not None and run.gateway.get("gguf") != gguf:
            continue
        first = tape.exchanges[0]
        bucket = found[run.no_retrieval]
        if first.error is None and first.model == model and len(bucket) < limit:
            bucket.append(first.wall_ms / 1000)
    return found


def calibrate(
    gateway: ChatGateway, model: str, system: str, user: str, options: ChatOptions,
    clock: Clock | None = None,
) -> float:
    """Seconds one call takes (unrecorded; the answer is discarded)."""
    clock = clock or SYSTEM_CLOCK
    started = clock.monotonic()
    gateway.chat(model, system, user, options=options)
    return clock.monotonic() - started


def kind_estimate(
    kind: str, calls: int, earlier: list[float], calibration: tuple[str, str] | None,
    gateway: ChatGateway, model: str, options: ChatOptions, clock: Clock | None = None,
) -> KindEstimate:
    """One kind's estimate: from earlier calls when there are enough, else calibrated."""
    if calls == 0:
        return KindEstimate(kind, 0, 0.0, "not run")
    if len(earlier) >= AB_ESTIMATE_MIN_CALLS:
        return KindEstimate(
            kind, calls, statistics.median(earlier),
            f"median of the latest {len(earlier)} earlier calls like it, from their tapes",
        )
    assert calibration is not None
    seconds = calibrate(gateway, model, *calibration, options, clock)
    return KindEstimate(kind, calls, seconds, "one calibration call just now")
