"""Operator migrate / rotate / revoke of a live lease: a two-phase hand-off (CP-07, CP-08).

On SQLite and PostgreSQL: while a runtime holds a session's lease live, an operator's
move does not rotate the epoch under it. The hand-off is recorded, the holder's
renewals are refused (``lease_handoff``, naming the action; the lease is not extended,
nor re-acquired), and only the holder's release moves the epoch; the operator's request
answers then. A holder that never releases is rotated at its lease's expiry anyway (the
request's deadline, or the failover monitor's pass when the request is gone). A lease
nobody took up, ``force`` and a release by the holder itself move at once.
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from rspp.contracts import RuntimeHealth
from rspp.controlplane import Conflict, ControlPlane, MigrationResult
from rspp.controlplane._handoffs import HandoffPending
from rspp.controlplane._notices import NoticesRequest, wait_for_notices
from rspp.controlplane._schema import lease_epochs, lease_handoffs

from .conftest import OPERATOR, FakeClock, spec_version

pytestmark = pytest.mark.integration


async def _routed(cp: ControlPlane) -> tuple[str, str]:
    """A routed session and the runtime it is placed on."""
    await cp.publish(OPERATOR, spec_version("1.0.0"))
    for rid in ("rt-a", "rt-b"):
        await cp.register_runtime(OPERATOR, runtime_id=rid, endpoint=f"ws://{rid}")
        await cp.heartbeat(OPERATOR, rid, health=RuntimeHealth.HEALTHY, load=0)
    route = await cp.route_session(OPERATOR, tenant_id="acme", pipeline_name="voice-assistant")
    return route.session_id, route.runtime_id


async def _handoffs(cp: ControlPlane, sid: str) -> list[tuple[str, str | None]]:
    async with cp.store.engine.connect() as conn:
        rows = await conn.execute(select(lease_handoffs.c.action, lease_handoffs.c.outcome)
                                  .where(lease_handoffs.c.session_id == sid)
                                  .order_by(lease_handoffs.c.handoff_id))
        return [(r.action, r.outcome) for r in rows]


async def _epochs(cp: ControlPlane, sid: str) -> list[tuple[int, str]]:
    async with cp.store.engine.connect() as conn:
        rows = await conn.execute(select(lease_epochs.c.epoch, lease_epochs.c.holder)
                                  .where(lease_epochs.c.session_id == sid)
                                  .order_by(lease_epochs.c.epoch))
        return [(r.epoch, r.holder) for r in rows]


async def _pending(cp: ControlPlane, sid: str) -> None:
    """Until the hand-off of ``sid`` is recorded (the operator's request is waiting)."""
    while not await _handoffs(cp, sid):  # noqa: ASYNC110 (a row another task writes)
        await asyncio.sleep(0.01)


async def test_a_migration_waits_for_the_holder_to_release_its_live_lease(
    cp: ControlPlane, clock: FakeClock
) -> None:
    sid, rt = await _routed(cp)
    await cp.acquire_lease(OPERATOR, sid, rt, ttl_ms=10_000)
    other = "rt-b" if rt == "rt-a" else "rt-a"
    moving = asyncio.create_task(cp.migrate(OPERATOR, sid, target=other))
    await asyncio.wait_for(_pending(cp, sid), 30)
    assert not moving.done() and await _epochs(cp, sid) == [(1, rt)]  # not rotated yet
    # the holder's renewals are refused naming the action; the lease is not extended
    out = await cp.renew_leases(OPERATOR, rt, [(sid, 1)], ttl_ms=10_000)
    assert (out[0].renewed, out[0].handoff, out[0].epoch) == (False, "migrate", 1)
    with pytest.raises(HandoffPending) as single:
        await cp.renew_lease(OPERATOR, sid, rt, 1, ttl_ms=10_000)
    assert single.value.field == "migrate" and single.value.code == "lease_handoff"
    with pytest.raises(HandoffPending):  # nor re-acquired (a reconnect to the same runtime)
        await cp.acquire_lease(OPERATOR, sid, rt, ttl_ms=10_000)
    # a second operator request for another action is refused while this one runs
    with pytest.raises(Conflict, match="being handed off"):
        await cp.change_lease(OPERATOR, sid, revoke=True)
    # only a release by the holder at its epoch completes it
    with pytest.raises(Conflict):
        await cp.release_lease(OPERATOR, sid, other, 1)
    released = await cp.release_lease(OPERATOR, sid, rt, 1)
    assert (released.action, released.epoch, released.holder) == ("migrate", 2, other)
    moved = await asyncio.wait_for(moving, 30)
    assert isinstance(moved, MigrationResult)
    assert (moved.from_runtime, moved.to_runtime, moved.epoch) == (rt, other, 2)
    assert await _epochs(cp, sid) == [(1, rt), (2, other)]
    assert await _handoffs(cp, sid) == [("migrate", "released")]
    info = await cp.session_status(OPERATOR, sid)
    assert (info.runtime_id, info.lease_epoch) == (other, 2)


async def test_a_holder_that_never_releases_is_rotated_at_its_lease_expiry(
    cp: ControlPlane, clock: FakeClock
) -> None:
    sid, rt = await _routed(cp)
    await cp.acquire_lease(OPERATOR, sid, rt, ttl_ms=10_000)
    rotating = asyncio.create_task(cp.change_lease(OPERATOR, sid, revoke=False))
    await asyncio.wait_for(_pending(cp, sid), 30)
    clock.advance(9_999)
    await asyncio.sleep(0)
    assert await _epochs(cp, sid) == [(1, rt)]
    clock.advance(2)  # the lease ran out: the holder's own bound lapsed before this
    change = await asyncio.wait_for(rotating, 30)
    assert (change.lease.epoch, change.lease.holder) == (2, rt)
    assert await _handoffs(cp, sid) == [("rotate", "timed_out")]


async def test_the_failover_monitor_finishes_a_hand_off_whose_request_is_gone(
    cp: ControlPlane, clock: FakeClock
) -> None:
    sid, rt = await _routed(cp)
    await cp.acquire_lease(OPERATOR, sid, rt, ttl_ms=10_000)
    request = asyncio.create_task(cp.change_lease(OPERATOR, sid, revoke=True))
    await asyncio.wait_for(_pending(cp, sid), 30)
    request.cancel()  # the operator's connection dropped
    await asyncio.gather(request, return_exceptions=True)
    await cp.sweep_failover()
    assert await _epochs(cp, sid) == [(1, rt)]  # not before the deadline
    clock.advance(10_001)
    await cp.sweep_failover()
    assert await _epochs(cp, sid) == [(1, rt), (2, "(revoked)")]
    assert await _handoffs(cp, sid) == [("revoke", "timed_out")]


async def test_an_unheld_lease_force_and_the_holders_own_release_move_at_once(
    cp: ControlPlane, clock: FakeClock
) -> None:
    sid, rt = await _routed(cp)
    other = "rt-b" if rt == "rt-a" else "rt-a"
    # issued by the route, not taken up by any runtime yet: nobody to wait for
    assert (await cp.change_lease(OPERATOR, sid, revoke=False)).lease.epoch == 2
    held = await cp.acquire_lease(OPERATOR, sid, rt, ttl_ms=10_000)
    assert (await cp.change_lease(OPERATOR, sid, revoke=False, force=True)).lease.epoch == 3
    assert held.lease.epoch == 2
    await cp.acquire_lease(OPERATOR, sid, rt, ttl_ms=10_000)
    moved = await cp.migrate(OPERATOR, sid, target=other, released_by=(rt, 3))
    assert moved.epoch == 4 and moved.to_runtime == other
    assert await _handoffs(cp, sid) == []


async def test_the_holders_control_channel_is_answered_when_the_hand_off_begins(
    cp: ControlPlane, clock: FakeClock
) -> None:
    """``POST /v1/runtimes/{id}/notices``: a long poll of the holder, answered by the commit
    that records the hand-off (not by a renewal, not by the wait running out); another
    runtime's poll hears nothing; a known hand-off does not answer a poll again."""
    sid, rt = await _routed(cp)
    other = "rt-b" if rt == "rt-a" else "rt-a"
    await cp.acquire_lease(OPERATOR, sid, rt, ttl_ms=10_000)
    assert (await wait_for_notices(cp, cp.runtime_watch, rt, NoticesRequest())).notices == []
    holder = asyncio.create_task(wait_for_notices(cp, cp.runtime_watch, rt,
                                                  NoticesRequest(wait_ms=10_000)))
    bystander = asyncio.create_task(wait_for_notices(cp, cp.runtime_watch, other,
                                                     NoticesRequest(wait_ms=10_000)))
    while cp.runtime_watch.waiting < 2:  # noqa: ASYNC110 (both polls registered)
        await asyncio.sleep(0)
    moving = asyncio.create_task(cp.migrate(OPERATOR, sid, target=other))
    told = (await asyncio.wait_for(holder, 30)).notices
    assert [(n.session_id, n.epoch, n.action) for n in told] == [(sid, 1, "migrate")]
    assert not bystander.done() and not moving.done()  # nothing released yet
    # the notice is known now: a poll naming it waits on (answered at once without a wait)
    known = NoticesRequest(known=(told[0].handoff_id,), wait_ms=0)
    assert (await wait_for_notices(cp, cp.runtime_watch, rt, known)).notices == told
    again = asyncio.create_task(wait_for_notices(
        cp, cp.runtime_watch, rt, NoticesRequest(known=(told[0].handoff_id,), wait_ms=10_000)))
    await cp.release_lease(OPERATOR, sid, rt, 1)
    assert (await asyncio.wait_for(moving, 30)).epoch == 2
    assert not again.done()
    cp.runtime_watch.wake_all()  # as closing the control plane does: every poll answers
    assert (await asyncio.wait_for(again, 30)).notices == []
    assert (await asyncio.wait_for(bystander, 30)).notices == []
