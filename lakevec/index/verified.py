"""Which snapshot files were already hashed, so that a fresh reader does not rehash them.

Snapshots are immutable once published, yet ``open_index`` checked the sha256
of every file on every open: ~230 MB for a 53k index, a few tenths of a
second of every cold ``search``/``replay``. Like the model fingerprints
(:mod:`lakevec.embed.models`), each file's verified digest is remembered with
what any rewrite of it changes (size, mtime, ctime and inode; ctime cannot be
set back by a tool), in a small JSON file per snapshot directory::

    <cache root>/verified/<sha256 of the snapshot path>.json

A file counts as verified only when its stat is unchanged *and* the digest
recorded then is the one its manifest asks for now. ``lakevec status
--verify`` ignores the cache and rehashes everything. The cache is an
optimisation only: missing, damaged or unwritable means hashing as before.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lakevec.files import write_atomic
from lakevec.settings import cache_root

VERIFIED_DIR = "verified"
_FORMAT = 1
_STAT_KEYS = ("size", "mtime_ns", "ctime_ns", "ino")


def _stat_key(st: os.stat_result) -> dict[str, int]:
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns,
            "ino": st.st_ino}


def cache_file(snapshot_dir: Path) -> Path:
    key = hashlib.sha256(str(snapshot_dir.resolve()).encode()).hexdigest()[:32]
    return cache_root() / VERIFIED_DIR / f"{key}.json"


class VerifiedFiles:
    """The remembered digests of one snapshot directory's files."""

    def __init__(self, snapshot_dir: Path) -> None:
        self.path = cache_file(snapshot_dir)
        self._entries: dict[str, dict[str, Any]] = {}
        self._dirty = False
        try:
            data = json.loads(self.path.read_bytes())
        except (OSError, ValueError):
            return
        if isinstance(data, dict) and data.get("format") == _FORMAT:
            files = data.get("files")
            if isinstance(files, dict):
                self._entries = {k: v for k, v in files.items() if isinstance(v, dict)}

    def digest(self, name: str, st: os.stat_result) -> str | None:
        """The remembered sha256 of ``name`` if the file is unchanged since it was hashed."""
        entry = self._entries.get(name)
        if entry is None or any(entry.get(k) != v for k, v in _stat_key(st).items()):
            return None
        sha = entry.get("sha256")
        return sha if isinstance(sha, str) else None

    def remember(self, name: str, st: os.stat_result, sha256: str) -> None:
        entry = {**_stat_key(st), "sha256": sha256}
        if self._entries.get(name) != entry:
            self._entries[name] = entry
            self._dirty = True

    def save(self) -> None:
        """Write the cache if anything was added (never raises)."""
        if not self._dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, json.dumps({"format": _FORMAT, "files": self._entries},
                                               sort_keys=True).encode())
            self._dirty = False
        except OSError:
            pass


def remember_digests(snapshot_dir: Path, digests: Mapping[str, str]) -> None:
    """Record digests a build computed for the files it just wrote (never raises).

    Saves the next reader (a reindex at 53k: ~240 MB) from hashing them again.
    """
    known = VerifiedFiles(snapshot_dir)
    for name, sha256 in digests.items():
        try:
            known.remember(name, (snapshot_dir / name).stat(), sha256)
        except OSError:
            continue  # a file gone already (GC); the reader hashes as before
    known.save()
