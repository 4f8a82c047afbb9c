"""Gateway client: wire format per mode, provider routing, and every fault path.

Replies the seed reads as an empty answer, hostile replies and malformed URLs
have their own file (test_gateway_replies.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from lakevec.errors import UsageProblem
from lakevec.replay.gateway import HttpGateway, provider_for
from tests.chat_server import Reply, chat_server, closed_port


def ok_payload(content: object) -> dict[str, object]:
    return {"choices": [{"message": {"role": "assistant", "content": content}}]}


def mock(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler))


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LH_GATEWAY_URL", "LAKEVEC_API_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("model", "provider"),
    [
        ("qwen3.5:latest", "ollama"),
        ("meta-llama/llama-3.3-70b:free", "openrouter"),
        ("kimi-k2:1t", "ollama_cloud"),
        ("qwen3-coder:480b", "ollama_cloud"),
        ("deepseek-v3.1:671b", "ollama_cloud"),
        ("mistral-large-3:675b", "ollama_cloud"),
        ("gpt-oss:120b", "ollama_cloud"),
        ("qwen3.5:397b", "ollama_cloud"),
        ("gpt-oss:20b", "ollama"),
        ("deepseek-r1:8b", "ollama"),
        ("org/kimi-k2", "openrouter"),  # "/" wins over the cloud prefixes
    ],
)
def test_provider_routing(model: str, provider: str) -> None:
    assert provider_for(model) == provider


def test_lakehouse_mode_posts_the_seed_body() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=ok_payload("answer"))

    gw = HttpGateway("http://gw.test:3100/", client=mock(handler), timeout=7)
    result = gw.chat("deepseek-v3.1:671b", "SYS", "USER")
    assert (result.ok, result.content, result.error) == (True, "answer", None)
    req = seen[0]
    assert req.method == "POST"
    assert str(req.url) == "http://gw.test:3100/v1/chat"
    assert json.loads(req.content) == {
        "provider": "ollama_cloud",
        "model": "deepseek-v3.1:671b",
        "messages": [{"role": "system", "content": "SYS"}, {"role": "user", "content": "USER"}],
        "max_tokens": 1500,
        "temperature": 0.1,
    }
    assert "authorization" not in req.headers
    assert req.extensions["timeout"]["read"] == 7


def test_openai_mode_posts_chat_completions_with_bearer_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LAKEVEC_API_KEY", "sk-test")
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=ok_payload("hi"))

    gw = HttpGateway("http://llm.test", api="openai", client=mock(handler))
    assert gw.chat("qwen3.5:latest", "S", "U").content == "hi"
    assert str(seen[0].url) == "http://llm.test/v1/chat/completions"
    assert seen[0].headers["authorization"] == "Bearer sk-test"
    body = json.loads(seen[0].content)
    assert "provider" not in body
    assert body["model"] == "qwen3.5:latest" and body["max_tokens"] == 1500


def test_openai_mode_without_key_sends_no_authorization() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=ok_payload("hi"))

    HttpGateway("http://llm.test", api="openai", client=mock(handler)).chat("m", "s", "u")
    assert "authorization" not in seen[0].headers


def test_url_comes_from_env_and_defaults_to_localhost(monkeypatch: pytest.MonkeyPatch) -> None:
    assert HttpGateway(client=mock(lambda r: httpx.Response(200))).url == "http://localhost:3100"
    monkeypatch.setenv("LH_GATEWAY_URL", "http://env.test:9/")
    assert HttpGateway(client=mock(lambda r: httpx.Response(200))).url == "http://env.test:9"


@pytest.mark.parametrize(
    "exc",
    [httpx.ReadTimeout("read timed out"), httpx.ConnectTimeout("connect timed out")],
)
def test_timeout_is_a_failed_call(exc: Exception) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    result = HttpGateway("http://gw.test", client=mock(handler), timeout=2.5).chat("m", "s", "u")
    assert result.ok is False and result.content == ""
    assert result.error is not None
    assert result.error.startswith("timed out after 2.5s: POST http://gw.test/v1/chat")


def test_connect_error_is_a_failed_call() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused")

    result = HttpGateway("http://gw.test", client=mock(handler)).chat("m", "s", "u")
    assert result.ok is False
    assert result.error == (
        "cannot connect to http://gw.test/v1/chat: [Errno 111] Connection refused"
    )


def test_real_refused_connection_on_loopback() -> None:
    with HttpGateway(f"http://127.0.0.1:{closed_port()}", timeout=5) as gw:
        result = gw.chat("m", "s", "u")
    assert result.ok is False
    assert result.error is not None and result.error.startswith("cannot connect to")


def test_other_transport_errors_are_failed_calls_too() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("server hung up")

    result = HttpGateway("http://gw.test", client=mock(handler)).chat("m", "s", "u")
    assert result.error == "RemoteProtocolError on POST http://gw.test/v1/chat: server hung up"


def test_non_2xx_reports_status_and_body_cut_to_240() -> None:
    body = "E" * 500
    gw = HttpGateway("http://gw.test", client=mock(lambda r: httpx.Response(503, text=body)))
    result = gw.chat("m", "s", "u")
    assert result.ok is False
    assert result.error == "HTTP 503: " + "E" * 240


def test_invalid_json_is_a_clear_failure() -> None:
    gw = HttpGateway("http://gw.test", client=mock(lambda r: httpx.Response(200, text="<html>")))
    result = gw.chat("m", "s", "u")
    assert result.ok is False
    assert result.error is not None and result.error.startswith(
        "invalid JSON from http://gw.test/v1/chat"
    )
    assert "'<html>'" in result.error


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"choices": []},
        {"choices": [{}]},
        {"choices": [{"message": {}}]},
        {"choices": [{"message": "text"}]},
        {"choices": "abc"},
        ok_payload(None),
        ["not", "an", "object"],
        None,
        "a string",
    ],
)
def test_missing_content_is_an_empty_answer_like_the_seed(payload: object) -> None:
    # `j?.choices?.[0]?.message?.content ?? ""`: the call succeeded, the answer is
    # empty, and the gate (not the gateway) fails it as "empty response".
    body = json.dumps(payload).encode()  # (json=None would send no body at all)
    gw = HttpGateway("http://gw.test", client=mock(lambda r: httpx.Response(200, content=body)))
    result = gw.chat("m", "s", "u")
    assert (result.ok, result.content, result.error) == (True, "", None)


def test_choices_as_an_object_with_key_0_is_read_like_javascript() -> None:
    payload = {"choices": {"0": {"message": {"content": "indexed"}}}}
    gw = HttpGateway("http://gw.test", client=mock(lambda r: httpx.Response(200, json=payload)))
    assert gw.chat("m", "s", "u").content == "indexed"


@pytest.mark.parametrize(
    ("content", "kind"),
    [(42, "number"), (1.5, "number"), (True, "boolean"), ([{"type": "text"}], "array"),
     ({"text": "x"}, "object")],
)
def test_non_string_content_is_a_failed_call(content: object, kind: str) -> None:
    client = mock(lambda r: httpx.Response(200, json=ok_payload(content)))
    result = HttpGateway("http://gw.test", client=client).chat("m", "s", "u")
    assert result.ok is False and result.content == ""
    assert result.error == (
        f"content is not a string: choices[0].message.content is a JSON {kind} "
        "in the reply from http://gw.test/v1/chat"
    )


def test_empty_string_content_is_an_answer_for_the_gate_to_judge() -> None:
    client = mock(lambda r: httpx.Response(200, json=ok_payload("")))
    gw = HttpGateway("http://gw.test", client=client)
    result = gw.chat("m", "s", "u")
    assert (result.ok, result.content) == (True, "")


def test_lone_surrogates_in_content_are_replaced() -> None:
    body = b'{"choices":[{"message":{"content":"bad \\ud800 ok \\ud83d\\ude00"}}]}'
    gw = HttpGateway("http://gw.test", client=mock(lambda r: httpx.Response(200, content=body)))
    result = gw.chat("m", "s", "u")
    assert result.content == "bad \ufffd ok \U0001f600"
    result.content.encode("utf-8")  # writable to the evidence log


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": "localhost:3100"}, "must start with http:// or https://"),
        ({"url": "http://x", "api": "grpc"}, "unknown gateway api"),
        ({"url": "http://x", "timeout": 0}, "must be positive"),
        ({"url": "http://x", "timeout": float("inf")}, "must be positive"),
        ({"url": "http://x", "timeout": float("nan")}, "must be positive"),
    ],
)
def test_bad_configuration_is_a_usage_problem(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(UsageProblem, match=message):
        HttpGateway(**kwargs)  # type: ignore[arg-type]


def test_injected_client_is_not_closed_by_the_gateway() -> None:
    client = mock(lambda r: httpx.Response(200, json=ok_payload("x")))
    with HttpGateway("http://gw.test", client=client) as gw:
        gw.chat("m", "s", "u")
    assert client.is_closed is False
    client.close()


def test_real_server_on_loopback_speaks_v1_chat() -> None:
    replies = {"qwen3.5:latest": Reply.answer("from the server")}
    with chat_server("/v1/chat", replies) as srv, HttpGateway(srv.url, timeout=10) as gw:
        result = gw.chat("qwen3.5:latest", "S", "U")
    assert result.content == "from the server"
    assert srv.seen[0].body["provider"] == "ollama"


def test_openai_base_url_ending_in_v1_posts_to_chat_completions() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=ok_payload("hi"))

    for base in ("http://llm.test/v1", "http://llm.test/v1/", "http://llm.test"):
        HttpGateway(base, api="openai", client=mock(handler)).chat("m", "s", "u")
    assert [str(r.url) for r in seen] == ["http://llm.test/v1/chat/completions"] * 3
    # The seed's lakehouse route is not changed by a /v1 suffix.
    assert HttpGateway("http://gw.test/v1", client=mock(handler)).endpoint == (
        "http://gw.test/v1/v1/chat"
    )


def test_max_tokens_and_temperature_are_sent_as_javascript_writes_them() -> None:
    from lakevec.replay.chat import ChatOptions

    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        return httpx.Response(200, json=ok_payload("x"))

    gw = HttpGateway("http://gw.test", client=mock(handler))
    gw.chat("m", "s", "u")
    gw.chat("m", "s", "u", options=ChatOptions(max_tokens=64, temperature=1.0))
    assert seen[0].endswith(b',"max_tokens":1500,"temperature":0.1}')
    assert seen[1].endswith(b',"max_tokens":64,"temperature":1}')  # JSON.stringify(1.0) is "1"


def test_credentials_never_reach_error_messages() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    gw = HttpGateway("http://bob:hunter2@gw.test", client=mock(handler))
    result = gw.chat("m", "s", "u")
    assert result.error == "cannot connect to http://gw.test/v1/chat: refused"
    with pytest.raises(UsageProblem) as caught:
        HttpGateway("http://bob:hunter2@gw.test:99999")
    assert "hunter2" not in str(caught.value) and "***@gw.test" in str(caught.value)


def test_timeout_bounds_the_whole_call_even_when_each_read_is_quick() -> None:
    import time

    # A byte every 1.5 s never trips a 2 s read timeout, and the check between
    # chunks alone would stop at 3 s: the deadline's watchdog stops it at 2 s.
    body = json.dumps(ok_payload("x" * 100)).encode()
    with (chat_server("/v1/chat", {"m": Reply(200, body, trickle=1.5)}) as srv,
          HttpGateway(srv.url, timeout=2) as gw):
        started = time.monotonic()
        result = gw.chat("m", "s", "u")
        elapsed = time.monotonic() - started
    assert result.error == f"timed out after 2s: POST {srv.url}/v1/chat"
    assert 1.9 < elapsed < 2.9
