"""Provider-node wrappers of the replay rig: record outputs, or play them back.

A *provider node* is a node whose outputs come from a provider call (by
default the built-in ``stt``, ``llm`` and ``tts`` types). While recording (and
in re-simulation) its class is wrapped by :func:`recording_class`: every output
is reported to an :data:`OutputLog` with the ordinal of the input that caused
it. In recorded-provider playback :func:`playback_class` stands in for the
node: it runs no provider; on its k-th input it emits the outputs the recording
holds for input k, on the same ports, with the same kinds and attributes.

A recorded output that belonged to a new turn (the node asked the turn driver
which turn an utterance opened, like an STT final) waits for that turn through
the same :class:`~rspp.nodes.TurnHooks` call before it is emitted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from rspp.kernel import Event, Node, NodeContext, NodeRegistry
from rspp.replay._errors import ReplayError

__all__ = [
    "OutputLog",
    "PlaybackStore",
    "RecordedOutput",
    "ReplayRegistry",
    "playback_class",
    "recording_class",
    "tie_break_ns",
]

#: (node_id, port, event, input ordinal) of one provider-node output
OutputLog = Callable[[str, str, Event, int], None]
#: returns the turn hooks of a session (``rspp.nodes.TurnHooks``) or None
HooksLookup = Callable[[str], Any]


@dataclass(frozen=True, slots=True)
class RecordedOutput:
    """One recorded provider-node output."""

    port: str
    event: Event | None  # None: decoded by ``load`` when served (a streamed recording)
    input_ordinal: int
    turn_id: str | None
    runtime_ms: int = 0  # when the recording saw it (playback keeps the provider latency)
    after_ingress: int = 0  # recorded ingress events that preceded it (ties inside a ms)
    runtime_sequence: int = 0  # recorded order inside the same millisecond
    load: Callable[[], Event] | None = None


@dataclass(slots=True)
class PlaybackStore:
    """Recorded outputs per provider node id, grouped by input ordinal."""

    outputs: dict[str, dict[int, list[RecordedOutput]]] = field(default_factory=dict)
    served: int = 0
    #: the replay session's runtime clock in ns (set by the rig)
    now_ns: Callable[[], int] = lambda: 0
    #: recorded ingress events fed so far (set by the engine after each push)
    fed: int = 0
    _changed: asyncio.Event | None = None

    def mark_fed(self, n: int) -> None:
        self.fed = n
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def wait_fed(self, n: int) -> None:
        """Wait until ``n`` recorded ingress events were fed (keeps same-ms order)."""
        while self.fed < n:
            if self._changed is None:
                self._changed = asyncio.Event()
            await self._changed.wait()

    def add(self, node_id: str, out: RecordedOutput) -> None:
        self.outputs.setdefault(node_id, {}).setdefault(out.input_ordinal, []).append(out)

    def take(self, node_id: str, ordinal: int) -> list[RecordedOutput]:
        by_ordinal = self.outputs.get(node_id)
        outs = by_ordinal.pop(ordinal, None) if by_ordinal else None
        if not outs:  # most inputs (audio frames) caused no output
            return []
        return [out if out.load is None or out.event is not None
                else replace(out, event=out.load(), load=None) for out in outs]


def tie_break_ns(runtime_ms: int, runtime_sequence: int) -> int:
    """Virtual time of a recorded record: its millisecond, ordered inside it by sequence."""
    return runtime_ms * 1_000_000 + runtime_sequence % 1_000_000


class _EmitProxy:
    """A NodeContext stand-in whose ``emit`` also reports to the output log."""

    def __init__(self, ctx: NodeContext, report: Callable[[Event, str | None], None]) -> None:
        self._ctx = ctx
        self._report = report

    def emit(self, event: Event, port: str | None = None) -> None:
        snap = event.clone()  # as emitted: downstream inline nodes may annotate the event
        snap.attrs = dict(event.attrs) if event.attrs else None
        self._ctx.emit(event, port)
        snap.seq, snap.node_id, snap.turn_id = event.seq, event.node_id, event.turn_id
        snap.event_id, snap.record_turn = event.event_id, event.record_turn
        self._report(snap, port)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)


def recording_class(cls: type[Node], log: OutputLog) -> type[Node]:
    """``cls`` with every output (returned or emitted) reported to ``log``."""

    def init(self: Any, ctx: NodeContext, params: Mapping[str, Any] | None = None) -> None:
        cls.__init__(self, ctx, params)
        self._replay_k = -1
        node_id = ctx.node_id
        first = cls.outputs[0] if cls.outputs else "out"
        self.ctx = _EmitProxy(ctx, lambda ev, port: log(node_id, port or first, ev,
                                                           max(self._replay_k, 0)))

    if cls.is_async():
        async def aprocess(self: Any, event: Event, port: str) -> None:
            self._replay_k += 1
            out = await cls.process(self, event, port)
            if out is not None:
                self.ctx.emit(out, None)

        body: dict[str, Any] = {"__init__": init, "process": aprocess}
    else:
        def process(self: Any, event: Event, port: str) -> None:
            self._replay_k += 1
            out = cls.process(self, event, port)
            if out is not None:
                self.ctx.emit(out, None)

        body = {"__init__": init, "process": process}
    return type(f"Recording{cls.__name__}", (cls,), body)


def _copy(ev: Event) -> Event:
    return Event(ev.kind, ev.payload, turn_id=ev.turn_id, final=ev.final, revision=ev.revision,
                 attrs=dict(ev.attrs) if ev.attrs else None, audio_format=ev.audio_format,
                 sample_index=ev.sample_index)


def playback_class(cls: type[Node], store: PlaybackStore, log: OutputLog,
                   hooks: HooksLookup) -> type[Node]:
    """A stand-in for ``cls`` serving recorded outputs (same ports, scope, async-ness)."""

    def init(self: Any, ctx: NodeContext, params: Mapping[str, Any] | None = None) -> None:
        Node.__init__(self, ctx, params)
        self._replay_k = -1

    def outputs_for(self: Any, event: Event) -> list[tuple[str, Event, bool]]:
        self._replay_k += 1
        node_id = self.ctx.node_id
        out: list[tuple[str, Event, bool]] = []
        self._replay_at = []
        for rec in store.take(node_id, self._replay_k):
            self._replay_at.append((tie_break_ns(rec.runtime_ms, rec.runtime_sequence),
                                    rec.after_ingress))
            if rec.event is None:  # take() decodes a streamed output
                raise ReplayError(f"recorded output of node {node_id} could not be decoded")
            ev = _copy(rec.event)
            # an output of another turn than its input: the node learnt a new turn
            new_turn = rec.turn_id is not None and rec.turn_id != event.turn_id
            ev.turn_id = event.turn_id if not new_turn else rec.turn_id
            out.append((rec.port, ev, new_turn))
        return out

    def emit_all(self: Any, items: list[tuple[str, Event, bool]], turn: str | None) -> None:
        for port, ev, new_turn in items:
            if new_turn and turn is not None:
                ev.turn_id = turn
            snap = ev.clone()
            snap.attrs = dict(ev.attrs) if ev.attrs else None
            self.ctx.emit(ev, port)
            snap.seq, snap.node_id, snap.turn_id = ev.seq, ev.node_id, ev.turn_id
            snap.record_turn = ev.record_turn
            store.served += 1
            log(self.ctx.node_id, port, snap, self._replay_k)

    def take_direct(self: Any, event: Event, port: str) -> bool:
        """An input that caused no recorded output needs no worker: counted here, at once
        (``NodeHost.take_directly``); False when the recording holds outputs for it."""
        by_ordinal = store.outputs.get(self.ctx.node_id)
        if by_ordinal and self._replay_k + 1 in by_ordinal:
            return False
        self._replay_k += 1
        return True

    if cls.is_async():
        async def aprocess(self: Any, event: Event, port: str) -> None:
            items = outputs_for(self, event)
            if not items:
                return
            turn = None
            if any(new for _, _, new in items):
                h = hooks(self.ctx.session_id)
                turn = await h.turn_for_utterance() if h is not None else None
            for item, (at_ns, after) in zip(items, self._replay_at, strict=True):
                await store.wait_fed(after)
                wait_ns = at_ns - store.now_ns()
                if wait_ns > 0:  # the recorded provider latency, on virtual time
                    await self.ctx.clock.sleep(wait_ns / 1e9)
                emit_all(self, [item], turn)

        body: dict[str, Any] = {"__init__": init, "process": aprocess,
                                "take_direct": take_direct}
    else:
        def process(self: Any, event: Event, port: str) -> None:
            emit_all(self, outputs_for(self, event), None)

        body = {"__init__": init, "process": process}
    for name in ("type_name", "version", "inputs", "outputs", "input_kinds", "output_kinds",
                 "streaming", "cancel_mode", "scope", "hook_timeout_ms", "timeout_ms"):
        body[name] = getattr(cls, name)
    return type(f"Playback{cls.__name__}", (Node,), body)


class ReplayRegistry(NodeRegistry):
    """A view of ``base`` where the provider node types resolve to wrapped classes."""

    def __init__(self, base: NodeRegistry, provider_types: frozenset[str],
                 wrap: Callable[[type[Node]], type[Node]]) -> None:
        super().__init__()
        self._base = base
        self._provider_types = provider_types
        self._wrap = wrap
        self._wrapped: dict[type[Node], type[Node]] = {}

    def resolve(self, type_ref: str) -> type[Node]:
        cls = self._base.resolve(type_ref)
        if type_ref.partition("@")[0] not in self._provider_types:
            return cls
        wrapped = self._wrapped.get(cls)
        if wrapped is None:
            wrapped = self._wrapped[cls] = self._wrap(cls)
        return wrapped
