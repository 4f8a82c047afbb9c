"""A 53k index with stand-in vectors, for timing cold starts and small reindexes.

Embedding the 53,517 records with MiniLM takes 10+ minutes on a quiet 2-core
machine and over an hour on a busy one. Cold-start and reindex timings do not
depend on what the stored vectors are, only on their number and size, so this
builds the index with lakevec's own ``index_corpus`` (same files, graph,
BM25, manifest) from 384-d hashed bag-of-words vectors (``HashEmbedder``)
under the real model's identity (spec, fingerprint, dimension). Queries and
reindexed records are then embedded by the real model (ONNX), exactly as on a
real index; only the 53k stored vectors are stand-ins (their manifest says
``precision: "stand-in"``). The corpus is the 53k BEIR set converted to
playbook records (``.bench/root-53k/exports/rag/playbooks.jsonl``), the file
the seed reads too.

    python scripts/bench/standin_index.py [--out .bench/root-53k/index]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from _common import bench_dir, peak_rss_mb, playbook_root

from lakevec.embed.hashing import HashEmbedder
from lakevec.embed.models import describe_model
from lakevec.index.update import index_corpus


class StandIn(HashEmbedder):
    """Hashed bag-of-words vectors (384-d) carrying the default model's identity."""

    precision = "stand-in"

    def __init__(self) -> None:
        super().__init__(384)
        ref = describe_model("default")
        self.spec, self.model_id, self.fingerprint = ref.spec, ref.model_id, ref.fingerprint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    root = bench_dir() / "root-53k"
    ap.add_argument("--out", type=Path, default=root / "index")
    args = ap.parse_args()
    corpus = playbook_root(root) / "exports" / "rag" / "playbooks.jsonl"
    start = time.perf_counter()
    report = index_corpus(corpus, args.out, embedder=StandIn(), progress=True, query_model=False)
    print(json.dumps({**report.as_dict(), "wall_s": round(time.perf_counter() - start, 1),
                      "peak_rss_mb": round(peak_rss_mb())}), file=sys.stdout)


if __name__ == "__main__":
    main()
