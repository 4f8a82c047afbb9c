"""Embedding throughput of every backend against plain fp32 sentence-transformers.

All variants run in one process, interleaved round by round (the machine is
shared, so only ratios within a round are trustworthy); records/s is the
median over rounds, the ratio the median of per-round ratios. Texts are
``title + " " + text`` records of the 53k corpus (as indexed), ~300 chars.

* ``plain fp32``: ``SentenceTransformer(model).encode(texts, batch_size=32)``,
  sentence-transformers' own length sorting only: the baseline;
* ``st-fp32`` / ``st-bf16``: lakevec's sentence-transformers embedder (global
  length sort) with fp32 / bf16 weights (bf16 only on a CPU with native bf16,
  or with ``--all``: emulated bf16 is several times slower);
* ``onnx-fp32``: ONNX Runtime on the verified fp32 export;
* ``onnx-int8``: ONNX Runtime with int8 weights quantized locally;
* ``auto``: what ``--precision auto`` runs for a large build here, i.e. the
  backend its calibration chose (calibrated first if not cached; printed).

Prints the CPU flags it ran with and the cosine of every variant to plain fp32.

    python scripts/bench/bench_embed.py [--rounds 5] [--texts 256]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np
from _common import CORPUS_53K, cpu_line, load_average, median, save_result

from lakevec.embed.auto import AutoEmbedder
from lakevec.embed.base import Vectors, normalize
from lakevec.embed.models import describe_model
from lakevec.embed.onnx import open_export
from lakevec.embed.onnx_quant import open_int8
from lakevec.embed.precision import BF16_CPU_FLAGS, cpu_flags
from lakevec.embed.sentence import SentenceTransformerEmbedder


def pick(lo: int, hi: int, n: int, seed: int) -> list[str]:
    pool = []
    with CORPUS_53K.open(encoding="utf-8") as fh:
        for line in fh:
            doc = json.loads(line)
            text = f"{doc.get('title') or ''} {doc['text']}".strip()
            if lo <= len(text) <= hi:
                pool.append(text)
    rng = np.random.default_rng(seed)
    return [pool[i] for i in rng.choice(len(pool), size=min(n, len(pool)), replace=False)]


def variants(include_bf16: bool) -> dict[str, Callable[[Sequence[str]], Vectors]]:
    st = SentenceTransformerEmbedder(precision="fp32")
    plain = st.model  # the loaded SentenceTransformer itself

    def plain_fp32(texts: Sequence[str]) -> Vectors:
        return normalize(plain.encode(list(texts), batch_size=32, convert_to_numpy=True))

    out: dict[str, Callable[[Sequence[str]], Vectors]] = {
        "plain fp32": plain_fp32,
        "st-fp32": lambda t: st.encode(t),
    }
    if include_bf16:
        bf16 = SentenceTransformerEmbedder(precision="bf16")
        out["st-bf16"] = lambda t: bf16.encode(t)
    ref = describe_model("default")
    onnx = open_export(ref.spec, ref.model_id, ref.fingerprint)
    if onnx is None:
        sys.exit("no ONNX export: run `lakevec build-index` once (it exports the model)")
    from lakevec.embed.onnx import OnnxEmbedder, export_dir, read_export_info

    info = read_export_info(export_dir(ref.fingerprint), ref.fingerprint)
    assert info is not None
    bulk = OnnxEmbedder(ref.spec, ref.model_id, export_dir(ref.fingerprint), info,
                        throughput=True)
    out["onnx-fp32"] = lambda t: bulk.encode(t)
    int8 = open_int8(ref.spec, ref.model_id, ref.fingerprint)
    if int8 is not None:
        out["onnx-int8"] = lambda t: int8.encode(t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--texts", type=int, default=256, help="number of ~300-char records")
    ap.add_argument("--all", action="store_true", help="also time emulated bf16")
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(cpu_line(), file=sys.stderr)
    texts = pick(250, 350, args.texts, args.seed)
    native_bf16 = bool(cpu_flags() & BF16_CPU_FLAGS)
    runs = variants(native_bf16 or args.all)
    auto = AutoEmbedder(small_max=0)
    auto.encode(texts[:64], progress=True)  # calibrates here if this machine has no cache
    assert auto.calibration is not None
    runs[f"auto ({auto.calibration.choice})"] = lambda t: auto.encode(t)
    ref = runs["plain fp32"](texts)
    cosine = {}
    for name, fn in runs.items():
        cos = (fn(texts) * ref).sum(1)  # also the warm-up
        cosine[name] = {"min": round(float(cos.min()), 5), "mean": round(float(cos.mean()), 5)}
    rates: dict[str, list[float]] = {name: [] for name in runs}
    loads = []
    for rnd in range(args.rounds):
        loads.append(load_average())
        names = list(runs) if rnd % 2 == 0 else list(reversed(runs))
        for name in names:
            start = time.perf_counter()
            runs[name](texts)
            rates[name].append(len(texts) / (time.perf_counter() - start))
        print(f"round {rnd + 1}: load {loads[-1]} "
              + json.dumps({k: round(v[-1], 1) for k, v in rates.items()}), file=sys.stderr)
    base = rates["plain fp32"]
    result = {
        "machine": cpu_line(),
        "rounds": args.rounds,
        "texts": len(texts),
        "mean_chars": round(float(np.mean([len(t) for t in texts]))),
        "load_average_per_round": loads,
        "calibration": auto.calibration.to_json(),
        "results": {
            name: {
                "records_per_s": round(median(r), 1),
                "x_plain_fp32": round(median([a / b for a, b in zip(r, base, strict=True)]), 2),
                "cosine_to_plain_fp32": cosine[name],
            }
            for name, r in rates.items()
        },
    }
    out = save_result("bench_embed", result)
    print(json.dumps(result, indent=2))
    print(f"saved {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
