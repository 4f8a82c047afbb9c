"""The ``strict`` gate: the seed's checks plus three a weak model trips over.

The seed gate (:func:`lakevec.replay.gate.validate_response`) passes an
answer that is long enough, has no hedge phrase and shares one token with the
checklist. With a 135M model that lets through answers that only repeat the
prompt back, answers cut off mid-sentence at the token limit, and reasoning
that never reached an answer. :func:`strict_validate` runs the seed gate and
adds a reason for each of those:

* **Reasoning blocks.** Closed ``<think>…</think>`` blocks are removed first and
  every check (the seed's included) judges only what is left: the reasoning is
  not the answer, and it would otherwise satisfy the checklist overlap by
  thinking aloud about the checklist. An opening ``<think>`` with no closing
  tag fails (:data:`UNFINISHED_THINK`); the text from it on is reasoning, so
  only what precedes it is judged (usually nothing: ``empty response``).
* **Cut off.** ``finish_reason == "length"`` fails (:data:`CUT_OFF`): the model
  ran into ``max_tokens`` (a 135M model usually because it loops), so the
  answer is unfinished whatever it says.
* **Echo.** The answer fails when at least half of its words
  (:data:`ECHO_THRESHOLD`) lie inside a run of :data:`ECHO_NGRAM` or more
  consecutive words that also appears verbatim in the prompt (system + user
  text), see :func:`echo_share`. Words are lower-cased ``\\w+`` runs, so
  re-formatting (bullets, headings, case) does not hide a copy. Eight words
  make a chance match rare (shared phrases such as "the gateway should stop
  calling it" are shorter) while a copied sentence, step or exemplar line is
  caught; quoting one checklist step inside an answer of one's own stays well
  under half. At or above half, most of the answer is the prompt's text: an
  answer that restates the task, or pastes the exemplars or checklist back,
  did not do the task (the corpus records the same lesson in pb-0044:
  "repeating checklist words is not evidence").

``bundle`` is whatever supplies the checklist the seed gate checks, and
``prompt`` is what the model saw; they are separate so that an A/B can judge
a no-retrieval answer against the same checklist as its retrieval twin while
measuring echo against the prompt that answer actually got.
"""

from __future__ import annotations

import re

from lakevec.replay.bundle import ContextBundle
from lakevec.replay.gate import ValidationResult, validate_response
from lakevec.replay.prompt import Prompt

__all__ = [
    "CUT_OFF",
    "ECHO_NGRAM",
    "ECHO_THRESHOLD",
    "UNFINISHED_THINK",
    "echo_reason",
    "echo_share",
    "strict_validate",
    "strip_reasoning",
]

ECHO_NGRAM = 8
ECHO_THRESHOLD = 0.5
CUT_OFF = "answer cut off at the token limit (finish_reason: length)"
UNFINISHED_THINK = "unfinished <think> block (reasoning never reached an answer)"

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.IGNORECASE | re.DOTALL)
_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
_WORD = re.compile(r"\w+")


def strip_reasoning(response: str) -> tuple[str, bool]:
    """The answer without ``<think>`` blocks, and whether one was left unfinished.

    Closed blocks are removed; an unclosed ``<think>`` cuts the answer there.
    """
    visible = _THINK_BLOCK.sub("", response)
    match = _THINK_OPEN.search(visible)
    if match is None:
        return visible, False
    return visible[: match.start()], True


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def echo_share(answer: str, prompt_text: str, n: int = ECHO_NGRAM) -> float:
    """Share of the answer's words inside a run of ``n``+ words copied from the prompt.

    A word is covered when some ``n`` consecutive answer words containing it
    also occur, consecutively and in order, in the prompt. 0.0 for an answer of
    fewer than ``n`` words (too short to tell; the seed gate's length check
    covers those).
    """
    words = _words(answer)
    if len(words) < n:
        return 0.0
    source = _words(prompt_text)
    grams = {tuple(source[i : i + n]) for i in range(len(source) - n + 1)}
    covered = [False] * len(words)
    for i in range(len(words) - n + 1):
        if tuple(words[i : i + n]) in grams:
            covered[i : i + n] = [True] * n
    return sum(covered) / len(words)


def echo_reason(share: float) -> str:
    return (
        f"answer mostly echoes the prompt ({share:.0%} of its words are copied runs of "
        f"{ECHO_NGRAM}+ words; max {ECHO_THRESHOLD:.0%})"
    )


def strict_validate(
    response: str,
    bundle: ContextBundle | None,
    *,
    prompt: Prompt,
    finish_reason: str | None,
) -> ValidationResult:
    """The seed gate on the visible answer, then the strict checks; seed reasons first."""
    visible, unfinished = strip_reasoning(response)
    verdict = validate_response(visible, bundle)
    reasons = list(verdict.reasons)
    if unfinished:
        reasons.append(UNFINISHED_THINK)
    if finish_reason == "length":
        reasons.append(CUT_OFF)
    share = echo_share(visible, f"{prompt.system}\n{prompt.user}")
    if share >= ECHO_THRESHOLD:
        reasons.append(echo_reason(share))
    return ValidationResult(passed=not reasons, reasons=reasons)
