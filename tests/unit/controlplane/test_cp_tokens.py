"""Session tokens (F-119, F-088): signed, short-lived, tamper-evident; HS256 and EdDSA."""

from __future__ import annotations

import base64
import json

import jwt
import pytest

from rspp.controlplane import InvalidRequest, TokenInvalid, TokenIssuer, TokenKeys, TokenVerifier

pytestmark = pytest.mark.unit

NOW_MS = 1_800_000_000_000


class Clock:
    def __init__(self) -> None:
        self.now = NOW_MS

    def __call__(self) -> int:
        return self.now


def _keys(algorithm: str) -> TokenKeys:
    if algorithm == "HS256":
        return TokenKeys.hs256("s" * 40)
    return TokenKeys.generate_ed25519()


def _issue(issuer: TokenIssuer, ttl_s: int = 60) -> str:
    token, _ = issuer.issue(
        session_id="sess-1",
        tenant_id="acme",
        runtime_id="rt-a",
        pipeline_name="voice-assistant",
        pipeline_version="1.0.0",
        lease_epoch=3,
        ttl_s=ttl_s,
    )
    return token


def _tamper(token: str, **changes: object) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


@pytest.mark.parametrize("algorithm", ["HS256", "EdDSA"])
def test_valid_token_binds_session_tenant_runtime_epoch(algorithm: str) -> None:
    clock = Clock()
    keys = _keys(algorithm)
    token = _issue(TokenIssuer(keys, clock))
    claims = TokenVerifier(keys.verification_keys(), clock).verify(token)
    assert (claims.session_id, claims.tenant_id, claims.runtime_id) == ("sess-1", "acme", "rt-a")
    assert (claims.pipeline_version, claims.lease_epoch) == ("1.0.0", 3)
    assert claims.expires_at_s - claims.issued_at_s == 60
    if algorithm == "EdDSA":
        assert keys.verification_keys().private_pem is None


@pytest.mark.parametrize("algorithm", ["HS256", "EdDSA"])
@pytest.mark.parametrize("claim", [{"tid": "evil"}, {"pv": "9.9.9"}, {"epoch": 99}])
def test_tampered_claims_are_rejected(algorithm: str, claim: dict[str, object]) -> None:
    clock = Clock()
    keys = _keys(algorithm)
    forged = _tamper(_issue(TokenIssuer(keys, clock)), **claim)
    with pytest.raises(TokenInvalid) as err:
        TokenVerifier(keys, clock).verify(forged)
    assert "tampered" in err.value.message and err.value.field == "token"


@pytest.mark.parametrize("algorithm", ["HS256", "EdDSA"])
def test_expired_token_is_rejected_after_ttl(algorithm: str) -> None:
    clock = Clock()
    keys = _keys(algorithm)
    token = _issue(TokenIssuer(keys, clock), ttl_s=30)
    verifier = TokenVerifier(keys, clock)
    clock.now += 29_000
    assert verifier.verify(token).session_id == "sess-1"
    clock.now += 1_000
    with pytest.raises(TokenInvalid) as err:
        verifier.verify(token)
    assert "expired" in err.value.message


def test_foreign_key_garbage_and_bad_ttl_are_rejected() -> None:
    clock = Clock()
    token = _issue(TokenIssuer(TokenKeys.generate_ed25519(), clock))
    with pytest.raises(TokenInvalid):
        TokenVerifier(TokenKeys.generate_ed25519(), clock).verify(token)
    with pytest.raises(TokenInvalid):
        TokenVerifier(TokenKeys.hs256("x" * 40), clock).verify("not-a-token")
    unsigned = jwt.encode({"sub": "s"}, key=None, algorithm="none")
    with pytest.raises(TokenInvalid):
        TokenVerifier(TokenKeys.hs256("x" * 40), clock).verify(unsigned)
    with pytest.raises(InvalidRequest) as bad:
        TokenIssuer(TokenKeys.hs256("x" * 40), clock).issue(
            session_id="s",
            tenant_id="t",
            runtime_id="r",
            pipeline_name="p",
            pipeline_version="1",
            lease_epoch=1,
            ttl_s=0,
        )
    assert bad.value.field == "ttl"
    with pytest.raises(InvalidRequest):
        TokenKeys.hs256("short")
