"""The real all-MiniLM-L6-v2 and real hnswlib, end to end on the shipped sample corpus."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from lakevec.cli import main
from lakevec.corpus import read_corpus
from lakevec.embed.base import Embedder
from lakevec.index.build import build_index
from lakevec.index.snapshot import open_index
from lakevec.retrieval.dense import DenseRetriever
from lakevec.retrieval.jaccard import JaccardRetriever
from tests.conftest import SAMPLE_CORPUS

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sample_index(tmp_path_factory: pytest.TempPathFactory, real_embedder: Embedder) -> Path:
    index_dir = tmp_path_factory.mktemp("real") / "index"
    build_index(read_corpus(SAMPLE_CORPUS), index_dir, real_embedder)
    return index_dir


def test_real_model_vectors_are_unit_and_384d(real_embedder: Embedder) -> None:
    vecs = real_embedder.encode(["rotate the gateway keys", "rebuild the vector index"])
    assert vecs.shape == (2, 384) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
    assert real_embedder.model_id == "sentence-transformers/all-MiniLM-L6-v2"


def test_paraphrase_beats_keywords(sample_index: Path, real_embedder: Embedder) -> None:
    """A query sharing no keywords with the breaker playbooks still finds one."""
    query = "stop calling an upstream that keeps erroring until it recovers"
    with open_index(sample_index) as index:
        dense = DenseRetriever(index, real_embedder).search(query, 3)
    top_text = " ".join(f"{h.record.title} {h.record.content}".lower() for h in dense)
    assert "breaker" in top_text or "trip" in top_text or "failover" in top_text
    assert all(0 < h.score <= 1.0001 for h in dense)


def test_hnsw_matches_exact_on_sample(sample_index: Path, real_embedder: Embedder) -> None:
    corpus = read_corpus(SAMPLE_CORPUS)
    queries = [r.title for r in list(corpus.records.values())[:20]]
    with open_index(sample_index) as index:
        q = real_embedder.encode(queries)
        ann, _ = index.knn(q, 8)
        exact, _ = index.exact(q, 8)
    overlap = np.mean([len(set(a) & set(e)) / 8 for a, e in zip(ann, exact, strict=True)])
    assert overlap >= 0.99


def test_cli_build_and_search_with_real_model(tmp_path: Path) -> None:
    root = tmp_path
    (root / "exports" / "rag").mkdir(parents=True)
    shutil.copy(SAMPLE_CORPUS, root / "exports" / "rag" / "playbooks.jsonl")
    runner = CliRunner()
    built = runner.invoke(main, ["--root", str(root), "build-index", "--quiet"])
    assert built.exit_code == 0, built.output
    found = runner.invoke(
        main, ["--root", str(root), "search", "provider routing audit", "-k", "3"]
    )
    assert found.exit_code == 0, found.output
    assert len(found.stdout.strip().splitlines()) == 3
    with open_index(root / "index") as index:
        assert index.manifest.model.model_id == "sentence-transformers/all-MiniLM-L6-v2"
        assert index.manifest.model.dimension == 384


def test_jaccard_and_dense_disagree_on_paraphrase(sample_index: Path, real_embedder) -> None:
    """Sanity check that the two retrievers are really different code paths."""
    corpus = read_corpus(SAMPLE_CORPUS)
    jac = JaccardRetriever(corpus.records.values()).search("keep a flaky backend out", 8)
    with open_index(sample_index) as index:
        dense = DenseRetriever(index, real_embedder).search("keep a flaky backend out", 8)
    assert [h.record.id for h in jac] != [h.record.id for h in dense]
