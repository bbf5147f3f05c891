"""Session capacity: M concurrent sessions of mock VAD -> STT -> LLM -> TTS on one core.

Each session is fed 20 ms PCM frames in real time (one shared 20 ms ticker, the
way a transport delivers frames); an utterance starts every 3 s (1 s of speech,
start times staggered across sessions). The mock STT emits partials and a final
transcript, the mock LLM streams 20 tokens 10 ms apart, the mock TTS streams 25 x
20 ms chunks paced in real time. Lateness of an output chunk = when the sink got
it minus when it was due, where chunk i is due at ingress(utterance-end frame) +
200 ms (LLM) + i x 20 ms: every delay on the path counts. Capacity = largest M
with p99 <= 20 ms (one process, one event loop, so at most one core).

``--all-audio``: the VAD forwards every frame to the STT (speech and silence, as a
streaming STT needs), so the STT worker handles 50 frames/s per session instead of
the speech third of them; the utterance end still follows each 1 s of speech.
Usage: ``python benchmarks/sessions_capacity.py [--quick] [--all-audio] [--sessions 50,100]``.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_seconds, emit, percentile, quick_parser, rss_mb

from rspp.kernel import (
    AudioFormat,
    BufferConfig,
    Event,
    GraphBuilder,
    Node,
    NodeRegistry,
    SessionActor,
    SessionOptions,
    SystemClock,
)

FMT = AudioFormat(16000, 1, "pcm_s16le")
FRAME = bytes(640)
CYCLE_FRAMES = 150  # 3 s
SPEECH_FRAMES = 50  # 1 s of speech per utterance


class MockVad(Node):
    """Inline: frames 0..49 of each 3 s cycle are speech; then one ``utterance_end``."""

    type_name = "mock.vad"

    #: forward every frame (streaming STT), not only the speech frames
    all_audio = False

    def __init__(self, ctx: Any, params: Any = None) -> None:
        super().__init__(ctx, params)
        self.i = int(self.params.get("phase", 0))

    def process(self, event: Event, port: str) -> Event | None:
        k = self.i % CYCLE_FRAMES
        self.i += 1
        if k < SPEECH_FRAMES:
            return event
        if k == SPEECH_FRAMES:
            if self.all_audio:
                self.ctx.emit(event)
            return event.derive("utterance_end", None)
        return event if self.all_audio else None


class MockStt(Node):
    type_name = "mock.stt"
    outputs = ("out", "partial")

    def __init__(self, ctx: Any, params: Any = None) -> None:
        super().__init__(ctx, params)
        self.n = 0

    async def process(self, event: Event, port: str) -> Event | None:
        if event.kind == "utterance_end":
            n, self.n = self.n, 0
            return event.derive("text", f"utterance of {n} frames", final=True)
        self.n += 1
        if self.n % 10 == 0:
            self.ctx.emit(event.derive("text", f"partial {self.n}", final=False), "partial")
        return None


class MockLlm(Node):
    type_name = "mock.llm"

    async def process(self, event: Event, port: str) -> None:
        # A remote model streams at its own pace: token i is ready 10 ms x (i + 1) after
        # the utterance ended, whatever our event loop does meanwhile.
        clock = self.ctx.clock
        for i in range(20):
            delay = event.ingress_ns + (i + 1) * 10_000_000 - clock.monotonic_ns()
            if delay > 0:
                await clock.sleep(delay / 1e9)
            self.ctx.emit(event.derive("token", f"t{i}", final=i == 19))


class MockTts(Node):
    type_name = "mock.tts"

    async def process(self, event: Event, port: str) -> None:
        if not event.final:
            return
        clock = self.ctx.clock
        # Due times anchor on the ingress of the frame that ended the utterance plus the
        # mock LLM's 20 x 10 ms: any queueing/scheduling delay on the path counts as lateness.
        t0 = event.ingress_ns + 200_000_000
        for i in range(25):
            due = t0 + i * 20_000_000
            delay = due - clock.monotonic_ns()
            if delay > 0:
                await clock.sleep(delay / 1e9)
            out = event.derive("audio_chunk", FRAME, audio_format=FMT, sample_index=i * 320)
            out.ingress_ns = due
            self.ctx.emit(out)


def build_graph() -> Any:
    b = GraphBuilder("voice-mock", "1.0.0")
    b.node("vad", "mock.vad").node("stt", "mock.stt")
    b.node("llm", "mock.llm").node("tts", "mock.tts")
    buf = BufferConfig(max_items=64, max_queue_ms=2000, max_latency_ms=2000)
    b.edge("input.audio", "vad.in", buffer=buf).edge("vad.out", "stt.in", buffer=buf)
    b.edge("stt.out", "llm.in", buffer=buf).edge("stt.partial", "output.transcript", buffer=buf)
    b.edge("llm.out", "tts.in", buffer=buf).edge("tts.out", "output.audio", buffer=buf)
    return b.build()


async def run_point(m: int, seconds: float, registry: NodeRegistry) -> dict[str, Any]:
    graph = build_graph()
    clock = SystemClock()
    lateness: list[float] = []
    measuring = False

    def sink(port: str, ev: Event) -> None:
        if measuring and port == "audio":
            lateness.append((time.monotonic_ns() - ev.ingress_ns) / 1e6)

    gc.collect()
    rss0 = rss_mb()
    sessions = []
    for i in range(m):
        phase = (i * CYCLE_FRAMES) // m
        g = graph
        s = SessionActor(g, session_id=f"s{i}", registry=registry, clock=clock,
                         options=SessionOptions(signal_maxlen=64), output_sink=sink)
        s.hosts["vad"].node.i = phase  # type: ignore[attr-defined]
        await s.start()
        sessions.append(s)
    frames = int(seconds * 50)
    warmup = 50  # 1 s
    start = time.monotonic()
    cpu0 = cpu_seconds()
    t_meas = start
    for k in range(frames + warmup):
        if k == warmup:
            measuring = True
            cpu0, t_meas = cpu_seconds(), time.monotonic()
        for s in sessions:
            s.push(Event("audio_chunk", FRAME, audio_format=FMT, sample_index=k * 320))
        delay = start + (k + 1) * 0.020 - time.monotonic()
        await asyncio.sleep(max(0.0, delay))
    cpu = (cpu_seconds() - cpu0) / (time.monotonic() - t_meas)
    rss = rss_mb()
    for s in sessions:
        await s.stop()
    return {
        "sessions": m,
        "cpu_cores": round(cpu, 3),
        "p50_ms": round(percentile(lateness, 50), 2),
        "p99_ms": round(percentile(lateness, 99), 2),
        "rss_mb": round(rss, 1),
        "rss_mb_per_session": round(max(rss - rss0, 0.0) / m, 4),
        "output_frames": len(lateness),
    }


async def main(quick: bool, ms: list[int], all_audio: bool = False) -> None:
    MockVad.all_audio = all_audio
    registry = NodeRegistry()
    for cls in (MockVad, MockStt, MockLlm, MockTts):
        registry.register(cls)
    seconds = 4.0 if quick else 12.0
    points = []
    for m in ms:
        p = await run_point(m, seconds, registry)
        points.append(p)
        print(p, flush=True)
    ok = [p["sessions"] for p in points if p["p99_ms"] <= 20.0 and p["cpu_cores"] <= 1.0]
    emit({"benchmark": "sessions_capacity", "all_audio": all_audio,
          "capacity": max(ok) if ok else 0, "points": points,
          "load_average": round(os.getloadavg()[0], 2),
          "targets": {"capacity": 400, "p99_ms": 20.0, "rss_mb_per_session": 0.15}})


if __name__ == "__main__":
    ap = quick_parser(__doc__)
    ap.add_argument("--sessions", default="50,100,200,400,800")
    ap.add_argument("--all-audio", action="store_true",
                    help="the VAD forwards every frame to the STT (streaming STT)")
    a = ap.parse_args()
    asyncio.run(main(a.quick, [int(x) for x in a.sessions.split(",")], a.all_audio))
