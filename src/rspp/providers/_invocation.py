"""ProviderInvocation: the first-class unit of one provider call (F-160).

Each invocation has a unique id, its own cancel scope (a child of the caller's
turn/node scope, when one is given) and ends with one normalised
:class:`~rspp.providers.Outcome` plus standard metrics (F-065).
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from rspp.providers._outcome import Outcome
from rspp.providers._types import ProviderKind

if TYPE_CHECKING:
    from rspp.kernel._handles import CancelToken

__all__ = [
    "InvocationCancelScope",
    "InvocationMetrics",
    "MetricsSink",
    "ProviderInvocation",
    "ProviderMetricsRecorder",
    "new_invocation_id",
]

_COUNTER = itertools.count(1)


def new_invocation_id(prefix: str = "pinv") -> str:
    """A process-unique invocation id (uuid4 based, with a readable counter)."""
    return f"{prefix}-{next(_COUNTER)}-{uuid.uuid4().hex[:12]}"


class InvocationCancelScope:
    """Explicit cancel scope of one invocation (scope kind ``provider_invocation``).

    ``cancel(reason)`` wakes the invocation's stream at once; the stream closes
    the adapter (aborting its HTTP request or WebSocket) and ends with outcome
    ``cancelled``. A ``parent`` token (turn or node scope) cancels it as well; a
    parent token has no wake-up hook, so it is observed at the next stream item;
    for an immediate stop the owner cancels the consuming task (hard cancel) or
    calls ``cancel`` here.
    """

    def __init__(self, parent: CancelToken | None = None) -> None:
        self._parent = parent
        self._reason: str | None = None
        self._event: asyncio.Event | None = None
        self._cancelled = False

    @property
    def cancelled(self) -> bool:
        if not self._cancelled and self._parent is not None and self._parent.cancelled:
            self.cancel(self._parent.reason or "parent_cancelled")
        return self._cancelled

    @property
    def reason(self) -> str | None:
        return self._reason

    def cancel(self, reason: str = "cancelled") -> None:
        if self._cancelled:
            return
        self._cancelled = True
        self._reason = reason
        if self._event is not None:
            self._event.set()

    def raise_if_cancelled(self) -> None:
        if self.cancelled:
            raise asyncio.CancelledError(self._reason)

    async def wait(self) -> None:
        """Return once the scope is cancelled."""
        if self._event is None:
            self._event = asyncio.Event()
            if self._cancelled:
                self._event.set()
        await self._event.wait()


@dataclass(slots=True)
class InvocationMetrics:
    """Standard per-invocation metrics (same names for every adapter, F-065)."""

    started_ns: int = 0
    first_output_ns: int | None = None
    ended_ns: int | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    items_in: int = 0
    items_out: int = 0
    retries: int = 0
    error_code: str | None = None

    @property
    def latency_ms(self) -> float | None:
        if self.ended_ns is None:
            return None
        return (self.ended_ns - self.started_ns) / 1e6

    @property
    def time_to_first_output_ms(self) -> float | None:
        """Time to first token (LLM), first audio (TTS) or first transcript (STT)."""
        if self.first_output_ns is None:
            return None
        return (self.first_output_ns - self.started_ns) / 1e6


@dataclass(slots=True)
class ProviderInvocation:
    """One attempt against one provider."""

    provider_id: str
    kind: ProviderKind
    invocation_id: str = field(default_factory=new_invocation_id)
    attempt: int = 1
    cancel_scope: InvocationCancelScope = field(default_factory=InvocationCancelScope)
    outcome: Outcome | None = None
    error_code: str | None = None
    metrics: InvocationMetrics = field(default_factory=InvocationMetrics)
    #: output stopped early by a cost cap (F-058)
    truncated: bool = False
    #: the attempt's idle timeout (the turn's remaining budget when that is smaller): an
    #: adapter that holds the call before sending it (batching, F-051) stays well within it
    timeout_ms: int | None = None

    @property
    def done(self) -> bool:
        return self.outcome is not None

    def labels(self) -> dict[str, str]:
        """Standard metric labels (provider-specific details go in ``error_code``)."""
        return {
            "provider": self.provider_id,
            "kind": self.kind.value,
            "outcome": self.outcome.value if self.outcome else "running",
        }


class MetricsSink(Protocol):
    """Receives every finished invocation (Prometheus exporters implement this)."""

    def record(self, invocation: ProviderInvocation) -> None: ...


class ProviderMetricsRecorder:
    """In-memory :class:`MetricsSink` with standard labels; bounded history."""

    def __init__(self, *, keep: int = 1024) -> None:
        self._keep = keep
        self.invocations: list[ProviderInvocation] = []
        self.counters: dict[tuple[str, str, str], int] = {}

    def record(self, invocation: ProviderInvocation) -> None:
        labels = invocation.labels()
        key = (labels["provider"], labels["kind"], labels["outcome"])
        self.counters[key] = self.counters.get(key, 0) + 1
        self.invocations.append(invocation)
        if len(self.invocations) > self._keep:
            del self.invocations[: len(self.invocations) - self._keep]
