"""Reusable, versioned subgraphs referenced as ``name@version`` (F-019)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from rspp.spec._model import PipelineSpec


class SubgraphResolver(Protocol):
    """Finds the spec of subgraph ``name`` at exactly ``version``."""

    def resolve(self, name: str, version: str) -> PipelineSpec | None: ...


class FileSubgraphResolver:
    """Looks for ``subgraphs/NAME@VERSION.yaml`` (or ``.json``) in ``search_dirs``."""

    def __init__(self, search_dirs: Sequence[str | Path]) -> None:
        self.search_dirs = tuple(Path(d) for d in search_dirs)

    @classmethod
    def near(cls, spec_file: str | Path) -> FileSubgraphResolver:
        """Search ``subgraphs/`` and ``pipelines/subgraphs/`` in the spec's dir and parents."""
        start = Path(spec_file).resolve().parent if str(spec_file) != "<string>" else Path.cwd()
        dirs: list[Path] = []
        for base in (start, *start.parents):
            dirs += [base / "subgraphs", base / "pipelines" / "subgraphs"]
        return cls(dirs)

    def candidates(self, name: str, version: str) -> tuple[Path, ...]:
        """Every path that would be tried, in order."""
        exts = ("yaml", "yml", "json")
        return tuple(d / f"{name}@{version}.{ext}" for d in self.search_dirs for ext in exts)

    def resolve(self, name: str, version: str) -> PipelineSpec | None:
        """Load the first existing candidate (its problems raise ``SpecInvalid``)."""
        from rspp.spec._loader import load_spec

        for path in self.candidates(name, version):
            if path.is_file():
                return load_spec(path)
        return None

    def available(self, name: str) -> tuple[str, ...]:
        """Versions of ``name`` present on disk (for hints)."""
        found = {
            p.stem.split("@", 1)[1]
            for d in self.search_dirs if d.is_dir()
            for p in d.glob(f"{name}@*.*")
        }
        return tuple(sorted(found))


class MappingSubgraphResolver:
    """In-memory resolver over ``{"name@version": spec}``."""

    def __init__(self, specs: Mapping[str, PipelineSpec]) -> None:
        self._specs = dict(specs)

    def resolve(self, name: str, version: str) -> PipelineSpec | None:
        """The spec registered as ``name@version``."""
        return self._specs.get(f"{name}@{version}")

    def available(self, name: str) -> tuple[str, ...]:
        """Registered versions of ``name``."""
        return tuple(sorted(k.split("@", 1)[1] for k in self._specs if k.startswith(name + "@")))
