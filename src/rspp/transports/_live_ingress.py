"""Ingress of a live session: client media and input into the session's graph.

:class:`LiveIngress` is the part of :class:`~rspp.transports._live.LiveTransport` that
takes client PCM16 through the connection's jitter buffer (F-087), re-chunks it to
20 ms frames at the pipeline rate and delivers them one at a time (recorded on
admission, as a replay feeds them), and puts typed text and transport control input
(DTMF, F-089) on the graph's ``input.text`` / ``input.control`` entries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from rspp.kernel import AudioFormat, Event, SessionActor, audio_frame
from rspp.spec import JitterProfiles
from rspp.transports._ingress import IngressLock, IngressMeter, Rechunker
from rspp.transports._input_rejected import InputRejected
from rspp.transports._intake import TAKEN, nothing
from rspp.transports._jitter import JitterBuffer, JitterIngress, JitterStats
from rspp.transports._live_options import LiveOptions
from rspp.transports._media_skew import MediaSkewHistogram
from rspp.transports._protocol import ErrorEvent, ServerEvent
from rspp.transports._records import RecordSink, encode_ingress, record_ingress

__all__ = ["LiveIngress"]


class LiveIngress:
    """The ingress half of :class:`~rspp.transports._live.LiveTransport`, whose
    ``__init__`` sets the state declared here."""

    rate: int
    opts: LiveOptions
    session: SessionActor | None
    _record: RecordSink | None
    _rechunker: Rechunker
    meter: IngressMeter
    jitter_profiles: JitterProfiles
    jitter: JitterIngress
    _discontinuities: int
    _last_ingress_seq: int
    on_jitter: Callable[[str, JitterStats], None] | None
    media_skew: MediaSkewHistogram
    on_media_skew: Callable[[str, MediaSkewHistogram], None] | None
    media_samples: int
    _index: int
    _ingress_lock: IngressLock
    _loop_time: Callable[[], float] | None
    _in_format: AudioFormat
    audio_refused: int
    _audio_in: bool

    def _event(self, ev: ServerEvent) -> None:
        """An event to the client (the transport's output; see ``LiveTransport``)."""
        raise NotImplementedError

    def push_audio(self, pcm: bytes, seq: int | None = None) -> Awaitable[None]:
        """Client PCM16 at the connection's declared rate (``seq``: the client's frame
        number, through the jitter buffer); raises Flood.

        Not a coroutine itself (one frame of every session, 50 times a second): it returns
        the awaitable that takes the frame in."""
        if not self._audio_in:
            # told once, on the event channel of whatever transport carries the session (a
            # media track keeps sending: its loop must not fail)
            self.audio_refused += 1
            if self.audio_refused == 1:
                self._event(ErrorEvent(code="bad_input", field="audio", message=(
                    "this pipeline takes no audio input (no `input.audio` edge in its spec); "
                    "send `text` messages")))
            return nothing()
        j = self.jitter
        clock = self._loop_time
        if clock is None:  # once: asyncio.get_running_loop() costs a getpid() system call
            clock = self._loop_time = asyncio.get_running_loop().time
        self.meter.arrive(len(pcm) if j.buffer.fresh(seq) else 0, clock())
        return j.push(pcm, seq)

    async def push_silence(self) -> None:
        """One frame of silence at the pipeline rate (the microphone after ``end``)."""
        if self._audio_in:
            await self.jitter.flush()  # no more input: the gaps still held are lost
            await self._push_frame(bytes(2 * (self.rate * self.opts.frame_ms // 1000)))

    async def end_of_utterance(self) -> None:
        """The client's push-to-talk release (F-042): an in-band ``end_of_utterance`` on the
        audio input, after every frame the client sent before it (frames the jitter buffer
        still holds go in first)."""
        if not self._audio_in:
            raise InputRejected("type", "this pipeline takes no audio input (no `input.audio` "
                                "edge in its spec); there is no utterance to end")
        await self.jitter.flush()
        async with self._ingress_lock:
            await self._ingress(Event("end_of_utterance", None, audio_format=self._in_format,
                                      sample_index=self.media_samples))

    def _jitter_ingress(self, transport: str, in_rate: int) -> JitterIngress:
        buffer = JitterBuffer(self.jitter_profiles.for_transport(transport), in_rate)
        # the connection's re-chunker (``connect`` makes it before this buffer)
        return JitterIngress(buffer, self._rechunker.push, self._push_frame, self._jitter_note,
                             transport)

    def _end_jitter(self) -> None:
        """The connection's jitter buffer is done: its summary on the timeline and to
        ``on_jitter`` (once; only connections that numbered their frames)."""
        j = self.jitter
        summary = j.close()
        if summary is None or not j.buffer.stats.frames:
            return
        self._jitter_note(f"connection {summary}")
        if self.on_jitter is not None:
            self.on_jitter(j.kind, j.buffer.stats)

    def _media_late(self, media_ms: float, late_ms: float) -> None:
        """A frame beyond the media-to-runtime bound (NF-018): the meter re-anchored the
        mapping on it; said on the session's timeline (TelemetryLane)."""
        if self.session is not None:  # beside the last ingress frame, as jitter notes
            self.session.signals.telemetry(
                kind="media_skew", at_sequence=self._last_ingress_seq,
                reason=f"late frame at media {media_ms:.0f} ms: {late_ms:.0f} ms behind the "
                f"media-to-runtime mapping (bound {self.opts.late_after_ms:.0f} ms), mapping "
                "re-anchored on it")

    def _end_media_skew(self) -> None:
        """The connection's mapping errors: its summary on the timeline, into the session's,
        and to ``on_media_skew`` (once; only connections that sent audio)."""
        m = self.meter
        skew, m.skew = m.skew, None
        if skew is None or not skew.count:
            return
        self.media_skew.merge(skew)
        if self.session is not None:
            self.session.signals.telemetry(kind="media_skew", at_sequence=self._last_ingress_seq,
                                           reason="connection " + skew.describe(
                                               self.opts.late_after_ms))
        if self.on_media_skew is not None:
            self.on_media_skew(self.jitter.kind, skew)

    def _jitter_note(self, reason: str) -> None:
        """A jitter-buffer decision on the session's timeline (TelemetryLane)."""
        if self.session is not None:  # beside the last ingress frame: a replay feeds the
            # recorded frames and takes no sequence number for this note, so neither may we
            self.session.signals.telemetry(kind="transport_jitter", reason=reason,
                                           at_sequence=self._last_ingress_seq)

    def _push_frame(self, frame: bytes, discontinuity: bool = False) -> Awaitable[None]:
        """One re-chunked frame into the session, numbered when it goes in, one at a time
        (two producers, e.g. a media track and ``end``'s silence, never share a number or
        record out of order); await the result (:data:`TAKEN`: it was taken at once)."""
        lock = self._ingress_lock
        if lock.held:
            return self._push_frame_later(frame, discontinuity)
        lock.held = True  # (``try_acquire`` inline: every frame of every session passes)
        try:
            s = self.session
            if discontinuity or s is None or self._record is not None:
                ev = self._frame_event(frame, discontinuity)
                rest = self._ingress_now(ev)
            else:  # ``_frame_event`` and ``_ingress_now`` of the common frame, inline
                ev = audio_frame(frame, self._in_format, self.media_samples, self._index)
                self.media_samples += len(frame) >> 1
                self._index += 1
                rest = s.deliver_now(ev, "audio", None)
        except BaseException:
            lock.release()
            raise
        if rest is None:
            self._last_ingress_seq = ev.seq if ev.seq > 0 else 0
            lock.release()
            return TAKEN
        return self._finish_frame(rest, ev)

    async def _push_frame_later(self, frame: bytes, discontinuity: bool) -> None:
        lock = self._ingress_lock
        await lock.acquire()
        try:
            ev = self._frame_event(frame, discontinuity)
            await self._ingress(ev)
            self._last_ingress_seq = ev.seq if ev.seq > 0 else 0
        finally:
            lock.release()

    async def _finish_frame(self, rest: Awaitable[bool], ev: Event) -> None:
        """The rest of a frame's delivery (flow control, the control it caused)."""
        try:
            await rest
            self._last_ingress_seq = ev.seq if ev.seq > 0 else 0
        finally:
            self._ingress_lock.release()

    def _frame_event(self, frame: bytes, discontinuity: bool) -> Event:
        ev = audio_frame(frame, self._in_format, self.media_samples, self._index)
        if discontinuity:  # the jitter buffer dropped audio just before this frame
            self._discontinuities += 1
            ev.discontinuity_id = f"input.audio:disc:{self._discontinuities}"
        self.media_samples += len(frame) // 2
        self._index += 1
        return ev

    def _ingress(self, ev: Event, port: str = "audio") -> Awaitable[object]:
        """The session's ``deliver`` of ``ev`` (recorded on admission), to be awaited."""
        rest = self._ingress_now(ev, port)
        return TAKEN if rest is None else rest

    def _ingress_now(self, ev: Event, port: str = "audio") -> Awaitable[bool] | None:
        """The session's ``deliver_now`` of ``ev`` (recorded on admission): None when it
        was taken at once, else what finishes taking it."""
        s = self.session
        if s is None:
            raise RuntimeError("attach() the transport to a session first")
        record = self._record
        admitted: Callable[[Event], None] | None = None
        if record is not None:
            encoded = encode_ingress(ev)  # before the push: inline nodes may annotate it

            def admitted(e: Event) -> None:
                record_ingress(record, s, e, encoded, port)

        # One frame at a time: the session takes the frame (and handles the control it
        # caused) before the next goes in. Network frames arrive in bursts (jitter, a
        # loaded client); pushing a burst at once would record several ingress frames
        # ahead of the turn proposal the first one caused, an order a replay (which
        # feeds frames one by one) cannot reproduce.
        return s.deliver_now(ev, port, admitted)

    async def push_text(self, text: str, turn_for: Callable[[], object]) -> None:
        """Typed user input: one user turn through the graph's ``input.text`` entry."""
        s = self.session
        if s is None or "text" not in s.graph.entry_ports():
            raise InputRejected("type", "this pipeline takes no text input (no `input.text` "
                                "edge in its spec); send audio instead")
        tid = await turn_for()  # type: ignore[misc]
        await self._ingress(Event("text", text, final=True, turn_id=tid), "text")

    async def push_control(self, kind: str, value: str, attrs: Mapping[str, Any],
                           turn_for: Callable[[], object]) -> bool:
        """A transport control input (a DTMF digit) on the graph's ``input.control`` entry.

        ``attrs`` are the event's attributes, namespaced by the transport (edge
        conditions read them, e.g. ``when: "transport.dtmf == '0'"``). When an
        ``input.control`` edge takes the event, it is user input: a turn opens for it
        (like typed text) and the event carries that turn. Otherwise it is recorded
        (telemetry) and goes nowhere. True when the graph took it.
        """
        s = self.session
        if s is None:
            raise RuntimeError("attach() the transport to a session first")
        ev = Event(kind, value, final=True, attrs=dict(attrs))
        entry = s.entries.get("control")
        routed = entry is not None and any(
            cond is None or cond(ev.attrs) for _, _, _, cond, _ in entry[1])
        if not routed:  # beside the last ingress frame, taking no sequence number: a
            # replay does not reproduce the note, so later records (plans) must not shift
            s.signals.telemetry(kind="transport_control", reason=f"{kind}:{value} unrouted "
                                "(no input.control edge takes it)",
                                at_sequence=self._last_ingress_seq)
            return False
        ev.turn_id = await turn_for()  # type: ignore[misc]
        await self._ingress(ev, "control")
        return True
