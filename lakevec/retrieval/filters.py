"""Metadata filters: which records a search may return."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lakevec.corpus import PlaybookRecord

if TYPE_CHECKING:  # types only: filtering a corpus scan needs no numpy
    from lakevec.index.columns import Mask, RecordColumns


@dataclass(frozen=True)
class SearchFilters:
    """Every given filter must hold (AND); a list matches any of its values (OR).

    ``min_score`` drops hits whose score (the retriever's own: cosine for
    dense retrieval, the fused score for hybrid) is below it.
    """

    success_score: tuple[str, ...] | None = None
    tags_any: tuple[str, ...] | None = None
    source_category: tuple[str, ...] | None = None
    min_score: float | None = None

    @property
    def restricts_rows(self) -> bool:
        return bool(self.success_score or self.tags_any or self.source_category)

    def accepts(self, record: PlaybookRecord) -> bool:
        """Whether one record passes the metadata filters (not ``min_score``)."""
        if self.success_score and record.success_score not in self.success_score:
            return False
        if self.source_category and record.source_category not in self.source_category:
            return False
        return not (self.tags_any and not set(record.tags).intersection(self.tags_any))

    def mask(self, columns: RecordColumns) -> Mask | None:
        """Rows passing the metadata filters, or None when none restricts rows."""
        mask: Mask | None = None
        parts: list[Mask] = []
        if self.success_score:
            parts.append(columns.score_in(self.success_score))
        if self.source_category:
            parts.append(columns.category_in(self.source_category))
        if self.tags_any:
            parts.append(columns.has_any_tag(self.tags_any))
        for part in parts:
            mask = part if mask is None else mask & part
        return mask

    def cut(self, scores: Sequence[float]) -> int:
        """How many of best-first ``scores`` survive ``min_score``."""
        if self.min_score is None:
            return len(scores)
        return sum(1 for s in scores if s >= self.min_score)


NO_FILTERS = SearchFilters()
