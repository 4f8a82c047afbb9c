"""Chat gateway client over httpx, recorded on a tape.

Two wire formats:

* ``lakehouse`` (the seed's): ``POST {url}/v1/chat`` with
  ``{provider, model, messages, max_tokens, temperature}``; the provider is
  derived from the model name by :func:`provider_for`.
* ``openai``: ``POST {url}/v1/chat/completions`` (``{url}/chat/completions``
  when the URL already ends in ``/v1``, as most OpenAI clients write it) with
  ``{model, messages, max_tokens, temperature}`` for Ollama, vLLM, llama.cpp's
  server or any OpenAI-compatible endpoint; a bearer key is sent when
  ``$LAKEVEC_API_KEY`` is set.

Request bodies are written by :func:`~lakevec.replay.jsjson.stringify` (the
seed's ``JSON.stringify`` bytes, and stable across httpx versions, which
matters for verification). Replies are read as the seed does
(:func:`~lakevec.replay.reply.parse_reply`). :meth:`HttpGateway.chat` never
raises for anything the server sends or does: every reply becomes an answer
or a :class:`ChatResult` with ``ok=False`` and an ``error``. There are no
retries: one request per model call, and ``timeout`` bounds the *whole* call,
a body trickled slowly included (:mod:`lakevec.replay.deadline`).

**Recording.** The gateway's client sends through a
:class:`~lakevec.replay.tape_http.RecordingTransport`; given a recorder,
each call's exchanges (redirects included) land on the run's tape.
:func:`replay_gateway` builds the same gateway over a
:class:`~lakevec.replay.tape_http.ReplayTransport` for ``lakevec verify``.
Credentials in the URL (``http://user:pass@host``) are sent as HTTP basic
auth and never reach the row or the tape; neither do authorization headers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from datetime import datetime
from types import TracebackType
from typing import Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx
from pydantic import JsonValue

from lakevec.clock import SYSTEM_CLOCK, Clock
from lakevec.errors import UsageProblem
from lakevec.replay.chat import DEFAULT_OPTIONS, ChatGateway, ChatOptions, RecordingGateway
from lakevec.replay.deadline import CallDeadline
from lakevec.replay.jsjson import stringify
from lakevec.replay.jsstr import js_slice
from lakevec.replay.reply import (
    ERROR_CHARS,
    MAX_REPLY_NESTING,
    ChatResult,
    parse_reply,
    utf8_decode,
)
from lakevec.replay.tape import TapePlayer, TapeRecorder, TapeRun
from lakevec.replay.tape_http import (
    CAPTURE_KEY,
    ClientTransport,
    HttpCapture,
    RecordingTransport,
    ReplayTransport,
)
from lakevec.settings import (
    API_KEY_ENV,
    DEFAULT_API,
    DEFAULT_TIMEOUT,
    GATEWAY_ENV,
    HTTP_API_MODES,
    env,
    gateway_url,
)

__all__ = [
    "DEFAULT_OPTIONS",
    "ERROR_CHARS",
    "MAX_REPLY_BYTES",
    "MAX_REPLY_NESTING",
    "ChatGateway",
    "ChatOptions",
    "ChatResult",
    "HttpGateway",
    "RecordingGateway",
    "check_gateway_url",
    "parse_reply",
    "provider_for",
    "replay_gateway",
    "split_credentials",
    "utf8_decode",
]

#: Largest reply body read. An answer is bounded by MAX_TOKENS (a few KiB of
#: text); a bigger body is recorded as a failed call instead of filling memory.
MAX_REPLY_BYTES = 8 * 1024 * 1024
# Enough bytes for ERROR_CHARS UTF-16 units however the body is encoded
# (at most 3 bytes per unit, a BOM and one cut sequence).
_ERROR_BYTES = 4 * ERROR_CHARS + 8

_CLOUD_PREFIXES = ("kimi-", "qwen3-coder", "deepseek-v", "mistral-large")
_CLOUD_EXACT = frozenset({"gpt-oss:120b", "qwen3.5:397b"})
_URL_HINT = f"(set --gateway or ${GATEWAY_ENV})"
_USERINFO = re.compile(r"(?<=://)[^/?#@]*@")


def _redacted(text: str) -> str:
    return _USERINFO.sub("***@", text)


def split_credentials(url: str) -> tuple[str, httpx.BasicAuth | None]:
    """The URL without ``user:password@``, and those credentials as basic auth."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.netloc.rpartition("@")[2]
    auth = httpx.BasicAuth(unquote(parts.username or ""), unquote(parts.password or ""))
    return urlunsplit(parts._replace(netloc=host)), auth


def provider_for(model: str) -> str:
    """The seed's routing: namespaced → openrouter, known cloud models → ollama_cloud."""
    if "/" in model:
        return "openrouter"
    if model.startswith(_CLOUD_PREFIXES) or model in _CLOUD_EXACT:
        return "ollama_cloud"
    return "ollama"


def check_gateway_url(url: str | None = None) -> str:
    """The gateway base URL without surrounding blanks and trailing slashes.

    ``None`` means ``$LH_GATEWAY_URL`` or the default. Raises
    :class:`UsageProblem` unless the URL is an absolute http(s) URL with a
    host, a port in 1..65535 when one is given, and no query or fragment
    (``/v1/chat`` is appended to it). ``user:password@`` is allowed: it is
    sent as HTTP basic auth and never recorded (:func:`split_credentials`).
    """
    text = (gateway_url() if url is None else url).strip()
    if not text:
        raise UsageProblem(f"the gateway URL is empty {_URL_HINT}")

    shown = _redacted(text)  # messages never echo a password

    def bad(why: str) -> UsageProblem:
        return UsageProblem(f"gateway URL {shown!r} {why} {_URL_HINT}")

    if any(ch.isspace() or not ch.isprintable() for ch in text):
        raise bad("contains blanks or control characters")
    try:
        parts = urlsplit(text)
    except ValueError as exc:  # "Invalid IPv6 URL"
        raise bad(f"is malformed ({exc})") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise UsageProblem(
            f"gateway URL must start with http:// or https://, got {shown!r} {_URL_HINT}"
        )
    try:
        port = parts.port
    except ValueError as exc:  # out of range or not a number
        raise bad(f"has an invalid port ({exc}); use 1..65535") from None
    if port is not None and not 1 <= port <= 65535:
        raise bad(f"has port {port}; use 1..65535")
    if not parts.hostname:
        raise bad("has no host")
    if parts.query or parts.fragment or "?" in text or "#" in text:
        raise bad("must not have a query or fragment")
    try:
        httpx.URL(text)
    except httpx.InvalidURL as exc:  # e.g. a host that is not a valid IDNA name
        raise bad(f"is malformed ({exc})") from None
    return text.rstrip("/")


Status = Literal["complete", "over", "deadline"]


def _read_at_most(
    chunks: Iterator[bytes], limit: int, deadline: CallDeadline
) -> tuple[bytes, Status]:
    """Up to ``limit`` bytes of a body: all of it, or stopped by the limit or the deadline."""
    parts: list[bytes] = []
    size = 0
    for chunk in chunks:
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(parts)[:limit], "over"
        if deadline.expired():
            return b"".join(parts), "deadline"
    return b"".join(parts), "complete"


class HttpGateway:
    """Synchronous chat client, recording through its transport.

    ``transport`` is what the recording client sends through (tests pass
    ``httpx.MockTransport``; :func:`replay_gateway` a ``ReplayTransport``);
    ``client`` is an injected client to send through instead (its transport,
    mounts and auth; the gateway never closes it). Default: a real transport.
    """

    def __init__(
        self,
        url: str | None = None,  # None: $LH_GATEWAY_URL or the default
        *,
        api: str = DEFAULT_API,
        timeout: float = DEFAULT_TIMEOUT,
        api_key: str | None = None,
        client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        clock: Clock | None = None,
    ) -> None:
        base = check_gateway_url(url)
        if api not in HTTP_API_MODES:
            raise UsageProblem(
                f"unknown gateway api {api!r}; use one of {', '.join(HTTP_API_MODES)}"
            )
        if not (timeout > 0 and math.isfinite(timeout)):
            raise UsageProblem(f"--timeout must be positive seconds, got {timeout}")
        self.url, self._auth = split_credentials(base)
        self.api = api
        self.timeout = float(timeout)
        self.api_key = api_key if api_key is not None else env(API_KEY_ENV)
        self._clock = clock or SYSTEM_CLOCK
        if transport is None:
            transport = ClientTransport(client) if client is not None else httpx.HTTPTransport()
        if not isinstance(transport, ReplayTransport):  # a replay records from its tape
            transport = RecordingTransport(transport, self._clock)
        # follow_redirects: the seed's fetch() follows them too (307/308 keep the POST).
        self._client = httpx.Client(
            transport=transport, timeout=self.timeout, follow_redirects=True
        )

    @property
    def endpoint(self) -> str:
        if self.api == "lakehouse":
            return self.url + "/v1/chat"
        # OpenAI clients take the base URL with /v1; both forms work.
        return self.url + ("/chat/completions" if self.url.endswith("/v1")
                           else "/v1/chat/completions")

    def request_body(
        self, model: str, system: str, user: str, options: ChatOptions = DEFAULT_OPTIONS
    ) -> dict[str, Any]:
        """The JSON body sent for one call (the provider key only in lakehouse mode)."""
        body: dict[str, Any] = {}
        if self.api == "lakehouse":
            body["provider"] = provider_for(model)
        body.update(
            model=model,
            messages=[
                {"role": "system", "content": system},
                {"role": "user", "content": user},
            ],
            max_tokens=options.max_tokens,
            temperature=options.temperature,
        )
        return body

    def request_bytes(
        self, model: str, system: str, user: str, options: ChatOptions = DEFAULT_OPTIONS
    ) -> bytes:
        """The exact bytes one call sends (``JSON.stringify`` of :meth:`request_body`)."""
        return stringify(self.request_body(model, system, user, options)).encode("utf-8")

    def tape_config(self) -> dict[str, JsonValue]:
        return {"url": self.url, "timeout": self.timeout}

    def chat(
        self, model: str, system: str, user: str, *, options: ChatOptions = DEFAULT_OPTIONS,
        recorder: TapeRecorder | None = None,
    ) -> ChatResult:
        """POST one chat request; every failure comes back as ``ok=False``."""
        call = recorder.begin_call() if recorder is not None else 0
        capture = HttpCapture(
            call, self.api, model, max_tokens=options.max_tokens,
            temperature=options.temperature, clock=self._clock,
        )
        deadline = CallDeadline(self.timeout, self._clock)
        try:
            result, deadline_hit = self._send(
                self.request_bytes(model, system, user, options), capture, deadline
            )
        finally:
            deadline.finish()
        if recorder is not None:
            for exchange in capture.exchanges(self.timeout if deadline_hit else None):
                recorder.record(exchange)
        return result

    def _timed_out(self) -> ChatResult:
        return ChatResult.failure(f"timed out after {self.timeout:g}s: POST {self.endpoint}")

    def _send(
        self, body: bytes, capture: HttpCapture, deadline: CallDeadline
    ) -> tuple[ChatResult, bool]:
        """The call's result, and whether the whole-call deadline (not httpx) ended it."""
        headers = {"content-type": "application/json"}
        if self.api == "openai" and self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        endpoint = self.endpoint
        try:
            with self._client.stream(
                "POST", endpoint, content=body, headers=headers,
                auth=self._auth if self._auth is not None else httpx.USE_CLIENT_DEFAULT,
                timeout=httpx.Timeout(self.timeout),
                extensions={CAPTURE_KEY: capture, "trace": deadline.trace},
            ) as resp:
                deadline.watch(resp.extensions.get("network_stream"))
                if not resp.is_success:
                    # Only the head of an error body is read: it may be huge.
                    head, status = _read_at_most(resp.iter_bytes(), _ERROR_BYTES, deadline)
                    if status == "deadline":
                        return self._timed_out(), True
                    text = js_slice(utf8_decode(head), ERROR_CHARS)
                    return ChatResult.failure(f"HTTP {resp.status_code}: {text}"), False
                data, status = _read_at_most(resp.iter_bytes(), MAX_REPLY_BYTES, deadline)
                deadline.finish()
        except httpx.TimeoutException:
            return self._timed_out(), False
        except httpx.HTTPError as exc:
            if deadline.fired:  # the watchdog shut the socket: the deadline passed
                return self._timed_out(), True
            if isinstance(exc, httpx.ConnectError):
                msg = f"cannot connect to {endpoint}: {exc}"
                return ChatResult.failure(msg[:ERROR_CHARS]), False
            # protocol errors, bad encodings, redirect loops...
            msg = f"{type(exc).__name__} on POST {endpoint}: {exc}"
            return ChatResult.failure(msg[:ERROR_CHARS]), False
        if status == "deadline":
            return self._timed_out(), True
        if status == "over":
            return ChatResult.failure(
                f"reply from {endpoint} is larger than {MAX_REPLY_BYTES:,} bytes"
            ), False
        return parse_reply(data, endpoint), False

    def close(self) -> None:
        self._client.close()  # an injected client stays open (ClientTransport never closes it)

    def __enter__(self) -> HttpGateway:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _StillClock:
    """Replays take no time: the whole-call deadline never passes while reading a tape."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def now(self) -> datetime:
        return self._clock.now()

    def monotonic(self) -> float:
        return 0.0


def replay_gateway(run: TapeRun, player: TapePlayer) -> HttpGateway:
    """The gateway of a recorded ``lakehouse``/``openai`` run, answering from its tape.

    Its client has no network behind it: every request must be the next
    recorded one, byte for byte (:class:`~lakevec.replay.tape.TapePlayer`).
    No API key is sent (headers are not compared).
    """
    url = run.gateway.get("url")
    timeout = run.gateway.get("timeout")
    if not isinstance(url, str) or not isinstance(timeout, int | float):
        raise UsageProblem(f"the tape of {run.run_id} has no gateway url/timeout")
    return HttpGateway(
        url, api=run.api, timeout=float(timeout), api_key="",
        transport=ReplayTransport(player), clock=_StillClock(SYSTEM_CLOCK),
    )
