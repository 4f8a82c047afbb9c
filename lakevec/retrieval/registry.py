"""Every retriever by name, the default, and the one factory every caller uses.

The CLI (``search``, ``replay``), the service, its client and the evaluator
all open retrievers here, so the same query ranks the same way everywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from lakevec.corpus import CorpusFormat
from lakevec.errors import UsageProblem
from lakevec.paths import default_corpus, default_index
from lakevec.retrieval.base import Retriever
from lakevec.settings import DEFAULT_RETRIEVER, INDEX_RETRIEVERS, RETRIEVERS

if TYPE_CHECKING:
    from lakevec.embed.base import Embedder
    from lakevec.index.snapshot import IndexSnapshot
    from lakevec.retrieval.dense import FilterPolicy

# Each retriever's modules are imported when it is opened: a cold `search` or
# `replay` loads only what the chosen retriever uses (jaccard: no numpy,
# hnswlib or onnxruntime; bm25: no onnxruntime; hnsw/exact: no BM25 index).

__all__ = [
    "DEFAULT_RETRIEVER",
    "INDEX_RETRIEVERS",
    "RETRIEVERS",
    "check_kind",
    "needs_embedder",
    "open_retriever",
    "query_embedder_for",
    "retriever_for",
]


def check_kind(kind: str, allowed: tuple[str, ...] = RETRIEVERS) -> None:
    if kind not in allowed:
        raise UsageProblem(f"unknown retriever {kind!r}; choose one of {', '.join(allowed)}")


def needs_embedder(kind: str) -> bool:
    """Whether the retriever embeds the query (dense and hybrid do)."""
    return kind in ("hybrid", "hnsw", "exact")


def query_embedder_for(snapshot: IndexSnapshot, model: str | None = None) -> Embedder:
    """The query embedder for a snapshot: its own model (or a verified ``model``).

    The torch-free ONNX export when the build made one; loading it is cheap
    (weights load lazily) and yields the fingerprint for the model check.
    """
    from lakevec.embed.loader import load_query_embedder
    from lakevec.index.snapshot import check_model

    embedder = load_query_embedder(model or snapshot.manifest.model.spec)
    check_model(snapshot.manifest, embedder)
    return embedder


def retriever_for(
    kind: str,
    snapshot: IndexSnapshot,
    embedder: Embedder | None,
    *,
    owns_snapshot: bool = False,
    policy: FilterPolicy | None = None,
) -> Retriever:
    """A retriever of an index kind over an open snapshot (the service and eval use this).

    ``policy`` tunes when a filtered dense search ranks exactly (default:
    :data:`~lakevec.retrieval.dense.DEFAULT_FILTER_POLICY`).
    """
    check_kind(kind, INDEX_RETRIEVERS)
    if kind == "bm25":
        from lakevec.retrieval.bm25 import BM25Retriever

        return BM25Retriever(snapshot, owns_snapshot=owns_snapshot)
    if embedder is None:
        raise UsageProblem(f"retriever {kind} needs a query embedder")
    from lakevec.retrieval.dense import DEFAULT_FILTER_POLICY, DenseRetriever

    policy = policy or DEFAULT_FILTER_POLICY
    if kind == "hybrid":
        from lakevec.retrieval.hybrid import HybridRetriever

        return HybridRetriever(snapshot, embedder, owns_snapshot=owns_snapshot, policy=policy)
    return DenseRetriever(snapshot, embedder, exact=kind == "exact",
                          owns_snapshot=owns_snapshot, policy=policy)


def open_retriever(
    kind: str = DEFAULT_RETRIEVER,
    *,
    root: Path,
    index_dir: Path | None = None,
    corpus_path: Path | None = None,
    model: str | None = None,
    corpus_format: CorpusFormat = "auto",
) -> Retriever:
    """Open a retriever by name; index kinds read the live snapshot, ``jaccard`` the corpus.

    ``close()`` releases what it opened.
    """
    check_kind(kind)
    if kind == "jaccard":
        from lakevec.corpus import read_corpus
        from lakevec.retrieval.jaccard import JaccardRetriever

        corpus = read_corpus(corpus_path or default_corpus(root), corpus_format)
        return JaccardRetriever(corpus.rows)
    from lakevec.index.snapshot import open_index

    snapshot = open_index(index_dir or default_index(root))
    try:
        embedder = query_embedder_for(snapshot, model) if needs_embedder(kind) else None
        return retriever_for(kind, snapshot, embedder, owns_snapshot=True)
    except BaseException:
        snapshot.close()
        raise
