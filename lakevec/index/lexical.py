"""The BM25 index of a snapshot's record store, built with the snapshot.

The scoring is bm25s's (Lucene variant, k1=1.5, b=0.75); this module picks
the tokenisation and turns score vectors into ranked rows. Records are scored
on title, content and tags (the text the seed's Jaccard sees). Tokenisation
was chosen by measurement on the three eval sets (docs/EVAL.md): English stop
words removed and Snowball English stemming (PyStemmer).

``lakevec build-index`` builds the index with bm25s and saves it inside the
snapshot (``bm25/``) before publishing it. Readers never import bm25s (with
scipy it cost ~0.4 s of every cold ``search``/``replay``): they memory-map
bm25s's saved score matrix (CSC: ``data``/``indices``/``indptr``) and its
token vocabulary, tokenize the query the way bm25s's tokenizer does (same
split pattern, stop words and stemmer; :func:`query_token_ids`) and sum the
precomputed per-token scores exactly as bm25s's ``get_scores`` does, so
rankings and scores are bm25s's own (a test compares them).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lakevec.corpus import keyword_text
from lakevec.topk import Rows, Scores, top_k

PARAMS_FILE = "lakevec-bm25.json"
PARAMS_FORMAT = 1
# bm25s's file names inside a saved index.
VOCAB_FILE = "vocab.index.json"
CSC_FILES = ("data.csc.index.npy", "indices.csc.index.npy", "indptr.csc.index.npy")
# Sentinel: construct an empty index that load() then fills from disk.
_LOADING: list[str] = []

DEFAULT_STEMMER: str | None = "english"
DEFAULT_STOPWORDS: str | None = "en"
# bm25s's tokenizer: lower-case, then words of 2+ word characters.
_SPLIT = re.compile(r"(?u)\b\w\w+\b")
# bm25s.stopwords.STOPWORDS_EN (a test checks they are the same), so that
# querying needs no bm25s import.
STOPWORDS_EN = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is",
    "it", "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there",
    "these", "they", "this", "to", "was", "will", "with",
))


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


def query_token_ids(
    text: str,
    vocab: dict[str, int],
    stopwords: frozenset[str],
    stem: Callable[[str], str] | None,
) -> list[int]:
    """The token ids bm25s's tokenizer gives ``text`` against a fixed vocabulary.

    bm25s (``update_vocab=False``) maps a word to the id of its stem when the
    stem is in the vocabulary and skips stop words and unknown stems; words
    it saw while indexing map the same way, since their ids are their stems'.
    Repeated words count repeatedly, as in bm25s.
    """
    ids = []
    for word in _SPLIT.findall(text.lower()):
        if word in stopwords:
            continue
        found = vocab.get(stem(word) if stem is not None else word)
        if found is not None:
            ids.append(found)
    return ids


class BM25Index:
    """A BM25 index over row-aligned texts; rows are positions in ``texts``."""

    def __init__(
        self,
        texts: Iterable[str],
        *,
        stemmer: str | None = DEFAULT_STEMMER,
        stopwords: str | None = DEFAULT_STOPWORDS,
        k1: float = 1.5,
        b: float = 0.75,
    ) -> None:
        self.stemmer = stemmer
        self.stopwords = stopwords
        self.k1, self.b = k1, b
        self._stem = _stem_function(stemmer)
        self._stop = _stopword_set(stopwords)
        self._n = 0
        self._vocab: dict[str, int] = {}
        empty_i32 = np.empty(0, dtype=np.int32)
        self._data: npt.NDArray[Any] = np.empty(0, dtype=np.float32)
        self._indices: npt.NDArray[Any] = empty_i32
        self._indptr: npt.NDArray[Any] = empty_i32
        self._built: tuple[Any, Any] | None = None  # (bm25s tokenizer, model) to save
        if texts is _LOADING:
            return
        import bm25s
        from bm25s.tokenization import Tokenized, Tokenizer

        tokenizer = Tokenizer(lower=True, stopwords=stopwords or [], stemmer=self._stem)
        ids = tokenizer.tokenize(
            list(texts), update_vocab=True, return_as="ids", show_progress=False
        )
        self._n = len(ids)
        # The vocabulary (str -> id): lets bm25s save the index, and queries map to it.
        self._vocab = dict(tokenizer.get_vocab_dict())
        model = bm25s.BM25(k1=k1, b=b)
        if self._n:
            model.index(Tokenized(ids=ids, vocab=self._vocab), show_progress=False)
            self._data, self._indices, self._indptr = (
                model.scores["data"], model.scores["indices"], model.scores["indptr"]
            )
        self._built = (tokenizer, model)

    def save(self, directory: Path) -> None:
        """Write the index to ``directory`` (bm25s's files plus the tokenizer vocabulary)."""
        if self._built is None:
            raise ValueError("only an index built in this process can be saved")
        tokenizer, model = self._built
        directory.mkdir(parents=True, exist_ok=True)
        if self._n:
            model.save(str(directory))
        tokenizer.save_vocab(str(directory))
        (directory / PARAMS_FILE).write_text(json.dumps(self._params()), encoding="utf-8")

    def _params(self) -> dict[str, Any]:
        return {
            "format": PARAMS_FORMAT,
            "documents": self._n,
            "stemmer": self.stemmer,
            "stopwords": self.stopwords,
            "k1": self.k1,
            "b": self.b,
        }

    @classmethod
    def load(cls, directory: Path, *, documents: int | None = None, **options: Any) -> BM25Index:
        """Load an index saved by :meth:`save`; ``ValueError`` if it was saved differently.

        ``options`` (stemmer, stopwords, k1, b) and ``documents`` must match
        what was saved, so a stale or differently tuned index is never used.
        The score matrix is memory-mapped: a 53k-document index loads in
        milliseconds (rebuilding it would take ~20 s), without importing bm25s.
        """
        index = cls(_LOADING, **options)
        try:
            saved = json.loads((directory / PARAMS_FILE).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"no readable BM25 index in {directory}: {exc}") from exc
        want = index._params() | {"documents": saved.get("documents")}
        if documents is not None:
            want["documents"] = documents
        if saved != want:
            raise ValueError(f"BM25 index in {directory} was saved with other settings")
        index._n = int(saved["documents"])
        if index._n:
            try:
                vocab = json.loads((directory / VOCAB_FILE).read_text(encoding="utf-8"))
                data, indices, indptr = (
                    np.load(directory / name, mmap_mode="r") for name in CSC_FILES
                )
            except (OSError, ValueError) as exc:
                raise ValueError(f"no readable BM25 index in {directory}: {exc}") from exc
            if not isinstance(vocab, dict) or len(indptr) != len(vocab) + 1:
                raise ValueError(f"BM25 index in {directory} has a damaged vocabulary")
            index._vocab = vocab
            index._data, index._indices, index._indptr = data, indices, indptr
        return index

    def __len__(self) -> int:
        return self._n

    def _query_ids(self, queries: Sequence[str]) -> list[list[int]]:
        # Text without tokens maps to bm25s's empty token; a query never matches on it.
        empty = self._vocab.get("")
        return [
            [i for i in query_token_ids(q, self._vocab, self._stop, self._stem) if i != empty]
            for q in queries
        ]

    def scores(self, ids: Sequence[int]) -> npt.NDArray[np.float32]:
        """BM25 score of every row for query token ``ids`` (bm25s's ``get_scores``)."""
        out = np.zeros(self._n, dtype=np.float32)
        for t in ids:
            start, end = int(self._indptr[t]), int(self._indptr[t + 1])
            np.add.at(out, self._indices[start:end], self._data[start:end])
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


def bm25_of_records(records: Iterable[Any]) -> BM25Index:
    """A BM25 index over records (anything with title, content and tags), in order."""
    return BM25Index(keyword_text(r) for r in records)

