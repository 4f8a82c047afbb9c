"""A sentence-transformers model on the CPU (torch), loaded from a local directory only.

Building embeds with bf16 weights when the CPU has native bf16
(``precision="auto"``). torch and sentence-transformers are imported only when
the model is first used, so constructing an embedder (and checking its
fingerprint) stays cheap.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from lakevec.embed.base import (
    ChunkedEncoder,
    LengthSort,
    Vectors,
    clip_text,
    normalize,
    window_chars,
)
from lakevec.embed.models import model_fingerprint, model_id_for, resolve_model_dir
from lakevec.embed.precision import Precision, resolve_precision
from lakevec.errors import ModelLoadError
from lakevec.settings import DEFAULT_BATCH_SIZE, DEFAULT_MODEL, DEFAULT_PRECISION


class SentenceTransformerEmbedder(ChunkedEncoder):
    """A sentence-transformers model on the CPU, loaded from a local directory only.

    ``precision`` is ``auto`` (bf16 weights where the CPU has native bf16,
    else fp32), ``fp32`` or ``bf16``; vectors are always returned as
    L2-normalised float32 (normalised in fp32, after the forward pass).
    """

    backend: str = "sentence-transformers"

    def __init__(
        self,
        spec: str = DEFAULT_MODEL,
        *,
        device: str = "cpu",
        precision: str = DEFAULT_PRECISION,
        length_sort: LengthSort = "global",
        fingerprint: str | None = None,
    ) -> None:
        self.spec = spec
        self.model_dir = resolve_model_dir(spec)
        self.model_id = model_id_for(spec, self.model_dir)
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
    def loaded(self) -> bool:
        """Whether the weights are in memory (construction alone never loads them)."""
        return self._model is not None

    @property
    def model(self) -> Any:
        """The loaded ``SentenceTransformer`` (loads it on first use)."""
        return self._load()

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            model = self._load()
            # Version shim for the third-party model object, not a capability
            # probe of our own types: sentence-transformers 5 renamed
            # get_sentence_embedding_dimension to get_embedding_dimension.
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
        """How many tokens the model reads; the rest of a text is truncated."""
        return int(self._load().max_seq_length)

    @property
    def max_chars(self) -> int:
        """Characters of a text handed to the tokenizer (see :func:`clip_text`)."""
        return window_chars(self.max_seq_length)

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
        limit = self.max_chars
        vecs = model.encode(
            [clip_text(t, limit) for t in texts],
            batch_size=batch_size,
            normalize_embeddings=False,
            convert_to_tensor=True,
            show_progress_bar=False,
        )
        # Normalise in fp32: a bf16 model's pooled output is bf16.
        return normalize(vecs.float().cpu().numpy())

    @property
    def equivalence_cosine(self) -> float | None:
        """1.0 in fp32 (the reference itself); bf16 is not re-verified per build."""
        return 1.0 if self.precision == "fp32" else None

    def _label(self) -> str:
        return f"embedding ({self.precision})"
