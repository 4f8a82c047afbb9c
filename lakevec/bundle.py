"""Context bundle and prompt assembly, behaviour-compatible with the seed replay layer.

The bundle is what the local model sees besides the task: the top retrieved
records, the accepted ones as exemplars, the partially accepted ones as
warnings, and a checklist of validation steps lifted from the accepted
records' full content. JSON keys and limits are the seed's, so rows written
by lakevec, the TypeScript and the Go runtime can be compared line by line.

Lengths and slices count UTF-16 code units, as the TypeScript seed does
(:func:`js_len`, :func:`js_slice`); the one difference left is that a cut
through a surrogate pair drops the half character instead of keeping a lone
surrogate, which cannot be written as UTF-8.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from lakevec.corpus import PlaybookRecord
from lakevec.index import StoredRecord
from lakevec.retrieve import Hit, Retriever, tokenize

__all__ = [
    "BUNDLE_TOP_K",
    "MAX_EXEMPLARS",
    "MAX_VALIDATION_STEPS",
    "MAX_WARNINGS",
    "PREVIEW_CHARS",
    "STEP_CHARS",
    "SYSTEM_PROMPT",
    "ContextBundle",
    "Prompt",
    "RetrievedArtifact",
    "build_bundle_from_hits",
    "build_context_bundle",
    "build_prompt",
    "extract_validation_steps",
    "js_len",
    "js_slice",
    "js_trim",
]

BUNDLE_TOP_K = 8
MAX_EXEMPLARS = 3
MAX_WARNINGS = 2
MAX_VALIDATION_STEPS = 6
PREVIEW_CHARS = 240
STEP_CHARS = 200
WARNING_PREVIEW_CHARS = 160

# ECMAScript WhiteSpace + LineTerminator: the set String.prototype.trim() and
# the regex class \s strip/match. Python's str.strip()/re's \s use a slightly
# different set (they include U+001C..U+001F, exclude U+FEFF).
JS_WHITESPACE = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
_WS = "[" + re.escape(JS_WHITESPACE) + "]"
_KEYWORDS = "(verify|check|assert|confirm|ensure)"
# The seed's two step patterns (JS, case-insensitive, non-unicode): a bullet
# followed by a keyword at a word boundary, or a bare keyword followed by a
# space. re.ASCII keeps IGNORECASE from folding e.g. U+212A KELVIN SIGN to
# "k" (JS /i without the u flag does not); \b is spelled out for the same reason.
_STEP_BULLET = re.compile(rf"^[-*]{_WS}*{_KEYWORDS}(?![A-Za-z0-9_])", re.IGNORECASE | re.ASCII)
_STEP_BARE = re.compile(rf"^{_WS}*{_KEYWORDS}{_WS}", re.IGNORECASE | re.ASCII)


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


class RetrievedArtifact(BaseModel):
    """One retrieved record as the bundle (and the evidence row) shows it."""

    model_config = ConfigDict(extra="forbid")

    rag_id: str
    source_run_id: str
    title: str
    content_preview: str
    success_score: str
    tags: list[str]
    score: float

    @classmethod
    def from_hit(cls, hit: Hit) -> RetrievedArtifact:
        rec = hit.record
        return cls(
            rag_id=rec.id,
            source_run_id=rec.source_run_id,
            title=rec.title,
            content_preview=js_slice(rec.content, PREVIEW_CHARS),
            success_score=rec.success_score,
            tags=list(rec.tags),
            # Dense retrievers may hand back numpy scalars; the row wants a float.
            score=float(hit.score),
        )


class ContextBundle(BaseModel):
    """The seed's ContextBundle: exemplars, warnings, checklist and a size estimate."""

    model_config = ConfigDict(extra="forbid")

    retrieved_playbooks: list[RetrievedArtifact]
    prior_successful_outputs: list[RetrievedArtifact]
    failure_patterns: list[RetrievedArtifact]
    validation_steps: list[str]
    bundle_token_estimate: int


def _is_step(line: str) -> bool:
    return bool(_STEP_BULLET.search(line) or _STEP_BARE.search(line))


def extract_validation_steps(records: Sequence[PlaybookRecord]) -> list[str]:
    """Checklist lines from the records' full content, at most 6, each cut to 200 chars.

    ``records`` must already be in the order the steps should be collected
    (the seed walks the corpus in file order).
    """
    steps: list[str] = []
    for rec in records:
        for line in rec.content.split("\n"):
            trimmed = js_trim(line)
            if _is_step(trimmed):
                steps.append(js_slice(trimmed, STEP_CHARS))
                if len(steps) >= MAX_VALIDATION_STEPS:
                    return steps
    return steps


def _corpus_records(retriever: Retriever) -> Sequence[PlaybookRecord] | None:
    """The retriever's records in corpus file order, when it keeps them (Jaccard does)."""
    records = getattr(retriever, "records", None)
    return records if isinstance(records, Sequence) else None


def build_bundle_from_hits(
    hits: Sequence[Hit],
    *,
    k: int = BUNDLE_TOP_K,
    corpus: Sequence[PlaybookRecord] | None = None,
) -> ContextBundle:
    """Apply the seed's bundle rules to ranked hits (best first).

    Hits beyond ``k`` and hits with a non-positive score are dropped.
    Validation steps come from the accepted records' full content in corpus
    order: with ``corpus`` exactly as the seed walks it (every line whose id
    was accepted, duplicates included); otherwise by the index record
    store's corpus position, falling back to retrieval order.
    """
    top_hits = [h for h in list(hits)[: max(k, 0)] if h.score > 0]
    top = [RetrievedArtifact.from_hit(h) for h in top_hits]
    accepted_hits = [h for h in top_hits if h.record.success_score == "accepted"][:MAX_EXEMPLARS]
    accepted = [RetrievedArtifact.from_hit(h) for h in accepted_hits]
    warnings = [t for t in top if t.success_score == "partially_accepted"][:MAX_WARNINGS]

    # The seed re-reads each accepted id's record from the corpus, so the
    # FULL content (not the 240-char preview) feeds the checklist.
    if corpus is not None:
        ids = {h.record.id for h in accepted_hits}
        step_records = [r for r in corpus if r.id in ids]
    else:
        step_records = [h.record for h in accepted_hits]
        if all(isinstance(r, StoredRecord) for r in step_records):
            step_records.sort(key=lambda r: r.position if isinstance(r, StoredRecord) else 0)
    steps = extract_validation_steps(step_records)

    total_chars = sum(js_len(a.content_preview) + js_len(a.title) for a in [*accepted, *warnings])
    total_chars += sum(js_len(s) for s in steps)
    return ContextBundle(
        retrieved_playbooks=top,
        prior_successful_outputs=accepted,
        failure_patterns=warnings,
        validation_steps=steps,
        bundle_token_estimate=math.ceil(total_chars / 4),
    )


def build_context_bundle(retriever: Retriever, task: str, k: int = BUNDLE_TOP_K) -> ContextBundle:
    """Retrieve the top ``k`` records for ``task`` and build the seed's bundle."""
    hits = retriever.search(task, k)
    return build_bundle_from_hits(hits, k=k, corpus=_corpus_records(retriever))


# ─── Prompt assembly ─────────────────────────────────────────────────────
# The wording is the seed's, character for character: the local model's
# behaviour (and A/B comparisons against the other runtimes) depend on it.

SYSTEM_PROMPT = " ".join(
    [
        "You are a Lakehouse task executor. Stay grounded — only assert what you can "
        "derive from the prior successful patterns or the task itself.",
        "Do NOT hedge. Do NOT say 'as an AI'. Produce a concrete actionable answer.",
        "When prior successful outputs are provided, follow their style and format.",
    ]
)


@dataclass(frozen=True)
class Prompt:
    """System and user message texts for one model call."""

    system: str
    user: str


def build_prompt(task: str, bundle: ContextBundle | None) -> Prompt:
    """Assemble the seed's prompt; ``bundle=None`` is the no-retrieval baseline."""
    if bundle is None:
        return Prompt(SYSTEM_PROMPT, f"Task: {task}\n\nProduce the answer.")
    lines: list[str] = []
    if bundle.prior_successful_outputs:
        lines += ["## Prior successful runs on similar tasks", ""]
        for art in bundle.prior_successful_outputs:
            lines += [f"### {art.title} (score: {art.success_score})", art.content_preview, ""]
    if bundle.failure_patterns:
        lines += ["## Patterns that produced PARTIAL results — avoid these failure modes", ""]
        lines += [
            f"- {art.title}: {js_slice(art.content_preview, WARNING_PREVIEW_CHARS)}"
            for art in bundle.failure_patterns
        ]
        lines.append("")
    if bundle.validation_steps:
        lines.append("## Validation checklist (from accepted runs)")
        lines += [f"- {step}" for step in bundle.validation_steps]
        lines.append("")
    lines += [
        "## Task",
        task,
        "",
        "Produce the answer following the style of the prior successful runs above.",
    ]
    return Prompt(SYSTEM_PROMPT, "\n".join(lines))


def checklist_tokens(bundle: ContextBundle | None) -> set[str]:
    """Every token of the bundle's validation steps (used by the gate)."""
    tokens: set[str] = set()
    if bundle is not None:
        for step in bundle.validation_steps:
            tokens |= tokenize(step)
    return tokens
