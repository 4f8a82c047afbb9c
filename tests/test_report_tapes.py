"""The report's drill-down is fed from the tapes: each taped run carries its recorded
exchanges and its `lakevec verify` verdict, and a tampered tape shows as diverged."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner

from lakevec.cli import main
from tests.chat_server import Reply, chat_server

ANSWER = "Verify the routing table of the gateway and check each provider entry. " * 2


def test_drilldown_shows_tape_exchanges_and_verify_verdicts(tmp_path: Path) -> None:
    corpus = tmp_path / "exports" / "rag" / "playbooks.jsonl"
    corpus.parent.mkdir(parents=True)
    corpus.write_text(json.dumps({"id": "pb-1", "title": "Gateway routing audit",
                                  "content": "- verify the routing table",
                                  "success_score": "accepted"}) + "\n", encoding="utf-8")
    runner = CliRunner()
    with chat_server("/v1/chat", {"qwen3.5:latest": Reply.answer(ANSWER)}) as srv:
        for _ in range(2):
            res = runner.invoke(main, ["--root", str(tmp_path), "replay", "--task",
                                       "audit the gateway routing", "--retriever", "jaccard",
                                       "--gateway", srv.url])
            assert res.exit_code == 0, res.output
    log = tmp_path / "data" / "_kb" / "replay_runs.jsonl"
    tape = json.loads(log.read_text("utf-8").splitlines()[-1])["lakevec"]["tape"]
    path = tmp_path / "data" / "_kb" / "tapes" / tape[:2] / f"{tape}.json"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))

    page = tmp_path / "report.html"
    res = runner.invoke(main, ["--root", str(tmp_path), "report", "--html", str(page), "--json"])
    assert res.exit_code == 0, res.output
    verdicts = json.loads(res.stdout)["verify"]
    assert verdicts.get("bit-exact") == 1
    assert sum(n for v, n in verdicts.items() if v.startswith("diverged")) == 1
    text = page.read_text("utf-8")
    runs = text.split('id="runs-index"', 1)[1]
    # The recorded exchanges (what the server reported, per call) travel with the runs.
    assert re.search(r"finish_reason|served_model|wall_ms", runs)
    assert "routing table of the gateway" in runs
