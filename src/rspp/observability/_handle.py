"""NodeTelemetry: the runtime's ``TelemetryHandle`` for one node (best effort).

``metric`` observes into :class:`RuntimeMetrics` (series ``rspp_node_metric``);
``debug`` writes a DEBUG log line carrying the node's correlation ids, and only
formats anything when the logger is enabled for DEBUG. Neither call waits.
"""

from __future__ import annotations

import logging

from rspp.observability._metrics import RuntimeMetrics

__all__ = ["NodeTelemetry"]


class NodeTelemetry:
    """Implements :class:`rspp.kernel._handles.TelemetryHandle` for one node."""

    def __init__(self, metrics: RuntimeMetrics, logger: logging.Logger, *, session_id: str,
                 pipeline_version: str, node_id: str, turn_id: str | None = None) -> None:
        self._metrics = metrics
        self._logger = logger
        self._pipeline_version = pipeline_version
        self._node_id = node_id
        self._ids = {"session_id": session_id, "turn_id": turn_id,
                     "pipeline_version": pipeline_version, "node_id": node_id}

    def metric(self, name: str, value: float, **labels: str) -> None:
        """Observe ``value`` for ``name``; extra labels are ignored (fixed cardinality)."""
        self._metrics.node_metric(self._pipeline_version, self._node_id, name, value)

    def debug(self, message: str, **fields: object) -> None:
        if self._logger.isEnabledFor(logging.DEBUG):
            self._logger.debug(message, extra={**fields, **self._ids})
