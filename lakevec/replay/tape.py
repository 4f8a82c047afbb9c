"""Tapes: every model call of one replay run, kept so the run can be re-verified offline.

A tape is one JSON document per run: the run's header (:class:`TapeRun`: the
flags, models, request options and gateway configuration needed to run it
again) and its :class:`Exchange` list, one per HTTP request (a redirect adds
one) or per in-process model call. An exchange keeps the exact request bytes,
the response status, headers and bytes (cut at :data:`~lakevec.settings.TAPE_BODY_CAP`
and marked), the wall time, an ``error`` when the call failed, and what the
server reported (``usage``, ``finish_reason``, ``served_model``).

**Digest.** A hash chain: ``h0 = sha256(b"lakevec-tape/1")``, then
``h = sha256(h + sha256(canonical(run)))`` and ``h = sha256(h + sha256(canonical(exchange_i)))``
for each exchange in order, where ``canonical`` is sorted-key compact JSON
with JavaScript numbers (:func:`~lakevec.replay.jsjson.stringify`). The header
is linked first so that a tape cannot be replayed under other flags. The row
names the tape by this digest (``lakevec.tape``).

**Storage** (:class:`TapeStore`): ``<dir>/<digest[:2]>/<digest>.json``, the
canonical encoding of the whole document. The name is the content's digest,
so concurrent writers need no lock: each writes a temp file, fsyncs and
renames; two writers of one tape write the same bytes to the same name.
One file per run was measured against body blobs plus an index file and
SQLite in WAL mode (README, "Tapes"): fewest fsyncs, nothing to repair after
a crash (a tape is complete or absent), and greppable.

**Loading** checks everything a flipped byte can touch: the file must be the
canonical encoding of a valid document, every body must match its sha256 and
the chain must give the file's name. :class:`TapePlayer` then serves the
exchanges to a replaying gateway and refuses any request whose bytes differ.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, model_validator

from lakevec import jsonsafe
from lakevec.errors import EvidenceError, TapeError, TapeMismatch
from lakevec.files import write_atomic
from lakevec.replay.jsjson import stringify
from lakevec.replay.jsstr import js_to_well_formed
from lakevec.settings import TAPE_BODY_CAP

__all__ = [
    "EXCHANGE_VERSION",
    "TAPE_FORMAT",
    "Body",
    "Exchange",
    "ExchangeError",
    "Tape",
    "TapePlayer",
    "TapeRecorder",
    "TapeRun",
    "TapeStore",
    "chain_digest",
    "encode_tape",
    "first_difference",
    "reported_fields",
]

TAPE_FORMAT = "lakevec-tape/1"
EXCHANGE_VERSION = 1
_HEX64 = r"^[0-9a-f]{64}$"
_MAX_TAPE_NESTING = 512
_CONTEXT = 24


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Body(_Model):
    """Bytes as recorded: UTF-8 text when they decode, else base64; maybe cut."""

    length: int = Field(ge=0, description="bytes stored (after any cut)")
    sha256: str = Field(pattern=_HEX64, description="sha256 of the stored bytes")
    text: str | None = None
    base64: str | None = None
    truncated: bool = Field(
        default=False,
        description="the body went on: cut at the tape's cap, or its reader stopped early",
    )
    original_length: int | None = Field(
        default=None, ge=0, description="the full length when known (Content-Length)"
    )

    @model_validator(mode="after")
    def _one_encoding(self) -> Self:
        if (self.text is None) == (self.base64 is None):
            raise ValueError("a body has exactly one of text and base64")
        if self.base64 is not None:
            try:
                base64.b64decode(self.base64, validate=True)
            except binascii.Error as exc:
                raise ValueError(f"base64 body does not decode: {exc}") from None
        return self

    @classmethod
    def of(
        cls, data: bytes, *, truncated: bool = False, original_length: int | None = None,
        cap: int = TAPE_BODY_CAP,
    ) -> Body:
        if len(data) > cap:
            original_length = original_length if original_length is not None else len(data)
            data, truncated = data[:cap], True
        try:
            text: str | None = data.decode("utf-8")
            b64 = None
        except UnicodeDecodeError:
            text, b64 = None, base64.b64encode(data).decode("ascii")
        return cls(
            length=len(data), sha256=hashlib.sha256(data).hexdigest(), text=text, base64=b64,
            truncated=truncated, original_length=original_length,
        )

    def data(self) -> bytes:
        if self.text is not None:
            return self.text.encode("utf-8")
        return base64.b64decode(self.base64 or "", validate=True)


class ExchangeError(_Model):
    """Why an exchange has no (complete) response: the exception, as raised."""

    type: str = Field(description='exception class, e.g. "ConnectError", "ReadTimeout"')
    message: str


class Exchange(_Model):
    """One request and what came back (format version ``v``)."""

    v: Literal[1] = 1
    call: int = Field(ge=1, description="1-based model call (a redirect repeats it)")
    api: str = Field(description='"lakehouse", "openai", "local"...')
    model: str = Field(description="the model requested")
    transport: Literal["http", "in-process"] = "http"
    method: str | None = None
    url: str | None = Field(default=None, description="without user:password")
    request_headers: dict[str, str] = Field(
        default_factory=dict, description="as sent, minus authorization and cookies"
    )
    request: Body = Field(description="the request bytes exactly as sent")
    max_tokens: int | None = None
    temperature: float | None = None
    status: int | None = None
    content_type: str | None = None
    response_headers: list[tuple[str, str]] = Field(default_factory=list)
    response: Body | None = Field(default=None, description="None when no response came")
    error: ExchangeError | None = None
    wall_ms: float = Field(ge=0, description="request start to the end of the body")
    usage: JsonValue = None
    finish_reason: JsonValue = None
    served_model: JsonValue = Field(default=None, description="the model the server named")


class TapeRun(_Model):
    """What a run was asked to do: enough to run it again from its row."""

    run_id: str
    task_sha256: str = Field(pattern=_HEX64)
    api: str
    gateway: dict[str, JsonValue] = Field(
        description="the gateway's own configuration (no secrets), for its replayer"
    )
    local_model: str
    escalation_model: str
    local_only: bool
    allow_escalation: bool
    no_retrieval: bool
    max_tokens: int
    temperature: float


class Tape(_Model):
    format: Literal["lakevec-tape/1"] = "lakevec-tape/1"
    digest: str = Field(pattern=_HEX64)
    run: TapeRun
    exchanges: list[Exchange]


def _canonical(model: BaseModel) -> bytes:
    return stringify(model.model_dump(mode="json"), sort_keys=True).encode("utf-8")


def chain_digest(run: TapeRun, exchanges: Sequence[Exchange]) -> str:
    """The tape's digest: a sha256 chain over the header and each exchange, in order."""
    head = hashlib.sha256(TAPE_FORMAT.encode("ascii")).digest()
    for link in (run, *exchanges):
        head = hashlib.sha256(head + hashlib.sha256(_canonical(link)).digest()).digest()
    return head.hex()


def encode_tape(tape: Tape) -> bytes:
    """The canonical file bytes of a tape (sorted keys, compact, one trailing newline)."""
    return _canonical(tape) + b"\n"


def _well_formed(value: Any) -> JsonValue:
    if isinstance(value, str):
        return js_to_well_formed(value)
    if isinstance(value, list):
        return [_well_formed(v) for v in value]
    if isinstance(value, dict):
        return {js_to_well_formed(str(k)): _well_formed(v) for k, v in value.items()}
    return value  # type: ignore[no-any-return]


def reported_fields(body: bytes) -> tuple[JsonValue, JsonValue, JsonValue]:
    """``usage``, ``choices[0].finish_reason`` and ``model`` of a JSON reply, else None.

    Best effort and never raising: a body that is not a JSON object (or
    holds values the canonical encoding cannot carry) reports nothing.
    """
    try:
        payload = jsonsafe.loads(body.decode("utf-8-sig", errors="replace"), max_nesting=64)
        if not isinstance(payload, dict):
            return None, None, None
        choices = payload.get("choices")
        first = choices[0] if isinstance(choices, list) and choices else None
        finish = first.get("finish_reason") if isinstance(first, dict) else None
        fields = (_well_formed(payload.get("usage")), _well_formed(finish),
                  _well_formed(payload.get("model")))
        stringify(list(fields))  # NaN/huge floats would not survive the canonical form
        return fields
    except (ValueError, TypeError, RecursionError):
        return None, None, None


class TapeRecorder:
    """Collects one run's exchanges; the engine makes one per run.

    A gateway calls :meth:`begin_call` once per model call and :meth:`record`
    for each exchange of that call (thread-safe; calls stay in order).
    """

    def __init__(self, run: TapeRun) -> None:
        self.run = run
        self._exchanges: list[Exchange] = []
        self._calls = 0
        self._lock = threading.Lock()

    def begin_call(self) -> int:
        with self._lock:
            self._calls += 1
            return self._calls

    def record(self, exchange: Exchange) -> None:
        with self._lock:
            last = self._exchanges[-1].call if self._exchanges else 0
            if not last <= exchange.call <= self._calls:
                raise ValueError(f"exchange of call {exchange.call} recorded out of order")
            self._exchanges.append(exchange)

    @property
    def exchanges(self) -> list[Exchange]:
        with self._lock:
            return list(self._exchanges)

    def tape(self) -> Tape | None:
        """The finished tape, or None when nothing was recorded."""
        exchanges = self.exchanges
        if not exchanges:
            return None
        return Tape(digest=chain_digest(self.run, exchanges), run=self.run, exchanges=exchanges)


def first_difference(
    expected: bytes, actual: bytes, names: tuple[str, str] = ("tape", "now")
) -> str:
    """Where two byte strings first differ, with a little context from each."""
    offset = next(
        (i for i, (a, b) in enumerate(zip(expected, actual, strict=False)) if a != b),
        min(len(expected), len(actual)),
    )
    start, end = max(0, offset - _CONTEXT), offset + _CONTEXT
    first, second = names
    return (
        f"byte {offset} ({first} {len(expected)} bytes, {second} {len(actual)}): "
        f"{first} …{expected[start:end]!r}… {second} …{actual[start:end]!r}…"
    )


class TapeStore:
    """Tapes in one directory, named by digest (see the module docstring)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path_for(self, digest: str) -> Path:
        return self.directory / digest[:2] / f"{digest}.json"

    def write(self, tape: Tape) -> Path:
        """Store ``tape`` durably; an existing file of that name already holds it."""
        path = self.path_for(tape.digest)
        if path.exists():
            return path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, encode_tape(tape))
        except OSError as exc:
            raise EvidenceError(  # tapes are evidence: the same failure as an unwritable log
                f"cannot write tape {path}: {exc.strerror or exc} — fix the permissions of "
                f"{self.directory} or pass --evidence PATH"
            ) from exc
        return path

    def load(self, digest: str) -> Tape:
        """Read and check a tape; raises :class:`TapeError` saying what is wrong."""
        path = self.path_for(digest)
        name = f"tape {digest[:16]}…"
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise TapeError(f"{name} is missing ({path})") from None
        except OSError as exc:
            raise TapeError(f"cannot read tape {path}: {exc.strerror or exc}") from exc
        try:
            tape = Tape.model_validate(
                jsonsafe.loads(raw.decode("utf-8"), max_nesting=_MAX_TAPE_NESTING)
            )
        except (ValueError, ValidationError) as exc:  # UnicodeDecodeError, JSON, schema
            reason = str(exc).splitlines()[0][:200]
            raise TapeError(f"{name} is damaged: not a valid tape ({reason})") from None
        if encode_tape(tape) != raw:
            where = first_difference(encode_tape(tape), raw, ("canonical", "file"))
            raise TapeError(f"{name} is damaged: not its canonical encoding at {where}")
        for ex in tape.exchanges:
            for part, body in (("request", ex.request), ("response", ex.response)):
                if body is not None and hashlib.sha256(body.data()).hexdigest() != body.sha256:
                    raise TapeError(
                        f"{name} is damaged: the {part} body of call {ex.call} does not match "
                        "its sha256", call=ex.call,
                    )
        computed = chain_digest(tape.run, tape.exchanges)
        if not computed == tape.digest == digest:
            raise TapeError(f"{name} is damaged: its content hashes to {computed[:16]}…")
        return tape


class TapePlayer:
    """Serves a tape's exchanges in order to a replaying gateway, strictly.

    Each request must be the next recorded one, byte for byte (method, URL
    and body); anything else raises :class:`TapeMismatch`. There is nothing
    behind the player: an unrecorded request is an error, never sent.
    """

    def __init__(self, tape: Tape) -> None:
        self.tape = tape
        self._next = 0
        self._lock = threading.Lock()

    def take(
        self, call: int, body: bytes, *, method: str | None = None, url: str | None = None
    ) -> Exchange:
        with self._lock:
            total = len(self.tape.exchanges)
            if self._next >= total:
                target = f" ({method} {url})" if url else ""
                raise TapeMismatch(
                    call, f"today's code sends a request{target} the tape does not hold "
                    f"(it recorded {total} exchanges); nothing was sent",
                )
            recorded = self.tape.exchanges[self._next]
            if recorded.call != call:
                raise TapeMismatch(
                    call, f"the tape's next exchange belongs to call {recorded.call}"
                )
            pairs = (("method", recorded.method, method), ("URL", recorded.url, url))
            for what, then, now in pairs:
                if then != now:
                    raise TapeMismatch(call, f"request {what} differs: tape {then!r}, now {now!r}")
            expected = recorded.request.data()
            if expected != body:
                raise TapeMismatch(
                    call, f"request bytes differ at {first_difference(expected, body)}"
                )
            self._next += 1
            return recorded

    def remaining(self) -> list[Exchange]:
        with self._lock:
            return self.tape.exchanges[self._next:]
