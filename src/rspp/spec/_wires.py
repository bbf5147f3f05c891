"""A resolved edge of the graph being compiled (:class:`Wire`) and fallback triggers.

Shared by the compiler, which builds wires, and the structural checks, which read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from rspp.spec._catalog import PortType
    from rspp.spec._condition import Condition
    from rspp.spec._expand import FlatEdge

__all__ = ["Trigger", "Wire"]

Trigger = Literal["timeout", "error"]


@dataclass
class Wire:
    """One edge from a source port to a target port, with its condition and role."""

    flat: FlatEdge
    source_node: str
    source_port: str
    target_node: str
    target_port: str
    port_type: PortType
    condition: Condition | None
    role: str = "data"
    suffix: str = ""

    @property
    def id(self) -> str:
        base = f"{self.source_node}.{self.source_port}->{self.target_node}.{self.target_port}"
        return base + self.suffix
