"""``lakevec serve``: vector search and replay over HTTP."""

from __future__ import annotations

from pathlib import Path

import click

from lakevec import settings
from lakevec.cli.common import (
    INDEX_OPTION,
    MODEL_OPTION,
    api_option,
    domain_errors,
    escalation_model_option,
    evidence_option,
    gateway_option,
    index_dir_for,
    local_model_option,
    root_from,
    timeout_option,
)
from lakevec.paths import default_evidence


@click.command("serve")
@click.option("--host", default=settings.DEFAULT_HOST, show_default=True,
              help="Address to bind. A non-loopback address needs a token.")
@click.option("--port", type=click.IntRange(0, 65535), default=settings.DEFAULT_PORT,
              show_default=True, help="TCP port (0 picks a free one).")
@INDEX_OPTION
@MODEL_OPTION
@click.option("--token", envvar=settings.TOKEN_ENV, default=None, metavar="TOKEN",
              help="Require `Authorization: Bearer TOKEN` (at least 16 characters) on every "
              f"endpoint but /healthz and the docs. Env: {settings.TOKEN_ENV} (preferred: a "
              "flag shows in ps).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="uvicorn worker processes (each loads the model and index).")
@evidence_option("Evidence log for /replay.")
@gateway_option("Chat gateway for /replay.")
@api_option("Gateway protocol for /replay (see `lakevec replay`).", settings.HTTP_API_MODES)
@local_model_option("Model tried first by /replay.")
@escalation_model_option("Escalation model for /replay.")
@timeout_option("Seconds to wait for each model call in /replay.")
@click.option("--poll-interval", type=click.FloatRange(0.0),
              default=settings.DEFAULT_POLL_INTERVAL, show_default=True,
              help="Seconds between checks of index/CURRENT for a new snapshot.")
@click.option("--log-level", type=click.Choice(settings.LOG_LEVELS),
              default=settings.DEFAULT_LOG_LEVEL, show_default=True, help="uvicorn log level.")
@click.pass_context
@domain_errors
def serve_cmd(
    ctx: click.Context,
    host: str,
    port: int,
    index: Path | None,
    model: str | None,
    token: str | None,
    workers: int,
    evidence_path: Path | None,
    gateway_url: str,
    api: str,
    local_model: str,
    escalation_model: str,
    timeout: float,
    poll_interval: float,
    log_level: str,
) -> None:
    """Serve vector search and replay over HTTP (FastAPI + uvicorn), hot-swapping indexes.

    POST /vectors/search, POST /replay, GET /healthz, GET /stats; OpenAPI at
    /openapi.json and /docs. A snapshot written by `lakevec reindex` is picked
    up without a restart. SIGTERM/SIGINT finish in-flight requests first.
    """
    from lakevec.service.run import serve
    from lakevec.service.settings import ServerSettings

    config = ServerSettings(
        index_dir=index_dir_for(ctx, index),
        evidence_path=evidence_path or default_evidence(root_from(ctx)),
        model=model, token=token or None, host=host, port=port, gateway_url=gateway_url,
        api=api, timeout=timeout, local_model=local_model, escalation_model=escalation_model,
        poll_interval=poll_interval,
    )
    serve(config, workers=workers, log_level=log_level)
