"""A control plane going away, as a runtime sees it (issue 14, F-156).

The runtime's control channel (:class:`NoticeListener`) backs off while its control plane
is unreachable or stopping, instead of re-polling every second beside the renewals and
gate samples sharing its connections, and resets once answered. A served session's
snapshot source (:class:`ControlPlaneSnapshots`) lets a turn open on its last bundle's
expired snapshots only while the control plane is unreachable and the lease bound
holds; a control plane that answers (even refusing) is never frozen over.

Real control plane (SQLite) behind its real HTTP app; "unreachable" is a real loopback
port nobody listens on.
"""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING

import pytest

from rspp.contracts import TurnStartBundle
from rspp.controlplane import ControlPlane, ControlPlaneClient
from rspp.controlplane._server import free_port
from rspp.server._lease import ControlPlaneSnapshots
from rspp.server._notices import RETRY_MAX_S, NoticeListener
from rspp.turns._snapshot_source import FreezingSnapshotSource

if TYPE_CHECKING:
    from tests.integration.server.conftest import PlaneRig

pytestmark = pytest.mark.integration

ADMIN = "admin-key-for-outages"


@pytest.fixture
async def rig(plane_rig: PlaneRig) -> tuple[ControlPlane, ControlPlaneClient]:
    cp = await plane_rig.plane(ADMIN)
    return cp, plane_rig.client(cp, ADMIN)


def _unreachable() -> ControlPlaneClient:
    return ControlPlaneClient(f"http://127.0.0.1:{free_port()}", ADMIN)


async def _until(listener: NoticeListener, done: str) -> None:
    task = asyncio.ensure_future(listener.run())
    try:
        while getattr(listener, done) < 1:
            assert not task.done(), task.result()
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_the_retry_pause_doubles_to_its_cap_with_jitter() -> None:
    listener = NoticeListener(_unreachable(), "rt-a", lambda _n: None, rng=random.Random(7))
    for failing, (low, high) in {1: (0.5, 1.0), 2: (1.0, 2.0), 3: (2.0, 4.0),
                                 4: (RETRY_MAX_S / 2, RETRY_MAX_S),
                                 9: (RETRY_MAX_S / 2, RETRY_MAX_S)}.items():
        listener.failing = failing
        pauses = {listener.retry_after() for _ in range(20)}
        assert all(low <= p <= high for p in pauses), (failing, pauses)
        assert len(pauses) > 1  # jittered: runtimes of a fleet do not re-poll in step


async def test_the_channel_backs_off_while_unreachable_or_stopping_and_resets_on_an_answer(
    rig: tuple[ControlPlane, ControlPlaneClient],
) -> None:
    cp, client = rig
    down = NoticeListener(_unreachable(), "rt-a", lambda _n: None, wait_ms=0)
    await _until(down, "failures")
    assert (down.polls, down.failing) == (0, 1)

    await client.register_runtime("rt-a", "ws://rt-a")
    up = NoticeListener(client, "rt-a", lambda _n: None, wait_ms=0)
    up.failing = 3  # three failures in a row before the control plane answered
    await _until(up, "polls")
    assert up.failing == 0 and up.failures == 0

    cp.stopping()  # a stopping control plane answers at once: the channel pauses all the same
    answer = await client.runtime_notices("rt-a", (), 10_000)
    assert answer.stopping and answer.notices == []
    stopping = NoticeListener(client, "rt-a", lambda _n: None, wait_ms=10_000)
    await _until(stopping, "failures")
    assert stopping.polls >= 1 and stopping.failing >= 1


async def test_only_an_unreachable_control_plane_with_the_lease_held_freezes(
    rig: tuple[ControlPlane, ControlPlaneClient], plane_rig: PlaneRig,
) -> None:
    cp, client = rig
    held = [True]
    last = TurnStartBundle()
    down = ControlPlaneSnapshots(_unreachable())
    assert isinstance(down, FreezingSnapshotSource)
    down.last, down.authority = last, lambda: held[0]
    got = await down.turn_start_bundle(tenant_id="acme", session_id="s-1",
                                       pipeline_name="voice-assistant", runtime_id="rt-a")
    assert got is last and down.unreachable and down.fallbacks == 1
    assert down.may_freeze(last)
    assert not down.may_freeze(TurnStartBundle())  # not the bundle it fell back to
    held[0] = False  # the lease bound lapsed: stale snapshots defer, the session drains
    assert not down.may_freeze(last)

    # a control plane that answers refusing (a key it does not know): the last bundle is
    # served but never frozen over
    refusing = ControlPlaneSnapshots(plane_rig.client(cp, "not-a-key"))
    refusing.last, refusing.authority = last, lambda: True
    got = await refusing.turn_start_bundle(tenant_id="acme", session_id="s-1",
                                           pipeline_name="voice-assistant", runtime_id="rt-a")
    assert got is last and refusing.fallbacks == 1
    assert not refusing.unreachable and not refusing.may_freeze(last)
    # ... and one that answers (its snapshots checked by T2 as they are): not frozen over,
    # and the outage is over for the source that was down
    down.source = client
    got = await down.turn_start_bundle(tenant_id="acme", session_id="s-1",
                                       pipeline_name="voice-assistant", runtime_id="rt-a")
    held[0] = True
    assert down.last is got and not down.unreachable and down.fetches == 1
    assert not down.may_freeze(got)
