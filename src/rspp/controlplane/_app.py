"""The control-plane HTTP API (Starlette) with its OpenAPI document.

Errors are JSON ``{"error": {"code", "message", "field"}}``. Every endpoint but
``/healthz`` and ``/openapi.json`` needs ``Authorization: Bearer KEY`` and names
the least role it requires in the OpenAPI document.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rspp.contracts import ProviderStatus, RuntimeHealth
from rspp.controlplane._bundle import build_bundle
from rspp.controlplane._configs import parse_kind
from rspp.controlplane._errors import CPError, InvalidRequest
from rspp.controlplane._rbac import Principal, Role, parse_role
from rspp.controlplane._requests import (
    ActivateRequest,
    ConfigRequest,
    FailoverRequest,
    HeartbeatRequest,
    KeyRequest,
    LeaseRequest,
    MigrateRequest,
    ModuleRequest,
    ProviderHealthRequest,
    PublishRequest,
    RegisterRuntimeRequest,
    RollbackRequest,
    RolloutRequest,
    RouteRequest,
    StatusRequest,
    TokenRequest,
    VerifyRequest,
)
from rspp.controlplane._service import ControlPlane
from rspp.controlplane._sessions import parse_status
from rspp.errors import RSPPError

B = TypeVar("B")
logger = logging.getLogger("rspp.controlplane.http")
Handler = Callable[[Request, ControlPlane], Awaitable[Any]]


def _json(value: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(value), status_code=status, media_type="application/json")


def _error(exc: CPError) -> Response:
    return JSONResponse(exc.to_json(), status_code=exc.status)


async def _body(request: Request, kind: type[B]) -> B:
    raw = await request.body()
    try:
        return msgspec.json.decode(raw or b"{}", type=kind)
    except msgspec.ValidationError as exc:
        text = str(exc)
        raise InvalidRequest(f"invalid request body: {text}", field=_field_from(text)) from None
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}", field="body") from None


def _field_from(message: str) -> str:
    """Field path from a msgspec message ("... field `x`" and/or "at `$.a.b`")."""
    named = re.search(r"field `([^`]+)`", message)
    at = re.search(r"at `\$\.?([^`]*)`", message)
    parts = [p for p in ((at.group(1) if at else ""), (named.group(1) if named else "")) if p]
    return ".".join(parts) or "body"


async def _principal(request: Request, cp: ControlPlane) -> Principal:
    header = request.headers.get("authorization", "")
    key = header[7:].strip() if header.lower().startswith("bearer ") else None
    return await cp.keys.authenticate(key)


def _query(request: Request, name: str, *, required: bool = True) -> str | None:
    value = request.query_params.get(name)
    if required and not value:
        raise InvalidRequest(f"query parameter {name} is required", field=name)
    return value


def _int_query(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest(
            f"query parameter {name} must be an integer, got {raw!r}", field=name
        ) from None
    if value < 0:
        raise InvalidRequest(f"query parameter {name} must be >= 0, got {value}", field=name)
    return value


def _q(request: Request, name: str) -> str:
    value = _query(request, name)
    return value or ""


# ---- handlers ------------------------------------------------------------------------------
async def publish(r: Request, cp: ControlPlane) -> Response:
    body = await _body(r, PublishRequest)
    record, created = await cp.publish(await _principal(r, cp), body.spec, filename=body.filename)
    return _json({"pipeline": record, "created": created}, 201 if created else 200)


async def publish_module(r: Request, cp: ControlPlane) -> Response:
    body = await _body(r, ModuleRequest)
    record, created = await cp.publish_module(await _principal(r, cp), body.module)
    return _json({"module": record, "created": created}, 201 if created else 200)


async def list_pipelines(r: Request, cp: ControlPlane) -> Response:
    name = _query(r, "name", required=False)
    return _json({"pipelines": await cp.list_pipelines(await _principal(r, cp), name)})


async def get_pipeline(r: Request, cp: ControlPlane) -> Response:
    version = r.path_params.get("version")
    p = await _principal(r, cp)
    return _json(await cp.get_pipeline(p, r.path_params["name"], version))


async def get_rollout(r: Request, cp: ControlPlane) -> Response:
    return _json(
        {"rollout": await cp.rollout_state(await _principal(r, cp), r.path_params["name"])}
    )


async def rollout(r: Request, cp: ControlPlane) -> Response:
    body = await _body(r, RolloutRequest)
    state = await cp.rollout(
        await _principal(r, cp),
        r.path_params["name"],
        canary=body.canary,
        percent=body.percent,
        tenants=body.tenants,
    )
    return _json({"rollout": state})


async def rollback(r: Request, cp: ControlPlane) -> Response:
    body = await _body(r, RollbackRequest)
    return _json(
        {"rollout": await cp.rollback(await _principal(r, cp), r.path_params["name"], to=body.to)}
    )


async def resolve(r: Request, cp: ControlPlane) -> Response:
    p = await _principal(r, cp)
    p.require(Role.VIEWER, "resolve version")
    now = cp.clock()
    async with cp.store.engine.connect() as conn:
        resolution = await cp.rollouts.resolve_in(
            conn,
            r.path_params["name"],
            tenant_id=_q(r, "tenant_id"),
            session_id=_query(r, "session_id", required=False),
            now_ms=now,
            ttl_ms=cp.settings.snapshot_ttl_ms,
        )
    return _json(resolution)


async def publish_config(r: Request, cp: ControlPlane) -> Response:
    body = await _body(r, ConfigRequest)
    kind = parse_kind(r.path_params["kind"])
    version = await cp.publish_config(
        await _principal(r, cp), kind, r.path_params["scope"], body.body, activate=body.activate
    )
    return _json(version, 201)


async def activate_config(r: Request, cp: ControlPlane) -> Response:
    body = await _body(r, ActivateRequest)
    kind = parse_kind(r.path_params["kind"])
    return _json(
        await cp.activate_config(
            await _principal(r, cp), kind, r.path_params["scope"], body.version
        )
    )


async def list_configs(r: Request, cp: ControlPlane) -> Response:
    kind = parse_kind(r.path_params["kind"])
    return _json(
        {"versions": await cp.configs(await _principal(r, cp), kind, r.path_params["scope"])}
    )


async def register_runtime(r: Request, cp: ControlPlane) -> Response:
    b = await _body(r, RegisterRuntimeRequest)
    instance = await cp.register_runtime(
        await _principal(r, cp),
        runtime_id=b.runtime_id,
        endpoint=b.endpoint,
        transport_kind=b.transport_kind,
        region=b.region,
        capacity=b.capacity,
    )
    return _json(instance, 201)


async def heartbeat(r: Request, cp: ControlPlane) -> Response:
    b = await _body(r, HeartbeatRequest)
    instance, moved = await cp.heartbeat(
        await _principal(r, cp),
        r.path_params["runtime_id"],
        health=RuntimeHealth(b.health),
        load=b.load,
        mode=b.mode,
    )
    return _json({"runtime": instance, "migrations": moved})


async def failover(r: Request, cp: ControlPlane) -> Response:
    b = await _body(r, FailoverRequest)
    moved = await cp.failover(await _principal(r, cp), r.path_params["runtime_id"], mode=b.mode)
    return _json({"migrations": moved})


async def list_runtimes(r: Request, cp: ControlPlane) -> Response:
    return _json({"runtimes": await cp.runtimes(await _principal(r, cp))})


async def provider_health(r: Request, cp: ControlPlane) -> Response:
    b = await _body(r, ProviderHealthRequest)
    version = await cp.report_provider_health(
        await _principal(r, cp),
        r.path_params["provider_id"],
        status=ProviderStatus(b.status),
        error_rate=b.error_rate,
        latency_p95_ms=b.latency_p95_ms,
    )
    return _json({"version": version})


async def get_provider_health(r: Request, cp: ControlPlane) -> Response:
    (await _principal(r, cp)).require(Role.VIEWER, "read provider health")
    async with cp.store.engine.connect() as conn:
        return _json(await cp.routing.provider_health_in(conn, now_ms=cp.clock()))


async def route(r: Request, cp: ControlPlane) -> Response:
    b = await _body(r, RouteRequest)
    result = await cp.route_session(
        await _principal(r, cp),
        tenant_id=b.tenant_id,
        pipeline_name=b.pipeline_name,
        session_id=b.session_id,
        attributes=b.attributes,
        ttl_s=b.ttl_s,
    )
    return _json(result, 201)


async def session_status(r: Request, cp: ControlPlane) -> Response:
    return _json(await cp.session_status(await _principal(r, cp), r.path_params["session_id"]))


async def report_status(r: Request, cp: ControlPlane) -> Response:
    b = await _body(r, StatusRequest)
    info = await cp.report_status(
        await _principal(r, cp), r.path_params["session_id"], parse_status(b.status)
    )
    return _json(info)


async def session_signals(r: Request, cp: ControlPlane) -> Response:
    return _json(
        {"signals": await cp.signals(await _principal(r, cp), r.path_params["session_id"])}
    )


async def migrate(r: Request, cp: ControlPlane) -> Response:
    b = await _body(r, MigrateRequest)
    return _json(
        await cp.migrate(await _principal(r, cp), r.path_params["session_id"], target=b.target)
    )


async def issue_token(r: Request, cp: ControlPlane) -> Response:
    b = await _body(r, TokenRequest)
    token, claims = await cp.issue_token(
        await _principal(r, cp),
        session_id=r.path_params["session_id"],
        tenant_id=b.tenant_id,
        ttl_s=b.ttl_s,
    )
    return _json({"token": token, "claims": claims}, 201)


async def verify_token(r: Request, cp: ControlPlane) -> Response:
    b = await _body(r, VerifyRequest)
    (await _principal(r, cp)).require(Role.VIEWER, "verify token")
    return _json({"valid": True, "claims": cp.verify_token(b.token)})


async def token_keys(r: Request, cp: ControlPlane) -> Response:
    (await _principal(r, cp)).require(Role.VIEWER, "read token keys")
    keys = cp.token_keys
    return _json({"algorithm": keys.algorithm, "public_pem": keys.public_pem})


async def outcomes(r: Request, cp: ControlPlane) -> Response:
    p = await _principal(r, cp)
    return _json({"outcomes": await cp.admission_outcomes(p, r.path_params["tenant_id"])})


async def lease_acquire(r: Request, cp: ControlPlane) -> Response:
    b = await _body(r, LeaseRequest)
    change = await cp.acquire_lease(
        await _principal(r, cp), r.path_params["session_id"], b.holder, b.ttl_ms
    )
    return _json(change)


async def lease_renew(r: Request, cp: ControlPlane) -> Response:
    b = await _body(r, LeaseRequest)
    if b.epoch is None:
        raise InvalidRequest("epoch is required to renew a lease", field="epoch")
    lease = await cp.renew_lease(
        await _principal(r, cp), r.path_params["session_id"], b.holder, b.epoch, b.ttl_ms
    )
    return _json(lease)


async def lease_rotate(r: Request, cp: ControlPlane) -> Response:
    p = await _principal(r, cp)
    return _json(await cp.change_lease(p, r.path_params["session_id"], revoke=False))


async def lease_revoke(r: Request, cp: ControlPlane) -> Response:
    p = await _principal(r, cp)
    return _json(await cp.change_lease(p, r.path_params["session_id"], revoke=True))


async def deregister_runtime(r: Request, cp: ControlPlane) -> Response:
    p = await _principal(r, cp)
    return _json(await cp.deregister_runtime(p, r.path_params["runtime_id"]))


async def lease_authorize(r: Request, cp: ControlPlane) -> Response:
    b = await _body(r, LeaseRequest)
    if b.epoch is None:
        raise InvalidRequest("epoch is required to check authority", field="epoch")
    return _json(
        await cp.authorize_lease(
            await _principal(r, cp), r.path_params["session_id"], b.holder, b.epoch
        )
    )


async def bundle(r: Request, cp: ControlPlane) -> Response:
    p = await _principal(r, cp)
    p.require(Role.VIEWER, "read turn-start bundle")
    tenant = _q(r, "tenant_id")
    p.require_tenant(tenant)
    result = await build_bundle(
        cp,
        tenant_id=tenant,
        session_id=_q(r, "session_id"),
        pipeline_name=_q(r, "pipeline_name"),
        runtime_id=_query(r, "runtime_id", required=False),
    )
    return _json(result)


async def audit_entries(r: Request, cp: ControlPlane) -> Response:
    after = _int_query(r, "after", 0)
    limit = _int_query(r, "limit", 1000)
    return _json(
        {"entries": await cp.audit_entries(await _principal(r, cp), after_seq=after, limit=limit)}
    )


async def audit_verify(r: Request, cp: ControlPlane) -> Response:
    return _json(await cp.audit_verify(await _principal(r, cp)))


async def create_key(r: Request, cp: ControlPlane) -> Response:
    b = await _body(r, KeyRequest)
    key_id, secret = await cp.create_key(await _principal(r, cp), parse_role(b.role), b.tenant_id)
    return _json({"key_id": key_id, "key": secret, "role": b.role, "tenant_id": b.tenant_id}, 201)


async def healthz(r: Request, cp: ControlPlane) -> Response:
    return _json({"status": "ok"})


# (method, path, handler, least role or None for public, summary)
ROUTES: tuple[tuple[str, str, Handler, Role | None, str], ...] = (
    ("GET", "/healthz", healthz, None, "Liveness"),
    ("POST", "/v1/pipelines", publish, Role.OPERATOR, "Publish a PipelineSpec version"),
    ("GET", "/v1/pipelines", list_pipelines, Role.VIEWER, "List published versions"),
    ("GET", "/v1/pipelines/{name}", get_pipeline, Role.VIEWER, "Latest version"),
    ("GET", "/v1/pipelines/{name}/versions/{version}", get_pipeline, Role.VIEWER, "One version"),
    ("GET", "/v1/pipelines/{name}/rollout", get_rollout, Role.VIEWER, "Rollout state"),
    ("POST", "/v1/pipelines/{name}/rollout", rollout, Role.OPERATOR, "Canary rollout"),
    ("POST", "/v1/pipelines/{name}/rollback", rollback, Role.OPERATOR, "Rollback to a version"),
    ("GET", "/v1/pipelines/{name}/resolve", resolve, Role.VIEWER, "Version resolution snapshot"),
    ("POST", "/v1/modules", publish_module, Role.OPERATOR, "Publish a subgraph module"),
    (
        "POST",
        "/v1/configs/{kind}/{scope}",
        publish_config,
        Role.OPERATOR,
        "Publish a config version",
    ),
    ("POST", "/v1/configs/{kind}/{scope}/activate", activate_config, Role.OPERATOR, "Roll config"),
    ("GET", "/v1/configs/{kind}/{scope}", list_configs, Role.VIEWER, "Config versions"),
    ("POST", "/v1/runtimes", register_runtime, Role.OPERATOR, "Register a runtime instance"),
    ("GET", "/v1/runtimes", list_runtimes, Role.VIEWER, "Runtime instances"),
    ("POST", "/v1/runtimes/{runtime_id}/heartbeat", heartbeat, Role.OPERATOR, "Heartbeat"),
    ("DELETE", "/v1/runtimes/{runtime_id}", deregister_runtime, Role.OPERATOR, "Deregister"),
    ("POST", "/v1/runtimes/{runtime_id}/failover", failover, Role.OPERATOR, "Drain or migrate"),
    (
        "POST",
        "/v1/providers/{provider_id}/health",
        provider_health,
        Role.OPERATOR,
        "Provider health",
    ),
    ("GET", "/v1/providers/health", get_provider_health, Role.VIEWER, "Provider health snapshot"),
    ("POST", "/v1/sessions/route", route, Role.OPERATOR, "Route a new session"),
    ("GET", "/v1/sessions/{session_id}", session_status, Role.VIEWER, "Session status"),
    ("POST", "/v1/sessions/{session_id}/status", report_status, Role.OPERATOR, "Report status"),
    ("GET", "/v1/sessions/{session_id}/signals", session_signals, Role.VIEWER, "Control signals"),
    ("POST", "/v1/sessions/{session_id}/migrate", migrate, Role.OPERATOR, "Migrate a session"),
    (
        "POST",
        "/v1/sessions/{session_id}/token",
        issue_token,
        Role.OPERATOR,
        "Issue a session token",
    ),
    ("POST", "/v1/tokens/verify", verify_token, Role.VIEWER, "Verify a session token"),
    ("GET", "/v1/tokens/keys", token_keys, Role.VIEWER, "Token verification key"),
    ("GET", "/v1/tenants/{tenant_id}/outcomes", outcomes, Role.VIEWER, "Admission outcomes"),
    ("POST", "/v1/leases/{session_id}/acquire", lease_acquire, Role.OPERATOR, "Acquire a lease"),
    ("POST", "/v1/leases/{session_id}/renew", lease_renew, Role.OPERATOR, "Renew a lease"),
    ("POST", "/v1/leases/{session_id}/rotate", lease_rotate, Role.OPERATOR, "Rotate a lease"),
    ("POST", "/v1/leases/{session_id}/revoke", lease_revoke, Role.OPERATOR, "Revoke a lease"),
    ("POST", "/v1/leases/{session_id}/authorize", lease_authorize, Role.VIEWER, "Check authority"),
    ("GET", "/v1/bundle", bundle, Role.VIEWER, "Turn-start snapshot bundle"),
    ("GET", "/v1/audit", audit_entries, Role.VIEWER, "Audit log"),
    ("GET", "/v1/audit/verify", audit_verify, Role.VIEWER, "Verify the audit hash chain"),
    ("POST", "/v1/keys", create_key, Role.ADMIN, "Create an API key"),
)


def openapi_document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    error = {"$ref": "#/components/schemas/Error"}
    for method, path, handler, role, summary in ROUTES:
        op: dict[str, Any] = {
            "operationId": f"{handler.__name__}_{method.lower()}",
            "summary": summary,
            "responses": {
                "200": {"description": "OK"},
                "default": {
                    "description": "Error",
                    "content": {"application/json": {"schema": error}},
                },
            },
        }
        if role is not None:
            op["security"] = [{"bearer": []}]
            op["x-rspp-role"] = role.value
        params = [seg[1:-1] for seg in path.split("/") if seg.startswith("{")]
        if params:
            op["parameters"] = [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                for p in params
            ]
        paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "RSPP control plane", "version": "v1"},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message", "field"],
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                                "field": {"type": ["string", "null"]},
                            },
                        }
                    },
                }
            },
        },
    }


def _endpoint(cp: ControlPlane, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            result: Response = await handler(request, cp)
            return result
        except CPError as exc:
            return _error(exc)
        except RSPPError as exc:
            return _error(CPError(str(exc), code="error"))
        except Exception:  # the API boundary: report, never leak a traceback to the client
            logger.exception("unhandled error in %s %s", request.method, request.url.path)
            error = CPError("internal error; see the control-plane log", code="internal")
            error.status = 500
            return _error(error)

    return endpoint


def create_app(cp: ControlPlane) -> Starlette:
    """The ASGI app over an opened :class:`ControlPlane` (the caller owns its lifetime)."""
    doc = openapi_document()

    async def openapi(_: Request) -> Response:
        return JSONResponse(doc)

    async def http_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        code = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
        message = (
            f"no route {request.method} {request.url.path}; see /openapi.json"
            if status in (404, 405)
            else str(getattr(exc, "detail", exc))
        )
        return JSONResponse({"error": {"code": code, "message": message, "field": "path"}}, status)

    routes = [Route("/openapi.json", openapi, methods=["GET"])]
    routes += [Route(path, _endpoint(cp, h), methods=[m]) for m, path, h, _, _ in ROUTES]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error})
