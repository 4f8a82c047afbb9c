"""Hybrid retrieval: BM25 and dense rankings fused by reciprocal rank fusion (RRF).

RRF scores a record ``sum(1 / (rrf_k + rank))`` over the rankings it appears
in (rank 1-based, each ranking cut at ``depth``). It needs no score
calibration between BM25 and cosine, which differ in scale per query. The
constants were measured on the three eval sets (docs/EVAL.md) and picked for
holding up on all of them rather than peaking on one.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
from collections.abc import Iterable, Sequence

from lakevec.embed import Embedder
from lakevec.index import IndexSnapshot
from lakevec.lexical import BM25Index, lexical_text
from lakevec.retrieve import Hit, SnapshotRetriever

DEFAULT_RRF_K = 5
DEFAULT_DEPTH = 50


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


BM25_DIR = "bm25"
log = logging.getLogger("lakevec.hybrid")


def snapshot_bm25(snapshot: IndexSnapshot, *, save: bool = True) -> BM25Index:
    """The BM25 index of a snapshot's record store, cached inside the snapshot.

    Snapshots are immutable, so an index saved beside one never goes stale,
    and it is deleted with the snapshot. Building takes ~20 s on 53k records
    and loading ~0.4 s (docs/EVAL.md). A snapshot that cannot be written
    (read-only index) still works: the index is then built in memory.
    """
    cache = snapshot.path / BM25_DIR
    try:
        return BM25Index.load(cache, documents=len(snapshot))
    except (ValueError, OSError):
        # No cache yet, a partial one, or one saved with other settings: build
        # from the records.
        index = BM25Index(lexical_text(r) for r in snapshot.iter_records())
    if save:
        tmp = snapshot.path / f".{BM25_DIR}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            index.save(tmp)
            try:
                os.replace(tmp, cache)
            except OSError:
                # Another process saved one first: keep it if it loads with our
                # settings, else replace it.
                try:
                    BM25Index.load(cache, documents=len(snapshot))
                except (ValueError, OSError):
                    shutil.rmtree(cache, ignore_errors=True)
                    os.replace(tmp, cache)
        except OSError as exc:
            # Read-only index or a lost race: serve from memory, say why.
            log.info("BM25 index not cached in %s: %s", snapshot.path, exc)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return index


class HybridRetriever(SnapshotRetriever):
    """BM25 over the index's record store fused with dense search over its vectors.

    The BM25 index comes from the snapshot's own record store
    (:func:`snapshot_bm25`), so a playbook index needs no extra input.
    ``exact`` swaps HNSW for brute force.
    """

    name = "hybrid"

    def __init__(
        self,
        snapshot: IndexSnapshot,
        embedder: Embedder,
        *,
        bm25: BM25Index | None = None,
        rrf_k: float = DEFAULT_RRF_K,
        depth: int = DEFAULT_DEPTH,
        exact: bool = False,
    ) -> None:
        super().__init__(snapshot, embedder)
        self.rrf_k = rrf_k
        self.depth = depth
        self.exact = exact
        self.bm25 = bm25 if bm25 is not None else snapshot_bm25(snapshot)
        if len(self.bm25) != len(snapshot):
            raise ValueError("the BM25 index must be row-aligned with the snapshot")

    def search_many(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        """Like :meth:`search` for many queries; embeds them in one batch."""
        out: list[list[Hit]] = [[] for _ in queries]
        live = [i for i, q in enumerate(queries) if q.strip()]
        if k <= 0 or not live or not len(self.snapshot):
            return out
        texts = [queries[i] for i in live]
        depth = max(self.depth, k)
        find = self.snapshot.exact if self.exact else self.snapshot.knn
        dense_rows, _ = find(self.embedder.encode(texts), depth)
        lexical = self.bm25.search_rows(texts, depth)
        for i, dense, (lex_rows, _) in zip(live, dense_rows, lexical, strict=True):
            fused = rrf([dense, lex_rows.tolist()], rrf_k=self.rrf_k)[:k]
            out[i] = [Hit(self.snapshot.record(row), score) for row, score in fused]
        return out
