"""YAML (and JSON) loading that keeps the line/column of every key and item."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from rspp.spec._issues import LintIssue, Severity

PathPart = str | int
Path = tuple[PathPart, ...]


def format_path(path: Path) -> str:
    """Render ``("nodes", 2, "type")`` as ``nodes[2].type`` (``<root>`` when empty)."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "<root>"


@dataclass(frozen=True)
class SourceMap:
    """1-based line/column of every mapping key and sequence item of a document."""

    file: str
    positions: Mapping[Path, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: Path) -> tuple[int, int]:
        """Position of ``path`` or of its nearest located ancestor (1, 1 if none)."""
        probe = tuple(path)
        while probe:
            found = self.positions.get(probe)
            if found is not None:
                return found
            probe = probe[:-1]
        return self.positions.get((), (1, 1))

    def issue(
        self,
        path: Path,
        message: str,
        hint: str,
        severity: Severity = "error",
        *,
        at: Path | None = None,
    ) -> LintIssue:
        """Build a :class:`LintIssue` located at ``at`` (default ``path``)."""
        line, col = self.locate(at if at is not None else path)
        return LintIssue(self.file, line, col, format_path(path), message, hint, severity)


MAX_NODES = 200_000
"""Most values one document may expand to (aliases are expanded, so an alias bomb stops here)."""


class _TooDeep(Exception):
    """Raised by :class:`_Flattener` for a self-referencing alias or an alias bomb."""

    def __init__(self, path: Path, message: str, hint: str) -> None:
        super().__init__(message)
        self.path, self.message, self.hint = path, message, hint


class _Flattener:
    """Turn ruamel's round-trip tree into plain dicts/lists, recording positions.

    Guards against hostile input: an alias that contains itself (``&a [*a]``) and
    alias bombs (nested aliases that expand exponentially) become issues, not a
    RecursionError or unbounded memory.
    """

    def __init__(self, positions: dict[Path, tuple[int, int]]) -> None:
        self.positions = positions
        self.active: set[int] = set()
        self.count = 0

    def plain(self, node: object, path: Path) -> object:
        self.count += 1
        if self.count > MAX_NODES:
            raise _TooDeep(path, f"the document expands to more than {MAX_NODES} values",
                           "split the spec or avoid nesting YAML aliases (&anchor / *alias)")
        if not isinstance(node, (dict, list)):
            return _scalar(node)
        if id(node) in self.active:
            raise _TooDeep(path, "a YAML alias refers to a collection that contains it",
                           "remove the self-referencing *alias")
        self.active.add(id(node))
        try:
            return self._collection(node, path)
        finally:
            self.active.discard(id(node))

    def _collection(self, node: dict[object, object] | list[object], path: Path) -> object:
        positions = self.positions
        if isinstance(node, CommentedMap):
            out: dict[str, object] = {}
            for key in node:
                child = (*path, str(key))
                line, col = node.lc.key(key)
                positions[child] = (line + 1, col + 1)
                out[str(key)] = self.plain(node[key], child)
            return out
        if isinstance(node, CommentedSeq):
            items: list[object] = []
            for index, value in enumerate(node):
                child = (*path, index)
                line, col = node.lc.item(index)
                positions[child] = (line + 1, col + 1)
                items.append(self.plain(value, child))
            return items
        if isinstance(node, dict):
            return {str(k): self.plain(v, (*path, str(k))) for k, v in node.items()}
        return [self.plain(v, (*path, i)) for i, v in enumerate(node)]


def _scalar(node: object) -> object:
    if isinstance(node, str):
        return str(node)
    if isinstance(node, bool) or type(node).__name__ == "ScalarBoolean":
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, (datetime.date, datetime.datetime)):
        return node.isoformat()
    return node


def load_document(text: str, filename: str) -> tuple[object, SourceMap, list[LintIssue]]:
    """Parse ``text``; return the plain tree, its source map and syntax issues (if any)."""
    yaml = YAML(typ="rt")
    positions: dict[Path, tuple[int, int]] = {(): (1, 1)}
    try:
        raw = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        col = mark.column + 1 if mark is not None else 1
        problem = exc.problem or exc.context or "invalid YAML"
        hint = (
            "fix the YAML syntax at this position (indentation, a missing ':' or quote, "
            "or a duplicated key)"
        )
        return None, SourceMap(filename, positions), [
            LintIssue(filename, line, col, "<root>", f"YAML syntax error: {problem}", hint)
        ]
    except YAMLError as exc:
        return None, SourceMap(filename, positions), [
            LintIssue(filename, 1, 1, "<root>", f"YAML error: {exc}", "fix the YAML document")
        ]
    try:
        tree = _Flattener(positions).plain(raw, ())
    except _TooDeep as exc:
        source = SourceMap(filename, positions)
        return None, source, [source.issue(exc.path, exc.message, exc.hint)]
    return tree, SourceMap(filename, positions), []
