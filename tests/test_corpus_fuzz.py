"""Fuzz the corpus reader: no line, however broken, makes ``read_corpus`` raise."""

from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakevec.corpus import Corpus, read_corpus
from lakevec.errors import CorpusError
from lakevec.lines import read_raw_lines

KEPT_FIELDS = [
    "id",
    "title",
    "content",
    "tags",
    "source_run_id",
    "success_score",
    "source_category",
    "created_at",
]

_surrogates = st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff"])
# Arbitrary text, often with a lone surrogate somewhere in it.
texts = st.one_of(
    st.text(max_size=8),
    st.text(max_size=8),
    st.text(max_size=8),
    st.tuples(st.text(max_size=4), _surrogates, st.text(max_size=4)).map("".join),
)


def _dumps_str(value: str, ascii_only: bool) -> str:
    return json.dumps(value, ensure_ascii=ascii_only)


# JSON *text* is generated directly, so it can hold what Python's json.dumps
# cannot write: 5,000-digit integers, NaN/Infinity, raw surrogates.
_scalars = st.one_of(
    st.none().map(lambda _: "null"),
    st.booleans().map(lambda b: "true" if b else "false"),
    st.integers().map(str),
    st.floats().map(repr).map(lambda r: {"nan": "NaN", "inf": "Infinity"}.get(r, r)),
    st.integers(4200, 6000).map(lambda n: "9" * n),  # around the 4300-digit int limit
    st.tuples(texts, st.booleans()).map(lambda t: _dumps_str(*t)),
)
_deep = st.tuples(st.integers(1, 2500), st.sampled_from(["[]", "{}"])).map(
    lambda t: "[" * t[0] + "]" * t[0] if t[1] == "[]" else '{"k":' * t[0] + "0" + "}" * t[0]
)
_leaves = st.one_of(_scalars, _deep)
# Two levels of containers around scalars or deep nests (st.recursive costs
# several times more to draw and finds nothing more here).
json_values = st.one_of(
    _leaves,
    st.lists(_leaves, max_size=3).map(lambda xs: "[" + ",".join(xs) + "]"),
    st.lists(st.tuples(texts, _leaves), max_size=3).map(
        lambda kv: "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in kv) + "}"
    ),
)


@st.composite
def near_valid_records(draw: st.DrawFn) -> str:
    """A valid record (ids from a small pool, so duplicates happen) with some fields
    replaced by arbitrary text, a list of texts, any JSON value, or left out; plus
    unknown keys holding anything."""
    ascii_only = draw(st.sampled_from([True, True, True, False]))  # False: raw surrogates
    values = {name: json.dumps(f"{name} {draw(st.integers(0, 3))}") for name in KEPT_FIELDS}
    values["tags"] = '["ops"]'
    for name in draw(st.sets(st.sampled_from(KEPT_FIELDS), max_size=3)):
        kind = draw(st.sampled_from(["text", "text", "list", "json", "missing"]))
        if kind == "text":
            values[name] = _dumps_str(draw(texts), ascii_only)
        elif kind == "list":
            values[name] = json.dumps(draw(st.lists(texts, max_size=3)), ensure_ascii=ascii_only)
        elif kind == "json":
            values[name] = draw(json_values)
        else:
            del values[name]
    pairs = [f'"{name}": {value}' for name, value in values.items()]
    for key, value in draw(st.lists(st.tuples(texts, json_values), max_size=2)):
        pairs.append(f"{_dumps_str(key, ascii_only)}: {value}")
    return "{" + ", ".join(pairs) + "}"


def _to_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # raw surrogates become invalid UTF-8


@st.composite
def corpus_lines(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["bytes", "json", "record", "record", "record", "record"]))
    if kind == "bytes":
        raw = draw(st.binary(max_size=80))
    elif kind == "json":
        raw = _to_bytes(draw(json_values))
    else:
        raw = _to_bytes(draw(near_valid_records()))
        mutation = draw(st.sampled_from(["none", "none", "truncate", "nul", "crlf"]))
        if mutation == "truncate":
            raw = raw[: draw(st.integers(0, len(raw)))]
        elif mutation == "nul":
            at = draw(st.integers(0, len(raw)))
            raw = raw[:at] + b"\x00" + raw[at:]
        elif mutation == "crlf":
            raw += b"\r"
    return raw.replace(b"\n", b" ")  # one generated line is one file line


def _check(corpus: Corpus, lines: list[bytes]) -> None:
    stripped = [raw.removeprefix(b"\xef\xbb\xbf") if i == 0 else raw for i, raw in enumerate(lines)]
    nonblank = {n for n, raw in enumerate(stripped, start=1) if raw.strip()}
    problem_lines = [p.line for p in corpus.problems]
    # Every non-blank line is either a record (a row) or a problem, never both or neither.
    assert problem_lines == sorted(set(problem_lines))
    assert set(problem_lines) <= nonblank
    assert len(corpus.rows) + len(problem_lines) == len(nonblank)
    assert corpus.duplicate_lines == len(corpus.rows) - len(corpus.records)
    for rec in corpus.rows:
        fields = [rec.id, rec.title, rec.content, *rec.tags, rec.source_run_id]
        fields += [rec.success_score, rec.source_category, rec.created_at or ""]
        for value in fields:
            value.encode("utf-8")
    for problem in corpus.problems:
        assert problem.reason and re.match(r"line \d+: ", str(problem))
    json.dumps(corpus.skipped_lines(), ensure_ascii=False).encode("utf-8")
    corpus.summary().encode("utf-8")


@settings(
    max_examples=500,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # one file, rewritten per example
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
@given(
    lines=st.lists(corpus_lines(), min_size=2, max_size=6),
    bom=st.booleans(),
    final_newline=st.booleans(),
)
def test_fuzz_corpus_lines_never_raise(
    tmp_path: Path, lines: list[bytes], bom: bool, final_newline: bool
) -> None:
    if bom:
        lines = [b"\xef\xbb\xbf" + lines[0], *lines[1:]]
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(b"\n".join(lines) + (b"\n" if final_newline else b""))
    corpus = read_corpus(path, allow_empty=True)
    _check(corpus, lines)
    if not corpus.records:
        with pytest.raises(CorpusError, match="has no valid records"):
            read_corpus(path)
    if corpus.problems:
        first = corpus.problems[0].line
        with pytest.raises(CorpusError, match=rf": line {first}: .* drop --strict"):
            read_corpus(path, strict=True)


def _split_reference(data: bytes, limit: int) -> list[tuple[int, bytes | int]]:
    """What the block reader must yield: lines split at ``\\n``, over-long ones as lengths."""
    parts = data.split(b"\n")
    if parts[-1] == b"":
        parts.pop()
    return [(i, len(p) if len(p) > limit else p) for i, p in enumerate(parts, start=1)]


@settings(max_examples=500, derandomize=True, deadline=None, database=None)
@given(
    data=st.binary(max_size=60).map(lambda b: bytes(b"ab\n\r"[x % 4] for x in b)),
    limit=st.integers(0, 9),
    block=st.integers(1, 12),
)
def test_fuzz_block_reader_equals_splitting_at_newlines(
    data: bytes, limit: int, block: int
) -> None:
    """Lines that straddle blocks, over-long lines, CR, no final newline: same as a split."""
    digest = hashlib.sha256()
    got = list(read_raw_lines(io.BytesIO(data), digest, limit, block))
    assert got == _split_reference(data, limit)
    assert digest.digest() == hashlib.sha256(data).digest()  # every byte hashed once
