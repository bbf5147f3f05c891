"""The executor's view of a compiled graph (adapter over ``rspp.spec.GraphDefinition``).

:class:`RuntimeGraph` is what a session instantiates. Build it from the spec
compiler's ``GraphDefinition`` (:meth:`RuntimeGraph.from_definition`, duck-typed
so the runtime does not depend on spec internals) or programmatically with
:class:`GraphBuilder` (tests, benchmarks, embedded use).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rspp.contracts import Lane
from rspp.errors import RuntimeKernelError
from rspp.kernel._bufferspec import BufferConfig

__all__ = ["EdgeDecl", "GraphBuilder", "GraphError", "NodeDecl", "RuntimeGraph"]

INPUT, OUTPUT = "input", "output"
Condition = Callable[[Mapping[str, Any]], bool]


class GraphError(RuntimeKernelError):
    """A graph cannot be instantiated (names the node/edge and how to fix it)."""


@dataclass(frozen=True, slots=True)
class NodeDecl:
    id: str
    type: str
    params: Mapping[str, Any] = field(default_factory=dict)
    scope: str | None = None
    cancel_mode: str | None = None
    timeout_ms: int | None = None
    fallback: str | None = None
    fallback_on: tuple[str, ...] = ("timeout", "error")
    concurrency_limit: int | None = None
    fairness_key: str | None = None
    max_input_bytes: int | None = None
    on_error: str = "dead_letter"  # dead_letter | end_session
    #: soft cancel: how long the in-flight event may run before a forced stop (None: default)
    cancel_grace_ms: int | None = None
    #: an input event of a kind the node does not declare (``Node.input_kinds``), F-020:
    #: "drop" (with a notice), "pass_through" (forwarded unprocessed) or "fail"
    unknown_event_action: str = "drop"


@dataclass(frozen=True, slots=True)
class EdgeDecl:
    id: str
    source: str
    source_port: str
    target: str
    target_port: str
    buffer: BufferConfig = field(default_factory=BufferConfig)
    condition: Condition | None = None
    condition_text: str | None = None
    lane: Lane = Lane.DATA
    role: str = "data"


@dataclass(frozen=True, slots=True)
class RuntimeGraph:
    """Nodes, edges, merges/selects/fallbacks and transport ports of one pipeline version."""

    name: str
    version: str
    nodes: tuple[NodeDecl, ...]
    edges: tuple[EdgeDecl, ...]
    merge_rules: Mapping[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    select_policies: Mapping[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    graph_hash: str | None = None
    seed: int = 0

    @property
    def pipeline_version(self) -> str:
        return f"{self.name}@{self.version}"

    def node(self, node_id: str) -> NodeDecl:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise GraphError(f"no node {node_id!r} in graph {self.pipeline_version}")

    def entry_ports(self) -> list[str]:
        return sorted({e.source_port for e in self.edges if e.source == INPUT})

    def exit_ports(self) -> list[str]:
        return sorted({e.target_port for e in self.edges if e.target == OUTPUT})

    def reply_ports(self) -> frozenset[str]:
        """The exit ports a turn's reply must end on before it is delivered: every exit
        port but transcripts that at least one unconditional edge feeds (an output reached
        only through a ``when:`` condition may carry nothing in a turn: not waited for).

        A graph whose only per-turn outputs are transcripts (STT only) has its final
        transcript as the reply (partials excluded): it ends with the turn's
        ``stream_end`` once the transcript was delivered."""
        fed = {e.target_port for e in self.edges if e.target == OUTPUT and e.condition is None}
        reply = frozenset(p for p in fed if not p.startswith("transcript"))
        return reply or frozenset(p for p in fed if not p.endswith("partial"))

    def validate(self) -> None:
        ids = {n.id for n in self.nodes}
        if len(ids) != len(self.nodes):
            raise GraphError(f"duplicate node ids in {self.pipeline_version}")
        for e in self.edges:
            for end, nid in (("source", e.source), ("target", e.target)):
                if nid not in ids and nid not in (INPUT, OUTPUT):
                    raise GraphError(
                        f"edge {e.id!r}: {end} node {nid!r} does not exist; "
                        f"declare it under nodes or fix the edge's {end}"
                    )
        for n in self.nodes:
            if n.fallback is not None and n.fallback not in ids:
                raise GraphError(f"node {n.id!r}: fallback node {n.fallback!r} does not exist")

    @classmethod
    def from_definition(cls, gd: Any, **buffer_overrides: Any) -> RuntimeGraph:
        """Adapt a spec-compiled ``GraphDefinition``."""
        flow = getattr(gd, "flow_control", None)
        fallbacks = {f.primary: f for f in getattr(gd, "fallbacks", ())}
        nodes = []
        for nd in gd.nodes:
            fb = fallbacks.get(nd.id)
            timeout = getattr(nd, "timeout", None)
            params = dict(nd.params.items()) if hasattr(nd.params, "items") else {}
            nodes.append(NodeDecl(
                id=nd.id, type=nd.type, params=params, scope=nd.scope,
                cancel_mode=nd.cancel_mode,
                timeout_ms=_node_time_limit(nd, timeout),
                fallback=fb.fallback if fb else None,
                fallback_on=tuple(fb.on) if fb else ("timeout", "error"),
                concurrency_limit=params.get("concurrency_limit"),
                fairness_key=params.get("fairness_key"),
                cancel_grace_ms=getattr(getattr(nd, "cancel_grace", None), "value", None),
                unknown_event_action=getattr(nd, "unknown_event_action", "drop"),
            ))
        edges = []
        for ed in gd.edges:
            cond = ed.condition
            edges.append(EdgeDecl(
                id=ed.id, source=ed.source_node, source_port=ed.source_port,
                target=ed.target_node, target_port=ed.target_port,
                buffer=BufferConfig.from_policy(ed.buffer, flow, **_edge_overrides(
                    ed, buffer_overrides)),
                condition=cond.evaluate if cond is not None else None,
                condition_text=getattr(cond, "source", None),
                lane=Lane(ed.lane), role=getattr(ed, "role", "data"),
            ))
        merges = {m.node: (m.rule_id, tuple(m.input_order)) for m in getattr(gd, "merges", ())}
        selects = {s.node: (s.policy, tuple(s.candidates)) for s in getattr(gd, "selects", ())}
        g = cls(
            name=gd.name, version=gd.version, nodes=tuple(nodes), edges=tuple(edges),
            merge_rules=merges, select_policies=selects, graph_hash=getattr(gd, "graph_hash", None),
        )
        g.validate()
        return g


class GraphBuilder:
    """Programmatic graph construction: ``chain``, ``node``, ``edge``."""

    def __init__(self, name: str = "graph", version: str = "1.0.0") -> None:
        self.name = name
        self.version = version
        self._nodes: list[NodeDecl] = []
        self._edges: list[EdgeDecl] = []
        self.default_buffer = BufferConfig()

    def node(self, node_id: str, type_name: str, **kw: Any) -> GraphBuilder:
        self._nodes.append(NodeDecl(id=node_id, type=type_name, **kw))
        return self

    def edge(self, source: str, target: str, *, edge_id: str | None = None,
             buffer: BufferConfig | None = None, condition: Condition | None = None,
             condition_text: str | None = None, role: str = "data") -> GraphBuilder:
        """Connect ``node.port`` to ``node.port`` (``input.x`` / ``output.y`` for transports)."""
        s, _, sp = source.partition(".")
        t, _, tp = target.partition(".")
        self._edges.append(EdgeDecl(
            id=edge_id or f"{source}->{target}", source=s, source_port=sp or "out",
            target=t, target_port=tp or "in", buffer=buffer or self.default_buffer,
            condition=condition, condition_text=condition_text, role=role,
        ))
        return self

    def chain(self, *node_ids: str, entry: str = "audio", exit_: str = "audio",
              buffer: BufferConfig | None = None) -> GraphBuilder:
        """Connect ``input.entry -> n1 -> n2 ... -> output.exit_``."""
        prev = f"{INPUT}.{entry}"
        for nid in node_ids:
            self.edge(prev, f"{nid}.in", buffer=buffer)
            prev = f"{nid}.out"
        self.edge(prev, f"{OUTPUT}.{exit_}", buffer=buffer)
        return self

    def build(self, **kw: Any) -> RuntimeGraph:
        g = RuntimeGraph(self.name, self.version, tuple(self._nodes), tuple(self._edges), **kw)
        g.validate()
        return g


def _node_time_limit(nd: Any, timeout: Any) -> int | None:
    """The host's limit on one ``process`` call of an async node, in ms (None: no limit).

    A provider-backed node (stt/llm/tts) waits on its providers, whose calls carry their
    own timeouts, retries and fallbacks (bounded by the turn budget): the profile's node
    budget must not cut a call short before a slow provider times out and its fallback
    answers. Only a ``timeout_ms`` the spec sets explicitly bounds such a node.
    """
    if not nd.is_async:
        return None
    value = getattr(timeout, "value", None)
    if getattr(nd, "provider_modality", None) is None:
        return value
    return value if str(getattr(timeout, "source", "")) == "spec" else None


def _edge_overrides(ed: Any, overrides: dict[str, Any]) -> dict[str, Any]:
    """An edge's own flow-control mode (F-145) wins over the pipeline's; its lane and lane
    bounds (F-147) configure its buffer."""
    mode = getattr(ed, "flow_mode", None)
    out = {**overrides, "flow_mode": mode} if mode else dict(overrides)
    out.update(getattr(ed, "lane_bounds", ()))
    lane = Lane(ed.lane)
    if lane is not Lane.DATA:
        out["lane"] = lane
    return out
