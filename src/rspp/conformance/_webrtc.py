"""The transport conformance suite, WebRTC adapter: a browser-like peer of a served session.

Runs against a server with the control plane's session route and WebRTC signalling
(``POST /v1/sessions/{id}/webrtc``; ours: ``rspp serve`` with the ``rspp[webrtc]``
extra). :class:`~rspp.testing.WebRTCPeer` (aiortc) offers an Opus microphone track and
the ``rspp`` data channel, speaks in real time (offline espeak-ng at 48 kHz) and listens
to the reply track; the categories are the ``transport`` profile's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rspp.client import SessionRefusedError, SessionTarget, route_session
from rspp.conformance._suite import (
    INTERRUPT,
    QUESTION,
    TURN_S,
    Check,
    Violation,
    run_checks,
    spoken,
)

if TYPE_CHECKING:
    from rspp.conformance._profile import Profile
    from rspp.conformance._report import SuiteResults
    from rspp.testing import WebRTCPeer

__all__ = ["check_webrtc"]

RATE = 48000


class _RtcDriver:
    def __init__(self, url: str, api_key: str | None, tenant: str, pipeline: str) -> None:
        self.url, self.api_key, self.tenant, self.pipeline = url, api_key, tenant, pipeline
        self.peer: WebRTCPeer | None = None
        self.speech: dict[str, bytes] = {}

    async def _route(self) -> SessionTarget:
        try:
            return await route_session(self.url, tenant_id=self.tenant, api_key=self.api_key,
                                       pipeline_name=self.pipeline, timeout_s=30)
        except SessionRefusedError as exc:
            raise Violation(f"the session route: {exc}") from None

    async def auth(self) -> str:
        from rspp.testing import WebRTCPeer

        route = await self._route()
        peer = WebRTCPeer()
        try:
            resp = await peer.connect(self.url, route.session_id, "not-a-session-token")
        finally:
            await peer.close()
        if resp.status_code not in (401, 403):
            raise Violation(f"an offer with an invalid token got {resp.status_code}")
        return f"an offer with an invalid token: {resp.status_code}"

    async def handshake(self) -> str:
        from rspp.testing import WebRTCPeer

        route = await self._route()
        self.peer = WebRTCPeer()
        resp = await self.peer.connect(self.url, route.session_id, route.token or "")
        if resp.status_code != 200:
            raise Violation(f"the routed offer got {resp.status_code}: {resp.text[:200]}")
        ready = (await self._until("`ready` on the data channel",
                                   lambda p: p.of("ready")))[0]
        if ready.get("session_id") != route.session_id:
            raise Violation(f"`ready` names session {ready.get('session_id')!r}")
        return f"answer 200, `ready` for {ready['session_id']}"

    async def _open(self) -> WebRTCPeer:
        if self.peer is None:
            await self.handshake()
        if self.peer is None:  # pragma: no cover - handshake raises instead
            raise Violation("no session")
        return self.peer

    async def _until(self, what: str, cond: Callable[[WebRTCPeer], Any]) -> Any:
        peer = await self._open()
        try:
            return await peer.until(lambda: cond(peer), TURN_S)
        except TimeoutError:
            raise Violation(f"no {what} within {TURN_S:g} s") from None

    async def _say(self, text: str) -> None:
        peer = await self._open()
        if text not in self.speech:
            self.speech[text] = await spoken(text, RATE)
        peer.say(self.speech[text])

    async def ingress(self) -> str:
        await self._say(QUESTION)
        ev = (await self._until("final transcript",
                                lambda p: [e for e in p.of("transcript", final=True)
                                           if e.get("text")]))[0]
        return f"heard {ev['text']!r}"

    async def egress(self) -> str:
        peer = await self._open()
        if not peer.of("transcript", final=True):
            await self._say(QUESTION)
        end = (await self._until("turn commit", lambda p: p.of("turn", state="commit")
                                 or p.of("turn", state="abort")))[0]
        if end["state"] != "commit":
            raise Violation(f"the turn ended {end['state']} ({end.get('reason')})")
        await self._until("turn close", lambda p: p.of("turn", turn_id=end["turn_id"],
                                                       state="close"))
        await self._until("half a second of reply audio", lambda p: p.loud_after(0) >= 25)
        return f"{peer.loud_after(0)} loud reply frames (Opus), then commit and close"

    async def cancel(self) -> str:
        peer = await self._open()
        t0 = time.monotonic()
        await self._say(QUESTION)
        await self._until("a second reply playing", lambda p: p.loud_after(t0) >= 10)
        await self._say(INTERRUPT)
        clear = (await self._until("`clear` after the barge-in", lambda p: p.of("clear")))[0]
        await self._until("the interrupted turn's abort",
                          lambda p: p.of("turn", turn_id=clear["turn_id"], state="abort"))
        return f"clear and abort of {clear['turn_id']} after the barge-in ({peer.loud_after(0)} " \
               "loud frames in all)"

    async def malformed(self) -> str:
        peer = await self._open()
        peer.send({"type": "no_such_message"})
        err = (await self._until("error event", lambda p: p.of("error")))[0]
        if err.get("fatal") or not err.get("message"):
            raise Violation(f"an unknown message got {err}")
        return f"error {err.get('code')} (field {err.get('field')}); the session went on"

    async def close(self) -> None:
        if self.peer is not None:
            await self.peer.close()


async def check_webrtc(url: str, profile: Profile, *, tenant: str, pipeline: str,
                       api_key: str | None = None, skip: tuple[str, ...] = ()
                       ) -> SuiteResults:
    """Run ``profile``'s categories against the WebRTC transport of the server at ``url``."""
    d = _RtcDriver(url.rstrip("/"), api_key, tenant, pipeline)
    checks: dict[str, Check] = {
        "auth": d.auth, "handshake": d.handshake, "ingress_audio": d.ingress,
        "egress_audio": d.egress, "cancel": d.cancel, "malformed_input": d.malformed,
    }
    try:
        return await run_checks(profile, f"webrtc transport at {url} ({pipeline})", checks,
                                skip, timeout_s=TURN_S * 2)
    finally:
        await d.close()
