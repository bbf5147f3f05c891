"""``rspp cp publish|list|get|rollout|rollback|route|status|audit|openapi``: the pipeline
registry, canary rollouts, session routing and the audit log, over HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from rspp.cli._cp import cp_app
from rspp.cli._cp_client import KeyOpt, ServerOpt, _call, _Client, _CliError, _print


@cp_app.command("publish")
def publish(
    spec: Path = typer.Argument(..., help="PipelineSpec file (YAML/JSON)."),
    module: bool = typer.Option(False, "--module", help="Publish as a reusable subgraph module."),
    force: bool = typer.Option(False, "--force", help="Admin: publish during a budget freeze."),
    server: str = ServerOpt,
    api_key: str = KeyOpt,
) -> None:
    """Publish a PipelineSpec version (immutable once published)."""
    try:
        text = spec.read_text(encoding="utf-8")
    except OSError as exc:
        typer.echo(f"error: cannot read {spec}: {exc.strerror}", err=True)
        raise typer.Exit(1) from None
    if module:
        _print(_call(server, api_key, lambda c: c.publish_module(text)))
    else:
        _print(_call(server, api_key, lambda c: c.publish(text, str(spec), force=force)))


@cp_app.command("list")
def list_(
    name: str = typer.Option(None, "--name"), server: str = ServerOpt, api_key: str = KeyOpt
) -> None:
    """List published pipeline versions with author, created_at and hash."""
    result = _call(server, api_key, lambda c: c.list_pipelines(name))
    for p in result["pipelines"]:
        typer.echo(
            f"{p['name']}@{p['version']}  {p['spec_hash'][:16]}  {p['author']}  "
            f"{p['created_at_ms']}"
        )


@cp_app.command("get")
def get(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION"),
    server: str = ServerOpt,
    api_key: str = KeyOpt,
) -> None:
    """Show one published version (latest when no @VERSION)."""
    name, _, version = ref.partition("@")
    _print(_call(server, api_key, lambda c: c.get_pipeline(name, version or None)))


@cp_app.command("rollout")
def rollout(
    name: str = typer.Argument(..., help="Pipeline name (or `status NAME`: the gate table)."),
    subject: str = typer.Argument(None, help="With `status`: the pipeline name."),
    to: str = typer.Option(None, "--to", "--canary", help="Version to roll out."),
    percent: float = typer.Option(None, "--percent", help="Share of sessions (0-100)."),
    tenants: list[str] = typer.Option(
        [], "--tenants", help="Restrict the canary to these tenants."
    ),
    promote_after: int = typer.Option(
        None, "--promote-after", min=1,
        help="Gated: canary turns at a step before it is promoted to the next step.",
    ),
    rollback_on_gates: bool = typer.Option(
        False, "--rollback-on-gates",
        help="Gated: roll back automatically when any canary quality gate fails.",
    ),
    steps: str = typer.Option(
        None, "--steps", help="Gated: the percentages after --percent (default 25,50,100)."
    ),
    window: int = typer.Option(
        None, "--window", min=1, help="Gated: gate samples per version in the window (200)."
    ),
    min_samples: int = typer.Option(
        None, "--min-samples", min=1, help="Gated: fewest samples for a verdict (20)."
    ),
    as_json: bool = typer.Option(False, "--json", help="`status`: print JSON."),
    force: bool = typer.Option(False, "--force", help="Admin: roll out during a budget freeze."),
    server: str = ServerOpt,
    api_key: str = KeyOpt,
) -> None:
    """Start or change a canary rollout; gated with --promote-after/--rollback-on-gates.

    `rspp cp rollout status NAME` shows the canary and baseline gate tables, the
    current percentage, the next step and the last decision with its reason.
    """
    if name == "status" and subject:
        result = _call(server, api_key,
                       lambda c: c.request("GET", f"/v1/pipelines/{subject}/rollout/status"))
        if as_json:
            _print(result)
        else:
            typer.echo(rollout_status_text(result))
        return
    if subject or to is None or percent is None:
        typer.echo("error: use `rspp cp rollout NAME --to VERSION --percent P` or "
                   "`rspp cp rollout status NAME`", err=True)
        raise typer.Exit(2)
    flat = [t for item in tenants for t in item.split(",") if t]
    body: dict[str, Any] = {"canary": to, "percent": percent, "tenants": flat}
    try:
        plan = [float(x) for x in steps.split(",") if x.strip()] if steps else []
    except ValueError:
        typer.echo(f"error: --steps {steps!r}: comma-separated percentages", err=True)
        raise typer.Exit(2) from None
    for key, value in (("promote_after", promote_after), ("window", window),
                       ("min_samples", min_samples), ("steps", plan or None)):
        if value is not None:
            body[key] = value
    body.update({k: True for k, on in (("rollback_on_gates", rollback_on_gates),
                                       ("force", force)) if on})
    _print(_call(server, api_key,
                 lambda c: c.request("POST", f"/v1/pipelines/{name}/rollout", json=body)))


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value:g}"


def rollout_status_text(status: dict[str, Any]) -> str:
    """The gate table of ``GET /v1/pipelines/{name}/rollout/status`` for a terminal."""
    name, state, policy = status["pipeline_name"], status["rollout"], status["policy"]
    if state is None:
        return f"{name}: no rollout (new sessions get the latest published version)"
    lines = [f"{name}: stable {state['stable_version']}" + (
        f", canary {state['canary_version']} at {state['percent']:g}%"
        if state["canary_version"] else ", no canary")]
    if policy is None:
        lines.append("not gated (start with --promote-after and/or --rollback-on-gates)")
        return "\n".join(lines)
    nxt = status["next_step"]
    lines.append(
        f"gated rollout of {policy['canary_version']}: {policy['state']}; steps "
        + " -> ".join(f"{s:g}%" for s in policy["steps"])
        + (f"; next step {nxt:g}% after {policy['promote_after']} turns "
           f"({status['turns_at_step']} so far)" if nxt is not None else "")
        + f"; window {policy['window']} samples, verdict from {policy['min_samples']}")
    tables = [t for t in (status["canary"], status["baseline"]) if t is not None]
    head = f"{'gate':<4}  {'name':<20}  {'threshold':<31}"
    for which, t in zip(("canary", "baseline"), tables, strict=False):
        head += f"  {which} {t['version']} (n={t['samples']})".ljust(36)
    lines.append(head)
    for i, gate in enumerate(tables[0]["gates"]):
        row = f"{gate['gate']:<4}  {gate['name']:<20}  {gate['threshold']:<31}"
        for t in tables:
            g = t["gates"][i]
            verdict = g["status"] if t["evaluated"] else "waiting"
            figures = (f"p50 {_ms(g['p50'])} p95 {_ms(g['p95'])} p99 {_ms(g['p99'])}"
                       if g["p50"] is not None else f"value {_ms(g['value'])}")
            row += f"  {verdict:<10} {figures}".ljust(36)
        lines.append(row.rstrip())
    last = status["last_decision"]
    lines.append("last decision: " + (f"{last['action']} ({last['from_percent']:g}% -> "
                                      f"{last['to_percent']:g}%): {last['reason']}"
                                      if last else "none yet"))
    return "\n".join(lines)


@cp_app.command("rollback")
def rollback(
    name: str = typer.Argument(...),
    to: str = typer.Option(..., "--to"),
    server: str = ServerOpt,
    api_key: str = KeyOpt,
) -> None:
    """Route every new session to VERSION and clear the canary."""
    _print(_call(server, api_key, lambda c: c.rollback(name, to)))


@cp_app.command("route")
def route(
    tenant: str = typer.Option(..., "--tenant"),
    pipeline: str = typer.Option(None, "--pipeline", help="Pipeline name (default: the only one)."),
    session: str = typer.Option(None, "--session"),
    server: str = ServerOpt,
    api_key: str = KeyOpt,
) -> None:
    """Route a new session: runtime endpoint, transport kind and a signed token."""

    def work(client: _Client) -> Any:
        name = pipeline
        if name is None:
            names = sorted({p["name"] for p in client.list_pipelines()["pipelines"]})
            if len(names) != 1:
                raise _CliError(
                    "invalid", f"choose a pipeline with --pipeline (published: {names})", "pipeline"
                )
            name = names[0]
        extra = {"session_id": session} if session else {}
        return client.route(tenant, name, **extra)

    _print(_call(server, api_key, work))


@cp_app.command("status")
def status(
    session: str = typer.Argument(...), server: str = ServerOpt, api_key: str = KeyOpt
) -> None:
    """Session status: routed, connected, running, degraded or ended."""
    result = _call(server, api_key, lambda c: c.request("GET", f"/v1/sessions/{session}"))
    _print(result)


@cp_app.command("audit")
def audit(
    verify: bool = typer.Option(False, "--verify", help="Check the hash chain; exit 1 if broken."),
    tenant: str = typer.Option(
        None, "--tenant", help="Only this tenant's entries (a tenant key reads only its own)."
    ),
    server: str = ServerOpt,
    api_key: str = KeyOpt,
) -> None:
    """Print the audit log (JSON lines), or verify its hash chain (fleet keys)."""
    if verify:
        verdict = _call(server, api_key, lambda c: c.request("GET", "/v1/audit/verify"))
        if not verdict["ok"]:
            typer.echo(
                f"audit chain BROKEN at seq {verdict['first_bad_seq']}: {verdict['reason']}",
                err=True,
            )
            raise typer.Exit(1)
        typer.echo(f"audit chain ok ({verdict['checked']} entries)")
        return
    query = {"tenant_id": tenant} if tenant else None
    result = _call(server, api_key, lambda c: c.request("GET", "/v1/audit", params=query))
    for entry in result["entries"]:
        typer.echo(json.dumps(entry, sort_keys=True))


@cp_app.command("openapi")
def openapi() -> None:
    """Print the control plane's OpenAPI 3.1 document (JSON), as served at /openapi.json."""
    from rspp.controlplane import openapi_document

    typer.echo(json.dumps(openapi_document(), indent=2, sort_keys=True))


def register(app: typer.Typer) -> None:
    """The commands joined ``rspp cp`` when this module was imported (``cp_app``)."""
    del app
