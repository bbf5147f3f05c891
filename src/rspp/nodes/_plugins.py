"""Custom node types in Python: ``type: python:MODULE:CLASS`` and ``rspp.nodes`` entry points.

A spec names a node class directly::

    nodes:
      - id: shout
        type: python:examples.my_nodes:Shout   # MODULE:CLASS, importable from the
        params: {suffix: "!"}                  # current directory or the spec's directory

or by the type name an installed distribution publishes in the ``rspp.nodes``
entry-point group (``acme.filler = acme_nodes:Filler``; ``name@version`` pins), or as an
external node package run out of process, pinned by its artifact's digest
(``external:DIR/rspp-node.json@sha256:HEX``, :mod:`rspp.nodes.external`; onboarding
checks run here, so ``rspp lint``/``run``/``serve`` refuse a non-compliant package).

:class:`NodeCatalog` is what ``rspp lint``, ``rspp run`` and ``rspp serve`` give the
spec compiler: the built-in signatures plus a signature derived from each custom
class (ports from ``inputs``/``outputs`` and ``port_types``, parameters from
``parameters``), so lint checks a custom node's edges and params like a built-in
one. Loading registers the class in the node registry the session is built from.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from rspp.errors import SpecError
from rspp.kernel import Node, NodeRegistry, UnknownNodeTypeError, default_registry
from rspp.nodes.external import (
    EXTERNAL_PREFIX,
    ExternalNodeRefused,
    check_external,
    external_node_class,
)
from rspp.spec import (
    BUILTIN_NODE_TYPES,
    NodeSignature,
    NodeTypeCatalog,
    PortSpec,
    PortType,
)

__all__ = ["PYTHON_PREFIX", "NodeCatalog", "NodeLoadError", "load_node_class", "signature_of"]

PYTHON_PREFIX = "python:"


class NodeLoadError(SpecError):
    """A ``python:`` node reference cannot be imported or is not a Node class."""


@contextmanager
def _importable(search: Sequence[Path]) -> Iterator[None]:
    added = [str(p) for p in search if str(p) not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for p in added:
            if p in sys.path:
                sys.path.remove(p)


def load_node_class(ref: str, search: Sequence[Path] = ()) -> type[Node]:
    """Import ``python:MODULE:CLASS`` (``search`` directories first on the import path)."""
    target = ref.removeprefix(PYTHON_PREFIX)
    module_name, sep, class_name = target.partition(":")
    if not sep or not module_name or not class_name.isidentifier():
        raise NodeLoadError(f"{ref!r}: expected python:MODULE:CLASS, e.g. "
                            "python:examples.my_nodes:Shout")
    try:
        with _importable(search):
            module = importlib.import_module(module_name)
    except ImportError as exc:
        where = ", ".join(str(p) for p in search) or "the import path"
        raise NodeLoadError(f"{ref!r}: cannot import module {module_name!r} ({exc}); "
                            f"it is looked up in {where}") from None
    except Exception as exc:  # the user's module raised while importing: say so, no traceback
        raise NodeLoadError(f"{ref!r}: importing {module_name!r} raised "
                            f"{type(exc).__name__}: {exc}") from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Node)):
        raise NodeLoadError(f"{ref!r}: {module_name}.{class_name} is "
                            f"{'missing' if cls is None else 'not a subclass of rspp.Node'}; "
                            "define `class " + class_name + "(rspp.Node)` in " + module_name)
    return cls


def _port(cls: type[Node], name: str) -> PortSpec:
    kind = cls.port_types.get(name, "any")
    try:
        port_type = PortType(kind)
    except ValueError:
        raise NodeLoadError(f"{cls.__qualname__}.port_types[{name!r}]={kind!r}: use one of "
                            f"{[t.value for t in PortType]}") from None
    return PortSpec(name=name, type=port_type, multi=name in cls.multi_inputs)


def signature_of(cls: type[Node], type_name: str | None = None) -> NodeSignature:
    """The compiler's view of a node class (ports, async, scope, declared params)."""
    params = cls.parameters
    return NodeSignature(
        type_name=type_name or cls.resolved_type_name(),
        inputs=tuple(_port(cls, p) for p in cls.inputs),
        outputs=tuple(_port(cls, p) for p in cls.outputs),
        is_async=cls.is_async(), default_scope=cls.scope, default_cancel_mode=cls.cancel_mode,
        default_params={p.name: p.default for p in params or () if p.default is not None},
        description=(cls.__doc__ or "").strip().split("\n")[0],
        params=params,
    )


class NodeCatalog(NodeTypeCatalog):
    """Built-in signatures + ``python:`` references + ``rspp.nodes`` entry points.

    Every custom class found is registered in ``registry`` (the one sessions are
    built from) under the type string the spec uses.
    """

    def __init__(self, search: Sequence[Path] = (), registry: NodeRegistry | None = None) -> None:
        self.search = tuple(search)
        self.registry = registry or default_registry
        self._problems: dict[str, str] = {}

    @classmethod
    def for_spec(cls, spec_path: Path, registry: NodeRegistry | None = None) -> NodeCatalog:
        """Modules are imported from the current directory, then the spec's directory."""
        return cls((Path.cwd(), spec_path.resolve().parent), registry)

    def signature(self, type_name: str) -> NodeSignature | None:
        builtin = BUILTIN_NODE_TYPES.signature(type_name)
        if builtin is not None:
            return builtin
        try:
            if type_name.startswith(PYTHON_PREFIX):
                node_cls = load_node_class(type_name, self.search)
                self.registry.register(node_cls, type_name)
            elif type_name.startswith(EXTERNAL_PREFIX):
                node_cls = self._external(type_name)
            else:
                node_cls = self.registry.resolve(type_name)
        except (NodeLoadError, UnknownNodeTypeError, ExternalNodeRefused) as exc:
            self._problems[type_name] = str(exc)
            return None
        return signature_of(node_cls, type_name)

    def names(self) -> tuple[str, ...]:
        return BUILTIN_NODE_TYPES.names()

    def _external(self, type_name: str) -> type[Node]:
        """Onboard ``external:PATH@sha256:HEX`` (every check, every time) and register it."""
        where, manifest, done = check_external(type_name, self.search)
        try:
            return self.registry.resolve(type_name)  # onboarded earlier in this process
        except UnknownNodeTypeError:
            pass
        package = where.manifest_path.parent.resolve()
        node_cls = external_node_class(type_name, manifest, package, done)
        self.registry.register(node_cls, EXTERNAL_PREFIX + where.rel, f"sha256:{done.digest}")
        return node_cls

    def why_unknown(self, type_name: str) -> str | None:
        """Why ``type_name`` has no signature (import error...), for the lint message."""
        return self._problems.get(type_name)
