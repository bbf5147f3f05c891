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


class RefusingBatch:
    """Answers a batch renewal once released: not renewed (the lease moved on)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.asked = asyncio.Event()

    async def renew_leases(self, holder: str, held: list[tuple[str, int]],
                           ttl_ms: int) -> list[object]:
        self.asked.set()
        await self.release.wait()
        return []


async def test_a_renewal_refused_after_its_keeper_was_cancelled_is_not_logged() -> None:
    """A session handed off (its keeper cancelled) while its renewal was in the batch: the
    refusal that comes back is nobody's, not 'Future exception was never retrieved'."""
    import gc

    from rspp.server._lease import LeaseRenewer

    loop = asyncio.get_running_loop()
    logged: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, ctx: logged.append(ctx))
    try:
        cp = RefusingBatch()
        renewer = LeaseRenewer(cp, "rt-a")  # type: ignore[arg-type]
        keeper = asyncio.create_task(renewer.renew("s1", 3, 2_000))
        await asyncio.wait_for(cp.asked.wait(), 30)
        keeper.cancel()  # the hand-off
        await asyncio.gather(keeper, return_exceptions=True)
        cp.release.set()
        assert renewer._sender is not None
        await asyncio.wait_for(renewer._sender, 30)
        del keeper
        gc.collect()
        await asyncio.sleep(0)
        assert [c.get("message") for c in logged] == []
    finally:
        loop.set_exception_handler(None)
