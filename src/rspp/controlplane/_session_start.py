"""A session's start on its runtime in one call and one transaction (F-103, F-155, F-157).

``POST /v1/sessions/{id}/start`` is what a runtime asks when a client connects with a
verified token: in one transaction the control plane reads the session's record and,
when it matches the token's claims (the tenant, this runtime, not ended),

- acquires the lease for the runtime exactly as ``POST /v1/leases/{id}/acquire`` does
  (renewed at the same epoch for its holder, a lapsed lease of another holder taken
  over at a new epoch only by the runtime the session is routed to, refused ``409``
  while another holder's lease is live);
- when the session resumes (lease epoch > 1) and the lease is at the token's epoch,
  takes its checkpoint over for that epoch (as ``GET /v1/sessions/{id}/state`` with
  holder and epoch: the previous holder can no longer write) and reads its control
  signals (the migration markers its timeline starts with);
- builds the session's turn-start bundle (as ``GET /v1/bundle``);
- carries the tenant's placement policy (F-168): the runtime stores the session's
  artifacts only inside its regions. A runtime outside them is refused
  ``409 residency_violation`` before the lease is touched.

The answer carries all of it, so a resumed start costs one round trip and one
transaction instead of five of each. A record that does not match answers with the
record alone and changes nothing (the runtime refuses the session naming why); a lease
whose epoch moved past the token's answers with the lease alone (the client asks for a
new token). Operator role, tenant of the session (route table).
"""

from __future__ import annotations

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from rspp.contracts import ControlSignal, TurnStartBundle
from rspp.controlplane._bundle import bundle_in
from rspp.controlplane._errors import ResidencyViolation
from rspp.controlplane._handlers import Call
from rspp.controlplane._leases import Lease
from rspp.controlplane._rbac import Principal, Role
from rspp.controlplane._requests import Epoch, Id, TtlMs
from rspp.controlplane._residency import TenantPlacement, placement_in, runtime_allowed
from rspp.controlplane._service import ControlPlane
from rspp.controlplane._session_state import SessionState, take_over_in
from rspp.controlplane._sessions import SessionInfo, SessionStatus
from rspp.controlplane._signals import session_signals

__all__ = ["SessionStart", "SessionStartRequest", "start_session", "start_session_in_one"]


class SessionStartRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The runtime a client connected to, with the claims of the client's token."""

    runtime_id: Id
    tenant_id: Id
    #: the lease epoch the token carries
    lease_epoch: Epoch
    ttl_ms: TtlMs | None = None


class SessionStart(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a runtime needs to start the session (module docstring).

    ``lease`` None: the record does not match the claims and nothing changed;
    ``state`` and ``signals``: a resume (lease epoch > 1) at the token's epoch;
    ``bundle`` None: the lease moved past the token's epoch."""

    session: SessionInfo
    lease: Lease | None = None
    state: SessionState | None = None
    signals: list[ControlSignal] | None = None
    bundle: TurnStartBundle | None = None
    #: the tenant's placement policy (None: none set; its sessions run anywhere)
    residency: TenantPlacement | None = None


def _matches(info: SessionInfo, body: SessionStartRequest) -> bool:
    return (info.status != SessionStatus.ENDED and info.tenant_id == body.tenant_id
            and info.runtime_id == body.runtime_id)


async def start_session_in_one(cp: ControlPlane, principal: Principal, session_id: str,
                               body: SessionStartRequest) -> SessionStart:
    """The session's start for ``body.runtime_id`` in one transaction (module docstring)."""
    await cp.authorize(principal, Role.OPERATOR, "start session")
    ttl_ms = body.ttl_ms or cp.settings.lease_ttl_ms
    runtime_id = body.runtime_id
    issued: list[bool] = []  # a new epoch was issued (a take-over): long polls hear of it

    async def work(conn: AsyncConnection, now: int) -> SessionStart | None:
        issued.clear()
        info = await cp.sessions.get_in(conn, session_id)
        principal.require_tenant(info.tenant_id)
        if not _matches(info, body):
            return SessionStart(session=info)
        residency = await placement_in(conn, info.tenant_id)
        here = await cp.routing.get_in(conn, runtime_id)
        if not runtime_allowed(residency, here.region, here.artifact_regions):
            raise ResidencyViolation(
                f"runtime {runtime_id} (region {here.region}) is outside the regions tenant "
                f"{info.tenant_id} is restricted to; the session does not start here",
                field="runtime_id")
        change = await cp.leases.acquire_in(conn, session_id, runtime_id, ttl_ms=ttl_ms,
                                            actor=principal.key_id)
        if change is None:  # the compare-and-swap lost: the transaction is retried
            return None
        lease = change.lease
        issued[:] = [change.signal is not None]
        info = msgspec.structs.replace(info, lease_epoch=lease.epoch)
        if lease.epoch > body.lease_epoch:
            return SessionStart(session=info, lease=lease)
        state = signals = None
        if lease.epoch > 1:
            state = await take_over_in(conn, now, session_id, runtime_id, lease.epoch,
                                       held=True, sealer=cp.state_sealer)
            signals = await session_signals(conn, session_id)
        bundle = await bundle_in(cp, conn, tenant_id=info.tenant_id, session_id=session_id,
                                 pipeline_name=info.pipeline_name, runtime_id=runtime_id,
                                 info=info)
        return SessionStart(session=info, lease=lease, state=state, signals=signals,
                            bundle=bundle, residency=residency)

    started = await cp._write(work, "start session")
    if any(issued):
        cp.placements.changed([session_id])
    return started


# ---- HTTP handler (route table: POST /v1/sessions/{session_id}/start) ----------------------
async def start_session(c: Call) -> SessionStart:
    return await start_session_in_one(c.cp, c.principal, c.path["session_id"], c.body)
