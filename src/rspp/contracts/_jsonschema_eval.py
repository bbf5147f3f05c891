"""A small JSON Schema (draft 2020-12 subset) evaluator that collects every error.

The reference contract schema is the single source of truth for the wire rules
(required fields per signal, emitter ownership, scope/phase rules, legal turn
transitions, closed objects). This evaluator walks it and reports *all* issues
with dotted field paths (``edge_buffer_policies.e1.max_block_time_ms``) and a
message that says what to change. Supported keywords: ``$ref`` (local),
``type``, ``enum``, ``const``, ``minimum``/``maximum``, ``minLength``/``maxLength``,
``pattern``, ``minItems``/``maxItems``, ``uniqueItems``, ``items``,
``properties``, ``required``, ``additionalProperties``, ``minProperties``,
``allOf``, ``anyOf``, ``oneOf``, ``not``, ``if``/``then``/``else``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import msgspec

__all__ = ["SchemaEvaluator", "ValidationIssue", "format_path"]

_JSON_TYPES = ("object", "array", "string", "integer", "number", "boolean", "null")


class ValidationIssue(msgspec.Struct, frozen=True):
    """One contract violation: where (dotted field path) and what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def format_path(parts: Sequence[str | int]) -> str:
    """``("a", 0, "b")`` -> ``a.0.b``; the empty path is ``<root>``."""
    return ".".join(str(p) for p in parts) if parts else "<root>"


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
    if isinstance(value, dict | Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def _is_type(value: object, expected: str) -> bool:
    actual = _type_of(value)
    if expected == "number":
        return actual in ("integer", "number")
    if expected == "integer" and actual == "number":
        return isinstance(value, float) and value.is_integer()
    return actual == expected


def _canon(value: object) -> str:
    """A key under which JSON-equal values collide (``true`` never equals ``1``)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return json.dumps(value, sort_keys=True, default=str)


_SIMPLE = (str, int, bool, type(None))


def _json_equal(a: object, b: object) -> bool:
    if type(a) is type(b) and type(a) in _SIMPLE:
        return a == b
    if isinstance(a, bool) or isinstance(b, bool):
        return False  # JSON true/false never equal a number
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, str) or isinstance(b, str):
        return False
    return _canon(a) == _canon(b)


class _Failed(Exception):
    """Raised by a probe at its first issue: a probe only needs a yes/no."""


class _Probe(list[ValidationIssue]):
    def append(self, item: ValidationIssue) -> None:
        raise _Failed

    def extend(self, items: Iterable[ValidationIssue]) -> None:
        if list(items):
            raise _Failed


def _show(value: object) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


class SchemaEvaluator:
    """Evaluates instances against definitions of one JSON Schema document."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self._doc = document

    def definition(self, name: str) -> Mapping[str, Any]:
        defs: Mapping[str, Any] = self._doc["$defs"]
        found: Mapping[str, Any] = defs[name]
        return found

    def validate(self, schema: Mapping[str, Any], value: object) -> list[ValidationIssue]:
        issues: list[ValidationIssue] = []
        self._eval(schema, value, (), issues)
        unique: dict[ValidationIssue, None] = dict.fromkeys(issues)
        return list(unique)

    def is_valid(self, schema: Mapping[str, Any], value: object) -> bool:
        return self._ok(schema, value)

    # -- internals -------------------------------------------------------------------------

    def _resolve(self, ref: str) -> Mapping[str, Any]:
        if not ref.startswith("#/"):
            msg = f"only local $ref is supported, got {ref!r}"
            raise ValueError(msg)
        node: Any = self._doc
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        resolved: Mapping[str, Any] = node
        return resolved

    def _ok(self, schema: Mapping[str, Any], value: object) -> bool:
        try:
            self._eval(schema, value, (), _Probe())
        except _Failed:
            return False
        return True

    def _eval(
        self,
        schema: Mapping[str, Any] | bool,
        value: object,
        path: tuple[str | int, ...],
        out: list[ValidationIssue],
    ) -> None:
        if schema is True:
            return
        if schema is False:
            out.append(ValidationIssue(format_path(path), "no value is allowed here"))
            return
        if "$ref" in schema:
            self._eval(self._resolve(schema["$ref"]), value, path, out)
        where = format_path(path)
        if "type" in schema and not self._check_type(schema["type"], value, where, out):
            return  # a wrong type makes every other keyword noise
        probe = type(out) is _Probe
        if "const" in schema and not _json_equal(value, schema["const"]):
            if probe:
                raise _Failed
            out.append(
                ValidationIssue(where, f"must be {_show(schema['const'])}, got {_show(value)}")
            )
        if "enum" in schema and not any(_json_equal(value, e) for e in schema["enum"]):
            if probe:
                raise _Failed
            allowed = ", ".join(_show(e) for e in schema["enum"])
            out.append(ValidationIssue(where, f"must be one of {allowed}; got {_show(value)}"))
        self._scalar_bounds(schema, value, where, out)
        if type(value) is dict or isinstance(value, Mapping):
            self._object(schema, value, path, out)
        elif type(value) is list or isinstance(value, list | tuple):
            self._array(schema, value, path, out)
        self._combinators(schema, value, path, out)

    def _check_type(
        self, expected: str | list[str], value: object, where: str, out: list[ValidationIssue]
    ) -> bool:
        names = [expected] if isinstance(expected, str) else list(expected)
        if any(_is_type(value, n) for n in names):
            return True
        if type(out) is _Probe:
            raise _Failed
        want = " or ".join(names)
        out.append(
            ValidationIssue(where, f"must be of type {want}, got {_type_of(value)} {_show(value)}")
        )
        return False

    def _scalar_bounds(
        self, schema: Mapping[str, Any], value: object, where: str, out: list[ValidationIssue]
    ) -> None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if "minimum" in schema and value < schema["minimum"]:
                out.append(ValidationIssue(where, f"must be >= {schema['minimum']}, got {value}"))
            if "maximum" in schema and value > schema["maximum"]:
                out.append(ValidationIssue(where, f"must be <= {schema['maximum']}, got {value}"))
        if isinstance(value, str):
            if "minLength" in schema and len(value) < schema["minLength"]:
                out.append(
                    ValidationIssue(where, f"must have at least {schema['minLength']} character(s)")
                )
            if "maxLength" in schema and len(value) > schema["maxLength"]:
                out.append(
                    ValidationIssue(where, f"must have at most {schema['maxLength']} character(s)")
                )
            if "pattern" in schema and not _regex(schema["pattern"]).search(value):
                out.append(
                    ValidationIssue(
                        where, f"{_show(value)} does not match pattern {schema['pattern']}"
                    )
                )

    def _object(
        self,
        schema: Mapping[str, Any],
        value: Mapping[str, Any],
        path: tuple[str | int, ...],
        out: list[ValidationIssue],
    ) -> None:
        props: Mapping[str, Any] = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                out.append(ValidationIssue(format_path((*path, name)), "required field is missing"))
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            out.append(
                ValidationIssue(
                    format_path(path), f"must have at least {schema['minProperties']} entr(y/ies)"
                )
            )
        extra = schema.get("additionalProperties", True)
        if extra is True:  # only the listed properties matter
            for key, sub_schema in props.items():
                if key in value:
                    self._eval(sub_schema, value[key], (*path, key), out)
            return
        for key, item in value.items():
            sub = (*path, key)
            if key in props:
                self._eval(props[key], item, sub, out)
            elif extra is False:
                out.append(ValidationIssue(format_path(sub), _unknown_message(props)))
            elif isinstance(extra, Mapping):
                self._eval(extra, item, sub, out)

    def _array(
        self,
        schema: Mapping[str, Any],
        value: Sequence[Any],
        path: tuple[str | int, ...],
        out: list[ValidationIssue],
    ) -> None:
        where = format_path(path)
        if "minItems" in schema and len(value) < schema["minItems"]:
            out.append(ValidationIssue(where, f"must have at least {schema['minItems']} item(s)"))
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            out.append(ValidationIssue(where, f"must have at most {schema['maxItems']} item(s)"))
        if schema.get("uniqueItems"):
            seen: set[str] = set()
            for index, item in enumerate(value):
                key = _canon(item)
                if key in seen:
                    out.append(
                        ValidationIssue(
                            format_path((*path, index)), f"duplicate item {_show(item)}"
                        )
                    )
                seen.add(key)
        if "items" in schema:
            for index, item in enumerate(value):
                self._eval(schema["items"], item, (*path, index), out)

    def _combinators(
        self,
        schema: Mapping[str, Any],
        value: object,
        path: tuple[str | int, ...],
        out: list[ValidationIssue],
    ) -> None:
        for sub in schema.get("allOf", ()):
            self._eval(sub, value, path, out)
        if "if" in schema:
            branch = "then" if self._ok(schema["if"], value) else "else"
            if branch in schema:
                self._eval(schema[branch], value, path, out)
        if "not" in schema and self._ok(schema["not"], value):
            out.append(ValidationIssue(format_path(path), _not_message(schema["not"])))
        if "anyOf" in schema and not any(self._ok(s, value) for s in schema["anyOf"]):
            self._no_branch(schema["anyOf"], value, path, out, "at least one")
        if "oneOf" in schema:
            matches = sum(1 for s in schema["oneOf"] if self._ok(s, value))
            if matches == 0:
                self._no_branch(schema["oneOf"], value, path, out, "exactly one")
            elif matches > 1:
                out.append(
                    ValidationIssue(
                        format_path(path), _one_of_message(schema["oneOf"], value, matches)
                    )
                )

    def _no_branch(
        self,
        branches: Sequence[Mapping[str, Any]],
        value: object,
        path: tuple[str | int, ...],
        out: list[ValidationIssue],
        how_many: str,
    ) -> None:
        if isinstance(out, _Probe):
            raise _Failed
        where = format_path(path)
        if all(set(b) == {"required"} for b in branches):
            names = " / ".join("+".join(b["required"]) for b in branches)
            out.append(ValidationIssue(where, f"{how_many} of {names} is required"))
            return
        if isinstance(value, Mapping) and all(_is_value_table(b) for b in branches):
            keys = list(dict.fromkeys(k for b in branches for k in b["properties"]))
            shown = ", ".join(f"{k}={_show(value.get(k))}" for k in keys)
            out.append(
                ValidationIssue(
                    where, f"({shown}) is not an allowed combination; {_allowed(branches)}"
                )
            )
            return
        # Report the errors of the closest branch so the fix is visible.
        best: list[ValidationIssue] | None = None
        for branch in branches:
            trial: list[ValidationIssue] = []
            self._eval(branch, value, path, trial)
            if best is None or len(trial) < len(best):
                best = trial
        out.extend(best or [ValidationIssue(where, f"must match {how_many} alternative")])


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


def _one_of_message(branches: Sequence[Mapping[str, Any]], value: object, matches: int) -> str:
    if all(set(b) == {"required"} for b in branches):
        names = ", ".join("+".join(b["required"]) for b in branches)
        return f"exactly one of {names} is allowed, found {matches}"
    return f"matches {matches} alternatives, exactly one is allowed"
