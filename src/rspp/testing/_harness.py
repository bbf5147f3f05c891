"""Node/graph test harness (F-128): feed events, assert outputs, signals and drops."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rspp.contracts import ControlSignal, SignalName
from rspp.kernel._clock import VirtualClock
from rspp.kernel._events import AudioFormat, Event, EventKind
from rspp.kernel._graph import INPUT, OUTPUT, GraphBuilder, RuntimeGraph
from rspp.kernel._handles import Clock
from rspp.kernel._node import Node
from rspp.kernel._pool import ExecutionPool
from rspp.kernel._registry import NodeRegistry, default_registry
from rspp.kernel._session import SessionActor, SessionOptions

__all__ = ["GraphHarness", "NodeHarness", "audio_frames", "text_partials"]

PCM16 = AudioFormat(16000, 1, "pcm_s16le")


def audio_frames(n: int, *, frame_ms: int = 20, fmt: AudioFormat = PCM16,
                 sync_id: str | None = None) -> list[Event]:
    """``n`` silent PCM frames with media time (sample index) and encoding metadata."""
    samples = fmt.sample_rate * frame_ms // 1000
    payload = bytes(samples * fmt.channels * fmt.sample_width)
    return [Event(EventKind.AUDIO_CHUNK, payload, audio_format=fmt, sample_index=i * samples,
                  sync_id=sync_id) for i in range(n)]


def text_partials(words: Iterable[str], segment: str = "s1") -> list[Event]:
    """Growing partial transcripts with monotonic revisions, then one final."""
    out, acc = [], []
    for i, w in enumerate(words):
        acc.append(w)
        out.append(Event(EventKind.TEXT, " ".join(acc), final=False, revision=i,
                         attrs={"segment": segment}))
    out.append(Event(EventKind.TEXT, " ".join(acc), final=True, revision=len(acc),
                     attrs={"segment": segment}))
    return out


class GraphHarness:
    """Runs one session of ``graph`` on a virtual clock; use as ``async with``."""

    def __init__(self, graph: RuntimeGraph, *, registry: NodeRegistry | None = None,
                 clock: Clock | None = None, options: SessionOptions | None = None,
                 session_id: str = "test-session", pool: ExecutionPool | None = None) -> None:
        import rspp.nodes._builtin_simple  # noqa: F401  (registers built-in helper nodes)

        self.clock = clock or VirtualClock()
        self.session = SessionActor(graph, session_id=session_id,
                                    registry=registry or default_registry,
                                    clock=self.clock, options=options, pool=pool)

    async def __aenter__(self) -> GraphHarness:
        await self.session.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.stop()

    async def feed(self, events: Iterable[Event], port: str = "audio", *,
                   drain: bool = True) -> int:
        """Push events (non-blocking ingress); returns how many were accepted."""
        n = sum(1 for ev in events if self.session.push(ev, port))
        if drain:
            await self.session.drain()
        return n

    async def send(self, events: Iterable[Event], port: str = "audio") -> int:
        """Blocking ingress honouring flow control; drains at the end."""
        n = 0
        for ev in events:
            n += await self.session.send(ev, port)
        await self.session.drain()
        return n

    async def drain(self) -> None:
        await self.session.drain()

    def outputs(self, port: str = "audio") -> list[Event]:
        return list(self.session.outputs.get(port, ()))

    def data_outputs(self, port: str = "audio") -> list[Event]:
        return [e for e in self.outputs(port) if e.kind not in (EventKind.TURN_START,
                                                                EventKind.TURN_END)]

    def signals(self, name: SignalName | str | None = None) -> list[ControlSignal]:
        return [r for r in self.session.signals.records if isinstance(r, ControlSignal)
                and (name is None or r.signal == name)]

    def drops(self) -> list[ControlSignal]:
        return self.signals(SignalName.DROP_NOTICE)

    def records(self) -> list[Any]:
        return list(self.session.signals.records)


class NodeHarness(GraphHarness):
    """A one-node graph: each input port ``p`` is ``input.p``, each output ``output.p``."""

    def __init__(self, node_cls: type[Node], params: Mapping[str, Any] | None = None,
                 **kw: Any) -> None:
        registry = NodeRegistry()
        registry.register(node_cls)
        b = GraphBuilder("node-harness", "1.0.0")
        b.node("node", node_cls.resolved_type_name(), params=dict(params or {}))
        for p in node_cls.inputs:
            b.edge(f"{INPUT}.{p}", f"node.{p}")
        for p in node_cls.outputs:
            b.edge(f"node.{p}", f"{OUTPUT}.{p}")
        super().__init__(b.build(), registry=registry, **kw)
        self.node = self.session.hosts["node"].node
