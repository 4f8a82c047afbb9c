"""Quality guard of the fast paths on SciFact: bf16 / int8 vs fp32 vectors and nDCG@10.

Embeds the SciFact corpus (5,183 docs, BEIR layout) with the packaged MiniLM
in fp32 (sentence-transformers, the reference) and with each fast path
through lakevec's eval harness (``lakevec.eval``; indexes cached in
.bench/eval-<precision>/):

* ``int8``: ONNX Runtime, int8 weights quantized locally (every CPU);
* ``bf16``: sentence-transformers with bf16 weights (only on a CPU with
  native bf16, or with ``--precisions`` naming it).

It reports the cosine between the fp32 and fast vector of every document
(min, p1, mean) and exact dense nDCG@10 over the 300 test queries for the
fp32 corpus + fp32 queries (reference) and each fast corpus + ONNX fp32
queries (what lakevec ships: fast build, torch-free queries). The guard:
|ΔnDCG@10| <= 0.005.

    python scripts/bench/bench_quality.py [--precisions int8,bf16]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from _common import SCIFACT, bench_dir, cpu_line, machine, save_result

from lakevec.embed.auto import INT8, AutoEmbedder
from lakevec.embed.base import Embedder
from lakevec.embed.loader import load_query_embedder
from lakevec.embed.precision import BF16_CPU_FLAGS, cpu_flags
from lakevec.embed.sentence import SentenceTransformerEmbedder
from lakevec.eval.dataset import load_dataset
from lakevec.eval.metrics import NDCG_AT, score_ranking
from lakevec.eval.runner import ensure_index, run_retriever
from lakevec.index.snapshot import IndexSnapshot
from lakevec.retrieval.registry import retriever_for

LIMIT = 0.005


def fast_embedder(precision: str) -> Embedder:
    if precision == "int8":
        return AutoEmbedder(force=INT8)
    return SentenceTransformerEmbedder(precision=precision)


def ndcg(snap: IndexSnapshot, queries: Embedder, ds: object) -> float:
    retriever = retriever_for("exact", snap, queries)
    try:
        run = run_retriever(retriever, ds.queries, NDCG_AT)  # type: ignore[attr-defined]
    finally:
        retriever.close()  # the snapshot is not the retriever's: it stays open
    return round(score_ranking(ds.qrels, run)[f"ndcg@{NDCG_AT}"], 4)  # type: ignore[attr-defined]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    default = "int8,bf16" if cpu_flags() & BF16_CPU_FLAGS else "int8"
    ap.add_argument("--precisions", default=default, help=f"fast paths to check ({default})")
    ap.add_argument("--fp32-work-dir", type=Path, default=None,
                    help="reuse this eval work dir's fp32 SciFact index")
    args = ap.parse_args()
    if not SCIFACT.is_dir():
        sys.exit(f"{SCIFACT} is missing")
    ds = load_dataset(SCIFACT)
    result: dict[str, object] = {"machine": machine(), "cpu": cpu_line(), "dataset": str(SCIFACT)}
    snaps: dict[str, IndexSnapshot] = {}
    for precision in ["fp32", *args.precisions.split(",")]:
        emb = SentenceTransformerEmbedder(precision="fp32") if precision == "fp32" else (
            fast_embedder(precision))
        work = bench_dir() / f"eval-{precision}"
        if precision == "fp32" and args.fp32_work_dir:
            work = args.fp32_work_dir
        t = time.perf_counter()
        snaps[precision] = ensure_index(ds.corpus, emb, work, progress=True)
        print(f"{precision}: {len(snaps[precision])} docs, {time.perf_counter() - t:.0f} s",
              file=sys.stderr)
    ids = [r.id for r in snaps["fp32"].iter_records()]
    vecs = {
        p: dict(zip((r.id for r in s.iter_records()), np.asarray(s.vectors), strict=True))
        for p, s in snaps.items()
    }
    ref_vecs = np.stack([vecs["fp32"][i] for i in ids])
    query = load_query_embedder(None)
    reference = ndcg(snaps["fp32"], SentenceTransformerEmbedder(precision="fp32"), ds)
    rows: dict[str, object] = {
        "fp32 corpus, fp32 queries (reference)": reference,
        "fp32 corpus, ONNX fp32 queries": ndcg(snaps["fp32"], query, ds),
    }
    for precision in snaps:
        if precision == "fp32":
            continue
        cos = (ref_vecs * np.stack([vecs[precision][i] for i in ids])).sum(1)
        result[f"corpus_cosine_{precision}_vs_fp32"] = {
            "docs": len(ids), "min": round(float(cos.min()), 5),
            "p1": round(float(np.percentile(cos, 1)), 5), "mean": round(float(cos.mean()), 5),
        }
        rows[f"{precision} corpus, ONNX fp32 queries (shipped)"] = ndcg(snaps[precision], query, ds)
        print(json.dumps(rows), file=sys.stderr)
    result["ndcg@10_exact"] = rows
    delta = max(abs(float(v) - reference) for v in rows.values())  # type: ignore[arg-type]
    result["max_abs_delta_vs_fp32"] = round(delta, 4)
    result["guard_holds"] = delta <= LIMIT
    out = save_result("bench_quality", result)
    print(json.dumps(result, indent=2))
    print(f"saved {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
