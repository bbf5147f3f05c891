"""Per-session authority from the control plane: lease keeper and snapshot source.

:class:`LeaseKeeper` renews the session's lease (every third of its TTL by default). When a
renewal is refused it asks the control plane what happened: the same holder at
a newer epoch is a rotation (the session follows it: the active turn ends
``deauthorized_drain``, later turns open at the new epoch); anyone else holding
it is a loss (the session is deauthorised and closes). While the control plane
is unreachable the session keeps running on its frozen plan until the lease it
holds expires; then it is deauthorised and drains (F-156, F-157, F-106).

:class:`ControlPlaneSnapshots` is the plan resolver's snapshot source for a
served session: the control plane's turn-start bundle (cached by the client);
when the control plane is unreachable it serves the last bundle it got, whose
snapshots go stale, so a new turn is deferred deterministically (T2) instead
of failing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from rspp.contracts import TurnStartBundle
from rspp.controlplane import ControlPlaneClient, CPError, Lease

__all__ = ["ControlPlaneSnapshots", "LeaseKeeper"]

_LOG = logging.getLogger("rspp.server")

#: (new epoch or None for lost, reason)
AuthorityListener = Callable[[int | None, str], None]


class LeaseKeeper:
    """Keeps one session's lease; tells ``on_change`` about rotations and loss."""

    def __init__(self, client: ControlPlaneClient, session_id: str, holder: str, *,
                 ttl_ms: int, on_change: AuthorityListener, renew_ms: int | None = None) -> None:
        self.client = client
        self.session_id = session_id
        self.holder = holder
        self.ttl_ms = ttl_ms
        #: renewal period (default a third of the TTL); shorter notices rotations sooner
        self.renew_ms = renew_ms if renew_ms is not None else ttl_ms // 3
        self.on_change = on_change
        self.epoch: int | None = None
        self.lost: str | None = None
        self.renewals = 0
        self._valid_until = 0.0  # monotonic seconds: our own bound on the lease

    async def acquire(self) -> int:
        """Claim (or confirm) the lease for this runtime; raise :class:`CPError` if refused."""
        started = time.monotonic()
        lease = await self.client.acquire_lease(self.session_id, self.holder, self.ttl_ms)
        self._held(lease, started)
        return lease.epoch

    def output_gate(self) -> bool | None:
        """The transport's authority gate: True while our own bound on the lease holds
        (measured from before the last renewal request, so never later than the control
        plane's expiry) and the lease is surely ours; False
        (hold) once our bound lapsed, until a renewal confirms it (the lease may be passing
        to another runtime); None once it is lost (nothing more may leave)."""
        if self.lost is not None:
            return None
        return time.monotonic() < self._valid_until

    def _held(self, lease: Lease, requested_at: float) -> None:
        self.epoch = lease.epoch
        # measured from before the request (``requested_at``): never later than the control
        # plane's own expiry, however long the answer took to be read (a paused process)
        self._valid_until = requested_at + self.ttl_ms / 1000 * 0.9

    def _lose(self, reason: str) -> None:
        if self.lost is None:
            self.lost = reason
            _LOG.warning("session %s lost its lease: %s", self.session_id, reason)
            self.on_change(None, reason)

    async def run(self) -> None:
        """Renew until the lease is lost (or the task is cancelled when the session ends)."""
        period = self.renew_ms / 1000
        while self.lost is None and self.epoch is not None:
            await asyncio.sleep(period)
            started = time.monotonic()
            try:
                lease = await self.client.renew_lease(self.session_id, self.holder, self.epoch,
                                                      self.ttl_ms)
            except CPError as exc:
                if exc.code == "unavailable" and exc.field == "server":
                    if started >= self._valid_until:
                        self._lose("lease_expired_control_plane_unreachable")
                    continue  # frozen plan until the lease can no longer be renewed
                await self._refused()
                continue
            self.renewals += 1
            self._held(lease, started)

    async def _refused(self) -> None:
        """A renewal was refused: a rotation to us (follow it) or a loss (stop)."""
        started = time.monotonic()
        try:
            current = await self.client.authorize_lease(self.session_id, self.holder,
                                                        self.epoch or 0)
        except CPError as exc:
            self._lose(f"lease_unknown:{exc.code}")
            return
        if current.current_epoch is None:
            self._lose("lease_revoked")
            return
        try:
            lease = await self.client.acquire_lease(self.session_id, self.holder, self.ttl_ms)
        except CPError:
            self._lose("lease_revoked")
            return
        if lease.holder != self.holder:
            self._lose("lease_revoked")
            return
        old = self.epoch
        self._held(lease, started)
        if old is None or lease.epoch > old:
            _LOG.info("session %s lease rotated %s -> %s", self.session_id, old, lease.epoch)
            self.on_change(lease.epoch, "lease_rotated")


class ControlPlaneSnapshots:
    """Turn-start bundles from the control plane; the last one while it is unreachable."""

    def __init__(self, client: ControlPlaneClient) -> None:
        self.client = client
        self.last: TurnStartBundle | None = None
        self.fetches = 0
        self.fallbacks = 0

    async def turn_start_bundle(
        self, *, tenant_id: str, session_id: str, pipeline_name: str, runtime_id: str
    ) -> TurnStartBundle:
        try:
            bundle = await self.client.turn_start_bundle(
                tenant_id=tenant_id, session_id=session_id, pipeline_name=pipeline_name,
                runtime_id=runtime_id)
        except CPError as exc:
            self.fallbacks += 1
            _LOG.warning("turn-start bundle for %s unavailable (%s); snapshots of the last "
                         "bundle are used and go stale", session_id, exc)
            return self.last if self.last is not None else TurnStartBundle()
        self.fetches += 1
        self.last = bundle
        return bundle
