"""The regression gate: baseline files of eval results, and the plain-text table."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lakevec.errors import UsageProblem
from lakevec.eval.metrics import metric_names
from lakevec.eval.runner import EvalReport

BASELINE_FORMAT = "lakevec-eval-baseline"
DEFAULT_TOLERANCE = 0.02
#: Gated metrics: quality only (latency depends on the machine).
QUALITY_PREFIXES = ("ndcg@", "recall@", "mrr@", "ann_recall@")


@dataclass(frozen=True)
class Regression:
    """A gated metric that fell below ``baseline - tolerance``."""

    retriever: str
    metric: str
    baseline: float
    value: float
    tolerance: float

    def __str__(self) -> str:
        return (
            f"{self.retriever} {self.metric} = {self.value:.4f}, baseline {self.baseline:.4f} "
            f"(drop {self.baseline - self.value:.4f} > tolerance {self.tolerance})"
        )


def _entry_key(dataset: str, queries: int, k: int) -> tuple[str, int, int]:
    return dataset, queries, k


def read_baseline(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageProblem(f"baseline file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise UsageProblem(f"baseline {path} is not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict) or data.get("format") != BASELINE_FORMAT:
        raise UsageProblem(f"{path} is not a lakevec eval baseline (format {BASELINE_FORMAT!r})")
    if not isinstance(data.get("entries"), list):
        raise UsageProblem(f"baseline {path} has no 'entries' list")
    return data


def _baseline_entry(report: EvalReport) -> dict[str, Any]:
    return {
        "dataset": report.dataset,
        "queries": report.queries,
        "k": report.k,
        "corpus_sha256": report.corpus_sha256,
        "model_fingerprint": report.model["fingerprint"],
        "precision": report.model["precision"],
        "retrievers": {
            r.name: {
                m: round(v, 4)
                for m, v in (r.metrics | r.extra).items()
                if m.startswith(QUALITY_PREFIXES)
            }
            for r in report.results
        },
    }


def save_baseline(report: EvalReport, path: Path, tolerance: float = DEFAULT_TOLERANCE) -> None:
    """Add (or replace) this run's entry in the baseline file at ``path``."""
    data: dict[str, Any] = (
        read_baseline(path)
        if path.exists()
        else {"format": BASELINE_FORMAT, "tolerance": tolerance, "entries": []}
    )
    key = _entry_key(report.dataset, report.queries, report.k)
    entries = [e for e in data["entries"] if _entry_key(e["dataset"], e["queries"], e["k"]) != key]
    entries.append(_baseline_entry(report))
    data["entries"] = sorted(entries, key=lambda e: (e["dataset"], e["queries"], e["k"]))
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def check_baseline(
    report: EvalReport, path: Path, tolerance: float | None = None
) -> tuple[list[Regression], list[str]]:
    """Compare a run with its baseline entry: ``(regressions, notes)``.

    Only quality metrics are gated (latency depends on the machine). The entry
    is the one for the same dataset, number of queries and ``k``; a baseline
    measured on a different corpus or model is a usage error, not a pass.
    """
    data = read_baseline(path)
    tol = float(data.get("tolerance", DEFAULT_TOLERANCE)) if tolerance is None else tolerance
    key = _entry_key(report.dataset, report.queries, report.k)
    entry = next(
        (e for e in data["entries"] if _entry_key(e["dataset"], e["queries"], e["k"]) == key),
        None,
    )
    if entry is None:
        have = ", ".join(
            f"{e['dataset']} ({e['queries']} queries, k={e['k']})" for e in data["entries"]
        )
        raise UsageProblem(
            f"{path} has no entry for {report.dataset} with {report.queries} queries and "
            f"k={report.k}; it has: {have or 'none'}"
        )
    if entry.get("corpus_sha256") != report.corpus_sha256:
        raise UsageProblem(f"{path}: the {report.dataset} baseline was measured on another corpus")
    if entry.get("model_fingerprint") != report.model["fingerprint"]:
        raise UsageProblem(f"{path}: the {report.dataset} baseline was measured with another model")
    if entry.get("precision") != report.model["precision"]:
        raise UsageProblem(
            f"{path}: the {report.dataset} baseline was measured in {entry.get('precision')} "
            f"precision, this run in {report.model['precision']} — pass --precision"
        )
    regressions: list[Regression] = []
    notes: list[str] = []
    measured = {r.name: r.metrics | r.extra for r in report.results}
    gated = [name for name in measured if name in entry["retrievers"]]
    if not gated:
        raise UsageProblem(f"{path}: none of the evaluated retrievers has a baseline")
    notes.extend(f"{name}: no baseline, not gated" for name in measured if name not in gated)
    for name in gated:
        for metric, base in entry["retrievers"][name].items():
            value = measured[name].get(metric)
            if value is None:
                notes.append(f"{name}: {metric} not measured in this run")
            elif value < float(base) - tol - 1e-9:
                regressions.append(Regression(name, metric, float(base), value, tol))
    return regressions, notes


def format_table(report: EvalReport) -> str:
    """A plain-text results table, one row per retriever."""
    ndcg, recall, mrr = metric_names(report.k)
    ann = f"ann_recall@{report.k}"
    lines = [
        f"{report.dataset}: {report.documents} docs, {report.queries} queries, "
        f"model {report.model['model_id']} ({report.model['precision']})",
        f"{'retriever':<10} {ndcg:>8} {recall:>9} {mrr:>7} {'secs':>7}  ANN",
    ]
    for r in report.results:
        m = r.metrics
        row = f"{r.name:<10} {m[ndcg]:>8.4f} {m[recall]:>9.4f} {m[mrr]:>7.4f} {r.seconds:>7.2f}"
        if r.extra:
            row += (
                f"  {ann} {r.extra[ann]:.4f}, p50 {r.extra['latency_p50_ms']:.3f} ms, "
                f"p99 {r.extra['latency_p99_ms']:.3f} ms"
            )
        lines.append(row)
    return "\n".join(lines)
