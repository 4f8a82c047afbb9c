"""`lakevec eval`: dataset loading, exit codes and the regression gate (hash embedder)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from lakevec.cli import main
from tests.conftest import write_jsonl

DOCS = {
    "d1": ("Rotate gateway keys", "Revoke the old API key and issue a new one."),
    "d2": ("Restart a stuck worker", "Drain the queue, then kill and restart the worker."),
    "d3": ("Disk full", "Find large log files and rotate them."),
    "d4": ("Renew certificates", "Renew the TLS certificate and reload the ingress."),
    "d5": ("Replication lag", "Inspect replica status and slow queries."),
}
QUERIES = {
    "q1": "rotate the api key",
    "q2": "worker is stuck",
    "q3": "disk is full of logs",
    "q4": "tls certificate renewal",
    "q5": "replica lag",
}


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "tiny"
    write_jsonl(
        root / "corpus.jsonl",
        [{"_id": i, "title": t, "text": c} for i, (t, c) in DOCS.items()],
    )
    write_jsonl(root / "queries.jsonl", [{"_id": q, "text": t} for q, t in QUERIES.items()])
    rows = ["query-id\tcorpus-id\tscore"] + [f"q{i}\td{i}\t1" for i in range(1, 6)]
    (root / "qrels").mkdir()
    (root / "qrels" / "test.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


def run_eval(tmp_path: Path, *args: str) -> Result:
    base = ["eval", "--model", "hash:64", "--work-dir", str(tmp_path / "cache"), "-q"]
    return CliRunner().invoke(main, [*base, *args])


def test_eval_json_reports_every_retriever(tmp_path: Path, dataset: Path) -> None:
    result = run_eval(tmp_path, "--dataset", str(dataset), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["dataset"] == "tiny" and out["queries"] == 5 and out["documents"] == 5
    assert set(out["retrievers"]) == {"jaccard", "bm25", "exact", "hnsw", "hybrid"}
    for metrics in out["retrievers"].values():
        for name in ("ndcg@10", "recall@8", "mrr@10"):
            assert 0.0 <= metrics[name] <= 1.0
    hnsw = out["retrievers"]["hnsw"]
    assert hnsw["ann_recall@8"] == pytest.approx(1.0)  # 5 docs: the graph is exhaustive
    assert hnsw["latency_p99_ms"] >= hnsw["latency_p50_ms"] >= 0
    # BM25 finds every one of these keyword queries first.
    assert out["retrievers"]["bm25"]["mrr@10"] == pytest.approx(1.0)
    # The eval index is cached: a second run reuses the one snapshot.
    assert len(list((tmp_path / "cache").glob("*/snapshots/*"))) == 1


def test_eval_table_and_selected_retrievers(tmp_path: Path, dataset: Path) -> None:
    result = run_eval(
        tmp_path, "--dataset", str(dataset), "--retriever", "bm25", "--limit-queries", "2"
    )
    assert result.exit_code == 0, result.output
    assert "bm25" in result.stdout and "hybrid" not in result.stdout
    assert "2 queries" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "/nonexistent/dir"], "not a directory"),
        (["--dataset", "{ds}", "--retriever", "tfidf"], "tfidf"),
        (["--dataset", "{ds}", "--check", "{tmp}/missing.json"], "baseline file not found"),
    ],
)
def test_eval_usage_errors_exit_2(
    tmp_path: Path, dataset: Path, args: list[str], message: str
) -> None:
    args = [a.format(ds=dataset, tmp=tmp_path) for a in args]
    result = run_eval(tmp_path, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_eval_missing_qrels_exits_1(tmp_path: Path, dataset: Path) -> None:
    (dataset / "qrels" / "test.tsv").unlink()
    result = run_eval(tmp_path, "--dataset", str(dataset))
    assert result.exit_code == 1
    assert "qrels file not found" in result.output


def _baseline(tmp_path: Path, dataset: Path) -> tuple[Path, dict[str, Any]]:
    path = tmp_path / "baseline.json"
    saved = run_eval(tmp_path, "--dataset", str(dataset), "--save-baseline", str(path))
    assert saved.exit_code == 0, saved.output
    return path, json.loads(path.read_text())


def test_gate_passes_against_its_own_baseline(tmp_path: Path, dataset: Path) -> None:
    path, data = _baseline(tmp_path, dataset)
    assert data["tolerance"] == 0.02 and len(data["entries"]) == 1
    result = run_eval(tmp_path, "--dataset", str(dataset), "--check", str(path))
    assert result.exit_code == 0, result.output
    assert "passed" in result.stdout


def test_gate_fails_when_a_metric_drops_beyond_tolerance(tmp_path: Path, dataset: Path) -> None:
    path, data = _baseline(tmp_path, dataset)
    entry = data["entries"][0]
    # Doctor the baseline: claim hnsw used to be 0.05 better than it is.
    entry["retrievers"]["hnsw"]["ndcg@10"] += 0.05
    path.write_text(json.dumps(data))
    result = run_eval(tmp_path, "--dataset", str(dataset), "--check", str(path), "--json")
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert out["check"]["passed"] is False
    assert any("hnsw ndcg@10" in r for r in out["check"]["regressions"])
    assert "regression" in result.stderr
    # Within a wider tolerance the same drop passes.
    wide = run_eval(
        tmp_path, "--dataset", str(dataset), "--check", str(path), "--tolerance", "0.06"
    )
    assert wide.exit_code == 0, wide.output
    # A drop just inside the stored tolerance passes too.
    entry["retrievers"]["hnsw"]["ndcg@10"] -= 0.05 - 0.015
    path.write_text(json.dumps(data))
    assert run_eval(tmp_path, "--dataset", str(dataset), "--check", str(path)).exit_code == 0


def test_gate_refuses_a_baseline_for_other_settings(tmp_path: Path, dataset: Path) -> None:
    path, _ = _baseline(tmp_path, dataset)
    result = run_eval(
        tmp_path, "--dataset", str(dataset), "--check", str(path), "--limit-queries", "3"
    )
    assert result.exit_code == 2
    assert "no entry for tiny with 3 queries" in result.output
