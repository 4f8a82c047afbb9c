"""Chat gateway client over httpx.

Two wire formats:

* ``lakehouse`` (the seed's): ``POST {url}/v1/chat`` with
  ``{provider, model, messages, max_tokens, temperature}``; the provider is
  derived from the model name by :func:`provider_for`.
* ``openai``: ``POST {url}/v1/chat/completions`` with
  ``{model, messages, max_tokens, temperature}`` for Ollama, vLLM,
  llama.cpp's server or any OpenAI-compatible endpoint; a bearer key is sent
  when ``$LAKEVEC_API_KEY`` is set.

Both read the answer as the seed does, ``j?.choices?.[0]?.message?.content ?? ""``
(:func:`parse_reply`). :meth:`HttpGateway.chat` never raises for anything the
server sends or does: every reply becomes an answer (possibly empty, for the
gate to judge) or a :class:`ChatResult` with ``ok=False`` and an ``error``
string, which the replay records in the evidence row. A malformed gateway URL
is a usage error found before any request (:func:`check_gateway_url`).
There are no retries: one request per model call, bounded by the timeout.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from lakevec import jsonsafe
from lakevec.errors import JsonTooDeep, UsageProblem
from lakevec.replay.jsstr import js_slice, js_to_well_formed
from lakevec.settings import (
    API_KEY_ENV,
    API_MODES,
    DEFAULT_API,
    DEFAULT_TIMEOUT,
    GATEWAY_ENV,
    MAX_TOKENS,
    TEMPERATURE,
    env,
    gateway_url,
)

__all__ = [
    "ERROR_CHARS",
    "MAX_REPLY_BYTES",
    "MAX_REPLY_NESTING",
    "ChatGateway",
    "ChatResult",
    "HttpGateway",
    "check_gateway_url",
    "parse_reply",
    "provider_for",
    "utf8_decode",
]

#: Longest error text kept from a failed call (the seed's ``.slice(0, 240)``).
ERROR_CHARS = 240
#: Largest reply body read. An answer is bounded by MAX_TOKENS (a few KiB of
#: text); a bigger body is recorded as a failed call instead of filling memory.
MAX_REPLY_BYTES = 8 * 1024 * 1024
#: Deepest array/object nesting parsed. The answer sits 4 levels down; the
#: limit is fixed rather than left to the parser's recursion limit, which
#: depends on how deep the caller's stack already is.
MAX_REPLY_NESTING = 256
# Enough bytes for ERROR_CHARS UTF-16 units however the body is encoded
# (at most 3 bytes per unit, a BOM and one cut sequence).
_ERROR_BYTES = 4 * ERROR_CHARS + 8

_CLOUD_PREFIXES = ("kimi-", "qwen3-coder", "deepseek-v", "mistral-large")
_CLOUD_EXACT = frozenset({"gpt-oss:120b", "qwen3.5:397b"})
_URL_HINT = f"(set --gateway or ${GATEWAY_ENV})"

# A JSON string (an unterminated one runs to the end of the text, so a match
# never fails and the scan stays linear), then anything but a bracket.


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
    (``/v1/chat`` is appended to it).
    """
    text = (gateway_url() if url is None else url).strip()
    if not text:
        raise UsageProblem(f"the gateway URL is empty {_URL_HINT}")

    def bad(why: str) -> UsageProblem:
        return UsageProblem(f"gateway URL {text!r} {why} {_URL_HINT}")

    if any(ch.isspace() or not ch.isprintable() for ch in text):
        raise bad("contains blanks or control characters")
    try:
        parts = urlsplit(text)
    except ValueError as exc:  # "Invalid IPv6 URL"
        raise bad(f"is malformed ({exc})") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise UsageProblem(
            f"gateway URL must start with http:// or https://, got {text!r} {_URL_HINT}"
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


@dataclass(frozen=True)
class ChatResult:
    """One model call: the answer text, or why there is none."""

    ok: bool
    content: str = ""
    error: str | None = None

    @classmethod
    def failure(cls, message: str) -> ChatResult:
        return cls(ok=False, content="", error=js_to_well_formed(message))


class ChatGateway(Protocol):
    """Anything that can answer a system + user prompt with one model.

    ``api`` names the wire format in the evidence row's provenance
    (``"lakehouse"``, ``"openai"``, ``"dry-run"``...). ``chat`` never raises
    for a failed call: it returns ``ok=False`` with the reason.
    """

    api: str

    def chat(self, model: str, system: str, user: str) -> ChatResult: ...


def utf8_decode(data: bytes) -> str:
    """WHATWG "UTF-8 decode", what ``fetch``'s ``text()``/``json()`` do to a body.

    A leading BOM is dropped and every invalid sequence becomes U+FFFD, so
    arbitrary bytes always decode.
    """
    return data.decode("utf-8-sig", errors="replace")


def _js_member(value: object, key: str) -> object:
    """``value?.[key]`` on a ``JSON.parse`` result, with ``undefined`` as None.

    Objects index by key (``{"0": x}[0]`` is ``x`` in JS too), arrays by
    index; strings, numbers, booleans and null have no ``choices``,
    ``message`` or ``content`` (a string's characters would not either).
    """
    if isinstance(value, dict):
        return value.get(key)
    if isinstance(value, list) and key.isascii() and key.isdigit():
        index = int(key)
        return value[index] if index < len(value) else None
    return None


def _js_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "array" if isinstance(value, list) else "object"


def parse_reply(body: bytes, endpoint: str) -> ChatResult:
    """The answer in a 2xx reply body, read as ``j?.choices?.[0]?.message?.content ?? ""``.

    Never raises. A missing or null content is an empty answer (``ok=True``),
    which the gate fails as ``empty response``, exactly as in the seed.
    Numbers are parsed as JS numbers (floats), so an integer of any length is
    fine wherever it is; text that is not JSON, nests deeper than
    :data:`MAX_REPLY_NESTING`, or holds a non-string content is a failed call.
    """
    text = utf8_decode(body)
    try:
        # Numbers as JS reads them: an integer of any length is a float.
        payload = jsonsafe.loads(text, max_nesting=MAX_REPLY_NESTING, parse_int=float)
    except JsonTooDeep:
        return ChatResult.failure(
            f"reply from {endpoint} nests deeper than {MAX_REPLY_NESTING} levels"
        )
    except ValueError as exc:  # json.JSONDecodeError, NaN/Infinity
        msg = f"invalid JSON from {endpoint}: {exc}; body starts {text[:60]!r}"
        return ChatResult.failure(msg[:ERROR_CHARS])
    content = payload
    for key in ("choices", "0", "message", "content"):
        content = _js_member(content, key)
    if content is None:  # undefined or null: `?? ""`
        return ChatResult(ok=True, content="")
    if not isinstance(content, str):
        # The seed keeps a number/boolean/object here (`?? ""` only replaces
        # null/undefined) and then dies in the gate's `response.trim()` with
        # no evidence row. lakevec must write the row, and neither "" nor
        # String(content) would be honest (the model gave no text answer), so
        # it is a failed call: recorded as a reason, and escalation may recover.
        msg = (
            f"content is not a string: choices[0].message.content is a JSON "
            f"{_js_type(content)} in the reply from {endpoint}"
        )
        return ChatResult.failure(msg[:ERROR_CHARS])
    # A JSON "\ud800" escape decodes to a lone surrogate, which is not text:
    # it could not be written to the UTF-8 evidence log. Replace it.
    return ChatResult(ok=True, content=js_to_well_formed(content))


def _read_at_most(chunks: Iterator[bytes], limit: int) -> tuple[bytes, bool]:
    """Up to ``limit`` bytes of a body, and whether that was all of it."""
    parts: list[bytes] = []
    size = 0
    for chunk in chunks:
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(parts)[:limit], False
    return b"".join(parts), True


class HttpGateway:
    """Synchronous chat client. Pass ``client`` to inject transport (tests, proxies)."""

    def __init__(
        self,
        url: str | None = None,  # None: $LH_GATEWAY_URL or the default
        *,
        api: str = DEFAULT_API,
        timeout: float = DEFAULT_TIMEOUT,
        api_key: str | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        base = check_gateway_url(url)
        if api not in API_MODES:
            raise UsageProblem(f"unknown gateway api {api!r}; use one of {', '.join(API_MODES)}")
        if not (timeout > 0 and math.isfinite(timeout)):
            raise UsageProblem(f"--timeout must be positive seconds, got {timeout}")
        self.url = base
        self.api = api
        self.timeout = float(timeout)
        self.api_key = api_key if api_key is not None else env(API_KEY_ENV)
        self._own_client = client is None
        # follow_redirects: the seed's fetch() follows them too (307/308 keep the POST).
        self._client = (
            client
            if client is not None
            else httpx.Client(timeout=self.timeout, follow_redirects=True)
        )

    @property
    def endpoint(self) -> str:
        suffix = "/v1/chat" if self.api == "lakehouse" else "/v1/chat/completions"
        return self.url + suffix

    def request_body(self, model: str, system: str, user: str) -> dict[str, Any]:
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
            max_tokens=MAX_TOKENS,
            temperature=TEMPERATURE,
        )
        return body

    def chat(self, model: str, system: str, user: str) -> ChatResult:
        """POST one chat request; every failure comes back as ``ok=False``."""
        headers = {"content-type": "application/json"}
        if self.api == "openai" and self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        endpoint = self.endpoint
        try:
            with self._client.stream(
                "POST",
                endpoint,
                json=self.request_body(model, system, user),
                headers=headers,
                timeout=self.timeout,
            ) as resp:
                if not resp.is_success:
                    # Only the head of an error body is read: it may be huge.
                    head, _ = _read_at_most(resp.iter_bytes(), _ERROR_BYTES)
                    text = js_slice(utf8_decode(head), ERROR_CHARS)
                    return ChatResult.failure(f"HTTP {resp.status_code}: {text}")
                body, complete = _read_at_most(resp.iter_bytes(), MAX_REPLY_BYTES)
        except httpx.TimeoutException as exc:
            msg = f"timed out after {self.timeout:g}s: POST {endpoint} ({type(exc).__name__})"
            return ChatResult.failure(msg[:ERROR_CHARS])
        except httpx.ConnectError as exc:
            return ChatResult.failure(f"cannot connect to {endpoint}: {exc}"[:ERROR_CHARS])
        except httpx.HTTPError as exc:  # protocol errors, bad encodings, redirect loops...
            msg = f"{type(exc).__name__} on POST {endpoint}: {exc}"
            return ChatResult.failure(msg[:ERROR_CHARS])
        if not complete:
            return ChatResult.failure(
                f"reply from {endpoint} is larger than {MAX_REPLY_BYTES:,} bytes"
            )
        return parse_reply(body, endpoint)

    def close(self) -> None:
        if self._own_client:
            self._client.close()

    def __enter__(self) -> HttpGateway:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
