"""Session state checkpoints in the control plane's database (F-155, F-157).

A runtime holding a session's lease saves the session's checkpoint (session-hot and
session-durable state plus its resume point: turn counter, open turn, idempotency
window) at turn boundaries with ``PUT /v1/sessions/{id}/state``; the runtime a
session fails over or migrates to loads it with ``GET``. Writes are fenced twice:

- by lease: only the current holder at the current, unexpired epoch may write
  (``409 stale_epoch``), so a paused or partitioned runtime that lost the session
  cannot overwrite what its successor resumed from;
- by version (optimistic): ``expected_version`` must be the stored version
  (``409 stale_state``), so two writers never interleave.

The document is opaque JSON to the control plane, limited to
:data:`MAX_STATE_BYTES` (``413``). Both routes are in the route table (operator
role, tenant of the session).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from rspp.controlplane._errors import BodyTooLarge, Conflict
from rspp.controlplane._handlers import Call
from rspp.controlplane._rbac import Principal, Role
from rspp.controlplane._requests import Id
from rspp.controlplane._schema import leases, session_state
from rspp.controlplane._service import ControlPlane

__all__ = ["MAX_STATE_BYTES", "SessionState", "StateSaved", "StateWrite", "load_state",
           "save_state"]

#: the largest checkpoint document (encoded JSON bytes)
MAX_STATE_BYTES = 256 * 1024

Version = Annotated[int, Meta(ge=0, le=2**31 - 1, description="a stored state version")]
LeaseEpoch = Annotated[int, Meta(ge=1, le=2**31 - 1, description="the writer's lease epoch")]


class StateWrite(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A checkpoint from the session's lease holder."""

    runtime_id: Id
    lease_epoch: LeaseEpoch
    #: the version this writer last loaded or wrote (0: none stored yet)
    expected_version: Version
    document: dict[str, Any]


class StateSaved(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    version: int


class SessionState(msgspec.Struct, frozen=True, kw_only=True):
    """The stored checkpoint (``version`` 0 and an empty document when none)."""

    session_id: str
    version: int
    lease_epoch: int | None = None
    holder: str | None = None
    updated_at_ms: int | None = None
    document: dict[str, Any] = {}


async def _session_tenant(cp: ControlPlane, principal: Principal, session_id: str) -> None:
    async with cp.store.engine.connect() as conn:
        info = await cp.sessions.get_in(conn, session_id)
    principal.require_tenant(info.tenant_id)


async def read_state(cp: ControlPlane, principal: Principal, session_id: str) -> SessionState:
    await cp.authorize(principal, Role.OPERATOR, "read session state")
    await _session_tenant(cp, principal, session_id)
    async with cp.store.engine.connect() as conn:
        row = (await conn.execute(
            select(session_state).where(session_state.c.session_id == session_id))).first()
    if row is None:
        return SessionState(session_id=session_id, version=0)
    return SessionState(session_id=session_id, version=row.version, lease_epoch=row.lease_epoch,
                        holder=row.holder, updated_at_ms=row.updated_at_ms,
                        document=msgspec.json.decode(row.doc_json))


async def write_state(cp: ControlPlane, principal: Principal, session_id: str,
                      body: StateWrite) -> StateSaved:
    await cp.authorize(principal, Role.OPERATOR, "write session state")
    doc = msgspec.json.encode(body.document).decode()
    if len(doc) > MAX_STATE_BYTES:
        raise BodyTooLarge(f"the state document is {len(doc)} bytes; the limit is "
                           f"{MAX_STATE_BYTES} bytes", field="document")
    await _session_tenant(cp, principal, session_id)

    async def work(conn: AsyncConnection, now: int) -> StateSaved:
        lease = (await conn.execute(
            select(leases).where(leases.c.session_id == session_id).with_for_update())).first()
        if lease is None or lease.epoch != body.lease_epoch or \
                lease.holder != body.runtime_id or lease.expires_at_ms <= now:
            held = "no lease" if lease is None else (
                f"epoch {lease.epoch} held by {lease.holder}"
                + (" (expired)" if lease.expires_at_ms <= now else ""))
            raise Conflict(f"{body.runtime_id} at lease epoch {body.lease_epoch} does not hold "
                           f"session {session_id} ({held}); state is written by the lease "
                           "holder only", field="lease_epoch", code="stale_epoch")
        row = (await conn.execute(select(session_state.c.version).where(
            session_state.c.session_id == session_id))).first()
        stored = 0 if row is None else int(row.version)
        if stored != body.expected_version:
            raise Conflict(f"session {session_id} state is at version {stored}, the write "
                           f"expected {body.expected_version}; load it before writing",
                           field="expected_version", code="stale_state")
        values = {"lease_epoch": body.lease_epoch, "holder": body.runtime_id,
                  "doc_json": doc, "updated_at_ms": now}
        if row is None:
            await conn.execute(insert(session_state).values(session_id=session_id, version=1,
                                                            **values))
        else:
            await conn.execute(update(session_state).where(
                session_state.c.session_id == session_id,
                session_state.c.version == stored).values(version=stored + 1, **values))
        return StateSaved(session_id=session_id, version=stored + 1)

    return await cp._write(work, "write session state")


# ---- HTTP handlers (route table: GET/PUT /v1/sessions/{session_id}/state) ----------------
async def load_state(c: Call) -> SessionState:
    return await read_state(c.cp, c.principal, c.path["session_id"])


async def save_state(c: Call) -> StateSaved:
    return await write_state(c.cp, c.principal, c.path["session_id"], c.body)
