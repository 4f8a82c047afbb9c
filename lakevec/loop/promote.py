"""``lakevec promote``: turn a verified, accepted run's answer into a playbook record.

The record is appended to the corpus under the same lock discipline as the
evidence log (flock on the file, one whole-line write, fsync), so promotions
never interleave with each other or with an exporter that also locks. It is
deduplicated by the sha256 of its content, and carries its provenance under
``promotion`` (unknown keys are ignored by readers, kept in the file):
``source_run_id`` is the run's ``recorded_run_id``. The next ``reindex``
picks the record up like any other.

A run is refused when it failed the gate, was a dry run, or does not verify
bit-exact against its tape (rows of other runtimes have no tape); ``force``
overrides, and the record says it was forced and why.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lakevec.clock import SYSTEM_CLOCK, Clock, iso_ms
from lakevec.errors import CorpusError, UsageProblem
from lakevec.locks import append_line, locked_log, read_all
from lakevec.replay.engine import DRY_RUN_API, default_tape_dir
from lakevec.replay.evidence import ReplayRunRow
from lakevec.replay.tape import TapeStore
from lakevec.replay.verify import LogRow, read_log, verify_row
from lakevec.settings import DEFAULT_LOCK_TIMEOUT

PROMOTED_TAG = "promoted"
PROMOTED_CATEGORY = "promoted"
TITLE_CHARS = 160
# The seed's synthetic answer: how TypeScript/Go dry runs are recognised.
DRY_RUN_PREFIX = "Synthetic dry-run response for task:"

Outcome = Literal["promoted", "duplicate", "refused", "would-promote"]


@dataclass(frozen=True)
class PromotionResult:
    run_id: str
    outcome: Outcome
    detail: str = ""
    record_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "outcome": self.outcome, "detail": self.detail,
                "record_id": self.record_id}


@dataclass
class PromotionReport:
    results: list[PromotionResult] = field(default_factory=list)

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.results if r.outcome == outcome)

    def as_dict(self) -> dict[str, Any]:
        return {
            "promoted": self.count("promoted"),
            "duplicates": self.count("duplicate"),
            "refused": self.count("refused"),
            "would_promote": self.count("would-promote"),
            "runs": [r.as_dict() for r in self.results],
        }


def content_sha256(text: str) -> str:
    return hashlib.sha256(text.strip().encode("utf-8")).hexdigest()


def is_dry_run(row: ReplayRunRow) -> bool:
    """A dry run of any runtime: lakevec says so; the seed runtimes echo a synthetic answer."""
    if row.lakevec is not None:
        return row.lakevec.gateway_api == DRY_RUN_API
    return row.model_response.startswith(DRY_RUN_PREFIX)


def refusal(entry: LogRow, store: TapeStore) -> str | None:
    """Why ``entry`` must not be promoted (None when it may)."""
    row = entry.row
    if row is None:
        return entry.problem or "not a valid replay_run.v1 row"
    if is_dry_run(row):
        return "a dry run: the answer is synthetic, no model was called"
    if not row.validation_result.passed:
        reasons = "; ".join(row.validation_result.reasons) or "no reason recorded"
        return f"the run failed the gate ({reasons})"
    if not row.model_response.strip():
        return "the run has no answer"
    verdict = verify_row(entry, store)
    if verdict.status != "bit-exact":
        return f"the run does not verify against its tape ({verdict.text()})"
    return None


def playbook_record(
    row: ReplayRunRow, *, reviewer: str | None, forced: str | None, now: str
) -> dict[str, Any]:
    """The corpus record of a promoted run, with its provenance."""
    digest = content_sha256(row.model_response)
    title = " ".join(row.input_task.split())
    prov = row.lakevec
    return {
        "id": f"promoted-{digest[:16]}",
        "title": title[:TITLE_CHARS],
        "content": row.model_response,
        "tags": [PROMOTED_TAG],
        "source_run_id": row.recorded_run_id,
        "success_score": "accepted",
        "source_category": PROMOTED_CATEGORY,
        "created_at": now,
        "promotion": {
            "source_run_id": row.recorded_run_id,
            "task": row.input_task,
            "model": row.model_used,
            "gate": {"passed": row.validation_result.passed,
                     "reasons": row.validation_result.reasons},
            "tape": prov.tape if prov is not None else None,
            "reviewer": reviewer,
            "promoted_at": now,
            "forced": forced is not None,
            "forced_over": forced,
            "content_sha256": digest,
        },
    }


def _promoted_hashes(corpus: bytes) -> set[str]:
    """Content hashes of records already promoted (or any record with the same content)."""
    hashes: set[str] = set()
    for line in corpus.splitlines():
        if b'"content"' not in line:
            continue
        try:
            obj = json.loads(line)
        except ValueError:  # bad lines are the corpus reader's business, not ours
            continue
        if isinstance(obj, dict) and isinstance(obj.get("content"), str):
            hashes.add(content_sha256(obj["content"]))
    return hashes


def find_runs(evidence: Path, run_ids: Iterable[str]) -> dict[str, LogRow]:
    """The log entries of ``run_ids`` (the last row of each id wins)."""
    wanted = set(run_ids)
    found: dict[str, LogRow] = {}
    for entry in read_log(evidence):
        if isinstance(entry, LogRow) and entry.run_id in wanted:
            found[entry.run_id] = entry
    return found


def promote(
    run_ids: Sequence[str],
    *,
    evidence: Path,
    corpus: Path,
    tapes: Path | None = None,
    reviewer: str | None = None,
    force: bool = False,
    dry_run: bool = False,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    clock: Clock = SYSTEM_CLOCK,
) -> PromotionReport:
    """Promote each run's answer into ``corpus``; see the module docstring."""
    if not run_ids:
        raise UsageProblem("name at least one RUN_ID to promote")
    if not evidence.is_file():
        raise UsageProblem(f"evidence log not found: {evidence} — pass --evidence PATH")
    store = TapeStore(tapes or default_tape_dir(evidence))
    entries = find_runs(evidence, run_ids)
    report = PromotionReport()
    now = iso_ms(clock.now())
    records: list[tuple[str, dict[str, Any]]] = []
    for run_id in dict.fromkeys(run_ids):
        entry = entries.get(run_id)
        if entry is None:
            missing = f"no run {run_id} in {evidence}"
            report.results.append(PromotionResult(run_id, "refused", missing))
            continue
        why = refusal(entry, store)
        if why is not None and (not force or entry.row is None):
            report.results.append(PromotionResult(run_id, "refused", why))
            continue
        assert entry.row is not None
        records.append((run_id, playbook_record(entry.row, reviewer=reviewer, forced=why, now=now)))
    if not records:
        return report

    with locked_log(corpus, timeout=lock_timeout, what="corpus",
                    fix="fix its permissions or pass --corpus PATH", error=CorpusError) as fd:
        seen = _promoted_hashes(read_all(fd))
        for run_id, record in records:
            digest = record["promotion"]["content_sha256"]
            if digest in seen:
                report.results.append(PromotionResult(
                    run_id, "duplicate", "the corpus already holds this answer", record["id"]))
                continue
            seen.add(digest)
            if dry_run:
                report.results.append(PromotionResult(run_id, "would-promote", "", record["id"]))
                continue
            line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
            append_line(fd, line.encode("utf-8"))
            over = record["promotion"]["forced_over"]
            detail = f"forced over: {over}" if over else ""
            report.results.append(PromotionResult(run_id, "promoted", detail, record["id"]))
    return report
