"""Recording a kernel session for replay, plus a small deterministic demo pipeline.

:func:`record_session` runs a live :class:`SessionRig` session over a compiled
graph, feeding ingress events at given virtual times, and returns the recorded
timeline lines (the input of :func:`~rspp.replay.replay`).

The demo pipeline (:data:`DEMO_SPEC`, :func:`demo_registry`) is a voice-style
graph with deterministic nodes, used by the replay tests and the CLI docs:
``detector`` (inline energy VAD calling the turn driver) -> ``asr`` (async,
provider-like: describes each utterance) -> ``format`` (inline, ``prefix``) ->
``reply`` (async, provider-like: answers, then an ``eos`` marker that completes
the turn). ``asr`` and ``reply`` are the provider nodes
(:data:`DEMO_PROVIDER_TYPES`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import numpy as np

from rspp.kernel import AudioFormat, Event, EventKind, Node, NodeContext, NodeRegistry
from rspp.nodes import services_of
from rspp.replay._rig import RigOptions, SessionRig
from rspp.runner._node_session import node_session
from rspp.spec import GraphDefinition

__all__ = ["DEMO_NODES", "DEMO_PROVIDER_TYPES", "DEMO_SPEC", "demo_frames", "demo_registry",
           "record_session"]

DEMO_PROVIDER_TYPES = frozenset({"replay_demo.asr", "replay_demo.reply"})
_FMT = AudioFormat(16000, 1)
#: ``array.max()`` without its Python wrapper (``numpy._core._methods._amax``)
_PEAK = np.maximum.reduce
_UNSET: Any = object()


def _hooks(ctx: NodeContext) -> Any:
    return services_of(ctx).hooks


class DemoDetector(Node):
    """Inline energy detector: speech start and end of utterance go to the turn driver."""

    type_name = "replay_demo.detector"
    inputs = ("audio",)
    outputs = ("audio",)

    def __init__(self, ctx: NodeContext, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(ctx, params)
        self.threshold = int(self.params.get("threshold", 1000))
        self.silence_chunks = int(self.params.get("silence_chunks", 3))
        self.speaking = False
        self.silent = 0
        self._hooks: Any = _UNSET  # the session's turn hooks, looked up on the first frame

    def process(self, event: Event, port: str) -> Event:
        p = event.payload
        samples = np.frombuffer(p if type(p) is bytes else bytes(p or b""), dtype=np.int16)
        loud = bool(samples.size) and int(_PEAK(np.abs(samples))) > self.threshold
        hooks = self._hooks
        if hooks is _UNSET:
            hooks = self._hooks = _hooks(self.ctx)
        eou = False
        if loud:
            if not self.speaking and hooks is not None:
                hooks.speech_started(event.sample_index)
            self.speaking, self.silent = True, 0
        elif self.speaking:
            self.silent += 1
            if self.silent >= self.silence_chunks:
                self.speaking, eou = False, True
                if hooks is not None:
                    hooks.end_of_utterance("vad_end_of_utterance")
        event.attrs = {"speech": loud, "eou": eou}
        return event


class DemoAsr(Node):
    """Async provider-like node: one final transcript per utterance, for the utterance's turn."""

    type_name = "replay_demo.asr"
    inputs = ("audio",)
    outputs = ("text",)
    calls: ClassVar[int] = 0  # provider invocations (playback must make none)

    def __init__(self, ctx: NodeContext, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(ctx, params)
        self.chunks = 0
        self.peak = 0
        self.utterance = 0
        self.latency_ms = float(self.params.get("latency_ms", 30))

    async def process(self, event: Event, port: str) -> Event | None:
        attrs = event.attrs or {}
        if attrs.get("speech"):
            self.chunks += 1
            samples = np.frombuffer(bytes(event.payload), dtype=np.int16)
            self.peak = max(self.peak, int(np.abs(samples).max()))
        if not attrs.get("eou"):
            return None
        DemoAsr.calls += 1
        hooks = _hooks(self.ctx)
        turn = await hooks.turn_for_utterance() if hooks is not None else event.turn_id
        await self.ctx.clock.sleep(self.latency_ms / 1000)
        self.utterance += 1
        text = f"utterance {self.utterance}: {self.chunks} chunks, peak {self.peak}"
        self.chunks, self.peak = 0, 0
        out = event.derive(EventKind.TEXT, text, final=True)
        out.turn_id = turn
        return out


class DemoFormat(Node):
    """Inline formatting of transcripts (``prefix``; not a provider node)."""

    type_name = "replay_demo.format"
    inputs = ("text",)
    outputs = ("text",)

    def process(self, event: Event, port: str) -> Event:
        out = event.derive(EventKind.TEXT, f"{self.params.get('prefix', '')}{event.payload}",
                           final=event.final, attrs=event.attrs)
        out.turn_id = event.turn_id
        return out


class DemoReply(Node):
    """Async provider-like responder: a seeded reply, then the ``eos`` end-of-reply marker."""

    type_name = "replay_demo.reply"
    inputs = ("text",)
    outputs = ("text",)
    calls: ClassVar[int] = 0
    _OPENERS = ("Sure", "Okay", "Right", "Noted")

    async def process(self, event: Event, port: str) -> None:
        if not isinstance(event.payload, str) or not event.payload:
            return
        DemoReply.calls += 1
        await self.ctx.clock.sleep(float(self.params.get("latency_ms", 40)) / 1000)
        opener = self._OPENERS[self.ctx.rng.randrange(len(self._OPENERS))]
        reply = event.derive(EventKind.TEXT, f"{opener}, you said {event.payload!r}", final=True)
        reply.turn_id = event.turn_id
        self.ctx.emit(reply)
        eos = event.derive(EventKind.TEXT, "", final=True, attrs={"eos": True})
        eos.turn_id = event.turn_id
        self.ctx.emit(eos)


DEMO_SPEC = """\
name: replay-demo
version: {version}
profile: simple/v1
nodes:
  - id: detector
    type: replay_demo.detector
    ports: {{inputs: [{{name: audio, type: audio}}], outputs: [{{name: audio, type: audio}}]}}
  - id: asr
    type: replay_demo.asr
    ports:
      inputs: [{{name: audio, type: audio}}]
      outputs: [{{name: text, type: text}}]
      is_async: true
  - id: format
    type: replay_demo.format
    params: {{prefix: {prefix!r}}}
    ports: {{inputs: [{{name: text, type: text}}], outputs: [{{name: text, type: text}}]}}
  - id: reply
    type: replay_demo.reply
    ports:
      inputs: [{{name: text, type: text}}]
      outputs: [{{name: text, type: text}}]
      is_async: true
edges:
  - {{from: input.audio, to: detector.audio}}
  - {{from: detector.audio, to: asr.audio}}
  - {{from: asr.text, to: format.text}}
  - {{from: format.text, to: output.transcript}}
  - {{from: format.text, to: reply.text}}
  - {{from: reply.text, to: output.reply}}
"""


#: the demo node classes (register them where a demo spec must run)
DEMO_NODES: tuple[type[Node], ...] = (DemoDetector, DemoAsr, DemoFormat, DemoReply)


def demo_registry() -> NodeRegistry:
    """A registry holding the demo node types."""
    reg = NodeRegistry()
    for cls in DEMO_NODES:
        reg.register(cls)
    return reg


def demo_frames(utterances: int = 3, *, speech: int = 8, silence: int = 10,
                chunk_ms: int = 20) -> list[tuple[int, Event]]:
    """``(runtime_ms, audio event)`` pairs: utterances of tone bursts separated by silence."""
    n = _FMT.sample_rate * chunk_ms // 1000
    t = np.arange(n)
    out: list[tuple[int, Event]] = []
    idx = 0
    for u in range(utterances):
        for i in range(speech + silence):
            if i < speech:
                amp = 3000 + 500 * ((u + i) % 4)
                pcm = (amp * np.sin(2 * np.pi * (220 + 40 * u) * t / _FMT.sample_rate))
                data = pcm.astype(np.int16).tobytes()
            else:
                data = bytes(2 * n)
            out.append((idx * chunk_ms, Event(EventKind.AUDIO_CHUNK, data, audio_format=_FMT,
                                              sample_index=idx * n)))
            idx += 1
    return out


async def record_session(
    graph: GraphDefinition,
    frames: Iterable[tuple[int, Event]],
    *,
    registry: NodeRegistry | None = None,
    options: RigOptions | None = None,
    port: str = "audio",
) -> list[dict[str, object]]:
    """Run a live recorded session and return its timeline lines."""
    rig = SessionRig(graph, registry=registry, options=options, session_factory=node_session)
    await rig.start()
    try:
        for at_ms, ev in frames:
            await rig.advance_to(at_ms)
            rig.ingress(ev, port)
            await rig.settle()
    finally:
        await rig.stop()
    return rig.lines
