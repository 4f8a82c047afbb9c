"""Load an embedder from a spec: ``default``, a model directory, or ``hash:DIM``."""

from __future__ import annotations

from lakevec.embed.base import Embedder
from lakevec.embed.hashing import HashEmbedder, is_hash_spec
from lakevec.embed.models import model_fingerprint, model_id_for, resolve_model_dir
from lakevec.embed.numpy_bert import open_numpy
from lakevec.embed.onnx import open_graph, usable_export
from lakevec.embed.precision import resolve_precision
from lakevec.embed.sentence import SentenceTransformerEmbedder
from lakevec.settings import DEFAULT_MODEL, DEFAULT_PRECISION


def load_embedder(spec: str | None = None, *, precision: str = DEFAULT_PRECISION) -> Embedder:
    """The embedder to build with (weights load lazily, on the first encode).

    ``precision``: ``auto`` picks the backend per call by measurement
    (:class:`~lakevec.embed.auto.AutoEmbedder`: torch-free ONNX for small
    updates, the calibrated fastest backend for large ones); ``int8`` runs
    ONNX Runtime with int8 weights; ``fp32``/``bf16`` run sentence-transformers
    with those weights (``fp32`` gives bit-stable vectors).
    """
    spec = spec or DEFAULT_MODEL
    if is_hash_spec(spec):
        return HashEmbedder.from_spec(spec)
    if precision in ("auto", "int8"):
        # Imported here: the query path (load_query_embedder) never needs it.
        from lakevec.embed.auto import INT8, AutoEmbedder

        return AutoEmbedder(spec, force=INT8 if precision == "int8" else None)
    return SentenceTransformerEmbedder(spec, precision=resolve_precision(precision))


def load_query_embedder(spec: str | None = None, *, long_lived: bool = False) -> Embedder:
    """The embedder for queries: the export's numpy pack, its ONNX graph, else the model.

    Neither export path imports torch. The numpy pack (BERT encoders) needs
    only numpy and tokenizers, which keeps a fresh ``lakevec search`` near
    its import floor; the ONNX graph adds onnxruntime (~0.3 s to open).
    Without a usable export this falls back to sentence-transformers in fp32.
    ``long_lived`` (a server): start on the ONNX graph, whose opening cost is
    paid once and which is faster on long texts and batches.
    """
    spec = spec or DEFAULT_MODEL
    if is_hash_spec(spec):
        return HashEmbedder.from_spec(spec)
    model_dir = resolve_model_dir(spec)
    fingerprint = model_fingerprint(model_dir)
    model_id = model_id_for(spec, model_dir)
    if (found := usable_export(fingerprint)) is not None:
        fast = None if long_lived else open_numpy(spec, model_id, *found)
        encoder = fast or open_graph(spec, model_id, *found)
        if encoder is not None:
            return encoder
    return SentenceTransformerEmbedder(spec, precision="fp32", fingerprint=fingerprint)
