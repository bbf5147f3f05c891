"""WebRTC peers that go wrong, against the WebRTC route on a real uvicorn server.

A peer that gets its answer but never connects (no ICE path) is dropped after the
connect timeout exactly as a WebSocket disconnect: ``disconnected`` is recorded, the
session waits for a resume (not closed), and a WebSocket connection resumes it. Frames a
lossy network never delivered are seen by the jitter buffer: the decoded frames are
numbered from their RTP timestamps.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from rspp.client import LiveClient
from rspp.testing import WebRTCPeer
from rspp.transports import WebRTCOptions

pytestmark = pytest.mark.integration
aiortc = pytest.importorskip("aiortc", reason="WebRTC needs the extra: pip install "
                             "'rspp[webrtc]' (dev installs it)")


async def test_a_peer_that_never_connects_is_dropped_like_a_disconnect(serve, issue) -> None:
    async with serve(webrtc=WebRTCOptions(connect_timeout_s=1.0)) as srv:
        assert srv.webrtc is not None
        pc = aiortc.RTCPeerConnection()
        try:
            pc.addTransceiver("audio")
            pc.createDataChannel("rspp")
            await pc.setLocalDescription(await pc.createOffer())
            base = srv.base.replace("ws://", "http://")
            async with httpx.AsyncClient(timeout=60) as http:
                resp = await http.post(f"{base}/v1/sessions/w1/webrtc",
                                       json={"type": "offer", "sdp": pc.localDescription.sdp},
                                       headers={"Authorization": f"Bearer {issue('w1')}"})
            assert resp.status_code == 200, resp.text
            assert "w1" in srv.webrtc.peers
            # the answer is never applied: no ICE path, the server gives up on the peer
            async with asyncio.timeout(30):
                while "w1" in srv.webrtc.peers:  # noqa: ASYNC110 - its state, not an event
                    await asyncio.sleep(0.02)
        finally:
            await pc.close()
        handle = srv.hub.sessions["w1"]
        assert not handle.closed  # the resume window is open, like after a WebSocket drop
        timeline = srv.factory.timeline_for("w1")
        assert timeline is not None
        async with asyncio.timeout(30):
            while '"disconnected"' not in timeline.read_text():  # noqa: ASYNC110 - file
                await asyncio.sleep(0.02)
        signals = [json.loads(x)["record"] for x in timeline.read_text().splitlines()
                   if '"control_signal"' in x]
        names = [r["signal"] for r in signals]
        assert names.index("connected") < names.index("disconnected")
        # the slot is free: a WebSocket connection resumes the same session
        async with await LiveClient.connect(srv.url("w1"), token=issue("w1")) as client:
            assert client.ready.resumed and client.ready.session_id == "w1"
            await client.end()


async def test_frames_lost_on_the_way_are_counted_and_concealed_by_the_webrtc_profile(
        serve, issue) -> None:
    async with serve(webrtc=WebRTCOptions()) as srv:
        peer = WebRTCPeer()
        try:
            base = srv.base.replace("ws://", "http://")
            resp = await peer.connect(base, "w2", issue("w2"))
            assert resp.status_code == 200, resp.text
            handle = srv.hub.sessions["w2"]
            buffer = handle.transport.jitter.buffer
            async with asyncio.timeout(60):  # the microphone streams (silence), numbered
                while buffer.stats.frames < 25:  # noqa: ASYNC110 - its counters, not an event
                    await asyncio.sleep(0.02)
            peer.lose_frames(2)
            async with asyncio.timeout(60):
                while buffer.stats.lost < 2:  # noqa: ASYNC110 - its counters, not an event
                    await asyncio.sleep(0.02)
            stats = handle.transport.stats()
        finally:
            await peer.close()
    # low_latency (the webrtc default): a gap of 2 is concealed with silence, nothing
    # arrived out of order or twice, and the media time kept the sender's
    assert stats.jitter_profile == "low_latency"
    assert (stats.lost_frames, stats.concealed_frames, stats.discontinuities) == (2, 2, 0)
    assert (stats.out_of_order_frames, stats.duplicate_frames, stats.too_late_frames) == (
        0, 0, 0)
    assert stats.media_in_ms == (stats.frames_in + 2) * 20
