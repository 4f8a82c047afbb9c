"""Writing the files of a new snapshot, and publishing it."""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lakevec import __version__
from lakevec.clock import Clock, iso_ms
from lakevec.corpus import PlaybookRecord
from lakevec.embed.base import Embedder, verified_cosine
from lakevec.files import fsync_path, sha256_file, write_atomic
from lakevec.index.graph import hnswlib_version
from lakevec.index.layout import SNAPSHOTS_DIR, gc_snapshots, last_version, publish_pointer
from lakevec.index.lexical import BM25Index
from lakevec.index.manifest import (
    BM25_DIR,
    DATA_FILES,
    MANIFEST_FILE,
    ROW_FILES,
    BuildInfo,
    CorpusInfo,
    Counts,
    FileInfo,
    HnswParams,
    IndexManifest,
    ModelInfo,
)
from lakevec.index.plan import record_fields
from lakevec.index.rowkeys import ROWKEYS_FILE, RowKeys
from lakevec.index.verified import remember_digests


def publish(
    index_dir: Path, tmp: Path, snapshot: str, keep: int, phase: Callable[[str], None]
) -> None:
    """Rename the finished snapshot into place, then point ``CURRENT`` at it."""
    phase("swap")
    snaps = index_dir / SNAPSHOTS_DIR
    snaps.mkdir(exist_ok=True)
    final = snaps / snapshot
    if final.exists():  # left by a build killed between rename and CURRENT swap
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_path(snaps)
    phase("rename")
    publish_pointer(index_dir, snapshot)
    phase("gc")
    gc_snapshots(index_dir, keep)


def snapshot_files(tmp: Path) -> list[str]:
    derived = sorted(p.relative_to(tmp).as_posix() for p in (tmp / BM25_DIR).rglob("*")
                     if p.is_file())
    return [*DATA_FILES, *ROW_FILES, *derived]


def write_bm25(directory: Path, index: BM25Index) -> None:
    index.save(directory)
    for path in directory.rglob("*"):
        if path.is_file():
            fsync_path(path)
    fsync_path(directory)


def record_line(rec: PlaybookRecord, label: int, text_sha256: str) -> bytes:
    """A record store row (format 2: its corpus position lives in positions.npy)."""
    row = record_fields(rec) | {"label": int(label), "text_sha256": text_sha256}
    return (json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def write_records(
    path: Path,
    records: Sequence[PlaybookRecord],
    labels: Sequence[int],
    hashes: Sequence[str],
) -> npt.NDArray[np.int64]:
    offsets = np.empty(len(records), dtype=np.int64)
    pos = 0
    with path.open("wb") as fh:
        for i, (rec, label, h) in enumerate(zip(records, labels, hashes, strict=True)):
            line = record_line(rec, label, h)
            offsets[i] = pos
            fh.write(line)
            pos += len(line)
        fh.flush()
        os.fsync(fh.fileno())
    return offsets


def write_rowkeys(directory: Path, keys: RowKeys) -> None:
    path = directory / ROWKEYS_FILE
    with path.open("wb") as fh:
        fh.write(keys.model_dump_json().encode())
        fh.flush()
        os.fsync(fh.fileno())


def save_npy(path: Path, array: npt.NDArray[Any]) -> None:
    with path.open("wb") as fh:
        np.save(fh, array)
        fh.flush()
        os.fsync(fh.fileno())


def seal_snapshot(
    tmp: Path,
    index_dir: Path,
    prev_m: IndexManifest | None,
    emb: Embedder,
    *,
    model: ModelInfo,
    params: HnswParams,
    counts: Counts,
    corpus: CorpusInfo,
    embedded: int,
    rebuilt: bool,
    keep: int,
    clock: Clock,
    phase: Callable[[str], None],
    t0: float,
) -> IndexManifest:
    """Checksum the files written to ``tmp``, add the manifest, and publish the snapshot."""
    files = {
        name: FileInfo(sha256=sha256_file(tmp / name), bytes=(tmp / name).stat().st_size)
        for name in snapshot_files(tmp)
    }
    version = (prev_m.version if prev_m else last_version(index_dir)) + 1
    snapshot = f"v{version:06d}"
    manifest = IndexManifest(
        version=version,
        snapshot=snapshot,
        model=model,
        hnsw=params,
        counts=counts,
        corpus=corpus,
        build=BuildInfo(
            built_at=iso_ms(clock.now()),
            seconds=round(time.perf_counter() - t0, 3),
            mode="full" if prev_m is None else "incremental",
            embedded=embedded,
            graph_rebuilt=rebuilt,
            precision=emb.precision if embedded else None,
            backend=emb.backend if embedded else None,
            encoder_min_cosine=verified_cosine(emb) if embedded else None,
            lakevec_version=__version__,
            python=platform.python_version(),
            hnswlib=hnswlib_version(),
        ),
        files=files,
    )
    write_atomic(tmp / MANIFEST_FILE, manifest.model_dump_json(indent=2).encode())
    fsync_path(tmp)
    publish(index_dir, tmp, snapshot, keep, phase)
    remember_digests(index_dir / SNAPSHOTS_DIR / snapshot, {n: f.sha256 for n, f in files.items()})
    return manifest
