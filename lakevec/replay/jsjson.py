"""``JSON.stringify`` as the TypeScript seed writes it, numbers included.

Rows from the seed, the Go port and lakevec share one evidence log and are
compared byte for byte, and a verifier re-encodes a row to check it. Python's
``json`` writes ``1.0`` where JavaScript writes ``1`` and ``7.99744081893794e-05``
where JavaScript writes ``0.0000799744081893794``; :func:`js_number` is
ECMAScript's Number::toString (ECMA-262 §6.1.6.1.20) on top of Python's
shortest round-trip digits (``repr``), which are the digits JavaScript picks.

:func:`stringify` is the one JSON writer for rows, tapes and request bodies:
compact, UTF-8 text as is (like ``JSON.stringify``), floats via
:func:`js_number`; ``sort_keys=True`` gives the canonical form tapes are hashed in.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["js_number", "stringify"]

_encode_str = json.encoder.encode_basestring


def js_number(value: float) -> str:
    """``String(value)`` in JavaScript for a finite number.

    Integer-valued numbers have no ``.0``; the exponent form is used only for
    magnitudes below 1e-6 or from 1e21 up (``1e-7``, ``1.5e-7``, ``1e+21``);
    ``-0`` is ``0``. Raises ValueError for NaN and infinities (JSON has none).
    """
    if not math.isfinite(value):
        raise ValueError(f"{value!r} is not a JSON number")
    if value == 0:
        return "0"
    text = repr(float(value))
    sign = "-" if text.startswith("-") else ""
    text = text.lstrip("-")
    mantissa, _, exp_text = text.partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    # value = 0.<digits> × 10^point, counting leading zeros dropped above.
    point = len(whole) + (int(exp_text) if exp_text else 0)
    point -= len(whole + frac) - len((whole + frac).lstrip("0"))
    digits = digits.rstrip("0") or "0"
    k = len(digits)
    if k <= point <= 21:
        return sign + digits + "0" * (point - k)
    if 0 < point <= 21:
        return sign + digits[:point] + "." + digits[point:]
    if -6 < point <= 0:
        return sign + "0." + "0" * -point + digits
    exponent = point - 1
    exp_sign = "+" if exponent > 0 else "-"
    head = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{sign}{head}e{exp_sign}{abs(exponent)}"


def _write(value: Any, out: list[str], sort_keys: bool) -> None:
    if isinstance(value, str):
        out.append(_encode_str(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(js_number(value))
    elif isinstance(value, Mapping):
        items = sorted(value.items()) if sort_keys else value.items()
        out.append("{")
        first = True
        for key, item in items:
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be strings, not {type(key).__name__}")
            if not first:
                out.append(",")
            first = False
            out.append(_encode_str(key))
            out.append(":")
            _write(item, out, sort_keys)
        out.append("}")
    elif isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out, sort_keys)
        out.append("]")
    else:
        raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def stringify(value: Any, *, sort_keys: bool = False) -> str:
    """Compact JSON text of ``value`` as ``JSON.stringify`` writes it.

    Strings keep non-ASCII characters (lone surrogates too: the caller
    decides how to encode them); control characters, ``"`` and ``\\`` are
    escaped exactly as ``JSON.stringify`` escapes them. Raises ValueError for
    NaN/infinity and TypeError for values JSON cannot hold.
    """
    out: list[str] = []
    _write(value, out, sort_keys)
    return "".join(out)
