"""The real llama.cpp with the packaged SmolLM2-135M GGUF: template, token
counting, a real answer, and reproducibility. One thread and a few tokens per
call keep it to seconds on a shared 2-core machine."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (lakevec[local])")

from lakevec.errors import LocalModelError
from lakevec.replay.chat import ChatOptions
from lakevec.replay.llamacpp import ModelCache, resolve_local_model
from lakevec.replay.local import LocalGateway, messages_for, parse_response

pytestmark = pytest.mark.integration

SYSTEM = "You are a terse assistant."
USER = "Name one colour of the sky."
SHORT = ChatOptions(max_tokens=8, temperature=0.1)


class PinnedClock:
    def now(self) -> datetime:
        return datetime(2026, 3, 1, tzinfo=UTC)

    def monotonic(self) -> float:
        return 0.0


@pytest.fixture
def cache() -> Iterator[ModelCache]:
    cache = ModelCache()
    yield cache
    cache.close()


def test_smollm2_answers_with_its_own_chat_template(cache: ModelCache) -> None:
    gw = LocalGateway("smollm2", threads=1, cache=cache)
    assert gw.model_name == "SmolLM2-135M-Instruct.Q4_1"
    result = gw.chat(gw.model_name, SYSTEM, USER, options=SHORT)
    assert result.ok and result.content.strip()
    model = gw.load()
    # chat_format=None made llama-cpp-python use the GGUF's tokenizer.chat_template.
    assert model.chat_format == "chat_template.default"
    assert model.n_ctx_train == 8192
    assert gw.last_call is not None
    ex = gw.last_call.exchange
    assert ex.finish_reason in ("stop", "length") and ex.response is not None
    assert parse_response(ex.response.data()) == result
    # Our count of the rendered prompt is llama's own count: the context is sized right.
    assert isinstance(ex.usage, dict)
    assert ex.usage["prompt_tokens"] == model.count_prompt_tokens(messages_for(SYSTEM, USER))
    assert ex.usage["prompt_tokens"] == gw.last_call.prompt_tokens
    completion = ex.usage["completion_tokens"]
    assert isinstance(completion, int) and 0 < completion <= SHORT.max_tokens


def test_same_model_settings_and_seed_give_the_same_answer(cache: ModelCache) -> None:
    gw = LocalGateway(resolve_local_model(None), threads=1, cache=cache, clock=PinnedClock())
    first = gw.chat(gw.model_name, SYSTEM, USER, options=SHORT)
    again = gw.chat(gw.model_name, SYSTEM, USER, options=SHORT)  # same model, KV cache reset
    assert first == again and first.ok
    assert gw.last_call is not None
    first_bytes = gw.last_call.exchange.response
    # A fresh model with a bigger context answers the same, byte for byte.
    cache.close()
    gw.load(n_ctx=2048)
    reloaded = gw.chat(gw.model_name, SYSTEM, USER, options=SHORT)
    assert reloaded == first
    assert gw.last_call.n_ctx == 2048 and gw.last_call.exchange.response == first_bytes


def test_a_damaged_gguf_is_a_clear_load_error(tmp_path: Path, cache: ModelCache) -> None:
    bad = tmp_path / "damaged.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"garbage" * 10)
    gw = LocalGateway(bad, threads=1, cache=cache)
    with pytest.raises(LocalModelError, match="llama.cpp cannot load .*damaged.gguf"):
        gw.chat(gw.model_name, SYSTEM, USER, options=SHORT)
