"""Configuration layering defaults -> environment -> tenant -> session (F-080, F-081)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from rspp.spec._catalog import NodeTypeCatalog, PortType
from rspp.spec._compiler import analyse
from rspp.spec._graph import GraphDefinition, ValueSource
from rspp.spec._issues import LintIssue, SpecInvalid
from rspp.spec._loader import source_of
from rspp.spec._model import PipelineSpec
from rspp.spec._subgraphs import SubgraphResolver

#: Environment variables ``RSPP_SPEC__<section>__<field>`` override spec values.
ENV_PREFIX = "RSPP_SPEC__"
_BUDGETS = ("turn_ms", "node_ms", "path_ms", "edge_ms", "provider_timeout_ms", "cancel_grace_ms")
_PROVIDER_FIELDS = ("primary", "fallbacks", "timeout_ms")
ALLOWED_KEYS = (
    *(f"budgets.{b}" for b in _BUDGETS),
    *(f"providers.{m}.{f}" for m in ("stt", "llm", "tts") for f in _PROVIDER_FIELDS),
    "recording.level",
    "insert.<node_id>",
)


class ConfigLayers(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Per-tenant and per-session overrides: ``{id: {"budgets.turn_ms": 1500, ...}}``."""

    tenants: dict[str, dict[str, object]] = {}
    sessions: dict[str, dict[str, object]] = {}


@dataclass(frozen=True, slots=True)
class ResolvedValue:
    path: str
    value: object
    source: ValueSource


@dataclass(frozen=True, slots=True)
class EffectiveSpec:
    """The effective graph for one tenant/session and where every value came from."""

    tenant: str | None
    session: str | None
    spec: PipelineSpec
    graph: GraphDefinition
    values: tuple[ResolvedValue, ...]
    overrides: tuple[ResolvedValue, ...]

    def document(self) -> dict[str, object]:
        """The resolved spec as JSON-ready data: graph, value sources, node origins and the
        tenant/session it was resolved for (``rspp spec resolve --json``,
        ``rspp run --resolved-out``)."""
        g = self.graph
        return {
            "pipeline": g.name, "version": g.version, "tenant": self.tenant,
            "session_id": self.session, "profile": g.profile, "graph_hash": g.graph_hash,
            "spec_hash": g.spec_hash,
            "values": [{"path": v.path, "value": v.value, "source": str(v.source)}
                       for v in self.values],
            "nodes": [{"id": n.id, "type": n.type, "origin": n.origin} for n in g.nodes],
            "graph": g.to_builtins(),
        }


def _env_layer(env: Mapping[str, str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, raw in env.items():
        if not key.startswith(ENV_PREFIX):
            continue
        path = ".".join(part.lower() for part in key[len(ENV_PREFIX):].split("__"))
        value: object = raw
        if raw.lstrip("-").isdigit():
            value = int(raw)
        elif path.endswith(".fallbacks"):
            value = [p.strip() for p in raw.split(",") if p.strip()]
        out[path] = value
    return out


def _apply(tree: dict[str, object], key: str, value: object) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def resolve_effective(
    spec: PipelineSpec,
    *,
    tenant: str | None = None,
    session: str | None = None,
    env: Mapping[str, str] | None = None,
    layers: ConfigLayers | None = None,
    subgraphs: SubgraphResolver | None = None,
    catalog: NodeTypeCatalog | None = None,
) -> EffectiveSpec:
    """Apply environment, tenant then session overrides and compile the result."""
    layers = layers or ConfigLayers()
    src = source_of(spec)
    stack: list[tuple[ValueSource, str, Mapping[str, object]]] = [
        (ValueSource.ENVIRONMENT, "environment", _env_layer(env or {})),
    ]
    if tenant is not None:
        stack.append((ValueSource.TENANT, f"tenant {tenant!r}", layers.tenants.get(tenant, {})))
    if session is not None:
        stack.append(
            (ValueSource.SESSION, f"session {session!r}", layers.sessions.get(session, {}))
        )
    tree = msgspec.to_builtins(spec)
    winners: dict[str, tuple[object, ValueSource]] = {}
    bad: list[LintIssue] = []
    for source, label, overrides in stack:
        for key, value in overrides.items():
            if key.startswith("insert."):
                problem = _insert(tree, key.split(".", 1)[1], value, source)
                if problem is not None:
                    bad.append(LintIssue(src.file, 1, 1, key, f"{label}: {problem[0]}", problem[1]))
                else:
                    winners[key] = (value, source)
                continue
            if key not in ALLOWED_KEYS:
                bad.append(LintIssue(src.file, 1, 1, key, f"{label} overrides unknown key {key!r}",
                                     "overridable keys: " + ", ".join(ALLOWED_KEYS)))
                continue
            if key.startswith("providers.") and key.split(".")[2] != "primary":
                provider = tree.get("providers", {}).get(key.split(".")[1])
                if provider is None and f"providers.{key.split('.')[1]}.primary" not in winners:
                    _apply(tree, f"providers.{key.split('.')[1]}.primary",
                           _default_primary(spec, key.split(".")[1]))
            _apply(tree, key, value)
            winners[key] = (value, source)
    if bad:
        raise SpecInvalid(tuple(bad))
    try:
        effective = msgspec.convert(tree, PipelineSpec)
    except msgspec.ValidationError as exc:
        raise SpecInvalid((LintIssue(src.file, 1, 1, "<layers>", f"override invalid: {exc}",
                                     "fix the overriding value named in the message"),)) from None
    graph, issues = analyse(effective, subgraphs=subgraphs, catalog=catalog)
    if graph is None:
        raise SpecInvalid(tuple(i for i in issues if i.severity == "error"))
    values = _report(graph, spec, winners)
    applied = tuple(ResolvedValue(k, v, s) for k, (v, s) in sorted(winners.items()))
    return EffectiveSpec(tenant, session, effective, graph, values, applied)


def _insert(
    tree: dict[str, object], node_id: str, value: object, source: ValueSource
) -> tuple[str, str] | None:
    """Insert node ``node_id`` on an existing edge; ``(message, hint)`` on failure."""
    from rspp.spec._catalog import BUILTIN_NODE_TYPES
    from rspp.spec._compiler import INSERTED_MARK

    shape = "{type: redaction, on_edge: 'stt.final->llm.text', params: {...}}"
    if not isinstance(value, Mapping) or not isinstance(value.get("on_edge"), str):
        return "an insert needs `type` and `on_edge`", f"use {shape}"
    sig = BUILTIN_NODE_TYPES.signature(str(value.get("type")))
    if sig is None or not sig.inputs or not sig.outputs:
        return (f"cannot insert node type {value.get('type')!r}",
                "insert a built-in type with one input and one output, e.g. redaction")
    source_ref, _, target_ref = str(value["on_edge"]).partition("->")
    edges = tree.get("edges")
    edge_list = list(edges) if isinstance(edges, (list, tuple)) else []
    tree["edges"] = edge_list
    match = next((e for e in edge_list if isinstance(e, dict)
                  and e.get("from") == source_ref.strip() and e.get("to") == target_ref.strip()),
                 None)
    if match is None:
        known = ", ".join(f"{e.get('from')}->{e.get('to')}" for e in edge_list
                          if isinstance(e, dict))
        return f"edge {value['on_edge']!r} not found", f"insert on one of: {known}"
    match["to"] = f"{node_id}.{sig.inputs[0].name}"
    edge_list.append({"from": f"{node_id}.{sig.outputs[0].name}", "to": target_ref.strip()})
    current = tree.get("nodes")
    nodes = list(current) if isinstance(current, (list, tuple)) else []
    params = value.get("params")
    nodes.append({"id": node_id, "type": sig.type_name,
                  "params": dict(params) if isinstance(params, Mapping) else {},
                  "metadata": {INSERTED_MARK: f"inserted:{source.value}"}})
    tree["nodes"] = nodes
    return None


def policy_inserts(graph: GraphDefinition, entries: Sequence[str]) -> dict[str, object]:
    """The layer (``insert.<id>`` keys) that splices a policy's compliance nodes before
    speech (F-062): on every edge into a ``tts`` node's ``text`` input, else (a text-only
    pipeline) on every text edge into a pipeline output. ``entries`` are the
    ``PolicyResolution.insert_compliance_nodes`` JSON objects ``{id, type, params}``;
    several are chained in order. Raises :class:`SpecInvalid` when the graph has no such
    edge (the policy cannot be honoured: the session is refused, never run without it)."""
    nodes = [msgspec.json.decode(e.encode(), type=dict[str, object]) for e in entries]
    types = {n.id: n.type for n in graph.nodes}
    targets = [e for e in graph.edges if types.get(e.target_node) == "tts"
               and e.target_port == "text"]
    if not targets:  # a text-only pipeline: the text edges into its outputs
        targets = [e for e in graph.edges if e.target_node == "output"
                   and not e.target_port.startswith("transcript")
                   and e.source_node != "input" and e.port_type is PortType.TEXT]
    if not targets:
        raise SpecInvalid((LintIssue(graph.name, 1, 1, "policy.insert_compliance_nodes",
                                     f"pipeline {graph.name}@{graph.version} has no LLM -> TTS "
                                     "(or LLM -> output) text edge to insert "
                                     f"{[n.get('id') for n in nodes]} on",
                                     "give the pipeline an llm and a tts node, or take the "
                                     "tenant's policy off this pipeline"),))
    layer: dict[str, object] = {}
    for index, edge in enumerate(targets):
        source = f"{edge.source_node}.{edge.source_port}"
        target = f"{edge.target_node}.{edge.target_port}"
        for node in nodes:
            node_id = str(node.get("id")) + (f"_{index + 1}" if index else "")
            layer[f"insert.{node_id}"] = {"type": node.get("type"), "params": node.get("params"),
                                          "on_edge": f"{source}->{target}"}
            source = f"{node_id}.text"
    return layer


def _default_primary(spec: PipelineSpec, modality: str) -> str:
    from rspp.spec._profile import PROFILES, SIMPLE_V1

    return PROFILES.get(spec.profile, SIMPLE_V1).default_providers[modality]


def _report(
    graph: GraphDefinition, spec: PipelineSpec, winners: dict[str, tuple[object, ValueSource]]
) -> tuple[ResolvedValue, ...]:
    def src(key: str, fallback: ValueSource) -> ValueSource:
        return winners[key][1] if key in winners else fallback

    b = graph.budgets
    rows = [ResolvedValue("profile", graph.profile,
                          ValueSource.SPEC if "profile" in spec.__struct_fields__ and
                          spec.profile != "simple/v1" else ValueSource.DEFAULT)]
    for name, sourced in (("turn_ms", b.turn), ("node_ms", b.node), ("path_ms", b.path),
                          ("edge_ms", b.edge), ("provider_timeout_ms", b.provider_timeout),
                          ("cancel_grace_ms", b.cancel_grace)):
        key = f"budgets.{name}"
        rows.append(ResolvedValue(key, sourced.value, src(key, sourced.source)))
    for p in graph.providers:
        base = f"providers.{p.modality}"
        rows.append(ResolvedValue(f"{base}.primary", p.primary, src(f"{base}.primary", p.source)))
        rows.append(ResolvedValue(f"{base}.fallbacks", list(p.fallbacks),
                                  src(f"{base}.fallbacks", p.source)))
        rows.append(ResolvedValue(f"{base}.timeout_ms", p.timeout.value,
                                  src(f"{base}.timeout_ms", p.timeout.source)))
    rows.append(ResolvedValue("recording.level", str(graph.recording.recording_level),
                              src("recording.level", ValueSource.PROFILE if spec.recording is None
                                  or spec.recording.level is None else ValueSource.SPEC)))
    for n in graph.nodes:
        origin = ValueSource.TEMPLATE if n.origin == "template" else ValueSource.SPEC
        if n.origin.startswith("inserted:"):
            origin = ValueSource(n.origin.split(":", 1)[1])
        rows.append(ResolvedValue(f"nodes.{n.id}.type", n.type, origin))
        rows.append(ResolvedValue(f"nodes.{n.id}.timeout_ms", n.timeout.value, n.timeout.source))
        rows.append(ResolvedValue(f"nodes.{n.id}.cancel_mode", n.cancel_mode, origin))
        rows.append(ResolvedValue(f"nodes.{n.id}.cancel_grace_ms", n.cancel_grace.value,
                                  n.cancel_grace.source))
        rows.append(ResolvedValue(f"nodes.{n.id}.unknown_event_action", n.unknown_event_action,
                                  origin))
    for e in graph.edges:
        explicit = e.buffer.defaulting_source == "explicit_edge_config"
        rows.append(ResolvedValue(f"edges.{e.id}.buffer", str(e.buffer.strategy),
                                  ValueSource.SPEC if explicit else ValueSource.PROFILE))
    rows.append(ResolvedValue("flow_control", "lanes", graph.flow_control_source))
    return tuple(rows)


def load_layers(path: str | Path) -> ConfigLayers:
    """Read a layers file ``{tenants: {ID: {key: value}}, sessions: {...}}`` (same limits)."""
    name = str(path)
    from rspp.spec._loader import read_spec_source
    from rspp.spec._yaml import load_document

    tree, source, issues = load_document(read_spec_source(path), name)
    if issues:
        raise SpecInvalid(issues)
    try:
        return msgspec.convert(tree or {}, ConfigLayers)
    except msgspec.ValidationError as exc:
        raise SpecInvalid((source.issue((), f"invalid layers file: {exc}",
                                        "use {tenants: {ID: {budgets.turn_ms: 1500}}, "
                                        "sessions: {...}}"),)) from None
