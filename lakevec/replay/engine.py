"""One replay run: retrieve → bundle → prompt → local model → gate → escalate → log.

Behaviour follows the seed runtimes: a failed model call or a failed gate is
*recorded* in ``validation_result`` (the run is still logged, whatever the
gateway answered); infrastructure failures (no index, unreadable corpus, log
not writable) raise :class:`~lakevec.errors.LakevecError` subclasses and bad
input raises :class:`~lakevec.errors.UsageProblem` before anything runs.

Every model call of a recording gateway goes on the run's tape
(:mod:`lakevec.replay.tape`), stored beside the log before the row is
appended, so a logged row never names a missing tape. ``lakevec verify``
calls :func:`replay` again with the row's bundle, a clock that gives the row's
times and a gateway answering from the tape (:mod:`lakevec.replay.verify`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from lakevec import __version__, settings
from lakevec.clock import SYSTEM_CLOCK, Clock, iso_ms
from lakevec.corpus import text_sha256
from lakevec.errors import UsageProblem
from lakevec.replay.bundle import ContextBundle, build_context_bundle
from lakevec.replay.chat import ChatGateway, ChatOptions, RecordingGateway
from lakevec.replay.evidence import (
    Experiment,
    Provenance,
    ReplayResult,
    RetrievedIds,
    append_evidence,
)
from lakevec.replay.gate import ValidationResult, validate_response
from lakevec.replay.jsstr import js_len, js_slice
from lakevec.replay.prompt import build_prompt
from lakevec.replay.reply import ChatResult
from lakevec.replay.tape import Tape, TapeRecorder, TapeRun, TapeStore
from lakevec.retrieval.base import Retriever

__all__ = [
    "DRY_RUN_API",
    "ESCALATED_SUFFIX",
    "RESPONSE_PREVIEW_CHARS",
    "DryRunGateway",
    "ReplayRequest",
    "Tagger",
    "check_model_name",
    "check_task",
    "default_tape_dir",
    "dry_run_response",
    "format_report",
    "provenance",
    "recorded_run_id",
    "replay",
    "task_hash",
]

ESCALATED_SUFFIX = "\n\n[ESCALATED]"
DRY_RUN_API = "dry-run"
RESPONSE_PREVIEW_CHARS = 1500


class ReplayRequest(BaseModel):
    """What to replay and how (the seed's ReplayRequest)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: str
    local_only: bool = False  # never escalate; just record the gate's verdict
    allow_escalation: bool = False  # try the escalation model when the gate fails
    no_retrieval: bool = False  # baseline: no context bundle
    dry_run: bool = False  # deterministic synthetic answer, no gateway call
    max_tokens: int = Field(settings.MAX_TOKENS, ge=1)  # sent with every model call
    temperature: float = Field(
        settings.TEMPERATURE, ge=0, le=settings.MAX_TEMPERATURE, allow_inf_nan=False
    )

    @property
    def options(self) -> ChatOptions:
        return ChatOptions(max_tokens=self.max_tokens, temperature=self.temperature)


#: Tags a finished run with its experiment before it is stored (lakevec.ab):
#: called with the result and its tape (None for a dry run).
Tagger = Callable[[ReplayResult, Tape | None], Experiment | None]


def default_tape_dir(evidence_path: Path) -> Path:
    """Where a log's tapes live: ``tapes/`` beside it."""
    return Path(evidence_path).parent / settings.TAPES_DIRNAME


def task_hash(task: str) -> str:
    """sha256 hex of the task's UTF-8 bytes (the Go port's rule)."""
    return text_sha256(task)


def recorded_run_id(hash_hex: str, recorded_at: str) -> str:
    """``replay:<task_hash[:16]>:<sha256(recorded_at)[:12]>`` (the Go port's rule)."""
    return f"replay:{hash_hex[:16]}:{task_hash(recorded_at)[:12]}"


def check_task(task: str) -> None:
    """Refuse tasks the pipeline cannot meaningfully run (raises UsageProblem)."""
    if not task.strip():
        raise UsageProblem("--task is empty; pass the task text to replay")
    if len(task) > settings.MAX_TASK_CHARS:
        raise UsageProblem(
            f"--task is {len(task):,} characters; the limit is {settings.MAX_TASK_CHARS:,} — "
            "pass a task description, not a document"
        )
    try:
        task.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageProblem("--task is not valid UTF-8 text") from None


def check_model_name(model: str, what: str) -> None:
    """Refuse a model name that cannot be sent or logged (raises UsageProblem).

    An environment variable holding bytes that are not UTF-8 arrives as lone
    surrogates, which no JSON request body or UTF-8 log line can carry.
    """
    try:
        model.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageProblem(f"the {what} model name is not valid UTF-8 text") from None


def dry_run_response(task: str, bundle: ContextBundle | None) -> str:
    """The seed's deterministic synthetic answer that echoes the bundle's signals."""
    lines = [f"Synthetic dry-run response for task: {js_slice(task, 120)}", ""]
    if bundle is not None:
        lines.append(
            f"Retrieved {len(bundle.retrieved_playbooks)} playbooks; "
            f"{len(bundle.prior_successful_outputs)} accepted, "
            f"{len(bundle.failure_patterns)} partial."
        )
        if bundle.validation_steps:
            lines.append("Following validation checklist:")
            lines += [f"- {step}" for step in bundle.validation_steps[:3]]
        if bundle.prior_successful_outputs:
            lines += ["", f"Anchored on prior accepted: {bundle.prior_successful_outputs[0].title}"]
    else:
        lines.append(
            "No retrieval context — answering from task alone. "
            "Verify and check produced output before approving."
        )
    return "\n".join(lines)


@dataclass
class DryRunGateway:
    """Answers without a network; the second call is marked ``[ESCALATED]`` like the seed."""

    response: str
    calls: int = field(default=0)
    api: str = DRY_RUN_API

    def chat(
        self, model: str, system: str, user: str, *, options: ChatOptions | None = None,
        recorder: TapeRecorder | None = None,
    ) -> ChatResult:
        self.calls += 1
        suffix = ESCALATED_SUFFIX if self.calls >= 2 else ""
        return ChatResult(ok=True, content=self.response + suffix)


def provenance(retriever: Retriever | None, api: str, tape: Tape | None = None) -> Provenance:
    """The row's ``lakevec`` key: version, retriever, index facts, gateway api and tape.

    Index facts come from the snapshot the retriever searched (captured when
    it was opened), so provenance costs nothing per run and survives GC.
    """
    snapshot = retriever.snapshot if retriever is not None else None
    manifest = snapshot.manifest if snapshot is not None else None
    return Provenance(
        version=__version__,
        retriever=retriever.name if retriever is not None else None,
        index_version=manifest.version if manifest is not None else None,
        manifest_sha256=snapshot.manifest_sha256 if snapshot is not None else None,
        embedding_model=manifest.model.model_id if manifest is not None else None,
        gateway_api=api,
        tape=tape.digest if tape is not None else None,
        exchanges=len(tape.exchanges) if tape is not None else 0,
    )


def replay(
    request: ReplayRequest,
    *,
    retriever: Retriever | None,
    gateway: ChatGateway | None,
    evidence_path: Path | None,
    local_model: str | None = None,
    escalation_model: str | None = None,
    clock: Clock | None = None,
    tape_dir: Path | None = None,
    bundle: ContextBundle | None = None,
    tag: Tagger | None = None,
) -> ReplayResult:
    """Run one replay, store its tape and append its ``replay_run.v1`` row to ``evidence_path``.

    ``retriever`` may be None only with ``no_retrieval`` or a given ``bundle``
    (verification passes the row's: the retriever is not asked); ``gateway``
    only with ``dry_run``. ``evidence_path=None`` skips logging and storing
    the tape (library use, verification); ``tape_dir`` defaults to
    :func:`default_tape_dir`. Models default to ``$LH_REPLAY_LOCAL_MODEL`` /
    ``$LH_REPLAY_ESCALATION_MODEL``. ``tag`` names the experiment the run
    belongs to (``lakevec.experiment``), judged from the result and its tape
    before anything is stored. Whatever the gateway answers, the run ends
    with one row.
    """
    check_task(request.task)
    if retriever is None and bundle is None and not request.no_retrieval:
        raise UsageProblem("a retriever is required unless no_retrieval is set")
    if gateway is None and not request.dry_run:
        raise UsageProblem("a gateway is required unless dry_run is set")
    local = local_model or settings.local_model()
    escalation = escalation_model or settings.escalation_model()
    check_model_name(local, "local")
    check_model_name(escalation, "escalation")
    clock = clock or SYSTEM_CLOCK

    started = clock.monotonic()
    recorded_at = iso_ms(clock.now())
    hash_hex = task_hash(request.task)
    run_id = recorded_run_id(hash_hex, recorded_at)

    searched = None if request.no_retrieval else retriever
    if request.no_retrieval:
        bundle = None
    elif bundle is None and searched is not None:
        bundle = build_context_bundle(searched, request.task)
    prompt = build_prompt(request.task, bundle)
    caller: ChatGateway
    if request.dry_run:
        caller = DryRunGateway(dry_run_response(request.task, bundle))
    else:
        assert gateway is not None
        caller = gateway
    recorder = None
    if isinstance(caller, RecordingGateway):
        recorder = TapeRecorder(TapeRun(
            run_id=run_id, task_sha256=hash_hex, api=caller.api, gateway=caller.tape_config(),
            local_model=local, escalation_model=escalation, local_only=request.local_only,
            allow_escalation=request.allow_escalation, no_retrieval=request.no_retrieval,
            max_tokens=request.max_tokens, temperature=request.temperature,
        ))
    options = request.options

    path = [local]
    model_used = local
    response = ""
    first = caller.chat(local, prompt.system, prompt.user, options=options, recorder=recorder)
    if first.ok:
        response = first.content
        verdict = validate_response(response, bundle)
    else:
        verdict = ValidationResult(passed=False, reasons=[f"local call failed: {first.error}"])

    if not verdict.passed and request.allow_escalation and not request.local_only:
        path.append(escalation)
        second = caller.chat(
            escalation, prompt.system, prompt.user, options=options, recorder=recorder
        )
        if second.ok:
            response = second.content
            model_used = escalation
            verdict = validate_response(response, bundle)
            if verdict.passed:
                verdict.reasons.insert(0, f"recovered via escalation to {escalation}")
        else:
            verdict.reasons.append(f"escalation also failed: {second.error}")

    tape = recorder.tape() if recorder is not None else None
    result = ReplayResult(
        input_task=request.task,
        task_hash=hash_hex,
        retrieved_artifacts=RetrievedIds(
            rag_ids=[a.rag_id for a in bundle.retrieved_playbooks] if bundle else []
        ),
        context_bundle=bundle,
        model_response=response,
        model_used=model_used,
        escalation_path=path,
        validation_result=verdict,
        recorded_run_id=run_id,
        recorded_at=recorded_at,
        duration_ms=max(0, int((clock.monotonic() - started) * 1000)),
        lakevec=provenance(searched, caller.api, tape),
    )
    if tag is not None and result.lakevec is not None:
        result.lakevec = result.lakevec.model_copy(update={"experiment": tag(result, tape)})
    if evidence_path is not None:
        if tape is not None:  # first: a row must never name a tape that is not there
            TapeStore(tape_dir or default_tape_dir(evidence_path)).write(tape)
        append_evidence(evidence_path, result)
    return result


def format_report(result: ReplayResult) -> str:
    """The seed CLI's human-readable report of one run."""
    bundle = result.context_bundle
    retrieval = f"{len(bundle.retrieved_playbooks)} playbooks" if bundle else "DISABLED"
    verdict = result.validation_result
    reasons = f" ({'; '.join(verdict.reasons)})" if verdict.reasons else ""
    lines = [
        f"[replay] run_id={result.recorded_run_id}",
        f"[replay] retrieval: {retrieval}",
        f"[replay] escalation_path: {' → '.join(result.escalation_path)}",
        f"[replay] model_used: {result.model_used} · {result.duration_ms}ms",
        f"[replay] validation: {'PASS' if verdict.passed else 'FAIL'}{reasons}",
        "",
        "─── response ───",
        js_slice(result.model_response, RESPONSE_PREVIEW_CHARS),
    ]
    extra = js_len(result.model_response) - RESPONSE_PREVIEW_CHARS
    if extra > 0:
        lines.append(f"... [{extra} more chars]")
    return "\n".join(lines)
