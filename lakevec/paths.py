"""Resolution of the project root and the default file locations under it.

The root holds ``exports/rag/playbooks.jsonl`` and ``data/_kb/`` exactly like
the seed pipeline's ``LH_DISTILL_ROOT``; lakevec adds ``index/`` beside them.
"""

from __future__ import annotations

import os
from pathlib import Path

from lakevec.settings import ROOT_ENV, env

CORPUS_RELPATH = Path("exports/rag/playbooks.jsonl")
INDEX_RELPATH = Path("index")
EVIDENCE_RELPATH = Path("data/_kb/replay_runs.jsonl")


def resolve_root(root: str | os.PathLike[str] | None = None) -> Path:
    """``root`` if given, else ``$LH_DISTILL_ROOT``, else the current directory."""
    if root is not None and str(root) != "":
        return Path(root)
    env_root = env(ROOT_ENV)
    if env_root:
        return Path(env_root)
    return Path.cwd()


def default_corpus(root: Path) -> Path:
    return root / CORPUS_RELPATH


def default_index(root: Path) -> Path:
    return root / INDEX_RELPATH


def default_evidence(root: Path) -> Path:
    return root / EVIDENCE_RELPATH
