"""A bounded schemathesis run against ``lakevec serve``'s OpenAPI document: no 5xx, ever.

Generated requests (valid and invalid, per the schema) go through the ASGI app
in-process; every response is checked against the spec (status codes,
content type, response schema) and must not be a server error.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from pydantic import BaseModel, StringConstraints, TypeAdapter, ValidationError
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import ignored_auth

from lakevec.embed.hashing import HashEmbedder
from lakevec.index.update import index_corpus
from lakevec.service.app import create_app
from lakevec.service.schemas import ReplayBody, SearchRequest
from lakevec.service.settings import ServerSettings
from tests.conftest import SAMPLE_CORPUS

TOKEN = "schemathesis-token-0123456789"
MAX_EXAMPLES = 15


def make_schema(tmp_path: Path) -> Any:
    index_corpus(SAMPLE_CORPUS, tmp_path / "index", embedder=HashEmbedder(64))
    app = create_app(ServerSettings(
        index_dir=tmp_path / "index",
        evidence_path=tmp_path / "data" / "_kb" / "replay_runs.jsonl",
        model="hash:64",
        token=TOKEN,
        # /replay without dry_run calls this gateway: nothing listens, so the
        # failed call is recorded in the row (as in the seed), never a 5xx.
        gateway_url="http://127.0.0.1:9",
        timeout=1.0,
    ))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


# Hypothesis drives each operation directly (schemathesis' pytest plugin does
# not support this pytest's fixtures); the example budget keeps it to seconds.
@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda m: m.value)
def test_api_never_5xx(tmp_path: Path, mode: GenerationMode) -> None:
    schema = make_schema(tmp_path)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} == {
        "POST /vectors/search", "POST /replay", "GET /healthz", "GET /stats"}
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and operation.method.upper() == "GET":
            continue  # no parameters or body: nothing to make invalid

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            # ignored_auth is left out: it probes by removing the credentials
            # from the case, but ours are call-level headers it cannot remove.
            # Enforcement is tested in test_server.py::test_auth_required_when_token_set.
            response = case.call_and_validate(
                headers={"authorization": f"Bearer {TOKEN}"}, excluded_checks=[ignored_auth])
            assert response.status_code < 500, (case.body, response.text)

        check()


@pytest.mark.parametrize("model, field", [(ReplayBody, "task"), (SearchRequest, "query")])
def test_schema_and_server_agree_on_blank_text(model: type[BaseModel], field: str) -> None:
    """Each character is blank for the published pattern exactly when the server says so.

    A schemathesis find: "\\x1d" matched the schema's ``\\S`` (ECMA and Rust regex
    read it as Unicode White_Space, which U+001C-U+001F are not) while
    ``str.strip()`` removed it, so a schema-valid request got a 422. The pattern
    is checked in Python's engine and in pydantic's Rust one (ECMA-like ``\\s``).
    """
    text = model.model_json_schema()["properties"][field]["pattern"]
    python = re.compile(text)
    rust = TypeAdapter(Annotated[str, StringConstraints(pattern=text)])
    server = TypeAdapter(model)
    chars = [chr(i) for i in range(0x3100) if not 0xD800 <= i <= 0xDFFF] + ["\ufeff", "\U0010ffff"]
    for char in chars:
        blank = not char.strip()
        assert (python.search(char) is None) == blank, hex(ord(char))
        assert _accepts(rust, char) != blank, hex(ord(char))
        assert _accepts(server, {field: char}) != blank, hex(ord(char))


def _accepts(adapter: TypeAdapter[Any], value: object) -> bool:
    try:
        adapter.validate_python(value)
    except ValidationError:
        return False
    return True
