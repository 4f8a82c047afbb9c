"""`lakevec build-index` / `lakevec search` through click's CliRunner: output and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from lakevec.cli import main
from lakevec.index.layout import current_snapshot_dir
from tests.conftest import record, write_jsonl

ROWS = [
    record(1, title="Rotate gateway API keys", content="Rotate the provider keys.\n- Verify keys"),
    record(2, title="Rebuild vector index", content="Rebuild the HNSW graph nightly."),
    record(3, title="Audit routing table", content="Check provider routing for drift."),
]


def run(*args: str, root: Path) -> Result:
    return CliRunner().invoke(main, ["--root", str(root), *args])


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write_jsonl(tmp_path / "exports" / "rag" / "playbooks.jsonl", ROWS)
    return tmp_path


def build(root: Path, *extra: str) -> Result:
    return run("build-index", "--model", "hash:64", "--quiet", *extra, root=root)


def test_build_then_search(root: Path) -> None:
    result = build(root)
    assert result.exit_code == 0, result.output
    assert "built v000001: 3 records" in result.stdout
    assert "records/s" in result.stdout and str(root / "index") in result.stdout
    found = run("search", "rebuild the hnsw graph", "-k", "2", root=root)
    assert found.exit_code == 0, found.output
    lines = found.stdout.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].split()[0] == "1" and "pb-0002" in lines[0]


def test_search_json(root: Path) -> None:
    build(root)
    found = run("search", "routing drift", "--json", "-k", "50", root=root)
    hits = json.loads(found.stdout)
    assert [h["rank"] for h in hits] == [1, 2, 3]  # k clamped to the 3 records
    assert hits[0]["id"] == "pb-0003"
    assert set(hits[0]) == {
        "rank", "id", "score", "title", "success_score", "source_category", "tags"
    }


def test_build_json_summary_and_noop(root: Path) -> None:
    first = json.loads(build(root, "--json").stdout)
    assert first["records"] == 3 and first["changed"] is True and first["skipped"] == 0
    second = build(root, "--json")
    assert json.loads(second.stdout)["changed"] is False
    assert "up to date" in build(root).stdout


def test_root_from_environment(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LH_DISTILL_ROOT", str(root))
    result = CliRunner().invoke(main, ["build-index", "--model", "hash:64", "--quiet"])
    assert result.exit_code == 0, result.output
    assert (root / "index" / "CURRENT").is_file()


def test_malformed_line_is_skipped_with_warning(root: Path) -> None:
    corpus = root / "exports" / "rag" / "playbooks.jsonl"
    corpus.write_text(corpus.read_text() + "{broken\n")
    result = run("build-index", "--model", "hash:64", "--json", root=root)
    assert result.exit_code == 0
    assert json.loads(result.stdout)["skipped"] == 1
    assert "line 4: malformed JSON" in result.stderr
    strict = run("build-index", "--model", "hash:64", "--strict", "--full", root=root)
    assert strict.exit_code == 1
    assert "line 4: malformed JSON" in strict.stderr and "--strict" in strict.stderr


def _one_line_error(result: Result, code: int, needle: str) -> None:
    assert result.exit_code == code, result.output
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.startswith("Error")]
    assert len(lines) == 1 and needle in lines[0], result.stderr


def test_missing_index(root: Path) -> None:
    _one_line_error(run("search", "x", root=root), 1, "run `lakevec build-index` first")


def test_missing_corpus(tmp_path: Path) -> None:
    _one_line_error(build(tmp_path), 1, "corpus file not found")


def test_corrupted_index(root: Path) -> None:
    build(root)
    graph = current_snapshot_dir(root / "index") / "hnsw.bin"
    graph.write_bytes(graph.read_bytes()[:-10])
    _one_line_error(run("search", "x", root=root), 1, "truncated or corrupted")


def test_mismatched_model(root: Path) -> None:
    build(root)
    _one_line_error(run("search", "x", "--model", "hash:32", root=root), 1, "built with model")


def test_model_directory_that_does_not_exist(root: Path) -> None:
    result = run("build-index", "--model", str(root / "no-model"), root=root)
    _one_line_error(result, 1, "model directory not found")


def test_usage_errors_exit_2(root: Path) -> None:
    build(root)
    assert run("search", "   ", root=root).exit_code == 2
    assert run("search", "x", "-k", "0", root=root).exit_code == 2
    assert run("build-index", "--format", "csv", root=root).exit_code == 2
    assert run("build-index", "--model", "hash:abc", root=root).exit_code == 2


def test_every_option_has_help() -> None:
    for command in main.commands.values():
        for param in command.params:
            if param.param_type_name == "option":
                assert getattr(param, "help", None), f"{command.name} {param.name} lacks help"


def test_hnsw_flags_override_only_what_is_given(root: Path) -> None:
    from lakevec.index.snapshot import open_index

    assert build(root, "--m", "8", "--ef-construction", "40").exit_code == 0
    result = build(root, "--ef-search", "33")
    assert result.exit_code == 0, result.output
    with open_index(root / "index") as index:
        assert index.manifest.hnsw.model_dump() == {
            "M": 8, "ef_construction": 40, "ef_search": 33
        }
    # Changing the graph's shape on an existing index needs --full.
    assert build(root, "--m", "12").exit_code == 2
    assert build(root, "--m", "12", "--full").exit_code == 0


LONE_SURROGATE = '{"id": "pb-x", "title": "\\ud800", "content": "c", "success_score": "accepted"}'
TOO_DEEP = '{"id": "pb-y", "x": ' + "[" * 150 + "]" * 150 + ', "title": "t", "content": "c", ' \
    '"success_score": "accepted"}'


def test_build_warns_about_every_skipped_line(root: Path) -> None:
    corpus = root / "exports" / "rag" / "playbooks.jsonl"
    corpus.write_text(corpus.read_text() + LONE_SURROGATE + "\n" + TOO_DEEP + "\n")
    result = run("build-index", "--model", "hash:64", "--json", root=root)
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    warning = [ln for ln in lines if ln.startswith("warning: ")]
    assert len(warning) == 1
    assert warning[0].startswith("warning: skipped 2 bad corpus line(s): line 4: contains a lone "
                                 "surrogate")
    assert "; line 5: nested too deeply" in warning[0]
    skipped = json.loads(result.stdout)["skipped_lines"]
    assert [s["line"] for s in skipped] == [4, 5]
    assert "lone surrogate" in skipped[0]["reason"] and "nested too deeply" in skipped[1]["reason"]
    # Every build says so again (unlike reindex, which reports a bad line once)...
    again = run("build-index", "--model", "hash:64", root=root)
    assert "up to date" in again.stdout and "skipped 2 bad corpus line(s)" in again.stderr
    # ...unless asked to be quiet.
    quiet = build(root, "--json")
    assert quiet.stderr == "" and len(json.loads(quiet.stdout)["skipped_lines"]) == 2


def test_build_warning_quotes_the_first_lines_only(root: Path) -> None:
    corpus = root / "exports" / "rag" / "playbooks.jsonl"
    corpus.write_text(corpus.read_text() + "{broken\n" * 5)
    result = run("build-index", "--model", "hash:64", root=root)
    assert result.exit_code == 0, result.output
    warning = [ln for ln in result.stderr.splitlines() if ln.startswith("warning: ")]
    assert len(warning) == 1 and "skipped 5 bad corpus line(s)" in warning[0]
    assert "line 6:" in warning[0] and "line 7:" not in warning[0] and "(+2 more" in warning[0]


def test_build_repairs_a_damaged_live_snapshot(root: Path) -> None:
    assert build(root).exit_code == 0
    graph = current_snapshot_dir(root / "index") / "hnsw.bin"
    graph.write_bytes(graph.read_bytes()[:-10])
    result = build(root, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["repaired"]
    assert "failed verification" in result.stderr and "rebuilt" in result.stderr
    assert run("search", "rebuild the hnsw graph", root=root).exit_code == 0
