"""Local admission (RK-25): admit/reject/defer before a turn, shed at scheduling points.

Per-tenant quotas come from the :class:`~rspp.contracts.AdmissionPolicy`
snapshot (F-049, F-050): ``max_concurrent_sessions`` rejects, the
``sessions_per_minute`` / ``turns_per_minute`` sliding windows defer (with a
retry-after). Under overload the scheduling points ``edge_enqueue``,
``edge_dequeue`` and ``node_dispatch`` shed deterministically by fairness key:
when a point is over capacity, the item is shed iff its fairness key already
holds at least its fair share (capacity / active keys), so one noisy tenant or
stream is shed before quiet ones (NF-006). Every decision is a
:class:`~rspp.contracts.DecisionOutcome` and is counted per tenant.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from rspp.contracts import (
    AdmissionPolicy,
    DecisionOutcome,
    OutcomeEmitter,
    OutcomeKind,
    OutcomePhase,
    OutcomeScope,
)
from rspp.errors import RuntimeKernelError
from rspp.kernel._handles import Clock
from rspp.turns._capacity import CapacityModel, Headroom, Priority, TurnCapacity

__all__ = ["AdmissionDecision", "AdmissionError", "LocalAdmission", "SchedulingShed"]

_WINDOW_MS = 60_000
_SCHEDULING_POINTS = (
    OutcomeScope.EDGE_ENQUEUE,
    OutcomeScope.EDGE_DEQUEUE,
    OutcomeScope.NODE_DISPATCH,
)


class AdmissionError(RuntimeKernelError):
    """Admission was asked about an unknown tenant or an invalid scheduling point."""


@dataclass(frozen=True, slots=True)
class AdmissionDecision:
    outcome: DecisionOutcome
    retry_after_ms: int | None = None

    @property
    def kind(self) -> OutcomeKind:
        return self.outcome.outcome_kind

    @property
    def admitted(self) -> bool:
        return self.outcome.outcome_kind is OutcomeKind.ADMIT


@dataclass(slots=True)
class _Tenant:
    policy: AdmissionPolicy
    sessions: set[str] = field(default_factory=set)
    session_starts: deque[int] = field(default_factory=deque)
    turn_starts: deque[int] = field(default_factory=deque)
    #: (time, LLM tokens) charged in the last minute, and their sum
    tokens: deque[tuple[int, int]] = field(default_factory=deque)
    tokens_in_window: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    #: decisions by (``session`` | ``turn``, outcome kind), for per-tenant quota metrics
    decisions: dict[tuple[str, str], int] = field(default_factory=dict)


class LocalAdmission:
    """Per-runtime admission over every tenant's sessions (single-threaded, no locks)."""

    def __init__(self, clock: Clock, capacity: CapacityModel | None = None,
                 headroom: tuple[Headroom, ...] = ()) -> None:
        self.clock = clock
        self._tenants: dict[str, _Tenant] = {}
        self._seq = 0
        #: the runtime's open turns and other loads against its capacity model (None:
        #: unbounded; F-172)
        if capacity is None and headroom:
            capacity = CapacityModel(None)
        self.capacity = TurnCapacity(capacity, headroom) if capacity is not None else None
        self._priority: dict[str, Priority] = {}

    def set_policy(self, policy: AdmissionPolicy) -> None:
        """Install or replace a tenant's quotas (applies to the next decision)."""
        t = self._tenants.get(policy.tenant_id)
        if t is None:
            self._tenants[policy.tenant_id] = _Tenant(policy)
        else:
            t.policy = policy

    def _tenant(self, tenant_id: str) -> _Tenant:
        try:
            return self._tenants[tenant_id]
        except KeyError:
            raise AdmissionError(
                f"no admission policy for tenant '{tenant_id}'; call set_policy() with its "
                "AdmissionPolicy snapshot first"
            ) from None

    def metrics(self, tenant_id: str) -> dict[str, int]:
        """Quota metrics of one tenant: decision counters plus current usage."""
        t = self._tenant(tenant_id)
        return {**t.counters, "active_sessions": len(t.sessions)}

    def decisions(self) -> dict[str, dict[tuple[str, str], int]]:
        """Per tenant: decisions counted by (``session`` | ``turn``, outcome kind)."""
        return {tid: dict(t.decisions) for tid, t in self._tenants.items()}

    def open_turns(self) -> dict[str, int] | None:
        """Turns holding capacity by priority (None: no capacity model)."""
        if self.capacity is None:
            return None
        return {str(k): n for k, n in self.capacity.by_priority().items()}

    def capacity_control(self) -> tuple[dict[str, tuple[int, int | None]], dict[str, int]]:
        """Each bounded load (value, limit) and the deferrals by threshold (F-172)."""
        if self.capacity is None:
            return {}, {}
        return self.capacity.loads(), dict(self.capacity.deferred)

    def active_sessions(self) -> dict[str, int]:
        """Per tenant: sessions admitted and not yet ended."""
        return {tid: len(t.sessions) for tid, t in self._tenants.items()}

    def _decide(
        self,
        t: _Tenant,
        kind: OutcomeKind,
        scope: OutcomeScope,
        reason: str,
        *,
        session_id: str,
        turn_id: str | None = None,
        retry_after_ms: int | None = None,
    ) -> AdmissionDecision:
        self._seq += 1
        t.counters[kind.value] = t.counters.get(kind.value, 0) + 1
        key = ("turn" if turn_id is not None else "session", kind.value)
        t.decisions[key] = t.decisions.get(key, 0) + 1
        now_ms = self.clock.monotonic_ns() // 1_000_000
        outcome = DecisionOutcome(
            outcome_kind=kind,
            phase=OutcomePhase.PRE_TURN,
            scope=scope,
            session_id=session_id,
            event_id=f"admission:{self._seq}",
            runtime_timestamp_ms=now_ms,
            wall_clock_timestamp_ms=self.clock.wall_ms(),
            emitted_by=OutcomeEmitter.RK_25,
            reason=reason,
            turn_id=turn_id,
            timestamp_ms=now_ms,
        )
        return AdmissionDecision(outcome, retry_after_ms)

    @staticmethod
    def _window(starts: deque[int], now_ms: int) -> None:
        while starts and starts[0] <= now_ms - _WINDOW_MS:
            starts.popleft()

    def admit_session(self, tenant_id: str, session_id: str,
                      priority: Priority = "interactive") -> AdmissionDecision:
        """Session creation: concurrency quota (reject), sessions/minute (defer);
        ``priority`` decides its turns' share of the runtime's capacity (F-173)."""
        t = self._tenant(tenant_id)
        now_ms = self.clock.monotonic_ns() // 1_000_000
        self._window(t.session_starts, now_ms)
        if session_id in t.sessions:
            return self._decide(
                t,
                OutcomeKind.ADMIT,
                OutcomeScope.SESSION,
                "already_admitted",
                session_id=session_id,
            )
        if len(t.sessions) >= t.policy.max_concurrent_sessions:
            return self._decide(
                t,
                OutcomeKind.REJECT,
                OutcomeScope.TENANT,
                f"max_concurrent_sessions:{t.policy.max_concurrent_sessions}",
                session_id=session_id,
            )
        if len(t.session_starts) >= t.policy.sessions_per_minute:
            retry = t.session_starts[0] + _WINDOW_MS - now_ms
            return self._decide(
                t,
                OutcomeKind.DEFER,
                OutcomeScope.TENANT,
                f"sessions_per_minute:{t.policy.sessions_per_minute}",
                session_id=session_id,
                retry_after_ms=retry,
            )
        t.sessions.add(session_id)
        t.session_starts.append(now_ms)
        self._priority[session_id] = priority
        return self._decide(
            t, OutcomeKind.ADMIT, OutcomeScope.SESSION, "within_quota", session_id=session_id
        )

    def charge_tokens(self, tenant_id: str, tokens: int) -> None:
        """LLM tokens a session of the tenant used (its per-minute token quota)."""
        t = self._tenants.get(tenant_id)
        if t is None or tokens <= 0:
            return
        now_ms = self.clock.monotonic_ns() // 1_000_000
        t.tokens.append((now_ms, tokens))
        t.tokens_in_window += tokens

    def _token_window(self, t: _Tenant, now_ms: int) -> None:
        while t.tokens and t.tokens[0][0] <= now_ms - _WINDOW_MS:
            t.tokens_in_window -= t.tokens.popleft()[1]

    def end_session(self, tenant_id: str, session_id: str) -> None:
        self._tenant(tenant_id).sessions.discard(session_id)
        self._priority.pop(session_id, None)
        if self.capacity is not None:
            self.capacity.release_session(session_id)

    def turn_ended(self, session_id: str, turn_id: str) -> None:
        """A turn closed, or ended before it opened: it no longer holds capacity."""
        if self.capacity is not None:
            self.capacity.release(session_id, turn_id)

    def admit_turn(self, tenant_id: str, session_id: str, turn_id: str) -> AdmissionDecision:
        """Per-turn quota: turns/minute per tenant (defer with retry-after)."""
        t = self._tenant(tenant_id)
        if session_id not in t.sessions:
            return self._decide(
                t,
                OutcomeKind.REJECT,
                OutcomeScope.TURN,
                "session_not_admitted",
                session_id=session_id,
                turn_id=turn_id,
            )
        now_ms = self.clock.monotonic_ns() // 1_000_000
        self._window(t.turn_starts, now_ms)
        if len(t.turn_starts) >= t.policy.turns_per_minute:
            retry = t.turn_starts[0] + _WINDOW_MS - now_ms
            return self._decide(
                t,
                OutcomeKind.DEFER,
                OutcomeScope.TURN,
                f"turns_per_minute:{t.policy.turns_per_minute}",
                session_id=session_id,
                turn_id=turn_id,
                retry_after_ms=retry,
            )
        quota = t.policy.llm_tokens_per_minute
        self._token_window(t, now_ms)
        if quota is not None and t.tokens_in_window >= quota:
            return self._decide(
                t,
                OutcomeKind.DEFER,
                OutcomeScope.TURN,
                f"llm_tokens_per_minute:{quota}",
                session_id=session_id,
                turn_id=turn_id,
                retry_after_ms=t.tokens[0][0] + _WINDOW_MS - now_ms,
            )
        if self.capacity is not None:
            priority = self._priority.get(session_id, "interactive")
            full = self.capacity.admit(session_id, turn_id, priority)
            if full is not None:
                return self._decide(t, OutcomeKind.DEFER, OutcomeScope.TURN,
                                    f"{full}:{priority}", session_id=session_id,
                                    turn_id=turn_id)
        t.turn_starts.append(now_ms)
        return self._decide(
            t,
            OutcomeKind.ADMIT,
            OutcomeScope.TURN,
            "within_quota",
            session_id=session_id,
            turn_id=turn_id,
        )


class SchedulingShed:
    """Deterministic fairness-keyed shedding at one scheduling point of one session."""

    __slots__ = ("_counts", "_seq", "capacity", "clock", "point", "session_id", "shed_count")

    def __init__(
        self, point: OutcomeScope, capacity: int, *, session_id: str, clock: Clock
    ) -> None:
        if point not in _SCHEDULING_POINTS:
            raise AdmissionError(
                f"scheduling point {point!r} must be one of {[p.value for p in _SCHEDULING_POINTS]}"
            )
        if capacity < 1:
            raise AdmissionError(f"shed capacity={capacity}: must be >= 1")
        self.point = point
        self.capacity = capacity
        self.session_id = session_id
        self.clock = clock
        self._counts: dict[str, int] = {}
        self._seq = 0
        self.shed_count: dict[str, int] = {}

    @property
    def depth(self) -> int:
        return sum(self._counts.values())

    def offer(self, fairness_key: str, *, turn_id: str | None = None) -> DecisionOutcome | None:
        """Admit an item (None) or shed it (the ``shed`` outcome)."""
        held = self._counts.get(fairness_key, 0)
        depth = self.depth
        active = sum(1 for v in self._counts.values() if v > 0) + (0 if held else 1)
        # at least one other contender is assumed, so one key never fills the point alone
        fair_share = max(1, self.capacity // max(2, active))
        full = depth >= self.capacity
        hog = held >= fair_share and depth * 2 >= self.capacity  # under pressure, over share
        if full or hog:
            self._seq += 1
            self.shed_count[fairness_key] = self.shed_count.get(fairness_key, 0) + 1
            now_ms = self.clock.monotonic_ns() // 1_000_000
            why = "full" if full else "over_fair_share"
            return DecisionOutcome(
                outcome_kind=OutcomeKind.SHED,
                phase=OutcomePhase.SCHEDULING_POINT,
                scope=self.point,
                session_id=self.session_id,
                event_id=f"{self.session_id}:shed:{self.point.value}:{self._seq}",
                runtime_timestamp_ms=now_ms,
                wall_clock_timestamp_ms=self.clock.wall_ms(),
                emitted_by=OutcomeEmitter.RK_25,
                reason=f"{why}:{fairness_key}:{held}/{fair_share}",
                turn_id=turn_id,
            )
        self._counts[fairness_key] = held + 1
        return None

    def release(self, fairness_key: str) -> None:
        held = self._counts.get(fairness_key, 0)
        if held <= 1:
            self._counts.pop(fairness_key, None)
        else:
            self._counts[fairness_key] = held - 1
