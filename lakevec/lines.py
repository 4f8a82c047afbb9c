"""Reading a JSONL file line by line without ever raising on what a line holds.

The byte-level half of corpus reading: bounded line length (a longer line
is streamed past, never held whole), BOM and CRLF handling, strict JSON
decoding with a fixed nesting limit and integers of any length, and the
digest that identifies a line's bytes. :mod:`lakevec.corpus` turns decoded
lines into records.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from lakevec import jsonsafe
from lakevec.errors import CorpusError, JsonTooDeep

#: Deepest nesting a line may have. A record needs 2 levels (object, tags);
#: the limit is fixed rather than left to the JSON parser's recursion limit,
#: which depends on how deep the caller's stack already is, so whether a line
#: is read never depends on who reads it.
MAX_NESTING = 100
#: Longest line read (bytes, newline excluded); a longer one is skipped while
#: streaming past it, so one runaway line cannot exhaust memory.
MAX_LINE_BYTES = 16 * 1024 * 1024

BOM = b"\xef\xbb\xbf"
_REASON_CHARS = 300


class LineProblem(Exception):
    """Why a line is skipped; raised and caught inside this module only."""


class _HugeInt:
    """An integer too long for ``int()``: ignored in unknown keys, invalid in record fields."""


def parse_int(literal: str) -> int | _HugeInt:
    try:
        return int(literal)
    except ValueError:  # "Exceeds the limit (4300 digits) for integer string conversion"
        return _HugeInt()


JSON_TYPES = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}


def decode_line(raw: bytes) -> Any:
    """The JSON value on one (non-blank) line; raises :class:`LineProblem`."""
    nul = raw.find(b"\x00")
    if nul >= 0:
        hint = "JSON text has none; is the file UTF-16?"
        raise LineProblem(f"contains a NUL byte at byte {nul + 1} ({hint})")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LineProblem(f"not UTF-8 ({exc.reason} at byte {exc.start + 1})") from None
    try:
        return jsonsafe.loads(text, max_nesting=MAX_NESTING, parse_int=parse_int)
    except JsonTooDeep as exc:
        raise LineProblem(str(exc)) from None
    except json.JSONDecodeError as exc:
        raise LineProblem(f"malformed JSON ({exc.msg} at column {exc.colno})") from None
    except ValueError as exc:  # NaN/Infinity and any other literal json rejects
        raise LineProblem(f"malformed JSON ({exc})") from None


#: Bytes read per call: whole blocks are hashed and split in C, so a 53k-line
#: corpus costs a few block reads rather than a readline and a hash call per line.
READ_BLOCK = 1 << 23


def read_raw_lines(
    handle: BinaryIO, digest: Any, max_line_bytes: int, block_size: int = READ_BLOCK
) -> Iterator[tuple[int, bytes | int]]:
    """``(line_number, raw_line)`` (without its ``\\n``), or ``(line_number, length)`` for a
    line over the limit, which is streamed past, never held whole. Every byte of the file
    goes through ``digest``. Memory: at most one block plus one line of the limit."""
    lineno = 0
    carry = b""  # the start of a line that continues in the next block
    skipped = -1  # >= 0 while streaming past an over-long line: its length so far
    while block := handle.read(block_size):
        digest.update(block)
        start = 0
        if skipped >= 0 or carry:
            end = block.find(b"\n")
            if end < 0:
                if skipped < 0 and len(carry) + len(block) <= max_line_bytes:
                    carry += block
                else:
                    skipped = max(skipped, 0) + len(carry) + len(block)
                    carry = b""
                continue
            lineno += 1
            if skipped >= 0 or len(carry) + end > max_line_bytes:
                yield lineno, max(skipped, 0) + len(carry) + end
            else:
                yield lineno, carry + block[:end]
            carry, skipped, start = b"", -1, end + 1
        last = block.rfind(b"\n", start)
        if last >= start:
            for line in block[start:last].split(b"\n"):
                lineno += 1
                yield lineno, (len(line) if len(line) > max_line_bytes else line)
            start = last + 1
        rest = block[start:]
        if len(rest) > max_line_bytes:
            skipped = len(rest)
        else:
            carry = rest
    if carry or skipped >= 0:
        lineno += 1
        yield lineno, (skipped if skipped >= 0 else carry)


def open_corpus(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise CorpusError(
            f"corpus file not found: {path} — pass --corpus PATH, or --root/"
            "$LH_DISTILL_ROOT pointing at the directory that holds exports/rag/playbooks.jsonl"
        ) from None
    except OSError as exc:
        raise CorpusError(f"cannot read corpus {path}: {exc.strerror}") from exc


def clean_reason(reason: str) -> str:
    """A reason that is safe to print and to put in JSON: UTF-8 encodable and bounded."""
    reason = reason.encode("utf-8", "backslashreplace").decode("utf-8")
    return reason if len(reason) <= _REASON_CHARS else reason[: _REASON_CHARS - 3] + "..."


def line_digest(raw: bytes) -> str:
    """Digest of a corpus line's bytes (line ending excluded): the same bytes, the same record.

    Snapshots keep the digest of the line behind every record, so a reindex
    parses and validates only lines it has not seen before.
    """
    return line_key(raw).hex()


def line_key(raw: bytes) -> bytes:
    """:func:`line_digest` as 16 raw bytes (cheaper as a dictionary key)."""
    return hashlib.blake2b(raw.rstrip(b"\r\n"), digest_size=16).digest()


class LineScan:
    """Iterates a corpus file's non-blank lines as ``(line_number, raw)`` (BOM removed), or
    ``(line_number, length)`` for one over the limit; hashes every byte (``sha256``) and
    counts every line (``lines``) on the way."""

    def __init__(self, handle: BinaryIO, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self.handle = handle
        self.max_line_bytes = max_line_bytes
        self.digest = hashlib.sha256()
        self.lines = 0

    def __iter__(self) -> Iterator[tuple[int, bytes | int]]:
        for lineno, raw in read_raw_lines(self.handle, self.digest, self.max_line_bytes):
            self.lines = lineno
            if isinstance(raw, bytes):
                raw = raw.removeprefix(BOM) if lineno == 1 else raw
                if not raw or raw.isspace():  # blank (no copy, unlike strip())
                    continue
            yield lineno, raw
