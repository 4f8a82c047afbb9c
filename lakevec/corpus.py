"""Streaming reader for the playbook corpus (and BEIR-layout corpora).

A playbook record is one JSON object per line, shaped like the seed
pipeline's RAG samples. Reading never raises on what a line contains: every
non-blank line becomes either a record or a :class:`CorpusProblem` (its
1-based line number and the reason), so one bad export line cannot block a
cron reindex. ``strict`` turns the first problem into a
:class:`~lakevec.errors.CorpusError`; otherwise only a missing/unreadable
file or a corpus without a single valid record raises.

A line is read when it is UTF-8 (a BOM may open the file; CRLF endings and
a missing final newline are fine), at most ``max_line_bytes`` long, free of
NUL bytes, standard JSON (RFC 8259: no NaN/Infinity), an object nested at
most :data:`MAX_NESTING` deep, valid as a :class:`PlaybookRecord`, and free
of lone surrogates in the fields a record keeps. Unknown keys are ignored,
whatever they hold (huge integers included).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError, field_validator

from lakevec.errors import CorpusError
from lakevec.lines import (
    JSON_TYPES,
    MAX_LINE_BYTES,
    LineProblem,
    LineScan,
    clean_reason,
    decode_line,
    line_digest,
    open_corpus,
)

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


_SHOWN = 3  # problems / ids / line numbers quoted in a message before "(+N more)"
_KEPT_FIELDS: tuple[str, ...] = tuple(PlaybookRecord.model_fields)
_SURROGATE = re.compile("[\\ud800-\\udfff]")


@dataclass(frozen=True)
class CorpusProblem:
    """A line that could not be turned into a record."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass(frozen=True)
class DuplicateId:
    """An id seen on more than one line (every one of them, in order); the last line wins."""

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
    # id -> digest of the line its record came from (:func:`line_digest`).
    line_digests: dict[str, str] = field(default_factory=dict)
    sha256: str = ""
    lines: int = 0
    bytes: int = 0

    @property
    def skipped(self) -> int:
        """Lines skipped as unreadable or invalid (blank lines are not counted)."""
        return len(self.problems)

    @property
    def duplicate_lines(self) -> int:
        """Valid lines whose record was replaced by a later line with the same id."""
        return sum(len(d.lines) - 1 for d in self.duplicates)

    def skipped_lines(self) -> list[dict[str, int | str]]:
        """Every skipped line as ``{"line": n, "reason": "..."}``, in file order (for JSON)."""
        return [{"line": p.line, "reason": p.reason} for p in self.problems]

    def summary(self) -> str:
        """One line describing what was skipped or merged, empty when all is clean."""
        parts: list[str] = []
        if self.problems:
            first = "; ".join(str(p) for p in self.problems[:_SHOWN])
            more = _more(len(self.problems))
            parts.append(f"skipped {len(self.problems):,} bad line(s): {first}{more}")
        if self.duplicates:
            ids = "; ".join(
                f"id {_show_id(d.id)} on lines {_line_list(d.lines)}"
                for d in self.duplicates[:_SHOWN]
            )
            more = _more(len(self.duplicates), " id(s)")
            parts.append(
                f"{self.duplicate_lines:,} line(s) repeat an earlier id (last wins): {ids}{more}"
            )
        return f"{self.path}: " + "; ".join(parts) if parts else ""


def _more(total: int, what: str = "") -> str:
    return f" (+{total - _SHOWN:,} more{what})" if total > _SHOWN else ""


def _show_id(rid: str) -> str:
    return repr(rid if len(rid) <= 60 else rid[:57] + "...")


def _line_list(lines: tuple[int, ...]) -> str:
    """``1, 2, 3 … 10000 (+9,996 more)``: the first lines and the winning (last) one."""
    if len(lines) <= _SHOWN + 2:
        return ", ".join(map(str, lines))
    first = ", ".join(map(str, lines[:_SHOWN]))
    return f"{first} … {lines[-1]} (+{len(lines) - _SHOWN - 1:,} more)"


def _check_surrogates(data: dict[str, Any]) -> None:
    # A lone surrogate (from a "\ud800" escape) cannot be encoded as UTF-8, so
    # it would crash the embedder, BM25 or the JSON writers later. The line is
    # skipped rather than repaired with U+FFFD, in every kept field alike:
    # repairing would silently merge ids ("a\ud800" and "a\udc00" both become
    # "a\ufffd") and index text that is not in the file.
    for name in _KEPT_FIELDS:
        value = data.get(name)
        values = value if isinstance(value, list) else [value]
        for item in values:
            if isinstance(item, str) and (found := _SURROGATE.search(item)):
                code = f"\\u{ord(found.group()):04x}"
                raise LineProblem(f"contains a lone surrogate ({code}) in field {name}")


def _pydantic_reason(exc: ValidationError) -> str:
    details = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err["loc"]) or "record"
        details.append(f"{loc}: {err['msg']}")
    return "invalid record (" + "; ".join(details) + ")"


def _from_beir(obj: dict[str, Any]) -> dict[str, Any]:
    """Map a BEIR document (``_id``, ``title``, ``text``) onto the playbook shape."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = {}
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


class LineParser:
    """Turns one corpus line into a record; the corpus format is fixed by the first object."""

    def __init__(self, fmt: CorpusFormat, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self.resolved: Literal["playbooks", "beir"] | None = None if fmt == "auto" else fmt
        self.max_line_bytes = max_line_bytes

    def parse(self, raw: bytes | int) -> PlaybookRecord | str:
        """The record on a non-blank line, or why it is skipped (a printable reason)."""
        try:
            if isinstance(raw, int):
                raise LineProblem(f"longer than {self.max_line_bytes:,} bytes ({raw:,})")
            obj = decode_line(raw)
            if not isinstance(obj, dict):
                raise LineProblem(
                    f"expected a JSON object, got {JSON_TYPES.get(type(obj), 'a number')}"
                )
            if self.resolved is None:
                self.resolved = _detect(obj)
            data = _from_beir(obj) if self.resolved == "beir" else obj
            _check_surrogates(data)
            try:
                return PlaybookRecord.model_validate(data)
            except ValidationError as exc:
                raise LineProblem(_pydantic_reason(exc)) from None
        except LineProblem as exc:
            return clean_reason(str(exc))


def corpus_file(path: str | Path) -> Path:
    """The JSONL file behind ``path`` (a BEIR directory means its corpus.jsonl)."""
    path = Path(path)
    if path.is_dir():
        beir = path / "corpus.jsonl"
        if not beir.is_file():
            raise CorpusError(f"{path} is a directory without corpus.jsonl — pass the JSONL file")
        path = beir
    return path


def strict_error(path: Path, lineno: int, reason: str) -> CorpusError:
    return CorpusError(f"{path}: line {lineno}: {reason} — fix the line or drop --strict to "
                       "skip it")


def empty_error(path: Path, problems: list[CorpusProblem]) -> CorpusError:
    detail = f" ({len(problems):,} bad line(s): {problems[0]})" if problems else ""
    return CorpusError(f"corpus {path} has no valid records{detail} — export playbooks to it first")


def read_corpus(
    path: str | Path,
    fmt: CorpusFormat = "auto",
    *,
    strict: bool = False,
    allow_empty: bool = False,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> Corpus:
    """Stream ``path`` into a :class:`Corpus`.

    ``fmt="auto"`` decides from the first JSON object: BEIR documents have
    ``_id`` and ``text``. Bad lines are skipped and listed in
    :attr:`Corpus.problems`; with ``strict`` the first one raises
    :class:`CorpusError` naming its line. Also raises :class:`CorpusError`
    when the file is missing or unreadable, or holds no valid record (unless
    ``allow_empty``).
    """
    path = corpus_file(path)
    records: dict[str, PlaybookRecord] = {}
    digests: dict[str, str] = {}
    rows: list[PlaybookRecord] = []
    seen_lines: dict[str, list[int]] = {}
    problems: list[CorpusProblem] = []
    parser = LineParser(fmt, max_line_bytes)
    with open_corpus(path) as handle:
        scan = LineScan(handle, max_line_bytes)
        for lineno, raw in scan:
            rec = parser.parse(raw)
            if isinstance(rec, str):
                if strict:
                    raise strict_error(path, lineno, rec)
                problems.append(CorpusProblem(lineno, rec))
                continue
            records.pop(rec.id, None)  # last wins, and moves to the end
            records[rec.id] = rec
            digests[rec.id] = line_digest(raw) if isinstance(raw, bytes) else ""
            rows.append(rec)
            seen_lines.setdefault(rec.id, []).append(lineno)
        size = handle.tell()
    duplicates = [DuplicateId(i, tuple(ls)) for i, ls in seen_lines.items() if len(ls) > 1]
    if not records and not allow_empty:
        raise empty_error(path, problems)
    return Corpus(
        path=path,
        format=parser.resolved or "playbooks",
        records=records,
        problems=problems,
        duplicates=duplicates,
        rows=rows,
        line_digests=digests,
        sha256=scan.digest.hexdigest(),
        lines=scan.lines,
        bytes=size,
    )
