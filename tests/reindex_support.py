"""Helpers for the reindex tests: synthetic corpora, instrumented embedders, and a
builder / reader that run in a subprocess so tests can SIGKILL them.

Run as a script (``python tests/reindex_support.py build ...``) it builds an
index with the hash embedder and can pause at a phase of the build (the
build's public ``on_phase`` hook), writing a marker file first, so a test
kills it at a deterministic moment.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # when run as a script from a subprocess
    sys.path.insert(0, str(REPO))

from lakevec.embed.base import Vectors, normalize  # noqa: E402
from lakevec.embed.hashing import HashEmbedder  # noqa: E402
from lakevec.index.build import BUILD_PHASES  # noqa: E402
from lakevec.index.snapshot import IndexSnapshot  # noqa: E402

SUPPORT = Path(__file__).resolve()
PAUSE_POINTS = BUILD_PHASES


# ─── corpora ─────────────────────────────────────────────────────────────────


def playbook(
    i: int, *, version: int = 0, cluster: int | None = None, **extra: Any
) -> dict[str, Any]:
    """A record whose text is unique per (i, version) and names its cluster."""
    c = i % 40 if cluster is None else cluster
    rec: dict[str, Any] = {
        "id": f"pb-{i:05d}",
        "title": f"Playbook {i} cluster{c}",
        "content": f"uniq{i} rev{version} cluster{c} steps for task {i} version {version}",
        "tags": ["ops"],
        "source_run_id": f"run-{i}",
        "success_score": "accepted",
        "source_category": "ops",
    }
    rec.update(extra)
    return rec


def write_corpus(path: Path, records: dict[str, dict[str, Any]] | Sequence[dict[str, Any]]) -> Path:
    rows = list(records.values()) if isinstance(records, dict) else list(records)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    os.replace(tmp, path)  # writers of the corpus swap it whole, as exporters should
    return path


def churn(
    records: dict[str, dict[str, Any]],
    rng: np.random.Generator,
    *,
    fraction: float,
    next_id: int,
    version: int,
) -> int:
    """Delete, change and add ``fraction`` of the records each; return the next free id."""
    n = max(1, int(len(records) * fraction))
    ids = list(records)
    for rid in rng.choice(ids, size=n, replace=False):
        del records[str(rid)]
    for rid in rng.choice(list(records), size=n, replace=False):
        i = int(str(rid)[3:])
        records[str(rid)] = playbook(i, version=version)
    for i in range(next_id, next_id + n):
        records[f"pb-{i:05d}"] = playbook(i, version=version)
    return next_id + n


# ─── embedders ───────────────────────────────────────────────────────────────


class CountingEmbedder:
    """Wraps an embedder and remembers every text it was asked to embed."""

    def __init__(self, inner: Any | None = None) -> None:
        self.inner = inner or HashEmbedder(64)
        self.spec = self.inner.spec
        self.model_id = self.inner.model_id
        self.dimension = self.inner.dimension
        self.fingerprint = self.inner.fingerprint
        self.backend = self.inner.backend
        self.precision = self.inner.precision
        self.texts: list[str] = []

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False
    ) -> Vectors:
        self.texts.extend(texts)
        vecs: Vectors = self.inner.encode(texts, batch_size=batch_size, progress=progress)
        return vecs


_CLUSTER = re.compile(r"cluster(\d+)")


class ClusterEmbedder:
    """Clustered, tie-free continuous vectors: a cluster centre (named in the text)
    plus noise seeded by the whole text. Unlike the hash embedder, exact search
    has no ties, so recall@k against it is well defined."""

    backend = "hash"
    precision = "na"

    def __init__(self, dimension: int = 64, clusters: int = 40, noise: float = 1.5) -> None:
        self.dimension = dimension
        self.spec = f"cluster:{dimension}"
        self.model_id = self.spec
        self.fingerprint = hashlib.sha256(self.spec.encode()).hexdigest()[:32]
        self.noise = noise
        self.centres = normalize(np.random.default_rng(0).normal(size=(clusters, dimension)))

    def vector(self, text: str) -> npt.NDArray[np.float32]:
        m = _CLUSTER.search(text)
        c = int(m.group(1)) % len(self.centres) if m else 0
        seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
        noise = np.random.default_rng(seed).normal(size=self.dimension) / np.sqrt(self.dimension)
        return (self.centres[c] + self.noise * noise).astype(np.float32)

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False
    ) -> Vectors:
        return normalize(np.stack([self.vector(t) for t in texts]))


# ─── subprocess builder / reader ─────────────────────────────────────────────


def run_builder(corpus: Path, index_dir: Path, pause_at: str, marker: Path, hold: float,
                keep: int, path: str = "general") -> int:
    """Build ``index_dir`` from ``corpus``; hold still ``hold`` s at phase ``pause_at``.

    The pause goes through the build's public ``on_phase`` hook: the marker
    file (``"<phase> <pid>"``) is written first, so the test knows exactly
    where the process is when it kills it. Sleeping here is the builder
    holding still, not the test's synchronisation.
    """
    from lakevec.corpus import read_corpus
    from lakevec.index.build import build_index

    def on_phase(name: str) -> None:
        if name == pause_at:
            # Written whole, then renamed: the test polls for the file to exist and must
            # never read it half-written (it did, empty, about 1 run in 50).
            partial = marker.with_name(marker.name + ".partial")
            partial.write_text(f"{name} {os.getpid()}\n", encoding="utf-8")
            os.replace(partial, marker)
            time.sleep(hold)

    if path == "small":  # index_corpus: the small-update path whenever it applies
        from lakevec.index.update import index_corpus

        report = index_corpus(corpus, index_dir, embedder=HashEmbedder(64), on_phase=on_phase,
                              keep=keep, query_model=False)
    else:
        report = build_index(read_corpus(corpus), index_dir, HashEmbedder(64),
                             on_phase=on_phase, keep=keep)
    print(json.dumps(report.as_dict()))
    return 0


def run_reader(index_dir: Path, seconds: float, ready: Path | None = None,
               stop: Path | None = None) -> int:
    """Open and search the live snapshot in a loop; print counts and errors as JSON.

    ``ready`` is created after the first search (the test waits for it before
    it starts building); the loop ends after ``seconds`` or once ``stop`` exists.
    """
    from lakevec.index.snapshot import open_index

    done, errors = 0, []
    versions: set[int] = set()
    deadline = time.monotonic() + seconds
    rng = np.random.default_rng(os.getpid())
    while time.monotonic() < deadline and not (stop is not None and stop.exists()):
        try:
            with open_index(index_dir) as snap:
                check_snapshot(snap, rng)
                versions.add(snap.manifest.version)
            done += 1
        except Exception as exc:  # noqa: BLE001 — the test wants every failure reported
            errors.append(f"{type(exc).__name__}: {exc}")
        if done == 1 and ready is not None and not ready.exists():
            ready.write_text(f"{os.getpid()}\n", encoding="utf-8")
    print(json.dumps({"searches": done, "errors": errors[:5], "versions": sorted(versions)}))
    return 0


def check_snapshot(snap: IndexSnapshot, rng: np.random.Generator) -> None:
    """A reader's view is complete: arrays agree and a stored vector finds its record."""
    n = len(snap)
    assert n == snap.manifest.counts.records, "record count differs from the manifest"
    row = int(rng.integers(n))
    rows, scores = snap.knn(np.asarray(snap.vectors[row]), 5)
    assert scores[0][0] > 0.999, f"stored vector not found by knn (top score {scores[0][0]})"
    ids = {snap.record(r).id for r in rows[0]}
    assert snap.record(row).id in ids, "record of the queried vector not among the hits"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("corpus", type=Path)
    b.add_argument("index", type=Path)
    b.add_argument("--pause-at", choices=[*PAUSE_POINTS, "none"], default="none")
    b.add_argument("--marker", type=Path, default=Path(os.devnull))
    b.add_argument("--hold", type=float, default=600.0)
    b.add_argument("--keep", type=int, default=3)
    b.add_argument("--path", choices=["general", "small"], default="general")
    r = sub.add_parser("read")
    r.add_argument("index", type=Path)
    r.add_argument("--seconds", type=float, default=5.0)
    r.add_argument("--ready", type=Path, default=None)
    r.add_argument("--stop", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.cmd == "build":
        return run_builder(args.corpus, args.index, args.pause_at, args.marker, args.hold,
                           args.keep, args.path)
    return run_reader(args.index, args.seconds, args.ready, args.stop)


if __name__ == "__main__":
    sys.exit(main())
