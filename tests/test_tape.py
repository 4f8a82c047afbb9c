"""Tapes: the exchange model, the hash chain, content-addressed storage and its checks."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from pathlib import Path

import pytest
from pydantic import ValidationError

from lakevec.errors import EvidenceError, TapeError, TapeMismatch
from lakevec.replay.jsjson import stringify
from lakevec.replay.replayers import in_process_exchange, replayer_for
from lakevec.replay.tape import (
    TAPE_FORMAT,
    Body,
    Exchange,
    ExchangeError,
    Tape,
    TapePlayer,
    TapeRecorder,
    TapeRun,
    TapeStore,
    chain_digest,
    encode_tape,
    reported_fields,
)

RUN = TapeRun(
    run_id="replay:0123456789abcdef:0123456789ab", task_sha256="a" * 64, api="lakehouse",
    gateway={"url": "http://gw.test", "timeout": 180.0}, local_model="qwen3.5:latest",
    escalation_model="deepseek-v3.1:671b", local_only=False, allow_escalation=True,
    no_retrieval=False, max_tokens=1500, temperature=0.1,
)
REPLY = b'{"choices":[{"message":{"content":"hello"},"finish_reason":"stop"}],' \
    b'"usage":{"prompt_tokens":12,"completion_tokens":3},"model":"qwen3.5:7b-q4"}'


def exchange(call: int = 1, response: bytes | None = REPLY, **extra: object) -> Exchange:
    fields: dict[str, object] = dict(
        call=call, api="lakehouse", model="qwen3.5:latest", method="POST",
        url="http://gw.test/v1/chat", request=Body.of(b'{"model":"qwen3.5:latest"}'),
        status=200 if response is not None else None,
        response=Body.of(response) if response is not None else None, wall_ms=12.5,
    )
    fields.update(extra)
    return Exchange.model_validate(fields)


def tape(*exchanges: Exchange) -> Tape:
    recorder = TapeRecorder(RUN)
    for ex in exchanges:
        while recorder.begin_call() < ex.call:
            pass
        recorder.record(ex)
    result = recorder.tape()
    assert result is not None
    return result


def test_digest_is_a_chain_over_header_and_exchanges() -> None:
    first, second = exchange(1), exchange(2)

    def link(head: bytes, model: Exchange | TapeRun) -> bytes:
        canonical = stringify(model.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(head + hashlib.sha256(canonical).digest()).digest()

    head = hashlib.sha256(b"lakevec-tape/1").digest()
    for item in (RUN, first, second):
        head = link(head, item)
    assert chain_digest(RUN, [first, second]) == head.hex()
    # Order, content and the header all count.
    assert chain_digest(RUN, [second, first]) != head.hex()
    assert chain_digest(RUN.model_copy(update={"local_only": True}), [first, second]) != head.hex()


def test_bodies_keep_exact_bytes_as_text_or_base64() -> None:
    text = Body.of("héllo".encode())
    binary = Body.of(b"\xff\x00gzip")
    assert (text.text, text.base64) == ("héllo", None)
    assert binary.text is None and binary.data() == b"\xff\x00gzip"
    assert text.sha256 == hashlib.sha256("héllo".encode()).hexdigest()
    with pytest.raises(ValidationError):
        Body(length=1, sha256="0" * 64, text="a", base64="YQ==")


def test_large_bodies_are_cut_and_marked() -> None:
    body = Body.of(b"x" * 100, cap=10, original_length=None)
    assert (body.length, body.truncated, body.original_length) == (10, True, 100)
    assert body.data() == b"x" * 10


def test_exchange_is_strict_and_versioned() -> None:
    assert exchange().v == 1
    with pytest.raises(ValidationError):
        Exchange.model_validate({**exchange().model_dump(), "surprise": 1})
    with pytest.raises(ValidationError):
        Exchange.model_validate({**exchange().model_dump(), "v": 2})


def test_reported_fields_are_best_effort() -> None:
    usage, finish, served = reported_fields(REPLY)
    assert usage == {"prompt_tokens": 12, "completion_tokens": 3}
    assert (finish, served) == ("stop", "qwen3.5:7b-q4")
    for junk in (b"", b"<html>", b"[1,2]", b'{"choices":[]}', b"[" * 100_000, b'{"usage":1e999}'):
        assert reported_fields(junk) == (None, None, None)


def test_recorder_keeps_calls_in_order() -> None:
    recorder = TapeRecorder(RUN)
    assert recorder.tape() is None
    assert recorder.begin_call() == 1
    recorder.record(exchange(1))
    with pytest.raises(ValueError, match="out of order"):
        recorder.record(exchange(2))  # call 2 has not begun


def test_store_round_trips_the_canonical_bytes(tmp_path: Path) -> None:
    recorded = tape(exchange(1), exchange(2, response=None, error=ExchangeError(
        type="ConnectError", message="[Errno 111] Connection refused")))
    store = TapeStore(tmp_path / "tapes")
    path = store.write(recorded)
    assert path == tmp_path / "tapes" / recorded.digest[:2] / f"{recorded.digest}.json"
    assert path.read_bytes() == encode_tape(recorded)
    assert json.loads(path.read_bytes())["format"] == TAPE_FORMAT
    assert store.load(recorded.digest) == recorded
    assert store.write(recorded) == path  # same content, same name: nothing to do
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left


def _write_many(directory: str, rounds: int) -> None:
    store = TapeStore(Path(directory))
    for _ in range(rounds):
        store.path_for(SHARED.digest).unlink(missing_ok=True)
        store.write(SHARED)


SHARED = tape(exchange(1))


def test_concurrent_writers_of_one_tape_need_no_lock(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_write_many, args=(str(tmp_path), 30)) for _ in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    store = TapeStore(tmp_path)
    assert store.load(SHARED.digest) == SHARED
    leftovers = [p.name for p in tmp_path.rglob("*") if p.is_file()]
    assert leftovers == [f"{SHARED.digest}.json"]


def test_every_flipped_byte_is_detected(tmp_path: Path) -> None:
    # The negative control for tape storage: whatever single byte changes,
    # loading fails (canonical form, body hashes and the chain together).
    recorded = tape(exchange(1))
    store = TapeStore(tmp_path)
    path = store.write(recorded)
    original = path.read_bytes()
    for offset in range(0, len(original), 7):
        for mask in (0x01, 0x20):
            damaged = bytearray(original)
            damaged[offset] ^= mask
            path.write_bytes(bytes(damaged))
            with pytest.raises(TapeError, match="damaged"):
                store.load(recorded.digest)
    path.write_bytes(original)
    assert store.load(recorded.digest) == recorded


def test_a_damaged_body_names_its_call(tmp_path: Path) -> None:
    recorded = tape(exchange(1), exchange(2))
    store = TapeStore(tmp_path)
    path = store.write(recorded)
    text = path.read_text(encoding="utf-8")
    last = text.rindex("hello")
    path.write_text(text[:last] + "jello" + text[last + 5:], encoding="utf-8")
    with pytest.raises(TapeError, match="response body of call 2") as caught:
        store.load(recorded.digest)
    assert caught.value.call == 2


def test_missing_and_unreadable_tapes(tmp_path: Path) -> None:
    store = TapeStore(tmp_path)
    with pytest.raises(TapeError, match="missing"):
        store.load("ab" * 32)
    path = store.path_for("cd" * 32)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\xff not json")
    with pytest.raises(TapeError, match="not a valid tape"):
        store.load("cd" * 32)


def test_unwritable_store_is_an_evidence_error(tmp_path: Path) -> None:
    blocker = tmp_path / "tapes"
    blocker.write_text("a file where the directory should be")
    with pytest.raises(EvidenceError, match="cannot write tape"):
        TapeStore(blocker).write(tape(exchange(1)))


def test_player_serves_in_order_and_refuses_other_bytes() -> None:
    recorded = tape(exchange(1), exchange(2))
    body = recorded.exchanges[0].request.data()
    player = TapePlayer(recorded)
    with pytest.raises(TapeMismatch, match="URL differs"):
        player.take(1, body, method="POST", url="http://other.test/v1/chat")
    with pytest.raises(TapeMismatch, match=r"request bytes differ at byte 10") as caught:
        player.take(1, body[:10] + b"X" + body[11:], method="POST", url="http://gw.test/v1/chat")
    assert caught.value.call == 1
    assert player.take(1, body, method="POST", url="http://gw.test/v1/chat").call == 1
    assert len(player.remaining()) == 1
    player.take(2, body, method="POST", url="http://gw.test/v1/chat")
    with pytest.raises(TapeMismatch, match="does not hold"):
        player.take(3, body, method="POST", url="http://gw.test/v1/chat")


def test_in_process_exchanges_for_local_models() -> None:
    ex = in_process_exchange(
        1, api="local", model="smollm2", request=b'{"prompt":"x"}', response=REPLY, wall_ms=3.25,
    )
    assert (ex.transport, ex.method, ex.url, ex.status) == ("in-process", None, None, None)
    assert ex.usage == {"prompt_tokens": 12, "completion_tokens": 3}
    failed = in_process_exchange(
        2, api="local", model="smollm2", request=b"{}", response=None, wall_ms=0,
        error=ExchangeError(type="LocalModelError", message="prompt longer than the context"),
    )
    assert failed.response is None and failed.content_type is None
    # A tape of in-process calls stores and loads like any other.
    recorder = TapeRecorder(RUN.model_copy(update={"api": "local"}))
    recorder.begin_call()
    recorder.record(ex)
    assert recorder.tape() is not None


def test_replayers_by_api() -> None:
    assert callable(replayer_for("lakehouse")) and callable(replayer_for("openai"))
    assert replayer_for("grpc") == "no replayer for gateway api 'grpc'"


def test_binary_bodies_survive_storage_and_damage_is_caught(tmp_path: Path) -> None:
    recorded = tape(exchange(1, response=b"\x1f\x8b\x08\x00binary\xff"))
    assert recorded.exchanges[0].response is not None
    assert recorded.exchanges[0].response.base64 is not None
    store = TapeStore(tmp_path)
    path = store.write(recorded)
    assert store.load(recorded.digest) == recorded
    text = path.read_text("ascii")
    start = text.index('"base64":"') + len('"base64":"')
    path.write_text(text[:start] + "!" + text[start + 1:], "ascii")
    with pytest.raises(TapeError, match="not a valid tape"):
        store.load(recorded.digest)
