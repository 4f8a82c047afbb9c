"""``lakevec eval``: retrieval quality on a BEIR dataset, with a regression gate."""

from __future__ import annotations

from pathlib import Path

import click

from lakevec import settings
from lakevec.cli.common import domain_errors, emit_json, warn


@click.command("eval")
@click.option("--dataset", "dataset_dir", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="BEIR-layout directory: corpus.jsonl, queries.jsonl, qrels/<split>.tsv.")
@click.option("--retriever", "retrievers", multiple=True,
              type=click.Choice(settings.RETRIEVERS),
              help=f"Retriever to evaluate (repeatable). Default: all {len(settings.RETRIEVERS)}.")
@click.option("--k", "k", type=click.IntRange(1, 1000), default=settings.BUNDLE_TOP_K,
              show_default=True, help="Cut-off for Recall@K and ANN recall (the bundle's K).")
@click.option("--limit-queries", type=click.IntRange(1), default=None,
              help="Evaluate only the first N judged queries (qrels order).")
@click.option("--split", default=None, help="qrels/<split>.tsv to score. Default: test.")
@click.option("--model", default=settings.DEFAULT_MODEL, show_default=True,
              help="Embedding model spec for the dense retrievers.")
@click.option("--precision", type=click.Choice(settings.PRECISIONS), default=None,
              help="Precision the eval corpus is embedded with. Default: fp32, which gives "
              "the same figures on every CPU; `auto` measures what build-index does here.")
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help=f"Cache for eval indexes. Default: ${settings.EVAL_CACHE_ENV} or "
              "~/.cache/lakevec/eval.")
@click.option("--check", "baseline", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Exit 1 if a metric is below this baseline minus the tolerance.")
@click.option("--tolerance", type=click.FloatRange(0.0, 1.0), default=None,
              help="Allowed drop per metric for --check. Default: the baseline's own.")
@click.option("--save-baseline", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Add or replace this run's entry in a baseline file.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars on stderr.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON object.")
@domain_errors
def eval_cmd(
    dataset_dir: Path,
    retrievers: tuple[str, ...],
    k: int,
    limit_queries: int | None,
    split: str | None,
    model: str,
    precision: str | None,
    work_dir: Path | None,
    baseline: Path | None,
    tolerance: float | None,
    save_baseline: Path | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Score retrievers on a BEIR dataset: nDCG@10, Recall@K, MRR@10 (+ ANN recall, latency).

    Exit 0 on success, 1 when --check finds a regression, 2 on usage errors.
    """
    from lakevec.eval.baseline import Regression, check_baseline, format_table
    from lakevec.eval.baseline import save_baseline as save
    from lakevec.eval.runner import run_eval

    report = run_eval(dataset_dir, retrievers, model=model, precision=precision, split=split,
                      limit_queries=limit_queries, k=k, work_dir=work_dir, progress=not quiet)
    regressions: list[Regression] = []
    notes: list[str] = []
    if baseline is not None:
        regressions, notes = check_baseline(report, baseline, tolerance)
    if save_baseline is not None:
        save(report, save_baseline)
    if as_json:
        out = report.as_dict()
        if baseline is not None:
            out["check"] = {"baseline": str(baseline), "passed": not regressions,
                            "regressions": [str(r) for r in regressions], "notes": notes}
        emit_json(out)
    else:
        click.echo(format_table(report))
        if baseline is not None and not regressions:
            click.echo(f"check against {baseline}: passed")
    for note in notes:
        warn(f"note: {note}")
    if regressions:
        warn(f"check against {baseline}: {len(regressions)} regression(s)")
        for reg in regressions:
            warn(f"  {reg}")
        raise click.exceptions.Exit(1)
