"""The control plane's ``/metrics``: gate verdicts per pipeline version (bounded labels),
and admission decisions at session start per tenant and outcome (F-104).

Series per (pipeline, version, gate) for the versions of gated rollouts as last
evaluated: p50/p95/p99 (ms), the verdict (1 pass, 0 fail, -1 no verdict) and the
window's sample count; counters of samples received, samples the runtimes reported
dropped and rollout decisions by action. At most :data:`MAX_VERSIONS` (pipeline,
version) pairs are exported: the least recently evaluated pair's series are removed
first, so the label set stays bounded whatever runtimes report.
"""

from __future__ import annotations

from collections import OrderedDict

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from rspp.controlplane._gates import VersionGates

__all__ = ["MAX_VERSIONS", "GateMetrics"]

MAX_VERSIONS = 32
_GATES = tuple(str(n) for n in range(1, 8))


class GateMetrics:
    """One registry per control-plane process."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        labels = ["pipeline", "version", "gate"]
        self._pct = {q: Gauge(f"rspp_cp_gate_{q}_ms", f"{q} of the gate's window samples (ms)",
                              labels, registry=r) for q in ("p50", "p95", "p99")}
        self._verdict = Gauge("rspp_cp_gate_pass", "1 pass, 0 fail, -1 no verdict yet",
                              labels, registry=r)
        self._count = Gauge("rspp_cp_gate_window_samples", "Samples in the evaluation window",
                            ["pipeline", "version"], registry=r)
        self.received = Counter("rspp_cp_gate_samples_received_total",
                                "Gate samples received from runtimes", registry=r)
        self.dropped = Counter("rspp_cp_gate_samples_dropped_by_runtimes_total",
                               "Gate samples runtimes reported they dropped", registry=r)
        self._decisions = Counter("rspp_cp_rollout_decisions_total",
                                  "Gated rollout decisions", ["action"], registry=r)
        self._admissions = Counter("rspp_cp_admission_decisions_total",
                                   "Control-plane admission decisions at session start "
                                   "(committed routes and refusals)", ["tenant", "outcome"],
                                   registry=r)
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()

    def admission(self, tenant: str, outcome: str) -> None:
        self._admissions.labels(tenant, outcome).inc()

    def decision(self, action: str) -> None:
        self._decisions.labels(action).inc()

    def observe(self, pipeline: str, table: VersionGates) -> None:
        key = (pipeline, table.version)
        self._seen[key] = None
        self._seen.move_to_end(key)
        while len(self._seen) > MAX_VERSIONS:
            self._forget(*self._seen.popitem(last=False)[0])
        self._count.labels(pipeline, table.version).set(table.samples)
        for g in table.gates:
            labels = (pipeline, table.version, str(g.gate))
            for q, gauge in self._pct.items():
                value = getattr(g, q)
                gauge.labels(*labels).set(value if value is not None else float("nan"))
            verdict = -1 if not table.evaluated or g.passed is None else int(g.passed)
            self._verdict.labels(*labels).set(verdict)

    def _forget(self, pipeline: str, version: str) -> None:
        self._count.remove(pipeline, version)
        for gate in _GATES:
            for gauge in (*self._pct.values(), self._verdict):
                try:
                    gauge.remove(pipeline, version, gate)
                except KeyError:
                    pass

    def scrape(self) -> bytes:
        return generate_latest(self.registry)
