"""Hand-made fixtures: our validator and the reference schema (jsonschema) agree (F-020/F-025).

One valid fixture per control signal (owner emitter + the fields its rule requires), at
least one invalid fixture per signal rule and per decision-outcome rule, every legal turn
transition and several illegal ones, plan and envelope conditional rules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _contracts_support import (
    fixture_files,
    kind_of_fixture,
    load,
    reference_validator,
)

from rspp.contracts import SignalName, infer_kind, validate

pytestmark = pytest.mark.unit

VALID = fixture_files("valid")
INVALID = fixture_files("invalid")


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


@pytest.mark.parametrize("path", VALID, ids=_ids(VALID))
def test_valid_fixture_is_valid_for_us_and_reference(
    path: Path, reference_schema: dict[str, Any]
) -> None:
    kind, record = kind_of_fixture(path), load(path)
    assert reference_validator(reference_schema, kind).is_valid(record)
    assert validate(kind, record) == []
    assert infer_kind(record) == kind


@pytest.mark.parametrize("path", INVALID, ids=_ids(INVALID))
def test_invalid_fixture_is_invalid_for_us_and_reference(
    path: Path, reference_schema: dict[str, Any]
) -> None:
    kind, record = kind_of_fixture(path), load(path)
    assert not reference_validator(reference_schema, kind).is_valid(record)
    issues = validate(kind, record)
    assert issues, f"{path.name} should be invalid"
    rule = path.stem.rsplit("__", 1)[-1]
    paths = [i.path for i in issues]
    if rule.startswith("missing_"):
        field = rule.removeprefix("missing_")
        assert any(p.endswith(field) for p in paths), paths
        assert any("required" in i.message for i in issues)
    if rule == "wrong_emitter":
        assert "emitted_by" in paths


def test_every_signal_has_a_valid_and_an_invalid_fixture() -> None:
    valid = {p.stem.split("__")[1] for p in VALID if kind_of_fixture(p) == "control_signal"}
    broken = {p.stem.split("__")[1] for p in INVALID if p.stem.count("__") == 2}
    every = {s.value for s in SignalName}
    assert valid == every
    assert every <= broken


def test_validation_collects_every_error_with_paths() -> None:
    record = load(next(p for p in VALID if p.stem == "control_signal__watermark"))
    record.pop("edge_id")
    record.pop("reason")
    record["emitted_by"] = "RK-14"
    record["runtime_sequence"] = -3
    record["media_time"] = {"sample_index": 1, "pts_ms": 2}
    paths = {i.path for i in validate("control_signal", record)}
    assert {"edge_id", "reason", "emitted_by", "runtime_sequence", "media_time"} <= paths


def test_nested_paths_name_the_map_key() -> None:
    plan = load(next(p for p in INVALID if "block_requires_max_block_time_ms" in p.stem))
    issues = validate("resolved_turn_plan", plan)
    assert [i.path for i in issues] == ["edge_buffer_policies.e1.max_block_time_ms"]
    bundle = load(next(p for p in INVALID if "nested_illegal_transition" in p.stem))
    assert validate("artifact_bundle", bundle)[0].path == "turn_transition"


def test_illegal_turn_transition_message_lists_legal_ones() -> None:
    record = load(next(p for p in INVALID if p.stem == "turn_transition__idle_commit"))
    (issue,) = validate("turn_transition", record)
    assert 'from_state="Idle"' in issue.message
    assert "(from_state=Active, trigger=commit|abort, to_state=Terminal)" in issue.message


def test_envelope_is_closed_and_says_where_bodies_go() -> None:
    record = load(next(p for p in INVALID if "closed_envelope_text_body" in p.stem))
    (issue,) = validate("control_signal", record)
    assert issue.path == "text"
    assert "beside the envelope" in issue.message


def test_non_object_input_is_an_issue_not_a_crash() -> None:
    for junk, got in ((None, "null"), (3, "integer"), ("x", "string"), ([1, 2], "array")):
        issues = validate("event_record", junk)
        assert issues[0].path == "<root>"
        assert issues[0].message.startswith(f"must be of type object, got {got}")
    issues = validate("event_record", {"a": object()})
    assert issues[0].path == "a" and "unknown field" in issues[0].message
    assert {"session_id", "event_id"} <= {i.path for i in issues}  # missing fields named
