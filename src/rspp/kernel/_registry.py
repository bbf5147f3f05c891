"""Node type registry: type name (+ independent version) -> Node class (F-010, F-121).

Types come from explicit registration or from installed distributions through
the ``rspp.nodes`` entry-point group (entry name ``type`` or ``type@version``),
so custom nodes are packaged and versioned independently of specs.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points

from rspp.errors import RuntimeKernelError
from rspp.kernel._node import Node

__all__ = ["ENTRY_POINT_GROUP", "NodeRegistry", "UnknownNodeTypeError", "default_registry"]

ENTRY_POINT_GROUP = "rspp.nodes"


class UnknownNodeTypeError(RuntimeKernelError):
    """A spec references a node type (or version) nobody registered."""


def _vkey(v: str) -> tuple[int, ...]:
    parts = []
    for p in v.lstrip("v").split("."):
        parts.append(int(p) if p.isdigit() else 0)
    return tuple(parts)


class NodeRegistry:
    """Maps ``type`` / ``type@version`` to Node classes."""

    def __init__(self) -> None:
        self._types: dict[str, dict[str, type[Node]]] = {}
        self._loaded_groups: set[str] = set()

    def register(
        self, node_cls: type[Node], type_name: str | None = None, version: str | None = None
    ) -> type[Node]:
        """Register ``node_cls``; re-registering the same class is a no-op."""
        if not (isinstance(node_cls, type) and issubclass(node_cls, Node)):
            raise TypeError(f"{node_cls!r} is not a subclass of rspp.Node")
        name = type_name or node_cls.resolved_type_name()
        ver = version or node_cls.version
        versions = self._types.setdefault(name, {})
        existing = versions.get(ver)
        if existing is not None and existing is not node_cls:
            raise RuntimeKernelError(
                f"node type {name!r} version {ver!r} is already registered by "
                f"{existing.__qualname__}; bump the node's version or use another type name"
            )
        versions[ver] = node_cls
        return node_cls

    def node(
        self, type_name: str | None = None, version: str | None = None
    ) -> Callable[[type[Node]], type[Node]]:
        """Class decorator form of :meth:`register`."""

        def deco(cls: type[Node]) -> type[Node]:
            return self.register(cls, type_name, version)

        return deco

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> int:
        """Register every node class advertised by installed distributions."""
        n = 0
        for ep in entry_points(group=group):
            name, _, ver = ep.name.partition("@")
            cls = ep.load()
            self.register(cls, name, ver or None)
            n += 1
        self._loaded_groups.add(group)
        return n

    def resolve(self, type_ref: str) -> type[Node]:
        """``"name"`` (newest version) or ``"name@version"`` (pinned) to a class."""
        name, _, ver = type_ref.partition("@")
        versions = self._types.get(name)
        if versions is None and ENTRY_POINT_GROUP not in self._loaded_groups:
            self.load_entry_points()
            versions = self._types.get(name)
        if not versions:
            known = ", ".join(sorted(self._types)) or "none"
            raise UnknownNodeTypeError(
                f"node type {name!r} is not registered (known: {known}); register it with "
                f"NodeRegistry.register or publish it under the {ENTRY_POINT_GROUP!r} "
                "entry-point group"
            )
        if ver:
            cls = versions.get(ver) or versions.get(ver.lstrip("v"))
            if cls is None:
                raise UnknownNodeTypeError(
                    f"node type {name!r} has no version {ver!r} (available: {sorted(versions)})"
                )
            return cls
        return versions[max(versions, key=_vkey)]

    def versions(self, type_name: str) -> list[str]:
        return sorted(self._types.get(type_name, {}), key=_vkey)

    def __contains__(self, type_ref: object) -> bool:
        if not isinstance(type_ref, str):
            return False
        try:
            self.resolve(type_ref)
        except UnknownNodeTypeError:
            return False
        return True


#: The process-wide registry built-in nodes register into.
default_registry = NodeRegistry()
