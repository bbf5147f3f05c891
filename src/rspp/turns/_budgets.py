"""Turn, node, path and edge budgets (RK-17), F-045..F-048, F-137.

A :class:`Budget` is the :class:`~rspp.kernel._handles.BudgetHandle` a node
sees. :class:`BudgetTracker` owns every budget of one turn, created from the
plan's :class:`~rspp.contracts.TurnBudgets` (per-id overrides allowed), and on
:meth:`BudgetTracker.poll` emits, once per budget, ``budget_warning`` when the
warning fraction is consumed and ``budget_exhausted`` at 100 %. The outcome of
an exhaustion is resolved from the plan's ``allowed_adaptive_actions``
(fallback if allowed and a fallback exists, else degrade if allowed, else
``terminate`` - or ``continue`` for budgets marked advisory) and recorded as a
control event: ``fallback``/``degrade`` signals, or the terminal cause handed
to the arbiter (T10).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from rspp.contracts import AdaptiveAction, ControlSignal, Emitter, SignalName, TurnBudgets
from rspp.errors import RuntimeKernelError
from rspp.kernel._handles import Clock
from rspp.kernel._identity import RecordStamp

__all__ = ["Budget", "BudgetError", "BudgetKind", "BudgetOutcome", "BudgetTracker", "Exhaustion"]

_NS_PER_MS = 1_000_000


class BudgetError(RuntimeKernelError):
    """Invalid budget configuration or an unknown budget id."""


class BudgetKind(StrEnum):
    TURN = "turn"
    NODE = "node"
    PATH = "path"
    EDGE = "edge"


class BudgetOutcome(StrEnum):
    CONTINUE = "continue"
    DEGRADE = "degrade"
    FALLBACK = "fallback"
    TERMINATE = "terminate"


class Budget:
    """A time budget started at a clock instant; implements ``BudgetHandle``."""

    __slots__ = (
        "_clock",
        "advisory",
        "budget_id",
        "budget_ms",
        "exhausted_signalled",
        "has_fallback",
        "kind",
        "started_ns",
        "stopped_ns",
        "warned",
    )

    def __init__(
        self,
        kind: BudgetKind,
        budget_id: str,
        budget_ms: int,
        clock: Clock,
        *,
        advisory: bool = False,
        has_fallback: bool = False,
    ) -> None:
        if budget_ms <= 0:
            raise BudgetError(f"budget '{budget_id}' ({kind}) = {budget_ms} ms: must be > 0")
        self.kind = kind
        self.budget_id = budget_id
        self.budget_ms = budget_ms
        self._clock = clock
        self.started_ns = clock.monotonic_ns()
        self.stopped_ns: int | None = None
        self.advisory = advisory
        self.has_fallback = has_fallback
        self.warned = False
        self.exhausted_signalled = False

    def elapsed_ms(self) -> float:
        end = self.stopped_ns if self.stopped_ns is not None else self._clock.monotonic_ns()
        return (end - self.started_ns) / _NS_PER_MS

    def remaining_ms(self) -> int:
        return max(0, int(self.budget_ms - self.elapsed_ms()))

    @property
    def exhausted(self) -> bool:
        return self.elapsed_ms() >= self.budget_ms

    def stop(self) -> None:
        if self.stopped_ns is None:
            self.stopped_ns = self._clock.monotonic_ns()


@dataclass(frozen=True, slots=True)
class Exhaustion:
    """A budget ran out: the resolved outcome and the records that announce it."""

    budget: Budget
    outcome: BudgetOutcome
    records: tuple[ControlSignal, ...]


class BudgetTracker:
    """All budgets of one turn, polled by the session actor."""

    def __init__(
        self,
        turn_id: str,
        budgets: TurnBudgets,
        clock: Clock,
        stamp: RecordStamp,
        *,
        authority_epoch: int,
        allowed_actions: tuple[AdaptiveAction, ...] = (),
        warning_fraction: float = 0.8,
    ) -> None:
        if not 0.0 < warning_fraction < 1.0:
            raise BudgetError(f"warning_fraction={warning_fraction}: must be in (0, 1)")
        self.turn_id = turn_id
        self.defaults = budgets
        self.clock = clock
        self.stamp = stamp
        self.epoch = authority_epoch
        self.allowed = allowed_actions
        self.warning_fraction = warning_fraction
        self.budgets: dict[str, Budget] = {}
        self.turn = self.start(BudgetKind.TURN, turn_id)

    def _default_ms(self, kind: BudgetKind) -> int:
        d = self.defaults
        return {
            BudgetKind.TURN: d.turn_budget_ms,
            BudgetKind.NODE: d.node_budget_ms_default,
            BudgetKind.PATH: d.path_budget_ms_default,
            BudgetKind.EDGE: d.edge_budget_ms_default,
        }[kind]

    def start(
        self,
        kind: BudgetKind,
        budget_id: str,
        budget_ms: int | None = None,
        *,
        advisory: bool = False,
        has_fallback: bool = False,
    ) -> Budget:
        """Start (or restart) the budget ``budget_id``; ``budget_ms`` overrides the default."""
        b = Budget(
            kind,
            budget_id,
            budget_ms or self._default_ms(kind),
            self.clock,
            advisory=advisory,
            has_fallback=has_fallback,
        )
        self.budgets[f"{kind.value}:{budget_id}"] = b
        return b

    def get(self, kind: BudgetKind, budget_id: str) -> Budget:
        try:
            return self.budgets[f"{kind.value}:{budget_id}"]
        except KeyError:
            raise BudgetError(
                f"no {kind.value} budget '{budget_id}' in turn {self.turn_id}"
            ) from None

    def resolve(self, b: Budget) -> BudgetOutcome:
        """The plan-resolved outcome of an exhausted budget (deterministic)."""
        if b.advisory:
            return BudgetOutcome.CONTINUE
        if b.kind is not BudgetKind.TURN:
            if b.has_fallback and AdaptiveAction.FALLBACK in self.allowed:
                return BudgetOutcome.FALLBACK
            if AdaptiveAction.DEGRADE in self.allowed:
                return BudgetOutcome.DEGRADE
        return BudgetOutcome.TERMINATE

    def _sig(self, name: SignalName, b: Budget, reason: str) -> ControlSignal:
        return self.stamp.signal(
            name,
            Emitter.RK_17,
            authority_epoch=self.epoch,
            turn_id=self.turn_id,
            reason=reason,
            node_id=b.budget_id if b.kind is BudgetKind.NODE else None,
            edge_id=b.budget_id if b.kind is BudgetKind.EDGE else None,
        )

    def poll(self) -> tuple[list[ControlSignal], list[Exhaustion]]:
        """Warnings and exhaustions that became due since the last poll, in key order."""
        warnings: list[ControlSignal] = []
        exhausted: list[Exhaustion] = []
        for key in sorted(self.budgets):
            b = self.budgets[key]
            if b.stopped_ns is not None and not b.exhausted:
                continue
            used = b.elapsed_ms()
            if not b.warned and used >= b.budget_ms * self.warning_fraction:
                b.warned = True
                warnings.append(
                    self._sig(SignalName.BUDGET_WARNING, b, f"{key}:{int(used)}/{b.budget_ms}ms")
                )
            if not b.exhausted_signalled and used >= b.budget_ms:
                b.exhausted_signalled = True
                outcome = self.resolve(b)
                recs = [
                    self._sig(
                        SignalName.BUDGET_EXHAUSTED,
                        b,
                        f"{key}:{b.budget_ms}ms;outcome={outcome.value}",
                    )
                ]
                if outcome is BudgetOutcome.DEGRADE:
                    recs.append(self._sig(SignalName.DEGRADE, b, f"budget_exhausted:{key}"))
                elif outcome is BudgetOutcome.FALLBACK:
                    recs.append(self._sig(SignalName.FALLBACK, b, f"budget_exhausted:{key}"))
                exhausted.append(Exhaustion(b, outcome, tuple(recs)))
        return warnings, exhausted

    def next_deadline_ns(self) -> int | None:
        """When the next warning or exhaustion becomes due (for the actor's timer)."""
        due: list[int] = []
        for b in self.budgets.values():
            if b.stopped_ns is not None:
                continue
            if not b.warned:
                due.append(b.started_ns + int(b.budget_ms * self.warning_fraction * _NS_PER_MS))
            elif not b.exhausted_signalled:
                due.append(b.started_ns + b.budget_ms * _NS_PER_MS)
        return min(due, default=None)
