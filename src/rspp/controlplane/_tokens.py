"""Short-lived signed session tokens (F-099, F-119, F-088).

A token binds session, tenant, runtime, pipeline version and lease epoch and
expires after a short TTL. HS256 (shared secret) or EdDSA (Ed25519 key pair)
is configurable; :class:`TokenVerifier` is the helper runtimes and transports
use (they only need the secret or the public key). A key has a ``kid`` (carried in
the token's header); :class:`KeySetVerifier` verifies against several keys by it,
so a rotated key keeps verifying the tokens it signed (F-169,
:mod:`rspp.controlplane._signing_keys`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

import jwt
import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from rspp.controlplane._errors import InvalidRequest, TokenInvalid, TokenKeyUnknown
from rspp.controlplane._util import Clock, wall_ms

Algorithm = Literal["HS256", "EdDSA"]
ISSUER = "rspp-control-plane"
MAX_TTL_S = 3600
CLOCK_SKEW_S = 30


class SessionClaims(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    tenant_id: str
    runtime_id: str
    pipeline_name: str
    pipeline_version: str
    lease_epoch: int
    issued_at_s: int
    expires_at_s: int


class TokenKeys(msgspec.Struct, frozen=True, kw_only=True):
    """Signing material: an HS256 secret, or an Ed25519 key pair in PEM."""

    algorithm: Algorithm
    secret: str | None = None
    private_pem: str | None = None
    public_pem: str | None = None
    #: the key id tokens name in their header (default: derived from the public material)
    kid: str | None = None

    @property
    def key_id(self) -> str:
        """``kid``, or a digest of the public key (HS256: of the secret, never the secret)."""
        if self.kid:
            return self.kid
        material = self.public_pem if self.algorithm == "EdDSA" else f"hs256:{self.secret}"
        return hashlib.sha256((material or "").encode()).hexdigest()[:16]

    @classmethod
    def hs256(cls, secret: str) -> TokenKeys:
        if len(secret) < 32:
            raise InvalidRequest(
                "HS256 secret must be at least 32 characters", field="token_secret"
            )
        return cls(algorithm="HS256", secret=secret)

    @classmethod
    def generate_ed25519(cls) -> TokenKeys:
        private = Ed25519PrivateKey.generate()
        private_pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return cls(algorithm="EdDSA", private_pem=private_pem, public_pem=_public_pem(private))

    @classmethod
    def ed25519_pem(cls, private_pem: str, *, source: str, field: str) -> TokenKeys:
        """The EdDSA keys of an Ed25519 private key in PEM; InvalidRequest naming ``field``
        (and ``source``, where the PEM came from) when it is not one."""
        try:
            private = serialization.load_pem_private_key(private_pem.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise InvalidRequest(f"{source} does not hold a PEM private key: {exc}",
                                 field=field) from None
        if not isinstance(private, Ed25519PrivateKey):
            raise InvalidRequest(f"{source} is not an Ed25519 key (session tokens are signed "
                                 "with EdDSA)", field=field)
        return cls(algorithm="EdDSA", private_pem=private_pem, public_pem=_public_pem(private))

    @classmethod
    def ed25519_file(cls, path: Path, *, field: str = "token_key_file") -> TokenKeys:
        """The Ed25519 key in ``path`` (PEM), generated there (mode 0600) when missing."""
        if not path.exists():
            generated = cls.generate_ed25519()
            path.write_text(generated.private_pem or "")
            path.chmod(0o600)
            return generated
        try:
            pem = path.read_text()
        except OSError as exc:
            raise InvalidRequest(f"cannot read {path} ({exc.strerror})", field=field) from None
        return cls.ed25519_pem(pem, source=str(path), field=field)

    def verification_keys(self) -> TokenKeys:
        """What a runtime or transport needs (no private key)."""
        if self.algorithm == "HS256":
            return self
        return TokenKeys(algorithm="EdDSA", public_pem=self.public_pem, kid=self.key_id)

    def _signing_key(self) -> str | Ed25519PrivateKey:
        if self.algorithm == "HS256" and self.secret:
            return self.secret
        if self.private_pem:
            key = serialization.load_pem_private_key(self.private_pem.encode(), password=None)
            if isinstance(key, Ed25519PrivateKey):
                return key
        raise InvalidRequest("token keys cannot sign: no secret/private key", field="token_keys")

    def _verify_key(self) -> str | Ed25519PublicKey:
        if self.algorithm == "HS256" and self.secret:
            return self.secret
        if self.public_pem:
            key = serialization.load_pem_public_key(self.public_pem.encode())
            if isinstance(key, Ed25519PublicKey):
                return key
        raise InvalidRequest("token keys cannot verify: no secret/public key", field="token_keys")


def _public_pem(private: Ed25519PrivateKey) -> str:
    return private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


class TokenIssuer:
    def __init__(self, keys: TokenKeys, clock: Clock = wall_ms) -> None:
        self._keys = keys
        self._clock = clock

    def issue(
        self,
        *,
        session_id: str,
        tenant_id: str,
        runtime_id: str,
        pipeline_name: str,
        pipeline_version: str,
        lease_epoch: int,
        ttl_s: int,
    ) -> tuple[str, SessionClaims]:
        if not 1 <= ttl_s <= MAX_TTL_S:
            raise InvalidRequest(f"ttl must be 1..{MAX_TTL_S} seconds, got {ttl_s}", field="ttl")
        now_s = self._clock() // 1000
        claims = SessionClaims(
            session_id=session_id,
            tenant_id=tenant_id,
            runtime_id=runtime_id,
            pipeline_name=pipeline_name,
            pipeline_version=pipeline_version,
            lease_epoch=lease_epoch,
            issued_at_s=now_s,
            expires_at_s=now_s + ttl_s,
        )
        payload = {
            "iss": ISSUER,
            "sub": session_id,
            "tid": tenant_id,
            "rid": runtime_id,
            "pn": pipeline_name,
            "pv": pipeline_version,
            "epoch": lease_epoch,
            "iat": now_s,
            "exp": now_s + ttl_s,
        }
        token = jwt.encode(payload, self._keys._signing_key(), algorithm=self._keys.algorithm,
                           headers={"kid": self._keys.key_id})
        return token, claims

    @property
    def kid(self) -> str:
        return self._keys.key_id


class TokenVerifier:
    """Verify a session token: signature, issuer, algorithm and expiry (against ``clock``)."""

    def __init__(self, keys: TokenKeys, clock: Clock = wall_ms) -> None:
        self._keys = keys
        self._clock = clock

    def verify(self, token: str) -> SessionClaims:
        try:
            payload = jwt.decode(
                token,
                self._keys._verify_key(),
                algorithms=[self._keys.algorithm],
                issuer=ISSUER,
                # Time claims are checked below against the injected clock.
                options={
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "require": ["exp", "iat", "sub", "iss"],
                },
            )
        except jwt.InvalidSignatureError:
            raise TokenInvalid(
                "token signature does not verify: it was tampered with or signed by another key",
                field="token",
            ) from None
        except jwt.PyJWTError as exc:
            raise TokenInvalid(
                f"token is malformed or not an RSPP session token: {exc}", field="token"
            ) from None
        now_s = self._clock() // 1000
        try:
            claims = SessionClaims(
                session_id=str(payload["sub"]),
                tenant_id=str(payload["tid"]),
                runtime_id=str(payload["rid"]),
                pipeline_name=str(payload["pn"]),
                pipeline_version=str(payload["pv"]),
                lease_epoch=int(payload["epoch"]),
                issued_at_s=int(payload["iat"]),
                expires_at_s=int(payload["exp"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TokenInvalid(f"token lacks session claim {exc}", field="token") from None
        if claims.issued_at_s > now_s + CLOCK_SKEW_S:
            raise TokenInvalid(
                f"token is issued in the future (iat {claims.issued_at_s}, now {now_s})",
                field="token",
            )
        if now_s >= claims.expires_at_s:
            raise TokenInvalid(
                f"token expired {now_s - claims.expires_at_s} s ago (at {claims.expires_at_s}); "
                "request a new session route",
                field="token",
            )
        return claims


def token_kid(token: str) -> str | None:
    """The ``kid`` of a token's header (None: none, or not a token)."""
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError:
        return None
    return str(kid) if kid else None


class KeySetVerifier:
    """Verify against several keys, picked by the token's ``kid`` (a token without one:
    against ``default``, the key that signed before keys had ids)."""

    def __init__(self, keys: list[TokenKeys], default: str | None = None,
                 clock: Clock = wall_ms) -> None:
        self._by_kid = {k.key_id: TokenVerifier(k, clock) for k in keys}
        self._default = default

    @property
    def kids(self) -> list[str]:
        return list(self._by_kid)

    def verify(self, token: str) -> SessionClaims:
        kid = token_kid(token) or self._default
        verifier = self._by_kid.get(kid or "")
        if verifier is None:
            raise TokenKeyUnknown(
                f"token is signed by key {kid!r}, which this verifier does not know "
                "(rotated in after its keys were fetched, or not a key of this control "
                "plane): fetch GET /v1/tokens/keys again", field="kid")
        return verifier.verify(token)
