"""The torch-free query path: ONNX export, its accuracy, fallbacks, and no torch import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from lakevec.corpus import read_corpus
from lakevec.embed.base import clip_text
from lakevec.embed.loader import load_query_embedder
from lakevec.embed.models import default_model_dir
from lakevec.embed.onnx import (
    OnnxEmbedder,
    export_dir,
    exports_root,
    read_export_info,
)
from lakevec.embed.onnx_export import ensure_export, export_model
from lakevec.embed.sentence import SentenceTransformerEmbedder
from lakevec.errors import ExportError
from lakevec.index.build import build_index
from lakevec.settings import CACHE_DIR_ENV, NO_ONNX_ENV
from tests.conftest import REPO, record, write_jsonl

pytestmark = pytest.mark.integration

TEXTS = [
    "How do I drain a Kubernetes node before a kernel upgrade?",
    "Disk pressure on /var/lib/docker: prune images and check log rotation.",
    "certificate expired",
    "Rollback the failed database migration and VERIFY the schema version.",
    " ".join(["Long runbook text about the ingest pipeline and its retries."] * 40),
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """A cache dir holding a verified export, and a 6-record index built with the real model."""
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_DIR_ENV, str(cache))
        mp.delenv(NO_ONNX_ENV, raising=False)
        emb = SentenceTransformerEmbedder(precision="fp32")
        note = ensure_export(emb)
        assert "exported" in note, note
        root = tmp_path_factory.mktemp("idx")
        rows = [record(i, title=t[:60], content=t) for i, t in enumerate(TEXTS)]
        corpus = read_corpus(write_jsonl(root / "c.jsonl", rows))
        build_index(corpus, root / "index", emb)
        yield cache, root / "index"


@pytest.fixture
def cache_env(exported: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(CACHE_DIR_ENV, str(exported[0]))
    monkeypatch.delenv(NO_ONNX_ENV, raising=False)
    return exported[0]


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()  # reaped: the pid no longer exists
    return proc.pid


def test_export_is_installed_atomically_and_reused(cache_env: Path) -> None:
    emb = SentenceTransformerEmbedder(precision="fp32")
    target = export_dir(emb.fingerprint)
    info = read_export_info(target, emb.fingerprint)
    assert info is not None and info.min_cosine >= 0.999 and info.max_seq_length == 256
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".tmp-")]
    assert ensure_export(emb).endswith("(cached)")


def test_onnx_vectors_match_sentence_transformers(cache_env: Path) -> None:
    query = load_query_embedder(None)
    assert isinstance(query, OnnxEmbedder)
    assert (query.backend, query.precision) == ("onnx", "fp32")
    st = SentenceTransformerEmbedder(precision="fp32")
    ref = st.encode_batch(TEXTS)
    for got in (query.encode(TEXTS), np.vstack([query.encode([t]) for t in TEXTS])):
        assert (ref * got).sum(1).min() >= 0.999


def test_onnx_cuts_huge_texts_before_tokenizing(cache_env: Path) -> None:
    """A 5 MB record costs about what a normal one does, with the same vector."""
    query = load_query_embedder(None)
    assert isinstance(query, OnnxEmbedder)
    huge = "Drain the node and check the pod disruption budget. " * 100_000
    assert len(huge) > 5_000_000 and query.max_chars == 256 * 32
    normal = huge[: query.max_chars]
    query.encode([normal])  # warm-up

    def best_of_3(text: str) -> float:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            query.encode([text])
            times.append(time.perf_counter() - start)
        return min(times)

    # Unclipped, the tokenizer alone took minutes; the bound is generous for a
    # shared CI machine (slicing 5 MB costs ~1 ms).
    assert best_of_3(huge) < 10 * best_of_3(normal) + 0.5
    np.testing.assert_array_equal(query.encode([huge]), query.encode([normal]))
    ref = SentenceTransformerEmbedder(precision="fp32").encode_batch([huge])
    assert float((ref * query.encode([huge])).sum()) >= 0.999
    assert clip_text(huge, query.max_chars) == normal


def test_query_path_never_imports_torch(exported: tuple[Path, Path]) -> None:
    cache, index = exported
    code = (
        "import sys, json\n"
        "from lakevec.cli import main\n"
        f"try:\n    main(['search', 'drain a node', '--index', {str(index)!r}, '--json'])\n"
        "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "heavy = [m for m in ('torch', 'sentence_transformers', 'transformers') "
        "if m in sys.modules]\n"
        "print(json.dumps(heavy))\n"
    )
    env = {**os.environ, CACHE_DIR_ENV: str(cache)}
    env.pop(NO_ONNX_ENV, None)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO,
        timeout=120, check=True,
    )
    hits, heavy = (json.loads(line) for line in proc.stdout.strip().splitlines()[-2:])
    assert heavy == []
    assert hits[0]["title"].startswith("How do I drain")


def test_falls_back_without_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path))
    emb = load_query_embedder(None)
    assert isinstance(emb, SentenceTransformerEmbedder)
    assert emb.precision == "fp32" and not emb.loaded  # still lazy


def test_falls_back_when_disabled(cache_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NO_ONNX_ENV, "1")
    assert isinstance(load_query_embedder(None), SentenceTransformerEmbedder)


def test_damaged_export_falls_back(
    cache_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fp = SentenceTransformerEmbedder().fingerprint
    src = export_dir(fp)
    copy = tmp_path / "onnx" / fp
    copy.mkdir(parents=True)
    for name in ("export.json", "tokenizer.json"):
        (copy / name).write_bytes((src / name).read_bytes())
    size = (src / "model.onnx").stat().st_size
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path))
    (copy / "model.onnx").write_bytes(b"\0" * (size - 1))  # truncated: size check
    assert isinstance(load_query_embedder(None), SentenceTransformerEmbedder)
    (copy / "model.onnx").write_bytes(b"\0" * size)  # right size, garbage: onnxruntime fails
    assert isinstance(load_query_embedder(None), SentenceTransformerEmbedder)
    assert "unusable" in capsys.readouterr().err


@pytest.fixture
def max_pooling_model(tmp_path: Path) -> Path:
    """The default model with max pooling: loads fine, but the exporter does not support it."""
    src = default_model_dir()
    dst = tmp_path / "minilm-max"
    for path in src.rglob("*"):
        if path.is_file():
            (dst / path.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
            (dst / path.relative_to(src)).symlink_to(path)
    pooling = dst / "1_Pooling" / "config.json"
    cfg = json.loads(pooling.read_text())
    pooling.unlink()
    cfg.update(pooling_mode_mean_tokens=False, pooling_mode_max_tokens=True)
    pooling.write_text(json.dumps(cfg))
    return dst


def test_failed_export_is_a_note_not_an_error(
    max_pooling_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
    emb = SentenceTransformerEmbedder(str(max_pooling_model), precision="fp32")
    note = ensure_export(emb)
    assert "not exported" in note and "ExportError" in note and "pooling" in note
    assert emb.encode(["still embeds"]).shape == (1, 384)  # the build goes on
    assert isinstance(load_query_embedder(str(max_pooling_model)), SentenceTransformerEmbedder)
    assert list(exports_root().iterdir()) == []  # nothing installed, no temp dir left


def test_failed_export_still_removes_dead_leftovers(
    max_pooling_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
    emb = SentenceTransformerEmbedder(str(max_pooling_model), precision="fp32")
    dead = exports_root() / f".tmp-{_dead_pid()}-0badc0de"
    dead.mkdir(parents=True)
    with pytest.raises(ExportError, match="pooling"):
        export_model(emb, export_dir(emb.fingerprint))
    assert list(exports_root().iterdir()) == []
