"""Signed change provenance (NF-037): signer keys, signed submissions and reviews.

An API key registers an Ed25519 public key (its signer identity). The submitter of
a change signs :func:`submit_message` (the canonical request hash) and the reviewer
signs :func:`review_message` (change id, verdict, request hash) with the private
half kept on their machine (``rspp cp change ... --signing-key FILE``). The control
plane verifies each signature against the keys registered to the calling API key
and stores it with the key's fingerprint; :func:`verify_changes_in` re-checks every
stored change: its request hash against its request, each signature against its
signer's registered key, the signer key's owner against the change's actor.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any, Final, Literal

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from rspp.controlplane._errors import Forbidden, InvalidRequest
from rspp.controlplane._requests import ChangeSubmitRequest
from rspp.controlplane._schema import changes, signer_keys

__all__ = [
    "ChangeProvenance",
    "ProvenanceReport",
    "SignerKey",
    "Verdict",
    "check_signature_in",
    "parse_public_key",
    "register_in",
    "request_hash_of",
    "review_message",
    "signer_keys_in",
    "submit_message",
    "verify_changes_in",
]

_DOMAIN: Final = "rspp-change/v1"
Verdict = Literal["approve", "reject"]


def request_hash_of(request: ChangeSubmitRequest) -> tuple[str, str]:
    """``(request_json, request_hash)`` of a change request, without its signature."""
    encoded = msgspec.json.encode(msgspec.structs.replace(request, signature=None)).decode()
    return encoded, hashlib.sha256(encoded.encode()).hexdigest()


def submit_message(request_hash: str) -> bytes:
    """What a submitter signs."""
    return f"{_DOMAIN}:submit:{request_hash}".encode()


def review_message(change_id: str, verdict: Verdict, request_hash: str) -> bytes:
    """What a reviewer signs: the change, the verdict and the request they reviewed."""
    return f"{_DOMAIN}:{verdict}:{change_id}:{request_hash}".encode()


def parse_public_key(text: str) -> tuple[bytes, str]:
    """Raw 32-byte Ed25519 key and its fingerprint from PEM or base64; 422 otherwise."""
    try:
        if text.lstrip().startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
            if not isinstance(key, Ed25519PublicKey):
                raise ValueError("not an Ed25519 key")
            raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        else:
            raw = base64.b64decode(text.strip(), validate=True)
            Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, TypeError, binascii.Error, UnicodeError):
        raise InvalidRequest("public_key must be an Ed25519 public key: PEM "
                             "(SubjectPublicKeyInfo) or the base64 of its 32 raw bytes",
                             field="public_key") from None
    return raw, hashlib.sha256(raw).hexdigest()


def _verifies(public_b64: str, message: bytes, signature: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(base64.b64decode(public_b64)).verify(
            signature, message)
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


class SignerKey(msgspec.Struct, frozen=True, kw_only=True):
    """An API key's registered signer identity."""

    key_id: str
    fingerprint: str
    public_key: str
    registered_at_ms: int


def _key(row: Any) -> SignerKey:
    return SignerKey(key_id=row.key_id, fingerprint=row.fingerprint,
                     public_key=row.public_key, registered_at_ms=row.registered_at_ms)


async def signer_keys_in(conn: AsyncConnection, key_id: str | None = None) -> list[SignerKey]:
    query = select(signer_keys).order_by(signer_keys.c.key_id, signer_keys.c.registered_at_ms)
    if key_id is not None:
        query = query.where(signer_keys.c.key_id == key_id)
    return [_key(r) for r in (await conn.execute(query)).all()]


async def register_in(conn: AsyncConnection, key_id: str, raw: bytes, fingerprint: str,
                      now_ms: int) -> tuple[SignerKey, bool]:
    """Register ``raw`` for ``key_id``; ``(key, created)`` (False: it was already)."""
    for known in await signer_keys_in(conn, key_id):
        if known.fingerprint == fingerprint:
            return known, False
    await conn.execute(insert(signer_keys).values(
        key_id=key_id, fingerprint=fingerprint, public_key=base64.b64encode(raw).decode(),
        registered_at_ms=now_ms))
    return SignerKey(key_id=key_id, fingerprint=fingerprint,
                     public_key=base64.b64encode(raw).decode(), registered_at_ms=now_ms), True


def _signature_bytes(signature: str) -> bytes:
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 64:
        raise InvalidRequest("signature must be the base64 of a 64-byte Ed25519 signature",
                             field="signature")
    return raw


async def check_signature_in(conn: AsyncConnection, actor: str, message: bytes,
                             signature: str) -> str:
    """The fingerprint of ``actor``'s key that signed ``message``; 403 naming ``signature``."""
    raw = _signature_bytes(signature)
    keys = await signer_keys_in(conn, actor)
    if not keys:
        raise Forbidden(f"key {actor} has no registered signing key; register one (POST "
                        "/v1/signer-keys, `rspp cp change register-key`)", field="signature",
                        code="no_signing_key")
    for key in keys:
        if _verifies(key.public_key, message, raw):
            return key.fingerprint
    raise Forbidden(f"signature does not verify with any signing key of key {actor}",
                    field="signature", code="bad_signature")


class ChangeProvenance(msgspec.Struct, frozen=True, kw_only=True):
    """One change's signed identity and approval trail, as verified now."""

    change_id: str
    target: str
    action: str
    status: str
    request_hash: str
    request_hash_ok: bool
    submitted_by: str
    submit_signer: str | None
    submit_signature_ok: bool
    reviewed_by: str | None
    review_signer: str | None
    review_signature_ok: bool | None
    applied_by: str | None
    #: every check passed and both steps are signed (a pending change: its submission)
    signed: bool
    problems: list[str]


class ProvenanceReport(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    changes: list[ChangeProvenance]


def _check_step(keys: dict[str, SignerKey], actor: str | None, signer: str | None,
                signature: str | None, message: bytes, step: str,
                problems: list[str]) -> bool:
    if signature is None or signer is None:
        problems.append(f"{step}: unsigned")
        return False
    key = keys.get(signer)
    if key is None or key.key_id != actor:
        problems.append(f"{step}: signer {signer[:16]} is not a registered key of {actor}")
        return False
    try:
        ok = _verifies(key.public_key, message, base64.b64decode(signature))
    except (binascii.Error, ValueError):
        ok = False
    if not ok:
        problems.append(f"{step}: signature does not verify")
    return ok


async def verify_changes_in(conn: AsyncConnection, target: str | None) -> ProvenanceReport:
    """Re-verify every change (of ``target``): hashes, signatures, signer ownership."""
    keys = {k.fingerprint: k for k in await signer_keys_in(conn)}
    query = select(changes).order_by(changes.c.submitted_at_ms, changes.c.change_id)
    if target is not None:
        query = query.where(changes.c.target == target)
    out = []
    for row in (await conn.execute(query)).all():
        problems: list[str] = []
        hash_ok = hashlib.sha256(row.request_json.encode()).hexdigest() == row.request_hash
        if not hash_ok:
            problems.append("request_hash does not match the stored request")
        sub_ok = _check_step(keys, row.submitted_by, row.submit_signer, row.submit_signature,
                             submit_message(row.request_hash), "submit", problems)
        rev_ok: bool | None = None
        if row.reviewed_by is not None:
            verdict: Verdict = "reject" if row.status == "rejected" else "approve"
            rev_ok = _check_step(keys, row.reviewed_by, row.review_signer,
                                 row.review_signature,
                                 review_message(row.change_id, verdict, row.request_hash),
                                 "review", problems)
        out.append(ChangeProvenance(
            change_id=row.change_id, target=row.target, action=row.action, status=row.status,
            request_hash=row.request_hash, request_hash_ok=hash_ok,
            submitted_by=row.submitted_by, submit_signer=row.submit_signer,
            submit_signature_ok=sub_ok, reviewed_by=row.reviewed_by,
            review_signer=row.review_signer, review_signature_ok=rev_ok,
            applied_by=row.applied_by, signed=not problems, problems=problems))
    return ProvenanceReport(ok=all(c.signed for c in out), changes=out)
