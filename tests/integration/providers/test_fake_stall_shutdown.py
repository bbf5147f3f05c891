"""A stalled fake provider server never keeps its server (or the test) from exiting.

:class:`~rspp.testing.fakes.FakeDeepgram` and :class:`~rspp.testing.fakes.FakeElevenLabs`
with an hour-long ``stall`` fault: the client connects and streams, the connection is
stalled (nothing answered), then the fake's ``serve()`` block is left. The exit must not
wait out the stall: the handler ends when its connection closes. The bound on the exit
(60 s) is a liveness guard, sixty times shorter than the stall, not a speed assertion.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from rspp.testing.fakes import FakeDeepgram, FakeElevenLabs, Fault

pytestmark = pytest.mark.integration

HOUR = 3600.0


async def _stalled_then_exit(fake: FakeDeepgram | FakeElevenLabs, path: str,
                             first: str | bytes, headers: dict[str, str]) -> int:
    fake.faults.sticky = Fault("stall", seconds=HOUR)
    exited = asyncio.Event()

    async def run() -> int:
        async with fake.serve() as url:
            ws = await websockets.connect(url + path, additional_headers=headers)
            for _ in range(64):  # more than the server's receive queue holds
                await ws.send(first)
            with pytest.raises(TimeoutError):  # stalled: nothing comes back
                await asyncio.wait_for(ws.recv(), 0.2)
            count = len(fake.requests)
        exited.set()
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()  # the fake's exit closed the stalled connection
        return count

    count = await asyncio.wait_for(run(), 60)
    assert exited.is_set()
    return count


async def test_stalled_deepgram_does_not_block_its_exit() -> None:
    fake = FakeDeepgram(api_key="k")
    assert await _stalled_then_exit(fake, "/v1/listen?sample_rate=16000", b"\x00" * 640,
                                    {"Authorization": "Token k"}) == 1


async def test_stalled_elevenlabs_does_not_block_its_exit() -> None:
    fake = FakeElevenLabs(api_key="k")
    bos = json.dumps({"text": " "})
    assert await _stalled_then_exit(fake, "/v1/text-to-speech/v/stream-input", bos,
                                    {"xi-api-key": "k"}) == 1


async def test_stall_ends_and_the_stream_is_answered_in_full() -> None:
    """A short stall delays the answer; the audio sent meanwhile is all counted."""
    fake = FakeDeepgram(api_key="k", interim_every_s=10.0)
    fake.faults.push(Fault("stall", seconds=0.3))
    async with fake.serve() as url:
        async with websockets.connect(url + "/v1/listen?sample_rate=16000",
                                      additional_headers={"Authorization": "Token k"}) as ws:
            for _ in range(50):
                await ws.send(b"\x00" * 640)  # 50 x 20 ms = 1 s of audio
            await ws.send(json.dumps({"type": "CloseStream"}))
            final = json.loads(await ws.recv())
    assert final["is_final"] is True and final["duration"] == pytest.approx(1.0)
    assert fake.audio_bytes == 50 * 640
