"""Per-turn timing of the turn driver: monotonic stamps for the latency table.

One :class:`TurnTiming` per proposal, in proposal order (``TurnDriver.timings``);
the runner's summary, the served metrics and the OR-02 evidence read it.
"""

from __future__ import annotations

from dataclasses import dataclass

from rspp.contracts import ResolvedTurnPlan

__all__ = ["TurnTiming"]


@dataclass(slots=True)
class TurnTiming:
    """Monotonic timestamps (ns) of one proposal/turn, for the latency table."""

    turn_id: str
    eou_ns: int
    proposed_ns: int
    open_ns: int | None = None
    first_output_ns: int | None = None
    playback_started_ns: int | None = None
    terminal_ns: int | None = None
    terminal: str | None = None
    reason: str | None = None
    cancel_accepted_ns: int | None = None
    cancel_fence_ns: int | None = None
    #: the accepted cancel's reason code (F-035): barge_in, user_cancel, timeout, ...
    cancel_reason: str | None = None
    #: output samples played by a cancelled turn up to its commit point (F-039)
    committed_samples: int | None = None
    plan: ResolvedTurnPlan | None = None
    admission_reason: str = ""
    proposed_ms: int = 0
    open_ms: int = 0

    @staticmethod
    def _ms(a: int | None, b: int | None) -> float | None:
        return None if a is None or b is None else (b - a) / 1e6

    @property
    def turn_open_decision_ms(self) -> float | None:
        return self._ms(self.proposed_ns, self.open_ns)

    @property
    def first_output_ms(self) -> float | None:
        return self._ms(self.open_ns, self.first_output_ns)

    @property
    def end_to_end_ms(self) -> float | None:
        return self._ms(self.eou_ns, self.playback_started_ns or self.first_output_ns)

    @property
    def cancel_fence_ms(self) -> float | None:
        return self._ms(self.cancel_accepted_ns, self.cancel_fence_ns)
