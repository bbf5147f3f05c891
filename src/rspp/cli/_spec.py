"""``rspp lint``, ``rspp spec resolve`` and ``rspp docs`` (authoring tools)."""

from __future__ import annotations

import json
import os
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from rspp.cli._errors import fail, guard_commands

if TYPE_CHECKING:
    from rspp.spec import LintIssue, SpecInvalid

spec_app = typer.Typer(help="Inspect pipeline specs.", no_args_is_help=True)


AsOfOpt = typer.Option(
    None, "--as-of", formats=["%Y-%m-%d"],
    help="Judge deprecated fields on this day (YYYY-MM-DD; default today, UTC): a warning "
    "before their enforcement date, an error from it.")


def lint(
    files: list[Path] = typer.Argument(..., help="Spec or config files (YAML or JSON)."),
    strict: bool = typer.Option(False, "--strict", help="Unknown fields and warnings are errors."),
    as_of: datetime = AsOfOpt,
) -> None:
    """Validate specs and config files; print every problem as FILE:LINE:COL: <field path>:
    <message> + hint."""
    _check_files(files, strict, one_line=False, as_of=as_of.date() if as_of else None)


def validate(
    files: list[Path] = typer.Argument(..., help="Spec or config files (YAML or JSON)."),
    strict: bool = typer.Option(False, "--strict", help="Unknown fields and warnings are errors."),
    as_of: datetime = AsOfOpt,
) -> None:
    """Validate PipelineSpecs and config files (policy, admission, provider_config): one line
    per problem, FILE:LINE:COL: <field path>: <message>; <hint>; exit 1 on any error.

    A config file has `kind:` (policy | admission | provider_config), optional `scope:` and
    the `body:` that `rspp cp config publish` sends; anything else is read as a PipelineSpec.
    """
    _check_files(files, strict, one_line=True, as_of=as_of.date() if as_of else None)


def _check_files(files: list[Path], strict: bool, *, one_line: bool,
                 as_of: date | None = None) -> None:
    failed = False
    for file in files:
        issues = _file_issues(file, strict, as_of)
        for issue in issues:
            typer.echo(issue_line(issue) if one_line else issue.format())
        errors = sum(1 for i in issues if i.severity == "error")
        failed = failed or errors > 0
        summary = "ok" if not issues else f"{errors} error(s), {len(issues) - errors} warning(s)"
        typer.echo(f"{file}: {summary}", err=True)
    raise typer.Exit(1 if failed else 0)


def _file_issues(file: Path, strict: bool, as_of: date | None = None) -> list[LintIssue]:
    """Every problem of one spec or config file (read errors included)."""
    from rspp.controlplane import is_config_document, lint_config_text
    from rspp.nodes import NodeCatalog
    from rspp.providers import PROVIDER_CATALOG
    from rspp.spec import SpecInvalid, lint_text, load_document, read_spec_source

    try:
        text = read_spec_source(file)
        if is_config_document(load_document(text, str(file))[0]):
            return lint_config_text(text, str(file), strict=strict, adapters=PROVIDER_CATALOG)[1]
        return lint_text(text, str(file), strict=strict, adapters=PROVIDER_CATALOG,
                         catalog=NodeCatalog.for_spec(file), as_of=as_of)
    except SpecInvalid as exc:
        return list(exc.issues)


def issue_line(issue: LintIssue) -> str:
    """``FILE:LINE:COL: [warning: ]<path>: <message>; <hint>`` on one line."""
    level = "" if issue.severity == "error" else "warning: "
    return (f"{issue.file}:{issue.line}:{issue.col}: {level}{issue.path}: {issue.message}; "
            f"{issue.hint}")


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
    from rspp.spec import (
        ConfigLayers,
        SpecInvalid,
        lint_text,
        load_layers,
        load_spec,
        read_spec_source,
        resolve_effective,
    )

    try:
        spec = load_spec(file)
        config = load_layers(layers) if layers is not None else ConfigLayers()
        from rspp.nodes import NodeCatalog  # custom `python:` node types resolve too

        eff = resolve_effective(spec, tenant=tenant, session=session, env=dict(os.environ),
                                layers=config, catalog=NodeCatalog.for_spec(file))
    except SpecInvalid as exc:
        if exc.issues and exc.issues[0].file == "<spec>":  # found after layering: locate it
            located = [i for i in lint_text(read_spec_source(file), str(file))
                       if i.severity == "error"]
            exc = SpecInvalid(located) if located else exc
        raise fail(spec_error_line(exc)) from None
    g = eff.graph
    if as_json:
        typer.echo(json.dumps(eff.document(), indent=2, sort_keys=True, default=str))
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


def spec_error_line(exc: SpecInvalid) -> str:
    """The first issue of ``exc`` as one line, pointing at ``rspp lint`` for the rest."""
    if not exc.issues:
        return str(exc)
    first = exc.issues[0]
    more = len(exc.issues) - 1
    tail = f" (+{more} more; `rspp lint {first.file}` lists them)" if more else ""
    return issue_line(first) + tail


def docs(
    out_dir: Path = typer.Argument(..., help="Directory for the Markdown files."),
    specs: list[Path] = typer.Option(
        [], "--spec", help="Also document the custom node types this spec uses (repeatable)."),
) -> None:
    """Write a Markdown reference of spec, profile, node (with params) and contract fields."""
    from rspp.nodes import NodeCatalog
    from rspp.spec import BUILTIN_NODE_TYPES, SpecInvalid, generate_docs, load_spec

    extra = {}
    for file in specs:
        try:
            spec = load_spec(file)
        except SpecInvalid as exc:
            for issue in exc.issues:
                typer.echo(issue.format())
            raise typer.Exit(1) from None
        catalog = NodeCatalog.for_spec(file)
        for node in spec.nodes:
            sig = None if BUILTIN_NODE_TYPES.signature(node.type) else catalog.signature(
                node.type)
            if sig is not None:
                extra[node.type] = sig
    for path in [*generate_docs(out_dir, extra), _providers_doc(out_dir)]:
        typer.echo(str(path))


def _providers_doc(out_dir: Path) -> Path:
    """``providers.md``: every adapter name with its options and environment variables."""
    from rspp.providers import ADAPTERS

    lines = ["# Provider adapters", "", "Name one in a spec: `providers.<modality>.primary: NAME`;"
             " options go under `providers.<modality>.config`.", ""]
    for a in ADAPTERS:
        env = ", ".join(f"`{v}`" for v in (a.key_env, a.base_url_env) if v) or "none"
        extra = f"`pip install 'rspp[{a.extra}]'`" if a.extra else "none"
        lines += [f"## `{a.name}` ({a.kind.value})", "", a.summary, "",
                  f"environment: {env}; extra: {extra}", "",
                  "options: " + (", ".join(f"`{n}` ({t})" for n, t in a.options().items())
                                 or "none"), ""]
    path = out_dir / "providers.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def register(app: typer.Typer) -> None:
    """Attach this group's commands to the root app."""
    app.command("lint")(lint)
    app.command("validate")(validate)
    app.command("docs")(docs)
    app.add_typer(spec_app, name="spec")
    guard_commands(app)
