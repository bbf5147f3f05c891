"""``rspp docs``: Markdown reference generated from the types (F-129, F-032)."""

from __future__ import annotations

import inspect as pyinspect
from collections.abc import Mapping
from pathlib import Path

import msgspec
import msgspec.inspect as mi

from rspp.spec._catalog import NodeSignature
from rspp.spec._check import describe


def _struct_types(t: mi.Type, seen: dict[type, mi.StructType]) -> None:
    if isinstance(t, mi.Metadata):
        _struct_types(t.type, seen)
    elif isinstance(t, mi.StructType):
        if t.cls in seen:
            return
        seen[t.cls] = t
        for f in t.fields:
            _struct_types(f.type, seen)
    elif isinstance(t, mi.UnionType):
        for x in t.types:
            _struct_types(x, seen)
    elif isinstance(t, (mi.ListType, mi.VarTupleType, mi.SetType, mi.FrozenSetType)):
        _struct_types(t.item_type, seen)
    elif isinstance(t, mi.DictType):
        _struct_types(t.value_type, seen)


def _meta(t: mi.Type) -> tuple[str, list[object]]:
    description, examples = "", list[object]()
    while isinstance(t, mi.Metadata):
        extra = t.extra_json_schema or {}
        description = description or str(extra.get("description", ""))
        examples = examples or list(extra.get("examples", []))
        t = t.type
    if isinstance(t, mi.UnionType):
        for x in t.types:
            d, e = _meta(x)
            description, examples = description or d, examples or e
    return description, examples


def _section(roots: list[type], title: str, intro: str) -> str:
    seen: dict[type, mi.StructType] = {}
    plain: list[type] = []
    for root in roots:
        try:
            _struct_types(mi.type_info(root), seen)
        except TypeError:  # e.g. a union of untagged structs: document fields directly
            plain.append(root)
    lines = [f"# {title}", "", intro, ""]
    for cls in plain:
        if cls in seen:
            continue
        lines += [f"## {cls.__name__}", "", (pyinspect.getdoc(cls) or "").strip(), ""]
        lines += ["| field | type | required | default | description |", "|---|---|---|---|---|"]
        for fi in msgspec.structs.fields(cls):
            required = fi.required
            kind = str(fi.type).replace("typing.", "").replace("|", "\\|")
            lines.append(f"| `{fi.encode_name}` | {kind} | {'yes' if required else 'no'} | | |")
        lines.append("")
    for cls, info in seen.items():
        lines += [f"## {cls.__name__}", "", (pyinspect.getdoc(cls) or "").strip(), ""]
        lines += ["| field | type | required | default | description |", "|---|---|---|---|---|"]
        for f in info.fields:
            description, examples = _meta(f.type)
            if examples:
                description += " Examples: " + ", ".join(f"`{e}`" for e in examples)
            default = "" if f.required else f"`{msgspec.json.encode(f.default).decode()}`" \
                if f.default is not msgspec.NODEFAULT else ""
            kind = describe(f.type).replace("|", "\\|")
            lines.append(f"| `{f.encode_name}` | {kind} | {'yes' if f.required else 'no'} "
                         f"| {default} | {description.replace('|', '/')} |")
        lines.append("")
    return "\n".join(lines)


def _param_rows(sig: NodeSignature) -> list[str]:
    if sig.params is None:
        return ["params: not declared (any key accepted)", ""]
    rows = ["| param | type | default | description |", "|---|---|---|---|"]
    for p in sig.params:
        default = "-" if p.default is None else f"`{msgspec.json.encode(p.default).decode()}`"
        choices = f"; one of {', '.join(f'`{c}`' for c in p.choices)}" if p.choices else ""
        rows.append(f"| `{p.name}` | {p.type} | {default} | "
                    f"{(p.description + choices).replace('|', '/')} |")
    return [*rows, ""]


def generate_docs(
    out_dir: str | Path, extra_nodes: Mapping[str, NodeSignature] | None = None
) -> list[Path]:
    """Write ``pipeline-spec.md``, ``execution-profile.md``, ``node-types.md`` and
    ``contracts.md`` into ``out_dir``; return the written paths.

    ``extra_nodes`` (custom node types, by the name specs use) are documented after the
    built-in ones.
    """
    import rspp.contracts as contracts  # lazily: docs introspect whatever contracts export
    from rspp.spec._catalog import BUILTIN_NODE_TYPES
    from rspp.spec._model import PipelineSpec
    from rspp.spec._profile import SIMPLE_V1, ExecutionProfile

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    version = contracts.SCHEMA_VERSION
    written: list[Path] = []

    spec_md = _section([PipelineSpec], "PipelineSpec reference",
                       f"schema_version: {version}\n\nA pipeline spec in YAML or JSON. "
                       "Example:\n\n```yaml\nname: my-assistant\nversion: 1.0.0\n"
                       "template: voice_assistant\nproviders:\n  stt: {primary: pocketsphinx}\n"
                       "```")
    profile_md = _section([ExecutionProfile], "ExecutionProfile reference",
                          f"schema_version: {version}\n\nDefaults of `simple/v1`:\n\n```json\n"
                          + msgspec.json.format(msgspec.json.encode(SIMPLE_V1)).decode()
                          + "\n```")
    node_lines = ["# Node types", "", f"schema_version: {version}", ""]
    signatures = [BUILTIN_NODE_TYPES.signature(name) for name in BUILTIN_NODE_TYPES.names()]
    custom = sorted((extra_nodes or {}).items())
    for name, sig in [*((s.type_name, s) for s in signatures if s), *custom]:
        origin = " (custom)" if (extra_nodes or {}).get(name) is sig else ""
        node_lines += [f"## `{name}`{origin}", "", sig.description, "",
                       "inputs: " + ", ".join(f"`{p.name}` ({p.type})" for p in sig.inputs),
                       "", "outputs: " + ", ".join(
                           f"`{p.name}` ({p.type}{', streaming' if p.streaming else ''})"
                           for p in sig.outputs), "",
                       *_param_rows(sig)]
    roots = [getattr(contracts, n) for n in contracts.__all__
             if isinstance(getattr(contracts, n), type)
             and issubclass(getattr(contracts, n), msgspec.Struct)]
    contracts_md = _section(roots, "Contract types (wire ABI)",
                            f"schema_version: {version}\n\nGenerated from `rspp.contracts`.")
    for name, text in (("pipeline-spec.md", spec_md), ("execution-profile.md", profile_md),
                       ("node-types.md", "\n".join(node_lines)), ("contracts.md", contracts_md)):
        path = out / name
        path.write_text(text + "\n", encoding="utf-8")
        written.append(path)
    return written
