"""Lint: every problem with file, line, column, field path and a fix hint (F-001, NF-015)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from rspp.spec import LintIssue, SpecInvalid, lint_text, parse_spec_text

pytestmark = pytest.mark.unit

GOOD = textwrap.dedent(
    """\
    name: ok
    version: 1.0.0
    nodes:
      - id: stt
        type: stt
      - id: tts
        type: tts
    edges:
      - {from: input.audio, to: stt.audio}
      - {from: stt.final, to: tts.text}
      - {from: tts.audio, to: output.audio}
    """
)


def _by_message(issues: list[LintIssue], fragment: str) -> LintIssue:
    found = [i for i in issues if fragment in i.message]
    assert found, f"no issue containing {fragment!r} in {[i.message for i in issues]}"
    return found[0]


def test_valid_spec_is_clean_in_strict_mode() -> None:
    assert lint_text(GOOD, "good.yaml", strict=True) == []
    spec = parse_spec_text(GOOD, "good.yaml")
    assert [n.id for n in spec.nodes] == ["stt", "tts"]


def test_done_when_fixture_reports_each_problem_with_line_and_hint(fixtures_dir: Path) -> None:
    path = fixtures_dir / "broken.yaml"
    issues = lint_text(path.read_text(), str(path), strict=True)
    unknown = _by_message(issues, "unknown field 'colour'")
    dangling = _by_message(issues, "dangling edge")
    incompatible = _by_message(issues, "incompatible edge")
    cycle = _by_message(issues, "cycle:")
    assert (unknown.line, unknown.col, unknown.path) == (4, 1, "colour")
    assert (dangling.line, dangling.path) == (16, "edges[1].to")
    assert (incompatible.line, incompatible.path) == (17, "edges[2]")
    assert "audio" in incompatible.message and "text" in incompatible.message
    assert (cycle.line, cycle.path) == (20, "edges[5]")
    assert cycle.message == "cycle: a -> b -> a"
    for issue in (unknown, dangling, incompatible, cycle):
        assert issue.severity == "error"
        assert issue.hint and issue.file == str(path)
        assert issue.format().startswith(f"{path}:{issue.line}:{issue.col}: {issue.path}: ")
    assert "ghost" in dangling.message and "a, b, stt, tts" in dangling.hint


def test_unknown_key_is_warning_unless_strict() -> None:
    text = GOOD.replace("    type: stt\n", "    type: stt\n    colour: red\n", 1)
    loose = lint_text(text, "f.yaml")
    strict = lint_text(text, "f.yaml", strict=True)
    assert [(i.line, i.path, i.severity) for i in loose] == [(6, "nodes[0].colour", "warning")]
    assert [(i.line, i.path, i.severity) for i in strict] == [(6, "nodes[0].colour", "error")]
    assert "remove it" in strict[0].hint
    # non-strict parsing ignores the unknown field; strict parsing (publish) refuses it
    assert parse_spec_text(text).nodes[0].type == "stt"
    with pytest.raises(SpecInvalid) as refused:
        parse_spec_text(text, "f.yaml", strict=True)
    assert [(i.line, i.path) for i in refused.value.issues] == [(6, "nodes[0].colour")]
    assert parse_spec_text(GOOD, strict=True).nodes[0].type == "stt"


def test_typo_gets_did_you_mean_hint() -> None:
    text = GOOD.replace("    type: stt\n", "    typ: stt\n", 1)
    issues = lint_text(text, "f.yaml", strict=True)
    typo = _by_message(issues, "unknown field 'typ'")
    assert "did you mean 'type'" in typo.hint
    missing = _by_message(issues, "missing required field 'type'")
    assert missing.line == 4 and missing.path == "nodes[0]"


def test_unreachable_node_is_warning_and_error_in_strict() -> None:
    text = GOOD + "  - {from: input.text, to: output.echo}\n"
    text = text.replace("edges:", "  - id: orphan\n    type: redaction\nedges:")
    loose = lint_text(text, "f.yaml")
    issue = _by_message(loose, "unreachable")
    assert (issue.line, issue.path, issue.severity) == (8, "nodes[2].id", "warning")
    assert "orphan" in issue.hint
    strict = lint_text(text, "f.yaml", strict=True)
    assert _by_message(strict, "unreachable").severity == "error"


def test_bad_condition_names_the_expression() -> None:
    text = GOOD.replace(
        "  - {from: stt.final, to: tts.text}\n",
        "  - from: stt.final\n    to: tts.text\n    when: \"__import__('os').system('x')\"\n",
    )
    issues = lint_text(text, "f.yaml")
    issue = _by_message(issues, "invalid condition")
    assert (issue.line, issue.path) == (12, "edges[1].when")
    assert "__import__" in issue.message and "Call" in issue.message
    assert "comparisons" in issue.hint


def test_bad_yaml_becomes_an_issue_with_position() -> None:
    text = "name: x\nversion: 1.0.0\nnodes:\n  - id: a\n   type: b\n"
    issues = lint_text(text, "f.yaml")
    assert len(issues) == 1
    assert issues[0].line == 5 and "YAML syntax error" in issues[0].message
    with pytest.raises(SpecInvalid) as info:
        parse_spec_text(text, "f.yaml")
    assert info.value.issues[0].line == 5


def test_duplicate_key_is_reported() -> None:
    issues = lint_text("name: x\nname: y\nversion: 1.0.0\n", "f.yaml")
    assert issues and issues[0].line == 2 and "duplicate" in issues[0].message.lower()


def test_bad_types_and_enums_are_all_reported() -> None:
    text = GOOD.replace("    type: tts\n", "    type: tts\n    timeout_ms: fast\n"
                        "    cancel_mode: soft-ish\n    scope: 3\n")
    issues = lint_text(text, "f.yaml")
    by_path = {i.path: i for i in issues}
    assert by_path["nodes[1].timeout_ms"].line == 8
    assert "expected" in by_path["nodes[1].timeout_ms"].message
    assert by_path["nodes[1].cancel_mode"].line == 9
    assert "'soft'" in by_path["nodes[1].cancel_mode"].hint
    assert by_path["nodes[1].scope"].line == 10
    assert all(i.hint for i in issues)


def test_json_spec_is_accepted() -> None:
    text = (
        '{"name": "j", "version": "1.0.0", "nodes": [{"id": "t", "type": "tts"}],'
        ' "edges": [{"from": "input.text", "to": "t.text"},'
        ' {"from": "t.audio", "to": "output.audio"}]}'
    )
    assert lint_text(text, "spec.json", strict=True) == []


def test_self_referencing_alias_is_an_issue_not_a_recursion_error() -> None:
    text = "&doc [name, *doc]\n"  # used to raise RecursionError
    issues = lint_text(text, "f.yaml")
    assert [(i.path, i.line) for i in issues] == [("[1]", 1)]
    assert "alias refers to a collection that contains it" in issues[0].message
    assert issues[0].hint
    with pytest.raises(SpecInvalid, match=r"f\.yaml:1:\d+: \[1\]"):
        parse_spec_text(text, "f.yaml")


def test_alias_bomb_is_refused_with_a_bounded_expansion() -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for prev, cur in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 10) + "]")
    issues = lint_text("\n".join(lines) + "\n", "bomb.yaml")  # 10**9 values if expanded
    assert len(issues) == 1
    assert issues[0].message == "the document expands to more than 200000 values"
    assert "alias" in issues[0].hint


def test_non_mapping_document() -> None:
    issues = lint_text("- a\n- b\n", "f.yaml")
    assert issues[0].message == "the document is not a mapping"


def test_fan_in_without_merge_is_rejected() -> None:
    text = GOOD.replace(
        "  - {from: tts.audio, to: output.audio}\n",
        "  - {from: tts.audio, to: output.audio}\n  - {from: input.text, to: tts.text}\n",
    )
    issue = _by_message(lint_text(text, "f.yaml"), "accepts one")
    assert issue.line == 12 and "merge" in issue.hint


def test_unknown_port_and_type_hints_list_options() -> None:
    text = GOOD.replace("to: stt.audio", "to: stt.sound").replace("type: tts", "type: tts2")
    issues = lint_text(text, "f.yaml")
    port = _by_message(issues, "no input port 'sound'")
    assert "stt.audio (audio)" in port.hint and port.line == 9
    kind = _by_message(issues, "unknown node type 'tts2'")
    assert kind.path == "nodes[1].type" and "ports:" in kind.hint


def test_post_mvp_profile_is_rejected_with_diagnostic() -> None:
    text = "profile: balanced/v1\n" + GOOD
    issue = _by_message(lint_text(text, "f.yaml"), "post-MVP")
    assert (issue.line, issue.path) == (1, "profile")
    assert "simple/v1" in issue.hint
    issue = _by_message(lint_text("profile: turbo\n" + GOOD, "f.yaml"), "unknown execution")
    assert "simple/v1" in issue.hint


def test_example_specs_lint_clean_in_strict(repo_root: Path) -> None:
    examples = sorted((repo_root / "pipelines" / "examples").glob("*.yaml"))
    names = {p.name for p in examples}
    assert {"voice_assistant.yaml", "showcase.yaml"} <= names
    for path in examples:
        assert lint_text(path.read_text(), str(path), strict=True) == [], path
