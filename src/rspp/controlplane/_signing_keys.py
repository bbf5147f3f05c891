"""Session-token signing keys by reference, rotated online (F-169, NF-035).

The control plane keeps its signing keys in ``cp_token_keys`` as *references* to the
private material, never the material itself, with the public half, the state and the
times. The reference scheme is a local stand-in for a KMS:

- ``file:PATH``: an Ed25519 private key (PEM) in a file every control-plane replica can
  read (a mounted Secret, a KMS CSI driver's file);
- ``env:VAR``: the PEM in an environment variable;
- ``memory:KID``: generated in this process (no key file): only this process can sign
  with it (a restart rotates away from it; the old public key keeps verifying);
- ``secret:hs256``: the HS256 secret given at start-up (shared, not rotatable online).

Rotation (``POST /v1/tokens/keys/rotate``, ``rspp cp signing-keys rotate``) makes a new
key active (from a given reference, or generated into ``--token-key-dir``); the old key
stops signing at once and keeps verifying for :data:`OVERLAP_MS` (the longest token TTL
plus clock skew), so every token it signed stays valid until it expires. Runtimes fetch
``GET /v1/tokens/keys`` (every key that still verifies) and fetch again when a token
names a ``kid`` they do not know. Each rotation is an audit entry (``token_key.rotated``).

The documented maximum key age (``--token-key-max-age-s``, default 90 days) is reported
by ``GET /v1/tokens/keys/status`` (age, rotate-by, overdue) and enforced by
:class:`KeyRotationMonitor`: with a key directory it rotates a key once it is
:data:`ROTATE_AT` of the maximum age old (before the maximum); without one it logs a
warning and the status says ``overdue`` after the maximum age.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from rspp.controlplane._audit import AuditLog
from rspp.controlplane._errors import Conflict, InvalidRequest
from rspp.controlplane._schema import token_keys
from rspp.controlplane._store import Store
from rspp.controlplane._tokens import (
    CLOCK_SKEW_S,
    MAX_TTL_S,
    KeySetVerifier,
    TokenIssuer,
    TokenKeys,
)
from rspp.controlplane._util import Clock, wall_ms

__all__ = ["KeyRotationMonitor", "KeyStatus", "SigningKey", "SigningKeyRing", "resolve_key_ref"]

_LOG = logging.getLogger("rspp.controlplane.keys")

#: how long a rotated-out key keeps verifying: every token it signed has expired by then
OVERLAP_MS = (MAX_TTL_S + CLOCK_SKEW_S) * 1000
#: automated rotation starts at this fraction of the maximum key age
ROTATE_AT = 0.75
DEFAULT_MAX_AGE_S = 90 * 86_400


class SigningKey(msgspec.Struct, frozen=True, kw_only=True):
    kid: str
    algorithm: str
    key_ref: str
    public_pem: str | None
    #: ``active`` (signs and verifies) or ``previous`` (verifies until verify_until_ms)
    state: str
    created_at_ms: int
    retired_at_ms: int | None = None
    verify_until_ms: int | None = None
    reason: str = ""

    def verifies(self, now_ms: int) -> bool:
        return self.state == "active" or (self.verify_until_ms or 0) > now_ms


class KeyStatus(msgspec.Struct, frozen=True, kw_only=True):
    algorithm: str
    max_age_s: int
    active_kid: str
    active_age_s: float
    #: the active key must be replaced by then (created + max age)
    rotate_by_ms: int
    #: automated rotation starts then (ROTATE_AT of the max age), with a key directory
    rotate_after_ms: int
    overdue: bool
    automated: bool
    rotations: int
    keys: list[SigningKey]


def _ed25519(pem: str, ref: str) -> TokenKeys:
    return TokenKeys.ed25519_pem(pem, source=f"key reference {ref!r}", field="key_ref")


def resolve_key_ref(ref: str) -> TokenKeys:
    """The signing key a ``file:`` or ``env:`` reference names; InvalidRequest naming
    ``key_ref`` when it cannot be read."""
    scheme, sep, rest = ref.partition(":")
    if not sep or not rest:
        raise InvalidRequest(f"key reference {ref!r}: use file:PATH or env:VAR",
                             field="key_ref")
    if scheme == "file":
        try:
            return _ed25519(Path(rest).read_text(), ref)
        except OSError as exc:
            raise InvalidRequest(f"key reference {ref!r}: cannot read the file "
                                 f"({exc.strerror})", field="key_ref") from None
    if scheme == "env":
        value = os.environ.get(rest)
        if not value:
            raise InvalidRequest(f"key reference {ref!r}: environment variable {rest} is not "
                                 "set", field="key_ref")
        return _ed25519(value, ref)
    raise InvalidRequest(f"key reference {ref!r}: unknown scheme {scheme!r} (file:PATH or "
                         "env:VAR)", field="key_ref")


def _row(r: Any) -> SigningKey:
    return SigningKey(kid=r.kid, algorithm=r.algorithm, key_ref=r.key_ref,
                      public_pem=r.public_pem, state=r.state, created_at_ms=r.created_at_ms,
                      retired_at_ms=r.retired_at_ms, verify_until_ms=r.verify_until_ms,
                      reason=r.reason)


class SigningKeyRing:
    """The control plane's signing keys: sign with the active one, verify with every key
    still in its overlap window (see the module docstring)."""

    def __init__(self, store: Store, audit: AuditLog, bootstrap: TokenKeys, *,
                 bootstrap_ref: str | None = None, key_dir: Path | None = None,
                 max_age_s: int = DEFAULT_MAX_AGE_S, clock: Clock = wall_ms) -> None:
        self._store = store
        self._audit = audit
        self._clock = clock
        self.key_dir = key_dir
        self.max_age_s = max_age_s
        self.algorithm = bootstrap.algorithm
        self._bootstrap = msgspec.structs.replace(bootstrap, kid=bootstrap.key_id)
        if bootstrap_ref is None:
            bootstrap_ref = ("secret:hs256" if bootstrap.algorithm == "HS256"
                             else f"memory:{self._bootstrap.key_id}")
        self._bootstrap_ref = bootstrap_ref
        #: private material this process resolved, by kid
        self._signers: dict[str, TokenKeys] = {self._bootstrap.key_id: self._bootstrap}
        self._keys: list[SigningKey] = []
        self._signing = self._bootstrap
        self.issuer = TokenIssuer(self._bootstrap, clock)
        self.verifier = KeySetVerifier([self._bootstrap.verification_keys()],
                                       default=self._bootstrap.key_id, clock=clock)

    # ------------------------------------------------------------------ state
    def _resolve(self, key: SigningKey) -> TokenKeys | None:
        known = self._signers.get(key.kid)
        if known is not None:
            return known
        if key.key_ref.startswith(("memory:", "secret:")):
            return None
        try:
            resolved = msgspec.structs.replace(resolve_key_ref(key.key_ref), kid=key.kid)
        except InvalidRequest as exc:
            _LOG.warning("signing key %s: %s", key.kid, exc.message)
            return None
        self._signers[key.kid] = resolved
        return resolved

    def _install(self, keys: list[SigningKey]) -> None:
        now = self._clock()
        self._keys = keys
        live = [k for k in keys if k.verifies(now)]
        public = [TokenKeys(algorithm=k.algorithm, public_pem=k.public_pem, kid=k.kid)  # type: ignore[arg-type]
                  if k.algorithm == "EdDSA" else self._bootstrap for k in live]
        active = next((k for k in keys if k.state == "active"), None)
        signer = self._resolve(active) if active is not None else None
        if signer is None:  # the active key is not ours to sign with (see load)
            signer = next((s for k in live if (s := self._resolve(k)) is not None),
                          self._bootstrap)
        self._signing = signer
        self.issuer = TokenIssuer(signer, self._clock)
        self.verifier = KeySetVerifier(public, default=active.kid if active else None,
                                       clock=self._clock)

    async def _read_in(self, conn: AsyncConnection) -> list[SigningKey]:
        rows = (await conn.execute(select(token_keys).order_by(token_keys.c.created_at_ms,
                                                               token_keys.c.kid))).all()
        return [_row(r) for r in rows]

    async def load(self, *, at_start: bool = False) -> None:
        """Read the keys; at start, make this process's key active when the table has none
        or its active key cannot be resolved here (a ``memory:`` key of another process)."""
        async with self._store.tx() as conn:
            await self._store.lock(conn, "token_keys")
            keys = await self._read_in(conn)
            active = next((k for k in keys if k.state == "active"), None)
            if at_start and (active is None or (active.kid != self._bootstrap.key_id
                                                and self._resolve(active) is None)):
                reason = "bootstrap" if active is None else "active_key_unresolvable"
                ref = self._bootstrap_ref
                if ref.startswith("memory:") and self.key_dir is not None:
                    ref = self._persist(self._bootstrap)  # other replicas can resolve it
                    self._bootstrap_ref = ref
                await self._rotate_in(conn, self._bootstrap, ref, actor="rspp-control-plane",
                                      reason=reason, reuse=True)
                keys = await self._read_in(conn)
        self._install(keys)

    # ------------------------------------------------------------------ rotation
    async def _rotate_in(self, conn: AsyncConnection, new: TokenKeys, ref: str, *,
                         actor: str, reason: str, reuse: bool = False) -> dict[str, Any]:
        """``reuse``: a key used before becomes active again (a restart with the same key
        file after its successor became unusable here); otherwise a used key is refused."""
        now = self._clock()
        kid = new.key_id
        keys = await self._read_in(conn)
        used = any(k.kid == kid for k in keys)
        if used:
            if any(k.kid == kid and k.state == "active" for k in keys):
                return {"kid": kid, "previous_kid": None, "unchanged": True}
            if not reuse:
                raise Conflict(f"key {kid} was used before; rotate to a new key",
                               field="key_ref")
        previous = next((k for k in keys if k.state == "active"), None)
        until = now + OVERLAP_MS
        if previous is not None:
            await conn.execute(update(token_keys).where(token_keys.c.kid == previous.kid)
                               .values(state="previous", retired_at_ms=now,
                                       verify_until_ms=until))
        values = {"algorithm": new.algorithm, "key_ref": ref,
                  "public_pem": new.public_pem if new.algorithm == "EdDSA" else None,
                  "state": "active", "created_at_ms": now, "retired_at_ms": None,
                  "verify_until_ms": None, "reason": reason}
        if used:
            await conn.execute(update(token_keys).where(token_keys.c.kid == kid)
                               .values(**values))
        else:
            await conn.execute(insert(token_keys).values(kid=kid, **values))
        self._signers[kid] = msgspec.structs.replace(new, kid=kid)
        detail = {
            "kid": kid, "previous_kid": previous.kid if previous else None, "key_ref": ref,
            "reason": reason, "max_age_s": self.max_age_s,
            "previous_age_s": (now - previous.created_at_ms) / 1000 if previous else None,
            "previous_verifies_until_ms": until if previous else None,
        }
        if previous is not None:  # the first key is in the table, not a rotation
            await self._audit.append_in(conn, actor=actor, action="token_key.rotated",
                                        subject=kid, detail=detail)
        _LOG.info("token signing key rotated to %s (%s)", kid, reason)
        return detail

    def _persist(self, keys: TokenKeys) -> str:
        """Write ``keys`` into the key directory (mode 0600); its ``file:`` reference."""
        if self.key_dir is None:
            raise InvalidRequest("no key reference given and the control plane has no key "
                                 "directory to generate one in: pass key_ref (file:PATH or "
                                 "env:VAR) or start it with --token-key-dir", field="key_ref")
        self.key_dir.mkdir(parents=True, exist_ok=True)
        path = (self.key_dir / f"{keys.key_id}.pem").resolve()
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(keys.private_pem or "")
        return f"file:{path}"

    def _generate(self) -> tuple[TokenKeys, str]:
        if self.key_dir is None:
            self._persist(self._bootstrap)  # raises, naming key_ref
        keys = TokenKeys.generate_ed25519()
        return keys, self._persist(keys)

    async def rotate(self, *, actor: str, key_ref: str | None = None, reason: str = "manual",
                     only_if_kid: str | None = None) -> dict[str, Any]:
        """Make a new key active (``key_ref``, or generated into the key directory); the
        previous one verifies for :data:`OVERLAP_MS`. ``only_if_kid``: rotate only while
        that key is still the active one (automated rotation by several replicas)."""
        if self.algorithm != "EdDSA":
            raise Conflict("this control plane signs with an HS256 secret, which does not "
                           "rotate online: give it an Ed25519 key (--token-key-file or "
                           "--token-key-dir) to rotate keys", field="algorithm")
        if key_ref is not None:
            new, ref = resolve_key_ref(key_ref), key_ref
        else:
            new, ref = self._generate()
        async with self._store.tx() as conn:
            await self._store.lock(conn, "token_keys")
            if only_if_kid is not None:
                current = next((k for k in await self._read_in(conn)
                                if k.state == "active"), None)
                if current is None or current.kid != only_if_kid:
                    detail: dict[str, Any] = {"kid": current.kid if current else None,
                                              "unchanged": True}
                    keys = None
                else:
                    detail = await self._rotate_in(conn, new, ref, actor=actor, reason=reason)
                    keys = await self._read_in(conn)
            else:
                detail = await self._rotate_in(conn, new, ref, actor=actor, reason=reason)
                keys = await self._read_in(conn)
        if keys is None:
            await self.load()
        else:
            self._install(keys)
        return detail

    # ------------------------------------------------------------------ views
    def public_keys(self) -> list[SigningKey]:
        """Every key that still verifies (what runtimes fetch)."""
        now = self._clock()
        return [k for k in self._keys if k.verifies(now)]

    @property
    def signing(self) -> TokenKeys:
        return self._signing

    def status(self) -> KeyStatus:
        now = self._clock()
        active = next((k for k in self._keys if k.state == "active"), None)
        created = active.created_at_ms if active else now
        max_ms = self.max_age_s * 1000
        return KeyStatus(
            algorithm=self.algorithm, max_age_s=self.max_age_s,
            active_kid=active.kid if active else self._signing.key_id,
            active_age_s=(now - created) / 1000, rotate_by_ms=created + max_ms,
            rotate_after_ms=created + int(max_ms * ROTATE_AT),
            overdue=now >= created + max_ms,
            automated=self.key_dir is not None and self.algorithm == "EdDSA",
            rotations=sum(1 for k in self._keys if k.state == "previous"),
            keys=list(self._keys))


class KeyRotationMonitor:
    """Re-reads the keys (other replicas' rotations) and rotates the active key before its
    maximum age (with a key directory); one task owned by the serving process."""

    def __init__(self, ring: SigningKeyRing, *, interval_s: float | None = None) -> None:
        self.ring = ring
        self.interval_s = interval_s or min(60.0, max(0.2, ring.max_age_s / 20))
        self._task: asyncio.Task[None] | None = None
        self._warned: str | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="rspp-keys")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def check(self) -> None:
        """One pass: reload, then rotate if the active key is due."""
        await self.ring.load()
        status = self.ring.status()
        if self.ring._clock() < status.rotate_after_ms:
            return
        if status.automated:
            await self.ring.rotate(actor="rspp-key-rotation", reason="max_age",
                                   only_if_kid=status.active_kid)
        elif self._warned != status.active_kid and self.ring.algorithm == "EdDSA":
            self._warned = status.active_kid
            _LOG.warning("token signing key %s is due for rotation (max age %d s, rotate by "
                         "%d ms): rotate it with `rspp cp signing-keys rotate --key-ref ...`",
                         status.active_kid, status.max_age_s, status.rotate_by_ms)

    async def _run(self) -> None:
        while True:
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the next pass retries (a database hiccup)
                _LOG.warning("signing-key check failed: %s", exc)
            await asyncio.sleep(self.interval_s)
