"""Schema compatibility check (F-028, NF-010): is OLD -> NEW additive or breaking?

The rule within a major version is *additive only*: a record valid under OLD must
stay valid under NEW and every field a reader relied on must still be there.
Widening (new optional field, new enum value, looser bound, dropped requirement,
new ``anyOf`` branch) is additive; narrowing (removed field, newly required
field, changed/narrowed type, removed enum value, changed const or pattern,
tighter bound, object closed, new ``allOf``/``if`` rule) is breaking. Every change
is listed with its schema path so CI output says what to restore or which
version to bump.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

ChangeKind = Literal["additive", "breaking"]

_LOWER_BOUNDS = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_UPPER_BOUNDS = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")
_COMBINATORS_NARROWING = ("allOf",)
_COMBINATORS_WIDENING = ("anyOf", "oneOf")


class SchemaChange(msgspec.Struct, frozen=True):
    """One difference between two schemas, at a schema path."""

    path: str
    kind: ChangeKind
    message: str


class CompatReport(msgspec.Struct, frozen=True, kw_only=True):
    """Every change and the overall verdict (``breaking`` if any change is).

    ``old_version``/``new_version`` come from each document's top-level ``version``
    (or ``x-schema-version``); a breaking change is *allowed* only with a major bump.
    """

    changes: tuple[SchemaChange, ...]
    old_version: str | None = None
    new_version: str | None = None

    @property
    def major_bumped(self) -> bool:
        old, new = _major(self.old_version), _major(self.new_version)
        return old is not None and new is not None and new > old

    @property
    def allowed(self) -> bool:
        """Whether publishing NEW over OLD respects the versioning rules (NF-010)."""
        return self.verdict != "breaking" or self.major_bumped

    @property
    def verdict(self) -> Literal["identical", "additive", "breaking"]:
        if any(c.kind == "breaking" for c in self.changes):
            return "breaking"
        return "additive" if self.changes else "identical"

    @property
    def breaking(self) -> tuple[SchemaChange, ...]:
        return tuple(c for c in self.changes if c.kind == "breaking")


_VERSION = re.compile(r"^v?(?P<major>[0-9]+)(?:\.[0-9]+)*$")


def _major(version: str | None) -> int | None:
    match = _VERSION.match(version or "")
    return int(match["major"]) if match else None


def _doc_version(doc: Mapping[str, Any]) -> str | None:
    for key in ("version", "x-schema-version"):
        value = doc.get(key)
        if isinstance(value, str):
            return value
    return None


def _types(schema: Mapping[str, Any]) -> set[str] | None:
    t = schema.get("type")
    if t is None:
        return None
    found = {t} if isinstance(t, str) else set(t)
    if "number" in found:
        found.add("integer")
    return found


def _show(value: object) -> str:
    return json.dumps(value, sort_keys=True)


class _Comparer:
    def __init__(self, old_doc: Mapping[str, Any], new_doc: Mapping[str, Any]) -> None:
        self.old_doc = old_doc
        self.new_doc = new_doc
        self.changes: list[SchemaChange] = []
        self._seen: set[tuple[str, str, str]] = set()

    def add(self, path: str, kind: ChangeKind, message: str) -> None:
        self.changes.append(SchemaChange(path or "<root>", kind, message))

    def _deref(
        self, doc: Mapping[str, Any], schema: Mapping[str, Any]
    ) -> tuple[Mapping[str, Any], str]:
        ref = schema.get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#/"):
            return schema, ""
        node: Any = doc
        for part in ref[2:].split("/"):
            if not isinstance(node, Mapping) or part not in node:
                return {}, ref
            node = node[part]
        merged = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
        return merged, ref

    def compare(self, old: Any, new: Any, path: str) -> None:
        if isinstance(old, bool) or isinstance(new, bool):
            if old != new:
                kind: ChangeKind = "additive" if new is True or new == {} else "breaking"
                self.add(path, kind, f"schema changed from {_show(old)} to {_show(new)}")
            return
        if not isinstance(old, Mapping) or not isinstance(new, Mapping):
            return
        if old.get("$ref") == new.get("$ref") and "$ref" in old:
            # Same target: the target is compared once under $defs; compare siblings only.
            old = {k: v for k, v in old.items() if k != "$ref"}
            new = {k: v for k, v in new.items() if k != "$ref"}
        old, old_ref = self._deref(self.old_doc, old)
        new, new_ref = self._deref(self.new_doc, new)
        key = (path, old_ref, new_ref)
        if (old_ref or new_ref) and key in self._seen:
            return
        self._seen.add(key)
        self._type(old, new, path)
        self._values(old, new, path)
        self._bounds(old, new, path)
        self._object(old, new, path)
        if "items" in old or "items" in new:
            self.compare(old.get("items", True), new.get("items", True), f"{path}[]")
        self._combinators(old, new, path)

    def _type(self, old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> None:
        ot, nt = _types(old), _types(new)
        if ot == nt:
            return
        if nt is None:
            self.add(path, "additive", f"type constraint {sorted(ot or ())} removed")
        elif ot is None or not ot <= nt:
            lost = sorted((ot or {"any"}) - nt)
            self.add(
                path,
                "breaking",
                f"type narrowed: {sorted(ot or {'any'})} -> {sorted(nt)} (lost {lost})",
            )
        else:
            self.add(path, "additive", f"type widened: {sorted(ot)} -> {sorted(nt)}")

    def _values(self, old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> None:
        if "enum" in old or "enum" in new:
            oe = [_show(v) for v in old.get("enum", [])]
            ne = [_show(v) for v in new.get("enum", [])]
            if "enum" not in new:
                self.add(path, "additive", "enum restriction removed")
            elif "enum" not in old:
                self.add(path, "breaking", f"enum restriction added: {', '.join(ne)}")
            else:
                removed = [v for v in oe if v not in ne]
                added = [v for v in ne if v not in oe]
                if removed:
                    self.add(path, "breaking", f"enum value(s) removed: {', '.join(removed)}")
                if added:
                    self.add(path, "additive", f"enum value(s) added: {', '.join(added)}")
        if old.get("const", ...) != new.get("const", ...):
            if "const" not in new:
                self.add(path, "additive", f"const {_show(old['const'])} removed")
            elif "const" not in old:
                self.add(path, "breaking", f"const {_show(new['const'])} added")
            else:
                self.add(
                    path,
                    "breaking",
                    f"const changed: {_show(old['const'])} -> {_show(new['const'])}",
                )
        if old.get("pattern") != new.get("pattern"):
            if "pattern" not in new:
                self.add(path, "additive", "pattern removed")
            else:
                self.add(
                    path,
                    "breaking",
                    f"pattern changed: {old.get('pattern')!r} -> {new['pattern']!r}",
                )

    def _bounds(self, old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> None:
        for name in (*_LOWER_BOUNDS, *_UPPER_BOUNDS):
            a, b = old.get(name), new.get(name)
            if a == b:
                continue
            lower = name in _LOWER_BOUNDS
            if b is None:
                self.add(path, "additive", f"{name} {a} removed")
            elif a is None or (b > a if lower else b < a):
                self.add(path, "breaking", f"{name} tightened: {a} -> {b}")
            else:
                self.add(path, "additive", f"{name} loosened: {a} -> {b}")
        if old.get("uniqueItems") != new.get("uniqueItems"):
            kind: ChangeKind = "breaking" if new.get("uniqueItems") else "additive"
            self.add(
                path, kind, f"uniqueItems {old.get('uniqueItems')} -> {new.get('uniqueItems')}"
            )

    def _object(self, old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> None:
        op: Mapping[str, Any] = old.get("properties", {})
        np: Mapping[str, Any] = new.get("properties", {})
        oreq, nreq = set(old.get("required", ())), set(new.get("required", ()))
        prefix = f"{path}." if path else ""
        for name in op:
            if name not in np:
                self.add(f"{prefix}{name}", "breaking", "field removed")
            else:
                self.compare(op[name], np[name], f"{prefix}{name}")
        for name in np:
            if name not in op:
                if name in nreq:
                    self.add(f"{prefix}{name}", "breaking", "new required field")
                else:
                    self.add(f"{prefix}{name}", "additive", "new optional field")
        for name in sorted(nreq - oreq):
            if name in op or name not in np:
                self.add(f"{prefix}{name}", "breaking", "field is now required")
        for name in sorted(oreq - nreq):
            self.add(f"{prefix}{name}", "additive", "field is no longer required")
        oa, na = old.get("additionalProperties", True), new.get("additionalProperties", True)
        if oa is not False and na is False:
            self.add(path, "breaking", "object closed (additionalProperties: false)")
        elif oa is False and na is not False:
            self.add(path, "additive", "object opened to unknown fields")
        elif isinstance(oa, Mapping) or isinstance(na, Mapping):
            self.compare(oa, na, f"{prefix}*")

    def _combinators(self, old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> None:
        for name in (*_COMBINATORS_NARROWING, *_COMBINATORS_WIDENING):
            ol: list[Any] = list(old.get(name, []))
            nl: list[Any] = list(new.get(name, []))
            for i in range(min(len(ol), len(nl))):
                self.compare(ol[i], nl[i], f"{path}/{name}[{i}]")
            narrowing = name in _COMBINATORS_NARROWING
            for i in range(len(ol), len(nl)):
                kind: ChangeKind = "breaking" if narrowing else "additive"
                self.add(f"{path}/{name}[{i}]", kind, f"{name} entry added")
            for i in range(len(nl), len(ol)):
                kind = "additive" if narrowing else "breaking"
                self.add(f"{path}/{name}[{i}]", kind, f"{name} entry removed")
        for name in ("if", "then", "else", "not"):
            before, after = old.get(name), new.get(name)
            if _show(before) == _show(after):
                continue
            if after is None:
                self.add(f"{path}/{name}", "additive", f"conditional rule '{name}' removed")
            else:
                verb = "added" if before is None else "changed"
                self.add(f"{path}/{name}", "breaking", f"conditional rule '{name}' {verb}")


def compare_schemas(old: Mapping[str, Any], new: Mapping[str, Any]) -> CompatReport:
    """Classify every change from ``old`` to ``new`` (roots and every ``$defs`` entry)."""
    comparer = _Comparer(old, new)
    comparer.compare(
        {k: v for k, v in old.items() if k != "$defs"},
        {k: v for k, v in new.items() if k != "$defs"},
        "",
    )
    old_defs: Mapping[str, Any] = old.get("$defs", {})
    new_defs: Mapping[str, Any] = new.get("$defs", {})
    for name in old_defs:
        if name not in new_defs:
            comparer.add(f"$defs/{name}", "breaking", "definition removed")
        else:
            comparer.compare(old_defs[name], new_defs[name], f"$defs/{name}")
    for name in new_defs:
        if name not in old_defs:
            comparer.add(f"$defs/{name}", "additive", "definition added")
    unique = dict.fromkeys(comparer.changes)
    return CompatReport(
        changes=tuple(unique), old_version=_doc_version(old), new_version=_doc_version(new)
    )
