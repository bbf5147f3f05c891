"""``rspp cp token|keys|config|runtime|signing-keys|kms|region``: session tokens, API keys,
versioned configs, runtime instances, token signing keys, KMS keys and regions, over HTTP."""

from __future__ import annotations

from pathlib import Path

import typer

from rspp.cli._cp import (
    config_app,
    keys_app,
    kms_app,
    region_app,
    runtime_app,
    signing_app,
    token_app,
)
from rspp.cli._cp_client import KeyOpt, ServerOpt, _call, _print


@token_app.command("issue")
def token_issue(
    session: str = typer.Option(..., "--session"),
    tenant: str = typer.Option(..., "--tenant"),
    ttl: int = typer.Option(None, "--ttl", help="Seconds (default 300)."),
    server: str = ServerOpt,
    api_key: str = KeyOpt,
) -> None:
    """Issue a token for a routed session; prints the token."""
    body = {"tenant_id": tenant, "ttl_s": ttl}
    result = _call(
        server, api_key, lambda c: c.request("POST", f"/v1/sessions/{session}/token", json=body)
    )
    typer.echo(result["token"])


@token_app.command("verify")
def token_verify(
    token: str = typer.Argument(...), server: str = ServerOpt, api_key: str = KeyOpt
) -> None:
    """Exit 0 only for a valid, unexpired, untampered token."""
    result = _call(
        server, api_key, lambda c: c.request("POST", "/v1/tokens/verify", json={"token": token})
    )
    _print(result["claims"])
    typer.echo("valid")


@keys_app.command("create")
def keys_create(
    role: str = typer.Option(..., "--role", help="viewer, operator or admin."),
    tenant: str = typer.Option(
        None, "--tenant", help="Scope the key to one tenant (its sessions, leases, outcomes)."
    ),
    fleet: bool = typer.Option(
        False,
        "--fleet",
        help="A fleet-scoped key (the default without --tenant): runtimes (`rspp serve "
        "--control-plane URL --api-key K` needs a fleet operator key), rollouts, configs.",
    ),
    server: str = ServerOpt,
    api_key: str = KeyOpt,
) -> None:
    """Create an API key; the key is printed on the last line (shown once)."""
    if fleet and tenant:
        typer.echo("error: --fleet and --tenant exclude each other", err=True)
        raise typer.Exit(2)
    body = {"role": role, "tenant_id": tenant}
    result = _call(server, api_key, lambda c: c.request("POST", "/v1/keys", json=body))
    scope = f"tenant {result['tenant_id']}" if result["tenant_id"] else "fleet"
    typer.echo(f"key id {result['key_id']} role {result['role']} scope {scope}")
    typer.echo(result["key"])


@config_app.command("publish")
def config_publish(
    file: Path = typer.Argument(..., help="Config file: kind, scope and body (YAML/JSON)."),
    inactive: bool = typer.Option(False, "--inactive", help="Publish without activating."),
    server: str = ServerOpt,
    api_key: str = KeyOpt,
) -> None:
    """Check a config file as `rspp validate` does, then publish it (and activate it)."""
    from rspp.cli._spec import issue_line
    from rspp.controlplane import lint_config_text
    from rspp.providers import PROVIDER_CATALOG
    from rspp.spec import SpecInvalid, read_spec_source

    try:
        config, issues = lint_config_text(read_spec_source(file), str(file),
                                          adapters=PROVIDER_CATALOG)
    except SpecInvalid as exc:
        config, issues = None, list(exc.issues)
    for issue in issues:
        typer.echo(issue_line(issue), err=True)
    if config is None:
        raise typer.Exit(1)
    path = f"/v1/configs/{config.kind.value}/{config.scope}"
    body = {"body": config.body, "activate": not inactive}
    _print(_call(server, api_key, lambda c: c.request("POST", path, json=body)))


@runtime_app.command("register")
def runtime_register(
    runtime_id: str = typer.Argument(...),
    endpoint: str = typer.Option(..., "--endpoint"),
    transport: str = typer.Option("websocket", "--transport"),
    region: str = typer.Option("default", "--region"),
    capacity: int = typer.Option(100, "--capacity"),
    runtime_version: str = typer.Option(
        None, "--runtime-version", help="Release the runtime runs (default: this one's)."),
    schema_version: str = typer.Option(
        None, "--schema-version", help="Contract schema it writes (default: this one's)."),
    server: str = ServerOpt,
    api_key: str = KeyOpt,
) -> None:
    """Register (or re-register) a runtime instance; the control plane refuses a release or
    schema outside its version-skew window (409 version_skew)."""
    from rspp import __version__
    from rspp.contracts import SCHEMA_VERSION

    body = {
        "runtime_id": runtime_id,
        "endpoint": endpoint,
        "transport_kind": transport,
        "region": region,
        "capacity": capacity,
        "runtime_version": runtime_version or __version__,
        "schema_version": schema_version or SCHEMA_VERSION,
    }
    _print(_call(server, api_key, lambda c: c.request("POST", "/v1/runtimes", json=body)))


@runtime_app.command("heartbeat")
def runtime_heartbeat(
    runtime_id: str = typer.Argument(...),
    health: str = typer.Option("healthy", "--health"),
    load: int = typer.Option(None, "--load"),
    server: str = ServerOpt,
    api_key: str = KeyOpt,
) -> None:
    """Report health/load; an unhealthy runtime's sessions are migrated."""
    body = {"health": health, "load": load}
    _print(
        _call(
            server,
            api_key,
            lambda c: c.request("POST", f"/v1/runtimes/{runtime_id}/heartbeat", json=body),
        )
    )


@signing_app.command("rotate")
def signing_keys_rotate(
    key_ref: str = typer.Option(
        None, "--key-ref", help="The new key: file:PATH or env:VAR (an Ed25519 PEM the "
        "control plane reads); default: generated in its --token-key-dir."),
    reason: str = typer.Option("manual", "--reason", help="Recorded in the audit entry."),
    server: str = ServerOpt,
    api_key: str = KeyOpt,
) -> None:
    """Make a new signing key active; the previous one verifies until its tokens expired."""
    _print(_call(server, api_key, lambda c: c.request(
        "POST", "/v1/tokens/keys/rotate", json={"key_ref": key_ref, "reason": reason})))


@signing_app.command("status")
def signing_keys_status(server: str = ServerOpt, api_key: str = KeyOpt) -> None:
    """The signing keys, the active key's age against the maximum, and whether it is due."""
    _print(_call(server, api_key, lambda c: c.request("GET", "/v1/tokens/keys/status")))


@kms_app.command("status")
def kms_status(server: str = ServerOpt, api_key: str = KeyOpt) -> None:
    """The KMS keys: reference, the version new data is sealed under, Vault's versions."""
    _print(_call(server, api_key, lambda c: c.request("GET", "/v1/kms/keys")))


_PURPOSE = typer.Option("session_state", "--purpose", help="Which key.")
_REASON = typer.Option("manual", "--reason", help="Recorded in the audit entry.")


def _kms_post(action: str, purpose: str, reason: str, server: str, api_key: str) -> None:
    _print(_call(server, api_key, lambda c: c.request(
        "POST", f"/v1/kms/keys/{action}", json={"purpose": purpose, "reason": reason})))


@kms_app.command("rotate")
def kms_rotate(purpose: str = _PURPOSE, reason: str = _REASON, server: str = ServerOpt,
               api_key: str = KeyOpt) -> None:
    """Rotate the KMS key in Vault; new data is sealed under its new version at once."""
    _kms_post("rotate", purpose, reason, server, api_key)


@kms_app.command("rewrap")
def kms_rewrap(purpose: str = _PURPOSE, reason: str = _REASON, server: str = ServerOpt,
               api_key: str = KeyOpt) -> None:
    """Rewrap every stored data key to the KMS key's latest version."""
    _kms_post("rewrap", purpose, reason, server, api_key)


@region_app.command("incident")
def region_incident(
    region: str = typer.Argument(..., help="The region (as runtimes register it)."),
    reason: str = typer.Option(..., "--reason", help="Why (recorded in the audit entry)."),
    server: str = ServerOpt,
    api_key: str = KeyOpt,
) -> None:
    """Declare a region incident: new sessions and failover moves go elsewhere."""
    _print(_call(server, api_key, lambda c: c.request(
        "PUT", f"/v1/regions/{region}/incident", json={"reason": reason})))


@region_app.command("clear")
def region_clear(region: str = typer.Argument(...), server: str = ServerOpt,
                 api_key: str = KeyOpt) -> None:
    """Close a region's incident."""
    _print(_call(server, api_key, lambda c: c.request("DELETE",
                                                      f"/v1/regions/{region}/incident")))


@region_app.command("list")
def region_list(server: str = ServerOpt, api_key: str = KeyOpt) -> None:
    """Regions with their runtimes, healthy ones, free capacity and incident."""
    _print(_call(server, api_key, lambda c: c.request("GET", "/v1/regions")))


def register(app: typer.Typer) -> None:
    """The commands joined ``rspp cp`` when this module was imported (its sub-groups)."""
    del app
