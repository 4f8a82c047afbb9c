"""The model fingerprint covers every byte of the weights, and its cache is safe."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from lakevec.embed.models import (
    describe_model,
    fingerprint_cache_file,
    fingerprint_report,
    model_fingerprint,
)
from lakevec.errors import ModelLoadError
from lakevec.settings import CACHE_DIR_ENV

WEIGHTS = "model.safetensors"
SIZE = 4 << 20  # > 3 MiB: the old fingerprint read only its first and last MiB


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv(CACHE_DIR_ENV, str(path))
    return path


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """A fake sentence-transformers model directory with 4 MiB of 'weights'."""
    path = tmp_path / "fake-model"
    path.mkdir()
    (path / "modules.json").write_text("[]")
    (path / "config.json").write_text('{"hidden_size": 8}')
    (path / WEIGHTS).write_bytes(bytes(range(256)) * (SIZE // 256))
    (path / "README.md").write_text("docs")
    return path


def _flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_flipped_byte_in_the_middle_changes_the_fingerprint(
    model: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(model, copy)
    assert model_fingerprint(copy) == model_fingerprint(model)
    _flip_middle_byte(copy / WEIGHTS)
    fp = model_fingerprint(copy)
    assert re.fullmatch(r"[0-9a-f]{32}", fp)
    assert fp != model_fingerprint(model)


def test_digests_are_cached_and_invalidated_by_mtime(model: Path) -> None:
    first = fingerprint_report(model)
    assert (first.files, first.hashed) == (3, 3)  # README is not part of the model
    assert first.cache_file == fingerprint_cache_file(model) and first.cache_file.is_file()
    again = fingerprint_report(model)
    assert again.hashed == 0 and again.fingerprint == first.fingerprint

    st = (model / WEIGHTS).stat()
    os.utime(model / WEIGHTS, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    touched = fingerprint_report(model)
    assert touched.hashed == 1 and touched.fingerprint == first.fingerprint
    assert fingerprint_report(model).hashed == 0


def test_rewrite_that_restores_the_mtime_is_still_noticed(model: Path) -> None:
    """Same size, same mtime (as `cp -p` or rsync leave it): the ctime still changes."""
    before = fingerprint_report(model)
    st = (model / WEIGHTS).stat()
    _flip_middle_byte(model / WEIGHTS)
    os.utime(model / WEIGHTS, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = fingerprint_report(model)
    assert after.hashed == 1 and after.fingerprint != before.fingerprint


def test_readme_and_git_do_not_count(model: Path) -> None:
    fp = model_fingerprint(model)
    (model / "README.md").write_text("other docs")
    (model / ".git").mkdir()
    (model / ".git" / "HEAD").write_text("ref: x")
    assert model_fingerprint(model) == fp
    (model / "config.json").write_text('{"hidden_size": 9}')
    assert model_fingerprint(model) != fp


@pytest.mark.parametrize(
    "garbage",
    [b"{not json", b"\xff\xfe", b"[]", b'{"format": 1, "files": []}',
     b'{"format": 1, "files": {"x": {"size": "1"}}}'],
)
def test_a_corrupt_cache_is_ignored_and_rewritten(model: Path, garbage: bytes) -> None:
    fp = fingerprint_report(model)
    assert fp.cache_file is not None
    fp.cache_file.write_bytes(garbage)
    redo = fingerprint_report(model)
    assert redo.fingerprint == fp.fingerprint and redo.hashed == 3
    assert json.loads(fp.cache_file.read_bytes())["format"] == 1
    assert fingerprint_report(model).hashed == 0


def test_a_cache_entry_for_other_content_is_not_trusted(model: Path) -> None:
    """An entry whose stat no longer matches is re-read, whatever digest it holds."""
    fp = fingerprint_report(model)
    assert fp.cache_file is not None
    data = json.loads(fp.cache_file.read_bytes())
    for entry in data["files"].values():
        entry["sha256"] = "0" * 64
        entry["size"] += 1
    fp.cache_file.write_text(json.dumps(data))
    redo = fingerprint_report(model)
    assert redo.fingerprint == fp.fingerprint and redo.hashed == 3


def test_an_unwritable_cache_dir_means_no_cache(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    want = model_fingerprint(model)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv(CACHE_DIR_ENV, str(blocker / "cache"))
    report = fingerprint_report(model)
    assert report.fingerprint == want and report.cache_file is None and report.hashed == 3
    assert fingerprint_report(model).hashed == 3


def test_describe_model_uses_the_full_fingerprint(model: Path) -> None:
    ref = describe_model(str(model))
    assert ref.fingerprint == model_fingerprint(model) and ref.model_id == "fake-model"
    assert describe_model("hash:16").spec == "hash:16"


def test_empty_model_dir_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="empty"):
        model_fingerprint(tmp_path / "empty")
