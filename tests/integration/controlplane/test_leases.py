"""Leases and authority (CP-07): epochs only grow, one holder per epoch, signals emitted."""

from __future__ import annotations

import asyncio
from typing import Any

import jsonschema
import msgspec
import pytest
from sqlalchemy import select

from rspp.controlplane import Conflict, ControlPlane
from rspp.controlplane._schema import lease_epochs

from .conftest import OPERATOR, VIEWER, FakeClock, spec_version

pytestmark = pytest.mark.integration

CLAIMANTS = 50


async def test_first_claim_issues_epoch_and_second_runtime_is_refused_f095(
    cp: ControlPlane, clock: FakeClock, reference_schema: dict[str, Any]
) -> None:
    first = await cp.acquire_lease(OPERATOR, "sess-1", "runtime-a", ttl_ms=10_000)
    assert first.lease.epoch == 1 and first.signal is not None
    assert first.signal.signal.value == "lease_issued" and first.signal.authority_epoch == 1
    jsonschema.validate(msgspec.to_builtins(first.signal), reference_schema)
    # Runtime A fails; runtime B tries to run the same session without a lease transfer.
    with pytest.raises(Conflict) as refused:
        await cp.acquire_lease(OPERATOR, "sess-1", "runtime-b", ttl_ms=10_000)
    assert refused.value.field == "session_id" and "runtime-a" in refused.value.message
    assert not (await cp.authorize_lease(VIEWER, "sess-1", "runtime-b", 1)).authorized
    # After A's lease expires, B obtains a NEW epoch; A is deauthorised.
    clock.advance(10_001)
    second = await cp.acquire_lease(OPERATOR, "sess-1", "runtime-b", ttl_ms=10_000)
    assert second.lease.epoch == 2 and second.signal is not None
    assert second.signal.signal.value == "lease_rotated"
    jsonschema.validate(msgspec.to_builtins(second.signal), reference_schema)
    stale = await cp.authorize_lease(VIEWER, "sess-1", "runtime-a", 1)
    assert not stale.authorized and stale.current_epoch == 2
    assert (await cp.authorize_lease(VIEWER, "sess-1", "runtime-b", 2)).authorized
    with pytest.raises(Conflict):
        await cp.renew_lease(OPERATOR, "sess-1", "runtime-a", 1)
    renewed = await cp.renew_lease(OPERATOR, "sess-1", "runtime-b", 2, ttl_ms=5_000)
    assert renewed.epoch == 2 and renewed.expires_at_ms == clock.now + 5_000
    clock.advance(5_001)
    expired = await cp.authorize_lease(VIEWER, "sess-1", "runtime-b", 2)
    assert not expired.authorized and expired.reason == "lease expired"
    actions = [e.action for e in await cp.audit_entries(VIEWER)]
    assert actions == ["lease.issued", "lease.rotated"]


async def test_concurrent_claimants_never_share_an_epoch(cp: ControlPlane) -> None:
    """50 claimants race for a fresh session, then 50 forced rotations race."""
    results = await asyncio.gather(
        *(cp.acquire_lease(OPERATOR, "race", f"rt-{i}", ttl_ms=60_000) for i in range(CLAIMANTS)),
        return_exceptions=True,
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1 and winners[0].lease.epoch == 1
    assert len(losers) == CLAIMANTS - 1 and all(isinstance(e, Conflict) for e in losers)

    rotations = await asyncio.gather(
        *(cp.leases.rotate("race", f"rt-{i}", ttl_ms=60_000, actor="t") for i in range(CLAIMANTS))
    )
    epochs = sorted(r.lease.epoch for r in rotations)
    assert epochs == list(range(2, CLAIMANTS + 2))  # every rotation got its own epoch
    async with cp.store.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(lease_epochs.c.epoch, lease_epochs.c.holder).where(
                    lease_epochs.c.session_id == "race"
                )
            )
        ).all()
    assert len(rows) == CLAIMANTS + 1 and len({r.epoch for r in rows}) == len(rows)
    holders_by_epoch = {r.epoch: r.holder for r in rows}
    for change in rotations:
        assert holders_by_epoch[change.lease.epoch] == change.lease.holder
    current = await cp.leases.current("race")
    assert current is not None and current.epoch == CLAIMANTS + 1
    assert (await cp.audit_verify(VIEWER)).ok


async def test_a_holder_retaking_its_own_lapsed_lease_keeps_the_epoch_and_its_token(
    cp: ControlPlane, clock: FakeClock
) -> None:
    """The epoch changes whenever authority could have been held by someone else, and only
    then: a runtime whose renewal came late (lease lapsed, no other epoch issued) keeps the
    epoch, so the client's route token stays valid; once another holder took over, the
    first one gets a new epoch if it is ever allowed back."""
    await cp.publish(OPERATOR, spec_version("1.0.0"))
    await cp.register_runtime(OPERATOR, runtime_id="rt-a", endpoint="ws://a")
    route = await cp.route_session(OPERATOR, tenant_id="acme", pipeline_name="voice-assistant")
    sid = route.session_id
    assert (route.runtime_id, route.lease_epoch) == ("rt-a", 1)
    held = await cp.acquire_lease(OPERATOR, sid, "rt-a", ttl_ms=1_000)
    clock.advance(1_001)
    assert not (await cp.authorize_lease(VIEWER, sid, "rt-a", 1)).authorized  # lapsed
    again = await cp.acquire_lease(OPERATOR, sid, "rt-a", ttl_ms=1_000)
    assert (again.lease.epoch, again.signal) == (held.lease.epoch, None)
    clock.advance(1_001)
    assert (await cp.renew_lease(OPERATOR, sid, "rt-a", 1, ttl_ms=1_000)).epoch == 1
    _, claims = await cp.issue_token(OPERATOR, session_id=sid, tenant_id="acme")
    assert claims.lease_epoch == route.lease_epoch == 1  # the route's token is still current
    # someone else takes over (a migration): epoch 2; rt-a's epoch 1 is dead for good
    await cp.register_runtime(OPERATOR, runtime_id="rt-b", endpoint="ws://b")
    moved = await cp.migrate(OPERATOR, sid, target="rt-b", force=True)
    assert moved.epoch == 2
    with pytest.raises(Conflict):
        await cp.renew_lease(OPERATOR, sid, "rt-a", 1)
    clock.advance(60_000)  # rt-b's lease lapsed too; rt-a is not where the session is routed
    with pytest.raises(Conflict, match="routed to rt-b"):
        await cp.acquire_lease(OPERATOR, sid, "rt-a")
    assert (await cp.acquire_lease(OPERATOR, sid, "rt-b")).lease.epoch == 2
    epochs = [e.detail["epoch"] for e in await cp.audit_entries(VIEWER)
              if e.action.startswith("lease.") and e.subject == sid]
    assert epochs == [1, 2]  # one issue, one rotation: no epoch for the late renewals


async def test_a_runtime_renews_all_its_leases_in_one_request(
    cp: ControlPlane, clock: FakeClock
) -> None:
    for sid in ("s-1", "s-2", "s-3"):
        await cp.acquire_lease(OPERATOR, sid, "rt-a", ttl_ms=1_000)
    await cp.leases.rotate("s-3", "rt-b", ttl_ms=1_000, actor="t")  # s-3 moved on
    clock.advance(1_500)  # all lapsed: the ones still at rt-a's epoch renew anyway
    out = await cp.renew_leases(OPERATOR, "rt-a", [("s-1", 1), ("s-2", 1), ("s-3", 1),
                                                   ("s-none", 1)], ttl_ms=2_000)
    assert [(r.session_id, r.renewed, r.epoch, r.holder) for r in out] == [
        ("s-1", True, 1, "rt-a"), ("s-2", True, 1, "rt-a"), ("s-3", False, 2, "rt-b"),
        ("s-none", False, None, None)]
    assert out[0].expires_at_ms == clock.now + 2_000
    assert (await cp.authorize_lease(VIEWER, "s-2", "rt-a", 1)).authorized
    assert not (await cp.authorize_lease(VIEWER, "s-3", "rt-a", 1)).authorized
