"""Ranking metrics: nDCG@10, Recall@K and MRR@10.

Written out (not ranx) to keep eval free of a numba JIT warm-up; the tests
check them against ranx and against hand-computed rankings. Definitions
follow trec_eval / BEIR: linear gain, log2 discount, binary relevance for
recall and MRR (any score > 0 counts).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from lakevec.settings import BUNDLE_TOP_K

NDCG_AT = 10
MRR_AT = 10
#: Recall's cut-off unless told otherwise: the bundle's K (how many records replay uses).
DEFAULT_K = BUNDLE_TOP_K

#: A run: query id → ranked document ids, best first.
Ranking = dict[str, list[str]]


def ndcg_at(ranking: Sequence[str], relevant: dict[str, int], n: int) -> float:
    """nDCG@n with linear gain: ``sum(rel_i / log2(i + 1))`` over ideal DCG."""
    dcg = sum(relevant.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(ranking[:n]))
    ideal = sorted((g for g in relevant.values() if g > 0), reverse=True)[:n]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at(ranking: Sequence[str], relevant: dict[str, int], n: int) -> float:
    """Share of the relevant documents found in the top ``n``."""
    rel = {d for d, g in relevant.items() if g > 0}
    return len(rel.intersection(ranking[:n])) / len(rel) if rel else 0.0


def mrr_at(ranking: Sequence[str], relevant: dict[str, int], n: int) -> float:
    """Reciprocal rank of the first relevant document in the top ``n`` (0 if none)."""
    for i, doc in enumerate(ranking[:n]):
        if relevant.get(doc, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def metric_names(k: int) -> tuple[str, str, str]:
    return f"ndcg@{NDCG_AT}", f"recall@{k}", f"mrr@{MRR_AT}"


def score_ranking(
    qrels: dict[str, dict[str, int]], run: Ranking, k: int = DEFAULT_K
) -> dict[str, float]:
    """Mean nDCG@10, Recall@k and MRR@10 over the judged queries.

    A judged query missing from ``run`` scores 0 on every metric.
    """
    ndcg, recall, mrr = metric_names(k)
    totals = {ndcg: 0.0, recall: 0.0, mrr: 0.0}
    for qid, rel in qrels.items():
        ranking = run.get(qid, [])
        totals[ndcg] += ndcg_at(ranking, rel, NDCG_AT)
        totals[recall] += recall_at(ranking, rel, k)
        totals[mrr] += mrr_at(ranking, rel, MRR_AT)
    n = max(len(qrels), 1)
    return {name: total / n for name, total in totals.items()}
