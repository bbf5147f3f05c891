"""Phone calls over the carrier media-streams endpoint (F-085, F-089): a fake carrier speaking
the Twilio Media Streams protocol over a real WebSocket to a real uvicorn server.

The carrier streams mu-law 8 kHz in real time, plays the reply in real time and echoes
marks as it plays them (``clear`` drops what is unplayed), so playback truth, barge-in
and hang-ups are exercised as a real call would.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr

from rspp.client import CarrierCall
from rspp.transports import mulaw_decode, mulaw_encode

from .conftest import REPO, assert_replays, rspp

pytestmark = pytest.mark.integration

PHONE = REPO / "pipelines" / "examples" / "phone_assistant.yaml"


def to_mulaw(pcm16k: bytes) -> bytes:
    """16 kHz PCM16 -> 8 kHz mu-law, as the caller's phone line carries it."""
    x = np.frombuffer(pcm16k, dtype=np.int16)
    y = soxr.resample(x, 16000, 8000)
    return mulaw_encode(np.asarray(y, dtype=np.int16).tobytes())


def records(timeline: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in timeline.read_text().splitlines()]


def signals(lines: list[dict[str, Any]]) -> list[tuple[str, str | None, str | None]]:
    return [(ln["record"]["signal"], ln["record"].get("turn_id"), ln["record"].get("reason"))
            for ln in lines if ln["kind"] == "control_signal"]


async def hang_up_and_wait(call: CarrierCall, srv: Any, sid: str) -> None:
    """The caller hangs up; until the stream and the session (if still open) closed."""
    await call.hang_up()
    async with asyncio.timeout(30):
        await call.closed.wait()
    handle = srv.hub.sessions.get(sid)
    if handle is not None:
        async with asyncio.timeout(30):
            await handle.wait_closed()


async def test_a_call_hears_the_reply_presses_keys_and_hangs_up_mid_turn(serve, speech,
                                                                         issue) -> None:
    question = to_mulaw(speech["question"][0])
    async with serve(source=PHONE) as srv:
        sid = "call1"
        call = await CarrierCall.connect(srv.phone_url, {"token": issue(sid), "session_id": sid})
        call.start_line()
        call.say(question)
        async with asyncio.timeout(90):
            # the reply plays to its end: the carrier echoed the turn's last mark
            await call.wait_for(lambda: len(call.stats.replies_played) >= 1)
        handle = srv.hub.sessions[sid]
        # a carrier has no message for the live `stats` event: the call makes none (each
        # would sort the session's egress lateness, once a second, for nothing)
        stats_made: list[object] = []
        make_stats = handle.transport.stats
        handle.transport.stats = lambda: stats_made.append(1) or make_stats()
        first = call.stats.replies_played[0].partition("#")[0]
        assert "weather" in handle.transport.turns[first].text.text
        assert call.stats.media_in > 25 and len(call.played) == call.stats.bytes_in
        assert call.stats.clears == 0

        # keypad: "5" is recorded and goes nowhere; "0" takes the conditional edge
        await call.dtmf("5")
        await call.dtmf("0")
        async with asyncio.timeout(60):
            await call.wait_for(lambda: len(call.stats.replies_played) >= 2)
        operator = call.stats.replies_played[1].partition("#")[0]
        assert operator != first and (
            handle.transport.turns[operator].text.text
            == "Please hold, an operator will answer shortly.")

        # a new question; hang up as soon as its reply is being heard
        heard = len(call.played)
        call.say(question)
        async with asyncio.timeout(60):
            await call.wait_for(lambda: len(call.played) > heard + 800)
        await call.hang_up()
        async with asyncio.timeout(30):
            await call.closed.wait()
        assert call.close_code == 1000
        async with asyncio.timeout(30):
            await handle.wait_closed()
        assert stats_made == []
    timeline = srv.factory.timeline_for(sid)
    assert timeline is not None
    lines = records(timeline)
    sig = signals(lines)
    # playback truth: started and completed follow the carrier's echoed marks
    assert ("playback_started", first, "carrier_mark") in sig
    assert ("playback_completed", first, "carrier_mark") in sig
    assert ("commit", first, None) in [(s, t, None) for s, t, _ in sig if s == "commit"]
    # the hang-up aborted the turn being heard, then the session ended cleanly
    last_turn = [t for s, t, _ in sig if s == "turn_open"][-1]
    assert last_turn not in (first, operator)
    assert [(s, r) for s, t, r in sig if t == last_turn and s == "abort"] == [
        ("abort", "session_end")]
    assert sig[-1][0] == "ended" and sig[-1][2] == "call_ended:stop"
    # the keypresses are control events of the event stream; "5" was recorded unrouted
    dtmf = [ln for ln in lines if ln["kind"] == "event_record"
            and ln["record"].get("edge_id") == "input.control"]
    assert len(dtmf) == 1 and dtmf[0]["record"]["turn_id"] == operator
    assert any("dtmf:5 unrouted" in (ln["record"].get("reason") or "") for ln in lines)
    # the recorded call replays to the same outcomes: the keypress turn opens at its recorded
    # point, the hang-up ends the last turn there too (turn plans may shift with the
    # VAD's live timing on a loaded machine, as for any live session: not asserted here)
    report = timeline.with_suffix(".replay.json")
    rspp("replay", str(timeline), "--spec", str(srv.spec), "--mode", "playback",
         "--report", str(report))
    divergences = json.loads(report.read_text())["divergences"]
    assert divergences["OUTCOME"] == 0 and divergences["AUTHORITY"] == 0, divergences


async def test_an_unrouted_keypress_replays_without_plan_divergence(serve, speech,
                                                                   issue) -> None:
    """A digit no ``input.control`` edge takes is a telemetry note beside the ingress
    frames; a replay (which does not reproduce it) must not see later records shifted:
    the spoken turn after it replays with the same plan."""
    async with serve(source=PHONE) as srv:
        sid = "call5"
        call = await CarrierCall.connect(srv.phone_url, {"token": issue(sid), "session_id": sid})
        call.start_line()
        call.say(to_mulaw(speech["question"][0]))
        await call.dtmf("5")  # while the question streams: before the turn's plan
        async with asyncio.timeout(90):
            await call.wait_for(lambda: len(call.stats.replies_played) >= 1)
        await hang_up_and_wait(call, srv, sid)
    timeline = srv.factory.timeline_for(sid)
    assert timeline is not None
    lines = records(timeline)
    notes = [ln["record"] for ln in lines
             if ":transport_control:" in ln["record"].get("event_id", "")]
    assert len(notes) == 1 and "dtmf:5 unrouted" in (notes[0].get("reason") or "")
    assert "turn_open" in [s for s, _, _ in signals(lines)]
    assert_replays(timeline, srv.spec)


async def test_barge_in_while_the_caller_hears_the_reply_gets_clear(serve, speech,
                                                                    issue) -> None:
    question = to_mulaw(speech["question"][0])
    interrupt = to_mulaw(speech["interrupt"][0])
    async with serve(source=PHONE) as srv:
        sid = "call2"
        call = await CarrierCall.connect(srv.phone_url, {"token": issue(sid), "session_id": sid})
        call.start_line()
        call.say(question)
        async with asyncio.timeout(90):
            # 0.5 s of the reply was heard (played by the carrier, marks echoed)
            await call.wait_for(lambda: len(call.played) >= 4000)
        call.say(interrupt)
        async with asyncio.timeout(60):
            await call.wait_for(lambda: call.stats.clears >= 1)
        assert call.stats.dropped_by_clear >= 0
        await hang_up_and_wait(call, srv, sid)
    timeline = srv.factory.timeline_for(sid)
    assert timeline is not None
    sig = signals(records(timeline))
    first = next(t for s, t, _ in sig if s == "turn_open")
    cancelled = [r for s, t, r in sig if s == "playback_cancelled" and t == first]
    assert cancelled and "heard_frames:" in (cancelled[0] or "")
    assert ("barge_in", first) in [(s, t) for s, t, _ in sig]
    assert [r for s, t, r in sig if s == "abort" and t == first] == ["cancelled"]


def test_mulaw_tables_round_trip_and_speech_survives_the_phone_line(speech) -> None:
    codes = bytes(range(256))
    assert mulaw_encode(mulaw_decode(codes)) == codes.replace(b"\x7f", b"\xff")
    pcm = speech["question"][0]
    x = np.frombuffer(pcm, dtype=np.int16).astype(np.float64)
    y8 = np.frombuffer(mulaw_decode(to_mulaw(pcm)), dtype=np.int16)
    y = soxr.resample(y8, 8000, 16000).astype(np.float64)[: len(x)]
    # band-limited to 4 kHz and companded, the speech keeps most of its energy
    corr = float(np.dot(x[: len(y)], y) / np.sqrt(np.dot(x, x) * np.dot(y, y)))
    assert corr > 0.9


async def _refused(url: str, *messages: str | bytes) -> tuple[int | None, str]:
    """Send raw carrier messages on a fresh stream; the close code and reason."""
    import websockets

    async with websockets.connect(url, proxy=None, compression=None) as ws:
        for m in messages:
            try:
                await ws.send(m)
            except websockets.ConnectionClosed:
                break
        async with asyncio.timeout(30):
            await ws.wait_closed()
        return ws.close_code, ws.close_reason


def _start(token: str | None, sid: str, encoding: str = "audio/x-mulaw") -> str:
    params = {"session_id": sid} | ({"token": token} if token else {})
    return json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": "MZ1",
                       "start": {"streamSid": "MZ1", "callSid": f"CA-{sid}",
                                 "tracks": ["inbound"], "customParameters": params,
                                 "mediaFormat": {"encoding": encoding, "sampleRate": 8000,
                                                 "channels": 1}}})


async def test_bad_carrier_input_closes_that_stream_with_a_reason_and_no_other(serve, issue,
                                                                              speech) -> None:
    media = json.dumps({"event": "media", "media": {"payload": "//8="}})
    async with serve(source=PHONE) as srv:
        good = await CarrierCall.connect(srv.phone_url, {"token": issue("ok"),
                                                         "session_id": "ok"})
        good.start_line()
        url = srv.phone_url
        cases = {
            "media before start": (media,),
            "not json": ("{nope",),
            "unknown event before start": ('{"event": "hello"}',),
            "no token": (_start(None, "b1"),),
            "bad token": (_start("not-a-token", "b2"),),
            "token of another session": (_start(issue("other"), "b3"),),
            "wrong format": (_start(issue("b4"), "b4", "audio/x-alaw"),),
            "bad base64": (_start(issue("b5"), "b5"),
                           json.dumps({"event": "media", "media": {"payload": "@@@"}})),
            "unknown event": (_start(issue("b6"), "b6"), '{"event": "dance"}'),
            "binary frame": (_start(issue("b7"), "b7"), b"\x00\x01"),
            "bad digit": (_start(issue("b8"), "b8"),
                          json.dumps({"event": "dtmf", "dtmf": {"digit": "12"}})),
        }
        closed = {}
        for name, msgs in cases.items():
            try:
                closed[name] = await _refused(url, *msgs)
            except TimeoutError:
                raise AssertionError(f"{name}: the stream was not closed") from None
        # every bad stream was closed with an application code and a reason naming it
        assert closed["media before start"] == (4400, "`media` before `start`")
        assert closed["not json"][0] == 4400 and "malformed" in closed["not json"][1]
        assert closed["unknown event before start"][0] == 4400
        assert closed["no token"][0] == 4401 and "token" in closed["no token"][1]
        assert closed["bad token"][0] == 4401
        assert closed["token of another session"][0] == 4403
        assert closed["wrong format"][0] == 4400 and "audio/x-alaw" in closed["wrong format"][1]
        assert closed["bad base64"] == (4400, "media.payload: media payload is not base64")
        assert closed["unknown event"][0] == 4400 and "event" in closed["unknown event"][1]
        assert closed["binary frame"][0] == 4400
        assert closed["bad digit"][0] == 4400 and "dtmf.digit" in closed["bad digit"][1]
        # the good call is untouched and still answers
        assert not good.closed.is_set() and not srv.hub.sessions["ok"].closed
        good.say(to_mulaw(speech["question"][0]))
        async with asyncio.timeout(90):
            await good.wait_for(lambda: len(good.stats.replies_played) >= 1)
        await good.hang_up()
        async with asyncio.timeout(30):
            await good.closed.wait()
    # sessions whose stream broke after start ended cleanly too
    for sid in ("b5", "b6", "b7", "b8"):
        timeline = srv.factory.timeline_for(sid)
        assert timeline is not None
        assert signals(records(timeline))[-1][0] == "ended"
