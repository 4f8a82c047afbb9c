"""Hybrid retrieval: BM25 and dense rankings fused by reciprocal rank fusion (RRF).

RRF scores a record ``sum(1 / (rrf_k + rank))`` over the rankings it appears
in (rank 1-based, each ranking cut at ``depth``). It needs no score
calibration between BM25 and cosine, which differ in scale per query. The
constants were measured on the three eval sets (docs/EVAL.md) and picked for
holding up on all of them rather than peaking on one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from lakevec.embed.base import Embedder
from lakevec.index.snapshot import IndexSnapshot
from lakevec.retrieval.base import Hit, SnapshotRetriever, live_queries
from lakevec.retrieval.dense import DEFAULT_FILTER_POLICY, FilterPolicy, dense_rank
from lakevec.retrieval.filters import SearchFilters
from lakevec.settings import DEFAULT_RRF_DEPTH, DEFAULT_RRF_K


def rrf(
    rankings: Iterable[Sequence[int]], *, rrf_k: float = DEFAULT_RRF_K
) -> list[tuple[int, float]]:
    """Fuse best-first rankings of ids into ``(id, score)`` pairs, best first.

    Ties go to the id with the better single rank, then to the smaller id,
    so the output is deterministic.
    """
    score: dict[int, float] = {}
    best: dict[int, int] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            item = int(item)
            score[item] = score.get(item, 0.0) + 1.0 / (rrf_k + rank)
            best[item] = min(best.get(item, rank), rank)
    return sorted(score.items(), key=lambda kv: (-kv[1], best[kv[0]], kv[0]))


class HybridRetriever(SnapshotRetriever):
    """BM25 over the snapshot's record store fused with dense search over its vectors.

    ``exact`` swaps HNSW for brute force. Scores are RRF scores.
    """

    name = "hybrid"

    def __init__(
        self,
        snapshot: IndexSnapshot,
        embedder: Embedder,
        *,
        rrf_k: float = DEFAULT_RRF_K,
        depth: int = DEFAULT_RRF_DEPTH,
        exact: bool = False,
        owns_snapshot: bool = False,
        policy: FilterPolicy = DEFAULT_FILTER_POLICY,
    ) -> None:
        super().__init__(snapshot, owns_snapshot=owns_snapshot)
        self.embedder = embedder
        self.rrf_k = rrf_k
        self.depth = depth
        self.exact = exact
        self.policy = policy
        self.bm25 = snapshot.bm25()
        if len(self.bm25) != len(snapshot):
            raise ValueError("the BM25 index must be row-aligned with the snapshot")

    def search_many(
        self, queries: Sequence[str], k: int, *, filters: SearchFilters | None = None
    ) -> list[list[Hit]]:
        """Like :meth:`search` for many queries; embeds them in one batch."""
        out: list[list[Hit]] = [[] for _ in queries]
        live = live_queries(queries)
        snap = self._snapshot
        if k <= 0 or not live or not len(snap):
            return out
        texts = [queries[i] for i in live]
        depth = max(self.depth, k)
        vectors = self.embedder.encode(texts)
        mask = self.filter_mask(filters)
        if mask is None:
            dense_rows, _ = (snap.exact if self.exact else snap.knn)(vectors, depth)
        else:
            dense_rows = [
                dense_rank(snap, np.asarray(v)[None, :], depth, mask=mask, exact=self.exact,
                           policy=self.policy)[0]
                for v in vectors
            ]
        lexical = self.bm25.search_rows(texts, depth, mask=mask)
        self.last_strategy = "hybrid" if mask is None else "hybrid-filtered"
        for i, dense, (lex_rows, _) in zip(live, dense_rows, lexical, strict=True):
            fused = rrf([dense, lex_rows.tolist()], rrf_k=self.rrf_k)[:k]
            out[i] = self.hits([r for r, _ in fused], [s for _, s in fused], filters)
        return out
