"""Admission (CP-05), placement and failover (CP-08), migration, status (F-101)."""

from __future__ import annotations

from typing import Any

import jsonschema
import msgspec
import pytest

from rspp.contracts import RuntimeHealth
from rspp.controlplane import (
    AdmissionDenied,
    ConfigKind,
    ControlPlane,
    Forbidden,
    Principal,
    Role,
    SessionStatus,
    Unavailable,
)

from .conftest import OPERATOR, VIEWER, FakeClock, spec_version

pytestmark = pytest.mark.integration


async def _setup(cp: ControlPlane) -> None:
    await cp.publish(OPERATOR, spec_version("1.0.0"))
    await cp.register_runtime(
        OPERATOR, runtime_id="rt-a", endpoint="ws://a", region="eu", capacity=5
    )
    await cp.register_runtime(
        OPERATOR, runtime_id="rt-b", endpoint="ws://b", region="us", capacity=5
    )


async def test_admission_quotas_reject_and_defer_per_tenant_f049_f050_f098(
    cp: ControlPlane, clock: FakeClock, reference_schema: dict[str, Any]
) -> None:
    await _setup(cp)
    await cp.publish_config(
        OPERATOR,
        ConfigKind.ADMISSION,
        "small",
        {"max_concurrent_sessions": 2, "sessions_per_minute": 3},
    )
    admitted = [
        await cp.route_session(OPERATOR, tenant_id="small", pipeline_name="voice-assistant")
        for _ in range(2)
    ]
    with pytest.raises(AdmissionDenied) as rejected:
        await cp.route_session(OPERATOR, tenant_id="small", pipeline_name="voice-assistant")
    out = rejected.value.outcome
    assert out.outcome_kind.value == "reject" and out.scope.value == "tenant"
    assert out.phase.value == "pre_turn" and out.emitted_by.value == "CP-05"
    assert "max_concurrent_sessions=2" in out.reason and rejected.value.status == 429
    jsonschema.validate(msgspec.to_builtins(out), reference_schema)
    # Admitted sessions are undisturbed; another tenant is unaffected (independent quotas).
    for route in admitted:
        assert (await cp.session_status(VIEWER, route.session_id)).status == SessionStatus.ROUTED
    other = await cp.route_session(OPERATOR, tenant_id="big", pipeline_name="voice-assistant")
    assert other.admission.outcome_kind.value == "admit"
    # Ending one frees a slot, but the per-minute rate (3) now defers the 4th start.
    await cp.report_status(OPERATOR, admitted[0].session_id, SessionStatus.ENDED)
    third = await cp.route_session(OPERATOR, tenant_id="small", pipeline_name="voice-assistant")
    await cp.report_status(OPERATOR, third.session_id, SessionStatus.ENDED)
    with pytest.raises(AdmissionDenied) as deferred:
        await cp.route_session(OPERATOR, tenant_id="small", pipeline_name="voice-assistant")
    assert deferred.value.outcome.outcome_kind.value == "defer"
    assert "retry after" in deferred.value.outcome.reason
    clock.advance(61_000)
    await cp.heartbeat(OPERATOR, "rt-a", health=RuntimeHealth.HEALTHY)  # stay fresh
    await cp.route_session(OPERATOR, tenant_id="small", pipeline_name="voice-assistant")
    kinds = [o.outcome_kind.value for o in await cp.admission_outcomes(VIEWER, "small")]
    assert sorted(kinds) == ["admit"] * 4 + ["defer", "reject"]
    # the control plane's /metrics counts the same decisions (F-104)
    text = (await cp.gate_metrics_text(VIEWER)).decode()
    for outcome, n in (("admit", 4), ("defer", 1), ("reject", 1)):
        assert (f'rspp_cp_admission_decisions_total{{outcome="{outcome}",tenant="small"}} '
                f"{float(n)}") in text, text


async def test_placement_failover_migration_and_status_f094_f096_f157_f101(
    cp: ControlPlane, reference_schema: dict[str, Any]
) -> None:
    await _setup(cp)
    eu = await cp.route_session(
        OPERATOR, tenant_id="acme", pipeline_name="voice-assistant", attributes={"region": "eu"}
    )
    assert (eu.runtime_id, eu.endpoint, eu.transport_kind, eu.lease_epoch) == (
        "rt-a",
        "ws://a",
        "websocket",
        1,
    )
    claims = cp.verify_token(eu.token)
    assert (claims.session_id, claims.tenant_id, claims.runtime_id) == (
        eu.session_id,
        "acme",
        "rt-a",
    )
    assert claims.pipeline_version == "1.0.0" and claims.lease_epoch == 1
    for status in (SessionStatus.CONNECTED, SessionStatus.RUNNING, SessionStatus.DEGRADED):
        assert (await cp.report_status(OPERATOR, eu.session_id, status)).status == status
    # Region eu (rt-a) goes unhealthy: the session migrates to rt-b keeping its id.
    _, moved = await cp.heartbeat(OPERATOR, "rt-a", health=RuntimeHealth.UNHEALTHY)
    assert [(m.session_id, m.from_runtime, m.to_runtime, m.epoch) for m in moved] == [
        (eu.session_id, "rt-a", "rt-b", 2)
    ]
    names = [s.signal.value for s in moved[0].signals]
    assert names == ["migration_start", "lease_rotated", "session_handoff", "migration_finish"]
    for signal in await cp.signals(VIEWER, eu.session_id):
        assert signal.session_id == eu.session_id and signal.authority_epoch is not None
        jsonschema.validate(msgspec.to_builtins(signal), reference_schema)
    history = await cp.signals(VIEWER, eu.session_id)
    assert history[0].signal.value == "lease_issued"
    info = await cp.session_status(VIEWER, eu.session_id)
    assert info.runtime_id == "rt-b" and info.lease_epoch == 2
    assert not (await cp.authorize_lease(VIEWER, eu.session_id, "rt-a", 1)).authorized
    # New sessions, even for eu, go only to the healthy instance.
    fresh = await cp.route_session(
        OPERATOR, tenant_id="acme", pipeline_name="voice-assistant", attributes={"region": "eu"}
    )
    assert fresh.runtime_id == "rt-b"
    # Capacity: rt-b has 5 slots, 2 used; fill it and the next route is unavailable.
    for _ in range(3):
        await cp.route_session(OPERATOR, tenant_id="acme", pipeline_name="voice-assistant")
    with pytest.raises(Unavailable):
        await cp.route_session(OPERATOR, tenant_id="acme", pipeline_name="voice-assistant")
    # Drain mode leaves sessions where they are.
    await cp.heartbeat(OPERATOR, "rt-a", health=RuntimeHealth.HEALTHY)
    assert await cp.failover(OPERATOR, "rt-b", mode="drain") == []
    assert (await cp.session_status(VIEWER, eu.session_id)).runtime_id == "rt-b"
    # Status is tenant-scoped and permissioned; ended is terminal.
    scoped = Principal(key_id="k-other", role=Role.VIEWER, tenant_id="globex")
    with pytest.raises(Forbidden):
        await cp.session_status(scoped, eu.session_id)
    with pytest.raises(Forbidden):
        await cp.report_status(VIEWER, eu.session_id, SessionStatus.ENDED)
    await cp.report_status(OPERATOR, eu.session_id, SessionStatus.ENDED)
    assert (await cp.session_status(VIEWER, eu.session_id)).status == SessionStatus.ENDED
    from rspp.controlplane import Conflict

    with pytest.raises(Conflict):
        await cp.report_status(OPERATOR, eu.session_id, SessionStatus.RUNNING)


async def test_stale_heartbeat_counts_as_unhealthy_and_routing_snapshots_are_versioned_f159(
    cp: ControlPlane, clock: FakeClock
) -> None:
    await _setup(cp)
    async with cp.store.engine.connect() as conn:
        v1 = await cp.routing.view_in(conn, "rt-a", now_ms=clock.now)
    assert v1.meta.expires_at_ms - v1.meta.issued_at_ms == cp.settings.snapshot_ttl_ms
    clock.advance(cp.settings.heartbeat_timeout_ms + 1)
    await cp.heartbeat(OPERATOR, "rt-b", health=RuntimeHealth.HEALTHY)
    async with cp.store.engine.connect() as conn:
        stale = await cp.routing.view_in(conn, "rt-a", now_ms=clock.now)
    assert stale.health == RuntimeHealth.UNHEALTHY
    route = await cp.route_session(
        OPERATOR, tenant_id="acme", pipeline_name="voice-assistant", attributes={"region": "eu"}
    )
    assert route.runtime_id == "rt-b"
    await cp.heartbeat(OPERATOR, "rt-a", health=RuntimeHealth.DEGRADED)
    async with cp.store.engine.connect() as conn:
        v2 = await cp.routing.view_in(conn, "rt-a", now_ms=clock.now)
    assert v2.meta.version > v1.meta.version and v2.health == RuntimeHealth.DEGRADED


async def test_heartbeats_do_not_erase_placements_made_between_them(
    make_cp: Any, clock: FakeClock
) -> None:
    """A runtime's heartbeat reports the sessions it runs; sessions placed there since
    (clients not yet connected) still count for placement, so a burst of routes between two
    heartbeats neither overfills a runtime nor piles onto the one that reported least."""
    cp: ControlPlane = await make_cp(placement_grace_ms=10_000)
    try:
        await cp.publish(OPERATOR, spec_version("1.0.0"))
        for rid in ("rt-a", "rt-b"):
            await cp.register_runtime(OPERATOR, runtime_id=rid, endpoint=f"ws://{rid}",
                                      capacity=3)
        placed = []
        for _ in range(6):
            route = await cp.route_session(OPERATOR, tenant_id="acme",
                                           pipeline_name="voice-assistant")
            placed.append(route.runtime_id)
            # both runtimes beat between every two routes: none of the clients connected yet
            for rid in ("rt-a", "rt-b"):
                await cp.heartbeat(OPERATOR, rid, health=RuntimeHealth.HEALTHY, load=0)
        assert sorted(placed) == ["rt-a"] * 3 + ["rt-b"] * 3
        fleet = {r.runtime_id: r for r in await cp.runtimes(VIEWER)}
        assert {(r.load, r.placed) for r in fleet.values()} == {(0, 3)}
        with pytest.raises(Unavailable):  # full: the heartbeats' zeros did not free any room
            await cp.route_session(OPERATOR, tenant_id="acme", pipeline_name="voice-assistant")
        # a runtime reporting more than was placed there (its own figure) counts that
        await cp.heartbeat(OPERATOR, "rt-a", health=RuntimeHealth.HEALTHY, load=3)
        sid_a = next(s.session_id for s in await _sessions_on(cp, "rt-a"))
        await cp.report_status(OPERATOR, sid_a, SessionStatus.ENDED)
        # rt-a still reports 3 (its heartbeat is older than the end): no room there yet
        with pytest.raises(Unavailable):
            await cp.route_session(OPERATOR, tenant_id="acme", pipeline_name="voice-assistant")
        await cp.heartbeat(OPERATOR, "rt-a", health=RuntimeHealth.HEALTHY, load=2)
        again = await cp.route_session(OPERATOR, tenant_id="acme",
                                       pipeline_name="voice-assistant")
        assert again.runtime_id == "rt-a"
        # routed sessions whose clients never connected stop counting after the grace
        clock.advance(10_001)
        for rid in ("rt-a", "rt-b"):
            await cp.heartbeat(OPERATOR, rid, health=RuntimeHealth.HEALTHY, load=0)
        assert {r.placed for r in await cp.runtimes(VIEWER)} == {0}
    finally:
        await cp.close()


async def _sessions_on(cp: ControlPlane, runtime_id: str) -> list[Any]:
    async with cp.store.engine.connect() as conn:
        ids = await cp.sessions.active_on_in(conn, runtime_id)
    return [await cp.session_status(VIEWER, sid) for sid in ids]
