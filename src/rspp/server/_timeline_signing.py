"""Served sessions' timelines signed by a KMS key, verifiable across rotations (F-169).

With ``rspp serve --timeline-signing-key vault-transit:NAME`` (an ``ed25519`` transit
key), once a session's timeline file is closed the runtime signs its SHA-256 through
Vault's ``sign`` (always the key's latest version, so a rotation in Vault or by
``rspp cp kms rotate --purpose timeline_signing`` applies to the next signature with no
restart) and writes ``<timeline>.sig``::

    {"schema": "rspp.timeline_signature/v1", "session_id": ..., "sha256": ...,
     "key_ref": "vault-transit:NAME", "key_version": N, "signature": "vault:vN:..."}

The signed message is :func:`signed_message` (schema, session id and digest, so a
signature cannot be moved to another session's file). ``rspp timeline verify FILE``
checks it against the public key of that version that Vault publishes
(``GET /v1/transit/keys/:name``): old versions keep verifying after a rotation; a
version Vault does not publish (retired, or forged) is refused. When Vault cannot be
reached at the end of a session the session is unaffected (it has ended): no ``.sig``
is written and a warning names the reference and the file.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import msgspec

from rspp.controlplane._kms import KmsError, VaultTransit, key_version_of
from rspp.nodes.external import sha256_file as file_sha256

__all__ = ["SIGNATURE_SCHEMA", "TimelineSignature", "TimelineSigner", "file_sha256",
           "signature_path", "signed_message"]

SIGNATURE_SCHEMA = "rspp.timeline_signature/v1"
_LOG = logging.getLogger("rspp.server.timeline_signing")


class TimelineSignature(msgspec.Struct, frozen=True, kw_only=True,
                        forbid_unknown_fields=True):
    schema: str
    session_id: str
    sha256: str
    key_ref: str
    key_version: int
    signature: str


def signature_path(timeline: Path) -> Path:
    return timeline.with_name(timeline.name + ".sig")


def signed_message(session_id: str, sha256: str) -> bytes:
    return f"{SIGNATURE_SCHEMA}\n{session_id}\n{sha256}".encode()


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


class TimelineSigner:
    """Signs closed timelines through one transit key (see the module docstring)."""

    def __init__(self, transit: VaultTransit) -> None:
        self.transit = transit
        self.signed = 0
        self.failed = 0

    async def check(self) -> None:
        """At start: the key exists and signs (KmsError naming the reference if not)."""
        info = await self.transit.info()
        if info.type != "ed25519":
            raise KmsError(f"KMS key {self.transit.ref}: a {info.type} key cannot sign "
                           "timelines: use an ed25519 transit key", ref=self.transit.ref)

    async def sign(self, timeline: Path, session_id: str) -> TimelineSignature | None:
        """Sign ``timeline`` (None when it does not exist or Vault failed: logged)."""
        try:  # off the event loop: a long session's timeline is large
            sha = await asyncio.to_thread(file_sha256, timeline)
        except FileNotFoundError:
            return None
        try:
            signature = await self.transit.sign(signed_message(session_id, sha))
        except KmsError as exc:
            self.failed += 1
            _LOG.warning("timeline %s of session %s is not signed: %s", timeline.name,
                         session_id, exc.message)
            return None
        version = key_version_of(signature)
        if version is None:
            self.failed += 1
            _LOG.warning("timeline %s is not signed: KMS key %s answered a signature "
                         "without a vault:vN: prefix", timeline.name, self.transit.ref)
            return None
        sig = TimelineSignature(schema=SIGNATURE_SCHEMA, session_id=session_id, sha256=sha,
                                key_ref=self.transit.ref, key_version=version,
                                signature=signature)
        await asyncio.to_thread(_write, signature_path(timeline), msgspec.json.encode(sig))
        self.signed += 1
        return sig
