"""Local Ed25519 signing keys of ``rspp cp change`` (NF-037): make, load, sign.

The private key stays in a file on the operator's machine (PEM, PKCS#8, mode 0600);
the control plane only ever sees the public half (``rspp cp change register-key``)
and the signatures.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = ["generate_key", "load_key", "public_pem", "sign"]


def generate_key(out: Path) -> Ed25519PrivateKey:
    """A new private key written to ``out`` (refuses to overwrite a file)."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        typer.echo(f"error: --out: cannot create {out}: {exc.strerror or exc}", err=True)
        raise typer.Exit(2) from None
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return key


def load_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in ``path`` (PEM); exits 2 naming ``--signing-key``."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        typer.echo(f"error: --signing-key: cannot read {path}: {exc.strerror or exc}", err=True)
        raise typer.Exit(2) from None
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, Ed25519PrivateKey):
        typer.echo(f"error: --signing-key: {path} is not an unencrypted Ed25519 private key "
                   "(PEM); make one with `rspp cp change keygen`", err=True)
        raise typer.Exit(2)
    return key


def public_pem(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def sign(key: Ed25519PrivateKey, message: bytes) -> str:
    """The base64 signature of ``message``."""
    return base64.b64encode(key.sign(message)).decode()
