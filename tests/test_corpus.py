"""Corpus reader: records, bad lines with line numbers, duplicates, formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lakevec.corpus import embed_text, read_corpus
from lakevec.errors import CorpusError
from tests.conftest import SAMPLE_CORPUS, record, write_jsonl


def test_reads_records_and_ignores_unknown_keys(make_corpus) -> None:
    path = make_corpus([record(1, extra_field=1), record(2, tags=None, created_at="2026-01-01")])
    corpus = read_corpus(path)
    assert list(corpus.records) == ["pb-0001", "pb-0002"]
    assert corpus.records["pb-0002"].tags == []
    assert corpus.records["pb-0002"].created_at == "2026-01-01"
    assert corpus.skipped == 0
    assert corpus.format == "playbooks"
    assert corpus.summary() == ""


def test_bad_lines_are_skipped_with_line_numbers(make_corpus) -> None:
    path = make_corpus(
        [
            record(1),
            "{not json",
            "[1, 2]",
            json.dumps({"id": "x", "title": "t"}),  # content/success_score missing
            json.dumps(record(5, id=7)),  # id must be a string
            record(6),
        ]
    )
    corpus = read_corpus(path)
    assert list(corpus.records) == ["pb-0001", "pb-0006"]
    assert [p.line for p in corpus.problems] == [2, 3, 4, 5]
    assert "malformed JSON" in corpus.problems[0].reason
    assert "expected a JSON object" in corpus.problems[1].reason
    assert "content" in corpus.problems[2].reason
    assert "id" in corpus.problems[3].reason
    assert "skipped 4 bad line(s): line 2" in corpus.summary()


def test_blank_lines_are_not_problems(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps(record(1)) + "\n\n   \n" + json.dumps(record(2)) + "\n")
    corpus = read_corpus(path)
    assert len(corpus.records) == 2 and corpus.skipped == 0 and corpus.lines == 4


def test_non_utf8_line_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(json.dumps(record(1)).encode() + b"\n" + b'{"id": "\xff"}\n')
    corpus = read_corpus(path)
    assert corpus.problems[0].line == 2
    assert corpus.problems[0].reason == "not UTF-8 (invalid start byte at byte 9)"


def test_strict_fails_on_first_bad_line(make_corpus) -> None:
    path = make_corpus([record(1), "{oops", record(3)])
    with pytest.raises(CorpusError, match=r"line 2: malformed JSON.*drop --strict"):
        read_corpus(path, strict=True)


def test_duplicate_ids_last_wins_and_are_reported(make_corpus) -> None:
    path = make_corpus([record(1, title="first"), record(2), record(1, title="second")])
    corpus = read_corpus(path)
    assert corpus.records["pb-0001"].title == "second"
    assert list(corpus.records) == ["pb-0002", "pb-0001"]
    assert [(d.id, d.lines) for d in corpus.duplicates] == [("pb-0001", (1, 3))]
    assert corpus.duplicate_lines == 1
    assert corpus.summary().endswith(
        "1 line(s) repeat an earlier id (last wins): id 'pb-0001' on lines 1, 3"
    )


def test_missing_file_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="corpus file not found.*--corpus"):
        read_corpus(tmp_path / "nope.jsonl")


def test_empty_corpus_is_an_error(make_corpus, tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(CorpusError, match="no valid records"):
        read_corpus(empty)
    with pytest.raises(CorpusError, match=r"no valid records \(1 bad line"):
        read_corpus(make_corpus(["{bad"]))


def test_beir_documents_are_mapped(make_corpus) -> None:
    path = make_corpus([{"_id": "d1", "title": "T", "text": "body", "metadata": {}}])
    corpus = read_corpus(path)
    rec = corpus.records["d1"]
    assert corpus.format == "beir"
    assert (rec.title, rec.content, rec.success_score) == ("T", "body", "accepted")


def test_beir_directory(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "ds" / "corpus.jsonl", [{"_id": "a", "title": "", "text": "x y"}])
    corpus = read_corpus(tmp_path / "ds", "beir")
    assert embed_text(corpus.records["a"]) == "x y"


def test_corpus_hash_changes_with_content(make_corpus, tmp_path: Path) -> None:
    a = read_corpus(make_corpus([record(1)], "a.jsonl"))
    b = read_corpus(make_corpus([record(1, title="changed")], "b.jsonl"))
    assert a.sha256 != b.sha256 and len(a.sha256) == 64


def test_shipped_sample_corpus_is_valid() -> None:
    corpus = read_corpus(SAMPLE_CORPUS, strict=True)
    scores = [r.success_score for r in corpus.records.values()]
    assert len(corpus.records) >= 40
    assert scores.count("accepted") >= 10 and scores.count("partially_accepted") >= 5
    checklist = [
        r
        for r in corpus.records.values()
        if any(
            line.strip().lower().lstrip("-* ").split(" ")[0]
            in {"verify", "check", "assert", "confirm", "ensure"}
            for line in r.content.splitlines()
        )
    ]
    assert len(checklist) >= 5
