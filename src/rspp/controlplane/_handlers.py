"""HTTP handlers: each receives an already authenticated, authorised and decoded :class:`Call`.

The dispatcher (``_app.py``) has checked the role and the tenant scope the route
table declares and decoded the path, query and body into their typed structs
before a handler runs; a handler only maps the call onto the control plane.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from rspp.contracts import (
    ProviderStatus,
    RuntimeHealth,
    SchemaDocument,
    SchemaIndex,
    UnknownSchemaVersion,
    schema_document,
    schema_index,
)
from rspp.controlplane._bundle import build_bundle, build_bundles
from rspp.controlplane._configs import ConfigKind
from rspp.controlplane._errors import InvalidRequest, NotFound
from rspp.controlplane._rbac import Principal, Role
from rspp.controlplane._replies import (
    AuditList,
    BundleList,
    ChangeList,
    ConfigList,
    HealthReply,
    HeartbeatReply,
    KeyReply,
    KeyRotationReply,
    LeaseRenewals,
    MigrationList,
    ModuleReply,
    OutcomeList,
    PipelineList,
    ProviderHealthReply,
    PublicKey,
    PublishReply,
    RegionIncidentReply,
    RegionList,
    RolloutReply,
    RuntimeList,
    SessionBundle,
    SignalList,
    SignerKeyList,
    TokenKeysReply,
    TokenReply,
    VerifyReply,
)
from rspp.controlplane._service import ControlPlane
from rspp.controlplane._sessions import SessionStatus
from rspp.controlplane._signing_keys import KeyStatus

ANONYMOUS = Principal(key_id="anonymous", role=Role.VIEWER, tenant_id="")


@dataclass(frozen=True, slots=True)
class Call:
    """One decoded request: who calls, validated path params, typed query and body."""

    cp: ControlPlane
    principal: Principal
    path: dict[str, str]
    query: Any
    body: Any
    #: set once the client went away (watched only for a request that asks to wait)
    gone: asyncio.Event | None = None


PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Text:
    """A handler result that is not JSON (Prometheus text)."""

    body: bytes
    media_type: str


@dataclass(frozen=True, slots=True)
class Reply:
    """A handler result with a status other than the route's default."""

    value: Any
    status: int


# ---- registry and rollouts ------------------------------------------------------------------
async def publish(c: Call) -> Reply:
    record, created = await c.cp.publish(c.principal, c.body.spec, filename=c.body.filename,
                                         force=c.body.force)
    return Reply(PublishReply(pipeline=record, created=created), 201 if created else 200)


async def publish_module(c: Call) -> Reply:
    record, created = await c.cp.publish_module(c.principal, c.body.module)
    return Reply(ModuleReply(module=record, created=created), 201 if created else 200)


async def list_pipelines(c: Call) -> PipelineList:
    return PipelineList(pipelines=await c.cp.list_pipelines(c.principal, c.query.name))


async def get_pipeline(c: Call) -> Any:
    return await c.cp.get_pipeline(c.principal, c.path["name"], c.path.get("version"))


async def get_module(c: Call) -> Any:
    return await c.cp.get_module(c.principal, c.path["name"], c.path["version"])


async def get_rollout(c: Call) -> RolloutReply:
    return RolloutReply(rollout=await c.cp.rollout_state(c.principal, c.path["name"]))


async def rollout(c: Call) -> RolloutReply:
    b = c.body
    if b.gated:
        state = await c.cp.gated_rollout(
            c.principal, c.path["name"], canary=b.canary, percent=b.percent, tenants=b.tenants,
            promote_after=b.promote_after, rollback_on_gates=b.rollback_on_gates,
            steps=b.steps, window_size=b.window, min_samples=b.min_samples, force=b.force)
        return RolloutReply(rollout=state)
    state = await c.cp.rollout(
        c.principal, c.path["name"], canary=b.canary, percent=b.percent, tenants=b.tenants,
        force=b.force,
    )
    return RolloutReply(rollout=state)


async def slo_report(c: Call) -> Any:
    return await c.cp.slo_report(c.principal, c.query.scope)


async def rollout_status(c: Call) -> Any:
    return await c.cp.rollout_status(c.principal, c.path["name"])


async def gate_samples(c: Call) -> Any:
    b = c.body
    return await c.cp.ingest_gate_samples(c.principal, b.runtime_id, b.samples, b.dropped)


async def metrics(c: Call) -> Text:
    return Text(await c.cp.gate_metrics_text(c.principal), PROMETHEUS)


async def rollback(c: Call) -> RolloutReply:
    return RolloutReply(rollout=await c.cp.rollback(c.principal, c.path["name"], to=c.body.to))


async def resolve(c: Call) -> Any:
    return await c.cp.resolve_version(
        c.principal, c.path["name"], tenant_id=c.query.tenant_id, session_id=c.query.session_id
    )


# ---- reviewed changes (F-165) ---------------------------------------------------------------
async def submit_change(c: Call) -> Reply:
    return Reply(await c.cp.submit_change(c.principal, c.body), 201)


async def list_changes(c: Call) -> ChangeList:
    return ChangeList(changes=await c.cp.list_changes(c.principal, c.query.status))


async def get_change(c: Call) -> Any:
    return await c.cp.get_change(c.principal, c.path["change_id"])


async def approve_change(c: Call) -> Any:
    return await c.cp.review_change(c.principal, c.path["change_id"], approve=True,
                                    note=c.body.note, signature=c.body.signature)


async def reject_change(c: Call) -> Any:
    return await c.cp.review_change(c.principal, c.path["change_id"], approve=False,
                                    note=c.body.note, signature=c.body.signature)


async def register_signer_key(c: Call) -> Reply:
    key, created = await c.cp.register_signer_key(c.principal, c.body.public_key)
    return Reply(key, 201 if created else 200)


async def signer_keys(c: Call) -> SignerKeyList:
    return SignerKeyList(keys=await c.cp.signer_keys(c.principal))


async def change_provenance(c: Call) -> Any:
    return await c.cp.change_provenance(c.principal, c.query.target)


async def apply_change(c: Call) -> Any:
    return await c.cp.apply_change(c.principal, c.path["change_id"])


# ---- versioned configs ----------------------------------------------------------------------
def config_publisher(kind: ConfigKind) -> Callable[[Call], Awaitable[Any]]:
    """Publish handler of one config kind (its body type is that kind's document)."""

    async def handler(c: Call) -> Any:
        body = c.body.body
        document = body if isinstance(body, dict) else msgspec.to_builtins(body)
        return await c.cp.publish_config(
            c.principal, kind, c.path["scope"], document, activate=c.body.activate
        )

    handler.__name__ = f"publish_{kind.value}"
    return handler


def config_lister(kind: ConfigKind) -> Callable[[Call], Awaitable[ConfigList]]:
    async def handler(c: Call) -> ConfigList:
        return ConfigList(versions=await c.cp.configs(c.principal, kind, c.path["scope"]))

    handler.__name__ = f"list_{kind.value}"
    return handler


async def activate_config(c: Call) -> Any:
    kind = ConfigKind(c.path["kind"])
    return await c.cp.activate_config(c.principal, kind, c.path["scope"], c.body.version)


# ---- runtimes and providers -----------------------------------------------------------------
async def register_runtime(c: Call) -> Any:
    b = c.body
    return await c.cp.register_runtime(
        c.principal,
        runtime_id=b.runtime_id,
        endpoint=b.endpoint,
        transport_kind=b.transport_kind,
        region=b.region,
        capacity=b.capacity,
        artifact_regions=b.artifact_regions,
        runtime_version=b.runtime_version,
        schema_version=b.schema_version,
    )


async def heartbeat(c: Call) -> HeartbeatReply:
    b = c.body
    instance, moved = await c.cp.heartbeat(
        c.principal, c.path["runtime_id"], health=RuntimeHealth(b.health), load=b.load, mode=b.mode
    )
    return HeartbeatReply(runtime=instance, migrations=moved)


async def failover(c: Call) -> MigrationList:
    moved = await c.cp.failover(c.principal, c.path["runtime_id"], mode=c.body.mode)
    return MigrationList(migrations=moved)


async def deregister_runtime(c: Call) -> Any:
    return await c.cp.deregister_runtime(c.principal, c.path["runtime_id"])


async def list_runtimes(c: Call) -> RuntimeList:
    return RuntimeList(runtimes=await c.cp.runtimes(c.principal))


async def provider_health(c: Call) -> ProviderHealthReply:
    b = c.body
    version = await c.cp.report_provider_health(
        c.principal,
        c.path["provider_id"],
        status=ProviderStatus(b.status),
        error_rate=b.error_rate,
        latency_p95_ms=b.latency_p95_ms,
        price_usd=b.price_usd,
        region=b.region,
    )
    return ProviderHealthReply(version=version)


async def get_provider_health(c: Call) -> Any:
    return await c.cp.provider_health(c.principal)


# ---- sessions, tokens, leases ---------------------------------------------------------------
async def route(c: Call) -> Any:
    b = c.body
    return await c.cp.route_session(
        c.principal,
        tenant_id=b.tenant_id,
        pipeline_name=b.pipeline_name,
        session_id=b.session_id,
        attributes=b.attributes,
        ttl_s=b.ttl_s,
        region_latency_ms=b.region_latency_ms,
    )


async def open_region_incident(c: Call) -> RegionIncidentReply:
    done = await c.cp.set_region_incident(c.principal, c.path["region"], reason=c.body.reason)
    return msgspec.convert(done, RegionIncidentReply)


async def close_region_incident(c: Call) -> RegionIncidentReply:
    done = await c.cp.set_region_incident(c.principal, c.path["region"], reason=None)
    return msgspec.convert(done, RegionIncidentReply)


async def list_regions(c: Call) -> RegionList:
    return msgspec.convert({"regions": await c.cp.regions(c.principal)}, RegionList)


async def session_status(c: Call) -> Any:
    return await c.cp.session_status(c.principal, c.path["session_id"])


async def report_status(c: Call) -> Any:
    status = SessionStatus(c.body.status)
    return await c.cp.report_status(c.principal, c.path["session_id"], status, c.body.summary,
                                    artifacts=c.body.artifacts, reason=c.body.reason)


async def session_summary(c: Call) -> Any:
    return await c.cp.session_summary(c.principal, c.path["session_id"])


async def session_signals(c: Call) -> SignalList:
    return SignalList(signals=await c.cp.signals(c.principal, c.path["session_id"]))


async def migrate(c: Call) -> Any:
    b = c.body
    released = (b.released_by.holder, b.released_by.epoch) if b.released_by else None
    return await c.cp.migrate(c.principal, c.path["session_id"], target=b.target,
                              force=b.force, released_by=released, wait_ms=b.wait_ms)


async def issue_token(c: Call) -> TokenReply:
    b = c.body
    if b.wait_ms and b.moved_from is None:
        raise InvalidRequest("wait_ms needs moved_from: the placement to wait to leave",
                             field="wait_ms")
    moved_from = (b.moved_from.runtime_id, b.moved_from.lease_epoch) if b.moved_from else None
    token, claims = await c.cp.issue_token(
        c.principal, session_id=c.path["session_id"], tenant_id=b.tenant_id, ttl_s=b.ttl_s,
        moved_from=moved_from, wait_ms=b.wait_ms, gone=c.gone)
    return TokenReply(token=token, claims=claims,
                      endpoint=await c.cp.runtime_endpoint(claims.runtime_id))


async def verify_token(c: Call) -> VerifyReply:
    return VerifyReply(valid=True, claims=c.cp.verify_token(c.body.token))


async def token_keys(c: Call) -> TokenKeysReply:
    ring = c.cp.signing
    active = ring.signing.verification_keys()
    public = [PublicKey(kid=k.kid, algorithm=k.algorithm, public_pem=k.public_pem,
                        state=k.state, created_at_ms=k.created_at_ms,
                        verify_until_ms=k.verify_until_ms) for k in ring.public_keys()]
    return TokenKeysReply(algorithm=active.algorithm,
                          public_pem=active.public_pem if active.algorithm == "EdDSA" else None,
                          kid=active.key_id, keys=public)


async def rotate_token_key(c: Call) -> KeyRotationReply:
    done = await c.cp.rotate_signing_key(c.principal, key_ref=c.body.key_ref,
                                         reason=c.body.reason)
    return KeyRotationReply(kid=done.get("kid"), previous_kid=done.get("previous_kid"),
                            previous_verifies_until_ms=done.get("previous_verifies_until_ms"),
                            reason=done.get("reason"), unchanged=bool(done.get("unchanged")))


async def token_key_status(c: Call) -> KeyStatus:
    return await c.cp.signing_key_status(c.principal)


async def outcomes(c: Call) -> OutcomeList:
    found = await c.cp.admission_outcomes(c.principal, c.path["tenant_id"])
    return OutcomeList(outcomes=found)


async def lease_acquire(c: Call) -> Any:
    b = c.body
    return await c.cp.acquire_lease(c.principal, c.path["session_id"], b.holder, b.ttl_ms)


async def lease_renew(c: Call) -> Any:
    b = c.body
    return await c.cp.renew_lease(c.principal, c.path["session_id"], b.holder, b.epoch, b.ttl_ms)


async def lease_renewals(c: Call) -> LeaseRenewals:
    b = c.body
    held = [(x.session_id, x.epoch) for x in b.leases]
    return LeaseRenewals(
        leases=await c.cp.renew_leases(c.principal, c.path["runtime_id"], held, b.ttl_ms)
    )


async def lease_rotate(c: Call) -> Any:
    return await c.cp.change_lease(c.principal, c.path["session_id"], revoke=False,
                                   force=c.query.force, wait_ms=c.query.wait_ms)


async def lease_revoke(c: Call) -> Any:
    return await c.cp.change_lease(c.principal, c.path["session_id"], revoke=True,
                                   force=c.query.force, wait_ms=c.query.wait_ms)


async def lease_release(c: Call) -> Any:
    b = c.body
    return await c.cp.release_lease(c.principal, c.path["session_id"], b.holder, b.epoch)


async def lease_authorize(c: Call) -> Any:
    b = c.body
    return await c.cp.authorize_lease(c.principal, c.path["session_id"], b.holder, b.epoch)


async def bundle(c: Call) -> Any:
    q = c.query
    return await build_bundle(
        c.cp,
        tenant_id=q.tenant_id,
        session_id=q.session_id,
        pipeline_name=q.pipeline_name,
        runtime_id=q.runtime_id,
    )


# ---- audit, keys, health --------------------------------------------------------------------
async def audit_entries(c: Call) -> AuditList:
    entries = await c.cp.audit_entries(
        c.principal, after_seq=c.query.after, limit=c.query.limit, tenant_id=c.query.tenant_id
    )
    return AuditList(entries=entries)


async def audit_verify(c: Call) -> Any:
    return await c.cp.audit_verify(c.principal)


async def create_key(c: Call) -> KeyReply:
    b = c.body
    key_id, secret = await c.cp.create_key(c.principal, Role(b.role), b.tenant_id)
    return KeyReply(key_id=key_id, key=secret, role=b.role, tenant_id=b.tenant_id)


# ---- schema registry (F-032) ----------------------------------------------------------------
async def list_schemas(c: Call) -> SchemaIndex:
    return schema_index()


async def get_schema(c: Call) -> SchemaDocument:
    try:
        return schema_document(c.path["schema_version"], c.path.get("contract_kind"))
    except UnknownSchemaVersion as exc:
        raise NotFound(str(exc), field="schema_version") from None


async def healthz(c: Call) -> HealthReply:
    return HealthReply(status="ok")


async def bundles(c: Call) -> BundleList:
    keys = [(x.tenant_id, x.session_id, x.pipeline_name) for x in c.body.sessions]
    built = await build_bundles(c.cp, c.path["runtime_id"], keys)
    return BundleList(bundles=[SessionBundle(session_id=sid, bundle=b) for sid, b in built])
