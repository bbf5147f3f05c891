"""Prometheus metrics behind a small best-effort facade (F-068, F-069, F-104).

Every :class:`RuntimeMetrics` owns its own ``CollectorRegistry`` (tests and
multiple runtimes in one process never collide). Every method does a bounded
in-memory update and swallows its own errors (counted in
``rspp_telemetry_errors_total``): telemetry never blocks or breaks the data or
control path. :meth:`scrape` renders the Prometheus text format for ``/metrics``.

Series (labels): node latency (pipeline_version, node_id, provider), edge
latency / queue depth / drops / merges (pipeline_version, edge_id), cancel
latency (pipeline_version, scope), provider latency / retries / errors
(pipeline_version, provider, modality[, outcome]), kernel overhead
(pipeline_version), active sessions (pipeline_version), node-reported values
(pipeline_version, node_id, metric) and, on a registry it creates itself, the
process collector (``process_cpu_seconds_total``, memory) for autoscaling.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

__all__ = ["RuntimeMetrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_FAST_BUCKETS = (0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05)


class RuntimeMetrics:
    """The runtime's Prometheus series; all methods are best-effort and non-blocking."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self._node = Histogram("rspp_node_latency_seconds", "Node processing latency",
                               ["pipeline_version", "node_id", "provider"],
                               buckets=_LATENCY_BUCKETS, registry=r)
        self._edge = Histogram("rspp_edge_latency_seconds", "Time an event waited on an edge",
                               ["pipeline_version", "edge_id"], buckets=_LATENCY_BUCKETS,
                               registry=r)
        self._depth = Gauge("rspp_edge_queue_depth", "Items queued on an edge",
                            ["pipeline_version", "edge_id"], registry=r)
        self._drops = Counter("rspp_edge_drops_total", "Events dropped on an edge",
                              ["pipeline_version", "edge_id"], registry=r)
        self._merges = Counter("rspp_edge_merges_total", "Events merged on an edge",
                               ["pipeline_version", "edge_id"], registry=r)
        self._cancel = Histogram("rspp_cancel_latency_seconds", "Cancel acceptance to fence",
                                 ["pipeline_version", "scope"], buckets=_FAST_BUCKETS,
                                 registry=r)
        self._prov = Histogram("rspp_provider_latency_seconds", "Provider invocation latency",
                               ["pipeline_version", "provider", "modality"],
                               buckets=_LATENCY_BUCKETS, registry=r)
        self._retries = Counter("rspp_provider_retries_total", "Provider invocation retries",
                                ["pipeline_version", "provider", "modality"], registry=r)
        self._perr = Counter("rspp_provider_errors_total", "Provider invocation errors",
                             ["pipeline_version", "provider", "modality", "outcome"], registry=r)
        self._overhead = Histogram("rspp_kernel_overhead_seconds",
                                   "Kernel scheduling overhead per event", ["pipeline_version"],
                                   buckets=_FAST_BUCKETS, registry=r)
        self._active = Gauge("rspp_active_sessions", "Active sessions", ["pipeline_version"],
                             registry=r)
        self._errors = Counter("rspp_telemetry_errors_total",
                               "Telemetry updates that failed and were dropped", registry=r)
        self._custom = Histogram("rspp_node_metric", "Values nodes report via NodeContext",
                                 ["pipeline_version", "node_id", "metric"],
                                 buckets=_LATENCY_BUCKETS, registry=r)
        if registry is None:
            ProcessCollector(registry=r)  # process_cpu_seconds_total etc. for autoscaling

    def _safe(self, fn: object, *args: object) -> None:
        try:
            fn(*args)  # type: ignore[operator]
        except Exception:  # telemetry must never raise into the caller
            self._errors.inc()

    def node_latency(self, pipeline_version: str, node_id: str, seconds: float,
                     provider: str = "none") -> None:
        self._safe(lambda: self._node.labels(pipeline_version, node_id, provider).observe(seconds))

    def edge_latency(self, pipeline_version: str, edge_id: str, seconds: float) -> None:
        self._safe(lambda: self._edge.labels(pipeline_version, edge_id).observe(seconds))

    def queue_depth(self, pipeline_version: str, edge_id: str, depth: int) -> None:
        self._safe(lambda: self._depth.labels(pipeline_version, edge_id).set(depth))

    def edge_drop(self, pipeline_version: str, edge_id: str, count: int = 1) -> None:
        self._safe(lambda: self._drops.labels(pipeline_version, edge_id).inc(count))

    def edge_merge(self, pipeline_version: str, edge_id: str, count: int = 1) -> None:
        self._safe(lambda: self._merges.labels(pipeline_version, edge_id).inc(count))

    def cancel_latency(self, pipeline_version: str, seconds: float, scope: str = "turn") -> None:
        self._safe(lambda: self._cancel.labels(pipeline_version, scope).observe(seconds))

    def provider_latency(self, pipeline_version: str, provider: str, modality: str,
                         seconds: float) -> None:
        self._safe(lambda: self._prov.labels(pipeline_version, provider, modality).observe(seconds))

    def provider_retry(self, pipeline_version: str, provider: str, modality: str) -> None:
        self._safe(lambda: self._retries.labels(pipeline_version, provider, modality).inc())

    def provider_error(self, pipeline_version: str, provider: str, modality: str,
                       outcome: str) -> None:
        self._safe(lambda: self._perr.labels(pipeline_version, provider, modality, outcome).inc())

    def kernel_overhead(self, pipeline_version: str, seconds: float) -> None:
        self._safe(lambda: self._overhead.labels(pipeline_version).observe(seconds))

    def session_started(self, pipeline_version: str) -> None:
        self._safe(lambda: self._active.labels(pipeline_version).inc())

    def session_ended(self, pipeline_version: str) -> None:
        self._safe(lambda: self._active.labels(pipeline_version).dec())

    def node_metric(self, pipeline_version: str, node_id: str, metric: str, value: float) -> None:
        self._safe(lambda: self._custom.labels(pipeline_version, node_id, metric).observe(value))

    def scrape(self) -> bytes:
        """Prometheus text exposition of this registry."""
        return generate_latest(self.registry)
