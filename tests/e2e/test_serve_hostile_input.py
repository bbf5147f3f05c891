"""Hostile input over the network transports of a real ``rspp serve`` (NF-013).

One ``rspp serve`` process (the phone assistant, with the text chat published beside it,
embedded control plane on SQLite). On the WebSocket endpoint, a session of the text chat gets
invalid JSON, an unknown message type, a field of the wrong type, an unknown field, an
oversize control message, an oversize audio frame and an odd-length audio frame: each one is
an ``error`` event naming the field, and the SAME session then completes a typed turn. The
WebRTC data channel (with the extra installed) gets the same treatment. On the phone
media-stream endpoint (the carrier's protocol closes a stream on bad input; unknown fields
are allowed, carriers add them), invalid JSON, an unknown event, a missing field, a wrong
field type, invalid base64 in ``media``, an oversize payload, an oversize message and a
binary frame each close that call with 4400 (4413: over 64 KiB) and a reason naming the
field; its session ends cleanly and the runtime serves on. A ``start`` with a wrong media
format or a forged call/stream id (newlines, quotes) is refused 4400. The server's stderr
has a line per rejection (the first five of a session's 10 s window; the rest of the window
counted by field in one summary line), with no payload bytes echoed (nor names the client
made up) and no traceback. A client flooding the WebSocket with garbage gets an ``error``
for each message while the log stays bounded (a session is not closed for bad input: the
log is bounded, the answers are paced by the client's own reading, see
``LiveSessionHandle.reject``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib.util
import json
import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlencode

import httpx
import pytest
import websockets

from rspp.client import CarrierCall, route_session
from rspp.server import twilio_signature
from rspp.testing import WebRTCPeer, with_patient_budgets
from rspp.transports import SUBPROTOCOL_JSON, ErrorEvent, ReplyText, TurnEvent, decode_server

if TYPE_CHECKING:
    from tests.e2e.conftest import ServeProcess

pytestmark = pytest.mark.e2e

KEY = "hostile-input-admin-key"
AUTH = "carrier-auth-token-hostile-0123"
NUMBER = "+15550177"
PHONE = Path(__file__).resolve().parents[2] / "pipelines" / "examples" / "phone_assistant.yaml"
#: a marker inside every hostile payload: the server's log must never contain it
MARK = "ZQXJ7HOSTILE"


class Served(NamedTuple):
    srv: ServeProcess
    timelines: Path


@pytest.fixture(scope="module")
def served(module_serve_process: Callable[..., ServeProcess],
           tmp_path_factory: pytest.TempPathFactory, text_chat_spec: str) -> Served:
    d = tmp_path_factory.mktemp("hostile")
    phone = d / "phone.yaml"
    phone.write_text(with_patient_budgets(PHONE.read_text()))
    srv = module_serve_process(str(phone), "--db", f"sqlite+aiosqlite:///{d / 'cp.db'}",
                               "--api-key", KEY, "--twilio-auth-token", AUTH,
                               "--phone-number", f"{NUMBER}=acme",
                               "--timeline-dir", str(d / "timelines")).wait_ready()
    published = httpx.post(f"{srv.url}/v1/pipelines", timeout=30,
                           headers={"Authorization": f"Bearer {KEY}"},
                           json={"spec": text_chat_spec, "filename": "text_chat.yaml"})
    assert published.status_code == 201, published.text
    return Served(srv, d / "timelines")


#: (what is sent, the (code, field) of the error event the client gets)
WS_CASES: dict[str, tuple[str | bytes, tuple[str, str]]] = {
    "invalid json": ("{" + MARK, ("bad_message", "$")),
    "unknown type": (json.dumps({"type": MARK}), ("bad_message", "type")),
    "wrong field type": (json.dumps({"type": "text", "text": [MARK]}), ("bad_message", "text")),
    "unknown field": (json.dumps({"type": "text", "text": "hi", MARK: 1}),
                      ("bad_message", MARK)),
    "oversize message": (json.dumps({"type": "text", "text": MARK * 2000}),
                         ("bad_message", "$")),
    "oversize audio frame": (MARK.encode() * 4000, ("bad_input", "audio")),
    "odd-length audio frame": (MARK.encode() + b"\x01", ("bad_input", "audio")),
}


class WsSession(NamedTuple):
    session_id: str
    events: list[Any]
    close_code: int | None


async def _ws_session(served: Served) -> WsSession:
    target = await route_session(served.srv.url, tenant_id="acme", api_key=KEY,
                                 pipeline_name="text-chat")
    got: list[Any] = []
    async with _ws_connect(target.url, target.token) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000}))
        for msg, _ in WS_CASES.values():
            await ws.send(msg)
            # synchronise: every rejection is answered with its error event, in order
            while True:
                ev = decode_server(await ws.recv())
                got.append(ev)
                if isinstance(ev, ErrorEvent):
                    break
        await ws.send(json.dumps({"type": "text", "text": "what is your name"}))
        with contextlib.suppress(websockets.ConnectionClosed):
            async for m in ws:
                ev = decode_server(m)
                got.append(ev)
                if isinstance(ev, TurnEvent) and ev.state == "close":
                    await ws.send(json.dumps({"type": "end"}))
    return WsSession(target.session_id, got, ws.close_code)


def _ws_connect(url: str, token: str) -> Any:
    return websockets.connect(url, subprotocols=[SUBPROTOCOL_JSON],  # type: ignore[list-item]
                              additional_headers=[("Authorization", f"Bearer {token}")],
                              proxy=None, max_size=2**20)


#: bad messages a flooding client sends as fast as it can, then ends its session
FLOOD = 300


class Flood(NamedTuple):
    session_id: str
    errors: int
    close_code: int | None
    #: seconds from the first bad message sent to the session's close (the windows the
    #: server's log limit can have opened: at most one per 10 s of it, and the first)
    elapsed_s: float


async def _ws_flood(served: Served) -> Flood:
    """A client that sends only garbage (alternating invalid JSON and odd-length audio),
    without waiting for the answers, then reads them all and ends."""
    target = await route_session(served.srv.url, tenant_id="acme", api_key=KEY,
                                 pipeline_name="text-chat")
    loop = asyncio.get_running_loop()
    errors = 0
    async with _ws_connect(target.url, target.token) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000}))
        t0 = loop.time()
        for i in range(FLOOD):
            await ws.send("{" + MARK if i % 2 else MARK.encode() + b"\x01")
        while errors < FLOOD:  # synchronise: every bad message is answered
            if isinstance(decode_server(await ws.recv()), ErrorEvent):
                errors += 1
        await ws.send(json.dumps({"type": "end"}))
        with contextlib.suppress(websockets.ConnectionClosed):
            async for _ in ws:
                pass
    return Flood(target.session_id, errors, ws.close_code, loop.time() - t0)


def _log_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


def test_websocket_rejects_each_bad_message_and_the_same_session_completes_a_turn(
    served: Served, exercised: Exercised
) -> None:
    _, got, code = exercised.ws
    errors = [e for e in got if isinstance(e, ErrorEvent)]
    expected = [want for _, want in WS_CASES.values()]
    # the text-only pipeline refuses audio once (its own error) after the frame checks
    assert [(e.code, e.field) for e in errors] == expected, errors
    assert not any(e.fatal for e in errors)
    assert all(e.message for e in errors)
    assert [e.state for e in got if isinstance(e, TurnEvent)] == ["open", "commit", "close"]
    assert "name is" in "".join(e.text for e in got if isinstance(e, ReplyText))
    assert code == 1000
    assert httpx.get(f"{served.srv.url}/readyz").status_code == 200


#: data channel messages (JSON text only; audio is the media track), with their error
RTC_CASES: dict[str, tuple[str | bytes, tuple[str, str]]] = {
    "invalid json": ("{" + MARK, ("bad_message", "$")),
    "unknown type": (json.dumps({"type": MARK}), ("bad_message", "type")),
    "wrong field type": (json.dumps({"type": "text", "text": [MARK]}), ("bad_message", "text")),
    "oversize message": (json.dumps({"type": "text", "text": MARK * 2000}),
                         ("bad_message", "$")),
    "binary message": (MARK.encode() + b"\x01", ("bad_input", "$")),
}


async def _rtc_session(served: Served) -> tuple[str, list[dict[str, Any]]] | None:
    """The session id and the data channel's events (None: aiortc, the WebRTC extra, is
    not installed)."""
    if importlib.util.find_spec("aiortc") is None:
        return None
    target = await route_session(served.srv.url, tenant_id="acme", api_key=KEY,
                                 pipeline_name="text-chat")
    peer = WebRTCPeer()
    try:
        resp = await peer.connect(served.srv.url, target.session_id, target.token)
        assert resp.status_code == 200, resp.text
        await peer.until(lambda: peer.of("ready"))
        for n, (msg, _) in enumerate(RTC_CASES.values(), start=1):
            peer.send(msg)
            # synchronise: each rejection is answered (the microphone track's audio to
            # this text-only pipeline is refused once, field `audio`)
            await peer.until(lambda n=n: len([e for e in peer.of("error")
                                              if e["field"] != "audio"]) >= n)
        peer.send({"type": "text", "text": "what is your name"})
        await peer.until(lambda: peer.of("turn", state="close"))
        peer.send({"type": "end"})
        await peer.until(lambda: peer.of("session_end"))
    finally:
        await peer.close()
    return target.session_id, peer.events


def test_webrtc_data_channel_rejects_each_bad_message_and_the_session_completes_a_turn(
    exercised: Exercised
) -> None:
    if exercised.rtc is None:
        pytest.skip("WebRTC needs the extra: pip install 'rspp[webrtc]'")
    _, events = exercised.rtc

    def of(kind: str) -> list[dict[str, Any]]:
        return [e for e in events if e["type"] == kind]

    errors = [e for e in of("error") if e["field"] != "audio"]
    assert [(e["code"], e["field"]) for e in errors] == [w for _, w in RTC_CASES.values()]
    assert not any(e["fatal"] for e in of("error"))
    assert [e["state"] for e in of("turn")] == ["open", "commit", "close"]
    assert "name is" in "".join(e["text"] for e in of("reply_text"))
    assert of("session_end")[0]["reason"] == "client_end"


def _post_call(url: str, form: dict[str, str]) -> httpx.Response:
    headers = {"Content-Type": "application/x-www-form-urlencoded",
               "X-Twilio-Signature": twilio_signature(AUTH, url, list(form.items()))}
    return httpx.post(url, content=urlencode(form), headers=headers, timeout=30)


#: what a connected call sends after ``start``, the close code, what its reason names
PHONE_CASES: dict[str, tuple[str | bytes, int, str]] = {
    "invalid json": ("{" + MARK, 4400, "malformed"),
    "unknown event": (json.dumps({"event": MARK}), 4400, "(event)"),
    "missing field": (json.dumps({"event": "dtmf", "sequenceNumber": MARK}), 4400, "(dtmf)"),
    "wrong field type": (json.dumps({"event": "dtmf", "dtmf": {"digit": [MARK]}}), 4400,
                         "dtmf.digit"),
    "invalid base64": (json.dumps({"event": "media", "media": {"payload": "@@" + MARK}}),
                       4400, "media.payload"),
    "oversize media": (json.dumps({"event": "media", "media": {
        "payload": base64.b64encode(MARK.encode() * 1000).decode()}}), 4400, "media.payload"),
    "oversize message": (json.dumps({"event": "media", "media": {
        "payload": base64.b64encode(MARK.encode() * 8000).decode()}}), 4413, "exceeds"),
    "binary frame": (MARK.encode() + b"\x00", 4400, "binary"),
}


#: a ``start`` whose media format or call id is hostile (the ids go into the server's log
#: lines), the close code and what its reason names
PHONE_START_CASES: dict[str, tuple[dict[str, Any], int, str]] = {
    "media format": ({"mediaFormat": {"encoding": "audio/" + MARK, "sampleRate": 8000,
                                      "channels": 1}}, 4400, "audio/x-mulaw"),
    "forged call id": ({"callSid": "CA1\nrspp serve: stopped " + MARK}, 4400, "start.callSid"),
    "forged stream id": ({"streamSid": "MZ" + MARK + '"}'}, 4400, "start.streamSid"),
}


def _answer(served: Served, call_sid: str) -> tuple[str, dict[str, str]]:
    """The voice webhook's answer to a ringing call: the stream URL and its parameters."""
    voice = f"{served.srv.url}/v1/telephony/twilio/voice"
    answer = _post_call(voice, {"CallSid": call_sid, "AccountSid": "AC" + "0" * 32,
                                "From": "+15550199", "To": NUMBER, "CallStatus": "ringing"})
    assert answer.status_code == 200, answer.text
    stream = ET.fromstring(answer.text).find("./Connect/Stream")
    assert stream is not None
    return stream.attrib["url"], {p.attrib["name"]: p.attrib["value"]
                                  for p in stream.findall("Parameter")}


async def _phone_start(served: Served, n: int, start: dict[str, Any]) -> tuple[int | None, str]:
    call_sid = f"CA{n:032d}"
    url, params = _answer(served, call_sid)
    info = {"streamSid": f"MZ{n}", "callSid": call_sid, "tracks": ["inbound"],
            "customParameters": params,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            **start}
    async with websockets.connect(url, proxy=None) as ws:
        await ws.send(json.dumps({"event": "connected", "protocol": "Call"}))
        await ws.send(json.dumps({"event": "start", "sequenceNumber": "1",
                                  "streamSid": info["streamSid"], "start": info}))
        with contextlib.suppress(websockets.ConnectionClosed):
            async with asyncio.timeout(60):
                async for _ in ws:  # the server sends nothing before it closes
                    pass
    return ws.close_code, ws.close_reason


async def _phone_call(served: Served, n: int, bad: str | bytes) -> tuple[int | None, str, str]:
    call_sid = f"CA{n:032d}"
    url, params = _answer(served, call_sid)
    call = await CarrierCall.connect(url, params, call_sid=call_sid)
    try:
        await call.media(b"\xff" * 160)  # the call is up and takes audio
        await call.ws.send(bad)
        async with asyncio.timeout(60):
            await call.closed.wait()
    finally:
        await call.close()
    return call.close_code, call.close_reason, params["session_id"]


def _phone_calls(served: Served) -> dict[str, tuple[int | None, str, str]]:
    return {name: asyncio.run(_phone_call(served, n, bad))
            for n, (name, (bad, _, _)) in enumerate(PHONE_CASES.items(), start=1)}


def _phone_starts(served: Served) -> dict[str, tuple[int | None, str]]:
    return {name: asyncio.run(_phone_start(served, n, start))
            for n, (name, (start, _, _)) in enumerate(PHONE_START_CASES.items(), start=100)}


def test_phone_stream_refuses_a_start_with_a_bad_format_or_forged_ids_with_4400(
    served: Served, exercised: Exercised
) -> None:
    for name, (code, reason) in exercised.phone_start.items():
        _, want, named = PHONE_START_CASES[name]
        assert code == want and named in reason, (name, code, reason)
    assert httpx.get(f"{served.srv.url}/readyz").status_code == 200


def test_phone_stream_closes_each_bad_call_with_a_44xx_code_naming_the_field_and_serves_on(
    served: Served, exercised: Exercised, timeline_ended: Callable[..., Any]
) -> None:
    for name, (code, reason, sid) in exercised.phone.items():
        _, want, named = PHONE_CASES[name]
        assert code == want and named in reason, (name, code, reason)
        # the call's session ended cleanly (its last record is `ended`)
        asyncio.run(timeline_ended(served.timelines / f"{sid}.jsonl", 60))
    assert exercised.phone["invalid base64"][1] == "media.payload: media payload is not base64"
    assert httpx.get(f"{served.srv.url}/readyz").status_code == 200


class Exercised(NamedTuple):
    """What each transport's client saw: the WebSocket session's events and close code,
    the WebRTC data channel's session id and events (None without aiortc), each bad call's
    (close code, reason, session id), the flooding WebSocket client's."""

    ws: WsSession
    rtc: tuple[str, list[dict[str, Any]]] | None
    phone: dict[str, tuple[int | None, str, str]]
    phone_start: dict[str, tuple[int | None, str]]
    flood: Flood


@pytest.fixture(scope="module")
def exercised(served: Served) -> Exercised:
    """Every hostile case, once, on every transport of the module's server."""
    return Exercised(asyncio.run(asyncio.wait_for(_ws_session(served), 120)),
                     asyncio.run(asyncio.wait_for(_rtc_session(served), 120)),
                     _phone_calls(served), _phone_starts(served),
                     asyncio.run(asyncio.wait_for(_ws_flood(served), 120)))


@pytest.fixture(scope="module")
def stopped(served: Served, exercised: Exercised) -> tuple[int, str, str]:
    """The server stopped once every case ran: (exit status, stdout, stderr)."""
    return served.srv.terminate()


def test_the_server_log_accounts_for_each_rejection_without_payload_or_traceback(
    exercised: Exercised, stopped: tuple[int, str, str]
) -> None:
    code, out, err = stopped
    assert code == 0, err
    log = out + err
    assert "Traceback" not in log, log
    assert MARK not in log, log
    lines = _log_lines(err)
    sessions = [(exercised.ws.session_id, [want for _, want in WS_CASES.values()])]
    if exercised.rtc is not None:
        sessions.append((exercised.rtc[0], [want for _, want in RTC_CASES.values()]))
    for sid, cases in sessions:
        logged, held = _rejections(lines, sid)
        # the first LINES rejections of a session are a line each, in order; a later one
        # is a line of a later window, or counted by field in a summary line
        assert len(logged) + sum(held.values()) == len(cases), (sid, lines)
        for (code, field), line in zip(cases[:LINES], logged[:LINES], strict=True):
            assert f"({code})" in line and (field == MARK or f"{field}:" in line), (field, line)
        assert set(held) <= {field for _, field in cases[LINES:]}, held
    phone = [ln for ln in lines if "closing the stream (44" in ln]
    assert len(exercised.phone) == len(PHONE_CASES)
    wanted = [*PHONE_CASES.values(), *PHONE_START_CASES.values()]
    assert len(phone) == len(wanted), lines
    for line, (_, want, _) in zip(phone, wanted, strict=True):
        assert f"({want})" in line, line


#: rejection lines a session logs one by one in a window (``rspp serve``'s default)
LINES = 5
_REJECTED = re.compile(r"session (\S+): input rejected ")
_HELD = re.compile(r"session (\S+): (\d+) more input rejections not logged one by one \((.*)\)$")


def _rejections(lines: list[str], sid: str) -> tuple[list[str], Counter[str]]:
    """Session ``sid``'s rejection lines of its own, and the counts its summaries hold."""
    logged = [ln for ln in lines if (m := _REJECTED.search(ln)) and m.group(1) == sid]
    held: Counter[str] = Counter()
    for ln in lines:
        m = _HELD.search(ln)
        if m and m.group(1) == sid:
            counts = dict(part.rsplit(": ", 1) for part in m.group(3).split(", "))
            assert sum(map(int, counts.values())) == int(m.group(2)), ln
            held.update({k: int(n) for k, n in counts.items()})
    return logged, held


def test_a_client_flooding_bad_messages_gets_every_error_but_the_log_stays_bounded(
    exercised: Exercised, stopped: tuple[int, str, str]
) -> None:
    """Each bad message is answered (an ``error`` event) and the session ends normally;
    the log has the first LINES of each 10 s window a line each and the rest as summary
    lines counted by field - every rejection accounted for, no client bytes."""
    flood = exercised.flood
    assert flood.errors == FLOOD and flood.close_code == 1000
    code, out, err = stopped
    assert code == 0, err
    assert MARK not in out + err
    logged, held = _rejections(_log_lines(err), flood.session_id)
    assert len(logged) + sum(held.values()) == FLOOD
    assert set(held) <= {"$", "audio"}, held
    windows = 1 + int(flood.elapsed_s // 10)
    assert LINES <= len(logged) <= LINES * windows, (len(logged), flood.elapsed_s)
