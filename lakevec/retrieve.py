"""Retrievers: one interface, several ways to rank corpus records for a query.

``jaccard`` is the seed pipeline's keyword overlap, kept bit-for-bit so runs
can be compared; ``hnsw`` is dense ANN over an index built by
:func:`lakevec.index.build_index`; ``exact`` is brute-force dense search over
the same stored vectors (the ground truth for ANN recall); ``bm25``
(:mod:`lakevec.lexical`) and ``hybrid`` (:mod:`lakevec.hybrid`, BM25 + dense
fused by reciprocal rank fusion) are measured against them in docs/EVAL.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Self, runtime_checkable

from lakevec.corpus import CorpusFormat, PlaybookRecord, keyword_text, read_corpus
from lakevec.embed import Embedder, load_query_embedder
from lakevec.errors import UsageProblem
from lakevec.index import IndexSnapshot, check_model, open_index
from lakevec.paths import default_corpus, default_index

_TOKEN_SPLIT = re.compile(r"[^a-z0-9_]+")


@dataclass(frozen=True)
class Hit:
    """A retrieved record and its score (cosine similarity for dense retrievers)."""

    record: PlaybookRecord
    score: float


@runtime_checkable
class Retriever(Protocol):
    """Ranks records for a query. Results are best first, at most ``k`` long.

    A blank query returns ``[]``; so does a lexical query sharing no term
    with the corpus (lexical retrievers return only records that match).
    """

    name: str

    def search(self, query: str, k: int) -> list[Hit]: ...


def tokenize(text: str) -> set[str]:
    """The seed's tokenizer: lower-case, split on non ``[a-z0-9_]``, keep tokens of 3+ chars."""
    return {t for t in _TOKEN_SPLIT.split(text.lower()) if len(t) >= 3}


def jaccard(a: set[str], b: set[str]) -> float:
    if not a or not b:
        return 0.0
    inter = len(a & b)
    union = len(a) + len(b) - inter
    return inter / union if union else 0.0


jaccard_text = keyword_text  # the seed scores title, content and tags


class JaccardRetriever:
    """The seed's retrieval: Jaccard overlap of token sets, a full scan per query.

    Ties keep corpus order (the seed's sort is stable), and the seed's
    order of operations is kept: take the top ``k`` first, then drop zeros.
    """

    name = "jaccard"

    def __init__(self, records: Iterable[PlaybookRecord]) -> None:
        self.records = list(records)  # corpus order: the seed orders checklist steps by it
        self._tokens = [tokenize(jaccard_text(r)) for r in self.records]

    def search(self, query: str, k: int) -> list[Hit]:
        q = tokenize(query)
        scored = sorted(
            ((jaccard(q, toks), i) for i, toks in enumerate(self._tokens)),
            key=lambda s: -s[0],
        )
        return [Hit(self.records[i], score) for score, i in scored[: max(k, 0)] if score > 0]


def search_many(retriever: Retriever, queries: Sequence[str], k: int) -> list[list[Hit]]:
    """Search many queries, in one batch when the retriever supports it (dense ones do)."""
    batch = getattr(retriever, "search_many", None)
    if callable(batch):
        results: list[list[Hit]] = batch(queries, k)
        return results
    return [retriever.search(q, k) for q in queries]


class SnapshotRetriever:
    """Base of retrievers over an index snapshot: owns it (close / context manager)
    and answers single queries through the batched :meth:`search_many`."""

    name: str

    def __init__(self, snapshot: IndexSnapshot, embedder: Embedder) -> None:
        self.snapshot = snapshot
        self.embedder = embedder

    def close(self) -> None:
        self.snapshot.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def search(self, query: str, k: int) -> list[Hit]:
        return self.search_many([query], k)[0]

    def search_many(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        raise NotImplementedError


class DenseRetriever(SnapshotRetriever):
    """Dense retrieval over an index snapshot: HNSW (``hnsw``) or brute force (``exact``)."""

    def __init__(self, snapshot: IndexSnapshot, embedder: Embedder, *, exact: bool = False) -> None:
        super().__init__(snapshot, embedder)
        self.exact = exact
        self.name = "exact" if exact else "hnsw"

    def search_many(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        """Like :meth:`search` for many queries; embeds them in one batch."""
        out: list[list[Hit]] = [[] for _ in queries]
        # A blank query carries no intent; its embedding would rank arbitrary records.
        live = [i for i, q in enumerate(queries) if q.strip()]
        if not live:
            return out
        find = self.snapshot.exact if self.exact else self.snapshot.knn
        rows, scores = find(self.embedder.encode([queries[i] for i in live]), k)
        for i, rs, ss in zip(live, rows, scores, strict=True):
            out[i] = [Hit(self.snapshot.record(r), float(s)) for r, s in zip(rs, ss, strict=True)]
        return out


def open_dense(
    index_dir: Path, *, model: str | None = None, exact: bool = False
) -> DenseRetriever:
    """Open the live index snapshot with its own model (or a verified ``model``)."""
    snapshot = open_index(index_dir)
    try:
        # Torch-free ONNX query model when the build exported one. Loading it is
        # cheap (weights load lazily) and yields the fingerprint, so the model
        # check below does not hash the model files a second time.
        embedder = load_query_embedder(model or snapshot.manifest.model.spec)
        check_model(snapshot.manifest, embedder)
        return DenseRetriever(snapshot, embedder, exact=exact)
    except BaseException:
        snapshot.close()
        raise


RETRIEVERS = ("hnsw", "exact", "jaccard", "bm25", "hybrid")
# Chosen by measurement (docs/EVAL.md): hybrid beats dense-only on all three
# shared sets and BM25 on two of three, and the seed's Jaccard by ~0.36 nDCG@10.
DEFAULT_RETRIEVER = "hybrid"


def open_retriever(
    kind: str,
    *,
    root: Path,
    index_dir: Path | None = None,
    corpus_path: Path | None = None,
    model: str | None = None,
    corpus_format: CorpusFormat = "auto",
) -> Retriever:
    """Open a retriever by name; dense ones read the index, ``jaccard`` the corpus."""
    if kind in ("hnsw", "exact"):
        return open_dense(index_dir or default_index(root), model=model, exact=kind == "exact")
    if kind == "jaccard":
        corpus = read_corpus(corpus_path or default_corpus(root), corpus_format)
        return JaccardRetriever(corpus.rows)
    if kind == "bm25":
        from lakevec.lexical import BM25Retriever  # imports bm25s only when asked for

        corpus = read_corpus(corpus_path or default_corpus(root), corpus_format)
        return BM25Retriever(corpus.records.values())
    if kind == "hybrid":
        from lakevec.hybrid import HybridRetriever

        dense = open_dense(index_dir or default_index(root), model=model)
        try:
            return HybridRetriever(dense.snapshot, dense.embedder)
        except BaseException:
            dense.close()
            raise
    raise UsageProblem(f"unknown retriever {kind!r}; choose one of {', '.join(RETRIEVERS)}")
