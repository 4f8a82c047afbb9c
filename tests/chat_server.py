"""A scripted chat server on 127.0.0.1 for replay tests (real sockets, real HTTP).

It answers one path (``/v1/chat`` or ``/v1/chat/completions``) with a reply
chosen by the request's ``model``; every request is recorded for assertions.
A reply may lie about its length (``declared_length``) to cut the body short,
or trickle its body (``trickle``: one byte every ``trickle`` seconds).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    #: Content-Length sent instead of the body's (the connection closes after the body).
    declared_length: int | None = None
    #: Seconds between body bytes (0: the body in one write). The trickle ends
    #: when the client hangs up or the server stops.
    trickle: float = 0.0
    #: Extra headers.
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def answer(cls, content: object) -> Reply:
        payload = {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
        return cls(200, json.dumps(payload).encode())


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class ChatServer:
    path: str
    replies: dict[str, Reply]
    seen: list[Seen] = field(default_factory=list)
    url: str = ""
    stop: threading.Event = field(default_factory=threading.Event)


@contextmanager
def chat_server(path: str, replies: dict[str, Reply]) -> Iterator[ChatServer]:
    """Serve ``replies`` (model → Reply) at ``path`` on an ephemeral 127.0.0.1 port."""
    state = ChatServer(path=path, replies=replies)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            raw = self.rfile.read(length)
            body = json.loads(raw)
            headers = {k.lower(): v for k, v in self.headers.items()}
            state.seen.append(Seen(self.path, headers, body))
            if self.path != state.path:
                reply = Reply(404, b'{"error":"no such route"}')
            else:
                reply = state.replies.get(body.get("model"), Reply(500, b"unknown model"))
            self.send_response(reply.status)
            self.send_header("content-type", "application/json")
            declared = reply.declared_length
            sent = len(reply.body) if declared is None else declared
            self.send_header("content-length", str(sent))
            for name, value in reply.headers:
                self.send_header(name, value)
            self.end_headers()
            if not reply.trickle:
                self.wfile.write(reply.body)
                return
            try:
                for i in range(len(reply.body)):
                    self.wfile.write(reply.body[i : i + 1])
                    if state.stop.wait(reply.trickle):
                        return
            except OSError:  # the client hung up
                return

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        state.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
