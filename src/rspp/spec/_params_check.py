"""Lint of node ``params:`` against the parameters a node type declares."""

from __future__ import annotations

import difflib
from datetime import date

from rspp.spec._catalog import NodeSignature, ParamSpec
from rspp.spec._deprecations import today
from rspp.spec._expand import FlatNode
from rspp.spec._issues import LintIssue

__all__ = ["GENERIC_PARAMS", "check_params"]

#: read by the runtime for every node type (execution pool limits)
GENERIC_PARAMS = ("concurrency_limit", "fairness_key")

_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,), "int": (int,), "float": (int, float), "bool": (bool,),
    "list": (list, tuple), "map": (dict,),
}


def _type_ok(spec: ParamSpec, value: object) -> bool:
    if spec.type == "any" or value is None:
        return True
    if spec.type in ("int", "float") and isinstance(value, bool):
        return False
    return isinstance(value, _TYPES[spec.type])


def check_params(node: FlatNode, sig: NodeSignature, as_of: date | None = None,
                 ) -> list[LintIssue]:
    """Unknown names (warning; error under ``--strict``), wrong types and choices (errors),
    deprecated names in their lifecycle phase on ``as_of`` (default: today, UTC)."""
    if sig.params is None:
        return []
    day = as_of or today()
    declared = {p.name: p for p in sig.params}
    known = sorted(declared)
    issues: list[LintIssue] = []
    for key, value in node.spec.params.items():
        path = (*node.path, "params", key)
        spec = declared.get(key)
        if spec is None:
            if key in GENERIC_PARAMS:
                continue
            close = difflib.get_close_matches(key, known, 1)
            guess = f"did you mean {close[0]!r}? " if close else ""
            issues.append(node.src.issue(
                path, f"unknown param {key!r} for node type {sig.type_name!r}",
                f"{guess}known params: {', '.join(known) or '(none)'}", "warning"))
        elif spec.deprecated is not None and spec.deprecated.phase(day) is not None:
            dep = spec.deprecated
            issues.append(node.src.issue(
                path, dep.message(f"param {key!r} of node type {sig.type_name!r}", day),
                dep.migration, "warning" if dep.phase(day) == "warning" else "error"))
        elif not _type_ok(spec, value):
            issues.append(node.src.issue(
                path, f"param {key}={value!r} must be {spec.type}, got {type(value).__name__}",
                f"{spec.description or key}: give a {spec.type}"))
        elif spec.choices and value not in spec.choices:
            issues.append(node.src.issue(
                path, f"param {key}={value!r} is not one of {list(spec.choices)}",
                f"use one of: {', '.join(str(c) for c in spec.choices)}"))
    return issues
