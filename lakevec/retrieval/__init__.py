"""The retrieval layer: every way lakevec ranks records for a query, behind one protocol.

``base`` (Hit, Retriever), ``filters`` (metadata filters), ``jaccard`` (the
seed's keyword overlap), ``dense`` (HNSW / exact cosine), ``bm25``,
``hybrid`` (BM25 + dense by reciprocal rank fusion) and ``registry`` (names,
the default, and the one factory every caller uses).
"""
