"""YAML (and JSON) loading that keeps the line/column of every key and item.

Hostile input is refused before the parser sees it: a document over
:data:`MAX_SPEC_BYTES` or nested deeper than :data:`MAX_SPEC_DEPTH` (block
indentation and flow brackets, estimated by a linear scan) is one issue, never
a ``RecursionError`` or a long parse. While flattening, explicit tags other
than the core ones (``!!python/...``, ``!!binary``, custom ``!tags``) are
issues too; merge keys (``<<: *base``) are expanded.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
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

MAX_SPEC_BYTES = 1 << 20
"""Largest spec document accepted (1 MiB of text)."""

MAX_SPEC_DEPTH = 64
"""Deepest nesting of mappings/sequences accepted (real specs stay under 10)."""

_CORE_TAGS = frozenset(f"tag:yaml.org,2002:{name}"
                       for name in ("str", "int", "float", "bool", "null", "map", "seq"))
_STRIP = re.compile(r"""'[^'\n]*'|"(?:[^"\\\n]|\\.)*"|(?:^|(?<=\s))#.*""")
_BLOCK_SCALAR = re.compile(r"""[|>][0-9+-]*\s*$""")
_ITEM = re.compile(r"(?:-\s+)+")


def nesting_depth(text: str, limit: int = MAX_SPEC_DEPTH) -> tuple[int, int]:
    """Estimated nesting depth of a YAML/JSON document and the 1-based line reaching it.

    A linear scan (no parsing): block depth counts increasing indentation levels
    and ``- `` item markers, flow depth counts ``[``/``{`` outside quotes and
    comments. Stops early once ``limit`` is exceeded.
    """
    indents: list[int] = []
    flow = deepest = 0
    where = 1
    scalar_indent: int | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.lstrip(" ")
        indent = len(raw) - len(stripped)
        if scalar_indent is not None:
            if not stripped or indent > scalar_indent:
                continue  # inside a literal/folded block scalar
            scalar_indent = None
        line = _STRIP.sub("", stripped).rstrip()
        if not line:
            continue
        if flow == 0:
            while indents and indents[-1] >= indent:
                indents.pop()
            indents.append(indent)
        items = _ITEM.match(line)
        block = len(indents) + (items.group(0).count("-") if items else 0)
        for char in line:
            if char in "[{":
                flow += 1
                if block + flow > deepest:
                    deepest, where = block + flow, number
            elif char in "]}":
                flow = max(0, flow - 1)
        if block + flow > deepest:
            deepest, where = block + flow, number
        if deepest > limit:
            break
        if _BLOCK_SCALAR.search(line):
            scalar_indent = indent
    return deepest, where


class _TooDeep(Exception):
    """Raised by :class:`_Flattener` for input it refuses (alias loops/bombs, tags)."""

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
        tag = getattr(getattr(node, "tag", None), "value", None)
        if tag is not None and tag not in _CORE_TAGS:
            raise _TooDeep(path, f"YAML tag {tag!r} is not allowed in a spec",
                           "remove the tag; a spec holds plain mappings, lists, strings, "
                           "numbers and booleans")
        if isinstance(node, TaggedScalar):
            node = node.value
        if isinstance(node, bytes | bytearray | set | frozenset):
            raise _TooDeep(path, f"a YAML {type(node).__name__} value is not allowed in a spec",
                           "use a plain string or list instead of !!binary / !!set")
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
                where = node.lc.key(key)  # None for keys merged in with `<<: *anchor`
                positions[child] = ((where[0] + 1, where[1] + 1) if where is not None
                                    else positions.get(path, (1, 1)))
                out[str(key)] = self.plain(node[key], child)
            return out
        if isinstance(node, CommentedSeq):
            items: list[object] = []
            for index, value in enumerate(node):
                child = (*path, index)
                where = node.lc.item(index)
                positions[child] = ((where[0] + 1, where[1] + 1) if where is not None
                                    else positions.get(path, (1, 1)))
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
    positions: dict[Path, tuple[int, int]] = {(): (1, 1)}
    refused = _refuse(text, filename)
    if refused is not None:
        return None, SourceMap(filename, positions), [refused]
    yaml = YAML(typ="rt")
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
        message = " ".join(str(exc).split())
        return None, SourceMap(filename, positions), [
            LintIssue(filename, 1, 1, "<root>", f"YAML error: {message}", "fix the YAML document")
        ]
    except RecursionError:  # backstop: the depth scan estimates, the parser is recursive
        return None, SourceMap(filename, positions), [_too_deep(filename, 1, MAX_SPEC_DEPTH + 1)]
    try:
        tree = _Flattener(positions).plain(raw, ())
    except RecursionError:
        return None, SourceMap(filename, positions), [_too_deep(filename, 1, MAX_SPEC_DEPTH + 1)]
    except _TooDeep as exc:
        source = SourceMap(filename, positions)
        return None, source, [source.issue(exc.path, exc.message, exc.hint)]
    return tree, SourceMap(filename, positions), []


def _too_deep(filename: str, line: int, depth: int) -> LintIssue:
    return LintIssue(filename, line, 1, "<root>",
                     f"the document nests {depth} levels deep, over the limit of {MAX_SPEC_DEPTH}",
                     "flatten the spec; pipeline specs need only a few levels of nesting")


def _refuse(text: str, filename: str) -> LintIssue | None:
    """The size/depth issue of ``text``, checked before any parsing (None when within limits)."""
    if len(text) > MAX_SPEC_BYTES:
        return LintIssue(filename, 1, 1, "<root>",
                         f"the document has {len(text)} characters, over the limit of "
                         f"{MAX_SPEC_BYTES}", "split the spec into subgraphs")
    depth, line = nesting_depth(text)
    if depth > MAX_SPEC_DEPTH:
        return _too_deep(filename, line, depth)
    return None
