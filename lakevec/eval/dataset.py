"""BEIR-layout datasets: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from lakevec.corpus import Corpus, read_corpus
from lakevec.errors import CorpusError, UsageProblem

#: The qrels split scored unless another is asked for.
DEFAULT_SPLIT = "test"

#: Relevance labels: query id → document id → grade (only grades > 0 are kept).
Qrels = dict[str, dict[str, int]]
QRELS_HEADER = ["query-id", "corpus-id", "score"]


@dataclass
class Dataset:
    """A BEIR-layout dataset: corpus, the judged queries and their relevance labels."""

    path: Path
    corpus: Corpus
    queries: dict[str, str]
    qrels: Qrels
    skipped_queries: int = 0

    @property
    def name(self) -> str:
        return self.path.name


def read_qrels(path: Path) -> Qrels:
    """Read a BEIR qrels TSV (header ``query-id corpus-id score``); keep score > 0."""
    qrels: Qrels = {}
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = csv.reader(fh, delimiter="\t")
            header = next(rows, None)
            if header is None or [h.strip() for h in header[:3]] != QRELS_HEADER:
                raise CorpusError(f"{path}: expected the header 'query-id corpus-id score'")
            for lineno, row in enumerate(rows, start=2):
                if not row:
                    continue
                if len(row) < 3:
                    raise CorpusError(f"{path}: line {lineno}: expected 3 tab-separated fields")
                try:
                    score = int(float(row[2]))
                except ValueError:
                    raise CorpusError(f"{path}: line {lineno}: bad score {row[2]!r}") from None
                if score > 0:
                    qrels.setdefault(row[0], {})[row[1]] = score
    except FileNotFoundError:
        raise CorpusError(f"qrels file not found: {path}") from None
    return qrels


def read_queries(path: Path) -> dict[str, str]:
    """Read a BEIR queries JSONL (``{"_id": ..., "text": ...}`` per line)."""
    queries: dict[str, str] = {}
    try:
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                    queries[str(obj["_id"])] = str(obj["text"])
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    raise CorpusError(f"{path}: line {lineno}: bad query ({exc})") from None
    except FileNotFoundError:
        raise CorpusError(f"queries file not found: {path}") from None
    return queries


def load_dataset(
    path: str | Path, *, split: str = DEFAULT_SPLIT, limit_queries: int | None = None
) -> Dataset:
    """Load a BEIR dataset; only queries with at least one relevant document are kept.

    ``limit_queries`` keeps the first N judged queries in qrels order, which is
    stable, so a limited run is reproducible.
    """
    path = Path(path)
    if not path.is_dir():
        raise UsageProblem(f"--dataset {path} is not a directory (expected the BEIR layout)")
    corpus = read_corpus(path / "corpus.jsonl", "beir")
    all_queries = read_queries(path / "queries.jsonl")
    qrels = read_qrels(path / "qrels" / f"{split}.tsv")
    judged = [q for q in qrels if q in all_queries]
    skipped = len(qrels) - len(judged)
    if limit_queries is not None:
        judged = judged[: max(limit_queries, 0)]
    if not judged:
        raise CorpusError(f"{path}: no judged queries in qrels/{split}.tsv match queries.jsonl")
    return Dataset(
        path=path,
        corpus=corpus,
        queries={q: all_queries[q] for q in judged},
        qrels={q: qrels[q] for q in judged},
        skipped_queries=skipped,
    )
