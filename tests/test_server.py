"""``lakevec serve`` endpoints: search, filters, limits, strict types, auth, replay, stats.

Hot swap is in test_service_live.py, real uvicorn processes in test_service_run.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from lakevec.cli import main
from lakevec.embed.hashing import HashEmbedder
from lakevec.errors import UsageProblem
from lakevec.index.snapshot import open_index
from lakevec.index.update import index_corpus
from lakevec.replay.engine import ReplayRequest, replay
from lakevec.replay.evidence import ReplayRunRow
from lakevec.retrieval.dense import FilterPolicy
from lakevec.retrieval.filters import SearchFilters
from lakevec.retrieval.registry import retriever_for
from lakevec.service.app import create_app
from lakevec.service.settings import MAX_QUERY_CHARS, check_bind, is_loopback
from lakevec.settings import DEFAULT_RETRIEVER, INDEX_RETRIEVERS
from tests.conftest import write_jsonl
from tests.test_service_support import (  # noqa: F401 — fixtures
    TOKEN,
    FixedClock,
    corpus_rows,
    make_client_fixture,
    root_fixture,
    rows_of,
    settings_for,
)

QUERY = "circuit breaker audit"


def local_search(root: Path, kind: str, query: str, k: int,
                 filters: SearchFilters | None = None) -> tuple[list[Any], str]:
    """What `lakevec search` ranks locally: hits and the strategy."""
    with open_index(root / "index") as snap:
        retriever = retriever_for(kind, snap, HashEmbedder(64))
        hits = retriever.search(query, k, filters=filters)
        return hits, retriever.last_strategy


# ─── search ──────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("kind", INDEX_RETRIEVERS)
def test_search_matches_local_retriever(
    root: Path, make_client: Callable[..., TestClient], kind: str
) -> None:
    client = make_client()
    resp = client.post("/vectors/search", json={"query": QUERY, "k": 5, "retriever": kind,
                                                "include_content": True})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    local, strategy = local_search(root, kind, QUERY, 5)
    assert [r["id"] for r in body["results"]] == [h.record.id for h in local]
    assert [r["score"] for r in body["results"]] == pytest.approx([h.score for h in local],
                                                                  abs=1e-5)
    assert [r["rank"] for r in body["results"]] == list(range(1, len(local) + 1))
    assert body["results"][0]["content"] == local[0].record.content
    assert body["retriever"] == kind
    assert body["strategy"] == strategy == kind
    assert body["index_version"] == 1 and body["snapshot"] == "v000001"
    assert body["model"] == "hash:64"


def test_search_default_is_the_default_retriever(
    root: Path, make_client: Callable[..., TestClient]
) -> None:
    """No retriever given: the same default (hybrid) as `lakevec search` and `replay`."""
    assert DEFAULT_RETRIEVER == "hybrid"
    body = make_client().post("/vectors/search", json={"query": QUERY}).json()
    local, _ = local_search(root, DEFAULT_RETRIEVER, QUERY, 8)
    assert body["retriever"] == DEFAULT_RETRIEVER and body["k"] == 8
    assert [r["id"] for r in body["results"]] == [h.record.id for h in local]


def test_exact_flag_is_a_synonym_of_the_exact_retriever(
    root: Path, make_client: Callable[..., TestClient]
) -> None:
    client = make_client()
    by_flag = client.post("/vectors/search", json={"query": QUERY, "exact": True}).json()
    by_name = client.post("/vectors/search", json={"query": QUERY, "retriever": "exact"}).json()
    both = client.post("/vectors/search", json={"query": QUERY, "retriever": "exact",
                                                "exact": True}).json()
    for body in (by_flag, by_name, both):
        assert body["retriever"] == "exact" and body["strategy"] == "exact"
    assert by_flag["results"] == by_name["results"] == both["results"]
    resp = client.post("/vectors/search", json={"query": QUERY, "exact": True,
                                                "retriever": "hnsw"})
    assert resp.status_code == 422
    assert "exact" in resp.json()["error"]["message"]


def test_search_k_is_clamped_to_index_size(tmp_path: Path) -> None:
    corpus = write_jsonl(tmp_path / "c.jsonl", corpus_rows(3))
    index_corpus(corpus, tmp_path / "index", embedder=HashEmbedder(64))
    with TestClient(create_app(settings_for(tmp_path))) as client:
        resp = client.post("/vectors/search", json={"query": "gateway", "k": 100,
                                                    "retriever": "hnsw"})
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
@pytest.mark.parametrize("kind", ["hnsw", "exact"])
def test_search_filters_exact_path(
    root: Path, make_client: Callable[..., TestClient], filters: dict[str, Any],
    keep: Callable[[Any], bool], kind: str,
) -> None:
    client = make_client()
    resp = client.post("/vectors/search", json={"query": "audit replay index", "k": 7,
                                                "filters": filters, "retriever": kind})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    # 120 records: every filter is "very selective" (≤ exact_max_rows) → exact over the subset.
    assert body["strategy"] == "exact-filtered"
    check_filtered(root, body, "audit replay index", 7, keep)


@pytest.mark.parametrize(("filters", "keep"), FILTER_CASES)
@pytest.mark.parametrize("kind", ["hybrid", "bm25"])
def test_search_filters_other_retrievers(
    root: Path, make_client: Callable[..., TestClient], filters: dict[str, Any],
    keep: Callable[[Any], bool], kind: str,
) -> None:
    """Filtered hybrid and BM25 search return only passing records, as the library does."""
    body = make_client().post("/vectors/search", json={
        "query": "audit replay index", "k": 7, "filters": filters, "retriever": kind}).json()
    assert body["strategy"] == f"{kind}-filtered"
    local, _ = local_search(root, kind, "audit replay index", 7, SearchFilters(
        success_score=tuple(filters.get("success_score") or ()) or None,
        tags_any=tuple(filters.get("tags_any") or ()) or None,
        source_category=tuple(filters.get("source_category") or ()) or None))
    assert [r["id"] for r in body["results"]] == [h.record.id for h in local]
    assert all(keep(h.record) for h in local)


def test_search_filters_overfetch_and_fallback(
    root: Path, make_client: Callable[..., TestClient]
) -> None:
    never_exact = FilterPolicy(exact_max_rows=0, exact_selectivity=0.0)
    client = make_client(policy=never_exact)
    filters = {"source_category": ["gateway", "audit", "ops"]}  # 75 % of the rows
    body = client.post("/vectors/search", json={"query": "audit replay index", "k": 5,
                                                "filters": filters, "retriever": "hnsw"}).json()
    assert body["strategy"] == "hnsw-overfetch"
    assert all(r["source_category"] != "distillation" for r in body["results"])
    assert len(body["results"]) == 5
    # Over-fetch capped at k with one category allowed: too few survive → exact fallback.
    capped = make_client(policy=FilterPolicy(exact_max_rows=0, exact_selectivity=0.0,
                                             overfetch_cap=5))
    body = capped.post("/vectors/search", json={
        "query": "audit replay index", "k": 5, "filters": {"source_category": ["ops"]},
        "retriever": "hnsw"}).json()
    assert body["strategy"] == "exact-fallback"
    check_filtered(root, body, "audit replay index", 5, lambda r: r.source_category == "ops")


@pytest.mark.parametrize("kind", INDEX_RETRIEVERS)
def test_search_min_score(make_client: Callable[..., TestClient], kind: str) -> None:
    client = make_client()
    full = client.post("/vectors/search", json={"query": "gateway audit", "k": 20,
                                                "retriever": kind}).json()
    cut = full["results"][4]["score"]
    body = client.post("/vectors/search", json={"query": "gateway audit", "k": 20,
                                                "retriever": kind,
                                                "filters": {"min_score": cut}}).json()
    expected = [r["id"] for r in full["results"] if r["score"] >= cut]
    assert len(expected) >= 5
    assert [r["id"] for r in body["results"]] == expected


# ─── limits, strict types, methods ───────────────────────────────────────────


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"query": "x", "k": 101}, "k"),
        ({"query": "x", "k": 0}, "k"),
        ({"query": "x" * (MAX_QUERY_CHARS + 1)}, "query"),
        ({"query": "   "}, "query"),
        ({"query": ""}, "query"),
        ({"k": 3}, "query"),
        ({"query": "x", "surprise": 1}, "surprise"),
        ({"query": "x", "filters": {"success_score": []}}, "success_score"),
        ({"query": "x", "filters": {"min_score": -2}}, "min_score"),  # below every score
        ({"query": "x", "filters": {"tags_any": ["t"] * 33}}, "tags_any"),
        ({"query": "x", "retriever": "jaccard"}, "retriever"),
        ({"query": "x", "retriever": "bm25", "exact": True}, "exact"),
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


def test_min_score_is_in_the_retrievers_own_scale(
    make_client: Callable[..., TestClient],
) -> None:
    """BM25 scores are unbounded above: a min_score over 1 is a valid cut there (and cuts
    every cosine hit)."""
    client = make_client()
    body = {"query": "Verify restore step 17", "filters": {"min_score": 1.5}}
    bm25 = client.post("/vectors/search", json={**body, "retriever": "bm25"}).json()
    assert [r["id"] for r in bm25["results"]] == ["pb-0017"]  # the one record with "17"
    assert bm25["results"][0]["score"] >= 1.5
    hnsw = client.post("/vectors/search", json={**body, "retriever": "hnsw"}).json()
    assert hnsw["results"] == []


@pytest.mark.parametrize(
    ("path", "body", "where"),
    [
        ("/vectors/search", {"query": "x", "k": "8"}, "k"),
        ("/vectors/search", {"query": "x", "k": True}, "k"),
        ("/vectors/search", {"query": "x", "k": 8.5}, "k"),
        ("/vectors/search", {"query": "x", "exact": 0}, "exact"),
        ("/vectors/search", {"query": "x", "exact": "true"}, "exact"),
        ("/vectors/search", {"query": "x", "include_content": 1}, "include_content"),
        ("/vectors/search", {"query": 5}, "query"),
        ("/vectors/search", {"query": "x", "retriever": 1}, "retriever"),
        ("/vectors/search", {"query": "x", "filters": {"tags_any": [1]}}, "tags_any"),
        ("/vectors/search", {"query": "x", "filters": {"min_score": "0.5"}}, "min_score"),
        ("/vectors/search", {"query": "x", "filters": {"min_score": True}}, "min_score"),
        ("/replay", {"task": "x", "dry_run": 1}, "dry_run"),
        ("/replay", {"task": "x", "dry_run": True, "local_only": "false"}, "local_only"),
        ("/replay", {"task": 7, "dry_run": True}, "task"),
    ],
)
def test_request_fields_accept_only_their_types(
    make_client: Callable[..., TestClient], path: str, body: dict[str, Any], where: str
) -> None:
    resp = make_client().post(path, json=body)
    assert resp.status_code == 422, resp.text
    assert where in resp.json()["error"]["message"]


def test_documented_types_still_pass(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    resp = client.post("/vectors/search", json={
        "query": "x", "k": 3, "exact": False, "include_content": True,
        "filters": {"min_score": 0, "tags_any": ["ops"]}})  # an integer is a JSON number
    assert resp.status_code == 200, resp.text
    # JSON Schema's integer includes 3.0 (no fraction), as the OpenAPI document says.
    resp = client.post("/vectors/search", json={"query": "gateway", "k": 3.0})
    assert resp.status_code == 200 and resp.json()["k"] == 3


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


@pytest.mark.parametrize(
    ("method", "path"),
    [("PUT", "/healthz"), ("POST", "/healthz"), ("DELETE", "/stats"), ("PATCH", "/stats"),
     ("PUT", "/vectors/search"), ("GET", "/replay"), ("PUT", "/replay")],
)
def test_wrong_method_is_405(
    make_client: Callable[..., TestClient], method: str, path: str
) -> None:
    """The JSON check (415) applies to the routes that take a body, not to every POST/PUT."""
    client = make_client()
    for headers in ({}, {"content-type": "text/plain"}, {"content-type": "application/json"}):
        resp = client.request(method, path, content=b"{}", headers=headers)
        assert resp.status_code == 405, (headers, resp.text)
        assert resp.json()["error"]["code"] == "method_not_allowed"


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
            retriever=retriever_for(DEFAULT_RETRIEVER, snap, HashEmbedder(64)), gateway=None,
            evidence_path=None, clock=FixedClock(),
        )
    assert served == local.model_dump(mode="json")
    logged = rows_of(root / "data" / "_kb" / "replay_runs.jsonl")
    assert len(logged) == 1
    ReplayRunRow.model_validate(logged[0])
    assert logged[0]["schema"] == "replay_run.v1"
    assert logged[0]["recorded_run_id"] == served["recorded_run_id"]
    assert logged[0]["lakevec"]["index_version"] == 1
    # every index retriever and no-retrieval are served too
    for kind in INDEX_RETRIEVERS:
        body = client.post("/replay", json={"task": task, "dry_run": True,
                                            "retriever": kind}).json()
        assert body["lakevec"]["retriever"] == kind
    body = client.post("/replay", json={"task": task, "dry_run": True,
                                        "no_retrieval": True}).json()
    assert body["context_bundle"] is None
    assert len(rows_of(root / "data" / "_kb" / "replay_runs.jsonl")) == 2 + len(INDEX_RETRIEVERS)
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
    assert stats["index"]["reload_failures"] == 0 and stats["index"]["last_reload_error"] is None
    assert stats["model"]["model_id"] == "hash:64" and stats["model"]["dimension"] == 64
    assert stats["model"]["backend"] == "hash"
    assert stats["uptime_s"] >= 0
    search = stats["endpoints"]["/vectors/search"]
    assert search["requests"] == 6 and search["status_2xx"] == 5 and search["status_4xx"] == 1
    assert search["p50_ms"] > 0 and search["p99_ms"] >= search["p50_ms"]
    assert stats["endpoints"]["other"]["status_4xx"] == 1
    assert stats["endpoints"]["/healthz"]["requests"] == 1
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths) == {"/vectors/search", "/replay", "/healthz", "/stats"}
    assert client.get("/docs").status_code == 200
