"""SIGKILL of a build at several points leaves the previous snapshot live and
searchable; the next build succeeds and cleans up what the killed one left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lakevec.corpus import read_corpus
from lakevec.embed import HashEmbedder
from lakevec.index import build_index, list_snapshots, open_index
from tests.reindex_support import SUPPORT, check_snapshot, playbook, write_corpus

N = 300


def start_builder(corpus: Path, index_dir: Path, pause_at: str, marker: Path,
                  hold: float = 600.0, keep: int = 3) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(SUPPORT), "build", str(corpus), str(index_dir),
         "--pause-at", pause_at, "--marker", str(marker), "--hold", str(hold),
         "--keep", str(keep)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_for(marker: Path, proc: subprocess.Popen[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"builder exited early ({proc.returncode}): {err[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("builder never reached its pause point")
        time.sleep(0.02)


def kill(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL


@pytest.fixture
def setup(tmp_path: Path) -> dict[str, Any]:
    corpus = tmp_path / "corpus.jsonl"
    index_dir = tmp_path / "index"
    records = {r["id"]: r for r in (playbook(i) for i in range(N))}
    build_index(read_corpus(write_corpus(corpus, records)), index_dir, HashEmbedder(64))
    # The next corpus: 20 changed, 20 deleted, 40 new (so the graph gets work).
    for i in range(20):
        records[f"pb-{i:05d}"] = playbook(i, version=1)
    for i in range(20, 40):
        del records[f"pb-{i:05d}"]
    records.update({r["id"]: r for r in (playbook(i) for i in range(N, N + 40))})
    write_corpus(corpus, records)
    return {"corpus": corpus, "index": index_dir, "records": records,
            "marker": tmp_path / "paused"}


@pytest.mark.parametrize("point", ["embed", "graph", "write", "swap", "rename"])
def test_kill_before_the_pointer_moves_keeps_the_previous_snapshot(
    setup: dict[str, Any], point: str
) -> None:
    index_dir: Path = setup["index"]
    proc = start_builder(setup["corpus"], index_dir, point, setup["marker"])
    wait_for(setup["marker"], proc)
    kill(proc)

    rng = np.random.default_rng(0)
    with open_index(index_dir) as snap:  # checksums verified
        assert snap.manifest.version == 1 and len(snap) == N
        check_snapshot(snap, rng)
        assert "pb-00025" in {r.id for r in snap.iter_records()}  # deleted only in v2
    leftovers = list(index_dir.glob(".tmp-*"))
    if point in ("graph", "write", "swap"):
        assert leftovers, "the killed build should have left its temp dir"
    if point == "rename":
        assert (index_dir / "snapshots" / "v000002").is_dir()  # renamed, never made live

    # The lock died with the process: the next build does not wait for it.
    report = build_index(read_corpus(setup["corpus"]), index_dir, HashEmbedder(64),
                         lock_timeout=2.0)
    assert report.version == 2 and report.changed
    assert (report.added, report.updated, report.deleted) == (40, 20, 20)
    assert not list(index_dir.glob(".tmp-*"))
    assert [p.name for p in list_snapshots(index_dir)] == ["v000001", "v000002"]
    with open_index(index_dir) as snap:
        check_snapshot(snap, rng)
        assert {r.id for r in snap.iter_records()} == set(setup["records"])


def test_kill_after_the_pointer_moved_serves_the_new_snapshot(setup: dict[str, Any]) -> None:
    index_dir: Path = setup["index"]
    proc = start_builder(setup["corpus"], index_dir, "gc", setup["marker"])
    wait_for(setup["marker"], proc)
    kill(proc)
    with open_index(index_dir) as snap:
        assert snap.manifest.version == 2
        assert {r.id for r in snap.iter_records()} == set(setup["records"])
        check_snapshot(snap, np.random.default_rng(1))
    report = build_index(read_corpus(setup["corpus"]), index_dir, HashEmbedder(64),
                         lock_timeout=2.0)
    assert not report.changed and report.version == 2


def test_sigkill_of_the_cli_mid_build(tmp_path: Path, setup: dict[str, Any]) -> None:
    """The real command, killed at an arbitrary moment, never breaks the live index."""
    index_dir: Path = setup["index"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "lakevec.cli", "build-index", "--corpus", str(setup["corpus"]),
         "--index", str(index_dir), "--quiet", "--full", "--model", "hash:64"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    time.sleep(0.8)
    if proc.poll() is None:
        kill(proc)
    else:
        proc.communicate()
    with open_index(index_dir) as snap:
        assert snap.manifest.version in (1, 2)
        check_snapshot(snap, np.random.default_rng(2))
    report = build_index(read_corpus(setup["corpus"]), index_dir, HashEmbedder(64))
    assert report.version in (2, 3)
    assert not list(index_dir.glob(".tmp-*"))
