"""An A/B experiment: every task in every arm, one model, judged alike.

**Arms.** A retrieval arm per retriever (named ``retrieval:<retriever>``) and
the no-retrieval baseline (``no-retrieval``). Every run is an ordinary
``lakevec replay`` (:func:`lakevec.replay.engine.replay`, local model only, no
escalation) with the same model, options and sampling seed: its row goes to
the evidence log and its model calls on a tape, as any replay's, so
``lakevec verify`` re-checks experiment runs too. Each row is tagged
``lakevec.experiment = {id, arm, task_id, repeat, gate, verdict}``
(:class:`~lakevec.replay.evidence.Experiment`). Runs go task by task, every arm
of a task one after the other, so a change of machine load hits the arms of
a task alike, and an interrupted experiment leaves whole tasks behind.

**Judged alike.** The seed gate checks that an answer shares a token with the
bundle's validation checklist, and skips that check when there is no bundle:
judged as the pipeline judges it, a no-retrieval answer would face an easier
gate than its retrieval twin. So the experiment judges every answer itself,
with one gate for all arms (``seed``: :func:`~lakevec.replay.gate.validate_response`;
``strict``: :func:`~lakevec.replay.strict.strict_validate`, which also needs the
call's ``finish_reason``, read from the run's tape) and one checklist per
task: the bundle of the retrieval arm of the first retriever, which a
no-retrieval run is judged against although its model never saw it. The
verdict goes into ``lakevec.experiment.verdict``; the row's
``validation_result`` stays the pipeline's own (what ``lakevec verify``
re-checks). A failed model call fails in every gate.

**Repeats.** Repeat ``r`` samples with seed ``LOCAL_SEED + r - 1`` (the same in
every arm): with a fixed seed, a local model would answer a repeat
identically. An HTTP gateway gets the same request each repeat.

**Jobs.** With ``jobs > 1`` that many workers take the planned runs in order,
each with its own gateway (for a local model: its own loaded copy, one
thread each), so two single-threaded models use two cores without the
spin-waiting of one model on two threads. The answers do not change: each
call's answer depends only on the model file, the sampling settings and the
prompt (:mod:`lakevec.replay.local`). Retrievers are shared behind a lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lakevec.ab.grounding import GroundingScorer
from lakevec.ab.tasks import AbTask
from lakevec.ab.workers import LockedRetriever, wait_all
from lakevec.clock import Clock
from lakevec.errors import UsageProblem
from lakevec.replay.bundle import ContextBundle, build_context_bundle
from lakevec.replay.chat import ChatGateway, ChatOptions
from lakevec.replay.engine import ReplayRequest, replay
from lakevec.replay.evidence import Experiment, ReplayResult
from lakevec.replay.gate import ValidationResult, validate_response
from lakevec.replay.prompt import Prompt, build_prompt
from lakevec.replay.strict import strict_validate
from lakevec.replay.tape import Exchange, Tape
from lakevec.retrieval.base import Retriever
from lakevec.settings import AB_BASELINE_ARM, AB_GATES, RETRIEVERS

__all__ = [
    "FAILED_CALL",
    "Arm",
    "ExperimentRun",
    "RunOutcome",
    "judge",
    "plan_arms",
]

#: How the engine's reasons start when the (only) model call failed.
FAILED_CALL = "local call failed: "
RETRIEVAL_ARM = "retrieval"


@dataclass(frozen=True)
class Arm:
    """One arm: retrieval with ``retriever``, or the no-retrieval baseline (None)."""

    name: str
    retriever: str | None


def plan_arms(arms: Sequence[str], retrievers: Sequence[str]) -> list[Arm]:
    """The arms ``--arms`` and ``--retrievers`` name, in order (UsageProblem when bad)."""
    known = (RETRIEVAL_ARM, AB_BASELINE_ARM)
    if not arms:
        raise UsageProblem(f"--arms is empty; name some of: {', '.join(known)}")
    for name in [*arms, *retrievers]:
        if not name:
            raise UsageProblem("--arms and --retrievers take comma-separated names, none empty")
    unknown = [a for a in arms if a not in known]
    if unknown:
        raise UsageProblem(f"unknown arm {unknown[0]!r}; use {', '.join(known)}")
    bad = [r for r in retrievers if r not in RETRIEVERS]
    if bad:
        raise UsageProblem(f"unknown retriever {bad[0]!r}; use one of {', '.join(RETRIEVERS)}")
    if len(set(arms)) != len(arms) or len(set(retrievers)) != len(retrievers):
        raise UsageProblem("--arms and --retrievers must not repeat a name")
    if not retrievers:
        raise UsageProblem("--retrievers is empty: the retrieval arm and the checklist need one")
    planned: list[Arm] = []
    for name in arms:
        if name == RETRIEVAL_ARM:
            planned += [Arm(f"{RETRIEVAL_ARM}:{r}", r) for r in retrievers]
        else:
            planned.append(Arm(AB_BASELINE_ARM, None))
    return planned


@dataclass(frozen=True)
class RunOutcome:
    """One finished run as the experiment saw it (its row is in the log)."""

    task_id: str
    arm: str
    repeat: int
    run_id: str
    passed: bool  # the experiment's verdict (its gate)
    reasons: tuple[str, ...]
    passed_by_gate: dict[str, bool]  # the verdict of every gate, for comparison
    pipeline_passed: bool  # the row's validation_result (the seed gate as the pipeline ran it)
    failed_call: bool
    grounding: float | None  # None: the task names no gold playbook
    duration_ms: int
    call_ms: float | None
    prompt_tokens: int | None
    completion_tokens: int | None
    finish_reason: str | None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _last_exchange(tape: Tape | None) -> Exchange | None:
    return tape.exchanges[-1] if tape is not None and tape.exchanges else None


def judge(
    gate: str,
    result: ReplayResult,
    checklist: ContextBundle | None,
    prompt: Prompt,
    finish_reason: str | None,
) -> ValidationResult:
    """The experiment's verdict on one run (see the module docstring)."""
    reasons = result.validation_result.reasons
    if reasons and reasons[0].startswith(FAILED_CALL):
        return ValidationResult(passed=False, reasons=list(reasons))
    if gate == "strict":
        return strict_validate(
            result.model_response, checklist, prompt=prompt, finish_reason=finish_reason
        )
    return validate_response(result.model_response, checklist)


@dataclass
class ExperimentRun:
    """Runs an experiment's plan; :attr:`outcomes` holds every finished run.

    ``gateways(repeat, worker)`` is the gateway of a repeat (the same model
    with that repeat's seed) for worker ``0..jobs-1``; ``retrievers`` maps each
    retrieval arm's retriever name to an open retriever, and the first one
    supplies every task's checklist. Rows are appended as each run finishes,
    so an interrupted :meth:`run` (Ctrl-C) keeps every finished run in the log
    and in :attr:`outcomes`.
    """

    experiment_id: str
    tasks: Sequence[AbTask]
    arms: Sequence[Arm]
    gate: str
    repeats: int
    options: ChatOptions
    model: str
    gateways: Callable[[int, int], ChatGateway]
    retrievers: dict[str, Retriever]
    evidence_path: Path
    scorer: GroundingScorer | None = None
    tape_dir: Path | None = None
    clock: Clock | None = None
    jobs: int = 1
    outcomes: list[RunOutcome] = field(default_factory=list)
    bundles: dict[tuple[str, str], ContextBundle] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.gate not in AB_GATES:
            raise UsageProblem(f"unknown gate {self.gate!r}; use one of {', '.join(AB_GATES)}")
        if self.repeats < 1:
            raise UsageProblem(f"--repeats must be at least 1, got {self.repeats}")
        if not self.retrievers:
            raise UsageProblem("an experiment needs a retriever (for the checklist)")
        missing = [
            a.retriever for a in self.arms if a.retriever and a.retriever not in self.retrievers
        ]
        if missing:
            raise UsageProblem(f"no open retriever {missing[0]!r} for its arm")
        if len({a.name for a in self.arms}) != len(self.arms):
            raise UsageProblem("arm names must be unique")
        if self.jobs < 1:
            raise UsageProblem(f"--jobs must be at least 1, got {self.jobs}")
        if self.jobs > 1:
            self.retrievers = {n: LockedRetriever(r) for n, r in self.retrievers.items()}
        self._lock = threading.Lock()

    @property
    def checklist_retriever(self) -> str:
        return next(iter(self.retrievers))

    def bundle(self, task: AbTask, retriever: str) -> ContextBundle:
        """The bundle ``retriever`` builds for ``task`` (computed once)."""
        key = (task.id, retriever)
        if key not in self.bundles:
            self.bundles[key] = build_context_bundle(self.retrievers[retriever], task.task)
        return self.bundles[key]

    def prompts(self) -> list[tuple[str, str]]:
        """Every (system, user) prompt the plan sends, e.g. to size a local model's context."""
        out = []
        for task in self.tasks:
            for arm in self.arms:
                bundle = self.bundle(task, arm.retriever) if arm.retriever else None
                prompt = build_prompt(task.task, bundle)
                out.append((prompt.system, prompt.user))
        return out

    def plan(self) -> list[tuple[int, AbTask, Arm]]:
        """(repeat, task, arm) of every run, in running order."""
        return [
            (repeat, task, arm)
            for repeat in range(1, self.repeats + 1)
            for task in self.tasks
            for arm in self.arms
        ]

    def run(
        self,
        on_run: Callable[[RunOutcome], None] | None = None,
        on_interrupt: Callable[[int], None] | None = None,
    ) -> list[RunOutcome]:
        """Run every planned run not finished yet; ``on_run`` sees each outcome.

        Ctrl-C (KeyboardInterrupt) stops the experiment; :attr:`outcomes` then
        holds every run whose row was written. With one job the run in progress
        is abandoned. With several, the workers (daemon threads) start no
        further run and the runs in progress are finished and logged first
        (``on_interrupt(in_progress)`` says so); a second Ctrl-C abandons them
        (a row is one write, never torn).
        """
        done = {(o.repeat, o.task_id, o.arm) for o in self.outcomes}
        todo = [run for run in self.plan() if (run[0], run[1].id, run[2].name) not in done]
        for _, task, arm in todo:  # every bundle up front: the workers only read them
            self.bundle(task, arm.retriever or self.checklist_retriever)

        def finish(outcome: RunOutcome) -> None:
            with self._lock:
                self.outcomes.append(outcome)
                if on_run is not None:
                    on_run(outcome)

        if self.jobs == 1:
            for repeat, task, arm in todo:
                finish(self.run_one(repeat, task, arm, worker=0))
            return self.outcomes
        pending = list(reversed(todo))
        stop = threading.Event()
        failures: list[BaseException] = []
        busy: set[int] = set()
        ended = [threading.Event() for _ in range(self.jobs)]

        def work(worker: int) -> None:
            try:
                while not stop.is_set():
                    with self._lock:
                        if not pending:
                            return
                        repeat, task, arm = pending.pop()
                        busy.add(worker)
                    try:
                        finish(self.run_one(repeat, task, arm, worker=worker))
                    except Exception as exc:  # noqa: BLE001 - re-raised by the calling thread
                        failures.append(exc)
                        stop.set()
                    finally:
                        with self._lock:
                            busy.discard(worker)
            finally:
                ended[worker].set()

        for w in range(self.jobs):
            threading.Thread(target=work, args=(w,), daemon=True, name=f"lakevec-ab-{w}").start()
        try:
            wait_all(ended)
        except KeyboardInterrupt:
            stop.set()
            if on_interrupt is not None:
                on_interrupt(len(busy))
            wait_all(ended)  # a second Ctrl-C leaves here and abandons the runs in progress
            raise
        if failures:
            raise failures[0]
        return self.outcomes

    def run_one(self, repeat: int, task: AbTask, arm: Arm, *, worker: int = 0) -> RunOutcome:
        """One replay of ``task`` in ``arm``: logged, taped, tagged and judged."""
        checklist = self.bundle(task, arm.retriever or self.checklist_retriever)
        judged: list[tuple[dict[str, ValidationResult], Exchange | None]] = []

        def tag(result: ReplayResult, tape: Tape | None) -> Experiment:
            exchange = _last_exchange(tape)
            finish = exchange.finish_reason if exchange is not None else None
            prompt = build_prompt(task.task, result.context_bundle)
            verdicts = {
                gate: judge(gate, result, checklist, prompt, finish if isinstance(finish, str)
                            else None)
                for gate in AB_GATES
            }
            judged.append((verdicts, exchange))
            return Experiment(
                id=self.experiment_id, arm=arm.name, task_id=task.id, repeat=repeat,
                gate=self.gate, verdict=verdicts[self.gate],
            )

        request = ReplayRequest(
            task=task.task, local_only=True, no_retrieval=arm.retriever is None,
            max_tokens=self.options.max_tokens, temperature=self.options.temperature,
        )
        result = replay(
            request,
            retriever=self.retrievers[arm.retriever] if arm.retriever else None,
            gateway=self.gateways(repeat, worker),
            evidence_path=self.evidence_path,
            local_model=self.model,
            clock=self.clock,
            tape_dir=self.tape_dir,
            tag=tag,
        )
        verdicts, exchange = judged[-1]  # the engine tags every run it records
        verdict = verdicts[self.gate]
        usage = exchange.usage if exchange is not None else None
        usage = usage if isinstance(usage, dict) else {}
        finish = exchange.finish_reason if exchange is not None else None
        grounding = None
        if self.scorer is not None and task.gold is not None:
            grounding = self.scorer.score(result.model_response, task.gold, task=task.task).score
        reasons = result.validation_result.reasons
        return RunOutcome(
            task_id=task.id,
            arm=arm.name,
            repeat=repeat,
            run_id=result.recorded_run_id,
            passed=verdict.passed,
            reasons=tuple(verdict.reasons),
            passed_by_gate={gate: v.passed for gate, v in verdicts.items()},
            pipeline_passed=result.validation_result.passed,
            failed_call=bool(reasons) and reasons[0].startswith(FAILED_CALL),
            grounding=grounding,
            duration_ms=result.duration_ms,
            call_ms=exchange.wall_ms if exchange is not None else None,
            prompt_tokens=_int(usage.get("prompt_tokens")),
            completion_tokens=_int(usage.get("completion_tokens")),
            finish_reason=finish if isinstance(finish, str) else None,
        )

