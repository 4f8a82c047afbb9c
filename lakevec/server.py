"""``lakevec serve``: the retrieval service (FastAPI) with hot-swapping index snapshots.

Endpoints: ``POST /vectors/search``, ``POST /replay``, ``GET /healthz``,
``GET /stats``; OpenAPI at ``/openapi.json`` and ``/docs``.

Hot swap. :class:`SnapshotHolder` keeps the live snapshot and, at most every
``poll_interval`` seconds (checked on request), reads ``index/CURRENT``. When
it names another snapshot, a background thread opens and verifies it (the
same checks as the CLI) and then swaps the reference under a lock. Every
request takes one reference for its whole life, so it never mixes versions;
a retired snapshot is closed when its last in-flight request ends.

Filtering. Metadata filters (``success_score``, ``tags_any``,
``source_category``) are evaluated as a boolean row mask from per-snapshot
metadata arrays. When the mask keeps few rows (under
:data:`EXACT_SELECTIVITY` of the index, or at most :data:`EXACT_MAX_ROWS`) the
allowed rows are ranked exactly (brute-force cosine over their vectors);
otherwise HNSW is asked for ``k / selectivity × OVERFETCH`` candidates
(at most :data:`OVERFETCH_CAP`), which are filtered, and when that still
leaves fewer than ``k`` the query falls back to exact search over the
allowed rows. ``min_score`` cuts the ranked list afterwards.

Security. Binds 127.0.0.1 by default; a non-loopback host is refused
without a token. With a token every endpoint except ``/healthz``,
``/openapi.json`` and ``/docs`` (no data behind them) needs
``Authorization: Bearer <token>`` (constant-time comparison). Bodies are
JSON only, capped at ``max_body_bytes`` (413), and validated by pydantic
models with explicit limits (422).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
import numpy as np
import numpy.typing as npt
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from lakevec import __version__
from lakevec.embed import Embedder, load_query_embedder
from lakevec.errors import (
    EvidenceError,
    IndexCorruptError,
    IndexMissingError,
    LakevecError,
    ModelMismatchError,
    UsageProblem,
)
from lakevec.evidence import ReplayResult
from lakevec.gateway import DEFAULT_TIMEOUT, HttpGateway
from lakevec.hybrid import HybridRetriever, snapshot_bm25
from lakevec.index import (
    CURRENT_FILE,
    IndexSnapshot,
    check_model,
    current_snapshot_dir,
    open_index,
    read_manifest,
)
from lakevec.lexical import BM25Index
from lakevec.replay import Clock, ReplayRequest, SystemClock, replay
from lakevec.retrieve import DEFAULT_RETRIEVER, DenseRetriever, Retriever

log = logging.getLogger("lakevec.server")

TOKEN_ENV = "LAKEVEC_TOKEN"
SETTINGS_ENV = "LAKEVEC_SERVE_SETTINGS"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
MAX_BODY_BYTES = 64 * 1024
MAX_K = 100
MAX_QUERY_CHARS = 4096
# A replay task is a prompt; the body cap bounds it in bytes anyway.
MAX_TASK_CHARS = 32_768
MAX_FILTER_VALUES = 32
MAX_FILTER_VALUE_CHARS = 256
MIN_TOKEN_CHARS = 16
DEFAULT_POLL_INTERVAL = 0.5
# After a failed load of a snapshot, wait this long before trying it again.
RELOAD_BACKOFF = 5.0
# Filtered search: exact over the allowed rows below these, HNSW over-fetch above.
EXACT_SELECTIVITY = 0.05
EXACT_MAX_ROWS = 2048
OVERFETCH = 2.0
OVERFETCH_CAP = 1000
LATENCY_WINDOW = 4096
PUBLIC_PATHS = frozenset({"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
ENDPOINTS = ("/vectors/search", "/replay", "/healthz", "/stats")


# ─── settings ────────────────────────────────────────────────────────────────


class ServerSettings(BaseModel):
    """Everything ``lakevec serve`` needs; JSON-serialisable for worker processes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index_dir: Path
    evidence_path: Path
    model: str | None = None
    token: str | None = Field(default=None, repr=False)
    host: str = DEFAULT_HOST
    port: int = Field(DEFAULT_PORT, ge=0, le=65535)
    gateway_url: str | None = None
    api: Literal["lakehouse", "openai"] = "lakehouse"
    timeout: float = Field(DEFAULT_TIMEOUT, gt=0)
    local_model: str | None = None
    escalation_model: str | None = None
    poll_interval: float = Field(DEFAULT_POLL_INTERVAL, ge=0)
    max_body_bytes: int = Field(MAX_BODY_BYTES, ge=1024)
    checksums: bool = True


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals; any other name counts as exposed."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse an exposed bind without a token, and a token too short to resist guessing."""
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise UsageProblem(
            f"the token is {len(token)} characters; use at least {MIN_TOKEN_CHARS} "
            "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )
    if not is_loopback(host) and not token:
        raise UsageProblem(
            f"refusing to listen on non-loopback address {host!r} without a token — "
            f"set ${TOKEN_ENV} (or --token) or bind 127.0.0.1"
        )


# ─── request / response models ───────────────────────────────────────────────

FilterValue = Annotated[str, StringConstraints(min_length=1, max_length=MAX_FILTER_VALUE_CHARS)]
FilterList = Annotated[list[FilterValue], Field(min_length=1, max_length=MAX_FILTER_VALUES)]


def _utf8_text(value: str, what: str) -> str:
    # JSON "\ud800" decodes to a lone surrogate, which no tokenizer (and no
    # UTF-8 log) accepts: reject it as a client error rather than fail later.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} is not valid Unicode text (lone surrogate)") from None
    if not value.strip():
        raise ValueError(f"{what} is blank")
    return value


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class SearchFilters(_Body):
    """Every given filter must hold (AND); a list matches any of its values (OR)."""

    success_score: FilterList | None = Field(None, description="record's success_score is one of")
    tags_any: FilterList | None = Field(None, description="record has at least one of these tags")
    source_category: FilterList | None = Field(None, description="record's category is one of")
    min_score: float | None = Field(None, ge=-1.0, le=1.0, description="drop hits scoring below")


class SearchRequest(_Body):
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS, pattern=r"\S")
    k: int = Field(8, ge=1, le=MAX_K, description=f"results wanted (1..{MAX_K}); clamped")
    filters: SearchFilters | None = None
    exact: bool = Field(False, description="brute-force cosine instead of HNSW")
    include_content: bool = Field(False, description="return each record's full content")

    @field_validator("query")
    @classmethod
    def _query_text(cls, value: str) -> str:
        return _utf8_text(value, "query")


class SearchHit(BaseModel):
    rank: int
    id: str
    score: float = Field(description="cosine similarity")
    title: str
    success_score: str
    source_category: str
    source_run_id: str
    tags: list[str]
    content: str | None = None


class SearchResponse(BaseModel):
    results: list[SearchHit]
    k: int
    strategy: Literal["hnsw", "exact", "hnsw-overfetch", "exact-filtered", "exact-fallback"]
    index_version: int
    snapshot: str
    model: str
    took_ms: float


class ReplayBody(_Body):
    """A replay request: the CLI's ``lakevec replay`` flags as JSON."""

    task: str = Field(min_length=1, max_length=MAX_TASK_CHARS, pattern=r"\S")
    local_only: bool = False
    allow_escalation: bool = False
    no_retrieval: bool = False
    dry_run: bool = False
    retriever: Literal["hybrid", "hnsw", "exact"] = "hybrid"

    @field_validator("task")
    @classmethod
    def _task_text(cls, value: str) -> str:
        return _utf8_text(value, "task")


class ErrorDetail(BaseModel):
    loc: list[str | int] = Field(default_factory=list)
    msg: str
    type: str


class ErrorInfo(BaseModel):
    status: int
    code: str
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)


class ErrorBody(BaseModel):
    error: ErrorInfo


class Health(BaseModel):
    status: Literal["ok"]
    index_version: int


class EndpointStats(BaseModel):
    requests: int
    status_2xx: int
    status_4xx: int
    status_5xx: int
    p50_ms: float | None
    p99_ms: float | None
    window: int = Field(description="latency samples the percentiles are computed over")


class IndexStats(BaseModel):
    dir: str
    snapshot: str
    version: int
    records: int
    built_at: str
    loaded_at: str
    swaps: int
    last_reload_error: str | None


class ModelStats(BaseModel):
    spec: str
    model_id: str
    dimension: int
    backend: str


class Stats(BaseModel):
    lakevec_version: str
    uptime_s: float
    index: IndexStats
    model: ModelStats
    in_flight: int
    endpoints: dict[str, EndpointStats]


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": desc}
    for code, desc in (
        (400, "malformed request"),
        (401, "missing or wrong bearer token"),
        (413, "request body too large"),
        (415, "body is not application/json"),
        (422, "request body fails validation"),
        (500, "server failure (e.g. evidence log not writable)"),
        (503, "index unavailable"),
    )
}


# ─── snapshot holder (hot swap) ──────────────────────────────────────────────


class _Metadata:
    """Per-row filter columns of one snapshot: coded scores/categories, tag → rows."""

    def __init__(self, records: Iterator[dict[str, Any]], n: int) -> None:
        self.n = n
        self.score = np.zeros(n, dtype=np.int32)
        self.category = np.zeros(n, dtype=np.int32)
        self.score_codes: dict[str, int] = {}
        self.category_codes: dict[str, int] = {}
        tag_rows: dict[str, list[int]] = {}
        for row, rec in enumerate(records):
            self.score[row] = self.score_codes.setdefault(
                rec["success_score"], len(self.score_codes)
            )
            self.category[row] = self.category_codes.setdefault(
                rec["source_category"], len(self.category_codes)
            )
            for tag in set(rec["tags"]):
                tag_rows.setdefault(tag, []).append(row)
        self.tags = {t: np.asarray(r, dtype=np.int64) for t, r in tag_rows.items()}

    def mask(self, filters: SearchFilters) -> npt.NDArray[np.bool_] | None:
        """Rows passing the metadata filters, or None when none is given."""
        mask: npt.NDArray[np.bool_] | None = None

        def both(m: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
            return m if mask is None else mask & m

        if filters.success_score:
            codes = [self.score_codes[v] for v in filters.success_score if v in self.score_codes]
            mask = both(np.isin(self.score, codes))
        if filters.source_category:
            cats = filters.source_category
            codes = [self.category_codes[v] for v in cats if v in self.category_codes]
            mask = both(np.isin(self.category, codes))
        if filters.tags_any:
            tagged = np.zeros(self.n, dtype=np.bool_)
            for tag in filters.tags_any:
                rows = self.tags.get(tag)
                if rows is not None:
                    tagged[rows] = True
            mask = both(tagged)
        return mask


@dataclass
class LiveIndex:
    """One loaded snapshot plus what requests need from it; refcounted by the holder."""

    snapshot: IndexSnapshot
    embedder: Embedder
    metadata: _Metadata
    loaded_at: str
    refs: int = 0
    retired: bool = False
    closed: bool = False

    @property
    def name(self) -> str:
        return self.snapshot.path.name

    @property
    def version(self) -> int:
        return self.snapshot.manifest.version

    bm25: BM25Index | None = None  # built on the first hybrid request, then reused
    _bm25_lock: threading.Lock = field(default_factory=threading.Lock)

    def retriever(self, kind: str = DEFAULT_RETRIEVER) -> Retriever:
        """A retriever over this snapshot; it never closes the shared snapshot itself."""
        if kind == "hybrid":
            with self._bm25_lock:  # one build (and one cache write) per snapshot
                if self.bm25 is None:
                    self.bm25 = snapshot_bm25(self.snapshot)
            return HybridRetriever(self.snapshot, self.embedder, bm25=self.bm25)
        return DenseRetriever(self.snapshot, self.embedder, exact=kind == "exact")

    def close(self) -> None:
        self.snapshot.close()


def load_live(index_dir: Path, embedder: Embedder, *, checksums: bool = True) -> LiveIndex:
    """Open and verify the live snapshot, read its filter metadata and BM25 index.

    The model is checked against the manifest first, so a snapshot built with
    another model is refused before its files are hashed and its graph loaded.
    BM25 is prepared here, on the loader thread, so that no request pays for it.
    """
    check_model(read_manifest(current_snapshot_dir(index_dir)), embedder)
    snapshot = open_index(index_dir, checksums=checksums)
    try:
        check_model(snapshot.manifest, embedder)  # CURRENT may have moved meanwhile
        meta = _Metadata(snapshot.iter_raw(), len(snapshot))  # 3 fields: no validation
        loaded = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        live = LiveIndex(snapshot, embedder, meta, loaded)
        live.bm25 = snapshot_bm25(snapshot)
    except BaseException:
        snapshot.close()
        raise
    return live


class SnapshotHolder:
    """Owns the live :class:`LiveIndex`; swaps in new snapshots without failing requests."""

    def __init__(
        self,
        index_dir: Path,
        embedder: Embedder,
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        checksums: bool = True,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.index_dir = index_dir
        self.embedder = embedder
        self.poll_interval = poll_interval
        self.checksums = checksums
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._live = load_live(index_dir, embedder, checksums=checksums)
        self._next_check = monotonic() + poll_interval
        self._loader: threading.Thread | None = None
        self._failed: dict[str, float] = {}  # pointer → monotonic time it may be retried
        self.swaps = 0
        self.last_error: str | None = None
        self._closed = False

    @property
    def live(self) -> LiveIndex:
        return self._live

    def in_flight(self) -> int:
        with self._lock:
            return self._live.refs

    @contextmanager
    def use(self) -> Iterator[LiveIndex]:
        """The snapshot for one request: held (not closed) until the block exits."""
        self.poll()
        with self._lock:
            live = self._live
            live.refs += 1
        try:
            yield live
        finally:
            self._release(live)

    def _release(self, live: LiveIndex) -> None:
        with self._lock:
            live.refs -= 1
            close = live.retired and live.refs == 0 and not live.closed
            if close:
                live.closed = True
        if close:
            live.close()

    def _pointer(self) -> str | None:
        try:
            return (self.index_dir / CURRENT_FILE).read_text(encoding="utf-8").strip()
        except OSError:
            return None

    def poll(self, *, force: bool = False) -> threading.Thread | None:
        """Start a background load if ``CURRENT`` moved; returns the loader thread, if any.

        Costs one small file read at most every ``poll_interval`` seconds.
        """
        now = self._monotonic()
        if not force and now < self._next_check:
            return None
        with self._lock:
            if self._closed or (not force and now < self._next_check):
                return None
            self._next_check = now + self.poll_interval
            if self._loader is not None:
                return self._loader
            pointer = self._pointer()
            if not pointer or pointer == self._live.name:
                return None
            if now < self._failed.get(pointer, -math.inf):
                return None
            loader = threading.Thread(
                target=self._load, args=(pointer,), name="lakevec-index-loader", daemon=True
            )
            self._loader = loader
        loader.start()
        return loader

    def refresh(self, timeout: float = 60.0) -> int:
        """Check ``CURRENT`` now and wait for any load to finish; returns the live version."""
        loader = self.poll(force=True)
        if loader is not None:
            loader.join(timeout)
        return self._live.version

    def _load(self, pointer: str) -> None:
        try:
            new = load_live(self.index_dir, self.embedder, checksums=self.checksums)
        except Exception as exc:  # noqa: BLE001 — any failure must leave the loader re-armed
            # Keep serving the previous snapshot; the error shows in /stats.
            log.error("cannot load index snapshot %s: %s", pointer, exc)
            # A model mismatch cannot heal by itself: wait for CURRENT to change
            # instead of reloading the snapshot every few seconds.
            retry = math.inf if isinstance(exc, ModelMismatchError) else RELOAD_BACKOFF
            with self._lock:
                self.last_error = f"{pointer}: {exc}"
                self._failed[pointer] = self._monotonic() + retry
                self._loader = None
            return
        with self._lock:
            old = self._live
            if self._closed or new.name == old.name:
                self._loader = None
                close_new, close_old = True, False
            else:
                self._live = new
                self.swaps += 1
                self.last_error = None
                self._failed.clear()
                self._loader = None
                old.retired = True
                close_new, close_old = False, old.refs == 0 and not old.closed
                if close_old:
                    old.closed = True
        if close_new:
            new.close()
        if close_old:
            old.close()
        if not close_new:
            log.info("index swapped to %s (version %d)", new.name, new.version)

    def close(self) -> None:
        """Stop loading and close the live snapshot once idle (app shutdown)."""
        with self._lock:
            self._closed = True
            loader = self._loader
        if loader is not None:
            loader.join(30)
        with self._lock:
            live = self._live
            live.retired = True
            close = live.refs == 0 and not live.closed
            if close:
                live.closed = True
        if close:
            live.close()


# ─── search ──────────────────────────────────────────────────────────────────

Strategy = Literal["hnsw", "exact", "hnsw-overfetch", "exact-filtered", "exact-fallback"]


def _exact_over(
    snapshot: IndexSnapshot, q: npt.NDArray[np.float32], k: int, mask: npt.NDArray[np.bool_]
) -> tuple[list[int], list[float]]:
    """Brute-force top ``k`` among the rows ``mask`` allows."""
    allowed = np.flatnonzero(mask)
    if len(allowed) == 0:
        return [], []
    vectors = np.asarray(snapshot.vectors)
    if len(allowed) * 4 < len(mask):
        # Few rows: gather them (a small copy) rather than scoring every vector.
        sims = vectors[allowed] @ q
        rows = allowed
    else:
        sims = (vectors @ q)[allowed]
        rows = allowed
    k = min(k, len(rows))
    top = np.argpartition(-sims, k - 1)[:k]
    top = top[np.argsort(-sims[top], kind="stable")]
    return rows[top].tolist(), sims[top].astype(np.float64).tolist()


def rank(
    live: LiveIndex,
    q: npt.NDArray[np.float32],
    k: int,
    filters: SearchFilters | None,
    *,
    exact: bool = False,
) -> tuple[list[int], list[float], Strategy]:
    """Rows and cosine scores of the best ``k`` records passing ``filters`` (see module doc)."""
    snap = live.snapshot
    n = len(snap)
    mask = live.metadata.mask(filters) if filters is not None else None
    rows: list[int]
    scores: list[float]
    strategy: Strategy
    if mask is None:
        found = snap.exact(q, k) if exact else snap.knn(q, k)
        rows, scores = found[0][0], found[1][0]
        strategy = "exact" if exact else "hnsw"
    else:
        allowed = int(mask.sum())
        if exact or allowed <= EXACT_MAX_ROWS or allowed < EXACT_SELECTIVITY * n:
            rows, scores = _exact_over(snap, q[0], k, mask)
            strategy = "exact-filtered"
        else:
            fetch = min(n, OVERFETCH_CAP, max(2 * k, math.ceil(k * n / allowed * OVERFETCH)))
            found_rows, found_scores = snap.knn(q, fetch)
            cand_rows, cand_scores = found_rows[0], found_scores[0]
            kept = [(r, s) for r, s in zip(cand_rows, cand_scores, strict=True) if mask[r]]
            if len(kept) >= min(k, allowed):
                rows, scores = [r for r, _ in kept[:k]], [s for _, s in kept[:k]]
                strategy = "hnsw-overfetch"
            else:
                rows, scores = _exact_over(snap, q[0], k, mask)
                strategy = "exact-fallback"
    if filters is not None and filters.min_score is not None:
        cut = sum(1 for s in scores if s >= filters.min_score)
        rows, scores = rows[:cut], scores[:cut]
    return rows, scores, strategy


# ─── request metrics ─────────────────────────────────────────────────────────


@dataclass
class _EndpointMetrics:
    requests: int = 0
    by_class: dict[int, int] = field(default_factory=lambda: {2: 0, 4: 0, 5: 0})
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))

    def stats(self) -> EndpointStats:
        lat = np.asarray(self.latencies, dtype=np.float64)
        p50 = float(np.percentile(lat, 50)) if len(lat) else None
        p99 = float(np.percentile(lat, 99)) if len(lat) else None
        return EndpointStats(
            requests=self.requests,
            status_2xx=self.by_class.get(2, 0),
            status_4xx=self.by_class.get(4, 0),
            status_5xx=self.by_class.get(5, 0),
            p50_ms=None if p50 is None else round(p50, 3),
            p99_ms=None if p99 is None else round(p99, 3),
            window=len(lat),
        )


class Metrics:
    """Request counts and latency windows per endpoint (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_path = {p: _EndpointMetrics() for p in (*ENDPOINTS, "other")}

    def record(self, path: str, status: int, ms: float) -> None:
        key = path if path in self._by_path else "other"
        with self._lock:
            m = self._by_path[key]
            m.requests += 1
            m.by_class[status // 100] = m.by_class.get(status // 100, 0) + 1
            m.latencies.append(ms)

    def snapshot(self) -> dict[str, EndpointStats]:
        with self._lock:
            return {p: m.stats() for p, m in self._by_path.items()}


# ─── ASGI middleware: metrics, auth, body limit ──────────────────────────────

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def error_payload(
    status: int, code: str, message: str, details: list[ErrorDetail] | None = None
) -> dict[str, Any]:
    info = ErrorInfo(status=status, code=code, message=message, details=details or [])
    return ErrorBody(error=info).model_dump(mode="json")


async def _send_json(
    send: Send, status: int, payload: dict[str, Any],
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = json.dumps(payload).encode("utf-8")
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *(headers or []),
        ],
    })
    await send({"type": "http.response.body", "body": body})


class BodyTooLarge(StarletteHTTPException):
    """Raised from ``receive`` when a streamed body passes the cap.

    An HTTPException on purpose: FastAPI re-raises those from body parsing
    (anything else becomes a generic 400).
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds {limit} bytes")


def _bearer_ok(headers: list[tuple[bytes, bytes]], token: bytes) -> bool:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, given = value.partition(b" ")
            return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), token)
    return False


def _is_json(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return False


class GuardMiddleware:
    """Times every request, then enforces the bearer token, JSON bodies and the body cap.

    Pure ASGI (not BaseHTTPMiddleware) so a rejected request costs no body
    read, and the cap also holds for chunked bodies without Content-Length.
    """

    def __init__(
        self, app: ASGIApp, *, token: str | None, max_body: int, metrics: Metrics
    ) -> None:
        self.app = app
        self.token = token.encode("utf-8") if token else None
        self.max_body = max_body
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_tracked(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self._guarded(scope, receive, send_tracked)
        finally:
            self.metrics.record(scope["path"], status, (time.perf_counter() - started) * 1000)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
        public = scope["path"] in PUBLIC_PATHS
        if self.token is not None and not public and not _bearer_ok(headers, self.token):
            payload = error_payload(401, "unauthorized", "missing or invalid bearer token")
            await _send_json(send, 401, payload, [(b"www-authenticate", b"Bearer")])
            return
        if scope["method"] in ("POST", "PUT", "PATCH") and not _is_json(headers):
            await _send_json(send, 415, error_payload(
                415, "unsupported_media_type", "send the body as Content-Type: application/json"))
            return
        for name, value in headers:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _send_json(send, 400, error_payload(
                        400, "bad_request", "invalid Content-Length header"))
                    return
                if declared > self.max_body:
                    await _send_json(send, 413, error_payload(
                        413, "body_too_large", f"request body exceeds {self.max_body} bytes"))
                    return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLarge(self.max_body)
            return message

        await self.app(scope, limited, send)


# ─── the app ─────────────────────────────────────────────────────────────────


@dataclass
class _State:
    settings: ServerSettings
    holder: SnapshotHolder
    metrics: Metrics
    clock: Clock
    started: float
    http_client: httpx.Client | None
    own_client: bool


def _validation_details(exc: RequestValidationError) -> list[ErrorDetail]:
    # Only loc/msg/type: echoing "input" could put undecodable text (lone
    # surrogates) into the response and turn a 422 into a 500.
    out = []
    for err in exc.errors()[:20]:
        loc = [p if isinstance(p, int) else str(p) for p in err.get("loc", ())]
        out.append(ErrorDetail(loc=loc, msg=str(err.get("msg", "")), type=str(err.get("type", ""))))
    return out


def _install_error_handlers(app: FastAPI) -> None:
    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        details = _validation_details(exc)
        first = details[0] if details else None
        where = ".".join(str(p) for p in first.loc) if first else "body"
        message = f"{where}: {first.msg}" if first else "invalid request"
        return JSONResponse(error_payload(422, "invalid_request", message, details), 422)

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        codes = {400: "bad_request", 401: "unauthorized", 404: "not_found",
                 405: "method_not_allowed", 413: "body_too_large", 415: "unsupported_media_type"}
        status = exc.status_code
        payload = error_payload(status, codes.get(status, "http_error"), str(exc.detail))
        return JSONResponse(payload, status, headers=exc.headers)

    async def on_lakevec(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, LakevecError)
        if isinstance(exc, UsageProblem):
            status, code = 422, "invalid_request"
        elif isinstance(exc, IndexMissingError | IndexCorruptError | ModelMismatchError):
            status, code = 503, "index_unavailable"
        elif isinstance(exc, EvidenceError):
            status, code = 500, "evidence_log_unwritable"
        else:
            status, code = 500, "internal_error"
        return JSONResponse(error_payload(status, code, str(exc)), status)

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(LakevecError, on_lakevec)


def create_app(
    settings: ServerSettings,
    *,
    embedder: Embedder | None = None,
    clock: Clock | None = None,
    http_client: httpx.Client | None = None,
) -> FastAPI:
    """Build the service: loads the live snapshot (and its model) before returning.

    ``embedder`` overrides the query model (tests); it must match the index.
    ``http_client`` carries gateway calls for ``/replay`` (tests inject a
    transport); by default one client is created and closed on shutdown.
    """
    check_bind(settings.host, settings.token)
    if embedder is None:
        manifest = read_manifest(current_snapshot_dir(settings.index_dir))
        # The model is checked against the snapshot by load_live, below.
        embedder = load_query_embedder(settings.model or manifest.model.spec)
    holder = SnapshotHolder(
        settings.index_dir, embedder, poll_interval=settings.poll_interval,
        checksums=settings.checksums,
    )
    clock = clock or SystemClock()
    own_client = http_client is None
    client = http_client or httpx.Client(timeout=settings.timeout)
    try:
        # Built once, so a bad gateway URL fails at startup rather than per request.
        gateway = HttpGateway(settings.gateway_url, api=settings.api, timeout=settings.timeout,
                              client=client)
    except BaseException:
        holder.close()
        if own_client:
            client.close()
        raise
    state = _State(settings, holder, Metrics(), clock, clock.monotonic(), client, own_client)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        holder.close()
        if state.own_client and state.http_client is not None:
            state.http_client.close()

    app = FastAPI(
        title="lakevec",
        version=__version__,
        description="Local ANN retrieval for LLM replay pipelines: vector search over the "
        "playbook index and the replay pipeline, with hot-swapped index snapshots.",
        lifespan=lifespan,
    )
    app.state.lakevec = state
    _install_error_handlers(app)
    app.add_middleware(
        GuardMiddleware,
        token=settings.token,
        max_body=settings.max_body_bytes,
        metrics=state.metrics,
    )
    # Declared so the OpenAPI document shows the scheme; the check itself is in
    # GuardMiddleware (it also covers unknown paths and runs before body reads).
    bearer = HTTPBearer(auto_error=False, description="lakevec serve --token / $LAKEVEC_TOKEN")
    secured = [Depends(bearer)] if settings.token else []

    def _model_name(live: LiveIndex) -> str:
        return live.snapshot.manifest.model.model_id

    @app.post("/vectors/search", response_model=SearchResponse, responses=ERROR_RESPONSES,
              dependencies=secured, tags=["retrieval"])
    def vectors_search(body: SearchRequest) -> SearchResponse:
        """Rank index records for a query (cosine similarity), optionally filtered."""
        started = time.perf_counter()
        q = holder.embedder.encode([body.query])
        with holder.use() as live:
            rows, scores, strategy = rank(live, q, body.k, body.filters, exact=body.exact)
            hits = []
            for i, (row, score) in enumerate(zip(rows, scores, strict=True), start=1):
                rec = live.snapshot.record(row)
                hits.append(SearchHit(
                    rank=i, id=rec.id, score=float(score), title=rec.title,
                    success_score=rec.success_score, source_category=rec.source_category,
                    source_run_id=rec.source_run_id, tags=list(rec.tags),
                    content=rec.content if body.include_content else None,
                ))
            return SearchResponse(
                results=hits, k=body.k, strategy=strategy, index_version=live.version,
                snapshot=live.name, model=_model_name(live),
                took_ms=round((time.perf_counter() - started) * 1000, 3),
            )

    @app.post("/replay", response_model=ReplayResult, responses=ERROR_RESPONSES,
              dependencies=secured, tags=["replay"])
    def replay_endpoint(body: ReplayBody) -> ReplayResult:
        """Run the replay pipeline once and append its row to the evidence log.

        Same engine, result and ``replay_run.v1`` row as ``lakevec replay``;
        the gateway and models are the server's configuration.
        """
        request = ReplayRequest(
            task=body.task, local_only=body.local_only, allow_escalation=body.allow_escalation,
            no_retrieval=body.no_retrieval, dry_run=body.dry_run,
        )
        with holder.use() as live:
            return replay(
                request,
                retriever=live.retriever(body.retriever),
                gateway=None if body.dry_run else gateway,
                evidence_path=settings.evidence_path,
                local_model=settings.local_model,
                escalation_model=settings.escalation_model,
                clock=state.clock,
            )

    @app.get("/healthz", response_model=Health, tags=["service"])
    async def healthz() -> Health:
        """Liveness: the service is up and has an index loaded (no auth needed)."""
        holder.poll()  # lets a health probe alone drive pick-up of a new snapshot
        return Health(status="ok", index_version=holder.live.version)

    @app.get("/stats", response_model=Stats, responses={401: ERROR_RESPONSES[401]},
             dependencies=secured, tags=["service"])
    async def stats() -> Stats:
        """Index version, record count, model, uptime, request counts and latencies."""
        live = holder.live
        man = live.snapshot.manifest
        return Stats(
            lakevec_version=__version__,
            uptime_s=round(state.clock.monotonic() - state.started, 3),
            index=IndexStats(
                dir=str(settings.index_dir), snapshot=live.name, version=man.version,
                records=man.counts.records, built_at=man.build.built_at,
                loaded_at=live.loaded_at, swaps=holder.swaps,
                last_reload_error=holder.last_error,
            ),
            model=ModelStats(
                spec=man.model.spec, model_id=man.model.model_id,
                dimension=man.model.dimension,
                backend=str(getattr(holder.embedder, "backend", type(holder.embedder).__name__)),
            ),
            in_flight=holder.in_flight(),
            endpoints=state.metrics.snapshot(),
        )

    return app


# ─── running it ──────────────────────────────────────────────────────────────


def app_from_env() -> FastAPI:
    """uvicorn factory for ``--workers N``: settings from the environment."""
    raw = os.environ.get(SETTINGS_ENV)
    if not raw:
        raise UsageProblem(f"${SETTINGS_ENV} is not set; start the service with `lakevec serve`")
    settings = ServerSettings.model_validate_json(raw)
    token = os.environ.get(TOKEN_ENV) or None
    return create_app(settings.model_copy(update={"token": token}))


def serve(settings: ServerSettings, *, workers: int = 1, log_level: str = "info") -> None:
    """Run the service under uvicorn until SIGTERM/SIGINT, then drain in-flight requests.

    uvicorn stops accepting on the signal and waits for running requests to
    finish (bounded by ``timeout_graceful_shutdown``); evidence appends are
    single locked writes, so a drained replay never leaves half a row.
    """
    import uvicorn

    check_bind(settings.host, settings.token)
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": log_level,
        "access_log": False,
        "server_header": False,
        "proxy_headers": False,
        # Long enough for the slowest replay (two model calls) to finish and
        # log its row; bounded so a hung connection cannot block exit forever.
        "timeout_graceful_shutdown": int(2 * settings.timeout + 30),
    }
    if workers <= 1:
        uvicorn.run(create_app(settings), **common)
        return
    # Workers re-create the app from the environment; check the index here so
    # a missing one is a clear error instead of workers dying in a loop.
    read_manifest(current_snapshot_dir(settings.index_dir))
    os.environ[SETTINGS_ENV] = settings.model_dump_json(exclude={"token"})
    if settings.token:
        os.environ[TOKEN_ENV] = settings.token
    uvicorn.run("lakevec.server:app_from_env", factory=True, workers=workers, **common)
