"""The A/B task file format, its reader, and the task set shipped for the sample corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lakevec.ab.grounding import STOP_WORDS
from lakevec.ab.tasks import TASK_FORMAT, AbTask, load_tasks, read_tasks
from lakevec.corpus import read_corpus
from lakevec.errors import TaskFileError
from lakevec.retrieval.jaccard import jaccard, tokenize
from lakevec.settings import MAX_TASK_CHARS
from tests.conftest import REPO, SAMPLE_CORPUS

SHIPPED = REPO / "exports" / "ab" / "tasks.jsonl"


def write(tmp_path: Path, *lines: str | bytes) -> Path:
    path = tmp_path / "tasks.jsonl"
    path.write_bytes(b"\n".join(x if isinstance(x, bytes) else x.encode() for x in lines) + b"\n")
    return path


def line(**fields: object) -> str:
    return json.dumps(fields)


def test_a_valid_file_reads_in_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        line(id="a", task="first task", gold="pb-1"),
        "",
        "   ",
        line(id="b.2_x-y", task="second", notes="why", format=TASK_FORMAT),
        line(id="c", task="no gold"),
    )
    tasks = load_tasks(path)
    assert [t.id for t in tasks] == ["a", "b.2_x-y", "c"]
    assert tasks[0] == AbTask(id="a", task="first task", gold="pb-1")
    assert tasks[1].notes == "why" and tasks[2].gold is None


def test_bom_and_crlf_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "tasks.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + line(id="a", task="t").encode() + b"\r\n")
    assert [t.id for t in load_tasks(path)] == ["a"]


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "not a JSON object (a JSON list)"),
        ('"text"', "not a JSON object"),
        (line(task="no id"), "id: Field required"),
        (line(id="a"), "task: Field required"),
        (line(id="a", task=""), "task: String should have at least 1 character"),
        (line(id="a", task="  \n "), "task: is blank"),
        (line(id="a b", task="t"), "id: String should match pattern"),
        (line(id="a", task="t", glod="pb-1"), "unknown key 'glod'"),
        (line(id="a", task="t", format="ab_task.v2"), "format must be 'ab_task.v1'"),
        (line(id="a", task=5), "task: Input should be a valid string"),
        (line(id="a", task="t", gold=""), "gold: String should have at least 1 character"),
        ('{"id": "a", "task": "\\ud800"}', "lone surrogate"),
        (b'{"id": "a", "task": "\xff"}', "not UTF-8"),
        ('{"id": "a", "task": "t", "notes": ' + "[" * 20 + "]" * 20 + "}", "nested too deeply"),
        (line(id="a", task="x" * (MAX_TASK_CHARS + 1)), "at most 100000 characters"),
        ('{"id": "a", "task": "t", "x": NaN}', "not JSON"),
    ],
)
def test_a_bad_line_is_reported_with_its_number(
    tmp_path: Path, bad: str | bytes, needle: str
) -> None:
    path = write(tmp_path, line(id="ok", task="fine"), bad)
    read = read_tasks(path)
    assert [t.id for t in read.tasks] == ["ok"]
    assert len(read.problems) == 1
    assert read.problems[0].line == 2
    assert needle in read.problems[0].reason
    with pytest.raises(TaskFileError, match=r"1 bad line: line 2: "):
        load_tasks(path)


def test_duplicate_ids_name_the_first_line(tmp_path: Path) -> None:
    path = write(tmp_path, line(id="a", task="x"), line(id="b", task="y"), line(id="a", task="z"))
    read = read_tasks(path)
    assert [str(p) for p in read.problems] == ["line 3: duplicate id 'a' (first on line 1)"]


def test_gold_ids_are_checked_against_the_corpus(tmp_path: Path) -> None:
    path = write(tmp_path, line(id="a", task="x", gold="pb-1"), line(id="b", task="y", gold="nope"))
    read = read_tasks(path, corpus_ids={"pb-1"})
    assert [str(p) for p in read.problems] == [
        "line 2: gold 'nope' is not a record id in the corpus"
    ]
    assert len(read_tasks(path).tasks) == 2  # without a corpus, any id is accepted


def test_many_bad_lines_are_summarised(tmp_path: Path) -> None:
    path = write(tmp_path, *["{"] * 14)
    with pytest.raises(TaskFileError, match=r"14 bad lines: line 1: .*; and 4 more$"):
        load_tasks(path)


def test_missing_and_empty_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(TaskFileError, match="no task file at"):
        load_tasks(tmp_path / "absent.jsonl")
    with pytest.raises(TaskFileError, match="cannot read"):
        load_tasks(tmp_path)  # a directory
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(TaskFileError, match="holds no task"):
        load_tasks(empty)


# ─── the shipped set ─────────────────────────────────────────────────────────


@pytest.fixture(scope="module")
def shipped() -> list[AbTask]:
    corpus = read_corpus(SAMPLE_CORPUS)
    return load_tasks(SHIPPED, corpus_ids=set(corpus.records))


def test_the_shipped_set_is_big_enough_and_fully_labelled(shipped: list[AbTask]) -> None:
    assert len(shipped) >= 40
    assert all(t.gold is not None for t in shipped)
    assert len({t.task for t in shipped}) == len(shipped)


def test_shipped_tasks_are_paraphrases_not_titles(shipped: list[AbTask]) -> None:
    records = read_corpus(SAMPLE_CORPUS).records
    for t in shipped:
        assert t.gold is not None
        title = records[t.gold].title
        task_tokens, title_tokens = tokenize(t.task), tokenize(title)
        assert jaccard(task_tokens, title_tokens) < 0.34, (t.id, title)
        content_words = title_tokens - STOP_WORDS
        shared = content_words & task_tokens
        assert len(shared) <= len(content_words) / 3, (t.id, title, sorted(shared))


def test_shipped_golds_are_answer_sources(shipped: list[AbTask]) -> None:
    records = read_corpus(SAMPLE_CORPUS).records
    golds = [records[t.gold] for t in shipped if t.gold is not None]
    assert all(r.success_score in ("accepted", "partially_accepted") for r in golds)
    accepted = sum(r.success_score == "accepted" for r in golds)
    assert accepted >= 0.75 * len(golds)  # most golds carry validation steps
