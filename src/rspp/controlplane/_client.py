"""Clients: HTTP (:class:`ControlPlaneClient`) and in-process (:class:`InProcessControlPlane`).

Both offer ``turn_start_bundle(...)`` returning the contract
:class:`~rspp.contracts.TurnStartBundle`; the HTTP client caches bundles until the
earliest snapshot expiry or ``max_staleness_ms``, whichever comes first (F-159).
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

import httpx
import msgspec

from rspp._version import __version__
from rspp.contracts import SCHEMA_VERSION, TurnStartBundle
from rspp.controlplane._bundle import build_bundle
from rspp.controlplane._debug_grant import DebugGrant
from rspp.controlplane._errors import ERRORS_BY_CODE, CPError, InvalidRequest, Unavailable
from rspp.controlplane._leases import Authorization, Lease, LeaseRenewal
from rspp.controlplane._notices import NoticesRequest, RuntimeNotices
from rspp.controlplane._ops_handoffs import LeaseRelease
from rspp.controlplane._requests import (
    ArtifactLocation,
    HeartbeatRequest,
    HeldBy,
    HeldLease,
    LeaseEpochRequest,
    LeaseRenewalsRequest,
    LeaseRequest,
    MigrateRequest,
    ModuleRequest,
    PublishRequest,
    RegisterRuntimeRequest,
    RollbackRequest,
    RolloutRequest,
    RouteRequest,
    StatusRequest,
)
from rspp.controlplane._routing import RuntimeInstance
from rspp.controlplane._service import ControlPlane
from rspp.controlplane._session_start import SessionStart, SessionStartRequest
from rspp.controlplane._sessions import MigrationResult, SessionInfo
from rspp.controlplane._tls import ReloadingClientContext, unreachable_hint
from rspp.controlplane._tokens import TokenKeys
from rspp.controlplane._util import Clock, wall_ms
from rspp.controlplane._validate import field_from
from rspp.providers import UsageSummary

T = TypeVar("T")


class TurnStartSource(Protocol):
    """What the runtime's plan resolver needs from a control plane."""

    async def turn_start_bundle(
        self, *, tenant_id: str, session_id: str, pipeline_name: str, runtime_id: str
    ) -> TurnStartBundle: ...


def bundle_expiry_ms(bundle: TurnStartBundle) -> int | None:
    """Earliest ``expires_at_ms`` among the bundle's snapshots (None if it has none)."""
    parts = (
        bundle.version_resolution,
        bundle.routing_view,
        bundle.admission_policy,
        bundle.policy_resolution,
        bundle.provider_health,
        bundle.abi_compatibility,
    )
    expiries = [p.meta.expires_at_ms for p in parts if p is not None]
    return min(expiries) if expiries else None


class _BundleCache:
    def __init__(self, clock: Clock, max_staleness_ms: int) -> None:
        self._clock = clock
        self._max = max_staleness_ms
        self._entries: dict[tuple[str, ...], tuple[TurnStartBundle, int]] = {}
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[str, ...]) -> TurnStartBundle | None:
        entry = self._entries.get(key)
        now = self._clock()
        if entry is not None:
            bundle, fetched = entry
            expiry = bundle_expiry_ms(bundle)
            if now - fetched < self._max and (expiry is None or now < expiry):
                self.hits += 1
                return bundle
            del self._entries[key]
        self.misses += 1
        return None

    def put(self, key: tuple[str, ...], bundle: TurnStartBundle) -> None:
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[key] = (bundle, self._clock())


#: read timeout of an operator hand-off (migrate, rotate, revoke): it answers once the
#: holder released the lease, at the latest when the lease expires (its TTL: 30 s default)
HANDOFF_TIMEOUT_S = 125.0


class ControlPlaneClient:
    """Async HTTP client for the control-plane API; raise :class:`CPError` subclasses."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout_s: float = 10.0,
        max_staleness_ms: int = 5_000,
        clock: Clock = wall_ms,
        transport: httpx.AsyncBaseTransport | None = None,
        tls: ReloadingClientContext | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        #: mTLS (F-120): the client certificate and CA bundle, reloaded when they change
        self.tls = tls
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=timeout_s, transport=transport,
            verify=tls.context if tls is not None else True,
        )
        self.cache = _BundleCache(clock, max_staleness_ms)

    async def __aenter__(self) -> ControlPlaneClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        content: bytes | None = None,
        timeout_s: float | None = None,
        authorization: str | None = None,
    ) -> Any:
        """Send one request; return decoded JSON or raise the server's error.

        ``json`` is preferably one of the request types of ``_requests`` (the structs the
        server decodes), so a change to a request type breaks this client's type check;
        ``content`` is a body already encoded as JSON (batches assembled from parts).
        ``timeout_s``: this request's read timeout (a hand-off waits for the holder).
        ``authorization``: another caller's ``Authorization`` header, relayed as it came
        (the runtime asking on an operator's behalf) instead of this client's key.
        """
        headers: dict[str, str] = {}
        if isinstance(json, msgspec.Struct):
            content, json = msgspec.json.encode(json), None
        if content is not None:
            headers["Content-Type"] = "application/json"
        if authorization is not None:
            headers["Authorization"] = authorization
        if self.tls is not None:
            self.tls.refresh()
        try:
            extra: dict[str, Any] = {} if timeout_s is None else {"timeout": timeout_s}
            response = await self._http.request(
                method, path, json=json, params=params, content=content, headers=headers,
                **extra,
            )
        except httpx.TransportError as exc:
            raise Unavailable(
                f"control plane at {self.base_url} is unreachable "
                f"({exc.__class__.__name__}: {exc}); "
                f"{unreachable_hint(self.base_url, str(exc))}",
                field="server",
            ) from None
        if response.status_code >= 400:
            raise _error_from(response)
        return response.json()

    async def turn_start_bundle(
        self,
        *,
        tenant_id: str,
        session_id: str,
        pipeline_name: str,
        runtime_id: str,
        refresh: bool = False,
    ) -> TurnStartBundle:
        """Cached snapshots; ``refresh=True`` before migration-sensitive operations (F-159)."""
        key = (tenant_id, session_id, pipeline_name, runtime_id)
        cached = None if refresh else self.cache.get(key)
        if cached is not None:
            return cached
        params = {
            "tenant_id": tenant_id,
            "session_id": session_id,
            "pipeline_name": pipeline_name,
            "runtime_id": runtime_id,
        }
        data = await self.request("GET", "/v1/bundle", params=params)
        bundle = msgspec.convert(data, TurnStartBundle)
        self.cache.put(key, bundle)
        return bundle

    # Thin helpers used by the CLI and tests.
    async def publish(self, spec_text: str, filename: str = "<api>", *,
                      force: bool = False) -> Any:
        body = PublishRequest(spec=spec_text, filename=filename, force=force)
        return await self.request("POST", "/v1/pipelines", json=body)

    async def publish_module(self, text: str) -> Any:
        return await self.request("POST", "/v1/modules", json=ModuleRequest(module=text))

    async def get_module(self, name: str, version: str) -> Any:
        return await self.request("GET", f"/v1/modules/{name}/versions/{version}")

    async def list_pipelines(self, name: str | None = None) -> Any:
        return await self.request("GET", "/v1/pipelines", params={"name": name} if name else None)

    async def get_pipeline(self, name: str, version: str | None = None) -> Any:
        path = f"/v1/pipelines/{name}" + (f"/versions/{version}" if version else "")
        return await self.request("GET", path)

    async def rollout(self, name: str, canary: str, percent: float, tenants: list[str]) -> Any:
        body = RolloutRequest(canary=canary, percent=percent, tenants=tuple(tenants))
        return await self.request("POST", f"/v1/pipelines/{name}/rollout", json=body)

    async def rollback(self, name: str, to: str) -> Any:
        body = RollbackRequest(to=to)
        return await self.request("POST", f"/v1/pipelines/{name}/rollback", json=body)

    async def route(self, tenant_id: str, pipeline_name: str, **extra: Any) -> Any:
        fields = {"tenant_id": tenant_id, "pipeline_name": pipeline_name, **extra}
        body = _typed(fields, RouteRequest)
        return await self.request("POST", "/v1/sessions/route", json=body)

    # Runtime-side operations (typed results).
    async def register_runtime(
        self,
        runtime_id: str,
        endpoint: str,
        *,
        transport_kind: str = "websocket",
        region: str = "default",
        capacity: int = 100,
        runtime_version: str = __version__,
        schema_version: str = SCHEMA_VERSION,
        artifact_regions: list[str] | None = None,
    ) -> RuntimeInstance:
        """Register (declaring this release and schema: the control plane checks the skew)."""
        body = RegisterRuntimeRequest(
            runtime_id=runtime_id,
            endpoint=endpoint,
            transport_kind=transport_kind,
            region=region,
            capacity=capacity,
            artifact_regions=artifact_regions,
            runtime_version=runtime_version,
            schema_version=schema_version,
        )
        return msgspec.convert(
            await self.request("POST", "/v1/runtimes", json=body), RuntimeInstance
        )

    async def heartbeat(
        self, runtime_id: str, *, health: str, load: int | None = None, mode: str = "migrate"
    ) -> Any:
        body = _typed({"health": health, "load": load, "mode": mode}, HeartbeatRequest)
        return await self.request("POST", f"/v1/runtimes/{runtime_id}/heartbeat", json=body)

    async def deregister_runtime(self, runtime_id: str) -> bool:
        """Remove the runtime from the routing view; False if it was not registered."""
        data = await self.request("DELETE", f"/v1/runtimes/{runtime_id}")
        return bool(data["removed"])

    async def rotate_lease(self, session_id: str, *, revoke: bool = False,
                           force: bool = False, timeout_s: float = HANDOFF_TIMEOUT_S) -> Lease:
        """Rotate (``revoke``: revoke) the session's lease; a live holder's lease is handed
        off in two phases, so the answer may take up to the lease's TTL (``force``: at
        once, the holder is known to be gone)."""
        action = "revoke" if revoke else "rotate"
        params = {"wait_ms": str(int(timeout_s * 1000) - 5_000)}
        if force:
            params["force"] = "true"
        data = await self.request("POST", f"/v1/leases/{session_id}/{action}", params=params,
                                  timeout_s=timeout_s)
        return msgspec.convert(data["lease"], Lease)

    async def release_lease(self, session_id: str, holder: str, epoch: int) -> LeaseRelease:
        """Release a lease being handed off (its holder, output fenced, turn ended)."""
        body = LeaseEpochRequest(holder=holder, epoch=epoch)
        data = await self.request("POST", f"/v1/leases/{session_id}/release", json=body)
        return msgspec.convert(data, LeaseRelease)

    async def acquire_lease(self, session_id: str, holder: str, ttl_ms: int | None = None) -> Lease:
        body = LeaseRequest(holder=holder, ttl_ms=ttl_ms)
        data = await self.request("POST", f"/v1/leases/{session_id}/acquire", json=body)
        return msgspec.convert(data["lease"], Lease)

    async def start_session(
        self, session_id: str, *, runtime_id: str, tenant_id: str, lease_epoch: int,
        ttl_ms: int | None = None,
    ) -> SessionStart:
        """Start (or resume) the session on ``runtime_id`` in one call: record, lease,
        checkpoint take-over, signals and turn-start bundle (``POST .../start``)."""
        body = SessionStartRequest(runtime_id=runtime_id, tenant_id=tenant_id,
                                   lease_epoch=lease_epoch, ttl_ms=ttl_ms)
        data = await self.request("POST", f"/v1/sessions/{session_id}/start", json=body)
        return msgspec.convert(data, SessionStart)

    async def renew_lease(
        self, session_id: str, holder: str, epoch: int, ttl_ms: int | None = None
    ) -> Lease:
        body = LeaseEpochRequest(holder=holder, epoch=epoch, ttl_ms=ttl_ms)
        data = await self.request("POST", f"/v1/leases/{session_id}/renew", json=body)
        return msgspec.convert(data, Lease)

    async def renew_leases(
        self, runtime_id: str, held: list[tuple[str, int]], ttl_ms: int | None = None
    ) -> list[LeaseRenewal]:
        """Renew every ``(session, epoch)`` lease ``runtime_id`` holds, in one request."""
        body = LeaseRenewalsRequest(
            leases=tuple(HeldLease(session_id=sid, epoch=epoch) for sid, epoch in held),
            ttl_ms=ttl_ms)
        data = await self.request("POST", f"/v1/runtimes/{runtime_id}/leases", json=body)
        return msgspec.convert(data["leases"], list[LeaseRenewal])

    async def runtime_notices(self, runtime_id: str, known: tuple[int, ...] = (),
                              wait_ms: int = 0) -> RuntimeNotices:
        """The pending hand-offs of the leases ``runtime_id`` holds, once one is not in
        ``known`` or ``wait_ms`` passed, or the control plane began to stop (the runtime's
        control channel, a long poll)."""
        body = NoticesRequest(known=known, wait_ms=wait_ms)
        data = await self.request("POST", f"/v1/runtimes/{runtime_id}/notices", json=body,
                                  timeout_s=wait_ms / 1000 + 10.0)
        return msgspec.convert(data, RuntimeNotices)

    async def authorize_lease(self, session_id: str, holder: str, epoch: int) -> Authorization:
        body = LeaseEpochRequest(holder=holder, epoch=epoch)
        data = await self.request("POST", f"/v1/leases/{session_id}/authorize", json=body)
        return msgspec.convert(data, Authorization)

    async def migrate(self, session_id: str, target: str | None = None, *,
                      force: bool = False, released_by: tuple[str, int] | None = None,
                      timeout_s: float = HANDOFF_TIMEOUT_S) -> MigrationResult:
        """Move the session to ``target`` (None: the best other healthy runtime). A live
        holder's lease is handed off in two phases (the answer may take up to the lease's
        TTL); ``released_by`` (holder, epoch): the holder hands it over itself; ``force``:
        at once."""
        held = None if released_by is None else HeldBy(holder=released_by[0],
                                                         epoch=released_by[1])
        data = await self.request("POST", f"/v1/sessions/{session_id}/migrate",
                                  json=MigrateRequest(target=target, force=force,
                                                      released_by=held,
                                                      wait_ms=int(timeout_s * 1000) - 5_000),
                                  timeout_s=timeout_s)
        return msgspec.convert(data, MigrationResult)

    async def report_status(self, session_id: str, status: str,
                            summary: UsageSummary | None = None,
                            artifacts: ArtifactLocation | None = None,
                            reason: str | None = None) -> SessionInfo:
        body = StatusRequest(status=status, summary=summary,  # type: ignore[arg-type]
                             artifacts=artifacts,
                             reason=reason[:500] if reason is not None else None)
        data = await self.request("POST", f"/v1/sessions/{session_id}/status", json=body)
        return msgspec.convert(data, SessionInfo)

    async def authorize_debug(self, session_id: str, authorization: str) -> DebugGrant:
        """May the caller whose ``Authorization`` header this is capture the session's
        debug events (F-076; raise its 401/403/404 otherwise)?"""
        reply = await self.request("POST", f"/v1/sessions/{session_id}/debug/authorize",
                                   authorization=authorization)
        return _typed(reply, DebugGrant)

    async def verification_keys(self) -> TokenKeys:
        """Public verification material for transports (HS256 deployments share the secret)."""
        data = await self.request("GET", "/v1/tokens/keys")
        return TokenKeys(algorithm=data["algorithm"], public_pem=data["public_pem"],
                         kid=data.get("kid"))

    async def verification_key_set(self) -> tuple[list[TokenKeys], str | None]:
        """Every key that still verifies, and the active key's id (F-169; an older control
        plane lists only its one key)."""
        data = await self.request("GET", "/v1/tokens/keys")
        keys = [TokenKeys(algorithm=k["algorithm"], public_pem=k["public_pem"], kid=k["kid"])
                for k in data.get("keys") or ()]
        if not keys:
            keys = [TokenKeys(algorithm=data["algorithm"], public_pem=data["public_pem"],
                              kid=data.get("kid"))]
        return keys, data.get("kid")


class InProcessControlPlane:
    """The same ``turn_start_bundle`` directly over the services (local runner, no HTTP)."""

    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp

    async def turn_start_bundle(
        self, *, tenant_id: str, session_id: str, pipeline_name: str, runtime_id: str
    ) -> TurnStartBundle:
        return await build_bundle(
            self.cp,
            tenant_id=tenant_id,
            session_id=session_id,
            pipeline_name=pipeline_name,
            runtime_id=runtime_id,
        )


def _typed(fields: dict[str, Any], kind: type[T]) -> T:
    """Build a request struct from loosely typed arguments; a bad one is InvalidRequest."""
    try:
        return msgspec.convert(fields, kind)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"invalid request: {exc}", field=field_from(str(exc))) from None


def _error_from(response: httpx.Response) -> CPError:
    try:
        body = response.json()["error"]
        code, message, field = str(body["code"]), str(body["message"]), body.get("field")
    except (ValueError, KeyError, TypeError):
        return CPError(f"HTTP {response.status_code}: {response.text[:200]}", code="http_error")
    cls = ERRORS_BY_CODE.get(code, CPError)
    error = cls(message, field=field, code=code)
    error.status = response.status_code
    return error
