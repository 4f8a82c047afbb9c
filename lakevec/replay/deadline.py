"""One deadline for a whole HTTP call: connect, send, headers and a slowly trickled body.

httpx's timeouts bound each network operation, not the call: a server that
sends one byte a second never trips a 2-second read timeout, and a
``--timeout 2`` run took 41.7 s against one. :class:`CallDeadline` closes that
gap two ways:

* the reader asks :meth:`CallDeadline.expired` between body chunks (the
  monotonic clock against ``start + seconds``), and
* a watchdog timer shuts the connection's socket down at the deadline, which
  wakes a read blocked in ``recv`` (a byte, then a long pause). The socket is
  found through httpcore's documented ``trace`` extension (a new connection)
  and the response's ``network_stream`` extension (any connection).

``socket.shutdown`` acts on the connection, not on the Python object, so it
is safe from another thread: the blocked read returns end-of-stream and httpx
raises, which the gateway reports as a timeout because :attr:`fired` is set.
A lock makes "finished" and "fired" exclusive: once the caller has its whole
body, the watchdog does nothing.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Mapping
from typing import Any

from lakevec.clock import Clock

__all__ = ["CallDeadline"]

_CONNECT_EVENTS = frozenset({"connection.connect_tcp.complete", "connection.start_tls.complete"})


class CallDeadline:
    """``seconds`` from now on ``clock``; :meth:`finish` when the call is over."""

    def __init__(self, seconds: float, clock: Clock) -> None:
        self.seconds = seconds
        self._clock = clock
        self._end = clock.monotonic() + seconds
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._timer: threading.Timer | None = None
        self._active = True
        self.fired = False

    def remaining(self) -> float:
        return max(0.0, self._end - self._clock.monotonic())

    def expired(self) -> bool:
        return self.fired or self._clock.monotonic() >= self._end

    def trace(self, event_name: str, info: Mapping[str, Any]) -> None:
        """httpcore ``trace`` callback: watch every socket the call connects."""
        if event_name in _CONNECT_EVENTS:
            self.watch(info.get("return_value"))

    def watch(self, stream: object) -> None:
        """Arm the watchdog on the socket of an httpcore network stream (if it has one)."""
        get_extra_info = getattr(stream, "get_extra_info", None)
        sock = get_extra_info("socket") if callable(get_extra_info) else None
        if not isinstance(sock, socket.socket):
            return  # a mock transport, or a replay: nothing to shut down
        with self._lock:
            if not self._active:
                return
            self._socket = sock
            if self._timer is None:
                self._timer = threading.Timer(self.remaining(), self._fire)
                self._timer.daemon = True
                self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            if not self._active or self._socket is None:
                return
            self.fired = True
            # The base class's shutdown: an SSLSocket's own would also drop its
            # TLS state under the reading thread. OSError: already closed.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(self._socket, socket.SHUT_RDWR)

    def finish(self) -> None:
        """The call is over (body read or failed): the watchdog must not act any more."""
        with self._lock:
            self._active = False
            if self._timer is not None:
                self._timer.cancel()
