"""``build-index --ray`` / ``reindex --ray`` on a real two-node Ray cluster started here.

A head and a worker node (one CPU each) run Ray Data's actor pool with the
packaged all-MiniLM-L6-v2 on CPU. The distributed build must equal a local
build of the same corpus; a worker node killed mid-build must end in a
completed, equal build or exit 1 with the previous snapshot live. Tests run in
file order; the last one kills the worker node.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from lakevec.corpus import embed_text, read_corpus
from lakevec.embed.base import Embedder
from lakevec.embed.hashing import HashEmbedder
from lakevec.embed.loader import load_embedder
from lakevec.embed.ray_embed import RayEmbedder, RayOptions
from lakevec.errors import ModelMismatchError
from lakevec.index.build import build_index
from lakevec.index.snapshot import open_index
from tests.test_ray_support import (  # noqa: F401 — fixtures
    BUILD_TIMEOUT,
    ProgressWatch,
    RayCluster,
    corpus_docs,
    current_version,
    lakevec,
    query_texts,
    ray_cluster_fixture,
    run_cli,
    snapshot_dirs,
    top_ids,
    vectors_by_id,
    write_corpus,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_DOCS = 200
N_QUERIES = 100
MIN_COSINE = 0.9999


@pytest.fixture(scope="module")
def fp32_embedder() -> Embedder:
    return load_embedder(None, precision="fp32")


@pytest.fixture(scope="module")
def local_build(tmp_path_factory: pytest.TempPathFactory, fp32_embedder: Embedder) -> Path:
    """The reference: the same corpus built locally, fp32; returns the index dir."""
    work = tmp_path_factory.mktemp("local")
    corpus = write_corpus(work / "corpus.jsonl", corpus_docs(0, N_DOCS))
    build_index(read_corpus(corpus), work / "index", fp32_embedder)
    return work / "index"


@pytest.fixture(scope="module")
def ray_build(tmp_path_factory: pytest.TempPathFactory, ray_cluster: RayCluster) -> Path:
    """The same corpus built by the CLI with ``--ray`` on the two-node cluster."""
    work = tmp_path_factory.mktemp("ray")
    corpus = write_corpus(work / "corpus.jsonl", corpus_docs(0, N_DOCS))
    proc = run_cli("build-index", "--corpus", str(corpus), "--index", str(work / "index"),
                   "--precision", "fp32", "--ray", ray_cluster.address)
    assert proc.returncode == 0, proc.stderr
    assert "ray: embedded 200 records on 2 node(s) with 2 actor(s)" in proc.stderr, proc.stderr
    return work / "index"


def cosines(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> np.ndarray:
    return np.array([float(a[k] @ b[k]) for k in a])


def test_distributed_build_equals_local_build(
    local_build: Path, ray_build: Path, fp32_embedder: Embedder
) -> None:
    local, ray = vectors_by_id(local_build), vectors_by_id(ray_build)
    assert sorted(local) == sorted(ray) and len(local) == N_DOCS
    assert cosines(local, ray).min() >= MIN_COSINE
    diff = max(float(np.abs(local[k] - ray[k]).max()) for k in local)
    print(f"min cosine {cosines(local, ray).min():.8f}, max |difference| {diff:.3g}")
    queries = fp32_embedder.encode(query_texts(N_QUERIES))
    assert len(queries) == N_QUERIES
    assert top_ids(ray_build, queries) == top_ids(local_build, queries)
    with open_index(local_build) as a, open_index(ray_build) as b:
        assert a.manifest.model == b.manifest.model
        assert a.manifest.build.precision == b.manifest.build.precision == "fp32"
        assert a.manifest.build.backend == b.manifest.build.backend == "sentence-transformers"
        assert a.manifest.counts == b.manifest.counts


def texts_by_id(corpus: Path) -> dict[str, str]:
    return {rid: embed_text(rec) for rid, rec in read_corpus(corpus).records.items()}


def test_reindex_with_ray_keeps_stdout_one_json_line_and_stderr_quiet(
    tmp_path: Path, ray_cluster: RayCluster
) -> None:
    corpus = write_corpus(tmp_path / "corpus.jsonl", corpus_docs(0, 40))
    args = ("reindex", "--corpus", str(corpus), "--index", str(tmp_path / "index"),
            "--model", "hash:64", "--ray", ray_cluster.address)
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    assert first.stderr == ""
    (line,) = first.stdout.splitlines()
    assert json.loads(line)["added"] == 40
    again = run_cli(*args)  # nothing to embed: the cluster is not contacted
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")
    texts = texts_by_id(corpus)
    local = dict(zip(texts, HashEmbedder(64).encode(list(texts.values())), strict=True))
    assert cosines(local, vectors_by_id(tmp_path / "index")).min() >= MIN_COSINE


# In-process driver: Ray Data reads its deprecated settings while it copies its
# context, and pytest would turn that DeprecationWarning into an error.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_node_with_other_weights_fails_loudly(ray_cluster: RayCluster) -> None:
    embedder = RayEmbedder(HashEmbedder(64), RayOptions(ray_cluster.address))
    embedder.fingerprint = "0" * 32  # what the driver's model would hash to
    with pytest.raises(ModelMismatchError, match=r"node .*fingerprint .* driver's has 0{32}"):
        embedder.encode(["a text", "another text"])


def test_worker_killed_mid_build_completes_or_keeps_the_previous_snapshot(
    tmp_path: Path, ray_cluster: RayCluster, ray_build: Path, fp32_embedder: Embedder,
    record_property: Callable[[str, object], None],
) -> None:
    """Kill the worker node once the first block is back; the build must either
    finish (Ray's retries) and equal a local embedding, or exit 1 with v1 live."""
    index = tmp_path / "index"
    shutil.copytree(ray_build, index)
    docs = corpus_docs(0, N_DOCS)
    for d in docs[:20]:
        d["title"] += " (revised)"
    revised = {d.get("_id", d.get("id")) for d in docs[:20]}
    docs += corpus_docs(N_DOCS, 80)
    corpus = write_corpus(tmp_path / "corpus.jsonl", docs)
    before = vectors_by_id(index)

    proc = subprocess.Popen(
        lakevec("build-index", "--corpus", str(corpus), "--index", str(index),
                "--precision", "fp32", "--batch-size", "2", "--ray", ray_cluster.address),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    watch = ProgressWatch(proc)
    killed = threading.Event()

    def killer() -> None:
        if watch.first_block.wait(BUILD_TIMEOUT):
            ray_cluster.kill_worker()
            killed.set()

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        out, _ = proc.communicate(timeout=BUILD_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = watch.join(30)
    thread.join(60)
    assert killed.is_set(), f"the worker was not killed mid-build:\n{err}"
    done, total = watch.at_signal
    assert 0 < done < total == 100, watch.at_signal  # killed with blocks still to come
    outcome = "completed" if proc.returncode == 0 else f"exit {proc.returncode}"
    record_property("outcome", outcome)
    print(f"worker killed after {done}/{total} records; build outcome: {outcome}")
    leftovers = [p.name for p in index.iterdir() if p.name.startswith(".tmp-")]
    assert leftovers == [], leftovers
    if proc.returncode == 0:  # Ray re-ran the lost blocks on the head node
        assert current_version(index) == 2 and snapshot_dirs(index) == ["v000001", "v000002"]
        after = vectors_by_id(index)
        texts = texts_by_id(corpus)
        assert sorted(after) == sorted(texts)
        embedded = [rid for rid in texts if rid not in before or rid in revised]
        assert len(embedded) == 100
        local = dict(zip(embedded, fp32_embedder.encode([texts[r] for r in embedded]),
                         strict=True))
        assert cosines(local, after).min() >= MIN_COSINE
        assert all(np.array_equal(before[r], after[r]) for r in before if r not in local)
    else:
        assert proc.returncode == 1, err
        assert err.strip().splitlines()[-1].startswith("Error: "), err
        assert current_version(index) == 1 and snapshot_dirs(index) == ["v000001"]
        assert vectors_by_id(index).keys() == before.keys()
        queries = fp32_embedder.encode(query_texts(5))
        assert all(len(hits) == 8 for hits in top_ids(index, queries))
    assert out == b"" or out.decode().startswith("updated v000002")
