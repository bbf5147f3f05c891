"""Plan freeze: materialise the immutable ResolvedTurnPlan at ``turn_open`` (F-149).

:meth:`PlanResolver.resolve` reads the six turn-start snapshots through a
:class:`~rspp.turns._snapshot_source.SnapshotSource`, checks them in a fixed
order and either returns a frozen :class:`~rspp.contracts.ResolvedTurnPlan` or a
deterministic refusal (``defer`` or ``reject`` with a reason naming the
snapshot), which the arbiter turns into T2/T5a:

==================================================  ========  ============================
condition (checked in this order)                   outcome   reason
==================================================  ========  ============================
a snapshot is absent                                 defer     ``snapshot_missing:<name>``
a snapshot expired (``expires_at_ms`` < wall now)(*) defer     ``snapshot_stale:<name>``
ABI snapshot says incompatible                       reject    ``abi_incompatible:<why>``
version resolution names another pipeline/version    reject    ``version_mismatch:<...>``
routing view places the session on another runtime   reject    ``routing_mismatch:<runtime>``
routing view says this runtime is unhealthy          defer     ``runtime_unhealthy``
no healthy provider for a bound modality             defer     ``provider_unavailable:<m>``
==================================================  ========  ============================

(*) unless the source is a :class:`~rspp.turns._snapshot_source.FreezingSnapshotSource`
whose :meth:`may_freeze` says the bundle is the last one before its control plane became
unreachable while the session's lease bound holds (issue 14's rule for mid-session
outages, which wins over T2's there): the plan is then materialised on the expired
snapshots - its provenance names the snapshot ids it used, and its DeterminismContext
marks it: the nondeterministic input ``snapshot_freeze`` (``external_call``, evidence
``control_plane_unreachable;expired:<names>``) - and the source is told (:meth:`frozen`),
which logs and counts it. A control plane that answers with a stale snapshot still defers.

``plan_hash`` is the SHA-256 of the canonical JSON (sorted keys, no whitespace)
of the plan without its ``plan_hash`` field. The parts of a plan that come from the
graph alone (its reference, edge buffer policies, merge rule) are built once per
resolver and graph; the per-turn parts are built per turn.
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import msgspec

from rspp.contracts import (
    SCHEMA_VERSION,
    EdgeBufferPolicy,
    FlowControl,
    NondeterministicSource,
    OutcomeKind,
    ProviderHealth,
    ProviderStatus,
    RecordingPolicy,
    ResolvedTurnPlan,
    SnapshotMeta,
    SnapshotProvenance,
    TurnBudgets,
    TurnStartBundle,
)
from rspp.contracts._snapshots import RuntimeHealth
from rspp.kernel._handles import Clock
from rspp.turns._determinism import (
    SNAPSHOT_FREEZE_KEY,
    DeterminismCapture,
    build_determinism_context,
    derive_seed,
    freeze_ref,
)
from rspp.turns._snapshot_source import FreezingSnapshotSource, SnapshotSource

__all__ = ["CapabilitySource", "PlanGraph", "PlanRefusal", "PlanResolution", "PlanResolver",
           "compute_plan_hash"]

_SNAPSHOTS = (
    "version_resolution",
    "routing_view",
    "admission_policy",
    "policy_resolution",
    "provider_health",
    "abi_compatibility",
)
_CANONICAL = msgspec.json.Encoder(order="sorted")


def _body_field(f: msgspec.structs.FieldInfo) -> tuple[str, object, object] | tuple[str, object]:
    if f.default is not msgspec.NODEFAULT:
        return f.encode_name, f.type, f.default
    if f.default_factory is not msgspec.NODEFAULT:
        return f.encode_name, f.type, msgspec.field(default_factory=f.default_factory)
    return f.encode_name, f.type


#: ResolvedTurnPlan without ``plan_hash`` (same fields, defaults and omit_defaults): its
#: sorted encoding is the canonical JSON the hash is taken of, without building dicts first
_PLAN_BODY_FIELDS = tuple(f for f in msgspec.structs.fields(ResolvedTurnPlan)
                          if f.name != "plan_hash")
_PLAN_BODY_NAMES = tuple(f.name for f in _PLAN_BODY_FIELDS)
_PlanBody = msgspec.defstruct("_PlanBody", [_body_field(f) for f in _PLAN_BODY_FIELDS],
                              kw_only=True, omit_defaults=True, frozen=True)
_plan_body_values = operator.attrgetter(*_PLAN_BODY_NAMES)


class _Sourced(Protocol):
    @property
    def value(self) -> int: ...


class _Budgets(Protocol):
    @property
    def turn(self) -> _Sourced: ...
    @property
    def node(self) -> _Sourced: ...
    @property
    def path(self) -> _Sourced: ...
    @property
    def edge(self) -> _Sourced: ...


class _Provider(Protocol):
    @property
    def modality(self) -> str: ...
    @property
    def primary(self) -> str: ...
    @property
    def fallbacks(self) -> tuple[str, ...]: ...


class _Merge(Protocol):
    @property
    def rule_id(self) -> str: ...
    @property
    def rule_version(self) -> str: ...


class PlanGraph(Protocol):
    """What the resolver reads from a compiled :class:`rspp.spec.GraphDefinition`."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def graph_hash(self) -> str: ...
    @property
    def profile(self) -> str: ...
    @property
    def budgets(self) -> _Budgets: ...
    @property
    def providers(self) -> tuple[_Provider, ...]: ...
    @property
    def merges(self) -> tuple[_Merge, ...]: ...
    @property
    def topo_order(self) -> tuple[str, ...]: ...
    @property
    def flow_control(self) -> FlowControl: ...
    @property
    def recording(self) -> RecordingPolicy: ...

    def edge_buffer_policies(self) -> dict[str, EdgeBufferPolicy]: ...


class CapabilitySource(Protocol):
    """The session's transport and provider capabilities, read at turn start (F-161)."""

    def capture(self, turn_id: str, bindings: Mapping[str, str]
                ) -> Sequence[tuple[str, NondeterministicSource, str]]:
        """``(input_key, source, evidence_ref)`` of each capability snapshot (see
        :mod:`rspp.contracts._capabilities`) for a turn bound to ``bindings`` (a replay's
        source also gives back the recorded ``snapshot_freeze`` mark, with its source)."""
        ...


@dataclass(frozen=True, slots=True)
class PlanRefusal:
    kind: OutcomeKind  # DEFER or REJECT
    reason: str


@dataclass(frozen=True, slots=True)
class PlanResolution:
    """Either a frozen plan or a refusal, plus the bundle the decision was made from."""

    plan: ResolvedTurnPlan | None
    refusal: PlanRefusal | None
    bundle: TurnStartBundle


def compute_plan_hash(plan: ResolvedTurnPlan) -> str:
    """SHA-256 of the canonical JSON of ``plan`` without ``plan_hash``."""
    body = _PlanBody(**dict(zip(_PLAN_BODY_NAMES, _plan_body_values(plan), strict=True)))
    return hashlib.sha256(_CANONICAL.encode(body)).hexdigest()


@dataclass(frozen=True, slots=True)
class _GraphParts:
    """What every plan of one graph shares (built on the resolver's first plan)."""

    graph_ref: str
    edge_buffer_policies: dict[str, EdgeBufferPolicy]
    merge: tuple[str, str] | None


class PlanResolver:
    """Resolves one session's turn plans from its graph and the control-plane snapshots."""

    def __init__(
        self,
        graph: PlanGraph,
        source: SnapshotSource,
        clock: Clock,
        *,
        runtime_id: str,
        schema_version: str = SCHEMA_VERSION,
    ) -> None:
        self.graph = graph
        self.source = source
        self.clock = clock
        self.runtime_id = runtime_id
        self.schema_version = schema_version
        #: what the transport and the bound providers support, frozen into each plan
        self.capabilities: CapabilitySource | None = None
        self._parts: tuple[PlanGraph, _GraphParts] | None = None

    def _graph_parts(self) -> _GraphParts:
        g = self.graph
        if self._parts is None or self._parts[0] is not g:
            self._parts = (g, _GraphParts(
                graph_ref=f"{g.name}@{g.version}#{g.graph_hash}",
                edge_buffer_policies=g.edge_buffer_policies(),
                merge=(g.merges[0].rule_id, g.merges[0].rule_version) if g.merges else None))
        return self._parts[1]

    async def resolve(
        self,
        *,
        tenant_id: str,
        session_id: str,
        turn_id: str,
        authority_epoch: int,
        start_sequence: int = 0,
    ) -> PlanResolution:
        bundle = await self.fetch(tenant_id=tenant_id, session_id=session_id)
        return self.materialise(
            bundle,
            session_id=session_id,
            turn_id=turn_id,
            authority_epoch=authority_epoch,
            start_sequence=start_sequence,
        )

    async def fetch(self, *, tenant_id: str, session_id: str) -> TurnStartBundle:
        """The turn-start snapshots of one proposal (checked by :meth:`check`)."""
        return await self.source.turn_start_bundle(
            tenant_id=tenant_id,
            session_id=session_id,
            pipeline_name=self.graph.name,
            runtime_id=self.runtime_id,
        )

    def check(self, bundle: TurnStartBundle) -> PlanRefusal | None:
        """The deterministic defer/reject verdict of a bundle (None when usable)."""
        return self._verdict(bundle)[0]

    def _verdict(self, bundle: TurnStartBundle) -> tuple[PlanRefusal | None, tuple[str, ...]]:
        """:meth:`check`'s verdict, and the expired snapshots a usable bundle was frozen
        over (see the module docstring)."""
        expiries: list[int] = []
        for name in _SNAPSHOTS:
            snap = getattr(bundle, name)
            if snap is None:
                return PlanRefusal(OutcomeKind.DEFER, f"snapshot_missing:{name}"), ()
            expiries.append(snap.meta.expires_at_ms)
        now = self.clock.wall_ms()
        stale = (tuple(name for name, at in zip(_SNAPSHOTS, expiries, strict=True) if at < now)
                 if min(expiries) < now else ())
        if stale and not (isinstance(self.source, FreezingSnapshotSource)
                          and self.source.may_freeze(bundle)):
            return PlanRefusal(OutcomeKind.DEFER, f"snapshot_stale:{stale[0]}"), ()
        return self._usable(bundle), stale

    def _usable(self, bundle: TurnStartBundle) -> PlanRefusal | None:
        abi, vr, rv = bundle.abi_compatibility, bundle.version_resolution, bundle.routing_view
        if abi is None or vr is None or rv is None:  # unreachable after the loop; for typing
            return PlanRefusal(OutcomeKind.DEFER, "snapshot_missing")
        if (
            not abi.compatible
            or abi.schema_version.split(".")[0] != self.schema_version.split(".")[0]
        ):
            return PlanRefusal(
                OutcomeKind.REJECT, f"abi_incompatible:{abi.reason or abi.schema_version}"
            )
        if vr.pipeline_name != self.graph.name or vr.pipeline_version != self.graph.version:
            return PlanRefusal(
                OutcomeKind.REJECT,
                f"version_mismatch:{vr.pipeline_name}@{vr.pipeline_version}"
                f"!={self.graph.name}@{self.graph.version}",
            )
        if rv.runtime_id != self.runtime_id:
            return PlanRefusal(OutcomeKind.REJECT, f"routing_mismatch:{rv.runtime_id}")
        if rv.health is RuntimeHealth.UNHEALTHY:
            return PlanRefusal(OutcomeKind.DEFER, "runtime_unhealthy")
        return None

    def bind_providers(self, bundle: TurnStartBundle) -> dict[str, str] | PlanRefusal:
        """Modality -> provider id: policy choice first, then health-driven fallback."""
        policy, health = bundle.policy_resolution, bundle.provider_health
        bindings: dict[str, str] = {}
        for prov in sorted(self.graph.providers, key=lambda p: p.modality):
            chain: list[str] = []
            chosen = policy.provider_bindings.get(prov.modality) if policy else None
            chain.append(chosen or prov.primary)
            chain.extend(policy.fallback_chains.get(prov.modality, ()) if policy else ())
            chain.extend(prov.fallbacks)
            pick = _first_healthy(_dedupe(chain), health)
            if pick is None:
                return PlanRefusal(OutcomeKind.DEFER, f"provider_unavailable:{prov.modality}")
            bindings[prov.modality] = pick
        return bindings

    def materialise(
        self,
        bundle: TurnStartBundle,
        *,
        session_id: str,
        turn_id: str,
        authority_epoch: int,
        start_sequence: int = 0,
    ) -> PlanResolution:
        refusal, stale = self._verdict(bundle)
        if refusal is not None:
            return PlanResolution(None, refusal, bundle)
        bound = self.bind_providers(bundle)
        if isinstance(bound, PlanRefusal):
            return PlanResolution(None, bound, bundle)
        policy = bundle.policy_resolution
        g = self.graph
        turn_budget = g.budgets.turn.value
        if policy is not None and policy.turn_budget_ms is not None:
            turn_budget = policy.turn_budget_ms
        recording = g.recording
        if policy is not None and policy.recording_level != recording.recording_level:
            recording = msgspec.structs.replace(recording, recording_level=policy.recording_level)
        capture = DeterminismCapture(derive_seed(session_id, turn_id))
        capture.capture(
            "turn_start_wall_ms",
            NondeterministicSource.SYSTEM_TIME,
            f"wall_ms:{self.clock.wall_ms()}",
        )
        refs = [_snapshot_ref(getattr(bundle, name).meta) for name in _SNAPSHOTS]
        for name, ref in zip(_SNAPSHOTS, refs, strict=True):
            capture.capture(f"snapshot:{name}", NondeterministicSource.EXTERNAL_CALL, ref)
        if self.capabilities is not None:
            for key, source, ref in self.capabilities.capture(turn_id, bound):
                capture.capture(key, source, ref)
        if stale and isinstance(self.source, FreezingSnapshotSource):
            capture.capture(SNAPSHOT_FREEZE_KEY, NondeterministicSource.EXTERNAL_CALL,
                            freeze_ref(stale))
        parts = self._graph_parts()
        plan = ResolvedTurnPlan(
            turn_id=turn_id,
            pipeline_version=g.version,
            plan_hash="0" * 64,
            graph_definition_ref=parts.graph_ref,
            execution_profile=g.profile,
            authority_epoch=authority_epoch,
            budgets=TurnBudgets(
                turn_budget_ms=turn_budget,
                node_budget_ms_default=g.budgets.node.value,
                path_budget_ms_default=g.budgets.path.value,
                edge_budget_ms_default=g.budgets.edge.value,
            ),
            provider_bindings=bound,
            edge_buffer_policies=parts.edge_buffer_policies,
            flow_control=g.flow_control,
            allowed_adaptive_actions=policy.allowed_adaptive_actions if policy else (),
            snapshot_provenance=SnapshotProvenance(
                **{f"{n}_snapshot": ref for n, ref in zip(_SNAPSHOTS, refs, strict=True)}
            ),
            recording_policy=recording,
            determinism=build_determinism_context(
                seed=capture.seed,
                start_sequence=start_sequence,
                topo_order=g.topo_order,
                merge_rule=parts.merge,
                inputs=capture.inputs,
            ),
        )
        plan = msgspec.structs.replace(plan, plan_hash=compute_plan_hash(plan))
        if stale and isinstance(self.source, FreezingSnapshotSource):
            self.source.frozen(turn_id, stale)
        return PlanResolution(plan, None, bundle)


def _snapshot_ref(meta: SnapshotMeta) -> str:
    return f"{meta.snapshot_id}@v{meta.version}"


def _dedupe(items: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)


def _first_healthy(chain: list[str], health: ProviderHealth | None) -> str | None:
    for provider in chain:
        entry = health.providers.get(provider) if health else None
        if entry is None or entry.status is not ProviderStatus.UNHEALTHY:
            return provider
    return None
