"""Loopback transport (F-130): WAV in as 20 ms Event-ABI frames, playback signals, fence."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import numpy as np
import pytest

import rspp.nodes  # noqa: F401  (registers the built-in node types)
from rspp.contracts import Emitter, SignalName
from rspp.kernel import AudioFormat, Event, GraphBuilder, SessionActor
from rspp.transports import (
    LoopbackOptions,
    LoopbackTransport,
    PlaybackObserver,
    Transport,
    WavError,
    read_wav,
    write_wav,
)

pytestmark = pytest.mark.integration


class Observer:
    """Records what the transport reports (implements PlaybackObserver)."""

    def __init__(self) -> None:
        self.busy = False
        self.events: list[tuple[str, str]] = []

    def playback_started(self, turn_id: str) -> None:
        self.events.append(("started", turn_id))

    def output_complete(self, turn_id: str) -> None:
        self.events.append(("complete", turn_id))

    def generation_complete(self, turn_id: str) -> None:
        self.events.append(("generated", turn_id))

    def playback_committed(self, turn_id: str, samples: int) -> None:
        self.events.append(("committed", f"{turn_id}@{samples}"))


def rig(pcm: bytes, rate: int = 16000, **opts: object) -> tuple[
        LoopbackTransport, SessionActor, list[Event], Observer, list[tuple[SignalName, str]]]:
    frames: list[Event] = []
    t = LoopbackTransport(pcm, rate, LoopbackOptions(**opts))  # type: ignore[arg-type]
    g = (GraphBuilder("lb").node("p", "passthrough").edge("input.audio", "p.in")
         .edge("p.out", "output.audio").build())
    session = SessionActor(g, session_id="lb", output_sink=lambda p, e: frames.append(e))
    obs = Observer()
    sigs: list[tuple[SignalName, str]] = []

    def make(name: SignalName, emitter: Emitter, tid: str, reason: str) -> object:
        sigs.append((name, tid))
        return None

    t.attach(session, obs, make)  # type: ignore[arg-type]
    return t, session, frames, obs, sigs


def test_contract_is_implemented() -> None:
    t = LoopbackTransport(b"\x00\x00" * 320, 16000)
    assert isinstance(t, Transport)
    assert isinstance(Observer(), PlaybackObserver)


async def test_wav_streams_as_20ms_event_abi_frames() -> None:
    pcm = (np.arange(16000) % 200).astype(np.int16).tobytes()  # 1 s
    t, session, frames, _, _ = rig(pcm, tail_silence_ms=100)
    async with session:
        await t.run()
        await session.drain()
    assert len(frames) == 50 + 5
    assert all(isinstance(e.payload, bytes) and len(e.payload) == 640 for e in frames)
    assert [e.sample_index for e in frames] == [i * 320 for i in range(55)]
    assert [e.transport_seq for e in frames] == list(range(55))
    assert all(e.kind == "audio_chunk" and e.audio_format.sample_rate == 16000 for e in frames)
    assert b"".join(e.payload for e in frames[:50]) == pcm


async def test_real_time_pacing_follows_media_time() -> None:
    t, session, frames, _, _ = rig(b"\x00\x00" * 8000, real_time=True, tail_silence_ms=0)
    loop = asyncio.get_running_loop()
    async with session:
        start = loop.time()
        await t.run()
        elapsed = loop.time() - start
    assert len(frames) == 25
    assert elapsed >= 0.4  # 0.5 s of media is never sent faster than real time


async def test_playback_signals_and_fence_drop_unplayed_audio() -> None:
    t, session, _, obs, _ = rig(b"\x00\x00" * 16000, tail_silence_ms=0)
    fmt = AudioFormat(16000)
    reply = b"\x01\x00" * 8000  # 0.5 s
    t.output("audio", Event("audio_chunk", reply, turn_id="t1", audio_format=fmt))
    t.output("audio", Event("audio_end", None, turn_id="t1", attrs={"eos": True}))
    t.output("audio", Event("audio_chunk", reply * 4, turn_id="t2", audio_format=fmt))
    async with session:
        run = asyncio.create_task(t.run())
        while ("started", "t2") not in obs.events:  # noqa: ASYNC110 - observer has no event
            await asyncio.sleep(0.001)
        t.stop_playback("t2")
        t.output("audio", Event("audio_chunk", reply, turn_id="t2", audio_format=fmt))
        await run
    assert obs.events[:4] == [("generated", "t1"), ("started", "t1"), ("complete", "t1"),
                              ("started", "t2")]
    assert t.signals == [("output_accepted", "t1"), ("output_accepted", "t2"),
                     ("playback_started", "t1"), ("playback_completed", "t1"),
                     ("playback_started", "t2"), ("playback_cancelled", "t2")]
    assert t.turns["t1"].played_samples == 8000
    assert 0 < t.turns["t2"].played_samples < 32000
    assert t.after_fence == [("t2", "audio")]  # the late chunk was seen and never played
    assert len(t.played) // 2 == 8000 + t.turns["t2"].played_samples


def test_wav_errors_name_the_file_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(WavError, match="file not found"):
        read_wav(tmp_path / "none.wav")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not a riff file")
    with pytest.raises(WavError, match=r"not a WAV file.*16-bit PCM"):
        read_wav(bad)
    eight = tmp_path / "8bit.wav"
    with wave.open(str(eight), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(16000)
        w.writeframes(b"\x80" * 100)
    with pytest.raises(WavError, match="sample width 8 bit"):
        read_wav(eight)
    stereo = tmp_path / "st.wav"
    with wave.open(str(stereo), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.array([100, 300] * 10, dtype=np.int16).tobytes())
    pcm, rate = read_wav(stereo)
    assert rate == 16000 and np.frombuffer(pcm, dtype=np.int16).tolist() == [200] * 10
    out = tmp_path / "o.wav"
    write_wav(out, pcm, 16000)
    assert read_wav(out) == (pcm, 16000)
