"""lakevec: local ANN retrieval layer for LLM replay pipelines."""

from __future__ import annotations

__version__ = "0.1.0"
