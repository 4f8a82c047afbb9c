"""An index on a read-only mount serves every index retriever (issue 13 item 3).

Readers never write: build-index stores everything a search needs, the BM25
index included, inside the snapshot before publishing it.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from lakevec.index.layout import current_snapshot_dir, verify_files
from lakevec.index.manifest import DATA_FILES, ROW_FILES, read_manifest
from lakevec.index.snapshot import open_index
from lakevec.index.status import index_status
from lakevec.retrieval.filters import SearchFilters
from lakevec.retrieval.registry import INDEX_RETRIEVERS, open_retriever
from tests.conftest import tree_state
from tests.reindex_support import playbook, write_corpus

N = 60
QUERY = "steps for task cluster3"


def categorised(i: int) -> dict[str, object]:
    return playbook(
        i,
        tags=["ops", "db"] if i % 3 == 0 else ["ops"],
        success_score="accepted" if i % 2 == 0 else "rejected",
        source_category="db" if i % 5 == 0 else "ops",
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(root, index) built by `lakevec build-index` with the hash embedder."""
    from lakevec.cli import main

    root = tmp_path_factory.mktemp("ro")
    corpus = write_corpus(root / "playbooks.jsonl", [categorised(i) for i in range(N)])
    index_dir = root / "index"
    result = CliRunner().invoke(main, ["--root", str(root), "build-index", "--corpus",
                                       str(corpus), "--index", str(index_dir), "--model",
                                       "hash:64", "--quiet", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["records"] == N
    return root, index_dir


def test_build_stores_bm25_in_the_snapshot_and_lists_it(built: tuple[Path, Path]) -> None:
    _, index_dir = built
    snap = current_snapshot_dir(index_dir)
    manifest = read_manifest(snap)
    bm25_files = sorted(
        p.relative_to(snap).as_posix() for p in (snap / "bm25").rglob("*") if p.is_file()
    )
    assert "bm25/lakevec-bm25.json" in bm25_files
    assert manifest.has_bm25
    assert sorted(manifest.files) == sorted([*DATA_FILES, *ROW_FILES, *bm25_files])
    verify_files(snap, manifest)  # sizes and sha256 of every listed file, bm25 included


def check_read_only(path: Path) -> None:
    """The copy really refuses writes (EROFS as root, EACCES otherwise)."""
    with pytest.raises(OSError) as exc:
        (path / "probe").write_text("x")
    assert exc.value.errno in (errno.EROFS, errno.EACCES)


@pytest.mark.parametrize("model", ["hash:64", None])
def test_every_index_retriever_searches_a_read_only_index(
    built: tuple[Path, Path], read_only_copy: Callable[[Path], Path], model: str | None
) -> None:
    root, index_dir = built
    ro = read_only_copy(index_dir)
    check_read_only(ro)
    check_read_only(current_snapshot_dir(ro))
    before = tree_state(ro)
    filters = SearchFilters(success_score=("accepted",), tags_any=("db",),
                            source_category=("ops",))
    for kind in INDEX_RETRIEVERS:
        retriever = open_retriever(kind, root=root, index_dir=ro, model=model)
        try:
            assert retriever.snapshot is not None and retriever.snapshot.path.parent.parent == ro
            hits = retriever.search(QUERY, 5)
            assert hits, kind
            assert len(hits) <= 5
            filtered = retriever.search(QUERY, 50, filters=filters)
            assert filtered, kind
            for hit in filtered:
                rec = hit.record
                assert rec.success_score == "accepted" and "db" in rec.tags, kind
                assert rec.source_category == "ops", kind
            batched = retriever.search_many([QUERY, "", "uniq7"], 3)
            assert batched[1] == [] and batched[0] and batched[2]
        finally:
            retriever.close()
    with open_index(ro) as snap:  # checksums verified, graph loaded
        assert len(snap) == N
    status = index_status(ro, root / "playbooks.jsonl", verify=True)
    assert status.up_to_date
    assert tree_state(ro) == before


def test_cli_search_and_status_on_a_read_only_index(
    built: tuple[Path, Path], read_only_copy: Callable[[Path], Path]
) -> None:
    from lakevec.cli import main

    root, index_dir = built
    ro = read_only_copy(index_dir)
    before = tree_state(ro)
    runner = CliRunner()
    for kind in INDEX_RETRIEVERS:
        result = runner.invoke(main, ["--root", str(root), "search", QUERY, "--index", str(ro),
                                      "--retriever", kind, "--json", "-k", "3",
                                      "--success-score", "accepted"])
        assert result.exit_code == 0, (kind, result.output)
        rows = json.loads(result.stdout)
        assert rows and all(r["success_score"] == "accepted" for r in rows), kind
    result = runner.invoke(main, ["--root", str(root), "status", "--index", str(ro), "--corpus",
                                  str(root / "playbooks.jsonl"), "--verify", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["up_to_date"] is True
    assert tree_state(ro) == before
