"""The runtime's control channel: hand-offs pushed to the lease holder (F-095, F-156).

A two-phase hand-off (:mod:`rspp.controlplane._handoffs`: an operator's migrate, lease
rotation or revoke of a live lease) waits for its holder to fence its output, end the
active turn and release the lease. Without a push, the holder learns of it only at its
next renewal (a third of the lease TTL later at worst), and speaks on meanwhile.

``POST /v1/runtimes/{id}/notices`` is a long poll each runtime keeps open: it answers
with the pending hand-offs of the leases that runtime holds as soon as one the runtime
does not know yet (``known``: the hand-off ids it was told already) is recorded - the
moment the hand-off's transaction commits in this control-plane process - or when
``wait_ms`` is over, or when the runtime disconnects, or at once when the control plane
begins to stop (``stopping``: its graceful shutdown does not wait the poll out; ``404``
for a runtime that is not registered). Waiters re-read the table at least
every ``recheck_s`` (a hand-off begun by another control-plane process). Operator role,
fleet keys only (like the runtime's other batch routes); the renewal's ``409
lease_handoff`` stays the fallback (a runtime that misses a push still learns it there).
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import msgspec
from msgspec import Meta
from sqlalchemy import select

from rspp.controlplane._handlers import Call
from rspp.controlplane._placements import PlacementWatch
from rspp.controlplane._requests import WaitMs, _Body
from rspp.controlplane._schema import lease_handoffs
from rspp.controlplane._service import ControlPlane

__all__ = ["NoticesRequest", "RuntimeNotice", "RuntimeNotices", "runtime_notices",
           "wait_for_notices"]

#: the pending hand-offs one answer names at most
MAX_NOTICES = 2000


class NoticesRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The hand-off ids the runtime was told already, and how long to wait for a new one."""

    known: Annotated[tuple[int, ...], Meta(max_length=MAX_NOTICES)] = ()
    wait_ms: WaitMs = 0


class RuntimeNotice(msgspec.Struct, frozen=True, kw_only=True):
    """A pending hand-off of a lease the runtime holds: fence, end the turn, release."""

    handoff_id: int
    session_id: str
    #: the epoch being handed off (the holder's)
    epoch: int
    #: ``migrate``, ``rotate`` or ``revoke``
    action: str
    started_at_ms: int


class RuntimeNotices(msgspec.Struct, frozen=True, kw_only=True):
    """Every pending hand-off of the runtime's leases (the known ones included)."""

    notices: list[RuntimeNotice]
    #: the control plane is stopping: answered early, poll again after a pause (or
    #: wherever the runtime's control plane answers next)
    stopping: bool = False


async def _pending(cp: ControlPlane, runtime_id: str) -> list[RuntimeNotice]:
    h = lease_handoffs.c
    async with cp.store.engine.connect() as conn:
        rows = await conn.execute(
            select(h.handoff_id, h.session_id, h.epoch, h.action, h.started_at_ms)
            .where(h.holder == runtime_id, h.completed_at_ms.is_(None))
            .order_by(h.handoff_id).limit(MAX_NOTICES))
        return [RuntimeNotice(handoff_id=r.handoff_id, session_id=r.session_id, epoch=r.epoch,
                              action=r.action, started_at_ms=r.started_at_ms) for r in rows]


async def wait_for_notices(cp: ControlPlane, watch: PlacementWatch, runtime_id: str,
                           body: NoticesRequest,
                           gone: asyncio.Event | None = None) -> RuntimeNotices:
    """The pending hand-offs of ``runtime_id`` once one is not in ``body.known`` (or the
    wait is over; see the module docstring)."""
    async with cp.store.engine.connect() as conn:  # 404 for a runtime never registered
        await cp.routing.get_in(conn, runtime_id)
    known = set(body.known)

    async def read() -> list[RuntimeNotice]:
        return await _pending(cp, runtime_id)

    def new(found: list[RuntimeNotice]) -> bool:
        return any(n.handoff_id not in known for n in found)

    if body.wait_ms <= 0:
        return RuntimeNotices(notices=await read(), stopping=watch.closed)
    found = await watch.until(runtime_id, read, new, body.wait_ms / 1000, gone)
    return RuntimeNotices(notices=found, stopping=watch.closed)


# ---- HTTP handler (route table: POST /v1/runtimes/{runtime_id}/notices) ---------------------
async def runtime_notices(c: Call) -> RuntimeNotices:
    return await wait_for_notices(c.cp, c.cp.runtime_watch, c.path["runtime_id"], c.body,
                                  c.gone)
