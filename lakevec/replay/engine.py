"""One replay run: retrieve → bundle → prompt → local model → gate → escalate → log.

Behaviour follows the seed runtimes: a failed model call or a failed gate is
*recorded* in ``validation_result`` (the run is still logged, whatever the
gateway answered); infrastructure failures (no index, unreadable corpus, log
not writable) raise :class:`~lakevec.errors.LakevecError` subclasses and bad
input raises :class:`~lakevec.errors.UsageProblem` before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from lakevec import __version__, settings
from lakevec.clock import SYSTEM_CLOCK, Clock, iso_ms
from lakevec.corpus import text_sha256
from lakevec.errors import UsageProblem
from lakevec.replay.bundle import ContextBundle, build_context_bundle
from lakevec.replay.evidence import Provenance, ReplayResult, RetrievedIds, append_evidence
from lakevec.replay.gate import ValidationResult, validate_response
from lakevec.replay.gateway import ChatGateway, ChatResult
from lakevec.replay.jsstr import js_len, js_slice
from lakevec.replay.prompt import build_prompt
from lakevec.retrieval.base import Retriever

__all__ = [
    "DRY_RUN_API",
    "ESCALATED_SUFFIX",
    "RESPONSE_PREVIEW_CHARS",
    "DryRunGateway",
    "ReplayRequest",
    "check_model_name",
    "check_task",
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

    def chat(self, model: str, system: str, user: str) -> ChatResult:
        self.calls += 1
        suffix = ESCALATED_SUFFIX if self.calls >= 2 else ""
        return ChatResult(ok=True, content=self.response + suffix)


def provenance(retriever: Retriever | None, api: str) -> Provenance:
    """The row's ``lakevec`` key: version, retriever, index facts and gateway api.

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
) -> ReplayResult:
    """Run one replay and append its ``replay_run.v1`` row to ``evidence_path``.

    ``retriever`` may be None only with ``no_retrieval``; ``gateway`` only with
    ``dry_run``. ``evidence_path=None`` skips logging (library use). Models
    default to ``$LH_REPLAY_LOCAL_MODEL`` / ``$LH_REPLAY_ESCALATION_MODEL``.
    Whatever the gateway answers, the run ends with one row.
    """
    check_task(request.task)
    if retriever is None and not request.no_retrieval:
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

    searched = None if request.no_retrieval else retriever
    bundle = build_context_bundle(searched, request.task) if searched is not None else None
    prompt = build_prompt(request.task, bundle)
    caller: ChatGateway
    if request.dry_run:
        caller = DryRunGateway(dry_run_response(request.task, bundle))
    else:
        assert gateway is not None
        caller = gateway

    path = [local]
    model_used = local
    response = ""
    first = caller.chat(local, prompt.system, prompt.user)
    if first.ok:
        response = first.content
        verdict = validate_response(response, bundle)
    else:
        verdict = ValidationResult(passed=False, reasons=[f"local call failed: {first.error}"])

    if not verdict.passed and request.allow_escalation and not request.local_only:
        path.append(escalation)
        second = caller.chat(escalation, prompt.system, prompt.user)
        if second.ok:
            response = second.content
            model_used = escalation
            verdict = validate_response(response, bundle)
            if verdict.passed:
                verdict.reasons.insert(0, f"recovered via escalation to {escalation}")
        else:
            verdict.reasons.append(f"escalation also failed: {second.error}")

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
        recorded_run_id=recorded_run_id(hash_hex, recorded_at),
        recorded_at=recorded_at,
        duration_ms=max(0, int((clock.monotonic() - started) * 1000)),
        lakevec=provenance(searched, caller.api),
    )
    if evidence_path is not None:
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
