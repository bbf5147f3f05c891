"""Compatibility of a pipeline's event interface across published versions (F-028, NF-010).

A pipeline's interface is what its clients rely on: the ``input.<port>`` events they send
and the ``output.<port>`` events they receive, each with its payload type. Publishing a
version is compared with the latest published version of the same pipeline by the
schema rules of ``rspp contracts compat`` (``rspp.contracts.compare_schemas``): a new
port is additive; a removed port or a changed payload type is breaking and is refused
(409 ``incompatible_change`` listing every breaking path) unless the major version goes
up.
"""

from __future__ import annotations

from typing import Any

from rspp.contracts import CompatReport, compare_schemas

__all__ = ["compare_interfaces", "interface_schema"]


def interface_schema(version: str, interface: dict[str, dict[str, str]]) -> dict[str, Any]:
    """The interface as a JSON Schema document (one ``const`` payload type per port)."""
    return {
        "version": version,
        "type": "object",
        "properties": {
            side: {"type": "object",
                   "properties": {port: {"const": kind} for port, kind in sorted(ports.items())}}
            for side, ports in sorted(interface.items())
        },
    }


def compare_interfaces(old_version: str, old: dict[str, dict[str, str]], new_version: str,
                       new: dict[str, dict[str, str]]) -> CompatReport:
    return compare_schemas(interface_schema(old_version, old),
                           interface_schema(new_version, new))
