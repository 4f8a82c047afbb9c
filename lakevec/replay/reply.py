"""Reading a model's reply as the seed does: ``j?.choices?.[0]?.message?.content ?? ""``.

:func:`parse_reply` never raises. Whatever bytes a server sends become an
answer (possibly empty, for the gate to judge) or a failed call
(:class:`ChatResult` with ``ok=False`` and an ``error``), which the replay
records in the evidence row. Verification feeds recorded bytes through the
same function, so a reply is judged the same way live and on replay.
"""

from __future__ import annotations

from dataclasses import dataclass

from lakevec import jsonsafe
from lakevec.errors import JsonTooDeep
from lakevec.replay.jsstr import js_to_well_formed

__all__ = [
    "ERROR_CHARS",
    "MAX_REPLY_NESTING",
    "ChatResult",
    "parse_reply",
    "utf8_decode",
]

#: Longest error text kept from a failed call (the seed's ``.slice(0, 240)``).
ERROR_CHARS = 240
#: Deepest array/object nesting parsed. The answer sits 4 levels down; the
#: limit is fixed rather than left to the parser's recursion limit, which
#: depends on how deep the caller's stack already is.
MAX_REPLY_NESTING = 256


@dataclass(frozen=True)
class ChatResult:
    """One model call: the answer text, or why there is none."""

    ok: bool
    content: str = ""
    error: str | None = None

    @classmethod
    def failure(cls, message: str) -> ChatResult:
        return cls(ok=False, content="", error=js_to_well_formed(message))


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
