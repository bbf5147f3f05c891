"""KMS key references backed by HashiCorp Vault's Transit secrets engine (F-169).

A *KMS reference* names a key that never leaves the KMS: ``vault-transit:NAME`` is the
transit key ``NAME`` (keys with versions; ``vault:vN:`` ciphertexts and signatures).
The reference is what RSPP stores, prints and audits; the Vault address and token are
deployment settings (``VAULT_ADDR``, ``VAULT_TOKEN`` or ``--vault-token-file``), never
part of a reference, so no stored reference ever carries a credential.

:class:`VaultTransit` speaks the Transit HTTP API (``X-Vault-Token``; error bodies
``{"errors": [...]}``) with a timeout on every call and a bound on every answer. Every
failure is a :class:`KmsError` whose one-line message names the reference and never the
token or any key material; ``unavailable`` tells "Vault could not be reached / answered
5xx" (callers may go on with cached material) from a refusal (403, 400, 404).
"""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path
from typing import Any

import httpx
import msgspec

from rspp.errors import RSPPError

__all__ = ["KMS_SCHEME", "KmsError", "KmsKeyInfo", "VaultSettings", "VaultTransit",
           "parse_kms_ref"]

KMS_SCHEME = "vault-transit"
#: the largest Vault answer read (key listings with many versions stay far below)
MAX_ANSWER_BYTES = 1_048_576
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_VERSIONED = re.compile(r"^vault:v([1-9][0-9]{0,8}):([A-Za-z0-9+/=]+)$")


class KmsError(RSPPError):
    """A KMS call failed; ``unavailable``: Vault was unreachable or answered 5xx."""

    def __init__(self, message: str, *, ref: str, unavailable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.ref = ref
        self.unavailable = unavailable


def parse_kms_ref(ref: str, *, field: str = "key_ref") -> str:
    """The transit key name of ``vault-transit:NAME``; ValueError naming ``field``."""
    scheme, sep, name = ref.partition(":")
    if scheme != KMS_SCHEME or not sep or not _NAME.match(name):
        raise ValueError(f"{field}: {ref!r} is not a KMS reference: use "
                         f"{KMS_SCHEME}:NAME (a Vault transit key name: letters, digits, "
                         "'_', '.', '-')")
    return name


class VaultSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Where Vault is and the token to call it with (filled at the edge)."""

    addr: str
    token: str
    mount: str = "transit"
    timeout_s: float = 5.0

    def __repr__(self) -> str:  # the token never reaches a log line
        return f"VaultSettings(addr={self.addr!r}, mount={self.mount!r})"

    @classmethod
    def from_env(cls, *, addr: str | None = None, token_file: Path | None = None,
                 timeout_s: float = 5.0) -> VaultSettings:
        """``addr`` or ``VAULT_ADDR``; the token from ``token_file`` or ``VAULT_TOKEN``.
        ValueError naming the missing setting."""
        address = addr or os.environ.get("VAULT_ADDR", "")
        if not address.startswith(("http://", "https://")):
            raise ValueError("vault_addr: give the Vault address (--vault-addr or VAULT_ADDR, "
                             "http(s)://host:port) to use vault-transit: references")
        if token_file is not None:
            try:
                token = token_file.read_text().strip()
            except OSError as exc:
                raise ValueError(f"vault_token_file: cannot read {token_file} "
                                 f"({exc.strerror})") from None
        else:
            token = os.environ.get("VAULT_TOKEN", "").strip()
        if not token:
            raise ValueError("vault_token: give a Vault token (--vault-token-file or "
                             "VAULT_TOKEN) to use vault-transit: references")
        return cls(addr=address.rstrip("/"), token=token, timeout_s=timeout_s)


class KmsKeyInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A transit key as ``GET /v1/transit/keys/:name`` describes it (no material)."""

    ref: str
    type: str
    latest_version: int
    min_decryption_version: int
    #: Ed25519 keys: the base64 public key of each version still usable
    public_keys: dict[int, str] = {}


def key_version_of(text: str) -> int | None:
    """N of a ``vault:vN:...`` ciphertext or signature; None when it is not one."""
    m = _VERSIONED.match(text)
    return int(m.group(1)) if m else None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class VaultTransit:
    """One transit key reference over a shared :class:`httpx.AsyncClient`."""

    def __init__(self, settings: VaultSettings, ref: str,
                 client: httpx.AsyncClient | None = None) -> None:
        self.ref = ref
        self.name = parse_kms_ref(ref)
        self._settings = settings
        self._client = client or httpx.AsyncClient(timeout=settings.timeout_s)
        self._owns = client is None

    async def aclose(self) -> None:
        if self._owns:
            await self._client.aclose()

    def _fail(self, what: str, *, unavailable: bool = False) -> KmsError:
        return KmsError(f"KMS key {self.ref}: {what}", ref=self.ref, unavailable=unavailable)

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None
                    ) -> dict[str, Any]:
        url = f"{self._settings.addr}/v1/{self._settings.mount}/{path}"
        headers = {"X-Vault-Token": self._settings.token}
        try:
            async with self._client.stream(method, url, json=body, headers=headers,
                                           timeout=self._settings.timeout_s) as resp:
                raw = bytearray()
                async for chunk in resp.aiter_bytes():
                    raw += chunk
                    if len(raw) > MAX_ANSWER_BYTES:
                        raise self._fail(f"Vault's answer to {path.split('/')[0]} is larger "
                                         f"than {MAX_ANSWER_BYTES} bytes")
                status = resp.status_code
        except httpx.HTTPError as exc:
            raise self._fail(f"Vault at {self._settings.addr} is unreachable "
                             f"({type(exc).__name__})", unavailable=True) from None
        try:
            doc = msgspec.json.decode(bytes(raw)) if raw else {}
        except msgspec.DecodeError:
            doc = None
        if status >= 400 or not isinstance(doc, dict):
            errors = doc.get("errors") if isinstance(doc, dict) else None
            why = "; ".join(str(e)[:200] for e in errors[:3]) if isinstance(errors, list) \
                else "no error detail"
            raise self._fail(f"Vault answered {status} to {path.split('/')[0]}: {why}",
                             unavailable=status >= 500)
        data = doc.get("data", {})
        return data if isinstance(data, dict) else {}

    def _field(self, data: dict[str, Any], name: str) -> Any:
        if name not in data:
            raise self._fail(f"Vault's answer has no {name!r}")
        return data[name]

    # ---- the transit operations RSPP uses ------------------------------------------------
    async def info(self) -> KmsKeyInfo:
        data = await self._call("GET", f"keys/{self.name}")
        versions = self._field(data, "keys")
        public: dict[int, str] = {}
        if isinstance(versions, dict):
            for v, entry in versions.items():
                if isinstance(entry, dict) and isinstance(entry.get("public_key"), str):
                    public[int(v)] = entry["public_key"]
        return KmsKeyInfo(ref=self.ref, type=str(data.get("type", "")),
                          latest_version=int(self._field(data, "latest_version")),
                          min_decryption_version=int(data.get("min_decryption_version", 1)),
                          public_keys=public)

    async def rotate(self) -> KmsKeyInfo:
        await self._call("POST", f"keys/{self.name}/rotate")
        return await self.info()

    async def data_key(self, context: bytes = b"") -> tuple[bytes, str, int]:
        """A fresh 256-bit data key: (plaintext, its ``vault:vN:`` wrapping, N)."""
        body: dict[str, Any] = {"bits": 256}
        if context:
            body["context"] = _b64(context)
        data = await self._call("POST", f"datakey/plaintext/{self.name}", body)
        wrapped = str(self._field(data, "ciphertext"))
        version = key_version_of(wrapped)
        if version is None:
            raise self._fail("Vault's data key is not a vault:vN: ciphertext")
        try:
            plain = base64.b64decode(str(self._field(data, "plaintext")), validate=True)
        except ValueError:
            raise self._fail("Vault's data key is not base64") from None
        return plain, wrapped, version

    async def decrypt(self, ciphertext: str, context: bytes = b"") -> bytes:
        body: dict[str, Any] = {"ciphertext": ciphertext}
        if context:
            body["context"] = _b64(context)
        data = await self._call("POST", f"decrypt/{self.name}", body)
        try:
            return base64.b64decode(str(self._field(data, "plaintext")), validate=True)
        except ValueError:
            raise self._fail("Vault's plaintext is not base64") from None

    async def rewrap(self, ciphertext: str, context: bytes = b"") -> str:
        body: dict[str, Any] = {"ciphertext": ciphertext}
        if context:
            body["context"] = _b64(context)
        data = await self._call("POST", f"rewrap/{self.name}", body)
        return str(self._field(data, "ciphertext"))

    async def sign(self, message: bytes) -> str:
        """The ``vault:vN:`` signature of ``message`` by the latest key version."""
        data = await self._call("POST", f"sign/{self.name}", {"input": _b64(message)})
        return str(self._field(data, "signature"))
