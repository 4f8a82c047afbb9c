"""The real embedded model (SmolLM2-135M through llama.cpp) end to end: `lakevec replay
--api local` and a small `lakevec ab`. One thread, a small corpus (short prompts) and
few tokens per call keep it to well under a minute on a loaded 2-core machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (lakevec[local])")

from lakevec.cli import main
from tests.ab_support import log_rows, make_root

pytestmark = [
    pytest.mark.usefixtures("clean_replay_env"), pytest.mark.integration, pytest.mark.timeout(240)
]


def test_local_replay_and_a_small_ab_on_the_real_model(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    base = ["--root", str(root)]
    res = CliRunner().invoke(main, [*base, "replay", "--api", "local", "--threads", "1",
                                    "--retriever", "jaccard", "--max-tokens", "24",
                                    "--task", "audit the provider circuit breaker"])
    assert res.exit_code == 0, res.output
    [row] = log_rows(root)
    assert row["model_used"] == "SmolLM2-135M-Instruct.Q4_1" and row["model_response"].strip()
    assert row["model_response"][:40] in res.output

    res = CliRunner().invoke(main, [*base, "ab", "--tasks", str(root / "tasks.jsonl"),
                                    "--limit", "2", "--retrievers", "jaccard", "--threads", "1",
                                    "--max-tokens", "24", "--gate", "strict", "--yes", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["complete"] and report["items"] == 2 and report["gate"] == "strict"
    for arm in report["arms"]:
        assert arm["runs"] == 2 and 0.0 <= arm["wilson95"][0] <= arm["wilson95"][1] <= 1.0
        assert arm["completion_tokens"]["total"] > 0 and arm["latency_ms"]["median"] > 0
        assert set(arm["finish_reasons"]) <= {"stop", "length"}
    assert 0.0 <= report["arms"][0]["versus_baseline"]["mcnemar_p"] <= 1.0
    assert len(log_rows(root)) == 5

    verified = CliRunner().invoke(main, [*base, "verify", "--all"])
    assert verified.exit_code == 0, verified.output
    assert "5 runs: 5 bit-exact" in verified.output
