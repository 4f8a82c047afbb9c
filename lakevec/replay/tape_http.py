"""Recording and replaying HTTP model calls at the httpx transport.

The transport is the last place that sees a request as bytes and the first
that sees the response as bytes, below redirects, content decoding and the
gateway's own parsing; recording there keeps exactly what went over the wire,
and replaying there runs all of today's code above it.

* :class:`RecordingTransport` wraps the real transport. A request carrying an
  :class:`HttpCapture` in its ``extensions`` (the gateway adds one per model
  call; httpx copies extensions onto redirects) is recorded as one hop: its
  bytes, then the status, headers and every body byte handed upwards (up to
  :data:`~lakevec.settings.TAPE_BODY_CAP`), or the exception raised.
* :class:`ReplayTransport` has no inner transport. It takes each request to
  the :class:`~lakevec.replay.tape.TapePlayer`, which refuses any request that
  is not byte-identical to the next recorded one, and answers with the
  recorded response: the recorded body, then the recorded exception, if any
  (a timeout after half a body replays as exactly that). Reading past a body
  the tape has cut is a mismatch, not an empty read.
* :class:`ClientTransport` puts an injected ``httpx.Client`` (tests, proxies)
  underneath a recording client, through its public ``send``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx

from lakevec.clock import Clock
from lakevec.errors import TapeMismatch
from lakevec.replay.jsstr import js_to_well_formed
from lakevec.replay.tape import Body, Exchange, ExchangeError, TapePlayer, reported_fields
from lakevec.settings import TAPE_BODY_CAP

__all__ = [
    "CAPTURE_KEY",
    "ClientTransport",
    "HttpCapture",
    "RecordingTransport",
    "ReplayTransport",
    "public_url",
]

#: The request extension carrying a model call's :class:`HttpCapture`.
CAPTURE_KEY = "lakevec.capture"
#: Request headers never recorded: they carry credentials.
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
_SECRET_RESPONSE_HEADERS = frozenset({"set-cookie"})
_DECOMPRESS_LIMIT = 1 << 20


def public_url(url: httpx.URL) -> str:
    """The URL as text without ``user:password@``."""
    return str(url.copy_with(userinfo=b"") if url.userinfo else url)


def _error(exc: BaseException) -> ExchangeError:
    return ExchangeError(type=type(exc).__name__, message=js_to_well_formed(str(exc)))


def _decoded(data: bytes, encoding: str) -> bytes:
    """The body as the gateway parses it (best effort, bounded), for reported fields."""
    if encoding in ("", "identity"):
        return data
    if encoding in ("gzip", "deflate"):
        try:
            inflate = zlib.decompressobj(47 if encoding == "gzip" else zlib.MAX_WBITS)
            return inflate.decompress(data, _DECOMPRESS_LIMIT)
        except zlib.error:
            return b""
    return b""


@dataclass
class _Hop:
    """One request/response at the transport (a redirect is another hop)."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    started: float
    status: int | None = None
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)
    seen: int = 0
    complete: bool = False
    error: ExchangeError | None = None
    ended: float | None = None
    replayed: Exchange | None = None

    def add(self, chunk: bytes) -> None:
        self.seen += len(chunk)
        room = TAPE_BODY_CAP - len(self.data)
        if room > 0:
            self.data += chunk[:room]

    def fail(self, exc: BaseException, now: float) -> None:
        if self.error is None:
            self.error = _error(exc)
        self.end(now)

    def end(self, now: float) -> None:
        if self.ended is None:
            self.ended = now


class HttpCapture:
    """The hops of one model call, filled by the transport, read by the gateway."""

    def __init__(
        self, call: int, api: str, model: str, *, max_tokens: int, temperature: float,
        clock: Clock,
    ) -> None:
        self.call, self.api, self.model = call, api, model
        self.max_tokens, self.temperature = max_tokens, temperature
        self.clock = clock
        self.hops: list[_Hop] = []

    def start(self, request: httpx.Request) -> _Hop:
        headers: dict[str, str] = {}
        for name, value in request.headers.multi_items():
            key = name.lower()
            if key not in SECRET_HEADERS:
                headers[key] = f"{headers[key]}, {value}" if key in headers else value
        hop = _Hop(request.method, public_url(request.url), headers, request.read(),
                   self.clock.monotonic())
        self.hops.append(hop)
        return hop

    def exchanges(self, deadline: float | None = None) -> list[Exchange]:
        """The call's exchanges; ``deadline`` (seconds) marks the last as timed out by it."""
        out: list[Exchange] = []
        for i, hop in enumerate(self.hops):
            error = hop.error
            if deadline is not None and i == len(self.hops) - 1 and hop.replayed is None:
                error = ExchangeError(
                    type="ReadTimeout", message=f"the whole call exceeded {deadline:g}s"
                )
            out.append(hop.replayed or self._exchange(hop, error))
        return out

    def _exchange(self, hop: _Hop, error: ExchangeError | None) -> Exchange:
        ended = hop.ended if hop.ended is not None else self.clock.monotonic()
        headers = dict(hop.response_headers)
        response = None
        usage = finish = served = None
        if hop.status is not None:
            declared = headers.get("content-length", "")
            length = hop.seen if hop.complete else int(declared) if declared.isdigit() else None
            response = Body.of(
                bytes(hop.data), truncated=not hop.complete or hop.seen > len(hop.data),
                original_length=length,
            )
            if hop.complete:
                decoded = _decoded(bytes(hop.data), headers.get("content-encoding", ""))
                usage, finish, served = reported_fields(decoded)
        return Exchange(
            call=self.call, api=self.api, model=self.model, transport="http",
            method=hop.method, url=hop.url, request_headers=hop.headers,
            request=Body.of(hop.body), max_tokens=self.max_tokens, temperature=self.temperature,
            status=hop.status, content_type=headers.get("content-type"),
            response_headers=hop.response_headers, response=response, error=error,
            wall_ms=round(max(0.0, ended - hop.started) * 1000, 3),
            usage=usage, finish_reason=finish, served_model=served,
        )


def _capture(request: httpx.Request) -> HttpCapture | None:
    capture = request.extensions.get(CAPTURE_KEY)
    return capture if isinstance(capture, HttpCapture) else None


class _TeeStream(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, hop: _Hop, clock: Clock) -> None:
        self._inner, self._hop, self._clock = inner, hop, clock

    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self._inner:
                self._hop.add(chunk)
                yield chunk
        except Exception as exc:
            self._hop.fail(exc, self._clock.monotonic())
            raise
        self._hop.complete = True
        self._hop.end(self._clock.monotonic())

    def close(self) -> None:
        self._hop.end(self._clock.monotonic())
        self._inner.close()


class RecordingTransport(httpx.BaseTransport):
    """Records every captured request and its response on the way through."""

    def __init__(self, inner: httpx.BaseTransport, clock: Clock) -> None:
        self._inner = inner
        self._clock = clock

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        capture = _capture(request)
        if capture is None:
            return self._inner.handle_request(request)
        hop = capture.start(request)
        try:
            response = self._inner.handle_request(request)
        except Exception as exc:
            hop.fail(exc, self._clock.monotonic())
            raise
        hop.status = response.status_code
        hop.response_headers = [
            (name.lower(), value) for name, value in response.headers.multi_items()
            if name.lower() not in _SECRET_RESPONSE_HEADERS
        ]
        assert isinstance(response.stream, httpx.SyncByteStream)
        return httpx.Response(
            response.status_code, headers=response.headers.multi_items(),
            stream=_TeeStream(response.stream, hop, self._clock),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._inner.close()


class _ReplayStream(httpx.SyncByteStream):
    def __init__(self, recorded: Exchange, request: httpx.Request) -> None:
        self._recorded, self._request = recorded, request

    def __iter__(self) -> Iterator[bytes]:
        body = self._recorded.response
        assert body is not None
        data = body.data()
        if data:
            yield data
        if self._recorded.error is not None:
            raise _exception(self._recorded.error, self._request)
        if body.truncated:
            raise TapeMismatch(
                self._recorded.call,
                f"today's code reads past the {body.length:,} response bytes the tape kept",
            )


def _exception(error: ExchangeError, request: httpx.Request) -> httpx.TransportError:
    """The recorded exception, raised again (an unknown kind as a plain TransportError)."""
    cls = getattr(httpx, error.type, None)
    if not (isinstance(cls, type) and issubclass(cls, httpx.TransportError)):
        cls = httpx.TransportError
    return cls(error.message, request=request)


class ReplayTransport(httpx.BaseTransport):
    """Answers from a tape; there is no network behind it (see the module docstring)."""

    def __init__(self, player: TapePlayer) -> None:
        self.player = player

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        capture = _capture(request)
        call = capture.call if capture is not None else 0
        recorded = self.player.take(
            call, request.read(), method=request.method, url=public_url(request.url)
        )
        if capture is not None:
            hop = capture.start(request)
            hop.replayed = recorded
        if recorded.response is None:
            error = recorded.error or ExchangeError(type="TransportError", message="no response")
            raise _exception(error, request)
        return httpx.Response(
            recorded.status or 0, headers=recorded.response_headers,
            stream=_ReplayStream(recorded, request),
        )


class ClientTransport(httpx.BaseTransport):
    """Sends through an injected client (its transport, mounts and auth); never closes it."""

    def __init__(self, client: httpx.Client) -> None:
        self._client = client

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._client.send(request, stream=True, follow_redirects=False)
        assert isinstance(response.stream, httpx.SyncByteStream)
        return httpx.Response(
            response.status_code, headers=response.headers.multi_items(),
            stream=response.stream, extensions=response.extensions,
        )
