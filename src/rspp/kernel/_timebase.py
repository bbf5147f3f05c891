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
* :class:`MediaClock` - maps media positions (sample index or pts) to runtime
  milliseconds from an anchor, and reports the mapping error of observed pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

from rspp.errors import RuntimeKernelError
from rspp.kernel._handles import Clock

__all__ = ["MediaClock", "SkewEvent", "Timebase", "TimebaseError"]

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
        rt = self.runtime_ms()
        projected = self._wall_anchor_ms + rt
        raw = self._clock.wall_ms()
        skew = raw - projected
        if abs(skew) > self.max_skew_ms:
            if skew > 0:
                self._wall_anchor_ms += skew
                self.skews.append(SkewEvent(rt, skew, "corrected_forward"))
                projected = raw
            else:
                self.skews.append(SkewEvent(rt, skew, "absorbed_backward"))
        value = max(projected, self._last_wall_ms)
        self._last_wall_ms = value
        return value


class MediaClock:
    """Maps media positions to session runtime milliseconds.

    ``anchor(sample_index, runtime_ms)`` fixes which runtime instant a media
    position corresponds to (typically the first ingress frame); afterwards
    ``to_runtime_ms`` is a pure function of the position, so replay maps the
    same audio to the same instants.
    """

    __slots__ = ("_anchor_rt_ms", "_anchor_sample", "errors_ms", "sample_rate_hz")

    def __init__(self, sample_rate_hz: int) -> None:
        if sample_rate_hz <= 0:
            raise TimebaseError(f"sample_rate_hz={sample_rate_hz}: must be > 0 (e.g. 16000)")
        self.sample_rate_hz = sample_rate_hz
        self._anchor_sample: int | None = None
        self._anchor_rt_ms = 0
        self.errors_ms: list[int] = []

    def anchor(self, sample_index: int, runtime_ms: int) -> None:
        if sample_index < 0 or runtime_ms < 0:
            raise TimebaseError("anchor(sample_index, runtime_ms): both must be >= 0")
        self._anchor_sample = sample_index
        self._anchor_rt_ms = runtime_ms

    def sample_to_pts_ms(self, sample_index: int) -> int:
        return sample_index * 1000 // self.sample_rate_hz

    def to_runtime_ms(self, sample_index: int) -> int:
        """Runtime milliseconds of a media sample (anchor required)."""
        if self._anchor_sample is None:
            raise TimebaseError("MediaClock.to_runtime_ms before anchor(): call anchor() first")
        delta = sample_index - self._anchor_sample
        return self._anchor_rt_ms + delta * 1000 // self.sample_rate_hz

    def observe(self, sample_index: int, runtime_ms: int) -> int:
        """Record the mapping error of an observed (sample, runtime) pair; returns it."""
        err = runtime_ms - self.to_runtime_ms(sample_index)
        self.errors_ms.append(err)
        return err

    def p99_abs_error_ms(self) -> int:
        if not self.errors_ms:
            return 0
        ordered = sorted(abs(e) for e in self.errors_ms)
        return ordered[min(len(ordered) - 1, (len(ordered) * 99) // 100)]
