"""Metadata filters and min_score for every retriever, and the dense filtered strategies.

Filters narrow the candidates before ranking (every given filter must hold;
a list matches any of its values); ``min_score`` then cuts on the
retriever's own score. Dense search picks its filtered strategy by a
:class:`FilterPolicy`, a public constructor parameter of the retrievers.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lakevec.corpus import PlaybookRecord, read_corpus
from lakevec.embed.hashing import HashEmbedder
from lakevec.index.build import build_index
from lakevec.index.snapshot import IndexSnapshot, open_index
from lakevec.retrieval.base import Hit, Retriever
from lakevec.retrieval.bm25 import BM25Retriever
from lakevec.retrieval.dense import DenseRetriever, FilterPolicy
from lakevec.retrieval.filters import SearchFilters
from lakevec.retrieval.hybrid import HybridRetriever, rrf
from lakevec.retrieval.jaccard import JaccardRetriever
from lakevec.retrieval.registry import open_retriever
from tests.conftest import record, write_jsonl

N = 400
KINDS = ("jaccard", "bm25", "hnsw", "exact", "hybrid")
WORDS = ["restart", "worker", "gateway", "disk", "certificate", "queue", "latency", "backup",
         "replica", "dns", "memory", "kafka", "rotate", "deploy", "cache"]
SCORES = ("accepted", "partially_accepted", "rejected")
TAGS = ("db", "net", "ops", "sec")
CATEGORIES = ("ops", "db", "net")
QUERIES = ["restart the worker queue", "certificate rotate gateway", "disk backup latency"]
# Every strategy may be forced regardless of selectivity.
ALWAYS_EXACT = FilterPolicy(exact_selectivity=1.1, exact_max_rows=N)
NEVER_EXACT = FilterPolicy(exact_selectivity=0.0, exact_max_rows=0)
STARVED = FilterPolicy(exact_selectivity=0.0, exact_max_rows=0, overfetch=0.01, overfetch_cap=1)


def make_rows() -> list[dict[str, Any]]:
    rng = np.random.default_rng(11)
    rows = []
    for i in range(N):
        tags = sorted({TAGS[i % 4], TAGS[(i // 4) % 4]})
        rows.append(record(
            i,
            title=" ".join(rng.choice(WORDS, size=3)),
            content=" ".join(rng.choice(WORDS, size=10)) + f" uniq{i}",
            tags=tags,
            success_score=SCORES[i % 3],
            source_category=CATEGORIES[(i // 3) % 3],
        ))
    return rows


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("filters")
    corpus = write_jsonl(base / "playbooks.jsonl", make_rows())
    build_index(read_corpus(corpus), base / "index", HashEmbedder(64))
    return base


@pytest.fixture(scope="module")
def snapshot(root: Path) -> Iterator[IndexSnapshot]:
    with open_index(root / "index") as snap:
        yield snap


@pytest.fixture(params=KINDS)
def retriever(request: pytest.FixtureRequest, root: Path) -> Iterator[Retriever]:
    r = open_retriever(request.param, root=root, index_dir=root / "index",
                       corpus_path=root / "playbooks.jsonl", model="hash:64")
    yield r
    r.close()


def ids(hits: list[Hit]) -> list[str]:
    return [h.record.id for h in hits]


FILTERS = {
    "success_score": SearchFilters(success_score=("rejected",)),
    "two_scores": SearchFilters(success_score=("accepted", "partially_accepted")),
    "tags_any": SearchFilters(tags_any=("sec",)),
    "two_tags": SearchFilters(tags_any=("sec", "net")),
    "source_category": SearchFilters(source_category=("db",)),
    "all_three": SearchFilters(success_score=("accepted",), tags_any=("db", "sec"),
                               source_category=("net",)),
}


@pytest.mark.parametrize("name", list(FILTERS))
def test_filters_narrow_results(retriever: Retriever, name: str) -> None:
    filters = FILTERS[name]
    for query in QUERIES:
        everything = retriever.search(query, N)
        hits = retriever.search(query, 10, filters=filters)
        assert hits, (retriever.name, query)
        assert len(hits) <= 10
        assert all(filters.accepts(h.record) for h in hits), retriever.name
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
        # The filter removed candidates, and exactly those it does not accept.
        all_allowed = retriever.search(query, N, filters=filters)
        assert 0 < len(all_allowed) < len(everything)
        assert {h.record.id for h in all_allowed} == {
            h.record.id for h in everything if filters.accepts(h.record)
        }
        if retriever.name in ("jaccard", "bm25", "exact"):
            # A filter only removes candidates: the rest keep their scores and order.
            expected = [h for h in everything if filters.accepts(h.record)][:10]
            assert [h.score for h in hits] == pytest.approx([h.score for h in expected])
            if retriever.name != "exact":  # exact scores are recomputed (float ties)
                assert ids(hits) == ids(expected)


def test_filters_matching_nothing_return_nothing(retriever: Retriever) -> None:
    for filters in (SearchFilters(success_score=("no-such-score",)),
                    SearchFilters(tags_any=("no-such-tag",)),
                    SearchFilters(source_category=("ops",), success_score=("nope",))):
        assert retriever.search(QUERIES[0], 5, filters=filters) == []
    assert retriever.search_many(QUERIES, 5, filters=SearchFilters(tags_any=("x",))) == [
        [], [], []
    ]


def test_min_score_cuts_the_tail(retriever: Retriever) -> None:
    for query in QUERIES:
        unfiltered = retriever.search(query, 8)
        assert len(unfiltered) >= 4
        threshold = unfiltered[3].score
        cut = retriever.search(query, 8, filters=SearchFilters(min_score=threshold))
        assert ids(cut) == [h.record.id for h in unfiltered if h.score >= threshold]
        assert all(h.score >= threshold for h in cut) and len(cut) >= 4
        above_all = SearchFilters(min_score=unfiltered[0].score + 1.0)
        assert retriever.search(query, 8, filters=above_all) == []


def test_min_score_combines_with_metadata_filters(retriever: Retriever) -> None:
    filters = FILTERS["two_tags"]
    hits = retriever.search(QUERIES[1], 10, filters=filters)
    threshold = hits[len(hits) // 2].score
    both = SearchFilters(tags_any=filters.tags_any, min_score=threshold)
    cut = retriever.search(QUERIES[1], 10, filters=both)
    assert ids(cut) == [h.record.id for h in hits if h.score >= threshold]


def test_filtered_strategy_is_reported(retriever: Retriever) -> None:
    retriever.search(QUERIES[0], 5, filters=FILTERS["tags_any"])
    expected = {"jaccard": "jaccard", "bm25": "bm25-filtered", "hnsw": "exact-filtered",
                "exact": "exact-filtered", "hybrid": "hybrid-filtered"}
    assert retriever.last_strategy == expected[retriever.name]
    retriever.search(QUERIES[0], 5)
    assert retriever.last_strategy == {**expected, "bm25": "bm25", "hnsw": "hnsw",
                                       "exact": "exact", "hybrid": "hybrid"}[retriever.name]


# ─── dense filtered strategies ───────────────────────────────────────────────


def exact_truth(snapshot: IndexSnapshot, query: str, k: int,
                filters: SearchFilters) -> tuple[set[str], list[float]]:
    """Ids allowed by ``filters`` and the best ``k`` cosine scores among them, by brute force."""
    q = HashEmbedder(64).encode([query])[0]
    records: list[PlaybookRecord] = list(snapshot.iter_records())
    allowed = np.array([filters.accepts(r) for r in records])
    sims = np.asarray(snapshot.vectors) @ q
    top = sorted(sims[allowed].tolist(), reverse=True)[:k]
    return {r.id for r, ok in zip(records, allowed, strict=True) if ok}, top


@pytest.mark.parametrize(
    ("policy", "filters", "strategy"),
    [
        (FilterPolicy(), FILTERS["all_three"], "exact-filtered"),  # few rows: exact
        (ALWAYS_EXACT, FILTERS["two_scores"], "exact-filtered"),
        (NEVER_EXACT, FILTERS["two_scores"], "hnsw-overfetch"),
        (NEVER_EXACT, FILTERS["source_category"], "hnsw-overfetch"),
        (STARVED, FILTERS["tags_any"], "exact-fallback"),  # over-fetch finds too few
        (STARVED, FILTERS["all_three"], "exact-fallback"),
    ],
)
def test_dense_filtered_strategies(
    snapshot: IndexSnapshot, policy: FilterPolicy, filters: SearchFilters, strategy: str
) -> None:
    dense = DenseRetriever(snapshot, HashEmbedder(64), policy=policy)
    for query in QUERIES:
        hits = dense.search(query, 8, filters=filters)
        assert dense.last_strategy == strategy
        allowed, top = exact_truth(snapshot, query, 8, filters)
        assert {h.record.id for h in hits} <= allowed
        # Each strategy ranks the allowed rows as exact search does (HNSW at
        # ef=200 over 400 vectors is exact here).
        assert [h.score for h in hits] == pytest.approx(top, abs=1e-5)
        assert all(h.row is not None and snapshot.record(h.row).id == h.record.id for h in hits)
    # Many queries at once rank each one like a single search.
    batched = dense.search_many(QUERIES, 8, filters=filters)
    assert [ids(b) for b in batched] == [ids(dense.search(q, 8, filters=filters))
                                         for q in QUERIES]


def test_exact_retriever_always_ranks_filtered_rows_exactly(snapshot: IndexSnapshot) -> None:
    dense = DenseRetriever(snapshot, HashEmbedder(64), exact=True, policy=NEVER_EXACT)
    dense.search(QUERIES[0], 5, filters=FILTERS["two_scores"])
    assert dense.last_strategy == "exact-filtered"


def test_k_above_the_allowed_rows_returns_each_allowed_row_once(snapshot: IndexSnapshot) -> None:
    filters = FILTERS["all_three"]
    allowed, _ = exact_truth(snapshot, QUERIES[0], N, filters)
    for policy in (FilterPolicy(), NEVER_EXACT, STARVED):
        dense = DenseRetriever(snapshot, HashEmbedder(64), policy=policy)
        hits = dense.search(QUERIES[0], N, filters=filters)
        assert sorted(ids(hits)) == sorted(allowed)


# ─── hybrid with filters ─────────────────────────────────────────────────────


@pytest.mark.parametrize("policy", [FilterPolicy(), NEVER_EXACT, STARVED])
@pytest.mark.parametrize("name", ["tags_any", "source_category", "all_three"])
def test_hybrid_with_filters_fuses_only_allowed_rows(
    snapshot: IndexSnapshot, policy: FilterPolicy, name: str
) -> None:
    filters = FILTERS[name]
    emb = HashEmbedder(64)
    hybrid = HybridRetriever(snapshot, emb, exact=True, policy=policy, depth=30)
    dense = DenseRetriever(snapshot, emb, exact=True)
    lexical = BM25Retriever(snapshot)
    for query in QUERIES:
        hits = hybrid.search(query, 10, filters=filters)
        assert hits and all(filters.accepts(h.record) for h in hits)
        assert hybrid.last_strategy == "hybrid-filtered"
        # The fusion of the filtered dense and filtered BM25 rankings, nothing else.
        dense_rows = [h.row for h in dense.search(query, 30, filters=filters)]
        lex_rows = [h.row for h in lexical.search(query, 30, filters=filters)]
        fused = rrf([[r for r in dense_rows if r is not None],
                     [r for r in lex_rows if r is not None]], rrf_k=hybrid.rrf_k)[:10]
        assert [h.row for h in hits] == [r for r, _ in fused]
        assert [h.score for h in hits] == pytest.approx([s for _, s in fused])


def test_jaccard_filters_keep_corpus_order_on_ties(root: Path) -> None:
    """The seed's stable sort: equal scores keep corpus order, filtered or not."""
    corpus = read_corpus(root / "playbooks.jsonl")
    jac = JaccardRetriever(corpus.rows)
    filters = FILTERS["source_category"]
    hits = jac.search("uniq zzz restart", N, filters=filters)
    positions = {r.id: i for i, r in enumerate(corpus.rows)}
    assert len(hits) > 10
    for a, b in pairwise(hits):
        if a.score == b.score:
            assert positions[a.record.id] < positions[b.record.id]
