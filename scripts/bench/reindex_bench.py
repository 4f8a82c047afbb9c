#!/usr/bin/env python
"""Reindex cost: full build vs no-change reindex vs 1%-changed reindex, same run.

Copies the first ``--limit`` records of the 53k corpus into a temporary
directory, then measures (library calls, one process):

1. a full build (``--full``),
2. a reindex with nothing changed,
3. a reindex after changing the embedded text of ``--change`` (1%) of the records,

and, unless ``--no-cli``, the same no-change / 1%-change reindex as a fresh
``lakevec reindex`` process (what cron pays: interpreter, imports, model load).
Every run gets a fresh embedder object, so model loading is inside each run's
time; the heavy torch import is paid once, by the full build.

    python scripts/bench/reindex_bench.py --limit 5000
    python scripts/bench/reindex_bench.py                 # all 53k, ~10 min at fp32
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import machine  # scripts/bench is on sys.path when run as a script

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CORPUS = REPO / "../shared/data/scale/corpus-53k.jsonl"


class TimedEmbedder:
    """Delegates to an embedder and adds up the seconds spent in ``encode``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.spec = inner.spec
        self.model_id = inner.model_id
        self.fingerprint = inner.fingerprint
        self.backend = inner.backend
        self.precision = inner.precision
        self.seconds = 0.0
        self.texts = 0

    @property
    def dimension(self) -> int:
        return int(self.inner.dimension)

    def encode(self, texts: Sequence[str], **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return self.inner.encode(texts, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0
            self.texts += len(texts)


def copy_corpus(src: Path, dst: Path, limit: int | None) -> int:
    n = 0
    with src.open("rb") as fin, dst.open("wb") as fout:
        for line in fin:
            if not line.strip():
                continue
            fout.write(line)
            n += 1
            if limit is not None and n >= limit:
                break
    return n


def mutate(path: Path, fraction: float, seed: int, tag: str) -> int:
    """Change the embedded text of ``fraction`` of the records; return how many."""
    lines = path.read_text(encoding="utf-8").splitlines()
    rng = random.Random(seed)
    picked = rng.sample(range(len(lines)), max(1, round(len(lines) * fraction)))
    for i in picked:
        obj = json.loads(lines[i])
        key = "text" if "text" in obj and "content" not in obj else "content"
        obj[key] = f"{obj[key]} (revised {tag})"
        lines[i] = json.dumps(obj, ensure_ascii=False)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return len(picked)


def run_build(corpus: Path, index: Path, spec: str, precision: str | None,
              *, full: bool) -> dict[str, Any]:
    from lakevec.corpus import read_corpus
    from lakevec.embed.loader import load_embedder
    from lakevec.index.build import build_index

    phases: dict[str, float] = {}
    last = ["read", time.perf_counter()]

    def on_phase(name: str) -> None:
        now = time.perf_counter()
        phases[str(last[0])] = phases.get(str(last[0]), 0.0) + now - float(last[1])
        last[0], last[1] = name, now

    t0 = time.perf_counter()
    data = read_corpus(corpus)
    kwargs = {"precision": precision} if precision else {}
    emb = TimedEmbedder(load_embedder(spec, **kwargs))
    report = build_index(data, index, emb, full=full, progress=False, on_phase=on_phase)
    seconds = time.perf_counter() - t0
    on_phase("end")
    return {
        "seconds": round(seconds, 3),
        "embed_seconds": round(emb.seconds, 3),
        "embedded": emb.texts,
        "mode": report.mode,
        "version": report.version,
        "added": report.added,
        "updated": report.updated,
        "deleted": report.deleted,
        "unchanged": report.unchanged,
        "graph_rebuilt": report.graph_rebuilt,
        "phases": {k: round(v, 3) for k, v in phases.items()},
    }


def run_cli(corpus: Path, index: Path) -> dict[str, Any]:
    exe = shutil.which("lakevec")
    cmd = [exe] if exe else [sys.executable, "-m", "lakevec.cli"]
    t0 = time.perf_counter()
    proc = subprocess.run([*cmd, "reindex", "--corpus", str(corpus), "--index", str(index)],
                          capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"lakevec reindex failed ({proc.returncode}): {proc.stderr.strip()}")
    summary = json.loads(proc.stdout) if proc.stdout.strip() else None
    return {"seconds": round(seconds, 3), "stdout_lines": len(proc.stdout.splitlines()),
            "stderr": proc.stderr.strip(), "embedded": summary["embedded"] if summary else 0}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--limit", type=int, default=None, help="Use only the first N records.")
    ap.add_argument("--model", default="default", help="Model spec (default, a path, hash:DIM).")
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16"], default=None,
                    help="Embedding precision passed to the embedder (default: its own).")
    ap.add_argument("--change", type=float, default=0.01, help="Share of records to change.")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-cli", action="store_true", help="Skip the `lakevec reindex` runs.")
    ap.add_argument("--work", type=Path, default=None, help="Work dir (default: a temp dir).")
    ap.add_argument("--json", action="store_true", help="Print only the JSON result.")
    args = ap.parse_args(argv)

    corpus_src = args.corpus.resolve()
    if not corpus_src.is_file():
        raise SystemExit(f"corpus not found: {corpus_src}")
    work = args.work or Path(tempfile.mkdtemp(prefix="lakevec-reindex-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    corpus, index = work / "corpus.jsonl", work / "index"
    shutil.rmtree(index, ignore_errors=True)
    try:
        n = copy_corpus(corpus_src, corpus, args.limit)
        full = run_build(corpus, index, args.model, args.precision, full=True)
        noop = run_build(corpus, index, args.model, args.precision, full=False)
        changed = mutate(corpus, args.change, args.seed, "a")
        inc = run_build(corpus, index, args.model, args.precision, full=False)
        cli: dict[str, Any] = {}
        if not args.no_cli:
            cli["noop"] = run_cli(corpus, index)
            mutate(corpus, args.change, args.seed + 1, "b")
            cli["changed"] = run_cli(corpus, index)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    result = {
        "command": "python scripts/bench/reindex_bench.py " + " ".join(argv or sys.argv[1:]),
        "machine": machine(),
        "records": n,
        "model": args.model,
        "changed_records": changed,
        "full": full,
        "noop": noop,
        "changed": inc,
        "cli": cli,
        "ratios": {
            "noop_over_full": round(noop["seconds"] / full["seconds"], 4),
            "changed_over_full": round(inc["seconds"] / full["seconds"], 4),
            "changed_embed_over_full_embed": round(
                inc["embed_seconds"] / full["embed_seconds"], 4
            ) if full["embed_seconds"] else None,
        },
        "changed_overhead_seconds": round(inc["seconds"] - inc["embed_seconds"], 3),
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(json.dumps(result, indent=2))
    r = result["ratios"]
    lines = [
        f"{n} records, model {args.model} — {result['machine']}",
        f"  full build         {full['seconds']:9.2f} s  (embedding {full['embed_seconds']:.2f} s)",
        f"  no-change reindex  {noop['seconds']:9.2f} s  = {r['noop_over_full']:.2%} of full",
        f"  {changed}-record change {inc['seconds']:9.2f} s  = {r['changed_over_full']:.2%} of full"
        f" (embedding {inc['embed_seconds']:.2f} s = "
        f"{r['changed_embed_over_full_embed'] or 0:.2%} of full embedding;"
        f" fixed overhead {result['changed_overhead_seconds']:.2f} s)",
    ]
    print("\n" + "\n".join(lines))
    if cli:
        print(f"  `lakevec reindex` process: no change {cli['noop']['seconds']:.2f} s, "
              f"{changed}-record change {cli['changed']['seconds']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
