"""Evidence rows: shape, schema, truncation, error handling and concurrent appends."""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import select
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from lakevec.errors import EvidenceError
from lakevec.replay.bundle import ContextBundle
from lakevec.replay.evidence import (
    DEFAULT_SCHEMA_PATH,
    Provenance,
    ReplayResult,
    RetrievedIds,
    append_evidence,
    encode_row,
    replay_run_json_schema,
    schema_text,
    to_row,
)
from lakevec.replay.gate import ValidationResult

SEED_KEYS = [
    "schema", "input_task", "task_hash", "retrieved_artifacts", "context_bundle",
    "model_response", "model_used", "escalation_path", "validation_result",
    "recorded_run_id", "recorded_at", "duration_ms",
]


def make_result(response: str = "answer", task: str = "a task", **kw: Any) -> ReplayResult:
    fields: dict[str, Any] = {
        "input_task": task,
        "task_hash": "ab" * 32,
        "retrieved_artifacts": RetrievedIds(rag_ids=["r1"]),
        "context_bundle": ContextBundle(
            retrieved_playbooks=[], prior_successful_outputs=[], failure_patterns=[],
            validation_steps=["- verify x"], bundle_token_estimate=3,
        ),
        "model_response": response,
        "model_used": "qwen3.5:latest",
        "escalation_path": ["qwen3.5:latest"],
        "validation_result": ValidationResult(passed=True, reasons=[]),
        "recorded_run_id": "replay:abababababababab:0123456789ab",
        "recorded_at": "2026-04-27T04:42:58.123Z",
        "duration_ms": 12,
        "lakevec": Provenance(version="0.1.0", retriever="jaccard", gateway_api="dry-run"),
    }
    fields.update(kw)
    return ReplayResult(**fields)


def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(DEFAULT_SCHEMA_PATH.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def test_committed_schema_is_up_to_date() -> None:
    assert DEFAULT_SCHEMA_PATH.read_text(encoding="utf-8") == schema_text(), (
        "docs/replay_run.v1.schema.json is stale — run `python -m lakevec.replay.evidence`"
    )
    assert replay_run_json_schema()["properties"]["schema"]["const"] == "replay_run.v1"


def test_row_has_the_seed_keys_in_order_plus_lakevec() -> None:
    row = json.loads(encode_row(make_result()))
    assert list(row) == [*SEED_KEYS, "lakevec"]
    assert row["schema"] == "replay_run.v1"
    validator().validate(row)


def test_row_without_provenance_has_exactly_the_seed_keys() -> None:
    row = json.loads(encode_row(make_result(lakevec=None)))
    assert list(row) == SEED_KEYS
    validator().validate(row)


def test_no_retrieval_row_keeps_a_null_bundle() -> None:
    row = json.loads(
        encode_row(make_result(context_bundle=None, retrieved_artifacts=RetrievedIds(rag_ids=[])))
    )
    assert row["context_bundle"] is None and row["retrieved_artifacts"] == {"rag_ids": []}
    validator().validate(row)


def test_line_is_compact_json_with_raw_utf8() -> None:
    line = encode_row(make_result(task="tâche ✓"))
    assert line.endswith(b"}\n") and line.count(b"\n") == 1
    assert "tâche ✓".encode() in line
    assert b'{"schema":"replay_run.v1","input_task"' in line


def test_model_response_is_truncated_to_4000_in_the_log_only() -> None:
    result = make_result(response="r" * 5000)
    row = to_row(result)
    assert len(row.model_response) == 4000
    assert len(result.model_response) == 5000
    validator().validate(json.loads(encode_row(result)))


def test_seed_runtime_rows_validate_too() -> None:
    seed_row = json.loads(encode_row(make_result(lakevec=None)))
    seed_row["recorded_run_id"] = "replay:abababababababab:1777261378123"  # TS: Date.now()
    validator().validate(seed_row)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: r.update(extra_key=1),
        lambda r: r.pop("schema"),
        lambda r: r.update(schema="replay_run.v2"),
        lambda r: r.update(task_hash="xyz"),
        lambda r: r.update(recorded_at="2026-04-27 04:42:58"),
        lambda r: r.update(model_response="x" * 4001),
        lambda r: r["validation_result"].pop("reasons"),
        lambda r: r.update(lakevec={"version": "0.1.0"}),
    ],
)
def test_schema_rejects_malformed_rows(mutate: Any) -> None:
    row = json.loads(encode_row(make_result()))
    mutate(row)
    with pytest.raises(jsonschema.ValidationError):
        validator().validate(row)


def test_append_creates_directories_and_appends(tmp_path: Path) -> None:
    log = tmp_path / "data" / "_kb" / "replay_runs.jsonl"
    append_evidence(log, make_result(task="one"))
    append_evidence(log, make_result(task="two"))
    rows = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert [r["input_task"] for r in rows] == ["one", "two"]


def test_append_repairs_a_torn_last_line(tmp_path: Path) -> None:
    log = tmp_path / "runs.jsonl"
    log.write_bytes(b'{"schema":"replay_run.v1","inpu')  # a writer died mid-line
    append_evidence(log, make_result(task="after"))
    lines = log.read_bytes().split(b"\n")
    assert lines[0] == b'{"schema":"replay_run.v1","inpu'
    assert json.loads(lines[1])["input_task"] == "after"


def test_unwritable_log_raises_evidence_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    with pytest.raises(EvidenceError, match="cannot open evidence log"):
        append_evidence(blocker / "runs.jsonl", make_result())
    with pytest.raises(EvidenceError, match="--evidence PATH"):
        append_evidence(tmp_path, make_result())  # a directory, not a file


def test_lock_held_too_long_raises(tmp_path: Path) -> None:
    log = tmp_path / "runs.jsonl"
    log.touch()
    with log.open("rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        with pytest.raises(EvidenceError, match="stayed locked"):
            append_evidence(log, make_result(), lock_timeout=0.1)
    assert log.read_bytes() == b""


ROWS_PER_PROC = 50
PROCS = 4


def _writer(log: str, proc: int) -> None:
    for i in range(ROWS_PER_PROC):
        # Each row is far above PIPE_BUF so a torn write would be visible.
        body = f"{proc}:{i}:" + chr(ord("a") + proc) * 6000
        append_evidence(Path(log), make_result(response=body[:3990], task=body))


def test_concurrent_appends_from_processes_stay_intact(tmp_path: Path) -> None:
    log = tmp_path / "runs.jsonl"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(log), p)) for p in range(PROCS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * PROCS

    lines = log.read_bytes().split(b"\n")
    assert lines[-1] == b""
    rows = [json.loads(line) for line in lines[:-1]]
    assert len(rows) == PROCS * ROWS_PER_PROC
    assert min(len(line) for line in lines[:-1]) > select.PIPE_BUF
    seen = set()
    check = validator()
    for row in rows:
        check.validate(row)
        proc, i, fill = row["input_task"].split(":")
        assert fill == chr(ord("a") + int(proc)) * 6000
        seen.add((int(proc), int(i)))
    assert seen == {(p, i) for p in range(PROCS) for i in range(ROWS_PER_PROC)}
    # Per-writer order is preserved by O_APPEND under the lock.
    for writer in range(PROCS):
        mine = [int(r["input_task"].split(":")[1]) for r in rows
                if r["input_task"].startswith(f"{writer}:")]
        assert mine == list(range(ROWS_PER_PROC))
    assert os.stat(log).st_size == sum(len(line) + 1 for line in lines[:-1])


def test_lone_surrogates_are_escaped_like_json_stringify() -> None:
    """A library caller's lone surrogate cannot stop the row: it becomes a \\uXXXX escape
    (a response's becomes U+FFFD, as the gateway does)."""
    line = encode_row(make_result(response="bad \ud800 end", task="t\udfff"))
    assert '"model_response":"bad \ufffd end"'.encode() in line
    assert b'"input_task":"t\\udfff"' in line
    assert json.loads(line)["input_task"] == "t\udfff"
    validator().validate(json.loads(line))


# ─── byte parity with the TypeScript seed: numbers as JavaScript writes them ──


@pytest.mark.parametrize(
    ("value", "js"),
    [
        (1.0, "1"), (0.5, "0.5"), (7.99744081893794e-05, "0.0000799744081893794"),
        (1e-7, "1e-7"), (1.5e-7, "1.5e-7"), (123456789012345680000.0, "123456789012345680000"),
        (1e21, "1e+21"), (-0.0, "0"), (0.1, "0.1"), (1e-6, "0.000001"), (100.0, "100"),
        (0.3333333333333333, "0.3333333333333333"), (-2.5e-9, "-2.5e-9"),
        (1.7976931348623157e308, "1.7976931348623157e+308"), (5e-324, "5e-324"),
    ],
)
def test_numbers_are_written_as_javascript_writes_them(value: float, js: str) -> None:
    from lakevec.replay.jsjson import js_number, stringify

    assert js_number(value) == js
    assert stringify({"score": value}) == f'{{"score":{js}}}'


# JSON.stringify of a seed row whose artifacts scored exactly 1 and below 1e-4.
SEED_LINE = (
    '{"schema":"replay_run.v1","input_task":"audit gateway routing table","task_hash":"'
    + "ab" * 32 + '","retrieved_artifacts":{"rag_ids":["pb-1","pb-2"]},"context_bundle":'
    '{"retrieved_playbooks":[{"rag_id":"pb-1","source_run_id":"run-1","title":"audit gateway '
    'routing table","content_preview":"x","success_score":"accepted","tags":[],"score":1},'
    '{"rag_id":"pb-2","source_run_id":"run-2","title":"t","content_preview":"y","success_score"'
    ':"accepted","tags":["a"],"score":0.0000799744081893794}],"prior_successful_outputs":[],'
    '"failure_patterns":[],"validation_steps":[],"bundle_token_estimate":0},"model_response":'
    '"ok","model_used":"qwen3.5:latest","escalation_path":["qwen3.5:latest"],'
    '"validation_result":{"passed":false,"reasons":["response too short (2 chars; min 80)"]},'
    '"recorded_run_id":"replay:abababababababab:1777264978123","recorded_at":'
    '"2026-04-27T04:42:58.123Z","duration_ms":5}\n'
)


def test_a_seed_row_with_scores_of_1_and_below_1e_4_re_encodes_byte_identically() -> None:
    from lakevec.replay.evidence import ReplayRunRow

    row = ReplayRunRow.model_validate(json.loads(SEED_LINE))
    assert encode_row(row) == SEED_LINE.encode()
    assert b'"score":1.0' not in encode_row(row) and b"e-05" not in encode_row(row)


def test_lakevec_rows_write_an_exact_jaccard_match_as_1(tmp_path: Path) -> None:
    from lakevec.corpus import PlaybookRecord
    from lakevec.replay.engine import ReplayRequest, replay
    from lakevec.retrieval.jaccard import JaccardRetriever

    record = PlaybookRecord(id="pb-1", title="audit gateway", content="routing table",
                            source_run_id="run-1", success_score="accepted")
    log = tmp_path / "runs.jsonl"
    replay(ReplayRequest(task="audit gateway routing table", dry_run=True),
           retriever=JaccardRetriever([record]), gateway=None, evidence_path=log)
    line = log.read_bytes()
    assert b',"score":1}' in line and b'"score":1.0' not in line
