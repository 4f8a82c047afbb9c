"""The BM25 index of a snapshot's record store, built with the snapshot.

Lucene's BM25 variant (k1=1.5, b=0.75; bm25s's default scoring) over title,
content and tags (the text the seed's Jaccard sees). Tokenisation was chosen
by measurement on the three eval sets (docs/EVAL.md): bm25s's tokenizer with
English stop words removed and Snowball English stemming (PyStemmer).

The snapshot stores raw counts (:mod:`lakevec.index.postings`), not weights:
a query computes ``idf * tf / (tf + k1 * (1 - b + b * len / avglen))`` for
the postings of its own terms, so a small reindex updates a few rows'
postings instead of re-tokenising the corpus. Scores equal bm25s's own to
float32 rounding (a test compares them). Readers memory-map the arrays and
never import bm25s or scipy.

Snapshots written by lakevec 0.2 (format 1) hold bm25s's precomputed weight
matrix instead; they are still read (weights summed as bm25s does), and the
next reindex rewrites them in the current format.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lakevec.corpus import keyword_text
from lakevec.index.postings import Postings, Tokenizer, merge_postings, postings_of
from lakevec.topk import Rows, Scores, top_k

PARAMS_FILE = "lakevec-bm25.json"
PARAMS_FORMAT: Literal[2] = 2
TERMS_FILE = "terms.json"
ARRAY_FILES = ("indptr", "rows", "tfs", "doclen")
# Format 1 (bm25s's files inside a saved index), read for old snapshots.
LEGACY_VOCAB_FILE = "vocab.index.json"
LEGACY_CSC_FILES = ("data.csc.index.npy", "indices.csc.index.npy", "indptr.csc.index.npy")

DEFAULT_STEMMER: str | None = "english"
DEFAULT_STOPWORDS: str | None = "en"
# bm25s.stopwords.STOPWORDS_EN (a test checks they are the same), so that
# querying needs no bm25s import.
STOPWORDS_EN = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is",
    "it", "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there",
    "these", "they", "this", "to", "was", "will", "with",
))


class BM25Params(BaseModel):
    """``lakevec-bm25.json``: how the index was built, checked on every load."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[2] = PARAMS_FORMAT
    documents: int = Field(ge=0)
    stemmer: str | None
    stopwords: str | None
    k1: float
    b: float
    terms: int = Field(ge=0)
    postings: int = Field(ge=0)
    total_length: int = Field(ge=0, description="tokens over all documents")


def _stem_function(language: str | None) -> Callable[[str], str] | None:
    if language is None:
        return None
    import Stemmer

    stem: Callable[[str], str] = Stemmer.Stemmer(language).stemWord
    return stem


def _stopword_set(stopwords: str | None) -> frozenset[str]:
    if stopwords is None:
        return frozenset()
    if stopwords in ("en", "english"):
        return STOPWORDS_EN
    from bm25s.tokenization import _infer_stopwords  # other languages: bm25s's own lists

    return frozenset(_infer_stopwords(stopwords))


class BM25Index:
    """A BM25 index over row-aligned texts; rows are positions in ``texts``."""

    def __init__(
        self,
        texts: Iterable[str] | None = None,
        *,
        stemmer: str | None = DEFAULT_STEMMER,
        stopwords: str | None = DEFAULT_STOPWORDS,
        k1: float = 1.5,
        b: float = 0.75,
        postings: Postings | None = None,
    ) -> None:
        self.stemmer = stemmer
        self.stopwords = stopwords
        self.k1, self.b = k1, b
        self._stem = _stem_function(stemmer)
        self._stop = _stopword_set(stopwords)
        self._vocab: dict[str, int] | None = None
        self._legacy: tuple[Any, Any, Any] | None = None  # format 1: (data, indices, indptr)
        if postings is None:
            postings = postings_of(texts or (), self.tokenizer())
        self.postings = postings
        self._n = postings.documents
        self._avglen = float(postings.doclen.sum(dtype=np.int64)) / self._n if self._n else 0.0

    def tokenizer(self) -> Tokenizer:
        return Tokenizer(self._stop, self._stem)

    def _options(self) -> dict[str, Any]:
        return {"stemmer": self.stemmer, "stopwords": self.stopwords, "k1": self.k1, "b": self.b}

    def updated(self, remap: npt.NDArray[np.int64], documents: int,
                texts: Mapping[int, str]) -> BM25Index:
        """A new index: old rows moved by ``remap`` (-1 drops), new ``texts`` rows tokenised.

        Equal, array for array, to building from all texts (see
        :func:`~lakevec.index.postings.merge_postings`).
        """
        if self._legacy is not None:
            raise ValueError("a format-1 (bm25s) index cannot be updated; rebuild it")
        merged = merge_postings(self.postings, remap, documents, texts, self.tokenizer())
        return BM25Index(postings=merged, **self._options())

    def save(self, directory: Path) -> None:
        """Write the index to ``directory`` (parameters, sorted terms, count arrays)."""
        if self._legacy is not None:
            raise ValueError("a format-1 (bm25s) index cannot be saved; rebuild it")
        directory.mkdir(parents=True, exist_ok=True)
        p = self.postings
        for name, array in p.arrays().items():
            np.save(directory / f"{name}.npy", array)
        (directory / TERMS_FILE).write_text(json.dumps(p.terms, ensure_ascii=False),
                                            encoding="utf-8")
        params = BM25Params(documents=self._n, terms=len(p.terms), postings=len(p.rows),
                            total_length=int(p.doclen.sum(dtype=np.int64)), **self._options())
        (directory / PARAMS_FILE).write_text(params.model_dump_json(), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, *, documents: int | None = None, **options: Any) -> BM25Index:
        """Load an index saved by :meth:`save`; ``ValueError`` if it was saved differently.

        ``options`` (stemmer, stopwords, k1, b) and ``documents`` must match
        what was saved, so a stale or differently tuned index is never used.
        The arrays are memory-mapped: a 53k-document index loads in
        milliseconds, without importing bm25s.
        """
        index = cls(**options)
        try:
            saved = json.loads((directory / PARAMS_FILE).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"no readable BM25 index in {directory}: {exc}") from exc
        if isinstance(saved, dict) and saved.get("format") == 1:
            return _load_legacy(index, directory, saved, documents)
        try:
            params = BM25Params.model_validate(saved)
        except ValidationError as exc:
            raise ValueError(f"BM25 index in {directory} is invalid: {exc.errors()[0]['msg']}"
                             ) from None
        want = index._options()
        if {k: getattr(params, k) for k in want} != want or (
            documents is not None and params.documents != documents
        ):
            raise ValueError(f"BM25 index in {directory} was saved with other settings")
        try:
            terms = json.loads((directory / TERMS_FILE).read_text(encoding="utf-8"))
            arrays = {name: np.load(directory / f"{name}.npy", mmap_mode="r")
                      for name in ARRAY_FILES}
        except (OSError, ValueError) as exc:
            raise ValueError(f"no readable BM25 index in {directory}: {exc}") from exc
        if (
            not isinstance(terms, list) or len(terms) != params.terms
            or len(arrays["indptr"]) != params.terms + 1
            or len(arrays["rows"]) != params.postings or len(arrays["tfs"]) != params.postings
            or len(arrays["doclen"]) != params.documents
        ):
            raise ValueError(f"BM25 index in {directory} has damaged arrays")
        postings = Postings(terms, arrays["indptr"], arrays["rows"], arrays["tfs"],
                            arrays["doclen"])
        return cls(postings=postings, **want)

    def __len__(self) -> int:
        return self._n

    @property
    def vocab(self) -> Mapping[str, int]:
        if self._vocab is None:
            self._vocab = {t: i for i, t in enumerate(self.postings.terms)}
        return self._vocab

    def _query_ids(self, queries: Sequence[str]) -> list[list[int]]:
        """Each query's term ids; unknown terms are skipped, repeats count again (bm25s)."""
        vocab, tokenizer = self.vocab, self.tokenizer()
        # Format 1 maps token-less text to bm25s's empty token; never match on it.
        empty = vocab.get("")
        return [
            [i for t in tokenizer.terms(q) if (i := vocab.get(t)) is not None and i != empty]
            for q in queries
        ]

    def scores(self, ids: Sequence[int]) -> npt.NDArray[np.float32]:
        """BM25 score of every row for query token ``ids`` (repeats count again)."""
        out = np.zeros(self._n, dtype=np.float32)
        if self._legacy is not None:
            data, indices, indptr = self._legacy
            for t in ids:
                start, end = int(indptr[t]), int(indptr[t + 1])
                np.add.at(out, indices[start:end], data[start:end])
            return out
        p, k1, b = self.postings, self.k1, self.b
        for t in ids:
            start, end = int(p.indptr[t]), int(p.indptr[t + 1])
            rows = np.asarray(p.rows[start:end])
            tf = np.asarray(p.tfs[start:end], dtype=np.float32)
            df = end - start
            idf = np.float32(np.log(1.0 + (self._n - df + 0.5) / (df + 0.5)))
            norm = k1 * ((1.0 - b) + b * p.doclen[rows].astype(np.float32) / self._avglen)
            # Rows are unique within a term, so a fancy-indexed add is exact.
            out[rows] += idf * (tf / (norm + tf)).astype(np.float32)
        return out

    def search_rows(
        self, queries: Sequence[str], k: int, *, mask: npt.NDArray[np.bool_] | None = None
    ) -> list[tuple[Rows, Scores]]:
        """Top ``k`` rows with a positive score for each query, best first (among ``mask``)."""
        out: list[tuple[Rows, Scores]] = []
        blank = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64))
        if not self._n:
            return [blank for _ in queries]
        for q, ids in zip(queries, self._query_ids(queries), strict=True):
            if not ids or not q.strip():
                out.append(blank)
                continue
            scores = np.asarray(self.scores(ids), dtype=np.float64)
            if mask is not None:
                scores = np.where(mask, scores, 0.0)
            out.append(top_k(scores, k, positive_only=True))
        return out


def _load_legacy(
    index: BM25Index, directory: Path, saved: dict[str, Any], documents: int | None
) -> BM25Index:
    """A format-1 index: bm25s's precomputed weight matrix (CSC) and its vocabulary."""
    want = {"format": 1, "documents": saved.get("documents"), **index._options()}
    if documents is not None:
        want["documents"] = documents
    if saved != want:
        raise ValueError(f"BM25 index in {directory} was saved with other settings")
    index._n = int(saved["documents"])
    if index._n:
        try:
            vocab = json.loads((directory / LEGACY_VOCAB_FILE).read_text(encoding="utf-8"))
            data, indices, indptr = (
                np.load(directory / name, mmap_mode="r") for name in LEGACY_CSC_FILES
            )
        except (OSError, ValueError) as exc:
            raise ValueError(f"no readable BM25 index in {directory}: {exc}") from exc
        if not isinstance(vocab, dict) or len(indptr) != len(vocab) + 1:
            raise ValueError(f"BM25 index in {directory} has a damaged vocabulary")
        index._vocab = vocab
        index._legacy = (data, indices, indptr)
    else:
        index._legacy = (np.empty(0, np.float32), np.empty(0, np.int32), np.zeros(1, np.int32))
    return index


def bm25_of_records(records: Iterable[Any]) -> BM25Index:
    """A BM25 index over records (anything with title, content and tags), in order."""
    return BM25Index(keyword_text(r) for r in records)

