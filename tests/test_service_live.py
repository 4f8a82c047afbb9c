"""Hot swap of ``lakevec serve``: background pick-up, no mixed versions, logging, shutdown."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lakevec.embed.hashing import HashEmbedder
from lakevec.service.app import create_app, service_state
from lakevec.service.live import SnapshotHolder
from tests.test_service_support import (  # noqa: F401 — fixtures
    corpus_rows,
    reindex,
    root_fixture,
    settings_for,
    wait_for,
)

WATCH_THREAD = "lakevec-index-watch"


def has_version(version: int) -> Callable[[SnapshotHolder], bool]:
    def check(holder: SnapshotHolder) -> bool:
        return holder.live.version == version

    return check


def watch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == WATCH_THREAD]


def test_new_snapshot_is_picked_up_without_any_request(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The background check swaps a new snapshot in on its own, and logs the swap."""
    app = create_app(settings_for(root))
    holder = service_state(app).holder
    caplog.set_level(logging.INFO, logger="lakevec.service")
    with TestClient(app) as client:
        assert holder.live.version == 1
        reindex(root, corpus_rows(40, gen=7))
        assert holder.wait_until(lambda h: h.swaps >= 1, timeout=20), "no background swap"
        assert holder.live.version == 2
        body = client.post("/vectors/search", json={"query": "gateway", "k": 40}).json()
        assert body["index_version"] == 2
        assert {r["title"].split()[0] for r in body["results"]} == {"gen7"}
        stats = client.get("/stats").json()
        assert stats["index"]["swaps"] == 1 and stats["index"]["snapshot"] == "v000002"
    swaps = [r for r in caplog.records if r.name == "lakevec.service" and "→" in r.message]
    assert len(swaps) == 1 and swaps[0].levelno == logging.INFO
    message = swaps[0].getMessage()
    assert "v000001 → v000002" in message and "version 2" in message and " ms" in message


def test_check_thread_stops_on_shutdown(root: Path) -> None:
    before = len(watch_threads())
    app = create_app(settings_for(root))
    holder = service_state(app).holder
    with TestClient(app):
        assert len(watch_threads()) == before + 1
    assert len(watch_threads()) == before  # stopped and joined by the lifespan's end
    # A snapshot published after shutdown is not loaded.
    reindex(root, corpus_rows(10, gen=3))
    assert holder.refresh() == 1 and holder.swaps == 0
    assert holder.live.closed


def test_hot_swap_under_continuous_search(root: Path) -> None:
    """New snapshots land while two clients search nonstop: no error, no mixed version."""
    app = create_app(settings_for(root))
    holder = service_state(app).holder
    errors: list[str] = []
    seen: list[list[int]] = [[], []]
    stop = threading.Event()
    searched = [threading.Event(), threading.Event()]

    def searcher(slot: int, client: TestClient) -> None:
        while not stop.is_set():
            resp = client.post("/vectors/search", json={"query": "audit gateway replay",
                                                        "k": 10})
            if resp.status_code != 200:
                errors.append(f"{resp.status_code} {resp.text[:200]}")
                continue
            body = resp.json()
            seen[slot].append(body["index_version"])
            searched[slot].set()
            gens = {r["title"].split()[0] for r in body["results"]}
            if len(gens) != 1:
                errors.append(f"mixed generations in one response: {gens}")

    with TestClient(app) as client:
        threads = [threading.Thread(target=searcher, args=(i, client)) for i in range(2)]
        for t in threads:
            t.start()
        try:
            for gen in range(1, 5):
                # Each new snapshot lands while both clients are searching.
                for event in searched:
                    assert event.wait(20)
                    event.clear()
                version = reindex(root, corpus_rows(120 + 10 * gen, gen=gen), keep=1)
                assert version == gen + 1
                assert holder.wait_until(has_version(version), timeout=20)
            wait_for(lambda: all(s and s[-1] == 5 for s in seen), 20, "both clients on v5")
        finally:
            stop.set()
            for t in threads:
                t.join(10)
        stats = client.get("/stats").json()
    assert errors == []
    for versions in seen:
        assert versions == sorted(versions), "versions went backwards"
        assert versions[-1] == 5
    assert len(set(seen[0] + seen[1])) >= 2
    assert stats["index"]["version"] == 5 and stats["index"]["records"] == 160
    assert stats["index"]["swaps"] >= 1
    assert stats["endpoints"]["/vectors/search"]["status_5xx"] == 0


def test_gens_match_versions_after_swap(root: Path) -> None:
    """After a swap, every hit comes from the new snapshot (titles carry the generation)."""
    app = create_app(settings_for(root))
    with TestClient(app) as client:
        reindex(root, corpus_rows(50, gen=9))
        assert service_state(app).holder.refresh() == 2
        body = client.post("/vectors/search", json={"query": "gateway", "k": 50}).json()
        assert body["index_version"] == 2
        assert {r["title"].split()[0] for r in body["results"]} == {"gen9"}
        assert len(body["results"]) == 50


def test_in_flight_request_keeps_its_snapshot_open(root: Path) -> None:
    holder = SnapshotHolder(root / "index", HashEmbedder(64))
    with holder.use() as old:
        reindex(root, corpus_rows(30, gen=1), keep=1)
        assert holder.refresh() == 2
        assert old.retired and not old.closed
        assert old.snapshot.record(0).title.startswith("gen0")  # GC'd on disk, still readable
    assert old.closed
    assert holder.live.version == 2 and not holder.live.closed
    holder.close()
    assert holder.live.closed


def break_current(root: Path) -> None:
    broken = root / "index" / "snapshots" / "v000009"
    broken.mkdir()
    (broken / "manifest.json").write_text("{}")
    (root / "index" / "CURRENT").write_text("v000009\n")


def test_broken_new_snapshot_keeps_the_old_one(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A failed load is logged at ERROR and shown in /stats; the old snapshot keeps serving."""
    app = create_app(settings_for(root))
    holder = service_state(app).holder
    caplog.set_level(logging.INFO, logger="lakevec.service")
    with TestClient(app) as client:
        break_current(root)
        assert holder.wait_until(lambda h: h.failures >= 1, timeout=20), "failure not seen"
        resp = client.post("/vectors/search", json={"query": "gateway"})
        assert resp.status_code == 200 and resp.json()["index_version"] == 1
        stats = client.get("/stats").json()
        assert "v000009" in stats["index"]["last_reload_error"]
        assert stats["index"]["reload_failures"] >= 1
        assert stats["index"]["version"] == 1
    errors = [r for r in caplog.records
              if r.name == "lakevec.service" and r.levelno == logging.ERROR]
    assert errors and "v000009" in errors[0].getMessage()


def test_fixed_snapshot_replaces_a_failed_one(root: Path) -> None:
    holder = SnapshotHolder(root / "index", HashEmbedder(64))
    try:
        break_current(root)
        assert holder.refresh() == 1 and holder.failures == 1
        (root / "index" / "CURRENT").write_text("v000001\n")
        reindex(root, corpus_rows(20, gen=2))
        assert holder.refresh() == 2
        assert holder.last_error is None and holder.swaps == 1
    finally:
        holder.close()
