"""Ingress jitter buffer and packet-loss handling of the live transports (F-087).

A client that numbers its audio frames (WebSocket ``start.sequenced`` or the
MessagePack ``audio.seq``, a carrier's ``media.chunk``) may deliver them late,
twice, out of order or never. :class:`JitterBuffer` restores the order by
sequence number, following a :class:`~rspp.spec.JitterProfile`:

* a frame in order is released at once (no added latency on a clean network);
* a frame ahead of a missing one is held: the buffer waits for the missing frame
  while the held audio is at most the current depth (``target_ms``; adaptive
  profiles move it within ``min_ms..max_ms``), for at most that long in wall time,
  and while no held frame is more than ``reorder_window_frames`` ahead of it. The
  audio the buffer holds, hence the latency it adds, is bounded by the depth;
* a missing frame it stops waiting for is lost: up to ``conceal_max_frames`` of a
  gap are concealed (``loss: conceal``) with audio of the same length (``silence``,
  or ``repeat_fade``: the last frame repeated, fading to silence), so the pipeline
  keeps its media time; the rest (all of it with ``loss: drop``) is dropped and the
  next frame carries a discontinuity marker;
* a frame that arrives after its place was played out (concealed or dropped) is too
  late: dropped, and an adaptive buffer deepens by one frame (it shrinks again by one
  frame per second of steady audio); a frame already received is a duplicate: dropped;
* a frame numbered far behind the next one (more than 500 frames) is a client that
  restarted its count: what is held goes out, the count restarts there and the next
  audio carries a discontinuity marker (a restarted count never mutes the client).

:class:`JitterIngress` runs one connection's buffer in front of the re-chunker: it
owns the timer that gives a gap up when nothing arrives behind it and reports
every loss (first/last sequence, frames concealed and dropped) for the timeline.
Unnumbered audio passes straight through.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from rspp.spec import JitterProfile
from rspp.transports._ingress import IngressLock

__all__ = ["JitterBuffer", "JitterIngress", "JitterStats", "Loss", "Piece"]

#: in-order frames released without a late one before an adaptive buffer shrinks
_STEADY_FRAMES = 50
#: a frame numbered this far behind the next one is a restarted count, not a late frame
_RESYNC_FRAMES = 500


@dataclass(slots=True)
class JitterStats:
    """What the buffer saw of one connection's numbered frames."""

    frames: int = 0
    #: arrived after a frame numbered later
    out_of_order: int = 0
    #: out of order, put back in place
    reordered: int = 0
    duplicates: int = 0
    #: arrived after their place was played out: dropped
    too_late: int = 0
    #: places never filled in time (concealed or dropped)
    lost: int = 0
    concealed: int = 0
    #: gaps (or gap tails) dropped with a discontinuity marker
    discontinuities: int = 0
    #: the longest a frame was held (the latency the buffer added)
    hold_max_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class Piece:
    """Audio the buffer releases, in order."""

    pcm: bytes
    #: frames of concealment audio in ``pcm`` (0: audio the client sent)
    concealed: int = 0
    #: a dropped gap precedes this audio
    discontinuity: bool = False


@dataclass(frozen=True, slots=True)
class Loss:
    """One gap given up: sequence numbers ``first..last``, frames concealed and dropped."""

    first: int
    last: int
    concealed: int
    dropped: int
    method: str

    def describe(self) -> str:
        return (f"lost seq {self.first}..{self.last}: concealed {self.concealed} "
                f"({self.method}), dropped {self.dropped}")


class JitterBuffer:
    """Order, de-duplicate and conceal numbered frames (see the module docstring)."""

    def __init__(self, profile: JitterProfile, rate: int) -> None:
        self.profile = profile
        self.rate = rate
        self.depth_ms = float(profile.target_ms)
        self.stats = JitterStats()
        self.losses: list[Loss] = []
        self._next: int | None = None
        self._max_seen = -1
        #: seq -> (pcm, arrival time, arrived out of order)
        self._held: dict[int, tuple[bytes, float, bool]] = {}
        self._held_ms = 0.0
        self._given_up: deque[tuple[int, int]] = deque(maxlen=64)
        #: the last frame released (concealment repeats it)
        self.last = b""
        self._steady = 0
        self._disc = False

    def _ms(self, nbytes: int) -> float:
        return nbytes / 2 * 1000.0 / self.rate

    def fresh(self, seq: int | None) -> bool:
        """``seq`` would be taken (not a duplicate nor too late)."""
        return seq is None or self._next is None or (seq >= self._next and seq not in self._held)

    @property
    def holding(self) -> bool:
        return bool(self._held)

    def due(self) -> float | None:
        """When the oldest held frame stops waiting for the gap before it (None: none held)."""
        if not self._held:
            return None
        return min(t for _, t, _ in self._held.values()) + self.depth_ms / 1000.0

    def take_in_order(self, seq: int | None, nbytes: int) -> bool | None:
        """The fast path of :meth:`push`: a frame that would be released at once (unnumbered,
        or the next number while nothing is held) is taken without allocating anything;
        returns its discontinuity marker. None: not such a frame (nothing changed; call
        :meth:`push`). The caller keeps the frame (the last one, for concealment)."""
        if seq is None:
            return False
        nxt = self._next
        if self._held or (nxt is not None and seq != nxt):
            return None
        # in order with nothing held: nothing seen is ahead of it, so it is not behind
        self.stats.frames += 1
        if seq > self._max_seen:
            self._max_seen = seq
        self._next = seq + 1
        p = self.profile
        if p.mode == "adaptive" and self.depth_ms > p.min_ms:  # (else ``_settle`` does nothing)
            self._settle(nbytes)
        disc, self._disc = self._disc, False
        return disc

    def push(self, pcm: bytes, seq: int | None, now: float) -> list[Piece]:
        """One client frame arriving at ``now``; the audio now released, in order."""
        if seq is None:
            return [Piece(pcm)]
        st = self.stats
        st.frames += 1
        if self._next is None:
            self._next = seq
        if seq < self._next - _RESYNC_FRAMES and not any(a <= seq <= b
                                                         for a, b in self._given_up):
            return self._restart(pcm, seq, now)
        if seq < self._next:
            if any(a <= seq <= b for a, b in self._given_up):
                st.too_late += 1
                st.out_of_order += 1
                self._deepen(len(pcm))
            else:
                st.duplicates += 1
            return []
        if seq in self._held:
            st.duplicates += 1
            return []
        behind = seq < self._max_seen
        if behind:
            st.out_of_order += 1
        self._max_seen = max(self._max_seen, seq)
        self._held[seq] = (pcm, now, behind)
        self._held_ms += self._ms(len(pcm))
        return self._release(now)

    def _restart(self, pcm: bytes, seq: int, now: float) -> list[Piece]:
        out = self._release(now, force=True)
        self.stats.discontinuities += 1
        self._disc = True
        self._next, self._max_seen = seq, seq
        self._given_up.clear()
        self._held[seq] = (pcm, now, False)
        self._held_ms += self._ms(len(pcm))
        return out + self._release(now)

    def expire(self, now: float) -> list[Piece]:
        """Give up the gaps whose wait is over (the timer)."""
        return self._release(now)

    def flush(self, now: float) -> list[Piece]:
        """End of input: give every gap up and release everything held."""
        return self._release(now, force=True)

    def _release(self, now: float, force: bool = False) -> list[Piece]:
        out: list[Piece] = []
        p = self.profile
        while self._held and self._next is not None:
            nxt = self._next
            got = self._held.pop(nxt, None)
            if got is not None:
                pcm, t, behind = got
                self._held_ms -= self._ms(len(pcm))
                self.stats.hold_max_ms = max(self.stats.hold_max_ms, (now - t) * 1000.0)
                if behind:
                    self.stats.reordered += 1
                out.append(Piece(pcm, discontinuity=self._disc))
                self._disc = False
                self.last = pcm
                self._next = nxt + 1
                self._settle(len(pcm))
                continue
            first = min(self._held)
            oldest = min(t for _, t, _ in self._held.values())
            if not (force or self._held_ms > self.depth_ms
                    or max(self._held) - nxt > p.reorder_window_frames
                    or (now - oldest) * 1000.0 >= self.depth_ms - 1e-6):
                break
            out.extend(self._give_up(nxt, first))
        return out

    def _give_up(self, nxt: int, first: int) -> list[Piece]:
        p, st = self.profile, self.stats
        n = first - nxt
        conceal = min(n, p.conceal_max_frames) if p.loss == "conceal" else 0
        dropped = n - conceal
        st.lost += n
        st.concealed += conceal
        self._given_up.append((nxt, first - 1))
        self.losses.append(Loss(nxt, first - 1, conceal, dropped, p.conceal))
        self._next = first
        self._steady = 0
        out: list[Piece] = []
        if conceal:
            out.append(Piece(self._concealment(conceal, len(self._held[first][0])),
                             concealed=conceal, discontinuity=self._disc))
            self._disc = False
        if dropped:
            st.discontinuities += 1
            self._disc = True
        return out

    def _concealment(self, frames: int, fallback_bytes: int) -> bytes:
        last = self.last
        size = len(last) or fallback_bytes
        if self.profile.conceal == "silence" or not last:
            return bytes(size * frames)
        x = np.frombuffer(last, dtype=np.int16).astype(np.float32)
        steps = max(1, self.profile.conceal_max_frames)
        parts = []
        for k in range(frames):  # fade from the last frame's level to silence
            gain = np.linspace(1 - k / steps, 1 - (k + 1) / steps, len(x), dtype=np.float32)
            parts.append(np.clip(x * np.maximum(gain, 0), -32768, 32767).astype(np.int16))
        return np.concatenate(parts).tobytes()

    def _deepen(self, nbytes: int) -> None:
        p = self.profile
        if p.mode == "adaptive":
            self.depth_ms = min(float(p.max_ms), self.depth_ms + self._ms(nbytes))
        self._steady = 0

    def _settle(self, nbytes: int) -> None:
        p = self.profile
        if p.mode != "adaptive" or self.depth_ms <= p.min_ms:
            return
        self._steady += 1
        if self._steady >= _STEADY_FRAMES:
            self._steady = 0
            self.depth_ms = max(float(p.min_ms), self.depth_ms - self._ms(nbytes))


#: emits one re-chunked frame into the session (``discontinuity``: a gap was dropped)
FrameSink = Callable[[bytes, bool], Awaitable[None]]


class JitterIngress:
    """One connection's ingress: jitter buffer -> re-chunker -> frames (module docstring)."""

    def __init__(self, buffer: JitterBuffer, rechunk: Callable[[bytes], list[bytes]],
                 emit: FrameSink, note: Callable[[str], None], kind: str = "websocket") -> None:
        self.buffer = buffer
        #: the transport kind of the connection (its profile's key; a metrics label)
        self.kind = kind
        self.closed = False
        self._rechunk = rechunk
        self._emit = emit
        self._note = note
        #: FIFO; its ``held`` is read on every frame (``asyncio.Lock.locked`` is a call)
        self._lock = IngressLock()
        self._timer: asyncio.Task[None] | None = None
        self._timer_due: float | None = None
        self._disc = False
        #: client audio (concealment included) released into the pipeline, in samples
        self.released_samples = 0

    def push(self, pcm: bytes, seq: int | None) -> Awaitable[None]:
        """Take a client frame; the returned awaitable hands its frames on (not a coroutine
        itself: a frame released at once goes straight to the frame sink)."""
        if self._timer is None and not self._lock.held:
            disc = self.buffer.take_in_order(seq, len(pcm))
            if disc is not None:  # the fast path: released at once, no allocation, no timer
                if seq is not None:
                    self.buffer.last = pcm
                self._disc = self._disc or disc
                self.released_samples += len(pcm) // 2
                frames = self._rechunk(pcm)
                if len(frames) == 1:
                    # one frame, handed on before anything else can run: in order
                    disc, self._disc = self._disc, False
                    return self._emit(frames[0], disc)
                return self._emit_all(frames)
        return self._push_held(pcm, seq)

    async def _emit_all(self, frames: list[bytes]) -> None:
        if not frames:
            return
        async with self._lock:  # free (checked above): taken without yielding
            for frame in frames:
                disc, self._disc = self._disc, False
                await self._emit(frame, disc)

    async def _push_held(self, pcm: bytes, seq: int | None) -> None:
        """The jitter buffer's path: reordered, held, lost or concealed frames."""
        async with self._lock:
            now = asyncio.get_running_loop().time()
            await self._deliver(self.buffer.push(pcm, seq, now))

    async def flush(self) -> None:
        """Give every gap up now (the end of input)."""
        if not self.buffer.holding:
            return
        async with self._lock:
            await self._deliver(self.buffer.flush(asyncio.get_running_loop().time()))

    async def _deliver(self, pieces: list[Piece]) -> None:
        for loss in self.buffer.losses:
            self._note(loss.describe())
        self.buffer.losses.clear()
        for piece in pieces:
            self._disc = self._disc or piece.discontinuity
            self.released_samples += len(piece.pcm) // 2
            for frame in self._rechunk(piece.pcm):
                disc, self._disc = self._disc, False
                await self._emit(frame, disc)
        self._arm()

    def _arm(self) -> None:
        if self.closed:
            return
        due = self.buffer.due()
        if due == self._timer_due and self._timer is not None:
            return
        self._cancel()
        if due is not None:
            self._timer_due = due
            self._timer = asyncio.create_task(self._expire(due), name="jitter-gap-timer")

    async def _expire(self, due: float) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, due - loop.time()))
        async with self._lock:
            if self._timer is asyncio.current_task():
                self._timer, self._timer_due = None, None
            await self._deliver(self.buffer.expire(loop.time()))

    def _cancel(self) -> None:
        task, self._timer, self._timer_due = self._timer, None, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def close(self) -> str | None:
        """Stop the timer (held audio is discarded); the connection's summary line (None
        when already closed)."""
        self._cancel()
        if self.closed:
            return None
        self.closed = True
        st = self.buffer.stats
        return (f"profile {self.buffer.profile.name}: frames {st.frames}, out_of_order "
                f"{st.out_of_order}, reordered {st.reordered}, duplicates {st.duplicates}, "
                f"too_late {st.too_late}, lost {st.lost}, concealed {st.concealed}, "
                f"discontinuities {st.discontinuities}, depth {self.buffer.depth_ms:.0f} ms, "
                f"hold_max {st.hold_max_ms:.0f} ms")
