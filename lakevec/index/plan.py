"""Diffing a corpus against the live snapshot: what a build must embed, keep or delete."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lakevec.corpus import Corpus, PlaybookRecord, embed_text, text_sha256
from lakevec.index.snapshot import IndexSnapshot


@dataclass
class Plan:
    """The rows of the next snapshot and what changed relative to the previous one."""

    records: list[PlaybookRecord]
    text_hashes: list[str]
    labels: list[int]  # -1 = needs a new label (new vector)
    prev_rows: list[int]  # row in the previous snapshot whose vector is reused, or -1
    added: int = 0
    updated: int = 0
    metadata_updated: int = 0
    unchanged: int = 0
    deleted_labels: list[int] = field(default_factory=list)

    @property
    def deleted(self) -> int:
        """Ids gone from the corpus (changed records also free a label, but are not deleted)."""
        return len(self.deleted_labels) - self.updated

    @property
    def to_embed(self) -> list[int]:
        return [i for i, r in enumerate(self.prev_rows) if r < 0]

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.metadata_updated or self.deleted_labels)


def record_fields(rec: PlaybookRecord) -> dict[str, Any]:
    """The corpus fields of a record, as the record store keeps them."""
    return rec.model_dump(include=set(PlaybookRecord.model_fields))


def plan_changes(corpus: Corpus, previous: IndexSnapshot | None) -> Plan:
    """Diff ``corpus`` against ``previous`` by id and embedded-text hash."""
    records = list(corpus.records.values())
    hashes = [text_sha256(embed_text(r)) for r in records]
    plan = Plan(records, hashes, [-1] * len(records), [-1] * len(records))
    if previous is None:
        plan.added = len(records)
        return plan
    # Plain dicts, not validated models: this diff is the whole cost of a
    # no-change reindex, and the store was validated when it was written.
    prev: dict[str, tuple[int, dict[str, Any]]] = {
        row["id"]: (i, row) for i, row in enumerate(previous.iter_raw())
    }
    fields = tuple(PlaybookRecord.model_fields)
    for i, (rec, h) in enumerate(zip(records, hashes, strict=True)):
        old = prev.pop(rec.id, None)
        if old is None:
            plan.added += 1
            continue
        row, stored = old
        if stored["text_sha256"] != h:
            plan.updated += 1
            plan.deleted_labels.append(int(stored["label"]))
            continue
        plan.labels[i] = int(stored["label"])
        plan.prev_rows[i] = row
        # getattr over the model's own field names: a dump per record would
        # double the cost of a no-change diff.
        if any(getattr(rec, f) != stored.get(f) for f in fields):
            plan.metadata_updated += 1
        else:
            plan.unchanged += 1
    plan.deleted_labels.extend(int(stored["label"]) for _, stored in prev.values())
    return plan
