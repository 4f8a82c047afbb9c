"""Issue 16's fast paths: backend calibration and choice (with fakes), torch-free small
updates, the bm25s-free query scorer, and cold paths that import only what they use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from lakevec.corpus import keyword_text, read_corpus
from lakevec.embed import auto as auto_mod
from lakevec.embed.auto import AutoEmbedder
from lakevec.embed.base import Vectors, normalize
from lakevec.embed.calibrate import (
    BASELINE,
    Calibration,
    Measurement,
    calibrate,
    calibration_sample,
    candidates_for,
    choose,
    measure,
    read_calibration,
    write_calibration,
)
from lakevec.embed.hashing import HashEmbedder
from lakevec.index.build import build_index
from lakevec.index.lexical import STOPWORDS_EN, BM25Index
from lakevec.index.snapshot import open_index
from lakevec.settings import CACHE_DIR_ENV, MIN_COSINE_BY_PRECISION
from lakevec.topk import top_k
from tests.conftest import REPO, SAMPLE_CORPUS, record, write_jsonl

# ─── the chooser ─────────────────────────────────────────────────────────────


def m(name: str, rate: float, cos: float = 0.9999) -> Measurement:
    return Measurement(name, rate, cos)


def test_choose_takes_the_fastest_backend_that_passes_its_guard() -> None:
    found = [m(BASELINE, 30.0, 1.0), m("onnx-fp32", 33.0), m("onnx-int8", 60.0, 0.99)]
    assert choose(found) == "onnx-int8"


def test_choose_never_picks_a_backend_below_its_quality_guard() -> None:
    broken = MIN_COSINE_BY_PRECISION["int8"] - 0.01
    found = [m(BASELINE, 30.0, 1.0), m("onnx-int8", 90.0, broken), m("st-bf16", 40.0, 0.9999)]
    assert choose(found) == "st-bf16"


def test_choose_keeps_fp32_unless_a_candidate_clearly_beats_it() -> None:
    # 5 % faster is within the noise of a shared machine: not enough to switch.
    assert choose([m(BASELINE, 30.0, 1.0), m("onnx-int8", 31.5, 0.99)]) == BASELINE
    assert choose([m(BASELINE, 30.0, 1.0), m("st-bf16", 5.7)]) == BASELINE  # emulated bf16
    assert choose([m(BASELINE, 30.0, 1.0)]) == BASELINE
    with pytest.raises(ValueError, match="baseline"):
        choose([m("onnx-int8", 60.0)])


def test_bf16_is_only_timed_where_the_cpu_has_it() -> None:
    assert candidates_for(["avx2", "fma"], onnx=True) == [BASELINE, "onnx-fp32", "onnx-int8"]
    assert "st-bf16" in candidates_for(["avx512_bf16"], onnx=False)
    assert candidates_for([], onnx=False) == [BASELINE]


class FakeClock:
    """Each encoder call advances time by the encoder's per-text cost."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fake_encoder(clock: FakeClock, per_text: float, noise: float = 0.0) -> Callable[..., Vectors]:
    base = HashEmbedder(16)

    def encode(texts: list[str]) -> Vectors:
        clock.now += per_text * len(texts)
        vecs = base.encode(texts)
        if noise:
            vecs = normalize(vecs + noise)
        return vecs

    return encode


def test_measure_times_interleaved_rounds_and_compares_to_the_baseline() -> None:
    clock = FakeClock()
    encoders = {
        BASELINE: fake_encoder(clock, 0.02),
        "onnx-int8": fake_encoder(clock, 0.005, noise=0.05),
    }
    texts = [f"text number {i} about disks" for i in range(10)]
    found = {x.name: x for x in measure(encoders, texts, rounds=2, clock=clock)}
    assert found[BASELINE].records_per_s == pytest.approx(50.0)
    assert found["onnx-int8"].records_per_s == pytest.approx(200.0)
    assert found[BASELINE].min_cosine == 1.0
    assert 0.5 < found["onnx-int8"].min_cosine < 1.0


def test_calibration_is_cached_per_machine_and_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path))
    clock = FakeClock()
    encoders = {BASELINE: fake_encoder(clock, 0.02), "onnx-fp32": fake_encoder(clock, 0.01)}
    cal = calibrate(encoders, [f"t {i}" for i in range(100)], machine="cpu A", n=8, clock=clock)
    assert cal.choice == "onnx-fp32" and cal.texts == 8
    assert cal.speedup() == pytest.approx(2.0)
    assert write_calibration("fp1", cal) is not None
    assert read_calibration("fp1", "cpu A") == cal
    assert read_calibration("fp1", "cpu B") is None  # another machine measures again
    assert read_calibration("fp2", "cpu A") is None  # another model too
    path = next((tmp_path / "calibration").iterdir())
    path.write_text("{not json")
    assert read_calibration("fp1", "cpu A") is None  # damaged: ignored, measured again


def test_calibration_sample_spans_the_lengths() -> None:
    texts = ["x" * n for n in range(1, 1001)]
    sample = calibration_sample(texts, 10)
    assert len(sample) == 10 and len(set(sample)) == 10
    assert min(map(len, sample)) < 100 and max(map(len, sample)) > 900
    assert calibration_sample(texts[:3], 10) == texts[:3]


# ─── AutoEmbedder: which backend a call uses (fakes, no model) ───────────────


class FakeOnnx:
    def __init__(self, precision: str, cosine: float) -> None:
        self.precision = precision
        self.equivalence_cosine = cosine
        self.calls = 0
        self._hash = HashEmbedder(384)

    def encode(self, texts: Any, *, batch_size: int = 32, progress: bool = False) -> Vectors:
        self.calls += 1
        return self._hash.encode(texts)


@pytest.fixture
def fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, FakeOnnx]:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path))
    made = {"onnx-fp32": FakeOnnx("fp32", 0.99998), "onnx-int8": FakeOnnx("int8", 0.985)}
    monkeypatch.setattr(auto_mod, "open_export", lambda *a, **k: made["onnx-fp32"])
    monkeypatch.setattr(auto_mod, "open_int8", lambda *a, **k: made["onnx-int8"])
    # The export's recorded dimension (so that no model is loaded to learn it).
    info = SimpleNamespace(dimension=384)
    monkeypatch.setattr(auto_mod, "read_export_info", lambda *a, **k: info)
    return made


def test_small_updates_use_the_verified_onnx_encoder_without_torch(
    fakes: dict[str, FakeOnnx],
) -> None:
    emb = AutoEmbedder(small_max=5)
    vecs = emb.encode(["a", "b", "c"])
    assert vecs.shape == (3, 384)
    assert fakes["onnx-fp32"].calls == 1
    assert (emb.backend, emb.precision, emb.equivalence_cosine) == ("onnx", "fp32", 0.99998)
    assert not emb.sentence.loaded  # sentence-transformers (torch) never loaded


def test_large_calls_use_the_cached_calibration_choice(
    fakes: dict[str, FakeOnnx], monkeypatch: pytest.MonkeyPatch
) -> None:
    cal = Calibration("onnx-int8", (m(BASELINE, 30, 1.0), m("onnx-int8", 75, 0.985)),
                      "this cpu", 64, 300.0, 0.0)
    monkeypatch.setattr(auto_mod, "read_calibration", lambda *a, **k: cal)
    emb = AutoEmbedder(small_max=2)
    assert emb.precision == "int8"  # planned before any call
    emb.encode([f"text {i}" for i in range(10)])
    assert fakes["onnx-int8"].calls == 1 and fakes["onnx-fp32"].calls == 0
    assert (emb.backend, emb.precision, emb.equivalence_cosine) == ("onnx", "int8", 0.985)
    assert not emb.sentence.loaded


def test_forced_int8_applies_to_small_calls_too(fakes: dict[str, FakeOnnx]) -> None:
    emb = AutoEmbedder(force="onnx-int8")
    emb.encode(["one"])
    assert fakes["onnx-int8"].calls == 1 and emb.precision == "int8"


def test_the_manifest_records_backend_precision_and_verified_cosine(
    fakes: dict[str, FakeOnnx], tmp_path: Path
) -> None:
    corpus = read_corpus(write_jsonl(tmp_path / "c.jsonl", [record(i) for i in range(4)]))
    emb = AutoEmbedder()
    emb.fingerprint = HashEmbedder(384).fingerprint
    build_index(corpus, tmp_path / "idx", emb)
    assert not emb.sentence.loaded
    with open_index(tmp_path / "idx") as snap:
        info = snap.manifest.build
        assert (info.backend, info.precision, info.encoder_min_cosine) == ("onnx", "fp32",
                                                                            0.99998)
        raw = json.loads((snap.path / "manifest.json").read_text())
    del raw["build"]["backend"], raw["build"]["encoder_min_cosine"]  # an older manifest
    assert type(snap.manifest).model_validate(raw).build.backend is None


# ─── BM25 queries without bm25s ──────────────────────────────────────────────


def test_vendored_stop_words_are_bm25s_own() -> None:
    from bm25s.stopwords import STOPWORDS_EN as BM25S_EN

    assert frozenset(BM25S_EN) == STOPWORDS_EN


def _bm25s_model(texts: list[str]) -> tuple[Any, Any]:
    """bm25s's own tokenizer and index over ``texts`` (the reference lakevec must match)."""
    import bm25s
    import Stemmer
    from bm25s.tokenization import Tokenized, Tokenizer

    stem = Stemmer.Stemmer("english").stemWord
    tokenizer = Tokenizer(lower=True, stopwords=sorted(STOPWORDS_EN), stemmer=stem)
    ids = tokenizer.tokenize(texts, update_vocab=True, return_as="ids", show_progress=False)
    model = bm25s.BM25(k1=1.5, b=0.75)
    model.index(Tokenized(ids=ids, vocab=tokenizer.get_vocab_dict()), show_progress=False)
    return tokenizer, model


def _bm25s_scores(tokenizer: Any, model: Any, query: str, n: int) -> np.ndarray:
    ids = tokenizer.tokenize([query], update_vocab=False, return_as="ids", show_progress=False)[0]
    empty = tokenizer.word_to_id.get("")
    ids = [i for i in ids if i != empty]
    return np.asarray(model.get_scores(ids)) if ids else np.zeros(n, dtype=np.float32)


BM25_QUERIES = [
    "rotate the TLS certificate without downtime", "Verify the checksums!", "the and of",
    "gateway gateway gateways", "résumé naïve 東京", "", "x",
]


def test_bm25_scores_are_bm25s_scores(tmp_path: Path) -> None:
    records = read_corpus(SAMPLE_CORPUS).rows
    texts = [keyword_text(r) for r in records]
    tokenizer, model = _bm25s_model(texts)
    built = BM25Index(texts)
    built.save(tmp_path / "bm25")
    loaded = BM25Index.load(tmp_path / "bm25", documents=len(texts))
    for q in [*BM25_QUERIES, *[r.title for r in records[:20]]]:
        want = _bm25s_scores(tokenizer, model, q, len(texts))
        # Weights are computed at query time from counts: equal to float32 rounding.
        for index in (built, loaded):
            got = index.scores(index._query_ids([q])[0])
            np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)
        rows, _scores = loaded.search_rows([q], 8)[0]
        assert all(want[r] > 0 for r in rows)
        want_top = top_k(np.asarray(want, dtype=np.float64), 8, positive_only=True)[0]
        assert sorted(rows.tolist()) == sorted(want_top.tolist())


def test_format_1_bm25_indexes_are_still_read_bit_for_bit(tmp_path: Path) -> None:
    """Snapshots of lakevec 0.2 stored bm25s's weight matrix; they keep working."""
    records = read_corpus(SAMPLE_CORPUS).rows
    texts = [keyword_text(r) for r in records]
    tokenizer, model = _bm25s_model(texts)
    model.save(str(tmp_path / "bm25"))
    tokenizer.save_vocab(str(tmp_path / "bm25"))
    (tmp_path / "bm25" / "lakevec-bm25.json").write_text(json.dumps({
        "format": 1, "documents": len(texts), "stemmer": "english", "stopwords": "en",
        "k1": 1.5, "b": 0.75,
    }))
    legacy = BM25Index.load(tmp_path / "bm25", documents=len(texts))
    for q in BM25_QUERIES:
        want = _bm25s_scores(tokenizer, model, q, len(texts))
        np.testing.assert_array_equal(legacy.scores(legacy._query_ids([q])[0]), want)
    with pytest.raises(ValueError, match="cannot be updated"):
        legacy.updated(np.arange(len(texts), dtype=np.int64), len(texts), {})


def test_bm25_update_equals_a_build_from_scratch() -> None:
    texts = [keyword_text(r) for r in read_corpus(SAMPLE_CORPUS).rows]
    old = BM25Index(texts)
    rng = np.random.default_rng(7)
    for _ in range(20):
        n = len(texts)
        dropped = set(rng.choice(n, int(rng.integers(0, 6)), replace=False).tolist())
        kept = [i for i in range(n) if i not in dropped]
        remap = np.full(n, -1, dtype=np.int64)
        remap[kept] = np.arange(len(kept))
        new_texts = [texts[i] for i in kept]
        changes: dict[int, str] = {}
        for row in rng.choice(len(kept), 2, replace=False).tolist():  # changed in place
            remap[kept[row]] = -1
            changes[row] = new_texts[row] = f"{new_texts[row]} zebra{row} quokka"
        for j in range(int(rng.integers(0, 4))):  # appended
            changes[len(new_texts)] = f"brand new runbook {j} for unicorn{j} pods"
            new_texts.append(changes[len(new_texts)])
        merged = old.updated(remap, len(new_texts), changes)
        scratch = BM25Index(new_texts)
        assert merged.postings.terms == scratch.postings.terms
        for name, array in scratch.postings.arrays().items():
            np.testing.assert_array_equal(merged.postings.arrays()[name], array, err_msg=name)
        texts, old = new_texts, merged


def test_the_bm25_query_path_imports_neither_bm25s_nor_scipy(tmp_path: Path) -> None:
    corpus = read_corpus(write_jsonl(tmp_path / "c.jsonl", [record(i) for i in range(5)]))
    build_index(corpus, tmp_path / "idx", HashEmbedder(16))
    code = (
        "import sys, json\n"
        "from lakevec.retrieval.registry import open_retriever\n"
        f"r = open_retriever('bm25', root={str(tmp_path)!r}, index_dir={str(tmp_path / 'idx')!r})\n"
        "hits = r.search('verify the output', 3)\n"
        "print(json.dumps([len(hits), [m for m in ('bm25s', 'scipy', 'torch') "
        "if m in sys.modules]]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         timeout=120, check=True)
    hits, heavy = json.loads(out.stdout.strip().splitlines()[-1])
    assert hits == 3 and heavy == []


def test_jaccard_replay_needs_no_index_machinery(tmp_path: Path) -> None:
    """--retriever jaccard reads the corpus only: no numpy, hnswlib or onnxruntime."""
    code = (
        "import sys, json\n"
        "from lakevec.retrieval.registry import open_retriever\n"
        f"r = open_retriever('jaccard', root={str(REPO)!r})\n"
        "hits = r.search('rotate the certificate', 3)\n"
        "print(json.dumps([len(hits), [m for m in ('numpy', 'hnswlib', 'onnxruntime', "
        "'bm25s', 'torch') if m in sys.modules]]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         timeout=120, check=True)
    hits, heavy = json.loads(out.stdout.strip().splitlines()[-1])
    assert hits > 0 and heavy == []


def test_version_answers_before_click_is_imported() -> None:
    code = (
        "import sys, json, io, contextlib\n"
        "sys.argv = ['lakevec', '--version']\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    from lakevec.__main__ import main\n"
        "    main()\n"
        "print(json.dumps([out.getvalue(), [m for m in ('click', 'numpy', 'pydantic') "
        "if m in sys.modules]]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          timeout=60, check=True)
    printed, heavy = json.loads(proc.stdout.strip().splitlines()[-1])
    from click.testing import CliRunner

    from lakevec.cli import main

    assert printed == CliRunner().invoke(main, ["--version"]).output  # click's own format
    assert heavy == []


# ─── the real model (integration) ────────────────────────────────────────────


@pytest.fixture(scope="module")
def real_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache dir holding the real model's verified ONNX export."""
    from lakevec.embed.onnx_export import ensure_export
    from lakevec.embed.sentence import SentenceTransformerEmbedder

    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_DIR_ENV, str(cache))
        assert "exported" in ensure_export(SentenceTransformerEmbedder(precision="fp32"))
    return cache


def _scifact_texts(n: int) -> list[str]:
    from tests.conftest import SHARED_DATA

    corpus = SHARED_DATA / "beir" / "scifact" / "corpus.jsonl"
    if not corpus.is_file():
        pytest.skip(f"{corpus} is absent (needs ../shared/data next to the repo)")
    with corpus.open(encoding="utf-8") as fh:
        docs = [json.loads(line) for _, line in zip(range(n), fh, strict=False)]
    return [f"{d['title']} {d['text']}" for d in docs]


@pytest.mark.integration
def test_int8_vectors_stay_above_the_guard(
    real_export: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lakevec.embed.sentence import SentenceTransformerEmbedder

    monkeypatch.setenv(CACHE_DIR_ENV, str(real_export))
    texts = [*_scifact_texts(24), "x", "certificate expired", "Ünïcödé façade — 東京 🚀"]
    emb = AutoEmbedder(force="onnx-int8")
    got = emb.encode(texts)
    ref = SentenceTransformerEmbedder(precision="fp32").encode(texts)
    cos = (got * ref).sum(1)
    assert cos.min() >= MIN_COSINE_BY_PRECISION["int8"], cos.min()
    assert cos.mean() >= 0.99, cos.mean()
    assert (emb.backend, emb.precision) == ("onnx", "int8")
    assert emb.equivalence_cosine is not None
    assert emb.equivalence_cosine >= MIN_COSINE_BY_PRECISION["int8"]
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


@pytest.mark.integration
def test_a_small_reindex_never_imports_torch(real_export: Path, tmp_path: Path) -> None:
    """The CLI path: a 3-record change is embedded by the verified ONNX encoder."""
    rows = [record(i, content=f"Runbook {i}: drain node-{i}, then verify the pods.")
            for i in range(6)]
    corpus = write_jsonl(tmp_path / "c.jsonl", rows)
    code = (
        "import sys, json\n"
        "from lakevec.cli import main\n"
        f"main(['reindex', '--corpus', {str(corpus)!r}, '--index', "
        f"{str(tmp_path / 'idx')!r}], standalone_mode=False)\n"
        "print(json.dumps('torch' in sys.modules))\n"
    )
    env = {**os.environ, CACHE_DIR_ENV: str(real_export), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=REPO, timeout=300, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) is False
    with open_index(tmp_path / "idx") as snap:
        build = snap.manifest.build
        assert (build.backend, build.precision, build.embedded) == ("onnx", "fp32", 6)
        assert build.encoder_min_cosine is not None and build.encoder_min_cosine >= 0.999


# ─── verified digests: a fresh reader does not rehash an unchanged snapshot ──


def test_open_index_hashes_each_unchanged_file_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lakevec.errors import IndexCorruptError
    from lakevec.index import layout

    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
    corpus = read_corpus(write_jsonl(tmp_path / "c.jsonl", [record(i) for i in range(5)]))
    build_index(corpus, tmp_path / "idx", HashEmbedder(16))
    hashed: list[str] = []
    real: Callable[[Path], str] = layout.__dict__["sha256_file"]

    def counting(path: Path) -> str:
        hashed.append(path.name)
        return real(path)

    monkeypatch.setattr(layout, "sha256_file", counting)
    open_index(tmp_path / "idx").close()
    assert hashed == []  # the build remembered the digests it computed
    open_index(tmp_path / "idx", rehash=True).close()  # status --verify
    first = len(hashed)
    assert first >= 7  # core files, positions, row keys and the BM25 files
    open_index(tmp_path / "idx").close()
    assert len(hashed) == first  # nothing rehashed: stats and digests unchanged
    open_index(tmp_path / "idx", rehash=True).close()
    assert len(hashed) == 2 * first
    with open_index(tmp_path / "idx") as snap:
        vectors = snap.path / "vectors.npy"
    data = bytearray(vectors.read_bytes())
    data[-1] ^= 0xFF  # same size, new content: the stat changed, so it is hashed again
    vectors.write_bytes(bytes(data))
    with pytest.raises(IndexCorruptError, match="sha256"):
        open_index(tmp_path / "idx")
