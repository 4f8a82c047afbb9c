"""``lakevec search``: rank the index for a query, locally or through ``lakevec serve``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from lakevec import settings
from lakevec.cli.common import (
    INDEX_OPTION,
    JACCARD_CORPUS_OPTION,
    MODEL_OPTION,
    RETRIEVER_HELP,
    SERVER_OPTION,
    domain_errors,
    emit_json,
    index_dir_for,
    root_from,
)
from lakevec.errors import UsageProblem

if TYPE_CHECKING:
    from lakevec.retrieval.base import Hit
    from lakevec.retrieval.filters import SearchFilters


def resolve_kind(retriever: str | None, exact: bool) -> str:
    """The retriever to use: ``--retriever``, ``--exact`` (its synonym) or the default."""
    if exact:
        if retriever is not None and retriever != "exact":
            raise UsageProblem(
                f"--exact means --retriever exact; it cannot be combined with --retriever "
                f"{retriever} (drop one of them)"
            )
        return "exact"
    return retriever or settings.DEFAULT_RETRIEVER


def search_filters(
    success_scores: tuple[str, ...],
    tags: tuple[str, ...],
    categories: tuple[str, ...],
    min_score: float | None,
) -> SearchFilters | None:
    """The metadata filters given on the command line, or None when there are none."""
    if not (success_scores or tags or categories) and min_score is None:
        return None
    if min_score is not None and not math.isfinite(min_score):
        raise UsageProblem(f"--min-score must be a finite number, got {min_score}")
    from lakevec.retrieval.filters import SearchFilters

    return SearchFilters(
        success_score=success_scores or None,
        tags_any=tags or None,
        source_category=categories or None,
        min_score=min_score,
    )


#: What each result shows (the keys of ``--json``).
ROW_KEYS = ("rank", "id", "score", "title", "success_score", "source_category", "tags")


def hit_row(rank: int, hit: Hit) -> dict[str, Any]:
    rec = hit.record
    return {
        "rank": rank,
        "id": rec.id,
        "score": round(float(hit.score), 6),
        "title": rec.title,
        "success_score": rec.success_score,
        "source_category": rec.source_category,
        "tags": list(rec.tags),
    }


@click.command("search")
@click.argument("text")
@click.option("-k", "k", type=click.IntRange(1, 10_000), default=settings.DEFAULT_SEARCH_K,
              show_default=True, help="Number of results (fewer when the index is smaller).")
@click.option("--retriever", "retriever", type=click.Choice(settings.RETRIEVERS), default=None,
              help=f"{RETRIEVER_HELP} Default: {settings.DEFAULT_RETRIEVER}, the same as "
              "`lakevec replay`.")
@click.option("--exact", is_flag=True,
              help="Same as --retriever exact: brute-force cosine over every vector.")
@click.option("--success-score", "success_scores", multiple=True, metavar="VALUE",
              help="Only records with this success_score (repeatable: any of them).")
@click.option("--tag", "tags", multiple=True, metavar="VALUE",
              help="Only records carrying this tag (repeatable: any of them).")
@click.option("--category", "categories", multiple=True, metavar="VALUE",
              help="Only records with this source_category (repeatable: any of them).")
@click.option("--min-score", type=float, default=None, metavar="X",
              help="Drop results whose score (the retriever's own: cosine for hnsw/exact, "
              "the fused RRF score for hybrid, BM25, Jaccard) is below X.")
@INDEX_OPTION
@JACCARD_CORPUS_OPTION
@MODEL_OPTION
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON array of {rank, id, score, title, success_score, "
              "source_category, tags}.")
@SERVER_OPTION
@click.pass_context
@domain_errors
def search_cmd(
    ctx: click.Context,
    text: str,
    k: int,
    retriever: str | None,
    exact: bool,
    success_scores: tuple[str, ...],
    tags: tuple[str, ...],
    categories: tuple[str, ...],
    min_score: float | None,
    index: Path | None,
    corpus_path: Path | None,
    model: str | None,
    as_json: bool,
    server: str | None,
) -> None:
    """Search for TEXT and print rank, score, id and title (best first).

    Ranks with the same retriever as `lakevec replay` (hybrid unless
    --retriever says otherwise). Filters narrow the candidates before
    ranking; every given filter must hold.
    """
    if not text.strip():
        raise UsageProblem("search text is empty — pass the query as an argument")
    kind = resolve_kind(retriever, exact)
    filters = search_filters(success_scores, tags, categories, min_score)
    if server:
        rows = _search_served(ctx, server, text, k, kind, filters)
    else:
        from lakevec.retrieval.registry import open_retriever

        opened = open_retriever(kind, root=root_from(ctx), index_dir=index_dir_for(ctx, index),
                                corpus_path=corpus_path, model=model)
        try:
            hits = opened.search(text, k, filters=filters)
        finally:
            opened.close()
        rows = [hit_row(i, h) for i, h in enumerate(hits, start=1)]
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        click.echo(f"{row['rank']:>3}  {row['score']:8.4f}  {row['id']}  {row['title']}")


def filters_body(filters: SearchFilters) -> dict[str, Any]:
    """The ``filters`` object of a ``POST /vectors/search`` body (given filters only)."""
    body: dict[str, Any] = {
        "success_score": filters.success_score,
        "tags_any": filters.tags_any,
        "source_category": filters.source_category,
        "min_score": filters.min_score,
    }
    return {
        name: list(value) if isinstance(value, tuple) else value
        for name, value in body.items()
        if value is not None
    }


def _search_served(
    ctx: click.Context, server: str, text: str, k: int, kind: str,
    filters: SearchFilters | None,
) -> list[dict[str, Any]]:
    """Rows of the JSON output, ranked by the service (same retriever, same filters)."""
    from lakevec.service.client import ServiceClient, check_served, reject_local_options
    from lakevec.service.settings import MAX_K

    check_served(kind)
    reject_local_options(ctx, ["index", "corpus_path", "model"])
    with ServiceClient(server) as client:
        out = client.search(text, min(k, MAX_K), retriever=kind,
                            filters=filters_body(filters) if filters is not None else None)
    return [
        {key: round(float(r[key]), 6) if key == "score" else r[key] for key in ROW_KEYS}
        for r in out["results"]
    ]
