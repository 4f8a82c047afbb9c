"""`lakevec reindex` (cron contract) and `lakevec status` through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from lakevec.cli import main
from lakevec.index import current_snapshot_dir
from tests.reindex_support import playbook, write_corpus

N = 30


def run(root: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--root", str(root), *args])


@pytest.fixture
def root(tmp_path: Path) -> Path:
    corpus = tmp_path / "exports" / "rag" / "playbooks.jsonl"
    corpus.parent.mkdir(parents=True)
    write_corpus(corpus, [playbook(i) for i in range(N)])
    return tmp_path


def corpus_records(root: Path) -> dict[str, dict[str, Any]]:
    path = root / "exports" / "rag" / "playbooks.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {r["id"]: r for r in rows}


def save(root: Path, records: dict[str, dict[str, Any]]) -> None:
    write_corpus(root / "exports" / "rag" / "playbooks.jsonl", records)


def one_json_line(result: Result) -> dict[str, Any]:
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    data: dict[str, Any] = json.loads(lines[0])
    return data


def test_reindex_reports_once_then_stays_silent(root: Path) -> None:
    first = one_json_line(run(root, "reindex", "--model", "hash:64"))
    assert first["mode"] == "full" and first["added"] == N and first["version"] == 1
    for key in ("added", "updated", "metadata_updated", "deleted", "unchanged", "embedded",
                "seconds", "version", "snapshot", "finished_at"):
        assert key in first

    quiet = run(root, "reindex")  # the index's own model, no flags needed
    assert quiet.exit_code == 0 and quiet.stdout == "" and quiet.stderr == ""

    records = corpus_records(root)
    del records["pb-00001"]
    records["pb-00002"] = playbook(2, version=1)
    records["pb-00003"] = playbook(3, tags=["db"])
    records["pb-00100"] = playbook(100)
    save(root, records)
    second = one_json_line(run(root, "reindex"))
    assert {k: second[k] for k in ("added", "updated", "metadata_updated", "deleted")} == {
        "added": 1, "updated": 1, "metadata_updated": 1, "deleted": 1,
    }
    assert second["unchanged"] == N - 3 and second["embedded"] == 2
    assert second["version"] == 2 and second["snapshot"] == "v000002"
    assert second["mode"] == "incremental"


def test_reindex_missing_corpus_is_exit_1_with_one_line(root: Path, tmp_path: Path) -> None:
    result = run(root, "reindex", "--model", "hash:64", "--corpus", str(tmp_path / "nope.jsonl"))
    assert result.exit_code == 1 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: corpus file not found")


def test_reindex_failures_are_one_line_errors(root: Path) -> None:
    one_json_line(run(root, "reindex", "--model", "hash:64"))
    other = run(root, "reindex", "--model", "hash:32")
    assert other.exit_code == 1 and other.stdout == ""
    assert len(other.stderr.splitlines()) == 1 and "--full" in other.stderr
    hnsw = current_snapshot_dir(root / "index") / "hnsw.bin"
    hnsw.write_bytes(hnsw.read_bytes()[:100])
    broken = run(root, "reindex")
    assert broken.exit_code == 1 and broken.stdout == ""
    assert len(broken.stderr.splitlines()) == 1 and "truncated or corrupted" in broken.stderr


def test_reindex_usage_error_is_exit_2(root: Path) -> None:
    assert run(root, "reindex", "--keep", "0").exit_code == 2


def test_status_json_reports_health_and_drift(root: Path) -> None:
    one_json_line(run(root, "reindex", "--model", "hash:64"))
    status = one_json_line(run(root, "status", "--json"))
    assert status["version"] == 1 and status["snapshot"] == "v000001"
    assert status["model"]["model_id"] == "hash:64" and status["model"]["dimension"] == 64
    assert status["records"] == N and status["graph_elements"] == N
    assert status["deleted_ratio"] == 0.0 and status["churn"] == 0
    assert status["snapshots"] == 1 and status["age_seconds"] >= 0
    assert status["build_mode"] == "full" and status["built_at"].endswith("Z")
    assert status["up_to_date"] is True and status["drift"]["total"] == 0

    records = corpus_records(root)
    for rid in ("pb-00004", "pb-00005"):
        del records[rid]
    records["pb-00006"] = playbook(6, success_score="partially_accepted")
    records["pb-00200"] = playbook(200)
    save(root, records)
    drift = one_json_line(run(root, "status", "--json"))["drift"]
    assert drift == {"added": 1, "updated": 0, "metadata_updated": 1, "deleted": 2,
                     "unchanged": N - 3, "total": 4}

    one_json_line(run(root, "reindex"))
    after = one_json_line(run(root, "status", "--json", "--verify"))
    assert after["version"] == 2 and after["snapshots"] == 2 and after["up_to_date"] is True
    assert after["deleted"] == 1 and after["graph_elements"] == N
    assert after["deleted_ratio"] == pytest.approx(1 / N, abs=1e-4)
    assert after["churn"] == 2


def test_status_text_and_errors(root: Path) -> None:
    missing = run(root, "status")
    assert missing.exit_code == 1 and "no index at" in missing.stderr
    one_json_line(run(root, "reindex", "--model", "hash:64"))
    text = run(root, "status")
    assert text.exit_code == 0
    assert "v000001" in text.stdout and "hash:64" in text.stdout
    assert "drift     up to date" in text.stdout
    # A missing corpus does not hide the index's own status.
    gone = run(root, "status", "--json", "--corpus", str(root / "missing.jsonl"))
    data = one_json_line(gone)
    assert data["drift"] is None and "corpus file not found" in data["corpus_error"]


def test_noop_reindex_prints_nothing_from_a_real_process(root: Path) -> None:
    """Cron mails any output: a no-change run must be byte-silent, imports included."""
    one_json_line(run(root, "reindex", "--model", "hash:64"))
    env = {**os.environ, "LH_DISTILL_ROOT": str(root)}
    proc = subprocess.run([sys.executable, "-m", "lakevec.cli", "reindex"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
