"""The torch-free query path: ONNX export, its accuracy, fallbacks, and no torch import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, record, write_jsonl

import lakevec.onnx_embed as onnx_embed
from lakevec.corpus import read_corpus
from lakevec.embed import SentenceTransformerEmbedder, load_query_embedder
from lakevec.index import build_index
from lakevec.onnx_embed import OnnxEmbedder, ensure_export, export_dir, read_export_info

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
        mp.setenv("LAKEVEC_CACHE_DIR", str(cache))
        mp.delenv(onnx_embed.DISABLE_ENV, raising=False)
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
    monkeypatch.setenv("LAKEVEC_CACHE_DIR", str(exported[0]))
    monkeypatch.delenv(onnx_embed.DISABLE_ENV, raising=False)
    return exported[0]


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
    st = SentenceTransformerEmbedder(precision="fp32")
    ref = st.encode_batch(TEXTS)
    for got in (query.encode(TEXTS), np.vstack([query.encode([t]) for t in TEXTS])):
        assert (ref * got).sum(1).min() >= 0.999


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
    env = {**os.environ, "LAKEVEC_CACHE_DIR": str(cache)}
    env.pop(onnx_embed.DISABLE_ENV, None)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO,
        timeout=120, check=True,
    )
    hits, heavy = (json.loads(line) for line in proc.stdout.strip().splitlines()[-2:])
    assert heavy == []
    assert hits[0]["title"].startswith("How do I drain")


def test_falls_back_without_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKEVEC_CACHE_DIR", str(tmp_path))
    emb = load_query_embedder(None)
    assert isinstance(emb, SentenceTransformerEmbedder)
    assert emb.precision == "fp32" and emb._model is None  # still lazy


def test_falls_back_when_disabled(cache_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(onnx_embed.DISABLE_ENV, "1")
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
    monkeypatch.setenv("LAKEVEC_CACHE_DIR", str(tmp_path))
    (copy / "model.onnx").write_bytes(b"\0" * (size - 1))  # truncated: size check
    assert isinstance(load_query_embedder(None), SentenceTransformerEmbedder)
    (copy / "model.onnx").write_bytes(b"\0" * size)  # right size, garbage: onnxruntime fails
    assert isinstance(load_query_embedder(None), SentenceTransformerEmbedder)
    assert "unusable" in capsys.readouterr().err


def test_failed_export_is_a_note_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAKEVEC_CACHE_DIR", str(tmp_path))

    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(onnx_embed, "export_model", boom)
    note = ensure_export(SentenceTransformerEmbedder())
    assert "not exported" in note and "exploded" in note
