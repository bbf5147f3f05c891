"""The ingress jitter buffer over real sockets (F-087): a WebSocket client and a phone carrier
send reordered, duplicated, late and missing frames; the spec's jitter profile decides.

The test profiles wait long (2 s) in wall time, so the reorder window alone decides when
a missing frame is given up: the outcome is the same on a loaded machine.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rspp.client import CarrierCall, LiveClient
from rspp.testing import Impairment
from rspp.transports import Stats, mulaw_encode

from .conftest import VOICE, assert_replays

pytestmark = pytest.mark.integration

FRAME = 640  # 20 ms of PCM16 at 16 kHz
#: 5/6 swapped, 7 twice, 10 and 20-22 never, 30 after 34 (too late)
ORDER = Impairment(40, swap=((5, 6),), duplicate=(7,), lose=(10, 20, 21, 22),
                   late={30: 34}).order()
PROFILE = ("mode: fixed, target_ms: 2000, min_ms: 20, max_ms: 2000, "
           "reorder_window_frames: 3, conceal: silence, conceal_max_frames: 2")


def frame(k: int, size: int = FRAME) -> bytes:
    """Frame ``k``: a quiet constant level the VAD takes for silence, unique per frame."""
    return np.full(size // 2, 3 * (k + 1), dtype=np.int16).tobytes()


def spec_with(tmp: Path, jitter: str) -> Path:
    path = tmp / "voice_jitter.yaml"
    path.write_text(VOICE.read_text() + f"\ntransport:\n{jitter}")
    return path


def timeline_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def ingress_audio(lines: list[dict[str, Any]]) -> bytes:
    """The audio that entered the pipeline, as recorded (the replay input)."""
    out = bytearray()
    for ln in lines:
        if ln["kind"] == "event_record" and ln["record"].get("edge_id") == "input.audio":
            out += base64.b64decode(ln["payload"]["data"])
    return bytes(out)


async def _impaired_ws(srv: Any, sid: str, token: str) -> Stats:
    async with await LiveClient.connect(srv.url(sid), token=token, sequenced=True) as client:
        for k in ORDER:
            await client.send_audio(frame(k), seq=k)
        await client.end()
        stats = [e async for e in client.events() if isinstance(e, Stats)]
    return stats[-1]


async def test_websocket_frames_are_reordered_deduplicated_and_concealed(
        serve, issue, tmp_path: Path) -> None:
    spec = spec_with(tmp_path, f"  jitter: {{{PROFILE}, loss: conceal}}\n")
    async with serve(source=spec) as srv:
        st = await _impaired_ws(srv, "jit1", issue("jit1"))
    assert (st.out_of_order_frames, st.reordered_frames, st.duplicate_frames,
            st.too_late_frames) == (2, 1, 1, 1)
    assert (st.lost_frames, st.concealed_frames, st.discontinuities) == (5, 4, 1)
    # 40 frames: 10, 30 and two of 20-22 concealed, 22 dropped: 39 frames reached the pipeline
    assert st.media_in_ms == 39 * 20 and st.jitter_profile == "balanced"
    timeline = srv.factory.timeline_for("jit1")
    assert timeline is not None
    lines = timeline_lines(timeline)
    silence = bytes(FRAME)
    expected = b"".join([*(frame(k) for k in range(10)), silence,
                         *(frame(k) for k in range(11, 20)), silence, silence,
                         *(frame(k) for k in range(23, 30)), silence,
                         *(frame(k) for k in range(31, 40))])
    recorded = ingress_audio(lines)
    assert recorded[:len(expected)] == expected  # then the silence of `end`
    notes = [ln["record"].get("reason") for ln in lines
             if ln["record"].get("event_id", "").count(":transport_jitter:")]
    assert "lost seq 20..22: concealed 2 (silence), dropped 1" in notes
    summary = f"connection profile balanced: frames {len(ORDER)}"
    assert any(n and n.startswith(summary) for n in notes)
    disc = [ln["record"] for ln in lines if ln["record"].get("discontinuity_id")
            and ln["record"].get("edge_id") == "input.audio"]
    assert len(disc) == 1  # the frame after the dropped part of 20-22 carries the marker
    assert_replays(timeline, srv.spec)


async def test_a_drop_profile_changes_what_reaches_the_pipeline(serve, issue,
                                                               tmp_path: Path) -> None:
    spec = spec_with(tmp_path, f"  jitter: {{{PROFILE}, loss: drop}}\n")
    async with serve(source=spec) as srv:
        st = await _impaired_ws(srv, "jit2", issue("jit2"))
    assert (st.lost_frames, st.concealed_frames, st.discontinuities) == (5, 0, 3)
    assert st.media_in_ms == 35 * 20  # the 5 lost frames are gone
    timeline = srv.factory.timeline_for("jit2")
    assert timeline is not None
    expected = b"".join(frame(k) for k in range(40) if k not in (10, 20, 21, 22, 30))
    assert ingress_audio(timeline_lines(timeline))[:len(expected)] == expected


async def test_a_carriers_media_chunks_go_through_the_telephony_profile(
        serve, issue, tmp_path: Path) -> None:
    """Twilio numbers media chunks from 1: the same impairments, mu-law 8 kHz."""
    spec = spec_with(tmp_path, f"  jitter_by_transport:\n    telephony: {{{PROFILE}, "
                               "loss: conceal}\n")
    async with serve(source=spec) as srv:
        call = await CarrierCall.connect(srv.phone_url, {"token": issue("ph1"),
                                                         "session_id": "ph1"})
        try:
            for k in ORDER:
                await call.media(mulaw_encode(frame(k, 320)), chunk=k + 1)
            await call.hang_up()  # after every media message: the session closes, then
            await call.closed.wait()  # the stream (its timeline is complete)
        finally:
            await call.close()
    timeline = srv.factory.timeline_for("ph1")
    assert timeline is not None
    lines = timeline_lines(timeline)
    notes = [ln["record"].get("reason") for ln in lines
             if ln["record"].get("event_id", "").count(":transport_jitter:")]
    assert [n for n in notes if n and n.startswith("lost")] == [
        "lost seq 11..11: concealed 1 (silence), dropped 0",
        "lost seq 21..23: concealed 2 (silence), dropped 1",
        "lost seq 31..31: concealed 1 (silence), dropped 0"]
    summary = next(n for n in notes if n and n.startswith("connection"))
    assert summary.startswith(f"connection profile robust: frames {len(ORDER)}, out_of_order 2, "
                              "reordered 1, duplicates 1, too_late 1, lost 5, concealed 4, "
                              "discontinuities 1")
    # 39 frames of 20 ms reached the pipeline (16 kHz): all but a resampler's tail
    audio = ingress_audio(lines)
    assert 37 * FRAME <= len(audio) <= 39 * FRAME


async def test_a_spoken_turn_after_concealed_losses_replays_without_divergence(
        serve, speech, issue) -> None:
    """Losses before a turn: the jitter records must not move the turn's plan (its
    determinism markers) nor the order a replay reproduces."""
    import asyncio

    from rspp.transports import Transcript

    pcm = bytes(16000) + speech["question"][0] + bytes(48000)
    n = len(pcm) // FRAME
    order = Impairment(n, swap=((10, 11),), lose=(3, 7)).order()
    async with serve() as srv:
        async with await LiveClient.connect(srv.url("jit3"), token=issue("jit3"),
                                            sequenced=True) as client:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            for i, k in enumerate(order):  # paced like a microphone (not a synchronisation)
                await client.send_audio(pcm[k * FRAME:(k + 1) * FRAME], seq=k)
                await asyncio.sleep(max(0.0, t0 + (i + 1) * 0.02 - loop.time()))
            await client.end()
            got = [e async for e in client.events()]
    finals = [e for e in got if isinstance(e, Transcript) and e.final]
    assert finals and "weather" in finals[0].text
    st = [e for e in got if isinstance(e, Stats)][-1]
    # the network lost frames 3 and 7; on a loaded machine the swapped frame 10 can also
    # arrive after the buffer gave its gap up (then it is lost and concealed, and counted
    # too late when it comes), as a live buffer must: the count is not the test's to fix
    assert st.lost_frames - st.too_late_frames == 2
    assert st.concealed_frames == st.lost_frames
    timeline = srv.factory.timeline_for("jit3")
    assert timeline is not None
    notes = [ln["record"].get("reason") for ln in timeline_lines(timeline)
             if ":transport_jitter:" in ln["record"].get("event_id", "")]
    assert any(n and n.startswith("lost seq 3..3") for n in notes)
    assert_replays(timeline, srv.spec)
