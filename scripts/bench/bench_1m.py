"""A 1,000,000-record index: build, disk, memory, load time, ANN vs exact vs Jaccard.

Vectors, not texts: embedding 1M texts would take hours here, and the ANN
side only sees vectors. They are made from the 53,517 real MiniLM vectors of
the 53k corpus (``.bench/vectors-53k.npy``, written by bench_index.py):

* all 53,517 real vectors are kept;
* each synthetic vector is a convex combination of a random real "anchor"
  and two of its 10 nearest real neighbours (uniform Dirichlet(1, 1, 1)
  weights), plus isotropic Gaussian noise of norm ~0.1, renormalised.

So synthetic points sit inside the local neighbourhoods of real documents:
the corpus' cluster structure, its uneven density and the anisotropy of
MiniLM space (a shared mean direction; variance concentrated in a few
components) carry over, unlike random Gaussian vectors, which are nearly
orthogonal to each other and have no clusters. The script prints statistics
for real, synthetic and Gaussian vectors side by side to show it.

The index is built by lakevec's own ``build_index`` (records store, graph,
checksums, manifest: the real on-disk format) from a 1M-line corpus of tiny
records whose embedded text names their vector row, with an embedder that
looks the vector up. The build runs in a child process so its peak RSS is
its own.

Queries: 1,000 held-out synthetic vectors (same recipe, other seed) and
1,000 real query texts (BEIR queries of SciFact, alert-runbooks and
tldr-pages, embedded by the ONNX query model).
Ground truth is exact numpy search over all 1M vectors.

    python scripts/bench/bench_1m.py                 # synthesize (cached), build, query
    python scripts/bench/bench_1m.py --reuse         # query the existing index only
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from _common import (
    CORPUS_53K,
    SHARED,
    bench_dir,
    dir_bytes,
    machine,
    median,
    pct,
    peak_rss_mb,
    save_result,
    time_each,
)

from lakevec.corpus import read_corpus
from lakevec.embed.base import Vectors
from lakevec.embed.loader import load_query_embedder
from lakevec.eval.dataset import read_queries
from lakevec.index.build import build_index
from lakevec.index.manifest import HnswParams
from lakevec.index.snapshot import open_index
from lakevec.retrieval.jaccard import JaccardRetriever

DIM = 384


def knn_real(x: np.ndarray, k: int, block: int = 2048) -> np.ndarray:
    """Exact top-``k`` neighbours (excluding self) of every row of ``x`` within ``x``."""
    out = np.empty((len(x), k), dtype=np.int32)
    for s in range(0, len(x), block):
        sims = x[s : s + block] @ x.T
        sims[np.arange(len(sims)), np.arange(s, s + len(sims))] = -2.0
        top = np.argpartition(-sims, k, axis=1)[:, :k]
        out[s : s + block] = top
    return out


def synthesize(real: np.ndarray, nbrs: np.ndarray, n: int, seed: int, noise: float) -> Vectors:
    rng = np.random.default_rng(seed)
    out = np.empty((n, real.shape[1]), dtype=np.float32)
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        anchor = rng.integers(0, len(real), m)
        pick = nbrs[anchor[:, None], rng.integers(0, nbrs.shape[1], (m, 2))]
        w = rng.dirichlet([1.0, 1.0, 1.0], m).astype(np.float32)
        v = (
            w[:, :1] * real[anchor]
            + w[:, 1:2] * real[pick[:, 0]]
            + w[:, 2:3] * real[pick[:, 1]]
            + rng.normal(0, noise / np.sqrt(real.shape[1]), (m, real.shape[1])).astype(np.float32)
        )
        out[s : s + m] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def stats(x: np.ndarray, ref: np.ndarray, rng: np.random.Generator) -> dict[str, float]:
    """Anisotropy and cluster-structure statistics of a sample of vectors."""
    s = x[rng.choice(len(x), min(20_000, len(x)), replace=False)]
    i, j = rng.integers(0, len(s), (2, 20_000))
    centred = s - s.mean(0)
    eig = np.linalg.eigvalsh(centred.T @ centred)[::-1]
    probe = s[:1000]
    sims = probe @ ref.T
    sims[sims > 0.99999] = -2  # a real vector probing the real set: skip itself
    return {
        "norm_of_mean": round(float(np.linalg.norm(s.mean(0))), 3),
        "mean_cos_random_pairs": round(float((s[i] * s[j]).sum(1).mean()), 3),
        "var_top10_pcs": round(float(eig[:10].sum() / eig.sum()), 3),
        "mean_top1_cos_to_real": round(float(sims.max(1).mean()), 3),
    }


class RowEmbedder:
    """Embeds the text ``r<row>`` as row ``row`` of a precomputed matrix (bench only)."""

    backend = "precomputed"
    precision = "fp32"

    def __init__(self, vectors: Vectors, fingerprint: str) -> None:
        self.vectors = vectors
        self.spec = "bench:precomputed"
        self.model_id = "all-MiniLM-L6-v2 + synthetic mixtures"
        self.fingerprint = fingerprint
        self.dimension = vectors.shape[1]

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False
    ) -> Vectors:
        return np.ascontiguousarray(self.vectors[[int(t[1:]) for t in texts]])


def paths(n: int) -> tuple[Path, Path, Path]:
    work = bench_dir() / f"scale-{n}"
    work.mkdir(exist_ok=True)
    return work / "vectors.npy", work / "corpus.jsonl", work / "index"


def load_seeds(paths_: Sequence[Path]) -> np.ndarray:
    return np.concatenate([np.load(p) for p in paths_]).astype(np.float32)


def prepare(n: int, seed: int, noise: float, seeds: Sequence[Path]) -> dict[str, object]:
    vec_path, corpus_path, _ = paths(n)
    real = load_seeds(seeds)
    meta_path = vec_path.with_suffix(".json")
    meta = {"n": n, "seed": seed, "noise": noise, "real": len(real),
            "seed_files": [str(p) for p in seeds]}
    if vec_path.exists() and meta_path.exists() and json.loads(meta_path.read_text()) == meta:
        return meta
    t = time.perf_counter()
    nbrs = knn_real(real, 10)
    syn = synthesize(real, nbrs, n - len(real), seed, noise)
    allv = np.concatenate([real, syn])
    np.save(vec_path, allv)
    held_out = synthesize(real, nbrs, 1000, seed + 1, noise)  # queries, not in the index
    np.save(vec_path.with_name("queries-synthetic.npy"), held_out)
    with corpus_path.open("w", encoding="utf-8") as fh:
        for row in range(n):
            fh.write(f'{{"id":"r{row}","title":"r{row}","content":"","success_score":"accepted"}}\n')
    meta_path.write_text(json.dumps(meta))
    print(f"synthesized {n} vectors in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return meta


def build(n: int, params: HnswParams) -> None:
    """Child process: build the index and print its report as JSON."""
    vec_path, corpus_path, index = paths(n)
    vectors = np.load(vec_path, mmap_mode="r")
    t = time.perf_counter()
    corpus = read_corpus(corpus_path, "playbooks")
    read_s = time.perf_counter() - t
    emb = RowEmbedder(vectors, fingerprint=f"synthetic-{n}")
    report = build_index(corpus, index, emb, params=params, full=True, progress=True)
    print(json.dumps({"read_corpus_s": round(read_s, 1), **report.as_dict()}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=100)
    ap.add_argument("--ef-search", type=int, default=96, help="stored in the manifest")
    ap.add_argument("--efs", default="32,48,64,96,128,192", help="ef values to sweep")
    ap.add_argument("-k", type=int, default=8)
    ap.add_argument("--noise", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--reuse", action="store_true")
    ap.add_argument("--seeds", default=str(bench_dir() / "vectors-53k.npy"),
                    help="comma-separated .npy files of real MiniLM vectors")
    ap.add_argument("--query-sets", default="scifact,alert-runbooks,tldr-pages-en",
                    help="BEIR datasets under ../shared/data/beir whose queries are used")
    ap.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    params = HnswParams(M=args.m, ef_construction=args.ef_construction, ef_search=args.ef_search)
    if args.build_only:
        build(args.n, params)
        return

    seeds = [Path(p) for p in args.seeds.split(",")]
    if not all(p.exists() for p in seeds):
        sys.exit(f"missing {args.seeds}: run scripts/bench/bench_index.py first "
                 "(it writes .bench/vectors-53k.npy)")
    meta = prepare(args.n, args.seed, args.noise, seeds)
    vec_path, _, index = paths(args.n)
    result: dict[str, object] = {
        "machine": machine(), "synthesis": meta, "hnsw": params.model_dump()
    }

    if not (args.reuse and (index / "CURRENT").exists()):
        if index.exists():
            shutil.rmtree(index)
        t = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, __file__, "--build-only", "--n", str(args.n), "--m", str(args.m),
             "--ef-construction", str(args.ef_construction), "--ef-search", str(args.ef_search)],
            check=True, stdout=subprocess.PIPE, text=True,
        )
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        result["build"] = {
            "seconds": report["seconds"],
            "read_corpus_s": report["read_corpus_s"],
            "wall_s": round(time.perf_counter() - t, 1),
            "peak_rss_mb": round(peak_rss_mb(children=True)),
            "records": report["records"],
        }
        print(f"build: {result['build']}", file=sys.stderr)

    loads = {}
    for checks in (True, False):
        t = time.perf_counter()
        snap = open_index(index, checksums=checks)
        loads["with_checksums_s" if checks else "without_checksums_s"] = round(
            time.perf_counter() - t, 2
        )
        if checks:
            snap.close()
    result["load"] = {**loads, "rss_after_load_mb": round(peak_rss_mb())}
    result["disk"] = {"total_bytes": dir_bytes(snap.path)} | {
        name: info.bytes for name, info in snap.manifest.files.items()
    }

    rng = np.random.default_rng(5)
    real = load_seeds(seeds)
    allv = np.asarray(snap.vectors)
    gauss = rng.normal(size=(20_000, DIM)).astype(np.float32)
    gauss /= np.linalg.norm(gauss, axis=1, keepdims=True)
    result["resemblance"] = {
        "real": stats(real, real, rng),
        "synthetic": stats(allv[len(real) :], real, rng),
        "gaussian": stats(gauss, real, rng),
    }
    print(f"resemblance: {result['resemblance']}", file=sys.stderr)

    real_queries: list[str] = []
    for name in args.query_sets.split(","):
        qs = list(read_queries(SHARED / "beir" / name / "queries.jsonl").values())
        real_queries += qs[: 1000 // len(args.query_sets.split(",")) + 1]
    queries = {
        "synthetic held-out": np.load(vec_path.with_name("queries-synthetic.npy")),
        "real queries": load_query_embedder(None).encode(real_queries[:1000]),
    }
    k = args.k
    truth = {}
    for name, q in queries.items():
        rows = np.vstack(
            [np.asarray(snap.exact(q[s : s + 50], k)[0]) for s in range(0, len(q), 50)]
        )
        truth[name] = snap.labels[rows]
    # A private copy of the graph (HnswGraph: hnswlib's knn_query plus label and
    # score conversion), so the sweep's set_ef never touches the graph behind
    # snap.knn, which keeps the manifest's ef_search.
    graph = snap.load_graph()
    sweep = []
    for ef in [int(e) for e in args.efs.split(",")]:
        graph.set_ef(max(ef, k))
        row: dict[str, object] = {"ef": ef}
        for name, q in queries.items():
            got = [graph.knn(q[i : i + 1], k)[0][0] for i in range(len(q))]
            hits = [len(set(a) & set(b)) for a, b in zip(got, truth[name], strict=True)]
            runs = [time_each(lambda i, q=q: graph.knn(q[i : i + 1], k), len(q))
                    for _ in range(3)]
            row[name] = {
                f"recall@{k}": round(float(np.mean(hits)) / k, 4),
                "p50_ms": round(median([pct(r, 50) for r in runs]), 4),
                "p99_ms": round(median([pct(r, 99) for r in runs]), 4),
            }
        sweep.append(row)
        print(json.dumps(row), file=sys.stderr)
    result["ann_sweep"] = sweep

    q = queries["real queries"]
    knn_ms = [time_each(lambda i: snap.knn(q[i : i + 1], k), 1000) for _ in range(3)]
    exact_ms = time_each(lambda i: snap.exact(q[i : i + 1], k), 30)
    records = list(read_corpus(CORPUS_53K, "auto").records.values())
    jac = JaccardRetriever(records)
    texts = real_queries[:20]
    jac_ms = time_each(lambda i: jac.search(texts[i], k), len(texts))
    jac_1m = median(jac_ms) * args.n / len(records)
    result["search_real_queries"] = {
        "ef_search": snap.manifest.hnsw.ef_search,
        "lakevec_knn_p50_ms": round(median([pct(r, 50) for r in knn_ms]), 4),
        "lakevec_knn_p99_ms": round(median([pct(r, 99) for r in knn_ms]), 4),
        "exact_numpy_p50_ms": round(median(exact_ms), 1),
        "exact_numpy_queries": len(exact_ms),
        "jaccard_p50_ms_at_53k": round(median(jac_ms), 1),
        "jaccard_records_scanned": len(records),
        "jaccard_p50_ms_scaled_to_n": round(jac_1m, 1),
    }
    out = save_result(f"bench_1m-{args.n}", result)
    print(json.dumps(result, indent=2))
    print(f"saved {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
