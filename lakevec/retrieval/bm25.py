"""BM25 retrieval: bm25s over the snapshot's record store (title, content and tags)."""

from __future__ import annotations

from collections.abc import Sequence

from lakevec.index.snapshot import IndexSnapshot
from lakevec.retrieval.base import Hit, SnapshotRetriever, live_queries
from lakevec.retrieval.filters import SearchFilters


class BM25Retriever(SnapshotRetriever):
    """Only records sharing a (stemmed, non-stop-word) term with the query are returned.

    The BM25 index is the one ``build-index`` stored with the snapshot.
    """

    name = "bm25"

    def __init__(self, snapshot: IndexSnapshot, *, owns_snapshot: bool = False) -> None:
        super().__init__(snapshot, owns_snapshot=owns_snapshot)
        self.index = snapshot.bm25()

    def search_many(
        self, queries: Sequence[str], k: int, *, filters: SearchFilters | None = None
    ) -> list[list[Hit]]:
        out: list[list[Hit]] = [[] for _ in queries]
        live = live_queries(queries)
        if not live or k <= 0:
            return out
        mask = self.filter_mask(filters)
        found = self.index.search_rows([queries[i] for i in live], k, mask=mask)
        self.last_strategy = "bm25" if mask is None else "bm25-filtered"
        for i, (rows, scores) in zip(live, found, strict=True):
            out[i] = self.hits(rows.tolist(), scores.tolist(), filters)
        return out
