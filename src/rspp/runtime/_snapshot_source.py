"""Where the plan resolver reads the turn-start snapshots from.

:class:`SnapshotSource` is the control-plane client interface the runtime
depends on (the production runtime implements it over HTTP, in
``rspp.controlplane``); :class:`StaticSnapshotSource` is the in-process
implementation used by the local runner and tests.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from rspp.contracts import TurnStartBundle

__all__ = ["SnapshotSource", "StaticSnapshotSource"]


@runtime_checkable
class SnapshotSource(Protocol):
    """Reads the six versioned turn-start snapshots for one session."""

    async def turn_start_bundle(
        self, *, tenant_id: str, session_id: str, pipeline_name: str, runtime_id: str
    ) -> TurnStartBundle: ...


class StaticSnapshotSource:
    """In-process source: a default bundle plus optional per-tenant bundles.

    ``set`` replaces a bundle atomically; a turn that already resolved its plan
    keeps the snapshots it read (plan freeze), the next turn sees the new ones.
    ``reads`` counts calls, for tests and diagnostics.
    """

    def __init__(self, bundle: TurnStartBundle | None = None) -> None:
        self._default = bundle if bundle is not None else TurnStartBundle()
        self._by_tenant: dict[str, TurnStartBundle] = {}
        self.reads = 0

    def set(self, bundle: TurnStartBundle, *, tenant_id: str | None = None) -> None:
        if tenant_id is None:
            self._default = bundle
        else:
            self._by_tenant[tenant_id] = bundle

    async def turn_start_bundle(
        self, *, tenant_id: str, session_id: str, pipeline_name: str, runtime_id: str
    ) -> TurnStartBundle:
        self.reads += 1
        return self._by_tenant.get(tenant_id, self._default)
