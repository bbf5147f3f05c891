"""Prometheus metrics behind a small best-effort facade (F-068, F-069, F-104).

Every :class:`RuntimeMetrics` owns its own ``CollectorRegistry`` (tests and
multiple runtimes in one process never collide). Every method does a bounded
in-memory update and swallows its own errors (counted in
``rspp_telemetry_errors_total``): telemetry never blocks or breaks the data or
control path. :meth:`scrape` renders the Prometheus text format for ``/metrics``.

Series (labels): node latency (pipeline_version, node_id, provider), edge
latency / queue depth / drops / merges (pipeline_version, edge_id), cancel
latency (pipeline_version, scope), provider latency / retries / errors
(pipeline_version, node_id, provider, modality[, outcome]), circuit transitions
(pipeline_version, provider, state), budget exhaustions (pipeline_version,
node_id), kernel overhead (pipeline_version), active sessions
(pipeline_version), node-reported values (pipeline_version, node_id, metric)
and, on a registry it creates itself, the process collector
(``process_cpu_seconds_total``, memory) for autoscaling.

Correlation (F-013, NF-008): label values are bounded - pipeline versions and
node/edge/provider ids from the graph, never session or turn ids. The turn a
latency belongs to travels as an exemplar (``turn_id``, ``trace_id`` of its
span) on the histogram bucket, visible in the OpenMetrics exposition
(:meth:`scrape` with ``openmetrics=True``; the Prometheus text format has no
exemplars).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.openmetrics.exposition import generate_latest as _untyped_openmetrics

__all__ = ["OPENMETRICS_CONTENT_TYPE", "RuntimeMetrics"]

#: prometheus-client leaves the OpenMetrics generator unannotated
_generate_openmetrics: Callable[[CollectorRegistry], bytes] = _untyped_openmetrics
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
#: OpenMetrics caps an exemplar's label set at 128 UTF-8 characters
_EXEMPLAR_MAX = 128


def _exemplar(labels: Mapping[str, str | None] | None) -> dict[str, str] | None:
    """A valid exemplar label set, or None (too long or empty: the sample goes without)."""
    if not labels:
        return None
    clean = {k: v for k, v in labels.items() if v}
    if not clean or sum(len(k) + len(v) for k, v in clean.items()) > _EXEMPLAR_MAX:
        return None
    return clean

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
        self._edge = Histogram("rspp_edge_latency_seconds",
                               "Wait of the oldest event queued on an edge, sampled every "
                               "telemetry interval (0 when the edge is empty)",
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
        self._cancels = Counter("rspp_cancels_total", "Accepted cancels by scope and reason",
                                ["pipeline_version", "scope", "reason"], registry=r)
        self._node_cancel = Histogram(
            "rspp_node_cancel_latency_seconds",
            "Cancel acceptance to the node's work of the turn stopped, per node (F-040)",
            ["pipeline_version", "node_id", "mode"], buckets=_FAST_BUCKETS, registry=r)
        prov = ["pipeline_version", "node_id", "provider", "modality"]
        self._prov = Histogram("rspp_provider_latency_seconds", "Provider invocation latency",
                               prov, buckets=_LATENCY_BUCKETS, registry=r)
        self._retries = Counter("rspp_provider_retries_total", "Provider invocation retries",
                                prov, registry=r)
        self._perr = Counter("rspp_provider_errors_total", "Provider invocation errors",
                             [*prov, "outcome"], registry=r)
        self._circuit = Counter("rspp_provider_circuit_transitions_total",
                                "Circuit breaker transitions by the state entered",
                                ["pipeline_version", "provider", "state"], registry=r)
        self._budget = Counter("rspp_budget_exhausted_total",
                               "Budgets exhausted (node_id none: the turn or a provider call)",
                               ["pipeline_version", "node_id"], registry=r)
        self._overhead = Histogram("rspp_kernel_overhead_seconds",
                                   "Kernel scheduling overhead per event", ["pipeline_version"],
                                   buckets=_FAST_BUCKETS, registry=r)
        self._overhead_over = Counter("rspp_kernel_overhead_budget_exceeded_total",
                                      "Telemetry samples whose kernel overhead per event was "
                                      "over the runtime's budget", ["pipeline_version"],
                                      registry=r)
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
                     provider: str = "none", *,
                     exemplar: Mapping[str, str | None] | None = None) -> None:
        ex = _exemplar(exemplar)
        self._safe(lambda: self._node.labels(pipeline_version, node_id, provider)
                   .observe(seconds, ex))

    def edge_latency(self, pipeline_version: str, edge_id: str, seconds: float) -> None:
        self._safe(lambda: self._edge.labels(pipeline_version, edge_id).observe(seconds))

    def queue_depth(self, pipeline_version: str, edge_id: str, depth: int) -> None:
        self._safe(lambda: self._depth.labels(pipeline_version, edge_id).set(depth))

    def edge_drop(self, pipeline_version: str, edge_id: str, count: int = 1) -> None:
        self._safe(lambda: self._drops.labels(pipeline_version, edge_id).inc(count))

    def edge_merge(self, pipeline_version: str, edge_id: str, count: int = 1) -> None:
        self._safe(lambda: self._merges.labels(pipeline_version, edge_id).inc(count))

    def cancel_latency(self, pipeline_version: str, seconds: float, scope: str = "turn", *,
                       exemplar: Mapping[str, str | None] | None = None) -> None:
        ex = _exemplar(exemplar)
        self._safe(lambda: self._cancel.labels(pipeline_version, scope).observe(seconds, ex))

    def node_cancel_latency(self, pipeline_version: str, node_id: str, mode: str,
                            seconds: float) -> None:
        """One node's cancel latency: acceptance -> its in-flight work stopped (or idle)."""
        self._safe(lambda: self._node_cancel.labels(pipeline_version, node_id, mode)
                   .observe(seconds))

    def cancel(self, pipeline_version: str, scope: str, reason: str) -> None:
        """One accepted cancel; ``reason`` is its code (barge_in, user_cancel, timeout, ...)."""
        self._safe(lambda: self._cancels.labels(pipeline_version, scope, reason).inc())

    def provider_latency(self, pipeline_version: str, provider: str, modality: str,
                         seconds: float, *, node_id: str = "none",
                         exemplar: Mapping[str, str | None] | None = None) -> None:
        ex = _exemplar(exemplar)
        self._safe(lambda: self._prov.labels(pipeline_version, node_id, provider, modality)
                   .observe(seconds, ex))

    def provider_retry(self, pipeline_version: str, provider: str, modality: str, *,
                       node_id: str = "none") -> None:
        self._safe(lambda: self._retries.labels(pipeline_version, node_id, provider,
                                                modality).inc())

    def provider_error(self, pipeline_version: str, provider: str, modality: str,
                       outcome: str, *, node_id: str = "none",
                       exemplar: Mapping[str, str | None] | None = None) -> None:
        ex = _exemplar(exemplar)
        self._safe(lambda: self._perr.labels(pipeline_version, node_id, provider, modality,
                                             outcome).inc(1, ex))

    def circuit_transition(self, pipeline_version: str, provider: str, state: str) -> None:
        self._safe(lambda: self._circuit.labels(pipeline_version, provider, state).inc())

    def budget_exhausted(self, pipeline_version: str, node_id: str = "none", *,
                         exemplar: Mapping[str, str | None] | None = None) -> None:
        ex = _exemplar(exemplar)
        self._safe(lambda: self._budget.labels(pipeline_version, node_id).inc(1, ex))

    def kernel_overhead(self, pipeline_version: str, seconds: float) -> None:
        self._safe(lambda: self._overhead.labels(pipeline_version).observe(seconds))

    def kernel_overhead_exceeded(self, pipeline_version: str) -> None:
        self._safe(lambda: self._overhead_over.labels(pipeline_version).inc())

    def session_started(self, pipeline_version: str) -> None:
        self._safe(lambda: self._active.labels(pipeline_version).inc())

    def session_ended(self, pipeline_version: str) -> None:
        self._safe(lambda: self._active.labels(pipeline_version).dec())

    def node_metric(self, pipeline_version: str, node_id: str, metric: str, value: float) -> None:
        self._safe(lambda: self._custom.labels(pipeline_version, node_id, metric).observe(value))

    def scrape(self, *, openmetrics: bool = False) -> bytes:
        """Prometheus text exposition of this registry; OpenMetrics (with exemplars) on ask."""
        if openmetrics:
            return _generate_openmetrics(self.registry)
        return generate_latest(self.registry)
