"""The ``replay_run.v1`` evidence row and its append-only log.

A row is the seed's ``ReplayResult`` with ``schema: "replay_run.v1"`` in front
and ``model_response`` cut to 4000 characters, so rows from lakevec, the
TypeScript and the Go runtime share one ``data/_kb/replay_runs.jsonl``.

lakevec adds exactly one optional key, ``lakevec``, holding provenance: the
lakevec version, the retriever, the index version and manifest hash, the
embedding model and the gateway API used. Readers that only know the seed's
row can ignore it.

Appends are safe under concurrent writers on a local filesystem: each append
takes an exclusive ``flock`` on the log, issues one ``write`` of the whole
line (O_APPEND) and ``fsync``s before releasing the lock.

Regenerate the committed JSON Schema with ``python -m lakevec.replay.evidence``.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lakevec.errors import EvidenceError
from lakevec.locks import acquire
from lakevec.replay.bundle import ContextBundle
from lakevec.replay.gate import ValidationResult
from lakevec.replay.jsstr import js_slice, js_to_well_formed
from lakevec.settings import DEFAULT_LOCK_TIMEOUT

__all__ = [
    "LOG_RESPONSE_CHARS",
    "SCHEMA_ID",
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
    gateway_api: str = Field(description='"lakehouse", "openai" or "dry-run"')


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
    """One compact JSON line (UTF-8, trailing newline), like ``JSON.stringify``."""
    if not isinstance(row, ReplayRunRow):
        row = to_row(row)
    data = row_dict(row)
    try:
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
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
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise EvidenceError(
            f"cannot open evidence log {path}: {exc.strerror or exc} — "
            "fix its permissions or pass --evidence PATH"
        ) from exc
    try:
        acquire(
            fd,
            timeout=lock_timeout,
            on_timeout=lambda: EvidenceError(
                f"evidence log {path} stayed locked by another writer for {lock_timeout:g}s"
            ),
        )
        size = os.fstat(fd).st_size
        # A writer killed mid-line must not glue its fragment to our row.
        if size > 0 and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        view = memoryview(data)
        while view:  # one write in practice; the loop only guards short writes
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except OSError as exc:
        raise EvidenceError(f"cannot write evidence log {path}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)  # closing the descriptor releases the flock
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
