"""Validation of wire records against the reference contract schema.

``validate(kind, data)`` returns *every* issue with its field path. The rules come
from the reference schema shipped beside this module (the schema is the table of
rules: per-signal required fields and emitters, scope/phase rules, legal turn
transitions, closed objects), so our verdict and the reference verdict agree by
construction and tests prove it with ``jsonschema`` on hand-made and generated
records. Validation is kept off the runtime hot path: the kernel builds structs
directly and tests call :func:`check_record` on what it emits.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from typing import Any, Final, Literal, TypeAlias, get_args, overload

import msgspec

from rspp.contracts._bundle import ArtifactBundle
from rspp.contracts._envelope import ControlSignal, EventRecord
from rspp.contracts._outcome import DecisionOutcome
from rspp.contracts._plan import ResolvedTurnPlan
from rspp.contracts._schema_check import SchemaEvaluator, ValidationIssue
from rspp.contracts._transition import TurnTransition
from rspp.contracts._types import SCHEMA_VERSION
from rspp.errors import ContractError

ContractKind: TypeAlias = Literal[
    "event_record",
    "control_signal",
    "decision_outcome",
    "turn_transition",
    "resolved_turn_plan",
    "artifact_bundle",
]

#: Every schema kind name, in the reference schema's order.
KINDS: Final[tuple[str, ...]] = get_args(ContractKind)

ContractStruct: TypeAlias = (
    EventRecord
    | ControlSignal
    | DecisionOutcome
    | TurnTransition
    | ResolvedTurnPlan
    | ArtifactBundle
)

#: The msgspec type that carries each kind.
KIND_TYPES: Final[dict[str, type[ContractStruct]]] = {
    "event_record": EventRecord,
    "control_signal": ControlSignal,
    "decision_outcome": DecisionOutcome,
    "turn_transition": TurnTransition,
    "resolved_turn_plan": ResolvedTurnPlan,
    "artifact_bundle": ArtifactBundle,
}

_BUNDLE_KEYS = frozenset(
    {"event", "control_signal", "turn_transition", "resolved_turn_plan", "decision_outcome"}
)


class ContractValidationError(ContractError):
    """A record breaks the contract; ``issues`` lists every violation with its path."""

    def __init__(self, kind: str, issues: list[ValidationIssue]) -> None:
        self.kind = kind
        self.issues = issues
        first = issues[0] if issues else ValidationIssue("<root>", "invalid")
        more = f" (+{len(issues) - 1} more)" if len(issues) > 1 else ""
        super().__init__(f"invalid {kind}: {first.path}: {first.message}{more}")


_VERSION = re.compile(r"^v(?P<major>[0-9]+)\.[0-9]+(?:\.[0-9]+)?$")


def check_schema_version(version: str) -> None:
    """Raise unless ``version`` is readable here (same major as :data:`SCHEMA_VERSION`).

    Minor versions only add optional fields, so any ``v1.x`` record decodes with a
    ``v1.y`` runtime; a different major needs the matching rspp release.
    """
    ours = _VERSION.match(SCHEMA_VERSION)
    theirs = _VERSION.match(version)
    if theirs is None or ours is None:
        msg = f"schema_version {version!r} is malformed; expected like {SCHEMA_VERSION!r}"
        raise ContractError(msg)
    if theirs["major"] != ours["major"]:
        msg = (
            f"schema_version {version!r} is incompatible with this runtime's {SCHEMA_VERSION!r} "
            f"(major {theirs['major']} != {ours['major']}); decode it with an rspp release for "
            f"v{theirs['major']}.x or convert the recording"
        )
        raise ContractError(msg)


_READABLE: set[str] = {SCHEMA_VERSION}


def schema_version_problem(version: object) -> str | None:
    """Why a record carrying ``version`` cannot be decoded here (None: it can, or absent).

    The check :func:`check_schema_version` makes, as a message for readers of recorded
    lines (a seen-good version is answered from a small set: this runs once per line).
    """
    if version is None or (type(version) is str and version in _READABLE):
        return None
    if not isinstance(version, str):
        return f"must be a string like {SCHEMA_VERSION!r}, got {type(version).__name__}"
    try:
        check_schema_version(version)
    except ContractError as exc:
        return str(exc)
    if len(_READABLE) < 64:
        _READABLE.add(version)
    return None


def check_versions(obj: object) -> None:
    """Apply :func:`check_schema_version` to an envelope (or a bundle's envelopes)."""
    if isinstance(obj, EventRecord | ControlSignal):
        check_schema_version(obj.schema_version)
    elif isinstance(obj, ArtifactBundle):
        check_versions(obj.event)
        check_versions(obj.control_signal)


@lru_cache(maxsize=1)
def reference_schema() -> dict[str, Any]:
    """The reference contract schema (a copy ships inside this package)."""
    text = resources.files("rspp.contracts").joinpath("contract-artifacts.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@lru_cache(maxsize=1)
def _evaluator() -> SchemaEvaluator:
    return SchemaEvaluator(reference_schema())


@lru_cache(maxsize=1)
def _fast_validators() -> dict[str, Any]:
    """A compiled (Rust, ``jsonschema_rs``) validator per kind, for the yes/no question.

    Valid records (nearly all of a timeline) are answered here; only an invalid one
    goes through :class:`SchemaEvaluator` for its field paths and fix hints, so the
    verdict and the messages stay those of the reference evaluation. Agreement with
    ``jsonschema`` is property-tested on generated and mutated records.
    """
    import jsonschema_rs

    schema = reference_schema()
    return {
        kind: jsonschema_rs.Draft202012Validator(
            {"$schema": schema.get("$schema"), "$defs": schema["$defs"],
             "$ref": f"#/$defs/{kind}"})
        for kind in KINDS
    }


def _fast_valid(kind: str, data: object) -> bool:
    """True only when the compiled validator accepts ``data`` (False: ask the evaluator)."""
    try:
        return bool(_fast_validators()[kind].is_valid(data))
    except Exception:  # e.g. an integer beyond 64 bits or a non-JSON value: the evaluator decides
        return False


def _check_kind(kind: str) -> None:
    if kind not in KIND_TYPES:
        msg = f"unknown contract kind {kind!r}; use one of: {', '.join(KINDS)}"
        raise ContractError(msg)


def validate(kind: str, data: object) -> list[ValidationIssue]:
    """Every way ``data`` (JSON builtins) breaks contract ``kind``; empty when valid."""
    _check_kind(kind)
    if _fast_valid(kind, data):
        return []
    return _evaluator().validate(kind, data)


def is_valid(kind: str, data: object) -> bool:
    """Whether ``data`` satisfies contract ``kind``."""
    _check_kind(kind)
    return _fast_valid(kind, data) or _evaluator().is_valid(kind, data)


def infer_kind(data: object) -> str:
    """Guess the kind of a record from its distinguishing fields."""
    if not isinstance(data, Mapping):
        return "event_record"
    if "signal" in data:
        return "control_signal"
    if "outcome_kind" in data:
        return "decision_outcome"
    if "from_state" in data:
        return "turn_transition"
    if "plan_hash" in data:
        return "resolved_turn_plan"
    if _BUNDLE_KEYS & data.keys():
        return "artifact_bundle"
    return "event_record"


def kind_of(obj: ContractStruct) -> str:
    """The schema kind name of a contract struct instance."""
    for kind, cls in KIND_TYPES.items():
        if type(obj) is cls:
            return kind
    msg = f"{type(obj).__name__} is not a contract record type"
    raise ContractError(msg)


def check_record(obj: ContractStruct) -> list[ValidationIssue]:
    """Every contract issue of an already-typed record (conditional rules included)."""
    return validate(kind_of(obj), msgspec.to_builtins(obj))


def to_builtins(obj: ContractStruct, *, check: bool = True) -> dict[str, Any]:
    """JSON-ready builtins of ``obj``; raises :class:`ContractValidationError` if invalid."""
    data: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(obj))
    if check:
        issues = validate(kind_of(obj), data)
        if issues:
            raise ContractValidationError(kind_of(obj), issues)
    return data


def _convert(kind: str, data: object, *, checked: bool = False) -> ContractStruct:
    """Build the struct; ``checked`` data already passed the schema, so convert leniently."""
    if kind == "artifact_bundle":
        return _convert_bundle(data, checked)
    try:
        # lenient only matters for integral floats (JSON 2.0 is an integer)
        return msgspec.convert(data, KIND_TYPES[kind], strict=not checked)
    except msgspec.ValidationError as exc:
        raise ContractValidationError(kind, [_from_msgspec(exc)]) from exc


def _convert_bundle(data: object, checked: bool) -> ArtifactBundle:
    if not isinstance(data, Mapping):
        raise ContractValidationError(
            "artifact_bundle", [ValidationIssue("<root>", "must be an object")]
        )
    missing = [ValidationIssue(k, "required field is missing") for k in _BUNDLE_KEYS - data.keys()]
    if missing:
        raise ContractValidationError("artifact_bundle", sorted(missing, key=lambda i: i.path))
    event = data["event"]
    event_kind = (
        "control_signal" if isinstance(event, Mapping) and "signal" in event else "event_record"
    )
    parts: dict[str, Any] = {"event": _convert(event_kind, event, checked=checked)}
    for key in ("control_signal", "turn_transition", "resolved_turn_plan", "decision_outcome"):
        parts[key] = _convert(key, data[key], checked=checked)
    return ArtifactBundle(**parts)


def _from_msgspec(exc: msgspec.ValidationError) -> ValidationIssue:
    text = str(exc)
    marker = " - at `$"
    if marker in text:
        message, _, where = text.partition(marker)
        # msgspec does not name map keys (``[...]``): shown as ``*``
        where = where.rstrip("`").replace("[...]", ".*")
        path = where.lstrip(".").replace("[", ".").replace("]", "")
        return ValidationIssue(path or "<root>", message)
    return ValidationIssue("<root>", text)


@overload
def from_builtins(kind: Literal["event_record"], data: object) -> EventRecord: ...
@overload
def from_builtins(kind: Literal["control_signal"], data: object) -> ControlSignal: ...
@overload
def from_builtins(kind: Literal["decision_outcome"], data: object) -> DecisionOutcome: ...
@overload
def from_builtins(kind: Literal["turn_transition"], data: object) -> TurnTransition: ...
@overload
def from_builtins(kind: Literal["resolved_turn_plan"], data: object) -> ResolvedTurnPlan: ...
@overload
def from_builtins(kind: Literal["artifact_bundle"], data: object) -> ArtifactBundle: ...
@overload
def from_builtins(kind: str, data: object) -> ContractStruct: ...
def from_builtins(kind: str, data: object) -> ContractStruct:
    """Validate JSON builtins as ``kind`` and build its struct; raises with every issue."""
    issues = validate(kind, data)
    if issues:
        raise ContractValidationError(kind, issues)
    result = _convert(kind, data, checked=True)
    check_versions(result)
    return result
