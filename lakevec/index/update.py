"""Corpus file → index: read the corpus, pick the model, build, and remember bad lines."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from lakevec.clock import SYSTEM_CLOCK, Clock
from lakevec.corpus import CorpusFormat, read_corpus
from lakevec.embed.auto import AutoEmbedder
from lakevec.embed.base import Embedder
from lakevec.embed.loader import load_embedder
from lakevec.embed.onnx_export import ensure_export
from lakevec.embed.ray_embed import RayEmbedder, RayOptions
from lakevec.embed.sentence import SentenceTransformerEmbedder
from lakevec.errors import IndexCorruptError, IndexMissingError
from lakevec.files import write_atomic
from lakevec.index.build import BuildReport, build_index
from lakevec.index.delta import small_update
from lakevec.index.layout import current_snapshot_dir
from lakevec.index.manifest import HnswParams, IndexManifest, read_manifest
from lakevec.settings import (
    DEFAULT_KEEP,
    DEFAULT_LOCK_TIMEOUT,
    DEFAULT_MODEL,
    DEFAULT_PRECISION,
    DEFAULT_REBUILD_THRESHOLD,
)

# Index-level record of the corpus lines already reported as skipped, so an
# unattended reindex warns about each bad line once, not every 15 minutes.
REPORTED_FILE = "reported-lines.json"


def existing_manifest(index_dir: Path) -> IndexManifest | None:
    """The manifest of the live snapshot; None when there is no index yet.

    A damaged index raises :class:`IndexCorruptError`.
    """
    try:
        return read_manifest(current_snapshot_dir(index_dir))
    except IndexMissingError:
        return None


def _model_spec(index_dir: Path, model: str | None, full: bool) -> str:
    """The model to embed with: the given one, else the index's own, else the default.

    Without ``--model`` an index keeps its model, so a cron reindex needs no
    flags; when the live manifest is damaged nobody knows that model, and
    guessing (the default) could silently replace a custom model's index.
    """
    if model:
        return model
    try:
        manifest = existing_manifest(index_dir)
    except IndexCorruptError as exc:
        if full:
            return DEFAULT_MODEL
        raise IndexCorruptError(
            f"{exc}; its model is unknown — rebuild with `lakevec build-index --full "
            "[--model PATH]`"
        ) from exc
    return manifest.model.spec if manifest else DEFAULT_MODEL


def index_corpus(
    corpus_path: Path,
    index_dir: Path,
    *,
    model: str | None = None,
    corpus_format: CorpusFormat = "auto",
    strict: bool = False,
    full: bool = False,
    hnsw: Mapping[str, int] | None = None,
    progress: bool = False,
    keep: int = DEFAULT_KEEP,
    rebuild_threshold: float = DEFAULT_REBUILD_THRESHOLD,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    batch_size: int | None = None,
    precision: str = DEFAULT_PRECISION,
    query_model: bool = True,
    embedder: Embedder | None = None,
    ray: RayOptions | None = None,
    clock: Clock = SYSTEM_CLOCK,
    on_phase: Callable[[str], None] | None = None,
) -> BuildReport:
    """Read the corpus and bring the index at ``index_dir`` up to date with it.

    ``hnsw`` overrides some of ``M``/``ef_construction``/``ef_search``; the
    rest come from the existing index (unless ``full``) or the defaults.
    With ``query_model`` a sentence-transformers model also gets its
    torch-free ONNX query export (cached per model; a failed export only
    prints a note). ``BuildReport.problems`` lists the corpus lines skipped
    that no earlier build of this index reported.

    With ``ray`` the records to embed are embedded on a Ray cluster
    (:class:`~lakevec.embed.ray_embed.RayEmbedder`, same model and precision);
    planning, the graph and the publish stay here. A build with nothing to
    embed never connects to the cluster.

    An update of an existing index goes by :func:`~lakevec.index.delta.small_update`
    (only new lines parsed, only changed rows written) when it applies, and
    by the general build otherwise; both give the same snapshot. ``on_phase``
    is called with each of :data:`~lakevec.index.build.BUILD_PHASES` on either path.
    """
    index_dir = Path(index_dir)
    if embedder is None:
        embedder = load_embedder(_model_spec(index_dir, model, full), precision=precision)
    if ray is not None and not isinstance(embedder, RayEmbedder):
        embedder = RayEmbedder(embedder, ray)
    params = _params(index_dir, hnsw, full)
    small = None if full else small_update(
        corpus_path, index_dir, embedder, fmt=corpus_format, strict=strict,
        params=params, keep=keep, rebuild_threshold=rebuild_threshold,
        lock_timeout=lock_timeout, batch_size=batch_size, progress=progress, clock=clock,
        on_phase=on_phase,
    )
    report = small if small is not None else _general_build(
        corpus_path, index_dir, embedder, corpus_format=corpus_format, strict=strict,
        full=full, params=params, progress=progress, keep=keep,
        rebuild_threshold=rebuild_threshold, lock_timeout=lock_timeout, batch_size=batch_size,
        clock=clock, on_phase=on_phase,
    )
    # Not on a no-op: a cron reindex that changed nothing must not load torch.
    local = embedder.local if isinstance(embedder, RayEmbedder) else embedder
    if isinstance(local, AutoEmbedder):  # --precision auto/int8: export its model too
        local = local.sentence
    if query_model and report.changed and isinstance(local, SentenceTransformerEmbedder):
        note = ensure_export(local, progress=progress)
        if progress:
            print(note, file=sys.stderr)
    return replace(report, problems=_new_problems(index_dir, report.skipped_lines))


def _params(index_dir: Path, hnsw: Mapping[str, int] | None, full: bool) -> HnswParams | None:
    """``hnsw`` overrides on top of the existing index's parameters (or the defaults)."""
    if not hnsw:
        return None
    base = None if full else _safe_manifest(index_dir)
    return HnswParams.model_validate({**(base.hnsw if base else HnswParams()).model_dump(), **hnsw})


def _general_build(
    corpus_path: Path, index_dir: Path, embedder: Embedder, *, corpus_format: CorpusFormat,
    strict: bool, full: bool, params: HnswParams | None, progress: bool, keep: int,
    rebuild_threshold: float, lock_timeout: float, batch_size: int | None, clock: Clock,
    on_phase: Callable[[str], None] | None,
) -> BuildReport:
    corpus = read_corpus(corpus_path, corpus_format, strict=strict)
    return build_index(
        corpus, index_dir, embedder, params=params, full=full, progress=progress, keep=keep,
        rebuild_threshold=rebuild_threshold, lock_timeout=lock_timeout,
        batch_size=batch_size, clock=clock, on_phase=on_phase,
    )


def _safe_manifest(index_dir: Path) -> IndexManifest | None:
    try:
        return existing_manifest(index_dir)
    except IndexCorruptError:
        return None


def _new_problems(index_dir: Path, skipped: list[dict[str, Any]]) -> list[str]:
    """Skipped lines not reported before; remembers the current set for next time."""
    path = index_dir / REPORTED_FILE
    try:
        seen = {(int(e["line"]), str(e["reason"])) for e in json.loads(path.read_bytes())}
    except (OSError, ValueError, TypeError, KeyError):
        seen = set()  # first run, or an unreadable file: report everything once
    current = [(int(e["line"]), str(e["reason"])) for e in skipped]
    if set(current) != seen:
        try:
            write_atomic(path, json.dumps([{"line": n, "reason": r} for n, r in current]).encode())
        except OSError as exc:
            print(f"note: cannot record reported lines in {path}: {exc}", file=sys.stderr)
    return [f"line {n}: {r}" for n, r in current if (n, r) not in seen]
