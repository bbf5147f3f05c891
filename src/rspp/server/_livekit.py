"""LiveKit rooms for routed sessions (F-083): ``POST /v1/livekit/sessions/{id}/join``.

With ``rspp serve --livekit-url URL --livekit-key K --livekit-secret S`` a session routed
with the attribute ``room`` (``POST /v1/sessions/route``, ``attributes: {room: NAME}``)
can be joined to that LiveKit room: the client presents the session token of its route;
the runtime verifies it (the same check as every transport), opens the session, joins
the room as an agent participant (:class:`~rspp.transports.RoomAgent`) and answers with
the room URL and a caller token for the client to join with. The session ends when the
caller leaves the room, the room closes or the session does; the agent leaves with it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from rspp.controlplane import CPError
from rspp.server._sessions import GovernedSessions
from rspp.transports import (
    ROOM_AUDIO,
    LiveKitConfig,
    RoomAgent,
    SessionHub,
    SessionRefused,
    TokenRefused,
    TokenVerifier,
    agent_token,
    caller_token,
)

__all__ = ["LiveKitRooms", "livekit_routes"]

_LOG = logging.getLogger("rspp.server.livekit")
JOIN_PATH = "/v1/livekit/sessions/{session_id}/join"
_SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_IDENTITY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._:@+-]{0,127}$")
_MAX_BODY = 4096


def _error(status: int, code: str, message: str, field: str | None = None) -> Response:
    return JSONResponse({"error": {"code": code, "message": message, "field": field}}, status)


class LiveKitRooms:
    """The runtime's agents in LiveKit rooms, one per joined session."""

    def __init__(self, sessions: GovernedSessions, hub: SessionHub, verify: TokenVerifier,
                 cfg: LiveKitConfig) -> None:
        self.sessions, self.hub, self.verify, self.cfg = sessions, hub, verify, cfg
        self.agents: dict[str, RoomAgent] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def join(self, request: Request) -> Response:
        sid = str(request.path_params.get("session_id", ""))
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _error(401, "unauthorized", "missing session token: Authorization: Bearer "
                          "<token of the session's route>", "Authorization")
        if not _SESSION_ID.match(sid):
            return _error(400, "bad_request", "session id must be 1-128 of [A-Za-z0-9._:-]",
                          "session_id")
        try:
            grant = await self.verify(token.strip(), sid)
        except TokenRefused as exc:
            return _error(403 if exc.code == 4403 else 401, "token_refused", exc.reason,
                          "Authorization")
        if grant.session_id != sid:
            return _error(403, "token_refused", f"token is for session {grant.session_id}",
                          "Authorization")
        identity = await self._identity(request, sid)
        if isinstance(identity, Response):
            return identity
        try:
            record: Any = await self.sessions.link.client.request("GET", f"/v1/sessions/{sid}")
        except CPError as exc:
            return _error(503 if exc.code == "unavailable" else 502, exc.code, exc.message)
        room = str((record.get("attributes") or {}).get("room") or "")
        if not room:
            return _error(400, "bad_request", "the session's route names no room: route it "
                          "with attributes {\"room\": NAME}", "attributes.room")
        if sid in self.agents:
            return _error(409, "conflict", f"session {sid} is already in room "
                          f"{self.agents[sid].room_name}", "session_id")
        return await self._start(sid, grant, room, identity)

    async def _identity(self, request: Request, sid: str) -> str | Response:
        body = await request.body() if int(request.headers.get("content-length") or 0) else b""
        if len(body) > _MAX_BODY:
            return _error(413, "too_large", f"body over {_MAX_BODY} bytes", "body")
        identity = f"caller-{sid}"[:128]
        if body:
            try:
                doc = json.loads(body)
            except ValueError:
                return _error(400, "bad_request", "the body is not JSON", "body")
            value = doc.get("identity") if isinstance(doc, dict) else None
            if value is not None:
                if not isinstance(value, str) or not _IDENTITY.match(value):
                    return _error(400, "bad_request", "identity: 1-128 of "
                                  "[A-Za-z0-9._:@+-]", "identity")
                identity = value
        return identity

    async def _start(self, sid: str, grant: Any, room: str, identity: str) -> Response:
        from livekit import rtc

        try:
            handle, _ = await self.hub.acquire(sid, grant, ROOM_AUDIO)
        except (SessionRefused, TokenRefused) as exc:
            return _error(409 if exc.code == 4409 else 503, "session_refused", exc.reason)
        agent = RoomAgent(handle, rtc.Room(), self.cfg, room_name=room, caller=identity)
        self.agents[sid] = agent
        try:
            await agent.join(agent_token(self.cfg, room, sid))
        except Exception as exc:
            _LOG.warning("session %s: cannot join room %s: %s", sid, room, exc)
            await agent.leave("join_failed")
            self._forget(sid)
            return _error(502, "livekit_unreachable", f"cannot join room {room}: {exc}"[:300])
        task = asyncio.get_running_loop().create_task(self._watch(sid, agent),
                                                      name=f"livekit-{sid}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        _LOG.info("session %s joined room %s (caller %s)", sid, room, identity)
        return JSONResponse({"session_id": sid, "room": room, "url": self.cfg.url,
                             "identity": identity,
                             "token": caller_token(self.cfg, room, identity)})

    async def _watch(self, sid: str, agent: RoomAgent) -> None:
        try:
            await agent.handle.wait_closed()
            await agent.leave(agent.handle.close_reason or "session_closed")
        finally:
            self._forget(sid)

    def _forget(self, sid: str) -> None:
        self.agents.pop(sid, None)
        self.hub.release(sid)


def livekit_routes(sessions: GovernedSessions, hub: SessionHub, verify: TokenVerifier,
                   cfg: LiveKitConfig) -> list[BaseRoute]:
    rooms = LiveKitRooms(sessions, hub, verify, cfg)
    route = Route(JOIN_PATH, rooms.join, methods=["POST"], name="livekit_join")
    return [route]
