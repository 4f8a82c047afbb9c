"""The replay pipeline: retrieve → bundle → prompt → local model → gate → escalate → log.

Behaviour follows the seed runtimes: a failed model call or a failed gate is
*recorded* in ``validation_result`` (the run is still logged); infrastructure
failures (no index, unreadable corpus, log not writable) raise
:class:`~lakevec.errors.LakevecError` subclasses.
"""

from __future__ import annotations

import os
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from lakevec import __version__
from lakevec.bundle import ContextBundle, build_context_bundle, build_prompt, js_len, js_slice
from lakevec.corpus import text_sha256
from lakevec.errors import UsageProblem
from lakevec.evidence import Provenance, ReplayResult, RetrievedIds, append_evidence
from lakevec.gateway import DEFAULT_TIMEOUT, ChatGateway, ChatResult, HttpGateway
from lakevec.index import IndexSnapshot, iso_ms
from lakevec.paths import default_evidence
from lakevec.retrieve import DEFAULT_RETRIEVER, Retriever, open_retriever
from lakevec.validate import ValidationResult, validate_response

__all__ = [
    "DEFAULT_ESCALATION_MODEL",
    "DEFAULT_LOCAL_MODEL",
    "ESCALATION_MODEL_ENV",
    "LOCAL_MODEL_ENV",
    "MAX_TASK_CHARS",
    "Clock",
    "ReplayRequest",
    "SystemClock",
    "dry_run_response",
    "escalation_model_from_env",
    "format_recorded_at",
    "format_report",
    "local_model_from_env",
    "replay",
    "run_replay",
    "task_hash",
]

LOCAL_MODEL_ENV = "LH_REPLAY_LOCAL_MODEL"
ESCALATION_MODEL_ENV = "LH_REPLAY_ESCALATION_MODEL"
DEFAULT_LOCAL_MODEL = "qwen3.5:latest"
DEFAULT_ESCALATION_MODEL = "deepseek-v3.1:671b"
# A task is a prompt, not a document: beyond this it would dwarf the context
# bundle and most local models' windows, so it is refused up front.
MAX_TASK_CHARS = 100_000
ESCALATED_SUFFIX = "\n\n[ESCALATED]"


def local_model_from_env() -> str:
    return os.environ.get(LOCAL_MODEL_ENV) or DEFAULT_LOCAL_MODEL


def escalation_model_from_env() -> str:
    return os.environ.get(ESCALATION_MODEL_ENV) or DEFAULT_ESCALATION_MODEL


class ReplayRequest(BaseModel):
    """What to replay and how (the seed's ReplayRequest)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: str
    local_only: bool = False  # never escalate; just record the gate's verdict
    allow_escalation: bool = False  # try the escalation model when the gate fails
    no_retrieval: bool = False  # baseline: no context bundle
    dry_run: bool = False  # deterministic synthetic answer, no gateway call


class Clock(Protocol):
    """Wall time for ``recorded_at`` and a monotonic timer for ``duration_ms``."""

    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


def format_recorded_at(moment: datetime) -> str:
    """``Date.prototype.toISOString()``: UTC, millisecond precision, ``Z`` suffix."""
    if moment.tzinfo is None:
        raise ValueError("recorded_at needs a timezone-aware datetime")
    return iso_ms(moment)


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
    if len(task) > MAX_TASK_CHARS:
        raise UsageProblem(
            f"--task is {len(task):,} characters; the limit is {MAX_TASK_CHARS:,} — "
            "pass a task description, not a document"
        )
    try:
        task.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageProblem("--task is not valid UTF-8 text") from None


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
class _DryRunGateway:
    """Answers without a network; the second call is marked ``[ESCALATED]`` like the seed."""

    response: str
    calls: int = field(default=0)

    def chat(self, model: str, system: str, user: str) -> ChatResult:
        self.calls += 1
        suffix = ESCALATED_SUFFIX if self.calls >= 2 else ""
        return ChatResult(ok=True, content=self.response + suffix)


def _manifest_facts(retriever: object) -> tuple[int | None, str | None, str | None]:
    """(index version, manifest sha256, embedding model) of an index-backed retriever.

    Read from the snapshot the retriever searched (facts captured when it was
    opened), so provenance costs nothing per run and survives snapshot GC.
    """
    snapshot = getattr(retriever, "snapshot", None)
    if not isinstance(snapshot, IndexSnapshot):
        return None, None, None
    manifest = snapshot.manifest
    return manifest.version, snapshot.manifest_sha256, manifest.model.model_id


def _provenance(retriever: Retriever | None, api: str) -> Provenance:
    version, digest, model = _manifest_facts(retriever)
    name = getattr(retriever, "name", None)
    return Provenance(
        version=__version__,
        retriever=name if isinstance(name, str) else None,
        index_version=version,
        manifest_sha256=digest,
        embedding_model=model,
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
    """
    check_task(request.task)
    if retriever is None and not request.no_retrieval:
        raise UsageProblem("a retriever is required unless no_retrieval is set")
    if gateway is None and not request.dry_run:
        raise UsageProblem("a gateway is required unless dry_run is set")
    clock = clock or SystemClock()
    local = local_model or local_model_from_env()
    escalation = escalation_model or escalation_model_from_env()

    started = clock.monotonic()
    recorded_at = format_recorded_at(clock.now())
    hash_hex = task_hash(request.task)

    bundle = None
    if retriever is not None and not request.no_retrieval:
        bundle = build_context_bundle(retriever, request.task)
    prompt = build_prompt(request.task, bundle)
    caller: ChatGateway
    if request.dry_run:
        caller = _DryRunGateway(dry_run_response(request.task, bundle))
        api = "dry-run"
    else:
        assert gateway is not None
        caller = gateway
        api = str(getattr(gateway, "api", type(gateway).__name__))

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
        lakevec=_provenance(None if request.no_retrieval else retriever, api),
    )
    if evidence_path is not None:
        append_evidence(evidence_path, result)
    return result


def run_replay(
    request: ReplayRequest,
    *,
    root: Path,
    retriever_kind: str = DEFAULT_RETRIEVER,
    index_dir: Path | None = None,
    corpus_path: Path | None = None,
    model: str | None = None,
    gateway_url: str | None = None,
    api: str = "lakehouse",
    timeout: float = DEFAULT_TIMEOUT,
    local_model: str | None = None,
    escalation_model: str | None = None,
    evidence_path: Path | None = None,
    clock: Clock | None = None,
) -> ReplayResult:
    """Open the retriever and gateway the options name, replay, and log under ``root``.

    The retriever is not opened with ``no_retrieval`` (no index needed) and
    no HTTP client is created with ``dry_run``. ``evidence_path`` defaults to
    ``<root>/data/_kb/replay_runs.jsonl``.
    """
    check_task(request.task)
    with ExitStack() as stack:
        gateway = None
        if not request.dry_run:
            # Built first: a malformed URL is a usage error and must not cost an index load.
            gateway = stack.enter_context(HttpGateway(gateway_url, api=api, timeout=timeout))
        retriever = None
        if not request.no_retrieval:
            retriever = open_retriever(
                retriever_kind, root=root, index_dir=index_dir, corpus_path=corpus_path,
                model=model,
            )
            stack.callback(_close_retriever, retriever)
        result = replay(
            request,
            retriever=retriever,
            gateway=gateway,
            evidence_path=evidence_path if evidence_path is not None else default_evidence(root),
            local_model=local_model,
            escalation_model=escalation_model,
            clock=clock,
        )
    return result


def _close_retriever(retriever: Retriever) -> None:
    """Release a retriever's files (an index snapshot keeps its record store open)."""
    for owner in (retriever, getattr(retriever, "snapshot", None)):
        close = getattr(owner, "close", None)
        if callable(close):
            close()
            return


RESPONSE_PREVIEW_CHARS = 1500


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
