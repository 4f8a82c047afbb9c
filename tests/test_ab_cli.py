"""`lakevec ab` through click on a scripted model: confirmation, --json, Ctrl-C, errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from lakevec.cli import main
from lakevec.cli.ab_cmd import INTERRUPTED
from tests.ab_support import FakeLlama, gguf, install, log_rows, make_root

pytestmark = pytest.mark.usefixtures("clean_replay_env")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_root(tmp_path)


def ab(root: Path, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, [
        "--root", str(root), "ab", "--tasks", str(root / "tasks.jsonl"), "--retrievers",
        "jaccard", "--local-gguf", str(gguf(root)), "--threads", "1",
        *([] if "--jobs" in args else ["--jobs", "1"]), *args,
    ], input=stdin)


def test_json_report_after_the_estimate(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, FakeLlama())
    res = ab(root, "--yes", "--json", "--gate", "strict", "--max-tokens", "64", "--jobs", "2")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)  # stdout is the report alone
    assert report["schema"] == "lakevec.ab_report.v1" and report["complete"] is True
    assert report["gate"] == "strict" and report["model"]["max_tokens"] == 64
    assert report["jobs"] == 2 and "with 2 jobs" in res.stderr
    assert [a["arm"] for a in report["arms"]] == ["retrieval:jaccard", "no-retrieval"]
    assert "Estimate: 6 model calls" in res.stderr and "calibration" in res.stderr
    assert {r["lakevec"]["experiment"]["id"] for r in log_rows(root)} == {report["experiment"]}


def test_text_report(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, FakeLlama())
    res = ab(root, "--yes", "--limit", "2", "--experiment-id", "exp-cli")
    assert res.exit_code == 0, res.output
    assert "experiment exp-cli: 2 tasks × 2 arms × 1 repeat, gate seed" in res.stdout
    assert "retrieval:jaccard" in res.stdout and "Wilson 95%" in res.stdout
    assert "same answers, gate strict" in res.stdout
    assert len(log_rows(root)) == 4


def test_stdin_that_is_not_a_terminal_needs_yes(root: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeLlama()
    install(monkeypatch, fake)
    res = ab(root)
    assert res.exit_code == 2 and "--yes" in res.output
    assert fake.events == [] and log_rows(root) == []  # nothing loaded, nothing run


def test_proceed_question(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, FakeLlama())
    # The module (lakevec.cli.ab_cmd as an attribute is the click command).
    monkeypatch.setattr(sys.modules["lakevec.cli.ab_cmd"], "interactive", lambda: True)
    declined = ab(root, stdin="n\n")
    assert declined.exit_code == 1 and "Proceed? [y/N]" in declined.stderr
    assert log_rows(root) == []
    accepted = ab(root, "--limit", "1", stdin="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert len(log_rows(root)) == 2


def test_ctrl_c_prints_the_partial_report_and_exits_130(root: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # Calls 1-2 calibrate; runs are calls 3..8: the 5th run (t3, retrieval) is interrupted.
    install(monkeypatch, FakeLlama(interrupt_at=7))
    res = ab(root, "--yes", "--json")
    assert res.exit_code == INTERRUPTED == 130
    report = json.loads(res.stdout)
    assert report["complete"] is False and report["runs_finished"] == 4
    assert report["items"] == 2 and all(a["runs"] == 2 for a in report["arms"])
    assert len(log_rows(root)) == 4  # every finished run is in the log
    assert "Interrupted: 4 finished runs" in res.stderr


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [(["--arms", "retrieval,magic"], 2, "unknown arm"),
     (["--gate", "lenient"], 2, "lenient"),
     (["--threads", "0"], 2, "--threads"),
     (["--api", "lakehouse"], 2, "--api local only"),
     (["--local-model", "qwen3.5:latest"], 2, "not the model"),
     (["--local-gguf", "/nonexistent/model.gguf"], 1, "pip install 'lakevec[local]'")],
)
def test_usage_and_model_errors(root: Path, monkeypatch: pytest.MonkeyPatch, args: list[str],
                                code: int, needle: str) -> None:
    install(monkeypatch, FakeLlama())
    res = ab(root, "--yes", *args)
    assert res.exit_code == code, res.output
    assert needle in res.output
    assert log_rows(root) == []


def test_a_missing_task_file_exits_1(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, FakeLlama())
    res = CliRunner().invoke(main, ["--root", str(root), "ab", "--tasks", str(root / "nope"),
                                    "--yes"])
    assert res.exit_code == 1 and "no task file" in res.output
