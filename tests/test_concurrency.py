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

from lakevec.corpus import read_corpus
from lakevec.embed.hashing import HashEmbedder
from lakevec.errors import IndexLockedError
from lakevec.index.build import build_index
from lakevec.index.layout import list_snapshots
from lakevec.index.snapshot import open_index
from tests.reindex_support import SUPPORT, check_snapshot, churn, playbook, write_corpus
from tests.test_crash import kill, poll, start_builder, wait_for

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
        with pytest.raises(IndexLockedError, match=f"another lakevec build is running, "
                           f"pid {holder.pid}"):
            build_index(read_corpus(path), index_dir, HashEmbedder(64), lock_timeout=0.0)
        t0 = time.monotonic()
        with pytest.raises(IndexLockedError, match="--lock-timeout"):
            build_index(read_corpus(path), index_dir, HashEmbedder(64), lock_timeout=0.3)
        assert time.monotonic() - t0 >= 0.3  # it did wait out its timeout
    finally:
        kill(holder)
    assert not (index_dir / "CURRENT").exists()  # nobody built behind the holder's back


def test_cli_second_builder_fails_with_one_line(
    tmp_path: Path, corpus: tuple[Path, dict[str, dict[str, Any]]]
) -> None:
    cli = pytest.importorskip("lakevec.cli", reason="the CLI package is not importable yet")
    path, _ = corpus
    index_dir = tmp_path / "index"
    marker = tmp_path / "paused"
    holder = start_builder(path, index_dir, "graph", marker)
    try:
        wait_for(marker, holder)
        args = ["--corpus", str(path), "--index", str(index_dir), "--model", "hash:64",
                "--lock-timeout", "0.3"]
        for cmd in (["build-index", "--quiet"], ["reindex"]):
            result = CliRunner().invoke(cli.main, [*cmd, *args])
            assert result.exit_code == 1, result.output
            assert result.stdout == ""
            msg = result.stderr.strip()
            assert "\n" not in msg
            assert f"another lakevec build is running, pid {holder.pid}" in msg
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

    def progressed(before: list[int]) -> bool:
        if errors:
            pytest.fail(f"a reader failed: {errors[:3]}")
        # Two searches each: the second began after the build returned, so it saw
        # the snapshot just published.
        return all(now >= then + 2 for now, then in zip(searches, before, strict=True))

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(2)]
    ready, stop_file = tmp_path / "reader-ready", tmp_path / "reader-stop"
    proc = subprocess.Popen([sys.executable, str(SUPPORT), "read", str(index_dir),
                             "--seconds", "300", "--ready", str(ready), "--stop", str(stop_file)],
                            stdout=subprocess.PIPE, text=True)
    for t in threads:
        t.start()
    rng = np.random.default_rng(3)
    next_id = N
    try:
        # The reader process searches before the first rebuild and until the last.
        poll(ready.exists, proc, "the reader process searched once")
        for version in range(1, 9):  # keep=1: every build deletes the snapshot before it
            next_id = churn(records, rng, fraction=0.05, next_id=next_id, version=version)
            build_index(read_corpus(write_corpus(path, records)), index_dir, emb, keep=1)
            # Both reader threads search this snapshot before the next build.
            before = list(searches)
            deadline = time.monotonic() + 60
            while not progressed(before):
                assert time.monotonic() < deadline, "the reader threads stopped searching"
                stop.wait(0.005)
    finally:
        stop.set()
        stop_file.touch()
        for t in threads:
            t.join(timeout=30)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert errors == []
    assert min(searches) >= 16 and seen >= set(range(2, 10))
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
