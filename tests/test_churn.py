"""Heavy churn: many rounds of add/change/delete keep ANN recall@8 >= 0.99, and the
rebuild threshold really rebuilds the graph from stored vectors (no re-embedding)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lakevec.corpus import read_corpus
from lakevec.embed.base import normalize
from lakevec.index.build import build_index
from lakevec.index.snapshot import IndexSnapshot, open_index
from tests.reindex_support import ClusterEmbedder, CountingEmbedder, churn, playbook, write_corpus

N = 2000
ROUNDS = 9
FRACTION = 0.04  # per round: 4% deleted, 4% changed, 4% added → churn 8% of N


def recall_at_8(snap: IndexSnapshot, emb: ClusterEmbedder, rng: np.random.Generator) -> float:
    """Mean overlap of knn and exact top-8 over stored vectors and off-data queries."""
    stored = np.asarray(snap.vectors)[rng.choice(len(snap), size=150, replace=False)]
    centres = emb.centres[rng.integers(len(emb.centres), size=150)]
    off = normalize(centres + 0.5 * rng.normal(size=centres.shape) / np.sqrt(emb.dimension))
    queries = np.vstack([stored, off])
    ann, _ = snap.knn(queries, 8)
    exact, _ = snap.exact(queries, 8)
    return float(np.mean([len(set(a) & set(e)) / 8 for a, e in zip(ann, exact, strict=True)]))


def test_recall_stays_high_under_churn_and_threshold_rebuilds(tmp_path: Path) -> None:
    rng = np.random.default_rng(42)
    corpus = tmp_path / "corpus.jsonl"
    index_dir = tmp_path / "index"
    records: dict[str, dict[str, Any]] = {r["id"]: r for r in (playbook(i) for i in range(N))}
    cluster = ClusterEmbedder()
    emb = CountingEmbedder(cluster)
    build_index(read_corpus(write_corpus(corpus, records)), index_dir, emb, keep=2)
    next_id, rebuilds, recalls = N, 0, []
    expected_churn = 0
    for version in range(1, ROUNDS + 1):
        next_id = churn(records, rng, fraction=FRACTION, next_id=next_id, version=version)
        emb.texts.clear()
        report = build_index(read_corpus(write_corpus(corpus, records)), index_dir, emb,
                             keep=2, rebuild_threshold=0.2)
        n_changed = int(N * FRACTION)
        assert (report.added, report.updated, report.deleted) == (n_changed,) * 3
        # Only new and changed texts are embedded, also on rounds that rebuild the graph.
        assert report.embedded == len(emb.texts) == 2 * n_changed
        expected_churn += 2 * n_changed  # deletions + replacements
        should_rebuild = expected_churn > 0.2 * len(records)
        assert report.graph_rebuilt == should_rebuild, f"round {version}"
        with open_index(index_dir) as snap:
            c = snap.manifest.counts
            if should_rebuild:
                rebuilds += 1
                expected_churn = 0
                assert (c.deleted, c.graph_elements) == (0, len(records))
            assert c.churn == expected_churn
            assert c.records == len(records) == len(snap)
            recalls.append(recall_at_8(snap, cluster, rng))
            ids = {r.id for r in snap.iter_records()}
        assert ids == set(records)
    assert rebuilds == 3  # rounds 3, 6 and 9: churn 24% > 20%
    assert min(recalls) >= 0.99, recalls


def test_without_rebuilds_replaced_slots_still_search_well(tmp_path: Path) -> None:
    """Deleted-slot reuse alone (threshold 1.0, so no rebuild) keeps recall high too."""
    rng = np.random.default_rng(7)
    corpus = tmp_path / "corpus.jsonl"
    index_dir = tmp_path / "index"
    n = 1500
    records: dict[str, dict[str, Any]] = {r["id"]: r for r in (playbook(i) for i in range(n))}
    emb = ClusterEmbedder()
    build_index(read_corpus(write_corpus(corpus, records)), index_dir, emb, keep=1)
    next_id = n
    for version in range(1, 6):
        next_id = churn(records, rng, fraction=0.08, next_id=next_id, version=version)
        report = build_index(read_corpus(write_corpus(corpus, records)), index_dir, emb,
                             keep=1, rebuild_threshold=1.0)
        assert not report.graph_rebuilt
    with open_index(index_dir) as snap:
        assert snap.manifest.counts.churn == 5 * 2 * int(n * 0.08)
        assert snap.manifest.counts.graph_elements == n  # every slot was reused
        assert recall_at_8(snap, emb, rng) >= 0.99
