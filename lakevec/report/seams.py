"""The report's drill-down fed from the tapes: each run's recorded model exchanges, and
its ``lakevec verify`` verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from lakevec.errors import TapeError
from lakevec.replay.engine import default_tape_dir
from lakevec.replay.evidence import ReplayRunRow
from lakevec.replay.tape import TapeStore
from lakevec.replay.verify import LogRow, verify_row
from lakevec.report.drilldown import LoggedRow, TapeLoader, VerifyStatus


class TapeSeams:
    """Tape stores beside each evidence log (``tapes/``), shared by the two seams."""

    def __init__(self) -> None:
        self._stores: dict[str, TapeStore] = {}
        self._found: dict[str, TapeStore] = {}

    def store_for(self, evidence: str | Path) -> TapeStore:
        key = str(evidence)
        if key not in self._stores:
            self._stores[key] = TapeStore(default_tape_dir(Path(evidence)))
        return self._stores[key]

    def tape_loader(self, evidences: list[Path]) -> TapeLoader:
        stores = [self.store_for(p) for p in evidences]

        def load(digest: str) -> list[dict[str, Any]]:
            for store in stores:
                if store.path_for(digest).exists():
                    return [ex.model_dump(mode="json") for ex in store.load(digest).exchanges]
            raise TapeError(f"tape {digest[:16]}… is missing")

        return load

    def verify_status(self) -> VerifyStatus:
        def status(logged: LoggedRow) -> str:
            try:
                row = ReplayRunRow.model_validate(logged.row)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "row"
                return f"not verifiable: not a valid replay_run.v1 row ({where}: {first['msg']})"
            entry = LogRow(line=logged.line, raw=logged.raw.rstrip(b"\n"),
                           run_id=row.recorded_run_id, recorded_at=None, row=row)
            return verify_row(entry, self.store_for(logged.path)).text()

        return status
