"""Dense retrieval over an index snapshot: HNSW (``hnsw``) or brute force (``exact``).

Filtered search. The metadata filters become a row mask. When the mask keeps
few rows (under ``exact_selectivity`` of the index, or at most
``exact_max_rows``) the allowed rows are ranked exactly; otherwise HNSW is
asked for ``k / selectivity × overfetch`` candidates (at most
``overfetch_cap``), which are filtered, and when that leaves fewer than
``k`` the query falls back to exact search over the allowed rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lakevec.embed.base import Embedder, Vectors
from lakevec.index.columns import Mask
from lakevec.index.snapshot import IndexSnapshot
from lakevec.retrieval.base import Hit, SnapshotRetriever, live_queries
from lakevec.retrieval.filters import SearchFilters


@dataclass(frozen=True)
class FilterPolicy:
    """When a filtered search ranks exactly and how far HNSW over-fetches otherwise."""

    exact_selectivity: float = 0.05
    exact_max_rows: int = 2048
    overfetch: float = 2.0
    overfetch_cap: int = 1000


DEFAULT_FILTER_POLICY = FilterPolicy()


def dense_rank(
    snapshot: IndexSnapshot,
    q: Vectors,
    k: int,
    *,
    mask: Mask | None = None,
    exact: bool = False,
    policy: FilterPolicy = DEFAULT_FILTER_POLICY,
) -> tuple[list[int], list[float], str]:
    """Rows, cosine scores and strategy of the best ``k`` rows for one query vector."""
    if mask is None:
        rows, scores = (snapshot.exact if exact else snapshot.knn)(q, k)
        return rows[0], scores[0], "exact" if exact else "hnsw"
    n = len(snapshot)
    allowed = int(mask.sum())
    if exact or allowed <= policy.exact_max_rows or allowed < policy.exact_selectivity * n:
        rows, scores = snapshot.exact(q, k, mask=mask)
        return rows[0], scores[0], "exact-filtered"
    fetch = min(n, policy.overfetch_cap,
                max(2 * k, math.ceil(k * n / allowed * policy.overfetch)))
    found_rows, found_scores = snapshot.knn(q, fetch)
    kept = [(r, s) for r, s in zip(found_rows[0], found_scores[0], strict=True) if mask[r]]
    if len(kept) >= min(k, allowed):
        return [r for r, _ in kept[:k]], [s for _, s in kept[:k]], "hnsw-overfetch"
    rows, scores = snapshot.exact(q, k, mask=mask)
    return rows[0], scores[0], "exact-fallback"


class DenseRetriever(SnapshotRetriever):
    """Cosine similarity to the query's embedding, by HNSW or exactly."""

    def __init__(
        self,
        snapshot: IndexSnapshot,
        embedder: Embedder,
        *,
        exact: bool = False,
        owns_snapshot: bool = False,
        policy: FilterPolicy = DEFAULT_FILTER_POLICY,
    ) -> None:
        self.name = "exact" if exact else "hnsw"
        super().__init__(snapshot, owns_snapshot=owns_snapshot)
        self.embedder = embedder
        self.exact = exact
        self.policy = policy

    def search_many(
        self, queries: Sequence[str], k: int, *, filters: SearchFilters | None = None
    ) -> list[list[Hit]]:
        """Like :meth:`search` for many queries; embeds them in one batch."""
        out: list[list[Hit]] = [[] for _ in queries]
        live = live_queries(queries)
        if not live or k <= 0:
            return out
        vectors = self.embedder.encode([queries[i] for i in live])
        mask = self.filter_mask(filters)
        if mask is None:
            find = self._snapshot.exact if self.exact else self._snapshot.knn
            rows, scores = find(vectors, k)
            self.last_strategy = self.name
            for i, rs, ss in zip(live, rows, scores, strict=True):
                out[i] = self.hits(rs, ss, filters)
            return out
        for i, vec in zip(live, vectors, strict=True):
            rs, ss, self.last_strategy = dense_rank(
                self._snapshot, np.asarray(vec)[None, :], k, mask=mask, exact=self.exact,
                policy=self.policy,
            )
            out[i] = self.hits(rs, ss, filters)
        return out
