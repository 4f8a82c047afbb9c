"""`lakevec search`: the default retriever (replay's), --retriever, metadata filters, --server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from lakevec.cli import main
from lakevec.settings import INDEX_RETRIEVERS, RETRIEVERS
from tests.conftest import record, write_jsonl

SCORES = ("accepted", "partially_accepted", "rejected")
TAGS: tuple[list[str], ...] = (["db"], ["net"], ["db", "net"], [])
TOPICS = ("rotate gateway keys", "rebuild the vector index", "audit provider routing")
ROWS = [
    record(
        i,
        title=f"{TOPICS[i % 3].capitalize()} {i}",
        content=f"How to {TOPICS[i % 3]} on cluster {i}.\n- Verify {TOPICS[(i + 1) % 3]}",
        success_score=SCORES[i % 3],
        tags=TAGS[i % 4],
        source_category=("ops", "audit")[i % 2],
    )
    for i in range(12)
]
BY_ID = {r["id"]: r for r in ROWS}
QUERY = "rotate the gateway keys and audit routing"


def run(root: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--root", str(root), *args])


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write_jsonl(tmp_path / "exports" / "rag" / "playbooks.jsonl", ROWS)
    built = run(tmp_path, "build-index", "--model", "hash:64", "--quiet")
    assert built.exit_code == 0, built.output
    return tmp_path


def search(root: Path, *args: str) -> list[dict[str, Any]]:
    result = run(root, "search", QUERY, "--json", *args)
    assert result.exit_code == 0, result.output
    hits: list[dict[str, Any]] = json.loads(result.stdout)
    return hits


def test_default_search_ranks_like_replay(root: Path) -> None:
    """Same index, same text: search's top 8 are replay's bundle, in the same order."""
    found = [h["id"] for h in search(root, "-k", "8")]
    replayed = run(root, "replay", "--task", QUERY, "--dry-run", "--json")
    assert replayed.exit_code == 0, replayed.output
    result = json.loads(replayed.stdout)
    assert result["lakevec"]["retriever"] == "hybrid"
    bundle = [a["rag_id"] for a in result["context_bundle"]["retrieved_playbooks"]]
    assert len(found) == 8 and found == bundle
    # The default is hybrid, whichever way it is asked for.
    assert [h["id"] for h in search(root, "-k", "8", "--retriever", "hybrid")] == found


def test_json_rows_and_text_scores(root: Path) -> None:
    hits = search(root, "-k", "3")
    assert [h["rank"] for h in hits] == [1, 2, 3]
    for hit in hits:
        assert set(hit) == {"rank", "id", "score", "title", "success_score", "source_category",
                            "tags"}
        source = BY_ID[hit["id"]]
        assert (hit["title"], hit["success_score"], hit["source_category"], hit["tags"]) == (
            source["title"], source["success_score"], source["source_category"], source["tags"])
    text = run(root, "search", QUERY, "-k", "3")
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert len(lines) == 3
    for line, hit in zip(lines, hits, strict=True):
        rank, score, rid = line.split()[:3]
        assert (int(rank), rid) == (hit["rank"], hit["id"])
        assert float(score) == pytest.approx(hit["score"], abs=1e-4)  # the retriever's own


FILTERS: list[tuple[list[str], Any]] = [
    (["--success-score", "accepted"], lambda r: r["success_score"] == "accepted"),
    (["--success-score", "accepted", "--success-score", "rejected"],
     lambda r: r["success_score"] in ("accepted", "rejected")),
    (["--tag", "net"], lambda r: "net" in r["tags"]),
    (["--tag", "db", "--tag", "nope"], lambda r: "db" in r["tags"]),
    (["--category", "audit"], lambda r: r["source_category"] == "audit"),
    (["--success-score", "accepted", "--category", "ops", "--tag", "db"],
     lambda r: r["success_score"] == "accepted" and r["source_category"] == "ops"
     and "db" in r["tags"]),
]


@pytest.mark.parametrize("kind", RETRIEVERS)
@pytest.mark.parametrize(("args", "keep"), FILTERS)
def test_filters_narrow_results(root: Path, kind: str, args: list[str], keep: Any) -> None:
    everything = search(root, "-k", "50", "--retriever", kind)
    assert everything, kind
    want = {h["id"] for h in everything if keep(BY_ID[h["id"]])}
    got = search(root, "-k", "50", "--retriever", kind, *args)
    assert {h["id"] for h in got} == want
    assert len(got) < len(everything)
    assert [h["rank"] for h in got] == list(range(1, len(got) + 1))


@pytest.mark.parametrize("kind", RETRIEVERS)
def test_min_score_cuts_by_the_retrievers_score(root: Path, kind: str) -> None:
    everything = search(root, "-k", "50", "--retriever", kind)
    # Just under a listed score (the JSON rounds scores to 6 decimals).
    cut = everything[len(everything) // 2]["score"] - 1e-5
    got = search(root, "-k", "50", "--retriever", kind, "--min-score", str(cut))
    assert [h["id"] for h in got] == [h["id"] for h in everything if h["score"] >= cut]
    assert 0 < len(got) < len(everything)
    none = search(root, "--retriever", kind, "--min-score", "1000")
    assert none == []


def test_filter_matching_nothing_is_an_empty_result(root: Path) -> None:
    assert search(root, "--category", "no-such-category") == []
    text = run(root, "search", QUERY, "--tag", "no-such-tag")
    assert (text.exit_code, text.stdout) == (0, "")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_min_score_must_be_finite(root: Path, value: str) -> None:
    result = run(root, "search", QUERY, "--min-score", value)
    assert result.exit_code == 2 and "--min-score" in result.output


def test_exact_is_a_synonym_of_retriever_exact(root: Path) -> None:
    assert search(root, "--exact") == search(root, "--retriever", "exact")
    assert search(root, "--exact", "--retriever", "exact") == search(root, "--exact")
    clash = run(root, "search", QUERY, "--exact", "--retriever", "hnsw")
    assert clash.exit_code == 2
    assert "--exact" in clash.output and "hnsw" in clash.output


def test_jaccard_reads_the_corpus_only(root: Path, tmp_path: Path) -> None:
    other = write_jsonl(tmp_path / "other.jsonl", [record("only-here", title=QUERY)])
    hits = search(root, "--retriever", "jaccard", "--corpus", str(other))
    assert [h["id"] for h in hits] == ["only-here"]


# ─── --server ────────────────────────────────────────────────────────────────


@contextmanager
def fake_service(response: dict[str, Any]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A 127.0.0.1 HTTP server answering every POST with ``response``; records the bodies."""
    bodies: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length", "0")))
            bodies.append({"path": self.path, "body": json.loads(raw)})
            payload = json.dumps(response).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", bodies
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


SERVED_HIT = {"rank": 1, "id": "pb-0001", "score": 0.25, "title": "t", "success_score": "accepted",
              "source_category": "ops", "source_run_id": "run-1", "tags": ["db"],
              "content": None}
SERVED = {"results": [SERVED_HIT], "k": 5, "retriever": "bm25", "strategy": "bm25-filtered",
          "index_version": 1, "snapshot": "v000001", "model": "hash:64", "took_ms": 0.1}


def test_server_gets_the_retriever_and_filters(tmp_path: Path) -> None:
    with fake_service(SERVED) as (url, bodies):
        result = run(tmp_path, "search", QUERY, "--server", url, "-k", "5", "--json",
                     "--retriever", "bm25", "--success-score", "accepted", "--tag", "db",
                     "--tag", "net", "--category", "ops", "--min-score", "0.5")
    assert result.exit_code == 0, result.output
    assert len(bodies) == 1 and bodies[0]["path"] == "/vectors/search"
    body = bodies[0]["body"]
    assert (body["query"], body["k"], body["retriever"]) == (QUERY, 5, "bm25")
    assert body["filters"] == {"success_score": ["accepted"], "tags_any": ["db", "net"],
                               "source_category": ["ops"], "min_score": 0.5}
    hit = json.loads(result.stdout)[0]
    assert hit == {k: SERVED_HIT[k] for k in ("rank", "id", "score", "title", "success_score",
                                              "source_category", "tags")}


def test_server_default_retriever_and_no_filters(tmp_path: Path) -> None:
    with fake_service(SERVED) as (url, bodies):
        assert run(tmp_path, "search", QUERY, "--server", url).exit_code == 0
    body = bodies[0]["body"]
    assert body["retriever"] == "hybrid" and "filters" not in body


def test_server_refuses_jaccard_and_local_options(tmp_path: Path) -> None:
    with fake_service(SERVED) as (url, bodies):
        jaccard = run(tmp_path, "search", QUERY, "--server", url, "--retriever", "jaccard")
        index = run(tmp_path, "search", QUERY, "--server", url, "--index", str(tmp_path))
    assert jaccard.exit_code == 2
    assert ", ".join(INDEX_RETRIEVERS) in jaccard.output
    assert index.exit_code == 2 and "--index" in index.output
    assert bodies == []  # refused before any request
