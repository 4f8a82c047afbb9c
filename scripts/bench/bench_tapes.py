"""Tapes: bytes per run and write time, and the storage layouts that were compared.

Runs real replays (Jaccard over the sample corpus, so no model load) against a
scripted chat server on 127.0.0.1 that answers like an OpenAI-compatible server
(a ~2,400-character answer with ``usage``, ``finish_reason`` and ``model``), in
two shapes: a pass on the local model (1 call) and an escalation (2 calls).
Every tape write is timed inside the run (``TapeStore.write``: temp file,
fsync, rename, directory fsync), next to the evidence-log append. Then the same
tapes are written in the two layouts not chosen, each as durably:

* ``blobs``: each body its own content-addressed file plus a tape document
  that refers to them (dedupes identical bodies; 3–5 files per run);
* ``sqlite``: one row per tape in an SQLite database in WAL mode,
  ``synchronous=FULL``, one transaction per run.

    python scripts/bench/bench_tapes.py [--runs 30] [--dir DIR]

DIR (default ``.bench/tapes``) should be on the disk the evidence log lives on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lakevec.corpus import read_corpus
from lakevec.files import write_atomic
from lakevec.replay import engine
from lakevec.replay.engine import ReplayRequest, replay
from lakevec.replay.gateway import HttpGateway
from lakevec.replay.tape import Tape, TapeStore, encode_tape
from lakevec.retrieval.jaccard import JaccardRetriever
from scripts.bench._common import REPO, bench_dir, machine, median, pct
from tests.chat_server import Reply, chat_server

TASK = "Audit phase 38 provider routing in the gateway and verify the fallback order"
ANSWER = (
    "Verify the routing table first: crates/gateway/src/routing.rs resolves the provider from "
    "the request body and only infers it from the model name when `provider` is missing. "
) * 14


def reply(content: str, model: str) -> Reply:
    payload = {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1777264978, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 812, "completion_tokens": 598, "total_tokens": 1410},
    }
    return Reply(200, json.dumps(payload).encode())


def write_blobs(directory: Path, tape: Tape) -> int:
    """The rejected layout: bodies as blob files, the tape document refers to them."""
    written = 0
    doc = tape.model_dump(mode="json")
    for ex in doc["exchanges"]:
        for part in ("request", "response"):
            body = ex.get(part)
            if body is None:
                continue
            data = (body.pop("text") or "").encode() if body.get("text") is not None else b""
            path = directory / "blobs" / body["sha256"][:2] / body["sha256"]
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(path, data)
                written += len(data)
    path = directory / tape.digest[:2] / f"{tape.digest}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    write_atomic(path, text)
    return written + len(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    base = args.dir or bench_dir() / "tapes"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    corpus = read_corpus(REPO / "exports" / "rag" / "playbooks.jsonl")
    retriever = JaccardRetriever(corpus.records.values())

    tape_ms: list[float] = []
    log_ms: list[float] = []
    real_write = TapeStore.write
    real_append = engine.append_evidence

    def timed_write(self: TapeStore, tape: Tape) -> Path:
        started = time.perf_counter()
        path = real_write(self, tape)
        tape_ms.append((time.perf_counter() - started) * 1000)
        return path

    def timed_append(path: Path, row: Any) -> Any:
        started = time.perf_counter()
        out = real_append(path, row)
        log_ms.append((time.perf_counter() - started) * 1000)
        return out

    TapeStore.write = timed_write  # type: ignore[method-assign]
    engine.append_evidence = timed_append  # type: ignore[assignment]
    replies = {"local": reply(ANSWER, "qwen3.5:7b"), "weak": reply("I cannot.", "qwen3.5:7b"),
               "big": reply(ANSWER, "deepseek-v3.1:671b")}
    results: dict[str, Any] = {"machine": machine(), "runs": args.runs, "dir": str(base)}
    tapes: list[Tape] = []
    with chat_server("/v1/chat", replies) as srv, HttpGateway(srv.url, timeout=30) as gateway:
        for shape, local in (("pass", "local"), ("escalation", "weak")):
            tape_ms.clear()
            log_ms.clear()
            log = base / shape / "replay_runs.jsonl"
            for _ in range(args.runs):
                replay(ReplayRequest(task=TASK, allow_escalation=True), retriever=retriever,
                       gateway=gateway, evidence_path=log, local_model=local,
                       escalation_model="big")
            files = sorted((base / shape / "tapes").rglob("*.json"))
            sizes = [p.stat().st_size for p in files]
            row_bytes = [len(line) + 1 for line in log.read_bytes().splitlines()]
            tapes += [TapeStore(base / shape / "tapes").load(p.stem) for p in files]
            results[shape] = {
                "calls": len(tapes[-1].exchanges),
                "tape_bytes_median": median(sizes), "row_bytes_median": median(row_bytes),
                "tape_write_ms_median": round(median(tape_ms), 3),
                "tape_write_ms_p90": round(pct(tape_ms, 90), 3),
                "log_append_ms_median": round(median(log_ms), 3),
            }
    TapeStore.write = real_write  # type: ignore[method-assign]

    layouts: dict[str, list[float]] = {"file": [], "blobs": [], "sqlite": []}
    blob_bytes = []
    db = sqlite3.connect(base / "tapes.sqlite3", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE tapes (digest TEXT PRIMARY KEY, doc BLOB NOT NULL)")
    for i, tape in enumerate(tapes):
        # A fresh digest per write, so every layout writes every time.
        fresh = tape.model_copy(update={"digest": hashlib.sha256(f"{i}".encode()).hexdigest()})
        started = time.perf_counter()
        TapeStore(base / "layout-file").write(fresh)
        layouts["file"].append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        blob_bytes.append(write_blobs(base / f"layout-blobs-{i}", fresh))
        layouts["blobs"].append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO tapes VALUES (?, ?)", (fresh.digest, encode_tape(fresh)))
        db.execute("COMMIT")
        layouts["sqlite"].append((time.perf_counter() - started) * 1000)
    db.close()
    results["layouts_write_ms_median"] = {k: round(median(v), 3) for k, v in layouts.items()}
    results["blobs_bytes_median"] = median(blob_bytes)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
