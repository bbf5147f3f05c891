"""NF-037: framework-critical changes traceable to signed identities and approval records.

With ``require_signed_changes`` an API key registers an Ed25519 public key; the submitter
signs the change's canonical request hash and the reviewer signs change id, verdict and
request hash. The control plane verifies and stores each signature with its signer key's
fingerprint, refuses unsigned or badly signed steps with 403 naming ``signature``, and
GET /v1/change-provenance re-verifies every change's trail (a tampered stored request is
reported). Through the ASGI app of a control plane on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import update

from rspp.controlplane._change_signing import request_hash_of, review_message, submit_message
from rspp.controlplane._requests import ChangeSubmitRequest
from rspp.controlplane._schema import changes

from .conftest import ADMIN_HEADERS as ADMIN
from .conftest import ChangeApi

pytestmark = pytest.mark.integration

NAME = "voice-assistant"
ROLLOUT = {"action": "rollout", "pipeline_name": NAME, "reason": "new prompt",
           "rollout": {"canary": "1.1.0", "percent": 25}}


class Signer:
    """An operator API key with its local Ed25519 private key."""

    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers
        self.private = Ed25519PrivateKey.generate()

    @property
    def public_pem(self) -> str:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def sign(self, message: bytes) -> str:
        return base64.b64encode(self.private.sign(message)).decode()


async def signer(api: ChangeApi) -> Signer:
    """A new operator key with its own Ed25519 key."""
    return Signer(await api.key("operator"))


async def register(api: ChangeApi, who: Signer) -> dict[str, Any]:
    out: dict[str, Any] = await api.call("POST", "/v1/signer-keys", who.headers,
                                         {"public_key": who.public_pem}, want=201)
    return out


async def submit(api: ChangeApi, who: Signer, body: dict[str, Any]) -> dict[str, Any]:
    """Submit signed over the canonical request hash (the control plane's function)."""
    request = msgspec.convert(body, ChangeSubmitRequest)
    signed = {**body, "signature": who.sign(submit_message(request_hash_of(request)[1]))}
    out: dict[str, Any] = await api.call("POST", "/v1/changes", who.headers, signed, want=201)
    return out


@pytest.fixture
async def api(change_api: Callable[..., AbstractAsyncContextManager[ChangeApi]],
              ) -> AsyncIterator[ChangeApi]:
    async with change_api(require_signed_changes=True) as opened:
        yield opened


async def test_a_signed_rollout_applies_and_its_provenance_verifies(api: ChangeApi) -> None:
    author, reviewer = await signer(api), await signer(api)
    # unsigned: refused naming the field, before and after a key is registered
    unsigned = await api.call("POST", "/v1/changes", author.headers, ROLLOUT, want=403)
    assert (unsigned["error"]["field"], unsigned["error"]["code"]) == (
        "signature", "signature_required")
    no_key = await api.call("POST", "/v1/changes", author.headers,
                            {**ROLLOUT, "signature": author.sign(b"x")}, want=403)
    assert (no_key["error"]["field"], no_key["error"]["code"]) == ("signature", "no_signing_key")
    registered = await register(api, author)
    again = await api.call("POST", "/v1/signer-keys", author.headers,
                           {"public_key": author.public_pem})  # idempotent: 200
    assert again["fingerprint"] == registered["fingerprint"]
    await register(api, reviewer)
    forged = await api.call("POST", "/v1/changes", author.headers,
                            {**ROLLOUT, "signature": reviewer.sign(b"x")}, want=403)
    assert (forged["error"]["field"], forged["error"]["code"]) == ("signature", "bad_signature")
    # the direct mutation is refused: only a signed, approved change applies
    direct = await api.call("POST", f"/v1/pipelines/{NAME}/rollout", author.headers,
                            {"canary": "1.1.0", "percent": 25}, want=403)
    assert direct["error"]["code"] == "approval_required"

    change = await submit(api, author, ROLLOUT)
    cid = change["change_id"]
    assert change["submit_signer"] == registered["fingerprint"]
    refused = await api.call("POST", f"/v1/changes/{cid}/approve", reviewer.headers,
                             {"note": "ok"}, want=403)
    assert refused["error"]["field"] == "signature"
    # a signature over another verdict does not approve
    wrong = reviewer.sign(review_message(cid, "reject", change["request_hash"]))
    bad = await api.call("POST", f"/v1/changes/{cid}/approve", reviewer.headers,
                         {"note": "ok", "signature": wrong}, want=403)
    assert bad["error"]["code"] == "bad_signature"
    approved = await api.call("POST", f"/v1/changes/{cid}/approve", reviewer.headers, {
        "note": "gates fine",
        "signature": reviewer.sign(review_message(cid, "approve", change["request_hash"]))})
    assert approved["review_signer"] is not None
    assert approved["review_signer"] != approved["submit_signer"]
    applied = await api.call("POST", f"/v1/changes/{cid}/apply", author.headers)
    assert applied["status"] == "applied"
    rollout = (await api.call("GET", f"/v1/pipelines/{NAME}/rollout", author.headers))["rollout"]
    assert rollout["canary_version"] == "1.1.0"

    report = await api.call("GET", "/v1/change-provenance", author.headers,
                            params={"target": f"pipeline:{NAME}"})
    assert report["ok"] is True
    [entry] = report["changes"]
    assert (entry["change_id"], entry["status"], entry["signed"]) == (cid, "applied", True)
    assert entry["submit_signer"] == registered["fingerprint"]
    assert entry["submit_signature_ok"] and entry["review_signature_ok"]
    [audited] = [e for e in (await api.call("GET", "/v1/audit", ADMIN))["entries"]
                 if e["action"] == "change.applied"]
    assert audited["detail"]["submit_signer"] == registered["fingerprint"]
    assert audited["detail"]["review_signer"] == approved["review_signer"]

    # a stored request changed behind the control plane's back no longer verifies
    async with api.cp.store.engine.begin() as conn:
        await conn.execute(update(changes).where(changes.c.change_id == cid).values(
            request_json=changes.c.request_json + " "))
    tampered = await api.call("GET", "/v1/change-provenance", ADMIN)
    assert tampered["ok"] is False
    assert tampered["changes"][0]["problems"] == [
        "request_hash does not match the stored request"]


async def test_an_unsigned_change_from_before_the_policy_does_not_apply(
    change_api: Callable[..., AbstractAsyncContextManager[ChangeApi]],
) -> None:
    async with change_api(require_approval=True) as api:
        author, reviewer = await signer(api), await signer(api)
        change = await api.call("POST", "/v1/changes", author.headers, ROLLOUT, want=201)
        await api.call("POST", f"/v1/changes/{change['change_id']}/approve",
                       reviewer.headers, {"note": "ok"})
        report = await api.call("GET", "/v1/change-provenance", author.headers)
        assert report["ok"] is False
        assert report["changes"][0]["problems"] == ["submit: unsigned", "review: unsigned"]
    async with change_api(require_signed_changes=True, publish=False) as strict:
        refused = await strict.call("POST", f"/v1/changes/{change['change_id']}/apply",
                                    author.headers, want=403)
        assert (refused["error"]["field"], refused["error"]["code"]) == (
            "signature", "signature_required")
