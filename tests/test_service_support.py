"""Shared helpers and fixtures of the ``lakevec serve`` tests (this module holds no test).

Test modules import the fixtures they use from here explicitly (``root_fixture`` is the
fixture ``root``, ``make_client_fixture`` the fixture ``make_client``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from lakevec.embed.hashing import HashEmbedder
from lakevec.index.update import index_corpus
from lakevec.service.app import create_app
from lakevec.service.settings import ServerSettings
from tests.conftest import record, write_jsonl

TOKEN = "test-token-0123456789abcdef"
SCORES = ("accepted", "partially_accepted", "rejected")
CATEGORIES = ("gateway", "audit", "ops", "distillation")
WORDS = ("gateway", "circuit", "breaker", "audit", "replay", "index", "schema", "export",
         "latency", "cache", "retry", "budget", "rotate", "token", "backup", "restore")
# The background check of the test apps: fast, so pick-up waits stay short.
POLL = 0.05


def corpus_rows(n: int, gen: int = 0) -> list[dict[str, Any]]:
    """``n`` varied records; ``gen`` is stamped into every title (to detect mixed versions)."""
    rows = []
    for i in range(n):
        words = " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(6))
        rows.append(record(
            i,
            title=f"gen{gen} playbook {i} {WORDS[i % len(WORDS)]}",
            content=f"{words}.\n- Verify {WORDS[(i + 1) % len(WORDS)]} step {i}\n",
            success_score=SCORES[i % 3],
            source_category=CATEGORIES[i % 4],
            tags=[WORDS[i % 5], WORDS[5 + i % 7]],
        ))
    return rows


def reindex(root: Path, rows: list[dict[str, Any]], *, keep: int = 3) -> int:
    """Write ``rows`` as the corpus and index them; returns the new index version."""
    corpus = write_jsonl(root / "exports" / "rag" / "playbooks.jsonl", rows)
    return index_corpus(corpus, root / "index", embedder=HashEmbedder(64), keep=keep).version


@pytest.fixture(name="root")
def root_fixture(tmp_path: Path) -> Path:
    reindex(tmp_path, corpus_rows(120))
    return tmp_path


def settings_for(root: Path, **overrides: Any) -> ServerSettings:
    base: dict[str, Any] = {
        "index_dir": root / "index",
        "evidence_path": root / "data" / "_kb" / "replay_runs.jsonl",
        "model": "hash:64",
        "poll_interval": POLL,
    }
    base.update(overrides)
    return ServerSettings(**base)


@pytest.fixture(name="make_client")
def make_client_fixture(root: Path) -> Iterator[Callable[..., TestClient]]:
    """Started apps (lifespan running) over ``root``; settings overrides as keywords.

    ``http_client``, ``clock`` and ``policy`` go to create_app.
    """
    clients: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        extra = {k: overrides.pop(k) for k in ("http_client", "clock", "policy")
                 if k in overrides}
        app = create_app(settings_for(root, **overrides), **extra)
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


class FixedClock:
    def __init__(self) -> None:
        self.t = 100.0

    def now(self) -> datetime:
        return datetime(2026, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)

    def monotonic(self) -> float:
        self.t += 0.001
        return self.t


def rows_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def wait_for(condition: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(0.02)


# ─── real `lakevec serve` processes ──────────────────────────────────────────


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def serve_command(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "lakevec.cli", "--root", str(root), "serve", *args]


def start_server(
    root: Path, *args: str, token: str | None = None, log_level: str = "warning"
) -> tuple[subprocess.Popen[bytes], str, Path]:
    """Start ``lakevec serve`` on a free port; returns the process, its URL and its log."""
    port = free_port()
    env = {**os.environ, "LAKEVEC_TOKEN": token or "", "LAKEVEC_NO_ONNX": "1"}
    log = root / f"serve-{port}.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            serve_command(root, "--port", str(port), "--log-level", log_level, *args),
            env=env, stdout=sink, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"server died: {log.read_text()}")
        try:
            return httpx.get(url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, 60, "the server to come up")
    except AssertionError:
        proc.kill()
        proc.wait()
        raise
    return proc, url, log


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
