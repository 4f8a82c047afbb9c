"""The driver's side of a Ray cluster: importing Ray, connecting, and keeping it quiet.

Nothing here imports Ray at module level: ``lakevec build-index`` without
``--ray`` never pays for it, and a machine without the ``ray`` extra gets one
line naming ``pip install 'lakevec[ray]'`` (:func:`import_ray`).

- :func:`ray_session` connects (``ray.init``) unless the process already is,
  and disconnects afterwards. ``ray.init`` retries an unreachable address
  forever, which would hang a cron reindex, so a ``host:port`` address (given,
  or from ``$RAY_ADDRESS``) is first probed over TCP for
  :data:`~lakevec.settings.RAY_CONNECT_TIMEOUT` seconds.
- :func:`console_to` sends everything the process writes to stdout and stderr
  (file descriptors 1 and 2 and ``sys.stdout``/``sys.stderr``: Ray's C++ logs,
  its Python loggers, the "(raylet)" messages it forwards from other nodes)
  into a log file while Ray runs, so ``lakevec reindex`` keeps its one-JSON-line
  stdout and a quiet stderr. It yields a stream on the real stderr for
  lakevec's own progress bar.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import IO, Any

from lakevec.errors import ClusterError
from lakevec.settings import (
    RAY_ACTOR_START_TIMEOUT,
    RAY_ADDRESS_ENV,
    RAY_CONNECT_TIMEOUT,
    RAY_EXTRA_HINT,
    cache_root,
    env,
)

# Loggers quietened while lakevec drives Ray (restored afterwards).
_RAY_LOGGERS = ("ray", "ray.data", "ray.util", "ray._private")


def import_ray() -> ModuleType:
    """The ``ray`` module with Ray Data, or :class:`ClusterError` naming the extra to install."""
    try:
        import ray
        import ray.data  # Ray Data is what --ray needs
    except ImportError as exc:
        raise ClusterError(
            f"--ray needs Ray Data, which is not installed ({exc}) — run `{RAY_EXTRA_HINT}` "
            "on this machine and every node of the cluster"
        ) from None
    return ray


def host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a ``[scheme://]host:port`` address; None for ``auto``/``local``."""
    rest = address.partition("://")[2] if "://" in address else address
    host, sep, port = rest.rstrip("/").rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout: float = RAY_CONNECT_TIMEOUT) -> None:
    """Fail fast (:class:`ClusterError`) when nothing listens at a ``host:port`` address."""
    target = host_port(address)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ClusterError(
            f"cannot reach the Ray cluster at {address}: {reason} — start one with "
            "`ray start --head` (and `ray start --address HEAD:6379` on the other machines), "
            f"or fix --ray ADDRESS / ${RAY_ADDRESS_ENV}"
        ) from None


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator[ModuleType]:
    """Ray, connected to ``address`` (None: Ray's default, ``$RAY_ADDRESS`` or a local one).

    A process that is already connected keeps its connection (and it is not
    closed here). Ray Data's progress bars and start-up banners are turned off
    for the session; lakevec draws its own bar.
    """
    ray = import_ray()
    owned = not ray.is_initialized()
    if owned:
        target = address or env(RAY_ADDRESS_ENV)
        if target:
            check_reachable(target)
        try:
            ray.init(address=address or None, log_to_driver=False,
                     logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
            raise ClusterError(
                f"cannot connect to the Ray cluster at {target or 'a new local instance'}: "
                f"{_first_line(exc)} — check --ray ADDRESS / ${RAY_ADDRESS_ENV}"
            ) from exc
    restore = _quiet_ray_data()
    try:
        yield ray
    finally:
        restore()
        if owned:
            ray.shutdown()


def _quiet_ray_data() -> Any:
    """Turn off Ray Data's progress bars and banners; returns a function undoing it."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    saved = {name: getattr(ctx, name) for name in
             ("enable_progress_bars", "print_on_execution_start", "wait_for_min_actors_s")}
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.wait_for_min_actors_s = RAY_ACTOR_START_TIMEOUT
    levels = {name: logging.getLogger(name).level for name in _RAY_LOGGERS}
    for name in _RAY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)

    def restore() -> None:
        for name, value in saved.items():
            setattr(ctx, name, value)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)

    return restore


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def console_log_path() -> Path:
    """Where :func:`console_to` collects Ray's console output of this process."""
    return cache_root() / "ray" / f"driver-{os.getpid()}.log"


def _fd_of(stream: Any) -> int | None:
    try:
        fd: int = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    return fd


@contextlib.contextmanager
def console_to(log: Path) -> Iterator[IO[str]]:
    """Redirect stdout and stderr (descriptors and Python streams) into ``log``.

    Yields where lakevec's own progress output should go: the stderr the
    caller had (a duplicate of descriptor 2 when that is what it was).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    caller_err = sys.stderr
    saved: dict[int, int] = {}
    with log.open("a", encoding="utf-8", errors="replace") as sink, contextlib.ExitStack() as stack:
        bar: IO[str] = caller_err
        if _fd_of(caller_err) == 2:
            bar = stack.enter_context(os.fdopen(os.dup(2), "w", buffering=1))
        for fd in (1, 2):
            try:
                saved[fd] = os.dup(fd)
                os.dup2(sink.fileno(), fd)
            except OSError:  # no such descriptor (a daemon): nothing to redirect
                saved.pop(fd, None)
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                yield bar
        finally:
            sink.flush()
            bar.flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
