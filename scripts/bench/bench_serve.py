"""``lakevec serve`` under load: requests/s and p50/p99 of ``POST /vectors/search``.

Starts a real ``lakevec serve`` (uvicorn, 127.0.0.1, one worker) on a copy of
an index and drives it from this process with N client threads (keep-alive
httpx clients). Latency is client-side wall time per request and includes
HTTP, JSON, the query embedding (ONNX query model when exported) and HNSW.
Then a hot swap under load: while the clients keep searching, a new snapshot
is built (a metadata-only change to one record, so no re-embedding) and the
service picks it up; every request must succeed and versions must only grow.

Index: ``--index DIR`` or ``.bench/index-53k`` when it exists (bench_index.py
builds it); otherwise the first ``--limit`` records of corpus-53k.jsonl are
indexed with the real model into ``.bench/serve-index-<limit>``.

    python scripts/bench/bench_serve.py [--index DIR | --limit 5000]
        [--concurrency 1 8] [--requests 400] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from _common import BENCH_DIR, CORPUS_53K, bench_dir, lakevec_cmd, machine, median, pct, save_result

from lakevec.index.layout import current_snapshot_dir
from lakevec.index.manifest import read_manifest
from lakevec.index.update import index_corpus


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def limited_corpus(limit: int) -> Path:
    out = bench_dir() / f"serve-corpus-{limit}.jsonl"
    if not out.exists():
        with CORPUS_53K.open(encoding="utf-8") as src, out.open("w", encoding="utf-8") as dst:
            for i, line in enumerate(src):
                if i >= limit:
                    break
                dst.write(line)
    return out


def prepare_index(args: argparse.Namespace) -> Path:
    if args.index is not None:
        return Path(args.index)
    default = BENCH_DIR / "index-53k"
    if (default / "CURRENT").exists():
        return default
    index = bench_dir() / f"serve-index-{args.limit}"
    if not (index / "CURRENT").exists():
        print(f"building {index} from the first {args.limit} records (real model)...",
              file=sys.stderr)
        index_corpus(limited_corpus(args.limit), index, progress=True)
    return index


def copy_index(index: Path, work: Path) -> Path:
    """A private copy (live snapshot only) so the swap never touches the original."""
    snap = current_snapshot_dir(index)
    dst = work / "index"
    (dst / "snapshots").mkdir(parents=True)
    shutil.copytree(snap, dst / "snapshots" / snap.name)
    (dst / "CURRENT").write_text(snap.name + "\n")
    return dst


def queries_from(index: Path, n: int = 500) -> list[str]:
    """Realistic queries: titles of indexed records, shuffled (seeded)."""
    path = current_snapshot_dir(index) / "records.jsonl"
    titles = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            title = json.loads(line)["title"].strip()
            if title:
                titles.append(title)
    random.Random(7).shuffle(titles)
    return titles[:n]


def start_server(index: Path, root: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    log = (root / "serve.log").open("wb")
    proc = subprocess.Popen(
        [*lakevec_cmd(), "--root", str(root), "serve", "--index", str(index), "--port",
         str(port), "--log-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "LAKEVEC_TOKEN": ""},
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {(root / 'serve.log').read_text()}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not start within 120 s")


def load(
    url: str, queries: list[str], concurrency: int, total: int, k: int = 8,
    stop: threading.Event | None = None,
) -> dict[str, Any]:
    """``total`` searches from ``concurrency`` threads (or until ``stop`` is set)."""
    latencies: list[float] = []
    failures: list[str] = []
    versions: list[list[int]] = [[] for _ in range(concurrency)]
    counter = iter(range(10**9))
    lock = threading.Lock()

    def worker(slot: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while True:
                with lock:
                    i = next(counter)
                if (stop is None and i >= total) or (stop is not None and stop.is_set()):
                    return
                t = time.perf_counter()
                try:
                    resp = client.post("/vectors/search",
                                       json={"query": queries[i % len(queries)], "k": k})
                except httpx.HTTPError as exc:
                    resp = None
                    failures.append(repr(exc))
                ms = (time.perf_counter() - t) * 1000
                with lock:
                    latencies.append(ms)
                if resp is None:
                    continue
                if resp.status_code != 200:
                    failures.append(f"HTTP {resp.status_code}: {resp.text[:200]}")
                    continue
                versions[slot].append(resp.json()["index_version"])

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(s,)) for s in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return {
        "requests": len(latencies),
        "failed": len(failures),
        "failures": failures[:5],
        "rps": round(len(latencies) / wall, 1),
        "p50_ms": round(pct(latencies, 50), 2),
        "p99_ms": round(pct(latencies, 99), 2),
        "versions_monotonic": all(v == sorted(v) for v in versions),
        "versions_seen": sorted({x for v in versions for x in v}),
    }


def hot_swap(url: str, index: Path, queries: list[str], concurrency: int) -> dict[str, Any]:
    """Search continuously while a new snapshot is built and swapped in."""
    manifest = read_manifest(current_snapshot_dir(index))
    corpus = index.parent / "swap-corpus.jsonl"
    # Same records, one success_score changed: a metadata-only incremental build.
    with open(manifest.corpus.path, encoding="utf-8") as src, corpus.open("w") as dst:
        for i, line in enumerate(src):
            if i >= manifest.corpus.lines:
                break
            if i == 0:
                row = json.loads(line)
                if manifest.corpus.format == "beir":
                    row.setdefault("metadata", {})["success_score"] = "partially_accepted"
                else:
                    row["success_score"] = "partially_accepted"
                line = json.dumps(row) + "\n"
            dst.write(line)
    stop = threading.Event()
    result: dict[str, Any] = {}

    def run_load() -> None:
        result.update(load(url, queries, concurrency, 0, stop=stop))

    loader = threading.Thread(target=run_load)
    loader.start()
    time.sleep(1.0)
    t = time.perf_counter()
    report = index_corpus(corpus, index, corpus_format=manifest.corpus.format,
                          query_model=False)
    build_s = time.perf_counter() - t
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if httpx.get(url + "/healthz").json()["index_version"] == report.version:
            break
        time.sleep(0.1)
    time.sleep(1.0)
    stop.set()
    loader.join()
    result["build_s"] = round(build_s, 2)
    result["new_version"] = report.version
    result["mode"] = report.mode
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", default=None, help="index to serve (a copy is used)")
    ap.add_argument("--limit", type=int, default=5000,
                    help="records of corpus-53k to index when no index exists")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--requests", type=int, default=400, help="searches per run")
    ap.add_argument("--runs", type=int, default=3, help="runs per concurrency (median)")
    ap.add_argument("--no-swap", action="store_true", help="skip the hot-swap phase")
    args = ap.parse_args()

    source = prepare_index(args)
    records = read_manifest(current_snapshot_dir(source)).counts.records
    with tempfile.TemporaryDirectory(dir=bench_dir(), prefix="serve-") as tmp:
        work = Path(tmp)
        index = copy_index(source, work)
        queries = queries_from(index)
        proc, url = start_server(index, work)
        try:
            load(url, queries, 1, 30)  # warm-up: page cache, ONNX session, allocator
            out: dict[str, Any] = {
                "machine": machine(), "index": str(source), "records": records,
                "stats_model": httpx.get(url + "/stats").json()["model"], "runs": {},
            }
            for c in args.concurrency:
                runs = [load(url, queries, c, args.requests) for _ in range(args.runs)]
                out["runs"][f"c{c}"] = {
                    "rps": median([r["rps"] for r in runs]),
                    "p50_ms": median([r["p50_ms"] for r in runs]),
                    "p99_ms": median([r["p99_ms"] for r in runs]),
                    "failed": sum(r["failed"] for r in runs),
                    "each": runs,
                }
                print(f"concurrency {c}: {out['runs'][f'c{c}']['rps']} req/s, "
                      f"p50 {out['runs'][f'c{c}']['p50_ms']} ms, "
                      f"p99 {out['runs'][f'c{c}']['p99_ms']} ms", file=sys.stderr)
            if not args.no_swap:
                out["hot_swap"] = hot_swap(url, index, queries, max(args.concurrency))
                print(f"hot swap: {out['hot_swap']}", file=sys.stderr)
            out["server_stats"] = httpx.get(url + "/stats").json()["endpoints"]["/vectors/search"]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    path = save_result(f"bench_serve-{records}", out)
    print(json.dumps({k: v for k, v in out.items() if k != "runs"} | {
        "runs": {c: {k: v for k, v in r.items() if k != "each"} for c, r in out["runs"].items()}
    }, indent=2))
    print(f"saved {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
