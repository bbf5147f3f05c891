"""The fairness SLO of a runtime's shared execution pool (NF-033).

``rspp serve --pool-limit TYPE=N --pool-fairness tenant`` queues work round-robin by
tenant when a pool key is full (:class:`~rspp.kernel.ExecutionPool`). This module
measures what each tenant waited for a slot and holds the runtime to a declared
objective:

- :class:`TimedPool` times every acquire of a limited key, per (key, tenant), in
  milliseconds of the monotonic clock; a cancelled wait (the turn was cancelled while
  queued) is dropped, not counted as service;
- :class:`FairnessBook` keeps the waits that ended in the last ``window_s`` seconds and
  the ones still queued; a wait longer than :attr:`FairnessSlo.max_wait_ms` is a
  starvation incident (counted once, when it ends);
- the SLO is met at a pool key while no tenant's longest wait over the window, ended
  or still queued, is above the objective; otherwise its alert fires. A sustained run
  is evaluated continuously: the alert resolves once the window holds no such wait.

``/metrics`` (read at scrape time): ``rspp_pool_wait_ms`` (histogram per key and
tenant), ``rspp_fairness_slo_max_wait_ms`` (the objective),
``rspp_fairness_window_max_wait_ms`` and ``rspp_fairness_window_waits`` (per key and
tenant), ``rspp_fairness_starvation_incidents_total`` and
``rspp_fairness_slo_alert_firing`` (per key).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import count
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rspp.kernel import ExecutionPool

if TYPE_CHECKING:
    from rspp.server._metrics import ServerMetrics

__all__ = ["FairnessBook", "FairnessSlo", "FairnessVerdict", "TimedPool", "runtime_pool"]

#: wait buckets, milliseconds
_WAIT_BUCKETS_MS = (1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
                    10000.0, 30000.0, 60000.0)


@dataclass(frozen=True, slots=True)
class FairnessSlo:
    """The declared objective: no tenant waits longer than ``max_wait_ms`` for a pool
    slot, evaluated over the last ``window_s`` seconds."""

    max_wait_ms: float
    window_s: float = 60.0

    def __post_init__(self) -> None:
        if not self.max_wait_ms > 0:
            raise ValueError(f"max_wait_ms={self.max_wait_ms}: must be above 0")
        if not self.window_s > 0:
            raise ValueError(f"window_s={self.window_s}: must be above 0")


@dataclass(frozen=True, slots=True)
class FairnessVerdict:
    """One tenant's service at one pool key over the window."""

    key: str
    tenant: str
    #: waits that ended in the window (slots granted)
    waits: int
    #: the longest wait in the window, ended or still queued (ms)
    max_wait_ms: float
    #: starvation incidents since start (waits over the objective that ended)
    incidents: int
    #: requests still queued now
    queued: int
    met: bool


@dataclass(slots=True)
class _Tenant:
    #: its ``rspp_pool_wait_ms`` series (looked up once: a labels() call costs more than
    #: the rest of the bookkeeping)
    hist: Any
    #: (ended at, waited ms) of the waits that ended in the window
    waits: deque[tuple[float, float]] = field(default_factory=deque)
    incidents: int = 0


class FairnessBook:
    """Waits per (pool key, tenant) against a :class:`FairnessSlo` (None: measured only)."""

    def __init__(self, slo: FairnessSlo | None, registry: CollectorRegistry,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.slo = slo
        self._clock = clock
        self._tenants: dict[tuple[str, str], _Tenant] = {}
        self._pending: dict[int, tuple[str, str, float]] = {}
        self._ids = count()
        self._hist = Histogram("rspp_pool_wait_ms", "Time a pool request waited for its slot, "
                               "ms, per pool key and tenant (NF-033)", ["key", "fairness_key"],
                               buckets=_WAIT_BUCKETS_MS, registry=registry)
        registry.register(_FairnessCollector(self))

    def started(self, key: str, tenant: str) -> int:
        """A request for a slot of ``key``; the ticket :meth:`ended` takes."""
        ticket = next(self._ids)
        self._pending[ticket] = (key, tenant, self._clock())
        return ticket

    def ended(self, ticket: int, *, granted: bool) -> None:
        """The request got its slot (``granted``) or was cancelled while queued."""
        key, tenant, start = self._pending.pop(ticket)
        if not granted:
            return
        now = self._clock()
        waited = (now - start) * 1000
        t = self._tenant(key, tenant)
        t.waits.append((now, waited))
        if self.slo is not None and waited > self.slo.max_wait_ms:
            t.incidents += 1
        t.hist.observe(waited)

    def _tenant(self, key: str, tenant: str) -> _Tenant:
        t = self._tenants.get((key, tenant))
        if t is None:
            t = self._tenants[(key, tenant)] = _Tenant(self._hist.labels(key, tenant))
        return t

    def verdicts(self) -> list[FairnessVerdict]:
        """Every (key, tenant) seen, over the window ending now."""
        now = self._clock()
        window = self.slo.window_s if self.slo is not None else 60.0
        queued: dict[tuple[str, str], list[float]] = {}
        for key, tenant, start in self._pending.values():
            queued.setdefault((key, tenant), []).append((now - start) * 1000)
            self._tenant(key, tenant)
        out = []
        for (key, tenant), t in sorted(self._tenants.items()):
            while t.waits and t.waits[0][0] < now - window:
                t.waits.popleft()
            waiting = queued.get((key, tenant), [])
            longest = max([w for _, w in t.waits] + waiting, default=0.0)
            met = self.slo is None or longest <= self.slo.max_wait_ms
            out.append(FairnessVerdict(key=key, tenant=tenant, waits=len(t.waits),
                                       max_wait_ms=longest, incidents=t.incidents,
                                       queued=len(waiting), met=met))
        return out


class TimedPool(ExecutionPool):
    """An :class:`~rspp.kernel.ExecutionPool` whose acquires are timed into a
    :class:`FairnessBook` (the fairness key is the tenant)."""

    def __init__(self, limits: dict[str, int], book: FairnessBook) -> None:
        super().__init__(limits)
        self.book = book

    async def acquire(self, key: str, fairness_key: str = "") -> None:
        ticket = self.book.started(key, fairness_key)
        granted = False
        try:
            await super().acquire(key, fairness_key)
            granted = True
        finally:
            self.book.ended(ticket, granted=granted)


def runtime_pool(limits: dict[str, int], fairness: str, slo: FairnessSlo | None,
                 metrics: ServerMetrics) -> ExecutionPool | None:
    """The runtime's shared execution pool (None: no ``--pool-limit``), exported on its
    ``/metrics``; timed per tenant when tenants are its fairness keys."""
    if not limits:
        return None
    per_tenant = fairness == "tenant"
    pool = (TimedPool(limits, FairnessBook(slo, metrics.runtime.registry)) if per_tenant
            else ExecutionPool(limits))
    metrics.watch_pool(pool, per_fairness_key=per_tenant)
    return pool


class _FairnessCollector(Collector):
    """The SLO's state, evaluated at scrape time."""

    def __init__(self, book: FairnessBook) -> None:
        self.book = book

    def collect(self) -> Iterator[Metric]:
        slo = self.book.slo
        objective = GaugeMetricFamily("rspp_fairness_slo_max_wait_ms", "The fairness SLO: "
                                      "the longest a tenant may wait for a pool slot, ms")
        longest = GaugeMetricFamily(
            "rspp_fairness_window_max_wait_ms", "Longest wait for a pool slot over the SLO "
            "window (ended or still queued), ms", labels=["key", "fairness_key"])
        waits = GaugeMetricFamily("rspp_fairness_window_waits", "Pool slots granted over the "
                                  "SLO window", labels=["key", "fairness_key"])
        incidents = CounterMetricFamily(
            "rspp_fairness_starvation_incidents", "Waits for a pool slot longer than the "
            "fairness SLO allows", labels=["key", "fairness_key"])
        firing = GaugeMetricFamily("rspp_fairness_slo_alert_firing", "1 while a tenant's "
                                   "longest wait over the window is above the SLO",
                                   labels=["key"])
        by_key: dict[str, bool] = {}
        for v in self.book.verdicts():
            longest.add_metric([v.key, v.tenant], v.max_wait_ms)
            waits.add_metric([v.key, v.tenant], v.waits)
            incidents.add_metric([v.key, v.tenant], v.incidents)
            by_key[v.key] = by_key.get(v.key, False) or not v.met
        yield longest
        yield waits
        if slo is None:
            return
        objective.add_metric([], slo.max_wait_ms)
        for key, bad in sorted(by_key.items()):
            firing.add_metric([key], int(bad))
        yield from (objective, incidents, firing)
