"""Chat gateway client over httpx.

Two wire formats:

* ``lakehouse`` (the seed's): ``POST {url}/v1/chat`` with
  ``{provider, model, messages, max_tokens, temperature}``; the provider is
  derived from the model name by :func:`provider_for`.
* ``openai``: ``POST {url}/v1/chat/completions`` with
  ``{model, messages, max_tokens, temperature}`` for Ollama, vLLM,
  llama.cpp's server or any OpenAI-compatible endpoint; a bearer key is sent
  when ``$LAKEVEC_API_KEY`` is set.

Both read the answer at ``choices[0].message.content``. A failed call never
raises: it returns a :class:`ChatResult` with ``ok=False`` and an ``error``
string in the seed's style, which the replay records in the evidence row.
There are no retries: one request per model call, bounded by the timeout.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Protocol, get_args

import httpx

from lakevec.errors import UsageProblem

__all__ = [
    "API_KEY_ENV",
    "DEFAULT_GATEWAY_URL",
    "DEFAULT_TIMEOUT",
    "GATEWAY_ENV",
    "MAX_TOKENS",
    "TEMPERATURE",
    "ApiMode",
    "ChatGateway",
    "ChatResult",
    "HttpGateway",
    "provider_for",
]

ApiMode = Literal["lakehouse", "openai"]
API_MODES: tuple[str, ...] = get_args(ApiMode)

GATEWAY_ENV = "LH_GATEWAY_URL"
API_KEY_ENV = "LAKEVEC_API_KEY"
DEFAULT_GATEWAY_URL = "http://localhost:3100"
DEFAULT_TIMEOUT = 180.0
MAX_TOKENS = 1500
TEMPERATURE = 0.1
ERROR_CHARS = 240

_CLOUD_PREFIXES = ("kimi-", "qwen3-coder", "deepseek-v", "mistral-large")
_CLOUD_EXACT = frozenset({"gpt-oss:120b", "qwen3.5:397b"})


def provider_for(model: str) -> str:
    """The seed's routing: namespaced → openrouter, known cloud models → ollama_cloud."""
    if "/" in model:
        return "openrouter"
    if model.startswith(_CLOUD_PREFIXES) or model in _CLOUD_EXACT:
        return "ollama_cloud"
    return "ollama"


@dataclass(frozen=True)
class ChatResult:
    """One model call: the answer text, or why there is none."""

    ok: bool
    content: str = ""
    error: str | None = None

    @classmethod
    def failure(cls, message: str) -> ChatResult:
        return cls(ok=False, content="", error=message)


class ChatGateway(Protocol):
    """Anything that can answer a system + user prompt with one model."""

    def chat(self, model: str, system: str, user: str) -> ChatResult: ...


def gateway_url_from_env() -> str:
    return os.environ.get(GATEWAY_ENV) or DEFAULT_GATEWAY_URL


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _extract_content(payload: Any) -> str | None:
    try:
        content = payload["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None
    if not isinstance(content, str):
        return None
    # A JSON "\ud800" escape decodes to a lone surrogate, which is not text:
    # it could not be written to the UTF-8 evidence log. Replace it.
    return _LONE_SURROGATE.sub("\ufffd", content)


class HttpGateway:
    """Synchronous chat client. Pass ``client`` to inject transport (tests, proxies)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        api: str = "lakehouse",
        timeout: float = DEFAULT_TIMEOUT,
        api_key: str | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        base = (url or gateway_url_from_env()).strip().rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise UsageProblem(
                f"gateway URL must start with http:// or https://, got {base!r} "
                f"(set --gateway or ${GATEWAY_ENV})"
            )
        if api not in API_MODES:
            raise UsageProblem(f"unknown gateway api {api!r}; use one of {', '.join(API_MODES)}")
        if not timeout > 0:
            raise UsageProblem(f"--timeout must be positive seconds, got {timeout}")
        self.url = base
        self.api = api
        self.timeout = float(timeout)
        self.api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None
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
            resp = self._client.post(
                endpoint,
                json=self.request_body(model, system, user),
                headers=headers,
                timeout=self.timeout,
            )
        except httpx.TimeoutException as exc:
            msg = f"timed out after {self.timeout:g}s: POST {endpoint} ({type(exc).__name__})"
            return ChatResult.failure(msg[:ERROR_CHARS])
        except httpx.ConnectError as exc:
            return ChatResult.failure(f"cannot connect to {endpoint}: {exc}"[:ERROR_CHARS])
        except httpx.HTTPError as exc:
            msg = f"{type(exc).__name__} on POST {endpoint}: {exc}"
            return ChatResult.failure(msg[:ERROR_CHARS])
        if not resp.is_success:
            return ChatResult.failure(f"HTTP {resp.status_code}: {resp.text[:ERROR_CHARS]}")
        try:
            payload = json.loads(resp.content)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            msg = f"invalid JSON from {endpoint}: {exc}; body starts {resp.text[:60]!r}"
            return ChatResult.failure(msg[:ERROR_CHARS])
        content = _extract_content(payload)
        if content is None:
            msg = f"no string at choices[0].message.content in the response from {endpoint}"
            return ChatResult.failure(msg[:ERROR_CHARS])
        return ChatResult(ok=True, content=content)

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
