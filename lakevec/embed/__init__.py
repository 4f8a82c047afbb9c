"""Embedders: text → L2-normalised float32 vectors.

Import from the concrete submodules (this package re-exports nothing):

- :mod:`lakevec.embed.base`      the :class:`Embedder` protocol, ``Vectors``, ``normalize``,
  length-sorted chunked encoding and :func:`clip_text`
- :mod:`lakevec.embed.models`    model directories, fingerprints, :func:`describe_model`
- :mod:`lakevec.embed.precision` sentence-transformers' ``fp32|bf16`` from the CPU flags
- :mod:`lakevec.embed.sentence`  sentence-transformers (torch) embedder, used to build
- :mod:`lakevec.embed.onnx`      torch-free ONNX export of the same model (queries, small updates)
- :mod:`lakevec.embed.onnx_quant` int8 weights for ONNX Runtime, quantized locally and verified
- :mod:`lakevec.embed.calibrate` which backend is fastest here: measured once, cached per machine
- :mod:`lakevec.embed.auto`      ``--precision auto|int8``: the backend picked per call
- :mod:`lakevec.embed.hashing`   deterministic ``hash:DIM`` embedder for tests
- :mod:`lakevec.embed.loader`    :func:`load_embedder`, :func:`load_query_embedder`
- :mod:`lakevec.embed.ray_embed` :class:`RayEmbedder`: ``encode`` on a Ray cluster (``--ray``)
- :mod:`lakevec.embed.ray_cluster` importing Ray, connecting, keeping its console output quiet
- :mod:`lakevec.embed.ray_actor`   the embedding actor on the nodes, and the backend it uses

Imports only point down, with no cycle even counting function-level imports:
base and precision at the bottom; hashing → base; models → hashing;
sentence → base, models, precision; onnx → base (the torch embedder is only a
type there); onnx_quant → onnx; calibrate → base, precision; auto → calibrate, onnx,
onnx_quant, sentence (onnx_export lazily); loader → everything; ray_embed → base, ray_cluster,
ray_actor; ray_actor → auto, calibrate, sentence (and loader, inside a function).
A build exports the query model with ``lakevec.embed.onnx_export.ensure_export(embedder)``
for a SentenceTransformerEmbedder.
"""
