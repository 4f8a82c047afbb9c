"""The capacity model of docs/SCALE.md: per-record and per-core constants, measured here.

Phases (``--phases``, default all):

* ``machine``: CPU model and flags (AVX2 / AVX-512 / native bf16), cores, RAM.
* ``embed``: records/s of the real MiniLM per thread count and precision
  (``SentenceTransformerEmbedder``, default batch 32, longest-first), on a
  random sample of the 53k corpus (its real length mix). Variants interleave
  round by round; medians. bf16 on a CPU without avx512_bf16/amx_bf16 is
  emulated by torch: measured to show what ``--precision bf16`` costs there.
* ``ray``: the same texts through :class:`RayEmbedder` on a two-node local
  cluster (``ray.cluster_utils``, one CPU per node): total time, the fixed
  start-up (actors importing torch and loading the model) and the steady rate.
* ``index``: for each ``--sizes`` N, a real lakevec index (``build_index``:
  graph, vectors, record store, BM25, manifest) of N real 53k-corpus records
  (cycled, unique ids) with vectors synthesised around real MiniLM seed
  vectors (bench_1m.py's recipe), built in a child process (its own peak
  RSS); then, in another child, ``open_index`` time and RSS growth, and k=8
  query latency at the default ef (200) over 1,000 held-out vectors; and the
  HNSW graph alone with 1 and 2 hnswlib threads.

Every phase records the load average before and after (the machine is shared).

    python scripts/bench/bench_scale.py                       # everything (~20-40 min here)
    python scripts/bench/bench_scale.py --phases index --sizes 10000,30000
    python scripts/bench/bench_scale.py --project-only   # projection from .bench/scale.json

A run of some phases updates those phases in .bench/scale.json and keeps the others.

The projection to 10M and 100M records uses only the measured constants above,
plus two figures measured in earlier sessions (docs/BENCHMARKS.md, named in
``EARLIER``); how each is scaled is written next to it in ``project``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from _common import CORPUS_53K, SCIFACT, bench_dir, dir_bytes, machine, median, pct, save_result
from bench_1m import knn_real, synthesize

from lakevec.corpus import embed_text, read_corpus
from lakevec.embed.base import Vectors
from lakevec.embed.precision import BF16_CPU_FLAGS, cpu_flags
from lakevec.embed.sentence import SentenceTransformerEmbedder
from lakevec.index.build import build_index
from lakevec.index.manifest import HnswParams
from lakevec.index.snapshot import open_index

SHOWN_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16",
               "amx_tile", "amx_int8")


def load() -> float:
    return round(os.getloadavg()[0], 2)


def corpus_path() -> Path:
    return CORPUS_53K if CORPUS_53K.is_file() else SCIFACT / "corpus.jsonl"


def corpus_texts() -> list[str]:
    return [embed_text(r) for r in read_corpus(corpus_path(), "auto").records.values()]


def sample(texts: list[str], n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [texts[i] for i in rng.choice(len(texts), size=min(n, len(texts)), replace=False)]


def phase(name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    before = load()
    t = time.perf_counter()
    print(f"[{name}] start, load average {before}", file=sys.stderr, flush=True)
    result = fn()
    result["load_average"] = {"before": before, "after": load()}
    result["wall_s"] = round(time.perf_counter() - t, 1)
    print(f"[{name}] {json.dumps(result)}", file=sys.stderr, flush=True)
    return result


# ─── machine ─────────────────────────────────────────────────────────────────


def machine_info() -> dict[str, Any]:
    flags = cpu_flags()
    return {
        "machine": machine(),
        "flags": {f: f in flags for f in SHOWN_FLAGS},
        "native_bf16": bool(flags & BF16_CPU_FLAGS),
        "python": sys.version.split()[0],
    }


# ─── embedding ───────────────────────────────────────────────────────────────


def embed_rates(texts: list[str], rounds: int) -> dict[str, Any]:
    import torch

    models = {p: SentenceTransformerEmbedder(precision=p) for p in ("fp32", "bf16")}
    for emb in models.values():
        emb.encode(texts[:8])  # load and warm up
    variants = [("fp32", 1), ("fp32", 2), ("bf16", 1)]
    rates: dict[str, list[float]] = {f"{p}x{t}": [] for p, t in variants}
    cpu_rates: dict[str, list[float]] = {k: [] for k in rates}
    for _ in range(rounds):
        for precision, threads in variants:
            torch.set_num_threads(threads)
            t, c = time.perf_counter(), time.process_time()
            models[precision].encode(texts)
            rates[f"{precision}x{threads}"].append(len(texts) / (time.perf_counter() - t))
            cpu_rates[f"{precision}x{threads}"].append(len(texts) / (time.process_time() - c))
    torch.set_num_threads(os.cpu_count() or 1)
    out = {k: {"records_per_s": round(median(v), 2), "rounds": [round(x, 2) for x in v],
               "records_per_cpu_s": round(median(cpu_rates[k]), 2)}
           for k, v in rates.items()}
    return {
        "texts": len(texts),
        "mean_chars": round(float(np.mean([len(t) for t in texts])), 1),
        "rates": out,
        # Per core: records per CPU-second of the one-thread run. On a shared machine
        # wall-clock rates depend on the other jobs; CPU time much less.
        "fp32_per_core": round(median(cpu_rates["fp32x1"]), 2),
        "fp32_per_core_wall": round(median(rates["fp32x1"]), 2),
        "fp32_2_thread_scaling": round(median(rates["fp32x2"]) / median(rates["fp32x1"]), 2),
        "bf16_vs_fp32_1_thread": round(median(cpu_rates["bf16x1"]) / median(cpu_rates["fp32x1"]),
                                       2),
    }


def ray_rates(texts: list[str], rounds: int) -> dict[str, Any]:
    from ray.cluster_utils import Cluster

    from lakevec.embed.ray_embed import RayEmbedder, RayOptions

    t = time.perf_counter()
    cluster = Cluster(initialize_head=True, connect=False, head_node_args={
        "num_cpus": 1, "object_store_memory": 80 * 1024**2, "include_dashboard": False})
    cluster.add_node(num_cpus=1, object_store_memory=80 * 1024**2)
    start_s = time.perf_counter() - t
    runs = []
    try:
        emb = RayEmbedder(SentenceTransformerEmbedder(precision="fp32"),
                          RayOptions(cluster.address))
        for _ in range(rounds):
            emb.encode(texts)
            run = emb.last_run
            assert run is not None
            runs.append({"seconds": round(run.seconds, 2), "startup_s": round(run.startup_s, 2),
                         "steady_records_per_s": round(run.steady_records_per_s, 2),
                         "nodes": run.nodes, "actors": run.actors, "blocks": run.blocks})
    finally:
        cluster.shutdown()
    return {
        "texts": len(texts),
        "cluster_start_s": round(start_s, 1),
        "runs": runs,
        "median_seconds": median([r["seconds"] for r in runs]),
        "median_startup_s": median([r["startup_s"] for r in runs]),
        "median_steady_records_per_s": median([r["steady_records_per_s"] for r in runs]),
    }


# ─── index ───────────────────────────────────────────────────────────────────


class SequentialEmbedder:
    """Hands out precomputed vectors in call order (a full build embeds in corpus order)."""

    backend = "precomputed"
    precision = "fp32"

    def __init__(self, vectors: Vectors) -> None:
        self.vectors = vectors
        self.spec = "bench:precomputed"
        self.model_id = "all-MiniLM-L6-v2 + synthetic mixtures"
        self.fingerprint = f"synthetic-{len(vectors)}"
        self.dimension = vectors.shape[1]
        self._next = 0

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 32, progress: bool = False
    ) -> Vectors:
        out = np.ascontiguousarray(self.vectors[self._next : self._next + len(texts)])
        self._next += len(texts)
        return out


def work_dir(n: int) -> Path:
    path = bench_dir() / f"scale-{n}"
    path.mkdir(exist_ok=True)
    return path


def seeds(n_texts: int, texts: list[str]) -> np.ndarray:
    path = bench_dir() / f"scale-seeds-{n_texts}.npy"
    if not path.exists():
        emb = SentenceTransformerEmbedder(precision="fp32")
        np.save(path, emb.encode(sample(texts, n_texts, seed=17), progress=True))
    return np.load(path)


def prepare(n: int, real: np.ndarray) -> None:
    """Vectors (real seeds + mixtures), held-out queries and an N-record corpus."""
    work = work_dir(n)
    if (work / "vectors.npy").exists() and (work / "corpus.jsonl").exists():
        return
    nbrs = knn_real(real, 10)
    vectors = np.concatenate([real[: min(n, len(real))],
                              synthesize(real, nbrs, max(0, n - len(real)), 11, 0.1)])
    np.save(work / "vectors.npy", vectors)
    np.save(work / "queries.npy", synthesize(real, nbrs, 1000, 12, 0.1))
    with corpus_path().open(encoding="utf-8") as src:
        docs = [json.loads(line) for line in src]
    with (work / "corpus.jsonl").open("w", encoding="utf-8") as fh:
        for i in range(n):
            d = docs[i % len(docs)]
            fh.write(json.dumps({"_id": f"{d['_id']}#{i // len(docs)}", "title": d["title"],
                                 "text": d["text"]}) + "\n")


def rss_mb(field: str = "VmRSS") -> float:
    """This process's resident set (``VmRSS``) or its peak (``VmHWM``), in MiB.

    Not ``getrusage``: its ``ru_maxrss`` survives ``exec``, so a child would
    report the parent's peak (here: a parent holding the torch models).
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def child_build(n: int) -> dict[str, Any]:
    work = work_dir(n)
    vectors = np.load(work / "vectors.npy")
    t = time.perf_counter()
    corpus = read_corpus(work / "corpus.jsonl", "beir")
    read_s = time.perf_counter() - t
    c = time.process_time()
    report = build_index(corpus, work / "index", SequentialEmbedder(vectors), full=True)
    return {"build_s": round(report.seconds, 2), "read_corpus_s": round(read_s, 2),
            "build_cpu_s": round(time.process_time() - c, 2),
            "peak_rss_mb": round(rss_mb("VmHWM"))}


def child_serve(n: int, runs: int) -> dict[str, Any]:
    work = work_dir(n)
    queries = np.load(work / "queries.npy")
    base = rss_mb()
    t = time.perf_counter()
    snap = open_index(work / "index")
    load_s = time.perf_counter() - t
    grown = rss_mb() - base
    p50s, p99s = [], []
    for _ in range(runs):
        times = []
        for q in queries:
            t = time.perf_counter()
            snap.knn(q[None, :], 8)
            times.append((time.perf_counter() - t) * 1000)
        p50s.append(pct(times, 50))
        p99s.append(pct(times, 99))
    return {"load_s": round(load_s, 3), "rss_growth_mb": round(grown, 1),
            "ef_search": snap.manifest.hnsw.ef_search,
            "knn_p50_ms": round(median(p50s), 3), "knn_p99_ms": round(median(p99s), 3)}


def child_graph(n: int, threads: int) -> dict[str, Any]:
    import hnswlib  # the graph alone, at a chosen thread count (lakevec uses all cores)

    vectors = np.load(work_dir(n) / "vectors.npy")
    params = HnswParams()
    index = hnswlib.Index(space="ip", dim=vectors.shape[1])
    index.init_index(max_elements=n, ef_construction=params.ef_construction, M=params.M,
                     random_seed=100)
    t, c = time.perf_counter(), time.process_time()
    index.add_items(vectors, np.arange(n), num_threads=threads)
    return {"threads": threads, "seconds": round(time.perf_counter() - t, 2),
            "cpu_seconds": round(time.process_time() - c, 2)}


def child(*args: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--child", *args], check=True,
                          capture_output=True, text=True)
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def index_size(n: int, real: np.ndarray, runs: int) -> dict[str, Any]:
    import shutil

    prepare(n, real)
    index = work_dir(n) / "index"
    if index.exists():
        shutil.rmtree(index)
    out: dict[str, Any] = {"records": n, "build": child("build", str(n))}
    with open_index(index, graph=False) as snap:
        files = {name: info.bytes for name, info in snap.manifest.files.items()}
        total = dir_bytes(snap.path)
    out["disk"] = {"total_bytes": total, "bytes_per_record": round(total / n, 1),
                   "files_bytes_per_record": {k: round(v / n, 1) for k, v in files.items()}}
    out["serve"] = child("serve", str(n), str(runs))
    out["serve"]["rss_bytes_per_record"] = round(out["serve"]["rss_growth_mb"] * 2**20 / n, 1)
    out["build"]["peak_rss_bytes_per_record"] = round(
        out["build"]["peak_rss_mb"] * 2**20 / n, 1)
    out["graph_only"] = [child("graph", str(n), str(t)) for t in (1, 2)]
    return out


# Figures measured in earlier sessions (docs/BENCHMARKS.md), used with their provenance.
EARLIER = {
    # bf16 weights / fp32, median of 5 rounds, ~300-char records, on a 2-core EPYC
    # *with* avx512_bf16 (bench_embed.py). This machine has no native bf16.
    "bf16_native_speedup": 2.51,
    # 1,000,000-record index (bench_1m.py, M=32, ef_construction=200): build_index peak
    # RSS, open_index with checksums, k=8 p50 at ef 128 on held-out vectors.
    "1m_build_peak_rss_mb": 8852,
    "1m_load_s": 7.83,
    "1m_knn_p50_ms_ef128": 0.313,
}
TARGETS = (10_000_000, 100_000_000)
MACHINE_CORES = 16  # the size of node the projection counts in
HOT_SWAP = 2  # a replica holds the old and the new snapshot while it swaps


def project(result: dict[str, Any]) -> dict[str, Any]:
    """Scale the measured constants to ``TARGETS`` (see the comments for each rule)."""
    sizes = sorted(result["index"], key=lambda r: r["records"])
    big, prev = sizes[-1], sizes[-2]
    n_big, dn = big["records"], big["records"] - prev["records"]
    per_core = result["embed"]["fp32_per_core"]
    # Memory: the marginal bytes per record between the two largest sizes (fixed
    # process overhead cancels out); for the build peak, the larger of that and the
    # earlier 1M build's peak per record.
    serve_b = (big["serve"]["rss_growth_mb"] - prev["serve"]["rss_growth_mb"]) * 2**20 / dn
    build_b = (big["build"]["peak_rss_mb"] - prev["build"]["peak_rss_mb"]) * 2**20 / dn
    build_b_1m = EARLIER["1m_build_peak_rss_mb"] * 2**20 / 1e6
    disk_b = big["disk"]["bytes_per_record"]
    vec_b = big["disk"]["files_bytes_per_record"]["vectors.npy"]
    # HNSW insertion costs ~log N per element: core-seconds ∝ N log N, from the
    # single-thread graph build at the largest size.
    graph_1t = next(g.get("cpu_seconds", g["seconds"]) for g in big["graph_only"]
                    if g["threads"] == 1)
    # Load (checksums + graph read) is linear in bytes: per record at the largest size,
    # or at the earlier 1M index when that was slower per record (the larger of the two).
    load_per = max(big["serve"]["load_s"] / n_big, EARLIER["1m_load_s"] / 1e6)
    # Query p50: least-squares fit of a + b·ln N over the measured sizes.
    xs = np.log([r["records"] for r in sizes])
    a_b = np.polyfit(xs, [r["serve"]["knn_p50_ms"] for r in sizes], 1)
    out: dict[str, Any] = {
        "constants": {
            "fp32_records_per_s_per_core": per_core,
            "disk_bytes_per_record": disk_b,
            "serve_ram_bytes_per_record": round(serve_b),
            "build_peak_bytes_per_record": round(build_b),
            "build_peak_bytes_per_record_1m_earlier": round(build_b_1m),
            "graph_core_s_per_100k": round(graph_1t * 1e5 / n_big * np.log(1e5)
                                           / np.log(n_big), 1),
            "load_s_per_million": round(load_per * 1e6, 2),
            "knn_p50_fit_ms": {"a": round(float(a_b[1]), 4), "b_per_ln_n": round(float(a_b[0]), 4)},
        },
        "targets": {},
    }
    for n in TARGETS:
        embed_core_h = n / per_core / 3600
        graph_core_h = graph_1t * (n / n_big) * np.log(n) / np.log(n_big) / 3600
        build_peak = n * max(build_b, build_b_1m)
        out["targets"][str(n)] = {
            "embed_core_hours_fp32": round(embed_core_h),
            "embed_core_hours_bf16_native": round(embed_core_h / EARLIER["bf16_native_speedup"]),
            "embed_hours_on_this_2_core_machine_fp32": round(embed_core_h / 2, 1),
            f"embed_{MACHINE_CORES}_core_machines_for_8h_fp32": int(np.ceil(
                embed_core_h / 8 / MACHINE_CORES)),
            f"embed_{MACHINE_CORES}_core_machines_for_8h_bf16": int(np.ceil(
                embed_core_h / EARLIER["bf16_native_speedup"] / 8 / MACHINE_CORES)),
            "graph_core_hours": round(float(graph_core_h), 1),
            f"graph_hours_on_{MACHINE_CORES}_cores": round(float(graph_core_h) / MACHINE_CORES, 1),
            "build_peak_ram_gb": round(build_peak / 1e9),
            "serve_ram_gb": round(n * serve_b / 1e9, 1),
            # + vectors.npy in the page cache (exact and filtered searches read it)
            "serve_ram_gb_with_vectors": round(n * (serve_b + vec_b) / 1e9, 1),
            "serve_ram_gb_during_swap": round(HOT_SWAP * n * (serve_b + vec_b) / 1e9, 1),
            "disk_gb_per_snapshot": round(n * disk_b / 1e9),
            "load_s": round(n * load_per),
            "knn_p50_ms_fit": round(float(a_b[1] + a_b[0] * np.log(n)), 3),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--phases", default="machine,embed,ray,index")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--embed-texts", type=int, default=128)
    ap.add_argument("--seed-texts", type=int, default=1000)
    ap.add_argument("--sizes", default="10000,30000,100000")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--project-only", action="store_true",
                    help="recompute the projection from the saved .bench/scale.json")
    args = ap.parse_args()
    if args.project_only:
        saved = json.loads((bench_dir() / "scale.json").read_text())
        saved["projection"] = project(saved)
        save_result("scale", saved)
        print(json.dumps(saved["projection"], indent=2))
        return
    if args.child:
        kind, n, *rest = args.child
        fns: dict[str, Callable[..., dict[str, Any]]] = {
            "build": child_build, "serve": child_serve, "graph": child_graph}
        print(json.dumps(fns[kind](int(n), *map(int, rest))))
        return

    phases = args.phases.split(",")
    saved = bench_dir() / "scale.json"
    result: dict[str, Any] = json.loads(saved.read_text()) if saved.exists() else {}
    result.setdefault("commands", []).append(" ".join(sys.argv))
    if "machine" in phases:
        result["machine"] = machine_info()
    texts = corpus_texts() if {"embed", "ray", "index"} & set(phases) else []
    embed_sample = sample(texts, args.embed_texts, seed=3)
    if "embed" in phases:
        result["embed"] = phase("embed", lambda: embed_rates(embed_sample, args.rounds))
    if "ray" in phases:
        result["ray"] = phase("ray", lambda: ray_rates(embed_sample * 3, args.rounds))
    if "index" in phases:
        real = seeds(args.seed_texts, texts)
        result["index"] = [phase(f"index {n}", lambda n=n: index_size(n, real, args.rounds))
                           for n in map(int, args.sizes.split(","))]
    if "embed" in result and len(result.get("index", [])) >= 2:
        result["projection"] = project(result)
    path = save_result("scale", result)
    print(json.dumps(result, indent=2))
    print(f"saved {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
