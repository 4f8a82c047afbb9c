"""Open what the options name (retriever, gateway), replay once, and log under a root."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from lakevec.clock import Clock
from lakevec.paths import default_evidence
from lakevec.replay.engine import ReplayRequest, check_task, replay
from lakevec.replay.evidence import ReplayResult
from lakevec.replay.gateway import HttpGateway
from lakevec.retrieval.registry import DEFAULT_RETRIEVER, open_retriever
from lakevec.settings import DEFAULT_API, DEFAULT_TIMEOUT

__all__ = ["run_replay"]


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
) -> ReplayResult:
    """Open the retriever and gateway the options name, replay, and log under ``root``.

    The retriever is not opened with ``no_retrieval`` (no index needed) and
    no HTTP client is created with ``dry_run``. ``evidence_path`` defaults to
    ``<root>/data/_kb/replay_runs.jsonl``. Bad options (task, gateway URL,
    api, timeout) raise :class:`~lakevec.errors.UsageProblem` before the index
    is loaded.
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
            stack.callback(retriever.close)
        return replay(
            request,
            retriever=retriever,
            gateway=gateway,
            evidence_path=evidence_path if evidence_path is not None else default_evidence(root),
            local_model=local_model,
            escalation_model=escalation_model,
            clock=clock,
        )
