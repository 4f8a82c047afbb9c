"""The HNSW graph: the only module that imports hnswlib, behind a typed class.

hnswlib's own API is untyped and has sharp edges (ef is not persisted; a
truncated file can crash the process; a search may come back short of ``k``
with many deleted elements); this class fixes the contract the rest of
lakevec relies on. Scores are cosine similarities: the space is inner
product over unit vectors.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lakevec.errors import GraphSearchShort, IndexCorruptError
from lakevec.index.manifest import REBUILD_HINT, HnswParams

Labels = npt.NDArray[np.int64]
Scores = npt.NDArray[np.float64]
_ADD_STEP = 4096
_SEED = 100


@dataclass(frozen=True)
class GraphStats:
    """What the graph holds right now (for status checks and tests)."""

    count: int  # elements ever added and not replaced, deleted ones included
    max_elements: int
    ef: int
    dimension: int


def hnswlib_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hnswlib")
    except PackageNotFoundError:
        return "unknown"


class HnswGraph:
    """An hnswlib index over unit vectors with integer labels."""

    def __init__(self, index: Any, dimension: int) -> None:
        self._index = index
        self.dimension = dimension

    @classmethod
    def create(cls, dimension: int, params: HnswParams, capacity: int) -> HnswGraph:
        import hnswlib

        index = hnswlib.Index(space="ip", dim=dimension)
        index.init_index(
            max_elements=max(capacity, 1),
            ef_construction=params.ef_construction,
            M=params.M,
            random_seed=_SEED,
            allow_replace_deleted=True,
        )
        index.set_ef(params.ef_search)
        return cls(index, dimension)

    @classmethod
    def load(cls, path: Path, dimension: int, max_elements: int, ef_search: int) -> HnswGraph:
        """Load a saved graph; call only after the file's checksum was verified."""
        import hnswlib

        index = hnswlib.Index(space="ip", dim=dimension)
        try:
            index.load_index(str(path), max_elements=max_elements, allow_replace_deleted=True)
        except RuntimeError as exc:
            raise IndexCorruptError(f"hnswlib cannot load {path}: {exc} — {REBUILD_HINT}") from exc
        # hnswlib does not persist ef; without this it would search with ef=10.
        index.set_ef(ef_search)
        return cls(index, dimension)

    def stats(self) -> GraphStats:
        return GraphStats(
            count=int(self._index.get_current_count()),
            max_elements=int(self._index.get_max_elements()),
            ef=int(self._index.ef),
            dimension=self.dimension,
        )

    def ids(self) -> list[int]:
        return [int(i) for i in self._index.get_ids_list()]

    def set_ef(self, ef: int) -> None:
        """Set the search breadth; only while no other thread searches (it is not atomic)."""
        self._index.set_ef(ef)

    def ensure_capacity(self, elements: int) -> None:
        current = int(self._index.get_max_elements())
        if elements > current:
            self._index.resize_index(max(elements, int(current * 1.25)))

    def mark_deleted(self, label: int) -> None:
        self._index.mark_deleted(int(label))

    def add(
        self,
        vectors: npt.NDArray[np.float32],
        labels: Labels,
        *,
        replace_deleted: bool = False,
        progress: bool = False,
    ) -> None:
        """Add vectors under ``labels`` in batches, with a progress bar on stderr."""
        from tqdm import tqdm

        with tqdm(
            total=len(labels),
            desc="hnsw graph",
            unit="vec",
            file=sys.stderr,
            disable=not progress or len(labels) < _ADD_STEP,
            dynamic_ncols=True,
        ) as bar:
            for start in range(0, len(labels), _ADD_STEP):
                self._index.add_items(
                    vectors[start : start + _ADD_STEP],
                    labels[start : start + _ADD_STEP],
                    replace_deleted=replace_deleted,
                )
                bar.update(min(_ADD_STEP, len(labels) - start))

    def knn(self, queries: npt.NDArray[np.float32], k: int) -> tuple[Labels, Scores]:
        """Labels and cosine scores of the ``k`` nearest neighbours of each query.

        Raises :class:`GraphSearchShort` when hnswlib cannot fill ``k``.
        """
        try:
            labels, dist = self._index.knn_query(queries, k=k)
        except RuntimeError as exc:
            raise GraphSearchShort(str(exc)) from exc
        return (
            np.asarray(labels, dtype=np.int64),
            1.0 - np.asarray(dist, dtype=np.float64),
        )

    def save(self, path: Path) -> None:
        self._index.save_index(str(path))


def saved_dimension(path: Path) -> int:
    """The vector dimension a saved graph was built with, read from its header.

    hnswlib's header starts with six size_t fields; the vector bytes per
    element are ``label_offset - offset_data`` (float32, so 4 per dimension).
    Read before loading, so a manifest that disagrees is caught instead of
    letting hnswlib read the file with the wrong stride.
    """
    import struct

    try:
        with path.open("rb") as fh:
            header = fh.read(48)
    except OSError as exc:
        raise IndexCorruptError(
            f"cannot read {path}: {exc.strerror or exc} — {REBUILD_HINT}"
        ) from exc
    if len(header) < 48:
        raise IndexCorruptError(f"{path} is too short to be an HNSW graph — {REBUILD_HINT}")
    _, _, _, _, label_offset, offset_data = struct.unpack("<6Q", header)
    data_bytes = label_offset - offset_data
    if data_bytes <= 0 or data_bytes % 4:
        raise IndexCorruptError(f"{path} has an invalid HNSW header — {REBUILD_HINT}")
    return int(data_bytes) // 4
