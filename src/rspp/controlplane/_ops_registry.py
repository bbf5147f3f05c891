"""Registry, rollout and versioned-config operations (CP-01, CP-09, CP-04, CP-05 config)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from rspp.contracts import VersionResolution
from rspp.controlplane._admission import (
    parse_quotas,
)
from rspp.controlplane._changes import ChangeRecord
from rspp.controlplane._configs import (
    ConfigKind,
    ConfigVersion,
    activate_config_in,
    active_config,
    list_configs,
    publish_config_in,
    scope_tenant,
)
from rspp.controlplane._core import ControlPlaneCore
from rspp.controlplane._errors import Conflict, InvalidRequest, NotFound
from rspp.controlplane._interface import compare_interfaces
from rspp.controlplane._policy import parse_policy
from rspp.controlplane._rbac import Principal, Role
from rspp.controlplane._registry import ModuleRecord, PipelineRecord, PreparedSpec
from rspp.controlplane._rollout import RolloutState
from rspp.spec import day_of


class RegistryOps(ControlPlaneCore):
    # -- registry (CP-01) ------------------------------------------------------------------
    async def publish(
        self, principal: Principal, spec_text: str, *, filename: str = "<api>",
        force: bool = False,
    ) -> tuple[PipelineRecord, bool]:
        await self.authorize(principal, Role.OPERATOR, "publish pipeline")
        # deprecated fields in their lifecycle phase on this control plane's day (F-163)
        prepared = await self.registry.prepare(spec_text, filename=filename,
                                               as_of=day_of(self.clock()))
        name = prepared.valid.name
        await self.guard_budget(principal, "publish", name,
                                f"{name}@{prepared.valid.version}", force=force)
        await self._check_interface(principal, prepared, filename)

        async def work(conn: AsyncConnection, now: int) -> tuple[PipelineRecord, bool]:
            await self.store.lock(conn, f"pipeline:{prepared.valid.name}")
            record, created = await self.registry.publish_in(
                conn, prepared, author=principal.key_id, now_ms=now
            )
            if created:
                await self.audit.append_in(
                    conn,
                    actor=principal.key_id,
                    action="pipeline.publish",
                    subject=f"{record.name}@{record.version}",
                    detail={"spec_hash": record.spec_hash, "modules": record.modules},
                )
            return record, created

        return await self._write(work, "publish")

    async def _check_interface(self, principal: Principal, prepared: PreparedSpec,
                               filename: str) -> None:
        """Refuse a breaking change of the pipeline's event interface without a major
        bump (F-028): audited ``publish.incompatible``, 409 ``incompatible_change``."""
        new = prepared.valid
        try:
            latest = await self.registry.get(new.name)
        except NotFound:
            return
        if latest.version == new.version or latest.spec_text is None:
            return  # republishing a version: the registry answers (same or refused)
        try:
            old = await self.registry.prepare(latest.spec_text, filename=filename,
                                              as_of=day_of(self.clock()))
        except InvalidRequest:
            # the latest version no longer compiles today (a deprecated field it used is
            # now refused, F-163): the new version is what replaces it
            return
        report = compare_interfaces(latest.version, old.valid.interface, new.version,
                                    new.interface)
        if report.allowed:
            return
        paths = [f"{c.path}: {c.message}" for c in report.breaking]
        await self.audit.append(actor=principal.key_id, action="publish.incompatible",
                                subject=f"{new.name}@{new.version}",
                                detail={"from": latest.version, "breaking": paths})
        raise Conflict(
            f"{new.name}@{new.version} breaks the event interface of {latest.version}: "
            + "; ".join(paths) + f"; restore them or bump the major version "
            f"(e.g. {_next_major(latest.version)})",
            field=report.breaking[0].path, code="incompatible_change")

    async def publish_module(
        self, principal: Principal, module_text: str
    ) -> tuple[ModuleRecord, bool]:
        await self.authorize(principal, Role.OPERATOR, "publish module")
        prepared = await self.registry.prepare_module(module_text)

        async def work(conn: AsyncConnection, now: int) -> tuple[ModuleRecord, bool]:
            await self.store.lock(conn, f"module:{prepared.name}")
            record, created = await self.registry.publish_module_in(
                conn, prepared, author=principal.key_id, now_ms=now
            )
            if created:
                await self.audit.append_in(
                    conn,
                    actor=principal.key_id,
                    action="module.publish",
                    subject=f"{record.name}@{record.version}",
                    detail={"content_hash": record.content_hash},
                )
            return record, created

        return await self._write(work, "publish module")

    async def list_pipelines(
        self, principal: Principal, name: str | None = None
    ) -> list[PipelineRecord]:
        await self.authorize(principal, Role.VIEWER, "list pipelines")
        return await self.registry.list(name)

    async def get_pipeline(
        self, principal: Principal, name: str, version: str | None
    ) -> PipelineRecord:
        await self.authorize(principal, Role.VIEWER, "get pipeline")
        return await self.registry.get(name, version)

    async def get_module(self, principal: Principal, name: str, version: str) -> ModuleRecord:
        await self.authorize(principal, Role.VIEWER, "get module")
        return await self.registry.get_module(name, version)

    # -- rollout (CP-09) -------------------------------------------------------------------
    async def rollout(
        self,
        principal: Principal,
        name: str,
        *,
        canary: str,
        percent: float,
        tenants: tuple[str, ...] = (),
        change: ChangeRecord | None = None,
        force: bool = False,
    ) -> RolloutState:
        await self.authorize(principal, Role.OPERATOR, "start rollout")
        await self.require_approval(principal, "rollout", f"pipeline:{name}", change)
        await self.guard_budget(principal, "rollout", name, name, force=force)

        async def work(conn: AsyncConnection, now: int) -> RolloutState:
            applied = await self.apply_change_in(conn, principal, change, now)
            return await self._rollout_in(conn, principal, name, canary, percent, tenants, now,
                                          applied)

        return await self._write(work, "rollout")

    async def _rollout_in(
        self,
        conn: AsyncConnection,
        principal: Principal,
        name: str,
        canary: str,
        percent: float,
        tenants: tuple[str, ...],
        now: int,
        detail: dict[str, Any] | None = None,
    ) -> RolloutState:
        """Set the canary and audit it (``detail``: more to record, e.g. a gate policy)."""
        await self.store.lock(conn, f"rollout:{name}")
        state = await self.rollouts.set_canary_in(
            conn, name, canary, percent, tenants, actor=principal.key_id, now_ms=now
        )
        await self.audit.append_in(
            conn,
            actor=principal.key_id,
            action="rollout.canary",
            subject=name,
            detail={
                "stable": state.stable_version,
                "canary": canary,
                "percent": percent,
                "tenants": list(tenants),
                "revision": state.revision,
                **(detail or {}),
            },
        )
        return state

    async def rollback(
        self, principal: Principal, name: str, *, to: str, change: ChangeRecord | None = None
    ) -> RolloutState:
        await self.authorize(principal, Role.OPERATOR, "rollback")
        await self.require_approval(principal, "rollback", f"pipeline:{name}", change)

        async def work(conn: AsyncConnection, now: int) -> RolloutState:
            await self.store.lock(conn, f"rollout:{name}")
            applied = await self.apply_change_in(conn, principal, change, now)
            before = await self.rollouts.state_in(conn, name)
            state = await self.rollouts.pin_in(conn, name, to, actor=principal.key_id, now_ms=now)
            await self.audit.append_in(
                conn,
                actor=principal.key_id,
                action="rollout.rollback",
                subject=name,
                detail={
                    "to": to,
                    "from_stable": before.stable_version if before else None,
                    "from_canary": before.canary_version if before else None,
                    "revision": state.revision,
                    **applied,
                },
            )
            return state

        return await self._write(work, "rollback")

    async def rollout_state(self, principal: Principal, name: str) -> RolloutState | None:
        await self.authorize(principal, Role.VIEWER, "read rollout")
        async with self.store.engine.connect() as conn:
            return await self.rollouts.state_in(conn, name)

    async def resolve_version(
        self, principal: Principal, name: str, *, tenant_id: str, session_id: str | None
    ) -> VersionResolution:
        """Which version a session of ``tenant_id`` would get now (rollout cohort)."""
        await self.authorize(principal, Role.VIEWER, "resolve version")
        principal.require_tenant(tenant_id)
        async with self.store.engine.connect() as conn:
            return await self.rollouts.resolve_in(
                conn,
                name,
                tenant_id=tenant_id,
                session_id=session_id,
                now_ms=self.clock(),
                ttl_ms=self.settings.snapshot_ttl_ms,
            )

    # -- versioned configs: policy, provider config, admission (CP-04, CP-05, F-102) -------
    async def publish_config(
        self,
        principal: Principal,
        kind: ConfigKind,
        scope: str,
        body: dict[str, Any],
        *,
        activate: bool = True,
    ) -> ConfigVersion:
        await self.authorize(principal, Role.OPERATOR, f"publish {kind.value}")
        if kind == ConfigKind.POLICY:
            parse_policy(body)
        elif kind == ConfigKind.ADMISSION:
            parse_quotas(body)
        if activate and (self.settings.require_approval
                         or self.settings.require_signed_changes):
            await self.require_approval(principal, f"{kind.value} activation",
                                        f"config:{kind.value}/{scope}", None,
                                        tenant_id=scope_tenant(scope))

        async def work(conn: AsyncConnection, now: int) -> ConfigVersion:
            await self.store.lock(conn, f"config:{kind.value}:{scope}")
            version = await publish_config_in(
                conn, kind, scope, body, author=principal.key_id, now_ms=now, activate=activate
            )
            await self.audit.append_in(
                conn,
                actor=principal.key_id,
                action=f"{kind.value}.publish",
                subject=scope,
                detail={
                    "version": version.version,
                    "hash": version.body_hash,
                    "activated": activate,
                },
                tenant_id=scope_tenant(scope),
            )
            return version

        return await self._write(work, f"publish {kind.value}")

    async def activate_config(
        self, principal: Principal, kind: ConfigKind, scope: str, version: int,
        *, change: ChangeRecord | None = None,
    ) -> ConfigVersion:
        """Roll a config forward or back to ``version`` (independent of pipelines)."""
        await self.authorize(principal, Role.OPERATOR, f"activate {kind.value}")
        await self.require_approval(principal, f"{kind.value} activation",
                                    f"config:{kind.value}/{scope}", change,
                                    tenant_id=scope_tenant(scope))

        async def work(conn: AsyncConnection, now: int) -> ConfigVersion | None:
            await self.store.lock(conn, f"config:{kind.value}:{scope}")
            applied = await self.apply_change_in(conn, principal, change, now,
                                                 tenant_id=scope_tenant(scope))
            await activate_config_in(conn, kind, scope, version, now_ms=now)
            await self.audit.append_in(
                conn,
                actor=principal.key_id,
                action=f"{kind.value}.activate",
                subject=scope,
                detail={"version": version, **applied},
                tenant_id=scope_tenant(scope),
            )
            return await active_config(conn, kind, scope, fall_back_to_default=False)

        return await self._write(work, f"activate {kind.value}")

    async def configs(
        self, principal: Principal, kind: ConfigKind, scope: str
    ) -> list[ConfigVersion]:
        await self.authorize(principal, Role.VIEWER, f"list {kind.value}")
        async with self.store.engine.connect() as conn:
            return await list_configs(conn, kind, scope)


def _next_major(version: str) -> str:
    head = version.lstrip("v").split(".")[0]
    return f"{int(head) + 1}.0.0" if head.isdigit() else "the next major version"
