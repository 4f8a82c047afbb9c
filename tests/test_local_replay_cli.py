"""`lakevec replay --api local` on a scripted model behind the real LocalGateway: the
answer, the row and its tape, defaults, the model loaded first, and the errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from lakevec import settings
from lakevec.cli import main
from tests.ab_support import GOOD, FakeLlama, gguf, install, log_rows, make_root

pytestmark = pytest.mark.usefixtures("clean_replay_env")


TASK = "audit the provider circuit breaker"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_root(tmp_path)


def replay(root: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--root", str(root), "replay", "--task", TASK,
                                     "--retriever", "jaccard", *args])


def test_local_replay_answers_logs_a_row_with_its_tape_and_verifies(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeLlama()
    install(monkeypatch, fake)
    monkeypatch.setenv("LH_REPLAY_LOCAL_MODEL", "qwen3.5:latest")  # a gateway model: ignored
    res = replay(root, "--api", "local", "--local-gguf", str(gguf(root)), "--threads", "1")
    assert res.exit_code == 0, res.output
    assert GOOD in res.output and "validation: PASS" in res.output
    [row] = log_rows(root)
    assert row["model_used"] == "Tiny-Chat.Q4" and row["escalation_path"] == ["Tiny-Chat.Q4"]
    lk = row["lakevec"]
    assert lk["gateway_api"] == "local" and lk["exchanges"] == 1 and "experiment" not in lk
    tape = json.loads((root / "data/_kb/tapes" / lk["tape"][:2] / f"{lk['tape']}.json")
                      .read_text())
    assert tape["run"]["max_tokens"] == settings.LOCAL_MAX_TOKENS  # the local default
    # Loaded (and sized for this prompt) before the run: the call itself loads nothing.
    first = next(i for i, e in enumerate(fake.events) if e[0] == "complete")
    assert [e for e in fake.events[first:] if e[0] == "load"] == []
    verified = CliRunner().invoke(main, ["--root", str(root), "verify", row["recorded_run_id"]])
    assert verified.exit_code == 0 and "bit-exact" in verified.output


def test_the_environment_names_the_model_and_threads(root: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, FakeLlama())
    monkeypatch.setenv(settings.LOCAL_GGUF_ENV, str(gguf(root)))
    monkeypatch.setenv(settings.LOCAL_THREADS_ENV, "1")
    res = replay(root, "--api", "local", "--max-tokens", "32", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["model_used"] == "Tiny-Chat.Q4"


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [(["--api", "local", "--local-gguf", "/nonexistent/x.gguf"], 1,
      "pip install 'lakevec[local]'"),
     (["--api", "local", "--local-gguf", "NOT_GGUF"], 1, "pip install 'lakevec[local]'"),
     (["--api", "local", "--local-model", "qwen3.5:latest"], 2, "not the model"),
     (["--threads", "1", "--gateway", "http://127.0.0.1:9"], 2, "--api local only"),
     (["--api", "local", "--threads", "0"], 2, "--threads")],
)
def test_errors(root: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], code: int,
                needle: str) -> None:
    install(monkeypatch, FakeLlama())
    (root / "not.gguf").write_bytes(b"PK\x03\x04 a zip")
    args = [str(root / "not.gguf") if a == "NOT_GGUF" else a for a in args]
    if "--local-gguf" not in args and "local" in args:
        args += ["--local-gguf", str(gguf(root))]
    res = replay(root, *args)
    assert res.exit_code == code, res.output
    assert needle in res.output
    assert log_rows(root) == []


def test_serve_offers_only_the_http_apis() -> None:
    res = CliRunner().invoke(main, ["serve", "--api", "local"])
    assert res.exit_code == 2 and "'local' is not one of" in res.output
