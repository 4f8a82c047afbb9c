"""lakevec: local ANN retrieval layer for LLM replay pipelines.

The public API is re-exported here lazily (PEP 562), so ``import lakevec``
and the CLI's start-up stay cheap: a name's module is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # corpus
    "PlaybookRecord": "lakevec.corpus",
    "Corpus": "lakevec.corpus",
    "read_corpus": "lakevec.corpus",
    "embed_text": "lakevec.corpus",
    # embedding
    "Embedder": "lakevec.embed.base",
    "HashEmbedder": "lakevec.embed.hashing",
    "SentenceTransformerEmbedder": "lakevec.embed.sentence",
    "load_embedder": "lakevec.embed.loader",
    "load_query_embedder": "lakevec.embed.loader",
    # index
    "HnswParams": "lakevec.index.manifest",
    "IndexManifest": "lakevec.index.manifest",
    "StoredRecord": "lakevec.index.manifest",
    "IndexSnapshot": "lakevec.index.snapshot",
    "open_index": "lakevec.index.snapshot",
    "BuildReport": "lakevec.index.build",
    "build_index": "lakevec.index.build",
    "index_corpus": "lakevec.index.update",
    "index_status": "lakevec.index.status",
    # retrieval
    "Hit": "lakevec.retrieval.base",
    "Retriever": "lakevec.retrieval.base",
    "SearchFilters": "lakevec.retrieval.filters",
    "JaccardRetriever": "lakevec.retrieval.jaccard",
    "DenseRetriever": "lakevec.retrieval.dense",
    "BM25Retriever": "lakevec.retrieval.bm25",
    "HybridRetriever": "lakevec.retrieval.hybrid",
    "open_retriever": "lakevec.retrieval.registry",
    "retriever_for": "lakevec.retrieval.registry",
    "RETRIEVERS": "lakevec.settings",
    "DEFAULT_RETRIEVER": "lakevec.settings",
    # replay
    "ContextBundle": "lakevec.replay.bundle",
    "RetrievedArtifact": "lakevec.replay.bundle",
    "build_context_bundle": "lakevec.replay.bundle",
    "build_prompt": "lakevec.replay.prompt",
    "ValidationResult": "lakevec.replay.gate",
    "validate_response": "lakevec.replay.gate",
    "ChatGateway": "lakevec.replay.gateway",
    "ChatResult": "lakevec.replay.gateway",
    "HttpGateway": "lakevec.replay.gateway",
    "ReplayResult": "lakevec.replay.evidence",
    "ReplayRunRow": "lakevec.replay.evidence",
    "append_evidence": "lakevec.replay.evidence",
    "ReplayRequest": "lakevec.replay.engine",
    "replay": "lakevec.replay.engine",
    "run_replay": "lakevec.replay.runner",
    # service
    "ServerSettings": "lakevec.service.settings",
    "create_app": "lakevec.service.app",
    "ServiceClient": "lakevec.service.client",
    # clock
    "Clock": "lakevec.clock",
    "SystemClock": "lakevec.clock",
    # errors
    "LakevecError": "lakevec.errors",
    "UsageProblem": "lakevec.errors",
    "CorpusError": "lakevec.errors",
    "IndexMissingError": "lakevec.errors",
    "IndexCorruptError": "lakevec.errors",
    "ModelMismatchError": "lakevec.errors",
    "ModelLoadError": "lakevec.errors",
    "IndexLockedError": "lakevec.errors",
    "GatewayError": "lakevec.errors",
    "EvidenceError": "lakevec.errors",
    "ExportError": "lakevec.errors",
    "ServiceError": "lakevec.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lakevec' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

