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
    async with cp.store.tx() as conn:
        if tamper == "edit":
            await conn.execute(update(audit).where(audit.c.seq == 3).values(actor="mallory"))
        elif tamper == "delete":
            await conn.execute(delete(audit).where(audit.c.seq == 2))
        else:  # rewrite a row and its own hash: the next row's link breaks
            from rspp.controlplane._audit import entry_hash

            row = (await cp.audit_entries(VIEWER))[2]
            forged = entry_hash(
                row.seq, row.ts_ms, "mallory", row.action, row.subject, "{}", row.prev_hash
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
