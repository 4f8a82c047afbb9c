"""Shared fixtures: small corpora in tmp_path, the fake and the real embedder."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lakevec import settings
from lakevec.embed.base import Embedder
from lakevec.embed.hashing import HashEmbedder
from lakevec.embed.loader import load_embedder

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SAMPLE_CORPUS = REPO / "exports" / "rag" / "playbooks.jsonl"


def record(i: int | str, **overrides: Any) -> dict[str, Any]:
    """A valid playbook record with predictable text."""
    rid = i if isinstance(i, str) else f"pb-{i:04d}"
    base: dict[str, Any] = {
        "id": rid,
        "title": f"Playbook {rid}",
        "content": f"Steps for {rid}.\n- Verify the output of {rid}\n",
        "tags": ["ops"],
        "source_run_id": f"run-{rid}",
        "success_score": "accepted",
        "source_category": "ops",
    }
    base.update(overrides)
    return base


def write_jsonl(path: Path, rows: Iterable[dict[str, Any] | str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def make_corpus(tmp_path: Path) -> Callable[..., Path]:
    def make(rows: Iterable[dict[str, Any] | str], name: str = "playbooks.jsonl") -> Path:
        return write_jsonl(tmp_path / name, rows)

    return make


@pytest.fixture
def hash_embedder() -> HashEmbedder:
    return HashEmbedder(64)


@pytest.fixture(scope="session")
def real_embedder() -> Embedder:
    """The packaged all-MiniLM-L6-v2, loaded once per test session."""
    return load_embedder(None)


def shared_dataset(name: str) -> Path:
    """Path to a dataset under ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared/data is only beside the repo in CI/dev)")
    return path


@pytest.fixture(scope="session", autouse=True)
def _isolated_model_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep ONNX query-model exports (written by real-model builds) out of ~/.cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("LAKEVEC_CACHE_DIR", str(tmp_path_factory.mktemp("lakevec-cache")))
    yield
    mp.undo()


def tree_state(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and mtime (to prove nothing was written)."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def read_only_copy(tmp_path: Path) -> Iterator[Callable[[Path], Path]]:
    """Copy an index directory and expose the copy read-only.

    As root (CI) the copy is bind-mounted read-only, so any write fails with
    EROFS; elsewhere the copy's permissions are dropped. Either way the test
    should also compare :func:`tree_state` before and after.
    """
    import os
    import shutil
    import subprocess

    mounts: list[Path] = []
    copies: list[Path] = []

    def make(index_dir: Path) -> Path:
        n = len(copies)
        src = tmp_path / f"ro-src-{n}"
        shutil.copytree(index_dir, src)
        copies.append(src)
        target = tmp_path / f"ro-index-{n}"
        target.mkdir()
        if os.geteuid() == 0:
            subprocess.run(["mount", "--bind", str(src), str(target)], check=True)
            mounts.append(target)
            subprocess.run(["mount", "-o", "remount,ro,bind", str(target)], check=True)
            return target
        target.rmdir()
        src.rename(target)
        for p in [target, *target.rglob("*")]:
            p.chmod(p.stat().st_mode & ~0o222)
        copies[-1] = target
        return target

    yield make
    for target in reversed(mounts):
        # A busy mount (a test still holding a file) is detached lazily rather
        # than left behind to break pytest's temp-dir cleanup.
        if subprocess.run(["umount", str(target)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(target)], check=True)
    for path in copies:
        for p in [path, *path.rglob("*")]:
            if p.exists() and not p.is_symlink():
                p.chmod(p.stat().st_mode | 0o200)


#: Variables that would point replay / ab / loop tests at the user's gateway, models,
#: corpus or threads; tests that use :func:`clean_replay_env` never see them.
REPLAY_ENV = (
    settings.ROOT_ENV, settings.GATEWAY_ENV, settings.LOCAL_MODEL_ENV,
    settings.ESCALATION_MODEL_ENV, settings.API_KEY_ENV, settings.LOCAL_GGUF_ENV,
    settings.LOCAL_THREADS_ENV,
)


@pytest.fixture
def clean_replay_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in REPLAY_ENV:
        monkeypatch.delenv(name, raising=False)
