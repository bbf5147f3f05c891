"""Real sessions for benchmarks: ``rspp run``'s assembly with mock providers.

:func:`run_session` builds one session exactly as ``rspp run --real-time`` does
(:func:`rspp.runner._assembly.assemble_session`: SessionActor, built-in VAD / STT /
LLM / segmenter / TTS nodes, turn driver, arbiter, admission, authority guard, plan
resolver, cancel scopes, recorder) around the loopback transport in real time. Only
the providers are mocks (no recogniser, model or synthesiser cost): the STT answers a
fixed transcript when its utterance ends, the LLM streams a two-sentence reply, the
TTS returns 20 ms PCM chunks of a tone.

The input is synthetic: a tone "question", silence, and (optionally) a tone barge-in
injected by the loopback ``barge_in_after_s`` after the reply starts playing. A
measuring subclass of the loopback transport times the barge-in: the wall time the
first frame carrying barge-in speech entered the session (speech onset), the last
reply frame of the interrupted turn delivered and the moment its playback stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from _common import cpu_seconds, quick_parser

import rspp.runner._assembly as assembly
from rspp.providers import (
    AudioChunk,
    Capabilities,
    LLMProvider,
    LLMRequest,
    ProviderKind,
    STTProvider,
    Transcript,
    TTSProvider,
)
from rspp.providers._invocation import ProviderInvocation
from rspp.runner._assembly import AssemblyOptions, assemble_session
from rspp.spec import GraphDefinition, compile_spec, parse_spec_text
from rspp.testing import voice_assistant_spec
from rspp.transports import LoopbackOptions, LoopbackTransport

RATE = 16000
FRAME_SAMPLES = RATE // 50

SPEC = voice_assistant_spec(
    "bench-voice",
    head="budgets: {turn_ms: 60000, node_ms: 30000, path_ms: 60000, provider_timeout_ms: 30000}",
    vad="params: {engine: energy, endpointing: silence, silence_ms: 200, min_speech_ms: 20}")


def tone(seconds: float, freq: float = 440.0, amplitude: int = 8000) -> bytes:
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16).tobytes()


def silence(seconds: float) -> bytes:
    return bytes(2 * int(seconds * RATE))


TONE_CHUNK = tone(0.1, 220.0, 4000)  # 100 ms, the chunk size of the espeak adapter


class MockSTT(STTProvider):
    """Partials every 10 frames, the final transcript when the utterance's audio ends."""

    capabilities = Capabilities(kind=ProviderKind.STT, sample_rates=(RATE,),
                                interim_results=True, offline=True)

    async def _recognize(self, audio: AsyncIterator[AudioChunk],
                         invocation: ProviderInvocation) -> AsyncIterator[Transcript]:
        n = 0
        async for _chunk in audio:
            n += 1
            if n % 10 == 0:
                yield Transcript("what is the", is_final=False)
        yield Transcript("what is the weather like today", is_final=True)


class MockLLM(LLMProvider):
    """Streams a fixed two-sentence reply, one word per event-loop turn."""

    capabilities = Capabilities(kind=ProviderKind.LLM, offline=True)

    async def _generate(self, request: LLMRequest,
                        invocation: ProviderInvocation) -> AsyncIterator[str]:
        for i, word in enumerate("It is sunny and warm today. Enjoy the weather.".split()):
            await asyncio.sleep(0)
            yield word if i == 0 else " " + word


class MockTTS(TTSProvider):
    """Each sentence becomes ``chunks_per_sentence`` 100 ms chunks of a tone."""

    capabilities = Capabilities(kind=ProviderKind.TTS, sample_rates=(RATE,),
                                incremental_input=True, offline=True)
    chunks_per_sentence = 12  # 1.2 s of reply audio per sentence

    async def _synthesize(self, text: AsyncIterator[str],
                          invocation: ProviderInvocation) -> AsyncIterator[AudioChunk]:
        async for piece in text:
            if not piece.strip():
                continue
            for _ in range(self.chunks_per_sentence):
                await asyncio.sleep(0)
                yield AudioChunk(TONE_CHUNK, RATE)


_MOCKS: dict[str, type[Any]] = {"stt": MockSTT, "llm": MockLLM, "tts": MockTTS}


def _mock_provider(provider_id: str, config: Any = None, *, modality: str | None = None,
                   **_shared: Any) -> Any:
    """``build_provider``'s stand-in; what the runtime shares (``http_pool``) is not used."""
    return _MOCKS[str(modality)](provider_id)


assembly.build_provider = _mock_provider  # type: ignore[assignment]  # providers only


def graph() -> GraphDefinition:
    return compile_spec(parse_spec_text(SPEC, "bench-voice.yaml"))


class TimedLoopback(LoopbackTransport):
    """The loopback transport plus wall-clock taps for the barge-in measurement."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.onset_ns: int | None = None
        self.stopped_ns: dict[str, int] = {}
        self.last_frame_ns: dict[str, int] = {}
        self.first_turn: str | None = None

    def _frame(self, index: int, n: int) -> bytes:
        frame = super()._frame(index, n)
        if self.onset_ns is None and self.barge_injected:
            self.onset_ns = time.monotonic_ns()  # this frame carries barge-in speech
        return frame

    def _pump(self, samples: int) -> None:
        before = {t.turn_id: t.played_samples for t in self.queue}
        super()._pump(samples)
        now = time.monotonic_ns()
        for tid, played in before.items():
            t = self.turns[tid]
            if t.played_samples > played:
                self.last_frame_ns[tid] = now
                if self.first_turn is None:
                    self.first_turn = tid

    def stop_playback(self, turn_id: str, reason: str = "barge_in") -> None:
        self.stopped_ns.setdefault(turn_id, time.monotonic_ns())
        super().stop_playback(turn_id, reason)


@dataclass(slots=True)
class SessionResult:
    turn_open_ms: list[float] = field(default_factory=list)
    #: barge-in speech onset -> last reply frame delivered / playback stopped (ms)
    stop_ms: float | None = None
    chunks_after_fence: int = 0
    first_terminal: str | None = None


async def run_session(gd: GraphDefinition, sid: str, *, barge_in: bool,
                      question_s: float = 0.6, tail_s: float = 3.0,
                      start_delay_s: float = 0.0) -> SessionResult:
    """One real-time session; ``barge_in``: interrupt the reply 0.3 s into playback."""
    if start_delay_s:
        await asyncio.sleep(start_delay_s)
    pcm = silence(0.2) + tone(question_s) + silence(tail_s)
    opts = LoopbackOptions(real_time=True, barge_in=tone(0.4, 330.0) if barge_in else None,
                           barge_in_after_s=0.3, tail_silence_ms=400, max_drain_s=5.0)
    assembled = assemble_session(
        gd, AssemblyOptions(session_id=sid, enforce_budgets=True),
        lambda record: TimedLoopback(pcm, RATE, opts, record=record))
    transport: TimedLoopback = assembled.transport
    await assembled.start()
    try:
        await transport.run()
    finally:
        await assembled.finish()
    res = SessionResult(chunks_after_fence=len(transport.after_fence))
    for tid in assembled.driver.order:
        t = assembled.driver.timings[tid]
        if t.open_ns is not None:
            res.turn_open_ms.append((t.open_ns - t.eou_ns) / 1e6)
    first = transport.first_turn
    if first is not None:
        res.first_terminal = assembled.driver.timings[first].terminal
    if barge_in and first is not None and transport.onset_ns is not None:
        last = max(transport.stopped_ns.get(first, 0), transport.last_frame_ns.get(first, 0))
        if last:
            res.stop_ms = max(0.0, (last - transport.onset_ns) / 1e6)
    return res


async def run_many(n: int, *, barge_in: bool, stagger_s: float) -> list[SessionResult]:
    gd = graph()
    return list(await asyncio.gather(*(
        run_session(gd, f"s{i}", barge_in=barge_in, start_delay_s=stagger_s * i / max(n, 1))
        for i in range(n))))


@dataclass(slots=True)
class Measured:
    """Both phases of a benchmark: sessions one at a time, then ``sessions`` at once."""

    idle: list[SessionResult]
    loaded: list[SessionResult]
    sessions: int
    #: CPU cores the process got while loaded (< 1: the machine gave it less)
    cores: float
    wall_s: float


def smoke_parser(doc: str | None) -> argparse.ArgumentParser:
    """``quick_parser`` plus ``--smoke``: a session or two, proving that the benchmark runs
    (tests/integration/test_benchmark_smoke.py); its numbers mean nothing."""
    ap = quick_parser(doc)
    ap.add_argument("--smoke", action="store_true",
                    help="a session or two: checks that the benchmark runs, measures nothing")
    return ap


def measure(doc: str | None) -> Measured:
    """Parse ``--quick`` / ``--smoke`` / ``--sessions``; run the idle and the loaded phase."""
    ap = smoke_parser(doc)
    ap.add_argument("--sessions", type=int, default=200, help="concurrent sessions (loaded)")
    args = ap.parse_args()
    sessions = 1 if args.smoke else args.sessions
    idle: list[SessionResult] = []
    for _ in range(0 if args.smoke else 3 if args.quick else 10):  # one session at a time
        idle += asyncio.run(run_many(1, barge_in=True, stagger_s=0.0))
    cpu0, wall0 = cpu_seconds(), time.monotonic()
    loaded = asyncio.run(run_many(sessions, barge_in=True, stagger_s=1.0))
    wall = time.monotonic() - wall0
    return Measured(idle, loaded, sessions, (cpu_seconds() - cpu0) / wall, wall)
