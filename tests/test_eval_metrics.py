"""Metric correctness: hand-computed rankings, and agreement with ranx."""

from __future__ import annotations

import math

import pytest

from lakevec.eval.metrics import mrr_at, ndcg_at, recall_at, score_ranking

REL = {"a": 1, "b": 1, "c": 1}  # three relevant documents


def test_ndcg_by_hand() -> None:
    # Relevant at ranks 2 and 4: DCG = 1/log2(3) + 1/log2(5); ideal = ranks 1..3.
    ranking = ["x", "a", "y", "b", "z"]
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at(ranking, REL, 10) == pytest.approx(dcg / idcg)
    assert ndcg_at(["a", "b", "c"], REL, 10) == pytest.approx(1.0)
    assert ndcg_at(["x", "y"], REL, 10) == 0.0
    # The cut-off drops relevant documents below it.
    assert ndcg_at(ranking, REL, 2) == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))


def test_ndcg_graded_uses_linear_gain() -> None:
    rel = {"a": 2, "b": 1}
    dcg = 1 / 1 + 2 / math.log2(3)  # b first, a second
    idcg = 2 / 1 + 1 / math.log2(3)
    assert ndcg_at(["b", "a"], rel, 10) == pytest.approx(dcg / idcg)


def test_recall_by_hand() -> None:
    ranking = ["x", "a", "y", "b", "z", "c"]
    assert recall_at(ranking, REL, 4) == pytest.approx(2 / 3)
    assert recall_at(ranking, REL, 6) == pytest.approx(1.0)
    assert recall_at(ranking, REL, 1) == 0.0
    assert recall_at([], REL, 8) == 0.0


def test_mrr_by_hand() -> None:
    assert mrr_at(["x", "y", "b", "a"], REL, 10) == pytest.approx(1 / 3)
    assert mrr_at(["a"], REL, 10) == 1.0
    assert mrr_at(["x"] * 10 + ["a"], REL, 10) == 0.0  # beyond the cut-off


def test_score_ranking_means_and_missing_queries() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    run = {"q1": ["a", "x"]}  # q2 missing: scores 0
    scores = score_ranking(qrels, run, k=8)
    assert scores == {"ndcg@10": 0.5, "recall@8": 0.5, "mrr@10": 0.5}


# Reference values from ranx 0.3.21 (`ranx.evaluate(Qrels(QRELS), Run(RUN),
# ["ndcg@10", "recall@8", "mrr@10"], return_mean=False)`, the run scored
# 100, 99, ... so ranx keeps this order). Stored rather than recomputed:
# ranx JIT-compiles with numba on first use, which costs minutes on a busy CI box.
QRELS = {
    "q1": {"a": 1, "b": 1, "c": 1},
    "q2": {"d": 2, "e": 1},
    "q3": {"f": 1},
    "q4": {"g": 1, "h": 2, "i": 1, "j": 1},
    "q5": {"k": 1},
}
RUN = {
    "q1": ["x", "a", "y", "b", "z", "c", "w"],
    "q2": ["e", "u", "d"],
    "q3": ["p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9", "f"],
    "q4": ["h", "m", "n", "o", "p", "q", "r", "g", "i", "s", "j"],
    "q5": ["t", "v"],
}
RANX = {
    "ndcg@10": [0.66534971, 0.76018753, 0.28906483, 0.73463899, 0.0],
    "recall@8": [1.0, 1.0, 0.0, 0.5, 0.0],
    "mrr@10": [0.5, 1.0, 0.1, 1.0, 0.0],
}


def test_agrees_with_ranx_per_query_and_mean() -> None:
    for i, qid in enumerate(QRELS):
        assert ndcg_at(RUN[qid], QRELS[qid], 10) == pytest.approx(RANX["ndcg@10"][i], abs=1e-8)
        assert recall_at(RUN[qid], QRELS[qid], 8) == pytest.approx(RANX["recall@8"][i])
        assert mrr_at(RUN[qid], QRELS[qid], 10) == pytest.approx(RANX["mrr@10"][i])
    means = score_ranking(QRELS, RUN, k=8)
    assert means["ndcg@10"] == pytest.approx(0.48984821293542397)
    assert means["recall@8"] == pytest.approx(0.5)
    assert means["mrr@10"] == pytest.approx(0.52)
