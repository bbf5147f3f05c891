"""The WebRTC transport of a real ``rspp serve`` process, driven by an aiortc peer in process.

The peer speaks like a browser: an Opus microphone track playing spoken WAVs in real
time (silence in between), a data channel ``rspp`` for events, HTTP signalling with the
session token of a control-plane route. Checked through the product's entry point:
the spoken question is transcribed and answered with non-silent Opus reply audio and
the data channel's events (``turn``, ``turn_row``); a barge-in aborts the turn and
clears playback (the reply audio stops); closing the peer ends the connection as a
WebSocket disconnect does (``disconnected``, ``stall``, abort ``transport_disconnect``);
bad signalling requests are 4xx with a JSON reason naming the field.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from rspp.providers.offline import resample_pcm
from rspp.transports import read_wav

if TYPE_CHECKING:
    from tests.e2e.conftest import ServeProcess

pytest.importorskip("aiortc", reason="WebRTC needs the extra: pip install "
                             "'rspp[webrtc]' (dev installs it)")
from rspp.testing import WebRTCPeer

pytestmark = pytest.mark.e2e

KEY = "webrtc-e2e-admin-key"
REPO = Path(__file__).resolve().parents[2]
VOICE = REPO / "pipelines" / "examples" / "voice_assistant.yaml"
RATE = 48000


async def _route(base: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=30) as http:
        resp = await http.post(f"{base}/v1/sessions/route",
                               json={"tenant_id": "acme", "pipeline_name": "voice-assistant"},
                               headers={"Authorization": f"Bearer {KEY}"})
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def _pcm48(path: Path) -> bytes:
    pcm, rate = read_wav(path)
    return resample_pcm(pcm, rate, RATE)


@pytest.fixture(scope="module")
def served(
    embedded_serve: Callable[..., tuple[ServeProcess, Path]]
) -> Iterator[tuple[ServeProcess, Path]]:
    """One embedded ``rspp serve`` (patient budgets) for the module."""
    srv, timelines = embedded_serve(KEY)
    yield srv, timelines
    code, _, err = srv.terminate()
    assert code == 0, err


def test_spoken_question_over_webrtc_gets_transcript_reply_audio_and_turn_row(
    served: tuple[ServeProcess, Path], spoken: dict[str, Path]
) -> None:
    srv, _ = served

    async def run() -> WebRTCPeer:
        route = await _route(srv.url)
        peer = WebRTCPeer()
        try:
            resp = await peer.connect(srv.url, route["session_id"], route["token"])
            assert resp.status_code == 200, resp.text
            assert "a=candidate" in resp.json()["sdp"]  # ICE gathered before the answer
            ready = (await peer.until(lambda: peer.of("ready")))[0]
            assert ready["session_id"] == route["session_id"]
            assert ready["output_sample_rate"] == RATE
            peer.say(_pcm48(spoken["question"]))
            await peer.until(lambda: peer.of("turn", state="close"))
            # the turn's row at its close is the data channel's next event after `turn`
            # close (hanging up on the close event alone lost it once, in CI)
            await peer.until(lambda: [e for e in peer.of("turn_row") if e["row"]["closed"]])
            await peer.until(lambda: peer.loud_after(0) >= 25)  # half a second of reply heard
            return peer
        finally:
            await peer.close()

    peer = asyncio.run(run())
    finals = [e["text"] for e in peer.of("transcript", final=True)]
    assert any("weather" in t for t in finals), peer.events
    assert any("weather" in e["text"] for e in peer.of("reply_text"))
    tid = peer.of("turn", state="open")[0]["turn_id"]
    assert [e["state"] for e in peer.of("turn", turn_id=tid)] == ["open", "commit", "close"]
    row = [e["row"] for e in peer.of("turn_row") if e["row"]["turn_id"] == tid][-1]
    assert row["outcome"] == "commit" and row["closed"]
    assert {"speech_end", "turn_open", "first_audio", "commit", "close"} <= set(row["marks"])
    assert row["latencies"]["speech_end_to_first_audio"] is not None
    assert row["pipeline_version"] and len(row["plan_hash"]) == 64


def test_barge_in_clears_playback_and_closing_the_peer_ends_like_a_disconnect(
    served: tuple[ServeProcess, Path], spoken: dict[str, Path]
) -> None:
    srv, timelines = served

    async def run() -> tuple[WebRTCPeer, str, float]:
        route = await _route(srv.url)
        peer = WebRTCPeer()
        try:
            resp = await peer.connect(srv.url, route["session_id"], route["token"])
            assert resp.status_code == 200, resp.text
            await peer.until(lambda: peer.of("ready"))
            peer.say(_pcm48(spoken["question"]))
            await peer.until(lambda: peer.loud_after(0) >= 10)  # the reply is playing
            peer.say(_pcm48(spoken["interrupt"]))
            clear = (await peer.until(lambda: peer.of("clear")))[0]
            cleared_at = time.monotonic()
            # the reply stops: in the second after the clear only the frames already encoded
            # when the fence closed arrive (a few; on a loaded machine some arrive after the
            # data channel's clear), not the rest of the reply (~50 frames a second)
            await peer.until(lambda: any(ts > cleared_at + 1.0 for ts, _ in peer.levels))
            assert peer.loud_after(cleared_at, cleared_at + 1.0) <= 10
            # the barge-in turn is answered; hang up while its reply plays
            second = await peer.until(lambda: peer.of("turn", state="open")[1:])
            await peer.until(lambda: peer.loud_after(cleared_at + 1.0) >= 5)
            assert not peer.of("turn", turn_id=second[0]["turn_id"], state="close")
            return peer, clear["turn_id"], cleared_at
        finally:
            await peer.close()

    peer, first, _ = asyncio.run(run())
    aborted = peer.of("turn", turn_id=first, state="abort")
    assert aborted and aborted[0]["reason"], peer.events
    row = [e["row"] for e in peer.of("turn_row") if e["row"]["turn_id"] == first][-1]
    assert row["outcome"] == "abort" and "abort" in row["marks"]
    assert any(f["name"] in ("barge_in", "cancel", "playback_cancelled") for f in row["fences"])
    sid = peer.of("ready")[0]["session_id"]
    timeline = timelines / f"{sid}.jsonl"
    deadline = time.monotonic() + 60
    # the server notices the closed peer: disconnected, then stall (2 s) aborts the turn
    while time.monotonic() < deadline:  # polled: the timeline file is the server's record
        text = timeline.read_text() if timeline.exists() else ""
        if '"transport_disconnect"' in text:
            break
        time.sleep(0.1)
    lines = [json.loads(x) for x in timeline.read_text().splitlines()]
    signals = [ln["record"] for ln in lines if ln["kind"] == "control_signal"]
    # Opus in, PCM events for the ASR: the ingress frames say what they are after decoding
    ingress = [ln["payload"] for ln in lines if ln["kind"] == "event_record"
               and ln["record"].get("transport_sequence") is not None and ln.get("payload")]
    assert len(ingress) > 100
    assert {(p["sample_rate_hz"], p["channels"]) for p in ingress} == {(16000, 1)}
    assert {len(base64.b64decode(p["data"])) for p in ingress} == {640}  # 20 ms frames
    names = [r["signal"] for r in signals]
    assert "disconnected" in names and "stall" in names, names
    assert any(r["signal"] == "abort" and r.get("reason") == "transport_disconnect"
               for r in signals)


def test_signalling_refuses_bad_requests_with_a_json_reason(
    served: tuple[ServeProcess, Path]
) -> None:
    srv, _ = served
    route = asyncio.run(_route(srv.url))
    sid, token = route["session_id"], route["token"]
    url = f"{srv.url}/v1/sessions/{sid}/webrtc"
    offer = {"type": "offer", "sdp": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"}

    def post(body: Any, **headers: str) -> httpx.Response:
        return httpx.post(url, content=body if isinstance(body, bytes) else json.dumps(body),
                          headers={"content-type": "application/json", **headers}, timeout=30)

    cases = [
        (post(offer), 401, "token"),
        (post(offer, authorization="Bearer not-a-token"), 401, "token"),
        (httpx.post(f"{srv.url}/v1/sessions/other-session/webrtc", json=offer,
                    headers={"Authorization": f"Bearer {token}"}), 403, "token"),
        (post(b"{", authorization=f"Bearer {token}"), 400, "$"),
        (post({"type": "answer", "sdp": "x"}, authorization=f"Bearer {token}"), 400, "type"),
        (post({"type": "offer", "sdp": "v=0\r\n"}, authorization=f"Bearer {token}"), 400, "sdp"),
        (post(offer, authorization=f"Bearer {token}"), 400, "sdp"),  # malformed SDP
        (post(b"x" * 70_000, authorization=f"Bearer {token}"), 413, "sdp"),
    ]
    ice = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert ice.status_code == 200 and ice.json()["ice_servers"] == []  # loopback: none
    cases.append((httpx.get(url, timeout=30), 401, "token"))
    for resp, status, field in cases:
        assert resp.status_code == status, (resp.status_code, resp.text)
        err = resp.json()["error"]
        assert err["field"] == field and err["message"], err
        assert "Traceback" not in resp.text


def test_data_channel_controls_resume_and_end(
    served: tuple[ServeProcess, Path], spoken: dict[str, Path]
) -> None:
    """Bad control messages are error events; a new offer resumes; ``end`` ends cleanly."""
    srv, timelines = served

    async def run() -> tuple[WebRTCPeer, WebRTCPeer]:
        route = await _route(srv.url)
        sid, token = route["session_id"], route["token"]
        first = WebRTCPeer()
        try:
            assert (await first.connect(srv.url, sid, token)).status_code == 200
            await first.until(lambda: first.of("ready"))
            assert first.of("ready")[0]["resumed"] is False
            first.send({"type": "start", "sample_rate": 16000})
            first.send(b"\x00\x01")
            first.send("{not json")
            first.send({"type": "text", "text": "what is your name"})
            await first.until(lambda: len(first.of("error")) >= 4)
        finally:
            await first.close()
        # the server sees the peer go (recorded), then the same session resumes
        timeline = timelines / f"{sid}.jsonl"

        def gone() -> bool:
            return '"disconnected"' in (timeline.read_text() if timeline.exists() else "")

        async with asyncio.timeout(60):
            while not gone():  # noqa: ASYNC110 - polled: the file is the server's record
                await asyncio.sleep(0.05)
        second = WebRTCPeer()
        try:
            async with asyncio.timeout(60):
                while (resp := await second.connect(srv.url, sid, token)).status_code == 409:
                    await second.close()  # released right after `disconnected` is recorded
                    second = WebRTCPeer()
            assert resp.status_code == 200, resp.text
            ready = (await second.until(lambda: second.of("ready")))[0]
            assert ready["resumed"] is True and ready["session_id"] == sid
            second.say(_pcm48(spoken["question"]))
            await second.until(lambda: second.of("turn", state="close"))
            second.send({"type": "end"})
            await second.until(lambda: second.of("session_end"))
        finally:
            await second.close()
        return first, second

    first, second = asyncio.run(run())
    errors = first.of("error")
    assert {(e["code"], e["field"]) for e in errors} >= {("bad_input", "type"),
                                                         ("bad_input", "$")}
    assert any(e["code"] == "bad_message" for e in errors)
    assert all(not e["fatal"] for e in errors)
    assert second.of("session_end")[0]["reason"] == "client_end"
    assert any("weather" in e["text"] for e in second.of("transcript", final=True))
