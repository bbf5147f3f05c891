"""A WebRTC client peer of ``rspp serve`` that speaks like a browser (needs ``rspp[webrtc]``).

:class:`WebRTCPeer` has an Opus microphone track that plays queued 48 kHz speech in real
time (silence in between), a data channel for the protocol's JSON events, and measures
the reply audio it receives (RMS per 20 ms frame). ``connect`` does the HTTP signalling
of docs/protocol/webrtc.md with a session token; ``until`` waits on events and audio, not
on time. Tests, benchmarks and trials use it in place of a browser.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np

__all__ = ["WebRTCPeer"]

RATE = 48000
FRAME = 960  # 20 ms at 48 kHz


class WebRTCPeer:
    """The browser side of a WebRTC session (see the module docstring)."""

    #: RMS of a received frame that carries speech (Opus decodes silence to ~0)
    LOUD = 300.0

    def __init__(self) -> None:
        import aiortc
        import av
        from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

        peer = self

        class _Microphone(MediaStreamTrack):
            kind = "audio"

            async def recv(self) -> Any:
                if self.readyState != "live":
                    raise MediaStreamError
                if peer._start is None:
                    peer._start = time.monotonic()
                wait = peer._start + peer._k * 0.02 - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                chunk = bytes(peer._pcm[: 2 * FRAME]).ljust(2 * FRAME, b"\0")
                del peer._pcm[: 2 * FRAME]
                frame = av.AudioFrame(format="s16", layout="mono", samples=FRAME)
                frame.planes[0].update(chunk)
                frame.pts, frame.sample_rate = peer._k * FRAME, RATE
                frame.time_base = fractions.Fraction(1, RATE)
                peer._k += 1
                if peer._lose:  # the next frames never arrive: their RTP timestamps pass
                    peer._k += peer._lose
                    peer._lose = 0
                return frame

        self._aiortc = aiortc
        self._stream_error = MediaStreamError
        self._pcm = bytearray()
        self._start: float | None = None
        self._k = 0
        self._lose = 0
        self.pc = aiortc.RTCPeerConnection()
        self.pc.addTrack(_Microphone())
        self.channel = self.pc.createDataChannel("rspp")
        self.events: list[dict[str, Any]] = []
        #: (monotonic time, RMS) of every received 20 ms reply frame
        self.levels: list[tuple[float, float]] = []
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.channel.on("message", self._on_message)
        self.pc.on("track", self._on_track)

    def say(self, pcm48: bytes) -> None:
        """Queue 48 kHz mono PCM16 for the microphone (played in real time)."""
        self._pcm.extend(pcm48)

    def lose_frames(self, n: int) -> None:
        """The ``n`` microphone frames after the next one are lost on the way, as a lossy
        network loses packets: their media time passes and the sender's RTP timestamps skip
        them (queued speech is not consumed by them: it plays after the gap)."""
        self._lose = n

    def send(self, message: dict[str, Any] | str | bytes) -> None:
        """A control message on the data channel (a dict is sent as JSON)."""
        self.channel.send(json.dumps(message) if isinstance(message, dict) else message)

    def _on_message(self, text: str) -> None:
        self.events.append(json.loads(text))
        self._changed.set()

    def _on_track(self, track: Any) -> None:
        task = asyncio.ensure_future(self._listen(track))
        self._tasks.add(task)

    async def _listen(self, track: Any) -> None:
        with contextlib.suppress(self._stream_error):
            while True:
                frame = await track.recv()
                samples = frame.to_ndarray().astype(np.float64)
                self.levels.append((time.monotonic(), float(np.sqrt(np.mean(samples ** 2)))))
                self._changed.set()

    async def until(self, what: Callable[[], Any], limit_s: float = 90.0) -> Any:
        """Wait until ``what()`` is truthy (woken by every event and audio frame)."""
        async with asyncio.timeout(limit_s):
            while not (got := what()):
                self._changed.clear()
                await self._changed.wait()
        return got

    def of(self, type_: str, **match: Any) -> list[dict[str, Any]]:
        """The events of ``type_`` whose fields equal ``match``."""
        return [e for e in self.events if e["type"] == type_
                and all(e.get(k) == v for k, v in match.items())]

    def loud_after(self, t: float, until: float = float("inf")) -> int:
        """Received reply frames carrying sound between monotonic times ``t`` and ``until``."""
        return sum(1 for ts, rms in self.levels if t < ts <= until and rms > self.LOUD)

    async def connect(self, base: str, session_id: str, token: str, *,
                      timeline: bool = True) -> httpx.Response:
        """Offer (ICE gathered), POST it with the token, apply the answer on 200."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        offer = self.pc.localDescription
        async with httpx.AsyncClient(timeout=60) as http:
            resp = await http.post(f"{base}/v1/sessions/{session_id}/webrtc",
                                   json={"type": offer.type, "sdp": offer.sdp,
                                         "timeline": timeline},
                                   headers={"Authorization": f"Bearer {token}"})
        if resp.status_code == 200:
            answer = resp.json()
            await self.pc.setRemoteDescription(self._aiortc.RTCSessionDescription(
                sdp=answer["sdp"], type=answer["type"]))
        return resp

    async def close(self) -> None:
        await self.pc.close()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
