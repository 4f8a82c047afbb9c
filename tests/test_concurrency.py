"""One writer at a time, and readers that never see a half-written snapshot."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from lakevec.cli import main
from lakevec.corpus import read_corpus
from lakevec.embed import HashEmbedder
from lakevec.errors import IndexLockedError
from lakevec.index import build_index, list_snapshots, open_index
from tests.reindex_support import SUPPORT, check_snapshot, churn, playbook, write_corpus
from tests.test_crash import kill, start_builder, wait_for

N = 400


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, dict[str, dict[str, Any]]]:
    records = {r["id"]: r for r in (playbook(i) for i in range(N))}
    return write_corpus(tmp_path / "corpus.jsonl", records), records


def test_second_builder_fails_clearly_while_the_first_holds_the_lock(
    tmp_path: Path, corpus: tuple[Path, dict[str, dict[str, Any]]]
) -> None:
    path, _ = corpus
    index_dir = tmp_path / "index"
    marker = tmp_path / "paused"
    holder = start_builder(path, index_dir, "graph", marker)
    try:
        wait_for(marker, holder)
        args = ["--corpus", str(path), "--index", str(index_dir), "--model", "hash:64",
                "--lock-timeout", "0.3"]
        for cmd in (["build-index", "--quiet"], ["reindex"]):
            result = CliRunner().invoke(main, [*cmd, *args])
            assert result.exit_code == 1, result.output
            assert result.stdout == ""
            msg = result.stderr.strip()
            assert "\n" not in msg
            assert f"another lakevec build is running, pid {holder.pid}" in msg
        with pytest.raises(IndexLockedError, match=f"pid {holder.pid}"):
            build_index(read_corpus(path), index_dir, HashEmbedder(64), lock_timeout=0.0)
    finally:
        kill(holder)


def test_second_builder_waits_for_the_first_and_then_builds(
    tmp_path: Path, corpus: tuple[Path, dict[str, dict[str, Any]]]
) -> None:
    path, records = corpus
    index_dir = tmp_path / "index"
    marker = tmp_path / "paused"
    holder = start_builder(path, index_dir, "graph", marker, hold=1.5)
    wait_for(marker, holder)
    # The waiting builder sees a newer corpus; it must build on the holder's snapshot.
    records.update({r["id"]: r for r in (playbook(i) for i in range(N, N + 10))})
    newer = write_corpus(tmp_path / "newer.jsonl", records)
    t0 = time.monotonic()
    report = build_index(read_corpus(newer), index_dir, HashEmbedder(64), lock_timeout=60)
    waited = time.monotonic() - t0
    out, err = holder.communicate(timeout=60)
    assert holder.returncode == 0, err
    first = json.loads(out.strip().splitlines()[-1])
    assert first["version"] == 1 and first["mode"] == "full"
    assert waited > 0.5
    assert report.version == 2 and report.mode == "incremental"
    assert (report.added, report.unchanged) == (10, N)


def test_searches_during_repeated_rebuilds_never_fail(
    tmp_path: Path, corpus: tuple[Path, dict[str, dict[str, Any]]]
) -> None:
    path, records = corpus
    index_dir = tmp_path / "index"
    emb = HashEmbedder(64)
    build_index(read_corpus(path), index_dir, emb, keep=1)
    long_lived = open_index(index_dir)  # held across every rebuild and GC below

    stop = threading.Event()
    errors: list[str] = []
    searches = [0, 0]
    seen: set[int] = set()

    def reader(slot: int) -> None:
        rng = np.random.default_rng(slot)
        while not stop.is_set():
            try:
                with open_index(index_dir) as snap:
                    check_snapshot(snap, rng)
                    seen.add(snap.manifest.version)
                searches[slot] += 1
            except Exception as exc:  # noqa: BLE001 — every failure is a test failure
                errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(2)]
    proc = subprocess.Popen([sys.executable, str(SUPPORT), "read", str(index_dir),
                             "--seconds", "4"], stdout=subprocess.PIPE, text=True)
    for t in threads:
        t.start()
    rng = np.random.default_rng(3)
    next_id = N
    try:
        for version in range(1, 9):  # keep=1: every build deletes the snapshot before it
            next_id = churn(records, rng, fraction=0.05, next_id=next_id, version=version)
            build_index(read_corpus(write_corpus(path, records)), index_dir, emb, keep=1)
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    out, _ = proc.communicate(timeout=60)
    assert errors == []
    assert min(searches) > 0 and len(seen) > 1
    remote = json.loads(out)
    assert remote["errors"] == [] and remote["searches"] > 0
    assert [p.name for p in list_snapshots(index_dir)] == ["v000009"]

    # The snapshot opened before all of this is long gone from disk, yet still serves.
    with long_lived:
        assert not long_lived.path.exists()
        check_snapshot(long_lived, rng)
        rows, _ = long_lived.exact(np.asarray(long_lived.vectors[:3]), 2)
        assert [r[0] for r in rows] == [0, 1, 2]
        assert len(list(long_lived.iter_records())) == N
