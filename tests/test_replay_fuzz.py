"""Issue 14 fuzz: arbitrary gateway replies never lose the evidence row.

Hypothesis draws a reply per model (arbitrary bytes; arbitrary JSON with huge
integers and deep nesting; near-valid lakehouse/OpenAI shapes around any
content; broken UTF-8; odd status codes, encodings and redirects) and checks
that every replay() returns and appends exactly one row that validates.
"""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import httpx
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from lakevec.corpus import PlaybookRecord
from lakevec.replay.engine import ReplayRequest, replay
from lakevec.replay.evidence import ReplayRunRow
from lakevec.replay.gateway import HttpGateway
from lakevec.retrieval.jaccard import JaccardRetriever

LOCAL = "qwen3.5:latest"
BIG = "deepseek-v3.1:671b"
TASK = "audit gateway routing table"
CORPUS = [
    PlaybookRecord(
        id="pb-route", title="Gateway routing audit", success_score="accepted",
        content="Audit of the provider table.\n- verify gateway routing table entries",
        source_run_id="run-1",
    ),
    PlaybookRecord(
        id="pb-partial", title="Routing partial", success_score="partially_accepted",
        content="routing notes without proof", source_run_id="run-2",
    ),
]

# ─── JSON texts ───────────────────────────────────────────────────────────

json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
huge_ints = st.builds(
    lambda sign, digits: sign + "9" * digits,
    st.sampled_from(["", "-"]), st.integers(min_value=4000, max_value=20_000),
)
deep_nesting = st.builds(
    lambda pair, depth, closed: pair[0] * depth + "0" + (pair[1] * depth if closed else ""),
    st.sampled_from([("[", "]"), ('{"k":', "}"), ('[{"a":', "}]")]),
    st.integers(min_value=1, max_value=100_000),
    st.booleans(),
)
# Strings, including lone-surrogate escapes and bracket-heavy text.
string_texts = st.one_of(
    st.text().map(json.dumps),
    st.text(st.characters(codec=None, categories=["Cs", "Ll", "Ps", "Pe"])).map(json.dumps),
    st.integers(min_value=0, max_value=50_000).map(lambda n: json.dumps("verify [ " * n)),
)
json_texts = st.one_of(
    json_values.map(json.dumps),  # NaN/Infinity included: JS rejects them
    huge_ints,
    deep_nesting,
    string_texts,
    st.sampled_from(["null", "true", "[]", "{}", "", "nul", "[1,]", '"unterminated']),
)

TEMPLATES = [
    '{"choices":[{"message":{"content":@C@}}]}',
    '{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":@C@},'
    '"finish_reason":"stop"}],"usage":@X@}',
    '{"choices":{"0":{"message":{"content":@C@}}},"extra":@X@}',
    '{"choices":[@X@,{"message":{"content":@C@}}]}',
    '{"choices":[{"message":@C@}]}',
    '{"choices":@C@}',
    '{"message":{"content":@C@},"choices":[]}',
    '@X@',
]
near_valid = st.builds(
    lambda template, content, extra: template.replace("@C@", content).replace("@X@", extra),
    st.sampled_from(TEMPLATES), st.one_of(string_texts, json_texts), json_texts,
)


def mangle(text: str, junk: bytes, where: float, bom: bool) -> bytes:
    """``text`` as UTF-8 with ``junk`` bytes (often invalid UTF-8) spliced in."""
    data = text.encode("utf-8", "surrogatepass")
    cut = int(len(data) * where)
    return (b"\xef\xbb\xbf" if bom else b"") + data[:cut] + junk + data[cut:]


bodies = st.one_of(
    st.binary(max_size=300),
    json_texts.map(lambda t: t.encode("utf-8", "surrogatepass")),
    near_valid.map(str.encode),
    st.builds(mangle, near_valid, st.binary(min_size=1, max_size=6),
              st.floats(min_value=0, max_value=1), st.booleans()),
)
# Mostly 200, so most examples reach the body parser.
statuses = st.sampled_from(["ok"] * 5 + ["common", "any"]).flatmap(
    lambda kind: st.just(200) if kind == "ok"
    else st.sampled_from([201, 204, 299, 301, 302, 303, 307, 308, 400, 404, 429, 500, 503])
    if kind == "common" else st.integers(min_value=100, max_value=999)
)
# (content-encoding header, whether the body is really encoded that way)
encodings = st.sampled_from(
    [(None, False)] * 6
    + [("gzip", True), ("deflate", True), ("gzip", False), ("deflate", False),
       ("identity", False), ("br", False)]
)


@dataclass(frozen=True)
class Scripted:
    status: int
    body: bytes
    encoding: tuple[str | None, bool]
    location: str | None

    def response(self) -> httpx.Response:
        headers = {}
        body = self.body
        name, encoded = self.encoding
        if name is not None:
            headers["content-encoding"] = name
            if encoded:
                body = gzip.compress(body) if name == "gzip" else zlib.compress(body)
        if self.location is not None:
            headers["location"] = self.location
        # A stream, so decoding happens when the gateway reads (as on a socket).
        return httpx.Response(self.status, headers=headers, stream=httpx.ByteStream(body))


replies = st.builds(
    Scripted,
    statuses,
    bodies,
    encodings,
    st.one_of(st.none(), st.just("/v1/chat"),
              st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20)),
)


@settings(
    max_examples=500,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
        HealthCheck.large_base_example,
    ],
)
@given(local=replies, escalation=replies, allow_escalation=st.booleans())
def test_fuzz_gateway_replies_always_one_row(
    tmp_path: Path, local: Scripted, escalation: Scripted, allow_escalation: bool
) -> None:
    script = {LOCAL: local, BIG: escalation}
    calling = [LOCAL]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.content:  # a 303 redirect is followed by a GET without a body
            calling[0] = json.loads(request.content)["model"]
        return script[calling[0]].response()

    log = tmp_path / "fuzz_runs.jsonl"  # one file for every example
    before = log.stat().st_size if log.exists() else 0
    client = httpx.Client(transport=httpx.MockTransport(handler), follow_redirects=True)
    with client, HttpGateway("http://gw.test", client=client) as gateway:
        result = replay(
            ReplayRequest(task=TASK, allow_escalation=allow_escalation),
            retriever=JaccardRetriever(CORPUS), gateway=gateway, evidence_path=log,
            local_model=LOCAL, escalation_model=BIG,
        )
    with log.open("rb") as fh:
        fh.seek(before)
        appended = fh.read()
    assert appended.endswith(b"\n") and appended.count(b"\n") == 1, "exactly one row"
    row = ReplayRunRow.model_validate_json(appended)
    assert row.recorded_run_id == result.recorded_run_id
    verdict = row.validation_result
    assert verdict.passed or verdict.reasons, "a failed run names its reasons"
    assert row.escalation_path == ([LOCAL, BIG] if len(row.escalation_path) == 2 else [LOCAL])
    event(outcome(verdict.reasons))  # see --hypothesis-show-statistics


OUTCOMES = ("recovered", "empty response", "too short", "hedge", "shares no tokens",
            "invalid JSON", "content is not a string", "nests deeper", "larger than",
            "HTTP ", " on POST")


def outcome(reasons: list[str]) -> str:
    """A coarse label of how a run ended, to check the strategies reach every path."""
    first = reasons[0] if reasons else "passed"
    return next((label.strip() for label in OUTCOMES if label in first), first[:40])
