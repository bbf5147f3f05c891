"""A lossy, jittery network in front of a transport: which numbered frames arrive, in what order.

:class:`Impairment` turns a clean sequence of frame numbers ``0..frames-1`` into what
a bad network delivers: adjacent frames swapped, frames duplicated, frames lost,
frames held back until after a later one. Tests and benchmarks of the ingress jitter
buffer (F-087) send frames in :meth:`Impairment.order`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["Impairment"]


@dataclass(frozen=True, slots=True)
class Impairment:
    """What the network does to ``frames`` numbered frames (see the module docstring)."""

    frames: int
    #: pairs of frames delivered in each other's place
    swap: tuple[tuple[int, int], ...] = ()
    #: frames delivered twice (the copy right after the original)
    duplicate: tuple[int, ...] = ()
    #: frames never delivered
    lose: tuple[int, ...] = ()
    #: frame -> the frame it is delivered right after (a late frame)
    late: Mapping[int, int] = field(default_factory=dict)

    def order(self) -> list[int]:
        """The frame numbers in the order they arrive."""
        gone = set(self.lose) | set(self.late)
        out = [k for k in range(self.frames) if k not in gone]
        for a, b in self.swap:
            i, j = out.index(a), out.index(b)
            out[i], out[j] = out[j], out[i]
        for k in self.duplicate:
            out.insert(out.index(k) + 1, k)
        for k, after in self.late.items():
            out.insert(out.index(after) + 1, k)
        return out
