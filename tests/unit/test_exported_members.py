"""Every public package lists exactly its public names in ``__all__``."""

from __future__ import annotations

import importlib
import pkgutil
import types

import pytest

import rspp

pytestmark = pytest.mark.unit


def _packages() -> list[str]:
    names = ["rspp"]
    for info in pkgutil.walk_packages(rspp.__path__, prefix="rspp."):
        leaf = info.name.rsplit(".", 1)[-1]
        if info.ispkg and not leaf.startswith("_") and ".testing.fakes" not in info.name:
            names.append(info.name)
    return names


@pytest.mark.parametrize("package_name", _packages())
def test_all_lists_every_public_name(package_name: str) -> None:
    package = importlib.import_module(package_name)
    exported = getattr(package, "__all__", None)
    for name in exported or ():  # resolves names a package loads lazily (PEP 562 __getattr__)
        assert hasattr(package, name), f"{package_name}.__all__ names {name!r} which does not exist"
    public = {
        name
        for name, value in vars(package).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name not in {"annotations"}
    }
    if exported is None:
        assert not public, f"{package_name} has public names but no __all__: {sorted(public)}"
        return
    assert set(exported) - {"__version__"} == public, (
        f"{package_name}.__all__ mismatch: missing {sorted(public - set(exported))}, "
        f"extra {sorted(set(exported) - public)}"
    )
