"""The one top-k selection every ranking in lakevec uses."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

Rows = npt.NDArray[np.int64]
Scores = npt.NDArray[np.float64]


def top_k(
    scores: npt.NDArray[Any], k: int, *, positive_only: bool = False
) -> tuple[Rows, Scores]:
    """Positions of the ``k`` best scores, best first; ties keep position order.

    ``positive_only`` drops scores ``<= 0`` (lexical retrievers return only
    records that share a term with the query).
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    candidates = np.flatnonzero(scores > 0) if positive_only else np.arange(len(scores))
    if k <= 0 or not len(candidates):
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    if len(candidates) > k:
        # argpartition only narrows the candidates; the stable sort below then
        # fixes the order, so equal scores always come back in position order.
        part = np.argpartition(-scores[candidates], k - 1)[:k]
        kth = scores[candidates[part]].min()
        candidates = candidates[scores[candidates] >= kth]
    order = np.argsort(-scores[candidates], kind="stable")[:k]
    rows = candidates[order].astype(np.int64)
    return rows, scores[rows]
