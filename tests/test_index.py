"""Index snapshots: build, load, verify, search, clamp, corruption and model checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lakevec.corpus import read_corpus
from lakevec.embed.hashing import HashEmbedder
from lakevec.errors import IndexCorruptError, IndexMissingError, ModelMismatchError
from lakevec.index.build import build_index
from lakevec.index.layout import CURRENT_FILE, current_snapshot_dir, verify_files
from lakevec.index.manifest import DATA_FILES, ROW_FILES, HnswParams, IndexManifest
from lakevec.index.snapshot import check_model, open_index
from lakevec.retrieval.dense import DenseRetriever
from tests.conftest import record

WORDS = [
    "alpha", "beta", "gamma", "delta", "epsilon", "zeta",
    "theta", "kappa", "lambda", "sigma", "omega",
]


def _rows(n: int) -> list[dict[str, object]]:
    rng = np.random.default_rng(7)
    return [
        record(i, content=" ".join(rng.choice(WORDS, size=12)) + f" uniq{i}") for i in range(n)
    ]


@pytest.fixture
def built(make_corpus, tmp_path: Path, hash_embedder: HashEmbedder) -> Path:
    index_dir = tmp_path / "index"
    build_index(read_corpus(make_corpus(_rows(200))), index_dir, hash_embedder)
    return index_dir


def test_build_writes_a_complete_verified_snapshot(built: Path) -> None:
    snap = current_snapshot_dir(built)
    assert snap.name == "v000001"
    manifest = IndexManifest.model_validate_json((snap / "manifest.json").read_bytes())
    assert manifest.counts.records == 200
    assert manifest.model.model_id == "hash:64" and manifest.model.dimension == 64
    assert manifest.metric == "cosine"
    assert set(DATA_FILES) == {
        "hnsw.bin", "vectors.npy", "labels.npy", "offsets.npy", "records.jsonl"
    }
    # The core files plus the BM25 index the build stored with the snapshot.
    bm25 = {name for name in manifest.files if name.startswith("bm25/")}
    assert set(manifest.files) == set(DATA_FILES) | set(ROW_FILES) | bm25
    assert manifest.format_version == 2 and manifest.required_files == DATA_FILES + ROW_FILES
    assert "bm25/lakevec-bm25.json" in bm25 and manifest.has_bm25
    on_disk = {p.relative_to(snap).as_posix() for p in (snap / "bm25").rglob("*") if p.is_file()}
    assert on_disk == bm25
    verify_files(snap, manifest)  # every listed file, bm25 included, matches its checksum
    with open_index(built) as index:
        assert len(index) == 200
        # hnswlib forgets ef on save; the loader must re-apply the manifest's.
        stats = index.graph_stats()
        assert index.has_graph and stats is not None
        assert stats.ef == manifest.hnsw.ef_search
        assert (stats.count, stats.dimension) == (200, 64)
        norms = np.linalg.norm(np.asarray(index.vectors), axis=1)
        assert np.allclose(norms, 1.0, atol=1e-5)
    assert not list(built.glob(".tmp-*"))


def test_manifest_rejects_unknown_keys(built: Path) -> None:
    path = current_snapshot_dir(built) / "manifest.json"
    data = json.loads(path.read_text())
    data["surprise"] = 1
    path.write_text(json.dumps(data))
    with pytest.raises(IndexCorruptError, match="manifest.json is invalid.*build-index --full"):
        open_index(built)


def test_search_finds_the_record_itself(built: Path, hash_embedder: HashEmbedder) -> None:
    with open_index(built) as index:
        retriever = DenseRetriever(index, hash_embedder)
        target = index.record(17)
        hits = retriever.search(target.title + " " + target.content, 8)
        assert hits[0].record.id == target.id
        assert hits[0].score == pytest.approx(1.0, abs=1e-4)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        exact = DenseRetriever(index, hash_embedder, exact=True).search(target.content, 8)
        assert exact[0].record.id == target.id


def test_k_larger_than_index_is_clamped(built: Path, hash_embedder: HashEmbedder) -> None:
    with open_index(built) as index:
        assert len(DenseRetriever(index, hash_embedder).search("alpha", 10_000)) == 200
        assert DenseRetriever(index, hash_embedder).search("alpha", 0) == []


def test_one_record_index(make_corpus, tmp_path: Path, hash_embedder: HashEmbedder) -> None:
    build_index(read_corpus(make_corpus([record(1)])), tmp_path / "one", hash_embedder)
    with open_index(tmp_path / "one") as index:
        hits = DenseRetriever(index, hash_embedder).search("anything at all", 8)
        assert [h.record.id for h in hits] == ["pb-0001"]


def test_missing_index_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(IndexMissingError, match="run `lakevec build-index` first"):
        open_index(tmp_path / "nowhere")


@pytest.mark.parametrize(
    "name", ["hnsw.bin", "vectors.npy", "records.jsonl", "bm25/lakevec-bm25.json"]
)
def test_flipped_byte_fails_checksum_before_hnswlib(built: Path, name: str) -> None:
    """A damaged file is caught by its checksum before it reaches hnswlib or numpy."""
    path = current_snapshot_dir(built) / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IndexCorruptError, match=f"{name} fails its sha256 checksum"):
        open_index(built)


def test_truncated_graph_is_caught_by_size(built: Path) -> None:
    path = current_snapshot_dir(built) / "hnsw.bin"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(IndexCorruptError, match="truncated or corrupted"):
        open_index(built)


def test_missing_data_file(built: Path) -> None:
    (current_snapshot_dir(built) / "labels.npy").unlink()
    with pytest.raises(IndexCorruptError, match="labels.npy is missing"):
        open_index(built)


def test_damaged_current_pointer(built: Path) -> None:
    (built / CURRENT_FILE).write_text("v999999\n")
    with pytest.raises(IndexCorruptError, match="missing snapshot v999999"):
        open_index(built)


def test_model_mismatch_is_detected(built: Path) -> None:
    with open_index(built, graph=False) as index:
        check_model(index.manifest, "hash:64")
        with pytest.raises(ModelMismatchError, match="built with model hash:64.*--full"):
            check_model(index.manifest, "hash:32")
        with pytest.raises(ModelMismatchError, match="dimension 32"):
            index.knn(np.ones(32, dtype=np.float32), 3)


def test_incremental_build_with_other_model_needs_full(
    make_corpus, built: Path
) -> None:
    corpus = read_corpus(make_corpus(_rows(200)))
    with pytest.raises(ModelMismatchError):
        build_index(corpus, built, HashEmbedder(32))
    report = build_index(corpus, built, HashEmbedder(32), full=True)
    assert report.mode == "full" and report.version == 2
    with open_index(built) as index:
        assert index.manifest.model.dimension == 32


def test_failed_build_leaves_previous_snapshot_live(
    make_corpus, built: Path, hash_embedder: HashEmbedder
) -> None:
    corpus = read_corpus(make_corpus([*_rows(200), record("new-one")]))

    def explode(phase: str) -> None:
        if phase == "swap":
            raise RuntimeError("simulated crash before the swap")

    with pytest.raises(RuntimeError, match="simulated crash"):
        build_index(corpus, built, hash_embedder, on_phase=explode)
    with open_index(built) as index:
        assert index.manifest.version == 1 and len(index) == 200
    # The next build cleans the leftover temp dir and succeeds.
    assert list(built.glob(".tmp-*"))
    report = build_index(corpus, built, hash_embedder)
    assert report.version == 2 and report.added == 1
    assert not list(built.glob(".tmp-*"))


def test_custom_hnsw_params_are_recorded(make_corpus, tmp_path: Path, hash_embedder) -> None:
    params = HnswParams(M=8, ef_construction=50, ef_search=20)
    build_index(read_corpus(make_corpus(_rows(30))), tmp_path / "i", hash_embedder, params=params)
    with open_index(tmp_path / "i") as index:
        assert index.manifest.hnsw == params
        stats = index.graph_stats()
        assert stats is not None and stats.ef == 20


def test_old_snapshots_are_garbage_collected(
    make_corpus, tmp_path: Path, hash_embedder: HashEmbedder
) -> None:
    index_dir = tmp_path / "gc"
    for n in range(1, 6):
        corpus = read_corpus(make_corpus(_rows(10 + n)))
        build_index(corpus, index_dir, hash_embedder, keep=2)
    names = sorted(p.name for p in (index_dir / "snapshots").iterdir())
    assert names == ["v000004", "v000005"]
    with open_index(index_dir) as index:
        assert len(index) == 15


def test_record_store_keeps_corpus_order_across_updates(
    make_corpus, tmp_path: Path, hash_embedder: HashEmbedder
) -> None:
    """Bundles order checklist steps by corpus position, as the seed does."""
    rows = _rows(5)
    index_dir = tmp_path / "pos"
    build_index(read_corpus(make_corpus(rows)), index_dir, hash_embedder)
    rows[1] = {**rows[1], "content": "rewritten so it gets a new label"}
    build_index(read_corpus(make_corpus(rows)), index_dir, hash_embedder)
    with open_index(index_dir) as index:
        positions = {r.id: r.position for r in index.iter_records()}
    assert positions == {str(r["id"]): i for i, r in enumerate(rows)}


def test_open_without_graph_defers_the_graph_checksum(built: Path) -> None:
    """Diffs and status skip hashing the (large) graph; loading it still verifies."""
    path = current_snapshot_dir(built) / "hnsw.bin"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    index = open_index(built, graph=False)  # the size matches, so it opens
    try:
        with pytest.raises(IndexCorruptError, match="hnsw.bin fails its sha256 checksum"):
            index.verify_graph_file()
    finally:
        index.close()
    with pytest.raises(IndexCorruptError, match="hnsw.bin fails its sha256 checksum"):
        open_index(built)
