"""The seed pipeline's retrieval, kept bit-for-bit so runs can be compared.

Jaccard overlap of token sets, a full scan of the corpus per query. Ties keep
corpus order (the seed's sort is stable), and the seed's order of operations
is kept: take the top ``k`` first, then drop zeros.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from lakevec.corpus import PlaybookRecord, keyword_text
from lakevec.retrieval.base import Hit
from lakevec.retrieval.filters import SearchFilters

if TYPE_CHECKING:
    from lakevec.index.snapshot import IndexSnapshot

_TOKEN_SPLIT = re.compile(r"[^a-z0-9_]+")


def tokenize(text: str) -> set[str]:
    """The seed's tokenizer: lower-case, split on non ``[a-z0-9_]``, keep tokens of 3+ chars."""
    return {t for t in _TOKEN_SPLIT.split(text.lower()) if len(t) >= 3}


def jaccard(a: set[str], b: set[str]) -> float:
    if not a or not b:
        return 0.0
    inter = len(a & b)
    union = len(a) + len(b) - inter
    return inter / union if union else 0.0


class JaccardRetriever:
    """The seed's keyword overlap over every corpus line (duplicates as the seed sees them)."""

    name = "jaccard"
    snapshot: IndexSnapshot | None = None  # a corpus scan: no index

    def __init__(self, records: Iterable[PlaybookRecord]) -> None:
        self.records = list(records)  # corpus order: the seed orders checklist steps by it
        self.corpus: Sequence[PlaybookRecord] | None = self.records
        self.last_strategy = "jaccard"
        self._tokens = [tokenize(keyword_text(r)) for r in self.records]

    def search(self, query: str, k: int, *, filters: SearchFilters | None = None) -> list[Hit]:
        q = tokenize(query)
        scored = sorted(
            (
                (jaccard(q, toks), i)
                for i, toks in enumerate(self._tokens)
                if filters is None or filters.accepts(self.records[i])
            ),
            key=lambda s: -s[0],
        )
        top = [(score, i) for score, i in scored[: max(k, 0)] if score > 0]
        if filters is not None:
            top = top[: filters.cut([score for score, _ in top])]
        return [Hit(self.records[i], score) for score, i in top]

    def search_many(
        self, queries: Sequence[str], k: int, *, filters: SearchFilters | None = None
    ) -> list[list[Hit]]:
        return [self.search(q, k, filters=filters) for q in queries]

    def close(self) -> None:
        """Nothing to release: the corpus is in memory."""
