"""int8 weights for ONNX Runtime, quantized locally from the verified fp32 export.

The fast path on CPUs without native bf16: ONNX Runtime's dynamic
quantization (``quantize_dynamic``) turns every MatMul with a weight matrix
into an int8 MatMul (weights per output channel; activations quantized per
batch at run time). No torch, no calibration data, a few seconds, and the
graph shrinks from 90 to 23 MB. The result lives beside the fp32 export::

    <cache root>/onnx/<fingerprint>/
      model-int8.onnx   int8 weights, same inputs and output as model.onnx
      int8.json         Int8Info: how it was made and how well it matched

It is installed (atomic rename) only after its vectors match the fp32 export
on :data:`~lakevec.embed.onnx.VERIFY_TEXTS` at the int8 guard
(``settings.MIN_COSINE_BY_PRECISION["int8"]``); the guard was chosen so that
SciFact nDCG@10 stays within 0.005 of fp32 (docs/BENCHMARKS.md). The fp32
export itself was verified against sentence-transformers, so the recorded
``min_cosine`` compounds both checks (it is the lower of the two).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from lakevec.embed.onnx import (
    MODEL_FILE,
    VERIFY_TEXTS,
    ExportInfo,
    OnnxEmbedder,
    agreement,
    export_dir,
    read_export_info,
)
from lakevec.errors import ExportError
from lakevec.files import fsync_path, owned_temp_name, write_atomic
from lakevec.settings import MIN_COSINE_BY_PRECISION, NO_ONNX_ENV, env_flag

INT8_FILE = "model-int8.onnx"
INT8_INFO_FILE = "int8.json"
INT8_FORMAT = 1


class Int8Info(BaseModel):
    """What ``int8.json`` records about the quantized graph."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[1] = 1  # INT8_FORMAT
    fingerprint: str
    onnx_bytes: int
    per_channel: bool
    op_types: list[str]
    min_cosine_to_fp32_onnx: float
    # The lower of this and the fp32 export's own check against sentence-transformers.
    min_cosine: float
    verified_texts: int
    onnxruntime: str


def read_int8_info(target: Path, fingerprint: str) -> Int8Info | None:
    """The info of a complete int8 model for ``fingerprint`` in ``target``, else None."""
    try:
        info = Int8Info.model_validate_json((target / INT8_INFO_FILE).read_bytes())
        size = (target / INT8_FILE).stat().st_size
    except (OSError, ValidationError):
        return None
    if info.fingerprint != fingerprint or info.onnx_bytes != size:
        return None
    return info


def quantize_export(target: Path, info: ExportInfo, *, min_cosine: float | None = None) -> Int8Info:
    """Quantize ``target``'s fp32 graph to int8, verify it and install it; its info.

    Raises :class:`~lakevec.errors.ExportError` when the int8 vectors fall
    below the guard (nothing is installed then).
    """
    from importlib.metadata import version

    from onnxruntime.quantization import QuantType, quantize_dynamic

    guard = MIN_COSINE_BY_PRECISION["int8"] if min_cosine is None else min_cosine
    tmp_name = owned_temp_name(INT8_FILE)
    tmp = target / tmp_name
    op_types = ["MatMul"]
    try:
        quantize_dynamic(
            str(target / MODEL_FILE), str(tmp), weight_type=QuantType.QInt8,
            per_channel=True, op_types_to_quantize=op_types,
        )
        fp32 = OnnxEmbedder(info.fingerprint, info.model_id, target, info)
        int8 = OnnxEmbedder(info.fingerprint, info.model_id, target, info, model_file=tmp_name)
        ref = fp32.encode_batch(VERIFY_TEXTS, batch_size=len(VERIFY_TEXTS))
        worst = agreement(ref, int8, VERIFY_TEXTS, batch_size=len(VERIFY_TEXTS))
        if worst < guard:
            raise ExportError(
                f"int8 model differs from the fp32 export (min cosine {worst:.5f} < {guard})"
            )
        result = Int8Info(
            fingerprint=info.fingerprint,
            onnx_bytes=tmp.stat().st_size,
            per_channel=True,
            op_types=op_types,
            min_cosine_to_fp32_onnx=round(worst, 6),
            min_cosine=round(min(worst, info.min_cosine), 6),
            verified_texts=len(VERIFY_TEXTS),
            onnxruntime=version("onnxruntime"),
        )
        fsync_path(tmp)
        os.replace(tmp, target / INT8_FILE)
        write_atomic(target / INT8_INFO_FILE, result.model_dump_json(indent=2).encode())
        fsync_path(target)
        return result
    finally:
        tmp.unlink(missing_ok=True)


def open_int8(
    spec: str, model_id: str, fingerprint: str, *, create: bool = True, progress: bool = False
) -> OnnxEmbedder | None:
    """The int8 embedder of a model's ONNX export, quantizing it first if needed.

    None when there is no fp32 export, ONNX is disabled, or quantization
    fails its check (a note on stderr then). Never raises.
    """
    if env_flag(NO_ONNX_ENV):
        return None
    target = export_dir(fingerprint)
    info = read_export_info(target, fingerprint)
    if info is None:
        return None
    int8 = read_int8_info(target, fingerprint)
    try:
        if int8 is None:
            if not create:
                return None
            if progress:
                print(f"quantizing the ONNX model to int8 in {target} ...", file=sys.stderr)
            int8 = quantize_export(target, info)
        return OnnxEmbedder(
            spec, model_id, target, info, model_file=INT8_FILE, precision="int8",
            min_cosine=int8.min_cosine, throughput=True,
        )
    except ImportError:
        return None
    except Exception as exc:  # noqa: BLE001 — onnxruntime raises its own types; never fail a build
        print(f"note: no int8 model ({type(exc).__name__}: {exc})", file=sys.stderr)
        return None
