"""Flatten a spec: simple-mode template expansion and subgraph inlining."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import msgspec

from rspp.spec._issues import LintIssue, SpecInvalid
from rspp.spec._loader import source_of
from rspp.spec._model import EdgeSpec, NodeSpec, PipelineSpec
from rspp.spec._subgraphs import SubgraphResolver
from rspp.spec._yaml import Path, SourceMap

MAX_DEPTH = 8


@dataclass
class FlatNode:
    id: str
    spec: NodeSpec
    origin: str
    src: SourceMap
    path: Path


@dataclass
class FlatEdge:
    source: str
    target: str
    spec: EdgeSpec
    origin: str
    src: SourceMap
    path: Path


@dataclass
class Flat:
    nodes: list[FlatNode] = field(default_factory=list)
    edges: list[FlatEdge] = field(default_factory=list)
    issues: list[LintIssue] = field(default_factory=list)


def _e(source: str, target: str) -> EdgeSpec:
    return msgspec.convert({"from": source, "to": target}, EdgeSpec)


def voice_assistant_template() -> tuple[tuple[NodeSpec, ...], tuple[EdgeSpec, ...]]:
    """VAD -> STT -> LLM -> sentence segmenter -> TTS, with transcripts to the client."""
    nodes = (
        NodeSpec(id="vad", type="vad"),
        NodeSpec(id="stt", type="stt"),
        NodeSpec(id="llm", type="llm"),
        NodeSpec(id="segmenter", type="sentence_segmenter"),
        NodeSpec(id="tts", type="tts"),
    )
    edges = (
        _e("input.audio", "vad.audio"),
        _e("vad.audio", "stt.audio"),
        _e("vad.vad", "stt.vad"),
        _e("stt.partial", "output.transcript_partial"),
        _e("stt.final", "output.transcript"),
        _e("stt.final", "llm.text"),
        _e("llm.text", "segmenter.text"),
        _e("segmenter.text", "tts.text"),
        _e("tts.audio", "output.audio"),
    )
    return nodes, edges


def _split(ref: str) -> tuple[str, str]:
    node, _, port = ref.rpartition(".")
    return node, port


def flatten(
    spec: PipelineSpec, resolver: SubgraphResolver | None, *, prefix: str = "", depth: int = 0,
    origin: str = "spec",
) -> Flat:
    """Expand ``spec`` into namespaced nodes/edges; ``input.X``/``output.Y`` stay as-is."""
    src = source_of(spec)
    flat = Flat()
    tmpl_nodes: tuple[NodeSpec, ...] = ()
    tmpl_edges: tuple[EdgeSpec, ...] = ()
    if spec.template == "voice_assistant":
        tmpl_nodes, tmpl_edges = voice_assistant_template()
    own_ids = {n.id for n in spec.nodes}
    for node in tmpl_nodes:
        if node.id not in own_ids:
            flat.nodes.append(FlatNode(prefix + node.id, node, "template", src, ("template",)))
    for index, node in enumerate(spec.nodes):
        flat.nodes.append(FlatNode(prefix + node.id, node, origin, src, ("nodes", index)))
    raw_edges: list[tuple[EdgeSpec, str, Path]] = [
        (e, "template", ("template",)) for e in tmpl_edges
    ]
    if spec.edges and tmpl_edges:
        # explicit edges replace template edges that target the same port
        explicit_targets = {e.target for e in spec.edges}
        raw_edges = [r for r in raw_edges if r[0].target not in explicit_targets]
    raw_edges += [(e, origin, ("edges", i)) for i, e in enumerate(spec.edges)]

    # subgraph instances: inline their nodes, remember their boundary ports
    inputs: dict[str, dict[str, list[str]]] = {}
    outputs: dict[str, dict[str, str]] = {}
    unresolved: set[str] = set()
    for index, use in enumerate(spec.subgraphs):
        path: Path = ("subgraphs", index)
        name, _, version = use.use.partition("@")
        inner = _resolve(resolver, name, version, src, path, flat.issues, depth)
        if inner is None:
            unresolved.add(prefix + use.id)
            continue
        sub = flatten(inner, resolver, prefix=f"{prefix}{use.id}.", depth=depth + 1,
                      origin=f"subgraph:{use.id}@{use.use}")
        flat.issues += sub.issues
        known = {n.id: n for n in sub.nodes}
        for inner_id, overrides in use.params.items():
            target = known.get(f"{prefix}{use.id}.{inner_id}")
            if target is None:
                flat.issues.append(src.issue(
                    (*path, "params", inner_id), f"subgraph {use.use} has no node {inner_id!r}",
                    "override params of one of: " + ", ".join(
                        sorted(k.split(".")[-1] for k in known)),
                ))
                continue
            merged = {**target.spec.params, **overrides}
            target.spec = msgspec.structs.replace(target.spec, params=merged)
        flat.nodes += sub.nodes
        ins: dict[str, list[str]] = {}
        outs: dict[str, str] = {}
        for edge in sub.edges:
            s_node, s_port = _split(edge.source)
            t_node, t_port = _split(edge.target)
            if s_node == "input":
                ins.setdefault(s_port, []).append(edge.target)
            elif t_node == "output":
                outs[t_port] = edge.source
            else:
                flat.edges.append(edge)
        inputs[prefix + use.id] = ins
        outputs[prefix + use.id] = outs

    for spec_edge, edge_origin, path in raw_edges:
        sources = [_ns(spec_edge.source, prefix)]
        targets = [_ns(spec_edge.target, prefix)]
        s_node, s_port = _split(sources[0])
        t_node, t_port = _split(targets[0])
        if s_node in unresolved or t_node in unresolved:
            continue  # already reported as a missing subgraph
        if s_node in outputs:
            mapped = outputs[s_node].get(s_port)
            if mapped is None:
                flat.issues.append(_boundary(src, path, "from", s_node, s_port, outputs[s_node]))
                continue
            sources = [mapped]
        if t_node in inputs:
            mapped_in = inputs[t_node].get(t_port)
            if mapped_in is None:
                flat.issues.append(_boundary(src, path, "to", t_node, t_port, inputs[t_node]))
                continue
            targets = mapped_in
        for s in sources:
            for t in targets:
                flat.edges.append(FlatEdge(s, t, spec_edge, edge_origin, src, path))
    return flat


def _ns(ref: str, prefix: str) -> str:
    node, port = _split(ref)
    if node in ("input", "output") or not prefix:
        return ref if node in ("input", "output") else prefix + ref
    return f"{prefix}{node}.{port}"


def _boundary(
    src: SourceMap, path: Path, key: str, node: str, port: str, known: Mapping[str, object]
) -> LintIssue:
    names = ", ".join(sorted(known))
    side = "output" if key == "from" else "input"
    return src.issue(
        (*path, key), f"subgraph instance {node!r} has no {side} port {port!r}",
        f"use one of its {side} ports: {names or '(none declared)'}",
    )


def _resolve(
    resolver: SubgraphResolver | None, name: str, version: str, src: SourceMap, path: Path,
    issues: list[LintIssue], depth: int,
) -> PipelineSpec | None:
    if depth >= MAX_DEPTH:
        issues.append(src.issue((*path, "use"), f"subgraphs nested deeper than {MAX_DEPTH}",
                                "check for a subgraph that (indirectly) uses itself"))
        return None
    if resolver is None:
        issues.append(src.issue((*path, "use"), "no subgraph resolver configured",
                                "compile with a SubgraphResolver or lint the file from disk"))
        return None
    try:
        found = resolver.resolve(name, version)
    except SpecInvalid as exc:
        issues.extend(exc.issues)
        return None
    if found is None:
        available = getattr(resolver, "available", None)
        versions = available(name) if callable(available) else ()
        hint = (f"available versions of {name!r}: {', '.join(versions)}" if versions
                else f"publish or add subgraphs/{name}@{version}.yaml next to the spec")
        issues.append(src.issue((*path, "use"), f"subgraph {name}@{version} not found", hint))
        return None
    if found.name != name or found.version != version:
        issues.append(src.issue(
            (*path, "use"), f"file for {name}@{version} declares {found.name}@{found.version}",
            "make the subgraph's name/version match its file name",
        ))
        return None
    return found
