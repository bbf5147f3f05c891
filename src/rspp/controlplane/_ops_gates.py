"""Gated-rollout operations: start one, ingest gate samples, decide, report (issue 18)."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from rspp.controlplane._changes import ChangeRecord
from rspp.controlplane._errors import InvalidRequest, NotFound
from rspp.controlplane._gates import (
    GateDecision,
    RolloutPolicy,
    VersionGates,
    decide,
    default_steps,
    load_policy,
    newest_seq,
    running_policies,
    sample_row,
    save_policy,
    store_samples,
    superseded,
    tables,
    version_table,
    window,
)
from rspp.controlplane._gates import audit_detail as gate_audit_detail
from rspp.controlplane._ops_registry import RegistryOps
from rspp.controlplane._rbac import Principal, Role
from rspp.controlplane._requests import GateSampleIn
from rspp.controlplane._rollout import RolloutState
from rspp.controlplane._slo import SloReport

__all__ = ["GATES_ACTOR", "GateIngest", "GateOps", "RolloutStatus"]

#: the audit actor of decisions the gates make
GATES_ACTOR = "control-plane:gates"
DEFAULT_PROMOTE_AFTER = 100
DEFAULT_WINDOW = 200
DEFAULT_MIN_SAMPLES = 20


class GateIngest(msgspec.Struct, frozen=True, kw_only=True):
    accepted: int
    decisions: list[GateDecision]


class RolloutStatus(msgspec.Struct, frozen=True, kw_only=True):
    """Canary vs baseline gate tables, current percentage, next step, last decision."""

    pipeline_name: str
    rollout: RolloutState | None
    policy: RolloutPolicy | None
    canary: VersionGates | None
    baseline: VersionGates | None
    percent: float | None
    next_step: float | None
    turns_at_step: int
    last_decision: GateDecision | None


class GateOps(RegistryOps):
    async def gated_rollout(
        self,
        principal: Principal,
        name: str,
        *,
        canary: str,
        percent: float,
        tenants: tuple[str, ...] = (),
        promote_after: int | None = None,
        rollback_on_gates: bool = False,
        steps: Sequence[float] = (),
        window_size: int | None = None,
        min_samples: int | None = None,
        change: ChangeRecord | None = None,
        force: bool = False,
    ) -> RolloutState:
        """Start a canary promoted and rolled back by the gates of its live sessions."""
        await self.authorize(principal, Role.OPERATOR, "start rollout")
        await self.require_approval(principal, "rollout", f"pipeline:{name}", change)
        await self.guard_budget(principal, "rollout", name, name, force=force)
        if percent <= 0:
            raise InvalidRequest("a gated rollout starts above 0 percent (its canary needs "
                                 "sessions to be measured)", field="percent")
        plan = (percent, *sorted({s for s in steps if s > percent})) if steps else \
            default_steps(percent)
        size = window_size or DEFAULT_WINDOW
        least = min_samples or min(DEFAULT_MIN_SAMPLES, size)
        if least > size:
            raise InvalidRequest(f"min_samples {least} exceeds the window of {size} samples",
                                 field="min_samples")
        after = promote_after or DEFAULT_PROMOTE_AFTER
        detail = {"gated": {"steps": list(plan), "promote_after": after,
                            "rollback_on_gates": rollback_on_gates, "window": size,
                            "min_samples": least}}

        async def work(conn: AsyncConnection, now: int) -> RolloutState:
            applied = await self.apply_change_in(conn, principal, change, now)
            state = await self._rollout_in(conn, principal, name, canary, percent, tenants,
                                           now, {**detail, **applied})
            newest = await newest_seq(conn)
            base = version_table(state.stable_version,
                              await window(conn, name, state.stable_version, size), least)
            await save_policy(conn, RolloutPolicy(
                pipeline_name=name, canary_version=canary, stable_version=state.stable_version,
                steps=plan, promote_after=after, rollback_on_gates=rollback_on_gates,
                window=size, min_samples=least, rollout_revision=state.revision,
                started_seq=newest, step_started_seq=newest,
                baseline_failing=tuple(g.gate for g in base.failing), updated_at_ms=now))
            return state

        return await self._write(work, "rollout")

    async def ingest_gate_samples(
        self, principal: Principal, runtime_id: str, samples: Sequence[GateSampleIn],
        dropped: int = 0,
    ) -> GateIngest:
        """Store a runtime's samples; evaluate the gated rollouts they concern."""
        await self.authorize(principal, Role.OPERATOR, "report gate samples")
        metrics = self.gate_metrics
        metrics.dropped.inc(dropped)
        if not samples:
            return GateIngest(accepted=0, decisions=[])

        async def work(conn: AsyncConnection, now: int) -> int:
            await store_samples(conn, [
                sample_row(pipeline_name=s.pipeline_name, pipeline_version=s.pipeline_version,
                           tenant_id=s.tenant_id, runtime_id=runtime_id, sample=s.sample,
                           now_ms=now) for s in samples])
            if self.slo is not None:  # the availability SLO's events (NF-005)
                await self.slo.record_in(conn, runtime_id, samples, now)
            return len(samples)

        accepted = await self._write(work, "report gate samples")
        metrics.received.inc(accepted)
        if self.slo is not None:
            await self.slo.evaluate(self.clock())
        async with self.store.engine.connect() as conn:
            names = await running_policies(conn, {s.pipeline_name for s in samples})
        decisions = []
        for name in names:
            made = await self._evaluate(name)
            if made is not None:
                decisions.append(made)
        return GateIngest(accepted=accepted, decisions=decisions)

    async def _evaluate(self, name: str) -> GateDecision | None:
        async def work(conn: AsyncConnection, now: int) -> tuple[GateDecision | None]:
            await self.store.lock(conn, f"rollout:{name}")
            return (await self._evaluate_in(conn, name, now),)

        return (await self._write(work, "evaluate gates"))[0]

    async def _evaluate_in(self, conn: AsyncConnection, name: str,
                           now: int) -> GateDecision | None:
        policy = await load_policy(conn, name)
        if policy is None or policy.state != "running":
            return None
        state = await self.rollouts.state_in(conn, name)
        if superseded(policy, state):
            await save_policy(conn, msgspec.structs.replace(policy, state="superseded",
                                                            updated_at_ms=now))
            return None
        canary, baseline, turns = await tables(conn, policy)
        self.gate_metrics.observe(name, canary)
        self.gate_metrics.observe(name, baseline)
        decision = decide(policy, canary, baseline, turns, now)
        if decision is None or state is None:
            return None
        changes: dict[str, object] = {"last_decision": decision, "updated_at_ms": now}
        if decision.action == "rollback":
            moved = await self.rollouts.pin_in(conn, name, policy.stable_version,
                                               actor=GATES_ACTOR, now_ms=now)
            changes.update(state="rolled_back", rollout_revision=moved.revision)
        elif decision.action == "complete":
            moved = await self.rollouts.pin_in(conn, name, policy.canary_version,
                                               actor=GATES_ACTOR, now_ms=now)
            changes.update(state="promoted", rollout_revision=moved.revision,
                           step_index=len(policy.steps) - 1)
        elif decision.action == "promote":
            moved = await self.rollouts.set_canary_in(
                conn, name, policy.canary_version, decision.to_percent, state.tenants,
                actor=GATES_ACTOR, now_ms=now)
            changes.update(rollout_revision=moved.revision, step_index=policy.step_index + 1,
                           step_started_seq=await newest_seq(conn),
                           baseline_failing=tuple(g.gate for g in baseline.failing))
        policy = msgspec.structs.replace(policy, **changes)
        await save_policy(conn, policy)
        await self.audit.append_in(conn, actor=GATES_ACTOR,
                                   action=f"rollout.gate_{decision.action}", subject=name,
                                   detail=gate_audit_detail(policy, decision))
        self.gate_metrics.decision(decision.action)
        return decision

    async def rollout_status(self, principal: Principal, name: str) -> RolloutStatus:
        await self.authorize(principal, Role.VIEWER, "read rollout")
        await self.registry.get(name, None)
        async with self.store.engine.connect() as conn:
            state = await self.rollouts.state_in(conn, name)
            policy = await load_policy(conn, name)
            if policy is None:
                return RolloutStatus(pipeline_name=name, rollout=state, policy=None, canary=None,
                                     baseline=None, percent=state.percent if state else None,
                                     next_step=None, turns_at_step=0, last_decision=None)
            canary, baseline, turns = await tables(conn, policy)
        if policy.state == "running" and superseded(policy, state):
            policy = msgspec.structs.replace(policy, state="superseded")
        return RolloutStatus(
            pipeline_name=name, rollout=state, policy=policy, canary=canary, baseline=baseline,
            percent=state.percent if state and state.canary_version else None,
            next_step=policy.next_step, turns_at_step=turns,
            last_decision=policy.last_decision)

    async def slo_report(self, principal: Principal, scope: str | None = None) -> SloReport:
        """The availability SLO's verdicts: the deployment (``*``) and each pipeline."""
        await self.authorize(principal, Role.VIEWER, "read slo")
        if self.slo is None:
            raise NotFound("no availability SLO is configured: start `rspp cp serve` with "
                           "--slo FILE (objective_percent, window_s, alerts)", field="slo")
        return await self.slo.evaluate(self.clock()) if scope is None else \
            await self.slo.report(self.clock(), scope)

    async def gate_metrics_text(self, principal: Principal) -> bytes:
        await self.authorize(principal, Role.VIEWER, "read metrics")
        return self.gate_metrics.scrape()
