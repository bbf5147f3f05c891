"""Names a package imports on first use (PEP 562 module ``__getattr__``/``__dir__``).

A package whose ``__init__`` re-exports names from its submodules makes every import of
one submodule pay for all of them; with :func:`lazy_names` each name is imported from
its module when first asked for (then kept in the package's namespace).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, MutableMapping

__all__ = ["lazy_names"]


def lazy_names(package: str, where: Mapping[str, str], namespace: MutableMapping[str, object]
               ) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The package's ``__getattr__`` and ``__dir__``: ``where`` maps each lazily imported
    name to the module defining it, ``namespace`` is the package's ``globals()``."""

    def __getattr__(name: str) -> object:
        home = where.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *where})

    return __getattr__, __dir__
