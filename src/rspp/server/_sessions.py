"""Sessions governed by the control plane (F-103, F-156, F-157, F-106).

:class:`GovernedSessions` is how a transport endpoint of ``rspp serve`` gets a
live session. A session starts only when its token verifies locally, the
control plane's record matches it (tenant, runtime, not ended) and this
runtime holds its lease: the route's pipeline version (rollout cohort) is
fetched and compiled once per version, the session is assembled with the same
builder ``rspp run`` uses (:func:`rspp.runner.assemble_session`) at the lease
epoch, its turn plans read the control plane's turn-start bundle (snapshot
versions in every plan's provenance), and a :class:`LeaseKeeper` renews the
lease and feeds rotations and loss to the turn driver. Draining stops
admitting, lets active turns finish within a deadline, then closes every
session with a reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import msgspec

from rspp.contracts import ControlSignal, RecordingLevel
from rspp.controlplane import CPError, SessionClaims, SessionInfo
from rspp.runner import LiveSession, SessionConfig, TelemetryTargets, assemble_session
from rspp.runner._assembly import AssemblyError, RecordSink, SessionTransport
from rspp.server._cplink import ControlPlaneLink, SessionRefused
from rspp.server._lease import ControlPlaneSnapshots, LeaseKeeper
from rspp.server._metrics import ServerMetrics

__all__ = ["GovernedSessions", "ServedSession", "SessionPolicy"]

_LOG = logging.getLogger("rspp.server")

T = TypeVar("T", bound=SessionTransport)

#: closes the client connection with a reason (set by the transport endpoint)
Closer = Callable[[str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    """How this runtime runs its sessions."""

    lease_ttl_ms: int = 6_000
    #: a session's timeline goes to ``<timeline_dir>/<session_id>.jsonl`` when set
    timeline_dir: Path | None = None
    record_level: RecordingLevel | None = None


@dataclass(slots=True)
class ServedSession(Generic[T]):
    """One live served session (the handle a transport endpoint holds)."""

    claims: SessionClaims
    info: SessionInfo
    live: LiveSession[T]
    keeper: LeaseKeeper
    owner: GovernedSessions
    closer: Closer | None = None
    close_reason: str | None = None
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    _keeper_task: asyncio.Task[None] | None = None
    _closed: bool = False

    @property
    def session_id(self) -> str:
        return self.claims.session_id

    @property
    def epoch(self) -> int:
        return self.live.authority.epoch

    def _on_record(self, rec: msgspec.Struct) -> None:
        if self.live.driver.busy:
            self.idle.clear()
        else:
            self.idle.set()
        if isinstance(rec, ControlSignal):
            self.owner.metrics.on_signal(self.live, rec)

    def _on_authority(self, epoch: int | None, reason: str) -> None:
        self.live.authority_changed(epoch, reason)
        if epoch is None:  # lost: nothing may be produced for this session any more
            self.owner._request_close(self, f"authority_lost:{reason}")

    async def request_close(self, reason: str) -> None:
        """Ask the transport to close the client connection (its handler then calls close)."""
        if self.close_reason is None:
            self.close_reason = reason
        if self.closer is not None:
            await self.closer(reason)

    async def close(self, reason: str = "client_ended") -> None:
        """End the session: stop renewing, finish it, report it ended. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self.close_reason is None:
            self.close_reason = reason
        task, self._keeper_task = self._keeper_task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})
        try:
            await self.live.finish()
        finally:
            self.owner._forget(self)
            with contextlib.suppress(CPError):
                await self.owner.link.client.report_status(self.session_id, "ended")


class GovernedSessions:
    """The runtime's live sessions, started and governed through the control plane."""

    def __init__(self, link: ControlPlaneLink, metrics: ServerMetrics,
                 policy: SessionPolicy | None = None) -> None:
        self.link = link
        self.metrics = metrics
        self.policy = policy or SessionPolicy()
        self.active: dict[str, ServedSession[SessionTransport]] = {}
        self.draining = False
        self._closing: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self.active)

    def verify(self, token: str, session_id: str) -> SessionClaims:
        """Local token check (signature, expiry, session, runtime); raises SessionRefused."""
        try:
            return self.link.verify(token, session_id)
        except SessionRefused as exc:
            self.metrics.refused(exc.code)
            raise

    async def open(self, claims: SessionClaims,
                   make_transport: Callable[[RecordSink], T]) -> ServedSession[T]:
        """Start the session of verified ``claims``; raise :class:`SessionRefused`."""
        try:
            return await self._open(claims, make_transport)
        except SessionRefused as exc:
            self.metrics.refused(exc.code)
            raise

    async def _open(self, claims: SessionClaims,
                    make_transport: Callable[[RecordSink], T]) -> ServedSession[T]:
        sid = claims.session_id
        if self.draining or self.link.draining:
            raise SessionRefused("draining", "this runtime is draining; route a new session")
        if sid in self.active:
            raise SessionRefused("session_live", f"session {sid} is already live here")
        if len(self.active) >= self.link.options.capacity:
            raise SessionRefused("at_capacity", "this runtime is at capacity")
        info = await self.link.session_info(claims)
        if info.runtime_id != self.link.runtime_id:
            raise SessionRefused("token_wrong_runtime",
                                 f"session {sid} now runs on {info.runtime_id}")
        gd = await self.link.graph(info.pipeline_name, info.pipeline_version)
        holder: list[ServedSession[T]] = []

        def on_change(epoch: int | None, reason: str) -> None:
            if holder:
                holder[0]._on_authority(epoch, reason)

        keeper = LeaseKeeper(self.link.client, sid, self.link.runtime_id,
                             ttl_ms=self.policy.lease_ttl_ms, on_change=on_change)
        try:
            epoch = await keeper.acquire()
        except CPError as exc:
            code = ("control_plane_unreachable" if exc.code == "unavailable"
                    and exc.field == "server" else "lease_refused")
            raise SessionRefused(code, f"cannot acquire the lease of {sid}: {exc.message}") \
                from None
        if claims.lease_epoch < epoch:
            raise SessionRefused("stale_epoch_reject",
                                 f"the token carries lease epoch {claims.lease_epoch}; the "
                                 f"session is at epoch {epoch}: request a new token")
        p = self.policy
        cfg = SessionConfig(
            graph=gd, session_id=sid, tenant_id=claims.tenant_id,
            runtime_id=self.link.runtime_id, source=ControlPlaneSnapshots(self.link.client),
            authority_epoch=epoch, real_time=True, record_level=p.record_level,
            timeline=(p.timeline_dir / f"{sid}.jsonl") if p.timeline_dir else None,
            telemetry=TelemetryTargets(metrics=self.metrics.runtime))
        try:
            live = await assemble_session(cfg, make_transport)
        except AssemblyError as exc:
            raise SessionRefused("assembly_failed", str(exc)) from None
        served = ServedSession(claims=claims, info=info, live=live, keeper=keeper, owner=self)
        holder.append(served)
        live.listeners.append(served._on_record)
        self.active[sid] = served  # type: ignore[assignment]
        served.idle.set()
        await live.start()
        served._keeper_task = asyncio.create_task(keeper.run(), name=f"{sid}:lease")
        with contextlib.suppress(CPError):
            await self.link.client.report_status(sid, "running")
        self.metrics.session_opened()
        return served

    def _forget(self, served: ServedSession[T]) -> None:
        if self.active.get(served.session_id) is served:
            del self.active[served.session_id]
            self.metrics.session_closed()

    def _request_close(self, served: ServedSession[T], reason: str) -> None:
        task = asyncio.get_running_loop().create_task(served.request_close(reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def drain(self, deadline_s: float) -> None:
        """Stop admitting; let active turns finish within ``deadline_s``; close the rest."""
        self.draining = True
        sessions = list(self.active.values())
        if sessions:
            waits = [asyncio.ensure_future(s.idle.wait()) for s in sessions]
            _, pending = await asyncio.wait(waits, timeout=deadline_s)
            for w in pending:
                w.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for s in list(self.active.values()):
            reason = "server_draining" if s.idle.is_set() else "drain_deadline_exceeded"
            if s.closer is None:
                await s.close(reason)
            else:
                await s.request_close(reason)  # its endpoint closes the socket, then the session
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    async def close_all(self, reason: str) -> None:
        """Close whatever is still live (shutdown after the transports stopped)."""
        for s in list(self.active.values()):
            await s.close(reason)
