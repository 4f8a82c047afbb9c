"""Measure BM25 tokenisation and RRF constants on the BEIR eval sets (docs/EVAL.md).

Usage: python scripts/eval/tune_hybrid.py DATASET_DIR... > results.json

Every dataset's corpus is embedded once (the eval cache); dense and BM25
rankings are computed once at depth 200 and fused offline for each
(rrf_k, depth) pair, so the sweep costs seconds, not re-embeddings.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lakevec.corpus import keyword_text
from lakevec.embed.loader import load_embedder
from lakevec.eval.dataset import load_dataset
from lakevec.eval.metrics import score_ranking
from lakevec.eval.runner import ensure_index
from lakevec.index.lexical import BM25Index
from lakevec.retrieval.hybrid import rrf

MAX_DEPTH = 200
TOKENISATIONS = {
    "stem+stop": ("english", "en"),
    "stem": ("english", None),
    "stop": (None, "en"),
    "plain": (None, None),
}
RRF_KS = (1, 5, 10, 20, 30, 60, 100, 200)
DEPTHS = (10, 20, 50, 100, 200)


def main(paths: list[str]) -> None:
    embedder = load_embedder("default", precision="fp32")
    out: dict[str, object] = {}
    for path in paths:
        ds = load_dataset(path)
        snap = ensure_index(ds.corpus, embedder, progress=True)
        records = list(snap.iter_records())
        ids = [r.id for r in records]
        qids = list(ds.queries)
        texts = [ds.queries[q] for q in qids]
        res: dict[str, object] = {}
        lexical: dict[str, list[list[int]]] = {}
        for name, (stem, stop) in TOKENISATIONS.items():
            index = BM25Index((keyword_text(r) for r in records), stemmer=stem, stopwords=stop)
            lexical[name] = [rows.tolist() for rows, _ in index.search_rows(texts, MAX_DEPTH)]
            run = {q: [ids[r] for r in rows] for q, rows in zip(qids, lexical[name], strict=True)}
            res[f"bm25[{name}]"] = score_ranking(ds.qrels, run)
        vecs = embedder.encode(texts)
        dense = {
            "exact": snap.exact(vecs, MAX_DEPTH)[0],
            "hnsw": snap.knn(vecs, MAX_DEPTH)[0],
        }
        for name, rows_list in dense.items():
            run = {q: [ids[r] for r in rows] for q, rows in zip(qids, rows_list, strict=True)}
            res[name] = score_ranking(ds.qrels, run)
        sweep = []
        for tok in ("stem+stop", "plain"):
            for dname in ("hnsw", "exact"):
                for rrf_k in RRF_KS:
                    for depth in DEPTHS:
                        run = {}
                        for q, d_rows, l_rows in zip(qids, dense[dname], lexical[tok], strict=True):
                            fused = rrf([d_rows[:depth], l_rows[:depth]], rrf_k=rrf_k)[:10]
                            run[q] = [ids[r] for r, _ in fused]
                        sweep.append(
                            {"bm25": tok, "dense": dname, "rrf_k": rrf_k, "depth": depth}
                            | score_ranking(ds.qrels, run)
                        )
        res["sweep"] = sweep
        out[Path(path).name] = res
        print(Path(path).name, "done", file=sys.stderr, flush=True)
        snap.close()
    json.dump(out, sys.stdout, indent=1)


if __name__ == "__main__":
    main(sys.argv[1:])
