"""The report of an A/B experiment: per arm, and each arm against the baseline.

Only *complete items* count: an item is a (task, repeat) that every arm has
finished, so every arm is summarised over the same items and the pairing is
exact (an interrupted experiment is reported over the tasks it finished).

Per arm: pass rate (the experiment's verdict) with its Wilson interval;
against the baseline arm (``no-retrieval`` when it runs, else the first arm)
the paired difference and the exact McNemar p-value
(:func:`lakevec.ab.stats.paired_summary`); the run's latency (``duration_ms``
of the row: retrieval, prompt and model call) and the model call's own wall
time from the tape, median and 90th percentile; prompt and completion tokens
from the tape's ``usage``; ``finish_reason`` counts; and grounding, the mean
:class:`~lakevec.ab.grounding.GroundingScorer` score over the items whose
task names a gold playbook.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from lakevec.ab.experiment import Arm, RunOutcome
from lakevec.ab.stats import paired_summary, wilson_interval
from lakevec.settings import AB_BASELINE_ARM

__all__ = ["REPORT_SCHEMA", "baseline_arm", "format_report", "percentile", "summarise"]

REPORT_SCHEMA = "lakevec.ab_report.v1"
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100), linear between closest ranks; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def baseline_arm(arms: Sequence[Arm]) -> str:
    names = [a.name for a in arms]
    return AB_BASELINE_ARM if AB_BASELINE_ARM in names else names[0]


def _spread(values: Sequence[float]) -> dict[str, float | None]:
    return {"median": percentile(values, 50), "p90": percentile(values, 90)}


def _tokens(values: Sequence[int | None]) -> dict[str, float | int | None]:
    known = [v for v in values if v is not None]
    return {
        "total": sum(known) if known else None,
        "mean": sum(known) / len(known) if known else None,
        "median": percentile([float(v) for v in known], 50),
    }


def complete_items(outcomes: Sequence[RunOutcome], arms: Sequence[Arm]) -> list[tuple[int, str]]:
    """(repeat, task id) every arm finished, in the order they were run."""
    finished: dict[tuple[int, str], set[str]] = {}
    for o in outcomes:
        finished.setdefault((o.repeat, o.task_id), set()).add(o.arm)
    names = {a.name for a in arms}
    return [item for item, done in finished.items() if names <= done]


def _rates(
    passed: Sequence[bool], baseline: Sequence[bool] | None, base: str
) -> dict[str, Any]:
    """Pass count, rate and Wilson interval; with ``baseline``, the paired comparison."""
    k = sum(passed)
    low, high = wilson_interval(k, len(passed))
    versus = None
    if baseline is not None:
        paired = paired_summary(passed, baseline)
        versus = {
            "baseline": base, "n": paired.n, "both": paired.both,
            "only_this": paired.first_only, "only_baseline": paired.second_only,
            "neither": paired.neither, "difference": paired.difference,
            "mcnemar_p": paired.p_value,
        }
    return {
        "passed": k,
        "pass_rate": k / len(passed) if passed else None,
        "wilson95": [low, high],
        "versus_baseline": versus,
    }


def summarise(
    outcomes: Sequence[RunOutcome], arms: Sequence[Arm], *, planned_items: int,
    meta: dict[str, Any],
) -> dict[str, Any]:
    """The report object (``--json``): ``meta`` (experiment facts) plus the numbers.

    An arm's ``passed``/``pass_rate``/``wilson95``/``versus_baseline`` are by
    the experiment's gate (``meta["gate"]``); ``by_gate`` has the same for
    every gate, judged on the same answers.
    """
    items = complete_items(outcomes, arms)
    keep = set(items)
    by_arm: dict[str, dict[tuple[int, str], RunOutcome]] = {a.name: {} for a in arms}
    for o in outcomes:
        if (o.repeat, o.task_id) in keep:
            by_arm[o.arm][(o.repeat, o.task_id)] = o
    base = baseline_arm(arms)
    gates = sorted({g for o in outcomes for g in o.passed_by_gate})
    report_arms = []
    for arm in arms:
        runs = [by_arm[arm.name][i] for i in items]
        other = None if arm.name == base else [by_arm[base][i] for i in items]
        grounded = [r.grounding for r in runs if r.grounding is not None]
        report_arms.append({
            "arm": arm.name,
            "retriever": arm.retriever,
            "runs": len(runs),
            **_rates([r.passed for r in runs], [r.passed for r in other] if other else None,
                     base),
            "by_gate": {
                gate: _rates(
                    [r.passed_by_gate[gate] for r in runs],
                    [r.passed_by_gate[gate] for r in other] if other else None, base,
                )
                for gate in gates
            },
            "pipeline_passed": sum(r.pipeline_passed for r in runs),
            "failed_calls": sum(r.failed_call for r in runs),
            "grounding": {
                "items": len(grounded),
                "mean": sum(grounded) / len(grounded) if grounded else None,
            },
            "latency_ms": _spread([float(r.duration_ms) for r in runs]),
            "call_ms": _spread([r.call_ms for r in runs if r.call_ms is not None]),
            "prompt_tokens": _tokens([r.prompt_tokens for r in runs]),
            "completion_tokens": _tokens([r.completion_tokens for r in runs]),
            "finish_reasons": dict(Counter(r.finish_reason or "none" for r in runs)),
            "top_reasons": [  # numbers folded: "too short (19 chars…)" and "(61 chars…)" are one
                {"reason": reason, "runs": n}
                for reason, n in Counter(
                    _NUMBER.sub("N", x) for r in runs for x in set(r.reasons)
                ).most_common(5)
            ],
        })
    return {
        "schema": REPORT_SCHEMA,
        **meta,
        "complete": len(items) == planned_items,
        "items": len(items),
        "planned_items": planned_items,
        "runs_finished": len(outcomes),
        "baseline": base,
        "arms": report_arms,
        "runs": [asdict(o) for o in outcomes],
    }


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _secs(ms: float | None) -> str:
    return "–" if ms is None else f"{ms / 1000:.1f}s"


def _num(x: float | int | None, digits: int = 0) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _table(rows: list[list[str]]) -> list[str]:
    """Columns padded to their widest cell; the first column left-aligned, the rest right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                  for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip()
        for row in rows
    ]


def _versus(rates: dict[str, Any]) -> tuple[str, str]:
    v = rates["versus_baseline"]
    if v is None:
        return "baseline", "–"
    return (f"{100 * v['difference']:+.1f} pts ({v['only_this']}:{v['only_baseline']})",
            f"{v['mcnemar_p']:.3g}")


def _pass(rates: dict[str, Any], runs: int) -> tuple[str, str]:
    low, high = rates["wilson95"]
    return (f"{rates['passed']}/{runs} {_pct(rates['pass_rate'])}",
            f"[{_pct(low)}, {_pct(high)}]")


def format_report(report: dict[str, Any]) -> str:
    """The human-readable report (stdout without ``--json``)."""
    m = report["model"]
    repeats = report["repeats"]
    seed = f", seed {m['seed']}" if m.get("seed") is not None else ""
    lines = [
        f"experiment {report['experiment']}: {report['tasks']} tasks × {len(report['arms'])} "
        f"arms × {repeats} repeat{'s' if repeats != 1 else ''}, gate {report['gate']}",
        f"model {m['name']} ({m['api']}, max_tokens {m['max_tokens']}, temperature "
        f"{m['temperature']:g}{seed}); {report['runs_finished']} runs in "
        f"{_duration(report['seconds'])}",
    ]
    if not report["complete"]:
        lines.append(
            f"INTERRUPTED: {report['items']} of {report['planned_items']} tasks finished in "
            "every arm; the numbers below are over those only"
        )
    rows = [["arm", "pass", "Wilson 95%", f"vs {report['baseline']} (b:c)", "McNemar p",
             "grounding", "latency p50 / p90", "tokens in/out"]]
    for a in report["arms"]:
        lat = a["latency_ms"]
        rows.append([
            a["arm"], *_pass(a, a["runs"]), *_versus(a),
            _num(a["grounding"]["mean"], 3),
            f"{_secs(lat['median'])} / {_secs(lat['p90'])}",
            f"{_num(a['prompt_tokens']['mean'])}/{_num(a['completion_tokens']['mean'])}",
        ])
    lines += ["", *_table(rows)]
    others = [g for g in (report["arms"][0]["by_gate"] if report["arms"] else {})
              if g != report["gate"]]
    for gate in others:
        rows = [[f"same answers, gate {gate}", "pass", "Wilson 95%",
                 f"vs {report['baseline']} (b:c)", "McNemar p"]]
        for a in report["arms"]:
            rates = a["by_gate"][gate]
            rows.append([a["arm"], *_pass(rates, a["runs"]), *_versus(rates)])
        lines += ["", *_table(rows)]
    lines += [
        "",
        "pass: one gate and one checklist per task (the "
        f"{report['checklist_from']} bundle's) for every arm. (b:c): tasks only this arm / "
        "only the baseline passed.",
        "grounding: mean score against the task's gold playbook. tokens: mean prompt/completion "
        "per call.",
    ]
    for a in report["arms"]:
        finish = ", ".join(f"{k} {v}" for k, v in sorted(a["finish_reasons"].items()))
        lines.append(f"{a['arm']}: finish_reason {finish}; failed calls {a['failed_calls']}")
    lines.append(
        f"rows: {report['evidence']} (lakevec.experiment.id {report['experiment']}); "
        "`lakevec verify --all` re-checks them offline"
    )
    return "\n".join(lines)
