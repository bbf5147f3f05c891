"""Process-wide Prometheus metrics of ``rspp serve`` (F-104, F-108).

One registry per runtime process: the per-session series of
:class:`~rspp.observability.RuntimeMetrics` (node/edge latency, queue depths,
drops, cancel latency, provider series, active sessions by pipeline version)
plus the server's own: sessions opened/refused, turns by terminal outcome,
turn latency histograms (turn-open decision, first output, end to end),
egress lateness for transports, ingress jitter-buffer outcomes and hold (per ended
connection, by transport kind), ingress media-to-runtime mapping errors and wall-clock
corrections (NF-018), and readiness. Labels are bounded: pipeline
version, a fixed outcome/phase vocabulary and refusal codes; never a session
or turn id.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rspp.contracts import ControlSignal, SignalName
from rspp.kernel import ExecutionPool
from rspp.observability import RuntimeMetrics
from rspp.providers import BatchingCollector, BatchStats
from rspp.server._skew_metrics import SkewCollector

__all__ = ["ServerMetrics"]


class _Admission(Protocol):
    def decisions(self) -> dict[str, dict[tuple[str, str], int]]: ...

    def active_sessions(self) -> dict[str, int]: ...

    def open_turns(self) -> dict[str, int] | None: ...

    def capacity_control(self) -> tuple[dict[str, tuple[int, int | None]], dict[str, int]]: ...


class _PoolCollector(Collector):
    """The shared execution pool's slots and fairness, read at scrape time (F-105, F-174)."""

    def __init__(self, pool: ExecutionPool, per_fairness_key: bool) -> None:
        self.pool = pool
        self.per_fairness_key = per_fairness_key

    def collect(self) -> Iterator[Metric]:
        active = GaugeMetricFamily("rspp_pool_active", "Pool slots in use", labels=["key"])
        waiting = GaugeMetricFamily("rspp_pool_waiting", "Work queued for a pool slot",
                                    labels=["key"])
        limit = GaugeMetricFamily("rspp_pool_limit", "Pool slots", labels=["key"])
        granted = CounterMetricFamily("rspp_pool_granted", "Pool slots granted per fairness "
                                      "key (the tenant)", labels=["key", "fairness_key"])
        overtaken = GaugeMetricFamily(
            "rspp_pool_max_overtaken", "Most slots granted to other fairness keys while one "
            "of this key's requests waited (round-robin bounds it by the other keys waiting; "
            "above that is starvation, NF-033)", labels=["key", "fairness_key"])
        for key in self.pool.keys():
            st = self.pool.stats(key)
            active.add_metric([key], st["active"] or 0)
            waiting.add_metric([key], self.pool.waiting(key))
            if st["limit"] is not None:
                limit.add_metric([key], st["limit"])
            if self.per_fairness_key:
                for fk, fair in sorted(self.pool.fairness(key).items()):
                    granted.add_metric([key, fk], fair.granted)
                    overtaken.add_metric([key, fk], fair.max_overtaken)
        yield from (active, waiting, limit, granted, overtaken)


class _AdmissionCollector(Collector):
    """Per-tenant quota metrics read from the runtime's admission at scrape time (F-050)."""

    def __init__(self, admission: _Admission) -> None:
        self.admission = admission

    def collect(self) -> Iterator[Metric]:
        decided = CounterMetricFamily(
            "rspp_admission_decisions", "Runtime admission decisions per tenant, at session "
            "start and per turn (quotas: concurrent sessions, sessions and turns per minute)",
            labels=["tenant", "at", "outcome"])
        for tenant, counts in sorted(self.admission.decisions().items()):
            for (at, outcome), n in sorted(counts.items()):
                decided.add_metric([tenant, at, outcome], n)
        yield decided
        active = GaugeMetricFamily("rspp_admission_active_sessions",
                                   "Sessions of each tenant admitted on this runtime",
                                   labels=["tenant"])
        for tenant, n in sorted(self.admission.active_sessions().items()):
            active.add_metric([tenant], n)
        yield active
        turns = self.admission.open_turns()
        if turns is not None:
            open_ = GaugeMetricFamily("rspp_capacity_open_turns", "Turns holding this "
                                      "runtime's turn capacity, by session priority (F-172)",
                                      labels=["priority"])
            for priority, n in sorted(turns.items()):
                open_.add_metric([priority], n)
            yield open_
        yield from _capacity_control(*self.admission.capacity_control())


def _capacity_control(loads: dict[str, tuple[int, int | None]],
                      deferred: dict[str, int]) -> Iterator[Metric]:
    """The capacity model's bounded loads, thresholds and deferrals by threshold (F-172)."""
    if not loads:
        return
    load = GaugeMetricFamily("rspp_capacity_load", "Each load the capacity model bounds "
                             "(open_turns, queue_depth, provider:TYPE, cpu)", labels=["resource"])
    threshold = GaugeMetricFamily("rspp_capacity_threshold", "The load at which new turns "
                                  "are deferred", labels=["resource"])
    defers = CounterMetricFamily("rspp_capacity_deferrals", "Turns deferred at admission, "
                                 "by the threshold that was reached", labels=["threshold"])
    for name, (value, limit) in sorted(loads.items()):
        load.add_metric([name], value)
        if limit is not None:
            threshold.add_metric([name], limit)
    for name, n in sorted(deferred.items()):
        defers.add_metric([name], n)
    yield from (load, threshold, defers)

class _CapacityControl(Protocol):
    probes: tuple[Any, ...]
    tripped: set[str]
    events: dict[tuple[str, str], int]


class _CapacityEventCollector(Collector):
    def __init__(self, control: _CapacityControl) -> None:
        self.control = control

    def collect(self) -> Iterator[Metric]:
        tripped = GaugeMetricFamily("rspp_capacity_tripped", "1 while a headroom threshold "
                                    "is tripped (new turns deferred)", labels=["resource"])
        for probe in self.control.probes:
            tripped.add_metric([probe.name], 1 if probe.name in self.control.tripped else 0)
        events = CounterMetricFamily("rspp_capacity_events", "Capacity-control events: a "
                                     "headroom threshold tripped (defer) or cleared (admit)",
                                     labels=["resource", "decision"])
        for (resource, decision), n in sorted(self.control.events.items()):
            events.add_metric([resource, decision], n)
        yield from (tripped, events)


_TURN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
_LATE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64)
_HOLD_BUCKETS = (0.0, 0.02, 0.04, 0.08, 0.12, 0.16, 0.24, 0.32, 0.64, 1.28, 2.56)
_TRANSPORTS = frozenset({"websocket", "telephony", "webrtc", "livekit"})
#: jitter-buffer outcomes counted per frame (JitterStats field -> label)
_JITTER = (("reordered", "reordered"), ("duplicates", "duplicate"),
           ("too_late", "too_late"), ("lost", "lost"), ("concealed", "concealed"),
           ("discontinuities", "discontinuity"))
#: abort reasons kept as label values; anything else is counted as ``other``
_ABORTS = frozenset({"cancelled", "authority_loss", "budget_exhausted", "session_end",
                     "transport_disconnect", "provider_error", "runtime_error",
                     "recording_evidence_unavailable"})
_REFUSALS = frozenset({"token_invalid", "token_wrong_session", "token_wrong_runtime",
                       "token_wrong_tenant", "session_ended", "draining", "at_capacity",
                       "session_live", "control_plane_unreachable", "lease_refused",
                       "stale_epoch_reject", "spec_invalid", "assembly_failed", "not_ready"})


class ServerMetrics:
    """The runtime process's metrics; every update is bounded and never raises."""

    def __init__(self) -> None:
        self.runtime = RuntimeMetrics()
        r = self.runtime.registry
        self._opened = Counter("rspp_sessions_opened_total", "Sessions started", registry=r)
        self._live = Gauge("rspp_sessions_live", "Sessions live in this runtime", registry=r)
        self._refused = Counter("rspp_sessions_refused_total", "Sessions refused at start",
                                ["reason"], registry=r)
        self._turns = Counter("rspp_turns_total", "Turns by terminal outcome",
                              ["pipeline_version", "outcome"], registry=r)
        self._latency = Histogram("rspp_turn_latency_seconds", "Turn latency by phase",
                                  ["pipeline_version", "phase"], buckets=_TURN_BUCKETS,
                                  registry=r)
        self._late = Histogram("rspp_egress_lateness_seconds",
                               "How late egress frames left versus their real-time slot",
                               ["transport"], buckets=_LATE_BUCKETS, registry=r)
        self._jitter = Counter("rspp_ingress_jitter_frames_total",
                               "Numbered ingress frames by jitter-buffer outcome (F-087)",
                               ["transport", "outcome"], registry=r)
        self._hold = Histogram("rspp_ingress_jitter_hold_max_seconds",
                               "Longest a connection's jitter buffer held a frame (the "
                               "latency it added)", ["transport"], buckets=_HOLD_BUCKETS,
                               registry=r)
        self._ready = Gauge("rspp_runtime_ready", "1 when registered and not draining",
                            registry=r)
        self._errors = Counter("rspp_server_metric_errors_total", "Dropped metric updates",
                               registry=r)
        self._moved = Counter("rspp_sessions_moved_total",
                              "Sessions that moved between runtimes: resumed here after a "
                              "migration/failover, handed off on drain, or lost here to a "
                              "newer lease epoch", ["how"], registry=r)
        self._handoffs = Counter("rspp_lease_handoffs_total",
                                 "Two-phase hand-offs of this runtime's leases, by how the "
                                 "runtime learned of them: pushed on its control channel or "
                                 "at a lease renewal (the fallback)", ["learned"], registry=r)
        self._start = Histogram("rspp_session_start_seconds",
                                "Session start at this runtime, by kind (new, or resumed "
                                "after a move) and step: the control-plane reads (record, "
                                "lease, checkpoint) and the whole start",
                                ["kind", "step"], buckets=_TURN_BUCKETS, registry=r)
        self._fenced = Counter("rspp_outputs_fenced_total",
                               "Outputs withheld because this runtime's lease may have "
                               "passed to another runtime (never sent)", registry=r)
        self._frozen = Counter("rspp_turns_on_frozen_snapshots_total",
                               "Turns opened on the expired snapshots of the last turn-start "
                               "bundle: the control plane unreachable, the lease held "
                               "(issue 14)", registry=r)
        self._gates_sent = Counter("rspp_gate_samples_sent_total",
                                   "Gate samples the control plane accepted", registry=r)
        self._gates_dropped = Counter("rspp_gate_samples_dropped_total",
                                      "Gate samples dropped (queue full while the control "
                                      "plane was slow or unreachable)", registry=r)
        self._gates_queued = Gauge("rspp_gate_samples_queued", "Gate samples waiting to be sent",
                                   registry=r)
        self._gates_errors = Counter("rspp_gate_sampler_errors_total",
                                     "Records the gate sampler could not evaluate", registry=r)
        #: media-to-runtime mapping errors and wall-clock corrections (NF-018)
        self.skew = SkewCollector()
        r.register(self.skew)

    def _safe(self, fn: Any) -> None:
        try:
            fn()
        except Exception:  # metrics never break a session
            self._errors.inc()

    def watch_pool(self, pool: ExecutionPool, *, per_fairness_key: bool) -> None:
        """Export the shared execution pool (per tenant when tenants are its fairness keys)."""
        self.runtime.registry.register(_PoolCollector(pool, per_fairness_key))

    def watch_admission(self, admission: _Admission) -> None:
        """Export the runtime admission's per-tenant decisions and sessions (F-050)."""
        self.runtime.registry.register(_AdmissionCollector(admission))

    def watch_batching(self, stats: BatchStats) -> None:
        """Export the runtime batcher's batch sizes and waits (F-051)."""
        self.runtime.registry.register(BatchingCollector(stats))

    def watch_capacity(self, control: _CapacityControl) -> None:
        """Export the capacity control's tripped thresholds and events (F-172)."""
        if control.probes:
            self.runtime.registry.register(_CapacityEventCollector(control))

    def session_opened(self) -> None:
        self._safe(self._opened.inc)
        self._safe(self._live.inc)

    def session_closed(self) -> None:
        self._safe(self._live.dec)

    def moved(self, how: str) -> None:
        label = how if how in ("resumed", "handed_off", "authority_lost") else "other"
        self._safe(lambda: self._moved.labels(label).inc())

    def handoff(self, learned: str) -> None:
        label = learned if learned in ("push", "renewal") else "other"
        self._safe(lambda: self._handoffs.labels(label).inc())

    def session_start(self, resumed: bool, step: str, seconds: float) -> None:
        """How long a session start took up to ``step`` (``control_plane``/``total``)."""
        kind = "resumed" if resumed else "new"
        self._safe(lambda: self._start.labels(kind, step).observe(max(seconds, 0.0)))

    def fenced(self, outputs: int) -> None:
        if outputs > 0:
            self._safe(lambda: self._fenced.inc(outputs))

    def frozen_turn(self) -> None:
        self._safe(self._frozen.inc)

    def refused(self, code: str) -> None:
        label = code if code in _REFUSALS else "other"
        self._safe(lambda: self._refused.labels(label).inc())

    def ready(self, ready: bool) -> None:
        self._safe(lambda: self._ready.set(1 if ready else 0))

    def egress_lateness(self, transport: str, seconds: float) -> None:
        """Transports report how late each paced frame left (bounded transport names)."""
        self._safe(lambda: self._late.labels(transport).observe(max(seconds, 0.0)))

    def jitter(self, transport: str, stats: Any) -> None:
        """An ended connection's jitter-buffer counters (a ``JitterStats``)."""
        label = transport if transport in _TRANSPORTS else "other"

        def update() -> None:
            for name, outcome in _JITTER:
                n = getattr(stats, name)
                if n:
                    self._jitter.labels(label, outcome).inc(n)
            self._hold.labels(label).observe(stats.hold_max_ms / 1000.0)

        self._safe(update)

    def media_skew(self, transport: str, hist: Any) -> None:
        """An ended connection's media-to-runtime mapping errors (a ``MediaSkewHistogram``)."""
        label = transport if transport in _TRANSPORTS else "other"
        self._safe(lambda: self.skew.media_skew(label, hist))

    def clock_skew(self, event: Any) -> None:
        """A session's wall-clock correction (a ``SkewEvent``)."""
        self._safe(lambda: self.skew.clock_skew(event.action))

    def gate_samples_sent(self, n: int) -> None:
        self._safe(lambda: self._gates_sent.inc(n))

    def gate_samples_dropped(self, n: int) -> None:
        self._safe(lambda: self._gates_dropped.inc(n))

    def gate_samples_queued(self, n: int) -> None:
        self._safe(lambda: self._gates_queued.set(n))

    def gate_sampler_error(self) -> None:
        self._safe(self._gates_errors.inc)

    def on_signal(self, live: Any, rec: ControlSignal) -> None:
        """Count terminal outcomes; observe the turn's latencies when it closes."""
        if rec.signal not in (SignalName.COMMIT, SignalName.ABORT, SignalName.CLOSE):
            return
        pv = live.session.pipeline_version

        def update() -> None:
            if rec.signal is SignalName.COMMIT:
                self._turns.labels(pv, "commit").inc()
            elif rec.signal is SignalName.ABORT:
                reason = rec.reason or "aborted"
                self._turns.labels(pv, reason if reason in _ABORTS else "other").inc()
            else:
                t = live.driver.timings.get(rec.turn_id or "")
                if t is None:
                    return
                for phase, ms in (("turn_open_decision", t.turn_open_decision_ms),
                                  ("first_output", t.first_output_ms),
                                  ("end_to_end", t.end_to_end_ms)):
                    if ms is not None:
                        self._latency.labels(pv, phase).observe(ms / 1000)

        self._safe(update)

    def scrape(self, *, openmetrics: bool = False) -> bytes:
        return self.runtime.scrape(openmetrics=openmetrics)
