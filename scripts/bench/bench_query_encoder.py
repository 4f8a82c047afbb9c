"""Query encoders compared: the numpy weight pack against ONNX Runtime (same export).

Two measurements, both backends in the same run:

* open: a fresh process that imports lakevec's loader, opens the query model
  and embeds one short query (what a cold ``search``/``replay`` pays for it),
  rounds interleaved, median per backend;
* warm: per-call latency in one process, for one short query, one text at the
  256-token window and a batch of 32 short queries (numpy forced for all of
  them here: ``max_tokens=None``; the default hands calls over 256 tokens to ONNX).

Needs an index build first (it writes the export and the pack). Run:

    python scripts/bench/bench_query_encoder.py --rounds 9
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from _common import cpu_line, load_average, median, save_result

OPEN = (
    "import time; t = time.perf_counter()\n"
    "from lakevec.embed.loader import load_query_embedder\n"
    "e = load_query_embedder(None); e.encode(['rotate the TLS certificate'])\n"
    "print(type(e).__name__, time.perf_counter() - t)\n"
)
SHORT = ["rotate the TLS certificate without downtime"]
LONG = ["Drain the node and check the pod disruption budget, then upgrade. " * 40]
BATCH = [f"query number {i} about disk pressure on node {i}" for i in range(32)]


def open_once(numpy_pack: bool) -> tuple[str, float]:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.pop("LAKEVEC_NO_NUMPY_QUERY", None)
    if not numpy_pack:
        env["LAKEVEC_NO_NUMPY_QUERY"] = "1"
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", OPEN], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    return out[0], time.perf_counter() - start


def warm(rounds: int) -> dict[str, dict[str, float]]:
    from lakevec.embed.models import model_fingerprint, model_id_for, resolve_model_dir
    from lakevec.embed.numpy_bert import NumpyBertEmbedder, read_pack_info
    from lakevec.embed.onnx import export_dir, open_export, read_export_info

    model_dir = resolve_model_dir("default")
    fp = model_fingerprint(model_dir)
    info, pack = read_export_info(export_dir(fp), fp), read_pack_info(export_dir(fp), fp)
    onnx = open_export("default", model_id_for("default", model_dir), fp)
    if info is None or pack is None or onnx is None:
        sys.exit("no export with a numpy pack: run `lakevec build-index` first")
    fast = NumpyBertEmbedder("default", onnx.model_id, export_dir(fp), info, pack,
                             max_tokens=None)
    out: dict[str, dict[str, float]] = {}
    for name, texts in (("one short query", SHORT), ("one 256-token text", LONG),
                        ("32 short queries", BATCH)):
        row = {}
        for label, emb in (("numpy", fast), ("onnx", onnx)):
            emb.encode(texts)
            times = []
            for _ in range(rounds):
                start = time.perf_counter()
                emb.encode(texts)
                times.append(time.perf_counter() - start)
            row[f"{label}_ms"] = round(median(times) * 1000, 2)
        row["numpy_over_onnx"] = round(row["numpy_ms"] / row["onnx_ms"], 3)
        out[name] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args()
    opened: dict[str, list[float]] = {"numpy": [], "onnx": []}
    kinds = {}
    for rnd in range(args.rounds + 1):  # round 0 warms the page cache
        order = [True, False] if rnd % 2 else [False, True]
        for numpy_pack in order:
            kind, took = open_once(numpy_pack)
            key = "numpy" if numpy_pack else "onnx"
            kinds[key] = kind
            if rnd:
                opened[key].append(took)
    ratios = [a / b for a, b in zip(opened["numpy"], opened["onnx"], strict=True)]
    result = {
        "machine": cpu_line(),
        "load_average": load_average(),
        "rounds": args.rounds,
        "open_and_embed_one_query_s": {
            k: {"encoder": kinds[k], "median": round(median(v), 3)} for k, v in opened.items()
        },
        "open_ratio_numpy_over_onnx": round(median(ratios), 3),
        "warm_per_call": warm(args.rounds),
    }
    out = save_result("bench_query_encoder", result)
    print(json.dumps(result, indent=2))
    print(f"saved {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
