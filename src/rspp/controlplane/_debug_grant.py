"""Granting an operator's debug capture of a live session (F-076).

An operator starts a debug capture of a session it is not connected to on the runtime
that serves it (``POST /v1/sessions/{session_id}/debug``, :mod:`rspp.server._debug`).
The runtime does not hold API keys, so it asks this route, with the operator's own key,
whether that key may: ``POST /v1/sessions/{session_id}/debug/authorize`` is in the route
table like every route (operator role; a tenant key only for its own tenant's sessions,
the tenant taken from the session's record: another tenant's session answers 403, an
unknown one 404), and each grant is audited ``session.debug_capture`` (who, which
session). It answers the session's tenant and the runtime holding its lease; the
runtime applies the capture only to a session it serves, within its own bound
(``rspp serve --max-debug-captures``).
"""

from __future__ import annotations

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from rspp.controlplane._handlers import Call
from rspp.controlplane._rbac import Role

__all__ = ["DebugGrant", "authorize_debug"]


class DebugGrant(msgspec.Struct, frozen=True, kw_only=True):
    """The key may capture the session's debug events: whose it is and who serves it."""

    session_id: str
    tenant_id: str
    #: the runtime holding the session's lease (None: no runtime serves it now)
    runtime_id: str | None
    #: the key the grant was made to (as audited)
    key_id: str


# ---- HTTP handler (route table: POST /v1/sessions/{session_id}/debug/authorize) -------------
async def authorize_debug(c: Call) -> DebugGrant:
    cp, principal, sid = c.cp, c.principal, c.path["session_id"]
    await cp.authorize(principal, Role.OPERATOR, "capture a session's debug events")
    async with cp.store.engine.connect() as conn:
        info = await cp.sessions.get_in(conn, sid)
    principal.require_tenant(info.tenant_id)

    async def work(conn: AsyncConnection, now: int) -> bool:
        await cp.audit.append_in(conn, actor=principal.key_id, action="session.debug_capture",
                                 subject=sid, tenant_id=info.tenant_id,
                                 detail={"runtime_id": info.runtime_id})
        return True  # (None would mean "retry")

    await cp._write(work, "audit a debug capture grant")
    return DebugGrant(session_id=sid, tenant_id=info.tenant_id, runtime_id=info.runtime_id,
                      key_id=principal.key_id)
