"""``--state-key`` / ``--timeline-signing-key`` with ``--vault-addr`` and
``--vault-token-file``: a KMS reference and the Vault settings it needs (F-169)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

__all__ = ["VAULT_ADDR", "VAULT_TOKEN_FILE", "vault_for"]

VAULT_ADDR: Any = typer.Option(
    None, "--vault-addr", help="Vault address for vault-transit: keys (default: VAULT_ADDR).")
VAULT_TOKEN_FILE: Any = typer.Option(
    None, "--vault-token-file", help="File holding the Vault token (default: VAULT_TOKEN).")


def vault_for(ref: str | None, flag: str, addr: str | None, token_file: Path | None) -> Any:
    """The Vault settings for ``ref`` (None without one); exit 2 naming the option."""
    from rspp.controlplane._kms import VaultSettings, parse_kms_ref

    if ref is None:
        return None
    try:
        parse_kms_ref(ref, field=flag)
        return VaultSettings.from_env(addr=addr, token_file=token_file)
    except ValueError as exc:
        message = str(exc)
        for name in ("vault_addr", "vault_token_file", "vault_token"):
            message = message.replace(f"{name}:", f"--{name.replace('_', '-')}:", 1)
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(2) from None
