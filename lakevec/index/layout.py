"""The files and directories of an index, and the checks that make them trustworthy.

::

    index/
      CURRENT                  name of the live snapshot (replaced atomically)
      .lock                    writer lock (flock); holds the builder's pid
      snapshots/v000007/       one complete, immutable snapshot (see manifest.py)
      .tmp-<pid>-<rand>/       a build in progress (removed by the next build if killed)
"""

from __future__ import annotations

import shutil
import stat
from collections.abc import Iterable
from pathlib import Path

from lakevec.errors import IndexCorruptError, IndexMissingError
from lakevec.files import TMP_PREFIX, sha256_file, write_atomic
from lakevec.index.manifest import REBUILD_HINT, IndexManifest
from lakevec.index.verified import VerifiedFiles

CURRENT_FILE = "CURRENT"
SNAPSHOTS_DIR = "snapshots"
LOCK_FILE = ".lock"


def read_pointer(index_dir: Path) -> str | None:
    """The raw content of ``CURRENT`` (None when it cannot be read at all)."""
    try:
        return (index_dir / CURRENT_FILE).read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return None


def current_snapshot_dir(index_dir: Path) -> Path:
    """The live snapshot directory, or :class:`IndexMissingError`/:class:`IndexCorruptError`."""
    pointer = index_dir / CURRENT_FILE
    try:
        raw = pointer.read_bytes()
    except FileNotFoundError:
        raise IndexMissingError(
            f"no index at {index_dir} — run `lakevec build-index` first"
        ) from None
    except OSError as exc:  # a directory in its place, permissions...
        raise IndexCorruptError(
            f"{pointer} cannot be read ({exc.strerror or exc}) — {REBUILD_HINT}"
        ) from None
    try:
        name = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise IndexCorruptError(f"{pointer} is not UTF-8 text — {REBUILD_HINT}") from None
    if not name or "/" in name or name.startswith(".") or "\0" in name:
        raise IndexCorruptError(f"{pointer} is damaged ({name[:80]!r}) — {REBUILD_HINT}")
    snap = index_dir / SNAPSHOTS_DIR / name
    if not snap.is_dir():
        raise IndexCorruptError(f"{pointer} names missing snapshot {name} — {REBUILD_HINT}")
    return snap


def publish_pointer(index_dir: Path, snapshot: str) -> None:
    """Point ``CURRENT`` at ``snapshot`` atomically (call with the writer lock held).

    A directory squatting on the name (damage) is removed first: only a
    build, under the lock, ever gets here.
    """
    pointer = index_dir / CURRENT_FILE
    if pointer.is_dir() and not pointer.is_symlink():
        shutil.rmtree(pointer)
    write_atomic(pointer, f"{snapshot}\n".encode())


def verify_files(
    snapshot_dir: Path,
    manifest: IndexManifest,
    *,
    checksums: bool = True,
    names: Iterable[str] | None = None,
    sizes_only: Iterable[str] = (),
    rehash: bool = False,
) -> None:
    """Check data files' sizes (and sha256, except ``sizes_only``) against the manifest.

    ``names`` defaults to every file the manifest lists (the core files are
    always required). Runs before anything is handed to hnswlib: a truncated
    or corrupted graph file can crash the process instead of raising. A file
    hashed before and unchanged since (:mod:`lakevec.index.verified`) is not
    hashed again unless ``rehash``.
    """
    skip_sha = set(sizes_only)
    every = {*manifest.required_files, *manifest.files}
    wanted = list(names) if names is not None else sorted(every)
    fix = f"{REBUILD_HINT} to rebuild it"
    known = VerifiedFiles(snapshot_dir) if checksums else None
    for name in wanted:
        info = manifest.files.get(name)
        path = snapshot_dir / name
        if info is None:
            raise IndexCorruptError(f"manifest of {snapshot_dir} lists no {name} — {fix}")
        try:
            st = path.stat()
        except FileNotFoundError:
            raise IndexCorruptError(f"index file {path} is missing — {fix}") from None
        if not stat.S_ISREG(st.st_mode):
            raise IndexCorruptError(f"index file {path} is not a regular file — {fix}")
        if st.st_size != info.bytes:
            raise IndexCorruptError(
                f"index file {path} is {st.st_size} bytes, manifest says {info.bytes} "
                f"(truncated or corrupted) — {fix}"
            )
        if known is None or name in skip_sha:
            continue
        if not rehash and known.digest(name, st) == info.sha256:
            continue
        if sha256_file(path) != info.sha256:
            raise IndexCorruptError(f"index file {path} fails its sha256 checksum — {fix}")
        known.remember(name, st, info.sha256)
    if known is not None:
        known.save()


def clean_leftovers(index_dir: Path) -> list[Path]:
    """Remove temporary directories of builds that died; call with the lock held."""
    removed = []
    for entry in index_dir.glob(f"{TMP_PREFIX}*"):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
        removed.append(entry)
    return removed


def list_snapshots(index_dir: Path) -> list[Path]:
    snaps = index_dir / SNAPSHOTS_DIR
    if not snaps.is_dir():
        return []
    return sorted(p for p in snaps.iterdir() if p.is_dir() and p.name.startswith("v"))


def last_version(index_dir: Path) -> int:
    """The highest snapshot number present (0 when there is none)."""
    versions = [0]
    for snap in list_snapshots(index_dir):
        try:
            versions.append(int(snap.name[1:]))
        except ValueError:
            continue
    return max(versions)


def gc_snapshots(index_dir: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` snapshots (never the live one)."""
    keep = max(keep, 1)
    try:
        live: str | None = current_snapshot_dir(index_dir).name
    except (IndexMissingError, IndexCorruptError):
        live = None
    removed = []
    for snap in list_snapshots(index_dir)[:-keep]:
        if snap.name != live:
            # A failed delete (a reader's open handle on an exotic filesystem,
            # permissions) is retried by the next build and must not fail this
            # one, whose snapshot is already live.
            shutil.rmtree(snap, ignore_errors=True)
            if not snap.exists():
                removed.append(snap)
    return removed
