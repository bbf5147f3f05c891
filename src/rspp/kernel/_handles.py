"""Interfaces a node sees through its NodeContext.

These Protocols decouple the executor (which builds NodeContext) from the
components that implement each handle (clock/timebase, cancellation scopes,
budgets, state). Implementations live in their own modules of this package.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """Injected time source; the kernel never reads time any other way."""

    def monotonic_ns(self) -> int:
        """Monotonic nanoseconds (never goes backwards)."""
        ...

    def wall_ms(self) -> int:
        """Wall-clock milliseconds since the Unix epoch."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep on this clock (virtual clocks advance instead of waiting)."""
        ...


class CancelToken(Protocol):
    """Cooperative cancellation check for one scope (F-036)."""

    @property
    def cancelled(self) -> bool:
        """True once the scope (or any ancestor) was cancelled."""
        ...

    @property
    def reason(self) -> str | None:
        """Reason code of the cancellation, if any."""
        ...

    def raise_if_cancelled(self) -> None:
        """Raise :class:`asyncio.CancelledError` when the scope is cancelled."""
        ...


class BudgetHandle(Protocol):
    """Remaining time budget of the current node/turn (F-045)."""

    def remaining_ms(self) -> int:
        """Milliseconds left before the budget is exhausted (never negative)."""
        ...

    @property
    def exhausted(self) -> bool: ...


class StateHandle(Protocol):
    """Scoped key/value state (turn-ephemeral, session-hot or session-durable)."""

    def get(self, key: str, default: object = None) -> object: ...

    def set(self, key: str, value: object) -> None: ...

    def delete(self, key: str) -> None: ...


class TelemetryHandle(Protocol):
    """Non-blocking metrics/debug sink; calls never wait and may be dropped."""

    def metric(self, name: str, value: float, **labels: str) -> None: ...

    def debug(self, message: str, **fields: object) -> None: ...
