"""What every retriever returns and promises."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, Self, runtime_checkable

from lakevec.corpus import PlaybookRecord
from lakevec.retrieval.filters import SearchFilters

if TYPE_CHECKING:  # types only: a corpus scan (jaccard) loads no index machinery
    from lakevec.index.columns import Mask
    from lakevec.index.snapshot import IndexSnapshot


@dataclass(frozen=True)
class Hit:
    """A retrieved record and the retriever's score for it (higher is better).

    ``row`` is the record's row in the index snapshot, when it came from one.
    """

    record: PlaybookRecord
    score: float
    row: int | None = None


@runtime_checkable
class Retriever(Protocol):
    """Ranks records for a query. Results are best first, at most ``k`` long.

    A blank query returns ``[]``; so does a lexical query sharing no term
    with the corpus (lexical retrievers return only records that match).
    """

    name: str
    #: The index snapshot searched; None for corpus scans (jaccard).
    snapshot: IndexSnapshot | None
    #: The corpus rows in file order, for retrievers that scan the corpus: the
    #: seed collects checklist steps in that order.
    corpus: Sequence[PlaybookRecord] | None
    #: How the last search ran (e.g. "hnsw", "exact-filtered", "hybrid").
    last_strategy: str

    def search(
        self, query: str, k: int, *, filters: SearchFilters | None = None
    ) -> list[Hit]: ...

    def search_many(
        self, queries: Sequence[str], k: int, *, filters: SearchFilters | None = None
    ) -> list[list[Hit]]: ...

    def close(self) -> None: ...


class SnapshotRetriever:
    """Base of retrievers over an index snapshot.

    Single queries go through the batched :meth:`search_many`. The snapshot
    is closed by :meth:`close` only when the retriever owns it (opened it).
    """

    name: str = "snapshot"
    corpus: Sequence[PlaybookRecord] | None = None

    def __init__(self, snapshot: IndexSnapshot, *, owns_snapshot: bool = False) -> None:
        self.snapshot: IndexSnapshot | None = snapshot
        self._snapshot = snapshot
        self._owns = owns_snapshot
        self.last_strategy = self.name

    def close(self) -> None:
        if self._owns:
            self._snapshot.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def search(self, query: str, k: int, *, filters: SearchFilters | None = None) -> list[Hit]:
        return self.search_many([query], k, filters=filters)[0]

    def search_many(
        self, queries: Sequence[str], k: int, *, filters: SearchFilters | None = None
    ) -> list[list[Hit]]:
        raise NotImplementedError

    def filter_mask(self, filters: SearchFilters | None) -> Mask | None:
        """The row mask of the metadata filters, or None when they restrict nothing."""
        if filters is None or not filters.restricts_rows:
            return None
        return filters.mask(self._snapshot.columns())

    def hits(self, rows: Sequence[int], scores: Sequence[float],
             filters: SearchFilters | None) -> list[Hit]:
        """Hits for best-first rows, cut by ``min_score``."""
        n = filters.cut(scores) if filters is not None else len(scores)
        return [
            Hit(self._snapshot.record(int(r)), float(s), int(r))
            for r, s in zip(rows[:n], scores[:n], strict=True)
        ]


def live_queries(queries: Sequence[str]) -> list[int]:
    """Positions of the queries worth searching: a blank query carries no intent."""
    return [i for i, q in enumerate(queries) if q.strip()]
