"""Writing an index: a complete new snapshot per build, published atomically.

A build writes the whole snapshot into ``.tmp-<pid>-<rand>/``, fsyncs it,
renames it into ``snapshots/`` and only then replaces ``CURRENT``. Readers
resolve ``CURRENT`` once and read that snapshot only, so they never see a
half-written index, and a killed build leaves the previous one in place.
Derived data (the BM25 index) is written into the snapshot before it is
published, so readers never write.

``on_phase`` is called with each name of :data:`BUILD_PHASES` as the build
reaches it (the crash tests pause a builder there and kill it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from lakevec.clock import SYSTEM_CLOCK, Clock
from lakevec.corpus import Corpus, embed_text
from lakevec.embed.base import Embedder, Vectors
from lakevec.errors import IndexCorruptError, UsageProblem
from lakevec.files import fsync_path, owned_temp_name
from lakevec.index.graph import HnswGraph
from lakevec.index.layout import (
    CURRENT_FILE,
    LOCK_FILE,
    clean_leftovers,
)
from lakevec.index.lexical import bm25_of_records
from lakevec.index.manifest import (
    BM25_DIR,
    CorpusInfo,
    Counts,
    HnswParams,
    IndexManifest,
    ModelInfo,
)
from lakevec.index.plan import Plan, plan_changes
from lakevec.index.rowkeys import RowKeys
from lakevec.index.snapshot import POSITIONS_FILE, IndexSnapshot, check_model, open_index
from lakevec.index.writer import (
    save_npy,
    seal_snapshot,
    write_bm25,
    write_records,
    write_rowkeys,
)
from lakevec.locks import exclusive_lock
from lakevec.settings import DEFAULT_KEEP, DEFAULT_LOCK_TIMEOUT, DEFAULT_REBUILD_THRESHOLD

#: Points of a build, in order, reported to ``on_phase``.
BUILD_PHASES = ("diff", "embed", "graph", "write", "swap", "rename", "gc")


@dataclass
class BuildReport:
    """What a build did; ``changed`` is False when the index was already current."""

    index_dir: Path
    snapshot: str
    version: int
    changed: bool
    mode: Literal["full", "incremental", "noop"]
    records: int
    added: int = 0
    updated: int = 0
    metadata_updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    embedded: int = 0
    skipped: int = 0
    duplicates: int = 0
    graph_rebuilt: bool = False
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    skipped_lines: list[dict[str, Any]] = field(default_factory=list)
    # Ids on more than one line (the last line wins), with every line number.
    duplicate_ids: list[dict[str, Any]] = field(default_factory=list)
    # One line describing skipped lines and repeated ids ("" when clean).
    summary: str = ""
    # Why the live snapshot could not be built upon (it was rebuilt instead).
    repaired: str | None = None
    # "small": only new corpus lines parsed and changed rows written
    # (lakevec.index.delta); "general": the whole corpus read and rewritten.
    path: Literal["small", "general"] = "general"

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": str(self.index_dir),
            "snapshot": self.snapshot,
            "version": self.version,
            "changed": self.changed,
            "mode": self.mode,
            "records": self.records,
            "added": self.added,
            "updated": self.updated,
            "metadata_updated": self.metadata_updated,
            "deleted": self.deleted,
            "unchanged": self.unchanged,
            "embedded": self.embedded,
            "skipped": self.skipped,
            "duplicates": self.duplicates,
            "graph_rebuilt": self.graph_rebuilt,
            "seconds": round(self.seconds, 3),
            "records_per_s": round(self.records_per_s, 1),
            "skipped_lines": self.skipped_lines,
            "duplicate_ids": self.duplicate_ids,
            "repaired": self.repaired,
            "path": self.path,
        }


def build_index(
    corpus: Corpus,
    index_dir: str | Path,
    embedder: Embedder,
    *,
    params: HnswParams | None = None,
    full: bool = False,
    progress: bool = False,
    keep: int = DEFAULT_KEEP,
    rebuild_threshold: float = DEFAULT_REBUILD_THRESHOLD,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    batch_size: int | None = None,
    clock: Clock = SYSTEM_CLOCK,
    on_phase: Callable[[str], None] | None = None,
) -> BuildReport:
    """Build or incrementally update the index for ``corpus`` under ``index_dir``.

    Unchanged records keep their vectors; changed and new ones are embedded;
    records whose embedded text is unchanged but whose metadata changed only
    update the record store. ``full`` ignores the previous index. A live
    snapshot that fails verification is not built upon: the build starts
    from scratch and says why in ``BuildReport.repaired``. Embedders load
    their weights lazily, so a no-change run never loads the model.
    """
    if not 0 < rebuild_threshold <= 1:
        raise UsageProblem("--rebuild-threshold must be in (0, 1]")
    t0 = time.perf_counter()
    index_dir = Path(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    phase = on_phase or (lambda _name: None)
    with exclusive_lock(index_dir / LOCK_FILE, timeout=lock_timeout, what="lakevec build"):
        clean_leftovers(index_dir)
        previous: IndexSnapshot | None = None
        repaired: str | None = None
        if not full and (index_dir / CURRENT_FILE).exists():
            try:
                # The graph is loaded only if it is updated in place, but its
                # file is verified now: a damaged live snapshot must never be
                # kept as "up to date".
                previous = open_index(index_dir, graph=False)
                previous.verify_graph_file()
            except IndexCorruptError as exc:
                if previous is not None:
                    previous.close()
                    previous = None
                repaired = str(exc)
        try:
            report = _build_locked(
                corpus, index_dir, embedder, previous, params=params, progress=progress,
                keep=keep, rebuild_threshold=rebuild_threshold, batch_size=batch_size,
                clock=clock, phase=phase, t0=t0,
            )
        finally:
            if previous is not None:
                previous.close()
    return replace(report, repaired=repaired)


def _check_params(prev: IndexManifest | None, params: HnswParams | None) -> HnswParams:
    if prev is not None and params is not None and (params.M, params.ef_construction) != (
        prev.hnsw.M,
        prev.hnsw.ef_construction,
    ):
        raise UsageProblem(
            "M/ef_construction differ from the existing index — add --full to rebuild"
        )
    return params or (prev.hnsw if prev else HnswParams())


def _build_locked(
    corpus: Corpus,
    index_dir: Path,
    emb: Embedder,
    previous: IndexSnapshot | None,
    *,
    params: HnswParams | None,
    progress: bool,
    keep: int,
    rebuild_threshold: float,
    batch_size: int | None,
    clock: Clock,
    phase: Callable[[str], None],
    t0: float,
) -> BuildReport:
    prev_m = previous.manifest if previous is not None else None
    legacy = prev_m is not None and check_model(prev_m, emb)
    params = _check_params(prev_m, params)

    phase("diff")
    plan = plan_changes(corpus, previous)
    report = BuildReport(
        index_dir=index_dir,
        snapshot=prev_m.snapshot if prev_m else "",
        version=prev_m.version if prev_m else 0,
        changed=False,
        mode="noop",
        records=len(plan.records),
        added=plan.added,
        updated=plan.updated,
        metadata_updated=plan.metadata_updated,
        deleted=plan.deleted,
        unchanged=plan.unchanged,
        skipped=corpus.skipped,
        duplicates=corpus.duplicate_lines,
        problems=[str(p) for p in corpus.problems],
        skipped_lines=corpus.skipped_lines(),
        duplicate_ids=[{"id": d.id, "lines": list(d.lines)} for d in corpus.duplicates],
        summary=corpus.summary(),
    )
    if (
        prev_m is not None
        and not plan.changed
        and params.ef_search == prev_m.hnsw.ef_search
        and prev_m.has_bm25
        and not legacy
    ):
        return replace(report, seconds=time.perf_counter() - t0)

    todo = plan.to_embed
    new_vecs: Vectors | None = None
    if todo:
        phase("embed")
        texts = [embed_text(plan.records[i]) for i in todo]
        kwargs = {"batch_size": batch_size} if batch_size else {}
        new_vecs = emb.encode(texts, progress=progress, **kwargs)
    model = prev_m.model if prev_m is not None and not legacy else ModelInfo(
        spec=emb.spec, model_id=emb.model_id, fingerprint=emb.fingerprint, dimension=emb.dimension
    )
    vectors = _assemble_vectors(plan, previous, new_vecs, model.dimension)

    phase("graph")
    tmp = index_dir / owned_temp_name()
    tmp.mkdir()
    graph, labels, counts, rebuilt = _update_graph(
        plan, previous, vectors, params, model.dimension, rebuild_threshold, progress
    )
    counts = counts.model_copy(
        update={"skipped": corpus.skipped, "duplicates": corpus.duplicate_lines}
    )
    # Rows sorted by label, so label → row is a binary search.
    order = np.argsort(labels, kind="stable")
    labels = labels[order]
    vectors = vectors[order]
    records = [plan.records[i] for i in order]
    hashes = [plan.text_hashes[i] for i in order]

    graph.save(tmp / "hnsw.bin")
    fsync_path(tmp / "hnsw.bin")
    save_npy(tmp / "vectors.npy", vectors)
    phase("write")
    save_npy(tmp / "labels.npy", labels)
    save_npy(tmp / POSITIONS_FILE, order.astype(np.int64))
    offsets = write_records(tmp / "records.jsonl", records, labels.tolist(), hashes)
    save_npy(tmp / "offsets.npy", offsets)
    write_rowkeys(tmp, RowKeys(corpus_format=corpus.format, ids=[r.id for r in records],
                               lines=[corpus.line_digests.get(r.id, "") for r in records]))
    write_bm25(tmp / BM25_DIR, bm25_of_records(records))
    manifest = seal_snapshot(
        tmp, index_dir, prev_m, emb, model=model, params=params, counts=counts,
        corpus=CorpusInfo(path=str(corpus.path), format=corpus.format, sha256=corpus.sha256,
                          bytes=corpus.bytes, lines=corpus.lines),
        embedded=len(todo), rebuilt=rebuilt, keep=keep, clock=clock, phase=phase, t0=t0,
    )
    return replace(
        report,
        snapshot=manifest.snapshot,
        version=manifest.version,
        changed=True,
        mode=manifest.build.mode,
        embedded=len(todo),
        graph_rebuilt=manifest.build.graph_rebuilt,
        seconds=time.perf_counter() - t0,
    )


def _assemble_vectors(
    plan: Plan, previous: IndexSnapshot | None, new_vecs: Vectors | None, dim: int
) -> Vectors:
    """The row-aligned vectors of the next snapshot: reused ones plus the new ones."""
    vectors = np.empty((len(plan.records), dim), dtype=np.float32)
    reuse = [i for i, r in enumerate(plan.prev_rows) if r >= 0]
    if reuse and previous is not None:
        vectors[reuse] = np.asarray(previous.vectors)[[plan.prev_rows[i] for i in reuse]]
    todo = plan.to_embed
    if todo and new_vecs is not None:
        vectors[todo] = new_vecs
    return vectors


def _update_graph(
    plan: Plan,
    previous: IndexSnapshot | None,
    vectors: Vectors,
    params: HnswParams,
    dim: int,
    rebuild_threshold: float,
    progress: bool,
) -> tuple[HnswGraph, npt.NDArray[np.int64], Counts, bool]:
    """Rebuild the graph, or update the previous one in place when churn allows."""
    n = len(plan.records)
    prev_counts = previous.manifest.counts if previous is not None else None
    churn = (prev_counts.churn if prev_counts else 0) + len(plan.deleted_labels)
    labels = np.asarray(plan.labels, dtype=np.int64)
    if (
        previous is None
        or prev_counts is None
        or prev_counts.records == 0
        or churn > rebuild_threshold * max(n, 1)
    ):
        labels = np.arange(n, dtype=np.int64)
        graph = HnswGraph.create(dim, params, n)
        if n:
            graph.add(vectors, labels, progress=progress)
        counts = Counts(records=n, skipped=0, duplicates=0, graph_elements=n, deleted=0,
                        churn=0, next_label=n)
        return graph, labels, counts, True
    todo = plan.to_embed
    fresh = np.arange(prev_counts.next_label, prev_counts.next_label + len(todo), dtype=np.int64)
    labels[todo] = fresh
    graph, slots = update_graph(previous, plan.deleted_labels, vectors[todo], fresh,
                                params.ef_search, progress=progress)
    counts = Counts(records=n, skipped=0, duplicates=0, churn=churn, **slots)
    return graph, labels, counts, False


def update_graph(
    previous: IndexSnapshot,
    deleted_labels: Sequence[int],
    new_vecs: Vectors,
    fresh: npt.NDArray[np.int64],
    ef_search: int,
    *,
    progress: bool = False,
) -> tuple[HnswGraph, dict[str, int]]:
    """The previous graph updated in place: ``deleted_labels`` marked deleted, ``new_vecs``
    added under ``fresh`` labels into freed slots first. Returns it with its slot counts
    (``graph_elements``, ``deleted``, ``next_label``) for the manifest."""
    prev = previous.manifest.counts
    graph = previous.load_graph()
    for label in deleted_labels:
        graph.mark_deleted(label)
    free = prev.deleted + len(deleted_labels)
    reused = min(free, len(fresh))
    elements = prev.graph_elements + len(fresh) - reused
    graph.ensure_capacity(elements)
    if len(fresh):
        graph.add(new_vecs, fresh, replace_deleted=True, progress=progress)
    graph.set_ef(ef_search)
    return graph, {"graph_elements": elements, "deleted": free - reused,
                   "next_label": prev.next_label + len(fresh)}
