"""Change review operations (F-165): submit, approve or reject, apply, read.

Applying runs the change's request through the mutation's own operation (the same
checks, locks and audit entry as the direct route), with the change marked applied in
that transaction; with ``require_approval`` set, that is the only way the mutation runs.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from rspp.controlplane._change_signing import (
    ProvenanceReport,
    SignerKey,
    Verdict,
    check_signature_in,
    parse_public_key,
    register_in,
    request_hash_of,
    review_message,
    signer_keys_in,
    submit_message,
    verify_changes_in,
)
from rspp.controlplane._changes import (
    ChangeRecord,
    get_in,
    list_in,
    review_in,
    submit_in,
    target_of,
)
from rspp.controlplane._configs import ConfigKind, scope_tenant
from rspp.controlplane._errors import Conflict, Forbidden
from rspp.controlplane._ops_gates import GateOps
from rspp.controlplane._rbac import Principal, Role
from rspp.controlplane._requests import ChangeSubmitRequest


class ChangeOps(GateOps):
    def _unsigned(self, step: str) -> None:
        """With ``require_signed_changes``, an unsigned submission or review is refused."""
        if self.settings.require_signed_changes:
            raise Forbidden(f"signed changes are required: sign the {step} with your "
                            "registered signing key (`--signing-key FILE`)",
                            field="signature", code="signature_required")

    async def submit_change(
        self, principal: Principal, request: ChangeSubmitRequest
    ) -> ChangeRecord:
        await self.authorize(principal, Role.OPERATOR, "submit change")
        target_of(request)  # 422 naming a missing field before any signature check
        if request.signature is None:
            self._unsigned("submission")

        async def work(conn: AsyncConnection, now: int) -> ChangeRecord:
            signer = None
            if request.signature is not None:
                signer = await check_signature_in(
                    conn, principal.key_id, submit_message(request_hash_of(request)[1]),
                    request.signature)
            record = await submit_in(conn, request, actor=principal.key_id, now_ms=now,
                                     signer=signer)
            await self.audit.append_in(
                conn, actor=principal.key_id, action="change.submitted", subject=record.target,
                detail=record.decision(), tenant_id=_tenant(record))
            return record

        return await self._write(work, "submit change")

    async def review_change(
        self, principal: Principal, change_id: str, *, approve: bool, note: str,
        signature: str | None = None,
    ) -> ChangeRecord:
        await self.authorize(principal, Role.OPERATOR, "review change")
        if signature is None:
            self._unsigned("review")

        async def work(conn: AsyncConnection, now: int) -> ChangeRecord:
            signer = None
            if signature is not None:
                current = await get_in(conn, change_id)
                verdict: Verdict = "approve" if approve else "reject"
                signer = await check_signature_in(
                    conn, principal.key_id,
                    review_message(change_id, verdict, current.request_hash), signature)
            record = await review_in(conn, change_id, approve=approve,
                                     reviewer=principal.key_id, note=note, now_ms=now,
                                     signature=signature, signer=signer)
            await self.audit.append_in(
                conn, actor=principal.key_id,
                action="change.approved" if approve else "change.rejected",
                subject=record.target, detail=record.decision(), tenant_id=_tenant(record))
            return record

        return await self._write(work, "review change")

    async def apply_change(self, principal: Principal, change_id: str) -> ChangeRecord:
        """Run an approved change's mutation; the change is applied with it, once."""
        await self.authorize(principal, Role.OPERATOR, "apply change")
        record = await self.get_change(principal, change_id)
        if record.status != "approved":
            raise Conflict(f"change {change_id} is {record.status}; only an approved change "
                           "applies, and only once", field="change_id")
        req = record.request
        if req.action == "config.activate":
            if req.config_kind is None or req.config_scope is None or req.config_version is None:
                raise Conflict(f"change {change_id} names no config", field="change_id")
            await self.activate_config(principal, ConfigKind(req.config_kind), req.config_scope,
                                       req.config_version, change=record)
        elif req.pipeline_name is None:
            raise Conflict(f"change {change_id} names no pipeline", field="change_id")
        elif req.action == "rollback" and req.rollback_to is not None:
            await self.rollback(principal, req.pipeline_name, to=req.rollback_to, change=record)
        elif req.rollout is not None and req.rollout.gated:
            r = req.rollout
            await self.gated_rollout(
                principal, req.pipeline_name, canary=r.canary, percent=r.percent,
                tenants=r.tenants, promote_after=r.promote_after,
                rollback_on_gates=r.rollback_on_gates, steps=r.steps, window_size=r.window,
                min_samples=r.min_samples, change=record)
        elif req.rollout is not None:
            r = req.rollout
            await self.rollout(principal, req.pipeline_name, canary=r.canary, percent=r.percent,
                               tenants=r.tenants, change=record)
        else:
            raise Conflict(f"change {change_id} has no request to apply", field="change_id")
        return await self.get_change(principal, change_id)

    async def get_change(self, principal: Principal, change_id: str) -> ChangeRecord:
        await self.authorize(principal, Role.VIEWER, "read change")
        async with self.store.engine.connect() as conn:
            return await get_in(conn, change_id)

    async def list_changes(self, principal: Principal, status: str | None) -> list[ChangeRecord]:
        await self.authorize(principal, Role.VIEWER, "list changes")
        async with self.store.engine.connect() as conn:
            return await list_in(conn, status)

    # -- signed provenance (NF-037) ----------------------------------------------------------
    async def register_signer_key(self, principal: Principal,
                                  public_key: str) -> tuple[SignerKey, bool]:
        """Register the calling key's Ed25519 public key; ``(key, created)``."""
        await self.authorize(principal, Role.OPERATOR, "register signer key")
        raw, fingerprint = parse_public_key(public_key)

        async def work(conn: AsyncConnection, now: int) -> tuple[SignerKey, bool]:
            key, created = await register_in(conn, principal.key_id, raw, fingerprint, now)
            if created:
                await self.audit.append_in(
                    conn, actor=principal.key_id, action="signer_key.registered",
                    subject=principal.key_id, detail={"fingerprint": fingerprint})
            return key, created

        return await self._write(work, "register signer key")

    async def signer_keys(self, principal: Principal) -> list[SignerKey]:
        await self.authorize(principal, Role.VIEWER, "list signer keys")
        async with self.store.engine.connect() as conn:
            return await signer_keys_in(conn)

    async def change_provenance(self, principal: Principal,
                                target: str | None) -> ProvenanceReport:
        """Every change (of ``target``) with its signed identity and approval trail, verified."""
        await self.authorize(principal, Role.VIEWER, "verify changes")
        async with self.store.engine.connect() as conn:
            return await verify_changes_in(conn, target)


def _tenant(record: ChangeRecord) -> str | None:
    """A config change of one tenant's scope concerns that tenant (its audit view)."""
    scope = record.request.config_scope
    return scope_tenant(scope) if record.action == "config.activate" and scope else None
