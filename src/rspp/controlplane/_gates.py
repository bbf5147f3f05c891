"""Gated rollouts (issue 18): live gate samples, sliding-window verdicts, decisions.

Runtimes report one :class:`~rspp.observability.TurnGateSample` per closed turn of a
live session, tagged with pipeline version and tenant (``POST /v1/gates/samples``).
For a pipeline whose rollout carries a :class:`RolloutPolicy`, the control plane
evaluates the seven gates per version over a sliding window (the last ``window``
samples; fewer than ``min_samples`` is no verdict) with
:func:`rspp.observability.gate_report` - the same definitions and thresholds as
``rspp slo report`` - and decides:

- **rollback** when ``rollback_on_gates`` and any canary gate fails over the window:
  the stable version is pinned and the canary cleared (no new session gets it);
- **promote** to the next step (e.g. 5 -> 25 -> 100) once the canary served
  ``promote_after`` turns at its current step, its gates pass over the window and no
  baseline gate that passed when the step began fails now; at the last step the
  canary becomes the stable version (**complete**);
- **hold** (audited once per reason) when the turns are there but the canary's
  gates fail without ``rollback_on_gates`` or the baseline got worse.

Every decision is an audit entry carrying the canary and baseline gate tables. A
policy whose rollout changed by other hands (a manual rollout or rollback) is
``superseded`` and decides nothing more.
"""

from __future__ import annotations

import json
from typing import Literal

import msgspec
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from rspp.controlplane._rollout import RolloutState
from rspp.controlplane._schema import gate_samples, rollout_policies
from rspp.observability import GateReport, GateResult, TurnGateSample, gate_report

__all__ = ["GateDecision", "RolloutPolicy", "VersionGates", "decide", "default_steps",
           "version_table"]

PolicyState = Literal["running", "promoted", "rolled_back", "superseded"]
Action = Literal["promote", "complete", "rollback", "hold"]
#: diagnostics kept per gate in tables (audit entries, status): the first few
_NOTES = 3
#: sample rows kept in the store across all versions (oldest deleted first)
MAX_STORED_SAMPLES = 200_000


class VersionGates(msgspec.Struct, frozen=True, kw_only=True):
    """The gate table of one pipeline version over its window."""

    version: str
    #: samples in the window (the newest ``window`` at most)
    samples: int
    #: ``samples >= min_samples``: the verdicts count
    evaluated: bool
    gates: list[GateResult]

    @property
    def failing(self) -> list[GateResult]:
        return [g for g in self.gates if g.status == "fail"] if self.evaluated else []


class GateDecision(msgspec.Struct, frozen=True, kw_only=True):
    action: Action
    reason: str
    from_percent: float
    to_percent: float
    at_ms: int
    canary: VersionGates
    baseline: VersionGates | None = None


class RolloutPolicy(msgspec.Struct, frozen=True, kw_only=True):
    pipeline_name: str
    canary_version: str
    stable_version: str
    steps: tuple[float, ...]
    step_index: int = 0
    promote_after: int
    rollback_on_gates: bool
    window: int
    min_samples: int
    #: the rollout revision this policy last wrote (another revision: superseded)
    rollout_revision: int
    #: samples up to this sequence number predate the rollout (not the canary's)
    started_seq: int = 0
    #: samples up to this sequence number predate the current step
    step_started_seq: int = 0
    #: baseline gates failing when the step began (they do not hold a promotion)
    baseline_failing: tuple[int, ...] = ()
    state: PolicyState = "running"
    last_decision: GateDecision | None = None
    updated_at_ms: int = 0

    @property
    def percent(self) -> float:
        return self.steps[self.step_index]

    @property
    def next_step(self) -> float | None:
        i = self.step_index + 1
        return self.steps[i] if i < len(self.steps) and self.state == "running" else None


def default_steps(percent: float) -> tuple[float, ...]:
    """``P`` then 25, 50 and 100 above it (5 -> 25 -> 50 -> 100)."""
    return (percent, *(s for s in (25.0, 50.0, 100.0) if s > percent))


def version_table(version: str, samples: list[TurnGateSample], min_samples: int) -> VersionGates:
    report: GateReport = gate_report(samples)
    gates = [msgspec.structs.replace(g, diagnostics=g.diagnostics[:_NOTES])
             for g in report.gates]
    return VersionGates(version=version, samples=len(samples),
                        evaluated=len(samples) >= min_samples, gates=gates)


def _why_failed(table: VersionGates) -> str:
    parts = []
    for g in table.failing:
        shown = f"p95 {g.p95:g} ms" if g.p95 is not None else (
            f"value {g.value:g}" if g.value is not None else "anchors missing")
        parts.append(f"gate {g.gate} ({g.name}) failed: {shown}, threshold {g.threshold}")
    return "; ".join(parts) + f" over {table.samples} samples of {table.version}"


def decide(policy: RolloutPolicy, canary: VersionGates, baseline: VersionGates | None,
           turns_at_step: int, now_ms: int) -> GateDecision | None:
    """The decision the window calls for now (``None``: keep going, nothing to record)."""
    if policy.state != "running":
        return None
    here = policy.percent

    def made(action: Action, reason: str, to: float) -> GateDecision:
        return GateDecision(action=action, reason=reason, from_percent=here, to_percent=to,
                            at_ms=now_ms, canary=canary, baseline=baseline)

    if canary.failing and policy.rollback_on_gates:
        return made("rollback", "rolled back: canary " + _why_failed(canary), 0.0)
    if turns_at_step < policy.promote_after or not canary.evaluated:
        return None
    if canary.failing:
        return _hold(policy, made("hold", "held: canary " + _why_failed(canary), here))
    worse = [g for g in (baseline.failing if baseline is not None else [])
             if g.gate not in policy.baseline_failing]
    if worse and baseline is not None:
        names = ", ".join(f"gate {g.gate} ({g.name})" for g in worse)
        return _hold(policy, made("hold", f"held: baseline {baseline.version} got worse during "
                                  f"this step: {names} went from pass to fail", here))
    nxt = policy.next_step
    passed = (f"canary gates pass over {canary.samples} samples after {turns_at_step} turns at "
              f"{here:g}%")
    if nxt is None or nxt >= 100:
        return made("complete", f"promoted to 100%: {passed}; {policy.canary_version} is now "
                    "the stable version", 100.0)
    return made("promote", f"promoted {here:g}% -> {nxt:g}%: {passed}", nxt)


def _hold(policy: RolloutPolicy, decision: GateDecision) -> GateDecision | None:
    """A hold is recorded once per reason (not once per report)."""
    last = policy.last_decision
    if last is not None and last.action == "hold" and last.reason == decision.reason:
        return None
    return decision


# ---- store --------------------------------------------------------------------------------
_encode = msgspec.json.Encoder()
_sample = msgspec.json.Decoder(TurnGateSample)
_policy = msgspec.json.Decoder(RolloutPolicy)


async def store_samples(conn: AsyncConnection, rows: list[dict[str, object]]) -> int:
    """Insert sample rows; keep at most :data:`MAX_STORED_SAMPLES`; the newest seq."""
    await conn.execute(insert(gate_samples), rows)
    newest = int((await conn.execute(select(func.max(gate_samples.c.seq)))).scalar() or 0)
    if newest > MAX_STORED_SAMPLES:
        await conn.execute(delete(gate_samples).where(
            gate_samples.c.seq <= newest - MAX_STORED_SAMPLES))
    return newest


def sample_row(*, pipeline_name: str, pipeline_version: str, tenant_id: str, runtime_id: str,
               sample: TurnGateSample, now_ms: int) -> dict[str, object]:
    return {"pipeline_name": pipeline_name, "pipeline_version": pipeline_version,
            "tenant_id": tenant_id, "runtime_id": runtime_id, "received_at_ms": now_ms,
            "body_json": _encode.encode(sample).decode()}


async def window(conn: AsyncConnection, name: str, version: str, size: int,
                 after_seq: int = 0) -> list[TurnGateSample]:
    """The newest ``size`` samples of ``name@version`` with a sequence above ``after_seq``."""
    rows = (await conn.execute(
        select(gate_samples.c.body_json)
        .where(gate_samples.c.pipeline_name == name,
               gate_samples.c.pipeline_version == version, gate_samples.c.seq > after_seq)
        .order_by(gate_samples.c.seq.desc()).limit(size))).all()
    return [_sample.decode(r[0]) for r in rows]


async def count_after(conn: AsyncConnection, name: str, version: str, after_seq: int) -> int:
    return int((await conn.execute(
        select(func.count()).select_from(gate_samples)
        .where(gate_samples.c.pipeline_name == name,
               gate_samples.c.pipeline_version == version,
               gate_samples.c.seq > after_seq))).scalar() or 0)


async def newest_seq(conn: AsyncConnection) -> int:
    return int((await conn.execute(select(func.max(gate_samples.c.seq)))).scalar() or 0)


async def load_policy(conn: AsyncConnection, name: str) -> RolloutPolicy | None:
    row = (await conn.execute(select(rollout_policies.c.body_json)
                              .where(rollout_policies.c.pipeline_name == name))).first()
    return _policy.decode(row[0]) if row is not None else None


async def running_policies(conn: AsyncConnection, names: set[str]) -> list[str]:
    rows = (await conn.execute(
        select(rollout_policies.c.pipeline_name)
        .where(rollout_policies.c.pipeline_name.in_(sorted(names)),
               rollout_policies.c.state == "running"))).all()
    return [str(r[0]) for r in rows]


async def save_policy(conn: AsyncConnection, policy: RolloutPolicy) -> None:
    values = {"body_json": _encode.encode(policy).decode(), "state": policy.state,
              "updated_at_ms": policy.updated_at_ms}
    done = await conn.execute(update(rollout_policies)
                              .where(rollout_policies.c.pipeline_name == policy.pipeline_name)
                              .values(**values))
    if done.rowcount == 0:
        await conn.execute(insert(rollout_policies)
                           .values(pipeline_name=policy.pipeline_name, **values))


async def tables(conn: AsyncConnection, policy: RolloutPolicy
                 ) -> tuple[VersionGates, VersionGates, int]:
    """Canary and baseline gate tables over the window, and the canary's turns at its step."""
    name = policy.pipeline_name
    canary = version_table(policy.canary_version,
                    await window(conn, name, policy.canary_version, policy.window,
                                 policy.started_seq), policy.min_samples)
    baseline = version_table(policy.stable_version,
                      await window(conn, name, policy.stable_version, policy.window),
                      policy.min_samples)
    turns = await count_after(conn, name, policy.canary_version, policy.step_started_seq)
    return canary, baseline, turns


def superseded(policy: RolloutPolicy, state: RolloutState | None) -> bool:
    """The rollout changed by other hands since the policy last wrote it."""
    return state is None or state.revision != policy.rollout_revision or \
        state.canary_version != policy.canary_version


def audit_detail(policy: RolloutPolicy, decision: GateDecision) -> dict[str, object]:
    detail: dict[str, object] = json.loads(_encode.encode(decision))
    detail["canary_version"] = policy.canary_version
    detail["stable_version"] = policy.stable_version
    detail["failing_gates"] = [g.gate for g in decision.canary.failing]
    return detail
