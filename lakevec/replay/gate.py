"""The deterministic validation gate (never an LLM), identical to the seed's.

Every failed check names itself in ``reasons``; the reason strings are the
seed's verbatim (including the JavaScript regex literals such as
``/as an ai/i``) because the shared evidence log is compared across runtimes.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

from lakevec.replay.bundle import ContextBundle, checklist_tokens
from lakevec.replay.jsstr import js_len, js_trim
from lakevec.retrieval.jaccard import tokenize

__all__ = [
    "HEDGE_PATTERNS",
    "MIN_RESPONSE_CHARS",
    "NO_CHECKLIST_OVERLAP",
    "ValidationResult",
    "validate_response",
]

MIN_RESPONSE_CHARS = 80

# (JS literal as the seed prints it, Python equivalent). re.ASCII mirrors JS
# /i without the u flag: only ASCII letters fold.
HEDGE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (literal, re.compile(source, re.IGNORECASE | re.ASCII))
    for literal, source in (
        ("/as an ai/i", "as an ai"),
        ("/i cannot/i", "i cannot"),
        ("/i'm sorry, but/i", "i'm sorry, but"),
        ("/i don'?t have access/i", "i don'?t have access"),
        ("/i am unable to/i", "i am unable to"),
    )
)

NO_CHECKLIST_OVERLAP = (
    "response shares no tokens with validation checklist (may not have followed prior patterns)"
)


class ValidationResult(BaseModel):
    """Outcome of the gate; ``reasons`` is empty when it passed on the first try."""

    model_config = ConfigDict(extra="forbid")

    passed: bool
    reasons: list[str]


def validate_response(response: str, bundle: ContextBundle | None) -> ValidationResult:
    """Run the seed's checks: empty, too short, hedge phrases, checklist overlap."""
    trimmed = js_trim(response)
    if not trimmed:
        # An empty answer fails alone: the other checks would only add noise.
        return ValidationResult(passed=False, reasons=["empty response"])
    reasons: list[str] = []
    length = js_len(trimmed)  # UTF-16 units, as the seed measures
    if length < MIN_RESPONSE_CHARS:
        reasons.append(f"response too short ({length} chars; min {MIN_RESPONSE_CHARS})")
    for literal, pattern in HEDGE_PATTERNS:
        if pattern.search(trimmed):
            reasons.append(f"filler/hedge phrase detected: {literal}")
    wanted = checklist_tokens(bundle)
    # Soft check: one shared token with the checklist is enough.
    if wanted and not (wanted & tokenize(trimmed)):
        reasons.append(NO_CHECKLIST_OVERLAP)
    return ValidationResult(passed=not reasons, reasons=reasons)
