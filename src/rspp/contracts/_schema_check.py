"""Contract validation with ``jsonschema``, reported as field paths and fix hints.

The reference contract schema is the single source of truth for the wire rules
(required fields per signal, emitter ownership, scope/phase rules, legal turn
transitions, closed objects). ``jsonschema`` (Draft 2020-12) evaluates it and
collects every error; this module turns each error into a :class:`ValidationIssue`
with a dotted field path (``edge_buffer_policies.e1.max_block_time_ms``) and a
message that says what to change: a missing field is named at its own path, an
unknown field lists the allowed ones, a failed ``anyOf``/``oneOf`` names the
allowed combinations or shows the errors of the closest alternative, and a wrong
type hides the other complaints about the same value.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError

__all__ = ["SchemaEvaluator", "ValidationIssue", "format_path"]


class ValidationIssue(msgspec.Struct, frozen=True):
    """One contract violation: where (dotted field path) and what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def format_path(parts: Iterable[str | int]) -> str:
    """``("a", 0, "b")`` -> ``a.0.b``; the empty path is ``<root>``."""
    text = ".".join(str(p) for p in parts)
    return text or "<root>"


def _type_of(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def _show(value: object) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _canon(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return json.dumps(value, sort_keys=True, default=str)


@functools.cache
def _validator_class() -> Any:
    """Draft 2020-12 where tuples are arrays and any Mapping is an object.

    jsonschema loads here, with the first evaluator: a process that never validates
    against a schema document (``rspp run``) skips its ~0.1 s CPU import.
    """
    from jsonschema import Draft202012Validator
    from jsonschema.validators import extend

    types = Draft202012Validator.TYPE_CHECKER.redefine_many({
        "array": lambda _checker, value: isinstance(value, list | tuple),
        "object": lambda _checker, value: isinstance(value, Mapping),
    })
    return extend(Draft202012Validator, type_checker=types)


class SchemaEvaluator:
    """Validates instances against the definitions of one JSON Schema document."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self._doc = document
        self._cls = _validator_class()
        self._by_name: dict[str, Any] = {}

    def definition(self, name: str) -> Mapping[str, Any]:
        defs: Mapping[str, Any] = self._doc["$defs"]
        found: Mapping[str, Any] = defs[name]
        return found

    def _validator(self, name: str) -> Any:
        v = self._by_name.get(name)
        if v is None:
            self.definition(name)  # KeyError for an unknown definition
            root = {"$defs": self._doc["$defs"], "$ref": f"#/$defs/{name}"}
            v = self._by_name[name] = self._cls(root)
        return v

    def validate(self, name: str, value: object) -> list[ValidationIssue]:
        """Every issue of ``value`` against definition ``name`` (empty when valid)."""
        issues = _issues(self._validator(name).iter_errors(value))
        return list(dict.fromkeys(issues))

    def is_valid(self, name: str, value: object) -> bool:
        ok: bool = self._validator(name).is_valid(value)
        return ok


# -- errors -> issues ------------------------------------------------------------------


def _issues(errors: Iterable[ValidationError]) -> list[ValidationIssue]:
    errs = list(errors)
    # a wrong type makes every other complaint about the same value (same schema) noise
    typed = {(tuple(e.absolute_path), tuple(e.absolute_schema_path)[:-1])
             for e in errs if e.validator == "type"}
    out: list[ValidationIssue] = []
    for e in errs:
        if e.validator != "type" and _under_type_error(e, typed):
            continue
        out.extend(_convert(e))
    return out


def _under_type_error(e: ValidationError, typed: set[tuple[tuple[Any, ...], tuple[Any, ...]]]
                      ) -> bool:
    path = tuple(e.absolute_path)
    spath = tuple(e.absolute_schema_path)
    for ipath, sparent in typed:
        if path[: len(ipath)] == ipath and spath[: len(sparent)] == sparent:
            return True
    return False


def _convert(e: ValidationError) -> list[ValidationIssue]:
    path = tuple(e.absolute_path)
    where = format_path(path)
    kw, rule, value = e.validator, e.validator_value, e.instance
    if kw is None or e.schema is False:
        return [ValidationIssue(where, "no value is allowed here")]
    if kw == "type":
        names = [rule] if isinstance(rule, str) else list(rule)
        return [ValidationIssue(
            where, f"must be of type {' or '.join(names)}, got {_type_of(value)} {_show(value)}")]
    if kw == "required":
        present = value if isinstance(value, Mapping) else {}
        return [ValidationIssue(format_path((*path, name)), "required field is missing")
                for name in rule if name not in present]
    if kw == "const":
        return [ValidationIssue(where, f"must be {_show(rule)}, got {_show(value)}")]
    if kw == "enum":
        allowed = ", ".join(_show(x) for x in rule)
        return [ValidationIssue(where, f"must be one of {allowed}; got {_show(value)}")]
    if kw in _SIMPLE:
        return [ValidationIssue(where, _SIMPLE[kw](rule, value))]
    if kw == "uniqueItems":
        return _duplicates(path, value)
    if kw == "additionalProperties":
        schema = e.schema if isinstance(e.schema, Mapping) else {}
        props: Mapping[str, Any] = schema.get("properties", {})
        return [ValidationIssue(format_path((*path, key)), _unknown_message(props))
                for key in value if key not in props]
    if kw == "not":
        return [ValidationIssue(where, _not_message(rule))]
    if kw in ("anyOf", "oneOf"):
        return _no_branch(e, where)
    return [ValidationIssue(where, str(e.message))]


_SIMPLE = {
    "minimum": lambda rule, value: f"must be >= {rule}, got {value}",
    "maximum": lambda rule, value: f"must be <= {rule}, got {value}",
    "minLength": lambda rule, value: f"must have at least {rule} character(s)",
    "maxLength": lambda rule, value: f"must have at most {rule} character(s)",
    "pattern": lambda rule, value: f"{_show(value)} does not match pattern {rule}",
    "minItems": lambda rule, value: f"must have at least {rule} item(s)",
    "maxItems": lambda rule, value: f"must have at most {rule} item(s)",
    "minProperties": lambda rule, value: f"must have at least {rule} entr(y/ies)",
}


def _duplicates(path: tuple[Any, ...], value: Sequence[Any]) -> list[ValidationIssue]:
    seen: set[str] = set()
    out = []
    for index, item in enumerate(value):
        key = _canon(item)
        if key in seen:
            out.append(ValidationIssue(format_path((*path, index)),
                                       f"duplicate item {_show(item)}"))
        seen.add(key)
    return out


def _no_branch(e: ValidationError, where: str) -> list[ValidationIssue]:
    branches: Sequence[Mapping[str, Any]] = e.validator_value
    value = e.instance
    failing: dict[int, list[ValidationError]] = {}
    for sub in e.context or ():
        failing.setdefault(int(sub.relative_schema_path[0]), []).append(sub)
    if e.validator == "oneOf" and len(failing) < len(branches):
        return [ValidationIssue(where, _one_of_message(branches, len(branches) - len(failing)))]
    how_many = "at least one" if e.validator == "anyOf" else "exactly one"
    if all(set(b) == {"required"} for b in branches):
        names = " / ".join("+".join(b["required"]) for b in branches)
        return [ValidationIssue(where, f"{how_many} of {names} is required")]
    if isinstance(value, Mapping) and all(_is_value_table(b) for b in branches):
        keys = list(dict.fromkeys(k for b in branches for k in b["properties"]))
        shown = ", ".join(f"{k}={_show(value.get(k))}" for k in keys)
        return [ValidationIssue(
            where, f"({shown}) is not an allowed combination; {_allowed(branches)}")]
    # Report the errors of the closest alternative so the fix is visible.
    best: list[ValidationIssue] | None = None
    for index in sorted(failing):
        trial = list(dict.fromkeys(_issues(failing[index])))
        if best is None or len(trial) < len(best):
            best = trial
    return best or [ValidationIssue(where, f"must match {how_many} alternative")]


def _unknown_message(props: Mapping[str, Any]) -> str:
    if not props:
        return "unknown field; this object allows no fields, remove it"
    names = list(props)
    shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
    hint = ""
    if "signal" in props and "payload_class" in props:
        hint = "; payload bodies (text, audio) travel beside the envelope, not in it"
    return f"unknown field; the object is closed, remove it (allowed: {shown}){hint}"


def _is_value_table(branch: Mapping[str, Any]) -> bool:
    props = branch.get("properties")
    return (
        set(branch) == {"properties"}
        and isinstance(props, Mapping)
        and all(isinstance(p, Mapping) and set(p) <= {"const", "enum"} for p in props.values())
    )


def _allowed(branches: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for branch in branches:
        cells = []
        for name, rule in branch["properties"].items():
            values = [rule["const"]] if "const" in rule else list(rule["enum"])
            cells.append(f"{name}={'|'.join(str(v) for v in values)}")
        rows.append("(" + ", ".join(cells) + ")")
    return "allowed: " + "; ".join(rows)


def _not_message(schema: Mapping[str, Any]) -> str:
    if set(schema) == {"required"}:
        return f"field(s) {', '.join(schema['required'])} must not be present"
    return "matches a forbidden shape"


def _one_of_message(branches: Sequence[Mapping[str, Any]], matches: int) -> str:
    if all(set(b) == {"required"} for b in branches):
        names = ", ".join("+".join(b["required"]) for b in branches)
        return f"exactly one of {names} is allowed, found {matches}"
    return f"matches {matches} alternatives, exactly one is allowed"
