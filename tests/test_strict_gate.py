"""The strict gate on hand-made answers: echo, cut-off, <think> blocks, and
parity with the seed gate on everything else."""

from __future__ import annotations

import pytest

from lakevec.replay.bundle import ContextBundle
from lakevec.replay.gate import NO_CHECKLIST_OVERLAP, validate_response
from lakevec.replay.prompt import Prompt, build_prompt
from lakevec.replay.strict import (
    CUT_OFF,
    ECHO_NGRAM,
    ECHO_THRESHOLD,
    UNFINISHED_THINK,
    echo_share,
    strict_validate,
    strip_reasoning,
)

TASK = "A backend keeps timing out; make the gateway stop calling it for a while."
STEPS = [
    "- Verify the transition sequence with the fault-injection test",
    "- Check that a 400 from the caller never increments the failure count.",
    "- Confirm only one probe request is allowed through in HalfOpen under concurrent load.",
]
BUNDLE = ContextBundle(
    retrieved_playbooks=[],
    prior_successful_outputs=[],
    failure_patterns=[],
    validation_steps=STEPS,
    bundle_token_estimate=50,
)
PROMPT = build_prompt(TASK, BUNDLE)

GOOD = (
    "Add a per-provider breaker with three states. Count 5xx replies, timeouts and refused "
    "connections as failures; after five in a row answer 503 at once for 30 seconds, then let "
    "one probe through. Test the failure count with a fault-injection test and expose the "
    "state as a gauge on /metrics."
)


def strict(answer: str, finish: str | None = "stop", prompt: Prompt = PROMPT) -> list[str]:
    return strict_validate(answer, BUNDLE, prompt=prompt, finish_reason=finish).reasons


def test_a_real_answer_passes() -> None:
    verdict = strict_validate(GOOD, BUNDLE, prompt=PROMPT, finish_reason="stop")
    assert verdict.passed and verdict.reasons == []
    assert echo_share(GOOD, PROMPT.system + "\n" + PROMPT.user) < 0.2


def test_the_seed_reasons_come_first_and_unchanged() -> None:
    answer = "As an AI I cannot say."
    seed = validate_response(answer, BUNDLE).reasons
    assert strict(answer)[: len(seed)] == seed


def test_an_empty_answer_fails_as_in_the_seed() -> None:
    assert strict("   ") == ["empty response"]
    assert strict("   ", finish="length") == ["empty response", CUT_OFF]


def test_restating_the_task_is_an_echo() -> None:
    answer = (
        "The task is: a backend keeps timing out; make the gateway stop calling it for a "
        "while. Verify this."
    )
    assert validate_response(answer, BUNDLE).passed  # the seed gate lets it through
    reasons = strict(answer)
    assert len(reasons) == 1 and reasons[0].startswith("answer mostly echoes the prompt")


def test_pasting_the_checklist_back_is_an_echo_even_though_the_seed_gate_passes_it() -> None:
    answer = "\n".join(STEPS) + "\nDone."
    assert validate_response(answer, BUNDLE).passed
    reasons = strict(answer)
    assert len(reasons) == 1 and reasons[0].startswith("answer mostly echoes the prompt")
    assert "max 50%" in reasons[0]


def test_pasting_an_exemplar_heading_block_back_is_an_echo() -> None:
    answer = (
        "Produce the answer following the style of the prior successful runs above.\n\n"
        "## Validation checklist (from accepted runs)\n" + "\n".join(STEPS)
    )
    assert any(r.startswith("answer mostly echoes") for r in strict(answer))


def test_quoting_one_step_inside_an_own_answer_is_fine() -> None:
    answer = GOOD + " " + STEPS[1].lstrip("- ")
    share = echo_share(answer, PROMPT.system + "\n" + PROMPT.user)
    assert 0 < share < ECHO_THRESHOLD
    assert strict(answer) == []


def test_echo_share_counts_words_inside_copied_runs() -> None:
    source = "one two three four five six seven eight nine ten"
    # 8 copied words + 8 own words: half the answer.
    answer = "one two three four five six seven eight alpha beta gamma delta eps zeta eta theta"
    assert echo_share(answer, source) == 0.5
    # 7 copied words are below the run length: nothing counts.
    assert echo_share("one two three four five six seven x y z", source) == 0.0
    # Formatting and case do not hide a copy.
    assert echo_share("- ONE two, three; **four** five six seven eight", source) == 1.0
    # Too short to judge.
    assert echo_share("one two three", source) == 0.0
    assert ECHO_NGRAM == 8


def test_echo_is_judged_against_the_prompt_the_answer_got() -> None:
    # The no-retrieval prompt does not hold the checklist: pasting the steps
    # is then not an echo (the checklist comes from elsewhere).
    bare = build_prompt(TASK, None)
    answer = "\n".join(STEPS) + "\nDone."
    assert strict(answer, prompt=bare) == []


def test_a_cut_off_answer_fails() -> None:
    assert strict(GOOD, finish="length") == [CUT_OFF]
    assert strict(GOOD, finish=None) == []
    assert strict(GOOD, finish="stop") == []


def test_closed_think_blocks_are_not_the_answer() -> None:
    thinking = "<think>\n" + "\n".join(STEPS) + "\n</think>\n"
    assert strict(thinking + GOOD) == []
    # The reasoning alone does not satisfy the checklist overlap or the length.
    reasons = strict(thinking + "Use a breaker.")
    assert reasons[0].startswith("response too short")
    assert NO_CHECKLIST_OVERLAP in reasons


def test_an_unfinished_think_block_fails() -> None:
    reasons = strict("<think>\nThe user wants a breaker. Let me think about the states", "length")
    assert reasons == ["empty response", UNFINISHED_THINK, CUT_OFF]
    # Text before the unclosed block is judged; the block is not.
    reasons = strict(GOOD + "\n<THINK> wait, maybe")
    assert reasons == [UNFINISHED_THINK]


@pytest.mark.parametrize(
    ("text", "visible", "unfinished"),
    [
        ("plain", "plain", False),
        ("<think>a</think>b", "b", False),
        ("<think>a</think>b<think>c</think>d", "bd", False),
        ("x<think>a", "x", True),
        ("<think>a</think>b<think>c", "b", True),
        ("</think>stray close", "</think>stray close", False),
    ],
)
def test_strip_reasoning(text: str, visible: str, unfinished: bool) -> None:
    assert strip_reasoning(text) == (visible, unfinished)


def test_without_a_checklist_only_the_strict_checks_add() -> None:
    verdict = strict_validate(GOOD, None, prompt=build_prompt(TASK, None), finish_reason="length")
    assert verdict.reasons == [CUT_OFF]
