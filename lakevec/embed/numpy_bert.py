"""Query embeddings in plain numpy for BERT encoders: no torch, no onnxruntime.

A fresh ``lakevec search`` or ``replay`` embeds one short text. Opening an
ONNX Runtime session for it costs ~0.3 s here (import plus parsing the
90 MB graph) against ~10 ms of arithmetic, so for the common case — a BERT
encoder with mean or CLS pooling, such as the default all-MiniLM-L6-v2 —
the build also writes the weights as one flat float32 file beside the ONNX
export, laid out for ``x @ W``. A query maps it (``np.memmap``: nothing is
copied, only the token rows it uses are read) and runs the forward pass.

The pack is derived from the model's ``model.safetensors`` (parsed here,
without the safetensors package) and installed only when its vectors match
sentence-transformers' own, saved by the export (cosine >=
:data:`PACK_MIN_COSINE` on :data:`~lakevec.embed.onnx.VERIFY_TEXTS`, batched
and one by one); exports made before those were saved check against the
verified ONNX graph instead. Other architectures, or a model without
safetensors, keep the ONNX path::

    onnx/<fingerprint>/
      bert-fp32.bin   every weight, float32, 64-byte aligned
      bert.json       BertPackInfo: shapes, offsets, how well it matched
"""

from __future__ import annotations

import json
import math
import os
import struct
import sys
import threading
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from lakevec.embed.base import Vectors
from lakevec.embed.leftovers import remove_stale_temp_files
from lakevec.embed.onnx import (
    REFERENCE_FILE,
    VERIFY_TEXTS,
    ExportEncoder,
    ExportInfo,
    OnnxEmbedder,
    agreement,
    open_graph,
)
from lakevec.files import fsync_path, owned_temp_name
from lakevec.settings import NO_NUMPY_QUERY_ENV, env_flag

PACK_FORMAT = 1
PACK_FILE = "bert-fp32.bin"
PACK_INFO = "bert.json"
# The same arithmetic in another order: anything below this is a bug, not rounding.
PACK_MIN_COSINE = 0.99999
# Tokens (batch x padded length) one call runs in numpy: one query at the
# default model's window. numpy is ~1.2x faster than ONNX Runtime for a short
# query but ~1.8x slower at 256 tokens and ~3.3x on a batch of 32 queries
# (docs/BENCHMARKS.md), so larger calls open the ONNX graph once and use it.
NUMPY_MAX_TOKENS = 256
_ALIGN = 64
_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64}
# Per layer: (name in the pack, safetensors suffix, transpose). Q, K and V are
# fused into one matrix below so attention needs one matmul.
_LAYER = (
    ("ao_w", "attention.output.dense.weight", True),
    ("ao_b", "attention.output.dense.bias", False),
    ("ln1_g", "attention.output.LayerNorm.weight", False),
    ("ln1_b", "attention.output.LayerNorm.bias", False),
    ("in_w", "intermediate.dense.weight", True),
    ("in_b", "intermediate.dense.bias", False),
    ("out_w", "output.dense.weight", True),
    ("out_b", "output.dense.bias", False),
    ("ln2_g", "output.LayerNorm.weight", False),
    ("ln2_b", "output.LayerNorm.bias", False),
)
_EMBED = (
    ("word", "embeddings.word_embeddings.weight"),
    ("pos", "embeddings.position_embeddings.weight"),
    ("type", "embeddings.token_type_embeddings.weight"),
    ("emb_g", "embeddings.LayerNorm.weight"),
    ("emb_b", "embeddings.LayerNorm.bias"),
)


#: Tensor name -> (offset in float32 elements, shape) inside the pack file.
Layout = dict[str, tuple[int, tuple[int, ...]]]
#: What the pack's vectors were checked against.
Reference = Literal["sentence-transformers", "the ONNX export"]


class BertPackInfo(BaseModel):
    """What ``bert.json`` records about one numpy weight pack."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[1] = 1  # PACK_FORMAT
    fingerprint: str
    layers: int
    heads: int
    layer_norm_eps: float
    pack_bytes: int
    tensors: Layout
    verified_against: Reference  # torch's vectors saved by the export, or the ONNX graph
    verified_cosine: float  # min cosine to that reference on the verification texts
    min_cosine: float  # bound to sentence-transformers fp32 (angles added via the export)


class UnsupportedModel(Exception):
    """The model is not a plain BERT encoder this module can run."""


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a ``.safetensors`` file as a float32 array (a read-only map)."""
    with path.open("rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(size))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + size)
    out = {}
    for name, meta in header.items():
        if name == "__metadata__" or meta["dtype"] not in _DTYPES:
            continue
        start, end = meta["data_offsets"]
        arr = data[start:end].view(_DTYPES[meta["dtype"]]).reshape(meta["shape"])
        out[name.removeprefix("bert.")] = arr.astype(np.float32, copy=False)
    return out


def _pack_arrays(model_dir: Path) -> tuple[dict[str, np.ndarray], int, int, float]:
    """(arrays in pack layout, layers, heads, eps) or :class:`UnsupportedModel`."""
    try:
        cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UnsupportedModel(f"no readable config.json ({exc})") from exc
    if cfg.get("model_type") != "bert" or cfg.get("hidden_act") != "gelu":
        raise UnsupportedModel(f"{cfg.get('model_type')}/{cfg.get('hidden_act')} is not BERT/gelu")
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        raise UnsupportedModel("only absolute position embeddings")
    if not (model_dir / "model.safetensors").is_file():
        raise UnsupportedModel("no model.safetensors")
    raw = _read_safetensors(model_dir / "model.safetensors")
    layers, heads = int(cfg["num_hidden_layers"]), int(cfg["num_attention_heads"])
    try:
        arrays = {name: raw[key] for name, key in _EMBED}
        for i in range(layers):
            pre = f"encoder.layer.{i}."
            att = pre + "attention.self."
            arrays[f"{i}.qkv_w"] = np.concatenate(
                [raw[att + p + ".weight"].T for p in ("query", "key", "value")], axis=1)
            arrays[f"{i}.qkv_b"] = np.concatenate(
                [raw[att + p + ".bias"] for p in ("query", "key", "value")])
            for name, suffix, transpose in _LAYER:
                arrays[f"{i}.{name}"] = raw[pre + suffix].T if transpose else raw[pre + suffix]
    except KeyError as exc:
        raise UnsupportedModel(f"missing tensor {exc}") from exc
    return arrays, layers, heads, float(cfg.get("layer_norm_eps", 1e-12))


def _erf(x: np.ndarray) -> np.ndarray:
    # Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7): numpy has no erf, and
    # scipy would cost more to import than the whole forward pass.
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (
        -1.453152027 + t * 1.061405429))))
    return np.asarray(sign * (1.0 - poly * np.exp(-a * a)), dtype=np.float32)


def _layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(-1, keepdims=True)
    return np.asarray(centred / np.sqrt(var + eps) * g + b, dtype=np.float32)


class NumpyBertEmbedder(ExportEncoder):
    """BERT forward pass + pooling in numpy over a verified weight pack.

    Calls over ``max_tokens`` (None: no limit) run on the export's ONNX graph,
    opened on first need; both match sentence-transformers, verified.
    """

    backend: str = "numpy"

    def __init__(self, spec: str, model_id: str, target: Path, info: ExportInfo,
                 pack: BertPackInfo, *, max_tokens: int | None = NUMPY_MAX_TOKENS,
                 pack_file: str = PACK_FILE) -> None:
        super().__init__(spec, model_id, target, info, min_cosine=pack.min_cosine)
        flat = np.memmap(target / pack_file, dtype=np.float32, mode="r")
        self._w = {
            name: flat[off : off + math.prod(shape)].reshape(shape)
            for name, (off, shape) in pack.tensors.items()
        }
        self._layers, self._heads, self._eps = pack.layers, pack.heads, pack.layer_norm_eps
        self.max_tokens = max_tokens
        self._graph: OnnxEmbedder | None = None
        self._graph_tried = False
        self._graph_lock = threading.Lock()

    def _onnx(self) -> OnnxEmbedder | None:
        """The export's ONNX graph (opened once), or None when it cannot be opened."""
        with self._graph_lock:
            if not self._graph_tried:
                self._graph_tried = True
                self._graph = open_graph(self.spec, self.model_id, self.export_dir, self.info,
                                         instead="the numpy query model")
            return self._graph

    def _run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        if self.max_tokens is not None and feed["input_ids"].size > self.max_tokens:
            graph = self._onnx()
            if graph is not None:
                return graph._run(feed)  # same tokenisation, other runtime
        w, eps = self._w, self._eps
        ids, mask = feed["input_ids"], feed["attention_mask"]
        batch, tokens = ids.shape
        x = w["word"][ids] + w["pos"][:tokens] + w["type"][feed["token_type_ids"]]
        x = _layer_norm(x, w["emb_g"], w["emb_b"], eps)
        hidden = x.shape[-1]
        head = hidden // self._heads
        # Padding gets a large negative score, as in BERT's extended attention mask.
        bias = ((1.0 - mask[:, None, None, :]) * -1e30).astype(np.float32)
        scale = np.float32(1.0 / math.sqrt(head))
        for i in range(self._layers):
            qkv = x @ w[f"{i}.qkv_w"] + w[f"{i}.qkv_b"]
            q, k, v = (qkv[..., j * hidden : (j + 1) * hidden]
                       .reshape(batch, tokens, self._heads, head).transpose(0, 2, 1, 3)
                       for j in range(3))
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            ctx = (scores @ v).transpose(0, 2, 1, 3).reshape(batch, tokens, hidden)
            x = _layer_norm(ctx @ w[f"{i}.ao_w"] + w[f"{i}.ao_b"] + x,
                            w[f"{i}.ln1_g"], w[f"{i}.ln1_b"], eps)
            inner = x @ w[f"{i}.in_w"] + w[f"{i}.in_b"]
            inner = inner * np.float32(0.5) * (np.float32(1.0) + _erf(inner * np.float32(
                1 / math.sqrt(2))))
            x = _layer_norm(inner @ w[f"{i}.out_w"] + w[f"{i}.out_b"] + x,
                            w[f"{i}.ln2_g"], w[f"{i}.ln2_b"], eps)
        if self.info.pooling == "cls":
            return np.asarray(x[:, 0], dtype=np.float32)
        m = mask[..., None].astype(np.float32)
        return np.asarray((x * m).sum(1) / np.maximum(m.sum(1), 1e-9), dtype=np.float32)


def read_pack_info(target: Path, fingerprint: str) -> BertPackInfo | None:
    """The pack's info if ``target`` holds a complete pack for ``fingerprint``."""
    try:
        pack = BertPackInfo.model_validate_json((target / PACK_INFO).read_bytes())
        size = (target / PACK_FILE).stat().st_size
    except (OSError, ValidationError):
        return None
    if pack.fingerprint != fingerprint or size != pack.pack_bytes:
        return None
    return pack


def open_numpy(spec: str, model_id: str, target: Path, info: ExportInfo
               ) -> NumpyBertEmbedder | None:
    """A :class:`NumpyBertEmbedder` for the export at ``target``, or None (no pack, disabled)."""
    if env_flag(NO_NUMPY_QUERY_ENV) or (pack := read_pack_info(target, info.fingerprint)) is None:
        return None
    try:
        return NumpyBertEmbedder(spec, model_id, target, info, pack)
    except (OSError, ValueError) as exc:  # a damaged tokenizer or pack: the graph follows
        print(f"note: numpy query model in {target} is unusable ({exc}); using ONNX",
              file=sys.stderr)
        return None


def _bound(a: float, b: float) -> float:
    """cos(angle a + angle b): the worst cosine to X of a vector within a of Y, Y within b of X."""
    angle = math.acos(min(1.0, a)) + math.acos(min(1.0, b))
    return math.floor(math.cos(min(angle, math.pi)) * 1e6) / 1e6  # rounded down: a bound


def _write_pack(arrays: dict[str, np.ndarray], path: Path) -> Layout:
    """Write the arrays as one aligned float32 file; their (offset, shape) by name."""
    tensors: Layout = {}
    with path.open("wb") as fh:
        for name, arr in arrays.items():
            fh.write(b"\0" * ((-fh.tell()) % _ALIGN))
            tensors[name] = (fh.tell() // 4, tuple(int(d) for d in arr.shape))
            fh.write(np.ascontiguousarray(arr, dtype=np.float32).tobytes())
    return tensors


def _reference(target: Path, info: ExportInfo) -> tuple[Vectors, Reference, float] | None:
    """(vectors of VERIFY_TEXTS, what made them, that encoder's own min cosine to torch).

    sentence-transformers' own vectors when the export saved them; else the
    ONNX graph's, one text per call (a batch of all of them at 256 tokens would
    grow ONNX Runtime's arena by ~0.5 GB in what may be a cron reindex).
    """
    try:
        saved = np.load(target / REFERENCE_FILE, allow_pickle=False)
    except (OSError, ValueError):
        saved = None
    if saved is not None and saved.shape == (len(VERIFY_TEXTS), info.dimension):
        return saved.astype(np.float32), "sentence-transformers", 1.0
    graph = open_graph(info.fingerprint, info.model_id, target, info, instead="ONNX")
    if graph is None:
        return None
    return np.vstack([graph.encode_batch([t]) for t in VERIFY_TEXTS]), "the ONNX export", (
        info.min_cosine)


def prepare_numpy_pack(target: Path, info: ExportInfo, model_dir: Path) -> str:
    """Write the pack beside the export unless present; a short note on what happened.

    Build time only (readers never write). The pack is written and checked
    under a temp name, then installed (file, then its info) only when its
    vectors match the reference (:func:`_reference`) at
    :data:`PACK_MIN_COSINE`; never raises: queries use ONNX otherwise.
    """
    remove_stale_temp_files(target)
    if read_pack_info(target, info.fingerprint) is not None:
        return "cached"
    tmp_bin = target / owned_temp_name(PACK_FILE)
    tmp_info = target / owned_temp_name(PACK_INFO)
    try:
        arrays, layers, heads, eps = _pack_arrays(model_dir)
        tensors = _write_pack(arrays, tmp_bin)
        del arrays
        reference = _reference(target, info)
        if reference is None:
            return "not written (the ONNX export does not open)"
        want, against, ref_cosine = reference
        pack = BertPackInfo(fingerprint=info.fingerprint, layers=layers, heads=heads,
                            layer_norm_eps=eps, pack_bytes=tmp_bin.stat().st_size,
                            tensors=tensors, verified_against=against, verified_cosine=0.0,
                            min_cosine=0.0)
        fast = NumpyBertEmbedder(info.fingerprint, info.model_id, target, info, pack,
                                 max_tokens=None, pack_file=tmp_bin.name)
        worst = agreement(want, fast, VERIFY_TEXTS, batch_size=4)
        if worst < PACK_MIN_COSINE:
            return f"not used (min cosine {worst:.7f} to {against}, below {PACK_MIN_COSINE})"
        pack = pack.model_copy(update={
            "verified_cosine": math.floor(min(worst, 1.0) * 1e7) / 1e7,
            "min_cosine": _bound(worst, ref_cosine),
        })
        tmp_info.write_text(pack.model_dump_json(indent=2), encoding="utf-8")
        fsync_path(tmp_bin)
        fsync_path(tmp_info)
        # The file first: a reader finds it only through bert.json, which checks its size.
        os.replace(tmp_bin, target / PACK_FILE)
        os.replace(tmp_info, target / PACK_INFO)
        fsync_path(target)
        return f"written (min cosine {worst:.7f} to {against})"
    except UnsupportedModel as exc:
        return f"not used ({exc})"
    except Exception as exc:  # noqa: BLE001 — an optimisation only: queries use ONNX then
        return f"not written ({type(exc).__name__}: {exc})"
    finally:
        tmp_bin.unlink(missing_ok=True)
        tmp_info.unlink(missing_ok=True)
