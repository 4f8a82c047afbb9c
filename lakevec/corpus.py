"""Streaming reader for the playbook corpus (and BEIR-layout corpora).

A playbook record is one JSON object per line, shaped like the seed
pipeline's RAG samples. Bad lines never abort a read by default: each is
reported with its line number and reason, skipped, and counted; ``strict``
turns the first report into a :class:`~lakevec.errors.CorpusError`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError, field_validator

from lakevec.errors import CorpusError

CorpusFormat = Literal["auto", "playbooks", "beir"]


class PlaybookRecord(BaseModel):
    """One corpus record. Unknown keys are ignored so exporters can add fields."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: StrictStr = Field(min_length=1)
    title: StrictStr
    content: StrictStr
    tags: list[StrictStr] = Field(default_factory=list)
    source_run_id: StrictStr = ""
    success_score: StrictStr
    source_category: StrictStr = ""
    created_at: StrictStr | None = None

    @field_validator("tags", mode="before")
    @classmethod
    def _null_tags(cls, value: Any) -> Any:
        # The seed treats a missing/null tag list as empty (`r.tags ?? []`).
        return [] if value is None else value

    @field_validator("source_run_id", "source_category", mode="before")
    @classmethod
    def _null_str(cls, value: Any) -> Any:
        return "" if value is None else value


def embed_text(record: PlaybookRecord) -> str:
    """The exact text that is embedded for a record: ``title + " " + content``.

    Tags are left out on purpose: they are short keyword lists that skew a
    sentence embedding; they still take part in Jaccard/BM25 retrieval.
    """
    return f"{record.title} {record.content}".strip()


def keyword_text(record: PlaybookRecord) -> str:
    """The text keyword retrievers (the seed's Jaccard, BM25) see: title, content and tags."""
    return f"{record.title} {record.content} {' '.join(record.tags)}"


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CorpusProblem:
    """A line that could not be turned into a record."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass(frozen=True)
class DuplicateId:
    """An id seen on more than one line; the last line wins."""

    id: str
    lines: tuple[int, ...]


@dataclass
class Corpus:
    """The result of reading a corpus file: valid records plus every problem seen."""

    path: Path
    format: Literal["playbooks", "beir"]
    records: dict[str, PlaybookRecord]
    problems: list[CorpusProblem] = field(default_factory=list)
    duplicates: list[DuplicateId] = field(default_factory=list)
    # Every valid line in file order, duplicates included: the seed's Jaccard
    # scan sees them all, so its bundle can only be reproduced from these.
    rows: list[PlaybookRecord] = field(default_factory=list)
    sha256: str = ""
    lines: int = 0
    bytes: int = 0

    @property
    def skipped(self) -> int:
        return len(self.problems)

    def summary(self) -> str:
        """One line describing what was skipped or merged, empty when all is clean."""
        parts: list[str] = []
        if self.problems:
            first = "; ".join(str(p) for p in self.problems[:3])
            more = f" (+{len(self.problems) - 3} more)" if len(self.problems) > 3 else ""
            parts.append(f"skipped {len(self.problems)} bad line(s): {first}{more}")
        if self.duplicates:
            ids = ", ".join(d.id for d in self.duplicates[:3])
            more = f" (+{len(self.duplicates) - 3} more)" if len(self.duplicates) > 3 else ""
            parts.append(f"{len(self.duplicates)} duplicate id(s), last line wins: {ids}{more}")
        return f"{self.path}: " + "; ".join(parts) if parts else ""


def _pydantic_reason(exc: ValidationError) -> str:
    details = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err["loc"]) or "record"
        details.append(f"{loc}: {err['msg']}")
    return "invalid record (" + "; ".join(details) + ")"


def _from_beir(obj: dict[str, Any]) -> dict[str, Any]:
    """Map a BEIR document (``_id``, ``title``, ``text``) onto the playbook shape."""
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    assert isinstance(meta, dict)
    return {
        "id": obj.get("_id"),
        "title": obj.get("title") or "",
        "content": obj.get("text"),
        "tags": meta.get("tags") or [],
        "source_run_id": "",
        "success_score": meta.get("success_score", "accepted"),
        "source_category": meta.get("source_category", "beir"),
    }


def _detect(obj: dict[str, Any]) -> Literal["playbooks", "beir"]:
    return "beir" if "_id" in obj and "text" in obj and "id" not in obj else "playbooks"


def iter_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line_number, raw_line)`` for every line of ``path``, 1-based."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise CorpusError(
            f"corpus file not found: {path} — pass --corpus PATH, or --root/"
            "$LH_DISTILL_ROOT pointing at the directory that holds exports/rag/playbooks.jsonl"
        ) from None
    except OSError as exc:
        raise CorpusError(f"cannot read corpus {path}: {exc.strerror}") from exc
    with handle:
        yield from enumerate(handle, start=1)


def read_corpus(
    path: str | Path,
    fmt: CorpusFormat = "auto",
    *,
    strict: bool = False,
    allow_empty: bool = False,
) -> Corpus:
    """Stream ``path`` into a :class:`Corpus`.

    ``fmt="auto"`` decides from the first JSON object: BEIR documents have
    ``_id`` and ``text``. With ``strict`` the first bad line raises.
    """
    path = Path(path)
    if path.is_dir():
        beir = path / "corpus.jsonl"
        if not beir.is_file():
            raise CorpusError(f"{path} is a directory without corpus.jsonl — pass the JSONL file")
        path = beir
    digest = hashlib.sha256()
    records: dict[str, PlaybookRecord] = {}
    rows: list[PlaybookRecord] = []
    seen_lines: dict[str, list[int]] = {}
    problems: list[CorpusProblem] = []
    resolved: Literal["playbooks", "beir"] | None = None if fmt == "auto" else fmt
    lines = size = 0
    for lineno, raw in iter_lines(path):
        lines = lineno
        size += len(raw)
        digest.update(raw)
        if not raw.strip():
            continue
        problem: str | None = None
        try:
            obj = json.loads(raw)
        except UnicodeDecodeError as exc:
            problem = f"not UTF-8 ({exc.reason})"
        except json.JSONDecodeError as exc:
            problem = f"malformed JSON ({exc.msg} at column {exc.colno})"
        else:
            if not isinstance(obj, dict):
                problem = f"expected a JSON object, got {type(obj).__name__}"
            else:
                if resolved is None:
                    resolved = _detect(obj)
                try:
                    rec = PlaybookRecord.model_validate(
                        _from_beir(obj) if resolved == "beir" else obj
                    )
                except ValidationError as exc:
                    problem = _pydantic_reason(exc)
                else:
                    records.pop(rec.id, None)  # last wins, and moves to the end
                    records[rec.id] = rec
                    rows.append(rec)
                    seen_lines.setdefault(rec.id, []).append(lineno)
        if problem is not None:
            if strict:
                raise CorpusError(
                    f"{path}: line {lineno}: {problem} — fix the line or drop --strict to skip it"
                )
            problems.append(CorpusProblem(lineno, problem))
    duplicates = [DuplicateId(i, tuple(ls)) for i, ls in seen_lines.items() if len(ls) > 1]
    if not records and not allow_empty:
        detail = f" ({len(problems)} bad line(s): {problems[0]})" if problems else ""
        raise CorpusError(
            f"corpus {path} has no valid records{detail} — export playbooks to it first"
        )
    return Corpus(
        path=path,
        format=resolved or "playbooks",
        records=records,
        problems=problems,
        duplicates=duplicates,
        rows=rows,
        sha256=digest.hexdigest(),
        lines=lines,
        bytes=size,
    )
