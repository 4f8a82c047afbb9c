"""``lakevec ab`` as one library call: open what the options name, estimate, run, report.

:class:`AbSession` opens the task file, the gateway (by default the embedded
local model, loaded and sized for the longest prompt before anything is
timed), one retriever per retrieval arm and, when a task names a gold
playbook, the corpus for grounding. Then :meth:`AbSession.estimate` says what
the run will cost, :meth:`AbSession.run` runs it (rows appended as runs
finish) and :meth:`AbSession.report` summarises what finished, complete or not.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from lakevec import settings
from lakevec.ab.estimate import Estimate, earlier_calls, kind_estimate
from lakevec.ab.experiment import ExperimentRun, RunOutcome, plan_arms
from lakevec.ab.grounding import GroundingScorer
from lakevec.ab.summary import summarise
from lakevec.ab.tasks import load_tasks
from lakevec.clock import SYSTEM_CLOCK, Clock, iso_ms
from lakevec.corpus import read_corpus
from lakevec.errors import UsageProblem
from lakevec.paths import default_corpus, default_evidence
from lakevec.replay.chat import ChatGateway, ChatOptions
from lakevec.replay.engine import default_tape_dir
from lakevec.replay.llamacpp import ModelCache
from lakevec.replay.local import LocalGateway
from lakevec.replay.prompt import build_prompt
from lakevec.replay.runner import local_model_for, open_gateway
from lakevec.retrieval.base import Retriever
from lakevec.retrieval.registry import DEFAULT_RETRIEVER, open_retriever

__all__ = ["AbOptions", "AbSession", "default_jobs", "new_experiment_id", "usable_cpus"]


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def default_jobs(gateway: ChatGateway) -> int:
    """Workers when ``--jobs`` is not given: a local model fills the usable CPUs with
    single-purpose copies (CPUs // threads each); an HTTP gateway gets one at a time."""
    if isinstance(gateway, LocalGateway):
        return max(1, usable_cpus() // gateway.threads)
    return 1


def new_experiment_id(clock: Clock = SYSTEM_CLOCK) -> str:
    """``ab-<UTC time>-<6 hex>``: sortable, and unique across concurrent experiments."""
    return f"ab-{clock.now().strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class AbOptions:
    """Everything ``lakevec ab`` takes (see its --help)."""

    tasks_path: Path
    root: Path
    arms: tuple[str, ...] = settings.AB_ARMS
    retrievers: tuple[str, ...] = (DEFAULT_RETRIEVER,)
    repeats: int = 1
    gate: str = settings.DEFAULT_AB_GATE
    limit: int | None = None
    api: str = settings.DEFAULT_AB_API
    gateway_url: str | None = None
    timeout: float = settings.DEFAULT_TIMEOUT
    local_model: str | None = None
    local_gguf: str | None = None
    threads: int | None = None
    max_tokens: int | None = None
    temperature: float = settings.TEMPERATURE
    index_dir: Path | None = None
    corpus_path: Path | None = None
    model: str | None = None  # embedding model
    evidence_path: Path | None = None
    experiment_id: str | None = None
    jobs: int | None = None  # None: see default_jobs


class AbSession:
    """One experiment, from opening its resources to its report (a context manager)."""

    def __init__(self, options: AbOptions, *, clock: Clock | None = None) -> None:
        self.options = options
        self.clock = clock or SYSTEM_CLOCK
        self._stack = ExitStack()
        self._seconds = 0.0
        self._started_at: str | None = None
        self._load: tuple[float, ...] = ()
        self._estimate: Estimate | None = None
        self._gateways: dict[tuple[int, int], ChatGateway] = {}
        try:
            self._open()
        except BaseException:
            self._stack.close()
            raise

    def _open(self) -> None:
        o = self.options
        if o.limit is not None and o.limit < 1:
            raise UsageProblem(f"--limit must be at least 1, got {o.limit}")
        arms = plan_arms(o.arms, o.retrievers)
        tasks = load_tasks(o.tasks_path)
        if o.limit is not None:
            tasks = tasks[: o.limit]
        # The gateway first: a bad URL or a missing model must not cost an index load.
        gateway = open_gateway(
            self._stack, o.api, gateway_url=o.gateway_url, timeout=o.timeout,
            local_gguf=o.local_gguf, threads=o.threads,
        )
        self._gateways[1, 0] = gateway
        model = local_model_for(gateway, o.local_model) or settings.local_model()
        retrievers: dict[str, Retriever] = {}
        for name in o.retrievers:
            retriever = open_retriever(
                name, root=o.root, index_dir=o.index_dir, corpus_path=o.corpus_path,
                model=o.model,
            )
            self._stack.callback(retriever.close)
            retrievers[name] = retriever
        scorer = None
        if any(t.gold is not None for t in tasks):
            corpus = read_corpus(o.corpus_path or default_corpus(o.root))
            scorer = GroundingScorer(corpus.rows)
            tasks = load_tasks(o.tasks_path, corpus_ids=scorer.records)[: len(tasks)]
        evidence = o.evidence_path or default_evidence(o.root)
        self.experiment = ExperimentRun(
            experiment_id=o.experiment_id or new_experiment_id(self.clock),
            tasks=tasks, arms=arms, gate=o.gate, repeats=o.repeats,
            options=ChatOptions(
                max_tokens=o.max_tokens or settings.default_max_tokens(o.api),
                temperature=o.temperature,
            ),
            model=model, gateways=self.gateway, retrievers=retrievers, evidence_path=evidence,
            scorer=scorer, tape_dir=default_tape_dir(evidence), clock=self.clock,
            jobs=o.jobs or default_jobs(gateway),
        )
        if isinstance(gateway, LocalGateway):
            # Loaded now, with the context of the longest prompt: no run pays for a load.
            prompts = self.experiment.prompts()
            for worker in range(self.experiment.jobs):
                local = self.gateway(1, worker)
                assert isinstance(local, LocalGateway)
                local.warm(prompts, self.experiment.options)

    def gateway(self, repeat: int, worker: int = 0) -> ChatGateway:
        """The gateway of ``repeat`` for ``worker``.

        A local model samples with seed ``LOCAL_SEED + repeat - 1``; each worker
        has its own loaded copy (its own cache), shared by its repeats.
        """
        key = (repeat, worker)
        if key not in self._gateways:
            base = self._gateways[1, 0]
            if isinstance(base, LocalGateway):
                first = self._gateways.get((1, worker))
                if isinstance(first, LocalGateway):
                    cache = first.cache
                else:
                    cache = ModelCache(loader=base.cache.loader)
                    self._stack.callback(cache.close)
                sampling = replace(base.sampling, seed=base.sampling.seed + repeat - 1)
                self._gateways[key] = LocalGateway(
                    base.path, sampling=sampling, threads=base.threads, cache=cache,
                    clock=base.clock,
                )
            else:
                self._gateways[key] = base
        return self._gateways[key]

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stack.close()

    def estimate(self) -> Estimate:
        """Calls × seconds per call, by kind of prompt (see :mod:`lakevec.ab.estimate`)."""
        exp = self.experiment
        gateway = self.gateway(1)
        earlier = earlier_calls(
            exp.evidence_path, exp.tape_dir or default_tape_dir(exp.evidence_path), gateway,
            exp.model, exp.options,
        )
        first = exp.tasks[0]
        per_task = exp.repeats * len(exp.tasks)
        parts = []
        for kind, no_retrieval in (("retrieval", False), ("no-retrieval", True)):
            arms = [a for a in exp.arms if (a.retriever is None) == no_retrieval]
            calibration = None
            if arms:
                retriever = arms[0].retriever
                bundle = exp.bundle(first, retriever) if retriever else None
                prompt = build_prompt(first.task, bundle)
                calibration = (prompt.system, prompt.user)
            parts.append(kind_estimate(
                kind, per_task * len(arms), earlier[no_retrieval], calibration, gateway,
                exp.model, exp.options, self.clock,
            ))
        self._estimate = Estimate(tuple(parts), exp.jobs)
        return self._estimate

    def run(
        self,
        on_run: Callable[[RunOutcome], None] | None = None,
        on_interrupt: Callable[[int], None] | None = None,
    ) -> list[RunOutcome]:
        """Run the experiment (see :meth:`ExperimentRun.run`); Ctrl-C keeps finished runs."""
        self._load = _loadavg()
        started = self.clock.monotonic()
        self._started_at = iso_ms(self.clock.now())
        try:
            return self.experiment.run(on_run, on_interrupt)
        finally:
            self._seconds = self.clock.monotonic() - started

    def report(self) -> dict[str, Any]:
        """The report over the finished runs (``complete`` says whether that is all of them)."""
        exp = self.experiment
        gateway = self.gateway(1)
        local = gateway if isinstance(gateway, LocalGateway) else None
        checklist = exp.checklist_retriever
        meta: dict[str, Any] = {
            "experiment": exp.experiment_id,
            "tasks_file": str(self.options.tasks_path),
            "tasks": len(exp.tasks),
            "repeats": exp.repeats,
            "jobs": exp.jobs,
            "gate": exp.gate,
            "checklist_from": next(
                (a.name for a in exp.arms if a.retriever == checklist), f"retrieval:{checklist}"
            ),
            "model": {
                "api": gateway.api,
                "name": exp.model,
                "max_tokens": exp.options.max_tokens,
                "temperature": exp.options.temperature,
                "seed": local.sampling.seed if local is not None else None,
                "threads": local.threads if local is not None else None,
                "gguf": local.tape_config().get("gguf") if local is not None else None,
            },
            "evidence": str(exp.evidence_path),
            "started_at": self._started_at,
            "seconds": round(self._seconds, 1),
            "estimate": self._estimate.as_json() if self._estimate is not None else None,
            "machine": {
                "cpus": usable_cpus(),
                "loadavg_start": list(self._load),
                "loadavg_end": list(_loadavg()),
            },
        }
        planned = exp.repeats * len(exp.tasks)
        return summarise(exp.outcomes, exp.arms, planned_items=planned, meta=meta)


def _loadavg() -> tuple[float, ...]:
    try:
        return tuple(round(x, 2) for x in os.getloadavg())
    except OSError:
        return ()
