"""Index benchmark (issue 2 item 9): build the 53k corpus with the real model, then search.

Builds with ``lakevec build-index`` in a child process (so the peak RSS is the
build's own), then loads the index in this process and times single-query
search: the graph step alone (``HnswGraph.knn``: hnswlib's ``knn_query`` on a
private copy of the graph), lakevec's ``IndexSnapshot.knn`` and the exact
brute-force ``IndexSnapshot.exact``, with recall@k of HNSW against exact over
the same stored vectors.

Queries are the titles of randomly chosen records (short texts, like a
search), embedded with the query-time embedder (``load_query_embedder``).

    python scripts/bench/bench_index.py                # full 53k corpus
    python scripts/bench/bench_index.py --limit 5000   # quick run
    python scripts/bench/bench_index.py --reuse        # search only, on the built index

The built index stays in .bench/index-53k[-LIMIT] and its vectors are copied
to .bench/vectors-53k.npy for bench_1m.py.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from _common import (
    CORPUS_53K,
    bench_dir,
    dir_bytes,
    lakevec_cmd,
    machine,
    median,
    pct,
    peak_rss_mb,
    run_json,
    save_result,
    time_each,
)

from lakevec.corpus import read_corpus
from lakevec.embed.loader import load_query_embedder
from lakevec.index.snapshot import open_index


def limited_corpus(corpus: Path, limit: int | None) -> Path:
    if not limit:
        return corpus
    out = bench_dir() / f"corpus-{limit}.jsonl"
    if not out.exists():
        with corpus.open("rb") as src, out.open("wb") as dst:
            for i, line in enumerate(src):
                if i >= limit:
                    break
                dst.write(line)
    return out


def query_texts(corpus: Path, n: int, seed: int) -> list[str]:
    records = list(read_corpus(corpus, "auto").records.values())
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(records), size=min(n, len(records)), replace=False)
    return [records[i].title or records[i].content[:100] for i in picks]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=CORPUS_53K)
    ap.add_argument("--limit", type=int, default=None, help="index only the first N lines")
    ap.add_argument("--index", type=Path, default=None)
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--reuse", action="store_true", help="skip the build if the index exists")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("-k", type=int, default=8)
    ap.add_argument("--runs", type=int, default=3, help="timing repetitions (median reported)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--efs", default="", help="also sweep these ef values (comma-separated)")
    args = ap.parse_args()

    corpus = limited_corpus(args.corpus, args.limit)
    index = args.index or bench_dir() / ("index-53k" + (f"-{args.limit}" if args.limit else ""))
    result: dict[str, object] = {"machine": machine(), "corpus": str(corpus), "index": str(index)}

    if not (args.reuse and (index / "CURRENT").exists()):
        if index.exists():
            shutil.rmtree(index)
        t = time.perf_counter()
        build = run_json(
            [*lakevec_cmd(), "build-index", "--corpus", str(corpus), "--index", str(index),
             "--full", "--quiet", "--json", "--precision", args.precision]
        )
        result["build"] = {
            **build,
            "wall_s": round(time.perf_counter() - t, 1),
            "peak_rss_mb": round(peak_rss_mb(children=True)),
        }
        print(f"build: {build['records']} records in {build['seconds']:.1f} s "
              f"= {build['records_per_s']:.1f} records/s, peak RSS "
              f"{result['build']['peak_rss_mb']} MB", file=sys.stderr)  # type: ignore[index]

    t = time.perf_counter()
    snap = open_index(index)
    load_s = time.perf_counter() - t
    m = snap.manifest
    files = {name: info.bytes for name, info in m.files.items()}
    result["index_info"] = {
        "records": len(snap),
        "precision": m.build.precision,
        "hnsw": m.hnsw.model_dump(),
        "disk_bytes": dir_bytes(snap.path),
        "files": files,
        "load_s": round(load_s, 3),
    }
    if not args.limit:
        shutil.copyfile(snap.path / "vectors.npy", bench_dir() / "vectors-53k.npy")

    texts = query_texts(corpus, args.queries, args.seed)
    emb = load_query_embedder(m.model.spec)
    q = emb.encode(texts)
    k = args.k
    # A private copy of the graph, to time the ANN step alone; its set_ef never
    # touches the graph behind snap.knn (hnswlib searches with max(ef, k) anyway).
    graph = snap.load_graph()
    graph.set_ef(max(m.hnsw.ef_search, k))

    ann_lab = [graph.knn(q[i : i + 1], k)[0][0] for i in range(len(q))]
    exact_rows, _ = snap.exact(q, k)
    exact_lab = snap.labels[np.asarray(exact_rows)]
    hits = [len(set(a) & set(e)) for a, e in zip(ann_lab, exact_lab, strict=True)]
    recall = float(np.mean(hits)) / k

    runs: dict[str, list[list[float]]] = {"hnswlib": [], "knn": [], "exact": []}
    for _ in range(args.runs):
        runs["hnswlib"].append(time_each(lambda i: graph.knn(q[i : i + 1], k), len(q)))
        runs["knn"].append(time_each(lambda i: snap.knn(q[i : i + 1], k), len(q)))
        runs["exact"].append(time_each(lambda i: snap.exact(q[i : i + 1], k), min(len(q), 200)))
    search = {
        name: {
            "p50_ms": round(median([pct(r, 50) for r in rs]), 4),
            "p99_ms": round(median([pct(r, 99) for r in rs]), 4),
        }
        for name, rs in runs.items()
    }
    result["search"] = {
        "queries": len(q),
        "k": k,
        "query_embedder": emb.backend,
        f"recall@{k}": round(recall, 4),
        "runs": args.runs,
        **search,
        "exact_over_ann_p50": round(search["exact"]["p50_ms"] / search["hnswlib"]["p50_ms"], 1),
    }
    sweep = []
    for ef in [int(e) for e in args.efs.split(",") if e]:
        graph.set_ef(max(ef, k))
        got = [graph.knn(q[i : i + 1], k)[0][0] for i in range(len(q))]
        hits = [len(set(a) & set(e)) for a, e in zip(got, exact_lab, strict=True)]
        ms = [time_each(lambda i: graph.knn(q[i : i + 1], k), len(q))
              for _ in range(args.runs)]
        sweep.append({"ef": ef, f"recall@{k}": round(float(np.mean(hits)) / k, 4),
                      "p50_ms": round(median([pct(r, 50) for r in ms]), 4),
                      "p99_ms": round(median([pct(r, 99) for r in ms]), 4)})
        print(json.dumps(sweep[-1]), file=sys.stderr)
    if sweep:
        result["ef_sweep"] = sweep
    name = "bench_index" + (f"-{args.limit}" if args.limit else "") + ("-sweep" if sweep else "")
    out = save_result(name, result)
    print(json.dumps(result, indent=2))
    print(f"saved {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
