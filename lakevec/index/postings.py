"""BM25 postings: term frequencies per (term, row), built from texts or updated in place.

The stored form is a term-major CSR of raw term frequencies — a sorted
vocabulary, ``indptr`` (term → slice), ``rows`` and ``tfs`` — plus each row's
length in tokens. BM25 weights depend on corpus-wide statistics (document
frequency, mean length), so they are computed at query time from these
counts rather than stored: a change to ten records then touches ten rows'
postings, never the weights of the other 53,507.

The vocabulary is sorted and holds only terms that occur, and postings are
ordered by (term, row), so :func:`merge_postings` applied to a previous
snapshot gives exactly the arrays a build from scratch gives (a test checks).
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

# bm25s's tokenizer: lower-case, then words of 2+ word characters.
SPLIT = re.compile(r"(?u)\b\w\w+\b")

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]


class Tokenizer:
    """bm25s's tokenisation: split, drop stop words, stem (stems cached per word)."""

    def __init__(self, stopwords: frozenset[str], stem: Callable[[str], str] | None) -> None:
        self._stop = stopwords
        self._stem = stem
        self._cache: dict[str, str] = {}

    def terms(self, text: str) -> list[str]:
        out = []
        cache, stop, stem = self._cache, self._stop, self._stem
        for word in SPLIT.findall(text.lower()):
            if word in stop:
                continue
            term = cache.get(word)
            if term is None:
                term = cache[word] = stem(word) if stem is not None else word
            out.append(term)
        return out


@dataclass(frozen=True)
class Postings:
    """Raw counts of a BM25 index; see the module docstring."""

    terms: list[str]
    indptr: I64
    rows: I32
    tfs: I32
    doclen: I32

    @property
    def documents(self) -> int:
        return len(self.doclen)

    @classmethod
    def empty(cls) -> Postings:
        return cls([], np.zeros(1, np.int64), np.empty(0, np.int32), np.empty(0, np.int32),
                   np.empty(0, np.int32))

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {"indptr": self.indptr, "rows": self.rows, "tfs": self.tfs, "doclen": self.doclen}


def merge_postings(
    old: Postings,
    remap: I64,
    documents: int,
    texts: Mapping[int, str],
    tokenizer: Tokenizer,
) -> Postings:
    """The postings of ``documents`` rows: old rows moved by ``remap``, plus ``texts``.

    ``remap[old_row]`` is the row an old document keeps (rows keep their
    relative order) or -1 to drop it; ``texts`` maps every other new row to
    its text. Cost: a few passes over the old postings in numpy (int32, no
    sort) plus tokenising ``texts``; memory about three copies of the rows.
    """
    if len(remap) != old.documents:
        raise ValueError(f"remap has {len(remap)} rows, the postings {old.documents}")
    doclen = np.zeros(documents, dtype=np.int32)
    moved = np.flatnonzero(remap >= 0)
    doclen[remap[moved]] = old.doclen[moved]
    add = _sorted_counts(texts, tokenizer, doclen)  # (term, row, tf), sorted by term, row
    if not old.terms:
        return _from_sorted(add, doclen)
    new_rows = remap.astype(np.int32)[old.rows]
    keep = new_rows >= 0
    kept_rows, kept_tfs = new_rows[keep], np.asarray(old.tfs)[keep]
    del new_rows
    # Every stored term has postings, so no reduceat segment is empty.
    kept_df = np.add.reduceat(keep.astype(np.int32), old.indptr[:-1].astype(np.int64))
    del keep
    kept_ptr = np.zeros(len(old.terms) + 1, dtype=np.int64)
    np.cumsum(kept_df, out=kept_ptr[1:])
    # Where each new posting goes among the kept ones: after the kept postings
    # of smaller terms, and among its own term's kept rows by row.
    at = np.empty(len(add[0]), dtype=np.int64)
    for i, (term, row) in enumerate(zip(add[0], add[1], strict=True)):
        j = bisect_left(old.terms, term)
        if j < len(old.terms) and old.terms[j] == term:
            start, end = int(kept_ptr[j]), int(kept_ptr[j + 1])
            at[i] = start + int(np.searchsorted(kept_rows[start:end], row))
        else:
            at[i] = kept_ptr[j]
    rows = np.insert(kept_rows, at, np.asarray(add[1], dtype=np.int32))
    tfs = np.insert(kept_tfs, at, np.asarray(add[2], dtype=np.int32))
    vocab = _merged_vocab(old.terms, kept_df, sorted(set(add[0])))
    df = np.zeros(len(vocab), dtype=np.int64)
    position = None if vocab is old.terms else {t: i for i, t in enumerate(vocab)}
    alive_old = np.flatnonzero(kept_df > 0)
    old_ids = (alive_old if position is None else
               np.fromiter((position[old.terms[i]] for i in alive_old), np.int64, len(alive_old)))
    df[old_ids] = kept_df[alive_old]
    for term in add[0]:
        df[position[term] if position is not None else bisect_left(vocab, term)] += 1
    indptr = np.zeros(len(vocab) + 1, dtype=np.int64)
    np.cumsum(df, out=indptr[1:])
    return Postings(vocab, indptr, rows.astype(np.int32), tfs.astype(np.int32), doclen)


def _merged_vocab(old: list[str], kept_df: npt.NDArray[Any], added: list[str]) -> list[str]:
    """Sorted terms with postings: the old ones still used plus ``added`` (sorted)."""
    gone = set(np.flatnonzero(kept_df == 0).tolist())
    alive = [t for i, t in enumerate(old) if i not in gone] if gone else old
    fresh = [t for t in added if not _contains(alive, t)]
    # The common small update changes no term: the old list is kept as is.
    return sorted(alive + fresh) if fresh else alive


def _contains(sorted_terms: list[str], term: str) -> bool:
    j = bisect_left(sorted_terms, term)
    return j < len(sorted_terms) and sorted_terms[j] == term


def _from_sorted(add: tuple[list[str], list[int], list[int]], doclen: I32) -> Postings:
    """Postings from (term, row, tf) lists sorted by term, then row."""
    terms, rows, tfs = add
    vocab: list[str] = []
    indptr = [0]
    for i, term in enumerate(terms):
        if not vocab or vocab[-1] != term:
            if vocab:
                indptr.append(i)
            vocab.append(term)
    if vocab:
        indptr.append(len(terms))
    return Postings(vocab, np.asarray(indptr, dtype=np.int64), np.asarray(rows, dtype=np.int32),
                    np.asarray(tfs, dtype=np.int32), doclen)


def postings_of(texts: Iterable[str], tokenizer: Tokenizer) -> Postings:
    """Postings of ``texts`` from scratch (row i = the i-th text)."""
    mapping = dict(enumerate(texts))
    return merge_postings(Postings.empty(), np.empty(0, np.int64), len(mapping), mapping,
                          tokenizer)


def _sorted_counts(
    texts: Mapping[int, str], tokenizer: Tokenizer, doclen: I32
) -> tuple[list[str], list[int], list[int]]:
    """(term, row, tf) lists of ``texts`` sorted by term, then row; fills in row lengths."""
    triples: list[tuple[str, int, int]] = []
    for row, text in texts.items():
        tokens = tokenizer.terms(text)
        doclen[row] = len(tokens)
        counts: dict[str, int] = {}
        for t in tokens:
            counts[t] = counts.get(t, 0) + 1
        triples.extend((t, row, c) for t, c in counts.items())
    triples.sort()
    if not triples:
        return [], [], []
    terms, rows, tfs = (list(x) for x in zip(*triples, strict=True))
    return terms, rows, tfs
