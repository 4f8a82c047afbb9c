"""Every run, packed for the HTML page's drill-down (built in the page, on click).

A page holding 100,000 runs must stay a file a browser opens in seconds, so
runs are packed, not rendered, and split by weight:

- the **index** (parsed when the page opens): a string table (tasks, models,
  reasons, titles, checklist lines... each stored once), an artifact table
  (each distinct bundle entry once), a bundle table (each distinct bundle
  once, as artifact references with scores) and one small array per run
  (:data:`FIELDS` names the positions);
- the **prompts** (each distinct prompt once), parsed on the first click;
- the **texts**: each run's response and tape, in chunks of
  :data:`TEXT_CHUNK` runs, a chunk parsed when one of its runs is clicked.

Per run the drill-down shows what the row holds — task, retrieved ids with
their titles and scores from the bundle, the bundle, the response, the gate's
reasons — plus the prompt rebuilt with :func:`lakevec.replay.prompt.build_prompt`
from the row's task and bundle (the code the engine prompts with), and,
through two seams the caller supplies:

- ``tape_loader(tape_digest) -> list[dict]``: the run's recorded model
  exchanges, called with ``lakevec.tape`` for rows that have one;
- ``verify_status(logged_row) -> str``: the row's verification status
  (:class:`LoggedRow`: the parsed row, its exact bytes, file and line).

A seam that raises is shown as ``unavailable: <error>`` on that run; the
report never fails because of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import Any

from lakevec.errors import LakevecError
from lakevec.replay.bundle import ContextBundle, RetrievedArtifact
from lakevec.replay.prompt import build_prompt
from lakevec.report.rows import Row, Run

__all__ = ["ARTIFACT_FIELDS", "FIELDS", "TEXT_CHUNK", "LoggedRow", "RunPack", "TapeLoader",
           "VerifyStatus", "call_seam"]

#: Loads the exchanges of the tape with this digest (``lakevec.tape``).
TapeLoader = Callable[[str], list[dict[str, Any]]]


@dataclass(frozen=True)
class LoggedRow:
    """One counted row as ``verify_status`` gets it: parsed, and as logged (a verifier
    compares bytes), with where it was read."""

    path: str
    line: int
    raw: bytes  # the line as read, newline included
    row: Row


#: The verification status of one row ("bit-exact", "diverged: …", ...).
VerifyStatus = Callable[[LoggedRow], str]

#: Positions of a packed run. ``*``: a string-table index; ``[]``: a list;
#: ``bundle``: a bundle-table index; ``prompt``: a prompt-table index;
#: ``rag_ids`` null means "the bundle's retrieved ids".
FIELDS: tuple[str, ...] = (
    "id", "at", "day*", "runtime*", "dry", "passed", "escalated", "path*[]", "model_used*",
    "retriever*", "experiment*", "arm*", "task*", "rag_ids*[]", "bundle", "reasons*[]",
    "prompt", "duration_ms", "source", "line", "verify*",
)
#: Positions of an artifact in the artifact table (string-table indices).
ARTIFACT_FIELDS: tuple[str, ...] = (
    "rag_id", "source_run_id", "title", "content_preview", "success_score", "tags[]",
)
#: A bundle in the bundle table: three lists of ``[artifact, score]``, then
#: checklist lines (string indices) and the token estimate.
BUNDLE_FIELDS: tuple[str, ...] = (
    "retrieved_playbooks", "prior_successful_outputs", "failure_patterns", "validation_steps*[]",
    "bundle_token_estimate",
)
#: Runs per text chunk (responses and tapes).
TEXT_CHUNK = 2000
SEAM_ERRORS = (LakevecError, OSError, ValueError, KeyError, TypeError, LookupError)
_LISTS = BUNDLE_FIELDS[:3]
_FIVE = itemgetter(*ARTIFACT_FIELDS[:5])


def call_seam(seam: Callable[[Any], Any], arg: Any) -> tuple[Any, str | None]:
    """``(seam(arg), None)``, or ``(None, "unavailable: <error>")`` when it raises."""
    try:
        return seam(arg), None
    except SEAM_ERRORS as exc:
        return None, f"unavailable: {type(exc).__name__}: {exc}"[:300]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _score(value: Any) -> float:
    if isinstance(value, float):
        return value
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else 0.0


class RunPack:
    """The tables and packed runs; :meth:`payload` returns the page's three parts."""

    def __init__(self) -> None:
        self.strings: list[str] = []
        self._sids: dict[str, int] = {}
        self.artifacts: list[list[Any]] = []
        self._models: list[RetrievedArtifact] = []
        self._aids: dict[tuple[Any, ...], int] = {}
        self.bundles: list[list[Any]] = []  # [[(aid, score)...] x3, (step sid...), estimate]
        self._bids: dict[tuple[Any, ...], int] = {}
        self.prompts: list[str] = []
        self._pids: dict[tuple[int, int | None], int] = {}
        self.system_prompt: str | None = None
        self.runs: list[list[Any]] = []
        self.texts: list[list[Any]] = []
        self._order: list[tuple[datetime, str]] = []

    def sid(self, text: str) -> int:
        """The string-table index of ``text`` (added on first use)."""
        sid = self._sids.get(text)
        if sid is None:
            sid = self._sids[text] = len(self.strings)
            self.strings.append(text)
        return sid

    def _opt(self, text: str | None) -> int | None:
        return None if text is None else self.sid(text)

    def _new_artifact(self, raw: dict[str, Any], key: tuple[Any, ...] | None) -> int:
        """Add a bundle entry to the artifact table, tolerating the seed runtimes' shapes:
        a missing or mistyped field is empty, ``tags: null`` is no tags."""
        fields = [_text(raw.get(f)) for f in ARTIFACT_FIELDS[:5]]
        tags = raw.get("tags")
        tag_list = [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []
        normal = (*fields, tuple(tag_list))
        aid = self._aids.get(normal)
        if aid is None:
            aid = self._aids[normal] = len(self.artifacts)
            self.artifacts.append([*(self.sid(f) for f in fields), [self.sid(t) for t in tag_list]])
            self._models.append(RetrievedArtifact.model_construct(
                rag_id=fields[0], source_run_id=fields[1], title=fields[2],
                content_preview=fields[3], success_score=fields[4], tags=tag_list, score=0.0))
        if key is not None:
            self._aids[key] = aid
        return aid

    def _refs(self, items: Any) -> tuple[tuple[int, float], ...]:
        """``(artifact index, score)`` of each entry of one bundle list (hot: every
        artifact of every run passes here, so the common shape takes one lookup)."""
        if type(items) is not list:
            return ()
        aids, refs = self._aids, []
        for raw in items:
            if type(raw) is not dict:
                continue
            try:
                tags = raw["tags"]
                key: tuple[Any, ...] | None = (*_FIVE(raw),
                                               tuple(tags) if type(tags) is list else ())
                aid = aids.get(key)  # type: ignore[arg-type]
            except (KeyError, TypeError):  # a field missing, or unhashable
                key = aid = None
            if aid is None:
                aid = self._new_artifact(raw, key)
            score = raw.get("score")
            refs.append((aid, score if type(score) is float else _score(score)))
        return tuple(refs)

    def _bundle(self, raw: dict[str, Any]) -> int:
        """The bundle-table index of a row's ``context_bundle``."""
        lists = [self._refs(raw.get(name)) for name in _LISTS]
        steps = raw.get("validation_steps")
        step_ids = tuple(self.sid(s) for s in steps if isinstance(s, str)) \
            if isinstance(steps, list) else ()
        estimate = raw.get("bundle_token_estimate")
        key = (*lists, step_ids, estimate if type(estimate) is int else None)
        bid = self._bids.get(key)
        if bid is None:
            bid = self._bids[key] = len(self.bundles)
            self.bundles.append([*lists, step_ids, key[4]])  # tuples encode as arrays
        return bid

    def _prompt(self, task: int, bundle: int | None) -> int:
        """The prompt-table index of what :func:`build_prompt` makes of this task and
        bundle (built once per distinct pair: many runs share both)."""
        pid = self._pids.get((task, bundle))
        if pid is not None:
            return pid
        model = None
        if bundle is not None:
            packed = self.bundles[bundle]
            retrieved, prior, failures = ([self._models[aid] for aid, _ in packed[i]]
                                          for i in range(3))
            model = ContextBundle.model_construct(
                retrieved_playbooks=retrieved, prior_successful_outputs=prior,
                failure_patterns=failures, validation_steps=[self.strings[s] for s in packed[3]],
                bundle_token_estimate=packed[4] or 0,
            )
        prompt = build_prompt(self.strings[task], model)
        self.system_prompt = prompt.system
        pid = self._pids[(task, bundle)] = len(self.prompts)
        self.prompts.append(prompt.user)
        return pid

    def add(self, run: Run, row: Row, *,
            tape: list[dict[str, Any]] | dict[str, str] | str | None = None,
            verify: str | None = None) -> None:
        """Pack one run. ``tape``: its exchanges, ``{"digest": d}`` (recorded, not
        loaded), or a message saying why there are none."""
        raw_bundle = row.get("context_bundle")
        bundle = self._bundle(raw_bundle) if type(raw_bundle) is dict else None
        task = self.sid(row["input_task"])
        retrieved = row.get("retrieved_artifacts")
        ids = retrieved.get("rag_ids") if type(retrieved) is dict else None
        rag_ids: list[int] | None = None
        if isinstance(ids, list):
            rag_ids = [self.sid(r) for r in ids if isinstance(r, str)]
            own = [self.artifacts[a][0] for a, _ in self.bundles[bundle][0]] \
                if bundle is not None else []
            if rag_ids == own:
                rag_ids = None
        s = self.sid
        self._order.append((run.recorded_at, run.run_id))
        self.runs.append([
            run.run_id, row["recorded_at"], s(run.day), s(run.runtime), int(run.dry_run),
            int(run.passed), int(run.escalated), [s(m) for m in row["escalation_path"]],
            s(run.model_used), s(run.retriever), self._opt(run.experiment), self._opt(run.arm),
            task, rag_ids, bundle, [s(r) for r in run.reasons], self._prompt(task, bundle),
            run.duration_ms, run.source, run.line, self._opt(verify),
        ])
        self.texts.append([_text(row.get("model_response")), tape])

    def payload(self, sources: list[str]) -> dict[str, Any]:
        """The page's parts: ``index`` (parsed on open), ``prompts`` and ``texts``
        (a list of chunks, parsed on demand). Runs are newest first."""
        order = sorted(range(len(self.runs)), key=self._order.__getitem__, reverse=True)
        texts = [self.texts[i] for i in order]
        return {
            "index": {
                "fields": list(FIELDS),
                "artifact_fields": list(ARTIFACT_FIELDS),
                "bundle_fields": list(BUNDLE_FIELDS),
                "text_chunk": TEXT_CHUNK,
                "strings": self.strings,
                "artifacts": self.artifacts,
                "bundles": self.bundles,
                "system_prompt": self.system_prompt,
                "sources": sources,
                "runs": [self.runs[i] for i in order],
            },
            "prompts": self.prompts,
            "texts": [texts[i:i + TEXT_CHUNK] for i in range(0, len(texts), TEXT_CHUNK)],
        }
