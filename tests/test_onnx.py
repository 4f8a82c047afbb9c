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
from lakevec.embed import numpy_bert
from lakevec.embed.base import clip_text
from lakevec.embed.loader import load_query_embedder
from lakevec.embed.models import default_model_dir
from lakevec.embed.numpy_bert import (
    NUMPY_MAX_TOKENS,
    PACK_FILE,
    PACK_INFO,
    PACK_MIN_COSINE,
    NumpyBertEmbedder,
    prepare_numpy_pack,
    read_pack_info,
)
from lakevec.embed.onnx import (
    REFERENCE_FILE,
    ExportEncoder,
    OnnxEmbedder,
    export_dir,
    exports_root,
    read_export_info,
)
from lakevec.embed.onnx_export import ensure_export, export_model
from lakevec.embed.sentence import SentenceTransformerEmbedder
from lakevec.errors import ExportError
from lakevec.index.build import build_index
from lakevec.settings import CACHE_DIR_ENV, NO_NUMPY_QUERY_ENV, NO_ONNX_ENV
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
        assert "exported" in note and "numpy pack: written" in note, note
        root = tmp_path_factory.mktemp("idx")
        rows = [record(i, title=t[:60], content=t) for i, t in enumerate(TEXTS)]
        corpus = read_corpus(write_jsonl(root / "c.jsonl", rows))
        build_index(corpus, root / "index", emb)
        yield cache, root / "index"


@pytest.fixture
def cache_env(exported: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(CACHE_DIR_ENV, str(exported[0]))
    monkeypatch.delenv(NO_ONNX_ENV, raising=False)
    monkeypatch.delenv(NO_NUMPY_QUERY_ENV, raising=False)
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
    assert " (cached);" in ensure_export(emb)


@pytest.fixture(params=["numpy", "onnx"])
def query_model(
    request: pytest.FixtureRequest, cache_env: Path, monkeypatch: pytest.MonkeyPatch
) -> ExportEncoder:
    """The query encoder of each torch-free backend (numpy pack first, ONNX without it)."""
    if request.param == "onnx":
        monkeypatch.setenv(NO_NUMPY_QUERY_ENV, "1")
    else:
        monkeypatch.delenv(NO_NUMPY_QUERY_ENV, raising=False)
    query = load_query_embedder(None)
    assert isinstance(query, NumpyBertEmbedder if request.param == "numpy" else OnnxEmbedder)
    assert (query.backend, query.precision) == (request.param, "fp32")
    return query


def test_export_vectors_match_sentence_transformers(query_model: ExportEncoder) -> None:
    st = SentenceTransformerEmbedder(precision="fp32")
    ref = st.encode_batch(TEXTS)
    for got in (query_model.encode(TEXTS), np.vstack([query_model.encode([t]) for t in TEXTS])):
        assert (ref * got).sum(1).min() >= 0.999


def test_export_cuts_huge_texts_before_tokenizing(query_model: ExportEncoder) -> None:
    """A 5 MB record costs about what a normal one does, with the same vector."""
    query = query_model
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


@pytest.mark.parametrize("numpy_pack", [True, False])
def test_query_path_never_imports_torch(exported: tuple[Path, Path], numpy_pack: bool) -> None:
    """Neither torch nor (with the numpy pack) onnxruntime in a fresh `lakevec search`."""
    cache, index = exported
    code = (
        "import sys, json\n"
        "from lakevec.cli import main\n"
        f"try:\n    main(['search', 'drain a node', '--index', {str(index)!r}, '--json'])\n"
        "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "heavy = [m for m in ('torch', 'sentence_transformers', 'transformers', 'onnxruntime') "
        "if m in sys.modules]\n"
        "print(json.dumps(heavy))\n"
    )
    env = {**os.environ, CACHE_DIR_ENV: str(cache)}
    env.pop(NO_ONNX_ENV, None)
    env.pop(NO_NUMPY_QUERY_ENV, None)
    if not numpy_pack:
        env[NO_NUMPY_QUERY_ENV] = "1"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO,
        timeout=120, check=True,
    )
    hits, heavy = (json.loads(line) for line in proc.stdout.strip().splitlines()[-2:])
    assert heavy == ([] if numpy_pack else ["onnxruntime"])
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


# --- the numpy weight pack (lakevec.embed.numpy_bert) -------------------------------------


def test_numpy_pack_is_verified_and_matches_both_references(cache_env: Path) -> None:
    fp = SentenceTransformerEmbedder().fingerprint
    pack = read_pack_info(export_dir(fp), fp)
    assert pack is not None and pack.verified_cosine >= PACK_MIN_COSINE
    # The export saved torch's own vectors: the pack was checked against them directly.
    assert pack.verified_against == "sentence-transformers"
    assert 0.999 <= pack.min_cosine <= pack.verified_cosine
    query = load_query_embedder(None)
    assert isinstance(query, NumpyBertEmbedder) and query.equivalence_cosine == pack.min_cosine
    info = read_export_info(export_dir(fp), fp)
    assert info is not None
    onnx = OnnxEmbedder("default", "m", export_dir(fp), info)
    fast = NumpyBertEmbedder("default", "m", export_dir(fp), info, pack, max_tokens=None)
    texts = [*TEXTS, "", "a", "Ünïcödé 東京 🚀 " * 30]
    # Batched (padding, mixed lengths) and one by one, against ONNX and torch.
    want = onnx.encode_batch(texts, batch_size=len(texts))
    for got in (fast.encode_batch(texts, batch_size=len(texts)),
                np.vstack([fast.encode_batch([t]) for t in texts])):
        assert got.dtype == np.float32 and got.shape == (len(texts), 384)
        assert (want * got).sum(1).min() >= PACK_MIN_COSINE
    ref = SentenceTransformerEmbedder(precision="fp32").encode_batch(texts)
    assert (ref * fast.encode(texts)).sum(1).min() >= 0.9999
    assert fast._graph is None  # all of it ran in numpy


def test_numpy_hands_large_calls_to_onnx(cache_env: Path) -> None:
    """One query runs in numpy; a batch past max_tokens opens the graph once; servers start
    on the graph."""
    query = load_query_embedder(None)
    assert isinstance(query, NumpyBertEmbedder) and query.max_tokens == NUMPY_MAX_TOKENS
    one = query.encode([TEXTS[0]])
    assert query._graph is None
    batch = query.encode_batch(TEXTS * 4, batch_size=len(TEXTS) * 4)  # > 256 tokens
    graph = query._graph
    assert isinstance(graph, OnnxEmbedder)
    np.testing.assert_array_equal(batch, graph.encode_batch(TEXTS * 4, batch_size=len(TEXTS) * 4))
    assert float((one * batch[0]).sum()) >= PACK_MIN_COSINE
    query.encode_batch(TEXTS * 4, batch_size=len(TEXTS) * 4)
    assert query._graph is graph  # opened once
    assert isinstance(load_query_embedder(None, long_lived=True), OnnxEmbedder)


def test_numpy_cls_pooling_matches_the_transformer(cache_env: Path) -> None:
    """CLS pooling (other BERT models) gives the first token's hidden state, as torch does."""
    import torch

    fp = SentenceTransformerEmbedder().fingerprint
    target = export_dir(fp)
    info, pack = read_export_info(target, fp), read_pack_info(target, fp)
    assert info is not None and pack is not None
    cls = NumpyBertEmbedder("default", "m", target, info.model_copy(update={"pooling": "cls"}),
                            pack, max_tokens=None)
    st = SentenceTransformerEmbedder(precision="fp32")
    tok = st.model.tokenizer(TEXTS, padding=True, truncation=True, max_length=256,
                             return_tensors="pt")
    with torch.no_grad():
        hidden = st.model[0].auto_model(**tok).last_hidden_state[:, 0].numpy()
    hidden /= np.linalg.norm(hidden, axis=1, keepdims=True)
    assert (hidden * cls.encode_batch(TEXTS)).sum(1).min() >= 0.9999


def _export_copy(tmp_path: Path, *, pack: bool, reference: bool = False) -> Path:
    """A copy of the verified export under tmp_path/onnx, with or without its numpy pack
    and torch's saved vectors (exports made before the pack have none)."""
    fp = SentenceTransformerEmbedder().fingerprint
    src, dst = export_dir(fp), tmp_path / "onnx" / fp
    dst.mkdir(parents=True)
    names = ["export.json", "tokenizer.json", "model.onnx"]
    names += [PACK_FILE, PACK_INFO] if pack else []
    for name in names + ([REFERENCE_FILE] if reference else []):
        (dst / name).symlink_to(src / name)
    return dst


def test_numpy_pack_disabled_or_damaged_falls_back_to_onnx(
    cache_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(NO_NUMPY_QUERY_ENV, "1")
    assert isinstance(load_query_embedder(None), OnnxEmbedder)
    monkeypatch.delenv(NO_NUMPY_QUERY_ENV)
    monkeypatch.setenv(NO_ONNX_ENV, "1")  # the pack is part of the export: off with it
    assert isinstance(load_query_embedder(None), SentenceTransformerEmbedder)
    monkeypatch.delenv(NO_ONNX_ENV)
    copy = _export_copy(tmp_path, pack=True)
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path))
    assert isinstance(load_query_embedder(None), NumpyBertEmbedder)
    size = (copy / PACK_FILE).stat().st_size
    (copy / PACK_FILE).unlink()
    (copy / PACK_FILE).write_bytes(b"\0" * (size - 4))  # truncated: size check
    assert isinstance(load_query_embedder(None), OnnxEmbedder)
    info = json.loads((copy / PACK_INFO).read_text())
    (copy / PACK_INFO).unlink()
    (copy / PACK_INFO).write_text(json.dumps({**info, "fingerprint": "0" * 32}))
    assert isinstance(load_query_embedder(None), OnnxEmbedder)


@pytest.mark.parametrize("reference", [True, False])
def test_numpy_pack_is_written_only_when_it_matches(
    cache_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reference: bool
) -> None:
    """Checked against torch's saved vectors, or (older exports) the ONNX graph."""
    copy = _export_copy(tmp_path, pack=False, reference=reference)
    info = read_export_info(copy, copy.name)
    assert info is not None
    base = sorted(p.name for p in copy.iterdir())
    # A killed build's half-written pack goes; a live writer's stays.
    dead = copy / f".tmp-{_dead_pid()}-0badc0de-{PACK_FILE}"
    live = copy / f".tmp-{os.getpid()}-0badc0de-{PACK_FILE}"
    dead.write_bytes(b"\0" * 64)
    live.write_bytes(b"\0" * 64)
    monkeypatch.setattr(numpy_bert, "PACK_MIN_COSINE", 1.000001)  # nothing can pass
    note = prepare_numpy_pack(copy, info, default_model_dir())
    against = "sentence-transformers" if reference else "the ONNX export"
    assert note.startswith("not used (min cosine ") and f"to {against}, below 1.000001" in note
    assert sorted(p.name for p in copy.iterdir()) == sorted([live.name, *base])
    live.unlink()
    monkeypatch.undo()
    assert prepare_numpy_pack(copy, info, default_model_dir()).endswith(f" to {against})")
    pack = read_pack_info(copy, copy.name)
    assert pack is not None and pack.verified_against == against
    assert pack.verified_cosine >= PACK_MIN_COSINE and pack.min_cosine >= 0.999
    assert prepare_numpy_pack(copy, info, default_model_dir()) == "cached"
    assert not [p for p in copy.iterdir() if p.name.startswith(".tmp-")]


def test_numpy_pack_skips_models_it_cannot_run(cache_env: Path, tmp_path: Path) -> None:
    copy = _export_copy(tmp_path, pack=False)
    info = read_export_info(copy, copy.name)
    assert info is not None
    model = tmp_path / "model"
    model.mkdir()
    cfg = json.loads((default_model_dir() / "config.json").read_text())
    for change, why in (({"model_type": "roberta"}, "roberta/gelu is not BERT/gelu"),
                        ({"position_embedding_type": "relative_key"},
                         "only absolute position embeddings"),
                        ({}, "no model.safetensors")):
        (model / "config.json").write_text(json.dumps({**cfg, **change}))
        assert prepare_numpy_pack(copy, info, model) == f"not used ({why})"
    (model / "config.json").write_text("{not json")
    assert prepare_numpy_pack(copy, info, model).startswith("not used (no readable config.json")
    assert sorted(p.name for p in copy.iterdir()) == ["export.json", "model.onnx",
                                                       "tokenizer.json"]
