"""Time-correctness metrics of ``rspp serve`` (NF-018), read at scrape time.

``rspp_ingress_media_skew_seconds{transport}``: the media-to-runtime mapping error of
every ingress frame of the ended connections (a histogram: ``histogram_quantile(0.99,
...)`` is the p99 to compare with ``--media-skew-ms``); ``rspp_ingress_media_late_frames``
counts the frames beyond that bound (each re-anchored its connection's mapping);
``rspp_clock_skew_corrections{action}`` counts the sessions' wall-clock corrections
(``corrected_forward`` / ``absorbed_backward``, beyond ``--max-skew-ms``).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from rspp.transports import MediaSkewHistogram

__all__ = ["SkewCollector"]

#: the histogram's buckets (ms): edges of MediaSkewHistogram's bins
_BUCKETS_MS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
               10_000.0)
_ACTIONS = ("corrected_forward", "absorbed_backward")


class SkewCollector(Collector):
    """The runtime's mapping errors by transport kind and its clock-skew corrections."""

    def __init__(self) -> None:
        self.media: dict[str, MediaSkewHistogram] = {}
        self.clock: dict[str, int] = dict.fromkeys(_ACTIONS, 0)

    def media_skew(self, transport: str, hist: MediaSkewHistogram) -> None:
        """An ended connection's mapping errors."""
        self.media.setdefault(transport, MediaSkewHistogram()).merge(hist)

    def clock_skew(self, action: str) -> None:
        """One wall-clock correction of a session's timebase."""
        if action in self.clock:
            self.clock[action] += 1

    def collect(self) -> Iterator[Metric]:
        hist = HistogramMetricFamily(
            "rspp_ingress_media_skew_seconds", "How late ingress audio arrived versus its "
            "media time (media-to-runtime mapping error; early audio counts 0), per frame of "
            "the ended connections", labels=["transport"])
        late = CounterMetricFamily(
            "rspp_ingress_media_late_frames", "Ingress frames later than the media-to-runtime "
            "bound (--media-skew-ms): each re-anchored its connection's mapping",
            labels=["transport"])
        for kind, h in sorted(self.media.items()):
            cum = dict(h.cumulative())
            buckets = [(f"{ms / 1000.0:g}", cum[ms]) for ms in _BUCKETS_MS]
            buckets.append(("+Inf", h.count))
            hist.add_metric([kind], buckets, h.sum_ms / 1000.0)
            late.add_metric([kind], h.late)
        clock = CounterMetricFamily(
            "rspp_clock_skew_corrections", "Wall-clock corrections of the sessions' timebases "
            "(beyond --max-skew-ms), by action", labels=["action"])
        for action, n in self.clock.items():
            clock.add_metric([action], n)
        yield from (hist, late, clock)
