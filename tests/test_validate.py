"""The deterministic gate: every check, its exact reason string, and its boundaries."""

from __future__ import annotations

import pytest

from lakevec.replay.bundle import ContextBundle
from lakevec.replay.gate import NO_CHECKLIST_OVERLAP, validate_response

LONG_OK = "The gateway routes provider traffic through the adapter table; " * 2  # 126 chars


def bundle_with_steps(*steps: str) -> ContextBundle:
    return ContextBundle(
        retrieved_playbooks=[], prior_successful_outputs=[], failure_patterns=[],
        validation_steps=list(steps), bundle_token_estimate=0,
    )


def test_a_long_plain_answer_passes_without_reasons() -> None:
    result = validate_response(LONG_OK, None)
    assert result.passed is True
    assert result.reasons == []


@pytest.mark.parametrize("response", ["", "   ", "\n\t\u00a0\ufeff"])
def test_empty_response_is_the_only_reason(response: str) -> None:
    result = validate_response(response, bundle_with_steps("verify gateway"))
    assert result.model_dump() == {"passed": False, "reasons": ["empty response"]}


def test_too_short_counts_trimmed_chars() -> None:
    result = validate_response("   short answer   ", None)
    assert result.passed is False
    assert result.reasons == ["response too short (12 chars; min 80)"]


def test_eighty_chars_is_long_enough_and_seventy_nine_is_not() -> None:
    assert validate_response("x" * 80, None).passed is True
    assert validate_response("  " + "x" * 79 + "  ", None).reasons == [
        "response too short (79 chars; min 80)"
    ]


@pytest.mark.parametrize(
    ("phrase", "literal"),
    [
        ("As an AI, here it is", "/as an ai/i"),
        ("I CANNOT do that", "/i cannot/i"),
        ("I'm sorry, but no", "/i'm sorry, but/i"),
        ("I dont have access to it", "/i don'?t have access/i"),
        ("I don't have access to it", "/i don'?t have access/i"),
        ("I am unable to comply", "/i am unable to/i"),
    ],
)
def test_each_hedge_pattern_names_its_regex_literal(phrase: str, literal: str) -> None:
    result = validate_response(phrase + " " + LONG_OK, None)
    assert result.passed is False
    assert result.reasons == [f"filler/hedge phrase detected: {literal}"]


def test_reasons_accumulate_in_the_seed_order() -> None:
    bundle = bundle_with_steps("- verify the routing table")
    result = validate_response("As an AI I cannot.", bundle)
    assert result.reasons == [
        "response too short (18 chars; min 80)",
        "filler/hedge phrase detected: /as an ai/i",
        "filler/hedge phrase detected: /i cannot/i",
        NO_CHECKLIST_OVERLAP,
    ]
    assert NO_CHECKLIST_OVERLAP == (
        "response shares no tokens with validation checklist "
        "(may not have followed prior patterns)"
    )


def test_checklist_overlap_needs_one_shared_token() -> None:
    bundle = bundle_with_steps("- confirm breaker threshold", "check the circuit")
    miss = "z" * 90
    assert validate_response(miss, bundle).reasons == [NO_CHECKLIST_OVERLAP]
    hit = "z" * 90 + " BREAKER"  # tokens are lower-cased on both sides
    assert validate_response(hit, bundle).passed is True


def test_checklist_of_only_short_tokens_is_not_enforced() -> None:
    # "- ok a" has no token of 3+ chars, so there is nothing to overlap with.
    assert validate_response("z" * 90, bundle_with_steps("- ok a")).passed is True


def test_no_checklist_means_no_overlap_check() -> None:
    assert validate_response("z" * 90, bundle_with_steps()).passed is True


def test_length_gate_counts_utf16_units_like_the_seed() -> None:
    # 40 emoji are 80 UTF-16 units: long enough for the seed's gate.
    assert validate_response("😀" * 40, None).passed
    short = validate_response("😀" * 39, None)
    assert short.reasons == ["response too short (78 chars; min 80)"]
