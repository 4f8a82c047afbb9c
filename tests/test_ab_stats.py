"""Wilson intervals and the exact McNemar test against known values."""

from __future__ import annotations

import math

import pytest

from lakevec.ab.stats import mcnemar_exact, paired_summary, wilson_interval

Z95 = 1.959963984540054


def reference_wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson (1927) score interval, written out independently of the module."""
    p = k / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = (z / denom) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return center - half, center + half


# Newcombe (1998), "Two-sided confidence intervals for the single proportion:
# comparison of seven methods", Statistics in Medicine 17:857-872, Table I,
# method 3 (score interval without continuity correction), 4 decimals.
NEWCOMBE = {
    (81, 263): (0.2553, 0.3662),
    (15, 148): (0.0624, 0.1605),
    (0, 20): (0.0000, 0.1611),
    (1, 29): (0.0061, 0.1718),
}


@pytest.mark.parametrize(("k", "n"), sorted(NEWCOMBE))
def test_wilson_matches_newcombe_s_table(k: int, n: int) -> None:
    low, high = wilson_interval(k, n)
    assert (round(low, 4), round(high, 4)) == NEWCOMBE[(k, n)]


@pytest.mark.parametrize(("k", "n"), [(5, 12), (8, 12), (3, 10), (40, 48), (1, 1), (7, 40)])
def test_wilson_matches_the_formula(k: int, n: int) -> None:
    low, high = wilson_interval(k, n)
    ref_low, ref_high = reference_wilson(k, n)
    assert low == pytest.approx(ref_low, abs=1e-12)
    assert high == pytest.approx(ref_high, abs=1e-12)


def test_wilson_for_the_issue_s_figures() -> None:
    # 5/12 with retrieval and 8/12 without (issue 11).
    assert tuple(round(x, 4) for x in wilson_interval(5, 12)) == (0.1933, 0.6805)
    assert tuple(round(x, 4) for x in wilson_interval(8, 12)) == (0.3906, 0.8619)


def test_wilson_at_the_edges() -> None:
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and round(high, 4) == 0.2775
    low, high = wilson_interval(10, 10)
    assert round(low, 4) == 0.7225 and high == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_wilson_refuses_impossible_counts() -> None:
    for k, n in ((-1, 5), (6, 5), (1, -1)):
        with pytest.raises(ValueError):
            wilson_interval(k, n)


@pytest.mark.parametrize(
    ("b", "c", "p"),
    [
        (1, 9, 0.021484375),  # 2 * (1 + 10) / 2**10
        (9, 1, 0.021484375),
        (0, 5, 0.0625),  # 2 / 2**5
        (3, 3, 1.0),
        (0, 0, 1.0),
        (0, 1, 1.0),
        (2, 8, 0.109375),  # 2 * (1 + 10 + 45) / 2**10
        (0, 10, 0.001953125),  # 2 / 2**10
    ],
)
def test_mcnemar_exact_known_values(b: int, c: int, p: float) -> None:
    assert mcnemar_exact(b, c) == p


def test_mcnemar_agrees_with_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    for b, c in ((4, 11), (12, 3), (25, 40), (7, 7), (0, 13)):
        expected = stats.binomtest(b, b + c, 0.5).pvalue
        assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-12)


def test_mcnemar_stays_exact_for_large_counts() -> None:
    p = mcnemar_exact(600, 700)
    assert 0 < p < 0.01 and math.isfinite(p)
    assert mcnemar_exact(1000, 1000) == 1.0


def test_mcnemar_refuses_negative_counts() -> None:
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 3)


def test_paired_summary() -> None:
    first = [True, True, False, False, True, False, True, False, False, False]
    second = [True, False, True, True, True, True, True, True, True, True]
    s = paired_summary(first, second)
    assert (s.n, s.both, s.first_only, s.second_only, s.neither) == (10, 3, 1, 6, 0)
    assert s.first_rate == 0.4 and s.second_rate == 0.9
    assert s.difference == pytest.approx(-0.5)
    assert s.p_value == mcnemar_exact(1, 6) == 0.125
    assert s.first_interval == wilson_interval(4, 10)
    assert s.second_interval == wilson_interval(9, 10)


def test_paired_summary_needs_pairs() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        paired_summary([True], [True, False])
    empty = paired_summary([], [])
    assert empty.n == 0 and empty.p_value == 1.0 and empty.first_interval == (0.0, 1.0)
