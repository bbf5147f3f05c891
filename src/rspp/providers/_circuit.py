"""Per-provider circuit breaker on error rate with half-open probing (F-057)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from rspp.providers._clock import LoopClock
from rspp.providers._policy import CircuitPolicy

if TYPE_CHECKING:
    from rspp.kernel._handles import Clock

__all__ = ["CircuitBreaker", "CircuitRegistry", "CircuitState", "CircuitTransition"]


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class CircuitTransition:
    """A state change, with the numbers that caused it (for ``circuit_event``)."""

    provider_id: str
    previous: CircuitState
    state: CircuitState
    error_rate: float
    window_calls: int
    policy: CircuitPolicy

    def reason(self) -> str:
        p = self.policy
        return (
            f"circuit {self.previous.value}->{self.state.value} provider={self.provider_id} "
            f"state={self.state.value} error_rate={self.error_rate:.2f} "
            f"threshold={p.error_rate_threshold:.2f} "
            f"window={self.window_calls}/{p.window} min_calls={p.min_calls} "
            f"cooldown_ms={p.cooldown_ms}"
        )


class CircuitBreaker:
    """Closed -> Open when the windowed failure rate reaches the threshold;
    Open -> HalfOpen after the cooldown (one probe at a time);
    HalfOpen -> Closed after enough successful probes, back to Open on a failure.
    """

    def __init__(self, provider_id: str, policy: CircuitPolicy, clock: Clock | None = None) -> None:
        self.provider_id = provider_id
        self.policy = policy
        self._clock: Clock = clock or LoopClock()
        self._window: deque[bool] = deque(maxlen=policy.window)
        self.state = CircuitState.CLOSED
        self._opened_ns = 0
        self._probe_in_flight = False
        self._probe_successes = 0

    @property
    def error_rate(self) -> float:
        if not self._window:
            return 0.0
        return sum(1 for ok in self._window if not ok) / len(self._window)

    def _transition(self, state: CircuitState) -> CircuitTransition:
        previous, self.state = self.state, state
        return CircuitTransition(
            self.provider_id, previous, state, self.error_rate, len(self._window), self.policy
        )

    def allow(self) -> tuple[bool, CircuitTransition | None]:
        """May a call go to this provider now? Also returns any transition it caused."""
        if self.state is CircuitState.CLOSED:
            return True, None
        if self.state is CircuitState.OPEN:
            elapsed_ms = (self._clock.monotonic_ns() - self._opened_ns) / 1e6
            if elapsed_ms < self.policy.cooldown_ms:
                return False, None
            transition = self._transition(CircuitState.HALF_OPEN)
            self._probe_successes = 0
            self._probe_in_flight = True
            return True, transition
        if self._probe_in_flight:
            return False, None
        self._probe_in_flight = True
        return True, None

    def record(self, success: bool) -> CircuitTransition | None:
        """Record a call result; returns the transition it caused, if any."""
        if self.state is CircuitState.HALF_OPEN:
            self._probe_in_flight = False
            if not success:
                self._opened_ns = self._clock.monotonic_ns()
                return self._transition(CircuitState.OPEN)
            self._probe_successes += 1
            if self._probe_successes >= self.policy.half_open_successes:
                self._window.clear()
                return self._transition(CircuitState.CLOSED)
            return None
        self._window.append(success)
        if (
            self.state is CircuitState.CLOSED
            and len(self._window) >= self.policy.min_calls
            and self.error_rate >= self.policy.error_rate_threshold
        ):
            self._opened_ns = self._clock.monotonic_ns()
            return self._transition(CircuitState.OPEN)
        return None

    def release_probe(self) -> None:
        """A half-open probe ended without a verdict (e.g. it was cancelled)."""
        self._probe_in_flight = False


class CircuitRegistry:
    """One breaker per provider id, shared by every session of a runtime (F-057).

    The runtime (the process running sessions: ``rspp run``, ``rspp serve``) owns one
    registry and injects it into every session's node services, so failures seen by
    one turn or session open the circuit for all later calls. The ``clock`` times the
    cool-down (inject a virtual clock in tests).
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, provider_id: str, policy: CircuitPolicy) -> CircuitBreaker:
        breaker = self._breakers.get(provider_id)
        if breaker is None:
            breaker = self._breakers[provider_id] = CircuitBreaker(provider_id, policy, self._clock)
        return breaker

    def states(self) -> dict[str, CircuitState]:
        return {pid: b.state for pid, b in sorted(self._breakers.items())}
