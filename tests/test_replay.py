"""The replay pipeline: every gate/escalation path, dry-run, ids/clock, and real HTTP runs.

Hostile gateway replies are in test_replay_gateway_faults.py and test_replay_fuzz.py.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from lakevec.clock import iso_ms
from lakevec.corpus import PlaybookRecord
from lakevec.errors import CorpusError, EvidenceError, IndexMissingError, UsageProblem
from lakevec.replay.engine import ReplayRequest, dry_run_response, format_report, replay
from lakevec.replay.evidence import DEFAULT_SCHEMA_PATH, ReplayResult
from lakevec.replay.gateway import ChatResult
from lakevec.replay.runner import run_replay
from lakevec.retrieval.jaccard import JaccardRetriever
from lakevec.settings import MAX_TASK_CHARS
from tests.chat_server import Reply, chat_server

LOCAL = "qwen3.5:latest"
BIG = "deepseek-v3.1:671b"
GOOD = "Verify the gateway routing table: provider entries map /v1/chat to the adapter. " * 2
SHORT = "ok"


class FakeGateway:
    """Scripted answers per model; records (model, system, user) for every call."""

    api = "fake"

    def __init__(self, answers: dict[str, ChatResult]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, str, str]] = []

    def chat(self, model: str, system: str, user: str, **_: Any) -> ChatResult:
        self.calls.append((model, system, user))
        return self.answers[model]


class FakeClock:
    def __init__(self) -> None:
        self.moment = datetime(2026, 4, 27, 4, 42, 58, 123456, tzinfo=UTC)
        self.ticks = iter([10.0, 10.25])

    def now(self) -> datetime:
        return self.moment

    def monotonic(self) -> float:
        return next(self.ticks)


def ok(text: str) -> ChatResult:
    return ChatResult(ok=True, content=text)


def failed(error: str) -> ChatResult:
    return ChatResult(ok=False, error=error)


CORPUS = [
    PlaybookRecord(
        id="pb-route", title="Gateway routing audit", success_score="accepted",
        content="Audit of the provider table.\n- verify gateway routing table entries",
        source_run_id="run-1",
    ),
    PlaybookRecord(
        id="pb-partial", title="Routing partial", success_score="partially_accepted",
        content="routing notes without proof", source_run_id="run-2",
    ),
]
TASK = "audit gateway routing table"


def schema_check(row: dict[str, Any]) -> None:
    schema = json.loads(DEFAULT_SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.validate(row, schema)


def run(
    tmp_path: Path,
    answers: dict[str, ChatResult],
    **flags: Any,
) -> tuple[ReplayResult, FakeGateway, list[dict[str, Any]]]:
    gateway = FakeGateway(answers)
    log = tmp_path / "data" / "_kb" / "replay_runs.jsonl"
    result = replay(
        ReplayRequest(task=flags.pop("task", TASK), **flags),
        retriever=JaccardRetriever(CORPUS),
        gateway=gateway,
        evidence_path=log,
        local_model=LOCAL,
        escalation_model=BIG,
        clock=FakeClock(),
    )
    rows = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    for row in rows:
        schema_check(row)
    return result, gateway, rows


def test_pass_on_the_local_model(tmp_path: Path) -> None:
    result, gw, rows = run(tmp_path, {LOCAL: ok(GOOD)}, allow_escalation=True)
    assert result.validation_result.model_dump() == {"passed": True, "reasons": []}
    assert result.escalation_path == [LOCAL] and result.model_used == LOCAL
    assert [c[0] for c in gw.calls] == [LOCAL]
    assert result.retrieved_artifacts.rag_ids == ["pb-route", "pb-partial"]
    assert result.context_bundle is not None
    assert result.context_bundle.validation_steps == ["- verify gateway routing table entries"]
    assert "## Validation checklist (from accepted runs)" in gw.calls[0][2]
    assert len(rows) == 1 and rows[0]["recorded_run_id"] == result.recorded_run_id
    assert rows[0]["model_response"] == GOOD
    assert rows[0]["lakevec"]["retriever"] == "jaccard"
    assert rows[0]["lakevec"]["gateway_api"] == "fake"


def test_local_gate_failure_without_escalation_is_recorded(tmp_path: Path) -> None:
    result, gw, rows = run(tmp_path, {LOCAL: ok(SHORT)})
    assert result.validation_result.passed is False
    assert result.validation_result.reasons == [
        "response too short (2 chars; min 80)",
        "response shares no tokens with validation checklist "
        "(may not have followed prior patterns)",
    ]
    assert result.escalation_path == [LOCAL]
    assert len(gw.calls) == 1
    assert rows[0]["validation_result"]["passed"] is False


def test_recovered_via_escalation(tmp_path: Path) -> None:
    result, gw, rows = run(tmp_path, {LOCAL: ok(SHORT), BIG: ok(GOOD)}, allow_escalation=True)
    assert result.validation_result.model_dump() == {
        "passed": True,
        "reasons": [f"recovered via escalation to {BIG}"],
    }
    assert result.escalation_path == [LOCAL, BIG]
    assert result.model_used == BIG and result.model_response == GOOD
    assert gw.calls[0][1:] == gw.calls[1][1:]  # the same prompt goes to both models
    assert rows[0]["escalation_path"] == [LOCAL, BIG]


def test_escalated_answer_failing_the_gate_keeps_its_own_reasons(tmp_path: Path) -> None:
    hedge = "As an AI I cannot verify the gateway routing table from here, sorry about it all."
    result, _, _ = run(tmp_path, {LOCAL: ok(SHORT), BIG: ok(hedge)}, allow_escalation=True)
    assert result.validation_result.model_dump() == {
        "passed": False,
        "reasons": [
            "filler/hedge phrase detected: /as an ai/i",
            "filler/hedge phrase detected: /i cannot/i",
        ],
    }
    assert result.model_used == BIG and result.escalation_path == [LOCAL, BIG]


def test_escalation_call_failing_appends_to_the_local_reasons(tmp_path: Path) -> None:
    result, _, _ = run(
        tmp_path, {LOCAL: ok(SHORT), BIG: failed("HTTP 503: overloaded")}, allow_escalation=True
    )
    assert result.validation_result.reasons == [
        "response too short (2 chars; min 80)",
        "response shares no tokens with validation checklist "
        "(may not have followed prior patterns)",
        "escalation also failed: HTTP 503: overloaded",
    ]
    assert result.model_used == LOCAL and result.model_response == SHORT


def test_local_call_failure_then_escalation_failure(tmp_path: Path) -> None:
    result, _, rows = run(
        tmp_path,
        {LOCAL: failed("cannot connect to x"), BIG: failed("timed out after 180s")},
        allow_escalation=True,
    )
    assert result.validation_result.reasons == [
        "local call failed: cannot connect to x",
        "escalation also failed: timed out after 180s",
    ]
    assert result.model_response == "" and result.model_used == LOCAL
    assert rows[0]["model_response"] == ""


def test_local_call_failure_recovered_by_escalation(tmp_path: Path) -> None:
    result, _, _ = run(tmp_path, {LOCAL: failed("HTTP 500: x"), BIG: ok(GOOD)},
                       allow_escalation=True)
    assert result.validation_result.reasons == [f"recovered via escalation to {BIG}"]


def test_local_only_never_escalates(tmp_path: Path) -> None:
    result, gw, _ = run(tmp_path, {LOCAL: failed("HTTP 500: boom"), BIG: ok(GOOD)},
                        allow_escalation=True, local_only=True)
    assert result.escalation_path == [LOCAL]
    assert [c[0] for c in gw.calls] == [LOCAL]
    assert result.validation_result.reasons == ["local call failed: HTTP 500: boom"]


def test_no_retrieval_baseline(tmp_path: Path) -> None:
    gateway = FakeGateway({LOCAL: ok(GOOD)})
    log = tmp_path / "runs.jsonl"
    result = replay(
        ReplayRequest(task=TASK, no_retrieval=True), retriever=None, gateway=gateway,
        evidence_path=log, local_model=LOCAL, escalation_model=BIG, clock=FakeClock(),
    )
    assert result.context_bundle is None
    assert result.retrieved_artifacts.rag_ids == []
    assert gateway.calls[0][2] == f"Task: {TASK}\n\nProduce the answer."
    row = json.loads(log.read_text(encoding="utf-8"))
    assert row["context_bundle"] is None and row["lakevec"]["retriever"] is None
    schema_check(row)


def test_ids_and_times_follow_the_seed_rules(tmp_path: Path) -> None:
    task = "héllo ✓ routing"
    result, _, _ = run(tmp_path, {LOCAL: ok(GOOD)}, task=task)
    expected_hash = hashlib.sha256(task.encode("utf-8")).hexdigest()
    assert result.task_hash == expected_hash
    assert result.recorded_at == "2026-04-27T04:42:58.123Z"
    at_hash = hashlib.sha256(b"2026-04-27T04:42:58.123Z").hexdigest()
    assert result.recorded_run_id == f"replay:{expected_hash[:16]}:{at_hash[:12]}"
    assert result.duration_ms == 250


def test_recorded_at_is_converted_to_utc() -> None:
    moment = datetime(2026, 1, 1, 1, 0, 0, 5000, tzinfo=timezone(timedelta(hours=-5)))
    assert iso_ms(moment) == "2026-01-01T06:00:00.005Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        iso_ms(datetime(2026, 1, 1))


def test_dry_run_is_deterministic_and_needs_no_gateway(tmp_path: Path) -> None:
    kwargs: dict[str, Any] = {
        "retriever": JaccardRetriever(CORPUS), "gateway": None, "evidence_path": None,
        "local_model": LOCAL, "escalation_model": BIG,
    }
    first = replay(ReplayRequest(task=TASK, dry_run=True), **kwargs)
    second = replay(ReplayRequest(task=TASK, dry_run=True), **kwargs)
    assert first.model_response == second.model_response
    assert first.model_response == "\n".join([
        f"Synthetic dry-run response for task: {TASK}",
        "",
        "Retrieved 2 playbooks; 1 accepted, 1 partial.",
        "Following validation checklist:",
        "- - verify gateway routing table entries",
        "",
        "Anchored on prior accepted: Gateway routing audit",
    ])
    assert first.validation_result.passed is True
    assert first.lakevec is not None and first.lakevec.gateway_api == "dry-run"


def test_dry_run_without_retrieval_and_long_task() -> None:
    text = dry_run_response("t" * 200, None)
    assert text == (
        "Synthetic dry-run response for task: " + "t" * 120 + "\n\n"
        "No retrieval context — answering from task alone. "
        "Verify and check produced output before approving."
    )


def test_dry_run_escalation_marks_the_second_answer(tmp_path: Path) -> None:
    # The synthetic answer echoes the task, so a hedge in the task fails the gate twice.
    result = replay(
        ReplayRequest(task="as an AI, audit routing", dry_run=True, allow_escalation=True,
                      no_retrieval=True),
        retriever=None, gateway=None, evidence_path=tmp_path / "r.jsonl",
        local_model=LOCAL, escalation_model=BIG,
    )
    assert result.escalation_path == [LOCAL, BIG]
    assert result.model_response.endswith("\n\n[ESCALATED]")
    assert result.validation_result.reasons == ["filler/hedge phrase detected: /as an ai/i"]


@pytest.mark.parametrize("task", ["", "   \n\t"])
def test_empty_task_is_a_usage_problem(task: str) -> None:
    with pytest.raises(UsageProblem, match="empty"):
        replay(ReplayRequest(task=task, dry_run=True, no_retrieval=True),
               retriever=None, gateway=None, evidence_path=None)


def test_huge_task_is_a_usage_problem() -> None:
    request = ReplayRequest(task="x" * (MAX_TASK_CHARS + 1), dry_run=True, no_retrieval=True)
    with pytest.raises(UsageProblem, match="limit is 100,000"):
        replay(request, retriever=None, gateway=None, evidence_path=None)
    at_limit = ReplayRequest(task="x" * MAX_TASK_CHARS, dry_run=True, no_retrieval=True)
    assert replay(at_limit, retriever=None, gateway=None, evidence_path=None).input_task


def test_missing_retriever_or_gateway_is_a_usage_problem() -> None:
    with pytest.raises(UsageProblem, match="retriever is required"):
        replay(ReplayRequest(task="t", dry_run=True), retriever=None, gateway=None,
               evidence_path=None)
    with pytest.raises(UsageProblem, match="gateway is required"):
        replay(ReplayRequest(task="t", no_retrieval=True), retriever=None, gateway=None,
               evidence_path=None)


def test_models_default_to_the_seed_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LH_REPLAY_LOCAL_MODEL", "tiny:1b")
    monkeypatch.setenv("LH_REPLAY_ESCALATION_MODEL", "huge:1t")
    result = replay(
        ReplayRequest(task="as an AI", dry_run=True, no_retrieval=True, allow_escalation=True),
        retriever=None, gateway=None, evidence_path=None,
    )
    assert result.escalation_path == ["tiny:1b", "huge:1t"]
    monkeypatch.delenv("LH_REPLAY_LOCAL_MODEL")
    monkeypatch.delenv("LH_REPLAY_ESCALATION_MODEL")
    result = replay(
        ReplayRequest(task="as an AI", dry_run=True, no_retrieval=True, allow_escalation=True),
        retriever=None, gateway=None, evidence_path=None,
    )
    assert result.escalation_path == [LOCAL, BIG]


def test_unwritable_evidence_log_is_an_infrastructure_error(tmp_path: Path) -> None:
    with pytest.raises(EvidenceError):
        replay(ReplayRequest(task="t", dry_run=True, no_retrieval=True), retriever=None,
               gateway=None, evidence_path=tmp_path)


def test_report_mirrors_the_seed_cli(tmp_path: Path) -> None:
    result, _, _ = run(tmp_path, {LOCAL: ok(SHORT), BIG: ok("y" * 1600 + " gateway")},
                       allow_escalation=True)
    lines = format_report(result).split("\n")
    assert lines[0] == f"[replay] run_id={result.recorded_run_id}"
    assert lines[1] == "[replay] retrieval: 2 playbooks"
    assert lines[2] == f"[replay] escalation_path: {LOCAL} → {BIG}"
    assert lines[3] == f"[replay] model_used: {BIG} · 250ms"
    assert lines[4] == f"[replay] validation: PASS (recovered via escalation to {BIG})"
    assert lines[5:7] == ["", "─── response ───"]
    assert lines[7] == "y" * 1500
    assert lines[8] == "... [108 more chars]"


# ─── Real HTTP servers on 127.0.0.1 ─────────────────────────────────────


def write_corpus(root: Path) -> Path:
    path = root / "exports" / "rag" / "playbooks.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text("".join(r.model_dump_json() + "\n" for r in CORPUS), encoding="utf-8")
    return path


def test_full_run_against_a_v1_chat_server_with_escalation(tmp_path: Path) -> None:
    write_corpus(tmp_path)
    replies = {LOCAL: Reply.answer("I cannot."), BIG: Reply.answer(GOOD)}
    with chat_server("/v1/chat", replies) as srv:
        result = run_replay(
            ReplayRequest(task=TASK, allow_escalation=True), root=tmp_path,
            retriever_kind="jaccard", gateway_url=srv.url, local_model=LOCAL,
            escalation_model=BIG, timeout=10,
        )
    assert result.escalation_path == [LOCAL, BIG]
    assert result.validation_result.reasons == [f"recovered via escalation to {BIG}"]
    assert [s.path for s in srv.seen] == ["/v1/chat", "/v1/chat"]
    assert [s.body["provider"] for s in srv.seen] == ["ollama", "ollama_cloud"]
    assert srv.seen[0].body["max_tokens"] == 1500 and srv.seen[0].body["temperature"] == 0.1
    user_prompt = srv.seen[0].body["messages"][1]["content"]
    assert "### Gateway routing audit (score: accepted)" in user_prompt
    log = tmp_path / "data" / "_kb" / "replay_runs.jsonl"
    row = json.loads(log.read_text(encoding="utf-8"))
    schema_check(row)
    assert row["escalation_path"] == [LOCAL, BIG]
    assert row["validation_result"]["reasons"] == [f"recovered via escalation to {BIG}"]
    assert row["lakevec"]["gateway_api"] == "lakehouse"


def test_full_run_against_an_openai_compatible_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_corpus(tmp_path)
    monkeypatch.setenv("LAKEVEC_API_KEY", "sk-local")
    with chat_server("/v1/chat/completions", {LOCAL: Reply.answer(GOOD)}) as srv:
        result = run_replay(
            ReplayRequest(task=TASK), root=tmp_path, retriever_kind="jaccard",
            gateway_url=srv.url, api="openai", local_model=LOCAL, escalation_model=BIG,
            evidence_path=tmp_path / "custom.jsonl",
        )
    assert result.validation_result.passed is True
    assert srv.seen[0].path == "/v1/chat/completions"
    assert srv.seen[0].headers["authorization"] == "Bearer sk-local"
    assert "provider" not in srv.seen[0].body
    schema_check(json.loads((tmp_path / "custom.jsonl").read_text(encoding="utf-8")))
    assert not (tmp_path / "data").exists()


def test_server_errors_are_recorded_not_raised(tmp_path: Path) -> None:
    write_corpus(tmp_path)
    replies = {LOCAL: Reply(503, b"model loading"), BIG: Reply(200, b"not json")}
    with chat_server("/v1/chat", replies) as srv:
        result = run_replay(
            ReplayRequest(task=TASK, allow_escalation=True), root=tmp_path,
            retriever_kind="jaccard", gateway_url=srv.url, local_model=LOCAL,
            escalation_model=BIG,
        )
    reasons = result.validation_result.reasons
    assert reasons[0] == "local call failed: HTTP 503: model loading"
    assert reasons[1].startswith(f"escalation also failed: invalid JSON from {srv.url}/v1/chat")
    assert len(reasons) == 2


def test_run_replay_infrastructure_errors(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="corpus file not found"):
        run_replay(ReplayRequest(task=TASK, dry_run=True), root=tmp_path,
                   retriever_kind="jaccard")
    with pytest.raises(IndexMissingError, match="build-index"):
        run_replay(ReplayRequest(task=TASK, dry_run=True), root=tmp_path, retriever_kind="hnsw")
    assert not (tmp_path / "data").exists()  # nothing is logged when the run cannot start


def test_model_name_that_is_not_utf8_is_a_usage_problem(tmp_path: Path) -> None:
    # A non-UTF-8 environment variable arrives as lone surrogates (surrogateescape).
    with pytest.raises(UsageProblem, match="local model name is not valid UTF-8"):
        replay(ReplayRequest(task="t", dry_run=True, no_retrieval=True), retriever=None,
               gateway=None, evidence_path=tmp_path / "r.jsonl", local_model="m\udcff")
    assert not (tmp_path / "r.jsonl").exists()


def test_provenance_comes_from_the_retrievers_snapshot(tmp_path: Path) -> None:
    from types import SimpleNamespace

    snapshot = SimpleNamespace(
        manifest=SimpleNamespace(version=7, model=SimpleNamespace(model_id="org/model")),
        manifest_sha256="f" * 64,
    )

    class SnapshotBacked(JaccardRetriever):
        name = "hybrid"

    retriever = SnapshotBacked(CORPUS)
    retriever.snapshot = snapshot  # type: ignore[assignment]
    result = replay(
        ReplayRequest(task=TASK, dry_run=True), retriever=retriever, gateway=None,
        evidence_path=None, local_model=LOCAL, escalation_model=BIG,
    )
    assert result.lakevec is not None
    assert result.lakevec.model_dump() == {
        "version": result.lakevec.version, "retriever": "hybrid", "index_version": 7,
        "manifest_sha256": "f" * 64, "embedding_model": "org/model", "gateway_api": "dry-run",
        "tape": None, "exchanges": 0,
    }
    baseline = replay(
        ReplayRequest(task=TASK, dry_run=True, no_retrieval=True), retriever=retriever,
        gateway=None, evidence_path=None, local_model=LOCAL, escalation_model=BIG,
    )
    assert baseline.lakevec is not None and baseline.lakevec.retriever is None
    assert baseline.lakevec.index_version is None
