"""Texts are cut to what the model can see before tokenizing, without changing vectors."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest

from lakevec.embed.base import CHARS_PER_TOKEN, clip_text, normalize, window_chars
from lakevec.embed.sentence import SentenceTransformerEmbedder

HUGE = "Restart the ingest worker, then verify the queue drains. " * 90_000  # ~5 MB


def test_clip_text() -> None:
    assert clip_text("", 4) == ""
    assert clip_text("abcd", 4) == "abcd"  # exactly the budget: unchanged
    assert clip_text("abcde", 4) == "abcd"
    assert clip_text("ünï", 2) == "ün"  # characters, not bytes
    clipped = clip_text(HUGE, window_chars(256))
    assert len(HUGE) > 5_000_000
    assert len(clipped) == 256 * CHARS_PER_TOKEN and HUGE.startswith(clipped)


@pytest.fixture(scope="module")
def minilm() -> Iterator[SentenceTransformerEmbedder]:
    yield SentenceTransformerEmbedder(precision="fp32")


# 254 copies of the longest word piece in MiniLM's vocabulary: with [CLS] and
# [SEP] exactly the 256-token window, and as many characters as 256 tokens
# without [UNK] can span.
FITTING = " ".join(["telecommunications"] * 254)


def _unclipped(emb: SentenceTransformerEmbedder, text: str) -> np.ndarray:
    """The vector sentence-transformers computes from the whole text."""
    return normalize(emb.model.encode([text], convert_to_numpy=True, normalize_embeddings=False))


@pytest.mark.integration
def test_a_text_that_fits_keeps_its_exact_vector(minilm: SentenceTransformerEmbedder) -> None:
    assert len(minilm.model.tokenizer(FITTING)["input_ids"]) == minilm.max_seq_length == 256
    assert len(FITTING) <= minilm.max_chars  # a fitting text is never cut
    np.testing.assert_array_equal(minilm.encode_batch([FITTING]), _unclipped(minilm, FITTING))


@pytest.mark.integration
def test_the_cut_drops_only_what_the_model_never_sees(
    minilm: SentenceTransformerEmbedder,
) -> None:
    longer = FITTING + " and a tail the model truncates anyway" * 400
    assert len(longer) > minilm.max_chars
    got = minilm.encode_batch([longer])
    np.testing.assert_array_equal(got, _unclipped(minilm, longer))
    np.testing.assert_array_equal(got, minilm.encode_batch([FITTING]))


@pytest.mark.integration
def test_a_5mb_text_costs_about_a_normal_one(minilm: SentenceTransformerEmbedder) -> None:
    normal = HUGE[: minilm.max_chars]
    minilm.encode([normal])  # warm-up

    def best_of_3(text: str) -> float:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            minilm.encode([text])
            times.append(time.perf_counter() - start)
        return min(times)

    # Unclipped, tokenizing 5 MB took minutes (258 s); clipped it is one
    # slice. The bound is generous for a shared machine.
    assert best_of_3(HUGE) < 10 * best_of_3(normal) + 0.5
    np.testing.assert_array_equal(minilm.encode([HUGE]), minilm.encode([normal]))
