"""Leftovers of killed builds in the derived-model cache, and removing them.

An export is built in ``.tmp-<pid>-<hex>`` beside the exports, and derived
files (the pre-optimised graph, the numpy pack) are written as
``.tmp-<pid>-<hex>-<name>`` inside an export before their rename. A build
killed at the wrong moment leaves ~90 MB behind; the next build removes what
belongs to dead processes and never touches a live one's.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from lakevec.files import TMP_PREFIX

# An export in progress: f"{TMP_PREFIX}{pid}-{random hex}" beside the exports.
_TMP_DIR = re.compile(rf"{re.escape(TMP_PREFIX)}(\d+)-[0-9a-f]+")
# A derived file being written inside an export: f"{TMP_PREFIX}{pid}-{hex}-{name}".
_TMP_FILE = re.compile(rf"{re.escape(TMP_PREFIX)}(\d+)-[0-9a-f]+-.+")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (True when that cannot be ruled out)."""
    if pid <= 0:
        return True  # not a pid we write; never treat it as dead
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists but belongs to another user
        return True
    return True


def remove_stale_exports(root: Path) -> list[Path]:
    """Delete temporary export directories whose process has died; the removed paths.

    A build killed during the export leaves its ``.tmp-<pid>-<hex>``
    directory (~90 MB) behind. A directory of a live process (an export in
    progress) is never touched; a dead build's pid reused by a new process
    only delays the removal. Never raises.
    """
    removed = []
    try:
        children = list(root.iterdir())
    except OSError:
        return []
    for child in children:
        match = _TMP_DIR.fullmatch(child.name)
        if match is None or child.is_symlink() or not child.is_dir():
            continue
        if pid_alive(int(match.group(1))):
            continue
        shutil.rmtree(child, ignore_errors=True)
        if not child.exists():
            removed.append(child)
    return removed


def remove_stale_temp_files(target: Path) -> list[Path]:
    """Delete derived files half-written inside an export by processes now dead.

    A build killed while writing the pre-optimised graph or the numpy pack
    leaves a ~90 MB ``.tmp-<pid>-<hex>-<name>`` file behind. Never raises.
    """
    removed = []
    try:
        children = list(target.iterdir())
    except OSError:
        return []
    for child in children:
        match = _TMP_FILE.fullmatch(child.name)
        if match is None or pid_alive(int(match.group(1))) or not child.is_file():
            continue
        try:
            child.unlink()
        except OSError:
            continue  # another cleaner got it first, or read-only: harmless either way
        removed.append(child)
    return removed
