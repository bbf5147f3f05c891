"""Graph compiler: flattened spec -> immutable :class:`GraphDefinition`."""

from __future__ import annotations

from datetime import date

from rspp.contracts import Lane
from rspp.spec._catalog import (
    BUILTIN_NODE_TYPES,
    NodeSignature,
    NodeTypeCatalog,
    PortSpec,
    PortType,
    compatible,
)
from rspp.spec._condition import ConditionError, compile_condition
from rspp.spec._expand import FlatEdge, FlatNode, flatten
from rspp.spec._graph import (
    EdgeDef,
    FallbackDef,
    FrozenMap,
    GraphDefinition,
    GraphPort,
    NodeDef,
    OverloadPolicy,
    ProviderBinding,
    Sourced,
    TurnArbitration,
    ValueSource,
)
from rspp.spec._graph_checks import check_structure, fanin_plans
from rspp.spec._issues import LintIssue, SpecInvalid
from rspp.spec._jitter import compile_jitter
from rspp.spec._loader import source_of, spec_hash
from rspp.spec._model import BufferOverride, PipelineSpec
from rspp.spec._params_check import check_params
from rspp.spec._profile import PROFILES, ExecutionProfile, profile_problem
from rspp.spec._providers_check import ProviderAdapterCatalog, check_providers
from rspp.spec._resolve_parts import (
    execution_hash,
    resolve_budgets,
    resolve_buffer,
    resolve_flow_control,
    resolve_providers,
    resolve_recording,
)
from rspp.spec._subgraphs import FileSubgraphResolver, SubgraphResolver
from rspp.spec._wires import Trigger, Wire
from rspp.spec._yaml import SourceMap

ENTRY_TYPES = {"audio": PortType.AUDIO, "text": PortType.TEXT, "control": PortType.CONTROL,
               "vad": PortType.VAD}
RESERVED = ("input", "output")
#: port types whose edges default to the ControlLane (DESIGN invariant 3): control events
#: and the VAD's speech boundaries, which drive the turn lifecycle, are never shed
_CONTROL_PORTS = frozenset({PortType.CONTROL, PortType.VAD})
#: Metadata key set on nodes inserted by configuration layers (shown as their origin).
INSERTED_MARK = "rspp.inserted_by"


def _signature(node: FlatNode, catalog: NodeTypeCatalog) -> NodeSignature | None:
    ports = node.spec.ports
    if ports is not None:
        base = catalog.signature(node.spec.type)
        return NodeSignature(
            type_name=node.spec.type,
            inputs=tuple(PortSpec(name=p.name, type=p.type, required=p.required, multi=p.multi,
                                  streaming=p.streaming) for p in ports.inputs),
            outputs=tuple(PortSpec(name=p.name, type=p.type, required=p.required, multi=p.multi,
                                   streaming=p.streaming) for p in ports.outputs),
            is_async=ports.is_async,
            default_params=base.default_params if base else {},
            provider_modality=base.provider_modality if base else None,
            params=base.params if base else None,
        )
    return catalog.signature(node.spec.type)


def analyse(
    spec: PipelineSpec,
    *,
    profile: ExecutionProfile | None = None,
    catalog: NodeTypeCatalog | None = None,
    subgraphs: SubgraphResolver | None = None,
    adapters: ProviderAdapterCatalog | None = None,
    as_of: date | None = None,
) -> tuple[GraphDefinition | None, list[LintIssue]]:
    """Compile ``spec``; return the graph (None if any error) and every issue found.

    With ``adapters``, provider adapter names and options under ``providers:`` are checked too.
    Deprecated fields are judged in their lifecycle phase on ``as_of`` (default: today).
    """
    src = source_of(spec)
    catalog = catalog or BUILTIN_NODE_TYPES
    if subgraphs is None and spec.subgraphs:
        subgraphs = FileSubgraphResolver.near(src.file)
    issues: list[LintIssue] = []
    if profile is None:
        problem = profile_problem(spec.profile)
        if problem is not None:
            issues.append(src.issue(("profile",), *problem))
        profile = PROFILES.get(spec.profile)
    flat = flatten(spec, subgraphs)
    issues += flat.issues
    if adapters is not None:
        issues += check_providers(spec, adapters)

    nodes: dict[str, tuple[FlatNode, NodeSignature]] = {}
    for node in flat.nodes:
        if node.id.split(".")[-1] in RESERVED:
            issues.append(node.src.issue((*node.path, "id"), f"node id {node.id!r} is reserved",
                                         "rename the node; input/output name the transport"))
            continue
        if node.id in nodes:
            issues.append(node.src.issue((*node.path, "id"), f"duplicate node id {node.id!r}",
                                         "give every node a unique id"))
            continue
        sig = _signature(node, catalog)
        if sig is None:
            known = ", ".join(getattr(catalog, "names", lambda: ())())
            why = getattr(catalog, "why_unknown", lambda _t: None)(node.spec.type)
            issues.append(node.src.issue(
                (*node.path, "type"), why or f"unknown node type {node.spec.type!r}",
                f"use a built-in type ({known}), a Python class `python:MODULE:CLASS`, a type "
                "published in the `rspp.nodes` entry-point group, or declare `ports:`",
            ))
            continue
        issues += check_params(node, sig, as_of)
        nodes[node.id] = (node, sig)

    wires = _wire_edges(flat.edges, nodes, issues)
    fallbacks = _wire_fallbacks(nodes, wires, issues)
    issues += check_structure(nodes, wires, fallbacks)
    merges, selects = fanin_plans(nodes, wires, profile, issues)
    if profile is None or any(i.severity == "error" for i in issues):
        return None, issues

    budgets = resolve_budgets(spec, profile)
    node_defs = []
    for node_id, (node, sig) in nodes.items():
        s = node.spec
        timeout = (Sourced(s.timeout_ms, ValueSource.SPEC) if s.timeout_ms is not None
                   else budgets.node)
        grace = (Sourced(s.cancel_grace_ms, ValueSource.SPEC) if s.cancel_grace_ms is not None
                 else budgets.cancel_grace)
        node_defs.append(NodeDef(
            id=node_id, type=s.type, params=FrozenMap({**sig.default_params, **s.params}),
            scope=s.scope or sig.default_scope, is_async=sig.is_async,
            cancel_mode=s.cancel_mode or sig.default_cancel_mode, timeout=timeout,
            cancel_grace=grace, inputs=sig.inputs, outputs=sig.outputs,
            provider_modality=sig.provider_modality,
            origin=str(s.metadata.get(INSERTED_MARK, node.origin)),
            unknown_event_action=s.unknown_event_action or spec.unknown_event_action,
        ))
    edge_defs = []
    for w in wires:
        # control and speech-boundary (vad) edges are ControlLane: served first, never shed
        lane = w.flat.spec.lane or (Lane.CONTROL if w.port_type in _CONTROL_PORTS
                                    else Lane.DATA)
        edge_defs.append(EdgeDef(
            id=w.id, source_node=w.source_node, source_port=w.source_port,
            target_node=w.target_node, target_port=w.target_port, port_type=w.port_type,
            buffer=resolve_buffer(w.flat.spec.buffer, w.port_type, profile,
                                  budgets.turn.value,
                                  # the strategy is the way in's: reply audio to
                                  # `output` keeps the profile's policy (F-054)
                                  spec.transport.buffering if spec.transport
                                  and w.target_node != "output" else None),
            lane=lane,
            condition=w.condition, role="fallback" if w.role == "fallback" else "data",
            flow_mode=_edge_flow_mode(w.flat.spec.buffer),
            lane_bounds=_edge_lane_bounds(w.flat.spec.buffer),
        ))
    needed = {sig.provider_modality for _, sig in nodes.values() if sig.provider_modality}
    providers = resolve_providers(spec, profile, budgets, {str(m) for m in needed})
    overload = _overload(spec, providers, issues, src)
    jitter = compile_jitter(spec.transport, issues, src)
    if (overload is not None or spec.transport is not None) and \
            any(i.severity == "error" for i in issues):
        return None, issues
    flow, flow_source = resolve_flow_control(spec, profile)
    recording = resolve_recording(spec, profile)
    order = _topo(list(nodes), wires)
    entry = _ports(edge_defs, "input")
    exits = _ports(edge_defs, "output")
    content: dict[str, object] = {
        "profile": profile.name,
        "nodes": sorted(
            ({"id": n.id, "type": n.type, "params": n.params, "scope": n.scope,
              "cancel_mode": n.cancel_mode, "timeout": n.timeout.value,
              "is_async": n.is_async, **_execution_extras(n, budgets.cancel_grace)}
             for n in node_defs),
            key=lambda d: str(d["id"])),
        "edges": sorted(
            ({"id": e.id, "when": e.condition, "buffer": e.buffer, "lane": e.lane,
              "role": e.role,  # a flow mode is hashed only when an edge declares one
              **({"flow_mode": e.flow_mode} if e.flow_mode else {}),
              **({"lane_bounds": e.lane_bounds} if e.lane_bounds else {})}
             for e in edge_defs), key=lambda d: str(d["id"])),
        "merges": merges, "selects": selects, "fallbacks": fallbacks,
        "providers": [(p.modality, p.primary, p.fallbacks, p.timeout.value, p.config)
                      for p in providers],
        "budgets": [budgets.turn.value, budgets.node.value, budgets.path.value,
                    budgets.edge.value, budgets.provider_timeout.value,
                    budgets.cancel_grace.value],
        "flow_control": flow, "recording": recording,
        **({"overload": overload} if overload is not None else {}),
        **({"turns": [spec.turns.overlap, spec.turns.late_events]}
           if spec.turns is not None else {}),
        # hashed only when declared: a spec without it keeps the hash it always had
        **({"jitter": jitter} if spec.transport is not None else {}),
        **({"commit_ms": spec.transport.commit_ms}
           if spec.transport is not None and spec.transport.commit_ms else {}),
    }
    graph = GraphDefinition(
        name=spec.name, version=spec.version, graph_hash=execution_hash(content),
        spec_hash=spec_hash(spec), profile=profile.name, nodes=tuple(node_defs),
        edges=tuple(edge_defs), merges=tuple(merges), selects=tuple(selects),
        fallbacks=tuple(FallbackDef(p, f, on) for p, f, on in fallbacks),
        topo_order=order, entry_ports=entry, exit_ports=exits,
        providers=providers, budgets=budgets, flow_control=flow, flow_control_source=flow_source,
        recording=recording, metadata=FrozenMap(spec.metadata), overload=overload,
        turns=TurnArbitration(spec.turns.overlap, spec.turns.late_events)
        if spec.turns is not None else None,
        jitter=jitter, commit_ms=spec.transport.commit_ms if spec.transport is not None else 0,
    )
    return graph, issues


def compile_spec(
    spec: PipelineSpec,
    *,
    profile: ExecutionProfile | None = None,
    catalog: NodeTypeCatalog | None = None,
    subgraphs: SubgraphResolver | None = None,
    adapters: ProviderAdapterCatalog | None = None,
    as_of: date | None = None,
) -> GraphDefinition:
    """Compile ``spec`` into a :class:`GraphDefinition` or raise ``SpecInvalid``."""
    graph, issues = analyse(spec, profile=profile, catalog=catalog, subgraphs=subgraphs,
                            adapters=adapters, as_of=as_of)
    if graph is None:
        raise SpecInvalid(tuple(i for i in issues if i.severity == "error"))
    return graph


def _port_hint(kind: str, node: str, ports: tuple[PortSpec, ...]) -> str:
    names = ", ".join(f"{node}.{p.name} ({p.type})" for p in ports)
    return f"use one of the {kind} ports: {names or '(none)'}"


def _wire_edges(
    edges: list[FlatEdge], nodes: dict[str, tuple[FlatNode, NodeSignature]],
    issues: list[LintIssue],
) -> list[Wire]:
    wires: list[Wire] = []
    for edge in edges:
        s_node, _, s_port = edge.source.rpartition(".")
        t_node, _, t_port = edge.target.rpartition(".")
        bad = False
        s_type = t_type = PortType.ANY
        if s_node == "input":
            if s_port not in ENTRY_TYPES:
                issues.append(edge.src.issue((*edge.path, "from"),
                              f"unknown transport input port {s_port!r}",
                              "use input.audio, input.text, input.vad or input.control"))
                bad = True
            s_type = ENTRY_TYPES.get(s_port, PortType.ANY)
        elif s_node not in nodes:
            issues.append(_dangling(edge, "from", s_node, nodes))
            bad = True
        else:
            port = nodes[s_node][1].output(s_port)
            if port is None:
                issues.append(edge.src.issue(
                    (*edge.path, "from"), f"node {s_node!r} has no output port {s_port!r}",
                    _port_hint("output", s_node, nodes[s_node][1].outputs)))
                bad = True
            else:
                s_type = port.type
        if t_node == "output":
            t_type = s_type
        elif t_node not in nodes:
            issues.append(_dangling(edge, "to", t_node, nodes))
            bad = True
        else:
            port = nodes[t_node][1].input(t_port)
            if port is None:
                issues.append(edge.src.issue(
                    (*edge.path, "to"), f"node {t_node!r} has no input port {t_port!r}",
                    _port_hint("input", t_node, nodes[t_node][1].inputs)))
                bad = True
            else:
                t_type = port.type
        if not bad and not compatible(s_type, t_type):
            issues.append(edge.src.issue(
                edge.path,
                f"incompatible edge {edge.source} ({s_type}) -> {edge.target} ({t_type})",
                f"connect {edge.source} to an input of type {s_type}, or insert a node "
                f"that converts {s_type} to {t_type}", at=(*edge.path, "to"),
            ))
            bad = True
        condition = None
        if edge.spec.when is not None:
            try:
                condition = compile_condition(edge.spec.when)
            except ConditionError as exc:
                issues.append(edge.src.issue(
                    (*edge.path, "when"), f"invalid condition {exc.expression!r}: {exc.reason}",
                    "use attribute names, literals, comparisons (== != < <= > >= in), "
                    "and/or/not; calls, indexing and arithmetic are not allowed",
                ))
                bad = True
        bad = _check_buffer(edge, issues) or bad
        if not bad:
            port_type = s_type if s_type != PortType.ANY else t_type
            if port_type == PortType.VAD and edge.spec.lane not in (None, Lane.CONTROL):
                issues.append(edge.src.issue(
                    (*edge.path, "lane"),
                    f"speech-boundary edge {edge.source} -> {edge.target} on {edge.spec.lane}: "
                    "a shed boundary can strand its turn until the turn budget aborts it",
                    "drop the lane: vad edges default to ControlLane (never shed)", "warning"))
            wires.append(Wire(edge, s_node, s_port, t_node, t_port, port_type, condition))
    return _dedupe_ids(wires)


def _check_buffer(edge: FlatEdge, issues: list[LintIssue]) -> bool:
    buf = edge.spec.buffer
    if buf is None or buf.watermarks is None:
        return False
    bad = False
    limits = (("queue_items", buf.watermarks.queue_items, buf.max_queue_items),
              ("queue_ms", buf.watermarks.queue_ms, buf.max_queue_ms))
    for name, mark, bound in limits:
        if mark is None:
            continue
        path = (*edge.path, "buffer", "watermarks", name)
        if mark.low >= mark.high:
            issues.append(edge.src.issue(path, f"watermark low {mark.low} >= high {mark.high}",
                                         "set low below high (e.g. low = high / 3)"))
            bad = True
        if bound is not None and mark.high > bound:
            issues.append(edge.src.issue(
                path, f"watermark high {mark.high} exceeds max_{name} {bound}",
                f"set high <= {bound} so pressure is signalled before the queue is full"))
            bad = True
    return bad


def _dedupe_ids(wires: list[Wire]) -> list[Wire]:
    seen: dict[str, int] = {}
    for w in wires:
        count = seen.get(w.id, 0) + 1
        seen[w.id] = count
        if count > 1:
            w.suffix = f"#{count}"
    return wires


def _dangling(
    edge: FlatEdge, key: str, node: str, nodes: dict[str, tuple[FlatNode, NodeSignature]]
) -> LintIssue:
    import difflib

    close = difflib.get_close_matches(node, list(nodes), 1)
    guess = f"did you mean {close[0]!r}? " if close else ""
    return edge.src.issue(
        (*edge.path, key), f"dangling edge: node {node!r} does not exist",
        f"{guess}declare a node with id {node!r} or point the edge at one of: "
        f"{', '.join(sorted(nodes)) or '(no nodes)'}",
    )


def _wire_fallbacks(
    nodes: dict[str, tuple[FlatNode, NodeSignature]], wires: list[Wire], issues: list[LintIssue]
) -> list[tuple[str, str, tuple[Trigger, ...]]]:
    out: list[tuple[str, str, tuple[Trigger, ...]]] = []
    for node_id, (node, _sig) in nodes.items():
        fb = node.spec.fallback
        if fb is None:
            continue
        prefix = node_id[: len(node_id) - len(node.spec.id)]
        target = prefix + fb.node
        path = (*node.path, "fallback", "node")
        if target == node_id or target not in nodes:
            why = "is the node itself" if target == node_id else "does not exist"
            issues.append(node.src.issue(path, f"fallback node {fb.node!r} {why}",
                                         "name another declared node as the fallback"))
            continue
        fsig = nodes[target][1]
        for w in [w for w in wires if w.target_node == node_id and w.role == "data"]:
            port = fsig.input(w.target_port) or (fsig.inputs[0] if len(fsig.inputs) == 1 else None)
            if port is None or not compatible(w.port_type, port.type):
                issues.append(node.src.issue(
                    path, f"fallback {target!r} cannot take input {w.id} ({w.port_type})",
                    f"give {target!r} an input port {w.target_port!r} of type {w.port_type}"))
                continue
            wires.append(Wire(w.flat, w.source_node, w.source_port, target, port.name,
                               w.port_type, w.condition, role="fallback"))
        out.append((node_id, target, tuple(fb.on)))
    return out


def _overload(spec: PipelineSpec, providers: tuple[ProviderBinding, ...],
              issues: list[LintIssue], src: SourceMap) -> OverloadPolicy | None:
    """Compile ``overload``: each degraded provider must be in its modality's chain."""
    o = spec.overload
    if o is None:
        return None
    chains = {p.modality: (p.primary, *p.fallbacks) for p in providers}
    for modality, pid in o.degrade_providers.items():
        chain = chains.get(modality)
        if chain is None or pid not in chain:
            issues.append(src.issue(
                ("overload", "degrade_providers", modality),
                f"{pid!r} is not a {modality} provider of this pipeline"
                + (f" (its chain is {list(chain)})" if chain else ""),
                f"add {pid!r} to providers.{modality}.fallbacks or name one of its chain"))
    return OverloadPolicy(o.shed_threshold, o.window_ms, o.recover_after_ms,
                          FrozenMap({str(k): v for k, v in o.degrade_providers.items()}))


def _execution_extras(n: NodeDef, default_grace: Sourced) -> dict[str, object]:
    """Per-node settings that change execution, hashed only when not the default (so the
    execution hash of a spec that does not set them is what it always was)."""
    extras: dict[str, object] = {}
    if n.cancel_grace is not default_grace:
        extras["cancel_grace"] = n.cancel_grace.value
    if n.unknown_event_action != "drop":
        extras["unknown_event_action"] = n.unknown_event_action
    return extras


def _topo(order_hint: list[str], wires: list[Wire]) -> tuple[str, ...]:
    indeg = {n: 0 for n in order_hint}
    succ: dict[str, list[str]] = {n: [] for n in order_hint}
    for w in wires:
        if w.source_node in indeg and w.target_node in indeg:
            indeg[w.target_node] += 1
            succ[w.source_node].append(w.target_node)
    ready = [n for n in order_hint if indeg[n] == 0]
    out: list[str] = []
    while ready:
        n = ready.pop(0)
        out.append(n)
        for m in succ[n]:
            indeg[m] -= 1
            if indeg[m] == 0:
                ready.append(m)
        ready.sort(key=order_hint.index)
    return tuple(out)


def _ports(edges: list[EdgeDef], side: str) -> tuple[GraphPort, ...]:
    found: dict[str, list[EdgeDef]] = {}
    for e in edges:
        if (e.source_node if side == "input" else e.target_node) == side:
            name = e.source_port if side == "input" else e.target_port
            found.setdefault(name, []).append(e)
    return tuple(GraphPort(name, es[0].port_type, tuple(e.id for e in es))
                 for name, es in found.items())


def _edge_flow_mode(buffer: BufferOverride | None) -> str | None:
    return str(buffer.flow_mode) if buffer is not None and buffer.flow_mode is not None else None


def _edge_lane_bounds(buffer: BufferOverride | None) -> tuple[tuple[str, int], ...]:
    """The lane bounds an edge's ``buffer:`` sets (hashed only when set: F-147)."""
    if buffer is None:
        return ()
    return tuple((name, value) for name in ("telemetry_max_items", "control_max_items")
                 if (value := getattr(buffer, name)) is not None)
