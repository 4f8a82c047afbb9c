"""``lakevec promote`` and ``lakevec loop``: feed accepted answers back into the corpus."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import click

from lakevec import settings
from lakevec.cli.common import (
    INDEX_OPTION,
    api_option,
    domain_errors,
    emit_json,
    evidence_option,
    gateway_option,
    local_gguf_option,
    local_model_error,
    local_model_option,
    max_tokens_option,
    root_from,
    threads_option,
    timeout_option,
)
from lakevec.errors import LakevecError

CORPUS_HELP = "Corpus JSONL the record is appended to. Default: <root>/exports/rag/playbooks.jsonl."


@click.command("promote")
@click.argument("run_ids", nargs=-1, required=True, metavar="RUN_ID...")
@click.option("--reviewer", default=None, metavar="NAME",
              help="Who approved the promotion (recorded in the record's provenance).")
@click.option("--force", is_flag=True,
              help="Promote even a failed run, a dry run or one that does not verify against "
              "its tape; the record says it was forced and over what.")
@click.option("--dry-run", is_flag=True, help="Check and report, but append nothing.")
@evidence_option("Evidence log the runs are read from.")
@click.option("--corpus", "corpus_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help=CORPUS_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.pass_context
@domain_errors
def promote_cmd(
    ctx: click.Context,
    run_ids: tuple[str, ...],
    reviewer: str | None,
    force: bool,
    dry_run: bool,
    evidence_path: Path | None,
    corpus_path: Path | None,
    as_json: bool,
) -> None:
    """Append the answers of accepted runs to the corpus as playbook records.

    Each RUN_ID (a row's recorded_run_id) must have passed the gate, not be a
    dry run, and verify bit-exact against its tape. Duplicate answers (same
    content sha256) are skipped. The next `lakevec reindex` picks the records
    up. Exit 0 when every run was promoted or already present, 1 when any was
    refused, 2 on usage errors.
    """
    from lakevec.loop.promote import promote
    from lakevec.paths import default_corpus, default_evidence

    root = root_from(ctx)
    report = promote(
        list(run_ids), evidence=evidence_path or default_evidence(root),
        corpus=corpus_path or default_corpus(root), reviewer=reviewer, force=force,
        dry_run=dry_run,
    )
    if as_json:
        emit_json(report.as_dict())
    else:
        for r in report.results:
            detail = f" ({r.detail})" if r.detail else ""
            record = f" → {r.record_id}" if r.record_id else ""
            click.echo(f"{r.run_id}  {r.outcome}{record}{detail}")
    if report.count("refused"):
        raise click.exceptions.Exit(1)


@click.command("loop")
@click.option("--tasks", "tasks_path", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="Task file (ab_task.v1 JSON Lines, as for `lakevec ab`).")
@click.option("--policy", type=click.Choice(["gate", "strict", "review"]), default="gate",
              show_default=True,
              help="gate: promote runs that passed the seed gate and verify; strict: only those "
              "that also pass the strict gate; review: promote nothing, count candidates.")
@click.option("--cycles", type=click.IntRange(1), default=1, show_default=True,
              help="Cycles to run; each prints one JSON line when it ends.")
@click.option("--retriever", "retriever_kind", type=click.Choice(settings.INDEX_RETRIEVERS),
              default=settings.DEFAULT_RETRIEVER, show_default=True,
              help="Retriever for the replays (over the index the loop reindexes).")
@click.option("--allow-escalation", is_flag=True,
              help="Escalate runs that fail the gate (the escalation rate is reported).")
@click.option("--limit", type=click.IntRange(1), default=None,
              help="Use only the first N tasks of the file.")
@click.option("--reviewer", default=None, metavar="NAME",
              help="Recorded as the promotions' reviewer (default: the loop and its policy).")
@api_option("Gateway protocol; `local` runs the embedded model in process.")
@gateway_option("Chat gateway base URL (not used with --api local).")
@local_gguf_option()
@threads_option()
@local_model_option("Model tried first (not used with --api local).")
@click.option("--escalation-model", envvar=settings.ESCALATION_MODEL_ENV,
              default=settings.DEFAULT_ESCALATION_MODEL, show_default=True,
              help="Model for escalations.")
@max_tokens_option()
@timeout_option("Seconds each model call may take in all.")
@evidence_option("Evidence log the runs are appended to.")
@click.option("--corpus", "corpus_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help=CORPUS_HELP)
@INDEX_OPTION
@click.pass_context
@domain_errors
def loop_cmd(
    ctx: click.Context,
    tasks_path: Path,
    policy: str,
    cycles: int,
    retriever_kind: str,
    allow_escalation: bool,
    limit: int | None,
    reviewer: str | None,
    api: str,
    gateway_url: str,
    local_gguf: str | None,
    threads: int | None,
    local_model: str,
    escalation_model: str,
    max_tokens: int | None,
    timeout: float,
    evidence_path: Path | None,
    corpus_path: Path | None,
    index: Path | None,
) -> None:
    """Replay a task set, promote answers by --policy, reindex: the seed's Phase 8.

    Made for cron: one JSON line per cycle on stdout (tasks, pass and escalation
    rates with Wilson 95% intervals, promotions, index version), nothing else.
    Every run is logged with its tape and tagged with the loop id and cycle.
    """
    from lakevec.ab.tasks import load_tasks
    from lakevec.loop.cycle import LoopPaths, run_loop
    from lakevec.paths import default_corpus, default_evidence, default_index
    from lakevec.replay.engine import ReplayRequest
    from lakevec.replay.runner import local_model_for, open_gateway

    root = root_from(ctx)
    tasks = load_tasks(tasks_path)[:limit]
    paths = LoopPaths(root=root, corpus=corpus_path or default_corpus(root),
                      index=index or default_index(root),
                      evidence=evidence_path or default_evidence(root))
    if max_tokens is None:
        max_tokens = settings.LOCAL_MAX_TOKENS if api == settings.LOCAL_API else settings.MAX_TOKENS
    request = ReplayRequest(task="-", allow_escalation=allow_escalation, max_tokens=max_tokens)
    with ExitStack() as stack:
        try:
            gateway = open_gateway(stack, api, gateway_url=gateway_url, timeout=timeout,
                                   local_gguf=local_gguf, threads=threads)
        except LakevecError as exc:
            if api == settings.LOCAL_API:
                raise local_model_error(exc) from exc
            raise
        model = local_model_for(gateway, None if api == settings.LOCAL_API else local_model)
        for report in run_loop(tasks, cycles=cycles, paths=paths, gateway=gateway,
                               policy=policy, retriever_kind=retriever_kind, request=request,
                               local_model=model, escalation_model=escalation_model,
                               reviewer=reviewer):
            emit_json(report.as_dict())
