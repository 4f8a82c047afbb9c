"""The small-update path of reindex gives the same snapshot as the general build."""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lakevec.corpus import read_corpus
from lakevec.embed.hashing import HashEmbedder
from lakevec.index.build import build_index
from lakevec.index.layout import current_snapshot_dir
from lakevec.index.manifest import read_manifest
from lakevec.index.snapshot import open_index
from lakevec.index.update import index_corpus
from tests.conftest import record

DIM = 16
# Files whose bytes depend on thread scheduling (hnswlib inserts in parallel) or time.
NOT_BYTE_EQUAL = {"hnsw.bin", "manifest.json"}


def _lines(rows: Sequence[dict[str, Any] | str]) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()


def _edit(rows: list[dict[str, Any] | str], rnd: random.Random, step: int) -> None:
    """Every kind of change a reindex meets, a few at a time."""
    records = [i for i, r in enumerate(rows) if isinstance(r, dict)]
    for i in rnd.sample(records, 2):  # new text: re-embedded under a new label
        rows[i] = {**rows[i], "content": f"rewritten {step} {rnd.random()}"}  # type: ignore[dict-item]
    i = rnd.choice(records)  # metadata only: same vector, record rewritten in place
    rows[i] = {**rows[i], "tags": [f"t{step}"], "success_score": "partial"}  # type: ignore[dict-item]
    i = rnd.choice(records)  # same record, other bytes (key order, spacing)
    rows[i] = json.dumps(dict(reversed(list(rows[i].items()))), indent=None,  # type: ignore[union-attr]
                         separators=(", ", " : "))
    del rows[rnd.choice(range(len(rows)))]  # a deletion (or a bad line going away)
    rows.insert(rnd.randrange(len(rows)), record(f"new-{step}"))  # an addition, mid-file
    rows.append(record(rnd.choice(["pb-0003", f"new-{step}"]), title=f"dup {step}"))  # dup id
    rows.insert(rnd.randrange(len(rows)), "{not json" if step % 2 else '{"id": 5}')  # bad line


def _files(snap: Path) -> dict[str, bytes]:
    return {p.relative_to(snap).as_posix(): p.read_bytes() for p in snap.rglob("*")
            if p.is_file() and p.relative_to(snap).as_posix() not in NOT_BYTE_EQUAL}


def test_small_updates_equal_general_builds(tmp_path: Path) -> None:
    rnd = random.Random(11)
    rows: list[dict[str, Any] | str] = [record(i) for i in range(120)]
    corpus = tmp_path / "playbooks.jsonl"
    corpus.write_bytes(_lines(rows))
    small, general = tmp_path / "small", tmp_path / "general"
    first = index_corpus(corpus, small, embedder=HashEmbedder(DIM))
    assert first.path == "general" and first.mode == "full"  # nothing to update yet
    shutil.copytree(small, general)
    for step in range(6):
        _edit(rows, rnd, step)
        corpus.write_bytes(_lines(rows))
        got = index_corpus(corpus, small, embedder=HashEmbedder(DIM))
        want = build_index(read_corpus(corpus), general, HashEmbedder(DIM))
        assert got.path == "small" and want.path == "general"
        skip = {"seconds", "records_per_s", "path", "index"}
        assert {k: v for k, v in got.as_dict().items() if k not in skip} == {
            k: v for k, v in want.as_dict().items() if k not in skip
        }
        assert got.changed and got.embedded >= 2 and got.skipped >= 1 and got.duplicates >= 1
        a, b = current_snapshot_dir(small), current_snapshot_dir(general)
        assert _files(a) == _files(b)  # vectors, records, positions, row keys, BM25 counts
        ma, mb = read_manifest(a), read_manifest(b)
        assert ma.counts == mb.counts and ma.corpus == mb.corpus
        assert {k: v for k, v in ma.files.items() if k != "hnsw.bin"} == {
            k: v for k, v in mb.files.items() if k != "hnsw.bin"
        }
        assert ma.build.model_dump(exclude={"seconds", "built_at"}) == mb.build.model_dump(
            exclude={"seconds", "built_at"})
        with open_index(small, rehash=True) as sa, open_index(general) as sb:
            assert sorted(sa.graph_ids()) == sorted(sb.graph_ids())
            probe = np.asarray(sb.vectors[:10])
            assert sa.knn(probe, 3)[0] == sb.knn(probe, 3)[0]
            assert [r.position for r in sa.iter_records()] == [
                r.position for r in sb.iter_records()
            ]
            assert sa.record(5) == sb.record(5)


def test_a_reindex_without_changes_is_a_small_noop(tmp_path: Path) -> None:
    corpus = tmp_path / "playbooks.jsonl"
    corpus.write_bytes(_lines([record(i) for i in range(20)] + ["{bad"]))
    index_corpus(corpus, tmp_path / "idx", embedder=HashEmbedder(DIM))
    again = index_corpus(corpus, tmp_path / "idx", embedder=HashEmbedder(DIM))
    assert (again.path, again.changed, again.mode, again.version) == ("small", False, "noop", 1)
    assert again.skipped_lines == [{"line": 21, "reason": again.skipped_lines[0]["reason"]}]
    assert "malformed JSON" in again.skipped_lines[0]["reason"]


def test_strict_small_update_names_the_bad_line(tmp_path: Path) -> None:
    from lakevec.errors import CorpusError

    corpus = tmp_path / "playbooks.jsonl"
    rows: list[dict[str, Any] | str] = [record(i) for i in range(5)]
    corpus.write_bytes(_lines(rows))
    index_corpus(corpus, tmp_path / "idx", embedder=HashEmbedder(DIM))
    corpus.write_bytes(_lines([*rows[:2], "[1, 2]", *rows[2:]]))
    with pytest.raises(CorpusError, match="line 3: expected a JSON object"):
        index_corpus(corpus, tmp_path / "idx", embedder=HashEmbedder(DIM), strict=True)


def test_older_snapshots_take_the_general_path_once(tmp_path: Path) -> None:
    corpus = tmp_path / "playbooks.jsonl"
    rows: list[dict[str, Any] | str] = [record(i) for i in range(10)]
    corpus.write_bytes(_lines(rows))
    index_corpus(corpus, tmp_path / "idx", embedder=HashEmbedder(DIM))
    manifest = current_snapshot_dir(tmp_path / "idx") / "manifest.json"
    data = json.loads(manifest.read_bytes())
    data["format_version"] = 1  # as lakevec 0.2 wrote (its extra files are ignored)
    manifest.write_text(json.dumps(data))
    rows.append(record("added"))
    corpus.write_bytes(_lines(rows))
    once = index_corpus(corpus, tmp_path / "idx", embedder=HashEmbedder(DIM))
    assert once.path == "general" and once.added == 1
    rows.append(record("added-2"))
    corpus.write_bytes(_lines(rows))
    then = index_corpus(corpus, tmp_path / "idx", embedder=HashEmbedder(DIM))
    assert then.path == "small" and then.added == 1 and then.records == 12


def test_a_changed_corpus_format_takes_the_general_path(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_bytes(_lines([record(i) for i in range(4)]))
    index_corpus(corpus, tmp_path / "idx", embedder=HashEmbedder(DIM))
    beir = [{"_id": f"d{i}", "title": "t", "text": f"doc {i}"} for i in range(3)]
    corpus.write_bytes(_lines(beir))  # auto-detected as BEIR now
    report = index_corpus(corpus, tmp_path / "idx", embedder=HashEmbedder(DIM))
    assert report.path == "general" and report.records == 3 and report.deleted == 4
