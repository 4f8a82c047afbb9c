"""Retrieval quality on BEIR-layout data (``lakevec eval``).

Import from the concrete submodules (this package re-exports nothing):

- :mod:`lakevec.eval.dataset`   BEIR corpus, queries and qrels
- :mod:`lakevec.eval.metrics`   nDCG@10, Recall@K, MRR@10 (trec_eval/BEIR definitions)
- :mod:`lakevec.eval.runner`    the cached eval index, running retrievers, ANN quality
- :mod:`lakevec.eval.baseline`  the regression gate (baseline files) and the results table
"""
