"""How a replay rig gets its kernel session: an injected :data:`SessionFactory`.

Replay knows the kernel and the turn machinery, never a node implementation. The
caller (the local runner, ``rspp replay``) injects the factory that builds the
session with whatever its nodes need (``rspp.runner.node_session`` gives the
built-in nodes their providers and the rig's turn driver); without one the rig
runs a bare kernel session (:func:`kernel_session`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rspp.kernel import NodeRegistry, RuntimeGraph, SessionActor, SessionOptions

if TYPE_CHECKING:
    from rspp.kernel import Clock
    from rspp.kernel._session import OutputSink
    from rspp.kernel._signals import SignalSink
    from rspp.turns._turn_driver import TurnDriver

__all__ = ["DriverHooks", "RigSession", "SessionFactory", "kernel_session"]


class DriverHooks:
    """The rig's turn driver as node turn hooks, bound once the driver exists.

    The session is built before its turn driver (the driver drives that session),
    so the factory receives this forwarder instead of the driver itself.
    """

    __slots__ = ("_driver",)

    def __init__(self, driver: Callable[[], TurnDriver]) -> None:
        self._driver = driver

    def speech_started(self, sample_index: int | None) -> None:
        self._driver().speech_started(sample_index)

    def end_of_utterance(self, reason: str) -> None:
        self._driver().end_of_utterance(reason)

    async def turn_for_utterance(self) -> str | None:
        return await self._driver().turn_for_utterance()

    def degraded(self, turn_id: str | None, reason: str) -> None:
        self._driver().degraded(turn_id, reason)

    def turn_failed(self, turn_id: str, reason: str) -> None:
        self._driver().turn_failed(turn_id, reason)

    def node_audit(self, node_id: str, turn_id: str | None, reason: str) -> None:
        self._driver().node_audit(node_id, turn_id, reason)


@dataclass(frozen=True, slots=True)
class RigSession:
    """Everything a :data:`SessionFactory` needs to build one rig session."""

    graph: RuntimeGraph
    session_id: str
    #: the graph definition's version (what provider invocations report)
    pipeline_version: str
    #: the caller's registry wrapped for provider recording or playback
    registry: NodeRegistry
    clock: Clock
    output_sink: OutputSink
    signal_sink: SignalSink
    #: provider chain per modality (primary first), from the graph's provider bindings
    chains: Mapping[str, tuple[str, ...]]
    authority_epoch: int
    hooks: DriverHooks


#: Builds the kernel session of a rig (see the module docstring).
SessionFactory = Callable[[RigSession], SessionActor]


def kernel_session(spec: RigSession) -> SessionActor:
    """A bare kernel session: nodes get no services beyond the Node API.

    Lossless: a rig is fed from a file or a recording, which must never lose input."""
    return SessionActor(spec.graph, session_id=spec.session_id, registry=spec.registry,
                        clock=spec.clock, output_sink=spec.output_sink,
                        signal_sink=spec.signal_sink, options=SessionOptions(lossless=True))
