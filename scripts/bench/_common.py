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
