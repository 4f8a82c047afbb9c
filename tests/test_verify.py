"""`lakevec verify`: runs recorded against a real 127.0.0.1 server replay bit-exact, offline,
and every kind of tampering (tape byte, row field, prompt template, gate) is a divergence."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from lakevec.cli import main
from lakevec.paths import default_corpus
from tests.chat_server import Reply, chat_server, closed_port
from tests.conftest import write_jsonl

pytestmark = pytest.mark.usefixtures("clean_replay_env")


LOCAL = "qwen3.5:latest"
BIG = "deepseek-v3.1:671b"
GOOD = "Verify the gateway routing table: provider entries map /v1/chat to the adapter. " * 2
TASK = "audit gateway routing table"
RECORDS = [
    {"id": "pb-route", "title": "Gateway routing audit", "success_score": "accepted",
     "content": "Audit of the provider table.\n- verify gateway routing table entries",
     "tags": ["audit"], "source_run_id": "run-1", "source_category": "audit"},
    {"id": "pb-partial", "title": "Routing partial", "success_score": "partially_accepted",
     "content": "routing notes without proof", "tags": [], "source_run_id": "run-2",
     "source_category": "audit"},
]
# A row as the TypeScript seed writes it (no lakevec key, millisecond run id).
SEED_ROW: dict[str, Any] = {
    "schema": "replay_run.v1", "input_task": "t", "task_hash": "e3" * 32,
    "retrieved_artifacts": {"rag_ids": []}, "context_bundle": None, "model_response": "x",
    "model_used": LOCAL, "escalation_path": [LOCAL],
    "validation_result": {"passed": False, "reasons": ["empty response"]},
    "recorded_run_id": "replay:e3e3e3e3e3e3e3e3:1777264978123",
    "recorded_at": "2026-04-27T04:42:58.123Z", "duration_ms": 5,
}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write_jsonl(default_corpus(tmp_path), RECORDS)
    return tmp_path


def cli(root: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--root", str(root), *args])


def replay_run(root: Path, *args: str) -> str:
    res = cli(root, "replay", "--task", TASK, "--retriever", "jaccard", *args)
    assert res.exit_code == 0, res.output
    return res.stdout.split("\n")[0].split("=", 1)[1]


def log_path(root: Path) -> Path:
    return root / "data" / "_kb" / "replay_runs.jsonl"


def rows(root: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log_path(root).read_text("utf-8").splitlines()]


def tape_path(root: Path, row: dict[str, Any]) -> Path:
    digest = row["lakevec"]["tape"]
    return root / "data" / "_kb" / "tapes" / digest[:2] / f"{digest}.json"


def verify(root: Path, *args: str) -> Result:
    return cli(root, "verify", *args)


def verdicts(res: Result) -> dict[str, str]:
    out = {}
    for line in res.stdout.splitlines()[:-1]:
        run_id, _, verdict = line.partition("  ")
        if not verdict.startswith("retrieval "):
            out[run_id] = verdict
    return out


@pytest.fixture
def recorded(root: Path) -> list[str]:
    """Four runs against a real server: pass, escalation, failed call, failed gate."""
    replies = {LOCAL: Reply.answer(GOOD), "weak": Reply.answer("I cannot."),
               BIG: Reply.answer(GOOD), "broken": Reply(500, b"upstream exploded")}
    with chat_server("/v1/chat", replies) as srv:
        ids = [
            replay_run(root, "--gateway", srv.url),
            replay_run(root, "--gateway", srv.url, "--local-model", "weak", "--allow-escalation"),
            replay_run(root, "--gateway", srv.url, "--local-model", "broken",
                       "--escalation-model", "broken", "--allow-escalation"),
            replay_run(root, "--gateway", srv.url, "--local-model", "weak", "--local-only",
                       "--max-tokens", "64", "--temperature", "1"),
        ]
    ids.append(replay_run(root, "--gateway", f"http://127.0.0.1:{closed_port()}",
                          "--timeout", "5"))
    return ids


def test_every_recorded_run_verifies_bit_exact_offline(
    root: Path, recorded: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    logged = rows(root)
    assert [r["lakevec"]["exchanges"] for r in logged] == [1, 2, 2, 1, 1]
    assert logged[3]["validation_result"]["passed"] is False
    assert json.loads(tape_path(root, logged[3]).read_text())["run"]["temperature"] == 1

    def no_network(*args: object) -> None:
        raise AssertionError("verify touched the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    res = verify(root, "--all")
    assert res.exit_code == 0, res.output
    assert verdicts(res) == {run_id: "bit-exact" for run_id in recorded}
    assert res.stdout.splitlines()[-1] == (
        "5 runs: 5 bit-exact, 0 diverged, 0 not verifiable"
    )


def test_one_flipped_tape_byte_fails_verification_naming_the_run(
    root: Path, recorded: list[str]
) -> None:
    target = rows(root)[1]  # the escalation run
    path = tape_path(root, target)
    data = bytearray(path.read_bytes())
    data[data.rindex(b"adapter")] ^= 0x01  # "adapter" → "`dapter" in the escalation's reply
    path.write_bytes(bytes(data))
    res = verify(root, "--all")
    assert res.exit_code == 1
    found = verdicts(res)
    assert found[target["recorded_run_id"]].startswith(
        "diverged at call 2: tape "
    ), found
    assert "response body of call 2 does not match its sha256" in found[target["recorded_run_id"]]
    assert sum(v == "bit-exact" for v in found.values()) == 4


def test_an_edited_row_field_is_a_divergence(root: Path, recorded: list[str]) -> None:
    lines = log_path(root).read_text("utf-8").splitlines()
    row = json.loads(lines[0])
    row["validation_result"]["passed"] = False
    lines[0] = json.dumps(row, ensure_ascii=False, separators=(",", ":"))
    log_path(root).write_text("\n".join(lines) + "\n", encoding="utf-8")
    res = verify(root, recorded[0])
    assert res.exit_code == 1
    assert verdicts(res) == {
        recorded[0]: "diverged in row field validation_result.passed: logged False, replayed True"
    }


def test_a_reformatted_row_is_not_bit_exact(root: Path, recorded: list[str]) -> None:
    lines = log_path(root).read_text("utf-8").splitlines()
    lines[0] = json.dumps(json.loads(lines[0]), ensure_ascii=False)  # ", " and ": " separators
    log_path(root).write_text("\n".join(lines) + "\n", encoding="utf-8")
    res = verify(root, recorded[0])
    assert res.exit_code == 1
    assert verdicts(res)[recorded[0]].startswith("diverged: row bytes differ at byte ")


def test_a_changed_prompt_template_is_a_divergence(
    root: Path, recorded: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from lakevec.replay import prompt

    monkeypatch.setattr(prompt, "SYSTEM_PROMPT", prompt.SYSTEM_PROMPT.replace("hedge", "waffle"))
    res = verify(root, recorded[0])
    assert res.exit_code == 1
    verdict = verdicts(res)[recorded[0]]
    assert verdict.startswith("diverged at call 1: request bytes differ at byte ")
    assert "hedge" in verdict and "waffle" in verdict


def test_a_changed_gate_is_a_divergence(
    root: Path, recorded: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from lakevec.replay import gate

    # Stricter: the passing answer now fails the gate.
    monkeypatch.setattr(gate, "MIN_RESPONSE_CHARS", 10_000)
    res = verify(root, recorded[0])
    assert res.exit_code == 1
    assert verdicts(res)[recorded[0]].startswith("diverged in row field validation_result.passed")
    # Laxer: the weak answer passes, so today's code never makes the escalation call.
    from lakevec.replay import engine

    monkeypatch.setattr(engine, "validate_response",
                        lambda response, bundle: gate.ValidationResult(passed=True, reasons=[]))
    res = verify(root, recorded[1])
    assert res.exit_code == 1
    verdict = verdicts(res)[recorded[1]]
    assert verdict.startswith("diverged at call 2: the tape holds 1 more exchange(s)"), verdict


def test_other_runtimes_dry_runs_and_untaped_rows_are_not_verifiable(root: Path) -> None:
    replay_run(root, "--dry-run")
    old = dict(SEED_ROW, recorded_run_id="replay:e3e3e3e3e3e3e3e3:aaaaaaaaaaaa", lakevec={
        "version": "0.1.0", "retriever": "jaccard", "gateway_api": "lakehouse"})
    with log_path(root).open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(SEED_ROW) + "\n" + json.dumps(old) + "\nnot json\n")
        fh.write(json.dumps({"schema": "other.v1"}) + "\n")
    res = verify(root, "--all")
    assert res.exit_code == 0, res.output
    found = verdicts(res)
    assert found[SEED_ROW["recorded_run_id"]].startswith("not verifiable: no lakevec provenance")
    assert found[old["recorded_run_id"]].startswith("not verifiable: no tape")
    assert any(v == "not verifiable: dry run: no model was called" for v in found.values())
    assert "replay_runs.jsonl:4: skipped, not JSON" in res.stderr
    assert "replay_runs.jsonl:5: skipped, not a replay_run.v1 row" in res.stderr


def test_json_output_selection_and_usage_errors(root: Path, recorded: list[str]) -> None:
    res = verify(root, recorded[2], "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["counts"] == {"bit-exact": 1, "diverged": 0, "not-verifiable": 0}
    assert [r["run_id"] for r in data["runs"]] == [recorded[2]]
    assert data["runs"][0]["verdict"] == "bit-exact"
    assert verify(root, "--since", "2999-01-01", "--json").exit_code == 0
    assert json.loads(verify(root, "--since", "2999-01-01", "--json").stdout)["runs"] == []
    assert len(json.loads(verify(root, "--since", "2000-01-01", "--json").stdout)["runs"]) == 5
    for args, message in [
        ((), "name RUN_IDs, or pass --all or --since"),
        (("replay:nope",), "no run replay:nope"),
        (("--since", "yesterday"), "is not a date"),
    ]:
        res = verify(root, *args)
        assert res.exit_code == 2, res.output
        assert message in res.output


def test_missing_tape_is_a_divergence(root: Path, recorded: list[str]) -> None:
    tape_path(root, rows(root)[0]).unlink()
    res = verify(root, recorded[0])
    assert res.exit_code == 1
    assert "is missing" in verdicts(res)[recorded[0]]


def test_retrieval_drift_is_a_separate_verdict(root: Path, recorded: list[str]) -> None:
    res = verify(root, recorded[0], "--retrieval")
    assert res.exit_code == 0, res.output
    assert f"{recorded[0]}  retrieval unchanged: 2 rag_ids unchanged (jaccard)" in res.stdout
    corpus = root / "exports" / "rag" / "playbooks.jsonl"
    extra = dict(RECORDS[0], id="pb-new", title="audit gateway routing table")
    corpus.write_text(corpus.read_text() + json.dumps(extra) + "\n", encoding="utf-8")
    res = verify(root, recorded[0], "--retrieval", "--json")
    assert res.exit_code == 0, res.output  # drift alone does not fail verification
    run = json.loads(res.stdout)["runs"][0]
    assert run["verdict"] == "bit-exact"
    assert run["retrieval"]["status"] == "changed" and run["retrieval"]["added"] == ["pb-new"]


def test_a_trickled_body_times_out_on_time_and_the_run_still_verifies(root: Path) -> None:
    import time

    # 600 bytes, one every 50 ms: the server would take 30 s to send the body.
    body = json.dumps({"choices": [{"message": {"content": "x" * 560}}]}).encode()
    assert len(body) * 0.05 >= 30
    with chat_server("/v1/chat", {LOCAL: Reply(200, body, trickle=0.05)}) as srv:
        started = time.monotonic()
        run_id = replay_run(root, "--gateway", srv.url, "--timeout", "2", "--no-retrieval")
        elapsed = time.monotonic() - started
    row = rows(root)[0]
    assert row["validation_result"]["reasons"] == [
        f"local call failed: timed out after 2s: POST {srv.url}/v1/chat"
    ]
    assert 2000 <= row["duration_ms"] < 3000
    assert elapsed < 3.5  # the row, written, within 3 s of wall time plus CLI overhead
    tape = json.loads(tape_path(root, row).read_text("utf-8"))
    (exchange,) = tape["exchanges"]
    assert exchange["error"] == {"type": "ReadTimeout", "message": "the whole call exceeded 2s"}
    assert exchange["response"]["truncated"] and 0 < exchange["response"]["length"] < len(body)
    res = verify(root, run_id)
    assert res.exit_code == 0, res.output
    assert verdicts(res) == {run_id: "bit-exact"}


def test_openai_v1_base_url_with_credentials_verifies(root: Path) -> None:
    replies = {LOCAL: Reply.answer(GOOD)}
    with chat_server("/v1/chat/completions", replies) as srv:
        url = srv.url.replace("http://", "http://user:pa55word@") + "/v1"
        run_id = replay_run(root, "--gateway", url, "--api", "openai")
    assert srv.seen[0].headers["authorization"].startswith("Basic ")
    logged = log_path(root).read_text("utf-8")
    tape = tape_path(root, rows(root)[0]).read_text("utf-8")
    assert "pa55word" not in logged + tape and "user:" not in logged + tape
    assert rows(root)[0]["validation_result"]["passed"] is True
    res = verify(root, run_id)
    assert res.exit_code == 0, res.output
    assert verdicts(res) == {run_id: "bit-exact"}
