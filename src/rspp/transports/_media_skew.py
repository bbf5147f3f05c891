"""Media-to-runtime mapping error of a live session's ingress audio (NF-018).

A live client's audio frame at media time ``t`` (its samples so far / its rate) is
expected at runtime ``anchor + t``, the anchor being when the connection's first frame
arrived (:class:`~rspp.transports._ingress.IngressMeter`). How much later it arrives is
the mapping error: network jitter, a stalled client, a loaded server. Audio that arrives
*early* (a client's buffer, a backlog after a stall) counts as 0 here; how far ahead the
audio may run is the flood allowance (rejected past it).

Out of bound, deterministically: a frame later than ``late_after_ms`` (the spec of the
bound: ``rspp serve --media-skew-ms``) re-anchors the mapping on itself (it is counted
once, and the transport records a ``media_skew`` note on the session's timeline), so a
client that paused does not leave every later frame "late".

:class:`MediaSkewHistogram` keeps the errors of one session in fixed bins (1 ms below
100 ms, 10 ms below 1 s, 100 ms below 10 s, one bin beyond): O(1) per frame, a few
hundred integers per session, a p99 exact to its bin.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from math import ceil

__all__ = ["BIN_EDGES_MS", "MediaSkewHistogram"]


def _edges() -> tuple[float, ...]:
    out: list[float] = [0.0]
    out += [float(ms) for ms in range(1, 100)]
    out += [float(ms) for ms in range(100, 1000, 10)]
    out += [float(ms) for ms in range(1000, 10_001, 100)]
    return tuple(out)


#: the upper edge of each bin, milliseconds (the last bin: beyond 10 s)
BIN_EDGES_MS: tuple[float, ...] = _edges()
_BINS = len(BIN_EDGES_MS) + 1


def _bin(ms: float) -> int:
    """The bin of an error of ``ms`` > 0 (the first edge >= ``ms``)."""
    if ms < 100.0:
        return ceil(ms)  # 0 < ms <= 1 -> bin 1 (edge 1.0), ...
    if ms < 1000.0:
        return 90 + int(ms) // 10 + (ms % 10 > 0)
    if ms <= 10_000.0:
        return 180 + int(ms) // 100 + (ms % 100 > 0)
    return _BINS - 1


@dataclass(slots=True)
class MediaSkewHistogram:
    """The mapping errors of one session's ingress frames (see the module docstring)."""

    bins: list[int] = field(default_factory=lambda: [0] * _BINS)
    count: int = 0
    sum_ms: float = 0.0
    max_ms: float = 0.0
    #: frames beyond the bound (each re-anchored the mapping)
    late: int = 0

    def add(self, ms: float) -> None:
        """One frame's mapping error (negative: early, counted as 0). Every ingress frame
        passes: the common case (under 100 ms) takes no further call."""
        self.count += 1
        if ms <= 0.0:
            self.bins[0] += 1
            return
        self.sum_ms += ms
        if ms > self.max_ms:
            self.max_ms = ms
        self.bins[ceil(ms) if ms < 100.0 else _bin(ms)] += 1

    def quantile(self, q: float) -> float:
        """The upper edge of the bin holding the ``q`` quantile, at most the largest error
        seen (ms; 0 with no frames)."""
        if not self.count:
            return 0.0
        rank = q * self.count
        seen = 0
        for i, n in enumerate(self.bins):
            seen += n
            if n and seen >= rank:
                edge = BIN_EDGES_MS[i] if i < len(BIN_EDGES_MS) else self.max_ms
                return edge if edge < self.max_ms else self.max_ms
        return self.max_ms

    @property
    def p99_ms(self) -> float:
        return self.quantile(0.99)

    def cumulative(self) -> Iterator[tuple[float, int]]:
        """``(upper edge ms, frames at or below it)`` per bin edge (Prometheus buckets)."""
        seen = 0
        for edge, n in zip(BIN_EDGES_MS, self.bins, strict=False):
            seen += n
            yield edge, seen

    def merge(self, other: MediaSkewHistogram) -> None:
        """Add ``other``'s frames to these."""
        for i, n in enumerate(other.bins):
            self.bins[i] += n
        self.count += other.count
        self.sum_ms += other.sum_ms
        self.late += other.late
        self.max_ms = max(self.max_ms, other.max_ms)

    def describe(self, bound_ms: float) -> str:
        """One line for the timeline."""
        return (f"media-to-runtime mapping: frames {self.count}, p99 {self.p99_ms:.0f} ms, "
                f"max {self.max_ms:.0f} ms, bound {bound_ms:.0f} ms, late (re-anchored) "
                f"{self.late}")
