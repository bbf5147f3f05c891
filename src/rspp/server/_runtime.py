"""The runtime of one ``rspp serve`` process: link, sessions, metrics, lifecycle (F-106).

:class:`Runtime` starts by registering with its control plane and heartbeating;
it is *ready* only while registered and not draining. :meth:`Runtime.drain`
(SIGTERM) makes readiness fail, tells the control plane to place nothing here,
lets active turns finish within the drain deadline and closes every session
with a reason; :meth:`Runtime.stop` deregisters and releases the link.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from rspp.controlplane import ControlPlaneClient
from rspp.server._cplink import ControlPlaneLink, LinkOptions
from rspp.server._gates import GateReporter, GateReporterOptions
from rspp.server._metrics import ServerMetrics
from rspp.server._notices import NoticeListener
from rspp.server._sessions import GovernedSessions, SessionPolicy

__all__ = ["Runtime", "RuntimeOptions"]

_LOG = logging.getLogger("rspp.server")


@dataclass(frozen=True, slots=True)
class RuntimeOptions:
    link: LinkOptions
    sessions: SessionPolicy = field(default_factory=SessionPolicy)
    #: seconds active turns get to finish after SIGTERM before sessions are closed
    drain_deadline_s: float = 30.0
    #: gate samples of live turns to the control plane (None: not reported)
    gates: GateReporterOptions | None = field(default_factory=GateReporterOptions)


class Runtime:
    """One runtime process's state, governed by its control plane."""

    def __init__(self, client: ControlPlaneClient, options: RuntimeOptions) -> None:
        self.options = options
        self.metrics = ServerMetrics()
        self.link = ControlPlaneLink(client, options.link)
        self.sessions = GovernedSessions(self.link, self.metrics, options.sessions)
        if options.gates is not None:
            self.sessions.gates = GateReporter(client, options.link.runtime_id, self.metrics,
                                               options.gates)
        self._heartbeat: asyncio.Task[None] | None = None
        self._bundles: asyncio.Task[None] | None = None
        #: the control channel: hand-offs of this runtime's leases pushed as they begin
        self.notices = NoticeListener(client, options.link.runtime_id, self.sessions.on_notice)
        self._notices: asyncio.Task[None] | None = None
        self.drained = asyncio.Event()

    @property
    def ready(self) -> bool:
        link = self.link
        return (link.registered and link.reachable and not link.draining
                and not self.sessions.draining)

    @property
    def state(self) -> str:
        if self.link.draining or self.sessions.draining:
            return "draining"
        if not self.link.registered:
            return "starting"
        return "ready" if self.link.reachable else "control_plane_unreachable"

    async def start(self) -> None:
        """Register with the control plane (raise CPError when it refuses or is down)."""
        await self.link.connect()
        self.sessions.capacity_control.start()
        if self.sessions.gates is not None:
            self.sessions.gates.start()
        self._heartbeat = asyncio.create_task(
            self.link.heartbeat_loop(lambda: len(self.sessions)), name="rspp-heartbeat")
        self._bundles = asyncio.create_task(self.link.bundles.run(), name="rspp-bundles")
        self._notices = asyncio.create_task(self.notices.run(), name="rspp-control-channel")
        self.metrics.ready(self.ready)

    async def drain(self) -> None:
        """Stop admitting, let active turns finish (bounded), close sessions with a reason."""
        if self.sessions.draining:
            await self.drained.wait()
            return
        self.sessions.draining = True
        self.metrics.ready(False)
        _LOG.info("draining %d session(s), deadline %.1f s", len(self.sessions),
                  self.options.drain_deadline_s)
        await self._stop_heartbeat()
        await self.link.drain(len(self.sessions))
        await self.sessions.drain(self.options.drain_deadline_s)
        self.drained.set()

    async def _stop_heartbeat(self) -> None:
        task, self._heartbeat = self._heartbeat, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def stop(self) -> None:
        """Close what is left, deregister, release the control-plane client."""
        await self._stop_heartbeat()
        await self.sessions.capacity_control.stop()
        await self.sessions.close_all("server_stopped")
        await self.sessions.batcher.aclose()  # before the connections it sends on (F-051)
        await self.sessions.http_pool.aclose()  # once no session uses it (F-105)
        for task in (self._bundles, self._notices):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._bundles = self._notices = None
        await self.link.bundles.aclose()
        if self.sessions.gates is not None:
            await self.sessions.gates.stop()
        await self.link.deregister()
        await self.link.client.aclose()
