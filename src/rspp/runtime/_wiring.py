"""Instantiate a RuntimeGraph for one session: node hosts, buffers, routing tables."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rspp.runtime._buffer import EdgeBuffer
from rspp.runtime._context import NodeContext
from rspp.runtime._defaults import DictState, LocalCancelToken, SessionTelemetry, UnboundedBudget
from rspp.runtime._graph import INPUT, OUTPUT, GraphError
from rspp.runtime._host import BUFFERED, EXIT, INLINE, NodeHost, Target

if TYPE_CHECKING:
    from rspp.runtime._session import SessionActor

__all__ = ["build_hosts"]


def build_hosts(s: SessionActor) -> None:
    """Fill ``s.hosts``, ``s.entries``, ``s.edge_buffers`` from ``s.graph``."""
    g = s.graph
    seed = s.options.seed if s.options.seed is not None else g.seed
    for decl in g.nodes:
        cls = s.registry.resolve(decl.type)
        ctx = NodeContext(
            s, decl.id, clock=s.clock, cancel=LocalCancelToken(s.cancel_token),
            budget=UnboundedBudget(), state=DictState(),
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
                buf = EdgeBuffer(e.id, e.buffer, s.signals, s.clock)
                buf.wakeup = host.wakeup
                host.buffers.append((buf, port))
                s.edge_buffers[e.id] = buf
                t = (BUFFERED, buf, port, e.condition, e.id)
            else:
                t = (INLINE, host, port, e.condition, e.id)
        outs.setdefault((e.source, e.source_port), []).append(t)
    for (src, port), targets in outs.items():
        if src == INPUT:
            buf = EdgeBuffer(f"input.{port}", s.options.inbox, s.signals, s.clock)
            buf.wakeup = s._wakeup
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
            buf = EdgeBuffer(f"fallback:{host.node_id}->{fb}", s.options.inbox, s.signals, s.clock)
            buf.wakeup = fbh.wakeup
            fbh.buffers.append((buf, fbh.node.inputs[0] if fbh.node.inputs else "in"))
            s.fallback_buffers[fb] = buf
