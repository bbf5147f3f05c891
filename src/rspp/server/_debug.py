"""An operator's debug capture of a session it is not connected to (F-076).

``POST /v1/sessions/{session_id}/debug`` with ``{"seconds": S}`` (0-600; 0 ends a
capture) on the runtime serving the session: the session's timeline gets the kernel's
debug records for ``S`` seconds, exactly as when its own client sends the ``debug``
message, and no other session's does.

Why on the runtime, asking its control plane: the capture is state of the live
session, which only the runtime holding it has, and the operator reaches that runtime
directly (``GET /v1/sessions/{id}`` names it; in the embedded ``rspp serve`` it is the
same port). Who may is the control plane's to say, in its route table like every
route: the runtime relays the caller's ``Authorization`` header, unread, to
``POST /v1/sessions/{id}/debug/authorize`` (operator role, the session's tenant or a
fleet key; audited) before it reads a byte of the body, and answers that route's
401/403/404 as it came. Then: 404 naming ``session_id`` when this runtime does not
serve the session, 422 naming ``seconds`` for a bad value, 409 naming ``seconds`` when
the runtime's capture slots (``rspp serve --max-debug-captures``) are taken.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rspp.controlplane import CPError
from rspp.controlplane._validate import field_from
from rspp.server._sessions import GovernedSessions
from rspp.transports import InputRejected, read_body_within

__all__ = ["debug_routes"]

_LOG = logging.getLogger("rspp.server")

#: the request body is one small object
MAX_BODY = 1024


class DebugRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How long the session's debug events are captured (0 ends a capture now)."""

    seconds: Annotated[float, msgspec.Meta(ge=0, le=600)]


def _error(status: int, code: str, message: str, field: str | None) -> Response:
    _LOG.info("debug capture refused: %d %s (field %s)", status, code, field)
    return JSONResponse({"error": {"code": code, "message": message, "field": field}}, status)


async def _body(request: Request) -> DebugRequest | Response:
    raw = await read_body_within(request, MAX_BODY)
    if raw is None:
        return _error(413, "body_too_large", f"the body is limited to {MAX_BODY} bytes", "body")
    try:
        return msgspec.json.decode(raw, type=DebugRequest)
    except msgspec.ValidationError as exc:
        return _error(422, "invalid", f"{exc}; send {{\"seconds\": S}} with 0 <= S <= 600",
                      field_from(str(exc)))
    except msgspec.DecodeError as exc:
        return _error(400, "malformed", f"the body is not JSON ({exc})", "body")


def debug_routes(sessions: GovernedSessions) -> list[Route]:
    """The runtime's debug-capture route over its ``sessions``."""

    async def capture(request: Request) -> Response:
        sid = request.path_params["session_id"]
        header = request.headers.get("authorization")
        if not header:
            return _error(401, "unauthenticated", "send an operator key: "
                          "Authorization: Bearer KEY", "authorization")
        try:  # the route table decides, before the body is read
            grant = await sessions.link.client.authorize_debug(sid, header)
        except CPError as exc:
            return JSONResponse(exc.to_json(), exc.status)
        got = await _body(request)
        if isinstance(got, Response):
            return got
        served = sessions.active.get(sid)
        if served is None:
            where = f"runtime {grant.runtime_id}" if grant.runtime_id else "no runtime now"
            return _error(404, "not_found", f"session {sid!r} is not served by this runtime "
                          f"({sessions.link.runtime_id}); it is on {where}", "session_id")
        try:
            served.core.capture_debug(got.seconds)
        except InputRejected as exc:
            return _error(409, "conflict", str(exc), exc.field)
        _LOG.info("debug capture of %s for %gs by key %s", sid, got.seconds, grant.key_id)
        reply: dict[str, Any] = {"session_id": sid, "seconds": got.seconds,
                                 "runtime_id": sessions.link.runtime_id}
        return JSONResponse(reply)

    return [Route("/v1/sessions/{session_id}/debug", capture, methods=["POST"])]
