"""A bound on one source's repeated log lines (NF-006, NF-013): no flood, nothing hidden.

A client that sends bad messages as fast as it can, or an edge that sheds every frame,
would otherwise write one log line per occurrence. :class:`LogLimit` windows them: the
first ``first`` occurrences of a window are logged in full; the rest are only counted, by
a key the caller chooses (the field of a rejection, the edge of a shed), and the first
occurrence after the window (``interval_s``) ends it: the caller logs the held-back counts
as one summary line, then the new window starts. :meth:`flush` hands the counts of the
window still open over when the source ends (a session closing), so every occurrence is
either a line of its own or a count in a summary.

The clock is injected (default :func:`time.monotonic`): a test drives windows without
sleeping.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import NamedTuple

__all__ = ["LogLimit", "LogVerdict", "held_summary"]


class LogVerdict(NamedTuple):
    """What to log for one occurrence: the previous window's held-back counts first (a
    summary line; None: nothing held), then the occurrence itself if ``full``."""

    held: dict[str, int] | None
    full: bool


class LogLimit:
    """One source's windows (see the module docstring); not thread-safe (one event loop)."""

    __slots__ = ("_clock", "_ends", "_held", "_logged", "first", "interval_s")

    def __init__(self, *, first: int = 5, interval_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if first < 0 or interval_s <= 0:
            raise ValueError("LogLimit needs first >= 0 and interval_s > 0")
        self.first = first
        self.interval_s = interval_s
        self._clock = clock
        self._ends: float | None = None  # the open window's end (None: no window open)
        self._logged = 0
        self._held: Counter[str] = Counter()

    def admit(self, key: str) -> LogVerdict:
        """One occurrence, counted under ``key`` if it is not logged in full."""
        now = self._clock()
        held = None
        if self._ends is None or now >= self._ends:
            held = self.flush()
            self._ends, self._logged = now + self.interval_s, 0
        if self._logged < self.first:
            self._logged += 1
            return LogVerdict(held, True)
        self._held[key] += 1
        return LogVerdict(held, False)

    def flush(self) -> dict[str, int] | None:
        """The counts held back in the open window (None: none), forgotten here."""
        if not self._held:
            return None
        out = dict(self._held)
        self._held.clear()
        return out


def held_summary(what: str, held: dict[str, int]) -> str:
    """A summary line's text: ``K more WHAT not logged one by one (key: n, ...)``, the
    most frequent key first."""
    ranked = sorted(held.items(), key=lambda kv: (-kv[1], kv[0]))
    return (f"{sum(held.values())} more {what} not logged one by one ("
            + ", ".join(f"{k}: {n}" for k, n in ranked) + ")")
