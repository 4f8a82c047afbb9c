"""Chunking study: does embedding overlapping chunks of long records help? (docs/EVAL.md)

Usage: python scripts/eval/chunk_study.py [--rerank N --queries Q] DATASET_DIR... > results.json

``--rerank N --queries Q`` (a time-boxed variant for big sets): only the first
Q queries, and only records in some query's exact top N get chunked; every
method then ranks that candidate pool, so ``first`` is scored the same way.

MiniLM reads at most 256 word pieces. Records longer than that are cut into
windows of WINDOW word pieces every STRIDE (so windows overlap by
WINDOW - STRIDE); windows after the first are prefixed with the title. The
first window is exactly what the index already embeds (truncation), so its
stored vector is reused and only the extra windows are embedded. Pooling per
record: ``max`` (record score = best chunk cosine) and ``mean`` (normalised
mean of chunk vectors, one vector per record). Scored with exact search.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from lakevec.corpus import embed_text
from lakevec.embed.base import normalize
from lakevec.embed.sentence import SentenceTransformerEmbedder
from lakevec.eval.dataset import load_dataset
from lakevec.eval.metrics import score_ranking
from lakevec.eval.runner import ensure_index

WINDOW = 254  # 256 minus [CLS] and [SEP]
STRIDE = 192  # 62 word pieces of overlap
DEPTH = 10


def chunk_texts(tokenizer: Any, title: str, text: str) -> list[str]:
    """The extra windows (2nd onwards) of a record, as text; [] if it fits in one."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= WINDOW:
        return []
    title_ids = tokenizer(title, add_special_tokens=False)["input_ids"] if title else []
    body = WINDOW - len(title_ids)
    out = []
    start = STRIDE
    while start < len(ids):
        window = ids[start : start + max(body, 32)]
        out.append((title + " " if title else "") + tokenizer.decode(window))
        if start + body >= len(ids):
            break
        start += STRIDE
    return out


def main(args: list[str]) -> None:
    rerank = queries = None
    if args[:1] == ["--rerank"]:
        rerank, queries, args = int(args[1]), int(args[3]), args[4:]
    # What load_embedder("default", precision="fp32") returns, typed concretely
    # for its tokenizer (the model loads here).
    embedder = SentenceTransformerEmbedder("default", precision="fp32")
    tokenizer = embedder.model.tokenizer
    results: dict[str, Any] = {}
    for path in args:
        ds = load_dataset(path, limit_queries=queries)
        snap = ensure_index(ds.corpus, embedder)
        records = list(snap.iter_records())
        ids = [r.id for r in records]
        base = np.asarray(snap.vectors, dtype=np.float32)
        q = embedder.encode(list(ds.queries.values()))
        pool = np.ones(len(records), dtype=bool)
        if rerank:
            pool[:] = False
            pool[np.asarray(snap.exact(q, rerank)[0]).ravel()] = True
        extra_texts: list[str] = []
        owner: list[int] = []
        for row, rec in enumerate(records):
            if not pool[row]:
                continue
            chunks = chunk_texts(tokenizer, rec.title, embed_text(rec))
            extra_texts.extend(chunks)
            owner.extend([row] * len(chunks))
        t0 = time.perf_counter()
        extra = embedder.encode(extra_texts, progress=True) if extra_texts else base[:0]
        seconds = time.perf_counter() - t0
        chunk_vecs = np.vstack([base, extra])
        chunk_owner = np.concatenate([np.arange(len(records)), np.asarray(owner, dtype=np.int64)])
        sums = np.zeros_like(base)
        np.add.at(sums, chunk_owner, chunk_vecs)
        mean_vecs = normalize(sums)
        qids = list(ds.queries)
        runs: dict[str, dict[str, list[str]]] = {"first": {}, "max": {}, "mean": {}}
        sims_first = q @ base.T
        sims_mean = q @ mean_vecs.T
        sims_chunks = q @ chunk_vecs.T
        for i, qid in enumerate(qids):
            best = np.full(len(records), -np.inf, dtype=np.float32)
            np.maximum.at(best, chunk_owner, sims_chunks[i])
            for name, sims in (("first", sims_first[i]), ("max", best), ("mean", sims_mean[i])):
                sims = np.where(pool, sims, -np.inf)
                top = np.argsort(-sims, kind="stable")[:DEPTH]
                runs[name][qid] = [ids[r] for r in top]
        long_records = len(set(owner))
        results[Path(path).name] = {
            "records": len(records),
            "long_records": long_records,
            "extra_chunks": len(extra_texts),
            "embed_seconds": round(seconds, 1),
            "window": WINDOW,
            "stride": STRIDE,
            "rerank_pool": int(pool.sum()),
            "queries": len(qids),
        } | {name: score_ranking(ds.qrels, run) for name, run in runs.items()}
        print(json.dumps({Path(path).name: results[Path(path).name]}), file=sys.stderr, flush=True)
        snap.close()
    json.dump(results, sys.stdout, indent=1)


if __name__ == "__main__":
    main(sys.argv[1:])
