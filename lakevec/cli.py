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
    iso_ms,
    utc_now,
)
from lakevec.indexer import index_corpus
from lakevec.paths import default_corpus, default_index, resolve_root
from lakevec.retrieve import DEFAULT_RETRIEVER, RETRIEVERS, open_dense

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


# Options shared by build-index, reindex and status (one definition each).
CORPUS_OPTION = click.option(
    "--corpus",
    type=click.Path(dir_okay=True, path_type=Path),
    default=None,
    help="Corpus JSONL (or a BEIR directory). Default: <root>/exports/rag/playbooks.jsonl.",
)
FORMAT_OPTION = click.option(
    "--format",
    "corpus_format",
    type=click.Choice(["auto", "playbooks", "beir"]),
    default="auto",
    show_default=True,
    help="Corpus record shape: playbook records, or BEIR documents (_id, title, text). "
    "auto decides from the first record.",
)
STRICT_OPTION = click.option(
    "--strict", is_flag=True, help="Fail (exit 1) on the first malformed line."
)
BATCH_SIZE_OPTION = click.option(
    "--batch-size", type=click.IntRange(1, 4096), default=None,
    help="Texts per model forward pass. Default 32 (measured fastest for MiniLM).",
)
PRECISION_OPTION = click.option(
    "--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto",
    show_default=True,
    help="Embedding precision: auto uses bf16 weights when the CPU has native bf16 "
    "(avx512_bf16/amx_bf16), else fp32. Force fp32 for bit-stable vectors.",
)
KEEP_OPTION = click.option(
    "--keep", type=click.IntRange(1, 1000), default=DEFAULT_KEEP, show_default=True,
    help="Snapshots to keep; older ones are deleted after a successful build.",
)
REBUILD_THRESHOLD_OPTION = click.option(
    "--rebuild-threshold", type=click.FloatRange(0.0, 1.0, min_open=True),
    default=DEFAULT_REBUILD_THRESHOLD, show_default=True,
    help="Rebuild the HNSW graph from stored vectors (no re-embedding) once "
    "deletions+replacements since the last graph build exceed this share of records.",
)
LOCK_TIMEOUT_OPTION = click.option(
    "--lock-timeout", type=click.FloatRange(0.0), default=DEFAULT_LOCK_TIMEOUT,
    show_default=True, help="Seconds to wait for another running build.",
)

SERVER_OPTION = click.option(
    "--server",
    default=None,
    metavar="URL",
    help="Use a running `lakevec serve` at URL (e.g. http://127.0.0.1:8765) instead of loading "
    "the model and index here. Token from $LAKEVEC_TOKEN.",
)


@main.command("build-index")
@CORPUS_OPTION
@INDEX_OPTION
@MODEL_OPTION
@FORMAT_OPTION
@STRICT_OPTION
@click.option(
    "--full", is_flag=True, help="Rebuild from scratch instead of updating incrementally."
)
@click.option("--m", "m", type=click.IntRange(2, 256), default=None,
              help=f"HNSW M (graph degree). Default {DEFAULT_M}, or the existing index's.")
@click.option("--ef-construction", type=click.IntRange(8, 4096), default=None,
              help=f"HNSW ef_construction. Default {DEFAULT_EF_CONSTRUCTION}.")
@click.option("--ef-search", type=click.IntRange(1, 4096), default=None,
              help=f"HNSW ef at query time (stored in the manifest). Default {DEFAULT_EF_SEARCH}.")
@BATCH_SIZE_OPTION
@PRECISION_OPTION
@KEEP_OPTION
@REBUILD_THRESHOLD_OPTION
@LOCK_TIMEOUT_OPTION
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
    precision: str,
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
    given = {"M": m, "ef_construction": ef_construction, "ef_search": ef_search}
    report = index_corpus(
        corpus or default_corpus(root),
        _index_dir(ctx, index),
        model=model,
        corpus_format=corpus_format,
        strict=strict,
        full=full,
        hnsw={k: v for k, v in given.items() if v is not None},
        progress=not quiet,
        keep=keep,
        rebuild_threshold=rebuild_threshold,
        lock_timeout=lock_timeout,
        batch_size=batch_size,
        precision=precision,
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
@SERVER_OPTION
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
    server: str | None,
) -> None:
    """Search the index for TEXT and print rank, id, score and title."""
    if not text.strip():
        raise UsageProblem("search text is empty — pass the query as an argument")
    if server:
        from lakevec.client import ServiceClient, reject_local_options

        reject_local_options(ctx, ["index", "model"])
        with ServiceClient(server) as client:
            hits = client.search_hits(text, min(k, 100), exact=exact)
    else:
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
@click.option("--retriever", "retriever_kind", type=click.Choice(RETRIEVERS),
              default=DEFAULT_RETRIEVER, show_default=True,
              help="hybrid: BM25 + dense HNSW fused by reciprocal rank (measured best, "
              "docs/EVAL.md); hnsw: dense ANN; exact: dense brute force; bm25: lexical "
              "over the corpus; jaccard: the seed's keyword overlap over the corpus.")
@INDEX_OPTION
@click.option("--corpus", "corpus_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None,
              help="Corpus JSONL for --retriever jaccard/bm25. "
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
@SERVER_OPTION
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
    server: str | None,
) -> None:
    """Replay TASK: retrieve, prompt the local model, validate, maybe escalate, log.

    Exit 0 when the run was recorded (even if validation failed), 1 on
    infrastructure failure (index, corpus, evidence log), 2 on usage errors.
    """
    from lakevec.replay import ReplayRequest, format_report, run_replay

    request = ReplayRequest(task=task, local_only=local_only, allow_escalation=allow_escalation,
                            no_retrieval=no_retrieval, dry_run=dry_run)
    if server:
        from lakevec.client import SERVED_RETRIEVERS, ServiceClient, reject_local_options

        reject_local_options(ctx, ["index", "corpus_path", "model", "gateway_url", "api",
                                   "local_model", "escalation_model", "evidence_path"])
        if retriever_kind not in SERVED_RETRIEVERS:
            raise UsageProblem(
                f"--retriever {retriever_kind} is not served; use one of "
                + ", ".join(SERVED_RETRIEVERS)
            )
        with ServiceClient(server) as client:
            # Two model calls at most, each bounded by the service's own timeout.
            result = client.replay(request, retriever=retriever_kind, timeout=2 * timeout + 30)
    else:
        result = run_replay(
            request, root=root_from(ctx), retriever_kind=retriever_kind, index_dir=index,
            corpus_path=corpus_path, model=model, gateway_url=gateway_url, api=api,
            timeout=timeout, local_model=local_model, escalation_model=escalation_model,
            evidence_path=evidence_path,
        )
    if as_json:
        emit_json(result.model_dump(mode="json"))
    else:
        click.echo(format_report(result))


@main.command("eval")
@click.option("--dataset", "dataset_dir", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="BEIR-layout directory: corpus.jsonl, queries.jsonl, qrels/<split>.tsv.")
@click.option("--retriever", "retrievers", multiple=True,
              type=click.Choice(["jaccard", "bm25", "exact", "hnsw", "hybrid"]),
              help="Retriever to evaluate (repeatable). Default: all five.")
@click.option("--k", "k", type=click.IntRange(1, 1000), default=8, show_default=True,
              help="Cut-off for Recall@K and ANN recall (the bundle's K).")
@click.option("--limit-queries", type=click.IntRange(1), default=None,
              help="Evaluate only the first N judged queries (qrels order).")
@click.option("--split", default="test", show_default=True, help="qrels/<split>.tsv to score.")
@click.option("--model", default="default", show_default=True,
              help="Embedding model spec for the dense retrievers.")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "auto"]), default="fp32",
              show_default=True,
              help="Precision the eval corpus is embedded with. fp32 gives the same figures "
              "on every CPU; `auto` measures what build-index does on this machine.")
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Cache for eval indexes. Default: $LAKEVEC_EVAL_CACHE or ~/.cache/lakevec/eval.")
@click.option("--check", "baseline", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Exit 1 if a metric is below this baseline minus the tolerance.")
@click.option("--tolerance", type=click.FloatRange(0.0, 1.0), default=None,
              help="Allowed drop per metric for --check. Default: the baseline's own (0.02).")
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
    split: str,
    model: str,
    precision: str,
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
    from lakevec import evaluate as ev
    from lakevec.embed import load_embedder

    dataset = ev.load_dataset(dataset_dir, split=split, limit_queries=limit_queries)
    embedder = load_embedder(model, precision=precision)
    report = ev.evaluate(dataset, retrievers or ev.EVAL_RETRIEVERS, embedder, k=k,
                         work_dir=work_dir, progress=not quiet)
    regressions: list[ev.Regression] = []
    notes: list[str] = []
    if baseline is not None:
        regressions, notes = ev.check_baseline(report, baseline, tolerance)
    if save_baseline is not None:
        ev.save_baseline(report, save_baseline)
    if as_json:
        out = report.as_dict()
        if baseline is not None:
            out["check"] = {"baseline": str(baseline), "passed": not regressions,
                            "regressions": [str(r) for r in regressions], "notes": notes}
        emit_json(out)
    else:
        click.echo(ev.format_table(report))
        if baseline is not None and not regressions:
            click.echo(f"check against {baseline}: passed")
    for note in notes:
        click.echo(f"note: {note}", err=True)
    if regressions:
        click.echo(f"check against {baseline}: {len(regressions)} regression(s)", err=True)
        for reg in regressions:
            click.echo(f"  {reg}", err=True)
        sys.exit(1)


@main.command("reindex")
@CORPUS_OPTION
@INDEX_OPTION
@MODEL_OPTION
@FORMAT_OPTION
@STRICT_OPTION
@BATCH_SIZE_OPTION
@PRECISION_OPTION
@KEEP_OPTION
@REBUILD_THRESHOLD_OPTION
@LOCK_TIMEOUT_OPTION
@click.pass_context
@domain_errors
def reindex_cmd(
    ctx: click.Context,
    corpus: Path | None,
    index: Path | None,
    model: str | None,
    corpus_format: CorpusFormat,
    strict: bool,
    batch_size: int | None,
    precision: str,
    keep: int,
    rebuild_threshold: float,
    lock_timeout: float,
) -> None:
    """Bring the index up to date with the corpus; made for cron and systemd timers.

    Incremental, locked and crash-safe like build-index, but with no progress
    output: silent with exit 0 when nothing changed, otherwise exactly one
    JSON line on stdout (added, updated, metadata_updated, deleted, unchanged,
    embedded, seconds, version, snapshot, finished_at). On failure: exit 1
    (2 for bad flags) and a one-line error on stderr.
    """
    root = root_from(ctx)
    try:
        report = index_corpus(
            corpus or default_corpus(root),
            _index_dir(ctx, index),
            model=model,
            corpus_format=corpus_format,
            strict=strict,
            progress=False,
            keep=keep,
            rebuild_threshold=rebuild_threshold,
            lock_timeout=lock_timeout,
            batch_size=batch_size,
            precision=precision,
        )
    except OSError as exc:
        # Disk full, permissions...: cron wants one line, not a traceback.
        raise click.ClickException(f"reindex failed: {exc}") from exc
    if report.changed:
        emit_json(report.as_dict() | {"finished_at": iso_ms(utc_now())})


@main.command("status")
@CORPUS_OPTION
@INDEX_OPTION
@FORMAT_OPTION
@click.option("--verify", is_flag=True,
              help="Also check every index file's sha256 (reads all of them; slower).")
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON object.")
@click.pass_context
@domain_errors
def status_cmd(
    ctx: click.Context,
    corpus: Path | None,
    index: Path | None,
    corpus_format: CorpusFormat,
    verify: bool,
    as_json: bool,
) -> None:
    """Show the live index: version, model, records, deleted ratio, churn, age, drift.

    Drift counts the records that differ from the corpus right now, i.e. what
    the next `lakevec reindex` would change. Loads neither the model nor the
    HNSW graph. Exit 1 when there is no readable index.
    """
    from lakevec.status import format_status, index_status

    status = index_status(
        _index_dir(ctx, index),
        corpus or default_corpus(root_from(ctx)),
        corpus_format=corpus_format,
        verify=verify,
    )
    if as_json:
        emit_json(status.as_dict())
    else:
        click.echo(format_status(status))


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. A non-loopback address needs a token.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="TCP port (0 picks a free one).")
@INDEX_OPTION
@MODEL_OPTION
@click.option("--token", envvar="LAKEVEC_TOKEN", default=None, metavar="TOKEN",
              help="Require `Authorization: Bearer TOKEN` (at least 16 characters) on every "
              "endpoint but /healthz and the docs. Env: LAKEVEC_TOKEN (preferred: a flag "
              "shows in ps).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="uvicorn worker processes (each loads the model and index).")
@click.option("--evidence", "evidence_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None,
              help="Evidence log for /replay. Default: <root>/data/_kb/replay_runs.jsonl.")
@click.option("--gateway", "gateway_url", envvar="LH_GATEWAY_URL",
              default="http://localhost:3100", show_default=True,
              help="Chat gateway for /replay. Env: LH_GATEWAY_URL.")
@click.option("--api", type=click.Choice(["lakehouse", "openai"]), default="lakehouse",
              show_default=True, help="Gateway protocol for /replay (see `lakevec replay`).")
@click.option("--local-model", envvar="LH_REPLAY_LOCAL_MODEL", default="qwen3.5:latest",
              show_default=True, help="Model tried first by /replay. Env: LH_REPLAY_LOCAL_MODEL.")
@click.option("--escalation-model", envvar="LH_REPLAY_ESCALATION_MODEL",
              default="deepseek-v3.1:671b", show_default=True,
              help="Escalation model for /replay. Env: LH_REPLAY_ESCALATION_MODEL.")
@click.option("--timeout", type=click.FloatRange(0, min_open=True), default=180.0,
              show_default=True, help="Seconds to wait for each model call in /replay.")
@click.option("--poll-interval", type=click.FloatRange(0.0), default=0.5, show_default=True,
              help="Seconds between checks of index/CURRENT for a new snapshot.")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]),
              default="info", show_default=True, help="uvicorn log level.")
@click.pass_context
@domain_errors
def serve_cmd(
    ctx: click.Context,
    host: str,
    port: int,
    index: Path | None,
    model: str | None,
    token: str | None,
    workers: int,
    evidence_path: Path | None,
    gateway_url: str,
    api: str,
    local_model: str,
    escalation_model: str,
    timeout: float,
    poll_interval: float,
    log_level: str,
) -> None:
    """Serve vector search and replay over HTTP (FastAPI + uvicorn), hot-swapping indexes.

    POST /vectors/search, POST /replay, GET /healthz, GET /stats; OpenAPI at
    /openapi.json and /docs. A snapshot written by `lakevec reindex` is picked
    up without a restart. SIGTERM/SIGINT finish in-flight requests first.
    """
    from lakevec.paths import default_evidence
    from lakevec.server import ServerSettings, serve

    root = root_from(ctx)
    settings = ServerSettings(
        index_dir=_index_dir(ctx, index), evidence_path=evidence_path or default_evidence(root),
        model=model, token=token or None, host=host, port=port, gateway_url=gateway_url,
        api=api, timeout=timeout, local_model=local_model, escalation_model=escalation_model,
        poll_interval=poll_interval,
    )
    serve(settings, workers=workers, log_level=log_level)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
