"""Find and check the external node packages a spec names (F-171, NF-036).

:func:`locate` turns ``external:PATH[@sha256:HEX]`` into the manifest on disk (searched
like ``python:`` modules: current directory, then the spec's directory);
:func:`inventory` checks each external node of a spec and reports every finding
(``rspp node check``) instead of stopping at the first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rspp.nodes.external._manifest import ExternalNodeRefused, NodeManifest, load_manifest
from rspp.nodes.external._trust import Onboarded, onboard, sha256_file, trusted_keys

__all__ = ["EXTERNAL_PREFIX", "Located", "PackageReport", "inventory", "locate"]

EXTERNAL_PREFIX = "external:"


@dataclass(frozen=True)
class Located:
    """Where a pinned external type points: its relative name, pin and manifest file."""

    rel: str
    pinned: str | None
    manifest_path: Path

    @property
    def label(self) -> str:
        return f"external node {self.rel}"


@dataclass(frozen=True)
class PackageReport:
    """One external node of a spec: what the checks found."""

    node_id: str
    type_name: str
    name: str | None
    version: str | None
    artifact_sha256: str | None
    onboarded: Onboarded | None
    finding: str | None

    @property
    def compliant(self) -> bool:
        return self.finding is None


def locate(type_name: str, search: Sequence[Path]) -> Located:
    ref = type_name.removeprefix(EXTERNAL_PREFIX)
    rel, sep, digest = ref.rpartition("@sha256:")
    if not sep:
        rel, digest = ref, ""
    candidates = [Path(rel)] if Path(rel).is_absolute() else [d / rel for d in search]
    path = next((c for c in candidates if c.is_file()),
                candidates[0] if candidates else Path(rel))
    return Located(rel=rel, pinned=digest or None, manifest_path=path)


def check(type_name: str, search: Sequence[Path]) -> tuple[Located, NodeManifest, Onboarded]:
    """Locate, load and onboard one type; raises :class:`ExternalNodeRefused`."""
    where = locate(type_name, search)
    manifest = load_manifest(where.manifest_path)
    done = onboard(manifest, where.manifest_path.parent.resolve(), where.pinned, where.label,
                   trusted_keys())
    return where, manifest, done


def inventory(nodes: Sequence[tuple[str, str]], search: Sequence[Path]) -> list[PackageReport]:
    """Check every ``(node id, type)`` whose type is external; one report per node."""
    out = []
    for node_id, type_name in nodes:
        if not type_name.startswith(EXTERNAL_PREFIX):
            continue
        manifest: NodeManifest | None = None
        digest: str | None = None
        try:
            where = locate(type_name, search)
            manifest = load_manifest(where.manifest_path)
            artifact = manifest.path(where.manifest_path.parent, manifest.artifact)
            digest = sha256_file(artifact) if artifact.is_file() else None
            _, _, done = check(type_name, search)
        except ExternalNodeRefused as exc:
            out.append(PackageReport(node_id, type_name, manifest.name if manifest else None,
                                     manifest.version if manifest else None, digest, None,
                                     str(exc)))
            continue
        out.append(PackageReport(node_id, type_name, manifest.name, manifest.version, digest,
                                 done, None))
    return out
