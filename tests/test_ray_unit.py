"""``--ray`` without a cluster: block planning, addresses, error translation, the quiet
console, and the CLI's failure paths (missing Ray, unreachable cluster, nothing to do)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from lakevec.cli import main
from lakevec.embed.auto import AutoEmbedder
from lakevec.embed.hashing import HashEmbedder
from lakevec.embed.precision import resolve_precision
from lakevec.embed.ray_actor import backend_of, candidate_for
from lakevec.embed.ray_cluster import check_reachable, console_to, host_port
from lakevec.embed.ray_embed import RayEmbedder, RayOptions, plan_blocks, translate_failure
from lakevec.embed.sentence import SentenceTransformerEmbedder
from lakevec.errors import ClusterError, ModelMismatchError, UsageProblem
from lakevec.index.snapshot import open_index
from lakevec.settings import RAY_EXTRA_HINT, RAY_MAX_BATCHES_PER_BLOCK
from tests.conftest import record, write_jsonl


@pytest.mark.parametrize(("n", "batch", "actors"), [(1, 32, 4), (200, 32, 2), (1000, 8, 3),
                                                     (10_000, 32, 2), (7, 1, 100)])
def test_blocks_are_whole_batches_longest_first_covering_every_text(
    n: int, batch: int, actors: int
) -> None:
    texts = [("w " * ((i * 37) % 101)) for i in range(n)]
    blocks = plan_blocks(texts, batch, actors)
    flat = [int(i) for block in blocks for i in block]
    assert sorted(flat) == list(range(n))
    # A local build's order: stable sort by descending length.
    assert flat == sorted(range(n), key=lambda i: -len(texts[i]))
    sizes = [len(b) for b in blocks]
    assert all(s % batch == 0 and s <= batch * RAY_MAX_BATCHES_PER_BLOCK for s in sizes[:-1])
    assert len({*sizes[:-1]}) <= 1 and sizes[-1] <= sizes[0]
    if n >= batch * actors * 4:  # enough work: every actor gets several blocks
        assert len(blocks) >= actors * 4 or sizes[0] == batch


def test_bad_pool_sizes_are_usage_problems() -> None:
    with pytest.raises(UsageProblem):
        plan_blocks(["a"], 0, 1)
    with pytest.raises(UsageProblem):
        RayOptions(actors=0)


@pytest.mark.parametrize(("address", "expected"), [
    ("10.0.0.5:6379", ("10.0.0.5", 6379)),
    ("ray://head.internal:10001", ("head.internal", 10001)),
    ("[::1]:6379", ("::1", 6379)),
    ("auto", None),
    ("local", None),
    ("head:", None),
])
def test_host_port(address: str, expected: tuple[str, int] | None) -> None:
    assert host_port(address) == expected


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # nobody listens once the socket is closed


def test_unreachable_address_fails_fast_naming_the_fix() -> None:
    port = closed_port()
    with pytest.raises(ClusterError, match=rf"127.0.0.1:{port}.*ray start --head"):
        check_reachable(f"127.0.0.1:{port}", timeout=5)


def test_ray_embedder_has_the_local_models_identity() -> None:
    local = HashEmbedder(48)
    emb = RayEmbedder(local, RayOptions("10.0.0.1:6379", actors=3))
    assert (emb.spec, emb.model_id, emb.fingerprint) == (local.spec, local.model_id,
                                                        local.fingerprint)
    assert (emb.precision, emb.dimension, emb.backend) == ("na", 48, "hash")
    assert emb.candidate is None and emb.equivalence_cosine is None
    assert emb.encode([]).shape == (0, 48)


def test_the_driver_decides_the_one_backend_every_actor_uses() -> None:
    """--precision fp32|bf16 as given; int8 forced; auto as the driver's large-build
    choice (no calibration cached here: the CPU-flags rule), never measured."""
    st = SentenceTransformerEmbedder(precision="bf16")
    assert candidate_for(st) == "st-bf16"
    assert backend_of(st, "st-bf16") == ("sentence-transformers", "bf16")
    assert candidate_for(AutoEmbedder(force="onnx-int8")) == "onnx-int8"
    auto = AutoEmbedder()
    assert candidate_for(auto) == f"st-{resolve_precision('auto')}"
    emb = RayEmbedder(AutoEmbedder(force="onnx-int8"))
    assert (emb.backend, emb.precision) == ("onnx", "int8")
    assert candidate_for(HashEmbedder(8)) is None


def test_translate_failure_recovers_an_actors_refusal() -> None:
    remote = RuntimeError(
        "The actor died because of an error raised in its creation task\n"
        '  File "lakevec/embed/ray_embed.py", line 1, in __init__\n'
        "lakevec.errors.ModelMismatchError: node n1 (abc): model default there has "
        "fingerprint 1, the driver's has 2 — install the same model files on every node"
    )
    err = translate_failure(remote, "log")
    assert isinstance(err, ModelMismatchError)
    assert str(err).startswith("node n1 (abc): model default")

    class Dual(RuntimeError, ClusterError):  # how Ray re-raises a task's exception
        pass

    wrapped = Dual("ray::MapWorker() traceback ...")
    wrapped.cause = ClusterError("node n2 runs lakevec 0.0.1")  # type: ignore[attr-defined]
    assert str(translate_failure(wrapped, "log")) == "node n2 runs lakevec 0.0.1"

    other = translate_failure(TimeoutError("GCS lost\nmore"), Path("/x/driver-1.log"))
    assert isinstance(other, ClusterError)
    assert str(other) == ("distributed embedding on Ray failed: GCS lost (Ray's console "
                          "output: /x/driver-1.log)")


def test_console_to_catches_descriptor_and_python_writes(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "ray" / "driver.log"
    with console_to(log) as bar:
        os.write(1, b"c-level stdout\n")
        os.write(2, b"c-level stderr\n")
        print("python stdout")
        print("python stderr", file=sys.stderr)
        bar.write("progress bar\n")
    print("after")
    captured = capfd.readouterr()
    assert captured.out == "after\n"
    assert captured.err == "progress bar\n"
    text = log.read_text(encoding="utf-8")
    for line in ("c-level stdout", "c-level stderr", "python stdout", "python stderr"):
        assert line in text


# ─── the CLI without a cluster ───────────────────────────────────────────────


@pytest.fixture
def built(tmp_path: Path) -> Path:
    """A hash-model index (v1) of 20 records; the corpus sits beside it."""
    write_jsonl(tmp_path / "exports" / "rag" / "playbooks.jsonl", [record(i) for i in range(20)])
    result = CliRunner().invoke(
        main, ["--root", str(tmp_path), "build-index", "--model", "hash:64", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    return tmp_path


def change_corpus(root: Path) -> None:
    write_jsonl(root / "exports" / "rag" / "playbooks.jsonl", [record(i) for i in range(25)])


def assert_v1_live(root: Path) -> None:
    index = root / "index"
    assert sorted(p.name for p in (index / "snapshots").iterdir()) == ["v000001"]
    assert not [p for p in index.iterdir() if p.name.startswith(".tmp-")]
    with open_index(index) as snap:
        assert snap.manifest.version == 1 and len(snap) == 20
        rows, _ = snap.knn(HashEmbedder(64).encode(["Playbook pb-0003"]), 3)
        assert len(rows[0]) == 3


def test_ray_actors_needs_ray(built: Path) -> None:
    result = CliRunner().invoke(main, ["--root", str(built), "build-index", "--ray-actors", "2"])
    assert result.exit_code == 2 and "--ray-actors needs --ray" in result.output


def test_nothing_to_embed_never_contacts_the_cluster(built: Path) -> None:
    for command in ("build-index", "reindex"):
        result = CliRunner().invoke(
            main, ["--root", str(built), command, "--ray", f"127.0.0.1:{closed_port()}"]
        )
        assert result.exit_code == 0, result.output
    assert_v1_live(built)


@pytest.mark.parametrize("command", ["build-index", "reindex"])
def test_unreachable_cluster_is_exit_1_with_the_previous_snapshot_live(
    built: Path, command: str
) -> None:
    change_corpus(built)
    port = closed_port()
    result = CliRunner().invoke(main, ["--root", str(built), command, "--ray",
                                       f"127.0.0.1:{port}"])
    assert result.exit_code == 1, result.output
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port}" in result.stderr
    assert result.stdout == ""
    assert_v1_live(built)


def test_missing_ray_names_the_extra(built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    change_corpus(built)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    result = CliRunner().invoke(main, ["--root", str(built), "build-index", "--ray"])
    assert result.exit_code == 1, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: --ray needs Ray Data") and RAY_EXTRA_HINT in line
    assert_v1_live(built)
