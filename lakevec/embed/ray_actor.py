"""What runs on the Ray nodes for ``--ray``: the embedding actor, and the one backend
decision it is given by the driver.

A *candidate* names a backend and precision (``st-fp32``, ``st-bf16``,
``onnx-fp32``, ``onnx-int8``: :data:`lakevec.embed.calibrate.CANDIDATES`);
``None`` means a model-less embedder (``hash:DIM``) that has only one way to
embed. The driver resolves it once (:func:`candidate_for`) and every actor
embeds with exactly that backend (:func:`actor_embedder`).
"""

from __future__ import annotations

import socket
from typing import Any

import numpy as np

from lakevec import __version__
from lakevec.embed.auto import AutoEmbedder
from lakevec.embed.base import Embedder, verified_cosine
from lakevec.embed.calibrate import CANDIDATES
from lakevec.embed.sentence import SentenceTransformerEmbedder
from lakevec.errors import ClusterError, ModelMismatchError
from lakevec.locks import exclusive_lock
from lakevec.settings import RAY_ACTOR_START_TIMEOUT, cache_root


def candidate_for(local: Embedder) -> str | None:
    """The backend a distributed build of ``local`` uses on every node.

    ``--precision fp32|bf16`` (a sentence-transformers embedder): that one.
    ``--precision auto|int8`` (an :class:`AutoEmbedder`): what it would use
    for a large call now — the forced backend, else the cached calibration for
    this model on the driver, else the CPU-flags rule — without measuring.
    """
    if isinstance(local, AutoEmbedder):
        return local.planned()
    if isinstance(local, SentenceTransformerEmbedder):
        return f"st-{local.precision}"
    return None


def backend_of(local: Embedder, candidate: str | None) -> tuple[str, str]:
    """(backend, precision) the manifest records for a build with ``candidate``."""
    if candidate is None:
        return local.backend, local.precision
    return CANDIDATES[candidate]


def actor_embedder(spec: str, candidate: str | None) -> Embedder:
    """An embedder for ``spec`` that embeds with exactly ``candidate``'s backend."""
    from lakevec.embed.loader import load_embedder

    if candidate is None:
        return load_embedder(spec)
    backend, precision = CANDIDATES[candidate]
    if backend == "sentence-transformers":
        return load_embedder(spec, precision=precision)
    from lakevec.embed.onnx_export import ensure_export

    auto = AutoEmbedder(spec, force=candidate)
    # ONNX backends need this node's verified export (and int8 its quantized copy).
    # The actors of one node share its cache: one prepares them, the others wait.
    lock = cache_root() / "ray" / f"prepare-{auto.fingerprint}.lock"
    with exclusive_lock(lock, timeout=RAY_ACTOR_START_TIMEOUT, what="an embedding actor"):
        ensure_export(auto.sentence)
        auto.encode(["warm-up"])  # creates the int8 model if it is missing
    return auto


class EmbedActor:
    """One embedding worker on a Ray node: loads the model once, embeds batches.

    Started by Ray Data on the cluster's nodes (never by lakevec code
    directly). It refuses to start when the node's lakevec version or model
    fingerprint differs from the driver's. Each batch comes back with the
    node's id and the backend's verified cosine to sentence-transformers fp32
    (NaN when the backend does not report one).
    """

    def __init__(
        self, *, spec: str, candidate: str | None, fingerprint: str, version: str,
        batch_size: int,
    ) -> None:
        import ray

        self.node = ray.get_runtime_context().get_node_id()
        where = f"node {socket.gethostname()} ({self.node[:12]})"
        if version != __version__:
            raise ClusterError(
                f"{where} runs lakevec {__version__}, the driver {version} — install the "
                "same lakevec version on every node"
            )
        self.embedder = actor_embedder(spec, candidate)
        if self.embedder.fingerprint != fingerprint:
            raise ModelMismatchError(
                f"{where}: model {spec} there has fingerprint {self.embedder.fingerprint}, the "
                f"driver's has {fingerprint} — install the same model files on every node"
            )
        self.batch_size = batch_size
        _ = self.embedder.dimension  # load the weights now: a broken model fails the start

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        texts = [str(t) for t in batch["text"]]
        vectors = self.embedder.encode(texts, batch_size=self.batch_size)
        cosine = verified_cosine(self.embedder)
        return {
            "i": np.asarray(batch["i"], dtype=np.int64),
            "vec": vectors,
            "node": np.full(len(texts), self.node),
            "cos": np.full(len(texts), np.nan if cosine is None else cosine),
        }
