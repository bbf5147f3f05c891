"""Recorded transport feedback of a live session, replayed on virtual time.

A session recorded by a real transport (``rspp run`` over the loopback
transport) holds the transport's own control signals - ``output_accepted``
(RK-22), ``playback_started``/``playback_completed``/``playback_cancelled``
(RK-23) - and the provider invocations of each turn's OR-02 evidence. Both are
inputs from outside the pipeline (the speaker plays the reply in real time; the
providers were called in the recording), so a replay takes them from the
recording like the ingress events:

* :func:`play_transport` waits on the replay clock until each recorded
  transport signal's place (its recorded ``runtime_timestamp_ms`` and
  ``runtime_sequence``, the order ingress and provider outputs use), records
  the signal again and tells the turn driver (playback started; playback
  completed -> the turn commits as it did in the recording);
* :meth:`RecordedTransport.invocations` serves the recorded provider
  invocations of a turn to the turn driver's evidence in playback mode.

``playback_cancelled`` is not replayed from the recording: the turn driver
stops playback itself when it cancels a turn (barge-in), and
:class:`TransportFeedback` reports the cancellation at that moment, as the
loopback transport does. Nor is ``output_accepted``: a transport records it
when the first output of a turn reaches it, a consequence of the pipeline's
output rather than an input, so :meth:`TransportFeedback.output` records it
right after that output, as the live and loopback transports do (replayed at
its recorded time it could overtake the output it acknowledges when both fell
in the same millisecond).

Recordings without transport signals (the replay harness's own) are replayed
as before: the rig itself reports playback on the first output and completion
on ``eos``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from rspp.contracts import Emitter, SignalName
from rspp.observability._evidence import EVIDENCE_KIND
from rspp.observability._timeline_io import TimelineLine
from rspp.replay._nodes import tie_break_ns
from rspp.turns._late_events import LateArrival

__all__ = ["CONNECTION_SIGNALS", "TRANSPORT_SIGNALS", "RecordedTransport", "TransportFeedback",
           "TransportTarget", "play_late_arrivals",
           "play_transport"]

#: replayed from the recording (``output_accepted`` follows the replayed output instead)
TRANSPORT_SIGNALS = frozenset({"playback_started", "playback_completed"})
#: connection signals of live transports (session scoped; ``stall`` aborts the active turn)
CONNECTION_SIGNALS = frozenset({"connected", "disconnected", "stall", "ended"})
TRANSPORT_EMITTERS = frozenset({Emitter.RK_22.value, Emitter.RK_23.value})
_EMITTERS = TRANSPORT_EMITTERS
#: the lease changes the session learned from the control plane, replayed at their place
#: like the transport's signals: a rotation (``lease_rotated``, CP-07, at the new epoch) and
#: a loss (``deauthorized_drain`` of no turn, RK-24); the turn driver applies each (and
#: records it again), so later records carry the recorded epochs and refusals. A
#: reconnect refused for its stale token (``stale_epoch_reject`` of no turn, RK-24: T12
#: between turns) is an input from outside too: the driver checks that epoch again and
#: records the refusal (signal, outcome, error record) at its place. (A stale epoch of a
#: turn's output, or a refused reconnect while a turn is active, names a turn and follows
#: from the replayed session itself.)
AUTHORITY_SIGNALS = frozenset({"lease_rotated", "deauthorized_drain", "stale_epoch_reject"})
_AUTHORITY_EMITTERS = {"lease_rotated": Emitter.CP_07.value,
                       "deauthorized_drain": Emitter.RK_24.value,
                       "stale_epoch_reject": Emitter.RK_24.value}


class TransportTarget(Protocol):
    """The replay side that re-emits a recorded transport signal (the session rig)."""

    def runtime_ns(self) -> int: ...

    async def sleep_ns(self, ns: int) -> None: ...

    def transport_signal(self, name: SignalName, emitter: Emitter, turn_id: str | None,
                         reason: str, epoch: int | None = None) -> None: ...


class _Driver(Protocol):
    """The turn-driver calls a transport makes (``rspp.turns._turn_driver.TurnDriver``)."""

    stamp: Any
    session: Any
    authority: Any
    on_stop_playback: Callable[[str, str], None] | None

    @property
    def active_turn(self) -> str | None: ...

    def playback_started(self, turn_id: str) -> None: ...

    def output_complete(self, turn_id: str) -> None: ...

    def authority_changed(self, new_epoch: int | None, reason: str) -> None: ...

    def check_ingress_epoch(self, epoch: int, event_id: str) -> bool: ...


class _Clock(Protocol):
    async def sleep(self, seconds: float) -> None: ...


class _Timebase(Protocol):
    def runtime_ns(self) -> int: ...


class TransportFeedback:
    """The replay's stand-in for the recorded transport: signals and driver calls."""

    def __init__(self, driver: _Driver, append: Callable[[Any], None], authority_epoch: int,
                 timebase: _Timebase, clock: _Clock) -> None:
        self.driver, self.append = driver, append
        self.timebase, self.clock = timebase, clock
        self.playing: set[str] = set()
        self.accepted: set[str] = set()
        driver.on_stop_playback = self.stop_playback

    @property
    def epoch(self) -> int:
        """The session's current authority epoch (it follows the replayed rotations)."""
        return int(self.driver.authority.epoch)

    def runtime_ns(self) -> int:
        return self.timebase.runtime_ns()

    async def sleep_ns(self, ns: int) -> None:
        await self.clock.sleep(ns / 1e9)

    def transport_signal(self, name: SignalName, emitter: Emitter, turn_id: str | None,
                         reason: str, epoch: int | None = None) -> None:
        """A recorded transport signal, re-emitted: record it and tell the turn driver."""
        if name is SignalName.STALE_EPOCH_REJECT:  # a reconnect's token, refused again
            if epoch is not None:
                self.driver.check_ingress_epoch(epoch, f"replay:connect@{epoch}")
            return
        if name.value in AUTHORITY_SIGNALS:  # the driver records the change itself
            if name is SignalName.DEAUTHORIZED_DRAIN or epoch is not None:
                self.driver.authority_changed(
                    None if name is SignalName.DEAUTHORIZED_DRAIN else epoch, reason)
            return
        self.append(self.driver.stamp.signal(name, emitter, authority_epoch=self.epoch,
                                             turn_id=turn_id, reason=reason))
        if turn_id is None:
            if name is SignalName.STALL:  # the live transport aborts the active turn
                active = self.driver.active_turn
                if active is not None:
                    self.driver.session.control("rspp.failure", turn_id=active,
                                                reason="transport_disconnect")
            return
        if name is SignalName.PLAYBACK_STARTED:
            self.playing.add(turn_id)
            self.driver.playback_started(turn_id)
        elif name is SignalName.PLAYBACK_COMPLETED:
            self.playing.discard(turn_id)
            self.driver.output_complete(turn_id)

    def output(self, port: str, turn_id: str) -> None:
        """An output of ``turn_id`` reached the transport: the first one is accepted (RK-22)."""
        if turn_id not in self.accepted:
            self.accepted.add(turn_id)
            self.append(self.driver.stamp.signal(
                SignalName.OUTPUT_ACCEPTED, Emitter.RK_22, authority_epoch=self.epoch,
                turn_id=turn_id, reason=f"port:{port}"))

    def stop_playback(self, turn_id: str, reason: str = "barge_in") -> None:
        """The driver fenced ``turn_id``: an audible reply is cancelled (RK-23)."""
        if turn_id in self.playing:
            self.playing.discard(turn_id)
            self.append(self.driver.stamp.signal(
                SignalName.PLAYBACK_CANCELLED, Emitter.RK_23, authority_epoch=self.epoch,
                turn_id=turn_id, reason="replay_fenced"))


@dataclass(slots=True)
class RecordedTransport:
    """The transport signals and provider invocations of a recording."""

    signals: list[TimelineLine] = field(default_factory=list)
    provider_invocations: dict[str, tuple[Mapping[str, object], ...]] = field(
        default_factory=dict)

    @classmethod
    def from_lines(cls, lines: Sequence[TimelineLine]) -> RecordedTransport:
        out = cls()
        for ln in lines:
            rec = ln.record
            if ln.kind == "control_signal" and rec.get("emitted_by") in _EMITTERS and (
                    (rec.get("signal") in TRANSPORT_SIGNALS and isinstance(rec.get("turn_id"), str))
                    or rec.get("signal") in CONNECTION_SIGNALS):
                out.signals.append(ln)
            elif ln.kind == "control_signal" and rec.get("turn_id") is None and \
                    rec.get("signal") in _AUTHORITY_EMITTERS and \
                    rec.get("emitted_by") == _AUTHORITY_EMITTERS[str(rec.get("signal"))]:
                # (a session-scoped signal of another kind, e.g. the drop_notice of audio
                # shed before any turn, is no lease change: compared, not replayed)
                out.signals.append(ln)
            elif ln.kind == EVIDENCE_KIND and isinstance(rec.get("turn_id"), str):
                out.provider_invocations[str(rec["turn_id"])] = tuple(
                    dict(p) for p in rec.get("provider_invocations") or ())
        out.signals.sort(key=lambda ln: (int(ln.record.get("runtime_sequence", 0)), ln.line))
        return out

    @property
    def present(self) -> bool:
        """The recording was made over a transport that reported playback itself."""
        return any(ln.record.get("signal") not in AUTHORITY_SIGNALS for ln in self.signals)

    def invocations(self, turn_id: str) -> tuple[Mapping[str, object], ...]:
        return self.provider_invocations.get(turn_id, ())


async def play_transport(target: TransportTarget, recorded: RecordedTransport) -> None:
    """Re-emit every recorded transport signal at its recorded place (module docstring)."""
    for ln in recorded.signals:
        rec = ln.record
        at = tie_break_ns(int(rec.get("runtime_timestamp_ms", 0)),
                          int(rec.get("runtime_sequence", 0)))
        wait = at - target.runtime_ns()
        if wait > 0:
            await target.sleep_ns(wait)
        tid = rec.get("turn_id")
        epoch = rec.get("authority_epoch")
        target.transport_signal(SignalName(str(rec["signal"])), Emitter(str(rec["emitted_by"])),
                                str(tid) if tid is not None else None,
                                str(rec.get("reason") or ""),
                                epoch if isinstance(epoch, int) else None)


async def play_late_arrivals(runtime_ns: Callable[[], int], sleep: Callable[[float], Any],
                             arrivals: Sequence[tuple[int, int, LateArrival]],
                             feed: Callable[[LateArrival], None]) -> None:
    """Feed each recorded late arrival (an output of a closed turn, F-140) at its recorded
    place, as :func:`play_transport` does the transport's signals: whether and when such an
    output arrived is an input of the recording (see ``rspp.turns._late_events``)."""
    for ms, seq, arrival in arrivals:
        wait = tie_break_ns(ms, seq) - runtime_ns()
        if wait > 0:
            await sleep(wait / 1e9)
        feed(arrival)
