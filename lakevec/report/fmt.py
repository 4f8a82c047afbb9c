"""Number formatting shared by the terminal summary and the HTML page."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["count", "interval", "pct", "rate_with_ci"]


def count(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def pct(value: float | None) -> str:
    """``0.8731`` → ``87.3%``; None (no runs) → ``–``."""
    return "–" if value is None else f"{100 * value:.1f}%"


def interval(ci: Sequence[float] | None) -> str:
    """``[0.81, 0.9]`` → ``81.0–90.0%``."""
    return "–" if ci is None else f"{100 * ci[0]:.1f}–{100 * ci[1]:.1f}%"


def rate_with_ci(rate: float | None, ci: Sequence[float] | None) -> str:
    return "–" if rate is None else f"{pct(rate)} [{interval(ci)}]"
