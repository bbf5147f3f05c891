"""``lint_text`` never raises for bad input, whatever the damage to a valid spec."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rspp.spec import lint_text

pytestmark = pytest.mark.unit

SHOWCASE = (
    Path(__file__).resolve().parents[3] / "pipelines" / "examples" / "showcase.yaml"
).read_text()
LINES = SHOWCASE.splitlines()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    drops=st.sets(st.integers(0, len(LINES) - 1), max_size=6),
    junk=st.lists(st.tuples(st.integers(0, len(LINES)), st.sampled_from(
        ["  - 3", "nodes: 7", "edges: {a: 1}", "  - {from: x, to: y}", "\t:", "- [", "when: )",
         "  - id: vad\n    type: vad", "subgraphs: [{id: s, use: nope@1}]", "version: 2.0"])),
        max_size=3),
)
def test_mutated_spec_yields_issues_not_exceptions(
    drops: set[int], junk: list[tuple[int, str]]
) -> None:
    lines = [line for i, line in enumerate(LINES) if i not in drops]
    for index, text in junk:
        lines.insert(min(index, len(lines)), text)
    issues = lint_text("\n".join(lines), "fuzz.yaml", strict=True)
    for issue in issues:
        assert issue.line >= 1 and issue.col >= 1 and issue.hint and issue.message


@pytest.mark.parametrize(
    "text",
    ["", "null", "42", "- a", "name: [1]\nversion: {}", "nodes: [1, 2]\nedges: 3",
     "name: a\nversion: '1'\nnodes: [{id: A, type: stt}]\nedges: [{from: nodot, to: x.y}]",
     "name: a\nversion: '1'\nsubgraphs: [{id: s, use: s@1, params: {q: 1}}]"],
)
def test_degenerate_documents(text: str) -> None:
    issues = lint_text(text, "d.yaml")
    assert issues and all(i.severity == "error" for i in issues if "unknown" not in i.message)
