"""Replicated serving: one builder, N ``lakevec serve`` readers over one index directory.

Two real ``lakevec serve --port 0`` processes read the same index (as root
through a read-only bind mount of it, as replicas behind a load balancer would
mount a shared volume read-only); a ``lakevec reindex`` process writes a new
snapshot; each replica picks it up on its own, and both then answer every
query identically.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import write_jsonl
from tests.test_service_support import corpus_rows, reindex, stop_server, wait_for

QUERIES = ("gateway circuit breaker", "rotate token budget", "restore the backup",
           "replay audit schema", "latency cache retry", "export index")
LISTENING = re.compile(r"lakevec serve listening on (http://\S+)")
STARTUP = 90.0  # seconds a replica may take to load on a loaded two-core machine


@pytest.fixture
def shared_index(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(builder's root, readers' index path): v1 built; readers get a read-only view."""
    reindex(tmp_path, corpus_rows(80, gen=1))
    index = tmp_path / "index"
    view = tmp_path / "index-ro"
    mounted = False
    if os.geteuid() == 0:
        view.mkdir()
        mounted = subprocess.run(["mount", "--bind", str(index), str(view)],
                                 check=False).returncode == 0
        if mounted:
            subprocess.run(["mount", "-o", "remount,ro,bind", str(view)], check=True)
        else:
            view.rmdir()
    if not mounted:
        view.symlink_to(index)  # same directory; the replicas still never write
    try:
        yield tmp_path, view
    finally:
        if mounted and subprocess.run(["umount", str(view)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(view)], check=True)


def start_replica(root: Path, index: Path, n: int) -> tuple[subprocess.Popen[bytes], str]:
    """``lakevec serve --port 0`` over ``index``; its URL from its log line."""
    log = root / f"replica-{n}.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lakevec.cli", "--root", str(root), "serve",
             "--index", str(index), "--port", "0", "--poll-interval", "0.1",
             "--log-level", "info"],
            stdout=sink, stderr=subprocess.STDOUT,
            env={**os.environ, "LAKEVEC_TOKEN": "", "LAKEVEC_NO_ONNX": "1"},
        )
    found: list[str] = []

    def listening() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"replica {n} died: {log.read_text()}")
        found[:] = LISTENING.findall(log.read_text(encoding="utf-8", errors="replace"))
        return bool(found)

    def healthy() -> bool:
        try:
            return httpx.get(found[0] + "/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(listening, STARTUP, f"replica {n}'s listening line")
        wait_for(healthy, STARTUP, f"replica {n} to load the index")
    except AssertionError:
        proc.kill()
        proc.wait()
        raise
    return proc, found[0]


def answers(url: str) -> list[dict[str, Any]]:
    out = []
    for query in QUERIES:
        for retriever in ("hybrid", "hnsw", "bm25"):
            body = httpx.post(url + "/vectors/search", timeout=30,
                              json={"query": query, "k": 8, "retriever": retriever}).json()
            out.append({k: body[k] for k in ("results", "index_version", "snapshot", "model",
                                             "retriever", "strategy")})
    return out


def version(url: str) -> int:
    stats = httpx.get(url + "/stats", timeout=10).json()
    assert stats["index"]["reload_failures"] == 0, stats["index"]["last_reload_error"]
    value: int = stats["index"]["version"]
    return value


def test_two_replicas_swap_on_their_own_and_answer_identically(
    shared_index: tuple[Path, Path],
) -> None:
    root, view = shared_index
    replicas = [start_replica(root, view, n) for n in (1, 2)]
    try:
        urls = [url for _, url in replicas]
        assert urls[0] != urls[1]
        before = [answers(url) for url in urls]
        assert before[0] == before[1] and {a["index_version"] for a in before[0]} == {1}

        # The builder: a separate `lakevec reindex` process, changed and new records.
        write_jsonl(root / "exports" / "rag" / "playbooks.jsonl", corpus_rows(100, gen=2))
        built = subprocess.run(
            [sys.executable, "-m", "lakevec.cli", "--root", str(root), "reindex"],
            capture_output=True, text=True, timeout=120, check=True,
        )
        assert '"version": 2' in built.stdout, built

        wait_for(lambda: all(version(url) == 2 for url in urls), 60,
                 "both replicas to serve version 2")
        after = [answers(url) for url in urls]
        assert after[0] == after[1]
        assert {a["index_version"] for a in after[0]} == {2}
        assert {a["snapshot"] for a in after[0]} == {"v000002"}
        titles = {hit["title"] for a in after[0] for hit in a["results"]}
        assert titles and all(t.startswith("gen2 ") for t in titles)
        assert after[0] != before[0]
    finally:
        for proc, _ in replicas:
            stop_server(proc)
