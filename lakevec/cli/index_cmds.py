"""``lakevec build-index``, ``reindex`` and ``status``: writing and inspecting the index."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from lakevec import settings
from lakevec.cli.common import (
    BATCH_SIZE_OPTION,
    CORPUS_OPTION,
    FORMAT_OPTION,
    INDEX_OPTION,
    KEEP_OPTION,
    LOCK_TIMEOUT_OPTION,
    MODEL_OPTION,
    PRECISION_OPTION,
    REBUILD_THRESHOLD_OPTION,
    STRICT_OPTION,
    domain_errors,
    emit_json,
    index_dir_for,
    root_from,
    warn,
)
from lakevec.paths import default_corpus

if TYPE_CHECKING:
    from lakevec.corpus import CorpusFormat
    from lakevec.embed.ray_embed import RayOptions
    from lakevec.index.build import BuildReport

#: Skipped lines quoted in build-index's warning (``--json`` lists them all).
SHOWN_SKIPPED = 3
#: ``--ray`` without a value: Ray's own default address.
RAY_DEFAULT = "default"

RAY_OPTION = click.option(
    "--ray", "ray_address", is_flag=False, flag_value=RAY_DEFAULT, default=None,
    metavar="[ADDRESS]",
    help="Embed the new and changed records on a Ray cluster (Ray Data, one actor per CPU); "
    "the graph and the snapshot are still built here. ADDRESS: host:6379, ray://host:10001 or "
    "auto; without one, Ray's default ($RAY_ADDRESS, else a cluster started on this machine, "
    f"else a new local one). Needs `{settings.RAY_EXTRA_HINT}` here and on every node.",
)
RAY_ACTORS_OPTION = click.option(
    "--ray-actors", type=click.IntRange(1, 100_000), default=None, metavar="N",
    help="Embedding actors on the Ray cluster. Default: one per CPU of the cluster.",
)


def ray_options(address: str | None, actors: int | None) -> RayOptions | None:
    """What ``--ray``/``--ray-actors`` ask for (None: embed here)."""
    if address is None:
        if actors is not None:
            raise click.UsageError("--ray-actors needs --ray")
        return None
    from lakevec.embed.ray_embed import RayOptions

    return RayOptions(address=None if address == RAY_DEFAULT else address, actors=actors)
#: New bad lines reindex prints one per line before summing up the rest.
SHOWN_NEW_PROBLEMS = 10


def skipped_warning(skipped_lines: Sequence[dict[str, Any]]) -> str | None:
    """One line naming the bad corpus lines a build skipped, or None when there were none."""
    if not skipped_lines:
        return None
    first = "; ".join(f"line {e['line']}: {e['reason']}" for e in skipped_lines[:SHOWN_SKIPPED])
    extra = len(skipped_lines) - SHOWN_SKIPPED
    more = f" (+{extra} more; --json lists them all)" if extra > 0 else ""
    return f"warning: skipped {len(skipped_lines)} bad corpus line(s): {first}{more}"


def new_problem_lines(corpus: Path, problems: Sequence[str]) -> list[str]:
    """reindex's stderr lines for bad corpus lines no earlier build reported."""
    lines = [f"warning: {corpus}: skipped {p}" for p in problems[:SHOWN_NEW_PROBLEMS]]
    extra = len(problems) - SHOWN_NEW_PROBLEMS
    if extra > 0:
        lines.append(f"warning: {corpus}: {extra} more new bad line(s) skipped "
                     "(`lakevec build-index --json` lists them all)")
    return lines


def repaired_warning(report: BuildReport) -> str | None:
    if report.repaired is None:
        return None
    return (f"warning: the live snapshot failed verification ({report.repaired}); "
            f"rebuilt it from the corpus as {report.snapshot}")


@contextmanager
def os_failures(what: str) -> Iterator[None]:
    """An OS failure (disk full, permissions) is one line on stderr, not a traceback."""
    try:
        yield
    except OSError as exc:
        raise click.ClickException(f"{what} failed: {exc}") from exc


@click.command("build-index")
@CORPUS_OPTION
@INDEX_OPTION
@MODEL_OPTION
@FORMAT_OPTION
@STRICT_OPTION
@click.option(
    "--full", is_flag=True, help="Rebuild from scratch instead of updating incrementally."
)
@click.option("--m", "m", type=click.IntRange(2, 256), default=None,
              help=f"HNSW M (graph degree). Default {settings.DEFAULT_M}, or the existing "
              "index's.")
@click.option("--ef-construction", type=click.IntRange(8, 4096), default=None,
              help=f"HNSW ef_construction. Default {settings.DEFAULT_EF_CONSTRUCTION}, or the "
              "existing index's.")
@click.option("--ef-search", type=click.IntRange(1, 4096), default=None,
              help="HNSW ef at query time (stored in the manifest). Default "
              f"{settings.DEFAULT_EF_SEARCH}, or the existing index's.")
@BATCH_SIZE_OPTION
@PRECISION_OPTION
@RAY_OPTION
@RAY_ACTORS_OPTION
@KEEP_OPTION
@REBUILD_THRESHOLD_OPTION
@LOCK_TIMEOUT_OPTION
@click.option("--quiet", "-q", is_flag=True,
              help="No progress bars, notes or skipped-line warnings on stderr.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the build summary as one JSON object (skipped_lines lists every "
              "bad corpus line).")
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
    ray_address: str | None,
    ray_actors: int | None,
    keep: int,
    rebuild_threshold: float,
    lock_timeout: float,
    quiet: bool,
    as_json: bool,
) -> None:
    """Embed the corpus and build (or incrementally update) the index.

    Embedded text per record: title + " " + content. Unchanged records are
    never re-embedded. The new snapshot is swapped in atomically. Bad corpus
    lines are skipped with a warning (or fail the build with --strict).
    With --ray the embedding runs on a Ray cluster; a failed distributed build
    exits 1 and leaves the live snapshot as it was.
    """
    from lakevec.index.update import index_corpus

    given = {"M": m, "ef_construction": ef_construction, "ef_search": ef_search}
    ray = ray_options(ray_address, ray_actors)
    with os_failures("build-index"):
        report = index_corpus(
            corpus or default_corpus(root_from(ctx)),
            index_dir_for(ctx, index),
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
            ray=ray,
        )
    if (repaired := repaired_warning(report)) is not None:
        warn(repaired)
    if not quiet and (skipped := skipped_warning(report.skipped_lines)) is not None:
        warn(skipped)
    if as_json:
        emit_json(report.as_dict())
        return
    if not report.changed:
        click.echo(f"index {report.index_dir} is up to date ({report.snapshot}, "
                   f"{report.records} records)")
        return
    verb = "updated" if report.mode == "incremental" else "built"
    click.echo(
        f"{verb} {report.snapshot}: {report.records} records "
        f"(+{report.added} ~{report.updated} meta {report.metadata_updated} "
        f"-{report.deleted}; {report.skipped} skipped, {report.duplicates} duplicate ids) "
        f"in {report.seconds:.1f} s, {report.records_per_s:.1f} records/s → {report.index_dir}"
    )


@click.command("reindex")
@CORPUS_OPTION
@INDEX_OPTION
@MODEL_OPTION
@FORMAT_OPTION
@STRICT_OPTION
@BATCH_SIZE_OPTION
@PRECISION_OPTION
@RAY_OPTION
@RAY_ACTORS_OPTION
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
    ray_address: str | None,
    ray_actors: int | None,
    keep: int,
    rebuild_threshold: float,
    lock_timeout: float,
) -> None:
    """Bring the index up to date with the corpus; made for cron and systemd timers.

    Incremental, locked and crash-safe like build-index, with no progress
    output. stdout: nothing when nothing changed, otherwise exactly one JSON
    line (added, updated, metadata_updated, deleted, unchanged, embedded,
    skipped_lines, seconds, version, snapshot, finished_at, and path: "small"
    when only new corpus lines were parsed and changed rows written, "general"
    when the whole corpus was read and the snapshot rewritten). stderr: corpus
    lines skipped that no earlier build reported (each is reported once), and
    a warning when a damaged live snapshot was rebuilt. On failure: exit 1
    (2 for bad flags) and a one-line error on stderr. With --ray, Ray's own
    console output goes to a log file, never to stdout or stderr, and a run
    with nothing to embed does not contact the cluster.
    """
    from lakevec.clock import iso_ms, utc_now
    from lakevec.index.update import index_corpus

    corpus_path = corpus or default_corpus(root_from(ctx))
    ray = ray_options(ray_address, ray_actors)
    with os_failures("reindex"):
        report = index_corpus(
            corpus_path,
            index_dir_for(ctx, index),
            model=model,
            corpus_format=corpus_format,
            strict=strict,
            progress=False,
            keep=keep,
            rebuild_threshold=rebuild_threshold,
            lock_timeout=lock_timeout,
            batch_size=batch_size,
            precision=precision,
            ray=ray,
        )
    for line in new_problem_lines(corpus_path, report.problems):
        warn(line)
    if (repaired := repaired_warning(report)) is not None:
        warn(repaired)
    if report.changed:
        emit_json(report.as_dict() | {"finished_at": iso_ms(utc_now())})


@click.command("status")
@CORPUS_OPTION
@INDEX_OPTION
@FORMAT_OPTION
@click.option("--verify", is_flag=True,
              help="Also check every index file's sha256 (reads all of them; slower). "
              "A mismatch exits 1.")
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
    HNSW graph. Exit 1 when there is no readable index (or --verify fails).
    """
    from lakevec.index.status import format_status, index_status

    status = index_status(
        index_dir_for(ctx, index),
        corpus or default_corpus(root_from(ctx)),
        corpus_format=corpus_format,
        verify=verify,
    )
    if as_json:
        emit_json(status.as_dict())
    else:
        click.echo(format_status(status))
