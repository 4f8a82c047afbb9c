"""Parsing JSON from outside (corpus lines, gateway replies) without ever crashing.

``json.loads`` can raise RecursionError on deep nesting (how deep depends on
the caller's stack) and ValueError on integers longer than 4,300 digits, and
it accepts NaN/Infinity, which JSON does not. :func:`loads` fixes all three:
nesting is checked against a fixed limit first, integer parsing is the
caller's choice, and the non-JSON constants are rejected.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from itertools import accumulate
from typing import Any

from lakevec.errors import JsonTooDeep

# A JSON string (an unterminated one runs to the end, so a match never fails
# and the scan stays linear), then anything that is not a bracket.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.?[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def nesting_exceeds(text: str, limit: int) -> bool:
    """Whether arrays/objects in the JSON ``text`` nest deeper than ``limit``.

    Brackets inside strings do not count. Linear, and free when the text has
    at most ``limit`` opening brackets (every real document).
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0) > limit


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def loads(text: str, *, max_nesting: int, parse_int: Callable[[str], Any] = int) -> Any:
    """Parse ``text``; raises :class:`JsonTooDeep` or ValueError (never RecursionError).

    ``parse_int`` turns integer literals into values: pass ``float`` for
    JavaScript semantics, or a function that maps over-long literals to a
    marker instead of raising.
    """
    if nesting_exceeds(text, max_nesting):
        raise JsonTooDeep(f"nested too deeply (more than {max_nesting} levels)")
    try:
        return json.loads(text, parse_int=parse_int, parse_constant=_reject_constant)
    except RecursionError:  # only if the caller's own stack is already deep
        raise JsonTooDeep("nested too deeply for the JSON parser") from None
