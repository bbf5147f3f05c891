"""Per-signal rules as data agree with the reference schema (F-025 emitter ownership).

For every signal and every emitter, the reference validator accepts the signal exactly
when the emitter is in ``signal_rule(...).emitters``; dropping any required field of the
rule makes it invalid; a wrong event scope is rejected where the rule fixes one.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from _contracts_support import fixture_files, load, reference_validator

from rspp.contracts import (
    SCHEMA_VERSION,
    ContractValidationError,
    Emitter,
    EventScope,
    SignalName,
    check_schema_version,
    decode_json,
    signal_rule,
    validate,
)
from rspp.errors import ContractError

pytestmark = pytest.mark.unit


def _signal_fixture(signal: SignalName) -> dict[str, Any]:
    path = next(p for p in fixture_files("valid") if p.stem == f"control_signal__{signal.value}")
    loaded: dict[str, Any] = load(path)
    return loaded


@pytest.mark.parametrize("signal", list(SignalName), ids=[s.value for s in SignalName])
def test_rule_table_matches_reference(signal: SignalName, reference_schema: dict[str, Any]) -> None:
    rule = signal_rule(signal)
    base = _signal_fixture(signal)
    reference = reference_validator(reference_schema, "control_signal")
    for emitter in Emitter:
        record = {**base, "emitted_by": emitter.value}
        assert reference.is_valid(record) == (emitter in rule.emitters), emitter
        assert (not validate("control_signal", record)) == (emitter in rule.emitters)
    for field in rule.required:
        record = copy.deepcopy(base)
        record.pop(field, None)
        assert not reference.is_valid(record), field
        assert any(i.path == field for i in validate("control_signal", record))
    if rule.event_scope is not None:
        other = EventScope.SESSION if rule.event_scope is EventScope.TURN else EventScope.TURN
        record = {**base, "event_scope": other.value, "turn_id": "t1"}
        assert not reference.is_valid(record)
        assert "event_scope" in [i.path for i in validate("control_signal", record)]


def test_unknown_signal_rule_is_a_contract_error() -> None:
    with pytest.raises(ContractError, match="unknown control signal 'hangup'"):
        signal_rule("hangup")
    assert signal_rule("cancel").required == ("scope",)


def test_schema_version_same_major_decodes_other_major_fails_actionably() -> None:
    check_schema_version(SCHEMA_VERSION)
    check_schema_version("v1.7.2")
    with pytest.raises(ContractError, match=r"incompatible .* rspp release for v2\.x"):
        check_schema_version("v2.0")
    record = _signal_fixture(SignalName.BARGE_IN)
    later_minor = json.dumps({**record, "schema_version": "v1.3"}).encode()
    assert decode_json("control_signal", later_minor).schema_version == "v1.3"
    next_major = json.dumps({**record, "schema_version": "v2.0"}).encode()
    for validate_flag in (True, False):
        with pytest.raises(ContractError, match="incompatible"):
            decode_json("control_signal", next_major, validate=validate_flag)
    with pytest.raises(ContractValidationError, match="schema_version"):
        decode_json("control_signal", json.dumps({**record, "schema_version": "2"}).encode())
