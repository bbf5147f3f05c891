"""Where a served session's artifacts are stored, within its tenant's residency (F-168).

A runtime declares its storage roots per region (``rspp serve --timeline-dir DIR``: a root
in the runtime's own region; ``--artifact-dir REGION=DIR``, repeatable: a root in REGION,
such as a mount of that region's storage) and registers those regions with the control
plane, whose placement sends a tenant restricted to some regions only to runtimes that
run in one of them and store in one of them.

At each session's start the runtime picks the root for its timeline (and the recordings
in it) from the tenant's placement policy that the start answer carries: its own
region's root when the policy allows that region, else the first root in a region it
allows; a session none of whose roots the policy allows is refused
(``residency_violation``) rather than recorded outside its regions. Without a policy the
runtime's own region's root is used (else the first). The choice is reported to the
control plane with the session's ``running`` status and audited ``residency.artifacts``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from rspp.controlplane import TenantPlacement
from rspp.server._cplink import SessionRefused

__all__ = ["ArtifactRoots", "ArtifactSite", "artifact_roots", "parse_artifact_dir"]


class SessionPolicyLike(Protocol):
    """What :func:`artifact_roots` reads of a runtime's session policy."""

    @property
    def timeline_dir(self) -> Path | None: ...

    @property
    def artifact_dirs(self) -> dict[str, Path]: ...


@dataclass(frozen=True, slots=True)
class ArtifactSite:
    """The chosen root of one session: its region and directory."""

    region: str
    directory: Path


@dataclass(frozen=True, slots=True)
class ArtifactRoots:
    """The runtime's storage roots by region (module docstring)."""

    #: the runtime's own region
    home: str
    roots: dict[str, Path]

    @property
    def regions(self) -> list[str] | None:
        """The regions to register (None: the runtime stores no artifacts)."""
        return sorted(self.roots) or None

    def site_for(self, session_id: str, tenant_id: str,
                 policy: TenantPlacement | None) -> ArtifactSite | None:
        """Where ``session_id``'s artifacts go (None: nothing is stored); raises
        :class:`SessionRefused` when no root is inside the tenant's regions."""
        if not self.roots:
            return None
        allowed = None if policy is None or policy.regions is None else set(policy.regions)
        order = [self.home, *sorted(r for r in self.roots if r != self.home)]
        for region in order:
            if region in self.roots and (allowed is None or region in allowed):
                return ArtifactSite(region=region, directory=self.roots[region])
        raise SessionRefused(
            "residency_violation",
            f"session {session_id}: tenant {tenant_id} keeps its artifacts in "
            f"{', '.join(sorted(allowed or ()))}; this runtime stores them only in "
            f"{', '.join(sorted(self.roots))}: the session is refused, nothing is recorded")


def artifact_roots(policy: SessionPolicyLike, home: str) -> ArtifactRoots:
    """The roots of a runtime in region ``home``: ``timeline_dir`` there, ``artifact_dirs``
    by region."""
    roots = dict(policy.artifact_dirs)
    if policy.timeline_dir is not None:
        roots.setdefault(home, policy.timeline_dir)
    return ArtifactRoots(home=home, roots=roots)


def parse_artifact_dir(text: str) -> tuple[str, Path]:
    """``REGION=DIR`` -> (region, path); ValueError naming what is wrong."""
    region, sep, directory = text.partition("=")
    if not sep or not region or not directory:
        raise ValueError(f"{text!r}: use REGION=DIR, e.g. eu=/var/lib/rspp/eu")
    return region, Path(directory)
