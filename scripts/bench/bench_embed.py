"""Embedding throughput: fp32 vs the fast path (bf16 weights), and length-aware batching.

All variants run in one process, interleaved round by round (the machine is
shared, so only ratios within a round are trustworthy); medians are reported.

* precision: records/s of ``SentenceTransformerEmbedder(precision=fp32|bf16)``
  and of the ONNX fp32 query embedder, on ~300-char and ~1,500-char records
  drawn from the 53k corpus (title + " " + text, as indexed);
* batching: records/s of bf16 on a random mixed-length sample with the
  input sorted longest-first globally, sorted only inside each 512-text chunk
  (sentence-transformers' own sort), and unsorted.

    python scripts/bench/bench_embed.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

import numpy as np
from _common import CORPUS_53K, machine, median, save_result

from lakevec.corpus import embed_text, read_corpus
from lakevec.embed.base import Embedder
from lakevec.embed.loader import load_query_embedder
from lakevec.embed.sentence import SentenceTransformerEmbedder


def pick(texts: list[str], lo: int, hi: int, n: int, rng: np.random.Generator) -> list[str]:
    pool = [t for t in texts if lo <= len(t) <= hi]
    return [pool[i] for i in rng.choice(len(pool), size=min(n, len(pool)), replace=False)]


def rate(emb: Embedder, texts: Sequence[str]) -> float:
    t = time.perf_counter()
    emb.encode(texts)
    return len(texts) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--short", type=int, default=512, help="number of ~300-char records")
    ap.add_argument("--long", type=int, default=192, help="number of ~1500-char records")
    ap.add_argument("--mixed", type=int, default=1024, help="mixed-length sample for batching")
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    texts = [embed_text(r) for r in read_corpus(CORPUS_53K, "auto").records.values()]
    sets = {
        "~300 chars": pick(texts, 250, 350, args.short, rng),
        "~1500 chars": pick(texts, 1300, 1700, args.long, rng),
    }
    mixed = [texts[i] for i in rng.choice(len(texts), size=args.mixed, replace=False)]
    variants: dict[str, Embedder] = {
        "fp32": SentenceTransformerEmbedder(precision="fp32"),
        "bf16": SentenceTransformerEmbedder(precision="bf16"),
        "onnx-fp32": load_query_embedder(None),
    }
    for emb in variants.values():
        emb.encode(["warm-up", "load the weights before timing"])
    sorts = {
        mode: SentenceTransformerEmbedder(precision="bf16", length_sort=mode)  # type: ignore[arg-type]
        for mode in ("global", "chunk", "off")
    }
    for emb in sorts.values():
        emb.encode(["warm-up"])

    prec: dict[str, dict[str, list[float]]] = {s: {v: [] for v in variants} for s in sets}
    batching: dict[str, list[float]] = {m: [] for m in sorts}
    for rnd in range(args.rounds):
        for set_name, sample in sets.items():
            names = list(variants) if rnd % 2 == 0 else list(reversed(variants))
            for name in names:
                prec[set_name][name].append(rate(variants[name], sample))
        for mode in (list(sorts) if rnd % 2 == 0 else list(reversed(sorts))):
            batching[mode].append(rate(sorts[mode], mixed))
        print(f"round {rnd + 1}: {json.dumps(prec)} {json.dumps(batching)}", file=sys.stderr)

    def summary(runs: dict[str, list[float]], base: str) -> dict[str, dict[str, float]]:
        return {
            name: {
                "records_per_s": round(median(r), 1),
                f"x_{base}": round(median([a / b for a, b in zip(r, runs[base], strict=True)]), 2),
            }
            for name, r in runs.items()
        }

    result = {
        "machine": machine(),
        "rounds": args.rounds,
        "sizes": {k: len(v) for k, v in sets.items()} | {"mixed": len(mixed)},
        "mean_chars": {k: round(float(np.mean([len(t) for t in v]))) for k, v in sets.items()}
        | {"mixed": round(float(np.mean([len(t) for t in mixed])))},
        "precision": {s: summary(prec[s], "fp32") for s in sets},
        "batching_bf16": summary(batching, "off"),
    }
    out = save_result("bench_embed", result)
    print(json.dumps(result, indent=2))
    print(f"saved {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
