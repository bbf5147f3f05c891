"""A session's start in one call: ``POST /v1/sessions/{id}/start`` (issue 17, F-155, F-157).

Through the real control-plane app (SQLite): one transaction checks the record against the
token's claims, acquires the lease by the rules of ``POST /v1/leases/{id}/acquire``, takes
a resumed session's checkpoint over (its previous holder can no longer write), reads its
signals and builds its turn-start bundle; a record that does not match, or a lease that
moved past the token's epoch, changes nothing else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rspp.contracts import SignalName
from rspp.controlplane import (
    Conflict,
    ControlPlane,
    ControlPlaneClient,
    ControlPlaneSettings,
    CPError,
    create_app,
)

pytestmark = pytest.mark.integration

ADMIN = "admin-key-for-session-start"
VOICE = (Path(__file__).resolve().parents[3] / "pipelines" / "examples"
         / "voice_assistant.yaml").read_text()
DOC: dict[str, Any] = {"schema": "rspp.session_state/v1", "hot": {"llm": {"history": [
    ["user", "hello"], ["assistant", "hi"]]}}, "durable": {}, "session": {"turn_seq": 1}}


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[ControlPlaneClient]:
    cp = await ControlPlane.open(ControlPlaneSettings(
        db_url=f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}", admin_key=ADMIN))
    client = ControlPlaneClient("http://cp", ADMIN,
                                transport=httpx.ASGITransport(app=create_app(cp)))
    await client.publish(VOICE, "voice_assistant.yaml")
    for rid in ("rt-a", "rt-b"):
        await client.register_runtime(rid, f"ws://{rid}")
        await client.heartbeat(rid, health="healthy", load=0)
    try:
        yield client
    finally:
        await client.aclose()
        await cp.close()


async def _moved(admin: ControlPlaneClient) -> tuple[str, str, str]:
    """A session whose holder saved a checkpoint and was then migrated away:
    (session, its old runtime, its new runtime)."""
    route = await admin.route("acme", "voice-assistant")
    sid, old = route["session_id"], route["runtime_id"]
    await admin.request("PUT", f"/v1/sessions/{sid}/state", json={
        "runtime_id": old, "lease_epoch": 1, "expected_version": 0, "document": DOC})
    new = (await admin.migrate(sid)).to_runtime
    return sid, old, new


async def test_a_resumed_start_takes_the_lease_state_signals_and_bundle_in_one_call(
    admin: ControlPlaneClient,
) -> None:
    sid, old, new = await _moved(admin)
    started = await admin.start_session(sid, runtime_id=new, tenant_id="acme", lease_epoch=2,
                                        ttl_ms=20_000)
    assert started.lease is not None
    assert (started.lease.epoch, started.lease.holder) == (2, new)
    assert (started.session.runtime_id, started.session.lease_epoch) == (new, 2)
    assert started.state is not None
    assert (started.state.version, started.state.taken_epoch) == (1, 2)
    assert started.state.document == DOC
    names = [s.signal for s in started.signals or []]
    assert SignalName.MIGRATION_START in names and SignalName.MIGRATION_FINISH in names
    assert started.bundle is not None and started.bundle.admission_policy is not None
    assert started.bundle.routing_view is not None
    assert started.bundle.routing_view.runtime_id == new
    # taken over: the previous holder's late checkpoint is refused
    with pytest.raises(CPError) as refused:
        await admin.request("PUT", f"/v1/sessions/{sid}/state", json={
            "runtime_id": old, "lease_epoch": 1, "expected_version": 1, "document": DOC})
    assert refused.value.code == "stale_epoch"
    # the same start again (a client reconnecting): the same epoch, renewed
    again = await admin.start_session(sid, runtime_id=new, tenant_id="acme", lease_epoch=2)
    assert again.lease is not None and again.lease.epoch == 2
    assert again.state is not None and again.state.version == 1


async def test_a_new_session_start_acquires_epoch_one_with_its_bundle_and_no_state(
    admin: ControlPlaneClient,
) -> None:
    route = await admin.route("acme", "voice-assistant")
    sid, rid = route["session_id"], route["runtime_id"]
    started = await admin.start_session(sid, runtime_id=rid, tenant_id="acme", lease_epoch=1)
    assert started.lease is not None and (started.lease.epoch, started.lease.holder) == (1, rid)
    assert started.state is None and started.signals is None
    assert started.bundle is not None and started.bundle.version_resolution is not None
    assert started.bundle.version_resolution.pipeline_version == route["pipeline_version"]


@pytest.mark.parametrize("claims", ["other-runtime", "other-tenant", "ended"])
async def test_a_start_whose_claims_do_not_match_the_record_changes_nothing(
    admin: ControlPlaneClient, claims: str,
) -> None:
    sid, old, new = await _moved(admin)
    before = (await admin.request("GET", f"/v1/sessions/{sid}/state"))
    runtime, tenant = new, "acme"
    if claims == "other-runtime":
        runtime = old
    elif claims == "other-tenant":
        tenant = "globex"
    else:
        await admin.report_status(sid, "ended")
    started = await admin.start_session(sid, runtime_id=runtime, tenant_id=tenant,
                                        lease_epoch=2)
    assert started.lease is None and started.state is None and started.bundle is None
    assert started.session.session_id == sid
    # nothing changed: the lease is where the migration put it, the state not taken over
    auth = await admin.authorize_lease(sid, new, 2)
    assert auth.current_epoch == 2 and (claims == "ended" or auth.authorized)
    after = await admin.request("GET", f"/v1/sessions/{sid}/state")
    assert after == before and after["taken_epoch"] is None


async def test_a_token_behind_the_lease_gets_the_lease_alone(admin: ControlPlaneClient) -> None:
    sid, _, new = await _moved(admin)
    # the session's lease rotated once more (same holder) after the client's token
    await admin.rotate_lease(sid, force=True)  # its holder (this test) does not answer
    started = await admin.start_session(sid, runtime_id=new, tenant_id="acme", lease_epoch=2)
    assert started.lease is not None and started.lease.epoch == 3
    assert started.state is None and started.signals is None and started.bundle is None
    state = await admin.request("GET", f"/v1/sessions/{sid}/state")
    assert state["taken_epoch"] is None  # the runtime refuses the stale token: no take-over


async def test_a_revoked_lease_an_unknown_session_and_a_bad_body_are_refused(
    admin: ControlPlaneClient,
) -> None:
    route = await admin.route("acme", "voice-assistant")
    sid, rid = route["session_id"], route["runtime_id"]
    await admin.rotate_lease(sid, revoke=True)  # a live lease nobody may act on
    with pytest.raises(Conflict) as revoked:
        await admin.start_session(sid, runtime_id=rid, tenant_id="acme", lease_epoch=2)
    assert revoked.value.status == 409 and revoked.value.field == "session_id"
    with pytest.raises(CPError) as unknown:
        await admin.start_session("s-nope", runtime_id=rid, tenant_id="acme", lease_epoch=1)
    assert unknown.value.status == 404 and unknown.value.field == "session_id"
    with pytest.raises(CPError) as bad:
        await admin.request("POST", f"/v1/sessions/{sid}/start", json={
            "runtime_id": rid, "tenant_id": "acme", "lease_epoch": 1, "ttl_ms": 99})
    assert bad.value.status == 422 and bad.value.field == "ttl_ms"
