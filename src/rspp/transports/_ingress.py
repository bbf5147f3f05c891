"""Ingress conditioning: client PCM16 of any frame size -> 20 ms frames at the pipeline rate.

:class:`Rechunker` resamples (soxr streaming resampler, 16/24/48 kHz mono to
the pipeline rate) and cuts the stream into fixed frames. :class:`IngressMeter`
counts what a live client did late: late frames (audio that arrives later than real
time allows) and floods (audio faster than real time, measured against media time: a
backlog delivered at once after a stall is caught up, not a flood). Numbered frames out of order,
duplicated or lost are the jitter buffer's (:mod:`rspp.transports._jitter`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from rspp.errors import RSPPError
from rspp.transports._media_skew import MediaSkewHistogram
from rspp.transports._soxr_direct import DirectStream, open_stream

__all__ = ["Flood", "IngressLock", "IngressMeter", "Rechunker", "StreamResampler"]


class Flood(RSPPError):
    """The client sends audio faster than real time beyond the allowance."""


_I16 = np.dtype(np.int16)


class StreamResampler:
    """Streaming soxr resampler of mono PCM16 (identity when the rates match).

    ``quality`` is soxr's: ``"HQ"`` (default) releases output in blocks of ~100 ms
    (~74 ms behind the input on average at 2:1); ``"QQ"`` (cubic) has no block delay at
    a lower stop-band rejection (see docs/benchmarks.md, phone calls). The stream is
    libsoxr's C API called directly where python-soxr exposes it
    (:mod:`rspp.transports._soxr_direct`: the same samples for a seventh of the
    instructions of a 20 ms frame), else python-soxr's ``ResampleStream``.
    """

    def __init__(self, in_rate: int, out_rate: int, quality: str = "HQ") -> None:
        self.in_rate, self.out_rate, self.quality = in_rate, out_rate, quality
        self._odd = b""
        self._stream: Any = None
        #: resample a whole number of samples (None: identity)
        self._convert: Callable[[bytes], bytes] | None = None
        if in_rate != out_rate:
            self._open()

    def _open(self) -> None:
        direct = open_stream(self.in_rate, self.out_rate, self.quality)
        if direct is not None:
            self._stream, self._convert = direct, direct.convert
            return
        import soxr

        stream = soxr.ResampleStream(self.in_rate, self.out_rate, 1, dtype="int16",
                                     quality=self.quality)
        # a (samples, 1) view of the input goes to soxr as it is (no squeeze, no copy);
        # its wrapper's type checks are ours (an int16 array of that shape, always), so the
        # chunk function it calls for such an array is taken directly when it has one
        chunk = getattr(stream, "_process", None) or stream.resample_chunk

        def convert(pcm: bytes) -> bytes:
            out: bytes = chunk(np.ndarray((len(pcm) >> 1, 1), _I16, pcm), False).tobytes()
            return out

        self._stream, self._convert = stream, convert

    @property
    def identity(self) -> bool:
        """Rates match and no odd byte is pending: :meth:`convert` returns its input."""
        return self._stream is None and not self._odd

    def convert(self, pcm: bytes) -> bytes:
        if self._convert is not None and not self._odd and not len(pcm) & 1:
            return self._convert(pcm)  # the common case: a whole number of samples
        data = self._odd + pcm if self._odd else pcm
        if len(data) % 2:
            data, self._odd = data[:-1], data[-1:]
        else:
            self._odd = b""
        if self._convert is not None and data:
            data = self._convert(data)
        return data

    def flush(self) -> bytes:
        """The samples still inside the resampler (its filter delay, up to ~100 ms):
        the end of a stream. The resampler starts a new stream afterwards."""
        self._odd = b""
        stream = self._stream
        if stream is None:
            return b""
        if isinstance(stream, DirectStream):
            out = stream.convert(b"", last=True)
        else:
            out = np.asarray(stream.resample_chunk(np.zeros(0, dtype=np.int16), last=True),
                             dtype=np.int16).tobytes()
        self._open()
        return out


class Rechunker:
    """Resample ``in_rate`` -> ``out_rate`` (mono PCM16) and cut ``frame_ms`` frames."""

    def __init__(self, in_rate: int, out_rate: int, frame_ms: int = 20,
                 quality: str = "HQ") -> None:
        self.in_rate, self.out_rate = in_rate, out_rate
        self.frame_bytes = out_rate * frame_ms // 1000 * 2
        self._buf = bytearray()
        self._resampler = StreamResampler(in_rate, out_rate, quality)

    def push(self, pcm: bytes) -> list[bytes]:
        """Add client PCM; return the complete frames now available."""
        buf, n = self._buf, self.frame_bytes
        r = self._resampler
        conv = r._convert
        if conv is not None and not r._odd and not len(pcm) & 1:
            buf += conv(pcm)  # ``StreamResampler.convert``'s common case, without its call
        elif len(pcm) == n and not buf and type(pcm) is bytes and r.identity:
            return [pcm]  # a whole frame at the pipeline rate: as it came, no copy
        else:
            buf += r.convert(pcm)
        size = len(buf)
        if size < n:
            return []
        if size < 2 * n:  # one frame (a carrier's 20 ms at 2:1 lands ~4 samples off it)
            frame = bytes(buf[:n])
            del buf[:n]
            return [frame]
        frames = []
        while len(buf) >= n:
            frames.append(bytes(buf[:n]))
            del buf[:n]
        return frames

    @property
    def buffered(self) -> int:
        return len(self._buf)


@dataclass(slots=True)
class IngressMeter:
    """Real-time accounting of one connection's ingress (see the module docstring).

    A flood is measured against media time: how far the audio received runs ahead of the
    real time it took to arrive (a leaky bucket: each arrival adds its audio, the real time
    since the previous arrival drains it). A client (or a server) that stalls and then
    delivers its backlog at once is catching up, not flooding: real time it spent behind
    is credited, up to ``flood_credit_ms``, so a scheduling burst after a stall up to
    ``flood_credit_ms + flood_allowance_ms`` is real-time audio, as is the backlog of a
    client that streamed while the server was still opening its session (the first
    arrival starts with the credit). A client idle longer than that earns no more credit
    (it cannot bank minutes of silence for a burst); one steadily faster than real time
    floods within seconds.

    Each frame's lateness against the media-to-runtime mapping goes to ``skew`` (NF-018,
    :mod:`rspp.transports._media_skew`); a frame later than ``late_after_ms`` is counted
    once, re-anchors the mapping and is told to ``on_late(media_ms, late_ms)``.
    """

    rate: int
    #: audio may run this far ahead of real time (client buffering) before it is a flood
    flood_allowance_ms: float = 2000.0
    #: audio arriving this much behind real time counts as late
    late_after_ms: float = 200.0
    #: real time spent behind that a burst may catch up (stalls of a loaded machine)
    flood_credit_ms: float = 5000.0
    started_s: float | None = None
    media_ms: float = 0.0
    frames: int = 0
    late: int = 0
    #: media time minus real time (the bucket), floored at ``-flood_credit_ms``
    ahead_ms: float = 0.0
    _last_s: float = 0.0
    #: the session's mapping errors (None: not kept)
    skew: MediaSkewHistogram | None = None
    #: told of each late frame: its media time and how late it was (ms)
    on_late: Callable[[float, float], None] | None = None

    def arrive(self, nbytes: int, now_s: float) -> None:
        """Account ``nbytes`` of client PCM16 arriving at ``now_s``; raises Flood."""
        if self.started_s is None:
            # the client may have streamed before the server read its first frame (the
            # session was opening): that backlog is caught up like a stall's
            self.started_s = self._last_s = now_s
            self.ahead_ms = -self.flood_credit_ms
        self.frames += 1
        due_ms = self.media_ms
        frame_ms = nbytes / 2 * 1000.0 / self.rate
        self.media_ms += frame_ms
        lag_ms = (now_s - self.started_s) * 1000.0 - due_ms
        skew = self.skew
        if skew is not None:
            skew.add(lag_ms)
        if lag_ms > self.late_after_ms:
            self.late += 1
            # one late arrival is counted once: real time re-anchors on this frame
            self.started_s = now_s - due_ms / 1000.0
            if skew is not None:
                skew.late += 1
            if self.on_late is not None:
                self.on_late(due_ms, lag_ms)
        drained = self.ahead_ms - (now_s - self._last_s) * 1000.0
        floor = -self.flood_credit_ms
        self.ahead_ms = (drained if drained > floor else floor) + frame_ms
        self._last_s = now_s
        if self.ahead_ms > self.flood_allowance_ms:
            raise Flood(f"audio arrives faster than real time: {self.ahead_ms:.0f} ms of audio "
                        f"ahead of real time (allowance {self.flood_allowance_ms:.0f} ms, "
                        f"catch-up credit {self.flood_credit_ms:.0f} ms)")


class IngressLock:
    """One connection's ingress order: a FIFO asyncio lock whose uncontended acquire
    (:meth:`try_acquire`, every frame) is a plain call, not a coroutine.

    A release hands the lock to the longest waiter (it stays held): a frame arriving
    meanwhile cannot overtake the ones queued before it.
    """

    __slots__ = ("_waiters", "held")

    def __init__(self) -> None:
        #: taken (read it; take it with :meth:`try_acquire`, or set it where the call of
        #: ``try_acquire`` is too much: the frame path of a live connection)
        self.held = False
        self._waiters: deque[asyncio.Future[None]] = deque()

    def locked(self) -> bool:
        return self.held

    def try_acquire(self) -> bool:
        """Take the lock if it is free (True), without waiting."""
        if self.held:
            return False
        self.held = True
        return True

    async def acquire(self) -> None:
        if self.try_acquire():
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # handed over while being cancelled: to the next one
            raise

    def release(self) -> None:
        waiters = self._waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # handed over: still held
                return
        self.held = False

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.release()
