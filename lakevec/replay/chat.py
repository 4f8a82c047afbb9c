"""The chat seam: what the replay engine asks of a model, and what recording adds.

:class:`ChatGateway` answers one system + user prompt with one model and
never raises for a failed call. :class:`RecordingGateway` is a gateway whose
calls go on the run's tape (:mod:`lakevec.replay.tape`) and can be replayed
by ``lakevec verify``: ``HttpGateway`` over HTTP, and any in-process model
that implements the same two methods (see :mod:`lakevec.replay.replayers`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from pydantic import JsonValue

from lakevec.replay.reply import ChatResult
from lakevec.replay.tape import TapeRecorder
from lakevec.settings import MAX_TOKENS, TEMPERATURE

__all__ = ["DEFAULT_OPTIONS", "ChatGateway", "ChatOptions", "ChatResult", "RecordingGateway"]


@dataclass(frozen=True)
class ChatOptions:
    """Sampling options sent with every call (the seed's 1500 tokens at temperature 0.1)."""

    max_tokens: int = MAX_TOKENS
    temperature: float = TEMPERATURE


DEFAULT_OPTIONS = ChatOptions()


class ChatGateway(Protocol):
    """Anything that can answer a system + user prompt with one model.

    ``api`` names the wire format in the evidence row's provenance
    (``"lakehouse"``, ``"openai"``, ``"local"``, ``"dry-run"``...). ``chat``
    never raises for a failed call: it returns ``ok=False`` with the reason.
    A recording gateway appends each call's exchanges to ``recorder``.
    """

    api: str

    def chat(
        self, model: str, system: str, user: str, *, options: ChatOptions = DEFAULT_OPTIONS,
        recorder: TapeRecorder | None = None,
    ) -> ChatResult: ...


@runtime_checkable
class RecordingGateway(ChatGateway, Protocol):
    """A gateway whose calls go on the run's tape and can be verified offline.

    ``request_bytes`` is exactly what one call sends (the tape's request);
    ``tape_config`` is the JSON its replayer (``replay_gateway`` in the
    gateway's module, see :mod:`lakevec.replay.replayers`) needs to rebuild
    it, without secrets. ``chat`` calls ``recorder.begin_call()`` once and
    ``recorder.record(exchange)`` for each exchange of the call.
    """

    def request_bytes(
        self, model: str, system: str, user: str, options: ChatOptions = DEFAULT_OPTIONS
    ) -> bytes: ...

    def tape_config(self) -> dict[str, JsonValue]: ...
