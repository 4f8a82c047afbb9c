"""`POST /replay` records its tape too, takes max_tokens/temperature, and its runs verify."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
from click.testing import CliRunner
from fastapi.testclient import TestClient

from lakevec.cli import main
from tests.test_service_support import (  # noqa: F401 — fixtures
    make_client_fixture,
    root_fixture,
)

GOOD = ("Verify the gateway breaker state, check the audit log and confirm the replay "
        "index is consistent before approving the change.")


def test_served_replay_is_taped_with_its_options_and_verifies(
    root: Path, make_client: Callable[..., TestClient]
) -> None:
    sent: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200, json={"choices": [{"message": {"content": GOOD}}]})

    http_client = httpx.Client(transport=httpx.MockTransport(handler))
    client = make_client(http_client=http_client, gateway_url="http://gw.invalid")
    resp = client.post("/replay", json={"task": "Audit the gateway breaker", "max_tokens": 256,
                                        "temperature": 0})
    assert resp.status_code == 200, resp.text
    assert (sent[0]["max_tokens"], sent[0]["temperature"]) == (256, 0)
    tape = resp.json()["lakevec"]["tape"]
    assert (root / "data" / "_kb" / "tapes" / tape[:2] / f"{tape}.json").is_file()
    http_client.close()

    for bad in ({"max_tokens": 0}, {"max_tokens": "8"}, {"temperature": 2.5},
                {"temperature": True}):
        resp = client.post("/replay", json={"task": "x", "dry_run": True, **bad})
        assert resp.status_code == 422, bad

    res = CliRunner().invoke(main, ["--root", str(root), "verify", "--all"])
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[-1] == "1 run: 1 bit-exact, 0 diverged, 0 not verifiable"
    # Retrieval drift against today's index (the run's own retriever, hybrid here).
    res = CliRunner().invoke(main, ["--root", str(root), "verify", "--all", "--retrieval"])
    assert res.exit_code == 0, res.output
    assert "  retrieval unchanged: 8 rag_ids unchanged (hybrid)" in res.stdout, res.stdout
