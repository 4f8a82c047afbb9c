"""Grounding: how much of a task's gold playbook an answer actually uses.

The gate judges form (length, hedges, one shared checklist token); grounding
judges substance against a known answer source, and never looks at the gate,
the bundle or the prompt. For a task whose gold playbook record is known:

* **Tokens.** The seed tokenizer (:func:`lakevec.retrieval.jaccard.tokenize`:
  lower-case ``[a-z0-9_]`` runs of 3+ characters) minus :data:`STOP_WORDS` (function
  words, and the checklist verbs verify/check/assert/confirm/ensure, which
  every step and many answers contain). Tokens of the task text are removed
  too: an answer earns nothing for repeating the question. No stemming.
* **Steps** (a). The gold's validation steps, exactly as the replay collects
  them (:func:`lakevec.replay.bundle.extract_validation_steps` on the gold
  record: bullet or bare lines starting with a checklist verb, at most 6).
  A step is *used* when at least half of its key tokens (rounded up) occur in
  the answer. Steps left with no key token are not counted.
  ``steps = used / counted``, or ``None`` when nothing is counted.
* **Key terms** (b). The gold's :data:`KEY_TERMS` most distinctive tokens:
  tokens of its title + content ranked by ``tf × idf`` with the BM25 idf
  ``ln(1 + (N - df + 0.5) / (df + 0.5))`` over the corpus (ties by token),
  so words every playbook uses rank low and the gold's own identifiers
  (``ollama_cloud``, ``half_open``, ``reconcile``) rank high.
  ``terms = present in the answer / KEY_TERMS`` (fewer when the gold has fewer).
* **Score** = the mean of the components that exist (``terms`` always does for
  a real record): 1.0 when the answer carries every step and key term, 0.0
  when it shares nothing with the gold beyond stop words and the task.

It measures use, not truth: an answer that pastes the gold's text scores
high, so read it next to the strict gate's echo check, which fails answers
that mostly copy the prompt.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from lakevec.corpus import PlaybookRecord
from lakevec.replay.bundle import extract_validation_steps
from lakevec.retrieval.jaccard import tokenize

__all__ = ["KEY_TERMS", "STOP_WORDS", "Grounding", "GroundingScorer", "content_tokens"]

KEY_TERMS = 10
_TOKEN_SPLIT = re.compile(r"[^a-z0-9_]+")  # as lakevec.retrieval.jaccard.tokenize

_STOP_TEXT = """
    the and for that with this from are was were not but all any its has have had
    each every one only when then than into out use used using via per can could
    should would will must may might does did done also just more most less some
    such other both same own new old after before over under about above below
    while where which what who whom whose how why there their them they these
    those our ours your you his her him she was been being yes off too very
    onto upon within without again still instead even once here now
    verify check checks checked assert confirm ensure
"""
STOP_WORDS = frozenset(_STOP_TEXT.split())


def content_tokens(text: str, exclude: Iterable[str] = ()) -> set[str]:
    """Seed tokens of ``text`` minus stop words and ``exclude``."""
    return tokenize(text) - STOP_WORDS - set(exclude)


@dataclass(frozen=True)
class Grounding:
    """One answer's grounding in its gold playbook (see the module docstring)."""

    score: float
    steps: float | None
    terms: float | None
    steps_used: int
    steps_counted: int
    terms_present: tuple[str, ...]
    key_terms: tuple[str, ...]


def _ordered_tokens(text: str) -> list[str]:
    """Every token occurrence, in order (the seed tokenizer, as a list: tf needs counts)."""
    return [t for t in _TOKEN_SPLIT.split(text.lower()) if len(t) >= 3]


class GroundingScorer:
    """Scores answers against gold records; document frequencies come from ``corpus``."""

    def __init__(self, corpus: Iterable[PlaybookRecord], *, key_terms: int = KEY_TERMS) -> None:
        self.records: dict[str, PlaybookRecord] = {}
        for record in corpus:
            self.records.setdefault(record.id, record)
        if key_terms < 1:
            raise ValueError(f"key_terms must be at least 1, got {key_terms}")
        self.n_terms = key_terms
        self.df: Counter[str] = Counter()
        for record in self.records.values():
            self.df.update(tokenize(f"{record.title} {record.content}"))

    def idf(self, token: str) -> float:
        n = len(self.records)
        df = self.df.get(token, 0)
        return math.log(1.0 + (n - df + 0.5) / (df + 0.5))

    def key_terms(self, gold: PlaybookRecord, exclude: Iterable[str] = ()) -> list[str]:
        """The gold's most distinctive content tokens, best first."""
        skip = STOP_WORDS | set(exclude)
        tf = Counter(t for t in _ordered_tokens(f"{gold.title} {gold.content}") if t not in skip)
        ranked = sorted(tf, key=lambda t: (-tf[t] * self.idf(t), t))
        return ranked[: self.n_terms]

    def gold(self, gold: PlaybookRecord | str) -> PlaybookRecord:
        if isinstance(gold, PlaybookRecord):
            return gold
        try:
            return self.records[gold]
        except KeyError:
            raise KeyError(f"gold playbook {gold!r} is not in the corpus") from None

    def score(self, answer: str, gold: PlaybookRecord | str, *, task: str = "") -> Grounding:
        """Grounding of ``answer`` in ``gold`` (a record or a corpus id) for ``task``."""
        record = self.gold(gold)
        task_tokens = tokenize(task)
        said = tokenize(answer)
        used = counted = 0
        for step in extract_validation_steps([record]):
            key = content_tokens(step, task_tokens)
            if not key:
                continue
            counted += 1
            if len(key & said) >= math.ceil(len(key) / 2):
                used += 1
        terms = self.key_terms(record, task_tokens)
        present = tuple(t for t in terms if t in said)
        steps_part = used / counted if counted else None
        terms_part = len(present) / len(terms) if terms else None
        parts = [p for p in (steps_part, terms_part) if p is not None]
        return Grounding(
            score=sum(parts) / len(parts) if parts else 0.0,
            steps=steps_part,
            terms=terms_part,
            steps_used=used,
            steps_counted=counted,
            terms_present=present,
            key_terms=tuple(terms),
        )
