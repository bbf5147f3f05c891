"""The WebSocket endpoint's ports in ``rspp serve``: control-plane token check and sessions.

:class:`GovernedFactory` implements the transport's :class:`~rspp.transports.TokenVerifier`
(``await factory.verify(token, session_id)``) and
:class:`~rspp.transports.SessionFactory` (``await factory.open(session_id, grant, audio)``)
over :class:`GovernedSessions`: tokens verify locally with the control plane's key;
a session opens only with the control plane's record, its pipeline version and its
lease; it runs on the same live-session handle as the local factory
(:func:`rspp.runner.open_live_session`). A reconnect carrying a token of an older
lease epoch than the live session's is refused ``stale_epoch_reject`` (T12, recorded
in the session's timeline); one carrying a newer epoch replaces the copy still here at
once (the session moved away and back: that copy lost it), instead of resuming it.
"""

from __future__ import annotations

from typing import Any, cast

from rspp.controlplane import SessionClaims
from rspp.runner._assembly import AssembledSession, AssemblyOptions
from rspp.runner._live import open_live_session
from rspp.server._cplink import SessionRefused as Refused
from rspp.server._sessions import GovernedSessions
from rspp.spec import GraphDefinition
from rspp.transports import (
    CLOSE_CONFLICT,
    CLOSE_FORBIDDEN,
    CLOSE_UNAUTHORIZED,
    CLOSE_UNAVAILABLE,
    ClientAudio,
    LiveOptions,
    LiveSessionHandle,
    SessionGrant,
    SessionRefused,
    TokenRefused,
)

__all__ = ["GovernedFactory"]

_TOKEN_CODES = {"token_invalid": CLOSE_UNAUTHORIZED, "token_key_unknown": CLOSE_UNAUTHORIZED,
                "not_ready": CLOSE_UNAVAILABLE}
_OPEN_CODES = {"draining": CLOSE_UNAVAILABLE, "at_capacity": CLOSE_UNAVAILABLE,
               "control_plane_unreachable": CLOSE_UNAVAILABLE, "not_ready": CLOSE_UNAVAILABLE,
               "session_live": CLOSE_CONFLICT, "stale_epoch_reject": CLOSE_CONFLICT,
               "lease_refused": CLOSE_CONFLICT}


class GovernedFactory:
    """Token verifier and session factory of a runtime's WebSocket endpoint."""

    def __init__(self, sessions: GovernedSessions, live: LiveOptions | None = None) -> None:
        self.sessions = sessions
        self.live = live

    async def verify(self, token: str, session_id: str) -> SessionGrant:
        link = self.sessions.link
        try:
            link.verify(token, session_id)
        except Refused as exc:
            # signed by a key rotated in since the keys were fetched (F-169): fetch them
            # again; the check below (counted) then sees them
            if exc.code == "token_key_unknown":
                await link.refresh_keys()
        try:
            c = self.sessions.verify(token, session_id)
        except Refused as exc:
            raise TokenRefused(f"{exc.code}: {exc.message}",
                               _TOKEN_CODES.get(exc.code, CLOSE_FORBIDDEN)) from None
        served = self.sessions.active.get(session_id)
        if served is not None and c.lease_epoch > served.epoch:
            # the token is newer than this runtime's copy: the session moved away and back
            # (the copy lost it and has not noticed yet); the copy goes at once, the
            # connection opens a fresh one restored from the session's checkpoint
            await self.sessions.supersede(served, c.lease_epoch)
            served = None
        if served is not None and not served.stale_ingress(c.lease_epoch):
            raise TokenRefused(f"stale_epoch_reject: the token carries lease epoch "
                               f"{c.lease_epoch}, the session is at epoch {served.epoch}; "
                               "request a new token", CLOSE_CONFLICT)
        return SessionGrant(session_id=c.session_id, tenant_id=c.tenant_id,
                            lease_epoch=c.lease_epoch, pipeline_name=c.pipeline_name,
                            pipeline_version=c.pipeline_version, runtime_id=c.runtime_id,
                            expires_at_s=c.expires_at_s)

    async def open(self, session_id: str, grant: SessionGrant,
                   audio: ClientAudio) -> LiveSessionHandle:
        claims = SessionClaims(
            session_id=session_id, tenant_id=grant.tenant_id,
            runtime_id=grant.runtime_id or "", pipeline_name=grant.pipeline_name or "",
            pipeline_version=grant.pipeline_version or "", lease_epoch=grant.lease_epoch,
            issued_at_s=0, expires_at_s=grant.expires_at_s or 0)

        async def build(graph: GraphDefinition, options: AssemblyOptions) -> _Live:
            return _Live(await open_live_session(graph, options, live=self.live))

        try:
            served = await self.sessions.open(claims, build)
        except Refused as exc:
            raise SessionRefused(f"{exc.code}: {exc.message}",
                                 _OPEN_CODES.get(exc.code, CLOSE_FORBIDDEN)) from None
        return served.built.handle


class _Live:
    """A live-session handle as the governor sees it (its assembled session as ``core``)."""

    def __init__(self, handle: LiveSessionHandle) -> None:
        self.handle = handle

    @property
    def core(self) -> AssembledSession[Any]:
        return cast("AssembledSession[Any]", self.handle.core)

    async def close(self, reason: str) -> None:
        await self.handle.close(reason)

    async def wait_closed(self) -> None:
        await self.handle.wait_closed()
