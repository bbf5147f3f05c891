"""JSON Schema of our msgspec contract types, per kind or for all kinds at once.

msgspec derives every schema except ``ArtifactBundle``'s: its ``event`` field is an
untagged union of two structs (the wire format has no tag), so that one object is
written here from the component schemas.
"""

from __future__ import annotations

from typing import Any

import msgspec

from rspp.contracts._bundle import ArtifactBundle
from rspp.contracts._envelope import ControlSignal, EventRecord
from rspp.contracts._outcome import DecisionOutcome
from rspp.contracts._plan import ResolvedTurnPlan
from rspp.contracts._transition import TurnTransition
from rspp.contracts._validate import KIND_TYPES, KINDS, _check_kind

_DIALECT = "https://json-schema.org/draft/2020-12/schema"
_REF = "#/$defs/{name}"
_BUNDLE_PARTS: tuple[type[Any], ...] = (
    EventRecord,
    ControlSignal,
    TurnTransition,
    ResolvedTurnPlan,
    DecisionOutcome,
)


def _bundle_schema() -> dict[str, Any]:
    def ref(cls: type[Any]) -> dict[str, str]:
        return {"$ref": _REF.format(name=cls.__name__)}

    return {
        "title": "ArtifactBundle",
        "description": ArtifactBundle.__doc__,
        "type": "object",
        "additionalProperties": False,
        "required": [
            "event",
            "control_signal",
            "turn_transition",
            "resolved_turn_plan",
            "decision_outcome",
        ],
        "properties": {
            "event": {"anyOf": [ref(EventRecord), ref(ControlSignal)]},
            "control_signal": ref(ControlSignal),
            "turn_transition": ref(TurnTransition),
            "resolved_turn_plan": ref(ResolvedTurnPlan),
            "decision_outcome": ref(DecisionOutcome),
        },
    }


def _components(kinds: list[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    types: list[type[Any]] = []
    for kind in kinds:
        cls = KIND_TYPES[kind]
        types.extend(_BUNDLE_PARTS if cls is ArtifactBundle else (cls,))
    unique = list(dict.fromkeys(types))
    _, components = msgspec.json.schema_components(unique, ref_template=_REF)
    if "artifact_bundle" in kinds:
        components["ArtifactBundle"] = _bundle_schema()
    roots = [{"$ref": _REF.format(name=KIND_TYPES[k].__name__)} for k in kinds]
    return roots, components


def json_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of the struct that carries ``kind``."""
    _check_kind(kind)
    (root,), components = _components([kind])
    return {"$schema": _DIALECT, "title": kind, **root, "$defs": components}


def all_schemas() -> dict[str, Any]:
    """One document: ``anyOf`` over every kind, shared ``$defs``."""
    roots, components = _components(list(KINDS))
    return {
        "$schema": _DIALECT,
        "title": "RSPP contract types",
        "anyOf": roots,
        "$defs": components,
    }
