"""The context bundle, behaviour-compatible with the seed replay layer.

The bundle is what the local model sees besides the task: the top retrieved
records, the accepted ones as exemplars, the partially accepted ones as
warnings, and a checklist of validation steps lifted from the accepted
records' full content. JSON keys and limits are the seed's, so rows written
by lakevec, the TypeScript and the Go runtime can be compared line by line.
Lengths and slices count UTF-16 code units (:mod:`lakevec.replay.jsstr`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from lakevec.corpus import PlaybookRecord
from lakevec.index.manifest import StoredRecord
from lakevec.replay.jsstr import JS_WHITESPACE, js_len, js_slice, js_trim
from lakevec.retrieval.base import Hit, Retriever
from lakevec.retrieval.jaccard import tokenize
from lakevec.settings import BUNDLE_TOP_K

__all__ = [
    "MAX_EXEMPLARS",
    "MAX_VALIDATION_STEPS",
    "MAX_WARNINGS",
    "PREVIEW_CHARS",
    "STEP_CHARS",
    "WARNING_PREVIEW_CHARS",
    "ContextBundle",
    "RetrievedArtifact",
    "build_bundle_from_hits",
    "build_context_bundle",
    "checklist_tokens",
    "extract_validation_steps",
]

MAX_EXEMPLARS = 3
MAX_WARNINGS = 2
MAX_VALIDATION_STEPS = 6
PREVIEW_CHARS = 240
STEP_CHARS = 200
#: How much of a warning's preview the prompt quotes (see lakevec.replay.prompt).
WARNING_PREVIEW_CHARS = 160

_WS = "[" + re.escape(JS_WHITESPACE) + "]"
_KEYWORDS = "(verify|check|assert|confirm|ensure)"
# The seed's two step patterns (JS, case-insensitive, non-unicode): a bullet
# followed by a keyword at a word boundary, or a bare keyword followed by a
# space. re.ASCII keeps IGNORECASE from folding e.g. U+212A KELVIN SIGN to
# "k" (JS /i without the u flag does not); \b is spelled out for the same reason.
_STEP_BULLET = re.compile(rf"^[-*]{_WS}*{_KEYWORDS}(?![A-Za-z0-9_])", re.IGNORECASE | re.ASCII)
_STEP_BARE = re.compile(rf"^{_WS}*{_KEYWORDS}{_WS}", re.IGNORECASE | re.ASCII)


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


def _corpus_position(record: PlaybookRecord) -> int:
    return record.position if isinstance(record, StoredRecord) else 0


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
            step_records.sort(key=_corpus_position)
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
    """Retrieve the top ``k`` records for ``task`` and build the seed's bundle.

    A retriever that scans the corpus (``retriever.corpus``) hands its rows
    over in file order, which is the order the seed collects checklist steps in.
    """
    hits = retriever.search(task, k)
    return build_bundle_from_hits(hits, k=k, corpus=retriever.corpus)


def checklist_tokens(bundle: ContextBundle | None) -> set[str]:
    """Every token of the bundle's validation steps (used by the gate)."""
    tokens: set[str] = set()
    if bundle is not None:
        for step in bundle.validation_steps:
            tokens |= tokenize(step)
    return tokens
