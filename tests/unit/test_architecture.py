"""The house stays the way docs/architecture.md draws it.

Two rules over every ``import`` in ``src/rspp`` (module level, inside functions and
under ``TYPE_CHECKING`` alike: each is a dependency a reader has to follow):

* no import cycle between modules;
* no upward import between packages: a package imports only packages of a lower
  rank in :data:`LAYERS` (DESIGN section 2), or peers of its own rank as long as
  the packages of that rank do not import one another in a cycle.

A top-level package missing from :data:`LAYERS` fails the test: whoever adds one
places it in the layer order (and in docs/architecture.md).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import rspp

pytestmark = pytest.mark.unit

SRC = Path(rspp.__file__).resolve().parent

#: Top-level package (or module) of ``rspp`` -> rank; lower ranks never import higher.
#: ``""`` is ``rspp/__init__.py``, the face that re-exports the Node API.
LAYERS: dict[str, int] = {
    "_version": 0, "errors": 0, "_lazy": 0,
    "contracts": 1,
    "spec": 2,
    "kernel": 3, "": 3,
    "turns": 4,
    "nodes": 5, "providers": 5, "observability": 5,
    "replay": 6, "transports": 6, "controlplane": 6, "testing": 6,
    "runner": 7, "server": 7, "web": 7, "client": 7, "conformance": 7,
    "cli": 8,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _imports(name: str, path: Path, known: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """``(imported rspp module, line)`` for every import statement of one module."""
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "rspp" or alias.name.startswith("rspp."):
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod != "rspp" and not mod.startswith("rspp."):
                continue
            for alias in node.names:
                sub = f"{mod}.{alias.name}"
                yield (sub if sub in known else mod), node.lineno


def _graph() -> dict[str, dict[str, int]]:
    known = _modules()
    graph: dict[str, dict[str, int]] = {}
    for name, path in known.items():
        edges = graph.setdefault(name, {})
        for target, line in _imports(name, path, known):
            if target != name and target in known:
                edges.setdefault(target, line)
    return graph


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp: list[str] = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_top_level_package_has_a_layer() -> None:
    unplaced = sorted({_top(m) for m in _modules()} - set(LAYERS))
    assert not unplaced, (
        f"rspp.{unplaced[0]} has no place in the layer order: add it to LAYERS in "
        "tests/unit/test_architecture.py and to docs/architecture.md"
    )


def test_no_import_cycle_between_modules() -> None:
    graph = {m: set(edges) for m, edges in _graph().items()}
    cycles = _cycles(graph)
    assert not cycles, "import cycles (TYPE_CHECKING imports count): " + "; ".join(
        " <-> ".join(c) for c in cycles)


def test_no_upward_import_between_packages() -> None:
    upward = []
    for module, edges in _graph().items():
        src = _top(module)
        for target, line in edges.items():
            dst = _top(target)
            if src != dst and LAYERS.get(dst, 99) > LAYERS.get(src, 99):
                upward.append(f"{module}:{line} imports {target} "
                              f"(rank {LAYERS.get(src)} -> {LAYERS.get(dst)})")
    assert not upward, "imports pointing up the layer order:\n" + "\n".join(upward)


def test_peers_of_one_rank_do_not_import_one_another_in_a_cycle() -> None:
    packages: dict[str, set[str]] = {}
    for module, edges in _graph().items():
        src = _top(module)
        for target in edges:
            dst = _top(target)
            if src != dst:
                packages.setdefault(src, set()).add(dst)
    cycles = _cycles(packages)
    assert not cycles, "package-level import cycles: " + "; ".join(
        " <-> ".join(f"rspp.{p}" if p else "rspp" for p in c) for c in cycles)


def test_the_checks_catch_what_they_guard() -> None:
    """The cycle finder and rank rule see a planted cycle and a planted upward edge."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    assert LAYERS["kernel"] < LAYERS["turns"] < LAYERS["replay"] < LAYERS["cli"]
    graph = _graph()
    assert "rspp.kernel._node" in graph["rspp.kernel._host"]  # the host depends on the node API
    assert "rspp.kernel._events" in graph["rspp.kernel._node"]


def test_library_code_raises_typed_errors_instead_of_asserting() -> None:
    """``assert`` vanishes under ``python -O``: library code raises from the error tree."""
    found = [
        f"{path.relative_to(SRC)}:{node.lineno}"
        for path in sorted(SRC.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.Assert)
    ]
    assert found == [], found
