"""A/B task files: one task per line, each optionally naming its gold playbook.

Format ``ab_task.v1`` (JSON Lines, UTF-8; blank lines are ignored)::

    {"id": "breaker-01", "task": "A backend keeps timing out ...", "gold": "pb-0014"}

* ``id`` (required): 1-64 characters from ``A-Z a-z 0-9 . _ -``, unique in the file.
* ``task`` (required): the task text given to ``lakevec replay``; not blank, at
  most ``MAX_TASK_CHARS`` characters.
* ``gold`` (optional): the id of the corpus record that best answers the task.
  Grounding (:mod:`lakevec.ab.grounding`) is scored only for tasks with one;
  when a corpus is given the id must exist in it.
* ``notes`` (optional): free text for people; ignored by lakevec.
* ``format`` (optional): ``"ab_task.v1"``. A later format will name itself
  here, so a v1 reader refuses it instead of misreading it.

No other key is allowed (a typo such as ``"glod"`` is an error, not a task
without gold). :func:`read_tasks` never raises for what a line contains: every
bad line becomes a :class:`TaskProblem` with its 1-based line number;
:func:`load_tasks` turns problems into one :class:`~lakevec.errors.TaskFileError`
that lists them, since an experiment on a silently shortened task set would
not be the experiment asked for.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from lakevec import jsonsafe
from lakevec.errors import JsonTooDeep, TaskFileError
from lakevec.settings import MAX_TASK_CHARS

__all__ = [
    "TASK_FORMAT",
    "AbTask",
    "TaskFile",
    "TaskProblem",
    "load_tasks",
    "read_tasks",
]

TASK_FORMAT = "ab_task.v1"
_MAX_NESTING = 8
_MAX_LINE_BYTES = 4 * MAX_TASK_CHARS + 4096
_SHOWN_PROBLEMS = 10


class AbTask(BaseModel):
    """One line of a task file (format ``ab_task.v1``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: StrictStr = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    task: StrictStr = Field(min_length=1, max_length=MAX_TASK_CHARS)
    gold: StrictStr | None = Field(default=None, min_length=1)
    notes: StrictStr | None = None
    format: Literal["ab_task.v1"] = "ab_task.v1"


@dataclass(frozen=True)
class TaskProblem:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class TaskFile:
    """The valid tasks of a file, in file order, and every problem seen."""

    path: Path
    tasks: list[AbTask] = field(default_factory=list)
    problems: list[TaskProblem] = field(default_factory=list)


def _reason(exc: ValidationError) -> str:
    details = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err["loc"]) or "task"
        if err["type"] == "extra_forbidden":
            details.append(f"unknown key {loc!r} (allowed: id, task, gold, notes, format)")
        elif err["type"] == "string_unicode":
            details.append(f"{loc}: contains a lone surrogate (a \\ud800-\\udfff escape), not text")
        elif err["type"] == "literal_error" and loc == "format":
            details.append(f"format must be {TASK_FORMAT!r} (this lakevec reads v1 task files)")
        else:
            details.append(f"{loc}: {err['msg']}")
    return "; ".join(details)


def _parse_line(raw: bytes) -> AbTask | str:
    """The task on one non-blank line, or why there is none."""
    if len(raw) > _MAX_LINE_BYTES:
        return f"line is {len(raw):,} bytes; a task is at most {MAX_TASK_CHARS:,} characters"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8 (byte {exc.start + 1})"
    try:
        value = jsonsafe.loads(text, max_nesting=_MAX_NESTING)
    except JsonTooDeep:
        return "not a task: JSON nested too deeply"
    except ValueError as exc:
        return f"not JSON ({str(exc).splitlines()[0][:120]})"
    if not isinstance(value, dict):
        return f"not a JSON object (a JSON {type(value).__name__})"
    try:
        task = AbTask.model_validate(value)
    except ValidationError as exc:
        return _reason(exc)
    if not task.task.strip():
        return "task: is blank"
    return task


def read_tasks(path: str | Path, *, corpus_ids: Collection[str] | None = None) -> TaskFile:
    """Read a task file; bad lines become problems. Raises TaskFileError only if unreadable."""
    where = Path(path)
    try:
        data = where.read_bytes()
    except FileNotFoundError:
        raise TaskFileError(f"no task file at {where}: pass --tasks FILE (JSON Lines)") from None
    except OSError as exc:
        raise TaskFileError(f"cannot read the task file {where}: {exc.strerror}") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    result = TaskFile(path=where)
    first_line: dict[str, int] = {}
    for number, raw in enumerate(data.split(b"\n"), start=1):
        raw = raw.removesuffix(b"\r")
        if not raw.strip():
            continue
        parsed = _parse_line(raw)
        if isinstance(parsed, str):
            result.problems.append(TaskProblem(number, parsed))
            continue
        if parsed.id in first_line:
            first = first_line[parsed.id]
            result.problems.append(
                TaskProblem(number, f"duplicate id {parsed.id!r} (first on line {first})")
            )
            continue
        if corpus_ids is not None and parsed.gold is not None and parsed.gold not in corpus_ids:
            result.problems.append(
                TaskProblem(number, f"gold {parsed.gold!r} is not a record id in the corpus")
            )
            continue
        first_line[parsed.id] = number
        result.tasks.append(parsed)
    return result


def load_tasks(path: str | Path, *, corpus_ids: Collection[str] | None = None) -> list[AbTask]:
    """Every task of a file that has no bad line; else TaskFileError listing the bad lines."""
    read = read_tasks(path, corpus_ids=corpus_ids)
    if read.problems:
        shown = "; ".join(str(p) for p in read.problems[:_SHOWN_PROBLEMS])
        more = len(read.problems) - _SHOWN_PROBLEMS
        tail = f"; and {more} more" if more > 0 else ""
        count = len(read.problems)
        raise TaskFileError(
            f"{read.path}: {count} bad line{'s' if count != 1 else ''}: {shown}{tail}"
        )
    if not read.tasks:
        raise TaskFileError(
            f"{read.path} holds no task: one JSON object per line, e.g. "
            '{"id": "t1", "task": "...", "gold": "pb-0001"}'
        )
    return read.tasks
