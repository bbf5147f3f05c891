"""``router``: forwards every event; its out-edges' ``when:`` conditions do the routing."""

from __future__ import annotations

from rspp.kernel import Event, Node

__all__ = ["RouterNode"]


class RouterNode(Node):
    """Inline fan-out point for conditional edges (conditions are evaluated by the kernel)."""

    type_name = "router"
    inputs = ("in",)
    outputs = ("out",)

    def process(self, event: Event, port: str) -> Event:
        return event
