"""The compiled, immutable :class:`GraphDefinition` a session is instantiated from."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

import msgspec

from rspp.contracts import EdgeBufferPolicy, FlowControl, Lane, RecordingPolicy
from rspp.spec._catalog import PortSpec, PortType
from rspp.spec._condition import Condition
from rspp.spec._jitter import JitterProfiles


class ValueSource(StrEnum):
    """Where a resolved value came from (lowest to highest precedence)."""

    DEFAULT = "default"
    NODE_TYPE_DEFAULT = "node_type_default"
    PROFILE = "execution_profile_default"
    TEMPLATE = "template"
    SPEC = "spec"
    ENVIRONMENT = "environment"
    TENANT = "tenant"
    SESSION = "session"


def freeze(value: object) -> object:
    """Deep-freeze JSON-like data: dicts become :class:`FrozenMap`, lists tuples."""
    if isinstance(value, FrozenMap):
        return value
    if isinstance(value, Mapping):
        return FrozenMap(value)
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: object) -> object:
    """Inverse of :func:`freeze` (plain dicts and lists, for encoding)."""
    if isinstance(value, Mapping):
        return {str(k): thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


class FrozenMap(Mapping[str, object]):
    """An immutable, hashable mapping with deep-frozen values."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, object] | None = None) -> None:
        self._data = {str(k): freeze(v) for k, v in (data or {}).items()}

    def __getitem__(self, key: str) -> object:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(msgspec.json.encode(thaw(self), order="sorted"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self.items()) == dict(other.items())

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"


@dataclass(frozen=True, slots=True)
class Sourced:
    """A resolved integer value and where it came from."""

    value: int
    source: ValueSource


@dataclass(frozen=True, slots=True)
class NodeDef:
    id: str
    type: str
    params: FrozenMap
    scope: Literal["session", "turn"]
    is_async: bool
    cancel_mode: Literal["soft", "hard"]
    timeout: Sourced
    cancel_grace: Sourced
    inputs: tuple[PortSpec, ...]
    outputs: tuple[PortSpec, ...]
    provider_modality: Literal["stt", "llm", "tts"] | None = None
    origin: str = "spec"
    #: input events of a kind the node does not declare (F-020)
    unknown_event_action: Literal["drop", "pass_through", "fail"] = "drop"
    """``spec``, ``template``, ``subgraph:<instance>@<name@version>`` or ``inserted``."""


@dataclass(frozen=True, slots=True)
class EdgeDef:
    id: str
    source_node: str
    source_port: str
    target_node: str
    target_port: str
    port_type: PortType
    buffer: EdgeBufferPolicy
    lane: Lane
    condition: Condition | None = None
    role: Literal["data", "fallback"] = "data"
    """``fallback`` edges deliver only after the target's primary failed."""
    flow_mode: str | None = None
    """This edge's flow-control mode when its spec sets one (else the pipeline's)."""
    lane_bounds: tuple[tuple[str, int], ...] = ()
    """The edge's own lane bounds its spec sets (``telemetry_max_items``,
    ``control_max_items``), else the kernel's defaults."""


@dataclass(frozen=True, slots=True)
class MergeDef:
    node: str
    rule_id: str
    rule_version: str
    input_order: tuple[str, ...]
    """Edge ids in source-priority order (ties of the rule break by this order)."""


@dataclass(frozen=True, slots=True)
class SelectDef:
    node: str
    policy: str
    candidates: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FallbackDef:
    primary: str
    fallback: str
    on: tuple[Literal["timeout", "error"], ...]


@dataclass(frozen=True, slots=True)
class ProviderBinding:
    modality: Literal["stt", "llm", "tts"]
    primary: str
    fallbacks: tuple[str, ...]
    timeout: Sourced
    config: FrozenMap
    source: ValueSource


@dataclass(frozen=True, slots=True)
class GraphPort:
    """A transport-facing port: ``input.<name>`` or ``output.<name>``."""

    name: str
    type: PortType
    edges: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class OverloadPolicy:
    """Compiled ``overload`` of a spec (F-048): when to degrade, what to use, when to recover."""

    shed_threshold: int
    window_ms: int
    recover_after_ms: int
    degrade_providers: FrozenMap


@dataclass(frozen=True, slots=True)
class TurnArbitration:
    """Compiled ``turns`` of a spec (F-140): the overlap and late-event policies."""

    overlap: str
    late_events: str


@dataclass(frozen=True, slots=True)
class Budgets:
    turn: Sourced
    node: Sourced
    path: Sourced
    edge: Sourced
    provider_timeout: Sourced
    cancel_grace: Sourced


@dataclass(frozen=True, slots=True)
class GraphDefinition:
    """Everything the kernel needs to instantiate a session; immutable."""

    name: str
    version: str
    graph_hash: str
    """SHA-256 over execution-relevant content only (metadata/comments excluded)."""
    spec_hash: str
    profile: str
    nodes: tuple[NodeDef, ...]
    edges: tuple[EdgeDef, ...]
    merges: tuple[MergeDef, ...]
    selects: tuple[SelectDef, ...]
    fallbacks: tuple[FallbackDef, ...]
    topo_order: tuple[str, ...]
    entry_ports: tuple[GraphPort, ...]
    exit_ports: tuple[GraphPort, ...]
    providers: tuple[ProviderBinding, ...]
    budgets: Budgets
    flow_control: FlowControl
    flow_control_source: ValueSource
    recording: RecordingPolicy
    metadata: FrozenMap
    #: the automatic degrade posture under sustained shedding (None: not declared)
    overload: OverloadPolicy | None = None
    #: turn arbitration (F-140; None: not declared, the driver preempts)
    turns: TurnArbitration | None = None
    #: the live transports' ingress jitter buffers (F-087; defaults when not declared)
    jitter: JitterProfiles = field(default_factory=JitterProfiles)
    #: commit point of a cancel (F-039): ms of reply audio after the play position that
    #: still play when the turn is cancelled (``transport.commit_ms``; 0: none)
    commit_ms: int = 0

    def node(self, node_id: str) -> NodeDef:
        """The node called ``node_id`` (KeyError if absent)."""
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    def provider(self, modality: str) -> ProviderBinding | None:
        """Binding for ``stt``/``llm``/``tts`` if declared."""
        return next((p for p in self.providers if p.modality == modality), None)

    def provider_bindings(self) -> dict[str, str]:
        """Modality -> primary provider (``ResolvedTurnPlan.provider_bindings``)."""
        return {p.modality: p.primary for p in self.providers}

    def edge_buffer_policies(self) -> dict[str, EdgeBufferPolicy]:
        """Edge id -> buffer policy (the shape ``ResolvedTurnPlan`` wants)."""
        return {e.id: e.buffer for e in self.edges}

    def to_builtins(self) -> dict[str, object]:
        """JSON-ready view (conditions as their source text)."""
        out = msgspec.to_builtins(self, enc_hook=_enc_hook, order="deterministic")
        if not isinstance(out, dict):  # pragma: no cover - dataclass always encodes to dict
            raise TypeError("unexpected encoding")
        return out


def _enc_hook(obj: object) -> object:
    if isinstance(obj, FrozenMap):
        return thaw(obj)
    if isinstance(obj, Condition):
        return obj.source
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")
