"""Onboarding checks of an external node package: provenance, SBOM, attestation (F-171, NF-036).

Before a spec's external node may run, every check passes or the spec is refused with a
one-line error naming the field:

1. **provenance**: the spec pins the artifact's digest (``external:MANIFEST@sha256:HEX``);
   the artifact file on disk must hash to it;
2. **SBOM**: the manifest names an SBOM (``sbom``): CycloneDX JSON (``bomFormat`` and a
   non-empty ``components``) or SPDX JSON (``spdxVersion`` and a non-empty ``packages``);
3. **attestation**: the manifest names a DSSE envelope (``attestation``) holding an in-toto
   Statement whose subject is the artifact with that digest and whose predicate binds the
   SBOM's digest, signed (Ed25519) by a key the runtime trusts: PEM public keys listed in
   ``RSPP_TRUSTED_NODE_KEYS`` (``os.pathsep``-separated). No trusted key: refused.

``attest`` writes such an envelope (``rspp node attest``); ``inspect_package`` reports every
finding of a package at once (``rspp node check``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from rspp.nodes.external._manifest import ExternalNodeRefused, NodeManifest

__all__ = [
    "PAYLOAD_TYPE",
    "PREDICATE_TYPE",
    "TRUSTED_KEYS_ENV",
    "Onboarded",
    "attest",
    "key_id",
    "onboard",
    "sha256_file",
    "trusted_keys",
]

TRUSTED_KEYS_ENV = "RSPP_TRUSTED_NODE_KEYS"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://rspp.dev/attestation/external-node/v1"


@dataclass(frozen=True)
class Onboarded:
    """What the checks established (recorded when the node starts)."""

    digest: str
    sbom_digest: str
    sbom_format: str
    components: int
    key_id: str
    findings: tuple[str, ...] = field(default=())


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def key_id(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def trusted_keys(paths: str | None = None) -> dict[str, Ed25519PublicKey]:
    """The Ed25519 public keys named by ``RSPP_TRUSTED_NODE_KEYS`` (or ``paths``), by key id."""
    spec = os.environ.get(TRUSTED_KEYS_ENV, "") if paths is None else paths
    keys: dict[str, Ed25519PublicKey] = {}
    for item in filter(None, spec.split(os.pathsep)):
        try:
            key = serialization.load_pem_public_key(Path(item).read_bytes())
        except (OSError, ValueError) as exc:
            raise ExternalNodeRefused(f"{TRUSTED_KEYS_ENV}: cannot load {item}: {exc}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ExternalNodeRefused(f"{TRUSTED_KEYS_ENV}: {item} is not an Ed25519 public key")
        keys[key_id(key)] = key
    return keys


def _pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def _sbom(path: Path, label: str) -> tuple[str, int]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ExternalNodeRefused(f"{label}: manifest field `sbom`: {path.name} is not "
                                  f"readable JSON ({exc})") from None
    if isinstance(doc, dict) and doc.get("bomFormat") == "CycloneDX":
        items = doc.get("components")
        fmt = "CycloneDX"
    elif isinstance(doc, dict) and "spdxVersion" in doc:
        items = doc.get("packages")
        fmt = "SPDX"
    else:
        raise ExternalNodeRefused(f"{label}: manifest field `sbom`: {path.name} is neither "
                                  "CycloneDX JSON (bomFormat) nor SPDX JSON (spdxVersion)")
    if not isinstance(items, list) or not items:
        raise ExternalNodeRefused(f"{label}: manifest field `sbom`: {path.name} lists no "
                                  "components; generate it from the package's dependencies")
    return fmt, len(items)


def _statement(envelope_path: Path, keys: dict[str, Ed25519PublicKey], label: str
               ) -> tuple[dict[str, Any], str]:
    where = f"{label}: manifest field `attestation`"
    try:
        env = json.loads(envelope_path.read_text())
        payload = base64.b64decode(env["payload"], validate=True)
        sigs = [(str(s.get("keyid", "")), base64.b64decode(s["sig"], validate=True))
                for s in env["signatures"]]
        ptype = str(env["payloadType"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ExternalNodeRefused(f"{where}: {envelope_path.name} is not a DSSE envelope "
                                  f"({type(exc).__name__}: {exc})") from None
    if not keys:
        raise ExternalNodeRefused(f"{where}: no trusted key to verify it; list the signer's "
                                  f"Ed25519 public key (PEM) in {TRUSTED_KEYS_ENV}")
    signed = _pae(ptype, payload)
    for kid, sig in sigs:
        for trusted_id, key in keys.items():
            if kid and kid != trusted_id:
                continue
            try:
                key.verify(sig, signed)
            except InvalidSignature:
                continue
            if ptype != PAYLOAD_TYPE:
                raise ExternalNodeRefused(f"{where}: payloadType {ptype!r}; expected "
                                          f"{PAYLOAD_TYPE!r}")
            try:
                statement = json.loads(payload)
            except ValueError:
                raise ExternalNodeRefused(f"{where}: the signed payload is not JSON") from None
            return statement, trusted_id
    raise ExternalNodeRefused(f"{where}: the signature does not verify with any key in "
                              f"{TRUSTED_KEYS_ENV}; sign with a trusted key "
                              "(`rspp node attest`)")


def onboard(manifest: NodeManifest, base: Path, pinned: str | None, label: str,
            keys: dict[str, Ed25519PublicKey]) -> Onboarded:
    """Run every check in order; the first failure raises :class:`ExternalNodeRefused`."""
    artifact = manifest.path(base, manifest.artifact)
    if not artifact.is_file():
        raise ExternalNodeRefused(f"{label}: manifest field `artifact`: {manifest.artifact} "
                                  "not found in the package")
    digest = sha256_file(artifact)
    if pinned is None:
        raise ExternalNodeRefused(f"{label}: not pinned; append @sha256:{digest} (the "
                                  "artifact's digest) to the type so only that build runs")
    if pinned != digest:
        raise ExternalNodeRefused(f"{label}: artifact {manifest.artifact} has sha256 {digest}, "
                                  f"the spec pins {pinned}; re-pin after reviewing the change")
    if not manifest.sbom:
        raise ExternalNodeRefused(f"{label}: manifest field `sbom` is missing; onboarding "
                                  "requires an SBOM (CycloneDX or SPDX JSON)")
    sbom_path = manifest.path(base, manifest.sbom)
    if not sbom_path.is_file():
        raise ExternalNodeRefused(f"{label}: manifest field `sbom`: {manifest.sbom} not found")
    fmt, n = _sbom(sbom_path, label)
    if not manifest.attestation:
        raise ExternalNodeRefused(f"{label}: manifest field `attestation` is missing; "
                                  "onboarding requires a signed attestation "
                                  "(`rspp node attest`)")
    att_path = manifest.path(base, manifest.attestation)
    if not att_path.is_file():
        raise ExternalNodeRefused(f"{label}: manifest field `attestation`: "
                                  f"{manifest.attestation} not found")
    statement, kid = _statement(att_path, keys, label)
    where = f"{label}: manifest field `attestation`"
    subjects = statement.get("subject") or []
    if not any(isinstance(s, dict) and (s.get("digest") or {}).get("sha256") == digest
               for s in subjects):
        raise ExternalNodeRefused(f"{where}: no subject has the artifact's sha256 {digest}; "
                                  "re-attest this build")
    sbom_digest = sha256_file(sbom_path)
    pred = statement.get("predicate") or {}
    if statement.get("predicateType") != PREDICATE_TYPE or \
            ((pred.get("sbom") or {}).get("digest") or {}).get("sha256") != sbom_digest:
        raise ExternalNodeRefused(f"{where}: the predicate does not bind the SBOM "
                                  f"{manifest.sbom} (sha256 {sbom_digest}); re-attest")
    return Onboarded(digest=digest, sbom_digest=sbom_digest, sbom_format=fmt, components=n,
                     key_id=kid)


def attest(manifest: NodeManifest, base: Path, private_key: Ed25519PrivateKey
           ) -> dict[str, Any]:
    """A DSSE envelope attesting the package's artifact and SBOM (signed by ``private_key``)."""
    if not manifest.sbom:
        raise ExternalNodeRefused("manifest field `sbom` is missing; add the SBOM first")
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": manifest.artifact,
                     "digest": {"sha256": sha256_file(manifest.path(base, manifest.artifact))}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {"node": manifest.name, "version": manifest.version,
                      "sbom": {"name": manifest.sbom,
                               "digest": {"sha256": sha256_file(
                                   manifest.path(base, manifest.sbom))}}},
    }
    payload = json.dumps(statement, sort_keys=True).encode()
    sig = private_key.sign(_pae(PAYLOAD_TYPE, payload))
    return {"payloadType": PAYLOAD_TYPE, "payload": base64.b64encode(payload).decode(),
            "signatures": [{"keyid": key_id(private_key.public_key()),
                            "sig": base64.b64encode(sig).decode()}]}
