"""``lakevec serve`` over a read-only index: every retriever searches, replay runs, nothing
is written to the index."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from lakevec.corpus import read_corpus
from lakevec.embed.hashing import HashEmbedder
from lakevec.index.build import build_index
from lakevec.service.app import create_app
from lakevec.service.settings import ServerSettings
from lakevec.settings import INDEX_RETRIEVERS
from tests.conftest import tree_state, write_jsonl
from tests.test_service_support import corpus_rows


def held_under(path: Path) -> list[str]:
    """Files under ``path`` this process has open or memory-mapped (Linux /proc)."""
    proc = Path("/proc/self")
    if not proc.exists():
        return []
    prefix = str(path) + os.sep
    held = []
    for fd in (proc / "fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(prefix):
            held.append(target)
    maps = (proc / "maps").read_text(encoding="utf-8", errors="replace")
    held += [line.split()[-1] for line in maps.splitlines() if prefix in line]
    return held


def test_serve_on_a_read_only_index(
    tmp_path: Path, read_only_copy: Callable[[Path], Path]
) -> None:
    corpus = write_jsonl(tmp_path / "playbooks.jsonl", corpus_rows(60))
    build_index(read_corpus(corpus), tmp_path / "index", HashEmbedder(64))
    index = read_only_copy(tmp_path / "index")
    before = tree_state(index)
    evidence = tmp_path / "evidence" / "replay_runs.jsonl"
    settings = ServerSettings(index_dir=index, evidence_path=evidence, poll_interval=0.05)
    app = create_app(settings, embedder=HashEmbedder(64))
    with TestClient(app) as client:
        for kind in INDEX_RETRIEVERS:
            for filters in (None, {"source_category": ["audit"]}):
                body: dict[str, object] = {"query": "gateway audit", "k": 5, "retriever": kind}
                if filters:
                    body["filters"] = filters
                resp = client.post("/vectors/search", json=body)
                assert resp.status_code == 200, (kind, resp.text)
                assert resp.json()["results"], kind
        resp = client.post("/replay", json={"task": "Audit the gateway", "dry_run": True})
        assert resp.status_code == 200, resp.text
        assert resp.json()["context_bundle"]["retrieved_playbooks"]
        assert client.get("/stats").json()["index"]["last_reload_error"] is None
    assert tree_state(index) == before
    # Shut down, the service holds nothing under the index (the mount can go).
    assert held_under(index) == []
    rows = [json.loads(line) for line in evidence.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 1 and rows[0]["lakevec"]["index_version"] == 1
