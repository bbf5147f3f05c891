"""Simple built-in nodes: passthrough (inline/async), merge and select.

Registered into :data:`rspp.kernel.default_registry` on import.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from rspp.kernel._events import Event
from rspp.kernel._node import Node, NodeContext
from rspp.kernel._registry import default_registry

__all__ = ["AsyncPassthrough", "MergeNode", "Passthrough", "SelectNode"]


class Passthrough(Node):
    """Inline node forwarding every event unchanged."""

    type_name = "passthrough"

    def process(self, event: Event, port: str) -> Event:
        return event


class AsyncPassthrough(Node):
    """Worker-task node forwarding every event unchanged."""

    type_name = "async_passthrough"

    async def process(self, event: Event, port: str) -> Event:
        return event


def _ts(ev: Event) -> float:
    if ev.attrs and "ts" in ev.attrs:
        return float(ev.attrs["ts"])
    if ev.sample_index is not None:
        return float(ev.sample_index)
    return float(ev.seq)


class MergeNode(Node):
    """Fan-in with a declared deterministic rule (F-005).

    ``rule``: ``arrival`` (runtime sequence order), ``timestamp`` (k-way merge by
    ``attrs['ts']``/media time, ties by ``input_order``) or ``source_priority``
    (alias of ``timestamp`` where ties dominate). ``input_order`` lists the input
    edge ids in priority order. Held events flush at turn end or on ``flush()``.
    """

    type_name = "merge"
    by_edge = True

    def __init__(self, ctx: NodeContext, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(ctx, params)
        rule = str(self.params.get("rule", "arrival"))
        # the spec's name for the arrival rule is ``arrival_order`` (spec/_graph_checks.py)
        self.rule = "arrival" if rule == "arrival_order" else rule
        if self.rule not in ("arrival", "timestamp", "source_priority"):
            raise ValueError(
                f"merge rule {self.rule!r} unknown; use arrival, timestamp or source_priority"
            )
        self.order: tuple[str, ...] = tuple(self.params.get("input_order", ()))
        self.pending: dict[str, deque[Event]] = {e: deque() for e in self.order}

    def process(self, event: Event, port: str) -> Event | None:
        if self.rule == "arrival":
            return event
        q = self.pending.get(port)
        if q is None:
            q = self.pending[port] = deque()
            self.order = (*self.order, port)
        q.append(event)
        while all(self.pending[s] for s in self.order):
            self._emit_min()
        return None

    def _emit_min(self) -> None:
        best = min(
            (s for s in self.order if self.pending[s]),
            key=lambda s: (_ts(self.pending[s][0]), self.order.index(s)),
        )
        self.ctx.emit(self.pending[best].popleft())

    def flush(self) -> None:
        while any(self.pending.values()):
            self._emit_min()

    def on_turn_end(self, turn_id: str) -> None:
        self.flush()


class SelectNode(Node):
    """Fan-in choosing one candidate stream by policy (F-006).

    ``candidates``: input edge ids, first is the initial choice. ``policy``:
    ``manual`` (switch by the ``select`` control command), ``attribute``
    (``attribute`` names an event attribute, ``mapping`` maps its value to a
    candidate) or ``priority`` (the highest-priority candidate that produced in
    this turn wins; a lower one is used while no higher one has produced).
    Every switch records an audit event.
    """

    type_name = "select"
    by_edge = True

    def __init__(self, ctx: NodeContext, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(ctx, params)
        self.candidates: tuple[str, ...] = tuple(self.params.get("candidates", ()))
        self.policy = str(self.params.get("policy", "manual"))
        self.attribute = self.params.get("attribute")
        self.mapping: Mapping[str, str] = self.params.get("mapping", {})
        self.active: str | None = self.candidates[0] if self.candidates else None
        self.discarded = 0
        self.produced: set[str] = set()

    def select(self, candidate: str, reason: str) -> None:
        if candidate != self.active:
            self.active = candidate
            self.ctx.audit(f"select:{candidate}:{reason}")

    def _rank(self, port: str) -> int:
        return self.candidates.index(port) if port in self.candidates else len(self.candidates)

    def on_turn_start(self, turn_id: str) -> None:
        self.produced.clear()

    def process(self, event: Event, port: str) -> Event | None:
        if self.active is None:
            self.active = port
        if self.policy == "priority":
            self.produced.add(port)
            best = min(self.produced, key=self._rank)
            if best != self.active:
                self.select(best, "priority")
        if self.policy == "attribute" and self.attribute and event.attrs:
            value = event.attrs.get(str(self.attribute))
            target = self.mapping.get(str(value)) if value is not None else None
            if target is not None:
                self.select(target, f"{self.attribute}={value}")
        if port == self.active:
            return event
        self.discarded += 1
        return None


for _cls in (Passthrough, AsyncPassthrough, MergeNode, SelectNode):
    default_registry.register(_cls)
