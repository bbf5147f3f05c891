"""Instantiate a RuntimeGraph for one session: node hosts, buffers, routing tables.

The session hands itself in as a :class:`WiredSession`, the union of what its node
contexts and hosts read; this module never imports the session module.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Protocol

from rspp.contracts import Lane
from rspp.kernel._buffer import (
    EdgeBuffer,
    LaneEdgeBuffer,
    OrderedEdgeBuffer,
    OrderedLaneEdgeBuffer,
    Wakeup,
)
from rspp.kernel._bufferspec import BufferConfig
from rspp.kernel._defaults import DictState, LocalCancelToken, SessionTelemetry, UnboundedBudget
from rspp.kernel._graph import INPUT, OUTPUT, GraphError, RuntimeGraph
from rspp.kernel._handles import StateHandle
from rspp.kernel._host import BUFFERED, EXIT, INLINE, HostSession, NodeHost, Target
from rspp.kernel._node import NodeContext, NodeSession
from rspp.kernel._registry import NodeRegistry

__all__ = ["StateFactory", "WiredSession", "build_hosts"]

#: ``factory(node_id, scope)`` -> the node's ``ctx.state`` (scope: ``session`` or ``turn``)
StateFactory = Callable[[str, str], StateHandle]


class WiredSession(HostSession, NodeSession, Protocol):
    """The session as wiring sees it: its graph, registry, buffers and routing tables."""

    @property
    def graph(self) -> RuntimeGraph: ...

    @property
    def registry(self) -> NodeRegistry: ...

    @property
    def cancel_token(self) -> LocalCancelToken: ...

    @property
    def debug(self) -> bool: ...

    @property
    def hosts(self) -> dict[str, NodeHost]: ...

    @property
    def entries(self) -> dict[str, tuple[EdgeBuffer, tuple[Target, ...]]]: ...

    @property
    def edge_buffers(self) -> dict[str, EdgeBuffer]: ...

    @property
    def fallback_buffers(self) -> dict[str, EdgeBuffer]: ...


def build_hosts(s: WiredSession, *, seed: int | None, inbox: BufferConfig,
                wakeup: Wakeup, state_factory: StateFactory | None = None) -> None:
    """Fill ``s.hosts``, ``s.entries``, ``s.edge_buffers`` from ``s.graph``.

    ``seed`` overrides the graph's seed; ``inbox`` configures entry and fallback
    buffers; ``wakeup`` is the session scheduler's, fired by entry buffers.
    """
    g = s.graph
    seed = seed if seed is not None else g.seed
    for decl in g.nodes:
        cls = s.registry.resolve(decl.type)
        state: StateHandle = DictState() if state_factory is None else \
            state_factory(decl.id, decl.scope or cls.scope)
        ctx = NodeContext(
            s, decl.id, clock=s.clock, cancel=LocalCancelToken(s.cancel_token),
            budget=UnboundedBudget(), state=state,
            telemetry=SessionTelemetry(decl.id, lambda: s.debug), seed=seed,
        )
        params = dict(decl.params)
        if decl.id in g.merge_rules:
            params.setdefault("rule", g.merge_rules[decl.id][0])
            params.setdefault("input_order", g.merge_rules[decl.id][1])
        if decl.id in g.select_policies:
            params.setdefault("policy", g.select_policies[decl.id][0])
            params.setdefault("candidates", g.select_policies[decl.id][1])
        try:
            node = cls(ctx, params)
        except Exception as exc:
            raise GraphError(
                f"node {decl.id!r} (type {decl.type!r}) failed to construct: {exc}; "
                "check its params"
            ) from exc
        host = NodeHost(s, decl, node)
        ctx._host = host
        s.hosts[decl.id] = host
    # a node fed by several buffers takes their data in routing order (OrderedEdgeBuffer)
    fed = Counter(e.target for e in g.edges if e.role != "fallback" and e.target != OUTPUT)
    fed.update({d.fallback for d in g.nodes if d.fallback is not None})
    outs: dict[tuple[str, str], list[Target]] = {}
    for e in g.edges:
        if e.role == "fallback":
            continue
        if e.target == OUTPUT:
            t: Target = (EXIT, None, e.target_port, e.condition, e.id)
        else:
            host = s.hosts[e.target]
            port = e.id if host.by_edge else e.target_port
            if host.is_async:
                kind = _buffer_class(e.buffer, ordered=fed[e.target] > 1)
                buf = kind(e.id, e.buffer, s.signals, s.clock)
                buf.wakeup = host.wakeup
                host.buffers.append((buf, port))
                s.edge_buffers[e.id] = buf
                t = (BUFFERED, buf, port, e.condition, e.id)
            else:
                t = (INLINE, host, port, e.condition, e.id)
        outs.setdefault((e.source, e.source_port), []).append(t)
    for (src, port), targets in outs.items():
        if src == INPUT:
            buf = EdgeBuffer(f"input.{port}", inbox, s.signals, s.clock)
            buf.wakeup = wakeup
            s.entries[port] = (buf, tuple(targets))
        else:
            host = s.hosts[src]
            if port not in host.node.outputs:
                raise GraphError(
                    f"edge from {src}.{port}: node type {host.decl.type!r} has no output {port!r} "
                    f"(outputs: {list(host.node.outputs)})"
                )
            host.outs[port] = tuple(targets)
    for host in s.hosts.values():
        for p in host.node.outputs:
            host.outs.setdefault(p, ())
        host.finalize_routes()
        fb = host.decl.fallback
        if fb is not None and s.hosts[fb].is_async and fb not in s.fallback_buffers:
            fbh = s.hosts[fb]
            kind = OrderedEdgeBuffer if fed[fb] > 1 else EdgeBuffer
            buf = kind(f"fallback:{host.node_id}->{fb}", inbox, s.signals, s.clock)
            buf.wakeup = fbh.wakeup
            fbh.buffers.append((buf, fbh.node.inputs[0] if fbh.node.inputs else "in"))
            s.fallback_buffers[fb] = buf


def _buffer_class(cfg: BufferConfig, *, ordered: bool) -> type[EdgeBuffer]:
    """The buffer of one edge: ordered across a consumer's several inputs, and queueing
    its data on the edge's lane when the spec sets ControlLane or TelemetryLane (F-147)."""
    if cfg.lane is Lane.DATA:
        return OrderedEdgeBuffer if ordered else EdgeBuffer
    return OrderedLaneEdgeBuffer if ordered else LaneEdgeBuffer
