"""Recorded cancellation flushes: what a replay emits instead of computing them.

A cancel flushes the cancelled turn's queued data from every edge buffer, each run
of dropped items leaving a ``drop_notice`` (reason: the cancel's reason). Whether
anything was still queued when the cancel landed depends on how far the consumers
had got: the recorded session's scheduling (a provider worker lagging under load),
not the graph. A replay therefore takes those notices from the recording as given
(:attr:`SessionActor.recorded_flushes`), like the transport's playback signals,
instead of recomputing them on its own virtual-time schedule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rspp.contracts import Lane

__all__ = ["FlushNotice", "RecordedFlushes"]


@dataclass(frozen=True, slots=True)
class FlushNotice:
    """One recorded ``drop_notice`` of a cancellation flush (its edge, lane and range)."""

    edge_id: str
    target_lane: Lane
    seq_range: tuple[int, int]


#: ``(turn_id, reason) -> the recorded flush notices of that cancel, in recorded order``
RecordedFlushes = Callable[[str, str], Sequence[FlushNotice]]
