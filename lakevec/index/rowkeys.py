"""``rowkeys.json``: the id and the corpus-line digest of every row of a snapshot.

A reindex compares each corpus line's digest (:func:`lakevec.lines.line_digest`)
with these: a line seen before is the same record, so it is neither parsed nor
validated again, and its row is copied, not rewritten (:mod:`lakevec.index.delta`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from lakevec.errors import IndexCorruptError
from lakevec.index.manifest import REBUILD_HINT

ROWKEYS_FILE = "rowkeys.json"
#: Bumped whenever the same line bytes could parse into a different record
#: (a corpus reader change): old digests then match nothing.
PARSER_VERSION = 1


class RowKeys(BaseModel):
    """Row-aligned with the record store."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[1] = 1
    parser: int = PARSER_VERSION
    corpus_format: Literal["playbooks", "beir"]
    ids: list[str]
    lines: list[str]  # "" when unknown (the line was never seen as bytes)

    @model_validator(mode="after")
    def _aligned(self) -> RowKeys:
        if len(self.ids) != len(self.lines):
            raise ValueError("ids and lines differ in length")
        return self


def read_rowkeys(snapshot_dir: Path, rows: int) -> RowKeys:
    path = snapshot_dir / ROWKEYS_FILE
    try:
        keys = RowKeys.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as exc:
        raise IndexCorruptError(f"{path} is unreadable ({exc}) — {REBUILD_HINT}") from None
    if len(keys.ids) != rows:
        raise IndexCorruptError(f"{path} has {len(keys.ids)} rows, the index {rows} — "
                                f"{REBUILD_HINT}")
    return keys
