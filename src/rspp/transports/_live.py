"""The live transport contract: one session's network media, whatever carries it.

Every network transport (WebSocket today; WebRTC, telephony, LiveKit) is a
thin adapter onto :class:`LiveTransport`, which owns:

* ingress: client PCM16 (16/24/48 kHz mono, any frame size); numbered frames
  through the jitter buffer of the connection's profile (reordered, de-duplicated,
  lost ones concealed or dropped: :mod:`rspp.transports._jitter`, F-087); then
  resampled with soxr and re-chunked to 20 ms frames at the pipeline rate, counted
  (late, floods) and recorded exactly as the loopback transport records its frames
  (:class:`~rspp.transports._live_ingress.LiveIngress`);
* the session's output sink: the shared event vocabulary (partial/final
  transcripts, turn open/commit/abort/close, reply text, ``clear`` on
  barge-in, errors) and reply audio queued per turn;
* egress: the runtime's shared pacer (:class:`~rspp.transports._egress.EgressPacer`,
  one loop timer for every session) steps :meth:`LiveTransport.pace`, which sends
  reply audio in real time, 20 ms per frame, checking the egress fence right
  before each frame leaves; a bounded send queue per connection (slow clients
  lose frames, counted and reported as lateness);
* playback signals (RK-22/RK-23: ``output_accepted``, ``playback_started`` /
  ``completed`` / ``cancelled``) and the connection signals ``connected``,
  ``disconnected``, ``stall``, ``ended``;
* acknowledged playback (a connection whose client echoes marks, e.g. a phone
  carrier): frames carry mark names, and ``playback_started`` / ``completed``
  (hence the turn's commit) follow what the listener was confirmed to have heard
  (:meth:`LiveTransport.heard`), not what was sent; a fenced turn's
  ``playback_cancelled`` says how many frames were sent and how many heard;
* transport control input (DTMF): :meth:`LiveTransport.push_control` puts a
  control event on the graph's ``input.control`` entry (F-089).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable

import msgspec

from rspp.contracts import ControlSignal, Emitter, EventRecord, Lane, ResolvedTurnPlan, SignalName
from rspp.kernel import AudioFormat, Event, EventKind, SessionActor
from rspp.observability import LiveTurnView
from rspp.spec import JitterProfiles
from rspp.transports._capabilities import TransportCapabilities, live_capabilities
from rspp.transports._contract import PlaybackObserver
from rspp.transports._egress import AudioFrame, EgressPacer, OutboundQueue
from rspp.transports._ingress import IngressLock, IngressMeter, Rechunker, StreamResampler
from rspp.transports._intake import TAKEN
from rspp.transports._jitter import JitterStats
from rspp.transports._live_ingress import LiveIngress
from rspp.transports._live_options import LiveOptions
from rspp.transports._live_turn import LiveTurn
from rspp.transports._marks import mark_name
from rspp.transports._media_skew import MediaSkewHistogram
from rspp.transports._protocol import (
    Clear,
    ServerEvent,
    Stats,
    Transcript,
    TurnEvent,
    TurnRowEvent,
)
from rspp.transports._records import RecordSink, record_output
from rspp.transports._reply import ReplyTextStream

__all__ = ["TAKEN", "LiveTransport"]

SignalFactory = Callable[[SignalName, Emitter, str | None, str], ControlSignal]
_TURN_STATES = {SignalName.TURN_OPEN: "open", SignalName.COMMIT: "commit",
                SignalName.ABORT: "abort", SignalName.CLOSE: "close"}
#: events kept for the first connection (see ``LiveTransport._early``)
_EARLY_EVENTS = 64
#: finished turns a live session keeps (for late readers: an echo, a late output of the
#: turn, a status read); older ones are forgotten so a long session's memory stays flat
KEEP_FINISHED_TURNS = 8
#: cancels that keep no committed audio: the lease is gone (nothing of this epoch may
#: leave) or so is the client
_NO_COMMIT = frozenset({"deauthorized_drain", "lease_lost", "session_end",
                        "transport_disconnect"})
_VIEW_KINDS: dict[type, str] = {ControlSignal: "control_signal", EventRecord: "event_record",
                                ResolvedTurnPlan: "resolved_turn_plan"}


class LiveTransport(LiveIngress):
    """One live session's transport state (see the module docstring)."""

    #: the graph entries a live transport feeds: speech and typed text (a spec needs one)
    INPUTS: tuple[str, ...] = ("audio", "text")

    def __init__(self, sample_rate: int, options: LiveOptions | None = None, *,
                 record: RecordSink | None = None, jitter: JitterProfiles | None = None) -> None:
        self.rate = sample_rate
        self.opts = options or LiveOptions()
        self._record = record
        self.session: SessionActor | None = None
        self.driver: PlaybackObserver | None = None
        self._make_signal: SignalFactory | None = None
        self.out_rate = sample_rate
        self._tts_rate: int | None = None
        self._out_resampler: StreamResampler | None = None
        self._rechunker = Rechunker(sample_rate, sample_rate, self.opts.frame_ms)
        self._quality = "HQ"
        self.meter = IngressMeter(sample_rate)
        #: the ingress jitter buffer of each transport kind (the spec's ``transport``)
        self.jitter_profiles = jitter or JitterProfiles()
        self.jitter = self._jitter_ingress("websocket", sample_rate)
        self._discontinuities = 0
        self._last_ingress_seq = 0
        #: told each ended connection's jitter counters (transport kind, stats): metrics
        self.on_jitter: Callable[[str, JitterStats], None] | None = None
        #: told how late each reply frame left versus its real-time slot (transport kind,
        #: seconds): metrics
        self.on_lateness: Callable[[str, float], None] | None = None
        #: the media-to-runtime mapping errors of the session's ended connections (NF-018),
        #: and told each ended connection's (transport kind, errors): metrics
        self.media_skew = MediaSkewHistogram()
        self.on_media_skew: Callable[[str, MediaSkewHistogram], None] | None = None
        self.queue: OutboundQueue | None = None
        #: the turns whose reply is still open or playing, and the last
        #: ``KEEP_FINISHED_TURNS`` finished ones (:meth:`_forget_finished`)
        self.turns: dict[str | None, LiveTurn] = {}
        self._play: deque[LiveTurn] = deque()
        self._fenced: set[str] = set()
        #: the shared pacer once a client connected (None: not pacing / closed)
        self._pacer: EgressPacer | None = None
        #: the pacer waits for reply audio (a :meth:`_kick` steps it)
        self._waiting = False
        #: the pacing schedule: when the next frame of ``_due_for`` is due (loop time)
        self._due: float | None = None
        self._due_for: LiveTurn | None = None
        self.media_samples = 0
        self._index = 0
        self._ingress_lock = IngressLock()
        #: the running loop's clock (read per ingress frame)
        self._loop_time: Callable[[], float] | None = None
        #: the format of every ingress frame (shared, immutable)
        self._in_format = AudioFormat(sample_rate, 1)
        self._out_seq = 0
        self.frames_out = 0
        self.lost_while_disconnected = 0
        self.lateness_ms: deque[float] = deque(maxlen=2000)
        self.lateness_max_ms = 0.0
        #: lateness values recorded so far, and the p99 as of (that count, the window's
        #: length): ``stats`` sorts the window only when a frame left since
        self._lateness_n = 0
        self._p99: tuple[int, int, float] = (0, 0, 0.0)
        self.signals: list[tuple[str, str | None]] = []
        self.after_fence: list[str] = []
        #: the authority gate, set by the serving runtime: True (send), False (hold: the
        #: lease may be passing to another runtime until a renewal confirms it), None
        #: (the lease is lost: drop)
        self.gate: Callable[[], bool | None] | None = None
        #: outputs withheld by the gate (stale-authority outputs that never left)
        self.fenced_outputs = 0
        #: the records turn rows need (``turn_row`` events for clients that ask)
        self.view = LiveTurnView()
        self._rows = False
        #: the connection acknowledges playback (marks); see :meth:`heard`
        self.acked = False
        #: events made before the first connection (a resumed session's report of the turn
        #: its previous runtime left open): the first connection gets them first
        self._early: list[ServerEvent] | None = []
        #: client audio for a graph without ``input.audio`` (a text chat): refused once,
        #: then dropped (counted)
        self.audio_refused = 0
        #: the outputs a turn's reply must end on before it is delivered (``attach``)
        self._reply_ports: frozenset[str] = frozenset()
        #: the session's graph takes audio (``input.audio``; True until ``attach``)
        self._audio_in = True
        #: the connection's capabilities, frozen into each turn's plan (None: no client yet)
        self.capabilities: TransportCapabilities | None = None

    def may_output(self) -> bool | None:
        """True: send now; False: hold (authority unconfirmed); None: never (lost)."""
        gate = self.gate
        return True if gate is None else gate()

    def attach(self, session: SessionActor, driver: PlaybackObserver,
               make_signal: SignalFactory | None = None) -> None:
        self.session, self.driver, self._make_signal = session, driver, make_signal
        self._reply_ports = session.graph.reply_ports()
        self._audio_in = "audio" in session.entries

    # ------------------------------------------------------------- signals
    def signal(self, name: SignalName, emitter: Emitter, turn_id: str | None,
               reason: str) -> None:
        """Record a transport signal (playback RK-22/23, connection RK-23)."""
        self.signals.append((name.value, turn_id))
        if self._make_signal is not None and self._record is not None:
            self._record(self._make_signal(name, emitter, turn_id, reason), None)

    def record_signal(self, sig: ControlSignal) -> None:
        """Record a signal made elsewhere (the session lifecycle's connection signals)."""
        self.signals.append((sig.signal.value, sig.turn_id))
        if self._record is not None:
            self._record(sig, None)

    def on_record(self, rec: msgspec.Struct) -> None:
        """Tap on the session's records: turn lifecycle -> ``turn`` (and ``turn_row``) events."""
        if isinstance(rec, ControlSignal) and rec.turn_id is not None:
            state = _TURN_STATES.get(rec.signal)
            if state is not None:
                self._event(TurnEvent(turn_id=rec.turn_id, state=state,  # type: ignore[arg-type]
                                      reason=rec.reason if state == "abort" else None,
                                      # served sessions (a lease gate): protocol 1.2
                                      lease_epoch=rec.authority_epoch
                                      if self.gate is not None else None))
        kind = _VIEW_KINDS.get(type(rec))
        if kind is None:
            return
        changed = self.view.add(kind, rec)
        if changed is not None and self._rows and self.queue is not None:
            row = self.view.row(changed)
            if row is not None:
                self._event(TurnRowEvent(row=row))

    def _event(self, ev: ServerEvent) -> None:
        q = self.queue
        if q is not None:
            q.put_event(ev)
        elif self._early is not None and len(self._early) < _EARLY_EVENTS:
            self._early.append(ev)

    # -------------------------------------------------------- connections
    def connect(self, in_rate: int, out_rate: int, *, sequenced: bool,
                timeline: bool = False, acked: bool = False,
                low_latency: bool = False, transport: str = "websocket") -> OutboundQueue:
        """A client connection (first or resumed) with its declared audio format.

        ``acked``: the client echoes frame marks (:meth:`heard`); playback signals and
        the turn's commit follow the echoes. ``timeline``: send ``turn_row`` events.
        ``low_latency``: resample without soxr's block delay (quality ``QQ``).
        ``transport``: the kind of connection, which picks its jitter profile.
        """
        self.acked, self._rows = acked, timeline
        self.capabilities = live_capabilities(transport, in_rate, out_rate, acked)  # F-161
        quality = "QQ" if low_latency else "HQ"
        if in_rate != self._rechunker.in_rate or quality != self._quality:
            self._rechunker = Rechunker(in_rate, self.rate, self.opts.frame_ms, quality)
        if out_rate != self.out_rate or quality != self._quality:
            self.out_rate = out_rate
            self._out_resampler = None
        self._quality = quality
        self._end_media_skew()
        self.meter = IngressMeter(in_rate, self.opts.flood_allowance_ms, self.opts.late_after_ms,
                                  skew=MediaSkewHistogram(), on_late=self._media_late)
        self._end_jitter()
        self.jitter = self._jitter_ingress(transport, in_rate)
        self.queue = OutboundQueue(self.opts.send_queue_frames, self.opts.send_queue_events)
        early, self._early = self._early, None
        for ev in early or ():
            self.queue.put_event(ev)
        if self._pacer is None:
            self._pacer = EgressPacer.of()
            self._pacer.kick(self)
        return self.queue

    def disconnect(self) -> None:
        """The connection is gone; queued output for it is discarded."""
        q, self.queue = self.queue, None
        if q is not None:
            q.close()
        self._end_jitter()
        self._end_media_skew()
        for t in self.turns.values():  # no echo can come any more: stall/abort decides
            if t.unconfirmed is not None:
                t.unconfirmed.cancel()
                t.unconfirmed = None

    def stats(self) -> Stats:
        m, q, j = self.meter, self.queue, self.jitter.buffer
        n, size, p99 = self._p99
        if (n, size) != (self._lateness_n, len(self.lateness_ms)):
            lat = sorted(self.lateness_ms)
            p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else 0.0
            self._p99 = self._lateness_n, len(lat), p99
        js = j.stats
        return Stats(frames_in=m.frames, late_frames=m.late, out_of_order_frames=js.out_of_order,
                     lost_frames=js.lost, reordered_frames=js.reordered,
                     duplicate_frames=js.duplicates, too_late_frames=js.too_late,
                     concealed_frames=js.concealed, discontinuities=js.discontinuities,
                     jitter_profile=j.profile.name, jitter_depth_ms=round(j.depth_ms, 1),
                     jitter_hold_max_ms=round(js.hold_max_ms, 1),
                     media_in_ms=self.jitter.released_samples * 1000 // j.rate,
                     frames_out=self.frames_out,
                     dropped_out_frames=q.dropped_audio if q is not None else 0,
                     egress_lateness_p99_ms=round(p99, 2),
                     egress_lateness_max_ms=round(self.lateness_max_ms, 2),
                     media_skew_p99_ms=m.skew.p99_ms if m.skew is not None else 0.0,
                     media_skew_max_ms=round(m.skew.max_ms, 2) if m.skew is not None else 0.0,
                     send_queue=len(q) if q is not None else 0)

    # ---------------------------------------------------- output sink (kernel)
    def output(self, port: str, event: Event) -> None:
        tid = event.turn_id
        if event.lane is Lane.CONTROL:
            if event.kind == EventKind.STREAM_END and tid is not None:
                self._port_ended(self._turn(tid), port)  # no eos came: derived (T6)
            return
        if tid is not None and tid in self._fenced:
            self.after_fence.append(tid)
        if self._record is not None and self.session is not None:
            record_output(self._record, self.session, port, event)
        if port.startswith("transcript"):
            if isinstance(event.payload, str):
                final = bool(event.final) and not port.endswith("partial")
                if final and tid in self.turns:
                    self.turns[tid].transcript = event.payload
                self._event(Transcript(turn_id=tid, text=event.payload, final=final))
            if tid is None:
                return
        t = self._turn(tid)
        if tid is not None and not t.accepted:
            t.accepted = True
            self.signal(SignalName.OUTPUT_ACCEPTED, Emitter.RK_22, tid, f"port:{port}")
        if port.startswith("transcript"):
            return
        if event.kind == "audio_chunk" and isinstance(event.payload, (bytes, bytearray)):
            self._audio(t, bytes(event.payload), event.audio_format or AudioFormat())
            if event.attrs and event.attrs.get("sentence"):
                t.text.add(port, str(event.attrs["sentence"]), whole=True)
        elif event.kind == "text" and isinstance(event.payload, str) and event.payload:
            t.text.add(port, event.payload, whole=bool(event.final))
        if event.kind == "audio_end" or (event.attrs and event.attrs.get("eos")):
            self._port_ended(t, port)

    def _port_ended(self, t: LiveTurn, port: str) -> None:
        """``port``'s part of ``t``'s reply ended (``eos``, ``audio_end``, ``stream_end``)."""
        t.open_ports.discard(port)
        if t.open_ports or t.ended:
            return  # another output of the reply still streams (its audio, its text)
        t.text.finish()
        if self._out_resampler is not None and t.finished is None:
            # the reply's last samples are still in the resampler: they are this
            # turn's, not the start of the next reply
            t.pending.extend(self._out_resampler.flush())
        t.ended = True
        if t.finished is None and t not in self._play:
            # a reply without audio (text, a degraded TTS) is delivered once it ended:
            # it completes (and commits) in turn order, after the audio queued before it
            self._play.append(t)
        if self.driver is not None and t.turn_id is not None:
            self.driver.generation_complete(t.turn_id)
        self._kick()

    def _turn(self, tid: str | None) -> LiveTurn:
        t = self.turns.get(tid)
        if t is None or (tid is None and t.finished is not None):
            o = self.opts
            self._forget_finished()
            t = self.turns[tid] = LiveTurn(tid, set(self._reply_ports), ReplyTextStream(
                tid, self._event, flush_s=o.reply_text_flush_ms / 1000,
                max_chars=o.reply_text_max_chars))
        return t

    def _forget_finished(self) -> None:
        """Drop the oldest finished turns beyond the last ``KEEP_FINISHED_TURNS`` (a turn
        whose committed audio still plays is not finished with): one a turn starts."""
        done = [tid for tid, t in self.turns.items()
                if t.finished is not None and t not in self._play]
        for tid in done[:max(0, len(done) - KEEP_FINISHED_TURNS)]:
            del self.turns[tid]

    def _audio(self, t: LiveTurn, pcm: bytes, fmt: AudioFormat) -> None:
        if t.finished is not None:
            return
        if self._tts_rate != fmt.sample_rate or self._out_resampler is None:
            self._tts_rate = fmt.sample_rate
            self._out_resampler = StreamResampler(fmt.sample_rate, self.out_rate, self._quality)
        t.pending.extend(self._out_resampler.convert(pcm))
        if t not in self._play:
            self._play.append(t)
        self._kick()

    # ------------------------------------------------------------- egress
    def is_fenced(self, turn_id: str) -> bool:
        """The cancel fence of ``turn_id`` is up (checked before any of its audio plays)."""
        return turn_id in self._fenced

    def withheld(self, turn_id: str | None) -> bool:
        """Audio of ``turn_id`` may not leave any more: its cancel fence is up (the audio a
        cancel with a commit point keeps excepted). The last check of a frame taken from
        the send queue before the fence went up."""
        if turn_id is None or turn_id not in self._fenced:
            return False
        t = self.turns.get(turn_id)
        return t is None or not t.committing

    def stop_playback(self, turn_id: str, reason: str = "barge_in") -> None:
        """Cancel fence: drop unplayed and queued output of ``turn_id`` now, tell the client
        why (the ``clear`` event's ``reason``: ``barge_in``, ``user_cancel``,
        ``deauthorized_drain``, ``lease_lost``, ... see docs/protocol/websocket.md).

        With a commit point (``LiveOptions.commit_ms``, F-039) an audible reply cancelled
        by the user or the runtime (not by a lost lease) keeps that much of its audio
        after the play position (the frames sent): it still plays, in real time, and no
        ``clear`` is sent (the client holds nothing beyond it); the rest is dropped.
        """
        self._fenced.add(turn_id)
        t = self.turns.get(turn_id)
        q = self.queue
        if t is not None:
            t.text.drop()
            if t.committing:  # stopped again while its committed audio plays: drop it now
                t.committing = False
                t.pending.clear()
                if q is not None:
                    q.drop_turn(turn_id)
                self._event(Clear(turn_id=turn_id, reason=reason))
                return
        committed = self._commit_point(t, reason)
        dropped = q.drop_turn(turn_id) if q is not None and not committed else 0
        if t is None or t.finished is not None:
            return
        if t.unconfirmed is not None:
            t.unconfirmed.cancel()
            t.unconfirmed = None
        had_audio = bool(t.pending) or t.sent_frames > 0 or dropped
        t.finished = "cancelled"
        if committed:  # the committed audio stays queued and plays out; nothing after it
            del t.pending[committed:]
            t.ended = t.committing = True
            if t not in self._play:
                self._play.append(t)
            self._kick()
        else:
            with contextlib.suppress(ValueError):
                self._play.remove(t)
            t.pending.clear()
            if had_audio:
                self._event(Clear(turn_id=turn_id, reason=reason))
        if t.started:
            heard = f",heard_frames:{t.heard_frames}" if self.acked else ""
            point = (f",committed_frames:{committed // self._frame_bytes()}"
                     if self.opts.commit_ms else "")
            self.signal(SignalName.PLAYBACK_CANCELLED, Emitter.RK_23, turn_id,
                        f"fenced_after_frames:{t.sent_frames}{heard}{point}")
            if committed and self.driver is not None:
                frame = self._frame_bytes() // 2
                self.driver.playback_committed(turn_id, t.sent_frames * frame + committed // 2)

    def _commit_point(self, t: LiveTurn | None, reason: str) -> int:
        """Bytes of ``t``'s unplayed reply a cancel for ``reason`` keeps (F-039)."""
        if (t is None or t.finished is not None or not t.started or not t.pending
                or reason in _NO_COMMIT or self.queue is None):
            return 0
        n = self._frame_bytes()
        frames = -(-self.opts.commit_ms // self.opts.frame_ms)  # whole frames, rounded up
        return min(len(t.pending), frames * n)

    def _settle(self) -> LiveTurn | None:
        """The turn whose audio plays next; finished turns complete on the way."""
        while self._play:
            t = self._play[0]
            if t.pending or not t.ended:
                return t
            self._play.popleft()
            if t.finished is not None:  # a cancelled turn's committed audio played out
                continue
            if (self.acked and t.turn_id is not None and t.sent_frames
                    and t.heard_frames < t.sent_frames):
                self._await_echo(t)
                continue
            self._completed(t, "live_playback")
        return None

    def _completed(self, t: LiveTurn, reason: str) -> None:
        t.finished = "completed"
        if t.unconfirmed is not None:
            t.unconfirmed.cancel()
            t.unconfirmed = None
        if t.turn_id is not None:
            if t.started:
                self.signal(SignalName.PLAYBACK_COMPLETED, Emitter.RK_23, t.turn_id, reason)
            elif not t.sent_frames:  # a reply without audio was delivered (a replay commits
                # the turn here too: the moment is the transport's, not the pipeline's)
                self.signal(SignalName.PLAYBACK_COMPLETED, Emitter.RK_23, t.turn_id,
                            "delivered_without_audio")
            if self.driver is not None:
                self.driver.output_complete(t.turn_id)

    def _await_echo(self, t: LiveTurn) -> None:
        """Every frame of ``t`` was sent: complete when its last mark comes back."""
        if t.turn_id is not None and not t.last_marked and self.queue is not None:
            t.last_marked = True
            self._out_seq += 1
            self.queue.put_audio(AudioFrame(t.turn_id, self._out_seq, b"",
                                            mark=mark_name(t.turn_id, t.sent_frames, last=True)))
        if t.unconfirmed is None:
            timeout = self.opts.playback_ack_timeout_s
            t.unconfirmed = asyncio.get_running_loop().call_later(
                timeout, self._unconfirmed, t, timeout)

    def _unconfirmed(self, t: LiveTurn, timeout: float) -> None:
        t.unconfirmed = None
        if t.finished is None:
            self._completed(t, f"unconfirmed_after_{timeout:g}s:heard_frames:{t.heard_frames}"
                               f"/{t.sent_frames}")

    def heard(self, turn_id: str, frames: int) -> None:
        """The client confirmed that the first ``frames`` frames of ``turn_id`` were heard.

        The first confirmation is ``playback_started`` (the listener hears the reply, so
        speech now is a barge-in); the one covering every sent frame of a finished turn
        is ``playback_completed`` and commits it. Echoes of a fenced turn (a carrier
        returns pending marks when its buffer is cleared) confirm nothing.
        """
        t = self.turns.get(turn_id)
        if t is None or t.finished is not None or frames <= t.heard_frames:
            return
        t.heard_frames = min(frames, t.sent_frames)
        if not t.started:
            t.started = True
            self.signal(SignalName.PLAYBACK_STARTED, Emitter.RK_23, turn_id, "carrier_mark")
            if self.driver is not None:
                self.driver.playback_started(turn_id)
        if t.unconfirmed is not None and t.heard_frames >= t.sent_frames:
            self._completed(t, "carrier_mark")

    def idle(self) -> bool:
        """No reply audio is waiting or playing."""
        return self._settle() is None

    def _kick(self) -> None:
        """Reply audio arrived: a pacer waiting for it steps this session now."""
        if self._waiting and self._pacer is not None:
            self._waiting = False
            self._pacer.kick(self)

    def pace(self, now: float) -> float | None:
        """Send every reply frame due by ``now`` (the shared pacer's step).

        Returns the loop time to be stepped next, or None while there is no reply
        audio to send (then :meth:`_kick` asks for a step when some arrives).
        """
        frame_s = self.opts.frame_ms / 1000
        lead = self.opts.egress_lead_ms / 1000
        catchup = self.opts.egress_catchup_ms / 1000
        n = self._frame_bytes()
        self._waiting = True  # until a time is returned: a step that fails is retried on a kick
        while True:
            t = self._settle()
            if t is None or (len(t.pending) < n and not t.ended):
                return None
            due = self._due
            if due is None or t is not self._due_for or now - due > catchup:
                # a reply starts (or resumes after a long gap) on its own schedule; a short
                # starvation (a resampler releasing audio in blocks) keeps the schedule
                due, self._due_for = now, t
            if due - now > lead:
                self._due = due
                self._waiting = False
                return due - lead  # stepped again then: the turn may be fenced meanwhile
            self._send_frame(t, max(0.0, (now - due) * 1000))
            self._due = due + frame_s

    def _frame_bytes(self) -> int:
        return self.out_rate * self.opts.frame_ms // 1000 * 2

    def _send_frame(self, t: LiveTurn, late_ms: float) -> None:
        # the egress fence, checked right before the frame leaves
        if t.turn_id is not None and t.turn_id in self._fenced and not t.committing:
            t.pending.clear()
            return
        n = self._frame_bytes()
        pcm = bytes(t.pending[:n])
        del t.pending[:n]
        if len(pcm) < n:
            pcm += b"\x00" * (n - len(pcm))
        if not t.started and not self.acked:
            t.started = True
            if t.turn_id is not None:
                self.signal(SignalName.PLAYBACK_STARTED, Emitter.RK_23, t.turn_id,
                            "live_playback")
                if self.driver is not None:
                    self.driver.playback_started(t.turn_id)
        t.sent_frames += 1
        self.lateness_ms.append(late_ms)
        self._lateness_n += 1
        self.lateness_max_ms = max(self.lateness_max_ms, late_ms)
        if self.on_lateness is not None:
            self.on_lateness(self.jitter.kind, late_ms / 1000)
        q = self.queue
        if q is None:
            self.lost_while_disconnected += 1
            return
        self._out_seq += 1
        self.frames_out += 1
        mark = None
        if self.acked and t.turn_id is not None:
            t.last_marked = t.ended and not t.pending
            if (t.last_marked or t.sent_frames == 1
                    or t.sent_frames % self.opts.mark_every_frames == 0):
                mark = mark_name(t.turn_id, t.sent_frames, last=t.last_marked)
        q.put_audio(AudioFrame(t.turn_id, self._out_seq, pcm, mark))

    async def aclose(self) -> None:
        """Stop pacing and the connection's queue (and any reply text still buffered)."""
        self.disconnect()
        for t in self.turns.values():
            t.text.drop()
        pacer, self._pacer = self._pacer, None
        if pacer is not None:
            pacer.remove(self)
