"""One contract, every retriever: jaccard, exact, hnsw, bm25 and hybrid."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from lakevec.corpus import embed_text, read_corpus
from lakevec.embed.hashing import HashEmbedder
from lakevec.errors import UsageProblem
from lakevec.index.build import build_index
from lakevec.index.lexical import BM25Index, bm25_of_records
from lakevec.index.snapshot import open_index
from lakevec.retrieval.base import Retriever
from lakevec.retrieval.hybrid import rrf
from lakevec.retrieval.registry import RETRIEVERS, open_retriever
from lakevec.topk import top_k
from tests.conftest import record, write_jsonl

TOPICS = [
    ("Rotate gateway API keys", "Revoke the old key, issue a new one, restart the gateway."),
    ("Rebuild the vector index", "Run build-index with --full after a model change."),
    ("Restart a stuck worker", "Drain the queue, kill the worker process, restart it."),
    ("Disk almost full on node", "Find large logs with du, rotate them, expand the volume."),
    ("Certificate expiring soon", "Renew the TLS certificate and reload the ingress."),
    ("High memory usage in pods", "Check container limits, heap dumps and OOM kills."),
    ("Database replication lag", "Inspect replica status, network latency and slow queries."),
    ("DNS resolution failures", "Check resolv.conf, CoreDNS pods and upstream servers."),
    ("Circuit breaker open", "Stop calling the failing upstream until it recovers."),
    ("Backup job failed", "Rerun the backup, verify the snapshot, alert on retries."),
    ("Kafka consumer lag", "Scale consumers, check partition skew and rebalances."),
    ("Latency spike on API", "Compare p99 by route, check recent deploys and caches."),
]
N_RECORDS = len(TOPICS) * 2
ALL = ("jaccard", "exact", "hnsw", "bm25", "hybrid")
QUERIES = ["restart the worker", "certificate renewal for ingress", "why is the disk full"]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("contract")
    rows = []
    for i in range(N_RECORDS):
        title, content = TOPICS[i % len(TOPICS)]
        variant = "" if i < len(TOPICS) else " (second revision)"
        rows.append(record(i, title=title + variant, content=content, tags=["ops", f"t{i % 3}"]))
    corpus = write_jsonl(base / "playbooks.jsonl", rows)
    build_index(read_corpus(corpus), base / "index", HashEmbedder(64))
    return base


@pytest.fixture(params=ALL)
def retriever(request: pytest.FixtureRequest, root: Path) -> Iterator[Retriever]:
    r = open_retriever(
        request.param,
        root=root,
        index_dir=root / "index",
        corpus_path=root / "playbooks.jsonl",
        model="hash:64",
    )
    yield r
    r.close()


def test_every_retriever_is_registered() -> None:
    assert set(ALL) <= set(RETRIEVERS)


def test_results_best_first_and_at_most_k(retriever: Retriever) -> None:
    assert isinstance(retriever, Retriever)
    for query in QUERIES:
        for k in (1, 3, 8):
            hits = retriever.search(query, k)
            assert len(hits) <= k
            scores = [h.score for h in hits]
            assert scores == sorted(scores, reverse=True)
            assert len({h.record.id for h in hits}) == len(hits)


def test_k_larger_than_corpus_is_clamped(retriever: Retriever) -> None:
    hits = retriever.search("restart the gateway worker", 10_000)
    assert 0 < len(hits) <= N_RECORDS
    if retriever.name in ("exact", "hnsw"):
        assert len(hits) == N_RECORDS  # dense ranks every record


@pytest.mark.parametrize("query", ["", "   ", "\n\t"])
def test_blank_query_returns_nothing(retriever: Retriever, query: str) -> None:
    assert retriever.search(query, 5) == []


def test_k_zero_returns_nothing(retriever: Retriever) -> None:
    assert retriever.search("restart the worker", 0) == []


def test_scores_are_finite(retriever: Retriever) -> None:
    for query in [*QUERIES, "zzzz qqqq unknown words"]:
        assert all(math.isfinite(h.score) for h in retriever.search(query, N_RECORDS))


def test_deterministic(retriever: Retriever) -> None:
    for query in QUERIES:
        first = [(h.record.id, h.score) for h in retriever.search(query, 8)]
        assert first == [(h.record.id, h.score) for h in retriever.search(query, 8)]


def test_batch_search_equals_single_search(retriever: Retriever) -> None:
    queries = [*QUERIES, "", "Kafka consumer lag"]
    batched = retriever.search_many(queries, 5)
    for query, hits in zip(queries, batched, strict=True):
        single = retriever.search(query, 5)
        assert [h.record.id for h in hits] == [h.record.id for h in single]
        assert [h.score for h in hits] == pytest.approx([h.score for h in single])


def test_record_text_as_query_finds_that_record_first(retriever: Retriever, root: Path) -> None:
    rec = read_corpus(root / "playbooks.jsonl").records["pb-0005"]
    hits = retriever.search(embed_text(rec), 3)
    assert hits and hits[0].record.id == "pb-0005"


def test_unknown_retriever_is_a_usage_problem(root: Path) -> None:
    with pytest.raises(UsageProblem, match="unknown retriever"):
        open_retriever("tfidf", root=root)


# ─── pieces of bm25 and hybrid ───────────────────────────────────────────────


def test_rrf_by_hand() -> None:
    fused = dict(rrf([[1, 2, 3], [3, 1]], rrf_k=60))
    assert fused[1] == pytest.approx(1 / 61 + 1 / 62)
    assert fused[3] == pytest.approx(1 / 63 + 1 / 61)
    assert fused[2] == pytest.approx(1 / 62)
    assert [i for i, _ in rrf([[1, 2, 3], [3, 1]], rrf_k=60)] == [1, 3, 2]


def test_rrf_ties_are_deterministic() -> None:
    # Equal fused scores: the better single rank wins, then the smaller id.
    assert [i for i, _ in rrf([[7, 4], [5, 9]])] == [5, 7, 4, 9]


def test_top_k_drops_zeros_and_keeps_row_order_on_ties() -> None:
    scores_in = np.array([0.0, 2.0, 1.0, 2.0, 0.0, 2.0])
    for positive_only in (False, True):
        rows, scores = top_k(scores_in, 2, positive_only=positive_only)
        assert rows.tolist() == [1, 3] and scores.tolist() == [2.0, 2.0]
    # Lexical rankings drop non-matching (zero) rows; dense ones keep every row.
    assert top_k(np.zeros(4), 3, positive_only=True)[0].tolist() == []
    assert top_k(np.zeros(4), 3)[0].tolist() == [0, 1, 2]
    assert top_k(scores_in, 10, positive_only=True)[0].tolist() == [1, 3, 5, 2]


def test_bm25_stems_and_drops_stop_words() -> None:
    index = BM25Index(["restarting the workers", "rotating keys", "the the the"])
    assert index.search_rows(["restart worker"], 3)[0][0].tolist() == [0]
    assert index.search_rows(["the"], 3)[0][0].tolist() == []  # stop word only
    assert index.search_rows(["unseen"], 3)[0][0].tolist() == []


def test_bm25_on_empty_corpus() -> None:
    index = BM25Index([])
    assert len(index) == 0
    assert index.search_rows(["anything"], 3)[0][0].tolist() == []


def test_bm25_round_trips_through_disk(tmp_path: Path) -> None:
    texts = ["restarting the workers", "rotating keys", "disk full of logs"]
    BM25Index(texts).save(tmp_path / "bm25")
    loaded = BM25Index.load(tmp_path / "bm25", documents=3)
    fresh = BM25Index(texts)
    for query in ("restart worker", "rotate the key", "logs"):
        got, want = loaded.search_rows([query], 3)[0], fresh.search_rows([query], 3)[0]
        assert got[0].tolist() == want[0].tolist()
        assert got[1] == pytest.approx(want[1])
    with pytest.raises(ValueError, match="other settings"):
        BM25Index.load(tmp_path / "bm25", stemmer=None)
    with pytest.raises(ValueError, match="other settings"):
        BM25Index.load(tmp_path / "bm25", documents=4)


def test_build_stores_bm25_inside_the_snapshot(root: Path) -> None:
    """build-index wrote the BM25 index into the snapshot; readers only load it."""
    with open_index(root / "index") as snap:
        assert (snap.path / "bm25" / "lakevec-bm25.json").is_file()
        assert snap.manifest.has_bm25
        assert "bm25/lakevec-bm25.json" in snap.manifest.files
        loaded = snap.bm25()
        assert loaded is snap.bm25()  # loaded once per snapshot, shared by retrievers
        fresh = bm25_of_records(snap.iter_records())
        assert len(loaded) == len(fresh) == N_RECORDS
        q = "restart the stuck worker"
        got, want = loaded.search_rows([q], 5)[0], fresh.search_rows([q], 5)[0]
        assert got[0].tolist() == want[0].tolist()
        assert got[1] == pytest.approx(want[1])


def test_last_strategy_names_how_the_search_ran(retriever: Retriever) -> None:
    retriever.search("restart the worker", 3)
    expected = {"jaccard": "jaccard", "exact": "exact", "hnsw": "hnsw", "bm25": "bm25",
                "hybrid": "hybrid"}
    assert retriever.last_strategy == expected[retriever.name]


def test_snapshot_and_corpus_attributes(retriever: Retriever, root: Path) -> None:
    if retriever.name == "jaccard":
        assert retriever.snapshot is None
        assert retriever.corpus is not None and len(retriever.corpus) == N_RECORDS
    else:
        assert retriever.snapshot is not None and len(retriever.snapshot) == N_RECORDS
        assert retriever.corpus is None
    hits = retriever.search("restart the worker", 3)
    for hit in hits:  # a snapshot hit knows its row; a corpus scan has none
        if retriever.snapshot is None:
            assert hit.row is None
        else:
            assert hit.row is not None and retriever.snapshot.record(hit.row).id == hit.record.id
