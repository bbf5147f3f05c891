"""The node time limit on a real clock: one watchdog timer per host (issue 11).

A worker's ``process`` calls are bounded by ``timeout_ms`` as ``asyncio.timeout``
would bound each one, but through one long-lived timer: an event that starts after
an earlier event's deadline keeps its own full budget (the watchdog re-arms), an
event that outlives its budget ends in ``provider_timeout`` and the worker lives on
with no cancellation left pending.
"""

from __future__ import annotations

import asyncio

import pytest

from rspp import Event, Node
from rspp.kernel import SystemClock
from rspp.testing import NodeHarness

pytestmark = pytest.mark.unit

T = 0.8  # the node budget (s); every real-time margin below is a quarter of it


class Gated(Node):
    type_name = "t.gated"
    timeout_ms = int(T * 1000)
    gate: asyncio.Event
    started: dict[str, float]

    async def process(self, event: Event, port: str) -> Event | None:
        self.started[str(event.payload)] = asyncio.get_running_loop().time()
        if event.payload == "hang":
            await asyncio.sleep(30)
        elif event.payload == "gated":
            await self.gate.wait()
        return event


async def _until(t: float) -> None:
    loop = asyncio.get_running_loop()
    while loop.time() < t:  # noqa: ASYNC110 - waiting for real time itself
        await asyncio.sleep(t - loop.time())


async def test_real_clock_node_budget_is_per_event_on_one_watchdog() -> None:
    Gated.gate = asyncio.Event()
    Gated.started = {}
    async with NodeHarness(Gated, clock=SystemClock()) as h:
        s = h.session
        await h.feed([Event("t", "a")], port="in")
        t_a = Gated.started["a"]
        await _until(t_a + 0.5 * T)  # "gated" starts well inside a's budget...
        await h.feed([Event("t", "gated")], port="in", drain=False)
        while "gated" not in Gated.started:  # noqa: ASYNC110 - the worker picks it up
            await asyncio.sleep(0.001)
        await _until(t_a + 1.25 * T)  # ...and runs past a's deadline, inside its own
        Gated.gate.set()
        await s.drain()
        assert not s.dead_letters  # the watchdog re-armed at gated's own deadline
        await h.feed([Event("t", "hang"), Event("t", "c")], port="in")
        assert [e.payload for e in h.outputs("out")] == ["a", "gated", "c"]
        (dl,) = s.dead_letters
        assert dl.error.error_code == "provider_timeout" and dl.error.retryable
        task = s.hosts["node"].task
        assert task is not None and not task.done() and task.cancelling() == 0
