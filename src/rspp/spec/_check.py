"""Schema check of a plain YAML tree against msgspec types, reporting *every* problem.

Driven generically by :func:`msgspec.inspect.type_info`, so the spec types are the
single source of truth for lint, decoding and generated docs.
"""

from __future__ import annotations

import difflib
import re

import msgspec.inspect as mi

from rspp.spec._issues import LintIssue, Severity
from rspp.spec._yaml import Path, SourceMap

_MISSING = object()


def describe(t: mi.Type) -> str:
    """Human description of a type for messages and docs."""
    if isinstance(t, mi.Metadata):
        return describe(t.type)
    if isinstance(t, mi.StrType):
        bits = []
        if t.pattern:
            bits.append(f"matching /{t.pattern}/")
        if t.min_length:
            bits.append("non-empty")
        return "string" + (" " + ", ".join(bits) if bits else "")
    if isinstance(t, mi.BoolType):
        return "boolean"
    if isinstance(t, mi.IntType):
        return "integer" + (f" >= {t.ge}" if t.ge is not None else "") + (
            f" <= {t.le}" if t.le is not None else "")
    if isinstance(t, mi.FloatType):
        return "number"
    if isinstance(t, mi.EnumType):
        return "one of " + ", ".join(repr(m.value) for m in t.cls)
    if isinstance(t, mi.LiteralType):
        return "one of " + ", ".join(repr(v) for v in t.values)
    if isinstance(t, mi.NoneType):
        return "null"
    if isinstance(t, (mi.ListType, mi.VarTupleType, mi.SetType, mi.FrozenSetType)):
        return f"list of {describe(t.item_type)}"
    if isinstance(t, mi.DictType):
        return f"mapping of {describe(t.value_type)}"
    if isinstance(t, mi.StructType):
        return f"mapping ({t.cls.__name__})"
    if isinstance(t, mi.UnionType):
        return " or ".join(describe(x) for x in t.types if not isinstance(x, mi.NoneType))
    return "any value"


class Checker:
    """Walks a tree, collecting issues and returning a cleaned copy (unknown keys dropped)."""

    def __init__(self, source: SourceMap, *, strict: bool) -> None:
        self.source = source
        self.strict = strict
        self.issues: list[LintIssue] = []
        self.blocking = 0
        """Errors that prevent decoding (unknown fields are dropped, so they do not)."""

    def _err(
        self, path: Path, message: str, hint: str, severity: Severity = "error",
        *, blocking: bool = True,
    ) -> None:
        self.issues.append(self.source.issue(path, message, hint, severity))
        if blocking and severity == "error":
            self.blocking += 1

    def check(self, value: object, t: mi.Type, path: Path) -> object:
        if isinstance(t, mi.Metadata):
            return self.check(value, t.type, path)
        if isinstance(t, mi.UnionType):
            return self._union(value, t, path)
        if isinstance(t, mi.StructType):
            return self._struct(value, t, path)
        if isinstance(t, mi.DictType):
            if not isinstance(value, dict):
                return self._type_error(value, t, path)
            for k in value:  # constrained keys (a Literal): each wrong key is named
                self.check(k, t.key_type, (*path, k))
            return {k: self.check(v, t.value_type, (*path, k)) for k, v in value.items()}
        if isinstance(t, (mi.ListType, mi.VarTupleType, mi.SetType, mi.FrozenSetType)):
            if not isinstance(value, list):
                return self._type_error(value, t, path)
            if t.min_length and len(value) < t.min_length:
                self._err(path, f"needs at least {t.min_length} item(s)", "add an item")
            return [self.check(v, t.item_type, (*path, i)) for i, v in enumerate(value)]
        return self._scalar(value, t, path)

    def _type_error(self, value: object, t: mi.Type, path: Path) -> object:
        shown = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
        hint = f"change the value to {describe(t)}"
        if isinstance(value, (int, float)) and describe(t).startswith("string"):
            hint = f"quote the value (\"{value}\") so YAML reads it as a string"
        self._err(path, f"expected {describe(t)}, got {shown}", hint)
        return _MISSING

    def _scalar(self, value: object, t: mi.Type, path: Path) -> object:
        if isinstance(t, mi.AnyType):
            return value
        if isinstance(t, mi.NoneType):
            return value if value is None else self._type_error(value, t, path)
        if isinstance(t, mi.BoolType):
            return value if isinstance(value, bool) else self._type_error(value, t, path)
        if isinstance(t, mi.IntType):
            if isinstance(value, bool) or not isinstance(value, int):
                return self._type_error(value, t, path)
            if t.ge is not None and value < t.ge:
                self._err(path, f"must be >= {t.ge}, got {value}", f"use a value >= {t.ge}")
            elif t.le is not None and value > t.le:
                self._err(path, f"must be <= {t.le}, got {value}", f"use a value <= {t.le}")
            return value
        if isinstance(t, mi.FloatType):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            return value if ok else self._type_error(value, t, path)
        if isinstance(t, mi.StrType):
            if not isinstance(value, str):
                return self._type_error(value, t, path)
            if t.min_length and len(value) < t.min_length:
                self._err(path, "must not be empty", "give a non-empty string")
            elif t.pattern and re.search(t.pattern, value) is None:
                self._err(path, f"{value!r} does not match /{t.pattern}/",
                          f"use {describe(t)}")
            return value
        if isinstance(t, (mi.EnumType, mi.LiteralType)):
            allowed = [m.value for m in t.cls] if isinstance(t, mi.EnumType) else list(t.values)
            if value not in allowed:
                close = difflib.get_close_matches(str(value), [str(a) for a in allowed], 1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                self._err(path, f"{value!r} is not allowed",
                          hint + "use " + ", ".join(repr(a) for a in allowed))
            return value
        return value

    def _union(self, value: object, t: mi.UnionType, path: Path) -> object:
        options = [x for x in t.types if not isinstance(x, mi.NoneType)]
        if value is None:
            if len(options) < len(t.types):
                return None
            return self._type_error(value, t, path)
        if len(options) == 1:
            return self.check(value, options[0], path)
        for option in options:
            trial = Checker(self.source, strict=self.strict)
            result = trial.check(value, option, path)
            if not trial.blocking:
                self.issues.extend(trial.issues)
                return result
        return self._type_error(value, t, path)

    def _struct(self, value: object, t: mi.StructType, path: Path) -> object:
        if not isinstance(value, dict):
            return self._type_error(value, t, path)
        fields = {f.encode_name: f for f in t.fields}
        out: dict[str, object] = {}
        for key, item in value.items():
            field = fields.get(key)
            if field is None:
                close = difflib.get_close_matches(key, list(fields), 1)
                guess = f"did you mean {close[0]!r}? " if close else ""
                self._err(
                    (*path, key), f"unknown field {key!r} in {t.cls.__name__}",
                    f"{guess}remove it or use one of: {', '.join(sorted(fields))}",
                    "error" if self.strict else "warning", blocking=False,
                )
                continue
            checked = self.check(item, field.type, (*path, key))
            if checked is not _MISSING:
                out[key] = checked
        for name, field in fields.items():
            if field.required and name not in value:
                self._err(path, f"missing required field {name!r}",
                          f"add `{name}:` ({describe(field.type)})")
        return out
