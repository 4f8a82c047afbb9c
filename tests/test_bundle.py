"""Context bundle and prompt: parity with the seed's algorithm on hand-computed cases."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from lakevec.corpus import PlaybookRecord, read_corpus
from lakevec.index.snapshot import IndexSnapshot
from lakevec.replay.bundle import (
    build_bundle_from_hits,
    build_context_bundle,
    extract_validation_steps,
)
from lakevec.replay.jsstr import js_len, js_slice, js_to_well_formed, js_trim
from lakevec.replay.prompt import SYSTEM_PROMPT, build_prompt
from lakevec.retrieval.base import Hit
from lakevec.retrieval.filters import SearchFilters
from lakevec.retrieval.jaccard import JaccardRetriever


def rec(rid: str, title: str, content: str, score: str = "accepted", **kw: Any) -> PlaybookRecord:
    return PlaybookRecord(
        id=rid, title=title, content=content, success_score=score,
        source_run_id=kw.pop("source_run_id", f"run-{rid}"), **kw,
    )


class FakeRetriever:
    """Returns fixed hits, ignoring k, so the bundle's own truncation is exercised."""

    name = "fake"
    last_strategy = "fake"

    def __init__(self, hits: list[Hit]) -> None:
        self.snapshot: IndexSnapshot | None = None
        self.corpus: Sequence[PlaybookRecord] | None = None
        self.hits = hits
        self.queries: list[tuple[str, int, SearchFilters | None]] = []

    def search(self, query: str, k: int, *, filters: SearchFilters | None = None) -> list[Hit]:
        self.queries.append((query, k, filters))
        return list(self.hits)

    def search_many(
        self, queries: Sequence[str], k: int, *, filters: SearchFilters | None = None
    ) -> list[list[Hit]]:
        return [self.search(q, k, filters=filters) for q in queries]

    def close(self) -> None:
        pass


# Task tokens: {verify, gateway, routing, table} (4).
TASK = "verify gateway routing table"
# Corpus order deliberately differs from rank order (see the step test).
R4 = rec("r4", "Table", "Check the table")  # {table, check, the}: 1/(4+3-1) = 1/6
R2 = rec("r2", "Routing notes", "old notes!", "partially_accepted", tags=["gateway"])
#   {routing, notes, old, gateway}: 2/(4+4-2) = 1/3
R3 = rec("r3", "Unrelated", "nothing here")  # no overlap: 0, dropped
R1 = rec("r1", "Gateway routing", "- verify routing table entries")
#   {gateway, routing, verify, table, entries}: 4/(4+5-4) = 4/5
R5 = rec("r5", "ab cd", "x y")  # no token of 3+ chars at all: 0
CORPUS = [R4, R2, R3, R1, R5]


def test_hand_computed_jaccard_bundle_matches_the_seed() -> None:
    bundle = build_context_bundle(JaccardRetriever(CORPUS), TASK)

    assert [a.rag_id for a in bundle.retrieved_playbooks] == ["r1", "r2", "r4"]
    assert [a.score for a in bundle.retrieved_playbooks] == [4 / 5, 1 / 3, 1 / 6]
    assert [a.rag_id for a in bundle.prior_successful_outputs] == ["r1", "r4"]
    assert [a.rag_id for a in bundle.failure_patterns] == ["r2"]
    # The seed walks the corpus (r4 before r1), not the ranking, for steps.
    assert bundle.validation_steps == ["Check the table", "- verify routing table entries"]
    # previews+titles: r1 30+15, r4 15+5, r2 10+13; steps 15+30 → 133 chars → ceil(33.25)
    assert bundle.bundle_token_estimate == 34
    art = bundle.retrieved_playbooks[1]
    assert art.model_dump() == {
        "rag_id": "r2", "source_run_id": "run-r2", "title": "Routing notes",
        "content_preview": "old notes!", "success_score": "partially_accepted",
        "tags": ["gateway"], "score": 1 / 3,
    }


def test_prompt_has_the_seed_sections_and_wording() -> None:
    bundle = build_context_bundle(JaccardRetriever(CORPUS), TASK)
    prompt = build_prompt(TASK, bundle)
    assert prompt.system == (
        "You are a Lakehouse task executor. Stay grounded — only assert what you can derive "
        "from the prior successful patterns or the task itself. Do NOT hedge. Do NOT say "
        "'as an AI'. Produce a concrete actionable answer. When prior successful outputs are "
        "provided, follow their style and format."
    )
    assert prompt.user == "\n".join([
        "## Prior successful runs on similar tasks",
        "",
        "### Gateway routing (score: accepted)",
        "- verify routing table entries",
        "",
        "### Table (score: accepted)",
        "Check the table",
        "",
        "## Patterns that produced PARTIAL results — avoid these failure modes",
        "",
        "- Routing notes: old notes!",
        "",
        "## Validation checklist (from accepted runs)",
        "- Check the table",
        "- - verify routing table entries",
        "",
        "## Task",
        TASK,
        "",
        "Produce the answer following the style of the prior successful runs above.",
    ])


def test_prompt_without_bundle_and_with_an_empty_bundle() -> None:
    baseline = build_prompt("do it", None)
    assert baseline.system == SYSTEM_PROMPT
    assert baseline.user == "Task: do it\n\nProduce the answer."
    empty = build_context_bundle(JaccardRetriever(CORPUS), "zzz qqq")
    assert empty.retrieved_playbooks == [] and empty.bundle_token_estimate == 0
    assert build_prompt("zzz qqq", empty).user == (
        "## Task\nzzz qqq\n\n"
        "Produce the answer following the style of the prior successful runs above."
    )


def test_warning_preview_is_cut_to_160_chars_in_the_prompt() -> None:
    long = rec("p", "Partial", "w" * 300, "partially_accepted")
    bundle = build_bundle_from_hits([Hit(long, 0.5)])
    assert len(bundle.failure_patterns[0].content_preview) == 240
    assert "- Partial: " + "w" * 160 + "\n" in build_prompt("t", bundle).user


def test_ties_keep_corpus_order_and_top_k_is_taken_before_dropping_zeros() -> None:
    # 10 records with the same single-token overlap: score 1/(1+2-1) = 1/2 each.
    same = [rec(f"t{i}", "alpha", f"beta{i}") for i in range(10)]
    bundle = build_context_bundle(JaccardRetriever(same), "alpha")
    assert [a.rag_id for a in bundle.retrieved_playbooks] == [f"t{i}" for i in range(8)]
    assert {a.score for a in bundle.retrieved_playbooks} == {0.5}


def test_non_positive_scores_and_hits_beyond_k_are_dropped() -> None:
    hits = [
        Hit(rec("a", "A", "x"), 0.9),
        Hit(rec("b", "B", "x"), 0.0),
        Hit(rec("c", "C", "x"), -0.2),
        Hit(rec("d", "D", "x"), 0.4),
    ]
    fake = FakeRetriever(hits)
    bundle = build_context_bundle(fake, "q", k=2)
    assert fake.queries == [("q", 2, None)]  # no filters: the seed has none
    assert [a.rag_id for a in bundle.retrieved_playbooks] == ["a"]


def test_at_most_three_exemplars_and_two_warnings_in_rank_order() -> None:
    hits = [Hit(rec(f"a{i}", f"A{i}", "text"), 1 - i / 10) for i in range(4)]
    hits += [Hit(rec(f"p{i}", f"P{i}", "text", "partially_accepted"), 0.3 - i / 100)
             for i in range(3)]
    hits.insert(1, Hit(rec("n", "N", "text", "needs_review"), 0.95))
    hits.append(Hit(rec("late", "L", "text"), 0.1))  # 9th: beyond the top 8
    bundle = build_bundle_from_hits(hits)
    assert [a.rag_id for a in bundle.retrieved_playbooks] == [
        "a0", "n", "a1", "a2", "a3", "p0", "p1", "p2"
    ]
    assert [a.rag_id for a in bundle.prior_successful_outputs] == ["a0", "a1", "a2"]
    assert [a.rag_id for a in bundle.failure_patterns] == ["p0", "p1"]


def test_steps_come_from_full_content_and_are_capped() -> None:
    tail = "\n".join(f"- ensure item {i} " + "z" * 250 for i in range(5))
    first = rec("a", "A", "p" * 300 + "\n" + tail)
    second = rec("b", "B", "verify b one\nverify b two\nverify b three")
    bundle = build_bundle_from_hits([Hit(first, 0.9), Hit(second, 0.8)])
    assert bundle.prior_successful_outputs[0].content_preview == "p" * 240
    steps = bundle.validation_steps
    assert len(steps) == 6
    assert [len(s) for s in steps[:5]] == [200] * 5
    assert steps[0].startswith("- ensure item 0 ")
    assert steps[5] == "verify b one"
    # previews+titles: a 240+1, b 40+1; steps 5*200 + 12 → 1294 chars → ceil(323.5)
    assert bundle.bundle_token_estimate == 324


@pytest.mark.parametrize(
    ("line", "is_step"),
    [
        ("- verify the table", True),
        ("* Check: the table", True),  # bullet form needs only a word boundary
        ("-verify", True),
        ("  Ensure x  ", True),  # lines are trimmed first
        ("CONFIRM it", True),
        ("assert\tx", True),
        ("- verifyé x", True),  # JS \b is ASCII: é is not a word char
        ("verify: x", False),  # bare form needs whitespace after the keyword
        ("verifying x", False),
        ("- checking x", False),
        ("• verify x", False),
        ("please verify x", False),
        ("- \u212aheck", False),  # KELVIN SIGN does not fold to k in JS /i
        ("verify", False),  # bare form: nothing after the keyword
    ],
)
def test_step_line_patterns(line: str, is_step: bool) -> None:
    steps = extract_validation_steps([rec("a", "A", line)])
    assert steps == ([js_trim(line)] if is_step else [])


def test_js_trim_uses_ecmascript_whitespace() -> None:
    assert js_trim("\ufeff\u00a0 x \u3000\n") == "x"
    assert js_trim("\x1cx") == "\x1cx"  # str.strip() would remove U+001C; JS trim does not


def test_numpy_like_scores_become_floats() -> None:
    class Score(float):
        pass

    bundle = build_bundle_from_hits([Hit(rec("a", "A", "x"), Score(0.25))])
    assert type(bundle.retrieved_playbooks[0].score) is float


def test_js_string_semantics_count_utf16_units() -> None:
    assert js_len("abc") == 3 and js_len("é") == 1 and js_len("😀") == 2
    assert js_slice("😀" * 3, 4) == "😀😀"
    # A cut through a surrogate pair drops the half character (JS would keep it).
    assert js_slice("a😀b", 2) == "a"
    assert js_slice("héllo", 2) == "hé" and js_slice("x", 0) == ""


def test_js_to_well_formed_replaces_lone_surrogates_only() -> None:
    assert js_to_well_formed("a\ud800b\udfff") == "a\ufffdb\ufffd"
    assert js_to_well_formed("ok 😀 é") == "ok 😀 é"


def test_astral_content_preview_uses_utf16_units() -> None:
    rec = PlaybookRecord(id="e", title="t", content="😀" * 200, success_score="accepted")
    bundle = build_bundle_from_hits([Hit(rec, 0.5)])
    assert bundle.prior_successful_outputs[0].content_preview == "😀" * 120


def test_duplicate_ids_follow_the_seed_scan(tmp_path: Path) -> None:
    """The seed keeps every corpus line: both copies of a repeated id are retrieved,
    and checklist steps come from every line with an accepted id, in file order."""

    def line(rid: str, content: str) -> str:
        return json.dumps({
            "id": rid, "title": "audit gateway routing", "content": content, "tags": ["ops"],
            "source_run_id": f"run-{rid}", "success_score": "accepted", "source_category": "ops",
        })

    path = tmp_path / "c.jsonl"
    path.write_text(
        "\n".join([line("A", "- verify first A"), line("B", "- check B"),
                   line("A", "- ensure second A")]) + "\n",
        encoding="utf-8",
    )
    retriever = JaccardRetriever(read_corpus(path).rows)
    assert retriever.corpus is not None and len(retriever.corpus) == 3
    bundle = build_context_bundle(retriever, "audit gateway routing")
    # Task tokens {audit, gateway, routing}. B's text tokens are those + {check, ops}
    # → 3/5; each A line adds two 3+-char words + "ops" → 3/6. Stable order for ties.
    assert [(a.rag_id, a.score) for a in bundle.retrieved_playbooks] == [
        ("B", 0.6),
        ("A", 0.5),
        ("A", 0.5),
    ]
    assert bundle.validation_steps == ["- verify first A", "- check B", "- ensure second A"]
