"""Issue 14: no corpus line can abort a read; every skipped line is named and explained."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from lakevec.corpus import DuplicateId, read_corpus
from lakevec.errors import CorpusError
from lakevec.lines import MAX_NESTING

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


def rec(rid: str = "x", **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"id": rid, "title": "T", "content": "body", "success_score": "ok"}
    base.update(overrides)
    return base


def line(rid: str = "x", **overrides: Any) -> str:
    return json.dumps(rec(rid, **overrides))


def with_extra(fragment: str, rid: str = "x") -> str:
    """A valid record line whose unknown key ``extra`` holds the raw JSON ``fragment``."""
    return line(rid)[:-1] + ', "extra": ' + fragment + "}"


def write(tmp_path: Path, *lines: str | bytes, name: str = "c.jsonl") -> Path:
    raw = [x if isinstance(x, bytes) else x.encode("utf-8") for x in lines]
    path = tmp_path / name
    path.write_bytes(b"\n".join(raw) + b"\n")
    return path


def read_one_bad(tmp_path: Path, bad: str | bytes) -> str:
    """Read ``good, bad, good``; check the bad line alone is skipped; return its reason."""
    corpus = read_corpus(write(tmp_path, line("a"), bad, line("b")))
    assert list(corpus.records) == ["a", "b"]
    assert [p.line for p in corpus.problems] == [2]
    return corpus.problems[0].reason


# ─── lone surrogates ─────────────────────────────────────────────────────────


def test_lone_surrogate_in_title_is_skipped_with_reason(tmp_path: Path) -> None:
    bad = '{"id":"x","title":"\\ud800","content":"c","success_score":"accepted"}'
    reason = read_one_bad(tmp_path, bad)
    assert reason == "contains a lone surrogate (\\ud800) in field title"


@pytest.mark.parametrize("field", KEPT_FIELDS)
def test_lone_surrogate_in_any_kept_field_is_skipped(tmp_path: Path, field: str) -> None:
    value: Any = ["ok", "a\udc00b"] if field == "tags" else "a\udc00b"
    bad = json.dumps(rec("x", **{field: value}))  # ensure_ascii: written as "\udc00"
    assert read_one_bad(tmp_path, bad) == f"contains a lone surrogate (\\udc00) in field {field}"


def test_lone_surrogate_in_beir_metadata_tags_is_skipped(tmp_path: Path) -> None:
    doc = {"_id": "d2", "title": "", "text": "t", "metadata": {"tags": ["\ud800"]}}
    path = write(tmp_path, json.dumps({"_id": "d1", "text": "t"}), json.dumps(doc))
    corpus = read_corpus(path)
    assert corpus.format == "beir" and list(corpus.records) == ["d1"]
    assert corpus.problems[0].reason == "contains a lone surrogate (\\ud800) in field tags"


def test_lone_surrogate_in_unknown_key_is_ignored(tmp_path: Path) -> None:
    corpus = read_corpus(
        write(tmp_path, with_extra('"\\ud800"'), '{"\\udfff": 1, ' + line("y")[1:])
    )
    assert list(corpus.records) == ["x", "y"] and corpus.skipped == 0


def test_escaped_surrogate_pair_is_a_valid_character(tmp_path: Path) -> None:
    corpus = read_corpus(write(tmp_path, line("x", title="\U0001f600")))  # "\ud83d\ude00"
    assert corpus.records["x"].title == "\U0001f600"


def test_raw_surrogate_bytes_are_not_utf8(tmp_path: Path) -> None:
    bad = line("x", title="\ud800").replace("\\ud800", "\ud800").encode("utf-8", "surrogatepass")
    assert read_one_bad(tmp_path, bad).startswith("not UTF-8 (invalid continuation byte")


# ─── nesting and numbers ─────────────────────────────────────────────────────


@pytest.mark.parametrize(
    "bad",
    [
        with_extra("[" * 1500 + "]" * 1500),
        '{"a":' * 1500 + "1" + "}" * 1500,
        "[" * 100_000,  # unterminated
    ],
    ids=["array-in-unknown-key", "objects", "unterminated"],
)
def test_deep_nesting_is_skipped_not_a_recursion_error(tmp_path: Path, bad: str) -> None:
    assert read_one_bad(tmp_path, bad) == f"nested too deeply (more than {MAX_NESTING} levels)"


def test_nesting_limit_is_exact(tmp_path: Path) -> None:
    # The record object is level 1, so "extra" may hold MAX_NESTING - 1 levels.
    ok = with_extra("[" * (MAX_NESTING - 1) + "]" * (MAX_NESTING - 1), rid="ok")
    deep = with_extra("[" * MAX_NESTING + "]" * MAX_NESTING, rid="deep")
    corpus = read_corpus(write(tmp_path, ok, deep))
    assert list(corpus.records) == ["ok"]
    assert [str(p) for p in corpus.problems] == [
        f"line 2: nested too deeply (more than {MAX_NESTING} levels)"
    ]


def test_brackets_inside_strings_do_not_count_as_nesting(tmp_path: Path) -> None:
    content = '[{"\\"' * 2000 + "\\\\"
    corpus = read_corpus(write(tmp_path, line("x", content=content)))
    assert corpus.records["x"].content == content


def test_huge_integer_in_unknown_field_is_ignored(tmp_path: Path) -> None:
    corpus = read_corpus(write(tmp_path, with_extra("9" * 5000), with_extra("-" + "1" * 5000, "y")))
    assert list(corpus.records) == ["x", "y"] and corpus.skipped == 0


def test_huge_integer_in_a_record_field_is_an_invalid_record(tmp_path: Path) -> None:
    bad = line("x").replace('"x"', "1" * 5000)
    assert read_one_bad(tmp_path, bad) == "invalid record (id: Input should be a valid string)"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(tmp_path: Path, constant: str) -> None:
    reason = read_one_bad(tmp_path, with_extra(constant))
    assert reason == f"malformed JSON ({constant} is not a JSON value)"


# ─── bytes and line shapes ───────────────────────────────────────────────────


def test_invalid_utf8_names_the_byte(tmp_path: Path) -> None:
    assert (
        read_one_bad(tmp_path, b'{"id": "\xc3("}')
        == "not UTF-8 (invalid continuation byte at byte 9)"
    )


def test_raw_nul_byte_is_skipped_but_escaped_nul_is_text(tmp_path: Path) -> None:
    reason = read_one_bad(tmp_path, line("x", content="a\x00b").replace("\\u0000", "\x00"))
    assert reason.startswith("contains a NUL byte at byte ")
    corpus = read_corpus(write(tmp_path, line("x", content="a\x00b")))  # "\u0000" escape
    assert corpus.records["x"].content == "a\x00b"


@pytest.mark.parametrize(
    ("value", "got"),
    [
        ("1", "a number"),
        ("9" * 5000, "a number"),
        ("-1.5e3", "a number"),
        ('"text"', "a string"),
        ("null", "null"),
        ("true", "a boolean"),
        ("[{}]", "an array"),
    ],
)
def test_non_object_lines_are_skipped(tmp_path: Path, value: str, got: str) -> None:
    assert read_one_bad(tmp_path, value) == f"expected a JSON object, got {got}"


def test_bom_crlf_and_missing_final_newline(tmp_path: Path) -> None:
    data = b"\xef\xbb\xbf" + line("a").encode() + b"\r\n\r\n" + line("b").encode()
    path = tmp_path / "c.jsonl"
    path.write_bytes(data)
    corpus = read_corpus(path, strict=True)
    assert list(corpus.records) == ["a", "b"]
    assert (corpus.lines, corpus.bytes) == (3, len(data))
    assert corpus.sha256 == hashlib.sha256(data).hexdigest()  # the file as it is, BOM included


def test_bom_is_only_accepted_at_file_start(tmp_path: Path) -> None:
    reason = read_one_bad(tmp_path, "\ufeff" + line("x"))
    assert reason.startswith("malformed JSON (Unexpected UTF-8 BOM")


def test_overlong_line_is_streamed_past_and_hashed(tmp_path: Path) -> None:
    long = line("big", content="x" * 5000)
    path = write(tmp_path, line("a"), long, line("b"))
    corpus = read_corpus(path, max_line_bytes=1000)
    assert list(corpus.records) == ["a", "b"]
    assert [str(p) for p in corpus.problems] == [f"line 2: longer than 1,000 bytes ({len(long):,})"]
    assert corpus.bytes == path.stat().st_size
    assert corpus.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert read_corpus(path, max_line_bytes=len(long)).skipped == 0  # the limit excludes "\n"
    path.write_bytes(path.read_bytes() + long.encode())  # an overlong last line, no "\n"
    corpus = read_corpus(path, max_line_bytes=1000)
    assert [p.line for p in corpus.problems] == [2, 4] and corpus.lines == 4
    assert corpus.problems[1].reason == f"longer than 1,000 bytes ({len(long):,})"
    assert corpus.bytes == path.stat().st_size


# ─── duplicates ──────────────────────────────────────────────────────────────


def test_ten_thousand_lines_with_one_id_count_as_9999_duplicates(tmp_path: Path) -> None:
    path = write(tmp_path, *(line("x", title=f"v{i}") for i in range(1, 10_001)))
    corpus = read_corpus(path)
    assert corpus.records["x"].title == "v10000"  # last wins
    assert corpus.duplicates == [DuplicateId("x", tuple(range(1, 10_001)))]
    assert corpus.duplicate_lines == 9_999
    summary = corpus.summary()
    assert summary == (
        f"{path}: 9,999 line(s) repeat an earlier id (last wins): "
        "id 'x' on lines 1, 2, 3 … 10000 (+9,996 more)"
    )


def test_duplicate_summary_is_bounded(tmp_path: Path) -> None:
    rows = [line(f"id-{i % 10}") for i in range(1000)] + [line("y" * 500), line("y" * 500)]
    corpus = read_corpus(write(tmp_path, *rows))
    assert corpus.duplicate_lines == 1000 - 10 + 1 and len(corpus.duplicates) == 11
    summary = corpus.summary()
    assert "991 line(s) repeat an earlier id" in summary
    assert "id 'id-0' on lines 1, 11, 21 … 991 (+96 more)" in summary
    assert summary.endswith("(+8 more id(s))") and len(summary) < 400


# ─── reporting ───────────────────────────────────────────────────────────────


def test_skipped_lines_lists_every_problem_for_json(tmp_path: Path) -> None:
    bad = [with_extra("NaN"), "{oops", with_extra("[" * 1500), line("s", title="\ud800")]
    rows = [line("a"), *bad, "", line("b")] * 40  # 160 problems: the list is not capped
    corpus = read_corpus(write(tmp_path, *rows))
    skipped = corpus.skipped_lines()
    assert len(skipped) == corpus.skipped == 160
    assert skipped[:2] == [
        {"line": 2, "reason": "malformed JSON (NaN is not a JSON value)"},
        {
            "line": 3,
            "reason": "malformed JSON (Expecting property name enclosed in double "
            "quotes at column 2)",
        },
    ]
    json.dumps(skipped, ensure_ascii=False).encode("utf-8")
    assert "skipped 160 bad line(s): line 2: " in corpus.summary()
    assert corpus.summary().endswith(
        "(+157 more); 78 line(s) repeat an earlier id (last wins): "
        "id 'a' on lines 1, 8, 15 … 274 (+36 more); id 'b' on lines "
        "7, 14, 21 … 280 (+36 more)"
    )


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (with_extra("[" * 1500), "nested too deeply"),
        (line("x", title="\ud800"), "lone surrogate"),
        (with_extra("NaN"), "NaN is not a JSON value"),
        (b"\xff", "not UTF-8"),
    ],
    ids=["deep", "surrogate", "nan", "utf8"],
)
def test_strict_raises_on_the_first_problem_with_its_line(
    tmp_path: Path, bad: str | bytes, reason: str
) -> None:
    path = write(tmp_path, line("a"), bad, "{also bad")
    with pytest.raises(CorpusError, match=rf"c\.jsonl: line 2: .*{reason}.*drop --strict"):
        read_corpus(path, strict=True)


def test_only_bad_lines_is_the_empty_corpus_error(tmp_path: Path) -> None:
    path = write(tmp_path, with_extra("[" * 1500), line("x", id="\ud800"))
    with pytest.raises(CorpusError, match=r"no valid records \(2 bad line\(s\): line 1: nested"):
        read_corpus(path)
    assert read_corpus(path, allow_empty=True).skipped == 2
