"""A served session driven by a WAV file instead of a socket (tests, benchmarks).

:class:`LoopbackSessionBuilder` is a :class:`rspp.server.SessionBuilder`: it
assembles the session the control plane governs (the same assembly ``rspp run``
and the WebSocket endpoint use) around a real-time :class:`LoopbackTransport`
playing a WAV, starts it, and lets a test watch the very records the session
appends. Use it to drive governed sessions (tokens, leases, rollouts, drain)
without a network client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from rspp.runner._assembly import AssembledSession, AssemblyOptions, assemble_session
from rspp.spec import GraphDefinition
from rspp.transports import LoopbackOptions, LoopbackTransport

__all__ = ["LoopbackServedSession", "LoopbackSessionBuilder"]


class LoopbackServedSession:
    """One started loopback session; ends when its input is played out or it is closed."""

    def __init__(self, assembled: AssembledSession[LoopbackTransport]) -> None:
        self._assembled = assembled
        self.close_reason: str | None = None
        self._closed = asyncio.Event()
        self._run: asyncio.Task[None] | None = None

    @property
    def core(self) -> AssembledSession[LoopbackTransport]:
        return self._assembled

    async def start(self) -> None:
        await self._assembled.start()
        self._run = asyncio.create_task(self._play(), name=f"{self._assembled.session_id}:play")

    async def _play(self) -> None:
        try:
            await self._assembled.transport.run()
        finally:
            await self._assembled.finish()
            self._closed.set()

    async def close(self, reason: str) -> None:
        if self.close_reason is None:
            self.close_reason = reason
        run = self._run
        if run is not None and not run.done():
            run.cancel()
            await asyncio.wait({run})
        elif run is None:
            await self._assembled.finish()
            self._closed.set()

    async def wait_closed(self) -> None:
        await self._closed.wait()


@dataclass(frozen=True, slots=True)
class LoopbackSessionBuilder:
    """Builds served sessions that play ``pcm`` (at ``rate``) in real time."""

    pcm: bytes
    rate: int
    options: LoopbackOptions = field(default_factory=lambda: LoopbackOptions(real_time=True))
    on_built: Callable[[LoopbackServedSession], None] | None = None

    async def __call__(self, graph: GraphDefinition,
                       options: AssemblyOptions) -> LoopbackServedSession:
        assembled = assemble_session(
            graph, options,
            lambda record: LoopbackTransport(self.pcm, self.rate, self.options, record=record))
        served = LoopbackServedSession(assembled)
        if self.on_built is not None:
            self.on_built(served)
        await served.start()
        return served
