"""Audit log (F-097): actor/time/details, exportable, hash chain detects tampering."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import delete, update

from rspp.controlplane import ConfigKind, ControlPlane, Role
from rspp.controlplane._schema import audit

from .conftest import ADMIN, OPERATOR, VIEWER, FakeClock, spec_version

pytestmark = pytest.mark.integration


async def _changes(cp: ControlPlane, clock: FakeClock) -> None:
    await cp.publish(OPERATOR, spec_version("1.0.0"))
    clock.advance(5)
    await cp.publish(OPERATOR, spec_version("2.0.0", description="two"))
    await cp.publish_config(OPERATOR, ConfigKind.POLICY, "acme", {"providers": {"llm": "local"}})
    await cp.rollout(OPERATOR, "voice-assistant", canary="2.0.0", percent=5)
    await cp.create_key(ADMIN, Role.VIEWER)


async def test_entries_carry_actor_time_details_and_verify(
    cp: ControlPlane, clock: FakeClock
) -> None:
    await _changes(cp, clock)
    entries = await cp.audit_entries(VIEWER)
    assert [e.action for e in entries] == [
        "pipeline.publish",
        "pipeline.publish",
        "policy.publish",
        "rollout.canary",
        "key.create",
    ]
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].actor == "test-operator" and entries[0].ts_ms == clock.now - 5
    assert (
        entries[0].subject == "voice-assistant@1.0.0" and len(entries[0].detail["spec_hash"]) == 64
    )
    assert entries[3].detail["percent"] == 5 and entries[4].actor == "test-admin"
    assert all(e.prev_hash == p.hash for p, e in itertools.pairwise(entries))
    verdict = await cp.audit_verify(VIEWER)
    assert verdict.ok and verdict.checked == 5
    page = await cp.audit_entries(VIEWER, after_seq=3, limit=1)  # export in pages
    assert [e.seq for e in page] == [4]


@pytest.mark.parametrize("tamper", ["edit", "delete", "rehash"])
async def test_tampering_is_detected(cp: ControlPlane, clock: FakeClock, tamper: str) -> None:
    await _changes(cp, clock)
    sealed = await cp.audit_entries(VIEWER)  # reading links every committed entry first
    async with cp.store.tx() as conn:
        if tamper == "edit":
            await conn.execute(update(audit).where(audit.c.seq == 3).values(actor="mallory"))
        elif tamper == "delete":
            await conn.execute(delete(audit).where(audit.c.seq == 2))
        else:  # rewrite a row and its own hash: the next row's link breaks
            from rspp.controlplane._audit import entry_hash

            row = sealed[2]
            forged = entry_hash(
                row.seq, row.ts_ms, "mallory", row.action, row.subject, "{}", row.prev_hash,
                row.tenant_id,
            )
            await conn.execute(
                update(audit)
                .where(audit.c.seq == 3)
                .values(actor="mallory", detail_json="{}", hash=forged)
            )
    verdict = await cp.audit_verify(VIEWER)
    assert not verdict.ok
    expected_seq = {"edit": 3, "delete": 2, "rehash": 4}[tamper]
    assert verdict.first_bad_seq == expected_seq, verdict


async def test_entries_name_their_tenant_and_tenant_keys_read_only_their_own(
    cp: ControlPlane, clock: FakeClock
) -> None:
    from rspp.controlplane import Principal
    from rspp.controlplane._errors import Forbidden

    await _changes(cp, clock)  # fleet-wide changes and one acme policy
    for tenant in ("acme", "globex"):
        await cp.publish_config(OPERATOR, ConfigKind.ADMISSION, tenant,
                                {"max_concurrent_sessions": 5})
        await cp.create_key(ADMIN, Role.VIEWER, tenant_id=tenant)
    await cp.register_runtime(OPERATOR, runtime_id="rt-a", endpoint="ws://a")
    await cp.route_session(OPERATOR, tenant_id="acme", pipeline_name="voice-assistant",
                           session_id="s-acme")
    acme_viewer = Principal(key_id="k-acme", role=Role.VIEWER, tenant_id="acme")
    with pytest.raises(Forbidden):  # denials of a tenant key are that tenant's entries
        await cp.publish(acme_viewer, spec_version("9.0.0"))
    everything = await cp.audit_entries(VIEWER)
    mine = await cp.audit_entries(acme_viewer)
    theirs = await cp.audit_entries(Principal(key_id="k-g", role=Role.VIEWER, tenant_id="globex"))
    assert {e.tenant_id for e in everything} == {None, "acme", "globex"}
    assert mine == [e for e in everything if e.tenant_id == "acme"]
    assert {e.action for e in mine} >= {
        "policy.publish", "admission.publish", "key.create", "lease.issued", "rbac.denied"}
    assert theirs and {e.tenant_id for e in theirs} == {"globex"}
    assert await cp.audit_entries(VIEWER, tenant_id="acme") == mine  # a fleet key may filter
    with pytest.raises(Forbidden):
        await cp.audit_entries(acme_viewer, tenant_id="globex")
    verdict = await cp.audit_verify(VIEWER)
    assert verdict.ok and verdict.checked == len(everything)
    # the tenant is covered by the hash: moving an entry to another tenant is tampering
    moved = mine[0].seq
    async with cp.store.tx() as conn:
        await conn.execute(update(audit).where(audit.c.seq == moved).values(tenant_id="globex"))
    verdict = await cp.audit_verify(VIEWER)
    assert not verdict.ok and verdict.first_bad_seq == moved
