"""Statistics for comparing runs: the Wilson score interval of a pass rate, and
the exact McNemar test of a paired A/B.

A rate from a handful of runs is not a measurement; the Wilson interval says
how wide the uncertainty is and, unlike the normal approximation, stays inside
[0, 1] and behaves at 0/n and n/n. Two arms run on the same tasks are paired:
only the tasks where exactly one arm passed say anything about which arm is
better, and the exact McNemar test asks how surprising that split is if both
arms were equally good (:func:`mcnemar_exact`, :func:`paired_summary`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from statistics import NormalDist

from lakevec.settings import WILSON_CONFIDENCE

__all__ = ["PairedSummary", "mcnemar_exact", "paired_summary", "wilson_interval"]


def wilson_interval(
    successes: int, trials: int, confidence: float = WILSON_CONFIDENCE
) -> tuple[float, float]:
    """Wilson score interval ``(low, high)`` for ``successes`` out of ``trials``.

    ``trials == 0`` says nothing: ``(0.0, 1.0)``. Raises ValueError when
    ``successes`` is outside ``0..trials`` or ``confidence`` outside (0, 1).
    """
    if trials < 0 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes}/{trials}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if trials == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    n = float(trials)
    p = successes / n
    z2n = z * z / n
    center = (p + z2n / 2.0) / (1.0 + z2n)
    half = z * math.sqrt(p * (1.0 - p) / n + z2n / (4.0 * n)) / (1.0 + z2n)
    low = 0.0 if successes == 0 else max(0.0, center - half)
    high = 1.0 if successes == trials else min(1.0, center + half)
    return low, high


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for ``b`` and ``c`` discordant pairs.

    Under "both arms are equally good" each discordant pair is a fair coin,
    so ``b ~ Binomial(b + c, 1/2)``; the p-value is twice the smaller tail,
    ``min(1, 2 * P(X <= min(b, c)))``, computed exactly. No discordant pairs
    means no evidence either way: 1.0.
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be non-negative, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    tail = Fraction(sum(math.comb(n, k) for k in range(min(b, c) + 1)), 2**n)
    return float(min(Fraction(1), 2 * tail))


@dataclass(frozen=True)
class PairedSummary:
    """Two arms on the same items: pass rates, their difference and McNemar's p.

    ``first_only`` counts items only the first arm passed (McNemar's b),
    ``second_only`` items only the second passed (c); ``difference`` is
    ``first_rate - second_rate`` (= ``(b - c) / n``).
    """

    n: int
    both: int
    first_only: int
    second_only: int
    neither: int
    first_rate: float
    second_rate: float
    first_interval: tuple[float, float]
    second_interval: tuple[float, float]
    difference: float
    p_value: float


def paired_summary(first: Sequence[bool], second: Sequence[bool]) -> PairedSummary:
    """Summarise paired outcomes; ``first[i]`` and ``second[i]`` are the same item."""
    if len(first) != len(second):
        raise ValueError(f"paired outcomes differ in length: {len(first)} and {len(second)}")
    n = len(first)
    both = sum(1 for x, y in zip(first, second, strict=True) if x and y)
    b = sum(1 for x, y in zip(first, second, strict=True) if x and not y)
    c = sum(1 for x, y in zip(first, second, strict=True) if y and not x)
    first_pass, second_pass = both + b, both + c
    return PairedSummary(
        n=n,
        both=both,
        first_only=b,
        second_only=c,
        neither=n - both - b - c,
        first_rate=first_pass / n if n else 0.0,
        second_rate=second_pass / n if n else 0.0,
        first_interval=wilson_interval(first_pass, n),
        second_interval=wilson_interval(second_pass, n),
        difference=(b - c) / n if n else 0.0,
        p_value=mcnemar_exact(b, c),
    )
