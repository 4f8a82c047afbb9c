"""A scripted in-process model behind the real LocalGateway, a small corpus and tasks:
what the A/B and `--api local` tests run on instead of llama.cpp."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lakevec.replay.llamacpp import ModelCache, SamplingSettings

RECORDS = [
    {"id": "pb-breaker", "title": "Circuit breaker audit", "success_score": "accepted",
     "content": "Audit of the provider circuit breaker.\n- verify breaker trips after five "
     "failures\n- check half_open probe closes the breaker", "tags": ["gateway"],
     "source_run_id": "run-1", "source_category": "audit"},
    {"id": "pb-routing", "title": "Gateway routing audit", "success_score": "accepted",
     "content": "Audit of the provider routing table.\n- verify routing table maps "
     "ollama_cloud models", "tags": ["gateway"], "source_run_id": "run-2",
     "source_category": "audit"},
    {"id": "pb-partial", "title": "Routing partial", "success_score": "partially_accepted",
     "content": "routing notes without proof", "tags": [], "source_run_id": "run-3",
     "source_category": "audit"},
]
TASKS = [
    {"id": "t1", "task": "audit the provider circuit breaker", "gold": "pb-breaker"},
    {"id": "t2", "task": "audit the gateway routing table", "gold": "pb-routing"},
    {"id": "t3", "task": "audit the breaker probe", "notes": "no gold"},
]
#: Long enough for the seed gate, shares "breaker"/"routing" with the checklists.
GOOD = ("Plan: the breaker trips after five failures and the routing table maps every "
        "ollama_cloud model; a half_open probe closes the breaker again.")
#: Long enough, but shares no token with any checklist.
OFF_TOPIC = "Sunny weather is expected all weekend, with light winds and warm evenings. " * 2

Script = Callable[[str, int, int], tuple[str, str]]
_COUNT_LOCK = threading.Lock()


def has_bundle(user: str) -> bool:
    return "## Task" in user


def retrieval_good(user: str, seed: int, call: int) -> tuple[str, str]:
    """Good answers with a bundle, off-topic ones without."""
    return (GOOD, "stop") if has_bundle(user) else (OFF_TOPIC, "stop")


@dataclass
class ScriptedModel:
    """A LoadedModel answering ``script(user, seed, call)``; raises KeyboardInterrupt on call
    ``interrupt_at``."""

    path: Path
    n_ctx: int
    n_threads: int
    script: Script
    events: list[tuple[str, int]]
    interrupt_at: int | None = None
    n_ctx_train: int = 8192
    chat_format: str = "chat_template.default"
    calls: int = 0

    def count_prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        return sum(len(m["content"].split()) + 4 for m in messages)

    def complete(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float,
                 sampling: SamplingSettings) -> dict[str, Any]:
        with _COUNT_LOCK:  # two jobs call two copies at once: each call gets its own number
            self.events.append(("complete", self.n_ctx))
            count = sum(1 for e in self.events if e[0] == "complete")
        if self.interrupt_at is not None and count == self.interrupt_at:
            raise KeyboardInterrupt
        content, finish = self.script(messages[-1]["content"], sampling.seed, count)
        words = len(content.split())
        return {
            "id": "chatcmpl-x", "object": "chat.completion", "created": 1, "model": "x",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "logprobs": None, "finish_reason": finish}],
            "usage": {"prompt_tokens": self.count_prompt_tokens(messages),
                      "completion_tokens": words, "total_tokens": 0},
        }

    def close(self) -> None:
        self.events.append(("close", self.n_ctx))


@dataclass
class FakeLlama:
    """A ModelCache whose loader makes ScriptedModels; ``events`` logs loads and calls."""

    script: Script = retrieval_good
    interrupt_at: int | None = None
    events: list[tuple[str, int]] = field(default_factory=list)

    def cache(self) -> ModelCache:
        def loader(path: Path, n_ctx: int, n_threads: int) -> ScriptedModel:
            self.events.append(("load", n_ctx))
            return ScriptedModel(path, n_ctx, n_threads, self.script, self.events,
                                 self.interrupt_at)

        return ModelCache(loader=loader)

    @property
    def completes(self) -> int:
        return sum(1 for e in self.events if e[0] == "complete")


def install(monkeypatch: pytest.MonkeyPatch, fake: FakeLlama) -> ModelCache:
    """Make every LocalGateway built without a cache (the CLI's) use ``fake``."""
    cache = fake.cache()
    monkeypatch.setattr("lakevec.replay.local.PROCESS_CACHE", cache)
    return cache


def make_root(tmp_path: Path, tasks: list[dict[str, Any]] | None = None) -> Path:
    """A project root with the small corpus, a task file and a fake GGUF file."""
    corpus = tmp_path / "exports" / "rag" / "playbooks.jsonl"
    corpus.parent.mkdir(parents=True)
    corpus.write_text("".join(json.dumps(r) + "\n" for r in RECORDS), encoding="utf-8")
    task_file = tmp_path / "tasks.jsonl"
    task_file.write_text(
        "".join(json.dumps(t) + "\n" for t in (TASKS if tasks is None else tasks)),
        encoding="utf-8",
    )
    (tmp_path / "Tiny-Chat.Q4.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 64)
    return tmp_path


def gguf(root: Path) -> Path:
    return root / "Tiny-Chat.Q4.gguf"


def log_rows(root: Path) -> list[dict[str, Any]]:
    log = root / "data" / "_kb" / "replay_runs.jsonl"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
