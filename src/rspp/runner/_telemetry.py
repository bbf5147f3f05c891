"""Feed a running session's telemetry into metrics, spans and JSON logs (F-068..F-070, F-104).

:class:`SessionTelemetry` sits above both the kernel and ``rspp.observability``
(the runtime never imports observability). The runner connects it to:

* the session's record stream (``on_record``: the same callable that feeds the
  timeline recorder) - ``turn_open``/``commit``/``abort``/``close`` control
  signals open and end turn spans, ``close`` also observes the turn's cancel
  latency and harvests its provider invocations; ``drop_notice`` and error
  telemetry become JSON log lines with the correlation ids;
* ``SessionActor.node_observer`` (``on_node``) - every ``process`` call feeds the
  per-node latency histogram and a per-(turn, node) span;
* a sampler task (``run``) that reads the edge buffers' depth, drop and merge
  counters while the session runs and once more at the end.

Correlation (F-013, F-067, NF-008): spans and log lines carry ``session_id``,
``turn_id`` and ``pipeline_version`` (plus node/edge/provider ids); metric labels
stay bounded (pipeline version, node/edge/provider ids) and the turn travels as
an exemplar (``turn_id`` and the ``trace_id`` of the session's trace). Circuit
transitions and budget exhaustions (F-057, F-059) become counters and log lines.

Every entry point swallows its own errors (counted as ``rspp_telemetry_errors_total``
through :class:`RuntimeMetrics`): telemetry never blocks or raises into the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import Span, TracerProvider

from rspp.contracts import ControlSignal, EventRecord
from rspp.kernel import SessionTelemetry as KernelTelemetry
from rspp.observability import LogLimit, RuntimeMetrics, held_summary, log_context

if TYPE_CHECKING:
    from rspp.observability import Redactor

__all__ = ["SessionTelemetry", "TelemetryFiles", "TelemetryTargets"]

_TERMINAL = ("commit", "abort")
_LOG = logging.getLogger("rspp.session")


def _wall_from_mono(mono_ns: int) -> int:
    """Epoch ns for a ``time.monotonic_ns`` reading (span timestamps are epoch based)."""
    return time.time_ns() - (time.monotonic_ns() - mono_ns)


@dataclass(slots=True)
class TelemetryTargets:
    """Where one session's telemetry goes (defaults: a fresh registry, the global tracer)."""

    metrics: RuntimeMetrics = field(default_factory=RuntimeMetrics)
    tracer_provider: TracerProvider | None = None
    logger: logging.Logger = _LOG
    sample_interval_s: float = 0.05
    #: kernel overhead budget per event (seconds): a sample above it counts in
    #: ``rspp_kernel_overhead_budget_exceeded_total`` and a WARNING logs each crossing
    kernel_overhead_budget_s: float | None = None
    #: ``shed`` WARNING lines per session: the first ``shed_lines`` of each
    #: ``shed_interval_s`` window one per shed, the rest one summary line counted by edge
    #: (read on ``clock``); the records and ``rspp_edge_drops_total`` count every one
    shed_lines: int = 5
    shed_interval_s: float = 10.0
    clock: Callable[[], float] = time.monotonic


@dataclass(slots=True)
class _NodeSpan:
    start_ns: int
    end_ns: int
    events: int = 0
    busy_ns: int = 0


class SessionTelemetry:
    """One session's telemetry adapter; all methods are best effort and never raise."""

    def __init__(self, targets: TelemetryTargets, *, session_id: str,
                 pipeline_version: str) -> None:
        self.targets = targets
        self.metrics = targets.metrics
        self.session_id = session_id
        self.pipeline_version = pipeline_version
        source = targets.tracer_provider or trace.get_tracer_provider()
        self._tracer = source.get_tracer("rspp")
        self._log = targets.logger
        self._session_span: Span | None = None
        self._turns: dict[str, Span] = {}
        self._closed_turns: set[str] = set()
        self._nodes: dict[tuple[str | None, str], _NodeSpan] = {}
        self._node_provider: dict[str, str] = {}
        self._seen_invocations: set[str] = set()
        self._edge_seen: dict[str, tuple[int, int]] = {}
        self._kernel_seen = (0, 0)  # (kernel ns, ingress events) at the last sample
        self._over_budget = False
        self._session: Any = None
        self._controllers: deque[tuple[str | None, Any]] = deque(maxlen=1024)
        self._error_counted: set[str] = set()
        self._cancel_ms: Callable[[str], float | None] | None = None
        self._stopped = False
        self._sheds = LogLimit(first=targets.shed_lines, interval_s=targets.shed_interval_s,
                               clock=targets.clock)
        self.errors = 0

    # ---------------------------------------------------------------- helpers
    def _attrs(self, turn_id: str | None = None, **extra: str | int | None) -> dict[str, Any]:
        base: dict[str, Any] = {"rspp.session_id": self.session_id,
                                "rspp.pipeline_version": self.pipeline_version}
        if turn_id is not None:
            base["rspp.turn_id"] = turn_id
        base.update({f"rspp.{k}": v for k, v in extra.items() if v is not None})
        return base

    def _exemplar(self, turn_id: str | None) -> dict[str, str | None] | None:
        """Exemplar labels linking a sample to its turn and trace (None between turns)."""
        if turn_id is None:
            return None
        span = self._turns.get(turn_id) or self._session_span
        ctx = span.get_span_context() if span is not None else None
        trace_id = trace.format_trace_id(ctx.trace_id) if ctx is not None and ctx.is_valid else None
        return {"turn_id": turn_id, "trace_id": trace_id}

    def _guard(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:  # telemetry must never raise into the session
            self.errors += 1

    def _emit(self, level: int, message: str, *, turn_id: str | None = None,
              node_id: str | None = None, edge_id: str | None = None, **fields: object) -> None:
        try:
            if not self._log.isEnabledFor(level):
                return
            span = self._parent(turn_id)
            ctx = span.get_span_context() if span is not None else None
            if ctx is not None and ctx.is_valid:  # the same trace id the spans carry
                fields.setdefault("trace_id", trace.format_trace_id(ctx.trace_id))
            with log_context(session_id=self.session_id, pipeline_version=self.pipeline_version,
                             turn_id=turn_id, node_id=node_id, edge_id=edge_id):
                self._log.log(level, message, extra=fields)
        except Exception:  # a broken log pipeline must not skip spans or metrics
            self.errors += 1

    # ---------------------------------------------------------------- binding
    def attach(self, session: Any, *, cancel_ms: Callable[[str], float | None] | None = None,
               node_providers: dict[str, str] | None = None) -> None:
        """Subscribe to ``session`` (node timings); ``cancel_ms(turn_id)`` reads cancel latency."""
        self._session = session
        self._cancel_ms = cancel_ms
        self._node_provider = dict(node_providers or {})
        session.node_observer = self.on_node
        for host in getattr(session, "hosts", {}).values():  # ctx.telemetry.metric() values
            tel = getattr(getattr(host.node, "ctx", None), "telemetry", None)
            if isinstance(tel, KernelTelemetry):
                tel.sink = self.on_node_metric

    def started(self) -> None:
        def go() -> None:
            self._session_span = self._tracer.start_span(
                "rspp.session", attributes=self._attrs())
            self.metrics.session_started(self.pipeline_version)
            self._emit(logging.INFO, "session started")
        self._guard(go)

    # ------------------------------------------------------------ subscribers
    def on_node_cancel(self, node_id: str, mode: str, ms: float) -> None:
        """A node's work of a cancelled turn stopped ``ms`` after the cancel (F-040)."""
        self._guard(lambda: self.metrics.node_cancel_latency(self.pipeline_version, node_id,
                                                             mode, ms / 1000.0))

    def on_node_metric(self, node_id: str, name: str, value: float) -> None:
        """A value a node reported with ``ctx.telemetry.metric()`` (``rspp_node_metric``)."""
        self._guard(lambda: self.metrics.node_metric(self.pipeline_version, node_id, name,
                                                     float(value)))

    def on_controller(self, turn_id: str | None, controller: Any) -> None:
        """``NodeServices.on_controller``: a provider controller was created."""
        self._controllers.append((turn_id, controller))

    def on_node(self, node_id: str, turn_id: str | None, elapsed_ns: int) -> None:
        """``SessionActor.node_observer``: one finished ``process`` call."""
        try:
            self.metrics.node_latency(self.pipeline_version, node_id, elapsed_ns / 1e9,
                                      self._node_provider.get(node_id, "none"),
                                      exemplar=self._exemplar(turn_id))
            now = time.time_ns()
            key = (turn_id, node_id)
            ns = self._nodes.get(key)
            if ns is None:
                ns = self._nodes[key] = _NodeSpan(start_ns=now - elapsed_ns, end_ns=now)
            ns.end_ns = now
            ns.events += 1
            ns.busy_ns += elapsed_ns
        except Exception:
            self.errors += 1

    def on_record(self, rec: object, payload: object = None) -> None:
        """Every record the session emits (signals, transitions, telemetry lane)."""
        if isinstance(rec, ControlSignal):
            self._guard(lambda: self._signal(rec))
        elif isinstance(rec, EventRecord) and ":error:" in rec.event_id:
            self._guard(lambda: self._emit(logging.WARNING, f"node error {rec.reason}",
                                           turn_id=rec.turn_id, node_id=rec.node_id,
                                           edge_id=rec.edge_id))

    def _signal(self, rec: ControlSignal) -> None:
        name = rec.signal.value if hasattr(rec.signal, "value") else str(rec.signal)
        tid = rec.turn_id
        if name == "turn_open" and tid is not None and tid not in self._turns:
            ctx = trace.set_span_in_context(self._session_span) if self._session_span else None
            self._turns[tid] = self._tracer.start_span(
                "rspp.turn", context=ctx, attributes=self._attrs(tid))
            self._emit(logging.INFO, "turn opened", turn_id=tid)
        elif name in _TERMINAL and tid is not None:
            span = self._turns.get(tid)
            if span is not None:
                span.set_attribute("rspp.terminal", name)
                if rec.reason:
                    span.set_attribute("rspp.reason", rec.reason)
            self._emit(logging.INFO, f"turn {name}", turn_id=tid, reason=rec.reason)
        elif name == "close" and tid is not None:
            self._close_turn(tid)
        elif name == "provider_error":
            self._provider_error(rec)
        elif name == "drop_notice":
            self._emit(logging.INFO, "events dropped", turn_id=tid, edge_id=rec.edge_id,
                       node_id=rec.node_id, reason=rec.reason)
        elif name == "circuit_event":
            self._circuit(rec)
        elif name == "budget_exhausted":
            self.metrics.budget_exhausted(self.pipeline_version, rec.node_id or "none",
                                          exemplar=self._exemplar(tid))
            self._emit(logging.WARNING, "budget exhausted", turn_id=tid, node_id=rec.node_id,
                       provider_invocation_id=rec.provider_invocation_id, reason=rec.reason)
        elif name == "cancel":  # reason "<code>:<mode>", e.g. "user_cancel:hard" (F-035)
            code = (rec.reason or "unknown").split(":", 1)[0]
            scope = rec.scope.value if rec.scope is not None else "turn"
            self.metrics.cancel(self.pipeline_version, scope, code)
            self._emit(logging.INFO, name, turn_id=tid, node_id=rec.node_id, reason=rec.reason)
        elif name in ("barge_in", "fallback", "provider_switch"):
            self._emit(logging.INFO, name, turn_id=tid, node_id=rec.node_id, reason=rec.reason)
        elif name == "shed":  # overload surfaces in the logs (NF-006), bounded
            verdict = self._sheds.admit(rec.edge_id or "none")
            if verdict.held is not None:
                self._shed_summary(verdict.held)
            if verdict.full:
                self._emit(logging.WARNING, name, turn_id=tid, node_id=rec.node_id,
                           edge_id=rec.edge_id, reason=rec.reason)
        elif name == "degrade":  # a posture change: rare, each one logged
            self._emit(logging.WARNING, name, turn_id=tid, node_id=rec.node_id,
                       edge_id=rec.edge_id, reason=rec.reason)

    def _shed_summary(self, held: dict[str, int]) -> None:
        self._emit(logging.WARNING, f"session {self.session_id}: "
                   f"{held_summary('shed', held)}", shed_held=sum(held.values()))

    # ------------------------------------------------------------------ turns
    def _close_turn(self, tid: str) -> None:
        if tid in self._closed_turns:
            return
        self._closed_turns.add(tid)
        self.harvest_providers()
        if self._cancel_ms is not None:
            ms = self._cancel_ms(tid)
            if ms is not None:
                self.metrics.cancel_latency(self.pipeline_version, ms / 1000.0, "turn",
                                            exemplar=self._exemplar(tid))
                span = self._turns.get(tid)
                if span is not None:
                    span.set_attribute("rspp.cancel_fence_ms", float(ms))
        self._end_nodes(tid)
        span = self._turns.pop(tid, None)
        if span is not None:
            span.end()
        self._emit(logging.INFO, "turn closed", turn_id=tid)

    def _parent(self, turn_id: str | None) -> Span | None:
        return (self._turns.get(turn_id) if turn_id is not None else None) or self._session_span

    def _end_nodes(self, turn_id: str | None) -> None:
        for key in [k for k in self._nodes if k[0] == turn_id]:
            ns = self._nodes.pop(key)
            parent = self._parent(turn_id)
            ctx = trace.set_span_in_context(parent) if parent is not None else None
            span = self._tracer.start_span(
                f"rspp.node {key[1]}", context=ctx, start_time=ns.start_ns,
                attributes={**self._attrs(turn_id, node_id=key[1]), "rspp.events": ns.events,
                            "rspp.busy_ms": ns.busy_ns / 1e6})
            span.end(end_time=max(ns.end_ns, ns.start_ns))

    # -------------------------------------------------------------- providers
    def harvest_providers(self) -> None:
        """Observe every finished provider invocation not seen yet (latency, retries, errors)."""
        for turn_id, ctl in list(self._controllers):
            node_id = getattr(getattr(ctl, "context", None), "node_id", None)
            for inv in list(getattr(ctl, "invocations", ())):
                if inv.outcome is None or inv.invocation_id in self._seen_invocations:
                    continue
                self._seen_invocations.add(inv.invocation_id)
                try:
                    self._provider(inv, node_id, turn_id)
                except Exception:  # never raise into the session
                    self.errors += 1

    @staticmethod
    def _fields(reason: str | None) -> dict[str, str]:
        """``key=value`` words of an RK-11 reason (``provider=P outcome=O ...``)."""
        return dict(p.split("=", 1) for p in (reason or "").split() if "=" in p)

    def _circuit(self, rec: ControlSignal) -> None:
        """A circuit transition (F-057): counter by the state entered, and a log line."""
        fields = self._fields(rec.reason)
        pid, state = fields.get("provider", "unknown"), fields.get("state", "unknown")
        self.metrics.circuit_transition(self.pipeline_version, pid, state)
        self._emit(logging.WARNING if state == "open" else logging.INFO,
                   f"circuit {state} for provider {pid}", turn_id=rec.turn_id,
                   node_id=rec.node_id, provider=pid, reason=rec.reason)

    def _provider_error(self, rec: ControlSignal) -> None:
        """Count a failed attempt live (``provider=P outcome=O ...`` reason, RK-11)."""
        fields = self._fields(rec.reason)
        pid, outcome = fields.get("provider", "unknown"), fields.get("outcome", "error")
        modality = self._modality(pid)
        inv_id = rec.provider_invocation_id
        if inv_id is not None:
            self._error_counted.add(inv_id)
        self.metrics.provider_error(self.pipeline_version, pid, modality, outcome,
                                    node_id=rec.node_id or "none",
                                    exemplar=self._exemplar(rec.turn_id))
        self._emit(logging.WARNING, f"provider {pid} failed: {outcome}", turn_id=rec.turn_id,
                   node_id=rec.node_id, provider=pid, provider_invocation_id=inv_id,
                   reason=rec.reason)

    def _modality(self, provider_id: str) -> str:
        for _, ctl in self._controllers:
            for inv in getattr(ctl, "invocations", ()):
                if inv.provider_id == provider_id:
                    return str(inv.kind.value)
        return "unknown"

    def _provider(self, inv: Any, node_id: str | None, turn_id: str | None) -> None:
        pv, pid, kind = self.pipeline_version, inv.provider_id, inv.kind.value
        outcome = inv.outcome.value
        m = inv.metrics
        nid = node_id or "none"
        if m.latency_ms is not None:
            self.metrics.provider_latency(pv, pid, kind, m.latency_ms / 1000.0, node_id=nid,
                                          exemplar=self._exemplar(turn_id))
        if inv.attempt > 1 or m.retries:
            self.metrics.provider_retry(pv, pid, kind, node_id=nid)
        if outcome != "success" and inv.invocation_id not in self._error_counted:
            self.metrics.provider_error(pv, pid, kind, outcome, node_id=nid,
                                        exemplar=self._exemplar(turn_id))
        parent = self._parent(turn_id)
        ctx = trace.set_span_in_context(parent) if parent is not None else None
        start = _wall_from_mono(m.started_ns) if m.started_ns else time.time_ns()
        end = _wall_from_mono(m.ended_ns) if m.ended_ns else start
        span = self._tracer.start_span(
            f"rspp.provider {pid}", context=ctx, start_time=start,
            attributes={**self._attrs(turn_id, node_id=node_id, provider=pid,
                                      provider_invocation_id=inv.invocation_id,
                                      modality=kind, outcome=outcome),
                        "rspp.attempt": inv.attempt})
        span.end(end_time=max(end, start))
        level = logging.INFO if outcome == "success" else logging.WARNING
        self._emit(level, f"provider {pid} {outcome}", turn_id=turn_id, node_id=node_id,
                   provider=pid, provider_invocation_id=inv.invocation_id,
                   latency_ms=m.latency_ms)

    # ------------------------------------------------------------------ edges
    def sample_edges(self) -> None:
        """Queue depth gauge, drop/merge deltas and the wait of the oldest queued event
        (0 when the edge is empty) of every edge buffer."""
        def go() -> None:
            s = self._session
            if s is None:
                return
            pv = self.pipeline_version
            for eid, buf in list(s.edge_buffers.items()):
                self.metrics.queue_depth(pv, eid, len(buf))
                dropped, merged = buf.stats.dropped, buf.stats.merged
                d0, m0 = self._edge_seen.get(eid, (0, 0))
                self.metrics.edge_drop(pv, eid, dropped - d0)
                self.metrics.edge_merge(pv, eid, merged - m0)
                self._edge_seen[eid] = (dropped, merged)
                data = buf.data
                waited = buf.clock.monotonic_ns() - data[0].enq_ns if data else 0
                self.metrics.edge_latency(pv, eid, max(waited, 0) / 1e9)
            self._sample_kernel(s)
        self._guard(go)

    def _sample_kernel(self, s: Any) -> None:
        """Mean kernel time per ingress event since the last sample (``instrument`` on)."""
        if not getattr(s, "instrument", False):
            return
        inline_ns = sum(h.node_ns for h in s.hosts.values() if not h.is_async)
        kernel_ns, events = max(s.total_ns - inline_ns, 0), s.ingress_count
        k0, e0 = self._kernel_seen
        if events > e0:
            per_event_s = max(kernel_ns - k0, 0) / (events - e0) / 1e9
            self.metrics.kernel_overhead(self.pipeline_version, per_event_s)
            self._kernel_seen = (kernel_ns, events)
            self._check_kernel_budget(per_event_s)

    def _check_kernel_budget(self, per_event_s: float) -> None:
        """Count a sample over the kernel overhead budget; log each crossing (NF-002)."""
        budget = self.targets.kernel_overhead_budget_s
        if budget is None:
            return
        over = per_event_s > budget
        if over:
            self.metrics.kernel_overhead_exceeded(self.pipeline_version)
        if over != self._over_budget:
            self._over_budget = over
            self._emit(logging.WARNING if over else logging.INFO,
                       "kernel overhead over budget" if over else "kernel overhead within budget",
                       kernel_overhead_us=round(per_event_s * 1e6, 3),
                       budget_us=round(budget * 1e6, 3))

    async def run(self) -> None:
        """Sampler task: edge gauges every ``sample_interval_s`` until cancelled."""
        with contextlib.suppress(asyncio.CancelledError):
            while not self._stopped:
                self.sample_edges()
                await asyncio.sleep(self.targets.sample_interval_s)

    # ------------------------------------------------------------------- stop
    def stopped(self) -> None:
        """End the session: final samples, open turns, node and session spans."""
        def go() -> None:
            self._stopped = True
            self.sample_edges()
            self.harvest_providers()
            for tid in list(self._turns):
                self._close_turn(tid)
            for turn_id in {k[0] for k in self._nodes}:
                self._end_nodes(turn_id)
            self.metrics.session_ended(self.pipeline_version)
            if (held := self._sheds.flush()) is not None:
                self._shed_summary(held)
            self._emit(logging.INFO, "session stopped")
            if self._session_span is not None:
                self._session_span.end()
                self._session_span = None
            if self._session is not None:
                self._session.node_observer = None
        self._guard(go)


class TelemetryFiles:
    """``--metrics-out`` / ``--trace-out`` / ``--log-out`` of one run (written at the end).

    Spans go through a ``SimpleSpanProcessor`` into an in-memory exporter (no I/O in
    the session's path) and are written as one JSON object per line by :meth:`close`;
    the metrics file is the OpenMetrics exposition (Prometheus ingests it; it carries
    the turn exemplars); logs are JSON lines.
    """

    def __init__(self, *, metrics_out: Path | None = None, trace_out: Path | None = None,
                 log_out: Path | None = None, targets: TelemetryTargets | None = None,
                 redactor: Redactor | None = None) -> None:
        from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        from rspp.observability import JsonLogFormatter, Redactor
        from rspp.providers import default_redactor

        self.metrics_out, self.trace_out, self.log_out = metrics_out, trace_out, log_out
        self.targets = targets or TelemetryTargets()
        self.spans: InMemorySpanExporter | None = None
        if trace_out is not None and self.targets.tracer_provider is None:
            self.spans = InMemorySpanExporter()
            provider = SdkTracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(self.spans))
            self.targets.tracer_provider = provider
        self._handler: logging.Handler | None = None
        self._old_level = self.targets.logger.level
        if log_out is not None:
            log_out.write_bytes(b"")
            self._handler = logging.FileHandler(log_out, encoding="utf-8")
            self._handler.setFormatter(JsonLogFormatter(
                redactor or Redactor(secrets=default_redactor())))
            self.targets.logger.addHandler(self._handler)
            if not self.targets.logger.isEnabledFor(logging.INFO):
                self.targets.logger.setLevel(logging.INFO)

    def close(self) -> None:
        """Write the exposition and the finished spans; detach the log handler."""
        if self._handler is not None:
            self.targets.logger.removeHandler(self._handler)
            self.targets.logger.setLevel(self._old_level)
            self._handler.close()
            self._handler = None
        if self.metrics_out is not None:
            self.metrics_out.write_bytes(self.targets.metrics.scrape(openmetrics=True))
        if self.trace_out is not None:
            spans = self.spans.get_finished_spans() if self.spans is not None else ()
            from rspp.observability import Redactor
            from rspp.providers import default_redactor

            scrub = Redactor(secrets=default_redactor()).scrub  # no secret in span attributes
            with self.trace_out.open("w", encoding="utf-8") as fh:
                for span in spans:
                    fh.write(json.dumps(scrub(json.loads(span.to_json())), separators=(",", ":")))
                    fh.write("\n")
