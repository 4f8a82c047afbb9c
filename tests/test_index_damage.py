"""A damaged index fails with one clear line naming the fix, never a traceback,
and a build repairs what it can instead of calling a damaged index up to date
(issue 14).

Library calls raise :class:`IndexCorruptError`; the CLI exits 1 with the
message on one stderr line.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from lakevec.corpus import read_corpus
from lakevec.embed.hashing import HashEmbedder
from lakevec.errors import IndexCorruptError
from lakevec.files import sha256_file
from lakevec.index.build import build_index
from lakevec.index.layout import CURRENT_FILE, LOCK_FILE, current_snapshot_dir
from lakevec.index.manifest import FileInfo, IndexManifest
from lakevec.index.snapshot import open_index
from lakevec.index.status import index_status
from lakevec.index.update import index_corpus
from tests.reindex_support import check_snapshot, playbook, write_corpus

N = 40
FULL_HINT = "build-index --full"


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "playbooks.jsonl", [playbook(i) for i in range(N)])


@pytest.fixture
def index_dir(tmp_path: Path, corpus: Path) -> Path:
    path = tmp_path / "index"
    build_index(read_corpus(corpus), path, HashEmbedder(64))
    return path


def cli(*args: str) -> Result:
    from lakevec.cli import main

    return CliRunner().invoke(main, list(args))


def assert_one_line_failure(result: Result, *needles: str) -> str:
    """Exit 1, nothing on stdout, one line on stderr containing ``needles``, no traceback."""
    assert result.exit_code == 1, (result.output, result.exc_info)
    assert result.exc_info is not None and result.exc_info[0] is SystemExit  # not a crash
    assert result.stdout == ""
    message = result.stderr.strip()
    assert "\n" not in message and "Traceback" not in message, message
    for needle in needles:
        assert needle in message, message
    return message


def assert_one_line(exc: pytest.ExceptionInfo[IndexCorruptError], *needles: str) -> None:
    message = str(exc.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, message


# ─── the damage ──────────────────────────────────────────────────────────────


def current_not_utf8(index_dir: Path) -> None:
    (index_dir / CURRENT_FILE).write_bytes(b"v\xff\xfe000001\n")


def current_is_a_directory(index_dir: Path) -> None:
    (index_dir / CURRENT_FILE).unlink()
    (index_dir / CURRENT_FILE).mkdir()
    (index_dir / CURRENT_FILE / "v000001").write_text("squatter\n")


def manifest_is_a_directory(index_dir: Path) -> None:
    manifest = current_snapshot_dir(index_dir) / "manifest.json"
    manifest.unlink()
    manifest.mkdir()


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "current-not-utf8": (current_not_utf8, "CURRENT is not UTF-8 text"),
    "current-is-a-directory": (current_is_a_directory, "CURRENT cannot be read"),
    "manifest-is-a-directory": (manifest_is_a_directory, "manifest.json cannot be read"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_index_is_one_clear_error_for_readers(index_dir: Path, damage: str) -> None:
    apply, what = DAMAGE[damage]
    apply(index_dir)
    with pytest.raises(IndexCorruptError) as exc:
        open_index(index_dir)
    assert_one_line(exc, what, FULL_HINT)
    with pytest.raises(IndexCorruptError) as exc:
        index_status(index_dir, verify=True)
    assert_one_line(exc, what, FULL_HINT)


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_cli_status_and_search_on_a_damaged_index_exit_1(
    index_dir: Path, corpus: Path, damage: str
) -> None:
    apply, what = DAMAGE[damage]
    apply(index_dir)
    assert_one_line_failure(
        cli("status", "--index", str(index_dir), "--corpus", str(corpus)), what, FULL_HINT
    )
    assert_one_line_failure(
        cli("search", "--index", str(index_dir), "--retriever", "bm25", "restart the worker"),
        what, FULL_HINT,
    )


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_reindex_without_model_refuses_to_guess_it(
    index_dir: Path, corpus: Path, damage: str
) -> None:
    """Nobody knows a damaged index's model: a cron reindex must not guess the default."""
    apply, what = DAMAGE[damage]
    apply(index_dir)
    with pytest.raises(IndexCorruptError) as exc:
        index_corpus(corpus, index_dir)
    assert_one_line(exc, what, "its model is unknown", FULL_HINT)
    assert_one_line_failure(
        cli("reindex", "--index", str(index_dir), "--corpus", str(corpus)),
        what, "its model is unknown",
    )


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_full_build_repairs_a_damaged_index(
    index_dir: Path, corpus: Path, damage: str
) -> None:
    DAMAGE[damage][0](index_dir)
    report = build_index(read_corpus(corpus), index_dir, HashEmbedder(64), full=True)
    assert report.changed and report.mode == "full" and report.version == 2
    assert (index_dir / CURRENT_FILE).is_file()
    assert (index_dir / CURRENT_FILE).read_bytes() == b"v000002\n"
    with open_index(index_dir) as snap:
        assert len(snap) == N and snap.manifest.version == 2
        check_snapshot(snap, np.random.default_rng(0))


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_cli_build_index_full_repairs_a_damaged_index(
    index_dir: Path, corpus: Path, damage: str
) -> None:
    DAMAGE[damage][0](index_dir)
    result = cli("build-index", "--index", str(index_dir), "--corpus", str(corpus), "--full",
                 "--model", "hash:64", "--quiet", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["version"] == 2
    status = cli("status", "--index", str(index_dir), "--corpus", str(corpus), "--verify")
    assert status.exit_code == 0, status.output
    with open_index(index_dir) as snap:
        check_snapshot(snap, np.random.default_rng(1))


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_incremental_build_over_a_damaged_current_rebuilds_and_says_so(
    index_dir: Path, corpus: Path, damage: str
) -> None:
    """With the model given, a plain build starts over rather than failing or trusting it."""
    DAMAGE[damage][0](index_dir)
    report = build_index(read_corpus(corpus), index_dir, HashEmbedder(64))
    assert report.repaired is not None and DAMAGE[damage][1] in report.repaired
    assert report.changed and report.mode == "full" and report.embedded == N
    with open_index(index_dir) as snap:
        assert len(snap) == N


# ─── the lock file ───────────────────────────────────────────────────────────


def test_lock_file_that_is_a_directory(index_dir: Path, corpus: Path) -> None:
    lock = index_dir / LOCK_FILE
    if lock.exists():
        lock.unlink()
    lock.mkdir()
    with pytest.raises(IndexCorruptError) as exc:
        build_index(read_corpus(corpus), index_dir, HashEmbedder(64))
    assert_one_line(exc, str(lock), "remove it")
    for cmd in (["build-index", "--quiet", "--model", "hash:64"], ["reindex"]):
        assert_one_line_failure(
            cli(*cmd, "--index", str(index_dir), "--corpus", str(corpus)),
            f"lock file {lock}", "remove it",
        )
    # Readers never take the lock: searching still works.
    with open_index(index_dir) as snap:
        assert snap.manifest.version == 1
    # Removing it, as the message says, fixes the build.
    lock.rmdir()
    report = build_index(read_corpus(corpus), index_dir, HashEmbedder(64))
    assert not report.changed and report.version == 1


# ─── a live snapshot failing its checksums ───────────────────────────────────


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name", ["hnsw.bin", "vectors.npy"])
def test_build_over_a_corrupted_snapshot_rebuilds_it(
    index_dir: Path, corpus: Path, name: str
) -> None:
    """The corpus did not change, but the build must not call a damaged index up to date."""
    flip_a_byte(current_snapshot_dir(index_dir) / name)
    report = build_index(read_corpus(corpus), index_dir, HashEmbedder(64))
    assert report.repaired is not None
    assert f"{name} fails its sha256 checksum" in report.repaired
    assert "\n" not in report.repaired
    assert report.changed and report.mode == "full" and report.version == 2
    assert report.embedded == N and report.added == N  # from scratch, nothing reused
    assert report.as_dict()["repaired"] == report.repaired
    with open_index(index_dir) as snap:  # verified, graph loaded
        assert len(snap) == N and snap.manifest.build.mode == "full"
        check_snapshot(snap, np.random.default_rng(2))
    again = build_index(read_corpus(corpus), index_dir, HashEmbedder(64))
    assert not again.changed and again.repaired is None


@pytest.mark.parametrize("name", ["hnsw.bin", "vectors.npy"])
def test_reindex_over_a_corrupted_snapshot_is_not_silent(
    index_dir: Path, corpus: Path, name: str
) -> None:
    flip_a_byte(current_snapshot_dir(index_dir) / name)
    # The library path of `lakevec reindex` (the index's own model, no flags).
    report = index_corpus(corpus, index_dir, query_model=False)
    assert report.repaired is not None and name in report.repaired
    assert report.changed and report.version == 2
    flip_a_byte(current_snapshot_dir(index_dir) / name)
    result = cli("reindex", "--index", str(index_dir), "--corpus", str(corpus))
    assert result.exit_code == 0, result.output
    line = json.loads(result.stdout)  # not the silence of "nothing changed"
    assert line["version"] == 3 and line["repaired"] and name in line["repaired"]
    assert "failed verification" in result.stderr and name in result.stderr


# ─── a manifest that lies about the dimension ────────────────────────────────


def rewrite_manifest(snapshot: Path, **model: object) -> IndexManifest:
    path = snapshot / "manifest.json"
    data = json.loads(path.read_bytes())
    data["model"].update(model)
    path.write_text(json.dumps(data))
    return IndexManifest.model_validate(data)


def test_edited_dimension_fails_open_and_status_verify(index_dir: Path, corpus: Path) -> None:
    rewrite_manifest(current_snapshot_dir(index_dir), dimension=32)
    for call in (
        lambda: open_index(index_dir),
        lambda: open_index(index_dir, graph=False),
        lambda: index_status(index_dir, verify=True),
        lambda: index_status(index_dir, corpus),
    ):
        with pytest.raises(IndexCorruptError) as exc:
            call()
        assert_one_line(exc, "vectors.npy has shape (40, 64)", "40 x 32", FULL_HINT)
    assert_one_line_failure(
        cli("status", "--index", str(index_dir), "--corpus", str(corpus), "--verify"),
        "the manifest says 40 x 32",
    )
    # A build does not trust it either: it rebuilds (with the embedder's dimension).
    report = build_index(read_corpus(corpus), index_dir, HashEmbedder(64))
    assert report.repaired is not None and "vectors.npy has shape" in report.repaired
    with open_index(index_dir) as snap:
        assert snap.dimension == 64


def test_graph_header_disagreeing_with_the_manifest(index_dir: Path, corpus: Path) -> None:
    """Consistent vectors, checksums and manifest, but a graph of another dimension."""
    snap_dir = current_snapshot_dir(index_dir)
    vectors = np.load(snap_dir / "vectors.npy")
    np.save(snap_dir / "vectors.npy", np.ascontiguousarray(vectors[:, :32]))
    path = snap_dir / "manifest.json"
    data = json.loads(path.read_bytes())
    data["model"]["dimension"] = 32
    info = FileInfo(sha256=sha256_file(snap_dir / "vectors.npy"),
                    bytes=(snap_dir / "vectors.npy").stat().st_size)
    data["files"]["vectors.npy"] = info.model_dump()
    path.write_text(json.dumps(data))
    with pytest.raises(IndexCorruptError) as exc:
        open_index(index_dir)  # loads the graph: its header is checked first
    assert_one_line(exc, "hnsw.bin holds 64-dimensional vectors", "says 32", FULL_HINT)
    with pytest.raises(IndexCorruptError) as exc:
        index_status(index_dir, verify=True)
    assert_one_line(exc, "hnsw.bin holds 64-dimensional vectors")
    assert_one_line_failure(
        cli("status", "--index", str(index_dir), "--corpus", str(corpus), "--verify"),
        "hnsw.bin holds 64-dimensional vectors",
    )


def test_damage_to_the_bm25_files_is_caught(index_dir: Path) -> None:
    """The derived BM25 files are listed in the manifest and verified like the rest."""
    bm25 = current_snapshot_dir(index_dir) / "bm25"
    victim = bm25 / "lakevec-bm25.json"
    victim.write_text(victim.read_text().replace('"k1"', '"k2"'))
    with pytest.raises(IndexCorruptError) as exc:
        open_index(index_dir)
    assert_one_line(exc, "lakevec-bm25.json", FULL_HINT)
    shutil.rmtree(bm25)
    with pytest.raises(IndexCorruptError) as exc:
        open_index(index_dir)
    assert_one_line(exc, "is missing", FULL_HINT)
