"""Schema compatibility classification (F-028, NF-010) on the real reference schema."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from rspp.contracts import all_schemas, compare_schemas, json_schema

pytestmark = pytest.mark.unit


def _defs(schema: dict[str, Any]) -> dict[str, Any]:
    defs: dict[str, Any] = schema["$defs"]
    return defs


def test_identical_schema(reference_schema: dict[str, Any]) -> None:
    report = compare_schemas(reference_schema, copy.deepcopy(reference_schema))
    assert report.verdict == "identical" and report.changes == ()


def test_new_optional_field_and_enum_value_are_additive(reference_schema: dict[str, Any]) -> None:
    new = copy.deepcopy(reference_schema)
    _defs(new)["event_envelope"]["properties"]["trace_id"] = {"type": "string", "minLength": 1}
    _defs(new)["payload_class"]["enum"].append("biometric")
    report = compare_schemas(reference_schema, new)
    assert report.verdict == "additive"
    assert {(c.path, c.kind) for c in report.changes} == {
        ("$defs/event_envelope.trace_id", "additive"),
        ("$defs/payload_class", "additive"),
    }


@pytest.mark.parametrize(
    ("mutate", "path", "words"),
    [
        (
            lambda d: d["event_envelope"]["properties"].pop("lease_token"),
            "$defs/event_envelope.lease_token",
            "removed",
        ),
        (
            lambda d: d["decision_outcome"]["required"].append("turn_id"),
            "$defs/decision_outcome.turn_id",
            "now required",
        ),
        (
            lambda d: (
                d["decision_outcome"]["properties"].update(priority={"type": "integer"})
                or d["decision_outcome"]["required"].append("priority")
            ),
            "$defs/decision_outcome.priority",
            "new required field",
        ),
        (lambda d: d["lane"]["enum"].remove("TelemetryLane"), "$defs/lane", "removed"),
        (
            lambda d: d["turn_transition"]["properties"]["deterministic"].update(const=False),
            "$defs/turn_transition.deterministic",
            "const changed",
        ),
        (
            lambda d: d["event_envelope"]["properties"]["transport_sequence"].update(
                type="integer"
            ),
            "$defs/event_envelope.transport_sequence",
            "narrowed",
        ),
        (
            lambda d: d["seq_range"]["properties"]["start"].update(minimum=1),
            "$defs/seq_range.start",
            "tightened",
        ),
        (
            lambda d: d["control_signal"]["allOf"].append({"required": ["reason"]}),
            "$defs/control_signal/allOf[23]",
            "added",
        ),
        (
            lambda d: d["resolved_turn_plan"]["properties"]["plan_hash"].update(
                pattern="^[a-f0-9]{64}$"
            ),
            "$defs/resolved_turn_plan.plan_hash",
            "pattern changed",
        ),
    ],
    ids=[
        "removed_field",
        "newly_required",
        "new_required_field",
        "enum_narrowed",
        "const_changed",
        "type_narrowed",
        "bound_tightened",
        "new_rule",
        "pattern_changed",
    ],
)
def test_breaking_changes_are_listed_with_their_path(
    reference_schema: dict[str, Any], mutate: Any, path: str, words: str
) -> None:
    new = copy.deepcopy(reference_schema)
    mutate(_defs(new))
    report = compare_schemas(reference_schema, new)
    assert report.verdict == "breaking"
    assert any(c.path == path and words in c.message for c in report.breaking), report.changes


def test_relaxing_is_additive(reference_schema: dict[str, Any]) -> None:
    new = copy.deepcopy(reference_schema)
    _defs(new)["decision_outcome"]["required"].remove("reason")
    _defs(new)["event_envelope"]["properties"]["merged_from_event_ids"]["maxItems"] = 128
    assert compare_schemas(reference_schema, new).verdict == "additive"


def test_our_exported_schema_compares_with_itself() -> None:
    assert compare_schemas(all_schemas(), all_schemas()).verdict == "identical"
    old = json_schema("decision_outcome")
    new = copy.deepcopy(old)
    new["$defs"]["DecisionOutcome"]["required"].append("turn_id")
    assert compare_schemas(old, new).verdict == "breaking"
