"""Reading evidence rows of every runtime: runtime and dry-run detection, bad lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lakevec.errors import EvidenceError
from lakevec.replay.engine import ReplayRequest, dry_run_response, replay
from lakevec.report.rows import (
    DRY_RUN_PREFIX,
    BadLine,
    Row,
    Run,
    SourceFile,
    detect_runtime,
    experiment_of,
    is_dry_run,
    parse_row,
    read_rows,
)
from lakevec.report.synthetic import synthetic_rows

TASK = "Summarise the gateway routing incident"
HASH16 = "0123456789abcdef"


def seed_row(**overrides: Any) -> dict[str, Any]:
    """A TypeScript-shaped row (no lakevec key, Date.now() run id)."""
    row: dict[str, Any] = {
        "schema": "replay_run.v1", "input_task": TASK, "task_hash": "0" * 64,
        "retrieved_artifacts": {"rag_ids": ["pb-1"]},
        "context_bundle": {
            "retrieved_playbooks": [{"rag_id": "pb-1", "source_run_id": "r", "title": "T",
                                     "content_preview": "p", "success_score": "accepted",
                                     "tags": ["a"], "score": 0.5}],
            "prior_successful_outputs": [], "failure_patterns": [],
            "validation_steps": ["Verify it"], "bundle_token_estimate": 10,
        },
        "model_response": "an answer", "model_used": "qwen3.5:latest",
        "escalation_path": ["qwen3.5:latest"],
        "validation_result": {"passed": False, "reasons": ["response too short (9 chars; min 80)"]},
        "recorded_run_id": f"replay:{HASH16}:1777741364391",
        "recorded_at": "2026-05-02T17:02:43.100Z", "duration_ms": 1200,
    }
    row.update(overrides)
    return row


def go_row(recorded_at: str = "2026-05-02T08:31:02.123456789Z") -> dict[str, Any]:
    import hashlib

    suffix = hashlib.sha256(recorded_at.encode()).hexdigest()[:12]
    return seed_row(recorded_at=recorded_at, recorded_run_id=f"replay:{HASH16}:{suffix}")


def read_all(path: Path) -> tuple[list[tuple[Run, Row]], list[BadLine], list[SourceFile]]:
    sources: list[SourceFile] = []
    runs: list[tuple[Run, Row]] = []
    bad: list[BadLine] = []
    for item in read_rows([path], sources):
        if isinstance(item, BadLine):
            bad.append(item)
        else:
            run, row, raw = item
            assert json.loads(raw) == row
            runs.append((run, row))
    return runs, bad, sources


def test_runtime_is_told_by_the_lakevec_key_then_the_run_id() -> None:
    assert detect_runtime(seed_row(lakevec={"version": "0.1.0"})) == "lakevec"
    assert detect_runtime(seed_row()) == "typescript"
    assert detect_runtime(go_row()) == "go"
    # A 12-hex suffix that is not sha256(recorded_at)[:12] is not provably Go.
    assert detect_runtime(seed_row(recorded_run_id=f"replay:{HASH16}:abcdefabcdef")) \
        == "typescript-or-go"
    assert detect_runtime(seed_row(recorded_run_id="something else")) == "typescript-or-go"


def test_go_nanosecond_times_parse_to_the_utc_day() -> None:
    run = parse_row(go_row("2026-05-02T23:59:59.999999999Z"))
    assert run.day == "2026-05-02"
    assert run.recorded_at.microsecond == 999999
    offset = parse_row(seed_row(recorded_at="2026-05-03T01:00:00+02:00"))
    assert offset.day == "2026-05-02"


def test_dry_runs_by_gateway_api_or_by_the_synthetic_answer() -> None:
    assert dry_run_response(TASK, None).startswith(DRY_RUN_PREFIX)
    assert is_dry_run(seed_row(lakevec={"gateway_api": "dry-run"}))
    assert not is_dry_run(seed_row(lakevec={"gateway_api": "lakehouse"}))
    assert is_dry_run(seed_row(model_response=dry_run_response(TASK, None)))
    # A lakevec row says what it is: its response text does not decide.
    assert not is_dry_run(seed_row(model_response=DRY_RUN_PREFIX + " x",
                                   lakevec={"gateway_api": "openai"}))
    assert not is_dry_run(seed_row())


def test_splits_fields_for_seed_and_lakevec_rows() -> None:
    ts = parse_row(seed_row(escalation_path=["a", "b"], model_used="b"))
    assert (ts.model, ts.model_used, ts.escalated) == ("a", "b", True)
    assert (ts.retriever, ts.retrieval) == ("jaccard", True)
    assert parse_row(seed_row(context_bundle=None)).retriever == "none"
    lk = parse_row(seed_row(lakevec={"retriever": "hybrid", "gateway_api": "lakehouse"}))
    assert (lk.runtime, lk.retriever) == ("lakevec", "hybrid")
    assert parse_row(seed_row(lakevec={"retriever": None}, context_bundle=None)).retriever \
        == "none"


@pytest.mark.parametrize(("lk", "expected"), [
    (None, (None, None)),
    ({}, (None, None)),
    ({"experiment": "exp-1", "arm": "B"}, ("exp-1", "B")),
    ({"experiment": "exp-1"}, ("exp-1", None)),
    ({"experiment": {"id": "exp-2", "arm": "A"}}, ("exp-2", "A")),
    ({"experiment": {"experiment_id": "exp-3", "variant": "v2"}}, ("exp-3", "v2")),
    ({"experiment": {"name": 7}}, ("7", None)),
    ({"experiment": ["not", "a", "tag"]}, (None, None)),
])
def test_experiment_tags_are_read_in_any_likely_shape(lk: Any, expected: Any) -> None:
    assert experiment_of(lk) == expected


def test_bad_lines_are_counted_with_line_numbers(tmp_path: Path) -> None:
    good = json.dumps(seed_row())
    lines = [
        good.encode(),
        b"",  # blank: skipped, not bad
        b"{torn",
        b"[1, 2]",
        json.dumps({"schema": "other.v1"}).encode(),
        json.dumps(seed_row(recorded_at="yesterday")).encode(),
        json.dumps(seed_row(validation_result={"passed": "yes"})).encode(),
        json.dumps(seed_row(escalation_path=None)).encode(),
        json.dumps(seed_row(context_bundle="bundle")).encode(),
        b"\xff\xfe not utf-8",
        b"[" * 5000 + b"]" * 5000,
        b'{"n": ' + b"9" * 5000 + b"}",
        json.dumps({"no": "schema"}).encode(),
        good.encode(),
    ]
    path = tmp_path / "log.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    runs, bad, sources = read_all(path)
    assert len(runs) == 2
    assert [(b.line, b.reason.split(" ")[0]) for b in bad] == [
        (3, "not"), (4, "not"), (5, "not"), (6, "recorded_at"), (7, "validation_result.passed"),
        (8, "escalation_path"), (9, "context_bundle"), (10, "not"), (11, "not"), (12, "not"),
        (13, "not"),
    ]
    reasons = {b.line: b.reason for b in bad}
    assert reasons[3].startswith("not JSON")
    assert reasons[4] == "not a JSON object but a JSON list"
    assert reasons[5] == "not a replay_run.v1 row (schema 'other.v1')"
    assert reasons[10] == "not UTF-8 (byte 1)"
    assert "nested too deeply" in reasons[11]
    assert reasons[13] == "not a replay_run.v1 row (schema missing)"
    assert (sources[0].lines, sources[0].rows, sources[0].bad) == (14, 2, 11)
    assert [r.line for r, _ in runs] == [1, 14]


def test_tolerated_shapes_read_fine(tmp_path: Path) -> None:
    row = go_row()
    row["context_bundle"]["retrieved_playbooks"][0]["tags"] = None  # Go's nil slice
    del row["duration_ms"]
    del row["model_response"]
    row["lakevec_future_key"] = {"x": 1}
    run = parse_row(row)
    assert run.duration_ms is None and run.runtime == "go"


def test_a_missing_log_is_an_evidence_error(tmp_path: Path) -> None:
    with pytest.raises(EvidenceError, match="no evidence log at"):
        read_all(tmp_path / "missing.jsonl")


def test_a_row_the_engine_writes_reads_back(tmp_path: Path) -> None:
    log = tmp_path / "data" / "_kb" / "replay_runs.jsonl"
    replay(ReplayRequest(task=TASK, dry_run=True, no_retrieval=True), retriever=None,
           gateway=None, evidence_path=log)
    (run, row), = read_all(log)[0]
    assert run.runtime == "lakevec" and run.dry_run and not run.retrieval
    assert row["input_task"] == TASK


def test_synthetic_rows_have_each_runtimes_shape() -> None:
    runs = [parse_row(row) for row in synthetic_rows(400, seed=3)]
    assert {r.runtime for r in runs} == {"lakevec", "typescript", "go"}
    assert any(r.dry_run for r in runs) and any(r.escalated for r in runs)
    assert any(r.experiment for r in runs)


def test_synthetic_rows_match_the_row_model_except_gos_null_tags() -> None:
    from lakevec.replay.evidence import ReplayRunRow

    for row in synthetic_rows(300, seed=4):
        bundle = row["context_bundle"]
        if detect_runtime(row) == "go" and bundle is not None:
            for art in bundle["retrieved_playbooks"]:
                art["tags"] = art["tags"] or []  # Go writes a nil slice as null
        ReplayRunRow.model_validate(row)
