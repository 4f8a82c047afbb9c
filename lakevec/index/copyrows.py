"""Copying the unchanged rows of a snapshot into the next one, without loading them.

A small update keeps almost every row: their vectors and record-store lines
are copied as byte ranges (``copy_file_range``: in the kernel, never through
Python memory), and only changed or new rows are written.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import numpy.typing as npt

from lakevec.corpus import PlaybookRecord
from lakevec.index.snapshot import IndexSnapshot
from lakevec.index.writer import record_line

Rows = npt.NDArray[np.int64]


def runs(rows: Rows) -> list[tuple[int, int]]:
    """Sorted rows as (first, count) runs of consecutive rows."""
    if not len(rows):
        return []
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [len(rows)]])
    return [(int(rows[s]), int(e - s)) for s, e in zip(starts, ends, strict=True)]


def copy_bytes(src: int, dst: int, offset: int, count: int) -> None:
    """Append ``count`` bytes of ``src`` from ``offset`` to ``dst`` (in the kernel if it can)."""
    while count > 0:
        try:
            done = os.copy_file_range(src, dst, count, offset)
        except OSError:  # a filesystem pair without it: plain reads and writes
            done = os.write(dst, os.pread(src, min(count, 1 << 22), offset))
        if done <= 0:
            raise OSError(f"short copy at byte {offset}")
        offset += done
        count -= done


def write_kept_vectors(
    previous: IndexSnapshot, tmp: Path, rows: Rows, new: npt.NDArray[np.float32]
) -> None:
    """vectors.npy of the kept rows plus the new ones, without loading the old ones."""
    dim = previous.dimension
    old = previous.path / "vectors.npy"
    with old.open("rb") as fh:
        np.lib.format.read_magic(fh)
        np.lib.format.read_array_header_1_0(fh)
        data_start = fh.tell()
        with (tmp / "vectors.npy").open("wb") as out:
            header = {"descr": "<f4", "fortran_order": False, "shape": (len(rows) + len(new), dim)}
            np.lib.format.write_array_header_1_0(out, header)
            out.flush()
            row_bytes = 4 * dim
            for first, count in runs(rows):
                copy_bytes(fh.fileno(), out.fileno(), data_start + first * row_bytes,
                      count * row_bytes)
            out.write(np.ascontiguousarray(new, dtype="<f4").tobytes())
            out.flush()
            os.fsync(out.fileno())


def write_kept_records(
    previous: IndexSnapshot,
    tmp: Path,
    rows: Rows,
    rewritten: dict[int, PlaybookRecord],
    appended: list[bytes],
) -> Rows:
    """records.jsonl: kept rows copied (or rewritten if their metadata changed), then new ones."""
    size = (previous.path / "records.jsonl").stat().st_size
    ends = np.append(previous.offsets[1:], size)
    lengths: list[int] = []
    with (previous.path / "records.jsonl").open("rb") as fh, \
            (tmp / "records.jsonl").open("wb") as out:
        for first, count in runs(rows):
            run = range(first, first + count)
            for sub_first, sub_count, changed in _splitruns(run, rewritten):
                if changed:
                    rec = rewritten[sub_first]
                    stored = previous.record(sub_first)
                    line = record_line(rec, stored.label, stored.text_sha256)
                    os.write(out.fileno(), line)
                    lengths.append(len(line))
                    continue
                start = int(previous.offsets[sub_first])
                end = int(ends[sub_first + sub_count - 1])
                copy_bytes(fh.fileno(), out.fileno(), start, end - start)
                lengths.extend((ends[sub_first:sub_first + sub_count]
                                - previous.offsets[sub_first:sub_first + sub_count]).tolist())
        for line in appended:
            os.write(out.fileno(), line)
            lengths.append(len(line))
        os.fsync(out.fileno())
    offsets = np.zeros(len(lengths), dtype=np.int64)
    if lengths:
        np.cumsum(lengths[:-1], out=offsets[1:])
    return offsets


def _splitruns(run: range, rewritten: dict[int, PlaybookRecord]) -> list[tuple[int, int, bool]]:
    """A run of rows cut around rewritten ones: (first, count, rewritten?)."""
    out: list[tuple[int, int, bool]] = []
    start = run.start
    for row in sorted(r for r in rewritten if run.start <= r < run.stop):
        if row > start:
            out.append((start, row - start, False))
        out.append((row, 1, True))
        start = row + 1
    if start < run.stop:
        out.append((start, run.stop - start, False))
    return out
