"""Running retrievers over a dataset's judged queries and scoring them.

The corpus is embedded once into a regular lakevec index (BM25 included)
kept in a cache directory keyed by the corpus sha256, the model fingerprint
and the precision, so repeated runs only load it. Retrievers come from
:mod:`lakevec.retrieval.registry`, the same factory search, replay and the
service use, so eval measures exactly what they rank with.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lakevec.corpus import Corpus
from lakevec.embed.base import Embedder
from lakevec.embed.loader import load_embedder
from lakevec.errors import UsageProblem
from lakevec.eval.dataset import DEFAULT_SPLIT, Dataset, load_dataset
from lakevec.eval.metrics import DEFAULT_K, MRR_AT, NDCG_AT, Ranking, score_ranking
from lakevec.index.build import build_index
from lakevec.index.manifest import HnswParams
from lakevec.index.snapshot import IndexSnapshot, open_index
from lakevec.retrieval.base import Retriever
from lakevec.retrieval.jaccard import JaccardRetriever
from lakevec.retrieval.registry import needs_embedder, retriever_for
from lakevec.settings import DEFAULT_MODEL, RETRIEVERS, eval_cache_dir

#: Every retriever, in evaluation order: the seed's baseline first, the default last.
EVAL_RETRIEVERS: tuple[str, ...] = tuple(reversed(RETRIEVERS))
#: Eval embeds the corpus in fp32 unless told otherwise, so its figures are the
#: same on every CPU (``auto`` measures what build-index does on this machine).
EVAL_PRECISION = "fp32"
#: A concurrent eval of the same set holds the build lock while it embeds
#: (minutes on a cold cache); waiting for it beats failing and embedding twice.
BUILD_LOCK_TIMEOUT = 3600.0


def eval_index_dir(corpus: Corpus, embedder: Embedder, work_dir: Path | None = None) -> Path:
    """The cache directory of the eval index for this corpus, model and precision."""
    root = work_dir or eval_cache_dir()
    # The fingerprint names the weights only; bf16 and fp32 vectors differ.
    return root / f"{corpus.sha256[:16]}-{embedder.fingerprint[:16]}-{embedder.precision}"


def ensure_index(
    corpus: Corpus,
    embedder: Embedder,
    work_dir: Path | None = None,
    *,
    progress: bool = False,
) -> IndexSnapshot:
    """Open the cached eval index of ``corpus``, embedding it first if it is missing.

    The build is the regular incremental one, so an existing cache is a no-op
    that never loads the model. Explicit default HNSW parameters: a cache
    built under other defaults is brought to these (``ef_search`` only
    changes the manifest), so figures do not depend on when it was made.
    """
    index_dir = eval_index_dir(corpus, embedder, work_dir)
    build_index(corpus, index_dir, embedder, params=HnswParams(), progress=progress,
                lock_timeout=BUILD_LOCK_TIMEOUT)
    return open_index(index_dir)


@dataclass
class RetrieverResult:
    """Metrics of one retriever on one dataset (``extra``: ANN recall and latency)."""

    name: str
    metrics: dict[str, float]
    seconds: float
    extra: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        row = {m: round(v, 4) for m, v in self.metrics.items()}
        row |= {m: round(v, 4) for m, v in self.extra.items()}
        row["seconds"] = round(self.seconds, 2)
        return row


@dataclass
class EvalReport:
    """Everything ``lakevec eval`` prints: dataset identity, settings and results."""

    dataset: str
    path: str
    corpus_sha256: str
    documents: int
    queries: int
    k: int
    model: dict[str, str]
    results: list[RetrieverResult]

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "path": self.path,
            "corpus_sha256": self.corpus_sha256,
            "documents": self.documents,
            "queries": self.queries,
            "k": self.k,
            "model": self.model,
            "retrievers": {r.name: r.as_dict() for r in self.results},
        }


def _percentile_ms(samples: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples) * 1000.0, q)) if samples else 0.0


def ann_quality(snapshot: IndexSnapshot, vectors: npt.NDArray[Any], k: int) -> dict[str, float]:
    """HNSW recall@k against exact search, and per-query ANN latency p50/p99 in ms.

    Latency times ``snapshot.knn`` alone, one query at a time as replay calls
    it, on vectors embedded beforehand, so it measures the index, not the model.
    """
    if not len(snapshot) or not len(vectors):
        return {f"ann_recall@{k}": 0.0, "latency_p50_ms": 0.0, "latency_p99_ms": 0.0}
    exact_rows, _ = snapshot.exact(vectors, k)
    overlap = 0
    want = 0
    samples: list[float] = []
    for vec, truth in zip(vectors, exact_rows, strict=True):
        t0 = time.perf_counter()
        rows, _ = snapshot.knn(vec[None, :], k)
        samples.append(time.perf_counter() - t0)
        overlap += len(set(rows[0]).intersection(truth))
        want += len(truth)
    return {
        f"ann_recall@{k}": overlap / want if want else 0.0,
        "latency_p50_ms": _percentile_ms(samples, 50),
        "latency_p99_ms": _percentile_ms(samples, 99),
    }


def run_retriever(retriever: Retriever, queries: dict[str, str], depth: int) -> Ranking:
    """Each query's ranked corpus ids, searched in one batch."""
    qids = list(queries)
    hits = retriever.search_many([queries[q] for q in qids], depth)
    return {qid: [h.record.id for h in found] for qid, found in zip(qids, hits, strict=True)}


def check_retrievers(retrievers: Sequence[str]) -> None:
    unknown = [r for r in retrievers if r not in RETRIEVERS]
    if unknown:
        raise UsageProblem(
            f"unknown retriever(s) {', '.join(unknown)}; choose from {', '.join(RETRIEVERS)}"
        )


def evaluate(
    dataset: Dataset,
    retrievers: Sequence[str],
    embedder: Embedder,
    *,
    k: int = DEFAULT_K,
    work_dir: Path | None = None,
    progress: bool = False,
) -> EvalReport:
    """Run each named retriever over the dataset's judged queries and score it.

    ``jaccard`` scans the indexed records in row order; every other kind is
    opened over the eval index by :func:`~lakevec.retrieval.registry.retriever_for`.
    """
    check_retrievers(retrievers)
    if k < 1:
        raise UsageProblem("--k must be at least 1")
    snapshot = ensure_index(dataset.corpus, embedder, work_dir, progress=progress)
    try:
        if any(needs_embedder(name) for name in retrievers):
            embedder.encode(["warm-up"])  # load the model outside the timed runs
        depth = max(k, NDCG_AT, MRR_AT)
        results = []
        for name in dict.fromkeys(retrievers):
            retriever: Retriever = (
                JaccardRetriever(snapshot.iter_records())
                if name == "jaccard"
                else retriever_for(name, snapshot, embedder)
            )
            try:
                t0 = time.perf_counter()
                run = run_retriever(retriever, dataset.queries, depth)
                seconds = time.perf_counter() - t0
            finally:
                retriever.close()
            extra: dict[str, float] = {}
            if name == "hnsw":
                vectors = embedder.encode(list(dataset.queries.values()))
                extra = ann_quality(snapshot, vectors, k)
            results.append(
                RetrieverResult(name, score_ranking(dataset.qrels, run, k), seconds, extra)
            )
        model = snapshot.manifest.model
        return EvalReport(
            dataset=dataset.name,
            path=str(dataset.path),
            corpus_sha256=dataset.corpus.sha256,
            documents=len(snapshot),
            queries=len(dataset.queries),
            k=k,
            model={
                "model_id": model.model_id,
                "fingerprint": model.fingerprint,
                "precision": embedder.precision,
            },
            results=results,
        )
    finally:
        snapshot.close()


def run_eval(
    dataset_dir: Path,
    retrievers: Sequence[str] = (),
    *,
    model: str | None = None,
    precision: str | None = None,
    split: str | None = None,
    limit_queries: int | None = None,
    k: int = DEFAULT_K,
    work_dir: Path | None = None,
    progress: bool = False,
) -> EvalReport:
    """Load a BEIR dataset and the model, and evaluate (what ``lakevec eval`` runs).

    None picks the defaults: every retriever, the packaged model, fp32,
    the ``test`` split.
    """
    check_retrievers(retrievers)
    dataset = load_dataset(dataset_dir, split=split or DEFAULT_SPLIT,
                           limit_queries=limit_queries)
    embedder = load_embedder(model or DEFAULT_MODEL, precision=precision or EVAL_PRECISION)
    return evaluate(dataset, retrievers or EVAL_RETRIEVERS, embedder, k=k, work_dir=work_dir,
                    progress=progress)
