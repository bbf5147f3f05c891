"""A local fake of HashiCorp Vault's Transit secrets engine, over real HTTP (F-169).

It speaks the subset of the Transit API RSPP uses, with Vault's shapes: ``X-Vault-Token``
(anything else is ``403 {"errors": ["permission denied"]}``), answers under ``data``,
``vault:vN:`` ciphertexts and signatures, key versions with ``latest_version`` and
``min_decryption_version``. The crypto is real: ``aes256-gcm96`` keys encrypt with
AES-256-GCM (96-bit nonce prefixed), ``ed25519`` keys sign with Ed25519 and publish each
version's public key. Routes (mount ``transit``)::

    POST /v1/transit/keys/:name            create (type)
    GET  /v1/transit/keys/:name            read (versions, public keys)
    POST /v1/transit/keys/:name/rotate     new version
    POST /v1/transit/keys/:name/config     min_decryption_version
    POST /v1/transit/encrypt|decrypt|rewrap/:name
    POST /v1/transit/datakey/plaintext|wrapped/:name
    POST /v1/transit/sign|verify/:name

``python -m rspp.testing._vault --token T [--port P] [--state FILE] [--key NAME:TYPE]``
serves it as its own process (keys persist in ``--state`` across restarts) and prints
``VAULT_ADDR=http://127.0.0.1:PORT`` once it listens. Not part of the product.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import re
import threading
from pathlib import Path
from typing import Any

import uvicorn
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["FakeVault"]

_MAX_BODY = 1_048_576
#: the operations under ``/v1/transit/{op}/:name``
_DATA_OPS = ("encrypt", "decrypt", "rewrap", "sign", "verify")
_CT = re.compile(r"^vault:v([0-9]+):(.+)$")


class _Refused(Exception):
    def __init__(self, status: int, *errors: str) -> None:
        super().__init__(errors)
        self.status = status
        self.errors = list(errors)


def _b64d(value: Any, field: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raise _Refused(400, f"failed to base64-decode {field}") from None


class FakeVault:
    """The keys and the ASGI app (``app``); thread safe, optionally persisted."""

    def __init__(self, token: str, *, state: Path | None = None) -> None:
        self.token = token
        self._state = state
        self._lock = threading.Lock()
        #: name -> {"type", "min_decryption_version", "versions": {n: material b64}}
        self.keys: dict[str, dict[str, Any]] = {}
        #: requests answered, by operation (``encrypt``, ``datakey``, ...)
        self.calls: dict[str, int] = {}
        if state is not None and state.exists():
            self.keys = json.loads(state.read_text())
        self.app = Starlette(routes=[
            Route("/v1/transit/keys/{name}", self._endpoint("create"),
                  methods=["GET", "POST"]),
            Route("/v1/transit/keys/{name}/rotate", self._endpoint("rotate"), methods=["POST"]),
            Route("/v1/transit/keys/{name}/config", self._endpoint("config"), methods=["POST"]),
            Route("/v1/transit/datakey/{kind}/{name}", self._endpoint("datakey"),
                  methods=["POST"]),
            Route("/v1/transit/{op:str}/{name}", self._endpoint(), methods=["POST"]),
        ])

    # ---- keys -------------------------------------------------------------------------------
    def _save(self) -> None:
        if self._state is not None:
            tmp = self._state.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.keys))
            os.replace(tmp, self._state)

    @staticmethod
    def _material(kind: str) -> str:
        if kind == "ed25519":
            raw = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                serialization.NoEncryption())
        else:
            raw = AESGCM.generate_key(bit_length=256)
        return base64.b64encode(raw).decode()

    def create(self, name: str, kind: str = "aes256-gcm96") -> None:
        """Create key ``name`` of ``kind`` unless it exists (as ``POST keys/:name``)."""
        with self._lock:
            self._create({"name": name}, {"type": kind})

    def _get(self, name: str, status: int = 400) -> dict[str, Any]:
        key = self.keys.get(name)
        if key is None:
            raise _Refused(status, "encryption key not found" if status == 400 else "")
        return key

    def _describe(self, name: str) -> dict[str, Any]:
        key = self._get(name, 404)
        versions: dict[str, Any] = {}
        for v, material in key["versions"].items():
            if key["type"] == "ed25519":
                public = Ed25519PrivateKey.from_private_bytes(
                    base64.b64decode(material)).public_key().public_bytes(
                    serialization.Encoding.Raw, serialization.PublicFormat.Raw)
                versions[v] = {"creation_time": "2026-01-01T00:00:00Z", "name": "ed25519",
                               "public_key": base64.b64encode(public).decode()}
            else:
                versions[v] = 1767225600
        return {"name": name, "type": key["type"], "latest_version": len(key["versions"]),
                "min_decryption_version": key["min_decryption_version"],
                "min_encryption_version": 0, "deletion_allowed": False,
                "supports_encryption": key["type"] != "ed25519",
                "supports_decryption": key["type"] != "ed25519",
                "supports_signing": key["type"] == "ed25519", "keys": versions}

    def _version(self, key: dict[str, Any], text: str) -> tuple[int, bytes]:
        m = _CT.match(text)
        if not m:
            raise _Refused(400, "invalid ciphertext: no prefix")
        version = int(m.group(1))
        if version > len(key["versions"]) or version < 1:
            raise _Refused(400, "invalid key version")
        if version < key["min_decryption_version"]:
            raise _Refused(400, "ciphertext or signature version is disallowed by policy "
                           "(too old)")
        return version, _b64d(m.group(2), "ciphertext")

    def _seal(self, key: dict[str, Any], plain: bytes) -> str:
        version = len(key["versions"])
        nonce = os.urandom(12)
        ct = AESGCM(base64.b64decode(key["versions"][str(version)])).encrypt(nonce, plain, None)
        return f"vault:v{version}:{base64.b64encode(nonce + ct).decode()}"

    def _open(self, key: dict[str, Any], text: str) -> bytes:
        version, blob = self._version(key, text)
        try:
            return AESGCM(base64.b64decode(key["versions"][str(version)])).decrypt(
                blob[:12], blob[12:], None)
        except InvalidTag:
            raise _Refused(400, "cipher: message authentication failed") from None

    # ---- HTTP ---------------------------------------------------------------------------------
    async def _body(self, request: Request) -> dict[str, Any]:
        if request.headers.get("x-vault-token") != self.token:
            raise _Refused(403, "permission denied")
        raw = await request.body()
        if len(raw) > _MAX_BODY:
            raise _Refused(413, "request body too large")
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise _Refused(400, "failed to parse JSON input") from None
        if not isinstance(body, dict):
            raise _Refused(400, "failed to parse JSON input")
        return body

    def _endpoint(self, op: str | None = None) -> Any:
        """The Starlette endpoint of operation ``op`` (None: the ``{op}`` path segment; a
        GET of a key is ``read``): token check, body, answer under ``data``."""

        async def endpoint(request: Request) -> Response:
            params = dict(request.path_params)
            name = op or params.pop("op", "")
            if request.method == "GET":
                name = "read"
            handler = self._ops.get(name)
            if handler is None or (op is None and name not in _DATA_OPS):
                return JSONResponse({"errors": []}, status_code=404)
            try:
                body = await self._body(request)
                with self._lock:
                    data = handler(params, body)
                    self.calls[name] = self.calls.get(name, 0) + 1
            except _Refused as exc:
                return JSONResponse({"errors": exc.errors}, status_code=exc.status)
            if data is None:
                return Response(status_code=204)
            return JSONResponse({"request_id": os.urandom(8).hex(), "lease_id": "",
                                 "renewable": False, "lease_duration": 0, "data": data,
                                 "wrap_info": None, "warnings": None, "auth": None})

        return endpoint

    @property
    def _ops(self) -> dict[str, Any]:
        return {"read": lambda p, b: self._describe(p["name"]), "create": self._create,
                "rotate": self._rotate, "config": self._config, "datakey": self._datakey,
                "encrypt": lambda p, b: self._encrypt(p["name"], b),
                "decrypt": lambda p, b: self._decrypt(p["name"], b),
                "rewrap": lambda p, b: self._rewrap(p["name"], b),
                "sign": lambda p, b: self._sign(p["name"], b),
                "verify": lambda p, b: self._verify(p["name"], b)}

    def _create(self, params: dict[str, str], body: dict[str, Any]) -> None:
        kind = str(body.get("type", "aes256-gcm96"))
        if kind not in ("aes256-gcm96", "ed25519"):
            raise _Refused(400, f"unknown key type: {kind}")
        if params["name"] not in self.keys:
            self.keys[params["name"]] = {"type": kind, "min_decryption_version": 1,
                                         "versions": {"1": self._material(kind)}}
            self._save()

    def _rotate(self, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        key = self._get(params["name"])
        key["versions"][str(len(key["versions"]) + 1)] = self._material(key["type"])
        self._save()
        return self._describe(params["name"])

    def _config(self, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        key = self._get(params["name"])
        floor = int(body.get("min_decryption_version", key["min_decryption_version"]))
        if not 1 <= floor <= len(key["versions"]):
            raise _Refused(400, "min decryption version out of range")
        key["min_decryption_version"] = floor
        self._save()
        return self._describe(params["name"])

    def _datakey(self, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        if params["kind"] not in ("plaintext", "wrapped"):
            raise _Refused(400, f"invalid type {params['kind']}")
        key = self._get(params["name"])
        bits = int(body.get("bits", 256))
        if bits not in (128, 256, 512):
            raise _Refused(400, "invalid bits value")
        plain = os.urandom(bits // 8)
        out = {"ciphertext": self._seal(key, plain), "key_version": len(key["versions"])}
        if params["kind"] == "plaintext":
            out["plaintext"] = base64.b64encode(plain).decode()
        return out

    def _encrypt(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        key = self._get(name)
        ct = self._seal(key, _b64d(body.get("plaintext", ""), "plaintext"))
        return {"ciphertext": ct, "key_version": len(key["versions"])}

    def _decrypt(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        key = self._get(name)
        plain = self._open(key, str(body.get("ciphertext", "")))
        return {"plaintext": base64.b64encode(plain).decode()}

    def _rewrap(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        key = self._get(name)
        plain = self._open(key, str(body.get("ciphertext", "")))
        return {"ciphertext": self._seal(key, plain), "key_version": len(key["versions"])}

    def _signer(self, key: dict[str, Any], version: int) -> Ed25519PrivateKey:
        if key["type"] != "ed25519":
            raise _Refused(400, f"key type {key['type']} does not support signing")
        return Ed25519PrivateKey.from_private_bytes(
            base64.b64decode(key["versions"][str(version)]))

    def _sign(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        key = self._get(name)
        version = len(key["versions"])
        sig = self._signer(key, version).sign(_b64d(body.get("input", ""), "input"))
        return {"signature": f"vault:v{version}:{base64.b64encode(sig).decode()}",
                "key_version": version}

    def _verify(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        key = self._get(name)
        version, sig = self._version(key, str(body.get("signature", "")))
        try:
            self._signer(key, version).public_key().verify(
                sig, _b64d(body.get("input", ""), "input"))
        except InvalidSignature:
            return {"valid": False}
        return {"valid": True}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A fake Vault transit engine (tests only).")
    parser.add_argument("--token", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--state", type=Path, default=None)
    parser.add_argument("--key", action="append", default=[], help="NAME:TYPE to create")
    args = parser.parse_args(argv)
    vault = FakeVault(args.token, state=args.state)
    for spec in args.key:
        name, _, kind = spec.partition(":")
        vault.create(name, kind or "aes256-gcm96")
    config = uvicorn.Config(vault.app, host="127.0.0.1", port=args.port, log_level="critical",
                            lifespan="off", access_log=False)
    server = uvicorn.Server(config)

    def announce() -> None:
        port = server.servers[0].sockets[0].getsockname()[1]
        print(f"VAULT_ADDR=http://127.0.0.1:{port}", flush=True)

    original = server.startup

    async def startup(sockets: Any = None) -> None:
        await original(sockets)
        announce()

    server.startup = startup  # type: ignore[method-assign]
    server.run()


if __name__ == "__main__":
    main()
