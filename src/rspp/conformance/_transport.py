"""The transport conformance suite, WebSocket adapter: a served session as a client sees it.

Runs against any server that speaks the control plane's session route and the RSPP
WebSocket protocol (ours: ``rspp serve``; a third party's adapter behind the same API):
a session is routed for ``tenant``/``pipeline`` (a voice pipeline: STT in, TTS out), and
:class:`~rspp.client.LiveClient` drives it: a refused invalid token, ``ready``, speech in
(offline espeak-ng, streamed in real time), the spoken reply and its ``commit``, an
interrupt while a second reply plays, an unknown message, then ``end``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from rspp.client import LiveClient, SessionRefusedError, route_session
from rspp.conformance._suite import (
    QUESTION,
    TURN_S,
    Check,
    Violation,
    run_checks,
    spoken,
)
from rspp.transports import (
    PROTOCOL_VERSION,
    AudioOut,
    ErrorEvent,
    SessionEnd,
    Transcript,
    TurnEvent,
)

if TYPE_CHECKING:
    from rspp.conformance._profile import Profile
    from rspp.conformance._report import SuiteResults
    from rspp.transports import ServerEvent

__all__ = ["check_websocket"]

RATE = 16000


class _WsDriver:
    """One routed session of the server under test and the checks made on it."""

    def __init__(self, cp_url: str, api_key: str | None, tenant: str, pipeline: str) -> None:
        self.cp_url, self.api_key, self.tenant, self.pipeline = cp_url, api_key, tenant, pipeline
        self.client: LiveClient | None = None
        self.events: AsyncIterator[ServerEvent] | None = None
        self.session_id = ""
        self.pcm = b""

    async def _route(self) -> Any:
        return await route_session(self.cp_url, tenant_id=self.tenant, api_key=self.api_key,
                                   pipeline_name=self.pipeline)

    async def auth(self) -> str:
        target = await self._route()
        refused = []
        for label, token in (("an invalid token", "not-a-session-token"), ("no token", None)):
            try:
                client = await LiveClient.connect(target.url, token=token, sample_rate=RATE)
            except SessionRefusedError as exc:
                refused.append(f"{label}: {exc.code}")
                continue
            await client.close()
            raise Violation(f"a session with {label} got `ready` (deny by default)")
        return "refused " + ", ".join(refused)

    async def handshake(self) -> str:
        target = await self._route()
        try:
            client = await LiveClient.connect(target.url, token=target.token, sample_rate=RATE)
        except SessionRefusedError as exc:
            raise Violation(f"a routed session was refused: {exc}") from None
        self.client, self.events = client, client.events()
        r = client.ready
        if r.session_id != target.session_id:
            raise Violation(f"`ready` names session {r.session_id!r}, the route "
                            f"{target.session_id!r}")
        if r.protocol_version.split(".")[0] != PROTOCOL_VERSION.split(".")[0]:
            raise Violation(f"`ready` protocol {r.protocol_version}, expected "
                            f"{PROTOCOL_VERSION}")
        if r.sample_rate != RATE or r.frame_ms <= 0 or r.output_sample_rate <= 0:
            raise Violation(f"`ready` rates: in {r.sample_rate} (asked {RATE}), out "
                            f"{r.output_sample_rate}, frame {r.frame_ms} ms")
        self.session_id = r.session_id
        return f"session {r.session_id}, protocol {r.protocol_version}"

    async def _open(self) -> LiveClient:
        if self.client is None:
            await self.handshake()
        if self.client is None:  # pragma: no cover - handshake raises instead
            raise Violation("no session")
        return self.client

    async def until(self, pred: Callable[[ServerEvent], bool], what: str,
                    seen: list[ServerEvent] | None = None) -> ServerEvent:
        """The next event matching ``pred``; those before it go to ``seen``."""
        if self.events is None:
            raise Violation("no session")
        try:
            async with asyncio.timeout(TURN_S):
                async for ev in self.events:
                    if pred(ev):
                        return ev
                    if seen is not None:
                        seen.append(ev)
        except TimeoutError:
            raise Violation(f"no {what} within {TURN_S:g} s") from None
        raise Violation(f"the server closed the session before {what}")

    async def _ask(self) -> None:
        client = await self._open()
        if not self.pcm:
            self.pcm = await spoken(QUESTION, RATE)
        await client.stream_pcm(self.pcm + bytes(RATE // 2 * 2))
        await client.end_of_utterance()

    async def ingress(self) -> str:
        await self._ask()
        ev = await self.until(lambda e: isinstance(e, Transcript) and e.final and bool(e.text),
                              "final transcript")
        return f"heard {ev.text!r}"  # type: ignore[union-attr]

    async def egress(self) -> str:
        client = await self._open()
        if not self.pcm:  # ingress was skipped: ask now
            await self._ask()
        seen: list[ServerEvent] = []
        end = await self.until(lambda e: isinstance(e, TurnEvent) and e.state in
                               ("commit", "abort"), "turn commit", seen)
        audio = [e.data for e in seen if isinstance(e, AudioOut)]
        if end.state != "commit":  # type: ignore[union-attr]
            raise Violation(f"the turn ended {end.state} ({end.reason})")  # type: ignore[union-attr]
        if not audio or any(len(a) % 2 for a in audio):
            raise Violation(f"reply audio: {len(audio)} frame(s), PCM16 needs even lengths")
        await self.until(lambda e: isinstance(e, TurnEvent) and e.state == "close",
                         "turn close")
        secs = sum(len(a) for a in audio) / 2 / client.ready.output_sample_rate
        return f"{len(audio)} frames ({secs:.1f} s) of reply audio, then commit and close"

    async def cancel(self) -> str:
        client = await self._open()
        await self._ask()
        await self.until(lambda e: isinstance(e, AudioOut), "reply audio")
        await client.interrupt()
        end = await self.until(lambda e: isinstance(e, TurnEvent) and e.state in
                               ("commit", "abort"), "turn abort after the interrupt")
        if end.state != "abort":  # type: ignore[union-attr]
            raise Violation(f"after an interrupt during its reply the turn ended {end.state}")  # type: ignore[union-attr]
        after: list[ServerEvent] = []
        await self.until(lambda e: isinstance(e, TurnEvent) and e.state == "close",
                         "turn close", after)
        late = sum(isinstance(e, AudioOut) for e in after)
        if late:
            raise Violation(f"{late} reply audio frame(s) after the turn's abort")
        return f"abort ({end.reason}); no reply audio after it"  # type: ignore[union-attr]

    async def malformed(self) -> str:
        client = await self._open()
        await client.ws.send('{"type": "no_such_message"}')
        ev = await self.until(lambda e: isinstance(e, ErrorEvent), "error event")
        if not isinstance(ev, ErrorEvent) or ev.fatal or not ev.message:
            raise Violation(f"an unknown message got {ev!r}")
        await client.end()
        try:
            await self.until(lambda e: isinstance(e, SessionEnd), "session_end after `end`")
        except Violation:
            if client.close_code not in (1000, None):
                raise Violation(f"the session closed {client.close_code} "
                                f"{client.close_reason!r} after an unknown message") from None
        return f"error {ev.code} (field {ev.field}); the session went on and ended"

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()


async def check_websocket(cp_url: str, profile: Profile, *, tenant: str, pipeline: str,
                          api_key: str | None = None, skip: tuple[str, ...] = ()
                          ) -> SuiteResults:
    """Run ``profile``'s categories against the WebSocket transport of the server whose
    control plane is ``cp_url``."""
    d = _WsDriver(cp_url, api_key, tenant, pipeline)
    checks: dict[str, Check] = {
        "auth": d.auth, "handshake": d.handshake, "ingress_audio": d.ingress,
        "egress_audio": d.egress, "cancel": d.cancel, "malformed_input": d.malformed,
    }
    try:
        return await run_checks(profile, f"websocket transport at {cp_url} ({pipeline})",
                                checks, skip, timeout_s=TURN_S * 2)
    finally:
        await d.close()
