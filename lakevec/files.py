"""Durable-file helpers: fsync by path, atomic replace, streaming sha256."""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

TMP_PREFIX = ".tmp-"


def owned_temp_name(name: str = "") -> str:
    """``.tmp-<pid>-<hex>[-name]``: a temp name that says which process owns it.

    Leftovers of dead builds are removed by :mod:`lakevec.embed.leftovers`
    (by pid) and :func:`lakevec.index.layout.clean_leftovers` (under the lock).
    """
    tag = f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    return f"{tag}-{name}" if name else tag


def fsync_path(path: Path) -> None:
    """fsync a file or directory by path (a directory fsync makes renames in it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: write a temp sibling, fsync, rename, fsync the dir."""
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}-{secrets.token_hex(4)}")
    try:
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_path(path.parent)


def sha256_file(path: Path) -> str:
    """sha256 hex of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
