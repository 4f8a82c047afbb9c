"""``lakevec loop``: the seed's Phase 8 — replay a task set, promote by a policy, reindex.

Each cycle replays every task with retrieval on the current index (every run
logged with its tape, tagged ``lakevec.experiment`` = ``{id: <loop id>, arm:
"cycle-N"}``), promotes answers by the policy, then reindexes the corpus so
the next cycle retrieves what was promoted. A cycle is summarised in one JSON
object (pass and escalation rates with Wilson 95% intervals, promotions,
index version): cron runs ``lakevec loop --cycles 1`` and keeps the lines.

Policies: ``gate`` promotes runs that passed the seed gate (and verify
against their tape); ``strict`` only those that also pass the strict gate
(:mod:`lakevec.replay.strict`); ``review`` promotes nothing and lists the
candidates for a person to ``lakevec promote --reviewer NAME``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lakevec.ab.stats import wilson_interval
from lakevec.ab.tasks import AbTask
from lakevec.clock import SYSTEM_CLOCK, Clock, iso_ms
from lakevec.index.update import index_corpus
from lakevec.loop.promote import promote
from lakevec.replay.bundle import ContextBundle
from lakevec.replay.chat import ChatGateway
from lakevec.replay.engine import ReplayRequest, Tagger, default_tape_dir, replay
from lakevec.replay.evidence import Experiment, ReplayResult
from lakevec.replay.prompt import build_prompt
from lakevec.replay.strict import strict_validate
from lakevec.replay.tape import Tape, TapeStore
from lakevec.retrieval.registry import open_retriever

Policy = Literal["gate", "strict", "review"]
POLICIES: tuple[str, ...] = ("gate", "strict", "review")


@dataclass
class CycleReport:
    """What one cycle did (the JSON line ``lakevec loop`` prints)."""

    loop_id: str
    cycle: int
    policy: str
    runs: list[str] = field(default_factory=list)
    passed: int = 0
    escalated: int = 0
    candidates: list[str] = field(default_factory=list)
    promoted: int = 0
    duplicates: int = 0
    refused: int = 0
    index_version: int | None = None
    reindexed: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    finished_at: str = ""

    def as_dict(self) -> dict[str, Any]:
        n = len(self.runs)
        return {
            "loop": self.loop_id,
            "cycle": self.cycle,
            "policy": self.policy,
            "tasks": n,
            "passed": self.passed,
            "pass_rate": round(self.passed / n, 4) if n else None,
            "pass_rate_ci95": [round(x, 4) for x in wilson_interval(self.passed, n)],
            "escalated": self.escalated,
            "escalation_rate": round(self.escalated / n, 4) if n else None,
            "escalation_rate_ci95": [round(x, 4) for x in wilson_interval(self.escalated, n)],
            "candidates": len(self.candidates),
            "promoted": self.promoted,
            "duplicates": self.duplicates,
            "refused": self.refused,
            "index_version": self.index_version,
            "reindexed": self.reindexed,
            "seconds": round(self.seconds, 1),
            "finished_at": self.finished_at,
        }


@dataclass(frozen=True)
class LoopPaths:
    root: Path
    corpus: Path
    index: Path
    evidence: Path


def _strict_pass(result: ReplayResult, bundle: ContextBundle | None, tape: Tape | None) -> bool:
    finish = None
    if tape is not None and tape.exchanges:
        reason = tape.exchanges[-1].finish_reason
        finish = reason if isinstance(reason, str) else None
    prompt = build_prompt(result.input_task, bundle)
    verdict = strict_validate(result.model_response, bundle, prompt=prompt, finish_reason=finish)
    return verdict.passed


def _tagger(loop_id: str, cycle: int, task_id: str, policy: str) -> Tagger:
    def tag(_result: ReplayResult, _tape: Tape | None) -> Experiment:
        return Experiment(id=loop_id, arm=f"cycle-{cycle}", task_id=task_id, repeat=1,
                          gate=policy)

    return tag


def run_cycle(
    tasks: Sequence[AbTask],
    *,
    cycle: int,
    loop_id: str,
    paths: LoopPaths,
    gateway: ChatGateway,
    policy: Policy = "gate",
    retriever_kind: str = "hybrid",
    request: ReplayRequest | None = None,
    local_model: str | None = None,
    escalation_model: str | None = None,
    reviewer: str | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> CycleReport:
    """Replay ``tasks``, promote by ``policy``, reindex; the cycle's report."""
    started = time.monotonic()
    report = CycleReport(loop_id, cycle, policy)
    template = request or ReplayRequest(task="-")
    store = TapeStore(default_tape_dir(paths.evidence))
    with ExitStack() as stack:
        retriever = open_retriever(retriever_kind, root=paths.root, index_dir=paths.index,
                                   corpus_path=paths.corpus)
        stack.callback(retriever.close)
        snapshot = retriever.snapshot
        report.index_version = snapshot.manifest.version if snapshot is not None else None
        for task in tasks:
            result = replay(
                template.model_copy(update={"task": task.task}), retriever=retriever,
                gateway=gateway, evidence_path=paths.evidence, local_model=local_model,
                escalation_model=escalation_model, clock=clock,
                tag=_tagger(loop_id, cycle, task.id, policy),
            )
            report.runs.append(result.recorded_run_id)
            report.escalated += len(result.escalation_path) > 1
            if not result.validation_result.passed:
                continue
            report.passed += 1
            if policy == "strict":
                digest = result.lakevec.tape if result.lakevec is not None else None
                tape = store.load(digest) if digest else None
                if not _strict_pass(result, result.context_bundle, tape):
                    continue
            report.candidates.append(result.recorded_run_id)
    if policy != "review" and report.candidates:
        promoted = promote(report.candidates, evidence=paths.evidence, corpus=paths.corpus,
                           reviewer=reviewer or f"lakevec loop ({policy} policy)", clock=clock)
        report.promoted = promoted.count("promoted")
        report.duplicates = promoted.count("duplicate")
        report.refused = promoted.count("refused")
    build = index_corpus(paths.corpus, paths.index, clock=clock)
    report.reindexed = {"changed": build.changed, "added": build.added, "version": build.version}
    report.seconds = time.monotonic() - started
    report.finished_at = iso_ms(clock.now())
    return report


def new_loop_id(clock: Clock = SYSTEM_CLOCK) -> str:
    return f"loop-{clock.now().strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"


def run_loop(
    tasks: Sequence[AbTask],
    *,
    cycles: int,
    paths: LoopPaths,
    gateway: ChatGateway,
    loop_id: str | None = None,
    **options: Any,
) -> Iterator[CycleReport]:
    """Run ``cycles`` cycles, yielding each cycle's report as soon as it ends."""
    loop_id = loop_id or new_loop_id(options.get("clock", SYSTEM_CLOCK))
    for cycle in range(1, cycles + 1):
        yield run_cycle(tasks, cycle=cycle, loop_id=loop_id, paths=paths, gateway=gateway,
                        **options)
