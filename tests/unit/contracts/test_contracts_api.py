"""Public surface of ``rspp.contracts`` and its agreement with the reference vocabularies."""

from __future__ import annotations

import types
from typing import Any

import pytest
from _contracts_support import fixture_files, load

import rspp.contracts as contracts
from rspp.contracts import (
    KINDS,
    LEGAL_TRANSITIONS,
    Emitter,
    Lane,
    PayloadClass,
    SignalName,
    TransitionTrigger,
    TurnState,
    reference_schema,
)

pytestmark = pytest.mark.unit


def test_all_lists_every_public_name() -> None:
    public = {
        name
        for name, value in vars(contracts).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"
    }
    assert set(contracts.__all__) == public
    assert len(contracts.__all__) == len(set(contracts.__all__))


def test_packaged_schema_is_the_reference(reference_schema: dict[str, Any]) -> None:
    assert contracts.reference_schema() == reference_schema


def test_kinds_are_the_schema_kinds() -> None:
    roots = [r["$ref"].rsplit("/", 1)[-1] for r in reference_schema()["anyOf"]]
    assert set(KINDS) == set(roots)


@pytest.mark.parametrize(
    ("enum", "definition"),
    [
        (SignalName, "control_signal_name"),
        (Emitter, "control_signal_emitter"),
        (Lane, "lane"),
        (PayloadClass, "payload_class"),
        (TurnState, "turn_state"),
    ],
)
def test_enums_mirror_reference(enum: Any, definition: str) -> None:
    assert [e.value for e in enum] == reference_schema()["$defs"][definition]["enum"]


def test_legal_transitions_match_the_valid_fixtures() -> None:
    found = set()
    for path in fixture_files("valid"):
        if path.name.startswith("turn_transition__"):
            data = load(path)
            found.add(
                (
                    TurnState(data["from_state"]),
                    TransitionTrigger(data["trigger"]),
                    TurnState(data["to_state"]),
                )
            )
    assert found == LEGAL_TRANSITIONS
