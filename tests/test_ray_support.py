"""Shared helpers of the Ray tests (this module holds no test): a real two-node Ray
cluster on this machine, a ~200-record corpus, and runs of the real CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lakevec.index.snapshot import open_index
from tests.conftest import SAMPLE_CORPUS, SHARED_DATA, write_jsonl

# Sized for CI on two cores: one CPU and a small object store per node.
NODE_CPUS = 1
OBJECT_STORE = 80 * 1024**2
# A killed node refuses the check at once, so it is noticed within ~5 s instead of
# Ray's default ~30 s; a live node on a CPU-starved machine has 10 s to answer (a 1 s
# timeout had live nodes declared dead under load, and builds waited for them forever).
FAST_HEALTH_CHECKS = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 1000,
    "health_check_timeout_ms": 10000,
    "health_check_failure_threshold": 5,
}
# Ray starts its workers at nice 15: beside two CPU-bound processes at nice 0 an
# embedding actor then gets ~3 % of a core and a 200-record build runs past any
# deadline (measured: still importing sentence-transformers after 55 s at 4.6 % CPU).
# CI shares its two cores, so the test cluster's workers run at normal priority.
CLUSTER_CONFIG = {**FAST_HEALTH_CHECKS, "worker_niceness": 0}
SCIFACT = SHARED_DATA / "beir" / "scifact"
# What a subprocess build may take at most on a loaded two-core machine.
BUILD_TIMEOUT = 420
# SciFact abstracts average ~1,500 characters; their first 300 keep the tests'
# embedding time CI-sized (about a fifth) with real text of varied length.
DOC_CHARS = 300


@dataclass
class RayCluster:
    """A started ``ray.cluster_utils.Cluster``: a head and one worker node."""

    cluster: Any
    worker: Any

    @property
    def address(self) -> str:
        address: str = self.cluster.address
        return address

    def kill_worker(self) -> None:
        """SIGKILL the worker node's processes (raylet, workers, actors)."""
        self.cluster.remove_node(self.worker, allow_graceful=False)


@pytest.fixture(scope="module", name="ray_cluster")
def ray_cluster_fixture() -> Iterator[RayCluster]:
    cluster_utils = pytest.importorskip("ray.cluster_utils", reason="needs lakevec[ray]")
    cluster = cluster_utils.Cluster(
        initialize_head=True,
        connect=False,
        head_node_args={
            "num_cpus": NODE_CPUS,
            "object_store_memory": OBJECT_STORE,
            "include_dashboard": False,
            "_system_config": CLUSTER_CONFIG,
        },
    )
    try:
        worker = cluster.add_node(num_cpus=NODE_CPUS, object_store_memory=OBJECT_STORE)
        yield RayCluster(cluster, worker)
    finally:
        cluster.shutdown()


def corpus_docs(start: int, count: int) -> list[dict[str, Any]]:
    """``count`` real documents from position ``start``: SciFact (text cut to
    :data:`DOC_CHARS`) when ../shared is present, else the packaged sample
    playbooks (cycled, with a variant suffix in the title)."""
    if (SCIFACT / "corpus.jsonl").is_file():
        with (SCIFACT / "corpus.jsonl").open(encoding="utf-8") as fh:
            rows = [json.loads(line) for _, line in zip(range(start + count), fh, strict=False)]
        return [{**r, "text": r["text"][:DOC_CHARS]} for r in rows[start:]]
    sample = [json.loads(x) for x in SAMPLE_CORPUS.read_text(encoding="utf-8").splitlines()]
    out = []
    for i in range(start, start + count):
        base = sample[i % len(sample)]
        suffix = f" (variant {i // len(sample)})" if i >= len(sample) else ""
        out.append({**base, "id": f"{base['id']}-{i}", "title": base["title"] + suffix})
    return out


def query_texts(n: int) -> list[str]:
    """``n`` query texts: SciFact's queries, else titles and first lines of the sample."""
    if (SCIFACT / "queries.jsonl").is_file():
        with (SCIFACT / "queries.jsonl").open(encoding="utf-8") as fh:
            return [json.loads(line)["text"] for _, line in zip(range(n), fh, strict=False)]
    sample = [json.loads(x) for x in SAMPLE_CORPUS.read_text(encoding="utf-8").splitlines()]
    texts = [r["title"] for r in sample] + [r["content"].splitlines()[0] for r in sample]
    return texts[:n]


def write_corpus(path: Path, docs: list[dict[str, Any]]) -> Path:
    return write_jsonl(path, docs)


def lakevec(*args: str) -> list[str]:
    return [sys.executable, "-m", "lakevec.cli", *args]


def run_cli(*args: str, timeout: float = BUILD_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(lakevec(*args), capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})


class ProgressWatch:
    """Reads a process's stderr as it is written and signals once the distributed
    progress bar shows a first finished block (a tqdm line ``n/total`` with n > 0)."""

    _DONE = re.compile(r"embedding on ray \(\w+\):[^\r\n]*?\|\s*([0-9]+)/([0-9]+) ")

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        self._stream = proc.stderr
        self.text = ""
        self.first_block = threading.Event()
        self.at_signal = (0, 0)  # (records done, total) when first_block was set
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while chunk := os.read(self._stream.fileno(), 4096):
            self.text += chunk.decode("utf-8", errors="replace")
            if self.first_block.is_set():
                continue
            done = [(int(m.group(1)), int(m.group(2))) for m in self._DONE.finditer(self.text)]
            if done and done[-1][0] > 0:
                self.at_signal = done[-1]
                self.first_block.set()

    def join(self, timeout: float) -> str:
        self._thread.join(timeout)
        return self.text


def vectors_by_id(index_dir: Path) -> dict[str, np.ndarray]:
    with open_index(index_dir) as index:
        vectors = np.asarray(index.vectors)
        return {r.id: vectors[row].copy() for row, r in enumerate(index.iter_records())}


def top_ids(index_dir: Path, queries: np.ndarray, k: int = 8) -> list[list[str]]:
    with open_index(index_dir) as index:
        ids = [r.id for r in index.iter_records()]
        rows, _ = index.knn(queries, k)
    return [[ids[r] for r in hit_rows] for hit_rows in rows]


def snapshot_dirs(index_dir: Path) -> list[str]:
    return sorted(p.name for p in (index_dir / "snapshots").iterdir())


def current_version(index_dir: Path) -> int:
    with open_index(index_dir, graph=False) as index:
        return index.manifest.version
