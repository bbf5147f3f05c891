"""The control-plane HTTP API (Starlette): one dispatcher over the route table.

For every request, in this order and in this one place (deny by default):

1. the method must be declared for the path (else 405 with ``Allow``);
2. authenticate from the ``Authorization`` header (401) before any byte of the body
   is read;
3. the key's role must reach the route's role and a tenant-scoped key may not use a
   fleet route (403);
4. path and query parameters decode into their typed structs (422);
5. the body is read up to the route's size limit (413) and decoded into its typed
   request (400 malformed, 422 invalid);
6. a tenant-scoped key may act only for its own tenant (403), the tenant taken from
   where the route table says;
7. the handler runs.

Errors are JSON ``{"error": {"code", "message", "field"}}``; a client error is one log
line with the request id, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from rspp.controlplane._errors import BodyTooLarge, CPError, Forbidden, NotFound
from rspp.controlplane._handlers import ANONYMOUS, Call, Reply, Text
from rspp.controlplane._openapi import openapi_document
from rspp.controlplane._rbac import Principal
from rspp.controlplane._requests import PATH_PARAMS
from rspp.controlplane._routes import ROUTES, Op
from rspp.controlplane._routes import Scope as RouteScope
from rspp.controlplane._service import ControlPlane
from rspp.controlplane._validate import check_spec_shape, decode_body, decode_params
from rspp.errors import RSPPError

logger = logging.getLogger("rspp.controlplane.http")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_PATH_STRUCTS: dict[str, type[Any]] = {}


def _json(
    value: Any, status: int, request_id: str, headers: dict[str, str] | None = None
) -> Response:
    all_headers = {"x-request-id": request_id, **(headers or {})}
    return Response(
        msgspec.json.encode(value),
        status_code=status,
        media_type="application/json",
        headers=all_headers,
    )


def _error_body(code: str, message: str, field: str | None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "field": field}}


def _path_struct(op: Op) -> type[Any]:
    """A struct of the route's path parameters (decoded like query parameters)."""
    struct = _PATH_STRUCTS.get(op.path)
    if struct is None:
        fields = [(name, PATH_PARAMS[name]) for name in op.path_params]
        struct = msgspec.defstruct(
            "Path_" + op.operation_id, fields, frozen=True, forbid_unknown_fields=True
        )
        _PATH_STRUCTS[op.path] = struct
    return struct


class _PathEndpoint:
    """Every method of one path: dispatch on the method, 405 with ``Allow`` otherwise."""

    def __init__(self, cp: ControlPlane, ops: dict[str, Op]) -> None:
        self.cp = cp
        self.ops = ops
        self.allow = ", ".join(sorted(ops))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response = await self.dispatch(request)
        await response(scope, receive, send)

    async def dispatch(self, request: Request) -> Response:
        given = request.headers.get("x-request-id", "")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        op = self.ops.get(request.method)
        if op is None:
            message = (
                f"{request.method} is not allowed on {request.url.path}; allowed: {self.allow} "
                "(see /openapi.json)"
            )
            _log_client_error(request, 405, "method_not_allowed", "method", request_id)
            return _json(
                _error_body("method_not_allowed", message, "method"),
                405,
                request_id,
                {"allow": self.allow},
            )
        try:
            value = await self.cp.run_to_end(self._run(op, request))
        except CPError as exc:
            _log_client_error(request, exc.status, exc.code, exc.field, request_id)
            return _json(exc.to_json(), exc.status, request_id)
        except RSPPError as exc:
            _log_client_error(request, 400, "error", None, request_id)
            return _json(_error_body("error", str(exc), None), 400, request_id)
        except ClientDisconnect:  # the caller went away mid-request (a killed runtime)
            _log_client_error(request, 400, "client_disconnected", "body", request_id)
            return _json(_error_body("client_disconnected", "the client disconnected before "
                                     "its request body arrived", "body"), 400, request_id)
        except Exception:  # the API boundary: a server bug, logged with its traceback
            logger.exception(
                "unhandled error in %s %s request_id=%s",
                request.method,
                request.url.path,
                request_id,
            )
            message = f"internal error; see the control-plane log (request id {request_id})"
            return _json(_error_body("internal", message, None), 500, request_id)
        if isinstance(value, Reply):
            return _json(value.value, value.status, request_id)
        if isinstance(value, Text):
            return Response(value.body, media_type=value.media_type,
                            headers={"x-request-id": request_id})
        return _json(value, op.status, request_id)

    async def _run(self, op: Op, request: Request) -> Any:
        cp = self.cp
        principal = ANONYMOUS
        if op.role is not None:
            principal = await _authenticate(request, cp)
            await cp.authorize(principal, op.role, f"{op.method} {op.path}")
            if op.scope == RouteScope.FLEET and principal.tenant_id is not None:
                raise Forbidden(
                    f"{op.method} {op.path} is a fleet operation; key {principal.key_id} is "
                    f"scoped to tenant {principal.tenant_id!r}. Use a fleet key "
                    "(`rspp cp keys create --role ROLE --fleet`)",
                    field="authorization",
                )
        path = dict(request.path_params)
        decode_params(path, _path_struct(op), "path")
        query = decode_params(dict(request.query_params), op.query, "query")
        body = None
        if op.body is not None:
            limit = (
                cp.settings.max_spec_bytes + 4096
                if op.body_limit == "spec"
                else cp.settings.max_body_bytes
            )
            body = decode_body(await _read_body(request, limit), op.body)
            if op.body_limit == "spec":
                for name in ("spec", "module"):
                    text = getattr(body, name, None)
                    if isinstance(text, str):
                        check_spec_shape(
                            text,
                            max_bytes=cp.settings.max_spec_bytes,
                            max_depth=cp.settings.max_spec_depth,
                            field=name,
                        )
        if not getattr(body, "wait_ms", 0):
            call = Call(cp=cp, principal=principal, path=path, query=query, body=body)
            if op.scope == RouteScope.TENANT and principal.tenant_id is not None:
                principal.require_tenant(await _tenant_of(op, call))
            return await op.handler(call)
        # a request that waits (a long poll) stops waiting once its client went away
        gone = asyncio.Event()
        watcher = asyncio.ensure_future(_disconnected(request, gone))
        try:
            call = Call(cp=cp, principal=principal, path=path, query=query, body=body,
                        gone=gone)
            if op.scope == RouteScope.TENANT and principal.tenant_id is not None:
                principal.require_tenant(await _tenant_of(op, call))
            return await op.handler(call)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)


async def _disconnected(request: Request, gone: asyncio.Event) -> None:
    """Set ``gone`` when the client of ``request`` (whose body was read) disconnects."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
    gone.set()


async def _authenticate(request: Request, cp: ControlPlane) -> Principal:
    header = request.headers.get("authorization", "")
    key = header[7:].strip() if header.lower().startswith("bearer ") else None
    return await cp.keys.authenticate(key)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(
            f"request body is {declared} bytes; the limit is {limit} bytes", field="body"
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"request body exceeds the limit of {limit} bytes", field="body")
        chunks.append(chunk)
    return b"".join(chunks)


async def _tenant_of(op: Op, call: Call) -> str:
    """The tenant a tenant-scoped route acts for, from where the route table says."""
    source = op.tenant
    if source is None:  # check_table guarantees a source for every TENANT route
        raise Forbidden(f"{op.method} {op.path} declares no tenant", field="authorization")
    if source.where == "path":
        return call.path[source.name]
    if source.where == "query":
        value = getattr(call.query, source.name)
        if value is None and source.optional and call.principal.tenant_id is not None:
            return call.principal.tenant_id  # left out: the key's own tenant
        return str(value)
    if source.where == "body":
        return str(getattr(call.body, source.name))
    if source.where == "token":
        return call.cp.verify_token(str(getattr(call.body, source.name))).tenant_id
    tenant = await call.cp.session_tenant(call.path[source.name])
    if tenant is None:
        raise NotFound(f"session {call.path[source.name]} does not exist", field=source.name)
    return tenant


def _log_client_error(
    request: Request, status: int, code: str, field: str | None, request_id: str
) -> None:
    logger.info(
        "%s %s -> %d %s field=%s request_id=%s",
        request.method,
        request.url.path,
        status,
        code,
        field,
        request_id,
    )


def create_app(cp: ControlPlane) -> Starlette:
    """The ASGI app over an opened :class:`ControlPlane` (the caller owns its lifetime)."""
    doc = msgspec.json.encode(openapi_document())
    by_path: dict[str, dict[str, Op]] = {}
    for op in ROUTES:
        by_path.setdefault(op.path, {})[op.method] = op

    async def openapi(request: Request) -> Response:
        if request.method != "GET":
            return Response(
                msgspec.json.encode(
                    _error_body("method_not_allowed", "only GET /openapi.json", "method")
                ),
                status_code=405,
                media_type="application/json",
                headers={"allow": "GET"},
            )
        return Response(doc, media_type="application/json")

    async def not_found(request: Request, exc: Exception) -> Response:
        message = f"no route {request.method} {request.url.path}; see /openapi.json"
        return _json(_error_body("not_found", message, "path"), 404, uuid.uuid4().hex)

    routes = [
        Route(
            "/openapi.json",
            openapi,
            methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"],
        )
    ]
    routes += [Route(path, _PathEndpoint(cp, ops)) for path, ops in by_path.items()]
    return Starlette(routes=routes, exception_handlers={404: not_found})
