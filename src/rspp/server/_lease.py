"""Per-session authority from the control plane: lease keeper and snapshot source.

:class:`LeaseKeeper` renews the session's lease (every third of its TTL by default). The
renewals of all a runtime's sessions go through its :class:`LeaseRenewer`: keepers wake on
a shared tick of their renewal period, so the runtime renews every lease it holds in one
request per period (``POST /v1/runtimes/{id}/leases``) instead of one per session, and
the control plane's load stays flat as sessions grow. When a
renewal is refused it asks the control plane what happened: the same holder at
a newer epoch is a rotation (the session follows it: the active turn ends
``deauthorized_drain``, later turns open at the new epoch); anyone else holding
it is a loss (the session is deauthorised and closes). While the control plane
is unreachable the session keeps running on its frozen plan until the lease it
holds expires; then it is deauthorised and drains (F-156, F-157, F-106).

:class:`ControlPlaneSnapshots` is the plan resolver's snapshot source for a
served session: the control plane's turn-start bundle (kept fresh by the runtime's
:class:`~rspp.server._bundles.BundleRefresher`, or cached by the client);
when the control plane is unreachable it serves the last bundle it got. Issue 14's
rule for a mid-session outage - the session continues on its frozen plan until its
lease can no longer be renewed, then drains - wins over T2 there: while the session's
own lease bound holds, a turn opens on that bundle even once its snapshots expired
(``may_freeze``; the plan's provenance names the snapshot ids it used, and each such
turn is logged and counted, ``rspp_turns_on_frozen_snapshots_total``). Once the bound
lapses they defer (``snapshot_stale:*``) and the keeper loses the lease
(``lease_expired_control_plane_unreachable``): the session drains. A control plane that
answers - with stale or any other snapshots - is never frozen over (T2 as before).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from rspp.contracts import TurnStartBundle
from rspp.controlplane import Conflict, ControlPlaneClient, CPError, Lease
from rspp.controlplane._handoffs import HandoffPending
from rspp.server._batching import batch_refused

__all__ = ["ControlPlaneSnapshots", "LeaseKeeper", "LeaseRenewer"]

_LOG = logging.getLogger("rspp.server")

#: (new epoch or None for lost, reason)
AuthorityListener = Callable[[int | None, str], None]
#: the lease is being handed off (``migrate``, ``rotate``, ``revoke``): the session fences
#: its output, ends its active turn and saves its last checkpoint before the release
HandoffListener = Callable[[str], Awaitable[None]]

#: what a released lease means for the session (the close reason's prefix)
_HANDOFF_LOSS = {"revoke": "lease_revoked", "migrate": "handed_off"}


class LeaseRenewer:
    """Renews the leases of one runtime's sessions together (see the module docstring).

    :meth:`renew` has the contract of ``ControlPlaneClient.renew_lease`` (a refusal
    raises :class:`Conflict`, an unreachable control plane ``CPError`` ``unavailable``);
    the calls made while no batch is being sent go out in the next one. A control plane
    without the batch route (or a key not allowed it) gets one request per lease."""

    def __init__(self, client: ControlPlaneClient, holder: str) -> None:
        self.client = client
        self.holder = holder
        self.batches = 0
        self._queued: dict[tuple[str, int], tuple[int, asyncio.Future[Lease]]] = {}
        self._sender: asyncio.Task[None] | None = None
        self._batch = True

    async def renew(self, session_id: str, epoch: int, ttl_ms: int) -> Lease:
        if not self._batch:
            return await self.client.renew_lease(session_id, self.holder, epoch, ttl_ms)
        done: asyncio.Future[Lease] = asyncio.get_running_loop().create_future()
        # the keeper awaiting it may be cancelled first (its session handed off or ended):
        # the answer is then nobody's, and a refusal must not be logged as never retrieved
        done.add_done_callback(_retrieved)
        self._queued[(session_id, epoch)] = (ttl_ms, done)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send())
        return await asyncio.shield(done)

    async def _send(self) -> None:
        while self._queued:
            await asyncio.sleep(0)  # the keepers woken on the same tick join this batch
            queued, self._queued = self._queued, {}
            by_ttl: dict[int, list[tuple[str, int]]] = {}
            for (sid, epoch), (ttl_ms, _) in queued.items():
                by_ttl.setdefault(ttl_ms, []).append((sid, epoch))
            for ttl_ms, held in by_ttl.items():
                await self._send_one(held, ttl_ms, queued)

    async def _send_one(self, held: list[tuple[str, int]], ttl_ms: int,
                        queued: dict[tuple[str, int], tuple[int, asyncio.Future[Lease]]]) -> None:
        try:
            results = await self.client.renew_leases(self.holder, held, ttl_ms)
        except CPError as exc:
            if batch_refused(exc):
                self._batch = False  # an older control plane, or a tenant key: one by one
                for sid, epoch in held:
                    _settle(queued[(sid, epoch)][1], self.client.renew_lease(
                        sid, self.holder, epoch, ttl_ms))
                return
            for key in held:
                _fail(queued[key][1], exc)
            return
        self.batches += 1
        epochs = dict(held)
        for r in results:
            if r.session_id not in epochs:
                continue
            key = (r.session_id, epochs[r.session_id])
            fut = queued[key][1]
            if fut.done():
                continue
            if r.renewed and r.expires_at_ms is not None:
                fut.set_result(Lease(session_id=r.session_id, epoch=key[1], holder=self.holder,
                                     expires_at_ms=r.expires_at_ms))
            elif r.handoff is not None:
                fut.set_exception(HandoffPending(f"the lease of {r.session_id} is being handed "
                                                 f"off ({r.handoff})", field=r.handoff))
            else:
                now = (f"epoch {r.epoch} held by {r.holder}" if r.epoch is not None
                       else "no lease")
                fut.set_exception(Conflict(f"cannot renew epoch {key[1]} of {r.session_id} "
                                           f"for {self.holder}: {now}", field="epoch"))
        for key in held:  # answered for none of them: not renewed
            _fail(queued[key][1], Conflict(f"lease of {key[0]} not renewed", field="epoch"))


def _retrieved(fut: asyncio.Future[Lease]) -> None:
    if not fut.cancelled():
        fut.exception()


def _fail(fut: asyncio.Future[Lease], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


def _settle(fut: asyncio.Future[Lease], work: Awaitable[Lease]) -> None:
    async def run() -> None:
        try:
            lease = await work
        except CPError as exc:
            _fail(fut, exc)
            return
        if not fut.done():
            fut.set_result(lease)

    asyncio.get_running_loop().create_task(run())


class LeaseKeeper:
    """Keeps one session's lease; tells ``on_change`` about rotations and loss."""

    def __init__(self, client: ControlPlaneClient, session_id: str, holder: str, *,
                 ttl_ms: int, on_change: AuthorityListener, renew_ms: int | None = None,
                 renewer: LeaseRenewer | None = None) -> None:
        self.client = client
        #: the runtime's shared renewer (None: this keeper renews on its own)
        self.renewer = renewer
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
        #: told when the lease is being handed off (before the release)
        self.on_handoff: HandoffListener | None = None
        #: the hand-off under way (its action), None otherwise
        self.handing_off: str | None = None
        #: hand-offs released (the control plane moved the epoch on our release)
        self.released = 0
        #: how each hand-off was learned: ``push`` (the control channel) or ``renewal``
        self.learned: list[str] = []
        #: a hand-off pushed by the control channel: (action, epoch), taken by :meth:`run`
        self._pushed: tuple[str, int] | None = None
        self._wake = asyncio.Event()

    async def acquire(self) -> int:
        """Claim (or confirm) the lease for this runtime; raise :class:`CPError` if refused."""
        started = time.monotonic()
        lease = await self.client.acquire_lease(self.session_id, self.holder, self.ttl_ms)
        self._held(lease, started)
        return lease.epoch

    def adopt(self, lease: Lease, requested_at: float) -> int:
        """Hold ``lease``, acquired for this runtime by the session's start (requested at
        monotonic ``requested_at``), as :meth:`acquire` would have; its epoch."""
        self._held(lease, requested_at)
        return lease.epoch

    def output_gate(self) -> bool | None:
        """The transport's authority gate: True while our own bound on the lease holds
        (measured from before the last renewal request, so never later than the control
        plane's expiry) and the lease is surely ours; False
        (hold) once our bound lapsed, until a renewal confirms it (the lease may be passing
        to another runtime); None once it is lost (nothing more may leave)."""
        if self.lost is not None:
            return None
        if self.handing_off == "rotate":
            return False  # released next: held until the rotation is followed
        if self.handing_off is not None:
            return None  # handed to another runtime (or revoked): nothing more leaves
        return time.monotonic() < self._valid_until

    def valid_for(self) -> float:
        """Seconds our own bound on the lease still holds (<= 0: lapsed)."""
        return self._valid_until - time.monotonic()

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
            if self.renewer is None:
                pushed = await self._sleep(period)
            else:  # the runtime's shared tick: every keeper of this period renews together
                pushed = await self._sleep(period - time.monotonic() % period)
            if pushed is not None:  # the control channel: the hand-off begins now
                self.learned.append("push")
                await self._hand_off(pushed)
                continue
            started = time.monotonic()
            try:
                if self.renewer is None:
                    lease = await self.client.renew_lease(self.session_id, self.holder,
                                                          self.epoch, self.ttl_ms)
                else:
                    lease = await self.renewer.renew(self.session_id, self.epoch, self.ttl_ms)
            except CPError as exc:
                if exc.code == "unavailable" and exc.field == "server":
                    if started >= self._valid_until:
                        self._lose("lease_expired_control_plane_unreachable")
                    continue  # frozen plan until the lease can no longer be renewed
                if exc.code == HandoffPending.code:
                    self._pushed = None  # learned here (a push of it is not acted on twice)
                    self.learned.append("renewal")
                    await self._hand_off(exc.field or "migrate")
                    continue
                await self._refused()
                continue
            self.renewals += 1
            self._held(lease, started)

    def push_handoff(self, action: str, epoch: int) -> bool:
        """The control channel says the lease at ``epoch`` is being handed off: the renewal
        loop hands it off now instead of at its next renewal. False (ignored): not the epoch
        held, or a hand-off or loss is under way already."""
        if self.lost is not None or self.handing_off is not None or epoch != self.epoch:
            return False
        self._pushed = (action, epoch)
        self._wake.set()
        return True

    async def _sleep(self, seconds: float) -> str | None:
        """Sleep until the next renewal, or until a hand-off is pushed: its action."""
        if self._pushed is None:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, seconds))
        pushed, self._pushed = self._pushed, None
        if pushed is None or pushed[1] != self.epoch or self.handing_off is not None:
            return None
        return pushed[0]

    async def _hand_off(self, action: str) -> None:
        """The control plane is handing the lease off (two phases): the gate closes (holds,
        for a rotation in place), the session ends its active turn and saves its checkpoint
        (``on_handoff``), then the lease is released. The release moves the epoch: a rotation in
        place is followed (the gate reopens at the new epoch), a migration or revoke
        loses the session. A release the control plane no longer takes (the hand-off timed
        out) is sorted out as a refused renewal."""
        old = self.epoch
        self.handing_off = action  # the gate closes first: nothing more leaves from here
        if self.on_handoff is not None:
            await self.on_handoff(action)
        started = time.monotonic()
        try:
            released = await self.client.release_lease(self.session_id, self.holder, old or 0)
        except CPError as exc:
            if exc.code == "unavailable" and exc.field == "server":
                return  # the next renewal is refused again and the release retried
            await self._refused()  # the hand-off timed out: where is the lease now?
            return
        self.released += 1
        if released.holder != self.holder or old is None or released.epoch != old + 1:
            self._lose(f"{_HANDOFF_LOSS.get(released.action, 'lease_moved')}"
                       + (f":{released.holder}" if released.action == "migrate" else ""))
            return
        try:  # our own bound on the new epoch's lease, measured from before this request
            lease = await self.client.renew_lease(self.session_id, self.holder,
                                                  released.epoch, self.ttl_ms)
        except CPError:
            lease = None
        self.handing_off = None
        if lease is None:
            self.epoch, self._valid_until = released.epoch, 0.0  # held until renewed
        else:
            self._held(lease, started)
        _LOG.info("session %s lease rotated %s -> %s (released)", self.session_id, old,
                  released.epoch)
        self.on_change(released.epoch, "lease_rotated")

    async def _refused(self) -> None:
        """A renewal was refused: a rotation to us in place (follow it) or a loss (stop).

        Only the very next epoch, held by us, is a rotation in place (``POST
        /v1/sessions/{id}/lease/rotate``): any later one means other epochs were issued in
        between, i.e. the session moved away (and perhaps back here, where the control
        plane now places a *new* copy of it, restored from its checkpoint). This copy then
        lost the session: following that epoch would reopen its gate and send its outputs
        on its old connection next to the new copy's. It is never acquired either (an
        acquire would take the lease over, or renew it for the new copy): it is renewed at
        that epoch, which only the holder of the current epoch can do."""
        started = time.monotonic()
        old = self.epoch
        if self.handing_off is not None:  # the hand-off ended without our release
            self.handing_off, self._valid_until = None, 0.0  # held until sorted out
        try:
            current = await self.client.authorize_lease(self.session_id, self.holder,
                                                        old or 0)
        except CPError as exc:
            if exc.code == "unavailable" and exc.field == "server":
                return  # asked again after the next refused renewal
            self._lose(f"lease_unknown:{exc.code}")
            return
        now = current.current_epoch
        if now is None:
            self._lose("lease_revoked")
            return
        if old is None or now not in (old, old + 1):
            self._lose("lease_moved")
            return
        try:
            lease = await self.client.renew_lease(self.session_id, self.holder, now,
                                                  self.ttl_ms)
        except CPError as exc:
            if exc.code == "unavailable" and exc.field == "server":
                return
            self._lose("lease_revoked")
            return
        self._held(lease, started)
        if lease.epoch > old:
            _LOG.info("session %s lease rotated %s -> %s", self.session_id, old, lease.epoch)
            self.on_change(lease.epoch, "lease_rotated")


class BundleSource(Protocol):
    """Where a served session's bundles come from: the runtime's
    :class:`~rspp.server._bundles.BundleRefresher` or the control-plane client."""

    async def turn_start_bundle(
        self, *, tenant_id: str, session_id: str, pipeline_name: str, runtime_id: str,
        refresh: bool = False,
    ) -> TurnStartBundle: ...


class ControlPlaneSnapshots:
    """Turn-start bundles from the control plane; the last one while it is unreachable
    (frozen over while the session's lease bound holds: see the module docstring)."""

    def __init__(self, client: ControlPlaneClient, source: BundleSource | None = None) -> None:
        self.client = client
        #: where bundles come from: the runtime's :class:`BundleRefresher` (batched and
        #: kept fresh), else the client (one cached request per session)
        self.source: BundleSource = source if source is not None else client
        self.last: TurnStartBundle | None = None
        self.fetches = 0
        self.fallbacks = 0
        #: the last fetch failed because the control plane was unreachable
        self.unreachable = False
        #: True while the session's own bound on its lease holds (its keeper's gate); None:
        #: no authority to freeze on (stale snapshots defer)
        self.authority: Callable[[], bool] | None = None
        #: told of each turn whose plan was frozen over expired snapshots
        self.on_frozen: Callable[[], None] | None = None
        #: turns opened on expired snapshots (the control plane unreachable)
        self.frozen_turns = 0
        self.session_id = ""
        #: bundles fetched past the client's cache (after the session's authority moved)
        self.refreshes = 0
        self._refresh = False

    def refresh_next(self) -> None:
        """The session's authority moved (it resumed here, its lease epoch changed): the next
        bundle skips the cached snapshots, routing view included (F-159)."""
        self._refresh = True

    async def turn_start_bundle(
        self, *, tenant_id: str, session_id: str, pipeline_name: str, runtime_id: str
    ) -> TurnStartBundle:
        refresh, self._refresh = self._refresh, False
        self.session_id = session_id
        try:
            bundle = await self.source.turn_start_bundle(
                tenant_id=tenant_id, session_id=session_id, pipeline_name=pipeline_name,
                runtime_id=runtime_id, refresh=refresh)
        except CPError as exc:
            self.fallbacks += 1
            self.unreachable = exc.code == "unavailable" and exc.field == "server"
            _LOG.warning("turn-start bundle for %s unavailable (%s); snapshots of the last "
                         "bundle are used (frozen over once expired while the control plane "
                         "is unreachable and the lease holds)", session_id, exc)
            return self.last if self.last is not None else TurnStartBundle()
        self.fetches += 1
        self.refreshes += refresh
        self.unreachable = False
        self.last = bundle
        return bundle

    def may_freeze(self, bundle: TurnStartBundle) -> bool:
        """A turn may open on ``bundle``'s expired snapshots: it is the last bundle, served
        because the control plane is unreachable, and the session's lease bound holds."""
        return (self.unreachable and self.last is not None and bundle is self.last
                and self.authority is not None and self.authority())

    def frozen(self, turn_id: str, stale: tuple[str, ...]) -> None:
        """Turn ``turn_id``'s plan was materialised over the expired snapshots ``stale``."""
        self.frozen_turns += 1
        _LOG.warning("session %s turn %s opens on its frozen plan: the control plane is "
                     "unreachable and the lease holds; expired snapshots used: %s",
                     self.session_id, turn_id, ",".join(stale))
        if self.on_frozen is not None:
            self.on_frozen()
