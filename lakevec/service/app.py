"""The service's routes: ``POST /vectors/search``, ``POST /replay``, ``GET /healthz``, ``/stats``.

HTTP only. Ranking is :mod:`lakevec.retrieval` (one retriever per request over
the live snapshot, via :func:`~lakevec.retrieval.registry.retriever_for`), so a
query ranks here exactly as in ``lakevec search``; ``/replay`` runs
:func:`lakevec.replay.engine.replay`, the engine of ``lakevec replay``.

OpenAPI at ``/openapi.json``; ``/docs`` (Swagger UI) and ``/redoc`` work
offline: their scripts and styles are served by the app itself from the
``fastapi-offline`` package, under :data:`DOCS_STATIC`.

Security. With a token every endpoint except ``/healthz``, ``/openapi.json``
and the docs pages and assets (no data behind them) needs ``Authorization:
Bearer <token>`` (constant-time comparison). Bodies are JSON only, capped at
``max_body_bytes`` (413), and validated by strict pydantic models (422).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from lakevec import __version__
from lakevec.clock import SYSTEM_CLOCK, Clock
from lakevec.embed.base import Embedder
from lakevec.embed.loader import load_query_embedder
from lakevec.errors import (
    EvidenceError,
    IndexCorruptError,
    IndexMissingError,
    LakevecError,
    ModelMismatchError,
    UsageProblem,
)
from lakevec.index.layout import current_snapshot_dir
from lakevec.index.manifest import read_manifest
from lakevec.replay.engine import ReplayRequest, replay
from lakevec.replay.evidence import ReplayResult
from lakevec.replay.gateway import HttpGateway
from lakevec.retrieval.dense import DEFAULT_FILTER_POLICY, FilterPolicy
from lakevec.service.live import SnapshotHolder
from lakevec.service.metrics import Metrics
from lakevec.service.middleware import GuardMiddleware, error_payload
from lakevec.service.schemas import (
    ERROR_RESPONSES,
    ErrorDetail,
    Health,
    IndexStats,
    ModelStats,
    ReplayBody,
    SearchHit,
    SearchRequest,
    SearchResponse,
    Stats,
)
from lakevec.service.settings import ServerSettings, check_bind
from lakevec.settings import TOKEN_ENV

#: Where the docs pages' scripts and styles are served from (no CDN).
DOCS_STATIC = "/static-offline-docs"
PUBLIC_PATHS = frozenset({"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
HTTP_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found",
              405: "method_not_allowed", 413: "body_too_large", 415: "unsupported_media_type"}


@dataclass
class ServiceState:
    """What the routes share; ``service_state(app)`` returns it."""

    settings: ServerSettings
    holder: SnapshotHolder
    metrics: Metrics
    clock: Clock
    started: float
    gateway: HttpGateway


def service_state(app: FastAPI) -> ServiceState:
    """The state of an app made by :func:`create_app` (until its lifespan ends)."""
    state = app.state.lakevec
    if not isinstance(state, ServiceState):
        raise RuntimeError("this app has no lakevec service state (not made by create_app, "
                           "or already shut down)")
    return state


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Run the background snapshot check while the app serves; release everything after.

    At shutdown the state is also detached from the app: FastAPI keeps recent
    apps reachable from module-level caches, and the snapshots (memory maps of
    the index files) must not outlive the service with them.
    """
    state = service_state(app)
    state.holder.start()
    try:
        yield
    finally:
        state.holder.close()
        state.gateway.close()  # closes its HTTP client only when it made it
        app.state.lakevec = None


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
        status = exc.status_code
        payload = error_payload(status, HTTP_CODES.get(status, "http_error"), str(exc.detail))
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
    policy: FilterPolicy = DEFAULT_FILTER_POLICY,
) -> FastAPI:
    """Build the service: loads the live snapshot (and its model) before returning.

    ``embedder`` overrides the query model (tests); it must match the index.
    ``http_client`` carries gateway calls for ``/replay`` (tests inject a
    transport; the caller closes it); by default the gateway makes its own,
    closed on shutdown.
    ``policy`` tunes filtered dense search (when to rank exactly, how far to
    over-fetch). The background snapshot check runs while the app's lifespan
    does (uvicorn, or a ``TestClient`` used as a context manager).
    """
    check_bind(settings.host, settings.token)
    # Built first and once: a bad gateway URL fails at startup, before the index loads.
    gateway = HttpGateway(settings.gateway_url, api=settings.api, timeout=settings.timeout,
                          client=http_client)
    clock = clock or SYSTEM_CLOCK
    try:
        if embedder is None:
            manifest = read_manifest(current_snapshot_dir(settings.index_dir))
            # The model is checked against the snapshot by the holder's load.
            embedder = load_query_embedder(settings.model or manifest.model.spec, long_lived=True)
        holder = SnapshotHolder(
            settings.index_dir, embedder, poll_interval=settings.poll_interval,
            checksums=settings.checksums, clock=clock, policy=policy,
        )
    except BaseException:
        gateway.close()
        raise
    state = ServiceState(settings, holder, Metrics(), clock, clock.monotonic(), gateway)

    app = FastAPIOffline(
        title="lakevec",
        version=__version__,
        description="Local retrieval for LLM replay pipelines: search over the playbook index "
        "(hybrid, HNSW, exact or BM25) and the replay pipeline, with hot-swapped index "
        "snapshots.",
        lifespan=lifespan,
        static_url=DOCS_STATIC,
        # No badge fetched from validator.swagger.io: the page stays offline.
        swagger_ui_parameters={"validatorUrl": None},
    )
    app.state.lakevec = state
    _install_error_handlers(app)
    _add_routes(app, settings.token)
    body_routes = {
        (method, route.path)
        for route in app.routes
        if isinstance(route, APIRoute) and route.body_field is not None
        for method in route.methods or ()
    }
    app.add_middleware(
        GuardMiddleware,
        token=settings.token,
        max_body=settings.max_body_bytes,
        metrics=state.metrics,
        body_routes=body_routes,
        public_paths=PUBLIC_PATHS,
        public_prefixes=(DOCS_STATIC + "/",),
    )
    return app


# Route handlers are module-level functions that find the app's state through the
# request: FastAPI caches per-endpoint data globally, and a closure over the state
# would keep every app's snapshots (and their memory maps) alive after shutdown.


def vectors_search(body: SearchRequest, request: Request) -> SearchResponse:
    """Rank index records for a query with a retriever, optionally filtered.

    ``score`` is the retriever's own score (cosine for hnsw/exact, RRF for
    hybrid, BM25 for bm25), so the same query gets the same ranking as
    ``lakevec search`` with the same retriever.
    """
    state = service_state(request.app)
    started = state.clock.monotonic()
    filters = body.filters.to_filters() if body.filters is not None else None
    with state.holder.use() as live:
        retriever = live.retriever(body.kind)
        try:
            found = retriever.search(body.query, body.k, filters=filters)
        finally:
            retriever.close()
        hits = [
            SearchHit(
                rank=i, id=h.record.id, score=h.score, title=h.record.title,
                success_score=h.record.success_score,
                source_category=h.record.source_category,
                source_run_id=h.record.source_run_id, tags=list(h.record.tags),
                content=h.record.content if body.include_content else None,
            )
            for i, h in enumerate(found, start=1)
        ]
        return SearchResponse(
            results=hits, k=body.k, retriever=retriever.name,
            strategy=retriever.last_strategy, index_version=live.version,
            snapshot=live.name, model=live.snapshot.manifest.model.model_id,
            took_ms=round((state.clock.monotonic() - started) * 1000, 3),
        )


def replay_endpoint(body: ReplayBody, request: Request) -> ReplayResult:
    """Run the replay pipeline once, store its tape and append its row to the evidence log.

    Same engine, result and ``replay_run.v1`` row as ``lakevec replay``;
    the gateway and models are the server's configuration.
    """
    state = service_state(request.app)
    settings = state.settings
    replay_request = ReplayRequest(
        task=body.task, local_only=body.local_only, allow_escalation=body.allow_escalation,
        no_retrieval=body.no_retrieval, dry_run=body.dry_run,
        max_tokens=body.max_tokens, temperature=body.temperature,
    )
    with state.holder.use() as live:
        retriever = live.retriever(body.retriever)
        try:
            return replay(
                replay_request,
                retriever=retriever,
                gateway=None if body.dry_run else state.gateway,
                evidence_path=settings.evidence_path,
                local_model=settings.local_model,
                escalation_model=settings.escalation_model,
                clock=state.clock,
            )
        finally:
            retriever.close()


async def healthz(request: Request) -> Health:
    """Liveness: the service is up and has an index loaded (no auth needed)."""
    return Health(status="ok", index_version=service_state(request.app).holder.live.version)


async def stats(request: Request) -> Stats:
    """Index version, record count, model, uptime, swaps, request counts and latencies."""
    state = service_state(request.app)
    holder = state.holder
    live = holder.live
    man = live.snapshot.manifest
    return Stats(
        lakevec_version=__version__,
        uptime_s=round(state.clock.monotonic() - state.started, 3),
        index=IndexStats(
            dir=str(state.settings.index_dir), snapshot=live.name, version=man.version,
            records=man.counts.records, built_at=man.build.built_at,
            loaded_at=live.loaded_at, swaps=holder.swaps,
            reload_failures=holder.failures, last_reload_error=holder.last_error,
        ),
        model=ModelStats(
            spec=man.model.spec, model_id=man.model.model_id,
            dimension=man.model.dimension, backend=holder.embedder.backend,
            precision=holder.embedder.precision,
        ),
        in_flight=holder.in_flight(),
        endpoints=state.metrics.snapshot(),
    )


def _add_routes(app: FastAPI, token: str | None) -> None:
    # Declared so the OpenAPI document shows the scheme; the check itself is in
    # GuardMiddleware (it also covers unknown paths and runs before body reads).
    bearer = HTTPBearer(auto_error=False, description=f"lakevec serve --token / ${TOKEN_ENV}")
    secured = [Depends(bearer)] if token else []
    app.add_api_route("/vectors/search", vectors_search, methods=["POST"],
                      response_model=SearchResponse, responses=ERROR_RESPONSES,
                      dependencies=secured, tags=["retrieval"])
    app.add_api_route("/replay", replay_endpoint, methods=["POST"],
                      response_model=ReplayResult, responses=ERROR_RESPONSES,
                      dependencies=secured, tags=["replay"])
    app.add_api_route("/healthz", healthz, methods=["GET"], response_model=Health,
                      tags=["service"])
    app.add_api_route("/stats", stats, methods=["GET"], response_model=Stats,
                      responses={401: ERROR_RESPONSES[401]}, dependencies=secured,
                      tags=["service"])
