"""`lakevec promote` and `lakevec loop`: accepted, verified answers go back into the corpus
(deduplicated, with provenance) and are retrieved after the next reindex; failed runs,
dry runs and runs that do not verify against their tape are refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from lakevec.cli import main
from lakevec.paths import default_corpus
from tests.chat_server import Reply, chat_server
from tests.conftest import write_jsonl

pytestmark = pytest.mark.usefixtures("clean_replay_env")


LOCAL = "qwen3.5:latest"
ANSWER = ("Rotate the warehouse service credentials: issue a new key, roll it to every "
          "consumer, verify the old key is revoked and check the audit log for stale use.")
TASK = "rotate the warehouse service credentials and revoke the old key"
RECORDS = [
    {"id": f"pb-{i}", "title": title, "success_score": "accepted", "tags": ["ops"],
     "content": f"{title}.\n- verify {title.lower()}", "source_run_id": f"run-{i}",
     "source_category": "ops"}
    for i, title in enumerate([
        "Restart the ingest worker", "Drain a gateway node", "Audit provider routing",
        "Compact the vector index", "Renew TLS certificates", "Check replay gate results",
    ])
]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write_jsonl(default_corpus(tmp_path), RECORDS)
    res = cli(tmp_path, "build-index", "--model", "hash:64", "--quiet")
    assert res.exit_code == 0, res.output
    return tmp_path


def cli(root: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--root", str(root), *args])


def corpus_rows(root: Path) -> list[dict[str, Any]]:
    path = root / "exports" / "rag" / "playbooks.jsonl"
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def log_rows(root: Path) -> list[dict[str, Any]]:
    path = root / "data" / "_kb" / "replay_runs.jsonl"
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def run(root: Path, url: str, *args: str, task: str = TASK) -> str:
    res = cli(root, "replay", "--task", task, "--gateway", url, *args)
    assert res.exit_code == 0, res.output
    return res.stdout.split("\n")[0].split("=", 1)[1]


def test_promoted_answer_is_retrieved_for_its_own_task_after_reindex(root: Path) -> None:
    with chat_server("/v1/chat", {LOCAL: Reply.answer(ANSWER)}) as srv:
        run_id = run(root, srv.url)
    res = cli(root, "promote", run_id, "--reviewer", "alice", "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["promoted"] == 1
    record = corpus_rows(root)[-1]
    assert record["content"] == ANSWER and record["source_run_id"] == run_id
    prov = record["promotion"]
    assert prov["reviewer"] == "alice" and prov["source_run_id"] == run_id
    assert prov["task"] == TASK and prov["model"] == LOCAL and prov["gate"]["passed"] is True
    assert prov["forced"] is False and prov["tape"] == log_rows(root)[-1]["lakevec"]["tape"]

    before = cli(root, "search", TASK, "--json")
    assert record["id"] not in [h["id"] for h in json.loads(before.stdout)]
    assert cli(root, "reindex").exit_code == 0
    after = json.loads(cli(root, "search", TASK, "--json").stdout)
    assert after[0]["id"] == record["id"]

    again = cli(root, "promote", run_id, "--json")
    assert json.loads(again.stdout)["duplicates"] == 1
    assert len(corpus_rows(root)) == len(RECORDS) + 1


def test_dry_run_failed_and_unverifiable_runs_are_refused(root: Path) -> None:
    dry = cli(root, "replay", "--task", TASK, "--dry-run")
    dry_id = dry.stdout.split("\n")[0].split("=", 1)[1]
    res = cli(root, "promote", dry_id)
    assert res.exit_code == 1
    assert "dry run" in res.stdout

    with chat_server("/v1/chat", {LOCAL: Reply.answer("I cannot."),
                                  "good": Reply.answer(ANSWER)}) as srv:
        failed_id = run(root, srv.url)
        good_id = run(root, srv.url, "--local-model", "good")
    res = cli(root, "promote", failed_id)
    assert res.exit_code == 1 and "failed the gate" in res.stdout

    tape = log_rows(root)[-1]["lakevec"]["tape"]
    path = root / "data" / "_kb" / "tapes" / tape[:2] / f"{tape}.json"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    res = cli(root, "promote", good_id)
    assert res.exit_code == 1 and "does not verify against its tape" in res.stdout
    assert len(corpus_rows(root)) == len(RECORDS)

    forced = cli(root, "promote", failed_id, "--force", "--json")
    assert forced.exit_code == 0, forced.output
    record = corpus_rows(root)[-1]
    assert record["promotion"]["forced"] is True
    assert "failed the gate" in record["promotion"]["forced_over"]


def test_loop_cycles_promote_and_reindex(root: Path, tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps({"id": f"t{i}", "task": t}) + "\n" for i, t in enumerate(
        [TASK, "drain the busy gateway node safely", "compact the vector index tonight"])),
        encoding="utf-8")
    with chat_server("/v1/chat", {LOCAL: Reply.answer(ANSWER)}) as srv:
        res = cli(root, "loop", "--tasks", str(tasks), "--cycles", "2", "--gateway", srv.url)
    assert res.exit_code == 0, res.output
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert [c["cycle"] for c in lines] == [1, 2]
    first, second = lines
    assert first["tasks"] == 3 and first["passed"] == 3 and first["pass_rate"] == 1.0
    assert first["escalation_rate"] == 0.0 and len(first["pass_rate_ci95"]) == 2
    # One answer for every task: promoted once, then recognised as a duplicate.
    assert first["promoted"] == 1 and first["duplicates"] == 2
    assert first["reindexed"]["changed"] is True
    assert second["promoted"] == 0 and second["duplicates"] == 3
    assert second["index_version"] == first["index_version"] + 1
    tags = {(r["lakevec"]["experiment"]["id"], r["lakevec"]["experiment"]["arm"])
            for r in log_rows(root)}
    assert tags == {(first["loop"], "cycle-1"), (first["loop"], "cycle-2")}
