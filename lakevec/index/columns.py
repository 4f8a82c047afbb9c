"""Per-row metadata columns of a snapshot's record store, for filtered search."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

Mask = npt.NDArray[np.bool_]


class RecordColumns:
    """Coded ``success_score`` and ``source_category`` per row, and tag → rows."""

    def __init__(self, records: Iterator[dict[str, Any]], n: int) -> None:
        self.n = n
        self.score = np.zeros(n, dtype=np.int32)
        self.category = np.zeros(n, dtype=np.int32)
        self.score_codes: dict[str, int] = {}
        self.category_codes: dict[str, int] = {}
        tag_rows: dict[str, list[int]] = {}
        for row, rec in enumerate(records):
            self.score[row] = self.score_codes.setdefault(
                rec["success_score"], len(self.score_codes)
            )
            self.category[row] = self.category_codes.setdefault(
                rec.get("source_category") or "", len(self.category_codes)
            )
            for tag in set(rec.get("tags") or ()):
                tag_rows.setdefault(tag, []).append(row)
        self.tags = {t: np.asarray(r, dtype=np.int64) for t, r in tag_rows.items()}

    def score_in(self, values: Iterable[str]) -> Mask:
        codes = [self.score_codes[v] for v in values if v in self.score_codes]
        return np.isin(self.score, codes)

    def category_in(self, values: Iterable[str]) -> Mask:
        codes = [self.category_codes[v] for v in values if v in self.category_codes]
        return np.isin(self.category, codes)

    def has_any_tag(self, values: Iterable[str]) -> Mask:
        tagged = np.zeros(self.n, dtype=np.bool_)
        for tag in values:
            rows = self.tags.get(tag)
            if rows is not None:
                tagged[rows] = True
        return tagged
