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
    "Embedder": "lakevec.embed",
    "HashEmbedder": "lakevec.embed",
    "SentenceTransformerEmbedder": "lakevec.embed",
    "load_embedder": "lakevec.embed",
    # index
    "HnswParams": "lakevec.index",
    "IndexManifest": "lakevec.index",
    "IndexSnapshot": "lakevec.index",
    "StoredRecord": "lakevec.index",
    "BuildReport": "lakevec.index",
    "build_index": "lakevec.index",
    "open_index": "lakevec.index",
    "index_corpus": "lakevec.indexer",
    "index_status": "lakevec.status",
    # retrieval
    "Hit": "lakevec.retrieve",
    "Retriever": "lakevec.retrieve",
    "JaccardRetriever": "lakevec.retrieve",
    "DenseRetriever": "lakevec.retrieve",
    "open_dense": "lakevec.retrieve",
    "open_retriever": "lakevec.retrieve",
    # replay
    "ContextBundle": "lakevec.bundle",
    "RetrievedArtifact": "lakevec.bundle",
    "build_context_bundle": "lakevec.bundle",
    "build_prompt": "lakevec.bundle",
    "ValidationResult": "lakevec.validate",
    "validate_response": "lakevec.validate",
    "ChatGateway": "lakevec.gateway",
    "ChatResult": "lakevec.gateway",
    "HttpGateway": "lakevec.gateway",
    "ReplayResult": "lakevec.evidence",
    "ReplayRunRow": "lakevec.evidence",
    "append_evidence": "lakevec.evidence",
    "ReplayRequest": "lakevec.replay",
    "replay": "lakevec.replay",
    "run_replay": "lakevec.replay",
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

