"""What the workers of a multi-job experiment share (:mod:`lakevec.ab.experiment`)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from lakevec.retrieval.base import Hit, Retriever
from lakevec.retrieval.filters import SearchFilters

__all__ = ["LockedRetriever", "wait_all"]


class LockedRetriever:
    """A retriever shared by the workers: one search at a time."""

    def __init__(self, inner: Retriever) -> None:
        self.inner = inner
        self.name = inner.name
        self.snapshot = inner.snapshot
        self.corpus = inner.corpus
        self._lock = threading.Lock()

    @property
    def last_strategy(self) -> str:
        return self.inner.last_strategy

    @last_strategy.setter
    def last_strategy(self, value: str) -> None:
        self.inner.last_strategy = value

    def search(self, query: str, k: int, *, filters: SearchFilters | None = None) -> list[Hit]:
        with self._lock:
            return self.inner.search(query, k, filters=filters)

    def search_many(
        self, queries: Sequence[str], k: int, *, filters: SearchFilters | None = None
    ) -> list[list[Hit]]:
        with self._lock:
            return self.inner.search_many(queries, k, filters=filters)

    def close(self) -> None:
        self.inner.close()

def wait_all(events: Sequence[threading.Event]) -> None:
    """Wait until every event is set, in slices so that Ctrl-C is seen.

    Events, not ``Thread.join``: a KeyboardInterrupt that lands inside
    ``join`` can leave a running thread marked as stopped (CPython 3.11's
    ``_wait_for_tstate_lock``), and a second wait would then return early.
    """
    for event in events:
        while not event.wait(timeout=0.5):
            pass
