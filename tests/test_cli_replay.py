"""`lakevec replay` through click: output format, env/flag precedence and exit codes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner, Result

from lakevec.cli import main
from lakevec.paths import default_corpus
from lakevec.replay.evidence import DEFAULT_SCHEMA_PATH
from tests.chat_server import Reply, chat_server, closed_port
from tests.conftest import write_jsonl

pytestmark = pytest.mark.usefixtures("clean_replay_env")


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


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write_jsonl(default_corpus(tmp_path), RECORDS)
    return tmp_path


def invoke(root: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--root", str(root), "replay", *args])


def log_rows(root: Path) -> list[dict[str, Any]]:
    log = root / "data" / "_kb" / "replay_runs.jsonl"
    rows = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    schema = json.loads(DEFAULT_SCHEMA_PATH.read_text(encoding="utf-8"))
    for row in rows:
        jsonschema.validate(row, schema)
    return rows


def test_dry_run_prints_the_seed_report_and_logs_a_valid_row(root: Path) -> None:
    res = invoke(root, "--task", TASK, "--dry-run", "--retriever", "jaccard")
    assert res.exit_code == 0, res.output
    lines = res.stdout.split("\n")
    assert re.fullmatch(r"\[replay\] run_id=replay:[0-9a-f]{16}:[0-9a-f]{12}", lines[0])
    assert lines[1] == "[replay] retrieval: 2 playbooks"
    assert lines[2] == "[replay] escalation_path: qwen3.5:latest"
    assert re.fullmatch(r"\[replay\] model_used: qwen3\.5:latest · \d+ms", lines[3])
    assert lines[4] == "[replay] validation: PASS"
    assert lines[5:8] == ["", "─── response ───", f"Synthetic dry-run response for task: {TASK}"]
    rows = log_rows(root)
    assert len(rows) == 1
    assert rows[0]["recorded_run_id"] == lines[0].split("=", 1)[1]
    assert rows[0]["retrieved_artifacts"] == {"rag_ids": ["pb-route", "pb-partial"]}


def test_json_prints_the_full_result(root: Path) -> None:
    res = invoke(root, "--task", TASK, "--dry-run", "--retriever", "jaccard", "--json",
                 "--no-retrieval")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["context_bundle"] is None
    assert data["validation_result"] == {"passed": True, "reasons": []}
    assert data["lakevec"]["retriever"] is None
    assert "schema" not in data  # the result, not the log row


def test_no_retrieval_needs_no_corpus_or_index(tmp_path: Path) -> None:
    res = invoke(tmp_path, "--task", TASK, "--dry-run", "--no-retrieval")
    assert res.exit_code == 0, res.output
    assert "[replay] retrieval: DISABLED" in res.stdout
    assert log_rows(tmp_path)[0]["context_bundle"] is None


def test_escalation_against_a_real_server_records_two_models(root: Path) -> None:
    replies = {"qwen3.5:latest": Reply.answer("I cannot."),
               "deepseek-v3.1:671b": Reply.answer(GOOD)}
    with chat_server("/v1/chat", replies) as srv:
        res = invoke(root, "--task", TASK, "--retriever", "jaccard", "--gateway", srv.url,
                     "--allow-escalation")
    assert res.exit_code == 0, res.output
    assert "[replay] escalation_path: qwen3.5:latest → deepseek-v3.1:671b" in res.stdout
    assert ("[replay] validation: PASS (recovered via escalation to deepseek-v3.1:671b)"
            in res.stdout)
    row = log_rows(root)[0]
    assert row["escalation_path"] == ["qwen3.5:latest", "deepseek-v3.1:671b"]
    assert row["model_used"] == "deepseek-v3.1:671b"


def test_env_vars_are_used_and_flags_override_them(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with chat_server("/v1/chat/completions",
                     {"env-model": Reply.answer(GOOD), "flag-model": Reply.answer(GOOD)}) as srv:
        monkeypatch.setenv("LH_GATEWAY_URL", srv.url)
        monkeypatch.setenv("LH_REPLAY_LOCAL_MODEL", "env-model")
        monkeypatch.setenv("LH_DISTILL_ROOT", str(root))
        res = CliRunner().invoke(main, ["replay", "--task", TASK, "--retriever", "jaccard",
                                        "--api", "openai"])
        assert res.exit_code == 0, res.output
        res2 = invoke(root, "--task", TASK, "--retriever", "jaccard", "--api", "openai",
                      "--local-model", "flag-model")
        assert res2.exit_code == 0, res2.output
    assert [s.body["model"] for s in srv.seen] == ["env-model", "flag-model"]
    assert [r["model_used"] for r in log_rows(root)] == ["env-model", "flag-model"]


def test_failed_model_call_is_recorded_and_exits_zero(root: Path) -> None:
    res = invoke(root, "--task", TASK, "--retriever", "jaccard",
                 "--gateway", f"http://127.0.0.1:{closed_port()}", "--timeout", "5")
    assert res.exit_code == 0, res.output
    assert "[replay] validation: FAIL (local call failed: cannot connect to" in res.stdout
    assert log_rows(root)[0]["validation_result"]["passed"] is False


def test_long_responses_are_cut_in_the_report(root: Path) -> None:
    with chat_server("/v1/chat", {"qwen3.5:latest": Reply.answer("gateway " * 250)}) as srv:
        res = invoke(root, "--task", TASK, "--retriever", "jaccard", "--gateway", srv.url)
    assert res.exit_code == 0, res.output
    assert res.stdout.rstrip("\n").endswith("... [500 more chars]")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "   ", "--dry-run", "--no-retrieval"], "--task is empty"),
        (["--dry-run"], "Missing option '--task'"),
        (["--task", "t", "--timeout", "0"], "--timeout"),
        (["--task", "t", "--retriever", "tfidf"], "--retriever"),
        (["--task", "t", "--no-retrieval", "--gateway", "localhost:3100"], "http://"),
        (["--task", "x" * 100_001, "--dry-run", "--no-retrieval"], "limit is 100,000"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    res = invoke(tmp_path, *args)
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert not (tmp_path / "data").exists()


def test_missing_corpus_exits_1(tmp_path: Path) -> None:
    res = invoke(tmp_path, "--task", TASK, "--dry-run", "--retriever", "jaccard")
    assert res.exit_code == 1
    assert "corpus file not found" in res.output


def test_missing_index_exits_1(tmp_path: Path) -> None:
    res = invoke(tmp_path, "--task", TASK, "--dry-run")  # default retriever: hybrid
    assert res.exit_code == 1
    assert "lakevec build-index" in res.output


def test_unwritable_evidence_exits_1(root: Path) -> None:
    (root / "blocker").write_text("a file where a directory should be")
    res = invoke(root, "--task", TASK, "--dry-run", "--retriever", "jaccard",
                 "--evidence", str(root / "blocker" / "runs.jsonl"))
    assert res.exit_code == 1
    assert "cannot open evidence log" in res.output


@pytest.mark.parametrize(
    ("args", "expected"), [([], "hybrid"), (["--retriever", "hnsw"], "hnsw")]
)
def test_index_run_records_provenance(root: Path, args: list[str], expected: str) -> None:
    from lakevec.corpus import read_corpus
    from lakevec.embed.hashing import HashEmbedder
    from lakevec.index.build import build_index

    index_dir = root / "index"
    build_index(read_corpus(root / "exports" / "rag" / "playbooks.jsonl"), index_dir,
                HashEmbedder(64))
    res = invoke(root, "--task", TASK, "--dry-run", "--json", *args)
    assert res.exit_code == 0, res.output
    prov = json.loads(res.stdout)["lakevec"]
    assert prov["retriever"] == expected
    assert prov["index_version"] == 1
    assert re.fullmatch(r"[0-9a-f]{64}", prov["manifest_sha256"])
    assert prov["embedding_model"]
    assert log_rows(root)[0]["lakevec"] == prov


def test_every_option_has_help_text() -> None:
    res = CliRunner().invoke(main, ["replay", "--help"])
    assert res.exit_code == 0
    for option in ("--task", "--local-only", "--allow-escalation", "--no-retrieval",
                   "--dry-run", "--retriever", "--index", "--corpus", "--model", "--gateway",
                   "--api", "--local-model", "--escalation-model", "--timeout", "--evidence",
                   "--json"):
        assert option in res.output
    cmd = main.commands["replay"]
    assert all(p.help for p in cmd.params if p.name != "help")


@pytest.mark.parametrize("how", ["flag", "env"])
def test_malformed_gateway_is_refused_before_anything_runs(
    root: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    # No index under root: had replay opened it first, this would be exit 1.
    bad = "http://[::1"
    args = ["--task", TASK]
    if how == "flag":
        args += ["--gateway", bad]
    else:
        monkeypatch.setenv("LH_GATEWAY_URL", bad)
    res = invoke(root, *args)
    assert res.exit_code == 2, res.output
    assert bad in res.output and "lakevec build-index" not in res.output
    assert not (root / "data").exists()  # no evidence row
    assert not (root / "index").exists()


def test_dry_run_does_not_need_a_gateway_url(root: Path) -> None:
    res = invoke(root, "--task", TASK, "--dry-run", "--retriever", "jaccard",
                 "--gateway", "http://[::1")
    assert res.exit_code == 0, res.output
    assert len(log_rows(root)) == 1


def test_server_refuses_jaccard(root: Path) -> None:
    res = invoke(root, "--task", TASK, "--dry-run", "--retriever", "jaccard",
                 "--server", f"http://127.0.0.1:{closed_port()}")
    assert res.exit_code == 2, res.output
    assert "hybrid, hnsw, exact, bm25" in res.output
    assert not (root / "data").exists()
