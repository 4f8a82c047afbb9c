"""Running the service under uvicorn: ``serve`` (what ``lakevec serve`` calls) and the
worker factory ``app_from_env``.

The listening socket is bound before anything is loaded, so a port in use
fails at once with :class:`~lakevec.errors.PortInUseError` (exit 1 from the
CLI) instead of after the model and index have loaded. The socket is then
handed to uvicorn (one process) or to uvicorn's worker supervisor.
"""

from __future__ import annotations

import copy
import errno
import logging
import logging.config
import os
import socket
from typing import Any

from fastapi import FastAPI

from lakevec.errors import PortInUseError, ServiceError, UsageProblem
from lakevec.index.layout import current_snapshot_dir
from lakevec.index.manifest import read_manifest
from lakevec.service.app import create_app
from lakevec.service.settings import ServerSettings, check_bind
from lakevec.settings import DEFAULT_LOG_LEVEL, LOG_LEVELS, SERVE_SETTINGS_ENV, TOKEN_ENV, env

log = logging.getLogger("lakevec.service")

# Access lines (one per request) are logged at these levels.
ACCESS_LOG_LEVELS = frozenset({"info", "debug"})


def app_from_env() -> FastAPI:
    """uvicorn factory for ``--workers N``: settings from the environment."""
    raw = env(SERVE_SETTINGS_ENV)
    if not raw:
        raise UsageProblem(
            f"${SERVE_SETTINGS_ENV} is not set; start the service with `lakevec serve`"
        )
    settings = ServerSettings.model_validate_json(raw)
    return create_app(settings.model_copy(update={"token": env(TOKEN_ENV)}))


def bind_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (SO_REUSEADDR, like uvicorn's own bind).

    Raises :class:`PortInUseError` when another process holds the port and
    :class:`UsageProblem` when the address cannot be used at all.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        where = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(
                f"cannot listen on {where}: the port is already in use — pass --port N "
                "(0 picks a free one) or stop the other process"
            ) from None
        raise UsageProblem(
            f"cannot listen on {where}: {exc.strerror or exc} — check --host and --port"
        ) from None
    sock.set_inheritable(True)
    return sock


def log_config(log_level: str) -> dict[str, Any]:
    """uvicorn's logging setup plus the ``lakevec`` loggers (swaps, reload errors)."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["lakevec"] = {
        "handlers": ["default"], "level": log_level.upper(), "propagate": False,
    }
    return config


def serve(
    settings: ServerSettings, *, workers: int = 1, log_level: str = DEFAULT_LOG_LEVEL
) -> None:
    """Run the service under uvicorn until SIGTERM/SIGINT, then drain in-flight requests.

    The port is bound first (a busy port fails before the index loads). uvicorn
    stops accepting on the signal and waits for running requests to finish
    (bounded by ``timeout_graceful_shutdown``); evidence appends are single
    locked writes, so a drained replay never leaves half a row.
    """
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    if log_level not in LOG_LEVELS:
        raise UsageProblem(f"unknown log level {log_level!r}; use one of {', '.join(LOG_LEVELS)}")
    if workers < 1:
        raise UsageProblem(f"--workers must be at least 1, got {workers}")
    check_bind(settings.host, settings.token)
    sock = bind_listener(settings.host, settings.port)
    try:
        # Configured now (not by uvicorn later) so the index load already logs.
        logging.config.dictConfig(log_config(log_level))
        common: dict[str, Any] = {
            "log_config": log_config(log_level),
            "log_level": log_level,
            "access_log": log_level in ACCESS_LOG_LEVELS,
            "server_header": False,
            "proxy_headers": False,
            # Long enough for the slowest replay (two model calls) to finish and
            # log its row; bounded so a hung connection cannot block exit forever.
            "timeout_graceful_shutdown": int(2 * settings.timeout + 30),
        }
        url = _url(sock)
        if workers == 1:
            config = uvicorn.Config(create_app(settings), **common)
            server = uvicorn.Server(config)
            log.info("lakevec serve listening on %s (index %s)", url, settings.index_dir)
            server.run(sockets=[sock])
            if not server.started:
                raise ServiceError("the service failed to start (see the log above)")
            return
        # Workers re-create the app from the environment; check the index here so
        # a missing one is a clear error instead of workers dying in a loop.
        read_manifest(current_snapshot_dir(settings.index_dir))
        os.environ[SERVE_SETTINGS_ENV] = settings.model_dump_json(exclude={"token"})
        if settings.token:
            os.environ[TOKEN_ENV] = settings.token
        config = uvicorn.Config(
            "lakevec.service.run:app_from_env", factory=True, workers=workers, **common
        )
        log.info("lakevec serve listening on %s with %d workers", url, workers)
        Multiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if sock.family == socket.AF_INET6 else f"http://{host}:{port}"
