"""Reading ``replay_run.v1`` rows from every runtime, one line at a time, never crashing.

Three runtimes append to one log: lakevec, the TypeScript seed and the Go
port. Their rows share the schema but not every detail, so rows are read as
plain JSON and checked only for what a report needs (the pydantic row model
would reject keys a newer writer adds under ``lakevec``):

- **required**: ``schema == "replay_run.v1"``, ``input_task`` (string),
  ``recorded_run_id`` (string), ``recorded_at`` (ISO-8601 with ``Z`` or an
  offset; any number of fraction digits, so Go's RFC3339Nano nanoseconds
  read fine), ``validation_result`` (``passed`` boolean, ``reasons`` strings),
  ``escalation_path`` (strings) and ``model_used`` (string);
- **tolerated**: a missing ``model_response`` (empty), a missing or null
  ``context_bundle`` (no retrieval), artifacts with ``tags: null``, a missing
  ``duration_ms``, any extra key.

Anything else — not UTF-8, not JSON, not an object, another schema, a
required field missing or of the wrong type — is a :class:`BadLine` with its
file, line number and reason. Blank lines are skipped silently.

**Runtime.** A row with a ``lakevec`` object is ``lakevec``. Other rows are
told apart by the last part of ``recorded_run_id`` (``replay:<hash16>:<x>``):
``go`` when ``x`` is ``sha256(recorded_at)[:12]`` (the Go port's rule, checked
exactly), ``typescript`` when ``x`` is decimal digits (the seed's
``Date.now()``, 13 digits), ``typescript-or-go`` otherwise.

**Dry runs.** A lakevec row is a dry run when ``lakevec.gateway_api`` is
``"dry-run"``; a row without it (TypeScript, Go) when ``model_response``
starts with the seed's synthetic answer, ``"Synthetic dry-run response for task:"``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lakevec import jsonsafe
from lakevec.errors import EvidenceError
from lakevec.replay.engine import DRY_RUN_API
from lakevec.replay.evidence import SCHEMA_ID
from lakevec.settings import REPORT_MAX_NESTING

__all__ = [
    "DRY_RUN_PREFIX",
    "RUNTIMES",
    "BadLine",
    "Row",
    "RowProblem",
    "Run",
    "SourceFile",
    "detect_runtime",
    "experiment_of",
    "experiment_verdict",
    "is_dry_run",
    "parse_row",
    "parse_time",
    "read_rows",
]

#: How the seed's (and every runtime's) synthetic dry-run answer starts.
DRY_RUN_PREFIX = "Synthetic dry-run response for task:"
RUNTIMES: tuple[str, ...] = ("lakevec", "typescript", "go", "typescript-or-go")
NO_RETRIEVER = "none"
#: The TypeScript and Go runtimes retrieve by Jaccard keyword overlap.
SEED_RETRIEVER = "jaccard"

#: A parsed evidence line (the JSON object as written).
Row = dict[str, Any]

_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
_RUN_ID = re.compile(r"^replay:[0-9a-f]{16}:([0-9A-Za-z]+)$")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


_DECODER = json.JSONDecoder(parse_constant=_no_constant)


class RowProblem(ValueError):
    """Why a JSON object is not a usable ``replay_run.v1`` row."""


@dataclass(frozen=True, slots=True)
class BadLine:
    path: str
    line: int
    reason: str


@dataclass(slots=True)
class SourceFile:
    """One evidence file read: counts and its bad lines, in order."""

    path: str
    lines: int = 0
    rows: int = 0
    bad: int = 0


@dataclass(slots=True)
class Run:
    """What the report needs of one row; the drill-down reads the row itself."""

    run_id: str
    recorded_at: datetime  # timezone-aware UTC
    day: str  # UTC date, YYYY-MM-DD
    runtime: str
    dry_run: bool
    passed: bool
    escalated: bool  # more than one model was tried
    model: str  # the first model tried (escalation_path[0])
    model_used: str
    retriever: str  # lakevec's retriever; "jaccard" for the seed runtimes; "none"
    retrieval: bool  # a context bundle was built
    experiment: str | None
    arm: str | None
    verdict: bool | None  # the experiment's own judgement (lakevec.experiment.verdict)
    reasons: tuple[str, ...]
    duration_ms: int | None
    source: int  # index of the file in the read order
    line: int


def parse_time(text: str) -> datetime:
    """An ISO-8601 timestamp with ``Z`` or an offset, as UTC (RowProblem otherwise)."""
    if not _TIME.match(text):
        raise RowProblem(f"recorded_at {text[:40]!r} is not an ISO-8601 time with a zone")
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError as exc:
        raise RowProblem(f"recorded_at {text[:40]!r} is not a valid time ({exc})") from None


def detect_runtime(row: Mapping[str, Any]) -> str:
    """``lakevec``, ``go``, ``typescript`` or ``typescript-or-go`` (see the module doc)."""
    if isinstance(row.get("lakevec"), dict):
        return "lakevec"
    match = _RUN_ID.match(str(row.get("recorded_run_id", "")))
    if match is None:
        return "typescript-or-go"
    suffix = match.group(1)
    recorded_at = row.get("recorded_at")
    if isinstance(recorded_at, str):
        digest = hashlib.sha256(recorded_at.encode("utf-8", "surrogatepass")).hexdigest()
        if suffix == digest[:12]:
            return "go"
    if suffix.isascii() and suffix.isdigit():
        return "typescript"
    return "typescript-or-go"


def is_dry_run(row: Mapping[str, Any]) -> bool:
    """A lakevec row by its gateway API; any other row by the synthetic answer's first words."""
    lk = row.get("lakevec")
    if isinstance(lk, dict) and isinstance(lk.get("gateway_api"), str):
        return bool(lk["gateway_api"] == DRY_RUN_API)
    response = row.get("model_response")
    return isinstance(response, str) and response.startswith(DRY_RUN_PREFIX)


def _field(row: Mapping[str, Any], name: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = row.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise RowProblem(f"{name} is missing or not {what}")
    return value


def _strings(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RowProblem(f"{name} is missing or not a list of strings")
    return value


def _label(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def experiment_of(lk: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    """``(experiment id, arm)`` from ``lakevec.experiment``: a string id (arm from
    ``lakevec.arm``) or an object with ``id`` (or ``experiment_id``/``name``) and
    ``arm`` (or ``variant``). ``(None, None)`` when the row is not tagged."""
    if lk is None:
        return None, None
    exp = lk.get("experiment")
    if isinstance(exp, dict):
        exp_id = _label(exp.get("id")) or _label(exp.get("experiment_id")) or _label(
            exp.get("name"))
        arm = _label(exp.get("arm")) or _label(exp.get("variant"))
    else:
        exp_id = _label(exp)
        arm = None
    if exp_id is None:
        return None, None
    return exp_id, arm or _label(lk.get("arm")) or _label(lk.get("experiment_arm"))


def experiment_verdict(lk: Mapping[str, Any] | None) -> bool | None:
    """``lakevec.experiment.verdict.passed``: how the experiment judged the run (``lakevec
    ab`` judges every arm with one gate); None when it did not."""
    exp = lk.get("experiment") if lk is not None else None
    verdict = exp.get("verdict") if isinstance(exp, dict) else None
    passed = verdict.get("passed") if isinstance(verdict, dict) else None
    return passed if isinstance(passed, bool) else None


def parse_row(row: Any, *, source: int = 0, line: int = 0) -> Run:
    """The :class:`Run` of one parsed line; raises :class:`RowProblem` naming what is wrong."""
    if not isinstance(row, dict):
        raise RowProblem(f"not a JSON object but a JSON {type(row).__name__}")
    schema = row.get("schema")
    if schema != SCHEMA_ID:
        shown = repr(schema)[:40] if "schema" in row else "missing"
        raise RowProblem(f"not a {SCHEMA_ID} row (schema {shown})")
    _field(row, "input_task", str, "a string")
    run_id = _field(row, "recorded_run_id", str, "a string")
    recorded_at = parse_time(_field(row, "recorded_at", str, "a string"))
    verdict = _field(row, "validation_result", dict, "an object")
    passed = verdict.get("passed")
    if not isinstance(passed, bool):
        raise RowProblem("validation_result.passed is missing or not a boolean")
    reasons = _strings(verdict.get("reasons", []), "validation_result.reasons")
    path = _strings(row.get("escalation_path"), "escalation_path")
    model_used = _field(row, "model_used", str, "a string")
    bundle = row.get("context_bundle")
    if bundle is not None and not isinstance(bundle, dict):
        raise RowProblem("context_bundle is neither an object nor null")
    lk = row.get("lakevec")
    if lk is not None and not isinstance(lk, dict):
        raise RowProblem("lakevec is neither an object nor absent")
    response = row.get("model_response", "")
    if not isinstance(response, str):
        raise RowProblem("model_response is not a string")
    duration = row.get("duration_ms")
    if isinstance(lk, dict):
        retriever = _label(lk.get("retriever")) or NO_RETRIEVER
    else:
        retriever = SEED_RETRIEVER if bundle is not None else NO_RETRIEVER
    experiment, arm = experiment_of(lk)
    return Run(
        run_id=run_id,
        recorded_at=recorded_at,
        day=recorded_at.date().isoformat(),
        runtime=detect_runtime(row),
        dry_run=is_dry_run(row),
        passed=passed,
        escalated=len(path) > 1,
        model=path[0] if path else model_used,
        model_used=model_used,
        retriever=retriever,
        retrieval=bundle is not None,
        experiment=experiment,
        arm=arm,
        verdict=experiment_verdict(lk) if experiment is not None else None,
        reasons=tuple(reasons),
        duration_ms=int(duration) if isinstance(duration, int | float)
        and not isinstance(duration, bool) and duration >= 0 else None,
        source=source,
        line=line,
    )


def _parse_line(raw: bytes, source: int, number: int) -> tuple[Run, Row, bytes]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RowProblem(f"not UTF-8 (byte {exc.start + 1})") from None
    # jsonsafe's checks with one decoder for all lines (json.loads with options
    # builds a decoder per call, a tenth of the parse time here).
    if jsonsafe.nesting_exceeds(text, REPORT_MAX_NESTING):
        raise RowProblem(f"not JSON: nested too deeply (more than {REPORT_MAX_NESTING} levels)")
    try:
        obj = _DECODER.decode(text)
    except ValueError as exc:
        message = str(exc)
        try:  # say why without the line break (a torn line ends inside a string)
            _DECODER.decode(text.rstrip("\r\n"))
        except ValueError as inner:
            message = str(inner)
        raise RowProblem(f"not JSON: {message[:80]}") from None
    return parse_row(obj, source=source, line=number), obj, raw


def read_rows(
    paths: Iterable[Path], sources: list[SourceFile]
) -> Iterator[tuple[Run, Row, bytes] | BadLine]:
    """Every line of every file, in order: ``(run, row, line bytes)`` or a :class:`BadLine`.

    Appends one :class:`SourceFile` per path to ``sources`` and keeps its
    counts current. Raises :class:`EvidenceError` when a file cannot be opened
    or read (bad *lines* never raise).
    """
    for index, path in enumerate(paths):
        source = SourceFile(str(path))
        sources.append(source)
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed below, errors mapped
        except FileNotFoundError:
            raise EvidenceError(
                f"no evidence log at {path} — run `lakevec replay` first or pass --evidence PATH"
            ) from None
        except OSError as exc:
            raise EvidenceError(f"cannot read evidence log {path}: {exc.strerror or exc}") from None
        with handle:
            number = 0
            try:
                for number, raw in enumerate(handle, start=1):
                    if raw.isspace():
                        continue
                    try:
                        parsed = _parse_line(raw, index, number)
                    except RowProblem as exc:
                        source.bad += 1
                        yield BadLine(str(path), number, str(exc))
                        continue
                    source.rows += 1
                    yield parsed
            except OSError as exc:
                raise EvidenceError(
                    f"cannot read evidence log {path} after line {number}: {exc.strerror or exc}"
                ) from None
            finally:
                source.lines = number
