"""Small updates without torch: where torch starts paying off, and a 10-record reindex at 53k.

Part 1, the crossover (``SMALL_UPDATE_MAX``): fresh processes embed N records
(random records of the 53k corpus, as a reindex sees them) with the
torch-free ONNX fp32 encoder and with sentence-transformers (import torch,
load, encode; precision as ``auto`` would pick for torch here). Each backend's
cost is fitted as ``start-up + N / rate`` from two sizes, interleaved rounds,
medians; torch pays off past N* = (start_torch - start_onnx) / (1/rate_onnx -
1/rate_torch), and never when it is not faster per record.

Part 2: ``lakevec reindex`` in a fresh process after 10 records of the 53k
corpus changed (different records each round), on a copy of the 53k index
(standin_index.py): wall time, peak RSS, whether torch was imported, what the
manifest recorded.

    python scripts/bench/bench_small_update.py [--rounds 3] [--sizes 10,300]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import (
    CORPUS_53K,
    bench_dir,
    cpu_line,
    load_average,
    median,
    playbook_root,
    save_result,
)

EMBED = """
import json, sys, time
texts = json.load(open(sys.argv[2]))
if sys.argv[1] == "onnx":
    from lakevec.embed.auto import AutoEmbedder
    emb = AutoEmbedder(small_max=10**9)
else:
    from lakevec.embed.precision import resolve_precision
    from lakevec.embed.sentence import SentenceTransformerEmbedder
    emb = SentenceTransformerEmbedder(precision=resolve_precision("auto"))
emb.encode(texts)
print(json.dumps({"torch": "torch" in sys.modules, "backend": emb.backend}))
"""

# Peak RSS is VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over
# fork + exec, so a child of this (large) process would report the parent's peak.
REINDEX = """
import json, re, sys
from lakevec.cli import main
try:
    main(["reindex", "--corpus", sys.argv[1], "--index", sys.argv[2]], standalone_mode=False)
finally:
    hwm = re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read())
    print(json.dumps({"torch": "torch" in sys.modules,
                      "peak_rss_mb": int(hwm.group(1)) / 1024 if hwm else None}),
          file=sys.stderr)
"""


def sample_texts(n: int, seed: int) -> list[str]:
    lines = CORPUS_53K.read_text(encoding="utf-8").splitlines()
    rng = np.random.default_rng(seed)
    docs = [json.loads(lines[i]) for i in rng.choice(len(lines), n, replace=False)]
    return [f"{d.get('title') or ''} {d['text']}".strip() for d in docs]


def timed(argv: list[str]) -> tuple[float, str, str]:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True)
    took = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{argv[:4]} failed: {proc.stderr[-800:]}")
    return took, proc.stdout, proc.stderr


def crossover(sizes: list[int], rounds: int) -> dict[str, object]:
    files = {}
    for n in sizes:
        path = bench_dir() / f"texts-{n}.json"
        path.write_text(json.dumps(sample_texts(n, seed=n)), encoding="utf-8")
        files[n] = path
    times: dict[tuple[str, int], list[float]] = {}
    for rnd in range(rounds):
        jobs = [(b, n) for b in ("onnx", "torch") for n in sizes]
        for backend, n in jobs if rnd % 2 == 0 else reversed(jobs):
            took, out, _ = timed([sys.executable, "-c", EMBED, backend, str(files[n])])
            assert json.loads(out)["torch"] == (backend == "torch"), out
            times.setdefault((backend, n), []).append(took)
        print(f"round {rnd + 1}: load {load_average()} "
              + json.dumps({f"{b}-{n}": round(v[-1], 2) for (b, n), v in times.items()}),
              file=sys.stderr)
    lo, hi = min(sizes), max(sizes)
    fit = {}
    for backend in ("onnx", "torch"):
        t_lo, t_hi = median(times[(backend, lo)]), median(times[(backend, hi)])
        per_record = (t_hi - t_lo) / (hi - lo)
        fit[backend] = {"startup_s": round(t_lo - lo * per_record, 2),
                        "records_per_s": round(1 / per_record, 1) if per_record > 0 else None,
                        **{f"wall_s_{n}": round(median(times[(backend, n)]), 2) for n in sizes}}
    gap = (1 / fit["onnx"]["records_per_s"]) - (1 / fit["torch"]["records_per_s"])  # type: ignore[operator]
    start_gap = fit["torch"]["startup_s"] - fit["onnx"]["startup_s"]  # type: ignore[operator]
    fit["torch_pays_off_past_records"] = round(start_gap / gap) if gap > 0 else "never"
    return fit


def edited_corpus(source: Path, target: Path, rnd: int, count: int = 10) -> None:
    # split("\n"), not splitlines(): texts may hold U+2028 and other separators.
    lines = source.read_text(encoding="utf-8").rstrip("\n").split("\n")
    step = len(lines) // count
    for k in range(count):
        i = (k * step + rnd * 7) % len(lines)
        rec = json.loads(lines[i])
        rec["content"] += f" (edited in round {rnd})"
        lines[i] = json.dumps(rec, ensure_ascii=False)
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")


def reindex(rounds: int, index: Path) -> dict[str, object]:
    root = playbook_root(bench_dir() / "root-53k")
    source = root / "exports" / "rag" / "playbooks.jsonl"
    work = bench_dir() / "small-update"
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(index, work / "index")
    corpus = work / "playbooks.jsonl"
    shutil.copyfile(source, corpus)
    # Warm-up, not timed: a first edit brings the copy to the current snapshot
    # format (an older snapshot takes the general path once) and warms the caches.
    edited_corpus(corpus, corpus, rounds)
    timed([sys.executable, "-c", REINDEX, str(corpus), str(work / "index")])
    runs = []
    for rnd in range(rounds):
        edited_corpus(corpus, corpus, rnd)  # 10 more records changed each round
        took, out, err = timed([sys.executable, "-c", REINDEX, str(corpus), str(work / "index")])
        report = json.loads(out.strip().splitlines()[-1])
        probe = json.loads(err.strip().splitlines()[-1])
        manifest = json.loads(
            next((work / "index" / "snapshots").glob(f"{report['snapshot']}/manifest.json"))
            .read_text())
        runs.append({"wall_s": round(took, 2), "embedded": report["embedded"],
                     "path": report.get("path"),
                     "build_seconds": report["seconds"], **probe,
                     "backend": manifest["build"].get("backend"),
                     "precision": manifest["build"].get("precision"),
                     "encoder_min_cosine": manifest["build"].get("encoder_min_cosine"),
                     "load": load_average()})
        print(json.dumps(runs[-1]), file=sys.stderr)
    return {"runs": runs, "median_wall_s": median([r["wall_s"] for r in runs]),
            "max_peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs)),
            "torch_imported": any(r["torch"] for r in runs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sizes", default="10,300")
    ap.add_argument("--index", type=Path, default=bench_dir() / "root-53k" / "index")
    ap.add_argument("--skip", choices=("crossover", "reindex"), default=None)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result: dict[str, object] = {"machine": cpu_line(), "load_at_start": load_average()}
    if args.skip != "crossover":
        result["crossover"] = crossover([int(s) for s in args.sizes.split(",")], args.rounds)
    if args.skip != "reindex":
        result["reindex_10_records_53k"] = reindex(args.rounds, args.index)
    out = save_result("bench_small_update", result)
    print(json.dumps(result, indent=2))
    print(f"saved {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
