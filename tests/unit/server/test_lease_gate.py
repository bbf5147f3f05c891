"""The output gate of a served session follows its own bound on the lease (F-156, NF-027).

The bound runs from *before* each lease request: an answer read late (the process was
paused while the control plane answered) never re-opens the gate beyond what the control
plane granted. Lapsed: hold; lost: drop.
"""

from __future__ import annotations

import asyncio

import pytest

from rspp.controlplane import Lease
from rspp.server import LeaseKeeper

pytestmark = pytest.mark.unit


class SlowControlPlane:
    """Grants every lease, answering after ``delay_s`` (a paused or slow process)."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s

    async def acquire_lease(self, session_id: str, holder: str, ttl_ms: int) -> Lease:
        await asyncio.sleep(self.delay_s)
        return Lease(session_id=session_id, epoch=3, holder=holder, expires_at_ms=0)


async def test_a_lease_answered_late_does_not_open_the_gate_and_a_lost_one_drops() -> None:
    prompt = LeaseKeeper(SlowControlPlane(0.0), "s1", "rt-a", ttl_ms=2_000,  # type: ignore[arg-type]
                         on_change=lambda e, r: None)
    assert prompt.output_gate() is False  # nothing held yet: hold
    assert await prompt.acquire() == 3
    assert prompt.output_gate() is True
    # the answer arrives after the whole TTL: the lease may already be someone else's
    late = LeaseKeeper(SlowControlPlane(0.35), "s1", "rt-a", ttl_ms=300,  # type: ignore[arg-type]
                       on_change=lambda e, r: None)
    await late.acquire()
    assert late.epoch == 3 and late.output_gate() is False  # hold until a renewal confirms
    lost: list[tuple[int | None, str]] = []
    prompt.on_change = lambda e, r: lost.append((e, r))
    prompt._lose("lease_revoked")
    assert prompt.output_gate() is None and lost == [(None, "lease_revoked")]  # drop
