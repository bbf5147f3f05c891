"""Published specs and their subgraph modules, as the runtime fetches and publishes them (F-019).

A published pipeline pins every subgraph module it uses (``name@version`` -> content
hash). The runtime compiles a fetched spec against exactly those module texts, fetched
from the same control plane; the embedded server publishes the modules a spec file
references (found next to it, as ``rspp run`` finds them) before the spec itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rspp.controlplane import ControlPlaneClient
from rspp.errors import RSPPError
from rspp.spec import (
    FileSubgraphResolver,
    MappingSubgraphResolver,
    PipelineSpec,
    load_spec,
    parse_spec_text,
    spec_hash,
)

__all__ = ["ModuleMismatch", "fetch_pinned_modules", "publish_spec_file"]


class ModuleMismatch(RSPPError):
    """A fetched module's content is not the one the pipeline pinned."""


async def fetch_pinned_modules(
    client: ControlPlaneClient, pinned: Mapping[str, str]
) -> MappingSubgraphResolver:
    """The pinned modules of a published pipeline, checked against their pinned hashes."""
    specs: dict[str, PipelineSpec] = {}
    for ref, digest in sorted(pinned.items()):
        name, _, version = ref.partition("@")
        record = await client.get_module(name, version)
        module = parse_spec_text(str(record["content_text"]), ref)
        if spec_hash(module) != digest:
            raise ModuleMismatch(f"subgraph module {ref} has hash {spec_hash(module)[:12]}, "
                                 f"the pipeline pinned {digest[:12]}")
        specs[ref] = module
    return MappingSubgraphResolver(specs)


async def publish_spec_file(client: ControlPlaneClient, path: Path) -> Any:
    """Publish the modules ``path`` references (found beside it), then the spec itself."""
    modules, spec_text = await asyncio.to_thread(_texts_near, path)
    for text in modules:
        await client.publish_module(text)
    return await client.publish(spec_text, str(path))


def _texts_near(path: Path) -> tuple[list[str], str]:
    """The texts of the modules a spec file references, deepest first, and the spec's text."""
    resolver = FileSubgraphResolver.near(path)
    pending = [use.use for use in load_spec(path).subgraphs]
    seen: set[str] = set()
    texts: list[str] = []
    while pending:
        ref = pending.pop()
        if ref in seen:
            continue
        seen.add(ref)
        name, _, version = ref.partition("@")
        found = next((p for p in resolver.candidates(name, version) if p.is_file()), None)
        if found is None:
            continue  # the control plane names the missing module when the spec is published
        texts.append(found.read_text())
        pending.extend(use.use for use in load_spec(found).subgraphs)
    # a module's own modules must be published before it
    return texts[::-1], path.read_text()
