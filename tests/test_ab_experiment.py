"""The A/B engine on a scripted model behind the real LocalGateway: arms, tagging,
judging alike, statistics plumbing, repeats, Ctrl-C and the cost estimate."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import jsonschema
import pytest

from lakevec.ab.estimate import earlier_calls, tail_lines
from lakevec.ab.experiment import Arm, plan_arms
from lakevec.ab.session import AbOptions, AbSession
from lakevec.ab.stats import mcnemar_exact, wilson_interval
from lakevec.ab.summary import complete_items, format_report, percentile
from lakevec.errors import UsageProblem
from lakevec.replay.chat import ChatOptions
from lakevec.replay.evidence import DEFAULT_SCHEMA_PATH
from lakevec.replay.gate import NO_CHECKLIST_OVERLAP
from lakevec.replay.strict import CUT_OFF
from lakevec.replay.tape import TapeStore
from lakevec.replay.verify import LogRow, read_log, verify_row
from tests.ab_support import (
    GOOD,
    OFF_TOPIC,
    FakeLlama,
    gguf,
    has_bundle,
    install,
    log_rows,
    make_root,
)

pytestmark = pytest.mark.usefixtures("clean_replay_env")


# How long a condition may take on a loaded CI machine (a deadline, never a sleep).
DEADLINE = 120.0


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_root(tmp_path)


def options(root: Path, **kw: object) -> AbOptions:
    base: dict[str, object] = {
        "tasks_path": root / "tasks.jsonl", "root": root, "retrievers": ("jaccard",),
        "local_gguf": str(gguf(root)), "threads": 1, "jobs": 1,
    }
    base.update(kw)
    return AbOptions(**base)  # type: ignore[arg-type]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLlama]:
    llama = FakeLlama()
    install(monkeypatch, llama)
    yield llama


def run(root: Path, **kw: object) -> dict[str, object]:
    with AbSession(options(root, **kw)) as session:
        session.run()
        return session.report()


# ─── arms ────────────────────────────────────────────────────────────────────


def test_arms_are_one_per_retriever_plus_the_baseline() -> None:
    assert plan_arms(("retrieval", "no-retrieval"), ("hybrid", "jaccard")) == [
        Arm("retrieval:hybrid", "hybrid"), Arm("retrieval:jaccard", "jaccard"),
        Arm("no-retrieval", None),
    ]
    assert plan_arms(("no-retrieval",), ("bm25",)) == [Arm("no-retrieval", None)]


@pytest.mark.parametrize(
    ("arms", "retrievers", "needle"),
    [((), ("hybrid",), "--arms is empty"), (("retrieval", "rag"), ("hybrid",), "unknown arm"),
     (("retrieval",), ("vector",), "unknown retriever"), (("retrieval",), (), "--retrievers"),
     (("retrieval", "retrieval"), ("hybrid",), "must not repeat"),
     (("retrieval",), ("",), "none empty")],
)
def test_bad_arms_are_usage_errors(arms: tuple[str, ...], retrievers: tuple[str, ...],
                                   needle: str) -> None:
    with pytest.raises(UsageProblem, match=needle):
        plan_arms(arms, retrievers)


# ─── runs, tags and judging ──────────────────────────────────────────────────


def test_every_run_is_logged_taped_tagged_and_verifiable(root: Path, fake: FakeLlama) -> None:
    report = run(root, experiment_id="exp-1")
    rows = log_rows(root)
    assert len(rows) == 6 == fake.completes  # 3 tasks × 2 arms, no calibration: nothing logged
    schema = json.loads(DEFAULT_SCHEMA_PATH.read_text(encoding="utf-8"))
    tags = []
    for row in rows:
        jsonschema.validate(row, schema)
        lk = row["lakevec"]
        assert lk["gateway_api"] == "local" and lk["exchanges"] == 1
        assert row["escalation_path"] == ["Tiny-Chat.Q4"]  # the GGUF's name, no escalation
        exp = lk["experiment"]
        tags.append((exp["id"], exp["task_id"], exp["arm"], exp["repeat"], exp["gate"]))
        assert (row["context_bundle"] is None) == (exp["arm"] == "no-retrieval")
    assert tags == [("exp-1", t, arm, 1, "seed") for t in ("t1", "t2", "t3")
                    for arm in ("retrieval:jaccard", "no-retrieval")]
    # Task by task, every arm of a task in a row; the report names every run.
    runs = cast(list[dict[str, Any]], report["runs"])
    assert [(r["task_id"], r["arm"]) for r in runs] == [t[1:3] for t in tags]
    store = TapeStore(root / "data" / "_kb" / "tapes")
    verdicts = [verify_row(e, store).status for e in read_log(root / "data/_kb/replay_runs.jsonl")
                if isinstance(e, LogRow)]
    assert verdicts == ["bit-exact"] * 6


def test_both_arms_face_the_same_checklist(root: Path, fake: FakeLlama) -> None:
    report = run(root)
    rows = log_rows(root)
    baseline = [r for r in rows if r["lakevec"]["experiment"]["arm"] == "no-retrieval"]
    for row in baseline:
        # The pipeline's gate has no checklist without a bundle and passes the answer...
        assert row["model_response"] == OFF_TOPIC and row["validation_result"]["passed"]
        # ...the experiment judges it against the retrieval bundle's checklist, and fails it.
        verdict = row["lakevec"]["experiment"]["verdict"]
        assert verdict == {"passed": False, "reasons": [NO_CHECKLIST_OVERLAP]}
    arms = {a["arm"]: a for a in report["arms"]}  # type: ignore[attr-defined]
    assert arms["retrieval:jaccard"]["passed"] == 3 and arms["no-retrieval"]["passed"] == 0
    assert arms["no-retrieval"]["pipeline_passed"] == 3


def test_strict_gate_uses_the_tapes_finish_reason(root: Path, monkeypatch: pytest.MonkeyPatch
                                                 ) -> None:
    def cut(user: str, seed: int, call: int) -> tuple[str, str]:
        return (GOOD, "length") if has_bundle(user) else (GOOD, "stop")

    install(monkeypatch, FakeLlama(script=cut))
    report = run(root, gate="strict")
    arms = {a["arm"]: a for a in report["arms"]}  # type: ignore[attr-defined]
    assert arms["retrieval:jaccard"]["passed"] == 0
    assert arms["retrieval:jaccard"]["top_reasons"][0]["reason"] == CUT_OFF
    assert arms["retrieval:jaccard"]["finish_reasons"] == {"length": 3}
    assert arms["no-retrieval"]["passed"] == 3
    # The same answers under the seed gate (reported alongside): all pass.
    assert arms["retrieval:jaccard"]["by_gate"]["seed"]["passed"] == 3
    verdicts = {r["lakevec"]["experiment"]["verdict"]["passed"] for r in log_rows(root)
                if r["context_bundle"] is not None}
    assert verdicts == {False}


def test_statistics_plumbing(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # t1: both pass, t2: only retrieval, t3: only no-retrieval.
    plan = {("t1", True): GOOD, ("t1", False): GOOD, ("t2", True): GOOD,
            ("t2", False): OFF_TOPIC, ("t3", True): "too short", ("t3", False): GOOD}

    def script(user: str, seed: int, call: int) -> tuple[str, str]:
        task = {1: "t1", 2: "t1", 3: "t2", 4: "t2", 5: "t3", 6: "t3"}[call]
        return plan[(task, has_bundle(user))], "stop"

    install(monkeypatch, FakeLlama(script=script))
    report = run(root)
    arms = {a["arm"]: a for a in report["arms"]}  # type: ignore[attr-defined]
    ret, base = arms["retrieval:jaccard"], arms["no-retrieval"]
    assert (ret["passed"], base["passed"]) == (2, 2)
    assert ret["wilson95"] == list(wilson_interval(2, 3))
    v = ret["versus_baseline"]
    assert (v["both"], v["only_this"], v["only_baseline"], v["neither"]) == (1, 1, 1, 0)
    assert v["difference"] == 0 and v["mcnemar_p"] == mcnemar_exact(1, 1) == 1.0
    assert base["versus_baseline"] is None and report["baseline"] == "no-retrieval"
    # Grounding only over tasks with a gold (t1, t2), tokens from the tapes' usage.
    assert ret["grounding"]["items"] == 2 and ret["grounding"]["mean"] > 0
    assert ret["completion_tokens"]["total"] == len(GOOD.split()) * 2 + 2
    assert ret["prompt_tokens"]["mean"] > base["prompt_tokens"]["mean"]
    assert report["complete"] is True and report["items"] == 3
    text = format_report(report)
    assert "retrieval:jaccard" in text and "McNemar p" in text and "[" in text


def test_repeats_sample_with_one_seed_per_repeat(root: Path, monkeypatch: pytest.MonkeyPatch
                                                 ) -> None:
    seeds: list[int] = []

    def script(user: str, seed: int, call: int) -> tuple[str, str]:
        seeds.append(seed)
        return GOOD, "stop"

    install(monkeypatch, FakeLlama(script=script))
    report = run(root, repeats=2, limit=1)
    assert seeds == [42, 42, 43, 43]  # both arms share a repeat's seed
    assert [(r["repeat"], r["arm"]) for r in cast(list[dict[str, Any]], report["runs"])] == [
        (1, "retrieval:jaccard"), (1, "no-retrieval"), (2, "retrieval:jaccard"),
        (2, "no-retrieval")]
    assert report["items"] == 2 and report["model"]["seed"] == 42  # type: ignore[index]


def test_the_model_is_loaded_before_the_first_run(root: Path, fake: FakeLlama) -> None:
    with AbSession(options(root)) as session:
        loads = [e for e in fake.events if e[0] == "load"]
        assert loads and fake.completes == 0
        session.run()
    # Sized once for the longest prompt: no run loaded or re-sized the model.
    first = fake.events.index(("complete", loads[-1][1]))
    assert all(kind != "load" for kind, _ in fake.events[first:])


def test_ctrl_c_keeps_every_finished_run(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, FakeLlama(interrupt_at=4))
    with AbSession(options(root)) as session:
        with pytest.raises(KeyboardInterrupt):
            session.run()
        report = session.report()
    assert len(log_rows(root)) == 3 == report["runs_finished"]
    assert report["complete"] is False and report["items"] == 1  # only t1 finished both arms
    assert {a["runs"] for a in report["arms"]} == {1}
    assert "INTERRUPTED" in format_report(report)


# ─── summary helpers and the estimate ────────────────────────────────────────


def test_percentile_interpolates_and_complete_items_need_every_arm() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 90) == pytest.approx(3.7)
    assert complete_items([], [Arm("a", None)]) == []


def test_estimate_calibrates_then_reads_earlier_tapes(root: Path, fake: FakeLlama) -> None:
    with AbSession(options(root)) as session:
        first = session.estimate()
        assert fake.completes == 2  # one unrecorded calibration call per kind of prompt
        assert log_rows(root) == []
        assert [p.kind for p in first.parts] == ["retrieval", "no-retrieval"]
        assert all("calibration" in p.source for p in first.parts) and first.calls == 6
        session.run()
    with AbSession(options(root)) as session:
        again = session.estimate()
    assert all("earlier calls" in p.source for p in again.parts)
    exp_options = ChatOptions(max_tokens=384, temperature=0.1)
    with AbSession(options(root)) as session:
        found = earlier_calls(root / "data/_kb/replay_runs.jsonl", root / "data/_kb/tapes",
                              session.gateway(1), "Tiny-Chat.Q4", exp_options)
        other = earlier_calls(root / "data/_kb/replay_runs.jsonl", root / "data/_kb/tapes",
                              session.gateway(1), "Tiny-Chat.Q4",
                              ChatOptions(max_tokens=7, temperature=0.1))
    assert len(found[False]) == 3 and len(found[True]) == 3
    assert other == {False: [], True: []}


def test_tail_lines_reads_the_end_of_a_log(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    assert tail_lines(log) == []
    log.write_bytes(b"".join(b"%d\n" % i for i in range(100)))
    assert tail_lines(log, rows=3) == [b"97", b"98", b"99"]


def test_a_gold_missing_from_the_corpus_is_a_task_file_error(root: Path, fake: FakeLlama
                                                              ) -> None:
    from lakevec.errors import TaskFileError

    (root / "tasks.jsonl").write_text('{"id": "x", "task": "audit", "gold": "pb-nope"}\n')
    with pytest.raises(TaskFileError, match="pb-nope"):
        AbSession(options(root))


# ─── jobs ────────────────────────────────────────────────────────────────────


def test_two_jobs_give_the_same_answers_with_a_model_each(root: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, FakeLlama())
    serial = run(root, experiment_id="serial")
    fake = FakeLlama()
    install(monkeypatch, fake)
    parallel = run(root, experiment_id="parallel", jobs=2)
    assert parallel["jobs"] == 2 and parallel["complete"] is True
    assert len([e for e in fake.events if e[0] == "load"]) >= 2  # one copy per job

    def answers(exp: str) -> dict[tuple[str, str], tuple[str, bool]]:
        return {(r["lakevec"]["experiment"]["task_id"], r["lakevec"]["experiment"]["arm"]):
                (r["model_response"], r["lakevec"]["experiment"]["verdict"]["passed"])
                for r in log_rows(root) if r["lakevec"]["experiment"]["id"] == exp}

    assert answers("parallel") == answers("serial") and len(answers("serial")) == 6
    for a, b in zip(serial["arms"], parallel["arms"], strict=True):  # type: ignore[call-overload]
        assert (a["passed"], a["wilson95"], a["versus_baseline"], a["grounding"]) == (
            b["passed"], b["wilson95"], b["versus_baseline"], b["grounding"])


def test_ctrl_c_with_two_jobs_finishes_the_runs_in_progress(root: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    import signal
    import threading

    seen = threading.Event()
    main = threading.main_thread().ident
    assert main is not None

    both_in_a_call = threading.Barrier(2)

    def script(user: str, seed: int, call: int) -> tuple[str, str]:
        if call >= 3:  # calls 3 and 4: one per job (a job waiting here makes no other call)
            both_in_a_call.wait(timeout=DEADLINE)
            if call == 3:
                # A real SIGINT to the main thread, as Ctrl-C sends; both jobs are in a call.
                signal.pthread_kill(main, signal.SIGINT)
            assert seen.wait(timeout=DEADLINE), "the main thread never saw the Ctrl-C"
        return GOOD, "stop"

    install(monkeypatch, FakeLlama(script=script))
    # As in a terminal: a process started in the background by a non-interactive shell
    # (CI scripts, `cmd &`) inherits SIGINT ignored, and Python then never raises
    # KeyboardInterrupt for it; this test is about what happens when Ctrl-C arrives.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    in_progress: list[int] = []

    def interrupted(busy: int) -> None:
        in_progress.append(busy)
        seen.set()

    try:
        with AbSession(options(root, jobs=2)) as session:
            with pytest.raises(KeyboardInterrupt):
                session.run(on_interrupt=interrupted)
            report = session.report()
    finally:
        signal.signal(signal.SIGINT, previous)
    rows = log_rows(root)
    # Both runs in progress were finished and logged; none started after Ctrl-C.
    assert in_progress == [2]
    assert len(rows) == 4 == report["runs_finished"] == len(session.experiment.outcomes)
    assert {r["recorded_run_id"] for r in rows} == {
        o.run_id for o in session.experiment.outcomes}
