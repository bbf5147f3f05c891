"""Turn-start bundles of one runtime's live sessions, kept fresh together (F-159).

Every turn's plan freezes the six snapshots of the control plane's turn-start bundle,
which expire ``snapshot_ttl_ms`` after the control plane issued them. Instead of one
``GET /v1/bundle`` per session whenever its cached bundle lapsed (a read on the way to
a turn's open), the runtime's :class:`BundleRefresher` keeps the bundles of every live
session fresh: on a shared tick it asks for all those that would lapse within two
ticks in one ``POST /v1/runtimes/{id}/bundles`` (the control plane reads each
tenant-wide and fleet-wide part once for the whole batch). A turn then opens on a
cached bundle; a session whose bundle is missing or lapsed (its first turn, a control
plane that was slow) asks through the same batcher, joining whatever else is being
asked. A control plane without the batch route (or a tenant-scoped key) gets one
request per session, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import msgspec

from rspp.contracts import TurnStartBundle
from rspp.controlplane import ControlPlaneClient, CPError
from rspp.controlplane._client import bundle_expiry_ms
from rspp.controlplane._replies import BundleList
from rspp.controlplane._requests import MAX_BUNDLES, BundleFor, BundlesRequest
from rspp.controlplane._util import Clock, wall_ms
from rspp.server._batching import Coalescer, batch_refused

__all__ = ["BundleRefresher"]

_LOG = logging.getLogger("rspp.server")

#: (tenant_id, session_id, pipeline_name)
_Key = tuple[str, str, str]


class BundleRefresher:
    """The runtime's cache of its sessions' turn-start bundles (module docstring)."""

    def __init__(self, client: ControlPlaneClient, runtime_id: str, *, period_s: float = 1.5,
                 max_staleness_ms: int = 5_000, clock: Clock = wall_ms) -> None:
        self.client = client
        self.runtime_id = runtime_id
        self.period_s = period_s
        self.max_staleness_ms = max_staleness_ms
        self.clock = clock
        self.hits = 0
        self.fetched = 0
        self._live: dict[str, _Key] = {}
        self._cache: dict[str, tuple[TurnStartBundle, int]] = {}
        self._batch = True
        self._failing = False
        self.batcher: Coalescer[_Key, TurnStartBundle] = Coalescer(
            self._send, name=f"{runtime_id}:bundles")

    @property
    def tracked(self) -> int:
        """Sessions whose bundles are kept fresh."""
        return len(self._live)

    def track(self, tenant_id: str, session_id: str, pipeline_name: str) -> None:
        """Keep this session's bundle fresh from now on."""
        key = (tenant_id, session_id, pipeline_name)
        if self._live.get(session_id, key) != key:
            self._cache.pop(session_id, None)
        self._live[session_id] = key

    def prime(self, session_id: str, bundle: TurnStartBundle) -> None:
        """A tracked session's bundle, fetched by other means (its start): cached as if
        this refresher had fetched it now."""
        if session_id in self._live:
            self._cache[session_id] = (bundle, self.clock())

    def forget(self, session_id: str) -> None:
        self._live.pop(session_id, None)
        self._cache.pop(session_id, None)

    def _usable(self, session_id: str, horizon_ms: int) -> TurnStartBundle | None:
        """The cached bundle if it stays valid for ``horizon_ms`` more."""
        entry = self._cache.get(session_id)
        if entry is None:
            return None
        bundle, fetched = entry
        until = self.clock() + horizon_ms
        expiry = bundle_expiry_ms(bundle)
        if until - fetched < self.max_staleness_ms and (expiry is None or until < expiry):
            return bundle
        return None

    async def turn_start_bundle(self, *, tenant_id: str, session_id: str, pipeline_name: str,
                                runtime_id: str, refresh: bool = False) -> TurnStartBundle:
        """The session's bundle: cached while valid, else asked for (raises CPError);
        ``refresh``: asked for in any case (the session's authority moved, F-159)."""
        found = None if refresh else self._usable(session_id, 0)
        if found is not None:
            self.hits += 1
            return found
        if not self._batch or runtime_id != self.runtime_id:
            return await self.client.turn_start_bundle(
                tenant_id=tenant_id, session_id=session_id, pipeline_name=pipeline_name,
                runtime_id=runtime_id, refresh=refresh)
        return await self.batcher.call(session_id, (tenant_id, session_id, pipeline_name))

    async def run(self) -> None:
        """Refresh, every ``period_s`` on a shared tick, the bundles that would lapse
        within two ticks (until cancelled)."""
        period = self.period_s
        horizon_ms = int(2 * period * 1000)
        while True:
            await asyncio.sleep(period - time.monotonic() % period)
            if not self._batch:
                continue  # one request per session, on demand
            due = [key for sid, key in self._live.items()
                   if self._usable(sid, horizon_ms) is None]
            if due:
                await asyncio.gather(*(self.batcher.call(key[1], key) for key in due),
                                     return_exceptions=True)

    async def _send(self, queued: dict[str, _Key]) -> dict[str, TurnStartBundle | BaseException]:
        keys = list(queued.items())
        out: dict[str, TurnStartBundle | BaseException] = {}
        for i in range(0, len(keys), MAX_BUNDLES):  # the control plane's bound per request
            out.update(await self._send_chunk(dict(keys[i:i + MAX_BUNDLES])))
        return out

    async def _send_chunk(self, queued: dict[str, _Key]
                          ) -> dict[str, TurnStartBundle | BaseException]:
        body = BundlesRequest(sessions=tuple(
            BundleFor(tenant_id=t, session_id=s, pipeline_name=p) for t, s, p in queued.values()))
        try:
            data = await self.client.request("POST", f"/v1/runtimes/{self.runtime_id}/bundles",
                                             json=body)
        except CPError as exc:
            if batch_refused(exc):
                self._batch = False
                return {sid: await self._one(key) for sid, key in queued.items()}
            if not self._failing:
                self._failing = True
                _LOG.warning("turn-start bundles of %d session(s) not refreshed: %s",
                             len(queued), exc)
            raise
        self._failing = False
        now = self.clock()
        out: dict[str, TurnStartBundle | BaseException] = {}
        for item in msgspec.convert(data, BundleList).bundles:
            out[item.session_id] = item.bundle
            if item.session_id in self._live:
                self._cache[item.session_id] = (item.bundle, now)
        self.fetched += len(out)
        return out

    async def _one(self, key: _Key) -> TurnStartBundle | BaseException:
        tenant, sid, name = key
        try:
            return await self.client.turn_start_bundle(
                tenant_id=tenant, session_id=sid, pipeline_name=name, runtime_id=self.runtime_id)
        except CPError as exc:
            return exc

    async def aclose(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await self.batcher.aclose()
