"""``rspp lint``, ``rspp spec resolve`` and ``rspp docs`` (authoring tools)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

spec_app = typer.Typer(help="Inspect pipeline specs.", no_args_is_help=True)


def lint(
    files: list[Path] = typer.Argument(..., help="Spec files (YAML or JSON)."),
    strict: bool = typer.Option(False, "--strict", help="Unknown fields and warnings are errors."),
) -> None:
    """Validate specs; print every problem as FILE:LINE:COL: <field path>: <message> + hint."""
    from rspp.providers import PROVIDER_CATALOG
    from rspp.spec import lint_text

    failed = False
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            typer.echo(f"{file}:1:1: <root>: cannot read file: {exc.strerror}\n"
                       "    hint: check the path and its permissions")
            failed = True
            continue
        issues = lint_text(text, str(file), strict=strict, adapters=PROVIDER_CATALOG)
        for issue in issues:
            typer.echo(issue.format())
        errors = sum(1 for i in issues if i.severity == "error")
        failed = failed or errors > 0
        summary = "ok" if not issues else f"{errors} error(s), {len(issues) - errors} warning(s)"
        typer.echo(f"{file}: {summary}", err=True)
    raise typer.Exit(1 if failed else 0)


@spec_app.command("resolve")
def resolve(
    file: Path = typer.Argument(..., help="Spec file."),
    tenant: str | None = typer.Option(None, "--tenant", help="Apply this tenant's overrides."),
    session: str | None = typer.Option(None, "--session", help="Apply this session's overrides."),
    layers: Path | None = typer.Option(
        None, "--layers", help="YAML/JSON file {tenants: {id: {key: v}}, sessions: {...}}."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Print the effective graph with defaults, inserted nodes, providers and value sources."""
    import msgspec
    from ruamel.yaml import YAML

    from rspp.spec import ConfigLayers, SpecInvalid, load_spec, resolve_effective

    try:
        spec = load_spec(file)
        config = ConfigLayers()
        if layers is not None:
            raw = YAML(typ="safe").load(layers.read_text(encoding="utf-8")) or {}
            config = msgspec.convert(raw, ConfigLayers)
        eff = resolve_effective(spec, tenant=tenant, session=session, env=dict(os.environ),
                                layers=config)
    except SpecInvalid as exc:
        for issue in exc.issues:
            typer.echo(issue.format())
        raise typer.Exit(1) from None
    except (msgspec.ValidationError, OSError) as exc:
        typer.echo(f"{layers}: invalid layers file: {exc}\n    hint: use "
                   "{tenants: {ID: {budgets.turn_ms: 1500}}, sessions: {...}}")
        raise typer.Exit(1) from None
    g = eff.graph
    if as_json:
        doc = {
            "pipeline": g.name, "version": g.version, "tenant": tenant, "session_id": session,
            "profile": g.profile, "graph_hash": g.graph_hash, "spec_hash": g.spec_hash,
            "values": [{"path": v.path, "value": v.value, "source": str(v.source)}
                       for v in eff.values],
            "nodes": [{"id": n.id, "type": n.type, "origin": n.origin} for n in g.nodes],
            "graph": g.to_builtins(),
        }
        typer.echo(json.dumps(doc, indent=2, sort_keys=True, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(width=120)
    console.print(f"pipeline {g.name}@{g.version}  profile {g.profile}  session_id {session or '-'}"
                  f"  tenant {tenant or '-'}")
    console.print(f"graph_hash {g.graph_hash}")
    nodes = Table("node", "type", "origin", "timeout_ms", title="nodes (topological order)")
    for node_id in g.topo_order:
        n = g.node(node_id)
        nodes.add_row(n.id, n.type, n.origin, str(n.timeout.value))
    console.print(nodes)
    values = Table("path", "value", "source", title="effective values")
    for v in eff.values:
        values.add_row(v.path, str(v.value), str(v.source))
    console.print(values)


def docs(out_dir: Path = typer.Argument(..., help="Directory for the Markdown files.")) -> None:
    """Write a Markdown reference of spec, profile, node and contract fields."""
    from rspp.spec import generate_docs

    for path in generate_docs(out_dir):
        typer.echo(str(path))


def register(app: typer.Typer) -> None:
    """Attach this group's commands to the root app."""
    app.command("lint")(lint)
    app.command("docs")(docs)
    app.add_typer(spec_app, name="spec")
