"""Quality guard of the fast path on SciFact: bf16 vs fp32 vectors and nDCG@10.

Embeds the SciFact corpus (5,183 docs, BEIR layout) twice with the packaged
MiniLM, once in fp32 and once with bf16 weights, through lakevec's eval
harness (``lakevec.eval``; indexes cached in .bench/eval-<precision>/),
then reports:

* cosine between the fp32 and bf16 vector of every document (min, p1, mean);
* exact dense nDCG@10 over the 300 test queries for fp32 corpus + fp32
  queries (the reference), bf16 corpus + ONNX fp32 queries (what lakevec
  ships: bf16 build, torch-free queries) and bf16 corpus + bf16 queries.

    python scripts/bench/bench_quality.py
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from _common import SCIFACT, bench_dir, machine, save_result

from lakevec.corpus import embed_text
from lakevec.embed.loader import load_query_embedder
from lakevec.embed.sentence import SentenceTransformerEmbedder
from lakevec.eval.dataset import load_dataset
from lakevec.eval.metrics import NDCG_AT, score_ranking
from lakevec.eval.runner import ensure_index, run_retriever
from lakevec.retrieval.registry import retriever_for


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--fp32-work-dir", type=Path, default=None,
                    help="reuse this eval work dir's fp32 SciFact index")
    args = ap.parse_args()
    if not SCIFACT.is_dir():
        sys.exit(f"{SCIFACT} is missing")
    ds = load_dataset(SCIFACT)
    result: dict[str, object] = {"machine": machine(), "dataset": str(SCIFACT)}
    snaps = {}
    work = {"bf16": bench_dir() / "eval-bf16", "fp32": bench_dir() / "eval-fp32"}
    for precision in ("bf16", "fp32"):
        emb = SentenceTransformerEmbedder(precision=precision)
        if precision == "fp32" and args.fp32_work_dir:
            # An eval work dir that already holds a SciFact index embedded in
            # fp32 (checked below), e.g. one `lakevec eval` built.
            work["fp32"] = args.fp32_work_dir
        emb.encode(["warm-up"])  # model load outside the timing
        t = time.perf_counter()
        snap = ensure_index(ds.corpus, emb, work[precision], progress=True)
        secs = time.perf_counter() - t
        snaps[precision] = snap
        print(f"{precision}: {len(snap)} docs, {secs:.0f} s, {snap.path}", file=sys.stderr)
    # Spot check that the reference really holds fp32 vectors (the eval cache
    # is keyed by corpus and model, not precision).
    ref = snaps["fp32"]
    rows = np.random.default_rng(0).choice(len(ref), 48, replace=False)
    texts = [embed_text(r) for r in ref.iter_records()]
    fresh = SentenceTransformerEmbedder(precision="fp32").encode_batch([texts[i] for i in rows])
    low = float((fresh * np.asarray(ref.vectors)[rows]).sum(1).min())
    if low < 0.99999:
        sys.exit(f"{ref.path} does not hold fp32 vectors (min cosine {low:.6f})")
    result["fp32_reference_spot_check_min_cosine"] = round(low, 6)
    by_id = {
        p: dict(zip((r.id for r in s.iter_records()), np.asarray(s.vectors), strict=True))
        for p, s in snaps.items()
    }
    ids = list(by_id["fp32"])
    a = np.stack([by_id["fp32"][i] for i in ids])
    b = np.stack([by_id["bf16"][i] for i in ids])
    cos = (a * b).sum(1)
    result["corpus_cosine_bf16_vs_fp32"] = {
        "docs": len(ids),
        "min": round(float(cos.min()), 5),
        "p1": round(float(np.percentile(cos, 1)), 5),
        "mean": round(float(cos.mean()), 5),
    }

    ndcg = {}
    fp32 = SentenceTransformerEmbedder(precision="fp32")
    configs = {
        "fp32 corpus, fp32 queries (reference)": ("fp32", fp32),
        "bf16 corpus, ONNX fp32 queries (shipped)": ("bf16", load_query_embedder(None)),
        "bf16 corpus, bf16 queries": ("bf16", SentenceTransformerEmbedder(precision="bf16")),
        "fp32 corpus, ONNX fp32 queries": ("fp32", load_query_embedder(None)),
    }
    for name, (corpus_precision, query_emb) in configs.items():
        # The harness' pieces rather than evaluate(): the query embedder
        # differs from the one that embedded the corpus.
        snap = snaps[corpus_precision]
        retriever = retriever_for("exact", snap, query_emb)
        try:
            run = run_retriever(retriever, ds.queries, NDCG_AT)
        finally:
            retriever.close()  # the snapshot is not the retriever's: it stays open
        ndcg[name] = round(score_ranking(ds.qrels, run)[f"ndcg@{NDCG_AT}"], 4)
        print(f"{name}: nDCG@10 {ndcg[name]}", file=sys.stderr)
    ref = next(iter(ndcg.values()))
    result["ndcg@10_exact"] = ndcg
    result["max_abs_delta_vs_fp32"] = round(max(abs(v - ref) for v in ndcg.values()), 4)
    out = save_result("bench_quality", result)
    print(json.dumps(result, indent=2))
    print(f"saved {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
