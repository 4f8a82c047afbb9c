"""The ``replay_run.v1`` evidence row and its append-only log.

A row is the seed's ``ReplayResult`` with ``schema: "replay_run.v1"`` in front
and ``model_response`` cut to 4000 characters, so rows from lakevec, the
TypeScript and the Go runtime share one ``data/_kb/replay_runs.jsonl``.

lakevec adds exactly one optional key, ``lakevec``, holding provenance: the
lakevec version, the retriever, the index version and manifest hash, the
embedding model, the gateway API used, and the digest and length of the run's
tape (every model call, :mod:`lakevec.replay.tape`), and, for a run of an A/B
experiment (``lakevec ab``), the experiment it belongs to (:class:`Experiment`;
the key is left out of other rows). Readers that only know the seed's row can
ignore it.

Rows are written by :func:`~lakevec.replay.jsjson.stringify`, so numbers look
as ``JSON.stringify`` writes them (``1``, not ``1.0``; ``0.0000799744081893794``,
not ``7.99744081893794e-05``) and a lakevec row is byte-identical to the seed's.

Appends are safe under concurrent writers on a local filesystem: each append
takes an exclusive ``flock`` on the log, issues one ``write`` of the whole
line (O_APPEND) and ``fsync``s before releasing the lock.

Regenerate the committed JSON Schema with ``python -m lakevec.replay.evidence``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lakevec.errors import EvidenceError
from lakevec.locks import append_line, locked_log
from lakevec.replay.bundle import ContextBundle
from lakevec.replay.gate import ValidationResult
from lakevec.replay.jsjson import stringify
from lakevec.replay.jsstr import js_slice, js_to_well_formed
from lakevec.settings import DEFAULT_LOCK_TIMEOUT

__all__ = [
    "LOG_RESPONSE_CHARS",
    "SCHEMA_ID",
    "Experiment",
    "Provenance",
    "ReplayResult",
    "ReplayRunRow",
    "RetrievedIds",
    "append_evidence",
    "encode_row",
    "replay_run_json_schema",
    "to_row",
    "write_json_schema",
]

SCHEMA_ID = "replay_run.v1"
LOG_RESPONSE_CHARS = 4000
#: How long an append waits for another writer's lock.
LOCK_TIMEOUT = DEFAULT_LOCK_TIMEOUT
DEFAULT_SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "replay_run.v1.schema.json"

_HEX64 = r"^[0-9a-f]{64}$"
# lakevec and the Go port use sha256(recorded_at)[:12]; the TypeScript seed
# used a millisecond timestamp. Both are accepted so one schema fits the log.
_RUN_ID = r"^replay:[0-9a-f]{16}:[0-9a-f]+$"
_ISO_UTC = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$"
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class RetrievedIds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rag_ids: list[str]


class Experiment(BaseModel):
    """The A/B experiment a run belongs to (``lakevec ab``): ``lakevec.experiment``.

    ``verdict`` is the experiment's own judgement of the answer (its gate,
    with the same checklist for every arm of a task, see
    :mod:`lakevec.ab.experiment`); ``validation_result`` stays the pipeline's
    seed gate, which ``lakevec verify`` re-checks.
    """

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=128, description="experiment id, shared by its runs")
    arm: str = Field(
        min_length=1, max_length=128,
        description='arm of the run, e.g. "retrieval:hybrid" or "no-retrieval"',
    )
    task_id: str = Field(min_length=1, max_length=64, description="id in the A/B task file")
    repeat: int = Field(ge=1, description="1-based repeat of the task in this arm")
    gate: str | None = Field(default=None, description='"seed" or "strict": how verdict judged')
    verdict: ValidationResult | None = Field(
        default=None, description="the experiment's judgement of this run (its gate)"
    )


class Provenance(BaseModel):
    """The one extra key lakevec adds to a row (``"lakevec": {...}``)."""

    model_config = ConfigDict(extra="forbid")

    version: str = Field(description="lakevec version that wrote the row")
    retriever: str | None = Field(
        description='retriever name ("hnsw", "jaccard"...); null with --no-retrieval'
    )
    index_version: str | int | None = Field(
        default=None, description="version of the index snapshot used, when known"
    )
    manifest_sha256: str | None = Field(
        default=None, description="sha256 of the index manifest, when known"
    )
    embedding_model: str | None = Field(
        default=None, description="embedding model of the index, when known"
    )
    gateway_api: str = Field(description='"lakehouse", "openai", "local" or "dry-run"')
    tape: str | None = Field(
        default=None,
        pattern=_HEX64,
        description="sha256 hash chain over the run's recorded model calls: the tape "
        "data/_kb/tapes/<tape[:2]>/<tape>.json beside the log (`lakevec verify` replays it); "
        "null when no call was recorded (dry run); absent in rows written before tapes",
    )
    exchanges: int | None = Field(
        default=None, ge=0, description="number of recorded HTTP/in-process exchanges"
    )
    experiment: Experiment | None = Field(
        default=None,
        # Left out when None, so rows outside experiments keep their bytes.
        exclude_if=lambda value: value is None,
        description="the A/B experiment the run belongs to (`lakevec ab`); absent otherwise",
    )


class ReplayResult(BaseModel):
    """The seed's ReplayResult (full ``model_response``) plus optional provenance."""

    model_config = ConfigDict(extra="forbid")

    input_task: str
    task_hash: str = Field(pattern=_HEX64, description="sha256 hex of the task's UTF-8 bytes")
    retrieved_artifacts: RetrievedIds
    context_bundle: ContextBundle | None = Field(description="null with --no-retrieval")
    model_response: str
    model_used: str
    escalation_path: list[str] = Field(min_length=1, description="models tried, in order")
    validation_result: ValidationResult
    recorded_run_id: str = Field(pattern=_RUN_ID)
    recorded_at: str = Field(pattern=_ISO_UTC, description="ISO-8601 UTC timestamp")
    duration_ms: int = Field(ge=0)
    lakevec: Provenance | None = Field(
        default=None, description="lakevec provenance; absent in rows from other runtimes"
    )


class ReplayRunRow(ReplayResult):
    """One line of ``replay_runs.jsonl``: the result tagged ``schema: replay_run.v1``."""

    model_config = ConfigDict(
        extra="forbid",
        validate_by_name=True,
        validate_by_alias=True,
        title="replay_run.v1",
    )

    # Aliased because a field named "schema" would shadow BaseModel.schema().
    schema_: Literal["replay_run.v1"] = Field(alias="schema")
    model_response: str = Field(max_length=LOG_RESPONSE_CHARS)


def to_row(result: ReplayResult) -> ReplayRunRow:
    """The persisted form of ``result``: tagged, with the response truncated.

    A lone surrogate in the response (the HTTP gateway already replaces them;
    another ChatGateway might not) becomes U+FFFD: it is not text.
    """
    data = result.model_dump()
    data["model_response"] = js_to_well_formed(js_slice(result.model_response, LOG_RESPONSE_CHARS))
    return ReplayRunRow.model_validate({"schema": SCHEMA_ID, **data})


def row_dict(row: ReplayRunRow) -> dict[str, Any]:
    """JSON-ready dict in the seed's key order (``schema`` first)."""
    data = row.model_dump(mode="json", by_alias=True)
    ordered: dict[str, Any] = {"schema": data.pop("schema")}
    ordered.update(data)
    if ordered.get("lakevec") is None:
        ordered.pop("lakevec", None)
    return ordered


def encode_row(row: ReplayRunRow | ReplayResult) -> bytes:
    """One compact JSON line (UTF-8, trailing newline), byte for byte ``JSON.stringify``."""
    if not isinstance(row, ReplayRunRow):
        row = to_row(row)
    data = row_dict(row)
    try:
        text = stringify(data)
    except ValueError as exc:
        raise EvidenceError(f"evidence row is not valid JSON: {exc}") from exc
    try:
        return (text + "\n").encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate elsewhere (only a library caller can pass one) is
        # written as a \uXXXX escape, as JSON.stringify does: the line stays
        # UTF-8 and decodes to the same string.
        escaped = _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
        return (escaped + "\n").encode("utf-8")


def append_evidence(
    path: Path, row: ReplayRunRow | ReplayResult, *, lock_timeout: float = LOCK_TIMEOUT
) -> ReplayRunRow:
    """Append one row to the JSONL log at ``path``; returns the row as written.

    Raises :class:`EvidenceError` when the log (or its directory) is not writable.
    """
    if not isinstance(row, ReplayRunRow):
        row = to_row(row)
    data = encode_row(row)
    path = Path(path)
    with locked_log(path, timeout=lock_timeout, what="evidence log",
                    fix="fix its permissions or pass --evidence PATH", error=EvidenceError) as fd:
        append_line(fd, data)
    return row


def replay_run_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a ``replay_run.v1`` row, from the pydantic model."""
    schema = ReplayRunRow.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://lakevec.invalid/schemas/replay_run.v1.schema.json",
        **schema,
    }


def schema_text() -> str:
    return json.dumps(replay_run_json_schema(), indent=2, ensure_ascii=False) + "\n"


def write_json_schema(path: Path = DEFAULT_SCHEMA_PATH) -> Path:
    """Write the generated schema to ``path`` (default ``docs/replay_run.v1.schema.json``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(schema_text(), encoding="utf-8")
    return path


if __name__ == "__main__":  # pragma: no cover
    print(write_json_schema(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SCHEMA_PATH))
