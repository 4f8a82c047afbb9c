"""The aggregate's numbers, the Wilson interval, reason normalisation and the drill-down pack."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lakevec.ab.stats import wilson_interval
from lakevec.errors import EvidenceError, UsageProblem
from lakevec.replay.bundle import ContextBundle
from lakevec.replay.prompt import build_prompt
from lakevec.report.aggregate import normalise_reason
from lakevec.report.build import build_report, parse_since
from lakevec.report.drilldown import LoggedRow
from tests.test_report_rows import go_row, seed_row


def write_log(path: Path, rows: Sequence[dict[str, Any] | str]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def lk(**extra: Any) -> dict[str, Any]:
    return {"version": "0.1.0", "retriever": "hybrid", "gateway_api": "lakehouse", **extra}


def passed(**overrides: Any) -> dict[str, Any]:
    return seed_row(validation_result={"passed": True, "reasons": []}, **overrides)


@pytest.mark.parametrize(("k", "n", "low", "high"), [
    (81, 100, 0.722212, 0.874852),
    (5, 10, 0.236593, 0.763407),
    (0, 10, 0.0, 0.277533),
    (10, 10, 0.722467, 1.0),
    (0, 0, 0.0, 1.0),
])
def test_wilson_interval_known_values(k: int, n: int, low: float, high: float) -> None:
    lo, hi = wilson_interval(k, n)
    assert (round(lo, 6), round(hi, 6)) == (low, high)


def test_wilson_interval_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


@pytest.mark.parametrize(("raw", "normal"), [
    ("response too short (57 chars; min 80)", "response too short (N chars; min 80)"),
    ("response too short (3 chars; min 80)", "response too short (N chars; min 80)"),
    ("local call failed: HTTP 503: upstream 12 busy", "local call failed: HTTP 503: …"),
    ("escalation also failed: invalid JSON from http://h:3100/v1/chat: Expecting value: line 1 "
     "column 1 (char 0); body starts '<html>'",
     "escalation also failed: invalid JSON from http://h:3100/v1/chat: Expecting value: line N "
     "column N (char N); body starts …"),
    ("local call failed: cannot connect to http://127.0.0.1:3100/v1/chat: [Errno 111] refused",
     "local call failed: cannot connect to http://127.0.0.1:3100/v1/chat: [Errno 111] refused"),
    ("filler/hedge phrase detected: /as an ai/i", "filler/hedge phrase detected: /as an ai/i"),
    ("  spaced\n  out  ", "spaced out"),
    ("", "(failed without a recorded reason)"),
])
def test_failure_reasons_are_normalised(raw: str, normal: str) -> None:
    assert normalise_reason(raw) == normal


@pytest.fixture
def small_log(tmp_path: Path) -> Path:
    dry = dry_reply = "Synthetic dry-run response for task: x"
    return write_log(tmp_path / "log.jsonl", [
        passed(recorded_at="2026-05-01T10:00:00.000Z"),                       # TS, day 1
        seed_row(recorded_at="2026-05-01T11:00:00.000Z",                      # TS fail, escalated
                 escalation_path=["a", "b"],
                 validation_result={"passed": False, "reasons": [
                     "response too short (12 chars; min 80)",
                     "response too short (12 chars; min 80)"]}),
        go_row("2026-05-02T08:00:00.5Z"),                                     # Go fail, day 2
        passed(recorded_at="2026-05-02T09:00:00.000Z",
               lakevec=lk(experiment={"id": "e1", "arm": "A", "task_id": "t1", "repeat": 1,
                                      "gate": "strict",
                                      "verdict": {"passed": False, "reasons": ["x"]}})),
        seed_row(recorded_at="2026-05-02T09:30:00.000Z", lakevec=lk(experiment="e1", arm="B"),
                 validation_result={"passed": False,
                                    "reasons": ["local call failed: HTTP 500: x"]}),
        passed(recorded_at="2026-05-02T10:00:00.000Z", lakevec=lk(experiment="e1"),
               context_bundle=None),
        passed(recorded_at="2026-05-02T11:00:00.000Z", lakevec=lk(gateway_api="dry-run"),
               model_response=dry),
        passed(recorded_at="2026-05-02T12:00:00.000Z", model_response=dry_reply),  # TS dry run
        "not json",
    ])


def test_aggregate_counts_a_small_log_exactly(small_log: Path) -> None:
    agg = build_report([small_log]).aggregate
    t = agg["totals"]
    assert (t["runs"], t["passed"], t["escalated"]) == (6, 3, 1)
    left_out = (t["dry_runs_left_out"], t["dry_runs"], t["bad_lines"], t["before_since"])
    assert left_out == (2, 0, 1, 0)
    assert t["pass_rate"] == 0.5
    assert t["pass_ci"] == [round(x, 6) for x in wilson_interval(3, 6)]
    assert (t["first_day"], t["last_day"], t["days"]) == ("2026-05-01", "2026-05-02", 2)
    assert [(d["day"], d["runs"], d["passed"]) for d in agg["per_day"]] == [
        ("2026-05-01", 2, 1), ("2026-05-02", 4, 2)]
    runtimes = {r["key"]: r["runs"] for r in agg["splits"]["runtime"]}
    assert runtimes == {"typescript": 2, "go": 1, "lakevec": 3}
    assert {r["key"]: r["runs"] for r in agg["splits"]["retrieval"]} == {
        "with retrieval": 5, "without retrieval": 1}
    (exp,) = agg["experiments"]
    arms = {a["arm"]: (a["runs"], a["passed"], a["judged"], a["verdict_passed"])
            for a in exp["arms"]}
    # An untagged arm is named by model and retriever; the verdict is the experiment's own.
    assert arms == {"A": (1, 1, 1, 0), "B": (1, 0, 0, 0), "qwen3.5:latest / hybrid": (1, 1, 0, 0)}
    assert [a["verdict_rate"] for a in exp["arms"]] == [0.0, None, None]
    top = agg["failure_reasons"]
    assert top["failed_runs"] == 3
    assert [(f["reason"], f["runs"]) for f in top["top"]] == [
        ("response too short (N chars; min 80)", 2),  # once per run, not per mention
        ("local call failed: HTTP 500: …", 1),
    ]
    assert [b["line"] for b in agg["sources"][0]["bad"]] == [9]
    assert agg["verify"] is None


def test_dry_runs_and_since_filters(small_log: Path) -> None:
    agg = build_report([small_log], include_dry_run=True).aggregate
    assert (agg["totals"]["runs"], agg["totals"]["dry_runs"]) == (8, 2)
    agg = build_report([small_log], since=parse_since("2026-05-02")).aggregate
    assert (agg["totals"]["runs"], agg["totals"]["before_since"]) == (4, 2)
    assert agg["filters"]["since"] == "2026-05-02T00:00:00Z"
    agg = build_report([small_log], since=parse_since("2026-05-02T09:15+00:00")).aggregate
    assert agg["totals"]["runs"] == 2


def test_since_rejects_nonsense() -> None:
    with pytest.raises(UsageProblem, match="--since"):
        parse_since("last tuesday")
    assert parse_since("2026-05-01T12:00") == datetime(2026, 5, 1, 12, tzinfo=UTC)


def test_seams_feed_the_drilldown_and_the_verify_counts(small_log: Path) -> None:
    digest = "ab" * 32
    rows = [passed(recorded_at="2026-05-02T09:00:00.000Z", lakevec=lk(tape=digest)),
            passed(recorded_at="2026-05-02T10:00:00.000Z", lakevec=lk(tape="cd" * 32))]
    log = write_log(small_log.parent / "tapes.jsonl", [*rows, seed_row()])
    asked: list[str] = []

    def tape_loader(d: str) -> list[dict[str, Any]]:
        asked.append(d)
        if d != digest:
            raise FileNotFoundError(f"no tape {d}")
        return [{"model": "m", "reply": "hello"}]

    def verify_status(logged: LoggedRow) -> str:
        if "lakevec" not in logged.row:
            raise ValueError("cannot verify a seed row")
        assert json.loads(logged.raw) == logged.row and logged.path == str(log)
        assert log.read_bytes().splitlines(keepends=True)[logged.line - 1] == logged.raw
        return "verified"

    built = build_report([log], with_runs=True, tape_loader=tape_loader,
                         verify_status=verify_status)
    assert asked == [digest, "cd" * 32]
    assert built.aggregate["verify"] == {
        "unavailable: ValueError: cannot verify a seed row": 1, "verified": 2}
    assert built.runs is not None
    tapes = [text[1] for chunk in built.runs["texts"] for text in chunk]
    assert sorted(map(str, tapes)) == sorted(map(str, [
        [{"model": "m", "reply": "hello"}], "unavailable: FileNotFoundError: no tape " + "cd" * 32,
        "this run has no tape"]))


def unpack(runs: dict[str, Any]) -> list[dict[str, Any]]:
    """Every packed run back as a dict of strings (what the page's script does)."""
    index, strings = runs["index"], runs["index"]["strings"]
    texts = [text for chunk in runs["texts"] for text in chunk]
    out = []
    for packed, (response, tape) in zip(index["runs"], texts, strict=True):
        run: dict[str, Any] = {"response": response, "tape": tape}
        for i, name in enumerate(index["fields"]):
            value, key = packed[i], name.replace("*", "").replace("[]", "")
            if name.endswith("*[]") and value is not None:
                value = [strings[v] for v in value]
            elif name.endswith("*") and value is not None:
                value = strings[value]
            run[key] = value
        bundle = index["bundles"][run["bundle"]] if run["bundle"] is not None else None
        if run["rag_ids"] is None:
            run["rag_ids"] = [strings[index["artifacts"][a][0]] for a, _ in bundle[0]] \
                if bundle else []
        run["prompt"] = runs["prompts"][run["prompt"]]
        out.append(run)
    return out


def test_drilldown_prompt_is_build_prompt_of_the_row(tmp_path: Path) -> None:
    rich = seed_row(input_task="with exemplars and warnings")
    art = rich["context_bundle"]["retrieved_playbooks"][0]
    warn = {**art, "rag_id": "pb-2", "success_score": "partially_accepted", "title": "W"}
    rich["context_bundle"].update(retrieved_playbooks=[art, warn], prior_successful_outputs=[art],
                                  failure_patterns=[warn])
    rows = [seed_row(), go_row(), seed_row(context_bundle=None, input_task="no bundle </script>"),
            rich]
    rows[1]["input_task"] = "go"
    rows[1]["context_bundle"]["retrieved_playbooks"][0]["tags"] = None
    log = write_log(tmp_path / "log.jsonl", rows)
    built = build_report([log], with_runs=True)
    assert built.runs is not None
    by_task: dict[str, list[dict[str, Any]]] = {}
    for run in unpack(built.runs):
        by_task.setdefault(run["task"], []).append(run)
    for row in rows:
        bundle = row["context_bundle"]
        if bundle is not None:
            bundle = {**bundle, "retrieved_playbooks": [
                {**a, "tags": a["tags"] or []} for a in bundle["retrieved_playbooks"]]}
        expected = build_prompt(row["input_task"],
                                ContextBundle.model_validate(bundle) if bundle else None)
        run = by_task[row["input_task"]][0]
        assert run["prompt"] == expected.user
        assert built.runs["index"]["system_prompt"] == expected.system
        assert run["rag_ids"] == row["retrieved_artifacts"]["rag_ids"]
        assert run["response"] == row["model_response"]
    # Shared strings are stored once.
    assert built.runs["index"]["strings"].count(TASK_TEXT) == 1


TASK_TEXT = seed_row()["input_task"]


def test_synthetic_log_of_mixed_runtimes_aggregates(tmp_path: Path) -> None:
    from lakevec.report.synthetic import write_synthetic_log

    log = write_synthetic_log(tmp_path / "log.jsonl", 1500, seed=1, bad=5)
    agg = build_report([log]).aggregate
    t = agg["totals"]
    assert t["runs"] + t["dry_runs_left_out"] == 1500
    assert t["bad_lines"] == 5
    assert {r["key"] for r in agg["splits"]["runtime"]} == {"lakevec", "typescript", "go"}
    assert sum(d["runs"] for d in agg["per_day"]) == t["runs"]
    assert len(agg["experiments"]) == 2


def test_rag_ids_unlike_the_bundles_are_kept_and_tapes_are_named(tmp_path: Path) -> None:
    odd = seed_row(retrieved_artifacts={"rag_ids": ["pb-9", "pb-1"]},
                   lakevec=lk(tape="ef" * 32, exchanges=1))
    log = write_log(tmp_path / "log.jsonl", [odd, seed_row(retrieved_artifacts=None)])
    built = build_report([log], with_runs=True)
    assert built.runs is not None
    runs = unpack(built.runs)
    assert sorted(map(str, (r["rag_ids"] for r in runs))) == ["['pb-1']", "['pb-9', 'pb-1']"]
    assert {"digest": "ef" * 32} in [r["tape"] for r in runs]


def test_many_runs_split_into_text_chunks_in_page_order(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from lakevec.report import drilldown
    from lakevec.report.synthetic import synthetic_rows

    monkeypatch.setattr(drilldown, "TEXT_CHUNK", 7)
    rows = list(synthetic_rows(60, seed=5))
    log = write_log(tmp_path / "log.jsonl", rows)
    built = build_report([log], with_runs=True, include_dry_run=True)
    assert built.runs is not None
    assert [len(c) for c in built.runs["texts"]] == [7] * 8 + [4]
    by_id = {r["recorded_run_id"]: r for r in rows}
    runs = unpack(built.runs)
    assert [r["at"] for r in runs] == sorted((r["at"] for r in runs), reverse=True)
    for run in runs:
        assert run["response"] == by_id[run["id"]]["model_response"]
        assert run["task"] == by_id[run["id"]]["input_task"]


def test_the_garbage_collector_is_restored(small_log: Path, tmp_path: Path) -> None:
    import gc

    assert gc.isenabled()
    build_report([small_log], with_runs=True)
    assert gc.isenabled()
    with pytest.raises(EvidenceError):
        build_report([small_log, tmp_path / "missing.jsonl"])
    assert gc.isenabled()
