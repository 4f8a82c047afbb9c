"""``lakevec ab``: run an A/B experiment over a task file and report it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from lakevec import settings
from lakevec.cli.common import (
    INDEX_OPTION,
    JACCARD_CORPUS_OPTION,
    MODEL_OPTION,
    api_option,
    domain_errors,
    emit_json,
    evidence_option,
    gateway_option,
    given_on_command_line,
    local_gguf_option,
    local_model_error,
    local_model_option,
    max_tokens_option,
    root_from,
    threads_option,
    timeout_option,
    warn,
)

if TYPE_CHECKING:
    from lakevec.ab.experiment import RunOutcome
    from lakevec.ab.session import AbSession

#: Exit code after Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED = 130


def interactive() -> bool:
    """Whether someone can answer "Proceed?" (stdin is a terminal)."""
    return sys.stdin.isatty()


def _names(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(","))


@click.command("ab")
@click.option("--tasks", "tasks_path", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="Task file (JSON Lines, format ab_task.v1: id, task, optional gold), e.g. "
              "exports/ab/tasks.jsonl.")
@click.option("--arms", default=",".join(settings.AB_ARMS), show_default=True,
              help="Comma-separated arms: retrieval (one arm per --retrievers entry) and "
              "no-retrieval (the baseline).")
@click.option("--retrievers", default=settings.DEFAULT_RETRIEVER, show_default=True,
              help="Comma-separated retrievers for the retrieval arms "
              f"({', '.join(settings.RETRIEVERS)}); the first one's bundle is every task's "
              "checklist, in every arm.")
@click.option("--repeats", type=click.IntRange(1), default=1, show_default=True,
              help="Runs of each task in each arm; with --api local repeat r samples with "
              f"seed {settings.LOCAL_SEED}+r-1.")
@click.option("--gate", type=click.Choice(settings.AB_GATES), default=settings.DEFAULT_AB_GATE,
              show_default=True,
              help="How every arm is judged: seed (the pipeline's gate) or strict (also fails "
              "answers cut off at max_tokens, unfinished <think>, and answers that mostly echo "
              "the prompt).")
@click.option("--limit", type=click.IntRange(1), default=None,
              help="Only the first N tasks of the file.")
@click.option("--jobs", type=click.IntRange(1, 64), default=None,
              help="Runs at a time. Default with --api local: usable CPUs / --threads (2 jobs "
              "of 1 thread on 2 cores), each job with its own copy of the model (the answers "
              "are the same); otherwise 1.")
@click.option("--yes", "-y", is_flag=True,
              help="Run without asking after the cost estimate (needed when stdin is not a "
              "terminal).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the report as one JSON object (per arm, and every run).")
@api_option(f"Model API. {settings.LOCAL_API}: the embedded GGUF model via llama.cpp, no "
            "gateway (see `lakevec replay --help` for the others).",
            default=settings.DEFAULT_AB_API)
@local_gguf_option()
@threads_option()
@gateway_option("Chat gateway base URL for --api lakehouse/openai.")
@local_model_option("Model name for --api lakehouse/openai (with --api local: the "
                    "--local-gguf model's).")
@timeout_option("Seconds one gateway call may take in all (--api lakehouse/openai).")
@max_tokens_option()
@click.option("--temperature", type=click.FloatRange(0.0, settings.MAX_TEMPERATURE),
              default=settings.TEMPERATURE, show_default=True,
              help="Sampling temperature sent with every model call.")
@INDEX_OPTION
@JACCARD_CORPUS_OPTION
@MODEL_OPTION
@evidence_option("Evidence log the runs are appended to.")
@click.option("--experiment-id", default=None, metavar="ID",
              help="Experiment id to tag the runs with. Default: ab-<UTC time>-<random>.")
@click.pass_context
@domain_errors
def ab_cmd(ctx: click.Context, tasks_path: Path, arms: str, retrievers: str, repeats: int,
           gate: str, limit: int | None, jobs: int | None, yes: bool, as_json: bool, api: str,
           local_gguf: str | None, threads: int | None, gateway_url: str,
           local_model: str | None, timeout: float, max_tokens: int | None, temperature: float,
           index: Path | None, corpus_path: Path | None, model: str | None,
           evidence_path: Path | None, experiment_id: str | None) -> None:
    """Run every task of --tasks in every arm with one model, and compare the arms.

    Every run is a real replay: its row goes to the evidence log and its
    model calls on a tape, tagged lakevec.experiment = {id, arm, task_id,
    repeat}. All arms are judged by the same gate against the same checklist
    (the retrieval bundle's). The report gives per arm the pass rate with its
    Wilson 95% interval, the paired difference to no-retrieval with the exact
    McNemar p-value, grounding in the task's gold playbook, latency and tokens.

    A cost estimate comes first, then "Proceed?" unless --yes. Ctrl-C stops
    after the runs that finished (they stay in the log), prints the report over
    the tasks every arm finished, and exits 130. Exit 2 on usage errors
    (also: stdin is not a terminal and --yes is missing), 1 on failures.
    """
    if not yes and not interactive():
        raise click.UsageError(
            "stdin is not a terminal, so there is no one to answer \"Proceed?\": pass --yes "
            "to run the experiment without asking"
        )
    from lakevec.ab.session import AbOptions, AbSession
    from lakevec.ab.summary import format_report
    from lakevec.errors import LocalModelError

    if api == settings.LOCAL_API and not given_on_command_line(ctx, "local_model"):
        local_model = None  # the GGUF's name; $LH_REPLAY_LOCAL_MODEL names a gateway model
    options = AbOptions(
        tasks_path=tasks_path, root=root_from(ctx), arms=_names(arms),
        retrievers=_names(retrievers), repeats=repeats, gate=gate, limit=limit, api=api,
        gateway_url=gateway_url, timeout=timeout, local_model=local_model,
        local_gguf=local_gguf, threads=threads, max_tokens=max_tokens, temperature=temperature,
        index_dir=index, corpus_path=corpus_path, model=model, evidence_path=evidence_path,
        experiment_id=experiment_id, jobs=jobs,
    )
    try:
        session = AbSession(options)
    except LocalModelError as exc:
        raise local_model_error(exc) from exc
    except KeyboardInterrupt:
        ctx.exit(INTERRUPTED)
    with session:
        exp = session.experiment
        total = len(exp.plan())
        warn(f"experiment {exp.experiment_id}: {len(exp.tasks)} tasks × {len(exp.arms)} arms "
             f"({', '.join(a.name for a in exp.arms)}) × {exp.repeats} repeat(s) = {total} runs; "
             f"model {exp.model}, max_tokens {exp.options.max_tokens}, gate {exp.gate}, "
             f"{exp.jobs} job(s)")
        try:
            warn(session.estimate().text())
            if not yes and not click.confirm("Proceed?", default=False, err=True):
                raise click.Abort()
        except KeyboardInterrupt:
            ctx.exit(INTERRUPTED)
        interrupted = _run(session, total)
        report = session.report()
        if as_json:
            emit_json(report)
        else:
            click.echo(format_report(report))
        if interrupted:
            warn(f"Interrupted: {report['runs_finished']} finished runs are in "
                 f"{report['evidence']}; the report covers {report['items']} complete tasks.")
            ctx.exit(INTERRUPTED)


def _run(session: AbSession, total: int) -> bool:
    """Run with a progress bar on stderr (hidden when it is not a terminal); True on Ctrl-C."""
    from tqdm import tqdm

    passed = {"n": 0}
    with tqdm(total=total, unit="run", file=sys.stderr, disable=not sys.stderr.isatty()) as bar:

        def on_run(outcome: RunOutcome) -> None:
            passed["n"] += outcome.passed
            bar.set_postfix_str(f"{outcome.task_id} {outcome.arm}: "
                                f"{'pass' if outcome.passed else 'fail'}; {passed['n']} passed")
            bar.update(1)

        def on_interrupt(in_progress: int) -> None:
            if in_progress:
                bar.clear()
                warn(f"Ctrl-C: finishing the {in_progress} run(s) in progress, then stopping "
                     "(Ctrl-C again abandons them)")

        try:
            session.run(on_run, on_interrupt)
        except KeyboardInterrupt:
            return True
    return False
