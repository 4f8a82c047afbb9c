"""The embedder protocol and what every embedder shares.

An embedder turns texts into unit-length float32 vectors of a fixed dimension.
Heavy imports (torch, onnxruntime) belong to the concrete embedders; this
module needs numpy only.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from lakevec.settings import DEFAULT_BATCH_SIZE

Vectors = npt.NDArray[np.float32]
# How texts are ordered before batching: "global" sorts the whole input
# longest-first (the default: measured fastest, docs/BENCHMARKS.md), "chunk"
# leaves it to sentence-transformers' sort inside each 512-text chunk, "off"
# keeps input order (a baseline for the benchmark).
LengthSort = Literal["global", "chunk", "off"]
# Chunk size for the progress bar: small enough to update often, large enough
# that sentence-transformers' own length sorting still has batches to fill.
CHUNK = 512

# Characters of input per token of the model's window that a text may keep
# before tokenizing (see clip_text). The longest word piece of MiniLM's
# vocabulary is 18 characters ("telecommunications"), so 256 tokens of any
# text without [UNK] words cover at most 256 × (18 + a separator) ≈ 4.9k
# characters; 32 leaves room for runs of whitespace and combining marks. The
# margin is free: tokenizing 8k characters takes about a millisecond, while
# handing a 5 MB record to the tokenizer took minutes.
CHARS_PER_TOKEN = 32


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length float32 vectors of a fixed dimension."""

    spec: str  # how to load the same model again ("default", a path, "hash:64")
    model_id: str  # a portable, human-readable name
    fingerprint: str  # content hash of the model files

    @property
    def backend(self) -> str:
        """``sentence-transformers``, ``onnx`` or ``hash``."""
        ...

    @property
    def precision(self) -> str:
        """The weights' precision: ``fp32``, ``bf16``, or ``na`` (no model)."""
        ...

    @property
    def dimension(self) -> int: ...

    def encode(
        self, texts: Sequence[str], *, batch_size: int = ..., progress: bool = ...
    ) -> Vectors: ...


@runtime_checkable
class VerifiedEncoder(Protocol):
    """An embedder that knows how closely it matches sentence-transformers fp32."""

    @property
    def equivalence_cosine(self) -> float | None:
        """Min cosine to sentence-transformers fp32 on its verification texts."""
        ...


@runtime_checkable
class Releasable(Protocol):
    """An embedder that can drop its loaded weights (loaded again on the next call)."""

    def release(self) -> None: ...


def release_weights(embedder: object) -> None:
    """Free an embedder's weights if it can: a small reindex needs them only briefly."""
    if isinstance(embedder, Releasable):
        embedder.release()


def verified_cosine(embedder: object) -> float | None:
    """The embedder's verified min cosine to fp32, or None when it does not say."""
    return embedder.equivalence_cosine if isinstance(embedder, VerifiedEncoder) else None


def normalize(vectors: npt.NDArray[Any]) -> Vectors:
    """L2-normalise rows; zero rows stay zero instead of becoming NaN."""
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    out: Vectors = (v / norms).astype(np.float32, copy=False)
    return out


def clip_text(text: str, max_chars: int) -> str:
    """``text`` cut to its first ``max_chars`` characters (unchanged when shorter).

    Models read only their first ``max_seq_length`` tokens, but tokenizers
    tokenize the whole text before truncating, so a multi-megabyte record
    costs minutes. Embedders cut each text to ``max_seq_length ×
    CHARS_PER_TOKEN`` characters first; a text whose tokens fit the window is
    shorter than that and keeps its exact vector.
    """
    return text if len(text) <= max_chars else text[:max_chars]


def window_chars(max_seq_length: int) -> int:
    """The character budget (for :func:`clip_text`) of a model's token window."""
    return max_seq_length * CHARS_PER_TOKEN


def encode_in_chunks(
    texts: Sequence[str],
    encode_chunk: Callable[[list[str]], Vectors],
    *,
    dimension: int,
    progress: bool,
    desc: str,
    length_sort: LengthSort = "global",
    chunk: int = CHUNK,
) -> Vectors:
    """Encode ``texts`` longest-first in chunks, with a progress bar on stderr.

    Sorting by length across the whole input (not only inside one call) keeps
    padding waste low; results are scattered back to input order.
    """
    out = np.empty((len(texts), dimension), dtype=np.float32)
    order = list(range(len(texts)))
    if length_sort == "global":
        order.sort(key=lambda i: -len(texts[i]))
    if not progress and len(order) <= chunk:
        # One chunk, no bar: skip importing tqdm (matters for a query's cold start).
        out[order] = encode_chunk([texts[i] for i in order])
        return out
    from tqdm import tqdm

    with tqdm(
        total=len(texts),
        desc=desc,
        unit="rec",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
    ) as bar:
        for start in range(0, len(order), chunk):
            idx = order[start : start + chunk]
            out[idx] = encode_chunk([texts[i] for i in idx])
            bar.update(len(idx))
    return out


class ChunkedEncoder:
    """``encode`` for embedders that implement ``encode_batch``: length-sorted
    chunks, scattered back to input order, with a progress bar on stderr."""

    length_sort: LengthSort = "global"

    @property
    def dimension(self) -> int:
        raise NotImplementedError

    def _label(self) -> str:
        return "embedding"

    def encode_batch(
        self, texts: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> Vectors:
        raise NotImplementedError

    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: bool = False,
    ) -> Vectors:
        return encode_in_chunks(
            texts,
            lambda batch: self.encode_batch(batch, batch_size=batch_size),
            dimension=self.dimension,
            progress=progress,
            desc=self._label(),
            length_sort=self.length_sort,
            # "off" must also defeat sentence-transformers' own per-call sort.
            chunk=batch_size if self.length_sort == "off" else CHUNK,
        )
