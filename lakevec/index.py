"""Versioned, crash-safe HNSW index snapshots.

Layout of an index directory::

    index/
      CURRENT                  name of the live snapshot (replaced atomically)
      .lock                    writer lock (flock); holds the builder's pid
      snapshots/v000007/       one complete, immutable snapshot
        manifest.json          IndexManifest: model, parameters, counts, checksums
        hnsw.bin               hnswlib graph (inner product over unit vectors)
        vectors.npy            float32 unit vectors, one row per live record
        labels.npy             int64 hnsw label of each row, ascending
        offsets.npy            int64 byte offset of each row's line in records.jsonl
        records.jsonl          the record store: everything a bundle needs
      .tmp-<pid>-<rand>/       a build in progress (removed by the next build if killed)

A build writes a whole new snapshot into a temporary directory, fsyncs it,
renames it into ``snapshots/`` and only then replaces ``CURRENT``. Readers
resolve ``CURRENT`` once and read that snapshot only, so they never see a
half-written index, and a killed build leaves the previous one in place.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import secrets
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lakevec import __version__
from lakevec.corpus import Corpus, PlaybookRecord, embed_text, text_sha256
from lakevec.embed import Embedder, Vectors, describe_model
from lakevec.errors import (
    IndexCorruptError,
    IndexMissingError,
    ModelMismatchError,
    UsageProblem,
)
from lakevec.files import fsync_path
from lakevec.locks import exclusive_lock

FORMAT_VERSION: Literal[1] = 1
CURRENT_FILE = "CURRENT"
SNAPSHOTS_DIR = "snapshots"
LOCK_FILE = ".lock"
TMP_PREFIX = ".tmp-"
DATA_FILES = ("hnsw.bin", "vectors.npy", "labels.npy", "offsets.npy", "records.jsonl")

# Measured on the 53k corpus with MiniLM (docs/BENCHMARKS.md, ef sweep):
# M=16/efc=200 gives recall@8 against exact search of 0.980 at ef_search=64,
# 0.990 at 128 and 0.993 at 200 (p50 0.41 ms); 200 keeps a margin above 0.99.
DEFAULT_M = 16
DEFAULT_EF_CONSTRUCTION = 200
DEFAULT_EF_SEARCH = 200
DEFAULT_KEEP = 3
DEFAULT_REBUILD_THRESHOLD = 0.2
DEFAULT_LOCK_TIMEOUT = 30.0

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso_ms(ts: datetime) -> str:
    """ISO-8601 UTC with milliseconds and ``Z`` (the evidence log's format)."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HnswParams(_Strict):
    """HNSW construction and search parameters (ef_search is re-applied on load)."""

    M: int = Field(DEFAULT_M, ge=2, le=256)
    ef_construction: int = Field(DEFAULT_EF_CONSTRUCTION, ge=8, le=4096)
    ef_search: int = Field(DEFAULT_EF_SEARCH, ge=1, le=4096)


class ModelInfo(_Strict):
    spec: str
    model_id: str
    fingerprint: str
    dimension: int = Field(ge=1)


class FileInfo(_Strict):
    sha256: str
    bytes: int = Field(ge=0)


class CorpusInfo(_Strict):
    path: str
    format: Literal["playbooks", "beir"]
    sha256: str
    bytes: int
    lines: int


class Counts(_Strict):
    records: int = Field(ge=0)
    skipped: int = Field(ge=0, description="corpus lines skipped as malformed or invalid")
    duplicates: int = Field(ge=0, description="ids seen on more than one line (last wins)")
    graph_elements: int = Field(ge=0, description="elements in the HNSW graph incl. deleted")
    deleted: int = Field(ge=0, description="elements marked deleted and not yet reused")
    churn: int = Field(ge=0, description="deletions/replacements since the graph was built")
    next_label: int = Field(ge=0)


class BuildInfo(_Strict):
    built_at: str
    seconds: float
    mode: Literal["full", "incremental"]
    embedded: int
    graph_rebuilt: bool
    lakevec_version: str
    python: str
    hnswlib: str
    # Numeric precision of the vectors this build embedded ("fp32"/"bf16");
    # None in manifests written before it was recorded, or with no embedding.
    precision: str | None = None


class IndexManifest(_Strict):
    """Everything needed to trust, load and reproduce an index snapshot."""

    format: Literal["lakevec-index"] = "lakevec-index"
    format_version: Literal[1] = FORMAT_VERSION
    version: int = Field(ge=1, description="snapshot serial number, +1 per build")
    snapshot: str
    model: ModelInfo
    metric: Literal["cosine"] = "cosine"
    embedded_text: str = "title + ' ' + content"
    hnsw: HnswParams
    counts: Counts
    corpus: CorpusInfo
    build: BuildInfo
    files: dict[str, FileInfo]


class StoredRecord(PlaybookRecord):
    """A corpus record as kept in the index's record store."""

    label: int
    text_sha256: str
    position: int = Field(-1, description="0-based position in the corpus at build time")


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
        }


# ─── file helpers ────────────────────────────────────────────────────────────


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}-{secrets.token_hex(4)}")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_path(path.parent)


def _hnswlib() -> Any:
    import hnswlib

    return hnswlib


def _hnswlib_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hnswlib")
    except PackageNotFoundError:
        return "unknown"


# ─── reading ─────────────────────────────────────────────────────────────────


def current_snapshot_dir(index_dir: Path) -> Path:
    """The live snapshot directory, or :class:`IndexMissingError`."""
    pointer = index_dir / CURRENT_FILE
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise IndexMissingError(
            f"no index at {index_dir} — run `lakevec build-index` first"
        ) from None
    if not name or "/" in name or name.startswith("."):
        raise IndexCorruptError(
            f"{pointer} is damaged ({name!r}) — run `lakevec build-index --full`"
        )
    snap = index_dir / SNAPSHOTS_DIR / name
    if not snap.is_dir():
        raise IndexCorruptError(
            f"{pointer} names missing snapshot {name} — run `lakevec build-index --full`"
        )
    return snap


def read_manifest(snapshot_dir: Path) -> IndexManifest:
    path = snapshot_dir / "manifest.json"
    try:
        return IndexManifest.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise IndexCorruptError(
            f"{path} is missing — run `lakevec build-index --full`"
        ) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "manifest"
        raise IndexCorruptError(
            f"{path} is invalid ({where}: {first['msg']}) — run `lakevec build-index --full`"
        ) from None


def verify_files(
    snapshot_dir: Path,
    manifest: IndexManifest,
    *,
    checksums: bool = True,
    names: Iterable[str] = DATA_FILES,
    sizes_only: Iterable[str] = (),
) -> None:
    """Check data files' sizes (and sha256, except ``sizes_only``) against the manifest.

    Runs before anything is handed to hnswlib: a truncated or corrupted graph
    file can crash the process instead of raising.
    """
    skip_sha = set(sizes_only)
    for name in names:
        info = manifest.files.get(name)
        path = snapshot_dir / name
        fix = "run `lakevec build-index --full` to rebuild it"
        if info is None:
            raise IndexCorruptError(f"manifest of {snapshot_dir} lists no {name} — {fix}")
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise IndexCorruptError(f"index file {path} is missing — {fix}") from None
        if size != info.bytes:
            raise IndexCorruptError(
                f"index file {path} is {size} bytes, manifest says {info.bytes} "
                f"(truncated or corrupted) — {fix}"
            )
        if checksums and name not in skip_sha and _sha256_file(path) != info.sha256:
            raise IndexCorruptError(f"index file {path} fails its sha256 checksum — {fix}")


class IndexSnapshot:
    """A loaded, verified snapshot: ANN and exact search plus the record store."""

    def __init__(
        self,
        path: Path,
        manifest: IndexManifest,
        *,
        graph: bool = True,
        verify_graph: bool = False,
    ) -> None:
        self.path = path
        self.manifest = manifest
        # Opened without its graph, the graph file was only size-checked; a
        # later _load_graph hashes it first (most such opens never load it).
        self._verify_graph = verify_graph
        # Provenance for evidence rows: hashed once here, not per replay.
        self.manifest_sha256 = _sha256_file(path / "manifest.json")
        self.labels: npt.NDArray[np.int64] = np.load(path / "labels.npy")
        self.offsets: npt.NDArray[np.int64] = np.load(path / "offsets.npy")
        if len(self.labels) != manifest.counts.records or len(self.offsets) != len(self.labels):
            raise IndexCorruptError(
                f"{path}: record arrays disagree with the manifest — "
                "run `lakevec build-index --full`"
            )
        # Map the vectors now rather than on first use: a build may garbage-
        # collect this snapshot while a long-lived reader still serves it, and
        # a mapping (like an open handle) outlives the unlink on POSIX.
        self._vectors: Vectors = np.load(path / "vectors.npy", mmap_mode="r")
        self._hnsw: Any = None
        if graph and manifest.counts.records:
            self._hnsw = self._load_graph()
        # Keep the record store open: a later GC of this snapshot unlinks the
        # file, but an open handle stays readable on POSIX.
        self._records_fh: IO[bytes] = (path / "records.jsonl").open("rb")
        self._records_size = os.fstat(self._records_fh.fileno()).st_size

    def verify_graph_file(self) -> None:
        """Hash the graph file if the open only size-checked it (graph=False)."""
        if self._verify_graph:
            verify_files(self.path, self.manifest, names=("hnsw.bin",))
            self._verify_graph = False

    def _load_graph(self) -> Any:
        self.verify_graph_file()
        hnswlib = _hnswlib()
        m = self.manifest
        idx = hnswlib.Index(space="ip", dim=m.model.dimension)
        try:
            idx.load_index(
                str(self.path / "hnsw.bin"),
                max_elements=m.counts.graph_elements,
                allow_replace_deleted=True,
            )
        except RuntimeError as exc:
            raise IndexCorruptError(
                f"hnswlib cannot load {self.path / 'hnsw.bin'}: {exc} — "
                "run `lakevec build-index --full`"
            ) from exc
        # hnswlib does not persist ef; without this it would search with ef=10.
        idx.set_ef(m.hnsw.ef_search)
        return idx

    def close(self) -> None:
        self._records_fh.close()

    def __enter__(self) -> IndexSnapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.labels)

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
                f"{self.path}: graph label missing from the record store — "
                "run `lakevec build-index --full`"
            )
        return rows.astype(np.int64)

    def record(self, row: int) -> StoredRecord:
        # pread, not seek+readline: threads sharing one snapshot must not race
        # on the file position.
        start = int(self.offsets[row])
        end = int(self.offsets[row + 1]) if row + 1 < len(self.offsets) else self._records_size
        return StoredRecord.model_validate_json(
            os.pread(self._records_fh.fileno(), end - start, start)
        )

    def iter_raw(self) -> Iterator[dict[str, Any]]:
        """Every stored record as a plain dict in row order: one sequential read.

        Reads through a duplicate of the open handle (GC-proof); sharing its
        file position is harmless because :meth:`record` uses ``pread``.
        """
        with os.fdopen(os.dup(self._records_fh.fileno()), "rb") as fh:
            fh.seek(0)
            for line in fh:
                row: dict[str, Any] = json.loads(line)
                yield row

    def iter_records(self) -> Iterator[StoredRecord]:
        """Every stored record in row order, validated."""
        for row in self.iter_raw():
            yield StoredRecord.model_validate(row)

    def _check_query(self, queries: npt.NDArray[Any]) -> Vectors:
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

    def knn(self, queries: npt.NDArray[Any], k: int) -> tuple[list[list[int]], list[list[float]]]:
        """ANN top-``k`` rows and cosine scores for each query; ``k`` is clamped."""
        q = self._check_query(queries)
        k = min(max(int(k), 0), len(self))
        if k == 0:
            return [[] for _ in q], [[] for _ in q]
        if self._hnsw is None:  # opened with graph=False: still answer, exactly
            return self.exact(q, k)
        # ef is set once at load and never touched per query: hnswlib already
        # searches with max(ef, k), and set_ef on a graph shared by threads races.
        try:
            labels, dist = self._hnsw.knn_query(q, k=k)
        except RuntimeError:
            # With many deleted elements the search can come back short of k;
            # exact search always answers.
            return self.exact(q, k)
        rows = self.rows_for_labels(np.asarray(labels, dtype=np.int64).ravel()).reshape(
            labels.shape
        )
        return rows.tolist(), (1.0 - np.asarray(dist, dtype=np.float64)).tolist()

    def exact(self, queries: npt.NDArray[Any], k: int) -> tuple[list[list[int]], list[list[float]]]:
        """Brute-force top-``k`` rows by cosine over every stored vector."""
        q = self._check_query(queries)
        k = min(max(int(k), 0), len(self))
        if k == 0:
            return [[] for _ in q], [[] for _ in q]
        sims = q @ np.asarray(self.vectors).T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(sims, top, axis=1).argsort(axis=1)[:, ::-1]
        top = np.take_along_axis(top, order, axis=1)
        return top.tolist(), np.take_along_axis(sims, top, axis=1).astype(np.float64).tolist()


def open_index(
    index_dir: str | Path,
    *,
    checksums: bool = True,
    graph: bool = True,
) -> IndexSnapshot:
    """Open the live snapshot of ``index_dir`` after verifying manifest and files.

    A build may swap ``CURRENT`` and garbage-collect the snapshot a reader has
    just resolved; when the pointer moved meanwhile, the open is retried on
    the new (complete) snapshot instead of failing.
    """
    index_dir = Path(index_dir)
    for attempt in range(5):
        pointer = _read_pointer(index_dir)
        try:
            snap = current_snapshot_dir(index_dir)
            manifest = read_manifest(snap)
            # Without the graph (diffs, status) its big file is only size-checked.
            lazy = () if graph else ("hnsw.bin",)
            verify_files(snap, manifest, checksums=checksums, sizes_only=lazy)
            return IndexSnapshot(
                snap, manifest, graph=graph, verify_graph=checksums and not graph
            )
        except (IndexCorruptError, FileNotFoundError):
            if attempt == 4 or _read_pointer(index_dir) == pointer:
                raise
    raise AssertionError("unreachable")


def _read_pointer(index_dir: Path) -> str | None:
    try:
        return (index_dir / CURRENT_FILE).read_text(encoding="utf-8")
    except OSError:
        return None


def check_model(manifest: IndexManifest, embedder_or_spec: Embedder | str) -> None:
    """Fail clearly when a model is not the one the index was built with.

    The fingerprint identifies the weights (and so the dimension) without
    loading the model, which keeps this check cheap on every query.
    """
    if isinstance(embedder_or_spec, str):
        ref = describe_model(embedder_or_spec)
        fingerprint, model_id = ref.fingerprint, ref.model_id
    else:
        fingerprint, model_id = embedder_or_spec.fingerprint, embedder_or_spec.model_id
    built = manifest.model
    if fingerprint != built.fingerprint:
        raise ModelMismatchError(
            f"index was built with model {built.model_id} ({built.spec}, dim {built.dimension}), "
            f"not {model_id} — drop --model to use the index's model, or rebuild with "
            "`lakevec build-index --full --model ...`"
        )


# ─── building ────────────────────────────────────────────────────────────────


@dataclass
class _Plan:
    """The rows of the next snapshot and what changed relative to the previous one."""

    records: list[PlaybookRecord]
    text_hashes: list[str]
    labels: list[int]  # -1 = needs a new label (new vector)
    prev_rows: list[int]  # row in the previous snapshot whose vector is reused, or -1
    added: int = 0
    updated: int = 0
    metadata_updated: int = 0
    unchanged: int = 0
    deleted_labels: list[int] = field(default_factory=list)

    @property
    def deleted(self) -> int:
        """Ids gone from the corpus (changed records also free a label, but are not deleted)."""
        return len(self.deleted_labels) - self.updated

    @property
    def to_embed(self) -> list[int]:
        return [i for i, r in enumerate(self.prev_rows) if r < 0]

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.metadata_updated or self.deleted_labels)


def _record_fields(rec: PlaybookRecord) -> dict[str, Any]:
    return rec.model_dump(include=set(PlaybookRecord.model_fields))


def plan_changes(corpus: Corpus, previous: IndexSnapshot | None) -> _Plan:
    """Diff ``corpus`` against ``previous`` by id and embedded-text hash."""
    records = list(corpus.records.values())
    hashes = [text_sha256(embed_text(r)) for r in records]
    plan = _Plan(records, hashes, [-1] * len(records), [-1] * len(records))
    if previous is None:
        plan.added = len(records)
        return plan
    # Plain dicts, not validated models: this diff is the whole cost of a
    # no-change reindex, and the store was validated when it was written.
    prev: dict[str, tuple[int, dict[str, Any]]] = {
        row["id"]: (i, row) for i, row in enumerate(previous.iter_raw())
    }
    fields = tuple(PlaybookRecord.model_fields)
    for i, (rec, h) in enumerate(zip(records, hashes, strict=True)):
        old = prev.pop(rec.id, None)
        if old is None:
            plan.added += 1
            continue
        row, stored = old
        if stored["text_sha256"] != h:
            plan.updated += 1
            plan.deleted_labels.append(int(stored["label"]))
            continue
        plan.labels[i] = int(stored["label"])
        plan.prev_rows[i] = row
        if any(getattr(rec, f) != stored.get(f) for f in fields):
            plan.metadata_updated += 1
        else:
            plan.unchanged += 1
    plan.deleted_labels.extend(int(stored["label"]) for _, stored in prev.values())
    return plan


def _new_graph(dim: int, params: HnswParams, capacity: int) -> Any:
    idx = _hnswlib().Index(space="ip", dim=dim)
    idx.init_index(
        max_elements=max(capacity, 1),
        ef_construction=params.ef_construction,
        M=params.M,
        random_seed=100,
        allow_replace_deleted=True,
    )
    return idx


def _add_in_batches(
    graph: Any,
    vectors: Vectors,
    labels: npt.NDArray[np.int64],
    *,
    replace_deleted: bool,
    progress: bool,
) -> None:
    from tqdm import tqdm

    step = 4096
    with tqdm(
        total=len(labels),
        desc="hnsw graph",
        unit="vec",
        file=sys.stderr,
        disable=not progress or len(labels) < step,
        dynamic_ncols=True,
    ) as bar:
        for start in range(0, len(labels), step):
            graph.add_items(
                vectors[start : start + step],
                labels[start : start + step],
                replace_deleted=replace_deleted,
            )
            bar.update(min(step, len(labels) - start))


def _write_records(
    path: Path,
    records: Sequence[PlaybookRecord],
    labels: Sequence[int],
    hashes: Sequence[str],
    positions: Sequence[int],
) -> npt.NDArray[np.int64]:
    offsets = np.empty(len(records), dtype=np.int64)
    pos = 0
    rows = zip(records, labels, hashes, positions, strict=True)
    with path.open("wb") as fh:
        for i, (rec, label, h, position) in enumerate(rows):
            row = _record_fields(rec) | {
                "label": int(label),
                "text_sha256": h,
                "position": int(position),
            }
            line = (json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
            offsets[i] = pos
            fh.write(line)
            pos += len(line)
        fh.flush()
        os.fsync(fh.fileno())
    return offsets


def _save_npy(path: Path, array: npt.NDArray[Any]) -> None:
    with path.open("wb") as fh:
        np.save(fh, array)
        fh.flush()
        os.fsync(fh.fileno())


def clean_leftovers(index_dir: Path) -> list[Path]:
    """Remove temporary directories of builds that died; call with the lock held."""
    removed = []
    for entry in index_dir.glob(f"{TMP_PREFIX}*"):
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=False)
        else:
            entry.unlink()
        removed.append(entry)
    return removed


def list_snapshots(index_dir: Path) -> list[Path]:
    snaps = index_dir / SNAPSHOTS_DIR
    if not snaps.is_dir():
        return []
    return sorted(p for p in snaps.iterdir() if p.is_dir() and p.name.startswith("v"))


def gc_snapshots(index_dir: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` snapshots (never the live one)."""
    keep = max(keep, 1)
    try:
        live = current_snapshot_dir(index_dir).name
    except (IndexMissingError, IndexCorruptError):
        live = None
    removed = []
    for snap in list_snapshots(index_dir)[:-keep]:
        if snap.name != live:
            # A reader may be writing a derived cache (BM25) into an old snapshot
            # right now; a failed delete is retried by the next build, and must
            # not fail this one, whose snapshot is already live.
            shutil.rmtree(snap, ignore_errors=True)
            if not snap.exists():
                removed.append(snap)
    return removed


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
    clock: Clock = utc_now,
    on_phase: Callable[[str], None] | None = None,
) -> BuildReport:
    """Build or incrementally update the index for ``corpus`` under ``index_dir``.

    Unchanged records keep their vectors; changed and new ones are embedded;
    records whose embedded text is unchanged but whose metadata changed only
    update the record store. ``full`` ignores the previous index. Embedders
    load their weights lazily, so a no-change run never loads the model.
    """
    if not 0 < rebuild_threshold <= 1:
        raise UsageProblem("--rebuild-threshold must be in (0, 1]")
    t0 = time.perf_counter()
    index_dir = Path(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    phase = on_phase or (lambda _name: None)
    with exclusive_lock(index_dir / LOCK_FILE, timeout=lock_timeout, what="lakevec build"):
        clean_leftovers(index_dir)
        previous = None
        if not full and (index_dir / CURRENT_FILE).exists():
            # The graph is loaded only if it is updated in place: a no-change
            # run or a graph rebuild never needs it.
            previous = open_index(index_dir, graph=False)
        try:
            return _build_locked(
                corpus,
                index_dir,
                embedder,
                previous,
                params=params,
                progress=progress,
                keep=keep,
                rebuild_threshold=rebuild_threshold,
                batch_size=batch_size,
                clock=clock,
                phase=phase,
                t0=t0,
            )
        finally:
            if previous is not None:
                previous.close()


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
    if prev_m is not None:
        check_model(prev_m, emb)
        if params is not None and (params.M, params.ef_construction) != (
            prev_m.hnsw.M,
            prev_m.hnsw.ef_construction,
        ):
            raise UsageProblem(
                "M/ef_construction differ from the existing index — add --full to rebuild"
            )
    params = params or (prev_m.hnsw if prev_m else HnswParams())

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
        duplicates=len(corpus.duplicates),
        problems=[str(p) for p in corpus.problems],
    )
    if (
        previous is not None
        and prev_m is not None
        and not plan.changed
        and params.ef_search == prev_m.hnsw.ef_search
    ):
        return replace(report, seconds=time.perf_counter() - t0)

    # Embed only what is new or changed.
    todo = plan.to_embed
    new_vecs: Vectors | None = None
    if todo:
        phase("embed")
        texts = [embed_text(plan.records[i]) for i in todo]
        kwargs = {"batch_size": batch_size} if batch_size else {}
        new_vecs = emb.encode(texts, progress=progress, **kwargs)
    model = (
        prev_m.model
        if prev_m is not None
        else ModelInfo(
            spec=emb.spec,
            model_id=emb.model_id,
            fingerprint=emb.fingerprint,
            dimension=emb.dimension,
        )
    )
    dim = model.dimension

    # Assemble the row-aligned vectors of the next snapshot.
    n = len(plan.records)
    vectors = np.empty((n, dim), dtype=np.float32)
    reuse = [i for i, r in enumerate(plan.prev_rows) if r >= 0]
    if reuse and previous is not None:
        vectors[reuse] = np.asarray(previous.vectors)[[plan.prev_rows[i] for i in reuse]]
    if todo and new_vecs is not None:
        vectors[todo] = new_vecs

    phase("graph")
    counts_prev = prev_m.counts if prev_m else None
    churn = (counts_prev.churn if counts_prev else 0) + len(plan.deleted_labels)
    rebuild = (
        previous is None
        or counts_prev is None
        or counts_prev.records == 0
        or churn > rebuild_threshold * max(n, 1)
    )
    labels = np.asarray(plan.labels, dtype=np.int64)
    tmp = index_dir / f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    if rebuild:
        labels = np.arange(n, dtype=np.int64)
        graph = _new_graph(dim, params, n)
        if n:
            _add_in_batches(graph, vectors, labels, replace_deleted=False, progress=progress)
        graph_elements, deleted, churn, next_label = n, 0, 0, n
    else:
        assert previous is not None and counts_prev is not None
        graph = previous._load_graph()
        for label in plan.deleted_labels:
            graph.mark_deleted(int(label))
        free = counts_prev.deleted + len(plan.deleted_labels)
        next_label = counts_prev.next_label
        fresh = np.arange(next_label, next_label + len(todo), dtype=np.int64)
        labels[todo] = fresh
        next_label += len(todo)
        reused = min(free, len(todo))
        graph_elements = counts_prev.graph_elements + len(todo) - reused
        if graph_elements > graph.get_max_elements():
            graph.resize_index(max(graph_elements, int(graph.get_max_elements() * 1.25)))
        if len(todo):
            _add_in_batches(
                graph, vectors[todo], fresh, replace_deleted=True, progress=progress
            )
        deleted = free - reused
    graph.set_ef(params.ef_search)

    # Rows sorted by label, so label → row is a binary search.
    order = np.argsort(labels, kind="stable")
    labels = labels[order]
    vectors = vectors[order]
    records = [plan.records[i] for i in order]
    hashes = [plan.text_hashes[i] for i in order]

    phase("write")
    graph.save_index(str(tmp / "hnsw.bin"))
    fsync_path(tmp / "hnsw.bin")
    _save_npy(tmp / "vectors.npy", vectors)
    _save_npy(tmp / "labels.npy", labels)
    offsets = _write_records(
        tmp / "records.jsonl", records, labels.tolist(), hashes, order.tolist()
    )
    _save_npy(tmp / "offsets.npy", offsets)
    files = {
        name: FileInfo(sha256=_sha256_file(tmp / name), bytes=(tmp / name).stat().st_size)
        for name in DATA_FILES
    }
    version = (prev_m.version if prev_m else _last_version(index_dir)) + 1
    snapshot = f"v{version:06d}"
    seconds = time.perf_counter() - t0
    manifest = IndexManifest(
        version=version,
        snapshot=snapshot,
        model=model,
        hnsw=params,
        counts=Counts(
            records=n,
            skipped=corpus.skipped,
            duplicates=len(corpus.duplicates),
            graph_elements=graph_elements,
            deleted=deleted,
            churn=churn,
            next_label=next_label,
        ),
        corpus=CorpusInfo(
            path=str(corpus.path),
            format=corpus.format,
            sha256=corpus.sha256,
            bytes=corpus.bytes,
            lines=corpus.lines,
        ),
        build=BuildInfo(
            built_at=iso_ms(clock()),
            seconds=round(seconds, 3),
            mode="full" if previous is None else "incremental",
            embedded=len(todo),
            graph_rebuilt=rebuild,
            precision=getattr(emb, "precision", None) if todo else None,
            lakevec_version=__version__,
            python=platform.python_version(),
            hnswlib=_hnswlib_version(),
        ),
        files=files,
    )
    _write_atomic(tmp / "manifest.json", manifest.model_dump_json(indent=2).encode())
    fsync_path(tmp)

    phase("swap")
    snaps = index_dir / SNAPSHOTS_DIR
    snaps.mkdir(exist_ok=True)
    final = snaps / snapshot
    if final.exists():  # left by a build killed between rename and CURRENT swap
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_path(snaps)
    _write_atomic(index_dir / CURRENT_FILE, f"{snapshot}\n".encode())
    gc_snapshots(index_dir, keep)
    return replace(
        report,
        snapshot=snapshot,
        version=version,
        changed=True,
        mode=manifest.build.mode,
        embedded=len(todo),
        graph_rebuilt=rebuild,
        seconds=time.perf_counter() - t0,
    )


def _last_version(index_dir: Path) -> int:
    versions = [0]
    for snap in list_snapshots(index_dir):
        try:
            versions.append(int(snap.name[1:]))
        except ValueError:
            continue
    return max(versions)

