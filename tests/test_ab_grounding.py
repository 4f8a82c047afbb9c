"""Grounding on hand-made answers: a copy of the gold scores ~1, an unrelated
answer ~0, partial answers in between, and more of the gold never scores less."""

from __future__ import annotations

import pytest

from lakevec.ab.grounding import KEY_TERMS, STOP_WORDS, GroundingScorer, content_tokens
from lakevec.corpus import PlaybookRecord, read_corpus
from lakevec.replay.bundle import extract_validation_steps
from tests.conftest import SAMPLE_CORPUS


def rec(rid: str, title: str, content: str, score: str = "accepted") -> PlaybookRecord:
    return PlaybookRecord(id=rid, title=title, content=content, success_score=score)


BREAKER = rec(
    "g1",
    "Per-provider circuit breaker",
    "New module breaker.rs with Closed, Open and HalfOpen states.\n"
    "failure_threshold = 5 consecutive upstream failures; open_secs = 30.\n"
    "- Verify the transition sequence with cargo test breaker::trips_after_threshold\n"
    "- Check that a 400 from the caller never increments the failure count.\n"
    "- Confirm only one probe request is allowed through in HalfOpen.\n",
)
OTHERS = [
    rec("o1", "Nightly parquet copy", "Copies postgres tables into parquet partitions nightly."),
    rec("o2", "Scheduler locks", "Advisory locks stop the scheduler running a job twice."),
    rec("o3", "Gateway routing", "The gateway routes each request to a provider by model name."),
]
UNRELATED = (
    "Copy the postgres tables into parquet partitions every night and take an advisory lock "
    "so the scheduler never runs the job twice."
)


@pytest.fixture
def scorer() -> GroundingScorer:
    return GroundingScorer([BREAKER, *OTHERS])


def test_copying_the_gold_scores_one(scorer: GroundingScorer) -> None:
    g = scorer.score(BREAKER.title + "\n" + BREAKER.content, BREAKER)
    assert g.score == 1.0 and g.steps == 1.0 and g.terms == 1.0
    assert g.steps_used == g.steps_counted == 3


def test_an_unrelated_answer_scores_zero(scorer: GroundingScorer) -> None:
    g = scorer.score(UNRELATED, BREAKER)
    assert g.score == 0.0 and g.steps_used == 0 and g.terms_present == ()


def test_an_empty_answer_scores_zero(scorer: GroundingScorer) -> None:
    assert scorer.score("", "g1").score == 0.0


def test_the_gold_can_be_named_by_id(scorer: GroundingScorer) -> None:
    assert scorer.score(BREAKER.content, "g1") == scorer.score(BREAKER.content, BREAKER)
    with pytest.raises(KeyError, match="not in the corpus"):
        scorer.score("x", "missing")


def test_key_terms_are_the_gold_s_own_distinctive_words(scorer: GroundingScorer) -> None:
    terms = scorer.key_terms(BREAKER)
    assert len(terms) == KEY_TERMS
    assert "halfopen" in terms and "breaker" in terms
    # A word another record shares ranks below the gold's own words.
    assert "provider" not in terms[:2]
    assert not set(terms) & STOP_WORDS
    assert "gateway" not in terms  # not even in the gold
    assert scorer.key_terms(BREAKER) == terms  # deterministic (ties by token)


def test_a_partial_answer_scores_in_between(scorer: GroundingScorer) -> None:
    answer = (
        "Put a breaker per provider with Closed, Open and HalfOpen states. "
        "A 400 from the caller never increments the failure count."
    )
    g = scorer.score(answer, BREAKER)
    assert 0.2 < g.score < 0.9
    assert g.steps_used == 1  # the 400 step; the probe step shares only "halfopen" (1 of 5)
    assert g.steps is not None and 0 < g.steps < 1
    assert g.terms is not None and 0 < g.terms < 1


def test_a_step_counts_when_half_its_key_tokens_appear(scorer: GroundingScorer) -> None:
    step = "- Check that a 400 from the caller never increments the failure count."
    key = sorted(content_tokens(step))
    assert key == ["400", "caller", "count", "failure", "increments", "never"]
    half = " ".join(key[:3])
    less = " ".join(key[:2])
    assert scorer.score(half, BREAKER).steps_used == 1
    assert scorer.score(less, BREAKER).steps_used == 0


def test_more_of_the_gold_never_scores_less(scorer: GroundingScorer) -> None:
    lines = (BREAKER.title + "\n" + BREAKER.content).splitlines()
    scores = [scorer.score("\n".join(lines[:i]), BREAKER).score for i in range(len(lines) + 1)]
    assert scores == sorted(scores)
    assert scores[0] == 0.0 and scores[-1] == 1.0
    # Adding unrelated text changes nothing.
    assert scorer.score(UNRELATED + " " + BREAKER.content, BREAKER).score == scorer.score(
        BREAKER.content, BREAKER
    ).score


def test_repeating_the_task_earns_nothing(scorer: GroundingScorer) -> None:
    task = "Add a circuit breaker with HalfOpen probes to the gateway"
    g = scorer.score(task, BREAKER, task=task)
    assert g.score == 0.0
    assert "breaker" not in g.key_terms and "halfopen" not in g.key_terms


def test_a_gold_without_steps_is_scored_on_terms_only() -> None:
    partial = rec("p1", "Tuned cooldown", "Changed open_secs and failure_threshold without data.",
                  score="partially_accepted")
    scorer = GroundingScorer([partial, *OTHERS])
    g = scorer.score("open_secs was raised", partial)
    assert g.steps is None and g.steps_counted == 0
    assert g.terms is not None and g.score == g.terms > 0


def test_steps_are_the_ones_the_replay_extracts() -> None:
    corpus = read_corpus(SAMPLE_CORPUS)
    scorer = GroundingScorer(corpus.records.values())
    gold = corpus.records["pb-0017"]
    steps = extract_validation_steps([gold])
    answer = "\n".join(steps)
    g = scorer.score(answer, gold)
    assert g.steps == 1.0 and g.steps_counted == len(steps) == 2


def test_scores_on_the_sample_corpus_separate_right_from_wrong_gold() -> None:
    corpus = read_corpus(SAMPLE_CORPUS)
    scorer = GroundingScorer(corpus.records.values())
    answer = (
        "If the same backend fails five calls in a row the gateway stops routing to it for 30 "
        "seconds and answers 503 at once; after the pause one trial request goes through. "
        "Watch the state gauge on :3100/metrics, tune threshold and pause in config/gateway.toml "
        "and send SIGHUP. Test on staging by stopping the ollama daemon and sending six requests."
    )
    right = scorer.score(answer, "pb-0017").score
    wrong = scorer.score(answer, "pb-0036").score
    assert right > 0.5 > 0.1 > wrong
