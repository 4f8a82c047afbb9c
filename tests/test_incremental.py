"""Incremental builds: add / change / delete / metadata-only, model changes, slot reuse."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lakevec.corpus import PlaybookRecord, embed_text, read_corpus
from lakevec.embed.hashing import HashEmbedder
from lakevec.errors import ModelMismatchError
from lakevec.index.build import BuildReport, build_index
from lakevec.index.snapshot import open_index
from lakevec.index.update import index_corpus
from lakevec.retrieval.dense import DenseRetriever
from tests.reindex_support import CountingEmbedder, playbook, write_corpus

N = 60


def text_of(rec: dict[str, Any]) -> str:
    return embed_text(PlaybookRecord.model_validate(rec))


@pytest.fixture
def records() -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in (playbook(i) for i in range(N))}


@pytest.fixture
def corpus_path(tmp_path: Path, records: dict[str, dict[str, Any]]) -> Path:
    return write_corpus(tmp_path / "playbooks.jsonl", records)


@pytest.fixture
def index_dir(tmp_path: Path, corpus_path: Path) -> Path:
    path = tmp_path / "index"
    report = build_index(read_corpus(corpus_path), path, HashEmbedder(64))
    assert report.mode == "full" and report.embedded == N
    return path


def rebuild(corpus_path: Path, records: dict[str, dict[str, Any]], index_dir: Path,
            emb: CountingEmbedder, **kw: Any) -> BuildReport:
    write_corpus(corpus_path, records)
    return build_index(read_corpus(corpus_path), index_dir, emb, **kw)


def top_ids(index_dir: Path, text: str, k: int = 3) -> list[tuple[str, float]]:
    with open_index(index_dir) as snap:
        hits = DenseRetriever(snap, HashEmbedder(64)).search(text, k)
        return [(h.record.id, h.score) for h in hits]


def all_ids(index_dir: Path) -> set[str]:
    with open_index(index_dir) as snap:
        return {r.id for r in snap.iter_records()}


def test_added_records_are_the_only_ones_embedded(
    corpus_path: Path, records: dict[str, dict[str, Any]], index_dir: Path
) -> None:
    new = [playbook(i) for i in range(N, N + 3)]
    records.update({r["id"]: r for r in new})
    emb = CountingEmbedder()
    report = rebuild(corpus_path, records, index_dir, emb)
    assert (report.added, report.updated, report.metadata_updated, report.deleted) == (3, 0, 0, 0)
    assert report.unchanged == N and report.embedded == 3 and report.version == 2
    assert sorted(emb.texts) == sorted(text_of(r) for r in new)
    hit, score = top_ids(index_dir, text_of(new[1]))[0]
    assert hit == new[1]["id"] and score == pytest.approx(1.0, abs=1e-4)


def test_changed_text_is_reembedded_and_replaced(
    corpus_path: Path, records: dict[str, dict[str, Any]], index_dir: Path
) -> None:
    old_text = text_of(records["pb-00007"])
    records["pb-00007"] = playbook(7, version=1)
    records["pb-00011"] = playbook(11, version=1, title="A brand new title")
    emb = CountingEmbedder()
    report = rebuild(corpus_path, records, index_dir, emb)
    assert (report.added, report.updated, report.deleted, report.unchanged) == (0, 2, 0, N - 2)
    assert sorted(emb.texts) == sorted(text_of(records[i]) for i in ("pb-00007", "pb-00011"))
    assert top_ids(index_dir, text_of(records["pb-00007"]))[0][0] == "pb-00007"
    # The old text no longer matches anything exactly: its vector is gone.
    assert top_ids(index_dir, old_text)[0][1] < 0.999
    with open_index(index_dir) as snap:
        assert len(snap) == N and snap.manifest.counts.churn == 2
        stored = {r.id: r for r in snap.iter_records()}
        assert stored["pb-00011"].title == "A brand new title"


def test_deleted_ids_disappear_and_their_slots_are_reused(
    corpus_path: Path, records: dict[str, dict[str, Any]], index_dir: Path
) -> None:
    gone = ["pb-00003", "pb-00004", "pb-00005"]
    gone_text = text_of(records["pb-00004"])
    for rid in gone:
        del records[rid]
    emb = CountingEmbedder()
    report = rebuild(corpus_path, records, index_dir, emb)
    assert (report.added, report.updated, report.deleted, report.embedded) == (0, 0, 3, 0)
    assert emb.texts == []
    assert all_ids(index_dir).isdisjoint(gone)
    ranked = top_ids(index_dir, gone_text, k=N)
    assert len(ranked) == N - 3 and not {i for i, _ in ranked} & set(gone)
    with open_index(index_dir) as snap:
        c = snap.manifest.counts
        assert (c.records, c.graph_elements, c.deleted) == (N - 3, N, 3)
        stats = snap.graph_stats()
        assert stats is not None and stats.count == N
    # New records fill the deleted slots before the graph grows.
    records.update({r["id"]: r for r in (playbook(i) for i in range(N, N + 5))})
    report = rebuild(corpus_path, records, index_dir, CountingEmbedder())
    assert report.added == 5 and not report.graph_rebuilt
    with open_index(index_dir) as snap:
        c = snap.manifest.counts
        assert (c.records, c.graph_elements, c.deleted) == (N + 2, N + 2, 0)
        stats = snap.graph_stats()
        assert stats is not None and stats.count == N + 2
        assert sorted(snap.graph_ids()) == snap.labels.tolist()


def test_metadata_only_change_updates_the_store_without_embedding(
    corpus_path: Path, records: dict[str, dict[str, Any]], index_dir: Path
) -> None:
    with open_index(index_dir) as snap:
        before = np.array(snap.vectors)
        labels_before = snap.labels.copy()
    records["pb-00009"] = playbook(9, tags=["db", "urgent"], success_score="partially_accepted",
                                   source_category="db")
    emb = CountingEmbedder()
    report = rebuild(corpus_path, records, index_dir, emb)
    assert (report.metadata_updated, report.updated, report.added, report.embedded) == (1, 0, 0, 0)
    assert emb.texts == [] and report.changed and report.version == 2
    with open_index(index_dir) as snap:
        assert np.array_equal(snap.vectors, before)
        assert np.array_equal(snap.labels, labels_before)
        assert snap.manifest.counts.churn == 0
        stored = {r.id: r for r in snap.iter_records()}
    assert stored["pb-00009"].tags == ["db", "urgent"]
    assert stored["pb-00009"].success_score == "partially_accepted"
    assert top_ids(index_dir, text_of(records["pb-00009"]))[0][0] == "pb-00009"


def test_no_change_is_a_noop_that_embeds_nothing(
    corpus_path: Path, records: dict[str, dict[str, Any]], index_dir: Path
) -> None:
    emb = CountingEmbedder()
    report = rebuild(corpus_path, records, index_dir, emb)
    assert not report.changed and report.mode == "noop" and report.version == 1
    assert report.unchanged == N and emb.texts == []
    assert [p.name for p in (index_dir / "snapshots").iterdir()] == ["v000001"]


def test_mixed_changes_in_one_run(
    corpus_path: Path, records: dict[str, dict[str, Any]], index_dir: Path
) -> None:
    del records["pb-00001"]
    records["pb-00002"] = playbook(2, version=3)
    records["pb-00003"] = playbook(3, tags=["changed"])
    records["pb-09999"] = playbook(9999)
    emb = CountingEmbedder()
    report = rebuild(corpus_path, records, index_dir, emb)
    counts = (report.added, report.updated, report.metadata_updated, report.deleted)
    assert counts == (1, 1, 1, 1) and report.unchanged == N - 3
    assert sorted(emb.texts) == sorted(text_of(records[i]) for i in ("pb-00002", "pb-09999"))
    assert all_ids(index_dir) == set(records)
    with open_index(index_dir) as snap:
        rows, _ = snap.knn(np.asarray(snap.vectors), 1)
        assert [r[0] for r in rows] == list(range(len(snap)))  # every vector finds itself


def test_capacity_grows_past_the_first_graph(
    corpus_path: Path, records: dict[str, dict[str, Any]], index_dir: Path
) -> None:
    records.update({r["id"]: r for r in (playbook(i) for i in range(N, 3 * N))})
    report = rebuild(corpus_path, records, index_dir, CountingEmbedder(), rebuild_threshold=1.0)
    assert report.added == 2 * N and not report.graph_rebuilt
    with open_index(index_dir) as snap:
        assert len(snap) == 3 * N and snap.manifest.counts.graph_elements == 3 * N
        stats = snap.graph_stats()
        assert stats is not None and stats.max_elements >= 3 * N and stats.count == 3 * N


def test_other_model_needs_full_and_full_rebuilds(
    corpus_path: Path, records: dict[str, dict[str, Any]], index_dir: Path
) -> None:
    with pytest.raises(ModelMismatchError, match=r"built with model hash:64.*--full"):
        index_corpus(corpus_path, index_dir, model="hash:32")
    with open_index(index_dir) as snap:
        assert snap.manifest.version == 1  # nothing was written
    report = index_corpus(corpus_path, index_dir, model="hash:32", full=True)
    assert report.mode == "full" and report.version == 2 and report.embedded == N
    with open_index(index_dir) as snap:
        assert snap.manifest.model.model_id == "hash:32" and snap.dimension == 32
    # Without --model the index keeps its own (new) model.
    records["pb-00000"] = playbook(0, version=5)
    write_corpus(corpus_path, records)
    report = index_corpus(corpus_path, index_dir)
    assert report.updated == 1 and report.embedded == 1
    # --full alone rebuilds with the index's model too, never silently the default.
    report = index_corpus(corpus_path, index_dir, full=True)
    assert report.mode == "full" and report.embedded == N
    with open_index(index_dir) as snap:
        assert snap.manifest.model.model_id == "hash:32"


def test_full_reembeds_everything_with_the_same_model(
    corpus_path: Path, records: dict[str, dict[str, Any]], index_dir: Path
) -> None:
    emb = CountingEmbedder()
    report = rebuild(corpus_path, records, index_dir, emb, full=True)
    assert report.mode == "full" and report.embedded == N and len(emb.texts) == N
    assert report.version == 2 and report.graph_rebuilt
