"""Open what the options name (retriever, gateway), replay once, and log under a root."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from lakevec.clock import Clock
from lakevec.errors import UsageProblem
from lakevec.paths import default_evidence
from lakevec.replay.bundle import build_context_bundle
from lakevec.replay.chat import ChatGateway
from lakevec.replay.engine import ReplayRequest, check_task, replay
from lakevec.replay.evidence import ReplayResult
from lakevec.replay.local import LocalGateway
from lakevec.replay.prompt import build_prompt
from lakevec.retrieval.registry import DEFAULT_RETRIEVER, open_retriever
from lakevec.settings import DEFAULT_API, DEFAULT_TIMEOUT, LOCAL_API

__all__ = ["local_model_for", "open_gateway", "run_replay"]


def open_gateway(
    stack: ExitStack,
    api: str = DEFAULT_API,
    *,
    gateway_url: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    local_gguf: str | Path | None = None,
    threads: int | None = None,
) -> ChatGateway:
    """The gateway ``api`` names, closed with ``stack``.

    ``local`` is the in-process model (:class:`~lakevec.replay.local.LocalGateway`:
    ``local_gguf`` and ``threads``, or their environment variables); the model
    file is resolved and llama.cpp imported now (:class:`~lakevec.errors.LocalModelError`
    naming the fix), the model itself is loaded by :meth:`LocalGateway.warm` or
    the first call. Any other api is the HTTP gateway at ``gateway_url``.
    """
    if api == LOCAL_API:
        local = LocalGateway(local_gguf, threads=threads)
        stack.callback(local.close)
        return local
    if local_gguf is not None or threads is not None:
        raise UsageProblem(f"--local-gguf and --threads apply to --api {LOCAL_API} only")
    # Imported here: httpx (which pulls in rich) costs a dry run ~0.2 s for nothing.
    from lakevec.replay.gateway import HttpGateway

    return stack.enter_context(HttpGateway(gateway_url, api=api, timeout=timeout))


def local_model_for(gateway: ChatGateway | None, local_model: str | None) -> str | None:
    """The model name to ask ``gateway`` for: with ``--api local``, the loaded file's.

    ``None`` means the default: the GGUF's name for the local gateway (the
    environment's ``$LH_REPLAY_LOCAL_MODEL`` names a gateway model and does
    not apply), the environment's otherwise. A name the local gateway does
    not run is a usage error, not a failed call.
    """
    if not isinstance(gateway, LocalGateway):
        return local_model
    if local_model is not None and not gateway.serves(local_model):
        raise UsageProblem(
            f"--local-model {local_model!r} is not the model --api {LOCAL_API} runs "
            f"({gateway.model_name}); choose the model file with --local-gguf"
        )
    return gateway.model_name


def run_replay(
    request: ReplayRequest,
    *,
    root: Path,
    retriever_kind: str = DEFAULT_RETRIEVER,
    index_dir: Path | None = None,
    corpus_path: Path | None = None,
    model: str | None = None,
    gateway_url: str | None = None,
    api: str = DEFAULT_API,
    timeout: float = DEFAULT_TIMEOUT,
    local_model: str | None = None,
    escalation_model: str | None = None,
    evidence_path: Path | None = None,
    clock: Clock | None = None,
    tape_dir: Path | None = None,
    local_gguf: str | Path | None = None,
    threads: int | None = None,
) -> ReplayResult:
    """Open the retriever and gateway the options name, replay, and log under ``root``.

    The retriever is not opened with ``no_retrieval`` (no index needed) and
    no gateway is created with ``dry_run``. ``evidence_path`` defaults to
    ``<root>/data/_kb/replay_runs.jsonl`` and the tapes go beside it (``tapes/``,
    or ``tape_dir``). Bad options (task, gateway URL,
    api, timeout) raise :class:`~lakevec.errors.UsageProblem` before the index
    is loaded. With ``api="local"`` the model is loaded, sized for this run's
    prompt, before the run starts, so its load time is not in ``duration_ms``
    or the call's latency; ``local_model`` defaults to the model file's name
    (:func:`local_model_for`).
    """
    check_task(request.task)
    with ExitStack() as stack:
        gateway = None
        if not request.dry_run:
            # Built first: a malformed URL is a usage error and must not cost an index load.
            gateway = open_gateway(
                stack, api, gateway_url=gateway_url, timeout=timeout, local_gguf=local_gguf,
                threads=threads,
            )
            local_model = local_model_for(gateway, local_model)
        retriever = None
        if not request.no_retrieval:
            retriever = open_retriever(
                retriever_kind, root=root, index_dir=index_dir, corpus_path=corpus_path,
                model=model,
            )
            stack.callback(retriever.close)
        if isinstance(gateway, LocalGateway):
            # The same bundle and prompt the run builds (retrieval is deterministic).
            bundle = build_context_bundle(retriever, request.task) if retriever else None
            prompt = build_prompt(request.task, bundle)
            gateway.warm([(prompt.system, prompt.user)], request.options)
        return replay(
            request,
            retriever=retriever,
            gateway=gateway,
            evidence_path=evidence_path if evidence_path is not None else default_evidence(root),
            local_model=local_model,
            escalation_model=escalation_model,
            clock=clock,
            tape_dir=tape_dir,
        )
