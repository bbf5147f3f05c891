"""``rspp timeline verify FILE``: a served session's timeline against its KMS signature.

Reads ``FILE.sig`` (written by ``rspp serve --timeline-signing-key``), recomputes the
file's SHA-256 and checks the signature with the public key of the signing version that
Vault publishes for the key (``GET /v1/transit/keys/:name``; Ed25519, verified here).
Prints one JSON object; exit 0 when it verifies, 1 when it does not (altered file,
signature of another session, a version Vault does not publish), 2 on bad input.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from pathlib import Path

import typer

from rspp.cli._kms_option import VAULT_ADDR, VAULT_TOKEN_FILE, vault_for

__all__ = ["register", "verify"]


def _refuse(out: dict[str, object], why: str) -> typer.Exit:
    typer.echo(json.dumps({**out, "ok": False, "reason": why}))
    return typer.Exit(1)


def verify(
    timeline: Path = typer.Argument(..., help="A timeline file (its .sig beside it)."),
    vault_addr: str | None = VAULT_ADDR,
    vault_token_file: Path | None = VAULT_TOKEN_FILE,
) -> None:
    """Check a timeline's KMS signature (any key version Vault still publishes)."""
    import msgspec
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from rspp.controlplane._kms import KmsError, VaultTransit
    from rspp.server._timeline_signing import (
        TimelineSignature,
        file_sha256,
        signature_path,
        signed_message,
    )

    sig_file = signature_path(timeline)
    out: dict[str, object] = {"timeline": str(timeline)}
    if not timeline.is_file():
        typer.echo(f"error: TIMELINE: {timeline} is not a file", err=True)
        raise typer.Exit(2)
    if not sig_file.is_file():
        raise _refuse(out, f"unsigned: {sig_file.name} does not exist")
    try:
        sig = msgspec.json.decode(sig_file.read_bytes(), type=TimelineSignature)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise _refuse(out, f"{sig_file.name} is not a timeline signature ({exc})") from None
    out.update(session_id=sig.session_id, key_ref=sig.key_ref, key_version=sig.key_version)
    vault = vault_for(sig.key_ref, "key_ref", vault_addr, vault_token_file)
    if file_sha256(timeline) != sig.sha256:
        raise _refuse(out, "the timeline changed after it was signed (SHA-256 differs)")

    async def public_keys() -> dict[int, str]:
        transit = VaultTransit(vault, sig.key_ref)
        try:
            return (await transit.info()).public_keys
        finally:
            await transit.aclose()

    try:
        published = asyncio.run(public_keys())
    except KmsError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from None
    prefix = f"vault:v{sig.key_version}:"
    if sig.key_version not in published or not sig.signature.startswith(prefix):
        raise _refuse(out, f"version {sig.key_version} of {sig.key_ref} is not published by "
                      "Vault (retired, or not a version of this key)")
    try:
        raw = base64.b64decode(sig.signature[len(prefix):], validate=True)
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(published[sig.key_version]))
        key.verify(raw, signed_message(sig.session_id, sig.sha256))
    except (InvalidSignature, binascii.Error, ValueError):
        raise _refuse(out, f"the signature does not verify with {sig.key_ref} version "
                      f"{sig.key_version}") from None
    typer.echo(json.dumps({**out, "ok": True}))


def register(timeline_app: typer.Typer) -> None:
    """Attach ``verify`` to ``rspp timeline``."""
    timeline_app.command("verify")(verify)
