"""The OpenAPI 3.1 document, generated from the route table and its msgspec types.

Request bodies, path/query parameters and responses are the JSON Schemas of the
very structs the dispatcher decodes and the handlers return
(:func:`msgspec.json.schema_components`), so the document cannot drift from the
code. Each operation states its security, least role (``x-rspp-role``), tenant scope
(``x-rspp-scope``, ``x-rspp-tenant``) and every status it may answer; OpenAPI links
describe the publish -> rollout -> route -> token -> verify workflow.
"""

from __future__ import annotations

import types
import typing
from typing import Any

import msgspec

from rspp._version import __version__
from rspp.contracts import SCHEMA_VERSION
from rspp.controlplane._replies import ErrorReply
from rspp.controlplane._requests import PATH_PARAMS
from rspp.controlplane._routes import ROUTES, Op, Scope

REF = "#/components/schemas/{name}"
_ERROR_TEXT = {
    400: "Malformed request (not JSON, not UTF-8)",
    401: "Missing or unknown API key, or an invalid token",
    403: "The key's role or tenant scope does not allow this operation",
    404: "The named resource does not exist",
    409: "Conflicts with the current state (immutable version, lease held)",
    413: "Request body too large",
    422: "A field is invalid; `error.field` names it",
    429: "Admission control rejected or deferred the session",
    503: "No healthy runtime / dependency unavailable",
}
_SPEC_EXAMPLE = """name: simple-assistant
version: 1.0.0
template: voice_assistant
providers:
  stt: {primary: pocketsphinx}
  llm: {primary: local}
  tts: {primary: espeak}
"""
_BODY_EXAMPLES: dict[str, dict[str, Any]] = {
    "publish_post": {"spec": _SPEC_EXAMPLE, "filename": "simple.yaml"},
    "rollout_post": {"canary": "1.1.0", "percent": 10, "tenants": ["acme"]},
    "rollback_post": {"to": "1.0.0"},
    "gate_samples_post": {
        "runtime_id": "rt-1",
        "samples": [{
            "pipeline_name": "voice-assistant", "pipeline_version": "1.1.0",
            "tenant_id": "acme",
            "sample": {"session_id": "s-1", "turn_id": "s-1:turn:1", "turn_open_ms": 2,
                       "first_output_ms": 480, "end_to_end_ms": 900, "outputs_checked": 2,
                       "evidence_complete": True, "lifecycle_ok": True},
        }],
        "dropped": 0,
    },
    "route_post": {"tenant_id": "acme", "pipeline_name": "simple-assistant"},
    "register_runtime_post": {
        "runtime_id": "rt-1",
        "endpoint": "ws://127.0.0.1:8765/ws",
        "capacity": 100,
        "runtime_version": __version__,
        "schema_version": SCHEMA_VERSION,
    },
    "heartbeat_post": {"health": "healthy", "load": 3},
    "create_key_post": {"role": "operator"},
    "publish_policy_post": {"body": {"providers": {"stt": "pocketsphinx"}}, "activate": True},
    "publish_admission_post": {"body": {"max_concurrent_sessions": 10}},
    "publish_provider_config_post": {"body": {"stt": {"model": "small"}}},
    "issue_token_post": {"tenant_id": "acme", "ttl_s": 300},
    "lease_acquire_post": {"holder": "rt-1", "ttl_ms": 30000},
    "lease_renew_post": {"holder": "rt-1", "epoch": 1},
    "lease_authorize_post": {"holder": "rt-1", "epoch": 1},
}
#: operationId -> {link name: link object} (the stateful workflow)
_LINKS: dict[str, dict[str, Any]] = {
    "publish_post": {
        "GetVersion": {
            "operationId": "get_pipeline_get",
            "parameters": {"name": "$response.body#/pipeline/name"},
        },
        "Rollout": {
            "operationId": "rollout_post",
            "parameters": {"name": "$response.body#/pipeline/name"},
            "requestBody": {"canary": "$response.body#/pipeline/version", "percent": 10},
        },
        "Route": {
            "operationId": "route_post",
            "requestBody": {
                "tenant_id": "acme",
                "pipeline_name": "$response.body#/pipeline/name",
            },
        },
    },
    "rollout_post": {
        "GetRollout": {
            "operationId": "get_rollout_get",
            "parameters": {"name": "$response.body#/rollout/pipeline_name"},
        },
        "Route": {
            "operationId": "route_post",
            "requestBody": {
                "tenant_id": "acme",
                "pipeline_name": "$response.body#/rollout/pipeline_name",
            },
        },
    },
    "route_post": {
        "Status": {
            "operationId": "session_status_get",
            "parameters": {"session_id": "$response.body#/session_id"},
        },
        "Token": {
            "operationId": "issue_token_post",
            "parameters": {"session_id": "$response.body#/session_id"},
            "requestBody": {"tenant_id": "$response.body#/tenant_id"},
        },
        "Verify": {
            "operationId": "verify_token_post",
            "requestBody": {"token": "$response.body#/token"},
        },
    },
    "issue_token_post": {
        "Verify": {
            "operationId": "verify_token_post",
            "requestBody": {"token": "$response.body#/token"},
        },
    },
    "register_runtime_post": {
        "Heartbeat": {
            "operationId": "heartbeat_post",
            "parameters": {"runtime_id": "$response.body#/runtime_id"},
            "requestBody": {"health": "healthy"},
        },
    },
}


def _strip_none(kind: Any) -> Any:
    """``X | None`` -> ``X`` (a query parameter is absent, never null)."""
    args = typing.get_args(kind)
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0] if len(rest) == 1 else kind
    return kind


def _param_schema(kind: Any) -> dict[str, Any]:
    schema: dict[str, Any] = msgspec.json.schema(_strip_none(kind))
    schema.pop("$defs", None)
    return schema


def _parameters(op: Op) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": _param_schema(PATH_PARAMS[name]),
        }
        for name in op.path_params
    ]
    hints = typing.get_type_hints(op.query, include_extras=True)
    for field in msgspec.structs.fields(op.query):
        schema = _param_schema(hints[field.name])
        if not field.required and field.default is not msgspec.NODEFAULT:
            if field.default is not None:
                schema["default"] = field.default
        params.append(
            {"name": field.name, "in": "query", "required": field.required, "schema": schema}
        )
    return params


def _error_statuses(op: Op) -> list[int]:
    statuses = set(op.errors)
    if op.role is not None:
        statuses |= {401, 403}
    if op.body is not None:
        statuses |= {400, 413, 422}
    if op.path_params or msgspec.structs.fields(op.query):
        statuses.add(422)
    if op.path_params and op.scope == Scope.TENANT:
        statuses.add(404)
    return sorted(statuses)


def _ref(kind: Any, refs: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    return refs[kind]


def _operation(op: Op, refs: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    ok: dict[str, Any] = {
        "description": op.summary,
        "content": {op.media: {"schema": _ref(op.response, refs)}},
    }
    links = _LINKS.get(op.operation_id)
    if links:
        ok["links"] = links
    responses: dict[str, Any] = {str(op.status): ok}
    for extra in op.also:
        responses[str(extra)] = {**ok, "description": f"{op.summary} (already existed)"}
    for status in _error_statuses(op):
        responses[str(status)] = {
            "description": _ERROR_TEXT.get(status, "Error"),
            "content": {"application/json": {"schema": {"$ref": REF.format(name="ErrorReply")}}},
        }
    doc: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "responses": responses,
        "security": [{"bearer": []}] if op.role is not None else [],
        "x-rspp-scope": op.scope.value,
    }
    if op.role is not None:
        doc["x-rspp-role"] = op.role.value
    if op.tenant is not None:
        doc["x-rspp-tenant"] = f"{op.tenant.where}:{op.tenant.name}"
    params = _parameters(op)
    if params:
        doc["parameters"] = params
    if op.body is not None:
        required = any(f.required for f in msgspec.structs.fields(op.body))
        media: dict[str, Any] = {"schema": _ref(op.body, refs)}
        example = _BODY_EXAMPLES.get(op.operation_id)
        if example is not None:
            media["example"] = example
        doc["requestBody"] = {"required": required, "content": {"application/json": media}}
    return doc


def openapi_document() -> dict[str, Any]:
    """The whole document (deterministic; served at ``/openapi.json``)."""
    kinds: list[Any] = [ErrorReply]
    for op in ROUTES:
        for kind in (op.body, op.response):
            if kind is not None and kind not in kinds:
                kinds.append(kind)
    schemas, components = msgspec.json.schema_components(kinds, ref_template=REF)
    refs = dict(zip(kinds, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for op in ROUTES:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, refs)
    doc = {
        "openapi": "3.1.0",
        "info": {
            "title": "RSPP control plane",
            "version": "v1",
            "description": (
                "Registry, rollouts, configs, runtime fleet, session routes, tokens, leases "
                "and audit. Every operation but /healthz needs `Authorization: Bearer KEY`; "
                "`x-rspp-role` is the least role, `x-rspp-scope` says whether a tenant-scoped "
                "key may call it (fleet: no; tenant: only for its own tenant; any: yes)."
            ),
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": components,
        },
    }
    normalised: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(doc))
    return normalised
