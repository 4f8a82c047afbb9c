"""``lakevec verify``: replay logged runs from their tapes, offline, and compare the rows."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from lakevec import settings
from lakevec.cli.common import (
    INDEX_OPTION,
    MODEL_OPTION,
    domain_errors,
    emit_json,
    evidence_option,
    root_from,
    warn,
)
from lakevec.errors import UsageProblem


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageProblem(
            f"--since {text!r} is not a date; use e.g. 2026-04-27 or 2026-04-27T10:00:00Z"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@click.command("verify")
@click.argument("run_ids", nargs=-1, metavar="[RUN_ID]...")
@click.option("--all", "select_all", is_flag=True, help="Verify every run in the log.")
@click.option("--since", metavar="DATE",
              help="Only runs recorded at or after DATE (ISO 8601; a date alone is midnight UTC).")
@click.option("--retrieval", is_flag=True,
              help="Also re-run retrieval on today's index and report which rag_ids changed "
              "(a separate drift verdict; it does not change the exit code).")
@evidence_option("Evidence log to verify.")
@click.option("--tapes", "tapes_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help=f"Tape directory. Default: {settings.TAPES_DIRNAME}/ beside the "
              "evidence log.")
@INDEX_OPTION
@click.option("--corpus", "corpus_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Corpus JSONL for --retrieval of runs that used jaccard (and "
              "rows of other runtimes). Default: <root>/exports/rag/playbooks.jsonl.")
@MODEL_OPTION
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: per-run verdicts, counts and skipped lines.")
@click.pass_context
@domain_errors
def verify_cmd(
    ctx: click.Context,
    run_ids: tuple[str, ...],
    select_all: bool,
    since: str | None,
    retrieval: bool,
    evidence_path: Path | None,
    tapes_dir: Path | None,
    index: Path | None,
    corpus_path: Path | None,
    model: str | None,
    as_json: bool,
) -> None:
    """Replay logged runs from their tapes with today's code, offline, and compare.

    For each run: rebuild the prompt from the row's task and bundle, check every
    request byte against the tape, feed the recorded responses through the gate
    and escalation, and compare every field of the row. Nothing is sent over the
    network. One line per run: bit-exact, diverged (where, and the first
    difference) or not verifiable (other runtimes, dry runs, rows without tape).

    Exit 0 when every verified run matches, 1 on any divergence, 2 on usage errors.
    """
    moment = _since(since)
    if not (run_ids or select_all or moment):
        raise UsageProblem("name RUN_IDs, or pass --all or --since DATE")
    from lakevec.paths import default_evidence
    from lakevec.replay.engine import default_tape_dir
    from lakevec.replay.tape import TapeStore
    from lakevec.replay.verify import LogRow, RetrieverCache, read_log, retrieval_drift, verify_row

    log = evidence_path if evidence_path is not None else default_evidence(root_from(ctx))
    store = TapeStore(tapes_dir if tapes_dir is not None else default_tape_dir(log))
    wanted = set(run_ids)
    rows: list[LogRow] = []
    skipped: list[dict[str, Any]] = []
    for item in read_log(log):
        if not isinstance(item, LogRow):
            skipped.append({"line": item.line, "reason": item.reason})
            if not as_json:
                warn(f"{log}:{item.line}: skipped, {item.reason}")
            continue
        if wanted and not select_all and item.run_id not in wanted:
            continue
        if moment is not None and (item.recorded_at is None or item.recorded_at < moment):
            continue
        rows.append(item)
    missing = sorted(wanted - {r.run_id for r in rows}) if not select_all and not moment else []
    if missing:
        raise UsageProblem(f"no run {', '.join(missing)} in {log}")

    cache = None
    if retrieval:
        from lakevec.retrieval.registry import open_retriever

        root = root_from(ctx)
        cache = RetrieverCache(lambda name: open_retriever(
            name, root=root, index_dir=index, corpus_path=corpus_path, model=model))
    verdicts = []
    try:
        for entry in rows:
            verdict = verify_row(entry, store)
            if cache is not None and entry.row is not None:
                verdict = replace(verdict, drift=retrieval_drift(entry.row, cache))
            verdicts.append(verdict)
            if not as_json:
                click.echo(f"{verdict.run_id}  {verdict.text()}")
                if verdict.drift is not None:
                    click.echo(f"{verdict.run_id}  retrieval {verdict.drift.status}: "
                               f"{verdict.drift.detail}")
    finally:
        if cache is not None:
            cache.close()
    counts = {k: sum(v.status == k for v in verdicts)
              for k in ("bit-exact", "diverged", "not-verifiable")}
    if as_json:
        emit_json({"evidence": str(log), "tapes": str(store.directory),
                   "runs": [v.as_json() for v in verdicts], "counts": counts,
                   "skipped": skipped})
    else:
        runs = "run" if len(verdicts) == 1 else "runs"
        click.echo(f"{len(verdicts)} {runs}: {counts['bit-exact']} bit-exact, "
                   f"{counts['diverged']} diverged, {counts['not-verifiable']} not verifiable")
    if counts["diverged"]:
        ctx.exit(1)
