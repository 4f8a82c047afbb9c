"""Shared helpers for the benchmark scripts (paths, timing statistics, machine info)."""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
# Git-ignored cache of expensive artefacts ($LAKEVEC_BENCH_DIR overrides, for trial runs).
BENCH_DIR = Path(os.environ.get("LAKEVEC_BENCH_DIR") or REPO / ".bench")
SHARED = REPO.parent / "shared" / "data"
CORPUS_53K = SHARED / "scale" / "corpus-53k.jsonl"
SCIFACT = SHARED / "beir" / "scifact"


def bench_dir() -> Path:
    BENCH_DIR.mkdir(exist_ok=True)
    return BENCH_DIR


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()}-core {model}, {mem_gb:.0f} GB, {platform.system()}"


#: CPU flags that decide the embedding fast path (printed with every figure).
SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16",
              "amx_int8")


def cpu_line() -> str:
    """The CPU model and which of :data:`SIMD_FLAGS` it has (what fast paths exist)."""
    from lakevec.embed.precision import cpu_flags

    flags = cpu_flags()
    have = [f for f in SIMD_FLAGS if f in flags]
    missing = [f for f in SIMD_FLAGS if f not in flags]
    return f"{machine()}; flags: {' '.join(have) or '-'}; without: {' '.join(missing) or '-'}"


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (the machine is shared)."""
    return [round(x, 2) for x in os.getloadavg()]


def playbook_root(root: Path, source: Path = CORPUS_53K) -> Path:
    """``root``/exports/rag/playbooks.jsonl made from a BEIR corpus (once), for the seed.

    The seed reads playbook records only; each BEIR document becomes the record
    lakevec's own BEIR reader makes of it (``lakevec.corpus._from_beir``), so both
    sides rank the same records.
    """
    target = root / "exports" / "rag" / "playbooks.jsonl"
    if target.is_file():
        return root
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    with source.open(encoding="utf-8") as src, tmp.open("w", encoding="utf-8") as out:
        for line in src:
            doc = json.loads(line)
            meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
            out.write(json.dumps({
                "id": doc["_id"], "title": doc.get("title") or "", "content": doc["text"],
                "tags": meta.get("tags") or [], "source_run_id": "",
                "success_score": meta.get("success_score", "accepted"),
                "source_category": meta.get("source_category", "beir"),
            }, ensure_ascii=False) + "\n")
    tmp.replace(target)
    return root


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def time_each(fn: Callable[[int], Any], n: int) -> list[float]:
    """Wall time in milliseconds of ``fn(i)`` for i in range(n)."""
    out = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t) * 1000)
    return out


def peak_rss_mb(children: bool = False) -> float:
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024  # Linux reports KiB


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run_json(cmd: Sequence[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a command that prints one JSON object on stdout's last line."""
    proc = subprocess.run(
        list(cmd), check=True, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def lakevec_cmd() -> list[str]:
    return [sys.executable, "-m", "lakevec.cli"]


def save_result(name: str, result: dict[str, Any]) -> Path:
    path = bench_dir() / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return path
