"""The ``lakevec`` command line: thin wrappers over the library.

Each command parses options, makes one library call and maps domain errors:
:class:`~lakevec.errors.UsageProblem` → exit 2, any other
:class:`~lakevec.errors.LakevecError` → exit 1.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from lakevec import __version__
from lakevec.corpus import CorpusFormat
from lakevec.errors import LakevecError, UsageProblem
from lakevec.index import (
    DEFAULT_EF_CONSTRUCTION,
    DEFAULT_EF_SEARCH,
    DEFAULT_KEEP,
    DEFAULT_LOCK_TIMEOUT,
    DEFAULT_M,
    DEFAULT_REBUILD_THRESHOLD,
    HnswParams,
)
from lakevec.indexer import index_corpus
from lakevec.paths import default_corpus, default_index, resolve_root
from lakevec.retrieve import open_dense

F = TypeVar("F", bound=Callable[..., Any])


def domain_errors(func: F) -> F:
    """Turn lakevec errors into click errors with the documented exit codes."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except UsageProblem as exc:
            raise click.UsageError(str(exc)) from exc
        except LakevecError as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper  # type: ignore[return-value]


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, sort_keys=False))


def root_from(ctx: click.Context) -> Path:
    root: Path = ctx.obj["root"]
    return root


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lakevec")
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Project root holding exports/rag/playbooks.jsonl, index/ and data/_kb/. "
    "Default: $LH_DISTILL_ROOT, else the current directory.",
)
@click.pass_context
def main(ctx: click.Context, root: Path | None) -> None:
    """lakevec: local ANN retrieval for LLM replay pipelines.

    Build an HNSW index of the playbook corpus with `lakevec build-index`,
    query it with `lakevec search`, and run the replay pipeline with
    `lakevec replay --task "..."`.
    """
    ctx.ensure_object(dict)
    ctx.obj["root"] = resolve_root(root)


def _index_dir(ctx: click.Context, index: Path | None) -> Path:
    return index if index is not None else default_index(root_from(ctx))


INDEX_OPTION = click.option(
    "--index",
    "index",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Index directory. Default: <root>/index/.",
)
MODEL_OPTION = click.option(
    "--model",
    default=None,
    metavar="PATH",
    help="Local sentence-transformers model directory. Default: the model the index was "
    "built with; for a new index the packaged all-MiniLM-L6-v2. Never downloads.",
)


@main.command("build-index")
@click.option(
    "--corpus",
    type=click.Path(dir_okay=True, path_type=Path),
    default=None,
    help="Corpus JSONL (or a BEIR directory). Default: <root>/exports/rag/playbooks.jsonl.",
)
@INDEX_OPTION
@MODEL_OPTION
@click.option(
    "--format",
    "corpus_format",
    type=click.Choice(["auto", "playbooks", "beir"]),
    default="auto",
    show_default=True,
    help="Corpus record shape: playbook records, or BEIR documents (_id, title, text). "
    "auto decides from the first record.",
)
@click.option("--strict", is_flag=True, help="Fail (exit 1) on the first malformed line.")
@click.option(
    "--full", is_flag=True, help="Rebuild from scratch instead of updating incrementally."
)
@click.option("--m", "m", type=click.IntRange(2, 256), default=None,
              help=f"HNSW M (graph degree). Default {DEFAULT_M}, or the existing index's.")
@click.option("--ef-construction", type=click.IntRange(8, 4096), default=None,
              help=f"HNSW ef_construction. Default {DEFAULT_EF_CONSTRUCTION}.")
@click.option("--ef-search", type=click.IntRange(1, 4096), default=None,
              help=f"HNSW ef at query time (stored in the manifest). Default {DEFAULT_EF_SEARCH}.")
@click.option("--batch-size", type=click.IntRange(1, 4096), default=None,
              help="Texts per model forward pass. Default 64.")
@click.option("--keep", type=click.IntRange(1, 1000), default=DEFAULT_KEEP, show_default=True,
              help="Snapshots to keep; older ones are deleted after a successful build.")
@click.option("--rebuild-threshold", type=click.FloatRange(0.0, 1.0, min_open=True),
              default=DEFAULT_REBUILD_THRESHOLD, show_default=True,
              help="Rebuild the HNSW graph from stored vectors (no re-embedding) once "
              "deletions+replacements since the last graph build exceed this share of records.")
@click.option("--lock-timeout", type=click.FloatRange(0.0), default=DEFAULT_LOCK_TIMEOUT,
              show_default=True, help="Seconds to wait for another running build.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or notes on stderr.")
@click.option("--json", "as_json", is_flag=True, help="Print the build summary as one JSON object.")
@click.pass_context
@domain_errors
def build_index_cmd(
    ctx: click.Context,
    corpus: Path | None,
    index: Path | None,
    model: str | None,
    corpus_format: CorpusFormat,
    strict: bool,
    full: bool,
    m: int | None,
    ef_construction: int | None,
    ef_search: int | None,
    batch_size: int | None,
    keep: int,
    rebuild_threshold: float,
    lock_timeout: float,
    quiet: bool,
    as_json: bool,
) -> None:
    """Embed the corpus and build (or incrementally update) the HNSW index.

    Embedded text per record: title + " " + content. Unchanged records are
    never re-embedded. The new snapshot is swapped in atomically.
    """
    root = root_from(ctx)
    params = None
    if any(v is not None for v in (m, ef_construction, ef_search)):
        params = HnswParams(
            M=m or DEFAULT_M,
            ef_construction=ef_construction or DEFAULT_EF_CONSTRUCTION,
            ef_search=ef_search or DEFAULT_EF_SEARCH,
        )
    report = index_corpus(
        corpus or default_corpus(root),
        _index_dir(ctx, index),
        model=model,
        corpus_format=corpus_format,
        strict=strict,
        full=full,
        params=params,
        progress=not quiet,
        keep=keep,
        rebuild_threshold=rebuild_threshold,
        lock_timeout=lock_timeout,
        batch_size=batch_size,
    )
    if report.problems and not quiet:
        first = "; ".join(report.problems[:3])
        click.echo(f"warning: skipped {report.skipped} bad corpus line(s): {first}", err=True)
    if as_json:
        emit_json(report.as_dict())
        return
    verb = "updated" if report.mode == "incremental" else "built"
    if not report.changed:
        click.echo(f"index {report.index_dir} is up to date ({report.snapshot}, "
                   f"{report.records} records)")
        return
    click.echo(
        f"{verb} {report.snapshot}: {report.records} records "
        f"(+{report.added} ~{report.updated} meta {report.metadata_updated} "
        f"-{report.deleted}; {report.skipped} skipped, {report.duplicates} duplicate ids) "
        f"in {report.seconds:.1f} s, {report.records_per_s:.1f} records/s → {report.index_dir}"
    )


@main.command("search")
@click.argument("text")
@click.option("-k", "k", type=click.IntRange(1, 10_000), default=8, show_default=True,
              help="Number of results (clamped to the index size).")
@INDEX_OPTION
@MODEL_OPTION
@click.option("--exact", is_flag=True, help="Brute-force search over all vectors instead of HNSW.")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON array of {rank, id, score, title, success_score, tags}.")
@click.pass_context
@domain_errors
def search_cmd(
    ctx: click.Context,
    text: str,
    k: int,
    index: Path | None,
    model: str | None,
    exact: bool,
    as_json: bool,
) -> None:
    """Search the index for TEXT and print rank, id, score and title."""
    if not text.strip():
        raise UsageProblem("search text is empty — pass the query as an argument")
    with open_dense(_index_dir(ctx, index), model=model, exact=exact) as retriever:
        hits = retriever.search(text, k)
    if as_json:
        emit_json([
            {"rank": i, "id": h.record.id, "score": round(h.score, 6), "title": h.record.title,
             "success_score": h.record.success_score, "tags": h.record.tags}
            for i, h in enumerate(hits, start=1)
        ])
        return
    for i, h in enumerate(hits, start=1):
        click.echo(f"{i:>3}  {h.score:6.3f}  {h.record.id}  {h.record.title}")


@main.command("replay")
@click.option("--task", required=True, help="The task text to replay.")
@click.option("--local-only", is_flag=True, help="Never escalate; just record the gate's verdict.")
@click.option("--allow-escalation", is_flag=True,
              help="When the gate fails, retry once with the escalation model.")
@click.option("--no-retrieval", is_flag=True,
              help="Baseline run without a context bundle (no index or corpus needed).")
@click.option("--dry-run", is_flag=True,
              help="Use the deterministic synthetic response instead of calling a model.")
@click.option("--retriever", "retriever_kind", type=click.Choice(["hnsw", "exact", "jaccard"]),
              default="hnsw", show_default=True,
              help="hnsw: ANN over the index; exact: brute force over the index; "
              "jaccard: the seed's keyword overlap over the corpus.")
@INDEX_OPTION
@click.option("--corpus", "corpus_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None,
              help="Corpus JSONL for --retriever jaccard. "
              "Default: <root>/exports/rag/playbooks.jsonl.")
@MODEL_OPTION
@click.option("--gateway", "gateway_url", envvar="LH_GATEWAY_URL",
              default="http://localhost:3100", show_default=True,
              help="Chat gateway base URL. Env: LH_GATEWAY_URL.")
@click.option("--api", type=click.Choice(["lakehouse", "openai"]), default="lakehouse",
              show_default=True,
              help="lakehouse: POST /v1/chat with a provider; openai: POST /v1/chat/completions "
              "(bearer key from $LAKEVEC_API_KEY if set).")
@click.option("--local-model", envvar="LH_REPLAY_LOCAL_MODEL", default="qwen3.5:latest",
              show_default=True, help="Model tried first. Env: LH_REPLAY_LOCAL_MODEL.")
@click.option("--escalation-model", envvar="LH_REPLAY_ESCALATION_MODEL",
              default="deepseek-v3.1:671b", show_default=True,
              help="Model tried when the gate fails and --allow-escalation is set. "
              "Env: LH_REPLAY_ESCALATION_MODEL.")
@click.option("--timeout", type=click.FloatRange(0, min_open=True), default=180.0,
              show_default=True, help="Seconds to wait for each model call.")
@click.option("--evidence", "evidence_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None,
              help="Evidence log to append to. Default: <root>/data/_kb/replay_runs.jsonl.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the full ReplayResult (untruncated response) as one JSON object.")
@click.pass_context
@domain_errors
def replay_cmd(
    ctx: click.Context,
    task: str,
    local_only: bool,
    allow_escalation: bool,
    no_retrieval: bool,
    dry_run: bool,
    retriever_kind: str,
    index: Path | None,
    corpus_path: Path | None,
    model: str | None,
    gateway_url: str,
    api: str,
    local_model: str,
    escalation_model: str,
    timeout: float,
    evidence_path: Path | None,
    as_json: bool,
) -> None:
    """Replay TASK: retrieve, prompt the local model, validate, maybe escalate, log.

    Exit 0 when the run was recorded (even if validation failed), 1 on
    infrastructure failure (index, corpus, evidence log), 2 on usage errors.
    """
    from lakevec.replay import ReplayRequest, format_report, run_replay

    request = ReplayRequest(task=task, local_only=local_only, allow_escalation=allow_escalation,
                            no_retrieval=no_retrieval, dry_run=dry_run)
    result = run_replay(
        request, root=root_from(ctx), retriever_kind=retriever_kind, index_dir=index,
        corpus_path=corpus_path, model=model, gateway_url=gateway_url, api=api, timeout=timeout,
        local_model=local_model, escalation_model=escalation_model, evidence_path=evidence_path,
    )
    if as_json:
        emit_json(result.model_dump(mode="json"))
    else:
        click.echo(format_report(result))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
