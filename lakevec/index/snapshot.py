"""Reading an index: open the live snapshot, verified, and search it.

Readers never write: everything a search needs (graph, vectors, record
store, BM25) was written by the build before the snapshot was published, so
an index directory can be mounted read-only for ``search``, ``replay`` and
``serve``.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
import numpy.typing as npt

from lakevec.embed.base import Embedder, Vectors
from lakevec.embed.hashing import is_hash_spec
from lakevec.embed.models import describe_model, legacy_fingerprint, resolve_model_dir
from lakevec.errors import GraphSearchShort, IndexCorruptError, ModelMismatchError
from lakevec.files import sha256_file
from lakevec.index.columns import Mask, RecordColumns
from lakevec.index.graph import GraphStats, HnswGraph, saved_dimension
from lakevec.index.layout import current_snapshot_dir, read_pointer, verify_files
from lakevec.index.lexical import BM25Index, bm25_of_records
from lakevec.index.manifest import (
    BM25_DIR,
    MANIFEST_FILE,
    REBUILD_HINT,
    IndexManifest,
    StoredRecord,
    read_manifest,
)
from lakevec.topk import top_k

Rows = list[list[int]]
RowScores = list[list[float]]
GRAPH_FILE = "hnsw.bin"
POSITIONS_FILE = "positions.npy"


class IndexSnapshot:
    """A loaded, verified snapshot: ANN and exact search plus the record store."""

    def __init__(
        self,
        path: Path,
        manifest: IndexManifest,
        *,
        graph: bool = True,
        verify_graph: bool = False,
        rehash: bool = False,
    ) -> None:
        self.path = path
        self.manifest = manifest
        self._rehash = rehash
        # Opened without its graph, the graph file was only size-checked; a
        # later load hashes it first (most such opens never load it).
        self._verify_graph = verify_graph
        # Provenance for evidence rows: hashed once here, not per replay.
        self.manifest_sha256 = sha256_file(path / MANIFEST_FILE)
        self.labels: npt.NDArray[np.int64] = np.load(path / "labels.npy")
        self.offsets: npt.NDArray[np.int64] = np.load(path / "offsets.npy")
        # Format 2 keeps corpus positions out of the record store, so a small
        # reindex can copy unchanged rows' bytes even when positions shift.
        self.positions: npt.NDArray[np.int64] | None = (
            np.load(path / POSITIONS_FILE) if POSITIONS_FILE in manifest.files else None
        )
        # Map the vectors now rather than on first use: a build may garbage-
        # collect this snapshot while a long-lived reader still serves it, and
        # a mapping (like an open handle) outlives the unlink on POSIX.
        self._vectors: Vectors = np.load(path / "vectors.npy", mmap_mode="r")
        self._check_shapes()
        self._graph: HnswGraph | None = None
        if graph and manifest.counts.records:
            self._graph = self.load_graph()
        # Keep the record store open: a later GC of this snapshot unlinks the
        # file, but an open handle stays readable on POSIX.
        self._records_fh: IO[bytes] = (path / "records.jsonl").open("rb")
        self._records_size = os.fstat(self._records_fh.fileno()).st_size
        # Derived views, made on first use and shared by every retriever over
        # this snapshot (the service creates one retriever per request).
        self._lock = threading.Lock()
        self._bm25: BM25Index | None = None
        self._columns: RecordColumns | None = None

    def bm25(self) -> BM25Index:
        """The BM25 index the build stored with the snapshot (memory-mapped; never written).

        Snapshots built before lakevec stored BM25 get an in-memory index from
        their record store; the next ``reindex`` adds it to disk.
        """
        with self._lock:
            if self._bm25 is None:
                if self.manifest.has_bm25:
                    try:
                        self._bm25 = BM25Index.load(self.path / BM25_DIR, documents=len(self))
                    except ValueError as exc:
                        raise IndexCorruptError(f"{exc} — {REBUILD_HINT}") from exc
                else:
                    self._bm25 = bm25_of_records(self.iter_records())
            return self._bm25

    def columns(self) -> RecordColumns:
        """Metadata columns of the record store for filtered search (built once)."""
        with self._lock:
            if self._columns is None:
                self._columns = RecordColumns(self.iter_raw(), len(self))
            return self._columns

    def _check_shapes(self) -> None:
        m = self.manifest
        n = m.counts.records
        if len(self.labels) != n or len(self.offsets) != n or (
            self.positions is not None and len(self.positions) != n
        ):
            raise IndexCorruptError(
                f"{self.path}: record arrays disagree with the manifest — {REBUILD_HINT}"
            )
        if self._vectors.ndim != 2 or self._vectors.shape != (n, m.model.dimension):
            raise IndexCorruptError(
                f"{self.path}: vectors.npy has shape {self._vectors.shape}, the manifest says "
                f"{n} x {m.model.dimension} — {REBUILD_HINT}"
            )

    def verify_graph_file(self) -> None:
        """Hash the graph file and check its dimension if the open only size-checked it."""
        if self._verify_graph:
            verify_files(self.path, self.manifest, names=(GRAPH_FILE,), rehash=self._rehash)
            self._verify_graph = False
        graph_dim = saved_dimension(self.path / GRAPH_FILE)
        if graph_dim != self.dimension:
            raise IndexCorruptError(
                f"{self.path / GRAPH_FILE} holds {graph_dim}-dimensional vectors, the manifest "
                f"says {self.dimension} — {REBUILD_HINT}"
            )

    def load_graph(self) -> HnswGraph:
        """Load (a private copy of) the HNSW graph, after verifying its file."""
        self.verify_graph_file()
        m = self.manifest
        return HnswGraph.load(
            self.path / GRAPH_FILE, m.model.dimension, m.counts.graph_elements, m.hnsw.ef_search
        )

    @property
    def has_graph(self) -> bool:
        return self._graph is not None

    def graph_stats(self) -> GraphStats | None:
        return self._graph.stats() if self._graph is not None else None

    def graph_ids(self) -> list[int]:
        return self._graph.ids() if self._graph is not None else []

    def close(self) -> None:
        """Release the record store and drop the memory maps (vectors, BM25, graph)."""
        self._records_fh.close()
        with self._lock:
            self._bm25 = None
            self._columns = None
        self._graph = None
        self._vectors = np.empty((0, self.dimension), dtype=np.float32)

    def __enter__(self) -> IndexSnapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def dimension(self) -> int:
        return self.manifest.model.dimension

    @property
    def vectors(self) -> Vectors:
        """All live vectors, row-aligned with :attr:`labels` (memory-mapped)."""
        return self._vectors

    def rows_for_labels(self, labels: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        rows = np.searchsorted(self.labels, labels)
        if np.any(rows >= len(self.labels)) or np.any(self.labels[rows] != labels):
            raise IndexCorruptError(
                f"{self.path}: graph label missing from the record store — {REBUILD_HINT}"
            )
        return rows.astype(np.int64)

    def record(self, row: int) -> StoredRecord:
        # pread, not seek+readline: threads sharing one snapshot must not race
        # on the file position.
        start = int(self.offsets[row])
        end = int(self.offsets[row + 1]) if row + 1 < len(self.offsets) else self._records_size
        rec = StoredRecord.model_validate_json(
            os.pread(self._records_fh.fileno(), end - start, start)
        )
        if self.positions is not None:
            rec = rec.model_copy(update={"position": int(self.positions[row])})
        return rec

    def iter_raw(self) -> Iterator[dict[str, Any]]:
        """Every stored record as a plain dict in row order: one sequential read.

        Reads through a duplicate of the open handle (GC-proof); sharing its
        file position is harmless because :meth:`record` uses ``pread``.
        """
        with os.fdopen(os.dup(self._records_fh.fileno()), "rb") as fh:
            fh.seek(0)
            positions = self.positions.tolist() if self.positions is not None else None
            for i, line in enumerate(fh):
                row: dict[str, Any] = json.loads(line)
                if positions is not None:
                    row["position"] = positions[i]
                yield row

    def iter_records(self) -> Iterator[StoredRecord]:
        """Every stored record in row order, validated."""
        for row in self.iter_raw():
            yield StoredRecord.model_validate(row)

    def check_query(self, queries: npt.NDArray[Any]) -> Vectors:
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        if q.shape[1] != self.dimension:
            raise ModelMismatchError(
                f"query vectors have dimension {q.shape[1]}, the index has {self.dimension} "
                f"(built with {self.manifest.model.model_id}) — use the same --model or "
                "rebuild with `lakevec build-index --full --model ...`"
            )
        return q

    def knn(self, queries: npt.NDArray[Any], k: int) -> tuple[Rows, RowScores]:
        """ANN top-``k`` rows and cosine scores for each query; ``k`` is clamped."""
        q = self.check_query(queries)
        k = min(max(int(k), 0), len(self))
        if k == 0:
            return [[] for _ in q], [[] for _ in q]
        if self._graph is None:  # opened with graph=False: still answer, exactly
            return self.exact(q, k)
        # ef is set once at load and never touched per query: hnswlib already
        # searches with max(ef, k), and set_ef on a graph shared by threads races.
        try:
            labels, scores = self._graph.knn(q, k)
        except GraphSearchShort:
            # With many deleted elements the search can come back short of k;
            # exact search always answers.
            return self.exact(q, k)
        rows = self.rows_for_labels(labels.ravel()).reshape(labels.shape)
        return cast(Rows, rows.tolist()), cast(RowScores, scores.tolist())

    def exact(
        self, queries: npt.NDArray[Any], k: int, *, mask: Mask | None = None
    ) -> tuple[Rows, RowScores]:
        """Brute-force top-``k`` rows by cosine over every vector (or those ``mask`` allows)."""
        q = self.check_query(queries)
        k = min(max(int(k), 0), len(self))
        allowed = np.flatnonzero(mask) if mask is not None else None
        if k == 0 or (allowed is not None and not len(allowed)):
            return [[] for _ in q], [[] for _ in q]
        vectors = np.asarray(self.vectors)
        # Few allowed rows: gather them (a small copy) rather than score every vector.
        sims = q @ (vectors if allowed is None else vectors[allowed]).T
        rows: Rows = []
        scores: RowScores = []
        for row_sims in sims:
            top, top_scores = top_k(row_sims, k)
            if allowed is not None:
                top = allowed[top]
            rows.append(top.tolist())
            scores.append(top_scores.tolist())
        return rows, scores

def open_index(
    index_dir: str | Path,
    *,
    checksums: bool = True,
    graph: bool = True,
    rehash: bool = False,
) -> IndexSnapshot:
    """Open the live snapshot of ``index_dir`` after verifying manifest and files.

    ``checksums`` trusts the digests of files hashed before and unchanged
    since (:mod:`lakevec.index.verified`); ``rehash`` hashes them all again.

    A build may swap ``CURRENT`` and garbage-collect the snapshot a reader has
    just resolved; when the pointer moved meanwhile, the open is retried on
    the new (complete) snapshot instead of failing.
    """
    index_dir = Path(index_dir)
    attempts = 5
    for attempt in range(attempts):
        pointer = read_pointer(index_dir)
        try:
            snap = current_snapshot_dir(index_dir)
            manifest = read_manifest(snap)
            # Without the graph (diffs, status) its big file is only size-checked.
            lazy = () if graph else ("hnsw.bin",)
            verify_files(snap, manifest, checksums=checksums, sizes_only=lazy, rehash=rehash)
            return IndexSnapshot(snap, manifest, graph=graph, verify_graph=checksums and not graph,
                                 rehash=rehash)
        except (IndexCorruptError, FileNotFoundError):
            if attempt == attempts - 1 or read_pointer(index_dir) == pointer:
                raise
    raise AssertionError("unreachable")


def check_model(manifest: IndexManifest, embedder_or_spec: Embedder | str) -> bool:
    """Fail clearly when a model is not the one the index was built with.

    The fingerprint identifies the weights (and so the dimension) without
    loading the model. Returns True when the index records the model's
    *legacy* fingerprint (lakevec 0.1 hashed only the ends of large files):
    accepted, and the next build records the full one.
    """
    if isinstance(embedder_or_spec, str):
        ref = describe_model(embedder_or_spec)
        spec, fingerprint, model_id = ref.spec, ref.fingerprint, ref.model_id
    else:
        spec = embedder_or_spec.spec
        fingerprint, model_id = embedder_or_spec.fingerprint, embedder_or_spec.model_id
    built = manifest.model
    if fingerprint == built.fingerprint:
        return False
    if not is_hash_spec(spec) and legacy_fingerprint(resolve_model_dir(spec)) == built.fingerprint:
        return True
    raise ModelMismatchError(
        f"index was built with model {built.model_id} ({built.spec}, dim {built.dimension}), "
        f"not {model_id} — drop --model to use the index's model, or rebuild with "
        "`lakevec build-index --full --model ...`"
    )
