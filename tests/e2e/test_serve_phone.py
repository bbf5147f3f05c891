"""A phone call into ``rspp serve`` (F-085, F-089): the carrier's voice webhook, then its media
stream, as a carrier does it (signed form POST -> TwiML -> Twilio Media Streams over a real
WebSocket), answered by the control-plane governed runtime in a child process.
"""

from __future__ import annotations

import asyncio
import json
import os
import wave
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import httpx
import numpy as np
import pytest
import soxr

from rspp.client import CarrierCall
from rspp.providers import AudioChunk
from rspp.providers.offline import PocketsphinxSTT, respond
from rspp.server import twilio_signature
from rspp.testing import with_patient_budgets
from rspp.transports import mulaw_decode, mulaw_encode

if TYPE_CHECKING:
    from tests.e2e.conftest import ServeProcess

pytestmark = pytest.mark.e2e

KEY = "phone-e2e-admin-key"
AUTH = "carrier-auth-token-0123456789"
NUMBER = "+15550100"
PHONE = Path(__file__).resolve().parents[2] / "pipelines" / "examples" / "phone_assistant.yaml"


def patient(tmp: Path) -> Path:
    """The phone assistant with room for a loaded machine (served turns enforce budgets)."""
    spec = tmp / "phone.yaml"
    spec.write_text(with_patient_budgets(PHONE.read_text()))
    return spec


def post_call(url: str, form: dict[str, str], *, token: str | None = AUTH,
              signed_url: str | None = None) -> httpx.Response:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if token is not None:
        headers["X-Twilio-Signature"] = twilio_signature(token, signed_url or url,
                                                         list(form.items()))
    return httpx.post(url, content=urlencode(form), headers=headers, timeout=30)


def read_mulaw(wav: Path) -> bytes:
    with wave.open(str(wav)) as w:
        rate, pcm = w.getframerate(), w.readframes(w.getnframes())
    x = soxr.resample(np.frombuffer(pcm, dtype=np.int16), rate, 8000)
    return mulaw_encode(np.asarray(x, dtype=np.int16).tobytes())


async def recognise(mulaw: bytes) -> set[str]:
    """What the offline recogniser hears in 8 kHz mu-law (upsampled to 16 kHz)."""
    pcm = np.frombuffer(mulaw_decode(mulaw), dtype=np.int16)
    pcm16 = np.asarray(soxr.resample(pcm, 8000, 16000), dtype=np.int16).tobytes()

    async def frames():  # type: ignore[no-untyped-def]
        for i in range(0, len(pcm16), 640):
            yield AudioChunk(pcm16[i:i + 640], 16000)

    stt = PocketsphinxSTT(language_model="general")
    out = [t async for t in stt.stream(frames(), invocation=stt.new_invocation())]
    return set(" ".join(t.text for t in out if t.is_final).split())


def test_a_phone_call_through_the_voice_webhook_is_answered_and_hangs_up_cleanly(
    serve_process: Callable[..., ServeProcess], spoken: dict[str, Path], tmp_path: Path
) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}"
    timelines = tmp_path / "timelines"
    srv = serve_process(str(patient(tmp_path)), "--db", db, "--api-key", KEY,
                        "--twilio-auth-token", AUTH, "--phone-number", f"{NUMBER}=acme",
                        "--timeline-dir", str(timelines)).wait_ready()
    voice = f"{srv.url}/v1/telephony/twilio/voice"
    form = {"CallSid": "CA" + "1" * 32, "AccountSid": "AC" + "0" * 32, "From": "+15550199",
            "To": NUMBER, "CallStatus": "ringing"}
    # deny by default: unsigned, wrongly signed, unknown number, missing field
    assert post_call(voice, form, token=None).status_code == 401
    wrong = post_call(voice, form, token="not-the-token")
    assert wrong.status_code == 403 and wrong.json()["error"]["field"] == "X-Twilio-Signature"
    unknown = post_call(voice, {**form, "To": "+15550999"})
    assert unknown.status_code == 404 and unknown.json()["error"]["field"] == "To"
    missing = post_call(voice, {k: v for k, v in form.items() if k != "From"})
    assert missing.status_code == 400 and missing.json()["error"]["field"] == "From"

    answer = post_call(voice, form)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/xml")
    stream = ET.fromstring(answer.text).find("./Connect/Stream")
    assert stream is not None
    url = stream.attrib["url"]
    assert url == srv.url.replace("http://", "ws://") + "/v1/telephony/twilio/stream"
    params = {p.attrib["name"]: p.attrib["value"] for p in stream.findall("Parameter")}
    assert set(params) == {"token", "session_id"}

    question = read_mulaw(spoken["question"])
    heard = asyncio.run(_call(url, params, question, form["CallSid"]))
    words = asyncio.run(recognise(heard["reply"]))
    # the caller heard the spoken reply: the recogniser finds its words in the phone audio
    said = set(respond("what is the weather like today").lower().replace(",", "")
               .replace(".", "").split())
    assert len(words & said) >= 3, (sorted(words), sorted(said))

    # the session: routed for tenant acme, governed, ended when the caller hung up
    auth = {"Authorization": f"Bearer {KEY}"}
    info = httpx.get(f"{srv.url}/v1/sessions/{params['session_id']}", headers=auth).json()
    assert info["tenant_id"] == "acme" and info["pipeline_name"] == "phone-assistant"
    assert info["attributes"]["call_sid"] == form["CallSid"]
    assert httpx.get(f"{srv.url}/readyz").status_code == 200  # the runtime serves on
    code, _, err = srv.terminate()
    assert code == 0, err
    lines = [json.loads(x) for x in
             (timelines / f"{params['session_id']}.jsonl").read_text().splitlines()]
    sig = [(ln["record"]["signal"], ln["record"].get("turn_id"), ln["record"].get("reason"))
           for ln in lines if ln["kind"] == "control_signal"]
    first = heard["first"]
    assert ("playback_completed", first, "carrier_mark") in sig
    assert ("commit", first) in [(s, t) for s, t, _ in sig]
    operator = heard["operator"]
    assert ("commit", operator) in [(s, t) for s, t, _ in sig]
    last = [t for s, t, _ in sig if s == "turn_open"][-1]
    assert [r for s, t, r in sig if s == "abort" and t == last] == ["session_end"]
    assert sig[-1][0] == "ended" and sig[-1][2] == "call_ended:stop"
    assert os.path.getsize(timelines / f"{params['session_id']}.jsonl") > 0


async def _call(url: str, params: dict[str, str], question: bytes,
                call_sid: str) -> dict[str, object]:
    call = await CarrierCall.connect(url, params, call_sid=call_sid)
    call.start_line()
    call.say(question)
    try:
        async with asyncio.timeout(120):
            await call.wait_for(lambda: len(call.stats.replies_played) >= 1)
        reply = bytes(call.played)
        first = call.stats.replies_played[0].partition("#")[0]
        await call.dtmf("0")  # the keypad menu: the conditional edge answers
        async with asyncio.timeout(60):
            await call.wait_for(lambda: len(call.stats.replies_played) >= 2)
        operator = call.stats.replies_played[1].partition("#")[0]
        # ask again and hang up while the answer is being heard
        heard = len(call.played)
        call.say(question)
        async with asyncio.timeout(120):
            await call.wait_for(lambda: len(call.played) > heard + 800)
        await call.hang_up()
        async with asyncio.timeout(30):
            await call.closed.wait()
        assert call.close_code == 1000, call.close_reason
    finally:
        await call.close()
    return {"reply": reply, "first": first, "operator": operator}
