"""Refusals and bad input on the WebSocket endpoint (F-088): a close code and a reason, or an
``error`` event naming the field; never a crash, never another session affected."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest
import websockets

from rspp.client import LiveClient, SessionRefusedError
from rspp.controlplane._tokens import TokenIssuer, TokenKeys
from rspp.transports import (
    CLOSE_BAD_REQUEST,
    CLOSE_FLOOD,
    CLOSE_FORBIDDEN,
    CLOSE_UNAUTHORIZED,
    SUBPROTOCOL_JSON,
    ErrorEvent,
    Stats,
    decode_server,
)

from .conftest import KEYS

pytestmark = pytest.mark.integration


def expired_token(session_id: str) -> str:
    past = TokenIssuer(KEYS, clock=lambda: 1_000_000_000_000)  # 2001
    return past.issue(session_id=session_id, tenant_id="acme", runtime_id="rt-1",
                      pipeline_name="voice-assistant", pipeline_version="1.0.0",
                      lease_epoch=1, ttl_s=60)[0]


@pytest.mark.parametrize("case", ["missing", "tampered", "expired", "other_key",
                                  "wrong_session", "bad_session_id"])
async def test_bad_tokens_are_refused_before_any_audio(serve, issue, case: str) -> None:
    sid = "t1"
    token: str | None = {
        "missing": None,
        "tampered": issue(sid)[:-4] + "AAAA",
        "expired": expired_token(sid),
        "other_key": issue(sid, keys=TokenKeys.hs256("another-secret-0123456789abcdefghij")),
        "wrong_session": issue("someone-else"),
        "bad_session_id": issue(sid),
    }[case]
    path_sid = "bad id!" if case == "bad_session_id" else sid
    code = {"wrong_session": CLOSE_FORBIDDEN,
            "bad_session_id": CLOSE_BAD_REQUEST}.get(case, CLOSE_UNAUTHORIZED)
    async with serve() as srv:
        with pytest.raises(SessionRefusedError) as err:
            await LiveClient.connect(srv.url(path_sid).replace(" ", "%20").replace("!", "%21"),
                                     token=token, token_in_query=case == "expired")
        assert srv.factory.opened == []  # refused before a session (or its audio) existed
    assert err.value.code == code, err.value.reason
    assert err.value.reason


@pytest.mark.parametrize("first", ['{"type": "start", "sample_rate": 8000}', '{"type": "end"}',
                                   "not json", '{"type": "start", "codec": "opus"}'])
async def test_a_bad_start_is_refused_with_the_field(serve, issue, first: str) -> None:
    async with serve() as srv:
        ws = await websockets.connect(srv.url("s1"), additional_headers=[
            ("Authorization", f"Bearer {issue('s1')}")], proxy=None)
        await ws.send(first)
        msgs = []
        with contextlib.suppress(websockets.ConnectionClosed):
            async for m in ws:
                msgs.append(decode_server(m))
        assert ws.close_code == CLOSE_BAD_REQUEST and ws.close_reason
        err = msgs[-1]
        assert isinstance(err, ErrorEvent) and err.fatal
        if "sample_rate" in first:
            assert err.field == "sample_rate"
        if "codec" in first:
            assert err.field == "codec"
        assert srv.factory.opened == []


async def test_bad_messages_get_error_events_and_the_session_lives_on(serve, issue) -> None:
    async with serve() as srv:
        other = await LiveClient.connect(srv.url("ok1"), token=issue("ok1"))
        ws = await websockets.connect(srv.url("bad1"), subprotocols=[SUBPROTOCOL_JSON],  # type: ignore[list-item]
                                      additional_headers=[("Authorization",
                                                           f"Bearer {issue('bad1')}")],
                                      proxy=None)
        await ws.send(json.dumps({"type": "start", "sample_rate": 24000}))
        errors: list[ErrorEvent] = []
        stats: list[Stats] = []

        async def read() -> None:
            with contextlib.suppress(websockets.ConnectionClosed):
                async for m in ws:
                    if isinstance(m, str):
                        ev = decode_server(m)
                        if isinstance(ev, ErrorEvent):
                            errors.append(ev)
                        elif isinstance(ev, Stats):
                            stats.append(ev)

        reader = asyncio.create_task(read())
        bad: list[Any] = [
            "{oops",                                        # malformed JSON
            json.dumps({"type": "dance"}),                  # unknown message type
            json.dumps({"type": "text", "txt": "hi"}),      # unknown field
            json.dumps({"type": "start"}),                  # format already declared
            b"\x01\x02\x03",                                # not PCM16
            bytes(64 * 1024),                               # oversized frame
        ]
        for m in bad:
            await ws.send(m)
        # the session still takes audio in the declared format (24 kHz -> 16 kHz frames)
        for _ in range(60):
            await ws.send(bytes(960))
            await asyncio.sleep(0.02)
        handle = srv.hub.sessions["bad1"]
        frames_before = handle.transport.media_samples
        assert frames_before >= 16000 * 1.0  # ~1.2 s of audio arrived, resampled to 16 kHz
        assert frames_before % 320 == 0      # in whole 20 ms frames
        # then a flood: 10 s of audio at once
        with contextlib.suppress(websockets.ConnectionClosed):  # closed mid-flood
            for _ in range(500):
                await ws.send(bytes(960))
        await asyncio.wait({reader}, timeout=30)
        assert ws.close_code == CLOSE_FLOOD, ws.close_reason
        fields = [(e.code, e.field) for e in errors]
        assert ("bad_message", "$") in fields
        assert ("bad_message", "type") in fields
        assert ("bad_message", "txt") in fields
        assert [f for c, f in fields if c == "bad_input"].count("type") == 1
        assert [f for c, f in fields if c == "bad_input"].count("audio") == 2
        assert errors[-1].code == "flood" and errors[-1].fatal and errors[-1].field == "audio"
        # the other session was not affected
        assert not srv.hub.sessions["ok1"].closed
        await other.stream_pcm(bytes(640 * 5))
        await other.end()
        got = [e async for e in other.events()]
        assert other.close_code == 1000 and any(isinstance(e, Stats) for e in got)
