"""The index layer: versioned, crash-safe HNSW snapshots of the corpus.

``manifest`` (persisted models), ``layout`` (files and directories of an index),
``graph`` (the only hnswlib user), ``snapshot`` (reading), ``plan`` (diffing a
corpus against a snapshot), ``build`` (writing snapshots), ``update`` (corpus
file → index) and ``status`` (health and drift).
"""
