"""The same spoken question over WebSocket and over WebRTC: the runtime sees the same Event ABI.

One pipeline spec, two transports on one server (one session hub): PCM16 at 16 kHz over
the WebSocket, Opus at 48 kHz over WebRTC. Both sessions' timelines validate against
the wire contract, their ingress events are identical in kind (DataLane ``audio_raw`` on
``input.audio``, 16 kHz mono 20 ms frames, transport sequence and media time counting
frame by frame, runtime sequence increasing), the turn goes through the same lifecycle
(proposal, open, commit, close, playback started and completed) under the same pipeline
version, and the clients get the same event vocabulary in the same order.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from rspp.client import LiveClient
from rspp.providers.offline import resample_pcm
from rspp.transports import ServerEvent

from .conftest import rspp

pytestmark = pytest.mark.integration
pytest.importorskip("aiortc", reason="WebRTC needs the extra: pip install 'rspp[webrtc]'")

LIFECYCLE = ("turn_open_proposed", "turn_open", "playback_started", "playback_completed",
             "commit", "close")


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def _ingress(lines: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    out = []
    for ln in lines:
        r = ln["record"]
        if ln["kind"] == "event_record" and r.get("transport_sequence") is not None:
            p = ln["payload"]
            out.append((r["lane"], r["payload_class"], r["edge_id"], r["transport_sequence"],
                        r["media_time"]["sample_index"], p["sample_rate_hz"], p["channels"],
                        len(base64.b64decode(p["data"])), r["runtime_sequence"]))
    return out


def _lifecycle(lines: list[dict[str, Any]]) -> tuple[list[str], set[str]]:
    turn = next(ln["record"]["turn_id"] for ln in lines
                if ln["record"].get("signal") == "turn_open")
    names = [ln["record"]["signal"] for ln in lines if ln["kind"] == "control_signal"
             and ln["record"].get("signal") in LIFECYCLE
             and ln["record"].get("turn_id") in (turn, None)]
    versions = {ln["record"]["pipeline_version"] for ln in lines
                if ln["kind"] == "control_signal" and ln["record"].get("turn_id") == turn}
    return names, versions


def _vocabulary(types: list[str]) -> list[str]:
    """Event types in first-seen order (stats, audio and timeline rows left out)."""
    seen: list[str] = []
    for t in types:
        if t not in seen and t not in ("stats", "audio", "turn_row"):
            seen.append(t)
    return seen


async def test_websocket_and_webrtc_give_the_runtime_the_same_event_abi(
    serve, speech, issue
) -> None:
    pcm16, rate = speech["question"]
    async with serve() as srv:
        # WebSocket: PCM16 16 kHz, then `end`
        ws_types: list[str] = ["ready"]  # LiveClient.connect reads `ready` itself
        async with await LiveClient.connect(srv.url("eq-ws"), token=issue("eq-ws")) as client:
            async def send() -> None:
                await client.stream_pcm(pcm16 + bytes(rate * 3), rate)
                await client.end()

            sender = asyncio.create_task(send())
            async for ev in client.events():
                ws_types.append(_type(ev))
            await sender
        # WebRTC: Opus 48 kHz, then `end` on the data channel
        from rspp.testing import WebRTCPeer

        peer = WebRTCPeer()
        try:
            base = srv.base.replace("ws://", "http://")
            resp = await peer.connect(base, "eq-rtc", issue("eq-rtc"), timeline=False)
            assert resp.status_code == 200, resp.text
            await peer.until(lambda: peer.of("ready"))
            peer.say(resample_pcm(pcm16 + bytes(rate * 3), rate, 48000))
            await peer.until(lambda: peer.of("turn", state="close"))
            peer.send({"type": "end"})
            await peer.until(lambda: peer.of("session_end"))
        finally:
            await peer.close()
        rtc_types = [e["type"] for e in peer.events]
    ws_t, rtc_t = srv.factory.timeline_for("eq-ws"), srv.factory.timeline_for("eq-rtc")
    assert ws_t is not None and rtc_t is not None
    for t in (ws_t, rtc_t):
        valid = rspp("contracts", "validate", str(t))
        assert valid.returncode == 0, valid.stdout + valid.stderr
    ws_lines, rtc_lines = _lines(ws_t), _lines(rtc_t)
    ws_in, rtc_in = _ingress(ws_lines), _ingress(rtc_lines)
    assert len(ws_in) > 100 and len(rtc_in) > 100
    for frames in (ws_in, rtc_in):
        assert {f[:3] for f in frames} == {("DataLane", "audio_raw", "input.audio")}
        assert {f[5:8] for f in frames} == {(16000, 1, 640)}  # post-transcode metadata
        assert [f[3] for f in frames] == list(range(len(frames)))
        assert [f[4] for f in frames] == [320 * i for i in range(len(frames))]
        assert all(a[8] < b[8] for a, b in itertools.pairwise(frames))
    ws_life, ws_versions = _lifecycle(ws_lines)
    rtc_life, rtc_versions = _lifecycle(rtc_lines)
    assert ws_life == rtc_life and ws_versions == rtc_versions, (ws_life, rtc_life)
    assert ws_life[-2:] == ["commit", "close"]
    assert _vocabulary(ws_types) == _vocabulary(rtc_types), (ws_types, rtc_types)


def _type(ev: ServerEvent) -> str:
    import msgspec

    return str(msgspec.to_builtins(ev)["type"])
