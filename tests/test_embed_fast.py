"""The fast build path: precision selection, bf16 quality guard, length-aware batching."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from lakevec.corpus import read_corpus
from lakevec.embed.auto import AutoEmbedder
from lakevec.embed.base import Embedder, encode_in_chunks
from lakevec.embed.hashing import HashEmbedder
from lakevec.embed.loader import load_embedder
from lakevec.embed.precision import cpu_flags, resolve_precision
from lakevec.embed.sentence import SentenceTransformerEmbedder
from lakevec.errors import UsageProblem
from lakevec.index.build import build_index
from lakevec.index.manifest import IndexManifest
from lakevec.index.snapshot import open_index
from lakevec.settings import CACHE_DIR_ENV
from tests.conftest import SHARED_DATA, record, write_jsonl

AMD_FLAGS = "fpu vme avx2 avx512f avx512bw avx512_bf16 avx512_vnni"


def test_cpu_flags_parses_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nmodel name\t: X\nflags\t\t: {AMD_FLAGS}\n\n")
    assert "avx512_bf16" in cpu_flags(info)
    assert cpu_flags(tmp_path / "missing") == frozenset()


@pytest.mark.parametrize(
    ("requested", "flags", "expected"),
    [
        ("auto", AMD_FLAGS.split(), "bf16"),
        ("auto", ["avx2", "amx_bf16", "amx_tile"], "bf16"),
        ("auto", ["avx2", "avx512f"], "fp32"),  # AVX-512 without bf16 → emulated, slow
        ("auto", [], "fp32"),
        ("fp32", AMD_FLAGS.split(), "fp32"),
        ("bf16", [], "bf16"),  # forcing is honoured
    ],
)
def test_resolve_precision(requested: str, flags: list[str], expected: str) -> None:
    assert resolve_precision(requested, flags) == expected


def test_resolve_precision_rejects_unknown() -> None:
    with pytest.raises(UsageProblem, match="fp16"):
        resolve_precision("fp16", [])


def test_load_embedder_threads_precision_without_loading_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emb = load_embedder(None, precision="fp32")
    assert isinstance(emb, SentenceTransformerEmbedder)
    assert emb.precision == "fp32" and not emb.loaded
    # auto decides per call by measurement; before any calibration on this
    # machine (an empty cache here) a large call would use the CPU-flag guess.
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path))
    auto = load_embedder(None, precision="auto")
    assert isinstance(auto, AutoEmbedder) and not auto.sentence.loaded
    assert auto.precision == resolve_precision("auto")
    assert load_embedder(None, precision="int8").precision == "int8"


@pytest.mark.parametrize("mode", ["global", "chunk", "off"])
def test_length_sort_keeps_input_order(mode: str) -> None:
    texts = [("word " * (i * 7 % 23)).strip() or "x" for i in range(50)]
    emb = HashEmbedder(32)
    want = emb.encode(texts)
    got = encode_in_chunks(
        texts, lambda b: emb.encode(b), dimension=32, progress=False, desc="t",
        length_sort=mode, chunk=8,  # type: ignore[arg-type]
    )
    np.testing.assert_array_equal(got, want)


def test_manifest_records_precision_and_old_manifests_load(tmp_path: Path) -> None:
    corpus = read_corpus(write_jsonl(tmp_path / "c.jsonl", [record(i) for i in range(3)]))
    emb = HashEmbedder(16)
    emb.precision = "bf16"
    build_index(corpus, tmp_path / "idx", emb)
    with open_index(tmp_path / "idx") as snap:
        assert snap.manifest.build.precision == "bf16"
        raw = json.loads((snap.path / "manifest.json").read_text())
    del raw["build"]["precision"]  # a manifest written before the field existed
    assert IndexManifest.model_validate(raw).build.precision is None


def _real_texts(n: int) -> list[str]:
    corpus = SHARED_DATA / "beir" / "scifact" / "corpus.jsonl"
    if not corpus.is_file():
        pytest.skip(f"{corpus} is absent (needs ../shared/data next to the repo)")
    texts = []
    with corpus.open(encoding="utf-8") as fh:
        for line in fh:
            doc = json.loads(line)
            texts.append(f"{doc['title']} {doc['text']}"[:800])
            if len(texts) == n:
                break
    return texts


@pytest.mark.integration
def test_bf16_matches_fp32_on_real_texts() -> None:
    """Quality guard of the fast path: cosine ≥ 0.995 to fp32 on real documents."""
    texts = _real_texts(24)
    emb = SentenceTransformerEmbedder(precision="bf16")
    fp32 = emb.encode_batch(texts, precision="fp32")
    bf16 = emb.encode(texts)
    cos = (fp32 * bf16).sum(1)
    assert cos.min() >= 0.995, cos.min()
    assert np.allclose(np.linalg.norm(bf16, axis=1), 1.0, atol=1e-5)
    assert bf16.dtype == np.float32


def test_cli_precision_option(tmp_path: Path) -> None:
    from lakevec.cli import main

    corpus = write_jsonl(tmp_path / "c.jsonl", [record(i) for i in range(3)])
    base = ["build-index", "--corpus", str(corpus), "--index", str(tmp_path / "i"), "-q"]
    runner = CliRunner()
    ok = runner.invoke(main, [*base, "--model", "hash:16", "--precision", "fp32"])
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(main, [*base, "--precision", "fp16"])
    assert bad.exit_code == 2 and "fp16" in bad.output


def test_embedders_state_backend_and_precision() -> None:
    """Callers read backend/precision from the Embedder protocol, never by probing."""
    hashed = load_embedder("hash:8")
    st = load_embedder(None, precision="fp32")
    assert isinstance(hashed, Embedder) and isinstance(st, Embedder)
    assert (hashed.backend, hashed.precision) == ("hash", "na")
    assert (st.backend, st.precision) == ("sentence-transformers", "fp32")
