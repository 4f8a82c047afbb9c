"""Index health and corpus drift, without loading the model or the HNSW graph.

``lakevec status`` answers "is the index current and healthy?" cheaply enough
to run from monitoring: it reads the live manifest, the record store and the
corpus, and diffs them with the same :func:`~lakevec.index.plan_changes` a
build uses, so "drift" is exactly what the next ``lakevec reindex`` would do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lakevec.clock import SYSTEM_CLOCK, Clock, parse_iso
from lakevec.corpus import CorpusFormat, read_corpus
from lakevec.errors import CorpusError
from lakevec.index.layout import list_snapshots
from lakevec.index.manifest import IndexManifest
from lakevec.index.plan import plan_changes
from lakevec.index.snapshot import open_index


@dataclass(frozen=True)
class Drift:
    """How the corpus differs from the live index right now."""

    added: int
    updated: int
    metadata_updated: int
    deleted: int
    unchanged: int

    @property
    def total(self) -> int:
        return self.added + self.updated + self.metadata_updated + self.deleted

    def as_dict(self) -> dict[str, int]:
        return {
            "added": self.added,
            "updated": self.updated,
            "metadata_updated": self.metadata_updated,
            "deleted": self.deleted,
            "unchanged": self.unchanged,
            "total": self.total,
        }


@dataclass(frozen=True)
class IndexStatus:
    """The live snapshot's vital signs plus corpus drift (``None`` if unreadable)."""

    index_dir: Path
    manifest: IndexManifest
    snapshots: int
    age_seconds: float
    corpus_path: Path | None
    drift: Drift | None
    corpus_error: str | None = None

    @property
    def deleted_ratio(self) -> float:
        c = self.manifest.counts
        return c.deleted / c.graph_elements if c.graph_elements else 0.0

    @property
    def churn_ratio(self) -> float:
        c = self.manifest.counts
        return c.churn / c.records if c.records else 0.0

    @property
    def up_to_date(self) -> bool | None:
        return None if self.drift is None else self.drift.total == 0

    def as_dict(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "index": str(self.index_dir),
            "snapshot": m.snapshot,
            "version": m.version,
            "model": {
                "model_id": m.model.model_id,
                "spec": m.model.spec,
                "dimension": m.model.dimension,
            },
            "records": m.counts.records,
            "graph_elements": m.counts.graph_elements,
            "deleted": m.counts.deleted,
            "deleted_ratio": round(self.deleted_ratio, 4),
            "churn": m.counts.churn,
            "churn_ratio": round(self.churn_ratio, 4),
            "skipped": m.counts.skipped,
            "built_at": m.build.built_at,
            "build_seconds": m.build.seconds,
            "build_mode": m.build.mode,
            "age_seconds": round(self.age_seconds, 1),
            "snapshots": self.snapshots,
            "corpus": str(self.corpus_path) if self.corpus_path else None,
            "drift": self.drift.as_dict() if self.drift else None,
            "up_to_date": self.up_to_date,
            "corpus_error": self.corpus_error,
        }


def index_status(
    index_dir: str | Path,
    corpus_path: str | Path | None = None,
    *,
    corpus_format: CorpusFormat = "auto",
    verify: bool = False,
    clock: Clock = SYSTEM_CLOCK,
) -> IndexStatus:
    """Describe the live snapshot of ``index_dir`` and its drift from ``corpus_path``.

    Index problems raise (there is nothing to report on); a missing or empty
    corpus is reported in ``corpus_error`` because the index is still useful.
    ``verify`` also checks every file's sha256 (slower on large indexes).
    """
    index_dir = Path(index_dir)
    with open_index(index_dir, checksums=verify, graph=False, rehash=verify) as snapshot:
        # With --verify every file's sha256, the graph's too; always the graph's
        # header against the manifest's dimension (vectors were checked on open).
        snapshot.verify_graph_file()
        manifest = snapshot.manifest
        drift: Drift | None = None
        error: str | None = None
        if corpus_path is not None:
            try:
                corpus = read_corpus(corpus_path, corpus_format)
            except CorpusError as exc:
                error = str(exc)
            else:
                plan = plan_changes(corpus, snapshot)
                drift = Drift(
                    added=plan.added,
                    updated=plan.updated,
                    metadata_updated=plan.metadata_updated,
                    deleted=plan.deleted,
                    unchanged=plan.unchanged,
                )
    age = (clock.now() - parse_iso(manifest.build.built_at)).total_seconds()
    return IndexStatus(
        index_dir=index_dir,
        manifest=manifest,
        snapshots=len(list_snapshots(index_dir)),
        age_seconds=max(age, 0.0),
        corpus_path=Path(corpus_path) if corpus_path is not None else None,
        drift=drift,
        corpus_error=error,
    )


def format_status(status: IndexStatus) -> str:
    """A short human-readable report (the non-JSON ``lakevec status``)."""
    m = status.manifest
    c = m.counts
    lines = [
        f"index     {status.index_dir} ({m.snapshot}, version {m.version}, "
        f"{status.snapshots} snapshot(s) kept)",
        f"model     {m.model.model_id} (dim {m.model.dimension})",
        f"records   {c.records} ({c.skipped} corpus line(s) skipped at build)",
        f"graph     {c.graph_elements} elements, {c.deleted} deleted "
        f"({status.deleted_ratio:.1%}), churn {c.churn} ({status.churn_ratio:.1%} of records)",
        f"built     {m.build.built_at} ({m.build.mode}, {m.build.seconds:.1f} s), "
        f"age {_human_age(status.age_seconds)}",
    ]
    if status.drift is not None:
        d = status.drift
        state = "up to date" if d.total == 0 else f"{d.total} record(s) differ"
        lines.append(
            f"drift     {state}: +{d.added} ~{d.updated} meta {d.metadata_updated} "
            f"-{d.deleted} (corpus {status.corpus_path})"
        )
    elif status.corpus_error:
        lines.append(f"drift     unknown: {status.corpus_error}")
    return "\n".join(lines)


def _human_age(seconds: float) -> str:
    s = int(seconds)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 172800:
        return f"{s // 3600} h"
    return f"{s // 86400} d"
