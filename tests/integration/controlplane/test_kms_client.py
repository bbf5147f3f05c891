"""The Vault Transit client against the fake Vault over real HTTP (F-169).

Versions and rotation, data keys that unwrap, rewrap, Ed25519 signatures whose public
keys are published per version, and every failure one line naming the reference and
never the token: a wrong token (403), a missing key, a retired version, an oversized
answer, an unreachable Vault (``unavailable``).
"""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from rspp.controlplane._kms import KmsError, VaultSettings, VaultTransit, parse_kms_ref
from rspp.testing import FakeVault
from rspp.testing.fakes import serve_asgi

pytestmark = pytest.mark.integration

TOKEN = "s.fake-vault-token-0123"


async def test_versions_data_keys_rewrap_and_signatures() -> None:
    vault = FakeVault(TOKEN)
    vault.create("state")
    vault.create("events", "ed25519")
    async with serve_asgi(vault.app) as addr:
        settings = VaultSettings(addr=addr, token=TOKEN)
        state = VaultTransit(settings, "vault-transit:state")
        events = VaultTransit(settings, "vault-transit:events")
        plain, wrapped, version = await state.data_key()
        assert len(plain) == 32 and wrapped.startswith("vault:v1:") and version == 1
        assert (await state.rotate()).latest_version == 2
        assert await state.decrypt(wrapped) == plain  # the old version still decrypts
        rewrapped = await state.rewrap(wrapped)
        assert rewrapped.startswith("vault:v2:") and await state.decrypt(rewrapped) == plain
        signature = await events.sign(b"timeline digest")
        assert signature.startswith("vault:v1:")
        await events.rotate()
        info = await events.info()
        assert info.latest_version == 2 and sorted(info.public_keys) == [1, 2]
        raw = base64.b64decode(signature.split(":", 2)[2])
        Ed25519PublicKey.from_public_bytes(base64.b64decode(info.public_keys[1])).verify(
            raw, b"timeline digest")  # raises when it does not verify
        await state.aclose()
        await events.aclose()


async def test_failures_name_the_reference_never_the_token() -> None:
    vault = FakeVault(TOKEN)
    vault.create("state")
    async with serve_asgi(vault.app) as addr:
        wrong = VaultTransit(VaultSettings(addr=addr, token="not-the-token"),
                             "vault-transit:state")
        with pytest.raises(KmsError, match=r"^KMS key vault-transit:state: Vault answered "
                                           r"403 to datakey: permission denied$") as denied:
            await wrong.data_key()
        assert denied.value.unavailable is False and "not-the-token" not in str(denied.value)
        missing = VaultTransit(VaultSettings(addr=addr, token=TOKEN), "vault-transit:nope")
        with pytest.raises(KmsError, match="encryption key not found"):
            await missing.data_key()
        state = VaultTransit(VaultSettings(addr=addr, token=TOKEN), "vault-transit:state")
        _, old, _ = await state.data_key()
        await state.rotate()
        vault.keys["state"]["min_decryption_version"] = 2
        with pytest.raises(KmsError, match=r"disallowed by policy \(too old\)"):
            await state.decrypt(old)
        with pytest.raises(KmsError, match="invalid key version"):
            await state.decrypt(old.replace("vault:v1:", "vault:v9:"))
        for client in (wrong, missing, state):
            await client.aclose()
    gone = VaultTransit(VaultSettings(addr=addr, token=TOKEN, timeout_s=2),
                        "vault-transit:state")
    with pytest.raises(KmsError, match=r"Vault at http://127\.0\.0\.1:\d+ is unreachable") \
            as down:
        await gone.data_key()
    assert down.value.unavailable is True
    await gone.aclose()


async def test_an_oversized_answer_is_refused() -> None:
    async def huge(_request: object) -> Response:
        return Response(b"{" + b" " * 2_000_000 + b"}", media_type="application/json")

    app = Starlette(routes=[Route("/v1/transit/keys/big", huge)])
    async with serve_asgi(app) as addr:
        big = VaultTransit(VaultSettings(addr=addr, token=TOKEN), "vault-transit:big")
        with pytest.raises(KmsError, match="larger than 1048576 bytes"):
            await big.info()
        await big.aclose()


@pytest.mark.parametrize("ref", ["vault:state", "vault-transit:", "vault-transit:a/b",
                                 "file:/tmp/k", "vault-transit:-x"])
def test_malformed_references_name_the_field(ref: str) -> None:
    with pytest.raises(ValueError, match=r"^--state-key: .* is not a KMS reference: use "
                                         r"vault-transit:NAME"):
        parse_kms_ref(ref, field="--state-key")
