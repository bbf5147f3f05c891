"""Session timebase: monotonic runtime time, wall-clock time and media time (NF-018).

Every timestamp a session records comes from one :class:`Timebase` built on the
injected :class:`~rspp.kernel._handles.Clock`:

* ``runtime_ms()`` - milliseconds since the session started on the monotonic
  clock; never goes backwards.
* ``wall_ms()`` - wall-clock milliseconds mapped so the session's wall
  timestamps never go backwards either: the wall clock is anchored at session
  start and projected forward with monotonic time; when the raw wall clock
  drifts from that projection by more than ``max_skew_ms`` the skew is counted
  and the anchor is corrected *forward only* (a backwards step is absorbed).

A correction is reported once (``on_skew``, and kept in the bounded ``skews``): a
forward correction re-anchors, so the next read is within the bound again; an absorbed
backward step is remembered as the clock's known offset, so reads at that offset say
nothing new until the clock moves by more than ``max_skew_ms`` again (a further step
back) or comes back within the bound of the projection (the step was undone). A
session records each report on its timeline (``rspp.runner``: a ``clock_skew``
TelemetryLane note); see docs/time.md.

Media time is not mapped here: an audio event carries its position (``sample_index``)
and the timeline records it as ``media_time`` beside the runtime timestamps.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from rspp.errors import RuntimeKernelError
from rspp.kernel._handles import Clock

__all__ = ["DEFAULT_MAX_SKEW_MS", "SkewEvent", "Timebase", "TimebaseError"]

_NS_PER_MS = 1_000_000
#: the wall-clock skew a session tolerates before it corrects its wall stamps
DEFAULT_MAX_SKEW_MS = 250
#: the corrections a timebase keeps (the count goes on: ``skew_count``)
_KEEP = 64


class TimebaseError(RuntimeKernelError):
    """Invalid timebase configuration or an out-of-bound media mapping."""


@dataclass(frozen=True, slots=True)
class SkewEvent:
    """One deterministic correction of the wall-clock mapping."""

    runtime_ms: int
    observed_skew_ms: int
    action: str  # "corrected_forward" or "absorbed_backward"
    #: the bound the skew exceeded
    max_skew_ms: int = 0

    def describe(self) -> str:
        """One line for the timeline."""
        if self.action == "corrected_forward":
            what = (f"wall clock ahead of the session's projection by {self.observed_skew_ms} "
                    "ms: wall stamps corrected forward")
        else:
            what = (f"wall clock behind the session's projection by {-self.observed_skew_ms} "
                    "ms: step absorbed, wall stamps held monotonic")
        return f"{self.action}: {what} (max_skew_ms {self.max_skew_ms})"


class Timebase:
    """Monotonic session time with a monotonic wall-clock mapping."""

    __slots__ = ("_absorbed", "_clock", "_last_wall_ms", "_start_ns", "_wall_anchor_ms",
                 "max_skew_ms", "on_skew", "skew_count", "skews")

    def __init__(self, clock: Clock, *, max_skew_ms: int = DEFAULT_MAX_SKEW_MS,
                 on_skew: Callable[[SkewEvent], None] | None = None) -> None:
        if max_skew_ms < 0:
            raise TimebaseError(f"max_skew_ms={max_skew_ms}: must be >= 0")
        self._clock = clock
        self._start_ns = clock.monotonic_ns()
        self._wall_anchor_ms = clock.wall_ms()
        self._last_wall_ms = self._wall_anchor_ms
        #: the skew of an absorbed backward step (None: the clock agrees with the projection)
        self._absorbed: int | None = None
        self.max_skew_ms = max_skew_ms
        #: the most recent corrections (bounded); ``skew_count`` counts them all
        self.skews: deque[SkewEvent] = deque(maxlen=_KEEP)
        self.skew_count = 0
        #: told of each correction as it happens (inside a wall-clock read: it must not
        #: read the wall clock itself; defer any record it makes)
        self.on_skew = on_skew

    @property
    def clock(self) -> Clock:
        return self._clock

    def runtime_ns(self) -> int:
        """Nanoseconds since the session started (monotonic)."""
        return self._clock.monotonic_ns() - self._start_ns

    def runtime_ms(self) -> int:
        """Milliseconds since the session started (monotonic, >= 0)."""
        return self.runtime_ns() // _NS_PER_MS

    # A Timebase is itself a Clock (see ``_handles.Clock``) whose origin is the
    # session start: every component that stamps records of one session reads
    # this one object, so all of the session's timestamps share one time base.
    def monotonic_ns(self) -> int:
        """Session nanoseconds (the Clock protocol's monotonic time)."""
        return self.runtime_ns()

    async def sleep(self, seconds: float) -> None:
        """Sleep on the underlying clock."""
        await self._clock.sleep(seconds)

    def wall_ms(self) -> int:
        """Session wall-clock milliseconds; never smaller than the previous value."""
        return self._wall_at((self._clock.monotonic_ns() - self._start_ns) // _NS_PER_MS)

    def stamps_ms(self) -> tuple[int, int]:
        """``(runtime_ms(), wall_ms())`` with one clock read each (every record's stamps)."""
        rt = (self._clock.monotonic_ns() - self._start_ns) // _NS_PER_MS
        return rt, self._wall_at(rt)

    def _wall_at(self, rt: int) -> int:
        projected = self._wall_anchor_ms + rt
        raw = self._clock.wall_ms()
        skew = raw - projected
        bound = self.max_skew_ms
        if skew > bound:
            self._wall_anchor_ms += skew
            self._absorbed = None
            self._report(SkewEvent(rt, skew, "corrected_forward", bound))
            projected = raw
        elif -skew > bound:
            known = self._absorbed
            if known is None or skew - known > bound or known - skew > bound:
                self._absorbed = skew
                self._report(SkewEvent(rt, skew, "absorbed_backward", bound))
        elif self._absorbed is not None:
            self._absorbed = None  # back within the bound: the step was undone
        value = projected if projected > self._last_wall_ms else self._last_wall_ms
        self._last_wall_ms = value
        return value

    def _report(self, ev: SkewEvent) -> None:
        self.skews.append(ev)
        self.skew_count += 1
        if self.on_skew is not None:
            self.on_skew(ev)
