"""KMS keys of the deployment: status, rotation, rewrap (F-169).

``GET /v1/kms/keys`` (viewer, fleet) reports each KMS key by purpose: ``session_state``
(the control plane seals checkpoints with it, :mod:`rspp.controlplane._state_sealing`)
and ``timeline_signing`` (runtimes sign timelines with it,
:mod:`rspp.server._timeline_signing`): its reference, the version new data is sealed or
signed under, Vault's latest and minimum decryption versions, and whether Vault answered.
``POST /v1/kms/keys/rotate`` (admin) rotates the key in Vault; new data is sealed or
signed under the new version at once; ``POST /v1/kms/keys/rewrap`` (admin)
rewraps every stored data key to the latest version (and seals rows stored before
encryption was turned on). Both are audited (``kms_key.rotated``,
``kms_key.rewrapped``) with the reference and versions, never material.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from rspp.controlplane._errors import Conflict, Unavailable
from rspp.controlplane._handlers import Call
from rspp.controlplane._kms import KmsError, VaultTransit
from rspp.controlplane._rbac import Principal, Role
from rspp.controlplane._requests import _Body
from rspp.controlplane._schema import session_state
from rspp.controlplane._service import ControlPlane
from rspp.controlplane._state_sealing import SealerStatus, StateSealer

__all__ = ["KmsKeys", "KmsRewrapReply", "KmsRotateReply", "KmsRotateRequest",
           "kms_keys", "rewrap_kms_key", "rotate_kms_key"]

Purpose = Literal["session_state", "timeline_signing"]
#: rows read per rewrap batch
_BATCH = 200


class KmsRotateRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Rotate (or rewrap to) the KMS key of ``purpose``."""

    purpose: Purpose = "session_state"
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] = "manual"


class KmsKeys(msgspec.Struct, frozen=True, kw_only=True):
    keys: list[SealerStatus]


class KmsRotateReply(msgspec.Struct, frozen=True, kw_only=True):
    """``sealing_version``: the version new data is sealed (or signed) under now."""

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
    if purpose != "session_state":
        raise Conflict(f"{purpose} data is signed, not sealed: there is nothing to rewrap "
                       "(signatures of old versions keep verifying)", field="purpose")
    if cp.state_sealer is None:
        raise Conflict("this control plane has no session_state KMS key: start it with "
                       "--state-key vault-transit:NAME", field="purpose")
    return cp.state_sealer


def _signing(cp: ControlPlane) -> VaultTransit:
    if cp.timeline_key is None:
        raise Conflict("this control plane has no timeline_signing KMS key: start it with "
                       "--timeline-key vault-transit:NAME", field="purpose")
    return cp.timeline_key


async def _signing_status(transit: VaultTransit) -> SealerStatus:
    try:
        info = await transit.info()
    except KmsError as exc:
        return SealerStatus(purpose="timeline_signing", key_ref=transit.ref,
                            sealing_version=0, data_key_age_s=0.0, latest_version=None,
                            min_decryption_version=None, vault_reachable=False,
                            cached_data_keys=0, error=exc.message)
    return SealerStatus(purpose="timeline_signing", key_ref=transit.ref,
                        sealing_version=info.latest_version, data_key_age_s=0.0,
                        latest_version=info.latest_version,
                        min_decryption_version=info.min_decryption_version,
                        vault_reachable=True, cached_data_keys=0)


async def list_kms_keys(cp: ControlPlane, principal: Principal) -> KmsKeys:
    await cp.authorize(principal, Role.VIEWER, "read the KMS keys")
    keys = [await cp.state_sealer.status()] if cp.state_sealer else []
    if cp.timeline_key is not None:
        keys.append(await _signing_status(cp.timeline_key))
    return KmsKeys(keys=keys)


async def _rotate_signing(transit: VaultTransit) -> dict[str, Any]:
    try:
        info = await transit.rotate()
    except KmsError as exc:
        raise Unavailable(exc.message, field="purpose") from None
    return {"purpose": "timeline_signing", "key_ref": transit.ref,
            "previous_version": info.latest_version - 1,
            "latest_version": info.latest_version, "sealing_version": info.latest_version}


async def rotate_key(cp: ControlPlane, principal: Principal,
                     body: KmsRotateRequest) -> KmsRotateReply:
    await cp.authorize(principal, Role.ADMIN, "rotate a KMS key")
    if body.purpose == "timeline_signing":
        done = await _rotate_signing(_signing(cp))
    else:
        done = await _sealer(cp, body.purpose).rotate()
    await cp.audit.append(actor=principal.key_id, action="kms_key.rotated",
                          subject=done["key_ref"], detail={**done, "reason": body.reason})
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
