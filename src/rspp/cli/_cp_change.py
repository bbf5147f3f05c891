"""``rspp cp change ...``: submit, review and apply reviewed changes (F-165)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import typer

from rspp.cli._cp import KeyOpt, ServerOpt, _call, _print, cp_app

SigningKeyOpt = typer.Option(
    None, "--signing-key", envvar="RSPP_SIGNING_KEY",
    help="Sign with this Ed25519 private key (PEM; `rspp cp change keygen`), NF-037.")


def _signed_submission(body: dict[str, Any], key_file: Path) -> dict[str, Any]:
    """``body`` with the signature of its canonical request hash (the control plane's)."""
    import msgspec

    from rspp.cli._cp_signing import load_key, sign
    from rspp.controlplane._change_signing import request_hash_of, submit_message
    from rspp.controlplane._requests import ChangeSubmitRequest

    key = load_key(key_file)
    try:
        request = msgspec.convert(body, ChangeSubmitRequest)
    except msgspec.ValidationError:
        return body  # the control plane names the bad field
    return {**body, "signature": sign(key, submit_message(request_hash_of(request)[1]))}

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
    signing_key: Path = SigningKeyOpt,
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
    if signing_key is not None:
        body = _signed_submission(body, signing_key)
    _print(_call(server, api_key, lambda c: c.request("POST", "/v1/changes", json=body)))


def _review(change_id: str, verb: Literal["approve", "reject"], note: str,
            signing_key: Path | None, server: str, api_key: str | None) -> None:
    path = f"/v1/changes/{change_id}/{verb}"
    body: dict[str, Any] = {"note": note}
    if signing_key is not None:  # signs the request hash of the change as stored
        from rspp.cli._cp_signing import load_key, sign
        from rspp.controlplane._change_signing import review_message

        key = load_key(signing_key)
        change = _call(server, api_key, lambda c: c.request("GET", f"/v1/changes/{change_id}"))
        body["signature"] = sign(key, review_message(change_id, verb, change["request_hash"]))
    _print(_call(server, api_key, lambda c: c.request("POST", path, json=body)))


@change_app.command("approve")
def approve(change_id: str, note: str = typer.Option("", "--note"),
            signing_key: Path = SigningKeyOpt, server: str = ServerOpt,
            api_key: str = KeyOpt) -> None:
    """Approve a pending change (a key other than its submitter's)."""
    _review(change_id, "approve", note, signing_key, server, api_key)


@change_app.command("reject")
def reject(change_id: str, note: str = typer.Option("", "--note"),
           signing_key: Path = SigningKeyOpt, server: str = ServerOpt,
           api_key: str = KeyOpt) -> None:
    """Reject a pending change (a key other than its submitter's)."""
    _review(change_id, "reject", note, signing_key, server, api_key)


@change_app.command("keygen")
def keygen(out: Path = typer.Option(..., "--out", help="Private key file to create (0600)."),
           ) -> None:
    """Make a local Ed25519 signing key; prints its public half (PEM)."""
    from rspp.cli._cp_signing import generate_key, public_pem

    typer.echo(public_pem(generate_key(out)), nl=False)


@change_app.command("register-key")
def register_key(signing_key: Path = typer.Option(
        ..., "--signing-key", envvar="RSPP_SIGNING_KEY",
        help="The private key whose public half is registered (it never leaves this machine)."),
        server: str = ServerOpt, api_key: str = KeyOpt) -> None:
    """Register your signing key's public half as the calling API key's signer identity."""
    from rspp.cli._cp_signing import load_key, public_pem

    body = {"public_key": public_pem(load_key(signing_key))}
    _print(_call(server, api_key, lambda c: c.request("POST", "/v1/signer-keys", json=body)))


@change_app.command("verify")
def verify(target: str = typer.Option(None, "--target",
                                      help="Only this target: pipeline:NAME, config:KIND/SCOPE."),
           server: str = ServerOpt, api_key: str = KeyOpt) -> None:
    """Re-verify every change's signed identities and approval trail; exit 1 on a problem."""
    params = {"target": target} if target else None
    report = _call(server, api_key,
                   lambda c: c.request("GET", "/v1/change-provenance", params=params))
    _print(report)
    if not report["ok"]:
        raise typer.Exit(1)


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
