"""``lakevec serve``: endpoints, limits, auth, filters, hot swap, shutdown, ``--server`` mode."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from lakevec import server as srv
from lakevec.cli import main
from lakevec.client import ServiceClient, ServiceError
from lakevec.embed import HashEmbedder
from lakevec.errors import UsageProblem
from lakevec.evidence import ReplayRunRow
from lakevec.hybrid import HybridRetriever
from lakevec.index import open_index
from lakevec.indexer import index_corpus
from lakevec.replay import ReplayRequest, replay
from lakevec.retrieve import DenseRetriever
from lakevec.server import ServerSettings, check_bind, create_app, is_loopback
from tests.conftest import record, write_jsonl

TOKEN = "test-token-0123456789abcdef"
SCORES = ("accepted", "partially_accepted", "rejected")
CATEGORIES = ("gateway", "audit", "ops", "distillation")
WORDS = ("gateway", "circuit", "breaker", "audit", "replay", "index", "schema", "export",
         "latency", "cache", "retry", "budget", "rotate", "token", "backup", "restore")


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


@pytest.fixture
def root(tmp_path: Path) -> Path:
    corpus = write_jsonl(tmp_path / "exports" / "rag" / "playbooks.jsonl", corpus_rows(120))
    index_corpus(corpus, tmp_path / "index", embedder=HashEmbedder(64))
    return tmp_path


def settings_for(root: Path, **overrides: Any) -> ServerSettings:
    base: dict[str, Any] = {
        "index_dir": root / "index",
        "evidence_path": root / "data" / "_kb" / "replay_runs.jsonl",
        "model": "hash:64",
        "poll_interval": 0.0,
    }
    base.update(overrides)
    return ServerSettings(**base)


@pytest.fixture
def make_client(root: Path) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        http_client = overrides.pop("http_client", None)
        clock = overrides.pop("clock", None)
        app = create_app(settings_for(root, **overrides), http_client=http_client, clock=clock)
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


# ─── search ──────────────────────────────────────────────────────────────────


def test_search_matches_local_retriever(root: Path, make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    for exact in (False, True):
        resp = client.post("/vectors/search", json={"query": "circuit breaker audit", "k": 5,
                                                    "exact": exact, "include_content": True})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        with open_index(root / "index") as snap:
            local = DenseRetriever(snap, HashEmbedder(64), exact=exact).search(
                "circuit breaker audit", 5)
        assert [r["id"] for r in body["results"]] == [h.record.id for h in local]
        assert [r["score"] for r in body["results"]] == pytest.approx([h.score for h in local],
                                                                      abs=1e-5)
        assert [r["rank"] for r in body["results"]] == [1, 2, 3, 4, 5]
        assert body["results"][0]["content"] == local[0].record.content
        assert body["strategy"] == ("exact" if exact else "hnsw")
        assert body["index_version"] == 1 and body["snapshot"] == "v000001"
        assert body["model"] == "hash:64"


def test_search_k_is_clamped_to_index_size(tmp_path: Path) -> None:
    corpus = write_jsonl(tmp_path / "c.jsonl", corpus_rows(3))
    index_corpus(corpus, tmp_path / "index", embedder=HashEmbedder(64))
    with TestClient(create_app(settings_for(tmp_path))) as client:
        resp = client.post("/vectors/search", json={"query": "gateway", "k": 100})
        assert resp.status_code == 200
        assert len(resp.json()["results"]) == 3


def check_filtered(
    root: Path, body: dict[str, Any], query: str, k: int, keep: Callable[[Any], bool]
) -> None:
    """``body`` holds the exact top ``k`` of the records ``keep`` accepts (ties in any order)."""
    with open_index(root / "index") as snap:
        q = HashEmbedder(64).encode([query])[0]
        records = {snap.record(r).id: snap.record(r) for r in range(len(snap))}
        rows = [r for r in range(len(snap)) if keep(snap.record(r))]
        sims = sorted((float(s) for s in np.asarray(snap.vectors)[rows] @ q), reverse=True)
    assert all(keep(records[r["id"]]) for r in body["results"])
    assert [r["score"] for r in body["results"]] == pytest.approx(sims[:k], abs=1e-5)


FILTER_CASES: list[tuple[dict[str, Any], Callable[[Any], bool]]] = [
    ({"success_score": ["partially_accepted"]}, lambda r: r.success_score == "partially_accepted"),
    ({"source_category": ["audit", "ops"]}, lambda r: r.source_category in ("audit", "ops")),
    ({"tags_any": ["gateway", "nope"]}, lambda r: "gateway" in r.tags),
    ({"success_score": ["accepted"], "source_category": ["gateway"], "tags_any": ["replay"]},
     lambda r: r.success_score == "accepted" and r.source_category == "gateway"
     and "replay" in r.tags),
    ({"success_score": ["no-such-score"]}, lambda r: False),
]


@pytest.mark.parametrize(("filters", "keep"), FILTER_CASES)
def test_search_filters_exact_path(
    root: Path, make_client: Callable[..., TestClient], filters: dict[str, Any],
    keep: Callable[[Any], bool],
) -> None:
    client = make_client()
    resp = client.post("/vectors/search", json={"query": "audit replay index", "k": 7,
                                                "filters": filters})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    # 120 records: every filter is "very selective" (≤ EXACT_MAX_ROWS) → exact over the subset.
    assert body["strategy"] == "exact-filtered"
    check_filtered(root, body, "audit replay index", 7, keep)


def test_search_filters_overfetch_and_fallback(
    root: Path, make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client()
    monkeypatch.setattr(srv, "EXACT_MAX_ROWS", 0)
    monkeypatch.setattr(srv, "EXACT_SELECTIVITY", 0.0)
    filters = {"source_category": ["gateway", "audit", "ops"]}  # 75 % of the rows
    keep = lambda r: r.source_category != "distillation"  # noqa: E731
    body = client.post("/vectors/search", json={"query": "audit replay index", "k": 5,
                                                "filters": filters}).json()
    assert body["strategy"] == "hnsw-overfetch"
    assert all(r["source_category"] != "distillation" for r in body["results"])
    assert len(body["results"]) == 5
    # Over-fetch capped at k with one category allowed: too few survive → exact fallback.
    monkeypatch.setattr(srv, "OVERFETCH_CAP", 5)
    body = client.post("/vectors/search", json={
        "query": "audit replay index", "k": 5, "filters": {"source_category": ["ops"]}}).json()
    assert body["strategy"] == "exact-fallback"
    check_filtered(root, body, "audit replay index", 5, lambda r: r.source_category == "ops")
    assert keep


def test_search_min_score(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    full = client.post("/vectors/search", json={"query": "gateway audit", "k": 20}).json()
    cut = full["results"][4]["score"]
    body = client.post("/vectors/search", json={"query": "gateway audit", "k": 20,
                                                "filters": {"min_score": cut}}).json()
    expected = [r["id"] for r in full["results"] if r["score"] >= cut]
    assert len(expected) >= 5
    assert [r["id"] for r in body["results"]] == expected


# ─── limits and errors ───────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"query": "x", "k": 101}, "k"),
        ({"query": "x", "k": 0}, "k"),
        ({"query": "x" * (srv.MAX_QUERY_CHARS + 1)}, "query"),
        ({"query": "   "}, "query"),
        ({"query": ""}, "query"),
        ({"k": 3}, "query"),
        ({"query": "x", "surprise": 1}, "surprise"),
        ({"query": "x", "filters": {"success_score": []}}, "success_score"),
        ({"query": "x", "filters": {"min_score": 2}}, "min_score"),
        ({"query": "x", "filters": {"tags_any": ["t"] * 33}}, "tags_any"),
    ],
)
def test_search_validation_errors(
    make_client: Callable[..., TestClient], body: dict[str, Any], where: str
) -> None:
    resp = make_client().post("/vectors/search", json=body)
    assert resp.status_code == 422
    err = resp.json()["error"]
    assert err["status"] == 422 and err["code"] == "invalid_request"
    assert where in err["message"]
    assert all(set(d) == {"loc", "msg", "type"} for d in err["details"])  # no echoed input


def test_malformed_and_hostile_bodies(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    json_ct = {"content-type": "application/json"}
    resp = client.post("/vectors/search", content=b"{not json", headers=json_ct)
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "invalid_request"
    # A lone surrogate is valid JSON but not text; it must be a 4xx, not a crash.
    resp = client.post("/vectors/search", content=b'{"query": "a\\ud800"}', headers=json_ct)
    assert resp.status_code == 422
    resp = client.post("/vectors/search", content=b'{"query": "x", "k": NaN}', headers=json_ct)
    assert resp.status_code == 422
    resp = client.post("/vectors/search", content=b'["query"]', headers=json_ct)
    assert resp.status_code == 422
    resp = client.post("/vectors/search", content=b'{"query": "x"}',
                       headers={"content-type": "text/plain"})
    assert resp.status_code == 415
    assert resp.json()["error"]["code"] == "unsupported_media_type"
    assert client.get("/vectors/search").status_code == 405
    resp = client.get("/nope")
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"


def test_body_size_limit(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    big = json.dumps({"query": "x" * 70_000}).encode()
    resp = client.post("/vectors/search", content=big,
                       headers={"content-type": "application/json"})
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "body_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the streamed count must catch it
        yield b'{"query": "'
        for _ in range(20):
            yield b"y" * 4096
        yield b'"}'

    resp = client.post("/vectors/search", content=chunks(),
                       headers={"content-type": "application/json"})
    assert resp.status_code == 413
    resp = client.post("/replay", content=json.dumps({"task": "t" * 70_000}).encode(),
                       headers={"content-type": "application/json"})
    assert resp.status_code == 413
    # Just under the cap is fine (then the query length limit applies: 422, not 413).
    resp = client.post("/vectors/search", json={"query": "z" * 60_000})
    assert resp.status_code == 422


# ─── auth and binding ────────────────────────────────────────────────────────


def test_auth_required_when_token_set(make_client: Callable[..., TestClient]) -> None:
    client = make_client(token=TOKEN)
    search = {"query": "gateway", "k": 2}
    for headers in ({}, {"authorization": "Bearer wrong-token-xxxxxxxxxxxx"},
                    {"authorization": f"Basic {TOKEN}"}, {"authorization": TOKEN}):
        resp = client.post("/vectors/search", json=search, headers=headers)
        assert resp.status_code == 401, headers
        assert resp.headers["www-authenticate"] == "Bearer"
        assert resp.json()["error"]["code"] == "unauthorized"
        assert client.get("/stats", headers=headers).status_code == 401
        assert client.post("/replay", json={"task": "x", "dry_run": True},
                           headers=headers).status_code == 401
        assert client.get("/nope", headers=headers).status_code == 401
    ok = {"authorization": f"Bearer {TOKEN}"}
    assert client.post("/vectors/search", json=search, headers=ok).status_code == 200
    assert client.get("/stats", headers=ok).status_code == 200
    assert client.post("/replay", json={"task": "x", "dry_run": True},
                       headers=ok).status_code == 200
    # Liveness and the API description carry no data and stay open.
    assert client.get("/healthz").status_code == 200
    spec = client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    # An unauthenticated oversized body is refused before it is read.
    resp = client.post("/vectors/search", content=b"x" * 100_000,
                       headers={"content-type": "application/json"})
    assert resp.status_code == 401


def test_no_auth_without_token(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    assert client.post("/vectors/search", json={"query": "gateway"}).status_code == 200
    assert client.get("/stats").status_code == 200
    assert "securitySchemes" not in client.get("/openapi.json").json().get("components", {})


def test_bind_rules() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert is_loopback("127.0.0.2") and is_loopback("[::1]")
    assert not is_loopback("0.0.0.0") and not is_loopback("::")
    assert not is_loopback("192.168.1.10") and not is_loopback("example.com")
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", TOKEN)
    with pytest.raises(UsageProblem, match="non-loopback"):
        check_bind("0.0.0.0", None)
    with pytest.raises(UsageProblem, match="at least 16"):
        check_bind("127.0.0.1", "short")


def test_bad_gateway_url_fails_at_startup(root: Path) -> None:
    with pytest.raises(UsageProblem, match="gateway URL"):
        create_app(settings_for(root, gateway_url="ftp://gateway"))


def test_serve_cli_refuses_exposed_host_and_missing_index(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["--root", str(tmp_path), "serve", "--host", "0.0.0.0"],
                        env={"LAKEVEC_TOKEN": ""})
    assert res.exit_code == 2
    assert "non-loopback" in res.output
    res = runner.invoke(main, ["--root", str(tmp_path), "serve", "--port", "0"],
                        env={"LAKEVEC_TOKEN": ""})
    assert res.exit_code == 1
    assert "no index" in res.output


# ─── replay, healthz, stats ──────────────────────────────────────────────────


def test_replay_endpoint_is_the_cli_replay(
    root: Path, make_client: Callable[..., TestClient]
) -> None:
    client = make_client(clock=FixedClock())
    task = "Audit the gateway circuit breaker after a replay"
    resp = client.post("/replay", json={"task": task, "dry_run": True})
    assert resp.status_code == 200, resp.text
    served = resp.json()
    with open_index(root / "index") as snap:
        local = replay(
            ReplayRequest(task=task, dry_run=True),
            retriever=HybridRetriever(snap, HashEmbedder(64)), gateway=None,
            evidence_path=None, clock=FixedClock(),
        )
    assert served == local.model_dump(mode="json")
    logged = rows_of(root / "data" / "_kb" / "replay_runs.jsonl")
    assert len(logged) == 1
    ReplayRunRow.model_validate(logged[0])
    assert logged[0]["schema"] == "replay_run.v1"
    assert logged[0]["recorded_run_id"] == served["recorded_run_id"]
    assert logged[0]["lakevec"]["index_version"] == 1
    # exact retriever and no-retrieval are served too
    body = client.post("/replay", json={"task": task, "dry_run": True,
                                        "retriever": "exact"}).json()
    assert body["lakevec"]["retriever"] == "exact"
    body = client.post("/replay", json={"task": task, "dry_run": True,
                                        "no_retrieval": True}).json()
    assert body["context_bundle"] is None
    assert len(rows_of(root / "data" / "_kb" / "replay_runs.jsonl")) == 3
    for bad in ({"task": "  "}, {"task": "x", "retriever": "jaccard"}, {"dry_run": True}):
        assert client.post("/replay", json=bad).status_code == 422


def test_replay_endpoint_calls_the_gateway_and_escalates(
    root: Path, make_client: Callable[..., TestClient]
) -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        model = json.loads(request.content)["model"]
        calls.append(model)
        text = "maybe" if model == "small" else (
            "Verify the gateway breaker state, check the audit log and confirm the replay "
            "index is consistent before approving the change.")
        return httpx.Response(200, json={"choices": [{"message": {"content": text}}]})

    http_client = httpx.Client(transport=httpx.MockTransport(handler))
    client = make_client(http_client=http_client, gateway_url="http://gw.invalid",
                         local_model="small", escalation_model="big")
    body = client.post("/replay", json={"task": "Audit the gateway breaker",
                                        "allow_escalation": True}).json()
    assert calls == ["small", "big"]
    assert body["escalation_path"] == ["small", "big"]
    assert body["model_used"] == "big"
    assert body["validation_result"]["reasons"][0] == "recovered via escalation to big"
    http_client.close()


def test_replay_unwritable_evidence_is_a_clear_500(
    root: Path, make_client: Callable[..., TestClient]
) -> None:
    blocker = root / "blocker"
    blocker.write_text("a file, not a directory")
    client = make_client(evidence_path=blocker / "replay_runs.jsonl")
    resp = client.post("/replay", json={"task": "x", "dry_run": True})
    assert resp.status_code == 500
    assert resp.json()["error"]["code"] == "evidence_log_unwritable"


def test_healthz_and_stats(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    assert client.get("/healthz").json() == {"status": "ok", "index_version": 1}
    for _ in range(5):
        client.post("/vectors/search", json={"query": "gateway"})
    client.post("/vectors/search", json={"query": "gateway", "k": 1000})
    client.get("/nope")
    stats = client.get("/stats").json()
    assert stats["index"]["version"] == 1 and stats["index"]["records"] == 120
    assert stats["index"]["snapshot"] == "v000001" and stats["index"]["swaps"] == 0
    assert stats["model"]["model_id"] == "hash:64" and stats["model"]["dimension"] == 64
    assert stats["uptime_s"] >= 0
    search = stats["endpoints"]["/vectors/search"]
    assert search["requests"] == 6 and search["status_2xx"] == 5 and search["status_4xx"] == 1
    assert search["p50_ms"] > 0 and search["p99_ms"] >= search["p50_ms"]
    assert stats["endpoints"]["other"]["status_4xx"] == 1
    assert stats["endpoints"]["/healthz"]["requests"] == 1
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths) == {"/vectors/search", "/replay", "/healthz", "/stats"}
    assert client.get("/docs").status_code == 200


# ─── hot swap ────────────────────────────────────────────────────────────────


def test_hot_swap_under_continuous_search(root: Path) -> None:
    """New snapshots land while two clients search nonstop: no error, no mixed version."""
    corpus = root / "exports" / "rag" / "playbooks.jsonl"
    gen_of_version = {1: 0}
    app = create_app(settings_for(root))
    errors: list[str] = []
    seen: list[list[int]] = [[], []]
    stop = threading.Event()

    def searcher(slot: int, client: TestClient) -> None:
        while not stop.is_set():
            resp = client.post("/vectors/search", json={"query": "audit gateway replay",
                                                        "k": 10})
            if resp.status_code != 200:
                errors.append(f"{resp.status_code} {resp.text[:200]}")
                continue
            body = resp.json()
            seen[slot].append(body["index_version"])
            gens = {r["title"].split()[0] for r in body["results"]}
            if len(gens) != 1:
                errors.append(f"mixed generations in one response: {gens}")

    with TestClient(app) as client:
        threads = [threading.Thread(target=searcher, args=(i, client)) for i in range(2)]
        for t in threads:
            t.start()
        try:
            for gen in range(1, 5):
                time.sleep(0.15)
                write_jsonl(corpus, corpus_rows(120 + 10 * gen, gen=gen))
                report = index_corpus(corpus, root / "index", embedder=HashEmbedder(64), keep=1)
                gen_of_version[report.version] = gen
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and (not seen[0] or seen[0][-1] != 5):
                time.sleep(0.05)
            time.sleep(0.1)
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
        corpus = write_jsonl(root / "exports" / "rag" / "playbooks.jsonl", corpus_rows(50, gen=9))
        index_corpus(corpus, root / "index", embedder=HashEmbedder(64))
        app.state.lakevec.holder.refresh()
        body = client.post("/vectors/search", json={"query": "gateway", "k": 50}).json()
        assert body["index_version"] == 2
        assert {r["title"].split()[0] for r in body["results"]} == {"gen9"}
        assert len(body["results"]) == 50


def test_in_flight_request_keeps_its_snapshot_open(root: Path) -> None:
    app = create_app(settings_for(root))
    holder = app.state.lakevec.holder
    with holder.use() as old:
        corpus = write_jsonl(root / "exports" / "rag" / "playbooks.jsonl", corpus_rows(30, gen=1))
        index_corpus(corpus, root / "index", embedder=HashEmbedder(64), keep=1)
        assert holder.refresh() == 2
        assert old.retired and not old.closed
        assert old.snapshot.record(0).title.startswith("gen0")  # GC'd on disk, still readable
    assert old.closed
    assert holder.live.version == 2 and not holder.live.closed
    holder.close()


def test_broken_new_snapshot_keeps_the_old_one(root: Path) -> None:
    app = create_app(settings_for(root))
    with TestClient(app) as client:
        broken = root / "index" / "snapshots" / "v000009"
        broken.mkdir()
        (broken / "manifest.json").write_text("{}")
        (root / "index" / "CURRENT").write_text("v000009\n")
        app.state.lakevec.holder.refresh()
        resp = client.post("/vectors/search", json={"query": "gateway"})
        assert resp.status_code == 200 and resp.json()["index_version"] == 1
        stats = client.get("/stats").json()
        assert "v000009" in stats["index"]["last_reload_error"]
        assert stats["index"]["version"] == 1


# ─── real uvicorn processes ──────────────────────────────────────────────────


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_server(
    root: Path, *args: str, token: str | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "LAKEVEC_TOKEN": token or "", "LAKEVEC_NO_ONNX": "1"}
    log = root / f"serve-{port}.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lakevec.cli", "--root", str(root), "serve", "--port",
             str(port), "--log-level", "warning", *args],
            env=env, stdout=sink, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server died: {log.read_text()}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("server did not come up")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class _SlowChat(BaseHTTPRequestHandler):
    delay = 1.0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        time.sleep(self.delay)
        body = json.dumps({"choices": [{"message": {"content": "slow answer"}}]}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


def test_graceful_shutdown_loses_no_evidence_row(root: Path) -> None:
    chat = ThreadingHTTPServer(("127.0.0.1", 0), _SlowChat)
    threading.Thread(target=chat.serve_forever, daemon=True).start()
    gateway = f"http://127.0.0.1:{chat.server_address[1]}"
    proc, url = start_server(root, "--gateway", gateway)
    evidence = root / "data" / "_kb" / "replay_runs.jsonl"
    ok_ids: list[str] = []
    failures: list[str] = []
    slow: dict[str, Any] = {}
    stop = threading.Event()

    def dry_runs() -> None:
        with httpx.Client(base_url=url, timeout=20) as c:
            while not stop.is_set():
                try:
                    resp = c.post("/replay", json={"task": "Audit the gateway", "dry_run": True})
                except httpx.HTTPError:
                    return  # the listener closed: later requests are refused, never half-run
                if resp.status_code == 200:
                    ok_ids.append(resp.json()["recorded_run_id"])
                else:
                    failures.append(resp.text)

    def slow_run() -> None:  # in flight for ~1 s, across the SIGTERM
        with httpx.Client(base_url=url, timeout=20) as c:
            resp = c.post("/replay", json={"task": "A slow replay", "local_only": True})
            slow["status"] = resp.status_code
            slow["id"] = resp.json()["recorded_run_id"]

    try:
        workers = [threading.Thread(target=dry_runs) for _ in range(3)]
        workers.append(threading.Thread(target=slow_run))
        for t in workers:
            t.start()
        time.sleep(0.4)
        proc.send_signal(signal.SIGTERM)
        # uvicorn drains, then re-raises the signal so the parent sees why it stopped.
        assert proc.wait(20) in (0, -signal.SIGTERM)
        stop.set()
        for t in workers:
            t.join(20)
    finally:
        stop.set()
        stop_server(proc)
        chat.shutdown()
        chat.server_close()
    assert failures == []
    assert slow.get("status") == 200, "the in-flight replay was cut off"
    logged = evidence.read_text(encoding="utf-8")
    assert logged.endswith("\n")
    rows = [json.loads(line) for line in logged.splitlines()]
    for row in rows:
        ReplayRunRow.model_validate(row)
    logged_ids = [r["recorded_run_id"] for r in rows]
    assert slow["id"] in logged_ids
    assert len(ok_ids) >= 1
    # Every answered request has its row (ids can repeat within one millisecond).
    assert len(rows) >= len(ok_ids) + 1
    assert set(ok_ids) <= set(logged_ids)


@pytest.fixture
def served(root: Path) -> Iterator[tuple[Path, str]]:
    proc, url = start_server(root, token=TOKEN)
    try:
        yield root, url
    finally:
        stop_server(proc)


def test_cli_server_mode(served: tuple[Path, str]) -> None:
    root, url = served
    runner = CliRunner()
    env = {"LAKEVEC_TOKEN": TOKEN}
    local = runner.invoke(main, ["--root", str(root), "search", "gateway audit", "-k", "4",
                                 "--json", "--model", "hash:64"])
    remote = runner.invoke(main, ["--root", str(root), "search", "gateway audit", "-k", "4",
                                  "--json", "--server", url], env=env)
    assert local.exit_code == 0, local.output
    assert remote.exit_code == 0, remote.output
    assert [r["id"] for r in json.loads(remote.output)] == [
        r["id"] for r in json.loads(local.output)]
    text = runner.invoke(main, ["search", "gateway", "--server", url], env=env)
    assert text.exit_code == 0 and "gen0 playbook" in text.output

    res = runner.invoke(main, ["--root", str(root), "replay", "--task", "Audit the gateway",
                               "--dry-run", "--json", "--server", url], env=env)
    assert res.exit_code == 0, res.output
    result = json.loads(res.output)
    rows = rows_of(root / "data" / "_kb" / "replay_runs.jsonl")
    assert [r["recorded_run_id"] for r in rows] == [result["recorded_run_id"]]
    res = runner.invoke(main, ["replay", "--task", "Audit", "--dry-run", "--server", url],
                        env=env)
    assert res.exit_code == 0 and "[replay] run_id=" in res.output

    # errors: wrong token → exit 1; bad input → exit 2; local-only options → exit 2
    res = runner.invoke(main, ["search", "x", "--server", url],
                        env={"LAKEVEC_TOKEN": "wrong-token-wrong-token"})
    assert res.exit_code == 1 and "LAKEVEC_TOKEN" in res.output
    res = runner.invoke(main, ["replay", "--task", "x" * 40_000, "--dry-run", "--server", url],
                        env=env)
    assert res.exit_code == 2
    res = runner.invoke(main, ["search", "x", "--server", url, "--index", "/tmp/x"], env=env)
    assert res.exit_code == 2 and "--index" in res.output
    res = runner.invoke(main, ["replay", "--task", "x", "--server", url, "--evidence", "e.jsonl"],
                        env=env)
    assert res.exit_code == 2 and "--evidence" in res.output
    res = runner.invoke(main, ["replay", "--task", "x", "--server", url,
                               "--retriever", "jaccard"], env=env)
    assert res.exit_code == 2


def test_client_unreachable_server() -> None:
    port = free_port()
    with ServiceClient(f"http://127.0.0.1:{port}", token=None) as client, \
            pytest.raises(ServiceError, match="cannot reach"):
        client.healthz()
    with pytest.raises(UsageProblem):
        ServiceClient("ftp://x")
    res = CliRunner().invoke(main, ["search", "x", "--server", f"http://127.0.0.1:{port}"])
    assert res.exit_code == 1 and "lakevec serve" in res.output
