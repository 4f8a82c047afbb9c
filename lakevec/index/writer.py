"""Writing the files of a new snapshot, and publishing it."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lakevec.corpus import PlaybookRecord
from lakevec.files import fsync_path
from lakevec.index.layout import SNAPSHOTS_DIR, gc_snapshots, publish_pointer
from lakevec.index.lexical import BM25Index
from lakevec.index.manifest import BM25_DIR, DATA_FILES
from lakevec.index.plan import record_fields


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
    return [*DATA_FILES, *derived]


def write_bm25(directory: Path, index: BM25Index) -> None:
    index.save(directory)
    for path in directory.rglob("*"):
        if path.is_file():
            fsync_path(path)
    fsync_path(directory)


def write_records(
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
            row = record_fields(rec) | {
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


def save_npy(path: Path, array: npt.NDArray[Any]) -> None:
    with path.open("wb") as fh:
        np.save(fh, array)
        fh.flush()
        os.fsync(fh.fileno())
