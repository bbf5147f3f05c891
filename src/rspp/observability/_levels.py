"""Recording levels and the deterministic downgrade ladder (F-153, F-176).

Levels (what a timeline line keeps):

* ``L0``: control evidence only. Every ControlLane signal, decision outcome,
  turn transition, resolved plan, OR-02 evidence record and DataLane envelope
  (metadata only, needed by the SLO gates), without any payload; TelemetryLane
  event records are not recorded.
* ``L1``: ``L0`` + text payloads + TelemetryLane records.
* ``L2``: ``L1`` + audio payloads.

Downgrade is a pure function of the buffer fill seen at each append:
``L2 -> L1`` when the fill reaches ``l1_fill`` of capacity, ``L1 -> L0`` when it
reaches ``l0_fill``. One append moves at most one step, so a level is never
skipped. Re-upgrade happens only at a turn boundary (one step per boundary, and
only while the fill is at or below ``upgrade_fill``), never above the configured
level.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from rspp.contracts import RecordingLevel

__all__ = ["LevelLadder", "PayloadTier", "level_allows"]

PayloadTier = Literal["none", "text", "audio"]

_RANK = {RecordingLevel.L0: 0, RecordingLevel.L1: 1, RecordingLevel.L2: 2}
_BY_RANK = {rank: level for level, rank in _RANK.items()}


def level_allows(level: RecordingLevel, tier: PayloadTier) -> bool:
    """Whether ``level`` records a payload of ``tier``."""
    if tier == "none":
        return True
    if tier == "text":
        return _RANK[level] >= 1
    return _RANK[level] >= 2


class LevelLadder(msgspec.Struct, kw_only=True):
    """Current recording level plus the fill thresholds that move it."""

    configured: RecordingLevel
    current: RecordingLevel
    l1_fill: float = 0.5
    l0_fill: float = 0.75
    upgrade_fill: float = 0.25

    def after_fill(self, fill: float) -> tuple[RecordingLevel, RecordingLevel] | None:
        """Apply at most one downgrade step for ``fill``; return (from, to) when it moved."""
        before = self.current
        if before == RecordingLevel.L2 and fill >= self.l1_fill:
            self.current = RecordingLevel.L1
        elif before == RecordingLevel.L1 and fill >= self.l0_fill:
            self.current = RecordingLevel.L0
        else:
            return None
        return before, self.current

    def at_turn_boundary(self, fill: float) -> tuple[RecordingLevel, RecordingLevel] | None:
        """Re-upgrade one step toward the configured level when the pressure is gone."""
        before = self.current
        if _RANK[before] >= _RANK[self.configured] or fill > self.upgrade_fill:
            return None
        self.current = _BY_RANK[_RANK[before] + 1]
        return before, self.current
