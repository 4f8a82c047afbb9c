"""No leftovers: temp dirs of an ONNX export killed mid-way are removed by the next build."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from lakevec.embed.leftovers import pid_alive, remove_stale_exports
from lakevec.embed.onnx import ExportInfo, export_dir, exports_root
from lakevec.embed.onnx_export import ensure_export
from lakevec.embed.sentence import SentenceTransformerEmbedder
from lakevec.settings import CACHE_DIR_ENV


def _dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _leftover(root: Path, pid: int, rand: str = "0badc0de") -> Path:
    path = root / f".tmp-{pid}-{rand}"
    path.mkdir(parents=True)
    (path / "model.onnx").write_bytes(b"half an export")
    return path


def test_pid_alive() -> None:
    assert pid_alive(os.getpid())
    assert not pid_alive(_dead_pid())
    assert pid_alive(1)  # exists (init), whoever owns it


def test_removes_dead_processes_temp_dirs_only(tmp_path: Path) -> None:
    dead = _leftover(tmp_path, _dead_pid())
    live = _leftover(tmp_path, os.getpid())
    export = tmp_path / "0123456789abcdef0123456789abcdef"
    export.mkdir()
    odd = [tmp_path / ".tmp-notapid-00", tmp_path / ".tmp-12-xyz"]
    for path in odd:
        path.mkdir()
    stray_file = tmp_path / f".tmp-{_dead_pid()}-00ff"
    stray_file.write_bytes(b"")

    assert remove_stale_exports(tmp_path) == [dead]
    assert not dead.exists()
    assert (live / "model.onnx").is_file()  # an export in progress is never touched
    assert export.is_dir() and all(p.is_dir() for p in odd) and stray_file.is_file()
    assert remove_stale_exports(tmp_path) == []
    assert remove_stale_exports(tmp_path / "missing") == []


def test_ensure_export_cleans_up_before_reusing_an_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The next build removes the leftovers even when nothing needs exporting."""
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path))
    emb = SentenceTransformerEmbedder(precision="fp32")  # weights are not loaded
    target = export_dir(emb.fingerprint)
    target.mkdir(parents=True)
    (target / "model.onnx").write_bytes(b"graph")
    (target / "tokenizer.json").write_text("{}")
    info = ExportInfo(
        fingerprint=emb.fingerprint, model_id=emb.model_id, dimension=384, max_seq_length=256,
        lowercase=True, pooling="mean", normalize=True, onnx_bytes=5, min_cosine=1.0,
        verified_texts=1, opset=17, torch="test", onnxruntime="test", created_at=0.0,
    )
    (target / "export.json").write_text(info.model_dump_json())
    dead = _leftover(exports_root(), _dead_pid())
    live = _leftover(exports_root(), os.getpid())

    assert " (cached);" in ensure_export(emb)
    assert not dead.exists() and live.is_dir() and target.is_dir()
    assert not emb.loaded
