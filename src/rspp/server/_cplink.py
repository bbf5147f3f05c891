"""The runtime's link to its control plane (F-103): registration, heartbeat, keys, specs.

Per-turn traffic is batched per runtime: lease renewals (:class:`LeaseRenewer`),
checkpoint writes (:class:`StateWriter`) and turn-start bundles
(:class:`BundleRefresher`) of all its sessions go out together.

Everything goes over the control plane's HTTP API (:class:`ControlPlaneClient`),
in embedded mode too (then over an in-process ASGI transport), so one code path
serves both deployments. The link registers the runtime into the routing view,
heartbeats its health, load (active sessions) and capacity, sends one last
``degraded`` heartbeat and stops when draining (the route places no new session
on it), and deregisters on exit. It fetches the token verification key once and
verifies session tokens locally; it fetches and compiles published spec
versions once per version.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from rspp.controlplane import (
    ControlPlaneClient,
    CPError,
    SessionClaims,
    SessionInfo,
    TokenInvalid,
    TokenKeys,
)
from rspp.controlplane._errors import TokenKeyUnknown
from rspp.controlplane._session_start import SessionStart
from rspp.controlplane._tokens import KeySetVerifier
from rspp.errors import RSPPError
from rspp.nodes import NodeCatalog
from rspp.providers import PROVIDER_CATALOG
from rspp.server._bundles import BundleRefresher
from rspp.server._lease import LeaseRenewer
from rspp.server._specs import ModuleMismatch, fetch_pinned_modules
from rspp.server._state import StateWriter
from rspp.spec import (
    ConfigLayers,
    GraphDefinition,
    PipelineSpec,
    SpecInvalid,
    compile_spec,
    parse_spec_text,
    policy_inserts,
    resolve_effective,
)

__all__ = ["ControlPlaneLink", "LinkOptions", "SessionRefused"]

_LOG = logging.getLogger("rspp.server")


class SessionRefused(RSPPError):
    """A session cannot start here; ``code`` is stable, the message says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class LinkOptions:
    runtime_id: str
    #: the transport endpoint clients connect to (``ws://host:port``)
    endpoint: str
    capacity: int = 100
    region: str = "default"
    #: regions where the runtime stores session artifacts (F-168; None: none)
    artifact_regions: tuple[str, ...] | None = None
    heartbeat_interval_s: float = 2.0
    #: the shared secret of a control plane that signs tokens with HS256 (it never
    #: publishes it); Ed25519 control planes publish their public key instead
    token_secret: str | None = None
    #: where ``python:MODULE:CLASS`` custom nodes are imported from, after the current directory
    node_search: tuple[Path, ...] = ()


class ControlPlaneLink:
    """Registration, heartbeat, token verification and spec fetch of one runtime."""

    def __init__(self, client: ControlPlaneClient, options: LinkOptions) -> None:
        self.client = client
        self.options = options
        self.registered = False
        self.draining = False
        #: the last heartbeat reached the control plane (readiness: a runtime that cannot
        #: reach it refuses new sessions, so it must not be sent any)
        self.reachable = True
        self._verifier: KeySetVerifier | None = None
        #: one key refetch at a time, at most once a second (a token naming an unknown
        #: ``kid``: the control plane rotated its signing key, F-169)
        self._keys_lock = asyncio.Lock()
        self._keys_fetched = 0.0
        self.key_fetches = 0
        self._graphs: dict[tuple[str, str], GraphDefinition] = {}
        self._graph_locks: dict[tuple[str, str], asyncio.Lock] = {}
        #: what each compiled graph was compiled from (a policy's inserts recompile it)
        self._sources: dict[tuple[str, str], tuple[PipelineSpec, Any, NodeCatalog]] = {}
        self._policy_graphs: dict[tuple[str, str, str, tuple[str, ...]], GraphDefinition] = {}
        self.heartbeats = 0
        #: renews the leases of all this runtime's sessions together
        self.renewer = LeaseRenewer(client, options.runtime_id)
        #: saves the checkpoints of all this runtime's sessions together
        self.states = StateWriter(client, options.runtime_id)
        #: keeps the turn-start bundles of all this runtime's sessions fresh together
        self.bundles = BundleRefresher(client, options.runtime_id)
        #: sessions start with one request (False: the control plane has no start route)
        self.start_in_one = True

    @property
    def runtime_id(self) -> str:
        return self.options.runtime_id

    async def connect(self) -> None:
        """Fetch the token keys and register; raise :class:`CPError` when refused."""
        await self._fetch_keys()
        o = self.options
        await self.client.register_runtime(
            o.runtime_id, o.endpoint, capacity=o.capacity, region=o.region,
            artifact_regions=list(o.artifact_regions) if o.artifact_regions else None)
        self.registered = True
        _LOG.info("registered runtime %s at %s", o.runtime_id, o.endpoint)

    async def _fetch_keys(self) -> None:
        started = asyncio.get_running_loop().time()
        keys, active = await self.client.verification_key_set()
        if any(k.algorithm == "HS256" for k in keys):
            if not self.options.token_secret:
                raise CPError("the control plane signs session tokens with HS256 and does not "
                              "publish its secret: pass the same secret with --token-secret "
                              "(RSPP_TOKEN_SECRET), or give the control plane an Ed25519 key "
                              "(rspp cp serve --token-key-file)", field="token_secret",
                              code="token_keys")
            keys = [TokenKeys.hs256(self.options.token_secret)
                    if k.algorithm == "HS256" else k for k in keys]
            keys = [msgspec.structs.replace(k, kid=active) if k.algorithm == "HS256" else k
                    for k in keys]
        self._verifier = KeySetVerifier(keys, default=active)
        self._keys_fetched = started
        self.key_fetches += 1

    async def refresh_keys(self) -> bool:
        """Fetch the verification keys again (a token named a ``kid`` not among them);
        False when the fetch failed.

        One fetch at a time and at most one a second (a flood of tokens naming unknown keys
        costs the control plane one request a second), but a token is never refused for
        coming too soon: one that arrives within a second of the last fetch waits for the
        next (two rotations in quick succession are both found). A fetch that started after
        the token arrived answers it too."""
        loop = asyncio.get_running_loop()
        arrived = loop.time()
        async with self._keys_lock:
            if self._keys_fetched > arrived:  # fetched since it arrived: as fresh as it gets
                return True
            gap = self._keys_fetched + 1.0 - loop.time()
            if gap > 0:
                await asyncio.sleep(gap)
            try:
                await self._fetch_keys()
            except CPError as exc:
                _LOG.warning("refetching the token keys failed: %s", exc)
                return False
            _LOG.info("token keys refetched: %s", ", ".join(self._verifier.kids
                                                            if self._verifier else ()))
            return True

    async def heartbeat_loop(self, load: Callable[[], int]) -> None:
        """Heartbeat until draining (then one ``degraded`` beat so nothing new is placed)."""
        loop = asyncio.get_running_loop()
        while not self.draining:
            started = loop.time()
            await self._beat("healthy", load())
            # the period runs from the start of a beat: a slow answer does not stretch it
            await asyncio.sleep(max(0.0, self.options.heartbeat_interval_s
                                    - (loop.time() - started)))

    async def _beat(self, health: str, load: int, mode: str = "migrate") -> None:
        try:
            await self.client.heartbeat(self.runtime_id, health=health, load=load, mode=mode)
            self.heartbeats += 1
            self.reachable = True
        except CPError as exc:  # the next beat retries; routing marks us stale meanwhile
            _LOG.warning("heartbeat of %s failed: %s", self.runtime_id, exc)
            if exc.code == "unavailable" and exc.field == "server":
                self.reachable = False

    async def drain(self, load: int) -> None:
        """Stop admitting: routing stops placing sessions here; heartbeats stop."""
        if self.draining:
            return
        self.draining = True
        if self.registered:
            await self._beat("degraded", load, mode="drain")

    async def deregister(self) -> None:
        if not self.registered:
            return
        self.registered = False
        with contextlib.suppress(CPError):
            await self.client.deregister_runtime(self.runtime_id)

    # ------------------------------------------------------------------ sessions
    def verify(self, token: str, session_id: str) -> SessionClaims:
        """Verify ``token`` locally; refuse expired, tampered, foreign or misrouted tokens."""
        if self._verifier is None:
            raise SessionRefused("not_ready", "the runtime is not connected to its control plane")
        try:
            claims = self._verifier.verify(token)
        except TokenKeyUnknown as exc:
            raise SessionRefused("token_key_unknown", exc.message) from None
        except TokenInvalid as exc:
            raise SessionRefused("token_invalid", exc.message) from None
        if claims.session_id != session_id:
            raise SessionRefused("token_wrong_session",
                                 f"the token is for session {claims.session_id}, not {session_id}")
        if claims.runtime_id != self.runtime_id:
            raise SessionRefused("token_wrong_runtime",
                                 f"the session is routed to runtime {claims.runtime_id}, not "
                                 f"{self.runtime_id}; connect to the endpoint of its route")
        return claims

    async def session_info(self, claims: SessionClaims) -> SessionInfo:
        """The control plane's record of the session; it must match the token's claims."""
        try:
            data = await self.client.request("GET", f"/v1/sessions/{claims.session_id}")
        except CPError as exc:
            raise _refusal(exc, "read the session") from None
        info = msgspec.convert(data, SessionInfo)
        check_record(info, claims)
        return info

    async def start_session(self, claims: SessionClaims, ttl_ms: int) -> SessionStart | None:
        """The session's start in one call (``POST /v1/sessions/{id}/start``): its record,
        checked against ``claims`` (raises :class:`SessionRefused`), the lease, a resumed
        session's checkpoint and signals, the turn-start bundle. None: the control plane
        has no such route (an older one); the caller makes today's separate calls, and so
        does every later start."""
        try:
            started = await self.client.start_session(
                claims.session_id, runtime_id=self.runtime_id, tenant_id=claims.tenant_id,
                lease_epoch=claims.lease_epoch, ttl_ms=ttl_ms)
        except CPError as exc:
            if route_missing(exc):
                _LOG.info("the control plane has no session start route (%s); sessions "
                          "start with separate requests", exc.message)
                self.start_in_one = False
                return None
            if exc.status in (403, 404) or (exc.code == "unavailable"
                                            and exc.field == "server"):
                raise _refusal(exc, "start the session") from None
            raise SessionRefused("lease_refused", f"cannot acquire the lease of "
                                 f"{claims.session_id}: {exc.message}") from None
        check_record(started.session, claims)
        if started.session.runtime_id != self.runtime_id:
            raise SessionRefused("token_wrong_runtime", f"session {claims.session_id} now "
                                 f"runs on {started.session.runtime_id}")
        return started

    async def graph(self, name: str, version: str) -> GraphDefinition:
        """The compiled spec of ``name@version`` (fetched and compiled once, then cached)."""
        key = (name, version)
        cached = self._graphs.get(key)
        if cached is not None:
            return cached
        lock = self._graph_locks.setdefault(key, asyncio.Lock())
        async with lock:
            cached = self._graphs.get(key)
            if cached is not None:
                return cached
            try:
                record = await self.client.get_pipeline(name, version)
            except CPError as exc:
                raise _refusal(exc, f"fetch pipeline {name}@{version}") from None
            try:
                modules = await fetch_pinned_modules(self.client, record.get("modules") or {})
            except CPError as exc:
                raise _refusal(exc, f"fetch the subgraph modules of {name}@{version}") from None
            catalog = NodeCatalog((Path.cwd(), *self.options.node_search))
            try:
                spec = parse_spec_text(str(record["spec_text"]), f"{name}@{version}")
                gd = compile_spec(spec, adapters=PROVIDER_CATALOG, subgraphs=modules,
                                  catalog=catalog)
            except (SpecInvalid, ModuleMismatch, KeyError, TypeError) as exc:
                raise SessionRefused("spec_invalid",
                                     f"pipeline {name}@{version} does not compile here: "
                                     f"{exc}") from None
            self._graphs[key] = gd
            self._sources[key] = (spec, modules, catalog)
            return gd

    async def policy_graph(self, name: str, version: str, tenant_id: str,
                           inserts: tuple[str, ...]) -> GraphDefinition:
        """``name@version`` with the tenant policy's compliance nodes spliced in before
        speech (F-062; ``inserts``: ``PolicyResolution.insert_compliance_nodes``), each
        an ``inserted:tenant`` node of the session's graph. Cached per policy."""
        gd = await self.graph(name, version)
        if not inserts:
            return gd
        key = (name, version, tenant_id, inserts)
        found = self._policy_graphs.get(key)
        if found is not None:
            return found
        spec, modules, catalog = self._sources[(name, version)]
        try:
            layer = policy_inserts(gd, inserts)
            found = resolve_effective(spec, tenant=tenant_id, subgraphs=modules, catalog=catalog,
                                      layers=ConfigLayers(tenants={tenant_id: layer})).graph
        except SpecInvalid as exc:
            raise SessionRefused("policy_insert_failed",
                                 f"tenant {tenant_id}'s policy inserts nodes the pipeline "
                                 f"{name}@{version} cannot take: {exc}") from None
        if len(self._policy_graphs) >= 256:
            self._policy_graphs.clear()
        self._policy_graphs[key] = found
        return found


def check_record(info: SessionInfo, claims: SessionClaims) -> None:
    """The control plane's record of a session matches the token's claims (tenant, not
    ended); raise :class:`SessionRefused` naming what differs."""
    if info.tenant_id != claims.tenant_id:
        raise SessionRefused("token_wrong_tenant",
                             f"the token names tenant {claims.tenant_id!r}; session "
                             f"{claims.session_id} belongs to another tenant")
    if info.status.value == "ended":
        raise SessionRefused("session_ended",
                             f"session {claims.session_id} has ended; route a new session")


def route_missing(exc: CPError) -> bool:
    """The control plane has no such route or method (an older release): 404 naming the
    path, or 405. A 404 naming the session is the session's own answer."""
    return exc.status == 405 or (exc.status == 404 and exc.field == "path")


def _refusal(exc: CPError, what: str) -> SessionRefused:
    if exc.code == "unavailable" and exc.field == "server":
        return SessionRefused("control_plane_unreachable",
                              f"cannot {what}: {exc.message}; the session is refused "
                              "(no silent fallback)")
    return SessionRefused(exc.code, f"cannot {what}: {exc.message}")
