"""Loopback transport: a WAV file in as 20 ms frames, reply audio out to a WAV (F-130).

Media time is the input sample count. Playback of reply audio advances with
media time (the "speaker" plays while the "microphone" records), so a barge-in
injected ``SECONDS`` after the first ``playback_started`` lands while the turn
is audible. With ``real_time`` frames are paced on the clock; without it they
are sent as fast as the pipeline allows and media time simply does not advance
while the pipeline computes with nothing left to play (processing looks
instantaneous in media time; latencies are still measured on the wall clock).

A file never loses input, whatever the machine load: ingress blocks (the session
is lossless, the transport waits for space) instead of dropping. Without
``real_time`` each frame is also processed to quiescence before the next one is
read (logical time: the session is idle between frames), so the recorded order
of records does not depend on how fast the machine was, and a replay on virtual
time reproduces it. With ``real_time`` frames keep their wall-clock pace when the
machine keeps up and are sent late (never dropped) when it does not; after the
input ended, silence frames keep that pace (the turn's reply plays, and a cancel or
barge-in lands, while a provider still streams) while a reply is pending.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from rspp.contracts import (
    ControlSignal,
    Emitter,
    Lane,
    PayloadClass,
    SignalName,
    TransportCapabilities,
)
from rspp.kernel import AudioFormat, Event, EventKind, SessionActor
from rspp.transports._capabilities import loopback_capabilities
from rspp.transports._contract import PlaybackObserver
from rspp.transports._records import RecordSink, encode_ingress, record_ingress, record_output

__all__ = ["LoopbackOptions", "LoopbackTransport", "TurnOutput"]

SignalFactory = Callable[[SignalName, Emitter, str, str], ControlSignal]


@dataclass(frozen=True, slots=True)
class LoopbackOptions:
    frame_ms: int = 20
    real_time: bool = False
    tail_silence_ms: int = 1200
    #: inject this PCM (same rate as the input) ``barge_in_after_s`` after the first playback
    barge_in: bytes | None = None
    barge_in_after_s: float = 0.0
    #: media time allowed after the input ended for turns to finish
    max_drain_s: float = 60.0
    #: fast mode: wall seconds to wait for a busy pipeline before media time moves anyway
    stall_timeout_s: float = 30.0
    #: client push-to-talk releases (explicit end of utterance, F-042), media seconds
    end_of_utterance_at_s: tuple[float, ...] = ()
    #: the user cancels the reply (F-035) this many media seconds after the first playback
    cancel_after_s: float | None = None
    #: commit point (F-039, the spec's ``transport.commit_ms``): on a cancel, this much of
    #: the turn's reply audio after the play position is committed and still plays; only
    #: the audio after it is suppressed (0: everything not yet played is dropped)
    commit_ms: int = 0
    #: callbacks run when the input reaches a media second (test hooks such as
    #: ``rspp run --revoke-at``), in order
    at_media_s: tuple[tuple[float, Callable[[], None]], ...] = ()


@dataclass(slots=True)
class TurnOutput:
    turn_id: str
    transcript: str = ""
    reply_text: list[str] = field(default_factory=list)
    pending: bytearray = field(default_factory=bytearray)
    played_samples: int = 0
    received_samples: int = 0
    ended: bool = False
    started: bool = False
    accepted: bool = False
    finished: str | None = None  # completed | cancelled
    degraded: bool = False
    #: the reply outputs that have not ended yet (``None``: not started)
    open_ports: set[str] | None = None


class LoopbackTransport:
    """File-backed transport for one session (see the module docstring)."""

    def __init__(self, pcm: bytes, sample_rate: int, options: LoopbackOptions | None = None,
                 *, record: RecordSink | None = None) -> None:
        self.pcm = pcm
        self.rate = sample_rate
        self.opts = options or LoopbackOptions()
        self._record = record
        self.session: SessionActor | None = None
        self.driver: PlaybackObserver | None = None
        self._make_signal: SignalFactory | None = None
        self._barge_done: int | None = None
        self._stalled = False
        self.turns: dict[str, TurnOutput] = {}
        self.queue: list[TurnOutput] = []
        self.partials: list[str] = []
        self.out_rate: int | None = None
        self.played = bytearray()
        self.media_samples = 0
        self.barge_start: int | None = None
        #: media sample at which the user cancels (set at the first playback)
        self.cancel_at: int | None = None
        #: called when the user cancels (the runner wires ``TurnDriver.user_cancel``)
        self.on_user_cancel: Callable[[], object] | None = None
        self.barge_injected = 0
        self.signals: list[tuple[str, str]] = []
        self.after_fence: list[tuple[str, str]] = []
        self._fenced: set[str] = set()
        self._seq = 0
        #: the outputs a turn's reply must end on before it is delivered (``attach``)
        self._reply_ports: frozenset[str] = frozenset()

    @property
    def capabilities(self) -> TransportCapabilities:
        """What this transport supports now (frozen into each turn's plan, F-161)."""
        return loopback_capabilities(self.rate, self.out_rate)

    def attach(self, session: SessionActor, driver: PlaybackObserver,
               make_signal: SignalFactory | None = None) -> None:
        self.session, self.driver, self._make_signal = session, driver, make_signal
        self._reply_ports = session.graph.reply_ports()

    # ---------------------------------------------------------------- signals
    def _signal(self, name: SignalName, emitter: Emitter, turn_id: str, reason: str) -> None:
        self.signals.append((name.value, turn_id))
        if self._make_signal is None or self._record is None:
            return
        self._record(self._make_signal(name, emitter, turn_id, reason), None)

    def _turn(self, tid: str) -> TurnOutput:
        t = self.turns.get(tid)
        if t is None:
            t = self.turns[tid] = TurnOutput(tid)
            self.queue.append(t)
        return t

    # ------------------------------------------------------------- output sink
    def output(self, port: str, event: Event) -> None:
        if event.lane is Lane.CONTROL:
            if event.kind == EventKind.STREAM_END and event.turn_id is not None:
                self._port_ended(self._turn(event.turn_id), port)  # no eos came (T6)
                self._pump(0)
            return
        tid = event.turn_id
        if tid is not None and tid in self._fenced:
            self.after_fence.append((tid, port))
        self._record_output(port, event)
        if tid is None:
            if port.endswith("partial") and isinstance(event.payload, str):
                self.partials.append(event.payload)
            return
        t = self._turn(tid)
        if not t.accepted:
            t.accepted = True
            self._signal(SignalName.OUTPUT_ACCEPTED, Emitter.RK_22, tid, f"port:{port}")
        if port.startswith("transcript"):
            if isinstance(event.payload, str) and event.final:
                t.transcript = event.payload
            return
        if event.kind == "audio_chunk" and isinstance(event.payload, bytes | bytearray):
            pcm = bytes(event.payload)
            fmt = event.audio_format or AudioFormat()
            if self.out_rate is None:
                self.out_rate = fmt.sample_rate
            elif fmt.sample_rate != self.out_rate:
                from rspp.providers.offline import resample_pcm

                pcm = resample_pcm(pcm, fmt.sample_rate, self.out_rate)
            t.pending.extend(pcm)
            t.received_samples += len(pcm) // 2
            if event.attrs and event.attrs.get("sentence"):
                t.reply_text.append(str(event.attrs["sentence"]))
        elif event.kind == "text" and isinstance(event.payload, str) and event.payload:
            t.reply_text.append(event.payload)
            t.degraded = t.degraded or bool(event.attrs and event.attrs.get("degraded"))
        if event.kind == "audio_end" or (event.attrs and event.attrs.get("eos")):
            self._port_ended(t, port)
        self._pump(0)

    def _port_ended(self, t: TurnOutput, port: str) -> None:
        """``port``'s part of ``t``'s reply ended (``eos``, ``audio_end``, ``stream_end``)."""
        if t.open_ports is None:
            t.open_ports = set(self._reply_ports)
        t.open_ports.discard(port)
        if not t.open_ports and not t.ended:  # every output of the reply ended
            t.ended = True
            if self.driver is not None:
                self.driver.generation_complete(t.turn_id)

    def _record_output(self, port: str, event: Event) -> None:
        if self._record is not None and self.session is not None:
            record_output(self._record, self.session, port, event)

    def _record_ingress(self, event: Event, encoded: tuple[PayloadClass, object]) -> None:
        if self._record is not None and self.session is not None:
            record_ingress(self._record, self.session, event, encoded)

    def reply_text_for(self, tid: str) -> str:
        t = self.turns.get(tid)
        return "" if t is None else " ".join(x.strip() for x in t.reply_text if x.strip())

    # ---------------------------------------------------------------- playback
    def _pump(self, samples: int) -> None:
        """Play up to ``samples`` of queued audio (0: only settle finished turns)."""
        budget = samples
        while self.queue:
            t = self.queue[0]
            if t.pending and budget > 0:
                n = min(budget, len(t.pending) // 2)
                chunk = bytes(t.pending[: 2 * n])
                del t.pending[: 2 * n]
                self.played.extend(chunk)
                t.played_samples += n
                budget -= n
                if not t.started:
                    t.started = True
                    self._signal(SignalName.PLAYBACK_STARTED, Emitter.RK_23, t.turn_id,
                                 "loopback_playback")
                    if self.driver is not None:
                        self.driver.playback_started(t.turn_id)
                    if self.opts.cancel_after_s is not None and self.cancel_at is None:
                        self.cancel_at = self.media_samples + int(
                            self.opts.cancel_after_s * self.rate)
                    if self.opts.barge_in is not None and self.barge_start is None:
                        self.barge_start = self.media_samples + int(
                            self.opts.barge_in_after_s * self.rate)
            if t.pending:
                return
            if not t.ended:
                return
            self.queue.pop(0)
            if t.finished == "cancelled":  # its committed audio played out (F-039)
                continue
            t.finished = "completed"
            if t.started:
                self._signal(SignalName.PLAYBACK_COMPLETED, Emitter.RK_23, t.turn_id,
                             "loopback_playback")
            if self.driver is not None:
                self.driver.output_complete(t.turn_id)

    def stop_playback(self, turn_id: str, reason: str = "barge_in") -> None:
        self._fenced.add(turn_id)
        t = self.turns.get(turn_id)
        if t is None or t.finished is not None:
            return
        committed = min(len(t.pending) // 2, self.opts.commit_ms * (self.out_rate or self.rate)
                        // 1000) if t.started else 0
        if committed:  # the committed audio stays queued and plays out; nothing after it
            del t.pending[2 * committed:]
            t.ended = True
        else:
            if t in self.queue:
                self.queue.remove(t)
            t.pending.clear()
        t.finished = "cancelled"
        if t.started:
            self._signal(SignalName.PLAYBACK_CANCELLED, Emitter.RK_23, turn_id,
                         f"fenced_after_samples:{t.played_samples},committed_samples:{committed}")
            if self.driver is not None:
                self.driver.playback_committed(turn_id, t.played_samples + committed)

    def unplayed(self) -> bool:
        return any(t.pending for t in self.queue)

    # ------------------------------------------------------------------ input
    def _frame(self, index: int, n: int) -> bytes:
        start = index * n * 2
        frame = self.pcm[start : start + n * 2]
        if len(frame) < n * 2:
            frame = frame + b"\x00" * (n * 2 - len(frame))
        bi = self.opts.barge_in
        at = self.barge_start
        if bi is not None and at is not None and self.media_samples >= at:
            off = self.barge_injected * 2
            extra = bi[off : off + n * 2]
            if extra:
                self.barge_injected += len(extra) // 2
                if self.barge_injected * 2 >= len(bi):
                    self._barge_done = self.media_samples
                a = np.frombuffer(frame, dtype=np.int16).astype(np.int32)
                b = np.zeros_like(a)
                b[: len(extra) // 2] = np.frombuffer(extra, dtype=np.int16)
                frame = np.clip(a + b, -32768, 32767).astype(np.int16).tobytes()
        return frame

    def _barge_pending(self) -> bool:
        bi = self.opts.barge_in
        if bi is None:
            return False
        if self.barge_start is None:
            return False
        if self._barge_done is None:
            return True
        return self.media_samples < self._barge_done + self.rate * self.opts.tail_silence_ms // 1000

    async def _wait_media(self) -> None:
        driver = self.driver
        if self.opts.real_time or driver is None:
            return
        if self._stalled:
            if driver.busy:
                return  # a stuck turn: media time moves on until the pipeline is idle again
            self._stalled = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.opts.stall_timeout_s
        # polled: "busy" is derived from several independent producers (arbiter, nodes)
        while driver.busy and not self.unplayed():
            if loop.time() >= deadline:
                self._stalled = True
                return
            await asyncio.sleep(0.002)

    async def _settle(self) -> None:
        """Logical time (not real time): wait until the session is idle after a frame.

        Bounded by ``stall_timeout_s`` of wall time (a hung node must not hang the run)."""
        s = self.session
        if s is None or s.idle():
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.opts.stall_timeout_s
        spins = 0
        # polled: idleness is derived from every queue, worker and control command
        while not s.idle() and loop.time() < deadline:
            spins += 1
            await asyncio.sleep(0 if spins < 16 else 0.001)

    async def _backpressure(self) -> None:
        s = self.session
        if s is None:
            return
        def queued() -> int:
            # plain loops over the deques: this runs once per 20 ms frame per session
            n = 0
            for b in s.edge_buffers.values():
                n += len(b.control) + len(b.data) + len(b.telemetry)
            for b, _ in s.entries.values():
                n += len(b.control) + len(b.data) + len(b.telemetry)
            return n

        while queued() > 48:  # noqa: ASYNC110 - polled: many independent queues
            await asyncio.sleep(0.001)

    def _reply_pending(self) -> bool:
        """A turn is pending or Active, reply audio is queued, or a barge-in still plays."""
        busy = self.driver is not None and self.driver.busy
        return busy or bool(self.queue) or self._barge_pending()

    async def _goes_on(self, s: SessionActor, out_of_time: bool) -> bool:
        """After the input ended: whether the run goes on (silence frames) for a reply.

        The session is drained before the run may end, so whatever it still holds of the
        input (a final transcript, a turn proposal) counts. In real time it is not drained
        while a reply is pending: the clock does not wait for the pipeline, so the
        microphone keeps recording, queued reply audio keeps playing and the user's cancel
        or barge-in lands while a provider still streams (a drain there held media time,
        and with it playback and the cancel, until the LLM's whole reply was in).
        """
        if self.opts.real_time and not out_of_time and self._reply_pending():
            return True
        await s.drain()
        return not out_of_time and self._reply_pending()

    async def run(self) -> None:
        s = self.session
        if s is None:
            raise RuntimeError("attach() the transport to a session before run()")
        n = self.rate * self.opts.frame_ms // 1000
        fmt = AudioFormat(self.rate, 1)
        total = -(-len(self.pcm) // (2 * n)) + self.opts.tail_silence_ms // self.opts.frame_ms
        drain = int(self.opts.max_drain_s * 1000 // self.opts.frame_ms)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        index = 0
        eou = sorted(int(x * self.rate) for x in self.opts.end_of_utterance_at_s)
        hooks = sorted(((int(x * self.rate), fn) for x, fn in self.opts.at_media_s),
                       key=lambda h: h[0])
        while True:
            while hooks and self.media_samples >= hooks[0][0]:
                hooks.pop(0)[1]()
            while eou and self.media_samples >= eou[0]:
                eou.pop(0)
                await self.end_of_utterance()
            if self.cancel_at is not None and self.media_samples >= self.cancel_at:
                self.cancel_at = -1  # once: the user pressed "stop"
                if self.on_user_cancel is not None:
                    self.on_user_cancel()
            more_input = index < total
            if not more_input and not await self._goes_on(s, index >= total + drain):
                break
            await self._wait_media()
            await self._backpressure()
            frame = self._frame(index, n)
            ev = Event("audio_chunk", frame, audio_format=fmt,
                       sample_index=self.media_samples, transport_seq=index)
            encoded = encode_ingress(ev)  # before the push: inline nodes may annotate the event
            await s.send(ev, "audio")
            self._record_ingress(ev, encoded)
            if not self.opts.real_time:
                await self._settle()
            self.media_samples += n
            index += 1
            self._pump(n * (self.out_rate or self.rate) // self.rate)
            if self.opts.real_time:
                delay = t0 + self.media_samples / self.rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
        self._pump(0)

    async def end_of_utterance(self) -> None:
        """Client push-to-talk release (F-042): an in-band end-of-utterance event."""
        if self.session is not None:
            ev = Event("end_of_utterance", None, sample_index=self.media_samples,
                       audio_format=AudioFormat(self.rate, 1))
            encoded = encode_ingress(ev)
            await self.session.send(ev, "audio")
            self._record_ingress(ev, encoded)
