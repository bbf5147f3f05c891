"""Always-valid default handles for sessions run without Kernel II components.

Named for what they are: an unbounded budget, an in-memory state dict, a local
cancel token. The session swaps in the real implementations when wired.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

__all__ = ["DictState", "LocalCancelToken", "SessionTelemetry", "UnboundedBudget"]


class UnboundedBudget:
    """A budget that is never exhausted (no Kernel II budget wired)."""

    __slots__ = ()

    def remaining_ms(self) -> int:
        return 2**31 - 1

    @property
    def exhausted(self) -> bool:
        return False


class DictState:
    """In-memory key/value state (turn-ephemeral or session-hot)."""

    __slots__ = ("_d",)

    def __init__(self) -> None:
        self._d: dict[str, object] = {}

    def get(self, key: str, default: object = None) -> object:
        return self._d.get(key, default)

    def set(self, key: str, value: object) -> None:
        self._d[key] = value

    def delete(self, key: str) -> None:
        self._d.pop(key, None)

    def clear(self) -> None:
        self._d.clear()


class LocalCancelToken:
    """A cancel token for one scope, with an optional parent (session > turn)."""

    __slots__ = ("_parent", "_reason")

    def __init__(self, parent: LocalCancelToken | None = None) -> None:
        self._parent = parent
        self._reason: str | None = None

    def cancel(self, reason: str) -> None:
        if self._reason is None:
            self._reason = reason

    @property
    def cancelled(self) -> bool:
        return self._reason is not None or (self._parent is not None and self._parent.cancelled)

    @property
    def reason(self) -> str | None:
        if self._reason is not None:
            return self._reason
        return self._parent.reason if self._parent is not None else None

    def raise_if_cancelled(self) -> None:
        if self.cancelled:
            raise asyncio.CancelledError(self.reason)


class SessionTelemetry:
    """Non-blocking telemetry: bounded in-memory metrics, debug only when enabled (F-027)."""

    __slots__ = ("_debug_enabled", "_node_id", "debug_events", "metrics", "sink")

    def __init__(
        self, node_id: str, debug_enabled: Callable[[], bool], maxlen: int = 256
    ) -> None:
        self._node_id = node_id
        self._debug_enabled = debug_enabled
        self.metrics: deque[tuple[str, float, dict[str, str]]] = deque(maxlen=maxlen)
        self.debug_events: deque[tuple[str, dict[str, object]]] = deque(maxlen=maxlen)
        #: also told every value as it is reported: ``sink(node_id, name, value)`` (the
        #: process's metrics, F-104); it must not raise or block
        self.sink: Callable[[str, str, float], None] | None = None

    def metric(self, name: str, value: float, **labels: str) -> None:
        labels.setdefault("node_id", self._node_id)
        self.metrics.append((name, value, labels))
        if self.sink is not None:
            self.sink(self._node_id, name, value)

    def debug(self, message: str, **fields: object) -> None:
        if self._debug_enabled():
            fields.setdefault("node_id", self._node_id)
            self.debug_events.append((message, fields))
