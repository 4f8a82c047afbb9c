"""Small updates: a reindex that parses only new lines and writes only what changed.

A cron reindex of a large corpus usually finds a handful of changed records.
The general build (:mod:`lakevec.index.build`) re-reads and validates every
line, re-tokenises every record for BM25 and rewrites every file — linear in
the corpus, ~100 s at 53k records. This path is linear only in *bytes*:

* every corpus line is hashed (:func:`~lakevec.lines.line_digest`); a line
  whose digest a row of the live snapshot carries (``rowkeys.json``) is that
  row's record, so only new or edited lines are parsed and validated;
* unchanged rows are copied byte for byte (vectors and record store, with
  ``copy_file_range``), their BM25 counts moved, never re-tokenised
  (:meth:`~lakevec.index.lexical.BM25Index.updated`);
* the graph is updated in place, as the general build does at low churn.

It produces the same snapshot as the general build (a test compares every
file), and declines — returning None, so the general build runs — whenever
it could not: no usable previous snapshot, an older snapshot format, other
HNSW parameters, a legacy model fingerprint, a changed corpus format, or
churn high enough for the graph to be rebuilt.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from lakevec.clock import Clock
from lakevec.corpus import (
    Corpus,
    CorpusFormat,
    CorpusProblem,
    DuplicateId,
    LineParser,
    PlaybookRecord,
    corpus_file,
    embed_text,
    keyword_text,
    strict_error,
    text_sha256,
)
from lakevec.embed.base import Embedder, release_weights
from lakevec.errors import IndexCorruptError
from lakevec.files import fsync_path, owned_temp_name
from lakevec.index.build import BuildReport, update_graph
from lakevec.index.copyrows import Rows, write_kept_records, write_kept_vectors
from lakevec.index.layout import CURRENT_FILE, LOCK_FILE, clean_leftovers
from lakevec.index.lexical import BM25Index
from lakevec.index.manifest import BM25_DIR, ROW_FILES, CorpusInfo, Counts, HnswParams
from lakevec.index.plan import record_fields
from lakevec.index.rowkeys import PARSER_VERSION, RowKeys, read_rowkeys
from lakevec.index.snapshot import POSITIONS_FILE, IndexSnapshot, check_model, open_index
from lakevec.index.writer import record_line, save_npy, seal_snapshot, write_bm25, write_rowkeys
from lakevec.lines import LineScan, line_key, open_corpus
from lakevec.locks import exclusive_lock

# (previous row or -1, the parsed record when the line was new, line digest)
_Entry = tuple[int, PlaybookRecord | None, str]


def small_update(
    corpus_path: str | Path,
    index_dir: Path,
    embedder: Embedder,
    *,
    fmt: CorpusFormat,
    strict: bool,
    params: HnswParams | None,
    keep: int,
    rebuild_threshold: float,
    lock_timeout: float,
    batch_size: int | None,
    progress: bool,
    clock: Clock,
    on_phase: Callable[[str], None] | None = None,
) -> BuildReport | None:
    """Bring the index up to date by its small-update path, or None if that does not apply."""
    if not (index_dir / CURRENT_FILE).exists():
        return None
    t0 = time.perf_counter()
    path = corpus_file(corpus_path)
    phase = on_phase or (lambda _name: None)
    with exclusive_lock(index_dir / LOCK_FILE, timeout=lock_timeout, what="lakevec build"):
        clean_leftovers(index_dir)
        try:
            previous = open_index(index_dir, graph=False)
        except IndexCorruptError:
            return None  # the general build repairs it and says why
        try:
            previous.verify_graph_file()
            keys = _usable_keys(previous, embedder, params, fmt)
            if keys is None:
                return None
            return _update(path, index_dir, previous, keys, embedder, fmt=fmt, strict=strict,
                           keep=keep, rebuild_threshold=rebuild_threshold,
                           batch_size=batch_size, progress=progress, clock=clock,
                           phase=phase, t0=t0)
        except IndexCorruptError:
            return None
        finally:
            previous.close()


def _usable_keys(
    previous: IndexSnapshot, emb: Embedder, params: HnswParams | None, fmt: CorpusFormat
) -> RowKeys | None:
    m = previous.manifest
    if m.format_version < 2 or not m.has_bm25 or any(f not in m.files for f in ROW_FILES):
        return None
    if params is not None and params != m.hnsw:
        return None
    if check_model(m, emb):  # legacy fingerprint: the general build records the new one
        return None
    keys = read_rowkeys(previous.path, len(previous))
    if keys.parser != PARSER_VERSION or fmt not in ("auto", keys.corpus_format):
        return None
    return keys


class _Scan:
    """The corpus read against the previous snapshot's row keys."""

    def __init__(self, path: Path, keys: RowKeys, fmt: CorpusFormat, strict: bool) -> None:
        by_line = {bytes.fromhex(d): r for r, d in enumerate(keys.lines) if d}
        ids = keys.ids
        parser = LineParser(fmt)
        # id -> (previous row or -1, parsed record or None, line key, line number), in
        # corpus order: the last line of an id wins and moves to the end.
        entries: dict[str, tuple[int, PlaybookRecord | None, bytes, int]] = {}
        self.problems: list[CorpusProblem] = []
        repeated: dict[str, list[int]] = {}
        self.format_changed = False
        with open_corpus(path) as handle:
            scan = LineScan(handle)
            for lineno, raw in scan:
                key = line_key(raw) if isinstance(raw, bytes) else b""
                row = by_line.get(key, -1)
                rec: PlaybookRecord | None = None
                if row >= 0:
                    parser.resolved = parser.resolved or keys.corpus_format
                    rid = ids[row]
                else:
                    parsed = parser.parse(raw)
                    if parser.resolved not in (None, keys.corpus_format):
                        self.format_changed = True
                        return
                    if isinstance(parsed, str):
                        if strict:
                            raise strict_error(path, lineno, parsed)
                        self.problems.append(CorpusProblem(lineno, parsed))
                        continue
                    rec, rid = parsed, parsed.id
                earlier = entries.pop(rid, None)
                if earlier is not None:
                    repeated.setdefault(rid, [earlier[3]]).append(lineno)
                entries[rid] = (row, rec, key, lineno)
            self.corpus = CorpusInfo(path=str(path), format=keys.corpus_format,
                                     sha256=scan.digest.hexdigest(), bytes=handle.tell(),
                                     lines=scan.lines)
        self.entries: dict[str, _Entry] = {
            rid: (row, rec, key.hex()) for rid, (row, rec, key, _) in entries.items()
        }
        # Ids in the order of their first line, as the general reader lists them.
        self.duplicates = sorted((DuplicateId(i, tuple(ls)) for i, ls in repeated.items()),
                                 key=lambda d: d.lines[0])

    def report_fields(self, path: Path) -> dict[str, object]:
        corpus = Corpus(path=path, format=self.corpus.format, records={},
                        problems=self.problems, duplicates=self.duplicates)
        return {
            "skipped": corpus.skipped, "duplicates": corpus.duplicate_lines,
            "problems": [str(p) for p in corpus.problems],
            "skipped_lines": corpus.skipped_lines(),
            "duplicate_ids": [{"id": d.id, "lines": list(d.lines)} for d in corpus.duplicates],
            "summary": corpus.summary(),
        }


def _update(
    path: Path,
    index_dir: Path,
    previous: IndexSnapshot,
    keys: RowKeys,
    emb: Embedder,
    *,
    fmt: CorpusFormat,
    strict: bool,
    keep: int,
    rebuild_threshold: float,
    batch_size: int | None,
    progress: bool,
    clock: Clock,
    phase: Callable[[str], None],
    t0: float,
) -> BuildReport | None:
    m = previous.manifest
    phase("diff")
    scan = _Scan(path, keys, fmt, strict)
    if scan.format_changed or not scan.entries:
        return None  # the general build detects the format / reports an empty corpus
    prev_by_id = {rid: r for r, rid in enumerate(keys.ids)}
    n_prev = len(previous)
    kept = np.zeros(n_prev, dtype=bool)  # rows the next snapshot keeps (same label)
    claimed = np.zeros(n_prev, dtype=bool)  # rows whose id is still in the corpus
    position = np.full(n_prev, -1, dtype=np.int64)
    digests = list(keys.lines)
    rewritten: dict[int, PlaybookRecord] = {}  # old row -> its new record (metadata change)
    added: list[tuple[int, PlaybookRecord, str]] = []  # (position, record, digest)
    deleted_labels: list[int] = []
    counts = {"added": 0, "updated": 0, "metadata_updated": 0, "unchanged": 0}
    for pos, (row, rec, digest) in enumerate(scan.entries.values()):
        if rec is None:  # a line the previous snapshot was built from
            kept[row] = claimed[row] = True
            position[row] = pos
            counts["unchanged"] += 1
            continue
        old = prev_by_id.get(rec.id, -1)
        if old < 0:
            counts["added"] += 1
            added.append((pos, rec, digest))
            continue
        claimed[old] = True
        stored = previous.record(old)
        if stored.text_sha256 != text_sha256(embed_text(rec)):
            counts["updated"] += 1
            deleted_labels.append(int(previous.labels[old]))
            added.append((pos, rec, digest))
            continue
        kept[old], position[old], digests[old] = True, pos, digest
        if record_fields(rec) == record_fields(stored):
            counts["unchanged"] += 1
        else:
            counts["metadata_updated"] += 1
            rewritten[old] = rec
    deleted_labels.extend(int(previous.labels[r]) for r in np.flatnonzero(~claimed))
    n = int(kept.sum()) + len(added)
    churn = m.counts.churn + len(deleted_labels)
    report = BuildReport(
        index_dir=index_dir, snapshot=m.snapshot, version=m.version, changed=False,
        mode="noop", records=n, path="small", deleted=len(deleted_labels) - counts["updated"],
        **counts, **scan.report_fields(path),  # type: ignore[arg-type]
    )
    if not (added or rewritten or deleted_labels):
        return _done(report, t0)
    if churn > rebuild_threshold * max(n, 1):
        return None  # the general build rebuilds the graph
    texts = [embed_text(rec) for _, rec, _ in added]
    new_vecs = np.empty((0, m.model.dimension), dtype=np.float32)
    if texts:
        phase("embed")
        # One text per batch unless told otherwise: as fast for a few texts, and
        # padding activations for 256 tokens x batch stay out of peak memory.
        new_vecs = np.asarray(emb.encode(texts, progress=progress, batch_size=batch_size or 1),
                              dtype=np.float32)
        release_weights(emb)  # before the graph is loaded: never both in memory
    phase("graph")
    tmp = index_dir / owned_temp_name()
    tmp.mkdir()
    kept_rows = np.flatnonzero(kept)
    fresh = np.arange(m.counts.next_label, m.counts.next_label + len(added), dtype=np.int64)
    graph_counts = _write_graph(previous, tmp, deleted_labels, new_vecs, fresh)
    write_kept_vectors(previous, tmp, kept_rows, new_vecs)
    phase("write")
    labels = np.concatenate([previous.labels[kept_rows], fresh])
    save_npy(tmp / "labels.npy", labels)
    save_npy(tmp / POSITIONS_FILE,
             np.concatenate([position[kept_rows], [p for p, _, _ in added]]).astype(np.int64))
    lines = [record_line(rec, int(label), text_sha256(embed_text(rec)))
             for (_, rec, _), label in zip(added, fresh, strict=True)]
    offsets = write_kept_records(previous, tmp, kept_rows, rewritten, lines)
    save_npy(tmp / "offsets.npy", offsets)
    write_rowkeys(tmp, RowKeys(
        corpus_format=keys.corpus_format,
        ids=[*(keys.ids[r] for r in kept_rows), *(rec.id for _, rec, _ in added)],
        lines=[*(digests[r] for r in kept_rows), *(d for _, _, d in added)],
    ))
    write_bm25(tmp / BM25_DIR, _bm25(previous, kept_rows, rewritten, added, n))
    manifest = seal_snapshot(
        tmp, index_dir, m, emb, model=m.model, params=m.hnsw,
        counts=Counts(records=n, skipped=report.skipped, duplicates=report.duplicates,
                      churn=churn, **graph_counts),
        corpus=scan.corpus, embedded=len(added), rebuilt=False, keep=keep, clock=clock,
        phase=phase, t0=t0,
    )
    report.snapshot, report.version, report.changed = manifest.snapshot, manifest.version, True
    report.mode, report.embedded = "incremental", len(added)
    return _done(report, t0)


def _done(report: BuildReport, t0: float) -> BuildReport:
    report.seconds = time.perf_counter() - t0
    return report


def _write_graph(
    previous: IndexSnapshot,
    tmp: Path,
    deleted_labels: Sequence[int],
    new_vecs: npt.NDArray[np.float32],
    fresh: Rows,
) -> dict[str, int]:
    """The previous graph with elements marked deleted and the new ones added (slots reused)."""
    graph, slots = update_graph(previous, deleted_labels, new_vecs, fresh,
                                previous.manifest.hnsw.ef_search)
    graph.save(tmp / "hnsw.bin")
    fsync_path(tmp / "hnsw.bin")
    return slots


def _bm25(
    previous: IndexSnapshot,
    kept_rows: Rows,
    rewritten: dict[int, PlaybookRecord],
    added: list[tuple[int, PlaybookRecord, str]],
    n: int,
) -> BM25Index:
    """The previous BM25 counts moved to the new rows; changed and new rows tokenised."""
    remap = np.full(len(previous), -1, dtype=np.int64)
    remap[kept_rows] = np.arange(len(kept_rows))
    texts: dict[int, str] = {}
    for old, rec in rewritten.items():
        texts[int(remap[old])] = keyword_text(rec)
        remap[old] = -1
    for i, (_, rec, _) in enumerate(added):
        texts[len(kept_rows) + i] = keyword_text(rec)
    return previous.bm25().updated(remap, n, texts)
