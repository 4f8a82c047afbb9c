"""A synthetic evidence log in the three runtimes' exact shapes, for tests and benchmarks.

Like :class:`~lakevec.embed.hashing.HashEmbedder`, a stand-in that ships with
the library: :func:`synthetic_rows` writes deterministic (seeded) rows as
lakevec, the TypeScript seed and the Go port write them — lakevec rows with
their ``lakevec`` provenance (some with a tape digest, some tagged with an
A/B experiment), TypeScript rows with a millisecond ``Date.now()`` run id, Go
rows with RFC3339Nano times and ``tags: null`` artifacts — with dry runs,
escalations and gateway failures mixed in. Verdicts come from the real gate
(:func:`lakevec.replay.gate.validate_response`), so reasons read as in a real
log.

``python -m lakevec.report.synthetic OUT.jsonl N [--seed S] [--bad K]`` writes one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from lakevec.replay.bundle import ContextBundle
from lakevec.replay.engine import ESCALATED_SUFFIX, dry_run_response
from lakevec.replay.gate import validate_response

__all__ = ["BAD_LINES", "synthetic_rows", "write_synthetic_log"]

END = datetime(2026, 5, 2, 18, 0, tzinfo=UTC)
LOCAL_MODELS = ("qwen3.5:latest", "llama3.2:3b", "smollm2")
ESCALATION_MODEL = "deepseek-v3.1:671b"
RETRIEVERS = ("hybrid", "hybrid", "hnsw", "bm25", "jaccard")
EXPERIMENTS = {"exp-retriever-2026-04": ("hybrid", "bm25"),
               "exp-local-model-2026-04": ("qwen3.5:latest", "smollm2")}
TOPICS = ("gateway routing", "circuit breaker", "audit export", "distillation batch",
          "vector service", "materializer", "scheduler backlog", "replay gate",
          "index rebuild", "token budget", "cache eviction", "schema migration")
VERBS = ("Diagnose", "Summarise", "Plan", "Review", "Fix", "Explain", "Harden", "Roll out")
WORDS = ("the", "request", "latency", "retry", "budget", "owner", "queue", "partition",
         "shard", "rollback", "alert", "metric", "threshold", "window", "fallback", "deploy",
         "config", "lease", "quota", "snapshot", "checksum", "replica", "drain", "canary")
OFF_TOPIC = ("lorem", "ipsum", "dolor", "amet", "consectetur", "adipiscing", "elit", "sed")
#: Lines that are not replay_run.v1 rows (``bad`` picks from these).
BAD_LINES = ('{"schema": "replay_run.v1", "input_task": "torn', "not json at all",
             '{"schema": "other.v1", "x": 1}', "[1, 2, 3]",
             '{"schema": "replay_run.v1", "input_task": "t", "recorded_run_id": "r"}')


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _iso_ms(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _go_time(moment: datetime, nanos: int) -> str:
    """Go's time.RFC3339Nano: up to 9 fraction digits, trailing zeros dropped."""
    frac = f"{moment.microsecond * 1000 + nanos:09d}".rstrip("0")
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + "Z"


class _Corpus:
    """Sixty playbooks and the (cached) bundle each task gets from each retriever."""

    def __init__(self, rnd: random.Random) -> None:
        self.rnd = rnd
        self.records: list[dict[str, Any]] = []
        for i in range(60):
            topic = TOPICS[i % len(TOPICS)]
            score = ("accepted", "accepted", "partially_accepted", "rejected")[i % 4]
            body = " ".join(rnd.choice(WORDS) for _ in range(40))
            self.records.append({
                "rag_id": f"pb-{i:04d}", "source_run_id": f"run-{i:04d}",
                "title": f"{topic.title()} playbook {i}",
                "content_preview": f"{topic}: {body}"[:240], "success_score": score,
                "tags": [topic.split()[0], "ops"],
                "step": f"Verify {topic} {rnd.choice(WORDS)} {rnd.choice(WORDS)} after the change",
            })
        self._bundles: dict[tuple[str, str], tuple[dict[str, Any], ContextBundle]] = {}

    def bundle(self, task: str, retriever: str) -> tuple[dict[str, Any], ContextBundle]:
        key = (task, retriever)
        if key not in self._bundles:
            rnd = random.Random(_sha(task + retriever))
            picks = rnd.sample(self.records, 8)
            scores = sorted((round(rnd.uniform(0.05, 0.9), 6) for _ in picks), reverse=True)
            arts = [{k: v for k, v in rec.items() if k != "step"} | {"score": s}
                    for rec, s in zip(picks, scores, strict=True)]
            accepted = [a for a in arts if a["success_score"] == "accepted"]
            data = {
                "retrieved_playbooks": arts,
                "prior_successful_outputs": accepted[:3],
                "failure_patterns": [a for a in arts
                                     if a["success_score"] == "partially_accepted"][:2],
                "validation_steps": [r["step"] for r in picks
                                     if r["success_score"] == "accepted"][:6],
                "bundle_token_estimate": rnd.randint(300, 900),
            }
            self._bundles[key] = (data, ContextBundle.model_validate(data))
        return self._bundles[key]


def _answer(rnd: random.Random, bundle: ContextBundle | None, progress: float
            ) -> tuple[str, str | None]:
    """A model's reply, or ``("", error)`` for a failed call; fewer bad ones as
    ``progress`` (0..1 through the period) grows."""
    roll = rnd.random() + 0.12 * progress
    if roll < 0.05:
        return "", rnd.choice((
            f"HTTP 503: upstream busy (request {rnd.getrandbits(48):x})",
            "timed out after 180s: POST http://localhost:3100/v1/chat (ReadTimeout)",
            "cannot connect to http://localhost:3100/v1/chat: [Errno 111] Connection refused"))
    if roll < 0.19:
        return " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(1, 10))), None
    if roll < 0.25:
        return "As an AI I cannot run this, but " + " ".join(rnd.choices(WORDS, k=40)), None
    if roll < 0.36:
        return "Sure. " + " ".join(rnd.choices(OFF_TOPIC, k=rnd.randint(30, 120))), None
    words = rnd.choices(WORDS, k=rnd.randint(40, 320))
    if bundle is not None and bundle.validation_steps:
        words[rnd.randrange(len(words))] = rnd.choice(bundle.validation_steps).lower()
    return "Plan:\n" + " ".join(words), None


def _row(rnd: random.Random, corpus: _Corpus, moment: datetime, task: str, index: int,
         progress: float) -> dict[str, Any]:
    runtime = rnd.choices(("lakevec", "typescript", "go"), (6, 2, 2))[0]
    retriever = rnd.choice(RETRIEVERS) if runtime == "lakevec" else "jaccard"
    model = rnd.choice(LOCAL_MODELS)
    experiment: dict[str, Any] | None = None
    if runtime == "lakevec" and rnd.random() < 0.3:
        name = rnd.choice(sorted(EXPERIMENTS))
        arm = rnd.choice(EXPERIMENTS[name])
        if name.startswith("exp-retriever"):
            retriever = arm
        else:
            model = arm
        experiment = {"id": name, "arm": arm, "task_id": f"t{rnd.randrange(20)}",
                      "repeat": 1, "gate": "seed"}
    no_retrieval = rnd.random() < 0.1
    data, bundle = (None, None) if no_retrieval else corpus.bundle(task, retriever)
    dry = rnd.random() < 0.1
    escalate = rnd.random() < 0.5
    path = [model]
    model_used = model
    if dry:
        response, error = dry_run_response(task, bundle), None
    else:
        response, error = _answer(rnd, bundle, progress)
    verdict = (validate_response(response, bundle) if error is None else None)
    reasons = verdict.reasons if verdict is not None else [f"local call failed: {error}"]
    passed = verdict.passed if verdict is not None else False
    if not passed and escalate:
        path.append(ESCALATION_MODEL)
        second, error2 = ((response + ESCALATED_SUFFIX, None) if dry
                          else _answer(rnd, bundle, progress))
        if error2 is None:
            model_used = ESCALATION_MODEL
            response, v2 = second, validate_response(second, bundle)
            passed, reasons = v2.passed, list(v2.reasons)
            if passed:
                reasons.insert(0, f"recovered via escalation to {ESCALATION_MODEL}")
        else:
            reasons.append(f"escalation also failed: {error2}")
    task_hash = _sha(task)
    duration = rnd.randint(5, 40) if dry else rnd.randint(400, 90_000)
    if runtime == "go":
        recorded_at = _go_time(moment, rnd.randint(0, 999))
        run_id = f"replay:{task_hash[:16]}:{_sha(recorded_at)[:12]}"
        if data is not None and rnd.random() < 0.5:
            data = {**data, "retrieved_playbooks": [
                {**a, "tags": None} for a in data["retrieved_playbooks"]]}
    else:
        recorded_at = _iso_ms(moment)
        if runtime == "typescript":
            run_id = f"replay:{task_hash[:16]}:{int(moment.timestamp() * 1000) + duration}"
        else:
            run_id = f"replay:{task_hash[:16]}:{_sha(recorded_at)[:12]}"
    row: dict[str, Any] = {
        "schema": "replay_run.v1", "input_task": task, "task_hash": task_hash,
        "retrieved_artifacts": {"rag_ids": [a["rag_id"] for a in data["retrieved_playbooks"]]
                                if data is not None else []},
        "context_bundle": data, "model_response": response[:4000], "model_used": model_used,
        "escalation_path": path, "validation_result": {"passed": passed, "reasons": reasons},
        "recorded_run_id": run_id, "recorded_at": recorded_at, "duration_ms": duration,
    }
    if runtime == "lakevec":
        lk: dict[str, Any] = {
            "version": "0.1.0", "retriever": None if no_retrieval else retriever,
            "index_version": 7, "manifest_sha256": _sha("manifest"),
            "embedding_model": "sentence-transformers/all-MiniLM-L6-v2",
            "gateway_api": "dry-run" if dry else ("local" if model == "smollm2" else "lakehouse"),
        }
        if not dry:
            lk |= {"tape": _sha(f"tape-{index}"), "exchanges": len(path)}
        if experiment is not None:
            lk["experiment"] = {**experiment, "verdict": {"passed": passed and rnd.random() < 0.9,
                                                          "reasons": []}}
        row["lakevec"] = lk
    return row


def synthetic_rows(n: int, *, seed: int = 0, days: int = 30,
                   end: datetime = END) -> Iterator[dict[str, Any]]:
    """``n`` rows in time order over ``days`` days up to ``end``; the pass rate drifts up."""
    rnd = random.Random(seed)
    corpus = _Corpus(rnd)
    tasks = [f"{rnd.choice(VERBS)} the {rnd.choice(TOPICS)} issue #{i}: "
             + " ".join(rnd.choices(WORDS, k=rnd.randint(4, 30))) for i in range(max(20, n // 40))]
    start = end - timedelta(days=days)
    offsets = sorted(rnd.uniform(0, days * 86400) for _ in range(n))
    for i, offset in enumerate(offsets):
        moment = start + timedelta(seconds=offset)
        yield _row(rnd, corpus, moment.replace(microsecond=moment.microsecond // 1000 * 1000),
                   rnd.choice(tasks), i, offset / (days * 86400))


def write_synthetic_log(path: Path, n: int, *, seed: int = 0, bad: int = 0,
                        days: int = 30) -> Path:
    """Write ``n`` rows (plus ``bad`` bad lines spread through the file) to ``path``."""
    rnd = random.Random(seed + 1)
    bad_at = set(rnd.sample(range(n + bad), bad)) if bad else set()
    rows = synthetic_rows(n, seed=seed, days=days)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for i in range(n + bad):
            if i in bad_at:
                out.write(BAD_LINES[i % len(BAD_LINES)] + "\n")
            else:
                out.write(json.dumps(next(rows), ensure_ascii=False, separators=(",", ":")) + "\n")
    return path


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("n", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bad", type=int, default=0)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    print(write_synthetic_log(args.out, args.n, seed=args.seed, bad=args.bad, days=args.days))
