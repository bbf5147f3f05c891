"""The transport conformance suite, phone adapter: a call as a carrier makes it.

Runs against a server's carrier endpoints (ours: ``rspp serve --twilio-auth-token T
--phone-number NUMBER=TENANT``): the voice webhook, signed with the carrier's auth token,
answers TwiML naming the media stream; :class:`~rspp.client.CarrierCall` opens it and
speaks (offline espeak-ng at 8 kHz mu-law, in real time, with the line's silence between
utterances), plays the reply in real time and echoes its marks. The categories are the
``transport`` profile's, as a phone call shows them: there is no transcript on a phone
line, so ``ingress_audio`` passes when the pipeline answers what it heard.
"""

from __future__ import annotations

import asyncio
import uuid
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import httpx

from rspp.client import CarrierCall
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

__all__ = ["check_phone"]


async def _mulaw(text: str) -> bytes:
    from rspp.transports import mulaw_encode

    return mulaw_encode(await spoken(text, 8000))


class _PhoneDriver:
    def __init__(self, url: str, auth_token: str, number: str) -> None:
        self.voice = url.rstrip("/") + "/v1/telephony/twilio/voice"
        self.token, self.number = auth_token, number
        self.call: CarrierCall | None = None
        self.speech: dict[str, bytes] = {}

    async def _post(self, token: str | None) -> httpx.Response:
        from rspp.server import twilio_signature

        form = {"CallSid": "CA" + uuid.uuid4().hex, "AccountSid": "AC" + "0" * 32,
                "From": "+15550199", "To": self.number, "CallStatus": "ringing"}
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if token is not None:
            headers["X-Twilio-Signature"] = twilio_signature(token, self.voice,
                                                             list(form.items()))
        async with httpx.AsyncClient(timeout=30) as http:
            return await http.post(self.voice, content=urlencode(form), headers=headers)

    async def _stream(self) -> tuple[str, dict[str, str]]:
        answer = await self._post(self.token)
        if answer.status_code != 200:
            raise Violation(f"the signed voice webhook answered {answer.status_code}: "
                            f"{answer.text[:200]}")
        stream = ET.fromstring(answer.text).find("./Connect/Stream")
        if stream is None or not stream.attrib.get("url"):
            raise Violation("the webhook's TwiML has no <Connect><Stream url>")
        params = {p.attrib["name"]: p.attrib["value"] for p in stream.findall("Parameter")}
        return stream.attrib["url"], params

    async def auth(self) -> str:
        unsigned, forged = await self._post(None), await self._post("not-the-auth-token")
        if unsigned.status_code not in (401, 403) or forged.status_code not in (401, 403):
            raise Violation(f"the voice webhook answered an unsigned call "
                            f"{unsigned.status_code} and a forged one {forged.status_code}")
        url, params = await self._stream()
        call = await CarrierCall.connect(url, {**params, "token": "not-a-session-token"})
        try:
            async with asyncio.timeout(30):
                await call.closed.wait()
        except TimeoutError:
            raise Violation("a media stream with an invalid token stayed open") from None
        finally:
            await call.close()
        if not 4400 <= (call.close_code or 0) < 4500:
            raise Violation(f"a media stream with an invalid token closed {call.close_code}")
        return (f"webhook {unsigned.status_code}/{forged.status_code}; stream closed "
                f"{call.close_code}")

    async def handshake(self) -> str:
        url, params = await self._stream()
        self.call = await CarrierCall.connect(url, params)
        self.call.start_line()
        return f"TwiML stream {url} ({', '.join(sorted(params))})"

    async def _open(self) -> CarrierCall:
        if self.call is None:
            await self.handshake()
        if self.call is None or self.call.closed.is_set():
            raise Violation("the media stream is closed")
        return self.call

    async def _until(self, what: str, ready: object) -> None:
        call = await self._open()
        try:
            async with asyncio.timeout(TURN_S):
                await call.wait_for(ready)  # type: ignore[arg-type]
        except TimeoutError:
            raise Violation(f"no {what} within {TURN_S:g} s") from None
        except ConnectionError as exc:
            raise Violation(f"{what}: {exc}") from None

    async def _say(self, text: str) -> None:
        call = await self._open()
        if text not in self.speech:
            self.speech[text] = await _mulaw(text)
        call.say(self.speech[text])

    async def ingress(self) -> str:
        await self._say(QUESTION)
        call = await self._open()
        await self._until("reply media after the caller spoke",
                          lambda: call.stats.media_in > 0)
        return "the caller's question was answered"

    async def egress(self) -> str:
        call = await self._open()
        if call.stats.media_in == 0:
            await self._say(QUESTION)
        await self._until("reply played to its end (its last mark echoed)",
                          lambda: len(call.stats.replies_played) >= 1)
        return (f"{call.stats.media_in} media messages ({call.stats.bytes_in / 8000:.1f} s "
                f"mu-law 8 kHz), marks {call.stats.marks_in}, reply played to its end")

    async def cancel(self) -> str:
        call = await self._open()
        heard = len(call.played)
        await self._say(QUESTION)
        await self._until("0.5 s of a second reply", lambda: len(call.played) >= heard + 4000)
        await self._say(INTERRUPT)
        await self._until("`clear` after the caller spoke over the reply",
                          lambda: call.stats.clears >= 1)
        return f"clear after barge-in ({call.stats.dropped_by_clear} unplayed frames dropped)"

    async def malformed(self) -> str:
        call = await self._open()
        await call.ws.send('{"event": "no_such_event", "sequenceNumber": "99"}')
        try:
            async with asyncio.timeout(30):
                await call.closed.wait()
        except TimeoutError:
            raise Violation("an unknown carrier event was neither refused nor answered"
                            ) from None
        if not 4400 <= (call.close_code or 0) < 4500 or not call.close_reason:
            raise Violation(f"an unknown carrier event closed the stream {call.close_code} "
                            f"{call.close_reason!r}")
        ok = await self._post(self.token)  # the server takes the next call
        if ok.status_code != 200:
            raise Violation(f"after a bad stream the next call's webhook got {ok.status_code}")
        return f"closed {call.close_code} ({call.close_reason}); the next call is answered"

    async def close(self) -> None:
        if self.call is not None:
            await self.call.close()


async def check_phone(url: str, profile: Profile, *, auth_token: str, number: str,
                      skip: tuple[str, ...] = ()) -> SuiteResults:
    """Run ``profile``'s categories against the phone (Twilio media streams) transport of
    the server at ``url``, calling ``number`` with the carrier's ``auth_token``."""
    d = _PhoneDriver(url, auth_token, number)
    checks: dict[str, Check] = {
        "auth": d.auth, "handshake": d.handshake, "ingress_audio": d.ingress,
        "egress_audio": d.egress, "cancel": d.cancel, "malformed_input": d.malformed,
    }
    try:
        return await run_checks(profile, f"phone transport at {url} ({number})", checks, skip,
                                timeout_s=TURN_S * 2)
    finally:
        await d.close()
