"""Live voice sessions over the WebSocket endpoint (F-084, F-086): question in, reply out."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from rspp.client import LiveClient
from rspp.transports import AudioOut, Clear, ReplyText, Stats, Transcript, TurnEvent

from .conftest import assert_replays

pytestmark = pytest.mark.integration

SILENCE_1S = bytes(32000)


async def converse(client: LiveClient, pcm: bytes, *, inserts: Any = ()) -> list[Any]:
    """Stream ``pcm`` + 1.5 s of silence in real time, then ``end``; every event until close."""
    got: list[Any] = []

    async def send() -> None:
        await client.stream_pcm(pcm + SILENCE_1S + SILENCE_1S[:16000], inserts=inserts)
        await client.end()

    sender = asyncio.create_task(send())
    async for item in client.events():
        got.append(item)
    await sender
    return got


async def test_spoken_question_gets_transcript_reply_and_paced_audio(serve, speech, issue) -> None:
    async with serve() as srv:
        async with await LiveClient.connect(srv.url("q1"), token=issue("q1")) as client:
            assert client.ready.session_id == "q1" and client.ready.frame_ms == 20
            got = await converse(client, speech["question"][0])
        assert client.close_code == 1000, client.close_reason
    finals = [e for e in got if isinstance(e, Transcript) and e.final]
    assert finals and "weather" in finals[0].text
    replies = [e for e in got if isinstance(e, ReplyText)]
    assert replies
    audio = [e for e in got if isinstance(e, AudioOut)]
    assert audio and all(len(f.data) == 640 for f in audio)  # 20 ms at 16 kHz
    states = [(e.turn_id, e.state) for e in got if isinstance(e, TurnEvent)]
    tid = states[0][0]
    assert [s for t, s in states if t == tid] == ["open", "commit", "close"]
    stats = [e for e in got if isinstance(e, Stats)][-1]
    assert stats.frames_out == len(audio) and stats.out_of_order_frames == 0
    timeline = srv.factory.timeline_for("q1")
    assert timeline is not None
    lines = [json.loads(x) for x in timeline.read_text().splitlines()]
    signals = [ln["record"]["signal"] for ln in lines if ln["kind"] == "control_signal"]
    assert "playback_started" in signals and "playback_completed" in signals
    assert signals[-1] == "ended" and "connected" in signals
    assert_replays(timeline, srv.spec)


async def test_barge_in_clears_aborts_the_first_turn_and_answers_the_second(serve, speech,
                                                                           issue) -> None:
    from rspp.client import TalkOptions, talk

    q, i = speech["question"][0], speech["interrupt"][0]
    got: list[Any] = []
    async with serve() as srv:
        async with await LiveClient.connect(srv.url("b1"), token=issue("b1"),
                                            msgpack=True) as client:
            # the interruption starts 0.5 s after the first reply audio arrived: while the
            # reply plays, whatever the load
            await talk(client, q, TalkOptions(barge_in=i, barge_in_after_s=0.5),
                       on_event=got.append)
    clears = [e for e in got if isinstance(e, Clear)]
    assert clears and clears[0].reason == "barge_in"  # the client is told the cause
    first = clears[0].turn_id
    ends = {(e.turn_id, e.state): e.reason for e in got if isinstance(e, TurnEvent)}
    assert (first, "abort") in ends and (first, "commit") not in ends
    later = [t for (t, s) in ends if s == "commit" and t != first]
    assert later, ends
    # the fence: no audio of the cancelled turn after its clear; the next turn plays
    idx = got.index(clears[0])
    assert not [e for e in got[idx:] if isinstance(e, AudioOut) and e.turn_id == first]
    assert [e for e in got[idx:] if isinstance(e, AudioOut) and e.turn_id in later]
    timeline = srv.factory.timeline_for("b1")
    assert timeline is not None
    assert_replays(timeline, srv.spec)


def _abi(lines: list[dict[str, Any]], edge: str) -> set[tuple[Any, ...]]:
    """The contract shape of the records on ``edge``: field names, classes, formats."""
    out = set()
    for ln in lines:
        rec = ln["record"]
        if ln["kind"] != "event_record" or rec.get("edge_id") != edge:
            continue
        payload = ln.get("payload") or {}
        data = payload.get("data")
        out.add((tuple(sorted(rec)), rec["lane"], rec["payload_class"], rec["event_scope"],
                 payload.get("type"), payload.get("sample_rate_hz"), payload.get("encoding"),
                 len(data) if isinstance(data, str) and edge == "input.audio" else None))
    return out


async def test_websocket_and_loopback_sessions_share_the_event_abi(serve, speech, issue,
                                                                   tmp_path) -> None:
    """F-086: the same spec over loopback (``rspp run``) and WebSocket: one Event ABI."""
    from rspp.contracts import RecordingLevel
    from rspp.runner import RunOptions, run_local
    from rspp.transports import write_wav

    q = tmp_path / "q.wav"
    write_wav(q, speech["question"][0], 16000)
    async with serve() as srv:
        async with await LiveClient.connect(srv.url("abi1"), token=issue("abi1"),
                                            sample_rate=16000) as client:
            await converse(client, speech["question"][0])
        loop_tl = tmp_path / "loopback.jsonl"
        await run_local(RunOptions(spec=srv.spec, input=q, timeline=loop_tl,
                                   record_level=RecordingLevel.L2))
    ws_tl = srv.factory.timeline_for("abi1")
    assert ws_tl is not None
    a = [json.loads(x) for x in ws_tl.read_text().splitlines()]
    b = [json.loads(x) for x in loop_tl.read_text().splitlines()]
    for edge in ("input.audio", "output.transcript", "output.transcript_partial"):
        assert _abi(a, edge) and _abi(a, edge) == _abi(b, edge), edge
    # audio replies: same record shape (sizes vary with the reply)
    shape = {x[:7] for x in _abi(a, "output.audio")}
    assert shape and shape == {x[:7] for x in _abi(b, "output.audio")}


async def test_typed_text_is_a_user_turn(serve, issue) -> None:
    async with serve() as srv:
        async with await LiveClient.connect(srv.url("txt1"), token=issue("txt1")) as client:
            await client.send_text("what is your name")
            got = await converse(client, b"")
    turns = [(e.turn_id, e.state) for e in got if isinstance(e, TurnEvent)]
    assert [s for _, s in turns] == ["open", "commit", "close"], turns
    assert [e for e in got if isinstance(e, ReplyText)]
    assert [e for e in got if isinstance(e, AudioOut)]


async def test_interrupt_cancels_the_speaking_turn_with_reason_user_cancel(serve, speech,
                                                                           issue) -> None:
    """The client's ``interrupt`` (F-035): the reply stops, cancel(user_cancel) is recorded."""
    q = speech["question"][0]
    got: list[Any] = []
    async with serve() as srv:
        async with await LiveClient.connect(srv.url("u1"), token=issue("u1")) as client:
            async def send() -> None:
                await client.stream_pcm(q + SILENCE_1S * 4)
                await client.end()

            sender = asyncio.create_task(send())
            async for item in client.events():
                got.append(item)
                if isinstance(item, AudioOut) and len(
                        [e for e in got if isinstance(e, AudioOut)]) == 1:
                    await client.interrupt()  # the first reply audio is a readiness signal
            await sender
    first = next(e for e in got if isinstance(e, TurnEvent) and e.state == "open").turn_id
    ends = {(e.turn_id, e.state): e.reason for e in got if isinstance(e, TurnEvent)}
    assert ends.get((first, "abort")) == "cancelled" and (first, "commit") not in ends
    # the client's audio of that turn is cleared, and it is told why (not a barge-in)
    assert [(e.turn_id, e.reason) for e in got if isinstance(e, Clear)] == [
        (first, "user_cancel")]
    timeline = srv.factory.timeline_for("u1")
    assert timeline is not None
    lines = [json.loads(x)["record"] for x in timeline.read_text().splitlines()]
    cancels = [r for r in lines if r.get("signal") == "cancel" and r.get("turn_id") == first
               and r.get("scope") == "turn"]
    assert [c["reason"].split(":")[0] for c in cancels] == ["user_cancel"]
    evidence = next(r for r in lines if "or02_evidence_schema_version" in r
                    and r["turn_id"] == first)
    assert evidence["cancel"]["reason"] == "user_cancel"
    # F-160 on a served session: the utterance's STT invocation is the turn's it opened
    assert [(i["modality"], i["provider_id"], i["outcome"])
            for i in evidence["provider_invocations"]][:2] == [
        ("stt", "pocketsphinx", "success"), ("llm", "local", "success")], evidence
    # each linked to its node's cancel scope under the turn's (the STT was not cancelled)
    assert [(i["node_id"], i["cancel_scope"]) for i in evidence["provider_invocations"]][:2] \
        == [("stt", f"{first}/stt"), ("llm", f"{first}/llm")], evidence
