"""Property test: on generated near-valid records our verdict equals the reference schema's.

Records are built from the valid fixtures and mutated (fields dropped, replaced by values
drawn from every enum of the schema, wrong types, unknown fields), and control signals
are also generated from scratch with random signal/emitter/scope/phase combinations.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from _contracts_support import fixture_files, kind_of_fixture, load, reference_validator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from rspp.cli import app
from rspp.contracts import (
    KINDS,
    ContractValidationError,
    Emitter,
    SignalName,
    decode_json,
    decode_msgpack,
    encode_json,
    encode_msgpack,
    from_builtins,
    infer_kind,
    is_valid,
    to_builtins,
    validate,
)

pytestmark = pytest.mark.unit

BASES: list[tuple[str, Any]] = [(kind_of_fixture(p), load(p)) for p in fixture_files("valid")]

ENUM_VALUES = [
    *(s.value for s in SignalName),
    *(e.value for e in Emitter),
    "session",
    "turn",
    "node",
    "provider_invocation",
    "tenant",
    "edge_enqueue",
    "edge_dequeue",
    "node_dispatch",
    "pre_turn",
    "scheduling_point",
    "active_turn",
    "admit",
    "reject",
    "defer",
    "shed",
    "stale_epoch_reject",
    "deauthorized_drain",
    "DataLane",
    "ControlLane",
    "TelemetryLane",
    "metadata",
    "audio_raw",
    "text_raw",
    "PII",
    "Idle",
    "Opening",
    "Active",
    "Terminal",
    "Closed",
    "block",
    "drop",
    "no_sync",
    "atomic_drop",
    "none",
    "v1.0",
    "1.0",
]
SCALARS = st.one_of(
    st.sampled_from(ENUM_VALUES),
    st.integers(min_value=-3, max_value=5),
    st.sampled_from(["", "x", None, True, False, 1.5, 2.0]),
    st.just([]),
    st.just({}),
    st.lists(st.sampled_from(["a", "b", "retry", "retry"]), max_size=3),
    st.fixed_dictionaries({"sample_index": st.integers(-1, 3)}),
    st.dictionaries(
        st.sampled_from(["sample_index", "pts_ms", "x"]), st.integers(-1, 3), max_size=2
    ),
)
FIELD_NAMES = [
    "signal",
    "emitted_by",
    "event_scope",
    "turn_id",
    "authority_epoch",
    "reason",
    "scope",
    "edge_id",
    "target_lane",
    "amount",
    "seq_range",
    "sync_domain",
    "discontinuity_id",
    "lane",
    "payload_class",
    "media_time",
    "merged_from_event_ids",
    "merge_group_id",
    "late_after_cancel",
    "phase",
    "outcome_kind",
    "from_state",
    "trigger",
    "to_state",
    "deterministic",
    "unknown_x",
]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_paths(item, (*prefix, index)))
    return found


def _donor_values() -> dict[str, list[Any]]:
    """Every value a field takes somewhere in the valid fixtures (benign replacements)."""
    donors: dict[str, list[Any]] = {}
    for _, base in BASES:
        for path in _paths(base):
            node = base
            for part in path:
                node = node[part]
            if isinstance(path[-1], str):
                donors.setdefault(path[-1], []).append(copy.deepcopy(node))
    return donors


DONORS = _donor_values()
SIGNAL_BASES = [rec for kind, rec in BASES if kind == "control_signal"]


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, Any]:
    kind, base = draw(st.sampled_from(BASES))
    record = copy.deepcopy(base)
    for _ in range(draw(st.integers(0, 2))):
        op = draw(st.sampled_from(["drop", "set", "donor", "donor", "set_named"]))
        paths = _paths(record)
        if op == "set_named":
            record[draw(st.sampled_from(FIELD_NAMES))] = draw(SCALARS)
            continue
        path = draw(st.sampled_from(paths))
        parent = record
        for part in path[:-1]:
            parent = parent[part]
        if op == "drop":
            parent.pop(path[-1])
        elif op == "donor" and isinstance(path[-1], str) and path[-1] in DONORS:
            parent[path[-1]] = copy.deepcopy(draw(st.sampled_from(DONORS[path[-1]])))
        else:
            parent[path[-1]] = draw(SCALARS)
    return draw(st.sampled_from([kind, kind, kind, infer_kind(record), *KINDS])), record


@st.composite
def random_signal(draw: st.DrawFn) -> dict[str, Any]:
    """A valid signal of a random kind with its owner, scope and fields perturbed."""
    record: dict[str, Any] = copy.deepcopy(draw(st.sampled_from(SIGNAL_BASES)))
    if draw(st.booleans()):
        record["emitted_by"] = draw(st.sampled_from([e.value for e in Emitter]))
    if draw(st.integers(0, 3)) == 0:
        record["event_scope"] = draw(st.sampled_from(["session", "turn"]))
    if draw(st.integers(0, 3)) == 0:
        record["signal"] = draw(st.sampled_from([s.value for s in SignalName]))
    optional: dict[str, Any] = {
        "turn_id": "t",
        "authority_epoch": 2,
        "reason": "r",
        "scope": draw(st.sampled_from(["session", "turn", "node", "provider_invocation", "x"])),
        "edge_id": "e1",
        "target_lane": draw(st.sampled_from(["DataLane", "TelemetryLane", "Fast"])),
        "amount": draw(st.integers(0, 2)),
        "seq_range": {"start": 0, "end": 1},
        "sync_domain": "d",
        "discontinuity_id": "x",
        "lane": draw(st.sampled_from(["ControlLane", "DataLane"])),
        "payload_class": draw(st.sampled_from(["metadata", "text_raw"])),
    }
    for key in draw(st.sets(st.sampled_from(sorted(optional)), max_size=2)):
        record[key] = optional[key]
    for key in draw(st.sets(st.sampled_from(sorted(optional)), max_size=1)):
        record.pop(key, None)
    return record


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=mutated())
def test_mutated_records_agree_with_reference(
    case: tuple[str, Any], reference_schema: dict[str, Any]
) -> None:
    kind, record = case
    expected = reference_validator(reference_schema, kind).is_valid(record)
    assert is_valid(kind, record) == expected
    assert (not validate(kind, record)) == expected
    if expected:  # every valid generated record round-trips losslessly through both codecs
        obj = from_builtins(kind, record)
        assert to_builtins(obj) == record
        assert decode_json(kind, encode_json(obj)) == obj
        assert decode_msgpack(kind, encode_msgpack(obj)) == obj
    else:
        with pytest.raises(ContractValidationError):
            from_builtins(kind, record)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(record=random_signal())
def test_generated_control_signals_agree_with_reference(
    record: dict[str, Any], reference_schema: dict[str, Any]
) -> None:
    for kind in ("control_signal", "event_record"):
        expected = reference_validator(reference_schema, kind).is_valid(record)
        assert (not validate(kind, record)) == expected, (kind, record, validate(kind, record))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(case=mutated())
def test_cli_classifies_generated_records_like_reference(
    case: tuple[str, Any], reference_schema: dict[str, Any], tmp_path: Path
) -> None:
    kind, record = case
    path = tmp_path / "generated.json"
    path.write_text(json.dumps(record))
    result = CliRunner().invoke(app, ["contracts", "validate", "--kind", kind, str(path)])
    expected = reference_validator(reference_schema, kind).is_valid(record)
    assert result.exit_code == (0 if expected else 1), result.output
    verdict = result.output.strip().split(": ", 1)[1]
    assert (verdict == "valid") == expected


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=mutated(), signal=random_signal())
def test_compiled_yes_no_validator_agrees_with_reference(
    case: tuple[str, Any], signal: dict[str, Any], reference_schema: dict[str, Any]
) -> None:
    """The compiled validator (jsonschema-rs) answers valid records without the evaluator:
    its verdict must be the reference's both ways (else validation is wrong or slow)."""
    from rspp.contracts._validate import _fast_valid

    for kind, record in (case, ("control_signal", signal)):
        expected = reference_validator(reference_schema, kind).is_valid(record)
        assert _fast_valid(kind, record) == expected, (kind, record)


def test_valid_fixtures_take_the_compiled_path() -> None:
    from rspp.contracts._validate import _fast_valid

    assert BASES and all(_fast_valid(kind, record) for kind, record in BASES)
