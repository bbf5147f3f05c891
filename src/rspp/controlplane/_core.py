"""Shared core of the control-plane facade: store, services, RBAC and CAS retries."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, Self, TypeVar

from prometheus_client import Gauge
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from rspp.controlplane._audit import AuditLog
from rspp.controlplane._changes import ChangeRecord, consume_in
from rspp.controlplane._config import ControlPlaneSettings
from rspp.controlplane._errors import Conflict, CPError, Forbidden
from rspp.controlplane._gate_metrics import GateMetrics
from rspp.controlplane._kms import VaultTransit
from rspp.controlplane._leases import LeaseManager
from rspp.controlplane._placements import PlacementWatch
from rspp.controlplane._rbac import KeyRing, Principal, Role
from rspp.controlplane._registry import Registry
from rspp.controlplane._rollout import Rollouts
from rspp.controlplane._routing import RoutingTable
from rspp.controlplane._sessions import (
    SessionBook,
)
from rspp.controlplane._signing_keys import SigningKeyRing
from rspp.controlplane._slo_book import SloBook
from rspp.controlplane._state_sealing import StateSealer
from rspp.controlplane._store import Store
from rspp.controlplane._tokens import KeySetVerifier, TokenIssuer, TokenKeys
from rspp.controlplane._util import Clock, wall_ms

T = TypeVar("T")


class ControlPlaneCore:
    """Owns the store and every service; operations live in the mixins."""

    def __init__(
        self, store: Store, settings: ControlPlaneSettings, clock: Clock = wall_ms
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.token_keys = settings.token_keys or TokenKeys.generate_ed25519()
        self.audit = AuditLog(store, clock)
        self.keys = KeyRing(store, settings.admin_key)
        self.registry = Registry(store)
        self.rollouts = Rollouts(self.registry)
        self.routing = RoutingTable(
            store,
            heartbeat_timeout_ms=settings.heartbeat_timeout_ms,
            snapshot_ttl_ms=settings.snapshot_ttl_ms,
            placement_grace_ms=settings.placement_grace_ms,
        )
        self.leases = LeaseManager(store, self.audit, clock)
        self.sessions = SessionBook(self.routing, self.leases, self.audit)
        #: the token signing keys by reference, rotated online (F-169)
        self.signing = SigningKeyRing(
            store, self.audit, self.token_keys, bootstrap_ref=settings.token_key_ref,
            key_dir=Path(settings.token_key_dir) if settings.token_key_dir else None,
            max_age_s=settings.token_key_max_age_s, clock=clock)
        #: session-state checkpoints sealed under a KMS key (F-169), when configured
        self.state_sealer: StateSealer | None = None
        if settings.state_key_ref is not None and settings.vault is not None:
            self.state_sealer = StateSealer(
                VaultTransit(settings.vault, settings.state_key_ref),
                dek_max_age_ms=settings.state_data_key_max_age_ms, clock=clock)
        #: the KMS key runtimes sign timelines with (listed and rotated here; F-169)
        self.timeline_key: VaultTransit | None = None
        if settings.timeline_key_ref is not None and settings.vault is not None:
            self.timeline_key = VaultTransit(settings.vault, settings.timeline_key_ref)
        self.gate_metrics = GateMetrics()
        #: the availability SLO and its error budget (NF-005, NF-030), when configured
        self.slo = SloBook(store, self.audit, settings.slo, self.gate_metrics.registry) \
            if settings.slo is not None else None
        #: wakes token requests waiting for their session to move (after the commit)
        self.placements = PlacementWatch()
        #: wakes a runtime's control channel when a hand-off of a lease it holds begins
        self.runtime_watch = PlacementWatch()
        polls = Gauge("rspp_cp_long_polls_waiting", "Long polls held open: runtimes' control "
                      "channels, and sessions whose token requests wait for a move",
                      ["kind"], registry=self.gate_metrics.registry)
        polls.labels("control_channel").set_function(lambda: self.runtime_watch.waiting)
        polls.labels("session_move").set_function(lambda: self.placements.waiting)
        #: API operations under way (see :meth:`run_to_end`); :meth:`close` waits for them
        self._inflight: set[asyncio.Task[Any]] = set()

    @classmethod
    async def open(cls, settings: ControlPlaneSettings, clock: Clock = wall_ms) -> Self:
        store = await Store.open(settings.db_url, schema=settings.db_schema)
        core = cls(store, settings, clock)
        try:
            await core.signing.load(at_start=True)
            if core.state_sealer is not None:
                await core.state_sealer.start()
        except BaseException:
            for transit in core._kms_clients():
                await transit.aclose()
            await store.close()
            raise
        return core

    def _kms_clients(self) -> list[VaultTransit]:
        sealer = [self.state_sealer.transit] if self.state_sealer is not None else []
        return sealer + ([self.timeline_key] if self.timeline_key is not None else [])

    @property
    def issuer(self) -> TokenIssuer:
        """Signs with the active signing key."""
        return self.signing.issuer

    @property
    def verifier(self) -> KeySetVerifier:
        """Verifies with every signing key still in its overlap window."""
        return self.signing.verifier

    async def run_to_end(self, op: Coroutine[Any, Any, T]) -> T:
        """Run one API operation to its end even when the caller is cancelled.

        A caller's cancellation (an in-process client whose task is cancelled, e.g. a
        runtime's heartbeat at drain) must not interrupt a database transaction: an
        aiosqlite connection terminated mid-statement never closes, which wedges the
        next requests and keeps the process from exiting. The caller still sees the
        cancellation; the operation finishes (commit or rollback) on its own.
        """
        task = asyncio.ensure_future(op)
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        return await asyncio.shield(task)

    def stopping(self) -> None:
        """The process begins to stop: every long poll answers now (token moves with where
        their sessions are, control channels with their pending hand-offs and
        ``stopping``), later ones at once, so a graceful shutdown never waits them out."""
        self.placements.wake_all()
        self.runtime_watch.wake_all()

    async def close(self) -> None:
        self.stopping()
        if self._inflight:  # operations whose callers were cancelled: let them finish
            await asyncio.gather(*self._inflight, return_exceptions=True)
        await self.audit.close()
        for transit in self._kms_clients():
            await transit.aclose()
        await self.store.close()

    # -- helpers ---------------------------------------------------------------------------
    async def authorize(self, principal: Principal, needed: Role, action: str) -> None:
        """Enforce least privilege; a denial is itself audited (F-115)."""
        try:
            principal.require(needed, action)
        except Forbidden:
            await self.audit.append(
                actor=principal.key_id,
                action="rbac.denied",
                subject=action,
                detail={"role": principal.role.value, "needed": needed.value},
                tenant_id=principal.tenant_id,
            )
            raise

    async def require_approval(
        self, principal: Principal, mutation: str, subject: str, change: ChangeRecord | None,
        *, tenant_id: str | None = None,
    ) -> None:
        """With ``require_approval``, a mutation runs only as an approved change (F-165).

        Called before the mutation's transaction: a refusal is audited (``change.blocked``)
        and answered 403 ``approval_required``.
        """
        signed = self.settings.require_signed_changes
        if change is not None:
            if signed and not change.signed:  # e.g. submitted before the policy was set
                raise Forbidden(
                    f"change {change.change_id} is not signed by its submitter and reviewer; "
                    "signed changes are required: submit it again with --signing-key",
                    field="signature", code="signature_required")
            return
        if not (self.settings.require_approval or signed):
            return
        await self.audit.append(
            actor=principal.key_id, action="change.blocked", subject=subject,
            detail={"mutation": mutation, "reason": "approval_required"}, tenant_id=tenant_id)
        raise Forbidden(
            f"{mutation} of {subject} needs an approved change: submit it (POST /v1/changes, "
            "`rspp cp change submit`), have another key approve it, then apply it",
            field="approval", code="approval_required")

    async def guard_budget(self, principal: Principal, mutation: str, scope: str,
                           subject: str, *, force: bool = False) -> None:
        """Refuse ``mutation`` of ``scope`` while its error budget burns too fast or is
        spent (NF-030): 409 ``error_budget_freeze`` naming the reason, audited
        ``<mutation>.frozen``. ``force`` (admin only) lets it through, audited
        ``slo.freeze_overridden``. Rollbacks are never frozen: they are the remedy."""
        if self.slo is None:
            return
        reason = await self.slo.freeze_reason(scope, self.clock())
        if reason is None:
            return
        detail = {"mutation": mutation, "reason": "error_budget_freeze", "why": reason}
        if force:
            await self.authorize(principal, Role.ADMIN, f"force {mutation} during a freeze")
            await self.audit.append(actor=principal.key_id, action="slo.freeze_overridden",
                                    subject=subject, detail=detail)
            return
        await self.audit.append(actor=principal.key_id, action=f"{mutation}.frozen",
                                subject=subject, detail=detail)
        raise Conflict(f"{mutation} of {subject} refused: {reason}; roll back, wait for the "
                       "burn to stop, or force it with an admin key (--force)",
                       field="slo", code="error_budget_freeze")

    async def apply_change_in(
        self, conn: AsyncConnection, principal: Principal, change: ChangeRecord | None, now: int,
        *, tenant_id: str | None = None,
    ) -> dict[str, str]:
        """Mark ``change`` applied with the mutation (once) and audit the decision behind it;
        the detail to add to the mutation's own audit entry."""
        if change is None:
            return {}
        applied = await consume_in(conn, change, actor=principal.key_id, now_ms=now)
        await self.audit.append_in(
            conn, actor=principal.key_id, action="change.applied", subject=change.target,
            detail=applied.decision(), tenant_id=tenant_id)
        return {"change_id": change.change_id}

    async def _write(
        self, work: Callable[[AsyncConnection, int], Awaitable[T | None]], what: str
    ) -> T:
        """Run ``work`` in a transaction; retry with jittered backoff when a
        compare-and-swap lost (``None``), a unique key was taken concurrently, or
        PostgreSQL reports a serialization failure or deadlock."""
        for attempt in range(_MAX_ATTEMPTS):
            try:
                async with self.store.tx() as conn:
                    result = await work(conn, self.clock())
                if result is not None:
                    return result
            except IntegrityError:
                pass
            except DBAPIError as exc:
                if _sqlstate(exc) not in _RETRYABLE:
                    raise
            await asyncio.sleep(random.uniform(0, min(0.25, 0.002 * 2**attempt)))
        raise CPError(f"{what} kept conflicting with concurrent writers; retry", code="contention")


_MAX_ATTEMPTS = 60
_RETRYABLE = {"40001", "40P01"}  # serialization_failure, deadlock_detected


def _sqlstate(exc: DBAPIError) -> str | None:
    orig = exc.orig
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return str(code) if code is not None else None
