"""The persisted models of an index snapshot: its manifest and its record store rows."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lakevec.corpus import PlaybookRecord
from lakevec.errors import IndexCorruptError
from lakevec.settings import DEFAULT_EF_CONSTRUCTION, DEFAULT_EF_SEARCH, DEFAULT_M

#: 2: record positions in ``positions.npy`` (not in the record store), line
#: digests in ``rowkeys.json``, BM25 as term counts. Format 1 is still read.
FORMAT_VERSION: Literal[2] = 2
MANIFEST_FILE = "manifest.json"
#: Core data files of every snapshot (derived files, e.g. ``bm25/...``, are
#: listed in the manifest's ``files`` too).
DATA_FILES = ("hnsw.bin", "vectors.npy", "labels.npy", "offsets.npy", "records.jsonl")
#: Files format 2 adds to the core (required there).
ROW_FILES = ("positions.npy", "rowkeys.json")
BM25_DIR = "bm25"
REBUILD_HINT = "run `lakevec build-index --full`"


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
    duplicates: int = Field(
        ge=0, description="corpus lines overridden by a later line with the same id"
    )
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
    # Numeric precision of the vectors this build embedded ("fp32"/"bf16"/"int8");
    # None in manifests written before it was recorded, or with no embedding.
    precision: str | None = None
    # The backend that embedded them ("sentence-transformers", "onnx", ...) and
    # the min cosine to sentence-transformers fp32 it was verified at (1.0 for
    # fp32 sentence-transformers itself); None in older manifests, without
    # embedding, or when unknown.
    backend: str | None = None
    encoder_min_cosine: float | None = None


class IndexManifest(_Strict):
    """Everything needed to trust, load and reproduce an index snapshot."""

    format: Literal["lakevec-index"] = "lakevec-index"
    format_version: Literal[1, 2] = FORMAT_VERSION
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

    @property
    def has_bm25(self) -> bool:
        """Whether the build stored the BM25 index (snapshots before it did not)."""
        return any(name.startswith(BM25_DIR + "/") for name in self.files)

    @property
    def required_files(self) -> tuple[str, ...]:
        return DATA_FILES + ROW_FILES if self.format_version >= 2 else DATA_FILES


class StoredRecord(PlaybookRecord):
    """A corpus record as kept in the index's record store."""

    label: int
    text_sha256: str
    # Format 2 keeps positions in positions.npy; the reader fills this in.
    position: int = Field(-1, description="0-based position in the corpus at build time")


def read_manifest(snapshot_dir: Path) -> IndexManifest:
    """The validated manifest of a snapshot, or :class:`IndexCorruptError`."""
    path = snapshot_dir / MANIFEST_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise IndexCorruptError(f"{path} is missing — {REBUILD_HINT}") from None
    except OSError as exc:  # a directory in its place, permissions...
        raise IndexCorruptError(
            f"{path} cannot be read ({exc.strerror or exc}) — {REBUILD_HINT}"
        ) from None
    try:
        return IndexManifest.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "manifest"
        raise IndexCorruptError(
            f"{path} is invalid ({where}: {first['msg']}) — {REBUILD_HINT}"
        ) from None
