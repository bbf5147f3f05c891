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

Media time is not mapped here: an audio event carries its position (``sample_index``)
and the timeline records it as ``media_time`` beside the runtime timestamps.
"""

from __future__ import annotations

from dataclasses import dataclass

from rspp.errors import RuntimeKernelError
from rspp.kernel._handles import Clock

__all__ = ["SkewEvent", "Timebase", "TimebaseError"]

_NS_PER_MS = 1_000_000


class TimebaseError(RuntimeKernelError):
    """Invalid timebase configuration or an out-of-bound media mapping."""


@dataclass(frozen=True, slots=True)
class SkewEvent:
    """One deterministic correction of the wall-clock mapping."""

    runtime_ms: int
    observed_skew_ms: int
    action: str  # "corrected_forward" or "absorbed_backward"


class Timebase:
    """Monotonic session time with a monotonic wall-clock mapping."""

    __slots__ = ("_clock", "_last_wall_ms", "_start_ns", "_wall_anchor_ms", "max_skew_ms", "skews")

    def __init__(self, clock: Clock, *, max_skew_ms: int = 250) -> None:
        if max_skew_ms < 0:
            raise TimebaseError(f"max_skew_ms={max_skew_ms}: must be >= 0")
        self._clock = clock
        self._start_ns = clock.monotonic_ns()
        self._wall_anchor_ms = clock.wall_ms()
        self._last_wall_ms = self._wall_anchor_ms
        self.max_skew_ms = max_skew_ms
        self.skews: list[SkewEvent] = []

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
        if skew > self.max_skew_ms or -skew > self.max_skew_ms:
            if skew > 0:
                self._wall_anchor_ms += skew
                self.skews.append(SkewEvent(rt, skew, "corrected_forward"))
                projected = raw
            else:
                self.skews.append(SkewEvent(rt, skew, "absorbed_backward"))
        value = projected if projected > self._last_wall_ms else self._last_wall_ms
        self._last_wall_ms = value
        return value
