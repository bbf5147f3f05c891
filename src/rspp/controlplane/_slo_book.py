"""The availability SLO's events, verdicts, metrics and rollout freeze (NF-005, NF-030).

:class:`SloBook` stores one row per accepted turn the runtimes report (with their gate
samples), forgets rows older than the longest window, counts good and bad turns per
pipeline and window, and turns the counts into :class:`~rspp.controlplane._slo.SloReport`
verdicts (:func:`~rspp.controlplane._slo.evaluate_scope`). After each report batch the
verdicts are exported on the control plane's ``/metrics`` and every alert that starts or
stops firing is audited (``slo.alert_firing`` / ``slo.alert_resolved``). While a scope's
budget burns too fast (a ``freeze`` alert fires) or is spent, :meth:`SloBook.freeze_reason`
names why: the registry operations then refuse rollouts and publishes to it (409
``error_budget_freeze``) unless an admin forces them.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from rspp.controlplane._audit import AuditLog
from rspp.controlplane._requests import GateSampleIn
from rspp.controlplane._schema import slo_events
from rspp.controlplane._slo import ALL, ScopeSlo, SloConfig, SloReport, WindowCount, evaluate_scope
from rspp.controlplane._store import Store

__all__ = ["SLO_ACTOR", "SloBook"]

#: the audit actor of alert transitions
SLO_ACTOR = "control-plane:slo"
#: scopes exported on /metrics (least recently evaluated dropped first)
MAX_SCOPES = 32


class SloMetrics:
    """Availability, budget left, burn rates and firing alerts per scope (bounded labels)."""

    def __init__(self, registry: CollectorRegistry, config: SloConfig) -> None:
        Gauge("rspp_cp_slo_objective_ratio", "The deployment's availability objective",
              registry=registry).set(config.objective_percent / 100)
        self._avail = Gauge("rspp_cp_slo_availability_ratio",
                            "Good share of accepted turns over the SLO window", ["scope"],
                            registry=registry)
        self._budget = Gauge("rspp_cp_slo_error_budget_remaining_ratio",
                             "Error budget left over the SLO window (below 0: overspent)",
                             ["scope"], registry=registry)
        self._burn = Gauge("rspp_cp_slo_burn_rate", "Burn rate of an alert's window",
                           ["scope", "alert", "window"], registry=registry)
        self._firing = Gauge("rspp_cp_slo_alert_firing", "1 while the burn-rate alert fires",
                             ["scope", "alert"], registry=registry)
        self._frozen = Gauge("rspp_cp_slo_rollout_frozen",
                             "1 while rollouts and publishes to the scope are refused",
                             ["scope"], registry=registry)
        self._alerts = [a.name for a in config.alerts]
        self._seen: OrderedDict[str, None] = OrderedDict()

    def observe(self, s: ScopeSlo) -> None:
        self._seen[s.scope] = None
        self._seen.move_to_end(s.scope)
        while len(self._seen) > MAX_SCOPES:
            self._forget(self._seen.popitem(last=False)[0])
        nan = float("nan")
        self._avail.labels(s.scope).set(
            s.availability_percent / 100 if s.availability_percent is not None else nan)
        self._budget.labels(s.scope).set(
            s.budget_remaining if s.budget_remaining is not None else nan)
        self._frozen.labels(s.scope).set(int(s.freeze_reason is not None))
        for a in s.alerts:
            self._firing.labels(s.scope, a.name).set(int(a.firing))
            for which, w in (("long", a.long), ("short", a.short)):
                self._burn.labels(s.scope, a.name, which).set(
                    w.burn_rate if w.burn_rate is not None else nan)

    def _forget(self, scope: str) -> None:
        for gauge in (self._avail, self._budget, self._frozen):
            gauge.remove(scope)
        for name in self._alerts:
            self._firing.remove(scope, name)
            for which in ("long", "short"):
                self._burn.remove(scope, name, which)


class SloBook:
    def __init__(self, store: Store, audit: AuditLog, config: SloConfig,
                 registry: CollectorRegistry) -> None:
        self.store = store
        self.audit = audit
        self.config = config
        self.metrics = SloMetrics(registry, config)
        self._good = frozenset(("commit", *config.excused_outcomes))
        #: (scope, alert) pairs firing as last evaluated (transitions are audited)
        self._firing: set[tuple[str, str]] = set()
        #: one evaluation at a time: concurrent ones would audit the same transition twice
        self._evaluating = asyncio.Lock()

    async def record_in(self, conn: AsyncConnection, runtime_id: str,
                        samples: Iterable[GateSampleIn], now: int) -> int:
        """Count the accepted, ended turns of a report batch; forget expired rows."""
        rows = [{"at_ms": now, "pipeline_name": s.pipeline_name, "tenant_id": s.tenant_id,
                 "runtime_id": runtime_id, "outcome": s.sample.terminal,
                 "bad": int(s.sample.terminal not in self._good)}
                for s in samples if s.sample.accepted and s.sample.terminal is not None]
        if rows:
            await conn.execute(insert(slo_events), rows)
        horizon = now - 1000 * self.config.windows()[0]
        await conn.execute(delete(slo_events).where(slo_events.c.at_ms < horizon))
        return len(rows)

    async def report_in(self, conn: AsyncConnection, now: int,
                        scope: str | None = None) -> SloReport:
        """The verdict of every pipeline with events, and of the deployment (``*``)."""
        per: dict[str, dict[int, WindowCount]] = {}
        everything: dict[int, WindowCount] = {}
        for span in self.config.windows():
            query = (select(slo_events.c.pipeline_name, func.count(), func.sum(slo_events.c.bad))
                     .where(slo_events.c.at_ms >= now - 1000 * span)
                     .group_by(slo_events.c.pipeline_name))
            events = bad = 0
            for name, n, b in (await conn.execute(query)).all():
                per.setdefault(str(name), {})[span] = WindowCount(events=int(n), bad=int(b or 0))
                events, bad = events + int(n), bad + int(b or 0)
            everything[span] = WindowCount(events=events, bad=bad)
        names = sorted(per) if scope is None or scope == ALL else [scope]
        scopes = [evaluate_scope(self.config, ALL, everything)]
        scopes.extend(evaluate_scope(self.config, n, per.get(n, {})) for n in names)
        return SloReport(objective_percent=self.config.objective_percent,
                         window_s=self.config.window_s, at_ms=now, scopes=scopes)

    async def evaluate(self, now: int) -> SloReport:
        """Export the verdicts and audit the alerts that started or stopped firing."""
        async with self._evaluating:
            return await self._evaluate(now)

    async def _evaluate(self, now: int) -> SloReport:
        async with self.store.engine.connect() as conn:
            report = await self.report_in(conn, now)
        firing: set[tuple[str, str]] = set()
        for s in report.scopes:
            self.metrics.observe(s)
            for a in s.alerts:
                key = (s.scope, a.name)
                if a.firing:
                    firing.add(key)
                if a.firing != (key in self._firing):
                    await self.audit.append(
                        actor=SLO_ACTOR,
                        action="slo.alert_firing" if a.firing else "slo.alert_resolved",
                        subject=s.scope,
                        detail={"alert": a.name, "threshold": a.threshold,
                                "burn_rate_long": a.long.burn_rate,
                                "burn_rate_short": a.short.burn_rate,
                                "long_window_s": a.long.window_s,
                                "short_window_s": a.short.window_s, "freeze": a.freeze,
                                "availability_percent": s.availability_percent,
                                "budget_remaining": s.budget_remaining})
        self._firing = firing
        return report

    async def report(self, now: int, scope: str) -> SloReport:
        """The deployment's verdict and ``scope``'s (no audit, no alert transitions)."""
        async with self.store.engine.connect() as conn:
            return await self.report_in(conn, now, scope)

    async def freeze_reason(self, scope: str, now: int) -> str | None:
        """Why rollouts/publishes to ``scope`` are refused now (the deployment's own
        freeze applies to every scope); ``None`` when they are not."""
        report = await self.report(now, scope)
        for s in report.scopes:
            self.metrics.observe(s)
        return next((s.freeze_reason for s in reversed(report.scopes) if s.freeze_reason), None)
