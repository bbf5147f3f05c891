"""A runtime's batched per-turn traffic against the real control-plane app (issue 17).

The runtime's :class:`StateWriter` and :class:`BundleRefresher` send the checkpoints and
turn-start bundles of all its sessions together (``PUT /v1/runtimes/{id}/states``,
``POST /v1/runtimes/{id}/bundles``). A control plane that refuses those fleet routes to
the runtime's key (a tenant-scoped key; an older control plane answers 404) gets one
request per session instead, with the same answers: the same versions, the same fencing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from rspp.server._bundles import BundleRefresher
from rspp.server._state import StateWriter
from rspp.turns import StaleStateError

if TYPE_CHECKING:
    from tests.integration.server.conftest import PlaneRig

pytestmark = pytest.mark.integration

ADMIN = "admin-key-for-batched-traffic"
VOICE = (Path(__file__).resolve().parents[3] / "pipelines" / "examples"
         / "voice_assistant.yaml").read_text()


@pytest.mark.parametrize("scoped", [False, True], ids=["fleet-key", "tenant-key"])
async def test_checkpoints_and_bundles_batched_or_one_by_one_give_the_same_answers(
    plane_rig: PlaneRig, scoped: bool
) -> None:
    cp = await plane_rig.plane(ADMIN)
    async with plane_rig.client(cp, ADMIN) as admin:
        await admin.publish(VOICE, "voice_assistant.yaml")
        await admin.register_runtime("rt-a", "ws://rt-a")
        await admin.heartbeat("rt-a", health="healthy", load=0)
        routes = [await admin.route("acme", "voice-assistant") for _ in range(3)]
        sids = [r["session_id"] for r in routes]
        version = routes[0]["pipeline_version"]
        for sid in sids:
            assert (await admin.acquire_lease(sid, "rt-a", ttl_ms=30_000)).epoch == 1
        key = (await admin.request("POST", "/v1/keys", json={
            "role": "operator", "tenant_id": "acme" if scoped else None}))["key"]
    async with plane_rig.client(cp, key) as client:
        writer = StateWriter(client, "rt-a", linger_s=0.0)
        doc: dict[str, object] = {"hot": {"turns": 1}}
        saved = [await writer.save(sid, 1, 0, doc) for sid in sids]
        assert saved == [1, 1, 1]
        assert writer.batcher.batches == (1 if scoped else 3)  # the refusal, then one by one
        assert writer._batch is not scoped
        with pytest.raises(StaleStateError):  # fenced the same way: rt-a holds epoch 1 only
            await writer.save(sids[0], 2, 1, doc)
        refresher = BundleRefresher(client, "rt-a")
        for sid in sids:
            refresher.track("acme", sid, "voice-assistant")
        got = [await refresher.turn_start_bundle(tenant_id="acme", session_id=sid,
                                                 pipeline_name="voice-assistant",
                                                 runtime_id="rt-a") for sid in sids]
        for sid, bundle in zip(sids, got, strict=True):
            assert bundle.version_resolution is not None and bundle.routing_view is not None
            assert bundle.version_resolution.meta.snapshot_id.endswith(f"{sid}:{version}")
            assert bundle.routing_view.runtime_id == "rt-a"
        # kept fresh: asked again, the bundle comes from the runtime's cache (batched mode)
        again = await refresher.turn_start_bundle(tenant_id="acme", session_id=sids[0],
                                                  pipeline_name="voice-assistant",
                                                  runtime_id="rt-a")
        assert again is got[0]
        assert (refresher.fetched, refresher.hits) == ((0, 0) if scoped else (3, 1))
        await refresher.aclose()
        await writer.batcher.aclose()
    async with plane_rig.client(cp, ADMIN) as admin:
        for sid in sids:
            state = await admin.request("GET", f"/v1/sessions/{sid}/state")
            assert (state["version"], state["holder"], state["document"]) == (1, "rt-a", doc)
