"""Retrieval quality on BEIR-layout data: nDCG@10, Recall@K, MRR@10 per retriever.

A dataset directory holds ``corpus.jsonl``, ``queries.jsonl`` and
``qrels/<split>.tsv``. The corpus is embedded once into a regular lakevec
index kept in a cache directory keyed by the corpus sha256 and the model
fingerprint, so repeated runs only load it.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lakevec.corpus import Corpus, read_corpus
from lakevec.embed import Embedder
from lakevec.errors import CorpusError, UsageProblem
from lakevec.index import HnswParams, IndexSnapshot, build_index, open_index

NDCG_AT = 10
MRR_AT = 10
DEFAULT_K = 8  # the bundle's K: how many playbooks replay puts in a bundle

Qrels = dict[str, dict[str, int]]
Ranking = dict[str, list[str]]


def default_work_dir() -> Path:
    """Where eval indexes are cached: ``$LAKEVEC_EVAL_CACHE`` or ``~/.cache/lakevec/eval``."""
    env = os.environ.get("LAKEVEC_EVAL_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lakevec" / "eval"


@dataclass
class Dataset:
    """A BEIR-layout dataset: corpus, the judged queries and their relevance labels."""

    path: Path
    corpus: Corpus
    queries: dict[str, str]
    qrels: Qrels
    skipped_queries: int = 0

    @property
    def name(self) -> str:
        return self.path.name


def read_qrels(path: Path) -> Qrels:
    """Read a BEIR qrels TSV (header ``query-id corpus-id score``); keep score > 0."""
    qrels: Qrels = {}
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = csv.reader(fh, delimiter="\t")
            header = next(rows, None)
            if header is None or [h.strip() for h in header[:3]] != [
                "query-id",
                "corpus-id",
                "score",
            ]:
                raise CorpusError(f"{path}: expected the header 'query-id corpus-id score'")
            for lineno, row in enumerate(rows, start=2):
                if not row:
                    continue
                if len(row) < 3:
                    raise CorpusError(f"{path}: line {lineno}: expected 3 tab-separated fields")
                try:
                    score = int(float(row[2]))
                except ValueError:
                    raise CorpusError(f"{path}: line {lineno}: bad score {row[2]!r}") from None
                if score > 0:
                    qrels.setdefault(row[0], {})[row[1]] = score
    except FileNotFoundError:
        raise CorpusError(f"qrels file not found: {path}") from None
    return qrels


def read_queries(path: Path) -> dict[str, str]:
    queries: dict[str, str] = {}
    try:
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                    queries[str(obj["_id"])] = str(obj["text"])
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    raise CorpusError(f"{path}: line {lineno}: bad query ({exc})") from None
    except FileNotFoundError:
        raise CorpusError(f"queries file not found: {path}") from None
    return queries


def load_dataset(
    path: str | Path, *, split: str = "test", limit_queries: int | None = None
) -> Dataset:
    """Load a BEIR dataset; only queries with at least one relevant document are kept.

    ``limit_queries`` keeps the first N judged queries in qrels order, which is
    stable, so a limited run is reproducible.
    """
    path = Path(path)
    if not path.is_dir():
        raise UsageProblem(f"--dataset {path} is not a directory (expected the BEIR layout)")
    corpus = read_corpus(path / "corpus.jsonl", "beir")
    all_queries = read_queries(path / "queries.jsonl")
    qrels = read_qrels(path / "qrels" / f"{split}.tsv")
    judged = [q for q in qrels if q in all_queries]
    skipped = len(qrels) - len(judged)
    if limit_queries is not None:
        judged = judged[: max(limit_queries, 0)]
    if not judged:
        raise CorpusError(f"{path}: no judged queries in qrels/{split}.tsv match queries.jsonl")
    return Dataset(
        path=path,
        corpus=corpus,
        queries={q: all_queries[q] for q in judged},
        qrels={q: qrels[q] for q in judged},
        skipped_queries=skipped,
    )


def eval_index_dir(corpus: Corpus, embedder: Embedder, work_dir: Path | None = None) -> Path:
    """The cache directory of the eval index for this corpus, model and precision."""
    root = work_dir or default_work_dir()
    # The fingerprint names the weights only; bf16 and fp32 vectors differ.
    precision = getattr(embedder, "precision", "na")
    return root / f"{corpus.sha256[:16]}-{embedder.fingerprint[:16]}-{precision}"


def ensure_index(
    corpus: Corpus,
    embedder: Embedder,
    work_dir: Path | None = None,
    *,
    progress: bool = False,
) -> IndexSnapshot:
    """Open the cached eval index of ``corpus``, embedding it first if it is missing.

    The build is the regular incremental one, so an existing cache is a no-op
    that never loads the model.
    """
    index_dir = eval_index_dir(corpus, embedder, work_dir)
    # A concurrent eval of the same set holds the lock while it embeds (minutes
    # on a cold cache); waiting for it beats failing and embedding twice.
    # Explicit default params: a cache built under other defaults is brought to
    # these (ef_search only changes the manifest) so figures do not depend on
    # when the cache was made.
    build_index(
        corpus, index_dir, embedder, params=HnswParams(), progress=progress, lock_timeout=3600
    )
    return open_index(index_dir)


# ─── metrics ─────────────────────────────────────────────────────────────────
# Written out (not ranx) to keep eval free of a numba JIT warm-up; the tests
# check them against ranx and against hand-computed rankings. Definitions
# follow trec_eval / BEIR: linear gain, log2 discount, binary relevance for
# recall and MRR (any score > 0 counts).


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


def score_ranking(qrels: Qrels, run: Ranking, k: int = DEFAULT_K) -> dict[str, float]:
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


# ─── running retrievers ──────────────────────────────────────────────────────

EVAL_RETRIEVERS = ("jaccard", "bm25", "exact", "hnsw", "hybrid")
QUALITY_PREFIXES = ("ndcg@", "recall@", "mrr@", "ann_recall@")


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


def ann_quality(snapshot: IndexSnapshot, vectors: np.ndarray[Any, Any], k: int) -> dict[str, float]:
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


def make_retriever(
    name: str,
    snapshot: IndexSnapshot,
    embedder: Embedder,
    records: Sequence[Any],
    bm25: Any = None,
) -> Any:
    """A retriever over the eval index; ``bm25`` shares one BM25 index with ``hybrid``."""
    from lakevec.hybrid import HybridRetriever
    from lakevec.lexical import BM25Retriever
    from lakevec.retrieve import DenseRetriever, JaccardRetriever

    if name == "jaccard":
        return JaccardRetriever(records)
    if name == "bm25":
        return bm25 or BM25Retriever(records)
    if name in ("exact", "hnsw"):
        return DenseRetriever(snapshot, embedder, exact=name == "exact")
    if name == "hybrid":
        lexical = (bm25 or BM25Retriever(records)).index
        return HybridRetriever(snapshot, embedder, bm25=lexical)
    raise UsageProblem(f"unknown retriever {name!r}; choose from {', '.join(EVAL_RETRIEVERS)}")


def run_retriever(retriever: Any, queries: dict[str, str], depth: int) -> Ranking:
    """Each query's ranked corpus ids, searched in one batch where supported."""
    from lakevec.retrieve import search_many

    qids = list(queries)
    hits = search_many(retriever, [queries[q] for q in qids], depth)
    return {qid: [h.record.id for h in found] for qid, found in zip(qids, hits, strict=True)}


def evaluate(
    dataset: Dataset,
    retrievers: Sequence[str],
    embedder: Embedder,
    *,
    k: int = DEFAULT_K,
    work_dir: Path | None = None,
    progress: bool = False,
) -> EvalReport:
    """Run each named retriever over the dataset's judged queries and score it."""
    unknown = [r for r in retrievers if r not in EVAL_RETRIEVERS]
    if unknown:
        raise UsageProblem(
            f"unknown retriever(s) {', '.join(unknown)}; choose from {', '.join(EVAL_RETRIEVERS)}"
        )
    if k < 1:
        raise UsageProblem("--k must be at least 1")
    from lakevec.lexical import BM25Retriever

    snapshot = ensure_index(dataset.corpus, embedder, work_dir, progress=progress)
    try:
        records = list(snapshot.iter_records())
        bm25 = BM25Retriever(records) if {"bm25", "hybrid"}.intersection(retrievers) else None
        if {"exact", "hnsw", "hybrid"}.intersection(retrievers):
            embedder.encode(["warm-up"])  # load the model outside the timed runs
        depth = max(k, NDCG_AT, MRR_AT)
        results = []
        for name in dict.fromkeys(retrievers):
            retriever = make_retriever(name, snapshot, embedder, records, bm25)
            t0 = time.perf_counter()
            run = run_retriever(retriever, dataset.queries, depth)
            seconds = time.perf_counter() - t0
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
                "precision": str(getattr(embedder, "precision", "na")),
            },
            results=results,
        )
    finally:
        snapshot.close()


# ─── regression gate ─────────────────────────────────────────────────────────

BASELINE_FORMAT = "lakevec-eval-baseline"
DEFAULT_TOLERANCE = 0.02


@dataclass(frozen=True)
class Regression:
    """A gated metric that fell below ``baseline - tolerance``."""

    retriever: str
    metric: str
    baseline: float
    value: float
    tolerance: float

    def __str__(self) -> str:
        return (
            f"{self.retriever} {self.metric} = {self.value:.4f}, baseline {self.baseline:.4f} "
            f"(drop {self.baseline - self.value:.4f} > tolerance {self.tolerance})"
        )


def _entry_key(dataset: str, queries: int, k: int) -> tuple[str, int, int]:
    return dataset, queries, k


def read_baseline(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageProblem(f"baseline file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise UsageProblem(f"baseline {path} is not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict) or data.get("format") != BASELINE_FORMAT:
        raise UsageProblem(f"{path} is not a lakevec eval baseline (format {BASELINE_FORMAT!r})")
    if not isinstance(data.get("entries"), list):
        raise UsageProblem(f"baseline {path} has no 'entries' list")
    return data


def _baseline_entry(report: EvalReport) -> dict[str, Any]:
    return {
        "dataset": report.dataset,
        "queries": report.queries,
        "k": report.k,
        "corpus_sha256": report.corpus_sha256,
        "model_fingerprint": report.model["fingerprint"],
        "precision": report.model["precision"],
        "retrievers": {
            r.name: {
                m: round(v, 4)
                for m, v in (r.metrics | r.extra).items()
                if m.startswith(QUALITY_PREFIXES)
            }
            for r in report.results
        },
    }


def save_baseline(report: EvalReport, path: Path, tolerance: float = DEFAULT_TOLERANCE) -> None:
    """Add (or replace) this run's entry in the baseline file at ``path``."""
    data: dict[str, Any] = (
        read_baseline(path)
        if path.exists()
        else {"format": BASELINE_FORMAT, "tolerance": tolerance, "entries": []}
    )
    key = _entry_key(report.dataset, report.queries, report.k)
    entries = [e for e in data["entries"] if _entry_key(e["dataset"], e["queries"], e["k"]) != key]
    entries.append(_baseline_entry(report))
    data["entries"] = sorted(entries, key=lambda e: (e["dataset"], e["queries"], e["k"]))
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def check_baseline(
    report: EvalReport, path: Path, tolerance: float | None = None
) -> tuple[list[Regression], list[str]]:
    """Compare a run with its baseline entry: ``(regressions, notes)``.

    Only quality metrics are gated (latency depends on the machine). The entry
    is the one for the same dataset, number of queries and ``k``; a baseline
    measured on a different corpus or model is a usage error, not a pass.
    """
    data = read_baseline(path)
    tol = float(data.get("tolerance", DEFAULT_TOLERANCE)) if tolerance is None else tolerance
    key = _entry_key(report.dataset, report.queries, report.k)
    entry = next(
        (e for e in data["entries"] if _entry_key(e["dataset"], e["queries"], e["k"]) == key),
        None,
    )
    if entry is None:
        have = ", ".join(
            f"{e['dataset']} ({e['queries']} queries, k={e['k']})" for e in data["entries"]
        )
        raise UsageProblem(
            f"{path} has no entry for {report.dataset} with {report.queries} queries and "
            f"k={report.k}; it has: {have or 'none'}"
        )
    if entry.get("corpus_sha256") != report.corpus_sha256:
        raise UsageProblem(f"{path}: the {report.dataset} baseline was measured on another corpus")
    if entry.get("model_fingerprint") != report.model["fingerprint"]:
        raise UsageProblem(f"{path}: the {report.dataset} baseline was measured with another model")
    if entry.get("precision") != report.model["precision"]:
        raise UsageProblem(
            f"{path}: the {report.dataset} baseline was measured in {entry.get('precision')} "
            f"precision, this run in {report.model['precision']} — pass --precision"
        )
    regressions: list[Regression] = []
    notes: list[str] = []
    measured = {r.name: r.metrics | r.extra for r in report.results}
    gated = [name for name in measured if name in entry["retrievers"]]
    if not gated:
        raise UsageProblem(f"{path}: none of the evaluated retrievers has a baseline")
    notes.extend(f"{name}: no baseline, not gated" for name in measured if name not in gated)
    for name in gated:
        for metric, base in entry["retrievers"][name].items():
            value = measured[name].get(metric)
            if value is None:
                notes.append(f"{name}: {metric} not measured in this run")
            elif value < float(base) - tol - 1e-9:
                regressions.append(Regression(name, metric, float(base), value, tol))
    return regressions, notes


def format_table(report: EvalReport) -> str:
    """A plain-text results table, one row per retriever."""
    ndcg, recall, mrr = metric_names(report.k)
    ann = f"ann_recall@{report.k}"
    lines = [
        f"{report.dataset}: {report.documents} docs, {report.queries} queries, "
        f"model {report.model['model_id']} ({report.model['precision']})",
        f"{'retriever':<10} {ndcg:>8} {recall:>9} {mrr:>7} {'secs':>7}  ANN",
    ]
    for r in report.results:
        m = r.metrics
        row = f"{r.name:<10} {m[ndcg]:>8.4f} {m[recall]:>9.4f} {m[mrr]:>7.4f} {r.seconds:>7.2f}"
        if r.extra:
            row += (
                f"  {ann} {r.extra[ann]:.4f}, p50 {r.extra['latency_p50_ms']:.3f} ms, "
                f"p99 {r.extra['latency_p99_ms']:.3f} ms"
            )
        lines.append(row)
    return "\n".join(lines)
