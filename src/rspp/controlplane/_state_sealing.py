"""Session-state checkpoints encrypted at rest under a KMS key (F-169).

A session's checkpoint (``cp_session_state.doc_json``: its conversation history and
session-durable state) is the most sensitive thing the control plane keeps. With
``rspp cp serve --state-key vault-transit:NAME`` every stored checkpoint is sealed by
envelope encryption: a 256-bit data key from Vault (``datakey/plaintext``) encrypts the
document with AES-256-GCM (the session id is the associated data, so a sealed document
moved to another session's row does not open); the row keeps the data key only in its
``vault:vN:`` wrapping. Stored form: ``sealed:`` + JSON ``{ref, wrapped, nonce, ct}``.

- **Rotation** (``POST /v1/kms/keys/rotate``, ``rspp cp kms rotate``) rotates the
  transit key in Vault and takes a data key of the new version at once: new writes use
  it; rows sealed under older versions still open (Vault decrypts every version at or
  above ``min_decryption_version``). ``POST /v1/kms/keys/rewrap`` (``rspp cp kms
  rewrap``) rewraps every stored data key to the latest version (Vault ``rewrap``: the
  data keys never leave Vault in the clear on the way) and seals plain rows left from
  before encryption was turned on.
- **Vault down**: the data key in use and every data key this process unwrapped stay in
  memory, so checkpoints keep being written and read; a row whose data key this process
  never unwrapped cannot be read until Vault answers (``503`` naming the reference). A
  data key is replaced after ``dek_max_age_ms`` (and after a rotation); when Vault cannot
  be reached then, the current one stays in use and a warning names the reference.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
from collections import OrderedDict
from typing import Any

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from rspp.controlplane._errors import Conflict, Unavailable
from rspp.controlplane._kms import KmsError, KmsKeyInfo, VaultTransit, key_version_of
from rspp.controlplane._util import Clock, wall_ms

__all__ = ["SEALED_PREFIX", "SealerStatus", "StateSealer"]

SEALED_PREFIX = "sealed:"
#: unwrapped data keys kept in memory (each opens every row sealed with it)
_CACHE = 4096
_LOG = logging.getLogger("rspp.controlplane.kms")


class _Sealed(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    ref: str
    wrapped: str
    nonce: str
    ct: str


class SealerStatus(msgspec.Struct, frozen=True, kw_only=True):
    """What ``GET /v1/kms/keys`` reports for one KMS key (never material)."""

    purpose: str
    key_ref: str
    #: the KMS key version new data is sealed (a data key's wrapping) or signed under
    sealing_version: int
    data_key_age_s: float
    #: None when Vault could not be reached for this report
    latest_version: int | None
    min_decryption_version: int | None
    vault_reachable: bool
    cached_data_keys: int
    error: str | None = None


class StateSealer:
    """Seals and opens checkpoint documents (see the module docstring)."""

    purpose = "session_state"

    def __init__(self, transit: VaultTransit, *, dek_max_age_ms: int = 3_600_000,
                 clock: Clock = wall_ms) -> None:
        self.transit = transit
        self.ref = transit.ref
        self._max_age_ms = dek_max_age_ms
        self._clock = clock
        self._lock = asyncio.Lock()
        self._dek: tuple[bytes, str, int] | None = None
        self._dek_at_ms = 0
        self._opened: OrderedDict[str, bytes] = OrderedDict()
        self._warned_at = 0

    @property
    def sealing_version(self) -> int:
        """The KMS key version new documents are sealed under (0 before :meth:`start`)."""
        return self._dek[2] if self._dek else 0

    # ---- data keys ------------------------------------------------------------------------
    def _remember(self, wrapped: str, key: bytes) -> None:
        self._opened[wrapped] = key
        self._opened.move_to_end(wrapped)
        while len(self._opened) > _CACHE:
            self._opened.popitem(last=False)

    async def _new_dek(self) -> tuple[bytes, str, int]:
        plain, wrapped, version = await self.transit.data_key()
        if len(plain) != 32:
            raise KmsError(f"KMS key {self.ref}: Vault's data key is {len(plain)} bytes, "
                           "not 32", ref=self.ref)
        self._dek, self._dek_at_ms = (plain, wrapped, version), self._clock()
        self._remember(wrapped, plain)
        return self._dek

    async def start(self) -> None:
        """Take the first data key: a control plane that cannot seal does not start."""
        async with self._lock:
            await self._new_dek()

    async def _current(self) -> tuple[bytes, str, int]:
        async with self._lock:
            dek = self._dek
            if dek is not None and self._clock() - self._dek_at_ms < self._max_age_ms:
                return dek
            try:
                return await self._new_dek()
            except KmsError as exc:
                if dek is None or not exc.unavailable:
                    raise Unavailable(f"{exc.message}; session state cannot be sealed",
                                      field="state_key") from None
                if self._clock() - self._warned_at > 60_000:
                    self._warned_at = self._clock()
                    _LOG.warning("%s; sealing with the cached data key (version %d)",
                                 exc.message, dek[2])
                return dek

    # ---- documents ------------------------------------------------------------------------
    async def seal(self, session_id: str, document: str) -> str:
        key, wrapped, _ = await self._current()
        nonce = os.urandom(12)
        ct = AESGCM(key).encrypt(nonce, document.encode(), session_id.encode())
        sealed = _Sealed(ref=self.ref, wrapped=wrapped, nonce=base64.b64encode(nonce).decode(),
                         ct=base64.b64encode(ct).decode())
        return SEALED_PREFIX + msgspec.json.encode(sealed).decode()

    async def _unwrap(self, wrapped: str) -> bytes:
        key = self._opened.get(wrapped)
        if key is not None:
            return key
        try:
            key = await self.transit.decrypt(wrapped)
        except KmsError as exc:
            version = wrapped.rsplit(":", 1)[0]
            if exc.unavailable:
                raise Unavailable(f"{exc.message}; the session state sealed under "
                                  f"{version} cannot be opened until Vault answers",
                                  field="state_key") from None
            raise Conflict(f"{exc.message}; the session state sealed under {version} is "
                           "refused", field="state", code="state_key_refused") from None
        self._remember(wrapped, key)
        return key

    async def open(self, session_id: str, stored: str) -> str:
        """The document of a stored row (a plain row, from before sealing, as it is)."""
        if not stored.startswith(SEALED_PREFIX):
            return stored
        try:
            sealed = msgspec.json.decode(stored[len(SEALED_PREFIX):], type=_Sealed)
            nonce, ct = base64.b64decode(sealed.nonce), base64.b64decode(sealed.ct)
        except (msgspec.DecodeError, ValueError):
            raise Conflict(f"session {session_id}: the stored state is damaged (not a sealed "
                           "document)", field="state", code="state_damaged") from None
        if sealed.ref != self.ref:
            raise Unavailable(f"session {session_id}: its state is sealed under KMS key "
                              f"{sealed.ref}, this control plane uses {self.ref}",
                              field="state_key")
        key = await self._unwrap(sealed.wrapped)
        try:
            return AESGCM(key).decrypt(nonce, ct, session_id.encode()).decode()
        except InvalidTag:
            raise Conflict(f"session {session_id}: the stored state does not authenticate "
                           "(altered, or sealed for another session)", field="state",
                           code="state_damaged") from None

    # ---- rotation -------------------------------------------------------------------------
    async def rotate(self) -> dict[str, Any]:
        """Rotate the KMS key; new checkpoints are sealed under its new version at once."""
        async with self._lock:
            previous = self._dek[2] if self._dek else None
            try:
                info = await self.transit.rotate()
                dek = await self._new_dek()
            except KmsError as exc:
                raise Unavailable(exc.message, field="key_ref") from None
        return {"purpose": self.purpose, "key_ref": self.ref, "previous_version": previous,
                "latest_version": info.latest_version, "sealing_version": dek[2]}

    async def rewrap(self, session_id: str, stored: str, memo: dict[str, str]) -> str | None:
        """``stored`` under the latest key version (None: already there); ``memo`` maps
        old wrappings to new ones across a pass (one Vault call per data key)."""
        if not stored.startswith(SEALED_PREFIX):
            return await self.seal(session_id, stored)
        try:
            sealed = msgspec.json.decode(stored[len(SEALED_PREFIX):], type=_Sealed)
        except msgspec.DecodeError:
            return None  # a damaged row stays as it is (reading it says so)
        current = self._dek[2] if self._dek else 0
        if sealed.ref != self.ref or (key_version_of(sealed.wrapped) or 0) >= current:
            return None
        wrapped = memo.get(sealed.wrapped)
        if wrapped is None:
            try:
                wrapped = await self.transit.rewrap(sealed.wrapped)
            except KmsError as exc:
                raise Unavailable(exc.message, field="key_ref") from None
            memo[sealed.wrapped] = wrapped
            known = self._opened.get(sealed.wrapped)
            if known is not None:
                self._remember(wrapped, known)
        return SEALED_PREFIX + msgspec.json.encode(
            msgspec.structs.replace(sealed, wrapped=wrapped)).decode()

    async def status(self) -> SealerStatus:
        dek = self._dek
        info: KmsKeyInfo | None = None
        error = None
        try:
            info = await self.transit.info()
        except KmsError as exc:
            error = exc.message
        return SealerStatus(
            purpose=self.purpose, key_ref=self.ref, sealing_version=dek[2] if dek else 0,
            data_key_age_s=(self._clock() - self._dek_at_ms) / 1000 if dek else 0.0,
            latest_version=info.latest_version if info else None,
            min_decryption_version=info.min_decryption_version if info else None,
            vault_reachable=info is not None, cached_data_keys=len(self._opened), error=error)
