"""`lakevec report` on the command line: outputs, exit codes, a self-contained HTML file."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from lakevec.cli import main
from lakevec.report.build import build_report
from lakevec.report.html import script_json
from lakevec.report.synthetic import write_synthetic_log
from tests.conftest import REPO


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_log(tmp_path_factory.mktemp("report") / "log.jsonl", 300, seed=2,
                               bad=3)


def run(*args: str, root: Path | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [*(["--root", str(root)] if root else []), "report",
                                       *args])
    return result.exit_code, result.stdout, result.stderr


def test_json_prints_the_aggregate(log: Path) -> None:
    code, out, err = run("--evidence", str(log), "--json", "--no-verify")
    assert code == 0
    assert json.loads(out) == build_report([log]).aggregate
    verified = json.loads(run("--evidence", str(log), "--json")[1])
    # With --verify (the default) every taped run was replayed: this log's tapes are absent.
    assert set(verified["verify"]) and all(v.startswith(("diverged", "not verifiable"))
                                           for v in verified["verify"])
    assert "3 bad lines skipped" in err


def test_terminal_summary(log: Path) -> None:
    code, out, _ = run("--evidence", str(log))
    assert code == 0
    agg = build_report([log]).aggregate
    assert out.startswith(f"lakevec report — {agg['totals']['runs']:,} runs")
    assert "dry runs left out (--include-dry-run counts them)" in out
    assert "3 bad lines skipped" in out
    assert re.search(r"^gate pass rate +\d+\.\d% \[\d", out, re.M)
    for heading in ("by runtime that wrote the row:", "by first model tried:", "by retriever:",
                    "by with or without retrieval:", "experiment exp-retriever-2026-04",
                    "most common failure reasons"):
        assert heading in out


def test_several_logs_and_the_default_log(log: Path, tmp_path: Path) -> None:
    code, out, _ = run("--evidence", str(log), "--evidence", str(log), "--json")
    assert code == 0
    single = build_report([log]).aggregate["totals"]["runs"]
    assert json.loads(out)["totals"]["runs"] == 2 * single
    default = tmp_path / "data" / "_kb" / "replay_runs.jsonl"
    default.parent.mkdir(parents=True)
    default.write_bytes(log.read_bytes())
    code, out, _ = run("--json", root=tmp_path)
    assert code == 0 and json.loads(out)["totals"]["runs"] == single


def test_errors_are_one_line_with_exit_codes(log: Path, tmp_path: Path) -> None:
    code, _, err = run("--evidence", str(tmp_path / "nope.jsonl"))
    assert code == 1 and "no evidence log at" in err and "Traceback" not in err
    code, _, err = run("--evidence", str(log), "--since", "someday")
    assert code == 2 and "--since 'someday' is not a date" in err
    code, _, err = run("--evidence", str(log), "--html", str(tmp_path / "no" / "dir" / "r.html"))
    assert code == 1 and "cannot write" in err


def test_html_is_self_contained(log: Path, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    code, out, _ = run("--evidence", str(log), "--html", str(page))
    assert code == 0 and f"wrote {page}" in out
    text = page.read_text(encoding="utf-8")
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    # Nothing is fetched: no src/href to anything but inline data.
    assert not re.search(r"""(?:src|href)\s*=\s*["'](?!data:|#)""", text)
    assert not re.search(r"https?://(?!localhost)", text.split('id="runs-data"')[0])
    embedded = re.search(r'id="report-data">(.*?)</script>', text, re.S)
    assert embedded is not None
    _, as_json, _ = run("--evidence", str(log), "--json")
    assert json.loads(embedded.group(1)) == json.loads(as_json)


def test_json_in_script_cannot_close_the_script() -> None:
    text = script_json({"task": "</script><script>alert(1)</script><!--"})
    assert "<" not in text
    assert json.loads(text) == {"task": "</script><script>alert(1)</script><!--"}


def test_help_loads_nothing_heavy() -> None:
    code = (
        "import sys\nfrom lakevec.cli import main\n"
        "main(['report', '--help'], standalone_mode=False)\n"
        "heavy = [m for m in ('numpy', 'pydantic', 'httpx', 'torch') if m in sys.modules]\n"
        "ours = [m for m in sys.modules if m.startswith('lakevec.report')]\n"
        "print(heavy, ours)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, timeout=120, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[] []"


def test_json_and_html_together_keep_stdout_json(log: Path, tmp_path: Path) -> None:
    page = tmp_path / "r.html"
    code, out, err = run("--evidence", str(log), "--json", "--html", str(page),
                         "--include-dry-run", "--since", "2026-04-20")
    assert code == 0 and page.exists()
    agg = json.loads(out)
    assert agg["filters"] == {"since": "2026-04-20T00:00:00Z", "include_dry_run": True}
    assert agg["totals"]["dry_runs"] > 0 and agg["totals"]["before_since"] > 0
    assert f"wrote {page}" in err
