"""Which code replays a tape, per gateway api, and the helper for in-process models.

``lakevec verify`` is gateway-agnostic. For a tape recorded with api ``A`` it
imports the module :data:`REPLAYERS` names for ``A`` and calls its
``replay_gateway(run, player)``, which must return a
:class:`~lakevec.replay.chat.RecordingGateway` that, for each call,

1. rebuilds the request bytes from ``(model, system, user, options)`` and the
   tape's ``run.gateway`` configuration, and takes the next exchange from
   ``player`` with them (:meth:`~lakevec.replay.tape.TapePlayer.take` refuses
   any byte difference), recording it on the run's recorder; and
2. turns the recorded response (or error) into the same
   :class:`~lakevec.replay.reply.ChatResult` the live call returned.

The module is imported only when a tape of that api is verified, so an
optional backend (llama.cpp) costs nothing elsewhere. HTTP gateways do this
at the transport (``lakevec.replay.gateway.replay_gateway``); an in-process
model can use :class:`InProcessReplay` and :func:`in_process_exchange`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Protocol

from pydantic import JsonValue

from lakevec.replay.chat import DEFAULT_OPTIONS, ChatOptions, RecordingGateway
from lakevec.replay.reply import ChatResult
from lakevec.replay.tape import (
    Body,
    Exchange,
    ExchangeError,
    TapePlayer,
    TapeRecorder,
    TapeRun,
    reported_fields,
)

__all__ = [
    "REPLAYERS",
    "InProcessReplay",
    "Replayer",
    "in_process_exchange",
    "replayer_for",
]

#: api → module defining ``replay_gateway(run: TapeRun, player: TapePlayer)``.
REPLAYERS: dict[str, str] = {
    "lakehouse": "lakevec.replay.gateway",
    "openai": "lakevec.replay.gateway",
    "local": "lakevec.replay.local",
}


class Replayer(Protocol):
    def __call__(self, run: TapeRun, player: TapePlayer) -> RecordingGateway: ...


def replayer_for(api: str) -> Replayer | str:
    """The replayer of ``api``, or why there is none (a sentence)."""
    module_name = REPLAYERS.get(api)
    if module_name is None:
        return f"no replayer for gateway api {api!r}"
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        return f"the replayer of api {api!r} cannot be loaded ({exc})"
    function = getattr(module, "replay_gateway", None)
    if not callable(function):
        return f"{module_name} has no replay_gateway(run, player)"
    replayer: Replayer = function
    return replayer


def in_process_exchange(
    call: int,
    *,
    api: str,
    model: str,
    request: bytes,
    response: bytes | None,
    wall_ms: float,
    options: ChatOptions = DEFAULT_OPTIONS,
    error: ExchangeError | None = None,
    content_type: str | None = "application/json",
) -> Exchange:
    """The exchange of one in-process model call (no method, URL or status).

    ``request`` and ``response`` are the gateway's own byte encodings (e.g.
    the JSON of its request and of an OpenAI-shaped completion); usage,
    finish_reason and model are read from ``response`` when it is such JSON.
    A failed call has ``response=None`` and an ``error``.
    """
    usage, finish, served = reported_fields(response) if response is not None else (None,) * 3
    return Exchange(
        call=call, api=api, model=model, transport="in-process", request=Body.of(request),
        max_tokens=options.max_tokens, temperature=options.temperature,
        content_type=content_type if response is not None else None,
        response=Body.of(response) if response is not None else None, error=error,
        wall_ms=round(max(0.0, wall_ms), 3), usage=usage, finish_reason=finish,
        served_model=served,
    )


class InProcessReplay:
    """A replaying gateway for an in-process model, from its two pure functions.

    ``request_bytes(model, system, user, options)`` must be the live gateway's
    own; ``parse(exchange)`` turns a recorded exchange into the ChatResult the
    live call returned (the live gateway should use the same function).
    """

    def __init__(
        self,
        api: str,
        player: TapePlayer,
        *,
        request_bytes: Callable[[str, str, str, ChatOptions], bytes],
        parse: Callable[[Exchange], ChatResult],
        config: dict[str, JsonValue],
    ) -> None:
        self.api = api
        self._player = player
        self._request_bytes = request_bytes
        self._parse = parse
        self._config = config
        self._calls = 0

    def request_bytes(
        self, model: str, system: str, user: str, options: ChatOptions = DEFAULT_OPTIONS
    ) -> bytes:
        return self._request_bytes(model, system, user, options)

    def tape_config(self) -> dict[str, JsonValue]:
        return dict(self._config)

    def chat(
        self, model: str, system: str, user: str, *, options: ChatOptions = DEFAULT_OPTIONS,
        recorder: TapeRecorder | None = None,
    ) -> ChatResult:
        self._calls += 1
        call = recorder.begin_call() if recorder is not None else self._calls
        recorded = self._player.take(call, self.request_bytes(model, system, user, options))
        if recorder is not None:
            recorder.record(recorded)
        return self._parse(recorded)
