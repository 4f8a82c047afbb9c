"""The BM25 index of a snapshot's record store (bm25s), built with the snapshot.

The scoring is bm25s's (Lucene variant, k1=1.5, b=0.75); this module only
picks the tokenisation and turns score vectors into ranked rows. Records are
scored on title, content and tags (the text the seed's Jaccard sees).
Tokenisation was chosen by measurement on the three eval sets (docs/EVAL.md):
English stop words removed and Snowball English stemming (PyStemmer).

``lakevec build-index`` saves the index inside the snapshot (``bm25/``) before
publishing it, so readers only load it (memory-mapped) and never write.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lakevec.corpus import keyword_text
from lakevec.topk import Rows, Scores, top_k

PARAMS_FILE = "lakevec-bm25.json"
PARAMS_FORMAT = 1
# Sentinel: construct an empty index that load() then fills from disk.
_LOADING: list[str] = []

DEFAULT_STEMMER: str | None = "english"
DEFAULT_STOPWORDS: str | None = "en"


def _stem_function(language: str | None) -> Callable[[str], str] | None:
    if language is None:
        return None
    import Stemmer

    stem: Callable[[str], str] = Stemmer.Stemmer(language).stemWord
    return stem


class BM25Index:
    """A bm25s index over row-aligned texts; rows are positions in ``texts``."""

    def __init__(
        self,
        texts: Iterable[str],
        *,
        stemmer: str | None = DEFAULT_STEMMER,
        stopwords: str | None = DEFAULT_STOPWORDS,
        k1: float = 1.5,
        b: float = 0.75,
    ) -> None:
        import bm25s
        from bm25s.tokenization import Tokenized, Tokenizer

        self.stemmer = stemmer
        self.stopwords = stopwords
        self._tokenizer: Any = Tokenizer(
            lower=True, stopwords=stopwords or [], stemmer=_stem_function(stemmer)
        )
        self.k1, self.b = k1, b
        self._bm25: Any = bm25s.BM25(k1=k1, b=b)
        self._n = 0
        if texts is _LOADING:
            return
        ids = self._tokenizer.tokenize(
            list(texts), update_vocab=True, return_as="ids", show_progress=False
        )
        self._n = len(ids)
        if self._n:
            # Passing the vocabulary (str -> id) lets bm25s save the index.
            vocab = self._tokenizer.get_vocab_dict()
            self._bm25.index(Tokenized(ids=ids, vocab=vocab), show_progress=False)

    @property
    def _empty_id(self) -> int | None:
        # The tokenizer maps text without tokens to the empty token; a query
        # must never match on it.
        empty: int | None = self._tokenizer.word_to_id.get("")
        return empty

    def save(self, directory: Path) -> None:
        """Write the index to ``directory`` (bm25s's files plus the tokenizer vocabulary)."""
        directory.mkdir(parents=True, exist_ok=True)
        if self._n:
            self._bm25.save(str(directory))
        self._tokenizer.save_vocab(str(directory))
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
        """
        import bm25s

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
        index._tokenizer.load_vocab(str(directory))
        if index._n:
            # mmap: a 53k-document index loads in ~0.1 s instead of ~20 s to rebuild.
            index._bm25 = bm25s.BM25.load(str(directory), mmap=True)
        return index

    def __len__(self) -> int:
        return self._n

    def _query_ids(self, queries: Sequence[str]) -> list[list[int]]:
        # update_vocab=False still maps an unseen word whose stem is known,
        # but never adds new ids, so query-time state cannot change scores.
        ids: list[list[int]] = self._tokenizer.tokenize(
            list(queries), update_vocab=False, return_as="ids", show_progress=False
        )
        empty = self._empty_id  # a property: read once, not per token
        return [[i for i in q if i != empty] for q in ids]

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
            scores = np.asarray(self._bm25.get_scores(ids), dtype=np.float64)
            if mask is not None:
                scores = np.where(mask, scores, 0.0)
            out.append(top_k(scores, k, positive_only=True))
        return out


def bm25_of_records(records: Iterable[Any]) -> BM25Index:
    """A BM25 index over records (anything with title, content and tags), in order."""
    return BM25Index(keyword_text(r) for r in records)

