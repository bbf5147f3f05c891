"""``rspp cp change ...``: submit, review and apply reviewed changes (F-165)."""

from __future__ import annotations

from typing import Any

import typer

from rspp.cli._cp import KeyOpt, ServerOpt, _call, _print, cp_app

change_app = typer.Typer(
    help="Reviewed changes: rollouts, rollbacks and config activations approved by another key.",
    no_args_is_help=True,
)
cp_app.add_typer(change_app, name="change")


@change_app.command("submit")
def submit(
    action: str = typer.Argument(..., help="rollout, rollback or config.activate"),
    pipeline: str = typer.Option(None, "--pipeline", help="rollout/rollback: pipeline name."),
    canary: str = typer.Option(None, "--canary", help="rollout: version to roll out."),
    percent: float = typer.Option(None, "--percent", help="rollout: share of sessions."),
    tenants: list[str] = typer.Option([], "--tenants", help="rollout: only these tenants."),
    to: str = typer.Option(None, "--to", help="rollback: version to pin."),
    kind: str = typer.Option(None, "--kind", help="config.activate: policy, admission, ..."),
    scope: str = typer.Option(None, "--scope", help="config.activate: tenant or `*`."),
    version: int = typer.Option(None, "--version", help="config.activate: version."),
    reason: str = typer.Option("", "--reason", help="Why: shown to the reviewer, audited."),
    server: str = ServerOpt,
    api_key: str = KeyOpt,
) -> None:
    """Submit a change for review; prints it with its change_id."""
    body: dict[str, Any] = {"action": action, "reason": reason}
    if pipeline is not None:
        body["pipeline_name"] = pipeline
    if canary is not None or percent is not None:
        body["rollout"] = {"canary": canary, "percent": percent, "tenants": tenants}
    if to is not None:
        body["rollback_to"] = to
    if kind is not None:
        body.update(config_kind=kind, config_scope=scope, config_version=version)
    _print(_call(server, api_key, lambda c: c.request("POST", "/v1/changes", json=body)))


def _review(change_id: str, verb: str, note: str, server: str, api_key: str | None) -> None:
    path = f"/v1/changes/{change_id}/{verb}"
    _print(_call(server, api_key, lambda c: c.request("POST", path, json={"note": note})))


@change_app.command("approve")
def approve(change_id: str, note: str = typer.Option("", "--note"), server: str = ServerOpt,
            api_key: str = KeyOpt) -> None:
    """Approve a pending change (a key other than its submitter's)."""
    _review(change_id, "approve", note, server, api_key)


@change_app.command("reject")
def reject(change_id: str, note: str = typer.Option("", "--note"), server: str = ServerOpt,
           api_key: str = KeyOpt) -> None:
    """Reject a pending change (a key other than its submitter's)."""
    _review(change_id, "reject", note, server, api_key)


@change_app.command("apply")
def apply(change_id: str, server: str = ServerOpt, api_key: str = KeyOpt) -> None:
    """Apply an approved change: its rollout, rollback or config activation runs, once."""
    path = f"/v1/changes/{change_id}/apply"
    _print(_call(server, api_key, lambda c: c.request("POST", path)))


@change_app.command("list")
def list_(status: str = typer.Option(None, "--status", help="pending, approved, rejected, "
                                     "applied"), server: str = ServerOpt,
          api_key: str = KeyOpt) -> None:
    """Changes with their review metadata."""
    params = {"status": status} if status else None
    _print(_call(server, api_key, lambda c: c.request("GET", "/v1/changes", params=params)))


def register(app: typer.Typer) -> None:
    """The commands joined ``rspp cp`` when this module was imported (``cp_app``)."""
    del app
