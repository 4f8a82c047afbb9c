"""SIGKILL of a build at several points leaves the previous snapshot live and
searchable; the next build succeeds and cleans up what the killed one left.

Every test proves the builder really died where it was meant to: it exits by
SIGKILL, its marker names the phase it paused at, the writer lock still holds
its pid (the unlock in ``finally`` never ran) and the directory shows the
phase's leftovers before the next build cleans them.
"""

from __future__ import annotations

import json
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
from lakevec.embed.hashing import HashEmbedder
from lakevec.index.build import build_index
from lakevec.index.layout import CURRENT_FILE, LOCK_FILE, list_snapshots
from lakevec.index.snapshot import open_index
from tests.reindex_support import SUPPORT, check_snapshot, playbook, write_corpus

N = 300


def start_builder(corpus: Path, index_dir: Path, pause_at: str, marker: Path,
                  hold: float = 600.0, keep: int = 3, path: str = "general"
                  ) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(SUPPORT), "build", str(corpus), str(index_dir),
         "--pause-at", pause_at, "--marker", str(marker), "--hold", str(hold),
         "--keep", str(keep), "--path", path],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def poll(condition: Any, proc: subprocess.Popen[str], what: str, timeout: float = 60.0,
         interval: float = 0.02) -> None:
    """Wait until ``condition()`` holds; fail if ``proc`` exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"process exited ({proc.returncode}) before {what}: {err[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.communicate()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(interval)


def wait_for(marker: Path, proc: subprocess.Popen[str], timeout: float = 60.0) -> None:
    """Wait until the builder wrote its pause marker (it then holds still)."""
    poll(marker.exists, proc, "the builder reached its pause point", timeout)


def kill(proc: subprocess.Popen[str]) -> None:
    """SIGKILL ``proc`` and prove it died of it (not of an exit of its own)."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def lock_holder(index_dir: Path) -> str:
    try:
        return (index_dir / LOCK_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def current(index_dir: Path) -> str:
    return (index_dir / CURRENT_FILE).read_text(encoding="utf-8").strip()


def kill_at_pause(proc: subprocess.Popen[str], marker: Path, point: str,
                  index_dir: Path) -> None:
    """Kill a builder paused at ``point`` and prove it was killed there, lock held."""
    kill(proc)
    assert marker.read_text(encoding="utf-8") == f"{point} {proc.pid}\n"
    assert lock_holder(index_dir) == str(proc.pid), "the builder did not die holding the lock"


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


def assert_leftovers_of(point: str, index_dir: Path) -> None:
    """What a build killed at ``point`` leaves behind (before the next build cleans it)."""
    leftovers = list(index_dir.glob(".tmp-*"))
    snapshots = [p.name for p in list_snapshots(index_dir)]
    assert current(index_dir) == "v000001"
    if point in ("diff", "embed", "graph"):
        # Nothing written yet: the snapshot directory is made once vectors exist.
        assert snapshots == ["v000001"] and not leftovers
    elif point == "write":
        # Graph and vectors saved into the temp dir, the manifest not yet.
        (tmp,) = leftovers
        assert (tmp / "hnsw.bin").is_file() and (tmp / "vectors.npy").is_file()
        assert not (tmp / "manifest.json").exists()
        assert snapshots == ["v000001"]
    elif point == "swap":
        # The complete snapshot, manifest included, never renamed into place.
        (tmp,) = leftovers
        assert (tmp / "manifest.json").is_file()
        assert snapshots == ["v000001"]
    else:  # rename: renamed into snapshots/, but CURRENT never moved to it
        assert not leftovers
        assert snapshots == ["v000001", "v000002"]


def test_the_setup_update_takes_the_small_path(setup: dict[str, Any]) -> None:
    """So the ``small`` kills below interrupt lakevec.index.delta, not the general build."""
    proc = start_builder(setup["corpus"], setup["index"], "none", setup["marker"], path="small")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    report = json.loads(out)
    assert (report["path"], report["added"], report["updated"], report["deleted"]) == (
        "small", 40, 20, 20)


@pytest.mark.parametrize("path", ["general", "small"])
@pytest.mark.parametrize("point", ["diff", "embed", "graph", "write", "swap", "rename"])
def test_kill_before_the_pointer_moves_keeps_the_previous_snapshot(
    setup: dict[str, Any], point: str, path: str
) -> None:
    index_dir: Path = setup["index"]
    proc = start_builder(setup["corpus"], index_dir, point, setup["marker"], path=path)
    wait_for(setup["marker"], proc)
    kill_at_pause(proc, setup["marker"], point, index_dir)
    assert_leftovers_of(point, index_dir)

    rng = np.random.default_rng(0)
    with open_index(index_dir) as snap:  # checksums verified
        assert snap.manifest.version == 1 and len(snap) == N
        check_snapshot(snap, rng)
        assert "pb-00025" in {r.id for r in snap.iter_records()}  # deleted only in v2

    # The lock died with the process: the next build does not wait for it.
    report = build_index(read_corpus(setup["corpus"]), index_dir, HashEmbedder(64),
                         lock_timeout=2.0)
    assert report.version == 2 and report.changed and report.repaired is None
    assert (report.added, report.updated, report.deleted) == (40, 20, 20)
    assert not list(index_dir.glob(".tmp-*"))
    assert [p.name for p in list_snapshots(index_dir)] == ["v000001", "v000002"]
    assert current(index_dir) == "v000002"
    with open_index(index_dir) as snap:
        check_snapshot(snap, rng)
        assert {r.id for r in snap.iter_records()} == set(setup["records"])


@pytest.mark.parametrize("path", ["general", "small"])
def test_kill_after_the_pointer_moved_serves_the_new_snapshot(
    setup: dict[str, Any], path: str
) -> None:
    index_dir: Path = setup["index"]
    proc = start_builder(setup["corpus"], index_dir, "gc", setup["marker"], keep=1, path=path)
    wait_for(setup["marker"], proc)
    kill_at_pause(proc, setup["marker"], "gc", index_dir)
    # Published, but the old snapshot was never collected (keep=1 would have).
    assert current(index_dir) == "v000002"
    assert [p.name for p in list_snapshots(index_dir)] == ["v000001", "v000002"]
    with open_index(index_dir) as snap:
        assert snap.manifest.version == 2
        assert {r.id for r in snap.iter_records()} == set(setup["records"])
        check_snapshot(snap, np.random.default_rng(1))
    report = build_index(read_corpus(setup["corpus"]), index_dir, HashEmbedder(64),
                         lock_timeout=2.0)
    assert not report.changed and report.version == 2


def test_sigkill_of_the_cli_mid_build(setup: dict[str, Any]) -> None:
    """The real command, killed while it holds the writer lock, never breaks the live index."""
    pytest.importorskip("lakevec.cli", reason="the CLI package is not importable yet")
    index_dir: Path = setup["index"]
    # A bigger corpus keeps the locked part of the build well over a second.
    records = setup["records"] | {
        r["id"]: r for r in (playbook(i) for i in range(N + 40, N + 3000))
    }
    write_corpus(setup["corpus"], records)
    proc = subprocess.Popen(
        [sys.executable, "-c", "from lakevec.cli import main; main()",
         "build-index", "--corpus", str(setup["corpus"]), "--index", str(index_dir),
         "--quiet", "--full", "--model", "hash:64"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    # The builder writes its pid into the lock file once it holds the lock.
    poll(lambda: lock_holder(index_dir) == str(proc.pid), proc,
         "the CLI took the writer lock", interval=0.002)
    kill(proc)
    assert lock_holder(index_dir) == str(proc.pid), "the CLI finished before it was killed"
    with open_index(index_dir) as snap:
        assert snap.manifest.version in (1, 2)
        check_snapshot(snap, np.random.default_rng(2))
    report = build_index(read_corpus(setup["corpus"]), index_dir, HashEmbedder(64))
    assert report.version in (2, 3) and report.records == len(records)
    assert not list(index_dir.glob(".tmp-*"))
    with open_index(index_dir) as snap:
        assert {r.id for r in snap.iter_records()} == set(records)
