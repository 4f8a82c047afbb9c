"""JavaScript string semantics the seed's rows depend on.

The TypeScript seed measures and cuts text in UTF-16 code units and trims
ECMAScript whitespace; rows are compared across runtimes, so lakevec does the
same. The one difference left is that a cut through a surrogate pair drops the
half character instead of keeping a lone surrogate, which cannot be written as
UTF-8.
"""

from __future__ import annotations

import re

__all__ = ["JS_WHITESPACE", "js_len", "js_slice", "js_to_well_formed", "js_trim"]

# ECMAScript WhiteSpace + LineTerminator: the set String.prototype.trim() and
# the regex class \s strip/match. Python's str.strip()/re's \s use a slightly
# different set (they include U+001C..U+001F, exclude U+FEFF).
JS_WHITESPACE = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def js_trim(text: str) -> str:
    """``String.prototype.trim()``: strip ECMAScript whitespace from both ends."""
    return text.strip(JS_WHITESPACE)


def js_len(text: str) -> int:
    """``text.length`` in JavaScript: UTF-16 code units (astral characters count 2)."""
    if text.isascii():
        return len(text)
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def js_slice(text: str, n: int) -> str:
    """``text.slice(0, n)`` in UTF-16 code units; never leaves half a surrogate pair."""
    if n <= 0:
        return ""
    if text.isascii():
        return text[:n]
    units = 0
    for i, ch in enumerate(text):
        units += 2 if ord(ch) > 0xFFFF else 1
        if units > n:
            return text[:i]
    return text


def js_to_well_formed(text: str) -> str:
    """``String.prototype.toWellFormed()``: every lone surrogate becomes U+FFFD.

    A JSON ``"\\ud800"`` escape decodes to a lone surrogate, which is not text:
    it cannot be encoded as UTF-8 (the evidence log, an HTTP body).
    """
    if text.isascii():
        return text
    return _LONE_SURROGATE.sub("\ufffd", text)
