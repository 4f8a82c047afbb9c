"""Issue 14: whatever the gateway sends, a replay ends with exactly one evidence row.

Each hostile reply becomes an answer (for the gate to judge) or a reason in
``validation_result.reasons``; a malformed gateway URL is a usage error found
before anything runs. Replies come from httpx.MockTransport (no network), one
case from a real loopback server.
"""

from __future__ import annotations

import gzip
import itertools
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from lakevec.corpus import PlaybookRecord
from lakevec.errors import CorpusError, UsageProblem
from lakevec.jsonsafe import nesting_exceeds
from lakevec.replay.engine import ReplayRequest, replay
from lakevec.replay.evidence import ReplayResult, ReplayRunRow
from lakevec.replay.gateway import (
    MAX_REPLY_BYTES,
    MAX_REPLY_NESTING,
    HttpGateway,
    check_gateway_url,
    parse_reply,
)
from lakevec.replay.runner import run_replay
from lakevec.retrieval.jaccard import JaccardRetriever
from tests.chat_server import Reply, chat_server

LOCAL = "qwen3.5:latest"
BIG = "deepseek-v3.1:671b"
URL = "http://gw.test"
ENDPOINT = f"{URL}/v1/chat"
GOOD = "Verify the gateway routing table: provider entries map /v1/chat to the adapter. " * 2
TASK = "audit gateway routing table"
CORPUS = [
    PlaybookRecord(
        id="pb-route", title="Gateway routing audit", success_score="accepted",
        content="Audit of the provider table.\n- verify gateway routing table entries",
        source_run_id="run-1",
    ),
]
HUGE_INT = "9" * 5000  # int() refuses more than 4300 digits
DEEP = 100_000

Handler = Callable[[httpx.Request], httpx.Response]


def answer_body(content_json: str, extra: str = "") -> bytes:
    """An OpenAI-shaped reply with raw JSON text for the content (and extra keys)."""
    return f'{{"choices":[{{"message":{{"content":{content_json}}}}}]{extra}}}'.encode()


def replay_with(
    tmp_path: Path, local: Handler | httpx.Response, escalation: Handler | httpx.Response | None
    = None, **flags: bool,
) -> tuple[ReplayResult, ReplayRunRow]:
    """Replay against per-model replies; assert one valid row was appended and return it."""
    replies = {LOCAL: local, BIG: escalation}

    def handler(request: httpx.Request) -> httpx.Response:
        reply = replies[json.loads(request.content)["model"]]
        assert reply is not None, "unexpected escalation call"
        return reply(request) if callable(reply) else reply

    log = tmp_path / "runs.jsonl"
    client = httpx.Client(transport=httpx.MockTransport(handler))
    with HttpGateway(URL, client=client) as gateway:
        result = replay(
            ReplayRequest(task=TASK, **flags), retriever=JaccardRetriever(CORPUS),
            gateway=gateway, evidence_path=log, local_model=LOCAL, escalation_model=BIG,
        )
    client.close()
    lines = log.read_bytes().split(b"\n")
    assert len(lines) == 2 and lines[1] == b"", "exactly one row, newline-terminated"
    row = ReplayRunRow.model_validate_json(lines[0])
    assert row.recorded_run_id == result.recorded_run_id
    assert row.validation_result == result.validation_result
    return result, row


def reasons(result: ReplayResult) -> list[str]:
    return result.validation_result.reasons


# ─── replies the seed reads as an (empty) answer ─────────────────────────


@pytest.mark.parametrize(
    "body",
    [
        b'{"choices": []}',
        answer_body("null"),
        b'{"choices": [{"message": {}}]}',
        b"{}",
        b"null",
        b"[]",
    ],
)
def test_no_content_is_an_empty_answer_that_the_gate_fails(tmp_path: Path, body: bytes) -> None:
    result, row = replay_with(tmp_path, httpx.Response(200, content=body))
    assert reasons(result) == ["empty response"]
    assert row.model_response == "" and row.model_used == LOCAL


def test_empty_answer_escalates_and_recovers(tmp_path: Path) -> None:
    result, row = replay_with(
        tmp_path, httpx.Response(200, content=b'{"choices": []}'),
        httpx.Response(200, content=answer_body(json.dumps(GOOD))), allow_escalation=True,
    )
    assert reasons(result) == [f"recovered via escalation to {BIG}"]
    assert row.escalation_path == [LOCAL, BIG] and row.model_response == GOOD


# ─── huge integers ────────────────────────────────────────────────────────


def test_5000_digit_integer_beside_the_answer_is_read_like_javascript(tmp_path: Path) -> None:
    body = answer_body(json.dumps(GOOD), f',"usage":{{"total_tokens":{HUGE_INT},"n":-{HUGE_INT}}}')
    result, row = replay_with(tmp_path, httpx.Response(200, content=body))
    assert result.validation_result.passed is True and row.model_response == GOOD


def test_5000_digit_integer_as_content_is_not_a_string(tmp_path: Path) -> None:
    result, row = replay_with(tmp_path, httpx.Response(200, content=answer_body(HUGE_INT)))
    assert reasons(result) == [
        "local call failed: content is not a string: choices[0].message.content is a JSON "
        f"number in the reply from {ENDPOINT}"
    ]
    assert row.model_response == ""


@pytest.mark.parametrize(("content", "kind"), [("42", "number"), ("false", "boolean"),
                                               ('{"text": "x"}', "object")])
def test_non_string_content_is_a_recorded_failed_call(
    tmp_path: Path, content: str, kind: str
) -> None:
    result, _ = replay_with(
        tmp_path, httpx.Response(200, content=answer_body(content)),
        httpx.Response(200, content=answer_body(content)), allow_escalation=True,
    )
    expected = f"content is not a string: choices[0].message.content is a JSON {kind}"
    assert [r.split(" in the reply")[0] for r in reasons(result)] == [
        f"local call failed: {expected}", f"escalation also failed: {expected}",
    ]


# ─── deep nesting ─────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    "body",
    [
        b"[" * DEEP + b"]" * DEEP,
        b"[" * DEEP,  # unterminated too
        b'{"a":' * DEEP + b"1" + b"}" * DEEP,
        answer_body(json.dumps(GOOD), ',"x":' + "[" * DEEP + "]" * DEEP),
    ],
)
def test_100000_deep_nesting_is_a_recorded_failed_call(tmp_path: Path, body: bytes) -> None:
    result, row = replay_with(tmp_path, httpx.Response(200, content=body))
    assert reasons(result) == [
        f"local call failed: reply from {ENDPOINT} nests deeper than {MAX_REPLY_NESTING} levels"
    ]
    assert row.model_response == ""


def test_brackets_inside_strings_are_not_nesting(tmp_path: Path) -> None:
    content = "verify gateway routing " + "[{" * DEEP + ' \\" ]'
    result, _ = replay_with(tmp_path, httpx.Response(200, content=answer_body(f'"{content}"')))
    assert result.model_response.endswith("[{" * 3 + ' " ]')
    assert result.validation_result.passed is True


def test_nesting_limit_is_exact() -> None:
    at_limit = "[" * MAX_REPLY_NESTING + "]" * MAX_REPLY_NESTING
    assert not nesting_exceeds(at_limit, MAX_REPLY_NESTING)
    assert nesting_exceeds("[" + at_limit + "]", MAX_REPLY_NESTING)
    assert not nesting_exceeds('["' + "[" * 1000 + '"]', MAX_REPLY_NESTING)
    deepest = parse_reply(answer_body(json.dumps(GOOD), ',"x":' + at_limit[2:-2]), ENDPOINT)
    assert deepest.content == GOOD  # the limit counts the envelope's own 2 levels


# ─── bytes that are not JSON, or not UTF-8 ────────────────────────────────


def test_invalid_utf8_inside_the_answer_becomes_replacement_characters(tmp_path: Path) -> None:
    # fetch's json() decodes with replacement, so the seed gets an answer here too.
    body = answer_body('"' + GOOD + '"').replace(b"adapter", b"ad\xff\xfeapter", 1)
    result, row = replay_with(tmp_path, httpx.Response(200, content=body))
    assert "ad\ufffd\ufffdapter" in row.model_response
    assert result.validation_result.passed is True


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"\xff\xfe\x00garbage\x80", "Expecting value"),
        (b"", "Expecting value: line 1 column 1 (char 0)"),
        (b"<html>busy</html>", "Expecting value"),
        (answer_body(json.dumps(GOOD), ',"x":NaN'), "NaN is not a JSON value"),
        (answer_body(json.dumps(GOOD))[:-3], "Expecting"),
    ],
)
def test_bodies_that_are_not_json_are_recorded(tmp_path: Path, body: bytes, detail: str) -> None:
    result, _ = replay_with(tmp_path, httpx.Response(200, content=body))
    [reason] = reasons(result)
    assert reason.startswith(f"local call failed: invalid JSON from {ENDPOINT}: ")
    assert detail in reason and len(reason) <= len("local call failed: ") + 240


def test_lone_surrogate_escape_in_content_is_replaced(tmp_path: Path) -> None:
    body = answer_body('"' + GOOD + ' \\ud800"')
    _, row = replay_with(tmp_path, httpx.Response(200, content=body))
    assert row.model_response.endswith(" \ufffd")


def test_bad_content_encoding_is_recorded(tmp_path: Path) -> None:
    response = httpx.Response(200, stream=httpx.ByteStream(b"not gzip at all"),
                              headers={"content-encoding": "gzip"})
    result, _ = replay_with(tmp_path, response)
    assert reasons(result)[0].startswith(f"local call failed: DecodingError on POST {ENDPOINT}")


# ─── size ─────────────────────────────────────────────────────────────────


def endless(chunk: bytes, counter: list[int]) -> Iterator[bytes]:
    for _ in itertools.count():
        counter[0] += 1
        yield chunk


def test_http_500_with_a_huge_body_reads_only_its_head(tmp_path: Path) -> None:
    served = [0]
    response = httpx.Response(500, content=endless(b"E" * 65536, served))
    result, _ = replay_with(tmp_path, response)
    assert reasons(result) == ["local call failed: HTTP 500: " + "E" * 240]
    assert served[0] == 1  # one chunk, not the endless rest


def test_http_500_with_a_large_multibyte_body_cuts_at_240_utf16_units(tmp_path: Path) -> None:
    body = ("é😀" * 100_000).encode()
    result, _ = replay_with(tmp_path, httpx.Response(500, content=body))
    assert reasons(result) == ["local call failed: HTTP 500: " + "é😀" * 80]


def test_endless_2xx_body_is_cut_at_the_reply_limit(tmp_path: Path) -> None:
    served = [0]
    response = httpx.Response(200, content=endless(b" " * 65536, served))
    result, _ = replay_with(tmp_path, response)
    assert reasons(result) == [
        f"local call failed: reply from {ENDPOINT} is larger than {MAX_REPLY_BYTES:,} bytes"
    ]
    assert served[0] == MAX_REPLY_BYTES // 65536 + 1


def test_gzip_bomb_is_cut_at_the_reply_limit(tmp_path: Path) -> None:
    bomb = gzip.compress(b" " * (MAX_REPLY_BYTES + 1))
    response = httpx.Response(200, stream=httpx.ByteStream(bomb),
                              headers={"content-encoding": "gzip"})
    result, _ = replay_with(tmp_path, response)
    assert reasons(result)[0].endswith(f"is larger than {MAX_REPLY_BYTES:,} bytes")


def test_large_answer_is_kept_whole_in_the_result_and_cut_in_the_row(tmp_path: Path) -> None:
    content = "verify gateway routing " * 200_000  # 4.6 MB
    result, row = replay_with(tmp_path, httpx.Response(200, content=answer_body(
        json.dumps(content))))
    assert result.model_response == content and len(row.model_response) == 4000


# ─── transport faults ─────────────────────────────────────────────────────


def test_redirect_loop_is_recorded(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(307, headers={"location": "/v1/chat"})

    log = tmp_path / "runs.jsonl"
    client = httpx.Client(transport=httpx.MockTransport(handler), follow_redirects=True)
    result = replay(
        ReplayRequest(task=TASK), retriever=JaccardRetriever(CORPUS),
        gateway=HttpGateway(URL, client=client), evidence_path=log, local_model=LOCAL,
    )
    assert reasons(result)[0].startswith(f"local call failed: TooManyRedirects on POST {ENDPOINT}")
    assert len(log.read_bytes().splitlines()) == 1


def test_real_server_cutting_the_body_short_is_recorded(tmp_path: Path) -> None:
    body = answer_body(json.dumps(GOOD))
    replies = {LOCAL: Reply(200, body[:20], declared_length=len(body))}
    log = tmp_path / "runs.jsonl"
    with chat_server("/v1/chat", replies) as srv, HttpGateway(srv.url, timeout=10) as gw:
        result = replay(
            ReplayRequest(task=TASK), retriever=JaccardRetriever(CORPUS), gateway=gw,
            evidence_path=log, local_model=LOCAL,
        )
    assert reasons(result)[0].startswith("local call failed: RemoteProtocolError on POST")
    assert len(log.read_bytes().splitlines()) == 1


# ─── malformed gateway URLs: usage errors before anything runs ───────────


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://[::1", "is malformed (Invalid IPv6 URL)"),
        ("http://host:99999", "has an invalid port"),
        ("http://host:0", "has port 0; use 1..65535"),
        ("http://host:http", "has an invalid port"),
        ("ftp://x", "must start with http:// or https://"),
        ("localhost:3100", "must start with http:// or https://"),
        ("http://", "has no host"),
        ("http://:8080/", "has no host"),
        ("https:///v1", "has no host"),
        ("http://ho st", "blanks or control characters"),
        ("http://x\x00y", "blanks or control characters"),
        ("http://x/?a=1", "must not have a query or fragment"),
        ("http://x#top", "must not have a query or fragment"),
        ("http://\u2603.com", "is malformed"),
        ("   ", "the gateway URL is empty"),
    ],
)
def test_malformed_gateway_url_is_a_usage_problem(url: str, message: str) -> None:
    with pytest.raises(UsageProblem, match="LH_GATEWAY_URL") as caught:
        check_gateway_url(url)
    assert message in str(caught.value)
    with pytest.raises(UsageProblem):
        HttpGateway(url)


@pytest.mark.parametrize(
    ("url", "base"),
    [
        (" http://gw:3100/ ", "http://gw:3100"),
        ("HTTPS://gw.example/api//", "HTTPS://gw.example/api"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("http://user:pw@gw:1/", "http://user:pw@gw:1"),
        ("http://gw:65535", "http://gw:65535"),
    ],
)
def test_good_gateway_urls_are_normalised(url: str, base: str) -> None:
    assert check_gateway_url(url) == base


def test_no_url_means_the_environment_or_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LH_GATEWAY_URL", raising=False)
    assert check_gateway_url(None) == "http://localhost:3100"
    monkeypatch.setenv("LH_GATEWAY_URL", "http://env.test:9/")
    assert check_gateway_url() == "http://env.test:9"
    monkeypatch.setenv("LH_GATEWAY_URL", "http://[::1")
    with pytest.raises(UsageProblem, match="Invalid IPv6 URL"):
        HttpGateway()


@pytest.mark.parametrize("url", ["http://[::1", "http://host:99999", "ftp://x"])
def test_run_replay_rejects_a_malformed_url_before_opening_the_retriever(
    tmp_path: Path, url: str
) -> None:
    # tmp_path has no corpus: opening the retriever first would raise CorpusError.
    with pytest.raises(CorpusError):
        run_replay(ReplayRequest(task=TASK, dry_run=True), root=tmp_path,
                   retriever_kind="jaccard")
    with pytest.raises(UsageProblem):
        run_replay(ReplayRequest(task=TASK), root=tmp_path, retriever_kind="jaccard",
                   gateway_url=url)
    assert not (tmp_path / "data").exists()
