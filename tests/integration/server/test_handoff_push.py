"""An operator's migrate reaches the lease holder on its control channel (issue 17, F-156).

A real control plane (SQLite) behind its real HTTP app; a real :class:`Runtime` reached
over an in-process ASGI transport (``rspp serve``'s embedded path) serving a session.
Its lease renews every 20 min; an operator migrates the session to another runtime (a
two-phase hand-off: the answer comes once the holder released the lease). With the
runtime's control channel (``POST /v1/runtimes/{id}/notices``) the holder learns of the
hand-off from the control plane's push, ends the session's output and releases the lease
with no renewal in between. Without it (the channel stopped: an older control plane), it
learns at its next renewal, as before.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from prometheus_client import generate_latest

from rspp.server import LoopbackSessionBuilder, Runtime, SessionPolicy
from rspp.testing import with_patient_budgets

if TYPE_CHECKING:
    from tests.integration.server.conftest import PlaneRig

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
VOICE = with_patient_budgets((REPO / "pipelines" / "examples" / "voice_assistant.yaml")
                             .read_text())
ADMIN = "admin-key-for-handoff-push"
RATE = 16000


@pytest.mark.parametrize("push", [True, False], ids=["control-channel", "renewal-only"])
async def test_a_migrate_is_pushed_to_the_holder_which_releases_before_any_renewal(
    plane_rig: PlaneRig, push: bool
) -> None:
    cp = await plane_rig.plane(ADMIN)
    admin = plane_rig.client(cp, ADMIN)
    # renewals 20 min apart (push) - or 0.3 s apart without the channel, so the fallback
    # answers within the test. The runtime's keepers renew together on a shared tick (the
    # monotonic clock's multiples of the period), so with 20 s the first renewal fell
    # inside the migrate about one run in twenty and learned it first
    runtime = await plane_rig.runtime(plane_rig.client(cp, ADMIN), SessionPolicy(
        lease_ttl_ms=3_600_000 if push else 60_000, lease_renew_ms=1_200_000 if push else 300))
    await admin.publish(VOICE, "voice_assistant.yaml")
    sid = (await admin.route("acme", "voice-assistant"))["session_id"]
    token = (await admin.request("POST", f"/v1/sessions/{sid}/token",
                                 json={"tenant_id": "acme"}))["token"]
    served = await runtime.sessions.open(runtime.sessions.verify(token, sid),
                                         LoopbackSessionBuilder(b"\x00\x00" * RATE * 30, RATE))
    await admin.register_runtime("rt-b", "ws://rt-b")
    await admin.heartbeat("rt-b", health="healthy", load=0)
    if not push:  # an older control plane: no channel, renewals tell
        await _stop(runtime)
    renewals = served.keeper.renewals
    moved = await asyncio.wait_for(admin.migrate(sid, "rt-b"), 60)
    assert (moved.from_runtime, moved.to_runtime, moved.epoch) == ("rt-a", "rt-b", 2)
    await asyncio.wait_for(served.built.wait_closed(), 30)
    keeper = served.keeper
    assert keeper.released == 1 and served.close_reason == "handed_off:rt-b"
    if push:
        # learned from the push: no renewal answered between the start and the release
        assert keeper.learned == ["push"] and keeper.renewals == renewals
        assert runtime.notices.notices == 1
    else:
        assert keeper.learned == ["renewal"]
    metrics = generate_latest(runtime.metrics.runtime.registry).decode()
    learned = "push" if push else "renewal"
    assert f'rspp_lease_handoffs_total{{learned="{learned}"}} 1.0' in metrics
    rows = await admin.request("GET", f"/v1/sessions/{sid}")
    assert (rows["runtime_id"], rows["lease_epoch"]) == ("rt-b", 2)


async def _stop(runtime: Runtime) -> None:
    task = runtime._notices
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
