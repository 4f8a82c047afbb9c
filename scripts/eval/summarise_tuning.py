"""Summarise tune_hybrid.py output: BM25 tokenisation table and the RRF choice.

Usage: python scripts/eval/summarise_tuning.py results.json [more.json...]

The RRF default is the (rrf_k, depth) with the smallest worst-case regret:
for each set, regret = best nDCG@10 of any setting on that set minus this
setting's; the default minimises the largest regret over the sets.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict


def main(paths: list[str]) -> None:
    data: dict[str, dict[str, object]] = {}
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            data.update(json.load(fh))
    sets = list(data)
    print("nDCG@10 by retriever / tokenisation:")
    for name in data[sets[0]]:
        if name == "sweep":
            continue
        row = "  ".join(f"{data[s][name]['ndcg@10']:.4f}" for s in sets)  # type: ignore[index]
        print(f"  {name:<18} {row}   ({', '.join(sets)})")
    for tok in ("stem+stop", "plain"):
        for dense in ("hnsw", "exact"):
            table: dict[tuple[int, int], dict[str, float]] = defaultdict(dict)
            for s in sets:
                for row in data[s]["sweep"]:  # type: ignore[attr-defined]
                    if row["bm25"] == tok and row["dense"] == dense:
                        table[(row["rrf_k"], row["depth"])][s] = row["ndcg@10"]
            best = {s: max(v[s] for v in table.values()) for s in sets}
            ranked = sorted(table.items(), key=lambda kv: max(best[s] - kv[1][s] for s in sets))
            print(
                f"\nRRF over bm25[{tok}] + {dense}: best per set "
                + ", ".join(f"{s} {best[s]:.4f}" for s in sets)
            )
            print("  rrf_k depth  " + "  ".join(f"{s[:12]:>12}" for s in sets) + "  max-regret")
            for (k, d), vals in ranked[:8]:
                regret = max(best[s] - vals[s] for s in sets)
                print(
                    f"  {k:>5} {d:>5}  "
                    + "  ".join(f"{vals[s]:>12.4f}" for s in sets)
                    + f"  {regret:.4f}"
                )
            for k, d in ((60, 100), (60, 10), (10, 50)):
                vals = table[(k, d)]
                regret = max(best[s] - vals[s] for s in sets)
                print(
                    f"  ref {k:>3} {d:>3}  "
                    + "  ".join(f"{vals[s]:>12.4f}" for s in sets)
                    + f"  {regret:.4f}"
                )


if __name__ == "__main__":
    main(sys.argv[1:])
