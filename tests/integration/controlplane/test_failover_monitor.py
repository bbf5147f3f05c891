"""The failover monitor (F-095, F-096, F-113): silent runtimes, lease expiry, re-routing.

On SQLite and PostgreSQL with a settable clock: a runtime whose heartbeats stop is
marked unhealthy after the configured timeout (audited); in ``migrate`` mode its
sessions move to a healthy runtime only once their leases expired (epoch + 1, markers
recorded, a fresh token names the new runtime); in ``drain`` mode nothing moves. The
monitor's background task is owned and stops cleanly. A runtime that lost a session to
a failover cannot take it back once the new holder's lease lapses. A token request
waiting for its session to move (the client's long poll) is answered by the move.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from rspp.contracts import RuntimeHealth
from rspp.controlplane import Conflict, ControlPlane, FailoverMonitor, SessionStatus

from .conftest import OPERATOR, VIEWER, FakeClock, spec_version

pytestmark = pytest.mark.integration

HB_TIMEOUT = 1_500
LEASE_TTL = 3_000


async def _fleet(cp: ControlPlane) -> list[str]:
    await cp.publish(OPERATOR, spec_version("1.0.0"))
    for rid in ("rt-a", "rt-b"):
        await cp.register_runtime(OPERATOR, runtime_id=rid, endpoint=f"ws://{rid}", capacity=5)
    sessions = []
    for _ in range(2):
        route = await cp.route_session(OPERATOR, tenant_id="acme",
                                       pipeline_name="voice-assistant")
        sessions.append(route.session_id)
    return sessions


async def test_silent_runtime_is_marked_unhealthy_and_its_sessions_move_after_lease_expiry(
    make_cp: Callable[..., object], clock: FakeClock
) -> None:
    cp: ControlPlane = await make_cp(heartbeat_timeout_ms=HB_TIMEOUT,  # type: ignore[misc]
                                     lease_ttl_ms=LEASE_TTL)
    try:
        sids = await _fleet(cp)
        on_a = [s for s in sids if (await cp.session_status(VIEWER, s)).runtime_id == "rt-a"]
        assert on_a, "placement put no session on rt-a"
        monitor = FailoverMonitor(cp)
        assert (await monitor.sweep()).marked == ()  # everyone heartbeated just now
        # rt-a falls silent; rt-b keeps beating
        clock.advance(HB_TIMEOUT + 1)
        await cp.heartbeat(OPERATOR, "rt-b", health=RuntimeHealth.HEALTHY)
        first = await monitor.sweep()
        assert first.marked == ("rt-a",)
        # its leases (route-issued, LEASE_TTL) have not expired yet: nothing moves
        assert first.migrated == () and first.waiting == len(on_a)
        runtimes = {r.runtime_id: r.health for r in await cp.runtimes(VIEWER)}
        assert runtimes == {"rt-a": RuntimeHealth.UNHEALTHY, "rt-b": RuntimeHealth.HEALTHY}
        audit = [e for e in await cp.audit_entries(VIEWER) if e.action == "runtime.unhealthy"]
        assert [(e.subject, e.actor) for e in audit] == [("rt-a", "cp:failover-monitor")]
        # once the leases expired they rotate to rt-b (epoch 2) and the sessions are re-routed
        clock.advance(LEASE_TTL)
        await cp.heartbeat(OPERATOR, "rt-b", health=RuntimeHealth.HEALTHY)
        second = await monitor.sweep()
        assert second.marked == ()  # marked once
        assert sorted((m.session_id, m.from_runtime, m.to_runtime, m.epoch)
                      for m in second.migrated) == sorted((s, "rt-a", "rt-b", 2) for s in on_a)
        for sid in on_a:
            info = await cp.session_status(VIEWER, sid)
            assert (info.runtime_id, info.lease_epoch) == ("rt-b", 2)
            names = [s.signal.value for s in await cp.signals(VIEWER, sid)]
            assert names[-4:] == ["migration_start", "lease_rotated", "session_handoff",
                                  "migration_finish"]
            _, claims = await cp.issue_token(OPERATOR, session_id=sid, tenant_id="acme")
            assert (claims.runtime_id, claims.lease_epoch) == ("rt-b", 2)
            assert await cp.runtime_endpoint(claims.runtime_id) == "ws://rt-b"
            # rt-a wakes up: it cannot renew nor take the session back, even once rt-b's
            # lease lapsed (the session is routed to rt-b)
            assert not (await cp.authorize_lease(VIEWER, sid, "rt-a", 1)).authorized
        clock.advance(LEASE_TTL + 1)
        with pytest.raises(Conflict, match="routed to rt-b"):
            await cp.acquire_lease(OPERATOR, on_a[0], "rt-a")
        # rt-b re-acquires its own lapsed lease at the same epoch: nobody else held it
        assert (await cp.acquire_lease(OPERATOR, on_a[0], "rt-b")).lease.epoch == 2
        # a heartbeat heals rt-a: new sessions may go there again
        await cp.heartbeat(OPERATOR, "rt-a", health=RuntimeHealth.HEALTHY)
        assert {r.runtime_id: r.health for r in await cp.runtimes(VIEWER)}["rt-a"] == \
            RuntimeHealth.HEALTHY
        assert (monitor.sweeps, monitor.marked, monitor.migrated) == (3, 1, len(on_a))
    finally:
        await cp.close()


async def test_drain_mode_only_stops_placing_and_the_task_is_owned(
    make_cp: Callable[..., object], clock: FakeClock
) -> None:
    cp: ControlPlane = await make_cp(heartbeat_timeout_ms=HB_TIMEOUT,  # type: ignore[misc]
                                     lease_ttl_ms=LEASE_TTL, failover_mode="drain",
                                     failover_interval_ms=20)
    try:
        sids = await _fleet(cp)
        before = {s: (await cp.session_status(VIEWER, s)).runtime_id for s in sids}
        clock.advance(HB_TIMEOUT + LEASE_TTL + 1)
        await cp.heartbeat(OPERATOR, "rt-b", health=RuntimeHealth.HEALTHY)
        swept = asyncio.Event()
        monitor = FailoverMonitor(cp, on_sweep=lambda r: swept.set() if r.marked else None)
        monitor.start()
        await asyncio.wait_for(swept.wait(), 30)
        await monitor.stop()
        await monitor.stop()  # idempotent
        assert {r.runtime_id: r.health for r in await cp.runtimes(VIEWER)}["rt-a"] == \
            RuntimeHealth.UNHEALTHY
        # drain: the sessions stay where they are (the runtime finishes them if it can)
        assert {s: (await cp.session_status(VIEWER, s)).runtime_id for s in sids} == before
        assert monitor.migrated == 0 and monitor.marked == 1
        route = await cp.route_session(OPERATOR, tenant_id="acme",
                                       pipeline_name="voice-assistant")
        assert route.runtime_id == "rt-b"  # nothing new is placed on the silent runtime
    finally:
        await cp.close()


async def test_a_late_renewal_keeps_the_session_where_it_is(
    make_cp: Callable[..., object], clock: FakeClock
) -> None:
    """A runtime marked silent whose lease lapsed but which renews before the monitor moves
    the session (a loaded machine, not a dead runtime) keeps it at the same epoch: the take
    -over is a compare-and-swap on the lease still being expired, inside its transaction."""
    cp: ControlPlane = await make_cp(heartbeat_timeout_ms=HB_TIMEOUT,  # type: ignore[misc]
                                     lease_ttl_ms=LEASE_TTL)
    try:
        sids = await _fleet(cp)
        on_a = [s for s in sids if (await cp.session_status(VIEWER, s)).runtime_id == "rt-a"]
        assert on_a
        monitor = FailoverMonitor(cp)
        clock.advance(LEASE_TTL + 1)  # rt-a silent past the timeout, its leases lapsed
        await cp.heartbeat(OPERATOR, "rt-b", health=RuntimeHealth.HEALTHY)
        for sid in on_a:  # ... and then its late renewals arrive before the next pass
            assert (await cp.renew_lease(OPERATOR, sid, "rt-a", 1)).epoch == 1
        swept = await monitor.sweep()
        assert swept.marked == ("rt-a",) and swept.migrated == () and swept.waiting == len(on_a)
        for sid in on_a:
            info = await cp.session_status(VIEWER, sid)
            assert (info.runtime_id, info.lease_epoch) == ("rt-a", 1)
        # it really stops: the next pass after expiry moves them, once each
        clock.advance(LEASE_TTL + 1)
        await cp.heartbeat(OPERATOR, "rt-b", health=RuntimeHealth.HEALTHY)
        swept = await monitor.sweep()
        assert sorted(m.session_id for m in swept.migrated) == sorted(on_a)
        assert {m.epoch for m in swept.migrated} == {2}
        assert (await monitor.sweep()).migrated == ()
    finally:
        await cp.close()


def _on_wait(cp: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """An event set whenever a token request starts waiting on a session (observed)."""
    waiting = asyncio.Event()
    register = cp.placements._register

    def observed(session_id: str) -> asyncio.Event:
        ev = register(session_id)
        waiting.set()
        return ev

    monkeypatch.setattr(cp.placements, "_register", observed)
    return waiting


async def test_a_token_request_waiting_for_a_move_is_answered_by_the_move(
    make_cp: Callable[..., object], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The long poll of a client whose runtime went silent: ``moved_from`` + ``wait_ms``
    is answered by the failover's commit, not by the end of the wait nor a client poll.
    (The store re-check is pushed past the wait, so only the commit's wake-up can answer
    with the new placement; a request that was not woken would return the old one.)"""
    cp: ControlPlane = await make_cp(heartbeat_timeout_ms=HB_TIMEOUT,  # type: ignore[misc]
                                     lease_ttl_ms=LEASE_TTL)
    cp.placements.recheck_s = 3600
    waiting = _on_wait(cp, monkeypatch)
    try:
        sids = await _fleet(cp)
        on_a = [s for s in sids if (await cp.session_status(VIEWER, s)).runtime_id == "rt-a"]
        assert on_a
        sid = on_a[0]
        # not placed there (any more): answered at once, whatever the wait
        _, now = await cp.issue_token(OPERATOR, session_id=sid, tenant_id="acme",
                                      moved_from=("rt-b", 1), wait_ms=10_000)
        assert (now.runtime_id, now.lease_epoch) == ("rt-a", 1)
        waiting.clear()
        asking = asyncio.create_task(cp.issue_token(
            OPERATOR, session_id=sid, tenant_id="acme", moved_from=("rt-a", 1), wait_ms=10_000))
        await asyncio.wait_for(waiting.wait(), 30)
        assert not asking.done()
        clock.advance(HB_TIMEOUT + LEASE_TTL + 1)
        await cp.heartbeat(OPERATOR, "rt-b", health=RuntimeHealth.HEALTHY)
        swept = await FailoverMonitor(cp).sweep()
        assert sid in [m.session_id for m in swept.migrated]
        _, claims = await asyncio.wait_for(asking, 30)
        assert (claims.runtime_id, claims.lease_epoch) == ("rt-b", 2)
        assert cp.placements.waiting == 0
        # a session that ends while its client waits: the wait ends with "not live"
        waiting.clear()
        ending = asyncio.create_task(cp.issue_token(
            OPERATOR, session_id=sid, tenant_id="acme", moved_from=("rt-b", 2), wait_ms=10_000))
        await asyncio.wait_for(waiting.wait(), 30)
        await cp.report_status(OPERATOR, sid, SessionStatus.ENDED)
        with pytest.raises(Conflict, match="not live"):
            await asyncio.wait_for(ending, 30)
    finally:
        await cp.close()
