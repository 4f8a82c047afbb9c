"""Embedders: text → L2-normalised float32 vectors.

Import from the concrete submodules (this package re-exports nothing):

- :mod:`lakevec.embed.base`      the :class:`Embedder` protocol, ``Vectors``, ``normalize``,
  length-sorted chunked encoding and :func:`clip_text`
- :mod:`lakevec.embed.models`    model directories, fingerprints, :func:`describe_model`
- :mod:`lakevec.embed.precision` ``auto|fp32|bf16`` selection from the CPU flags
- :mod:`lakevec.embed.sentence`  sentence-transformers (torch) embedder, used to build
- :mod:`lakevec.embed.onnx`      torch-free ONNX export of the same model, used to query
- :mod:`lakevec.embed.hashing`   deterministic ``hash:DIM`` embedder for tests
- :mod:`lakevec.embed.loader`    :func:`load_embedder`, :func:`load_query_embedder`

Imports only point down, with no cycle even counting function-level imports:
base and precision at the bottom; hashing → base; models → hashing;
sentence → base, models, precision; onnx → base (the torch embedder is only a
type there); loader → everything. A build exports the query model with
``lakevec.embed.onnx_export.ensure_export(embedder)`` for a SentenceTransformerEmbedder.
"""
