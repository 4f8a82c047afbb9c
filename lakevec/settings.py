"""Every environment variable, default and choice list lakevec uses, defined once.

This module imports nothing but the standard library: the CLI reads its option
defaults and choices from here at start-up, and ``lakevec --version`` must not
pay for numpy or pydantic. Environment variables are read when a value is
needed (never at import), so tests and long-lived processes see changes.
"""

from __future__ import annotations

import os
from pathlib import Path

# ─── environment variables ───────────────────────────────────────────────────

ROOT_ENV = "LH_DISTILL_ROOT"
GATEWAY_ENV = "LH_GATEWAY_URL"
LOCAL_MODEL_ENV = "LH_REPLAY_LOCAL_MODEL"
ESCALATION_MODEL_ENV = "LH_REPLAY_ESCALATION_MODEL"
API_KEY_ENV = "LAKEVEC_API_KEY"
TOKEN_ENV = "LAKEVEC_TOKEN"
SERVE_SETTINGS_ENV = "LAKEVEC_SERVE_SETTINGS"
CACHE_DIR_ENV = "LAKEVEC_CACHE_DIR"
EVAL_CACHE_ENV = "LAKEVEC_EVAL_CACHE"
NO_ONNX_ENV = "LAKEVEC_NO_ONNX"
XDG_CACHE_ENV = "XDG_CACHE_HOME"

#: Every variable lakevec reads, with what it sets (the README's table).
ENVIRONMENT: dict[str, str] = {
    ROOT_ENV: "project root (exports/, data/, index/); default: the current directory",
    GATEWAY_ENV: "chat gateway base URL for replay and serve",
    LOCAL_MODEL_ENV: "model tried first by replay",
    ESCALATION_MODEL_ENV: "model tried when the gate fails and escalation is allowed",
    API_KEY_ENV: "bearer key sent to an OpenAI-compatible gateway (--api openai)",
    TOKEN_ENV: "bearer token of `lakevec serve` (and of --server clients)",
    SERVE_SETTINGS_ENV: "internal: settings handed to `lakevec serve --workers N` processes",
    CACHE_DIR_ENV: "cache for derived model files (ONNX query model); default ~/.cache/lakevec",
    EVAL_CACHE_ENV: "cache for `lakevec eval` indexes; default <cache dir>/eval",
    NO_ONNX_ENV: "1 disables the torch-free ONNX query model",
    XDG_CACHE_ENV: "base of the default cache directory",
}


def env(name: str) -> str | None:
    """The variable's value, or None when it is unset or empty."""
    value = os.environ.get(name)
    return value if value else None


def env_flag(name: str) -> bool:
    """True when the variable is set to anything but empty or ``0``."""
    return os.environ.get(name, "") not in ("", "0")


# ─── replay and the chat gateway ─────────────────────────────────────────────

DEFAULT_GATEWAY_URL = "http://localhost:3100"
DEFAULT_LOCAL_MODEL = "qwen3.5:latest"
DEFAULT_ESCALATION_MODEL = "deepseek-v3.1:671b"
API_MODES: tuple[str, ...] = ("lakehouse", "openai")
DEFAULT_API = "lakehouse"
DEFAULT_TIMEOUT = 180.0
# The seed's request settings.
MAX_TOKENS = 1500
TEMPERATURE = 0.1
# A task is a prompt, not a document: beyond this it would dwarf the context
# bundle and most local models' windows, so it is refused up front.
MAX_TASK_CHARS = 100_000


def gateway_url() -> str:
    return env(GATEWAY_ENV) or DEFAULT_GATEWAY_URL


def local_model() -> str:
    return env(LOCAL_MODEL_ENV) or DEFAULT_LOCAL_MODEL


def escalation_model() -> str:
    return env(ESCALATION_MODEL_ENV) or DEFAULT_ESCALATION_MODEL


# ─── retrieval ───────────────────────────────────────────────────────────────

#: Every retriever, by name. Chosen by measurement (docs/EVAL.md): hybrid
#: beats dense-only on all three shared sets, BM25 on two of three, and the
#: seed's Jaccard by ~0.36 nDCG@10.
RETRIEVERS: tuple[str, ...] = ("hybrid", "hnsw", "exact", "bm25", "jaccard")
DEFAULT_RETRIEVER = "hybrid"
#: Retrievers that read only the index snapshot (what `lakevec serve` offers).
INDEX_RETRIEVERS: tuple[str, ...] = ("hybrid", "hnsw", "exact", "bm25")
#: How many records a context bundle is built from (the seed's top-K).
BUNDLE_TOP_K = 8
DEFAULT_SEARCH_K = 8
# Hybrid fusion, measured on the three eval sets (docs/EVAL.md).
DEFAULT_RRF_K = 5
DEFAULT_RRF_DEPTH = 50

# ─── index ───────────────────────────────────────────────────────────────────

# Measured on the 53k corpus with MiniLM (docs/BENCHMARKS.md, ef sweep):
# M=16/efc=200 gives recall@8 against exact search of 0.980 at ef_search=64,
# 0.990 at 128 and 0.993 at 200 (p50 0.41 ms); 200 keeps a margin above 0.99.
DEFAULT_M = 16
DEFAULT_EF_CONSTRUCTION = 200
DEFAULT_EF_SEARCH = 200
DEFAULT_KEEP = 3
DEFAULT_REBUILD_THRESHOLD = 0.2
DEFAULT_LOCK_TIMEOUT = 30.0
CORPUS_FORMATS: tuple[str, ...] = ("auto", "playbooks", "beir")

# ─── embedding ───────────────────────────────────────────────────────────────

DEFAULT_MODEL = "default"
DEFAULT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")
DEFAULT_PRECISION = "auto"
# Measured: batches of 32 beat 64 and 128 for fp32 and bf16 on MiniLM after length sorting.
DEFAULT_BATCH_SIZE = 32

# ─── service ─────────────────────────────────────────────────────────────────

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_POLL_INTERVAL = 0.5
LOG_LEVELS: tuple[str, ...] = ("critical", "error", "warning", "info", "debug")
DEFAULT_LOG_LEVEL = "info"


# ─── locations ───────────────────────────────────────────────────────────────


def cache_root() -> Path:
    """Where lakevec caches derived files (``$LAKEVEC_CACHE_DIR`` overrides)."""
    if explicit := env(CACHE_DIR_ENV):
        return Path(explicit).expanduser()
    xdg = env(XDG_CACHE_ENV)
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "lakevec"


def eval_cache_dir() -> Path:
    """Where eval indexes are cached (``$LAKEVEC_EVAL_CACHE`` overrides)."""
    if explicit := env(EVAL_CACHE_ENV):
        return Path(explicit).expanduser()
    return cache_root() / "eval"
