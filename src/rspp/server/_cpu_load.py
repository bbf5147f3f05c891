"""The runtime's own CPU utilisation, as a headroom threshold with hysteresis (F-172).

``rspp serve --max-cpu-percent P`` bounds the CPU the runtime process uses: its CPU
time (every thread: the event loop, provider SDK threads, custom nodes' workers) over a
sliding window of wall time, as a percent of the CPUs it may run on (0-100). The runtime's
capacity control samples it on one task (:class:`CpuLoad`); :class:`CpuHeadroom` trips
when the load reaches P and clears once it has fallen to the resume level R (below P,
``--cpu-resume-percent``). While tripped every new turn is deferred at admission
(``capacity:cpu:LOAD/P``).

The hysteresis is what makes the decision stable: a measured load wobbles around any
threshold from one sample to the next, so a turn proposed right after the threshold
tripped could otherwise be admitted or deferred by the luck of the next sample. Latched
between P and R, the decision follows the trip and clear events the timeline and
``/metrics`` show.

The sources are injectable (``cpu_seconds``, ``clock``, ``cpus``): the runtime uses the
process CPU time and the monotonic clock; a unit test drives them exactly.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from rspp.turns import Headroom

__all__ = ["CpuHeadroom", "CpuLoad", "available_cpus"]

#: the sliding window the load is averaged over
WINDOW_S = 1.0


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity; the CPU count elsewhere)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - no affinity on this platform
        return max(1, os.cpu_count() or 1)


@dataclass(slots=True)
class CpuLoad:
    """The process's CPU utilisation over the last ``window_s`` of wall time, in percent
    of ``cpus`` CPUs, updated by :meth:`sample`."""

    window_s: float = WINDOW_S
    cpu_seconds: Callable[[], float] = time.process_time
    clock: Callable[[], float] = time.monotonic
    cpus: int = field(default_factory=available_cpus)
    #: the load at the last sample (0 before two samples)
    percent: int = 0
    _samples: deque[tuple[float, float]] = field(default_factory=deque)

    def __post_init__(self) -> None:
        if self.window_s <= 0 or self.cpus < 1:
            raise ValueError(f"window_s={self.window_s}, cpus={self.cpus}: must be positive")

    def sample(self) -> int:
        """Take a sample now; the load over the window it closes."""
        now, used = self.clock(), self.cpu_seconds()
        samples = self._samples
        samples.append((now, used))
        # keep the newest sample at least a window old as the window's start
        while len(samples) > 2 and now - samples[1][0] >= self.window_s:
            samples.popleft()
        start, used0 = samples[0]
        if now > start:
            # whole percent, rounded down (1e-9: exact loads survive float sums)
            self.percent = max(0, int(100 * (used - used0) / ((now - start) * self.cpus) + 1e-9))
        return self.percent


@dataclass(slots=True)
class CpuHeadroom:
    """CPU headroom: tripped from when the load reaches ``limit`` until it falls to
    ``resume`` or below."""

    limit: int
    resume: int
    load: CpuLoad = field(default_factory=CpuLoad)
    tripped: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= 100:
            raise ValueError(f"max_cpu_percent={self.limit}: must be 1..100")
        if not 0 <= self.resume < self.limit:
            raise ValueError(f"cpu_resume_percent={self.resume}: must be >= 0 and below "
                             f"max_cpu_percent={self.limit}")

    def sample(self) -> int:
        """Sample the load and move the latch; the load."""
        value = self.load.sample()
        if value >= self.limit:
            self.tripped = True
        elif value <= self.resume:
            self.tripped = False
        return value

    def probe(self) -> Headroom:
        """The admission probe: the last sampled load, deferring while tripped."""
        return Headroom("cpu", self.limit, lambda: self.load.percent,
                        held=lambda: self.tripped)
