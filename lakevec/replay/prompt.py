"""Prompt assembly, with the seed's wording character for character.

The local model's behaviour (and A/B comparisons against the other runtimes)
depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass

from lakevec.replay.bundle import WARNING_PREVIEW_CHARS, ContextBundle
from lakevec.replay.jsstr import js_slice

__all__ = ["SYSTEM_PROMPT", "Prompt", "build_prompt"]

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
