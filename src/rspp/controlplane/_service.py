"""The control-plane facade: every operation, with RBAC and audit, over one store."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from rspp.contracts import (
    ControlSignal,
    DecisionOutcome,
    OutcomeKind,
    ProviderStatus,
    RuntimeHealth,
)
from rspp.controlplane._admission import (
    admission_snapshot,
    decide_in,
    parse_quotas,
    tenant_outcomes,
)
from rspp.controlplane._audit import AuditEntry, AuditLog, AuditVerdict
from rspp.controlplane._config import ControlPlaneSettings
from rspp.controlplane._configs import (
    ConfigKind,
    ConfigVersion,
    activate_config_in,
    active_config,
    list_configs,
    publish_config_in,
)
from rspp.controlplane._errors import CPError, Forbidden, InvalidRequest
from rspp.controlplane._leases import Authorization, Lease, LeaseChange, LeaseManager
from rspp.controlplane._policy import parse_policy
from rspp.controlplane._rbac import KeyRing, Principal, Role
from rspp.controlplane._registry import ModuleRecord, PipelineRecord, Registry
from rspp.controlplane._rollout import Rollouts, RolloutState
from rspp.controlplane._routing import RoutingTable, RuntimeInstance
from rspp.controlplane._sessions import (
    MigrationMode,
    MigrationResult,
    SessionBook,
    SessionInfo,
    SessionStatus,
)
from rspp.controlplane._signals import session_signals
from rspp.controlplane._store import Store
from rspp.controlplane._tokens import SessionClaims, TokenIssuer, TokenKeys, TokenVerifier
from rspp.controlplane._util import Clock, wall_ms

T = TypeVar("T")


class AdmissionDenied(CPError):
    """Session start was rejected or deferred by admission control (429)."""

    status = 429
    code = "admission_denied"

    def __init__(self, outcome: DecisionOutcome) -> None:
        super().__init__(
            outcome.reason, field="tenant_id", code=f"admission_{outcome.outcome_kind.value}"
        )
        self.outcome = outcome


class SessionRoute(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    tenant_id: str
    pipeline_name: str
    pipeline_version: str
    runtime_id: str
    endpoint: str
    transport_kind: str
    token: str
    token_expires_at_s: int
    lease_epoch: int
    policy_version: int | None
    routing_snapshot_id: str
    version_snapshot_id: str
    admission: DecisionOutcome


class ControlPlane:
    """Owns the store and every service; methods take the calling :class:`Principal`."""

    def __init__(
        self, store: Store, settings: ControlPlaneSettings, clock: Clock = wall_ms
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.token_keys = settings.token_keys or TokenKeys.generate_ed25519()
        self.audit = AuditLog(store, clock)
        self.keys = KeyRing(store, settings.admin_key)
        self.registry = Registry(store)
        self.rollouts = Rollouts(self.registry)
        self.routing = RoutingTable(
            store,
            heartbeat_timeout_ms=settings.heartbeat_timeout_ms,
            snapshot_ttl_ms=settings.snapshot_ttl_ms,
        )
        self.leases = LeaseManager(store, self.audit, clock)
        self.sessions = SessionBook(self.routing, self.leases)
        self.issuer = TokenIssuer(self.token_keys, clock)
        self.verifier = TokenVerifier(self.token_keys.verification_keys(), clock)

    @classmethod
    async def open(cls, settings: ControlPlaneSettings, clock: Clock = wall_ms) -> ControlPlane:
        store = await Store.open(settings.db_url, schema=settings.db_schema)
        return cls(store, settings, clock)

    async def close(self) -> None:
        await self.store.close()

    # -- helpers ---------------------------------------------------------------------------
    async def authorize(self, principal: Principal, needed: Role, action: str) -> None:
        """Enforce least privilege; a denial is itself audited (F-115)."""
        try:
            principal.require(needed, action)
        except Forbidden:
            await self.audit.append(
                actor=principal.key_id,
                action="rbac.denied",
                subject=action,
                detail={"role": principal.role.value, "needed": needed.value},
            )
            raise

    async def _write(
        self, work: Callable[[AsyncConnection, int], Awaitable[T | None]], what: str
    ) -> T:
        """Run ``work`` in a transaction, retrying when a compare-and-swap lost."""
        from sqlalchemy.exc import IntegrityError

        for _ in range(100):
            try:
                async with self.store.tx() as conn:
                    result = await work(conn, self.clock())
                if result is not None:
                    return result
            except IntegrityError:
                continue
        raise CPError(f"{what} kept conflicting with concurrent writers; retry", code="contention")

    # -- registry (CP-01) ------------------------------------------------------------------
    async def publish(
        self, principal: Principal, spec_text: str, *, filename: str = "<api>"
    ) -> tuple[PipelineRecord, bool]:
        await self.authorize(principal, Role.OPERATOR, "publish pipeline")

        async def work(conn: AsyncConnection, now: int) -> tuple[PipelineRecord, bool]:
            record, created = await self.registry.publish_in(
                conn, spec_text, filename=filename, author=principal.key_id, now_ms=now
            )
            if created:
                await self.audit.append_in(
                    conn,
                    actor=principal.key_id,
                    action="pipeline.publish",
                    subject=f"{record.name}@{record.version}",
                    detail={"spec_hash": record.spec_hash, "modules": record.modules},
                )
            return record, created

        return await self._write(work, "publish")

    async def publish_module(
        self, principal: Principal, module_text: str
    ) -> tuple[ModuleRecord, bool]:
        await self.authorize(principal, Role.OPERATOR, "publish module")

        async def work(conn: AsyncConnection, now: int) -> tuple[ModuleRecord, bool]:
            record, created = await self.registry.publish_module_in(
                conn, module_text, author=principal.key_id, now_ms=now
            )
            if created:
                await self.audit.append_in(
                    conn,
                    actor=principal.key_id,
                    action="module.publish",
                    subject=f"{record.name}@{record.version}",
                    detail={"content_hash": record.content_hash},
                )
            return record, created

        return await self._write(work, "publish module")

    async def list_pipelines(
        self, principal: Principal, name: str | None = None
    ) -> list[PipelineRecord]:
        await self.authorize(principal, Role.VIEWER, "list pipelines")
        return await self.registry.list(name)

    async def get_pipeline(
        self, principal: Principal, name: str, version: str | None
    ) -> PipelineRecord:
        await self.authorize(principal, Role.VIEWER, "get pipeline")
        return await self.registry.get(name, version)

    # -- rollout (CP-09) -------------------------------------------------------------------
    async def rollout(
        self,
        principal: Principal,
        name: str,
        *,
        canary: str,
        percent: float,
        tenants: tuple[str, ...] = (),
    ) -> RolloutState:
        await self.authorize(principal, Role.OPERATOR, "start rollout")

        async def work(conn: AsyncConnection, now: int) -> RolloutState:
            state = await self.rollouts.set_canary_in(
                conn, name, canary, percent, tenants, actor=principal.key_id, now_ms=now
            )
            await self.audit.append_in(
                conn,
                actor=principal.key_id,
                action="rollout.canary",
                subject=name,
                detail={
                    "stable": state.stable_version,
                    "canary": canary,
                    "percent": percent,
                    "tenants": list(tenants),
                    "revision": state.revision,
                },
            )
            return state

        return await self._write(work, "rollout")

    async def rollback(self, principal: Principal, name: str, *, to: str) -> RolloutState:
        await self.authorize(principal, Role.OPERATOR, "rollback")

        async def work(conn: AsyncConnection, now: int) -> RolloutState:
            before = await self.rollouts.state_in(conn, name)
            state = await self.rollouts.pin_in(conn, name, to, actor=principal.key_id, now_ms=now)
            await self.audit.append_in(
                conn,
                actor=principal.key_id,
                action="rollout.rollback",
                subject=name,
                detail={
                    "to": to,
                    "from_stable": before.stable_version if before else None,
                    "from_canary": before.canary_version if before else None,
                    "revision": state.revision,
                },
            )
            return state

        return await self._write(work, "rollback")

    async def rollout_state(self, principal: Principal, name: str) -> RolloutState | None:
        await self.authorize(principal, Role.VIEWER, "read rollout")
        async with self.store.engine.connect() as conn:
            return await self.rollouts.state_in(conn, name)

    # -- versioned configs: policy, provider config, admission (CP-04, CP-05, F-102) -------
    async def publish_config(
        self,
        principal: Principal,
        kind: ConfigKind,
        scope: str,
        body: dict[str, Any],
        *,
        activate: bool = True,
    ) -> ConfigVersion:
        await self.authorize(principal, Role.OPERATOR, f"publish {kind.value}")
        if kind == ConfigKind.POLICY:
            parse_policy(body)
        elif kind == ConfigKind.ADMISSION:
            parse_quotas(body)

        async def work(conn: AsyncConnection, now: int) -> ConfigVersion:
            version = await publish_config_in(
                conn, kind, scope, body, author=principal.key_id, now_ms=now, activate=activate
            )
            await self.audit.append_in(
                conn,
                actor=principal.key_id,
                action=f"{kind.value}.publish",
                subject=scope,
                detail={
                    "version": version.version,
                    "hash": version.body_hash,
                    "activated": activate,
                },
            )
            return version

        return await self._write(work, f"publish {kind.value}")

    async def activate_config(
        self, principal: Principal, kind: ConfigKind, scope: str, version: int
    ) -> ConfigVersion:
        """Roll a config forward or back to ``version`` (independent of pipelines)."""
        await self.authorize(principal, Role.OPERATOR, f"activate {kind.value}")

        async def work(conn: AsyncConnection, now: int) -> ConfigVersion | None:
            await activate_config_in(conn, kind, scope, version, now_ms=now)
            await self.audit.append_in(
                conn,
                actor=principal.key_id,
                action=f"{kind.value}.activate",
                subject=scope,
                detail={"version": version},
            )
            return await active_config(conn, kind, scope, fall_back_to_default=False)

        return await self._write(work, f"activate {kind.value}")

    async def configs(
        self, principal: Principal, kind: ConfigKind, scope: str
    ) -> list[ConfigVersion]:
        await self.authorize(principal, Role.VIEWER, f"list {kind.value}")
        async with self.store.engine.connect() as conn:
            return await list_configs(conn, kind, scope)

    # -- runtimes and provider health (CP-08, CP-10) ----------------------------------------
    async def register_runtime(
        self,
        principal: Principal,
        *,
        runtime_id: str,
        endpoint: str,
        transport_kind: str = "websocket",
        region: str = "default",
        capacity: int = 100,
    ) -> RuntimeInstance:
        await self.authorize(principal, Role.OPERATOR, "register runtime")

        async def work(conn: AsyncConnection, now: int) -> RuntimeInstance:
            await self.routing.register_in(
                conn,
                runtime_id=runtime_id,
                endpoint=endpoint,
                transport_kind=transport_kind,
                region=region,
                capacity=capacity,
                now_ms=now,
            )
            return await self.routing.get_in(conn, runtime_id)

        return await self._write(work, "register runtime")

    async def heartbeat(
        self,
        principal: Principal,
        runtime_id: str,
        *,
        health: RuntimeHealth,
        load: int | None = None,
        mode: MigrationMode = "migrate",
    ) -> tuple[RuntimeInstance, list[MigrationResult]]:
        """Record health; an instance turning unhealthy has its sessions reassigned (F-096)."""
        await self.authorize(principal, Role.OPERATOR, "runtime heartbeat")

        async def work(conn: AsyncConnection, now: int) -> tuple[RuntimeInstance, bool]:
            return await self.routing.heartbeat_in(
                conn, runtime_id=runtime_id, health=health, load=load, now_ms=now
            )

        instance, changed = await self._write(work, "heartbeat")
        moved: list[MigrationResult] = []
        if changed and health == RuntimeHealth.UNHEALTHY:
            moved = await self.failover(principal, runtime_id, mode=mode)
        return instance, moved

    async def failover(
        self, principal: Principal, runtime_id: str, *, mode: MigrationMode
    ) -> list[MigrationResult]:
        """``drain``: leave sessions to finish where they are; ``migrate``: move each one."""
        await self.authorize(principal, Role.OPERATOR, "failover")
        if mode == "drain":
            return []
        async with self.store.engine.connect() as conn:
            ids = await self.sessions.active_on_in(conn, runtime_id)
        return [await self.migrate(principal, sid, target=None) for sid in ids]

    async def migrate(
        self, principal: Principal, session_id: str, *, target: str | None
    ) -> MigrationResult:
        await self.authorize(principal, Role.OPERATOR, "migrate session")

        async def work(conn: AsyncConnection, now: int) -> MigrationResult | None:
            result = await self.sessions.migrate_in(
                conn,
                session_id,
                target=target,
                ttl_ms=self.settings.lease_ttl_ms,
                actor=principal.key_id,
                now_ms=now,
            )
            return result

        return await self._write(work, "migrate")

    async def runtimes(self, principal: Principal) -> list[RuntimeInstance]:
        await self.authorize(principal, Role.VIEWER, "list runtimes")
        async with self.store.engine.connect() as conn:
            return await self.routing.all_in(conn)

    async def report_provider_health(
        self,
        principal: Principal,
        provider_id: str,
        *,
        status: ProviderStatus,
        error_rate: float = 0.0,
        latency_p95_ms: int | None = None,
    ) -> int:
        await self.authorize(principal, Role.OPERATOR, "report provider health")

        async def work(conn: AsyncConnection, now: int) -> int:
            return await self.routing.report_provider_in(
                conn,
                provider_id=provider_id,
                status=status,
                error_rate=error_rate,
                latency_p95_ms=latency_p95_ms,
                now_ms=now,
            )

        return await self._write(work, "provider health")

    # -- sessions: route, token, status, leases (F-099, F-119, F-101, F-095) -----------------
    async def route_session(
        self,
        principal: Principal,
        *,
        tenant_id: str,
        pipeline_name: str,
        session_id: str | None = None,
        attributes: dict[str, str] | None = None,
        ttl_s: int | None = None,
    ) -> SessionRoute:
        """Admit, resolve the version, place, issue lease epoch 1 and a signed token."""
        await self.authorize(principal, Role.OPERATOR, "route session")
        principal.require_tenant(tenant_id)
        attrs = dict(attributes or {})
        sid = session_id or f"s_{uuid.uuid4().hex}"
        ttl = ttl_s if ttl_s is not None else self.settings.token_ttl_s

        async def work(conn: AsyncConnection, now: int) -> SessionRoute | DecisionOutcome | None:
            if not self.store.is_sqlite:
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(hashtext(:t))"), {"t": "tenant:" + tenant_id}
                )
            admission = admission_snapshot(
                tenant_id,
                await active_config(conn, ConfigKind.ADMISSION, tenant_id),
                now_ms=now,
                ttl_ms=self.settings.snapshot_ttl_ms,
            )
            outcome = await decide_in(conn, admission, session_id=sid, now_ms=now)
            if outcome.outcome_kind != OutcomeKind.ADMIT:
                return outcome
            resolution = await self.rollouts.resolve_in(
                conn,
                pipeline_name,
                tenant_id=tenant_id,
                session_id=sid,
                now_ms=now,
                ttl_ms=self.settings.snapshot_ttl_ms,
            )
            runtime = await self.routing.place_in(conn, region=attrs.get("region"), now_ms=now)
            policy = await active_config(conn, ConfigKind.POLICY, tenant_id)
            await self.sessions.create_in(
                conn,
                session_id=sid,
                tenant_id=tenant_id,
                pipeline_name=pipeline_name,
                pipeline_version=resolution.pipeline_version,
                runtime_id=runtime.runtime_id,
                policy_version=policy.version if policy else None,
                attributes=attrs,
                now_ms=now,
            )
            change = await self.leases.rotate_in(
                conn,
                sid,
                runtime.runtime_id,
                ttl_ms=self.settings.lease_ttl_ms,
                actor=principal.key_id,
            )
            if change is None:
                return None
            token, claims = self.issuer.issue(
                session_id=sid,
                tenant_id=tenant_id,
                runtime_id=runtime.runtime_id,
                pipeline_name=pipeline_name,
                pipeline_version=resolution.pipeline_version,
                lease_epoch=change.lease.epoch,
                ttl_s=ttl,
            )
            view = await self.routing.view_in(conn, runtime.runtime_id, now_ms=now)
            return SessionRoute(
                session_id=sid,
                tenant_id=tenant_id,
                pipeline_name=pipeline_name,
                pipeline_version=resolution.pipeline_version,
                runtime_id=runtime.runtime_id,
                endpoint=runtime.endpoint,
                transport_kind=runtime.transport_kind,
                token=token,
                token_expires_at_s=claims.expires_at_s,
                lease_epoch=change.lease.epoch,
                policy_version=policy.version if policy else None,
                routing_snapshot_id=view.meta.snapshot_id,
                version_snapshot_id=resolution.meta.snapshot_id,
                admission=outcome,
            )

        result = await self._write(work, "route session")
        if isinstance(result, SessionRoute):
            return result
        if isinstance(result, DecisionOutcome):
            raise AdmissionDenied(result)
        raise CPError("route session produced no result", code="internal")

    async def issue_token(
        self, principal: Principal, *, session_id: str, tenant_id: str, ttl_s: int | None = None
    ) -> tuple[str, SessionClaims]:
        """A fresh token for an already routed session, bound to its current lease epoch."""
        await self.authorize(principal, Role.OPERATOR, "issue token")
        principal.require_tenant(tenant_id)
        async with self.store.engine.connect() as conn:
            info = await self.sessions.get_in(conn, session_id)
        if info.tenant_id != tenant_id:
            raise Forbidden(
                f"session {session_id} belongs to another tenant, not {tenant_id!r}",
                field="tenant_id",
            )
        if (
            info.status == SessionStatus.ENDED
            or info.runtime_id is None
            or info.lease_epoch is None
        ):
            raise InvalidRequest(
                f"session {session_id} is not live; route a new session", field="session_id"
            )
        return self.issuer.issue(
            session_id=session_id,
            tenant_id=tenant_id,
            runtime_id=info.runtime_id,
            pipeline_name=info.pipeline_name,
            pipeline_version=info.pipeline_version,
            lease_epoch=info.lease_epoch,
            ttl_s=ttl_s if ttl_s is not None else self.settings.token_ttl_s,
        )

    def verify_token(self, token: str) -> SessionClaims:
        return self.verifier.verify(token)

    async def session_status(self, principal: Principal, session_id: str) -> SessionInfo:
        await self.authorize(principal, Role.VIEWER, "read session status")
        async with self.store.engine.connect() as conn:
            info = await self.sessions.get_in(conn, session_id)
        principal.require_tenant(info.tenant_id)
        return info

    async def report_status(
        self, principal: Principal, session_id: str, status: SessionStatus
    ) -> SessionInfo:
        await self.authorize(principal, Role.OPERATOR, "report session status")

        async def work(conn: AsyncConnection, now: int) -> SessionInfo:
            info = await self.sessions.get_in(conn, session_id)
            principal.require_tenant(info.tenant_id)
            return await self.sessions.set_status_in(conn, session_id, status, now_ms=now)

        return await self._write(work, "report status")

    async def signals(self, principal: Principal, session_id: str) -> list[ControlSignal]:
        info = await self.session_status(principal, session_id)
        async with self.store.engine.connect() as conn:
            return await session_signals(conn, info.session_id)

    async def admission_outcomes(
        self, principal: Principal, tenant_id: str
    ) -> list[DecisionOutcome]:
        await self.authorize(principal, Role.VIEWER, "read admission outcomes")
        principal.require_tenant(tenant_id)
        async with self.store.engine.connect() as conn:
            return await tenant_outcomes(conn, tenant_id)

    async def acquire_lease(
        self, principal: Principal, session_id: str, holder: str, ttl_ms: int | None = None
    ) -> LeaseChange:
        await self.authorize(principal, Role.OPERATOR, "acquire lease")
        return await self.leases.acquire(
            session_id, holder, ttl_ms=ttl_ms or self.settings.lease_ttl_ms, actor=principal.key_id
        )

    async def renew_lease(
        self,
        principal: Principal,
        session_id: str,
        holder: str,
        epoch: int,
        ttl_ms: int | None = None,
    ) -> Lease:
        await self.authorize(principal, Role.OPERATOR, "renew lease")
        return await self.leases.renew(
            session_id, holder, epoch, ttl_ms=ttl_ms or self.settings.lease_ttl_ms
        )

    async def authorize_lease(
        self, principal: Principal, session_id: str, holder: str, epoch: int
    ) -> Authorization:
        await self.authorize(principal, Role.VIEWER, "check lease")
        return await self.leases.authorize(session_id, holder, epoch)

    # -- audit and keys --------------------------------------------------------------------
    async def audit_entries(
        self, principal: Principal, *, after_seq: int = 0, limit: int = 1000
    ) -> list[AuditEntry]:
        await self.authorize(principal, Role.VIEWER, "read audit log")
        return await self.audit.entries(after_seq=after_seq, limit=limit)

    async def audit_verify(self, principal: Principal) -> AuditVerdict:
        await self.authorize(principal, Role.VIEWER, "verify audit log")
        return await self.audit.verify()

    async def create_key(
        self, principal: Principal, role: Role, tenant_id: str | None = None
    ) -> tuple[str, str]:
        await self.authorize(principal, Role.ADMIN, "create API key")

        async def work(conn: AsyncConnection, now: int) -> tuple[str, str]:
            key_id, secret = await self.keys.create_in(
                conn, role=role, tenant_id=tenant_id, created_by=principal.key_id, now_ms=now
            )
            await self.audit.append_in(
                conn,
                actor=principal.key_id,
                action="key.create",
                subject=key_id,
                detail={"role": role.value, "tenant_id": tenant_id},
            )
            return key_id, secret

        return await self._write(work, "create key")
