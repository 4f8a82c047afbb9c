"""``--precision auto`` (and ``int8``): the backend is picked per call, by measurement.

* **Small calls** (at most :data:`~lakevec.settings.SMALL_UPDATE_MAX` texts,
  e.g. a reindex of a few changed records) use the torch-free ONNX fp32 export,
  verified against sentence-transformers fp32 at cosine >= 0.999 when it was
  exported (the same check that admits it for queries). torch is never
  imported. Without an export (a model's very first build) they use
  sentence-transformers, and the build exports the model afterwards.
* **Large calls** use the backend :mod:`lakevec.embed.calibrate` measured
  fastest on this machine (cached per machine and model; measured on the
  first large call, a few seconds). With a cached calibration whose choice is
  an ONNX backend, torch is never imported either.

``precision`` and ``backend`` say what the last call used (before any call:
what a large call would use), and ``equivalence_cosine`` how closely that
backend was verified to match sentence-transformers fp32; the build records
all three in the manifest.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import cast

from lakevec.embed.base import Vectors
from lakevec.embed.calibrate import (
    BASELINE,
    CANDIDATES,
    Calibration,
    Encode,
    calibrate,
    candidates_for,
    machine_description,
    read_calibration,
    write_calibration,
)
from lakevec.embed.onnx import OnnxEmbedder, export_dir, open_export, read_export_info
from lakevec.embed.onnx_quant import open_int8
from lakevec.embed.precision import Precision, cpu_flags, resolve_precision
from lakevec.embed.sentence import SentenceTransformerEmbedder
from lakevec.errors import ModelLoadError
from lakevec.settings import DEFAULT_BATCH_SIZE, DEFAULT_MODEL, SMALL_UPDATE_MAX

INT8 = "onnx-int8"


class AutoEmbedder:
    """Embeds with the fastest verified backend for the call (see the module docstring).

    ``force`` pins the large-call backend (``onnx-int8`` for ``--precision
    int8``); small calls still take the torch-free fp32 path unless forced.
    """

    def __init__(
        self,
        spec: str = DEFAULT_MODEL,
        *,
        force: str | None = None,
        small_max: int = SMALL_UPDATE_MAX,
        fingerprint: str | None = None,
    ) -> None:
        if force is not None and force not in CANDIDATES:
            raise ValueError(f"unknown backend {force!r}")
        self.sentence = SentenceTransformerEmbedder(spec, precision="fp32",
                                                    fingerprint=fingerprint)
        self.spec = spec
        self.model_id = self.sentence.model_id
        self.fingerprint = self.sentence.fingerprint
        self.force = force
        self.small_max = small_max
        self.calibration: Calibration | None = None
        self._used: str | None = None  # the candidate the last call ran on
        self._cosine: float | None = None
        self._onnx: dict[str, OnnxEmbedder | None] = {}

    # ─── what it is ──────────────────────────────────────────────────────────

    def planned(self) -> str:
        """The candidate a large call would use now (no measuring, no model load)."""
        if self.force is not None:
            return self.force
        if self.calibration is None:
            self.calibration = read_calibration(self.fingerprint)
        if self.calibration is not None:
            return self.calibration.choice
        return f"st-{resolve_precision('auto')}"

    @property
    def backend(self) -> str:
        return CANDIDATES[self._used or self.planned()][0]

    @property
    def precision(self) -> str:
        return CANDIDATES[self._used or self.planned()][1]

    @property
    def equivalence_cosine(self) -> float | None:
        """Min cosine to sentence-transformers fp32 of the backend the last call used."""
        return self._cosine

    @property
    def dimension(self) -> int:
        info = read_export_info(export_dir(self.fingerprint), self.fingerprint)
        return info.dimension if info is not None else self.sentence.dimension

    # ─── encoding ────────────────────────────────────────────────────────────

    def encode(
        self, texts: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE,
        progress: bool = False,
    ) -> Vectors:
        if self.force is None and len(texts) <= self.small_max:
            query = self._onnx_model("onnx-fp32")
            name = "onnx-fp32" if query is not None else f"st-{resolve_precision('auto')}"
        else:
            name = self.force or self._choose(texts, progress=progress)
        vectors = self._encoder(name, batch_size=batch_size, progress=progress)(list(texts))
        self._used = name
        self._cosine = self._verified_cosine(name)
        return vectors

    def release(self) -> None:
        """Drop the ONNX sessions (~150 MB for MiniLM); they reopen on the next call."""
        self._onnx.clear()

    def _verified_cosine(self, name: str) -> float | None:
        if name == BASELINE:
            return 1.0
        if name.startswith("onnx-"):
            model = self._onnx.get(name)
            return model.equivalence_cosine if model is not None else None
        if self.calibration is not None:
            found = {m.name: m.min_cosine for m in self.calibration.measurements}
            return found.get(name)
        return None

    def _onnx_model(self, name: str, *, create: bool = False) -> OnnxEmbedder | None:
        """The ONNX embedder of a candidate (fp32 export or int8), or None."""
        if name not in self._onnx or (self._onnx[name] is None and create):
            if name == "onnx-fp32":
                model = open_export(self.spec, self.model_id, self.fingerprint)
            else:
                model = open_int8(self.spec, self.model_id, self.fingerprint, create=create)
            self._onnx[name] = model
        return self._onnx[name]

    def _encoder(self, name: str, *, batch_size: int, progress: bool) -> Encode:
        backend, precision = CANDIDATES[name]
        if backend == "onnx":
            model = self._onnx_model(name, create=True)
            if model is None and name == INT8:
                self._export(progress)  # loads torch: the int8 model derives from the export
                model = self._onnx_model(name, create=True)
            if model is None:
                raise ModelLoadError(f"no ONNX model for {self.spec} ({name}); use --precision "
                                     "fp32 or bf16")
            found: OnnxEmbedder = model
            return lambda texts: found.encode(texts, batch_size=batch_size, progress=progress)
        st = self.sentence

        def encode(texts: list[str]) -> Vectors:
            st.precision = cast(Precision, precision)
            return st.encode(texts, batch_size=batch_size, progress=progress)

        return encode

    def _export(self, progress: bool) -> None:
        from lakevec.embed.onnx_export import ensure_export

        note = ensure_export(self.sentence, progress=progress)
        # Forget the misses: the export (and so the int8 model) may exist now.
        self._onnx = {k: v for k, v in self._onnx.items() if v is not None}
        if progress:
            print(note, file=sys.stderr)

    def _choose(self, texts: Sequence[str], *, progress: bool) -> str:
        """The calibrated candidate; calibrates (and caches) on the first large call."""
        machine = machine_description()
        self.calibration = self.calibration or read_calibration(self.fingerprint, machine)
        if self.calibration is not None:
            return self.calibration.choice
        # Measuring needs the fp32 reference, i.e. torch; it also exports the
        # model so that the ONNX candidates exist.
        self._export(progress)
        names = candidates_for(cpu_flags(), onnx=self._onnx_model("onnx-fp32") is not None)
        encoders = {}
        for name in names:
            if name.startswith("onnx-") and self._onnx_model(name, create=True) is None:
                continue
            encoders[name] = self._encoder(name, batch_size=DEFAULT_BATCH_SIZE, progress=False)
        if progress:
            print(f"calibrating embedding backends ({', '.join(encoders)}) ...", file=sys.stderr)
        cal = calibrate(encoders, texts, machine=machine)
        self.calibration = cal
        write_calibration(self.fingerprint, cal)
        if progress:
            rates = ", ".join(f"{m.name} {m.records_per_s:.1f}/s (cos {m.min_cosine:.4f})"
                              for m in cal.measurements)
            print(f"calibrated: {rates} → {cal.choice} ({cal.speedup():.2f}x fp32)",
                  file=sys.stderr)
        return cal.choice
