"""The CI regression gate: real MiniLM on alert-runbooks against docs/eval-baseline.json.

The fast subset: the full 380-document corpus (so the task is unchanged) and
the first CI_QUERIES judged queries. The eval index is built in a fresh
temporary work dir, never taken from a user cache: a cached index would hide a
regression in the embedding path, which the gate exists to catch.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from lakevec.cli import main
from tests.conftest import REPO, shared_dataset

pytestmark = pytest.mark.integration

CI_QUERIES = 200
BASELINE = REPO / "docs" / "eval-baseline.json"


def test_eval_gate_on_alert_runbooks_subset(tmp_path: Path) -> None:
    dataset = shared_dataset("beir/alert-runbooks")
    result = CliRunner().invoke(
        main,
        [
            "eval",
            "--dataset",
            str(dataset),
            "--limit-queries",
            str(CI_QUERIES),
            "--check",
            str(BASELINE),
            "--work-dir",
            str(tmp_path),
            "--json",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["check"]["passed"], out["check"]["regressions"]
    assert set(out["retrievers"]) == {"jaccard", "bm25", "exact", "hnsw", "hybrid"}
    # The chosen default must keep its lead over the seed's Jaccard.
    hybrid, jaccard = out["retrievers"]["hybrid"], out["retrievers"]["jaccard"]
    assert hybrid["ndcg@10"] > jaccard["ndcg@10"] + 0.2
