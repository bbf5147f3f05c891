"""Session operations: route, tokens, status, leases, audit and keys."""

from __future__ import annotations

import asyncio
import uuid

import msgspec
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from rspp.contracts import (
    ControlSignal,
    DecisionOutcome,
    OutcomeKind,
)
from rspp.controlplane._admission import (
    admission_snapshot,
    decide_in,
    tenant_outcomes,
)
from rspp.controlplane._audit import AuditEntry, AuditVerdict
from rspp.controlplane._configs import (
    ConfigKind,
    active_config,
)
from rspp.controlplane._errors import (
    Conflict,
    CPError,
    Forbidden,
    NoCapacity,
    NotFound,
    ResidencyUnplaceable,
)
from rspp.controlplane._leases import Authorization, Lease, LeaseChange, LeaseRenewal
from rspp.controlplane._ops_handoffs import HandoffOps
from rspp.controlplane._policy import (
    PolicyDocument,
    SessionAttributes,
    evaluate_policy,
    parse_policy,
    selection_detail,
)
from rspp.controlplane._rbac import Principal, Role
from rspp.controlplane._requests import ArtifactLocation
from rspp.controlplane._residency import placement_in, residency_detail
from rspp.controlplane._schema import sessions
from rspp.controlplane._sessions import (
    SessionInfo,
    SessionStatus,
)
from rspp.controlplane._signals import session_signals
from rspp.controlplane._tokens import SessionClaims
from rspp.providers import UsageSummary

#: the audit action of a session's usage summary (tenant-scoped, exported with the log)
SUMMARY_ACTION = "session.summary"
ENDED_ACTION = "session.ended"



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


class SessionOps(HandoffOps):
    async def _audit_selection(self, conn: AsyncConnection, principal: Principal, sid: str,
                               tenant_id: str, doc: PolicyDocument, attrs: dict[str, str],
                               version: int, now: int) -> None:
        """Audit ``policy.select``: the session's providers at its start and why (F-056)."""
        health = await self.routing.provider_health_in(conn, now_ms=now)
        found = SessionAttributes.of(attrs)
        decision = evaluate_policy(doc, found, health, health.meta)
        await self.audit.append_in(conn, actor=principal.key_id, action="policy.select",
                                   subject=sid, tenant_id=tenant_id,
                                   detail=selection_detail(decision, found, version))

    async def _audit_refusal(self, principal: Principal, sid: str, tenant_id: str,
                             exc: ResidencyUnplaceable) -> None:
        """Audit ``residency.refused``: a route nothing inside the tenant's regions could take
        (its own transaction: the route's was rolled back)."""

        async def work(conn: AsyncConnection, now: int) -> bool:
            policy = await placement_in(conn, tenant_id)
            detail = (residency_detail(policy, reason=exc.message) if policy is not None
                      else {"reason": exc.message})
            await self.audit.append_in(conn, actor=principal.key_id, action="residency.refused",
                                       subject=sid, tenant_id=tenant_id, detail=detail)
            return True  # (None would mean "retry")

        await self._write(work, "audit residency refusal")

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
        region_latency_ms: dict[str, int] | None = None,
    ) -> SessionRoute:
        """Admit, resolve the version, place, issue lease epoch 1 and a signed token."""
        await self.authorize(principal, Role.OPERATOR, "route session")
        principal.require_tenant(tenant_id)
        attrs = dict(attributes or {})
        sid = session_id or f"s_{uuid.uuid4().hex}"
        ttl = ttl_s if ttl_s is not None else self.settings.token_ttl_s

        async def work(conn: AsyncConnection, now: int) -> SessionRoute | DecisionOutcome | None:
            # first what does not decide admission (no lock held): version, placement, policy
            resolution = await self.rollouts.resolve_in(
                conn,
                pipeline_name,
                tenant_id=tenant_id,
                session_id=sid,
                now_ms=now,
                ttl_ms=self.settings.snapshot_ttl_ms,
            )
            no_room: NoCapacity | None = None
            residency = await placement_in(conn, tenant_id)
            try:
                runtime = await self.routing.place_in(conn, region=attrs.get("region"),
                                                      now_ms=now,
                                                      latency_ms=region_latency_ms,
                                                      residency=residency)
                view = await self.routing.view_in(conn, runtime.runtime_id, now_ms=now)
            except NoCapacity as exc:  # admission speaks first (a rejection is a 429)
                no_room = exc
            policy = await active_config(conn, ConfigKind.POLICY, tenant_id)
            quotas = await active_config(conn, ConfigKind.ADMISSION, tenant_id)
            # the tenant's critical section, held to commit: its admission counts and this
            # session's row (concurrent routes of other tenants do not wait for it)
            if not self.store.is_sqlite:
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(hashtext(:t))"), {"t": "tenant:" + tenant_id}
                )
            admission = admission_snapshot(
                tenant_id, quotas, now_ms=now, ttl_ms=self.settings.snapshot_ttl_ms
            )
            outcome = await decide_in(conn, admission, session_id=sid, now_ms=now)
            if outcome.outcome_kind != OutcomeKind.ADMIT:
                return outcome
            if no_room is not None:
                raise no_room
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
            if residency is not None and residency.regions is not None:
                await self.audit.append_in(
                    conn, actor=principal.key_id, action="residency.placed", subject=sid,
                    tenant_id=tenant_id, detail=residency_detail(
                        residency, runtime_id=runtime.runtime_id, region=runtime.region,
                        artifact_regions=runtime.artifact_regions))
            if policy is not None:
                doc = parse_policy(policy.body)
                await self._audit_selection(conn, principal, sid, tenant_id, doc, attrs,
                                            policy.version, now)
                if doc.allow_compliance_insertion and doc.insert_compliance_nodes:
                    await self.audit.append_in(
                        conn,
                        actor=principal.key_id,
                        action="policy.compliance_insert",
                        subject=sid,
                        detail={
                            "nodes": list(doc.insert_compliance_nodes),
                            "policy_version": policy.version,
                        },
                        tenant_id=tenant_id,
                    )
            token, claims = self.issuer.issue(
                session_id=sid,
                tenant_id=tenant_id,
                runtime_id=runtime.runtime_id,
                pipeline_name=pipeline_name,
                pipeline_version=resolution.pipeline_version,
                lease_epoch=change.lease.epoch,
                ttl_s=ttl,
            )
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

        try:
            result = await self._write(work, "route session")
        except ResidencyUnplaceable as exc:
            await self._audit_refusal(principal, sid, tenant_id, exc)
            raise
        if isinstance(result, SessionRoute):
            self.gate_metrics.admission(tenant_id, result.admission.outcome_kind.value)
            return result
        if isinstance(result, DecisionOutcome):
            self.gate_metrics.admission(tenant_id, result.outcome_kind.value)
            raise AdmissionDenied(result)
        raise CPError("route session produced no result", code="internal")

    async def issue_token(
        self, principal: Principal, *, session_id: str, tenant_id: str, ttl_s: int | None = None,
        moved_from: tuple[str, int] | None = None, wait_ms: int = 0,
        gone: asyncio.Event | None = None,
    ) -> tuple[str, SessionClaims]:
        """A fresh token for an already routed session, bound to its current lease epoch.

        ``moved_from`` (runtime, lease epoch: where the caller last had the session) with
        ``wait_ms``: while the session is still there, wait up to ``wait_ms`` for it to move
        (a failover, a migration, its end) and answer with its placement then (the long poll
        of a client whose runtime went silent; see :mod:`rspp.controlplane._placements`);
        the wait ends early once ``gone`` is set (the client disconnected)."""
        await self.authorize(principal, Role.OPERATOR, "issue token")
        principal.require_tenant(tenant_id)

        async def read() -> SessionInfo:
            async with self.store.engine.connect() as conn:
                return await self.sessions.get_in(conn, session_id)

        def moved(info: SessionInfo) -> bool:
            return (info.status == SessionStatus.ENDED or info.tenant_id != tenant_id
                    or (info.runtime_id, info.lease_epoch) != moved_from)

        if moved_from is not None and wait_ms > 0:
            info = await self.placements.until(session_id, read, moved, wait_ms / 1000,
                                               gone=gone)
        else:
            info = await read()
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
            raise Conflict(
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

    async def session_tenant(self, session_id: str) -> str | None:
        """The tenant owning ``session_id`` (None when no such session was routed)."""
        async with self.store.engine.connect() as conn:
            tenant = (
                await conn.execute(
                    select(sessions.c.tenant_id).where(sessions.c.session_id == session_id)
                )
            ).scalar()
        return None if tenant is None else str(tenant)

    async def session_status(self, principal: Principal, session_id: str) -> SessionInfo:
        await self.authorize(principal, Role.VIEWER, "read session status")
        async with self.store.engine.connect() as conn:
            info = await self.sessions.get_in(conn, session_id)
        principal.require_tenant(info.tenant_id)
        return info

    async def report_status(
        self, principal: Principal, session_id: str, status: SessionStatus,
        summary: UsageSummary | None = None, *, reason: str | None = None,
        artifacts: ArtifactLocation | None = None,
    ) -> SessionInfo:
        """Record a runtime's status report; ``summary`` (at the end) joins the tenant's
        audit log as ``session.summary`` (F-075), and an ``ended`` report's ``reason`` as
        ``session.ended`` (F-091: a disconnected session cleaned up after its resume
        window is audited with ``resume_window_expired``); ``artifacts`` (where the runtime
        stores the session's artifacts) is audited ``residency.artifacts`` with whether the
        tenant's regions allow it (F-168, NF-034)."""
        await self.authorize(principal, Role.OPERATOR, "report session status")
        if summary is not None and summary.session_id != session_id:
            raise Conflict(f"summary.session_id {summary.session_id!r} is not the session "
                           f"{session_id!r} of the path", field="summary.session_id")

        async def work(conn: AsyncConnection, now: int) -> SessionInfo:
            info = await self.sessions.get_in(conn, session_id)
            principal.require_tenant(info.tenant_id)
            if summary is not None:  # the session's tenant, not what the runtime claims
                detail = msgspec.to_builtins(msgspec.structs.replace(
                    summary, tenant_id=info.tenant_id))
                await self.audit.append_in(conn, actor=principal.key_id,
                                           action=SUMMARY_ACTION, subject=session_id,
                                           detail=detail, tenant_id=info.tenant_id)
            if status == SessionStatus.ENDED and reason is not None:
                await self.audit.append_in(conn, actor=principal.key_id,
                                           action=ENDED_ACTION, subject=session_id,
                                           detail={"reason": reason,
                                                   "runtime_id": info.runtime_id},
                                           tenant_id=info.tenant_id)
            if artifacts is not None:
                residency = await placement_in(conn, info.tenant_id)
                allowed = (residency is None or residency.regions is None
                           or artifacts.region in residency.regions)
                await self.audit.append_in(
                    conn, actor=principal.key_id, action="residency.artifacts",
                    subject=session_id, tenant_id=info.tenant_id,
                    detail={"region": artifacts.region, "location": artifacts.location,
                            "runtime_id": info.runtime_id, "within_policy": allowed,
                            "regions": residency.regions if residency else None,
                            "jurisdiction": residency.jurisdiction if residency else None})
            return await self.sessions.set_status_in(conn, session_id, status, now_ms=now)

        info = await self._write(work, "report status")
        if status == SessionStatus.ENDED:
            self.placements.changed([session_id])
        return info

    async def session_summary(self, principal: Principal, session_id: str) -> UsageSummary:
        """The usage summary the session's runtime reported when it ended (F-075)."""
        await self.session_status(principal, session_id)  # role and tenant checks
        entry = await self.audit.latest(SUMMARY_ACTION, session_id)
        if entry is None:
            raise NotFound(f"session {session_id!r} has no summary yet: its runtime reports "
                           "one when the session ends", field="session_id")
        return msgspec.convert(entry.detail, UsageSummary)

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

    async def renew_leases(
        self,
        principal: Principal,
        holder: str,
        held: list[tuple[str, int]],
        ttl_ms: int | None = None,
    ) -> list[LeaseRenewal]:
        """Renew every lease a runtime holds in one request (fleet operators: the runtime)."""
        await self.authorize(principal, Role.OPERATOR, "renew leases")
        return await self.leases.renew_all(
            holder, held, ttl_ms=ttl_ms or self.settings.lease_ttl_ms
        )

    async def change_lease(
        self, principal: Principal, session_id: str, *, revoke: bool, force: bool = False,
        wait_ms: int | None = None,
    ) -> LeaseChange:
        """Rotate the session's lease to the next epoch for the same holder (``revoke``:
        for nobody). A lease its runtime holds live is handed off in two phases
        (:mod:`rspp.controlplane._ops_handoffs`): the runtime learns it at its next renewal,
        fences its output, ends the active turn ``deauthorized_drain`` (T8) and releases
        the lease; only then does the epoch move (after a revoke the session closes).
        ``force``: at once (the holder is known to be gone; fencing covers it); ``wait_ms``:
        how long to wait for the release (then ``409 handoff_pending``; None: to the end)."""
        await self.authorize(principal, Role.OPERATOR, "revoke lease" if revoke else "rotate lease")
        change = await self.hand_off(principal, session_id, "revoke" if revoke else "rotate",
                                     force=force, wait_ms=wait_ms)
        if not isinstance(change, LeaseChange):
            raise CPError("lease hand-off produced no lease", code="internal")
        return change

    async def authorize_lease(
        self, principal: Principal, session_id: str, holder: str, epoch: int
    ) -> Authorization:
        await self.authorize(principal, Role.VIEWER, "check lease")
        return await self.leases.authorize(session_id, holder, epoch)

    # -- audit and keys --------------------------------------------------------------------
    async def audit_entries(
        self,
        principal: Principal,
        *,
        after_seq: int = 0,
        limit: int = 1000,
        tenant_id: str | None = None,
    ) -> list[AuditEntry]:
        """Audit entries; a tenant-scoped key reads only its own tenant's (fleet keys read
        every entry, or one tenant's with ``tenant_id``)."""
        await self.authorize(principal, Role.VIEWER, "read audit log")
        if principal.tenant_id is not None:
            principal.require_tenant(tenant_id or principal.tenant_id)
            tenant_id = principal.tenant_id
        return await self.audit.entries(after_seq=after_seq, limit=limit, tenant_id=tenant_id)

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
                tenant_id=tenant_id,
            )
            return key_id, secret

        return await self._write(work, "create key")
