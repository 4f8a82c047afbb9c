"""Issue 14's acceptance case end to end: a corpus with a lone-surrogate line and a
1,500-deep line builds (both lines reported and skipped), and the cron reindex
after it is silent on stdout and exits 0."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from lakevec.cli import main
from tests.conftest import record, write_jsonl

SURROGATE_LINE = '{"id": "bad-1", "title": "\\ud800", "content": "x", "success_score": "accepted"}'
DEEP_LINE = '{"id": "bad-2", "title": "t", "content": "x", "success_score": "accepted", "x": ' \
    + "[" * 1500 + "]" * 1500 + "}"


def test_surrogate_and_deep_lines_are_skipped_and_reindex_stays_silent(tmp_path: Path) -> None:
    corpus = write_jsonl(
        tmp_path / "exports" / "rag" / "playbooks.jsonl",
        [record(1), SURROGATE_LINE, record(2), DEEP_LINE, record(3)],
    )
    runner = CliRunner()
    built = runner.invoke(main, ["--root", str(tmp_path), "build-index", "--model", "hash:64",
                                 "--json", "--quiet"])
    assert built.exit_code == 0, built.output
    report = json.loads(built.stdout)
    assert report["records"] == 3
    skipped = {e["line"]: e["reason"] for e in report["skipped_lines"]}
    assert set(skipped) == {2, 4}
    assert "lone surrogate" in skipped[2] and "title" in skipped[2]
    assert "nested too deeply" in skipped[4]
    assert "Traceback" not in built.output

    again = runner.invoke(main, ["--root", str(tmp_path), "reindex"])
    assert again.exit_code == 0, again.output
    assert again.stdout == ""
    assert corpus.exists()
