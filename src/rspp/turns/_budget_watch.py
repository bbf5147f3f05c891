"""The Active turn's budgets and the timer that polls them (RK-17, F-045..F-048).

The turn driver starts a :class:`BudgetWatch` turn when the turn opens: a
:class:`~rspp.turns._budgets.BudgetTracker` over the plan's budgets, and a
timer task that, at each budget's next deadline, enqueues ``rspp.budget`` on
the session's control lane. The driver serves that command with
:meth:`BudgetWatch.poll` (warnings and exhaustions recorded in sequence
order); a turn budget's ``terminate`` outcome is the driver's to apply (T10).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import msgspec

from rspp.contracts import ResolvedTurnPlan
from rspp.kernel._identity import RecordStamp
from rspp.kernel._session import SessionActor
from rspp.turns._budgets import BudgetKind, BudgetOutcome, BudgetTracker

__all__ = ["BudgetWatch"]


class BudgetWatch:
    """Budgets of the current turn plus their deadline timer (one per session)."""

    __slots__ = ("_emit", "_timer", "enforce", "session", "stamp", "tracker")

    def __init__(self, session: SessionActor, stamp: RecordStamp,
                 emit: Callable[[msgspec.Struct], None], *, enforce: bool) -> None:
        self.session = session
        self.stamp = stamp
        self._emit = emit
        #: False under compressed media time: the turn budget reports, never terminates
        self.enforce = enforce
        self.tracker: BudgetTracker | None = None
        self._timer: asyncio.Task[None] | None = None

    def start(self, tid: str, plan: ResolvedTurnPlan, *, authority_epoch: int) -> None:
        clock = self.session.clock
        tracker = BudgetTracker(tid, plan.budgets, clock, self.stamp,
                                authority_epoch=authority_epoch,
                                allowed_actions=plan.allowed_adaptive_actions)
        if not self.enforce:  # compressed media time: report, never terminate
            tracker.turn = tracker.start(BudgetKind.TURN, tid, advisory=True)
        self.tracker = tracker
        self._stop_timer()
        self._timer = asyncio.get_running_loop().create_task(
            self._watch(tracker), name=f"{tid}:budget")

    async def _watch(self, tracker: BudgetTracker) -> None:
        clock = self.session.clock
        while self.tracker is tracker:
            due = tracker.next_deadline_ns()
            if due is None:
                return
            await clock.sleep(max(due - clock.monotonic_ns(), 0) / 1e9)
            if self.tracker is tracker:
                self.session.control("rspp.budget", turn_id=tracker.turn_id)
                await clock.sleep(0.005)  # let the scheduler poll before re-arming

    def _stop_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and not timer.done() and timer is not asyncio.current_task():
            timer.cancel()

    def poll(self, active_turn: str | None) -> str | None:
        """Record due warnings/exhaustions of the Active turn's budgets; returns the turn id
        when its turn budget's outcome is ``terminate`` (the driver fails the turn)."""
        tracker = self.tracker
        if tracker is None or tracker.turn_id != active_turn:
            return None
        warnings, exhausted = tracker.poll()
        for rec in warnings:
            self._emit(rec)
        for ex in exhausted:
            for rec in ex.records:
                self._emit(rec)
            if ex.outcome is BudgetOutcome.TERMINATE and ex.budget.kind is BudgetKind.TURN:
                return tracker.turn_id
        return None

    def end(self, tid: str) -> None:
        """Turn ``tid`` reached its terminal: its budgets stop, the timer too."""
        if self.tracker is not None and self.tracker.turn_id == tid:
            for b in self.tracker.budgets.values():
                b.stop()
            self.tracker = None
            self._stop_timer()

    async def aclose(self) -> None:
        timer, self._timer = self._timer, None
        self.tracker = None
        if timer is not None:
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer
