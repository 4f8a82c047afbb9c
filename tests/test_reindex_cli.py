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
from lakevec.index.layout import current_snapshot_dir
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
    # A damaged manifest hides the index's model: reindex cannot guess it.
    manifest = current_snapshot_dir(root / "index") / "manifest.json"
    manifest.write_text("{not json")
    broken = run(root, "reindex")
    assert broken.exit_code == 1 and broken.stdout == ""
    assert len(broken.stderr.splitlines()) == 1 and "build-index --full" in broken.stderr


def test_reindex_rebuilds_a_damaged_live_snapshot_and_says_so(root: Path) -> None:
    one_json_line(run(root, "reindex", "--model", "hash:64"))
    hnsw = current_snapshot_dir(root / "index") / "hnsw.bin"
    hnsw.write_bytes(hnsw.read_bytes()[:100])
    repaired = run(root, "reindex")
    assert repaired.exit_code == 0, repaired.output
    report = json.loads(repaired.stdout)
    assert report["mode"] == "full" and report["version"] == 2 and report["records"] == N
    assert "truncated or corrupted" in report["repaired"]
    lines = repaired.stderr.splitlines()
    assert len(lines) == 1
    assert "failed verification" in lines[0] and "rebuilt" in lines[0] and "v000002" in lines[0]
    quiet = run(root, "reindex")  # repaired: back to a silent no-op
    assert (quiet.exit_code, quiet.stdout, quiet.stderr) == (0, "", "")


def append_lines(root: Path, *lines: str) -> None:
    path = root / "exports" / "rag" / "playbooks.jsonl"
    path.write_text(path.read_text() + "".join(line + "\n" for line in lines))


def test_reindex_reports_new_bad_lines_once_even_when_nothing_changed(root: Path) -> None:
    one_json_line(run(root, "reindex", "--model", "hash:64"))
    append_lines(root, "{broken", json.dumps(playbook(500, title=None)))
    first = run(root, "reindex")  # the records are unchanged: a no-op
    assert first.exit_code == 0 and first.stdout == ""
    lines = first.stderr.splitlines()
    assert len(lines) == 2
    assert f"line {N + 1}: malformed JSON" in lines[0] and f"line {N + 2}: " in lines[1]
    assert all(line.startswith("warning: ") for line in lines)
    second = run(root, "reindex")
    assert (second.exit_code, second.stdout, second.stderr) == (0, "", "")
    # Only a bad line not reported before is printed.
    append_lines(root, "[1, 2]")
    third = run(root, "reindex")
    assert third.exit_code == 0 and third.stdout == ""
    assert len(third.stderr.splitlines()) == 1 and f"line {N + 3}: " in third.stderr


def test_reindex_json_lists_skipped_lines(root: Path) -> None:
    append_lines(root, "{broken")
    result = run(root, "reindex", "--model", "hash:64")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["skipped_lines"] == [{"line": N + 1, "reason": report["skipped_lines"][0]
                                        ["reason"]}]
    assert "malformed JSON" in report["skipped_lines"][0]["reason"]
    assert f"line {N + 1}: malformed JSON" in result.stderr


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


def test_status_verify_detects_a_damaged_file(root: Path) -> None:
    one_json_line(run(root, "reindex", "--model", "hash:64"))
    vectors = current_snapshot_dir(root / "index") / "vectors.npy"
    data = bytearray(vectors.read_bytes())
    data[-1] ^= 0xFF  # same size, different content
    vectors.write_bytes(bytes(data))
    assert run(root, "status").exit_code == 0  # sizes only: cheap, misses it
    verified = run(root, "status", "--verify")
    assert verified.exit_code == 1 and verified.stdout == ""
    lines = verified.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "vectors.npy" in lines[0]


def test_noop_reindex_prints_nothing_from_a_real_process(root: Path) -> None:
    """Cron mails any output: a no-change run must be byte-silent, imports included."""
    one_json_line(run(root, "reindex", "--model", "hash:64"))
    env = {**os.environ, "LH_DISTILL_ROOT": str(root)}
    proc = subprocess.run([sys.executable, "-m", "lakevec.cli", "reindex"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
