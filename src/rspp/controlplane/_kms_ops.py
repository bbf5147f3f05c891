"""KMS-backed encryption keys of the control plane: status, rotation, rewrap (F-169).

``GET /v1/kms/keys`` (viewer, fleet) reports each KMS key the control plane uses (today
the session-state key, :mod:`rspp.controlplane._state_sealing`): its reference, the
version new data is sealed under, Vault's latest and minimum decryption versions, and
whether Vault answered. ``POST /v1/kms/keys/rotate`` (admin) rotates the key in Vault
and seals new data under the new version at once; ``POST /v1/kms/keys/rewrap`` (admin)
rewraps every stored data key to the latest version (and seals rows stored before
encryption was turned on). Both are audited (``kms_key.rotated``,
``kms_key.rewrapped``) with the reference and versions, never material.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from rspp.controlplane._errors import Conflict
from rspp.controlplane._handlers import Call
from rspp.controlplane._rbac import Principal, Role
from rspp.controlplane._requests import _Body
from rspp.controlplane._schema import session_state
from rspp.controlplane._service import ControlPlane
from rspp.controlplane._state_sealing import SealerStatus, StateSealer

__all__ = ["KmsKeys", "KmsRewrapReply", "KmsRotateReply", "KmsRotateRequest",
           "kms_keys", "rewrap_kms_key", "rotate_kms_key"]

Purpose = Literal["session_state"]
#: rows read per rewrap batch
_BATCH = 200


class KmsRotateRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Rotate (or rewrap to) the KMS key of ``purpose``."""

    purpose: Purpose = "session_state"
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] = "manual"


class KmsKeys(msgspec.Struct, frozen=True, kw_only=True):
    keys: list[SealerStatus]


class KmsRotateReply(msgspec.Struct, frozen=True, kw_only=True):
    purpose: str
    key_ref: str
    previous_version: int | None
    latest_version: int
    sealing_version: int


class KmsRewrapReply(msgspec.Struct, frozen=True, kw_only=True):
    purpose: str
    key_ref: str
    latest_version: int
    #: rows whose data key was rewrapped (or that were sealed for the first time)
    rewrapped: int
    #: rows already under the latest version (or changed by a writer meanwhile)
    unchanged: int


def _sealer(cp: ControlPlane, purpose: str) -> StateSealer:
    if cp.state_sealer is None:
        raise Conflict(f"this control plane has no {purpose} KMS key: start it with "
                       "--state-key vault-transit:NAME (and --vault-addr)", field="purpose")
    return cp.state_sealer


async def list_kms_keys(cp: ControlPlane, principal: Principal) -> KmsKeys:
    await cp.authorize(principal, Role.VIEWER, "read the KMS keys")
    return KmsKeys(keys=[await cp.state_sealer.status()] if cp.state_sealer else [])


async def rotate_key(cp: ControlPlane, principal: Principal,
                     body: KmsRotateRequest) -> KmsRotateReply:
    await cp.authorize(principal, Role.ADMIN, "rotate a KMS key")
    sealer = _sealer(cp, body.purpose)
    done = await sealer.rotate()
    await cp.audit.append(actor=principal.key_id, action="kms_key.rotated",
                          subject=sealer.ref, detail={**done, "reason": body.reason})
    return msgspec.convert(done, KmsRotateReply)


async def rewrap_key(cp: ControlPlane, principal: Principal,
                     body: KmsRotateRequest) -> KmsRewrapReply:
    await cp.authorize(principal, Role.ADMIN, "rewrap a KMS key's data")
    sealer = _sealer(cp, body.purpose)
    memo: dict[str, str] = {}
    rewrapped = unchanged = 0
    after = ""
    while True:
        async with cp.store.engine.connect() as conn:
            rows = (await conn.execute(
                select(session_state.c.session_id, session_state.c.version,
                       session_state.c.doc_json)
                .where(session_state.c.session_id > after)
                .order_by(session_state.c.session_id).limit(_BATCH))).all()
        if not rows:
            break
        after = rows[-1].session_id
        for row in rows:
            new = await sealer.rewrap(row.session_id, row.doc_json, memo)
            if new is None:
                unchanged += 1
                continue

            async def work(conn: AsyncConnection, now: int, sid: str = row.session_id,
                           version: int = row.version, doc: str = new) -> int:
                done = await conn.execute(update(session_state).where(
                    session_state.c.session_id == sid, session_state.c.version == version)
                    .values(doc_json=doc))
                return int(done.rowcount or 0)

            if await cp._write(work, "rewrap session state"):
                rewrapped += 1
            else:  # a writer saved it meanwhile: under the latest version already
                unchanged += 1
    latest = sealer.sealing_version
    await cp.audit.append(actor=principal.key_id, action="kms_key.rewrapped",
                          subject=sealer.ref,
                          detail={"purpose": body.purpose, "key_ref": sealer.ref,
                                  "latest_version": latest, "rewrapped": rewrapped,
                                  "unchanged": unchanged, "reason": body.reason})
    return KmsRewrapReply(purpose=body.purpose, key_ref=sealer.ref, latest_version=latest,
                          rewrapped=rewrapped, unchanged=unchanged)


# ---- HTTP handlers (route table: /v1/kms/keys...) -------------------------------------------
async def kms_keys(c: Call) -> KmsKeys:
    return await list_kms_keys(c.cp, c.principal)


async def rotate_kms_key(c: Call) -> KmsRotateReply:
    return await rotate_key(c.cp, c.principal, c.body)


async def rewrap_kms_key(c: Call) -> KmsRewrapReply:
    return await rewrap_key(c.cp, c.principal, c.body)
