"""The LiveKit room agent (F-083) below the network: a real session, the SDK's real types.

No LiveKit server runs here, so the room is an unconnected ``rtc.Room`` whose events the
test emits as the SDK would (a caller's data packets, SIP DTMF, the caller leaving), the
caller's microphone is a stream of real ``AudioFrameEvent`` s at 48 kHz in real time,
the reply plays into a real ``AudioSource`` and the data channel is the one seam (a
recorder of what would be published). ``test_livekit_server.py`` runs the same path
against a real server when ``LIVEKIT_URL`` is set.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import soxr

from rspp.runner import LocalFactoryOptions, LocalSessionFactory, compile_spec_file
from rspp.transports import (
    ROOM_AUDIO,
    LiveKitConfig,
    RoomAgent,
    SessionGrant,
    livekit_available,
)

from .conftest import REPO, patient_spec

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not livekit_available(),
                                 reason="the LiveKit SDKs are not installed (rspp[livekit])")]

PHONE = REPO / "pipelines" / "examples" / "phone_assistant.yaml"
CFG = LiveKitConfig(url="ws://127.0.0.1:7880", api_key="devkey",
                    api_secret="secret-of-at-least-thirty-two-bytes!!")


async def microphone(pcm16k: bytes, stop: asyncio.Event) -> AsyncIterator[Any]:
    """The caller's track as the SDK's AudioStream yields it: 20 ms frames, 48 kHz, real time."""
    from livekit import rtc

    x = np.asarray(soxr.resample(np.frombuffer(pcm16k, dtype=np.int16), 16000, 48000),
                   dtype=np.int16).tobytes()
    loop = asyncio.get_running_loop()
    t0, k = loop.time(), 0
    while not stop.is_set():
        chunk = x[k * 1920:(k + 1) * 1920].ljust(1920, b"\0")
        yield rtc.AudioFrameEvent(frame=rtc.AudioFrame(chunk, 48000, 1, 960))
        k += 1
        await asyncio.sleep(max(0.0, t0 + k * 0.02 - loop.time()))


def participant(identity: str) -> Any:
    from livekit import rtc
    from livekit.rtc._proto import participant_pb2

    owned = participant_pb2.OwnedParticipant()
    owned.info.identity = identity
    owned.info.kind = participant_pb2.ParticipantKind.PARTICIPANT_KIND_STANDARD
    return rtc.RemoteParticipant(owned)


async def test_room_agent_answers_the_caller_maps_data_dtmf_and_follows_the_caller_out(
        tmp_path, speech) -> None:
    from livekit import rtc

    spec = patient_spec(tmp_path / "phone.yaml", PHONE)
    factory = LocalSessionFactory(compile_spec_file(spec), LocalFactoryOptions(
        timeline_dir=tmp_path))
    handle = await factory.open("lk1", SessionGrant(session_id="lk1", tenant_id="acme"),
                                ROOM_AUDIO)
    sent: list[dict[str, Any]] = []
    changed = asyncio.Event()

    async def publish(data: bytes) -> None:
        sent.append(json.loads(data))
        changed.set()

    async def until(pred: Any) -> None:
        while not pred():
            changed.clear()
            await changed.wait()

    room = rtc.Room()
    agent = RoomAgent(handle, room, CFG, room_name="support-1", caller="alice",
                      publish_data=publish)
    agent.bind()
    source = rtc.AudioSource(48000, 1, queue_size_ms=200)
    agent.start(source)
    stop = asyncio.Event()
    agent.ingest(microphone(speech["question"][0], stop))
    alice = participant("alice")
    try:
        async with asyncio.timeout(90):
            # the spoken question is answered: transcript, reply text, audio into the track
            await until(lambda: any(m["type"] == "turn" and m["state"] == "close"
                                    for m in sent))
        finals = [m["text"] for m in sent if m["type"] == "transcript" and m["final"]]
        assert finals and "weather" in finals[0]
        assert any("weather" in m["text"] for m in sent if m["type"] == "reply_text")
        assert agent.frames_in > 50 and agent.frames_out > 25
        # the data channel takes the WebSocket protocol's client messages
        room.emit("data_received", rtc.DataPacket(data=b'{"type": "text", "text": "what '
                                                  b'is your name"}', kind=1,
                                                  participant=alice, topic="rspp"))
        room.emit("data_received", rtc.DataPacket(data=b"{oops", kind=1, participant=alice,
                                                  topic="rspp"))
        room.emit("data_received", rtc.DataPacket(data=b"ignored", kind=1,
                                                  participant=alice, topic="other"))
        async with asyncio.timeout(90):
            await until(lambda: sum(m["type"] == "turn" and m["state"] == "commit"
                                    for m in sent) >= 2)
        # a keypress on a SIP leg is a control event; "0" takes the conditional edge
        room.emit("sip_dtmf_received", rtc.SipDTMF(code=0, digit="0", participant=alice))
        async with asyncio.timeout(90):
            await until(lambda: sum(m["type"] == "turn" and m["state"] == "commit"
                                    for m in sent) >= 3)
        replies = " ".join(m["text"] for m in sent if m["type"] == "reply_text")
        assert "Rusty" in replies and "operator" in replies
        errors = [m for m in sent if m["type"] == "error"]
        assert [e["code"] for e in errors] == ["bad_message"]
        # the caller leaves: the call is over for the session too
        room.emit("participant_disconnected", alice)
        async with asyncio.timeout(30):
            await agent.ended.wait()
            await handle.wait_closed()
    finally:
        stop.set()
        await agent.leave("test_end")
    assert agent.end_reason == "participant_left"
    assert handle.close_reason == "livekit:participant_left"
    timeline = factory.timeline_for("lk1")
    assert timeline is not None
    sig = [json.loads(x)["record"] for x in timeline.read_text().splitlines()
           if '"control_signal"' in x]
    assert sig[-1]["signal"] == "ended" and sig[-1]["reason"] == "livekit:participant_left"
    assert sum(r["signal"] == "commit" for r in sig) >= 3


async def test_join_retries_with_backoff_then_gives_up(tmp_path) -> None:
    """A real ``rtc.Room`` connecting to a port nobody listens on: one try per policy step."""
    from livekit import rtc

    from rspp.controlplane._server import free_port
    from rspp.transports import ReconnectPolicy

    cfg = LiveKitConfig(url=f"ws://127.0.0.1:{free_port()}", api_key="devkey",
                        api_secret="secret-of-at-least-thirty-two-bytes!!",
                        reconnect=ReconnectPolicy(initial_s=0.01, attempts=3, jitter=0.0))
    spec = patient_spec(tmp_path / "phone.yaml", PHONE)
    factory = LocalSessionFactory(compile_spec_file(spec), LocalFactoryOptions(
        record_level=None))
    handle = await factory.open("lk2", SessionGrant(session_id="lk2", tenant_id="acme"),
                                ROOM_AUDIO)
    waits: list[float] = []

    async def sleep(s: float) -> None:
        waits.append(s)

    agent = RoomAgent(handle, rtc.Room(), cfg, room_name="r")
    try:
        with pytest.raises(Exception):  # noqa: B017 - the SDK's ConnectError
            async with asyncio.timeout(120):
                await agent.join("not-a-valid-token", sleep=sleep)
        assert waits == [0.01, 0.02]
    finally:
        await agent.leave("join_failed")
    assert handle.closed
