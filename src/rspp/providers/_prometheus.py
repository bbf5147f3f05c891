"""Prometheus exporter for provider metrics (F-065): same names and labels for every
adapter; provider-specific detail only in the ``error_code`` label value. Dynamic batching
(F-051) is read from its :class:`~rspp.providers.BatchStats` at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from rspp.providers._batching import BatchStats
from rspp.providers._invocation import ProviderInvocation

__all__ = ["BatchingCollector", "PrometheusMetricsSink"]

_MS_BUCKETS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


class PrometheusMetricsSink:
    """A :class:`~rspp.providers.MetricsSink` writing ``rspp_provider_*`` series."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import REGISTRY

        reg = registry if registry is not None else REGISTRY
        labels = ("provider", "kind", "outcome")
        self.invocations = Counter(
            "rspp_provider_invocations", "Provider invocations by outcome", labels, registry=reg
        )
        self.errors = Counter(
            "rspp_provider_errors",
            "Failed provider invocations by normalised outcome and provider error code",
            ("provider", "kind", "outcome", "error_code"),
            registry=reg,
        )
        self.retries = Counter(
            "rspp_provider_retries",
            "Attempts that were retries",
            ("provider", "kind"),
            registry=reg,
        )
        self.latency = Histogram(
            "rspp_provider_latency_ms",
            "Invocation latency",
            labels,
            buckets=_MS_BUCKETS,
            registry=reg,
        )
        self.first_output = Histogram(
            "rspp_provider_time_to_first_output_ms",
            "Time to first token/audio/transcript",
            ("provider", "kind"),
            buckets=_MS_BUCKETS,
            registry=reg,
        )
        self.payload = Counter(
            "rspp_provider_payload_bytes",
            "Payload bytes",
            ("provider", "kind", "direction"),
            registry=reg,
        )

    def record(self, invocation: ProviderInvocation) -> None:
        labels = invocation.labels()
        provider, kind = labels["provider"], labels["kind"]
        m = invocation.metrics
        self.invocations.labels(**labels).inc()
        if invocation.outcome is not None and invocation.outcome.is_failure:
            code = invocation.error_code or invocation.outcome.value
            self.errors.labels(error_code=code, **labels).inc()
        if m.retries:
            self.retries.labels(provider, kind).inc()
        if m.latency_ms is not None:
            self.latency.labels(**labels).observe(m.latency_ms)
        if m.time_to_first_output_ms is not None:
            self.first_output.labels(provider, kind).observe(m.time_to_first_output_ms)
        self.payload.labels(provider, kind, "in").inc(m.bytes_in)
        self.payload.labels(provider, kind, "out").inc(m.bytes_out)


class BatchingCollector(Collector):
    """``rspp_provider_batch_size`` (calls per batched request; its count is the requests,
    its sum the calls) and ``rspp_provider_batch_wait_ms`` (how long each call waited to be
    sent), per provider id (F-051)."""

    def __init__(self, stats: BatchStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        sizes = HistogramMetricFamily("rspp_provider_batch_size",
                                      "Calls carried by each batched provider request",
                                      labels=["provider"])
        waits = HistogramMetricFamily("rspp_provider_batch_wait_ms",
                                      "Time a call waited in the batcher before its request "
                                      "was sent (ms)", labels=["provider"])
        for family, table in ((sizes, self.stats.sizes), (waits, self.stats.waits)):
            for provider, hist in sorted(table.items()):
                family.add_metric([provider], hist.cumulative(), hist.total)
        yield sizes
        yield waits
