"""ASGI guard in front of every route: timing, bearer token, JSON bodies, body cap."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Collection, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException as StarletteHTTPException

from lakevec.clock import SYSTEM_CLOCK
from lakevec.service.metrics import Metrics
from lakevec.service.schemas import ErrorBody, ErrorDetail, ErrorInfo

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def error_payload(
    status: int, code: str, message: str, details: list[ErrorDetail] | None = None
) -> dict[str, Any]:
    """The JSON body of every error response: ``{"error": {status, code, message, details}}``."""
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
    The token is required everywhere but ``public_paths`` (and paths under
    ``public_prefixes``). The JSON content-type check (415) applies only to
    ``body_routes``, the (method, path) pairs that take a body, so a wrong
    method on any route is the router's 405.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        max_body: int,
        metrics: Metrics,
        body_routes: Collection[tuple[str, str]],
        public_paths: Collection[str],
        public_prefixes: tuple[str, ...] = (),
        timer: Callable[[], float] = SYSTEM_CLOCK.monotonic,
    ) -> None:
        self.app = app
        self.token = token.encode("utf-8") if token else None
        self.max_body = max_body
        self.metrics = metrics
        self.body_routes = frozenset(body_routes)
        self.public_paths = frozenset(public_paths)
        self.public_prefixes = public_prefixes
        self.timer = timer

    def is_public(self, path: str) -> bool:
        return path in self.public_paths or (
            bool(self.public_prefixes) and path.startswith(self.public_prefixes)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = self.timer()
        status = 500

        async def send_tracked(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self._guarded(scope, receive, send_tracked)
        finally:
            self.metrics.record(scope["path"], status, (self.timer() - started) * 1000)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
        path: str = scope["path"]
        if self.token is not None and not self.is_public(path) \
                and not _bearer_ok(headers, self.token):
            payload = error_payload(401, "unauthorized", "missing or invalid bearer token")
            await _send_json(send, 401, payload, [(b"www-authenticate", b"Bearer")])
            return
        if (scope["method"], path) in self.body_routes and not _is_json(headers):
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
