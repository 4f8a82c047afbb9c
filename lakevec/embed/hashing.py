"""``hash:DIM``: a deterministic bag-of-words hashing embedder for fast tests.

It has no semantic quality and is never a default.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from lakevec.embed.base import ChunkedEncoder, Vectors, normalize
from lakevec.errors import UsageProblem
from lakevec.settings import DEFAULT_BATCH_SIZE

HASH_PREFIX = "hash:"
_WORD = re.compile(r"[a-z0-9_]+")


class HashEmbedder(ChunkedEncoder):
    """Deterministic bag-of-words hashing embedder for tests (no semantics, no model)."""

    backend: str = "hash"
    precision: str = "na"

    def __init__(self, dimension: int = 64) -> None:
        if dimension < 2:
            raise UsageProblem("hash embedder dimension must be at least 2")
        self._dim = dimension
        self.spec = f"{HASH_PREFIX}{dimension}"
        self.model_id = self.spec
        self.fingerprint = hashlib.sha256(self.spec.encode()).hexdigest()[:32]

    @classmethod
    def from_spec(cls, spec: str) -> HashEmbedder:
        """The embedder for a ``hash:DIM`` spec."""
        try:
            return cls(int(spec.removeprefix(HASH_PREFIX)))
        except ValueError:
            raise UsageProblem(f"bad hash embedder spec {spec!r}; use hash:DIM") from None

    def _vector(self, text: str) -> npt.NDArray[np.float32]:
        vec = np.zeros(self.dimension, dtype=np.float32)
        for token in _WORD.findall(text.lower()):
            h = hashlib.blake2b(token.encode(), digest_size=8).digest()
            vec[int.from_bytes(h[:4], "little") % self.dimension] += 1.0 if h[4] & 1 else -1.0
        if not vec.any():
            vec[0] = 1.0  # empty text still gets a unit vector
        return vec

    @property
    def dimension(self) -> int:
        return self._dim

    def encode_batch(
        self, texts: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> Vectors:
        return normalize(np.stack([self._vector(t) for t in texts]))


def is_hash_spec(spec: str) -> bool:
    return spec.startswith(HASH_PREFIX)
