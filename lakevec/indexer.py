"""The indexer: corpus file → embedded, versioned HNSW index (full or incremental)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from lakevec.corpus import CorpusFormat, read_corpus
from lakevec.embed import DEFAULT_MODEL, Embedder, load_embedder
from lakevec.errors import IndexCorruptError, IndexMissingError
from lakevec.index import (
    DEFAULT_KEEP,
    DEFAULT_LOCK_TIMEOUT,
    DEFAULT_REBUILD_THRESHOLD,
    BuildReport,
    Clock,
    HnswParams,
    IndexManifest,
    build_index,
    current_snapshot_dir,
    read_manifest,
    utc_now,
)


def existing_manifest(index_dir: Path) -> IndexManifest | None:
    """The manifest of the live snapshot, if there is a readable one."""
    try:
        return read_manifest(current_snapshot_dir(index_dir))
    except (IndexMissingError, IndexCorruptError):
        return None


def existing_model_spec(index_dir: Path) -> str | None:
    """The model spec of the live snapshot, if there is a readable one."""
    manifest = existing_manifest(index_dir)
    return manifest.model.spec if manifest else None


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
    precision: str = "auto",
    query_model: bool = True,
    embedder: Embedder | None = None,
    clock: Clock = utc_now,
) -> BuildReport:
    """Read the corpus and bring the index at ``index_dir`` up to date with it.

    Without ``model`` an existing index keeps its own model (so a cron reindex
    needs no flags); a new index uses the packaged all-MiniLM-L6-v2.
    ``hnsw`` overrides some of ``M``/``ef_construction``/``ef_search``; the
    rest come from the existing index (unless ``full``) or the defaults.
    ``precision`` is ``auto|fp32|bf16`` (see :func:`lakevec.embed.resolve_precision`).
    With ``query_model`` a sentence-transformers model also gets its torch-free
    ONNX query export (cached per model; a failed export only prints a note).
    """
    corpus = read_corpus(corpus_path, corpus_format, strict=strict)
    params = None
    if hnsw:
        base = None if full else existing_manifest(index_dir)
        params = HnswParams.model_validate(
            {**(base.hnsw if base else HnswParams()).model_dump(), **hnsw}
        )
    if embedder is None:
        # --full alone re-embeds with the index's own model; switching models
        # takes an explicit --model (a silent fall-back to the default would
        # replace a custom model's index behind the user's back).
        spec = model or existing_model_spec(index_dir) or DEFAULT_MODEL
        embedder = load_embedder(spec, precision=precision)
    report = build_index(
        corpus,
        index_dir,
        embedder,
        params=params,
        full=full,
        progress=progress,
        keep=keep,
        rebuild_threshold=rebuild_threshold,
        lock_timeout=lock_timeout,
        batch_size=batch_size,
        clock=clock,
    )
    prepare = getattr(embedder, "prepare_query_model", None)
    # Not on a no-op: a cron reindex that changed nothing must not load torch.
    if query_model and prepare is not None and report.changed:
        note = prepare(progress=progress)
        if progress:
            print(note, file=sys.stderr)
    return report
