"""Structural checks of a wired graph: cycles, reachability, fan-in and required inputs."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from rspp.spec._graph import MergeDef, SelectDef

if TYPE_CHECKING:
    from rspp.spec._catalog import NodeSignature
    from rspp.spec._expand import FlatNode
    from rspp.spec._issues import LintIssue
    from rspp.spec._profile import ExecutionProfile
    from rspp.spec._wires import Trigger, Wire

Nodes = dict[str, tuple["FlatNode", "NodeSignature"]]
MERGE_RULES = ("timestamp", "source_priority", "arrival_order")
SELECT_POLICIES = ("first_healthy", "priority", "condition", "language")
_RULE_VERSION = re.compile(r"^v?[0-9]+\.[0-9]+(?:\.[0-9]+)?$")


def check_structure(
    nodes: Nodes, wires: list[Wire], fallbacks: list[tuple[str, str, tuple[Trigger, ...]]]
) -> list[LintIssue]:
    issues: list[LintIssue] = []
    issues += _cycles(nodes, wires)
    fallback_of = {fb: primary for primary, fb, _ in fallbacks}
    reach = {"input"}
    frontier = ["input"]
    while frontier:
        current = frontier.pop()
        for w in wires:
            if w.source_node == current and w.target_node not in reach:
                reach.add(w.target_node)
                frontier.append(w.target_node)
    for node_id, (node, sig) in nodes.items():
        if node_id not in reach:
            issues.append(node.src.issue(
                (*node.path, "id"), f"node {node_id!r} is unreachable from the transport input",
                f"add an edge into {node_id!r} (e.g. `to: {node_id}.<port>`) or remove the node",
                "warning",
            ))
        for port in sig.inputs:
            incoming = [w for w in wires if w.target_node == node_id and w.target_port == port.name]
            if port.required and not incoming and node_id in reach:
                issues.append(node.src.issue(
                    (*node.path, "id"),
                    f"required input port {node_id}.{port.name} ({port.type}) is not connected",
                    f"add an edge `to: {node_id}.{port.name}` from a {port.type} output",
                ))
            roots = {fallback_of.get(w.source_node, w.source_node) for w in incoming
                     if w.role == "data"}
            if not port.multi and len(roots) > 1:
                w = incoming[-1]
                issues.append(w.flat.src.issue(
                    w.flat.path,
                    f"port {node_id}.{port.name} has {len(roots)} incoming edges "
                    f"({', '.join(sorted(roots))}) but accepts one",
                    "insert a `merge` node (deterministic fan-in) or a `select` node "
                    "(policy-based fan-in) in front of it", at=(*w.flat.path, "to"),
                ))
    if not any(w.source_node == "input" for w in wires) and nodes:
        first = next(iter(nodes.values()))[0]
        issues.append(first.src.issue(("edges",), "no edge reads from the transport input",
                                      "add an edge `from: input.audio` (or input.text)"))
    if not any(w.target_node == "output" for w in wires) and nodes:
        first = next(iter(nodes.values()))[0]
        issues.append(first.src.issue(("edges",), "no edge writes to the transport output",
                                      "add an edge `to: output.audio` (or output.text)"))
    return issues


def _cycles(nodes: Nodes, wires: list[Wire]) -> list[LintIssue]:
    succ: dict[str, list[Wire]] = {n: [] for n in nodes}
    for w in wires:
        if w.source_node in succ and w.target_node in succ:
            succ[w.source_node].append(w)
    color = dict.fromkeys(nodes, 0)
    stack_path: list[str] = []
    issues: list[LintIssue] = []

    def visit(start: str) -> None:
        # iterative DFS; reports each back edge (one per cycle closure)
        work: list[tuple[str, int]] = [(start, 0)]
        color[start] = 1
        stack_path.append(start)
        while work:
            node, index = work[-1]
            if index < len(succ[node]):
                work[-1] = (node, index + 1)
                w = succ[node][index]
                nxt = w.target_node
                if color[nxt] == 0:
                    color[nxt] = 1
                    stack_path.append(nxt)
                    work.append((nxt, 0))
                elif color[nxt] == 1:
                    loop = [*stack_path[stack_path.index(nxt):], nxt]
                    issues.append(w.flat.src.issue(
                        w.flat.path, f"cycle: {' -> '.join(loop)}",
                        f"remove or redirect the edge {w.flat.source} -> {w.flat.target}; "
                        "pipeline graphs must be acyclic", at=w.flat.path,
                    ))
            else:
                color[node] = 2
                stack_path.pop()
                work.pop()

    for node_id in nodes:
        if color[node_id] == 0:
            visit(node_id)
    return issues


def fanin_plans(
    nodes: Nodes, wires: list[Wire], profile: ExecutionProfile | None, issues: list[LintIssue]
) -> tuple[list[MergeDef], list[SelectDef]]:
    merges: list[MergeDef] = []
    selects: list[SelectDef] = []
    for node_id, (node, _sig) in nodes.items():
        params = node.spec.params
        incoming = [w for w in wires if w.target_node == node_id and w.role == "data"]
        if node.spec.type == "merge":
            rule = str(params.get("rule", profile.merge_rule_id if profile else "timestamp"))
            version = str(params.get("rule_version",
                                     profile.merge_rule_version if profile else "1.0"))
            if rule not in MERGE_RULES:
                issues.append(node.src.issue((*node.path, "params", "rule"),
                              f"unknown merge rule {rule!r}",
                              f"use one of: {', '.join(MERGE_RULES)}"))
            if not _RULE_VERSION.match(version):
                issues.append(node.src.issue((*node.path, "params", "rule_version"),
                              f"merge rule version {version!r} is not like '1.0'",
                              "use a version such as '1.0' or 'v1.0.0'"))
            order = _order(params.get("order"), incoming, node, issues)
            merges.append(MergeDef(node_id, rule, version, order))
        elif node.spec.type == "select":
            policy = str(params.get("policy", profile.select_policy if profile else "priority"))
            if policy not in SELECT_POLICIES:
                issues.append(node.src.issue((*node.path, "params", "policy"),
                              f"unknown select policy {policy!r}",
                              f"use one of: {', '.join(SELECT_POLICIES)}"))
            order = _order(params.get("order"), incoming, node, issues)
            selects.append(SelectDef(node_id, policy, order))
    return merges, selects


def _order(
    declared: object, incoming: list[Wire], node: FlatNode, issues: list[LintIssue]
) -> tuple[str, ...]:
    by_source = {w.source_node: w.id for w in incoming}
    if declared is None:
        return tuple(w.id for w in incoming)
    prefix = ".".join(node.id.split(".")[:-1]) if hasattr(node, "id") else ""
    names = [str(x) for x in declared] if isinstance(declared, list) else []
    resolved = [f"{prefix}.{n}" if prefix else n for n in names]
    if not isinstance(declared, list) or sorted(resolved) != sorted(by_source):
        issues.append(node.src.issue(
            (*node.path, "params", "order"),
            f"order must list exactly the source nodes {sorted(by_source)}",
            "list every upstream node id once, highest priority first"))
        return tuple(w.id for w in incoming)
    return tuple(by_source[n] for n in resolved)
