"""Two-phase hand-off of a live lease: the records (CP-07, CP-08, F-095, F-156).

An operator's migrate, lease rotation or revoke of a session whose lease a runtime holds
live does not rotate the epoch under that runtime (it would keep sending until its own
bound on the lease lapsed, outputs a client's epoch fence refuses but the runtime still
sends). It is done in two phases:

1. the control plane records a pending hand-off (this table, ``cp_lease_handoffs``);
   from then on the holder's renewals are refused with ``409 lease_handoff`` naming the
   action and the lease is not extended (nor re-acquired), so it ends at its current
   expiry at the latest;
2. the holder learns it at its next renewal, fences its own output, ends the in-flight
   turn ``deauthorized_drain``, saves its last checkpoint and releases the lease
   (``POST /v1/leases/{id}/release``); the release completes the hand-off: only now is
   the epoch rotated (and the session re-routed). A holder that does not release by the
   lease's expiry (dead or partitioned: its own bound lapsed before that) is rotated
   anyway at the deadline (outcome ``timed_out``).

A rotation of the lease by anything else (the failover monitor) completes a pending
hand-off as ``superseded``. Each hand-off row stays as history: its ``started_at_ms`` is
when the hand-off began, ``completed_at_ms`` when the epoch moved.
"""

from __future__ import annotations

from typing import Literal

import msgspec
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from rspp.controlplane._errors import Conflict
from rspp.controlplane._schema import lease_handoffs

__all__ = ["Handoff", "HandoffAction", "HandoffPending", "begin_in", "finish_in", "get_in",
           "last_in", "pending_in", "record_result_in", "supersede_in"]

HandoffAction = Literal["migrate", "rotate", "revoke"]


class HandoffPending(Conflict):
    """The lease is being handed off: renewals (and re-acquiring it) are refused; its
    holder fences its output, ends the active turn and releases the lease."""

    code = "lease_handoff"


class Handoff(msgspec.Struct, frozen=True, kw_only=True):
    handoff_id: int
    session_id: str
    epoch: int
    holder: str
    action: str
    target: str | None
    actor: str
    started_at_ms: int
    deadline_ms: int
    completed_at_ms: int | None = None
    outcome: str | None = None
    result_json: str | None = None


def _of(row: object) -> Handoff:
    m = row._mapping  # type: ignore[attr-defined]
    return Handoff(handoff_id=m["handoff_id"], session_id=m["session_id"], epoch=m["epoch"],
                   holder=m["holder"], action=m["action"], target=m["target"], actor=m["actor"],
                   started_at_ms=m["started_at_ms"], deadline_ms=m["deadline_ms"],
                   completed_at_ms=m["completed_at_ms"], outcome=m["outcome"],
                   result_json=m["result_json"])


async def pending_in(conn: AsyncConnection, session_ids: list[str]) -> dict[str, Handoff]:
    """The pending hand-offs of ``session_ids`` (at most one each)."""
    if not session_ids:
        return {}
    rows = await conn.execute(select(lease_handoffs).where(
        lease_handoffs.c.session_id.in_(session_ids),
        lease_handoffs.c.completed_at_ms.is_(None)))
    return {h.session_id: h for h in map(_of, rows)}


async def get_in(conn: AsyncConnection, handoff_id: int) -> Handoff:
    row = (await conn.execute(select(lease_handoffs).where(
        lease_handoffs.c.handoff_id == handoff_id))).first()
    if row is None:
        raise Conflict(f"hand-off {handoff_id} is unknown", field="handoff_id")
    return _of(row)


async def last_in(conn: AsyncConnection, session_id: str, holder: str,
                  epoch: int) -> Handoff | None:
    """The last completed hand-off of ``holder``'s lease of ``session_id`` at ``epoch``."""
    row = (await conn.execute(select(lease_handoffs).where(
        lease_handoffs.c.session_id == session_id, lease_handoffs.c.holder == holder,
        lease_handoffs.c.epoch == epoch, lease_handoffs.c.completed_at_ms.is_not(None))
        .order_by(lease_handoffs.c.handoff_id.desc()).limit(1))).first()
    return None if row is None else _of(row)


async def begin_in(conn: AsyncConnection, *, session_id: str, epoch: int, holder: str,
                   action: HandoffAction, target: str | None, actor: str, now_ms: int,
                   deadline_ms: int) -> Handoff:
    """Record a pending hand-off of ``holder``'s lease at ``epoch`` (the caller holds the
    lease row's lock and checked that none is pending)."""
    result = await conn.execute(insert(lease_handoffs).values(
        session_id=session_id, epoch=epoch, holder=holder, action=action, target=target,
        actor=actor, started_at_ms=now_ms, deadline_ms=deadline_ms))
    key = result.inserted_primary_key
    return Handoff(handoff_id=int(key[0]) if key else 0, session_id=session_id, epoch=epoch,
                   holder=holder, action=action, target=target, actor=actor,
                   started_at_ms=now_ms,
                   deadline_ms=deadline_ms)


async def finish_in(conn: AsyncConnection, handoff_id: int, *, outcome: str,
                    now_ms: int) -> bool:
    """Mark the hand-off complete (compare-and-swap on it still pending): True for the one
    caller that completes it, which then moves the lease in the same transaction."""
    result = await conn.execute(update(lease_handoffs).where(
        lease_handoffs.c.handoff_id == handoff_id,
        lease_handoffs.c.completed_at_ms.is_(None)).values(completed_at_ms=now_ms,
                                                           outcome=outcome))
    return result.rowcount == 1


async def record_result_in(conn: AsyncConnection, handoff_id: int, result: object) -> None:
    await conn.execute(update(lease_handoffs).where(
        lease_handoffs.c.handoff_id == handoff_id).values(
            result_json=msgspec.json.encode(result).decode()))


async def supersede_in(conn: AsyncConnection, session_id: str, now_ms: int) -> None:
    """The lease of ``session_id`` rotated by other means: a pending hand-off is over."""
    await conn.execute(update(lease_handoffs).where(
        lease_handoffs.c.session_id == session_id,
        lease_handoffs.c.completed_at_ms.is_(None)).values(completed_at_ms=now_ms,
                                                           outcome="superseded"))
