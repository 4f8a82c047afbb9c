"""Re-verify logged runs offline: today's code, fed the run's tape, must write the same row.

For one ``replay_run.v1`` row with a tape (:func:`verify_row`):

1. the tape is loaded and checked (:meth:`~lakevec.replay.tape.TapeStore.load`:
   canonical bytes, body hashes, the hash chain the row names);
2. :func:`~lakevec.replay.engine.replay` runs again with the row's task and
   bundle (no retrieval), the tape's flags, models and options, a clock that
   returns the row's ``recorded_at`` and ``duration_ms``, no log, and the
   gateway of the tape's api in replay mode (:mod:`lakevec.replay.replayers`):
   today's prompt code builds each request, which must be byte-identical to
   the recorded one (there is no network: an unrecorded request is an error),
   and the recorded responses go through today's parsing, gate and escalation;
3. every recorded exchange must have been used, and the row it produces must
   equal the logged one field by field (the lakevec version, the index
   facts and an A/B experiment's tag are inputs and carried over) and then
   byte for byte.

Verdicts: ``bit-exact``; ``diverged`` at a call (request bytes, tape damage)
or in a row field; ``not-verifiable`` (rows of other runtimes, dry runs,
rows without a tape). :func:`retrieval_drift` separately re-runs retrieval on
today's index and reports which ``rag_ids`` changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal

from pydantic import ValidationError

from lakevec import jsonsafe
from lakevec.clock import parse_iso
from lakevec.errors import EvidenceError, LakevecError, TapeError, TapeMismatch
from lakevec.replay.bundle import build_context_bundle
from lakevec.replay.engine import DRY_RUN_API, ReplayRequest, replay
from lakevec.replay.evidence import ReplayRunRow, encode_row, row_dict, to_row
from lakevec.replay.replayers import replayer_for
from lakevec.replay.tape import TapePlayer, TapeStore, first_difference
from lakevec.retrieval.base import Retriever

__all__ = [
    "Drift",
    "LogRow",
    "RecordedClock",
    "Skipped",
    "Verdict",
    "first_field_difference",
    "read_log",
    "retrieval_drift",
    "verify_row",
]

Status = Literal["bit-exact", "diverged", "not-verifiable"]
# Inputs of a run, not outputs: carried over from the row (an experiment's tag
# and verdict are the experiment's, see lakevec.ab.experiment).
_INPUT_PROVENANCE = (
    "version", "retriever", "index_version", "manifest_sha256", "embedding_model", "experiment",
)
_SHOWN = 80


@dataclass(frozen=True)
class Drift:
    """Retrieval today against the row's ``rag_ids``."""

    status: Literal["unchanged", "changed", "not-applicable", "unavailable"]
    detail: str
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


@dataclass(frozen=True)
class Verdict:
    line: int
    run_id: str
    status: Status
    detail: str = ""
    call: int | None = None
    field: str | None = None
    drift: Drift | None = None

    def text(self) -> str:
        if self.status == "bit-exact":
            return "bit-exact"
        if self.status == "not-verifiable":
            return f"not verifiable: {self.detail}"
        where = (f" at call {self.call}" if self.call is not None
                 else f" in row field {self.field}" if self.field else "")
        return f"diverged{where}: {self.detail}"

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "run_id": self.run_id, "line": self.line, "verdict": self.status,
            "call": self.call, "field": self.field, "detail": self.detail, "text": self.text(),
        }
        if self.drift is not None:
            out["retrieval"] = {
                "status": self.drift.status, "detail": self.drift.detail,
                "added": list(self.drift.added), "removed": list(self.drift.removed),
            }
        return out


@dataclass(frozen=True)
class LogRow:
    """A ``replay_run.v1`` line: valid (``row``), or invalid but claiming a tape (``problem``)."""

    line: int
    raw: bytes
    run_id: str
    recorded_at: datetime | None
    row: ReplayRunRow | None = None
    problem: str | None = None


@dataclass(frozen=True)
class Skipped:
    line: int
    reason: str


def _moment(text: object) -> datetime | None:
    try:
        return parse_iso(text) if isinstance(text, str) else None
    except ValueError:
        return None


def read_log(path: Path) -> Iterator[LogRow | Skipped]:
    """Every line of an evidence log: rows to verify, and lines skipped with the reason.

    Blank lines are ignored. A ``replay_run.v1`` line that fails validation
    is skipped, unless it names a tape: then it is a row whose verdict says
    what is wrong (an edited row must not slip through as "not a row").
    """
    try:
        with Path(path).open("rb") as handle:
            yield from _entries(handle)
    except OSError as exc:
        raise EvidenceError(f"cannot read evidence log {path}: {exc.strerror or exc}") from exc


def _entries(handle: BinaryIO) -> Iterator[LogRow | Skipped]:
    for number, line in enumerate(handle, start=1):
        raw = line.rstrip(b"\n")
        if not raw.strip():
            continue
        try:
            data = jsonsafe.loads(raw.decode("utf-8"), max_nesting=64)
        except ValueError as exc:  # UnicodeDecodeError, JSON errors, too deep
            yield Skipped(number, f"not JSON ({str(exc).splitlines()[0][:120]})")
            continue
        if not isinstance(data, dict) or data.get("schema") != "replay_run.v1":
            yield Skipped(number, "not a replay_run.v1 row")
            continue
        run_id = str(data.get("recorded_run_id", f"line {number}"))
        moment = _moment(data.get("recorded_at"))
        try:
            row = ReplayRunRow.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            reason = f"not a valid replay_run.v1 row ({where}: {first['msg']})"
            prov = data.get("lakevec")
            if isinstance(prov, dict) and prov.get("tape"):
                yield LogRow(number, raw, run_id, moment, problem=reason)
            else:
                yield Skipped(number, reason)
            continue
        yield LogRow(number, raw, run_id, moment, row=row)


class RecordedClock:
    """The row's clock: ``now()`` is its ``recorded_at``; the run lasts its ``duration_ms``.

    The first ``monotonic()`` reading is 0, every later one the duration (plus
    half a millisecond, so the engine's ``int(... * 1000)`` gives it back exactly).
    """

    def __init__(self, recorded_at: str, duration_ms: int) -> None:
        self._now = parse_iso(recorded_at)
        self._end = (duration_ms + 0.5) / 1000
        self._started = False

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        if not self._started:
            self._started = True
            return 0.0
        return self._end


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"


def first_field_difference(logged: Any, replayed: Any, path: str = "") -> str | None:
    """The first place two JSON values differ, as ``path: logged X, replayed Y``."""
    if isinstance(logged, dict) and isinstance(replayed, dict):
        for key in [*logged, *(k for k in replayed if k not in logged)]:
            where = f"{path}.{key}" if path else key
            if key not in replayed:
                return f"{where}: logged {_shown(logged[key])}, absent on replay"
            if key not in logged:
                return f"{where}: absent in the log, replayed {_shown(replayed[key])}"
            found = first_field_difference(logged[key], replayed[key], where)
            if found:
                return found
        return None
    if isinstance(logged, list) and isinstance(replayed, list):
        for i, (a, b) in enumerate(zip(logged, replayed, strict=False)):
            found = first_field_difference(a, b, f"{path}[{i}]")
            if found:
                return found
        if len(logged) != len(replayed):
            return f"{path}: logged {len(logged)} items, replayed {len(replayed)}"
        return None
    if type(logged) is not type(replayed) or logged != replayed:
        return f"{path}: logged {_shown(logged)}, replayed {_shown(replayed)}"
    return None


def verify_row(entry: LogRow, store: TapeStore) -> Verdict:
    """Replay one logged run from its tape and compare (see the module docstring)."""

    def verdict(status: Status, detail: str, **where: Any) -> Verdict:
        return Verdict(entry.line, entry.run_id, status, detail, **where)

    if entry.row is None:
        return verdict("diverged", entry.problem or "not a valid row")
    row = entry.row
    prov = row.lakevec
    if prov is None:
        return verdict("not-verifiable", "no lakevec provenance: a TypeScript or Go runtime row")
    if prov.gateway_api == DRY_RUN_API:
        return verdict("not-verifiable", "dry run: no model was called")
    if prov.tape is None:
        return verdict("not-verifiable", "no tape (written before lakevec recorded model calls)")
    try:
        tape = store.load(prov.tape)
    except TapeError as exc:
        return verdict("diverged", str(exc), call=exc.call)
    run = tape.run
    if run.run_id != row.recorded_run_id:
        return verdict("diverged", f"the tape was recorded for run {run.run_id}",
                       field="recorded_run_id")
    replayer = replayer_for(run.api)
    if isinstance(replayer, str):
        return verdict("not-verifiable", replayer)
    player = TapePlayer(tape)
    try:
        request = ReplayRequest(
            task=row.input_task, local_only=run.local_only,
            allow_escalation=run.allow_escalation, no_retrieval=run.no_retrieval,
            max_tokens=run.max_tokens, temperature=run.temperature,
        )
        gateway = replayer(run, player)
        try:
            result = replay(
                request, retriever=None, gateway=gateway, evidence_path=None,
                local_model=run.local_model, escalation_model=run.escalation_model,
                clock=RecordedClock(row.recorded_at, row.duration_ms), bundle=row.context_bundle,
            )
        finally:
            close = getattr(gateway, "close", None)
            if callable(close):
                close()
    except TapeMismatch as exc:
        return verdict("diverged", exc.detail, call=exc.call)
    except (LakevecError, ValidationError) as exc:
        reason = str(exc).splitlines()[0]
        return verdict("diverged", f"today's code refuses the run: {reason}")
    left = player.remaining()
    if left:
        return verdict(
            "diverged", f"the tape holds {len(left)} more exchange(s); today's code did not "
            f"make call {left[0].call}", call=left[0].call,
        )
    assert result.lakevec is not None
    inputs = {name: getattr(prov, name) for name in _INPUT_PROVENANCE}
    produced = to_row(result.model_copy(update={"lakevec": result.lakevec.model_copy(
        update=inputs)}))
    difference = first_field_difference(row_dict(row), row_dict(produced))
    if difference is not None:
        name, _, detail = difference.partition(": ")
        return verdict("diverged", detail, field=name)
    replayed = encode_row(produced).rstrip(b"\n")
    if replayed != entry.raw:
        # Equal fields, other bytes: the line was re-encoded (spacing, escapes, key order).
        where = first_difference(entry.raw, replayed, ("logged", "replayed"))
        return verdict("diverged", f"row bytes differ at {where}")
    return verdict("bit-exact", "")


@dataclass
class RetrieverCache:
    """Opens each retriever once for :func:`retrieval_drift`; remembers failures."""

    opener: Callable[[str], Retriever]
    opened: dict[str, Retriever | str] = field(default_factory=dict)

    def get(self, name: str) -> Retriever | str:
        if name not in self.opened:
            try:
                self.opened[name] = self.opener(name)
            except LakevecError as exc:
                self.opened[name] = str(exc)
        return self.opened[name]

    def close(self) -> None:
        for retriever in self.opened.values():
            if not isinstance(retriever, str):
                retriever.close()


def retrieval_drift(row: ReplayRunRow, retrievers: RetrieverCache) -> Drift:
    """Today's retrieval for the row's task (same retriever; rows of other runtimes: jaccard)."""
    if row.context_bundle is None:
        return Drift("not-applicable", "the run had no retrieval")
    prov = row.lakevec
    name = prov.retriever if prov is not None and prov.retriever else "jaccard"
    retriever = retrievers.get(name)
    if isinstance(retriever, str):
        return Drift("unavailable", f"{name}: {retriever}")
    bundle = build_context_bundle(retriever, row.input_task)
    now = [a.rag_id for a in bundle.retrieved_playbooks]
    then = row.retrieved_artifacts.rag_ids
    manifest = retriever.snapshot.manifest if retriever.snapshot is not None else None
    versions = ""
    if prov is not None and manifest is not None and prov.index_version != manifest.version:
        versions = f" (index v{prov.index_version} → v{manifest.version})"
    if now == then:
        return Drift("unchanged", f"{len(now)} rag_ids unchanged ({name}){versions}")
    added = tuple(i for i in now if i not in then)
    removed = tuple(i for i in then if i not in now)
    if not added and not removed:
        return Drift("changed", f"same rag_ids in a new order ({name}){versions}")
    detail = f"+{list(added)} -{list(removed)} ({name}){versions}"
    return Drift("changed", detail, added, removed)
