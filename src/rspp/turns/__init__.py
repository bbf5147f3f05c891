"""The turn lifecycle on top of the kernel (:mod:`rspp.kernel`): arbiter, driver, guards.

Public surface: :class:`TurnArbiter` (truth table T1..T12 and
same-point precedence; every call returns a :class:`Step` whose ``records`` are
the emitted contract records in order), :class:`SessionLifecycle`,
:class:`PlanResolver` (frozen ``ResolvedTurnPlan`` from a GraphDefinition and a
``TurnStartBundle`` read through a :class:`SnapshotSource`), :class:`AuthorityGuard`
and :class:`IdempotencyDedupe`, :class:`LocalAdmission` / :class:`SchedulingShed`,
:class:`CancelScopeTree` with its :class:`EgressFence`, :class:`BudgetTracker`,
and :class:`StateManager` (turn/session/durable scopes). The
:class:`TurnDriver` runs them for one kernel :class:`~rspp.kernel.SessionActor`.
"""

from rspp.turns._admission import LocalAdmission, SchedulingShed
from rspp.turns._arbiter import (
    ArbiterPolicy,
    AuthorityVerdict,
    Continuation,
    LatePolicy,
    OverlapPolicy,
    Step,
    TerminalCause,
    TurnArbiter,
    VadBypass,
)
from rspp.turns._authority import AuthorityGuard, IdempotencyDedupe
from rspp.turns._budgets import BudgetKind, BudgetTracker
from rspp.turns._cancel import (
    CancelMode,
    CancelReason,
    CancelScope,
    CancelScopeTree,
    EgressFence,
    propagate_cancel,
)
from rspp.turns._capacity import CapacityModel, Headroom
from rspp.turns._checkpoint import OpenTurn, ResumePoint, SessionCheckpointer, resume_session
from rspp.turns._plan_resolver import CapabilitySource, PlanResolver, compute_plan_hash
from rspp.turns._session_lifecycle import SessionEvent, SessionLifecycle, SessionState
from rspp.turns._snapshot_source import SnapshotSource, StaticSnapshotSource
from rspp.turns._state import (
    DurableStateStore,
    InMemoryDurableStore,
    SqliteDurableStore,
    StaleStateError,
    StateManager,
    StateScope,
)

__all__ = [
    "ArbiterPolicy",
    "AuthorityGuard",
    "AuthorityVerdict",
    "BudgetKind",
    "BudgetTracker",
    "CancelMode",
    "CancelReason",
    "CancelScope",
    "CancelScopeTree",
    "CapabilitySource",
    "CapacityModel",
    "Continuation",
    "DurableStateStore",
    "EgressFence",
    "Headroom",
    "IdempotencyDedupe",
    "InMemoryDurableStore",
    "LatePolicy",
    "LocalAdmission",
    "OpenTurn",
    "OverlapPolicy",
    "PlanResolver",
    "ResumePoint",
    "SchedulingShed",
    "SessionCheckpointer",
    "SessionEvent",
    "SessionLifecycle",
    "SessionState",
    "SnapshotSource",
    "SqliteDurableStore",
    "StaleStateError",
    "StateManager",
    "StateScope",
    "StaticSnapshotSource",
    "Step",
    "TerminalCause",
    "TurnArbiter",
    "VadBypass",
    "compute_plan_hash",
    "propagate_cancel",
    "resume_session",
]
