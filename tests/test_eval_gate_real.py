"""The CI regression gate: real MiniLM on alert-runbooks against docs/eval-baseline.json.

The fast subset: the full 380-document corpus (so the task is unchanged) and
the first CI_QUERIES judged queries. The eval index is cached (by corpus
sha256, model fingerprint and precision) in $LAKEVEC_EVAL_CACHE or
~/.cache/lakevec/eval; a cold cache embeds 380 runbooks once.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from lakevec.cli import main
from tests.conftest import REPO, shared_dataset

pytestmark = pytest.mark.integration

CI_QUERIES = 200
BASELINE = REPO / "docs" / "eval-baseline.json"


def test_eval_gate_on_alert_runbooks_subset() -> None:
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
