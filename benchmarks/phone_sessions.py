"""Phone-call capacity: N fake carrier calls (separate processes, real sockets) -> one runtime.

The runtime (this process) serves the real telephony media-streams endpoint
(``/v1/telephony/twilio/stream``: mu-law tables, soxr 8 <-> 16 kHz, ``LiveTransport``
with acknowledged playback, session hub) on uvicorn at 127.0.0.1; each call runs the
sessions_capacity mock pipeline (ws_sessions.py's mock VAD -> STT -> LLM -> TTS):
1 s of speech every 3 s, the mock TTS streams 25 x 20 ms frames (16 kHz, one turn per
reply, the last frame ends it). Client processes (``--client``, ws_sessions' cheap
clients: one send timer, 10 phases of the period) open N carrier streams
(``connected`` + ``start``) and send 20 ms base64 mu-law ``media`` messages in real
time, echoing every ``mark`` on receipt. Per reply the client counts the ``media``
messages and checks the count against the frame count the runtime put in the reply's
last mark (``<turn>#<frames>$``): a shortfall is lost frames. Egress lateness of reply
frame i = arrival - (arrival of the reply's first frame + i x 20 ms): how late the paced
egress delivers against real time. The reply's first-frame delay (send time of the
media message completing the utterance's last 16 kHz frame -> first reply frame, less
the mock TTS's 200 ms) is reported apart: it holds the two resamplers' filter delay
(soxr, ~74 ms each way at 2:1, released in ~100 ms blocks) on top of the path. Capacity
= largest N with p99 egress lateness <= 20 ms and zero lost frames. CPU ms per
call-second and RSS MB per call are the runtime's; ``server_pacer_p99_ms`` and
``loop_lag_p99_ms`` as in ws_sessions.py.

Usage: ``python benchmarks/phone_sessions.py [--quick] [--sessions 100,200,300]``.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import WsClient, cpu_seconds, emit, percentile, quick_parser, send_ticks
from sessions_capacity import CYCLE_FRAMES, FMT
from ws_sessions import REPLY_FRAMES, SPEECH_END, MockFactory, NumberedTts, run_point

from rspp.kernel import BufferConfig, Event, GraphBuilder
from rspp.server._loop import run as run_loop
from rspp.transports import TWILIO_STREAM_PATH, twilio_stream_route


class PhoneTts(NumberedTts):
    """The numbered mock TTS with a turn per reply, its last frame ending the turn."""

    type_name = "mock.tts_phone"

    def __init__(self, ctx: Any, params: Any = None) -> None:
        super().__init__(ctx, params)
        self.replies = 0

    async def process(self, event: Event, port: str) -> None:
        if not event.final:
            return
        self.replies += 1
        tid = f"{self.ctx.session_id}:u{self.replies}"
        clock = self.ctx.clock
        t0 = event.ingress_ns + 200_000_000
        for i in range(REPLY_FRAMES):
            delay = t0 + i * 20_000_000 - clock.monotonic_ns()
            if delay > 0:
                await clock.sleep(delay / 1e9)
            out = event.derive("audio_chunk", b"\x10\x00" * 320, audio_format=FMT,
                               sample_index=i * 320,
                               attrs={"eos": True} if i == REPLY_FRAMES - 1 else None)
            out.turn_id = tid
            self.ctx.emit(out)


class PhoneFactory(MockFactory):
    """ws_sessions' mock factory, its TTS making one turn per reply."""

    def __init__(self) -> None:
        super().__init__()
        self.registry.register(PhoneTts)
        b = GraphBuilder("voice-mock-phone", "1.0.0")
        b.node("vad", "mock.vad").node("stt", "mock.stt")
        b.node("llm", "mock.llm").node("tts", "mock.tts_phone")
        buf = BufferConfig(max_items=64, max_queue_ms=2000, max_latency_ms=2000)
        b.edge("input.audio", "vad.in", buffer=buf).edge("vad.out", "stt.in", buffer=buf)
        b.edge("stt.out", "llm.in", buffer=buf)
        b.edge("stt.partial", "output.transcript", buffer=buf)
        b.edge("llm.out", "tts.in", buffer=buf).edge("tts.out", "output.audio", buffer=buf)
        self.graph = b.build()


# ------------------------------------------------------------------- client process
def start_message(sid: str, stream_sid: str, call_sid: str) -> str:
    """The carrier's ``start`` (``sequenceNumber`` 1), the session token in its parameters."""
    return json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": stream_sid,
                       "start": {"streamSid": stream_sid, "callSid": call_sid,
                                 "accountSid": "ACbench", "tracks": ["inbound"],
                                 "customParameters": {"token": "bench", "session_id": sid},
                                 "mediaFormat": {"encoding": "audio/x-mulaw",
                                                 "sampleRate": 8000, "channels": 1}}})


def media_message(stream_sid: str, seq: int, chunk: int, payload: str) -> str:
    """A ``media`` message as the carrier numbers and stamps it: ``sequenceNumber`` counts
    every message of the stream after ``connected`` (``start`` is 1), ``media.chunk`` the
    media chunks from 1, ``media.timestamp`` their milliseconds since the stream started
    (Twilio Media Streams, websocket-messages)."""
    return ('{"event":"media","sequenceNumber":"' + str(seq) + '","media":{"track":"inbound",'
            '"chunk":"' + str(chunk) + '","timestamp":"' + str((chunk - 1) * 20)
            + '","payload":"' + payload + '"},"streamSid":"' + stream_sid + '"}')


def mark_echo(stream_sid: str, seq: int, name: str) -> str:
    """The carrier's echo of a ``mark`` (numbered like every message it sends)."""
    return json.dumps({"event": "mark", "sequenceNumber": str(seq), "streamSid": stream_sid,
                       "mark": {"name": name}})


async def client_main(url: str, n: int, seconds: float, offset: int) -> None:
    loop = asyncio.get_running_loop()
    payload = base64.b64encode(b"\xff" * 160).decode()
    sids = [f"MZp{offset + k}" for k in range(n)]
    seqs = [1] * n  # the last ``sequenceNumber`` each stream sent (``start`` is 1)
    chunks = [0] * n
    lateness: list[float] = []
    first_delay: list[float] = []
    lost = expected = got = 0
    sent_at: list[dict[int, float]] = [{} for _ in range(n)]
    count = [0] * n  # media messages of the reply playing
    first = [0.0] * n  # arrival of its first frame
    measuring = [False]
    conns: list[WsClient] = []

    def on_message(k: int, raw: bytes | str, now: float) -> None:
        nonlocal lost, expected, got
        if not isinstance(raw, str):
            return
        if raw.startswith('{"event":"media"'):  # the runtime's encoding; parsed in full below
            if count[k] == 0:
                ends = sent_at[k]
                ref = ends[max(ends)] if ends else 0.0
                first[k] = now
                if measuring[0] and ref:
                    first_delay.append((now - ref - 0.200) * 1000)
            if measuring[0]:
                lateness.append(max(0.0, (now - (first[k] + count[k] * 0.020)) * 1000))
            count[k] += 1
            return
        msg = json.loads(raw)
        if msg.get("event") == "mark":
            name = msg["mark"]["name"]
            seqs[k] += 1
            conns[k].send(mark_echo(sids[k], seqs[k], name))
            if name.endswith("$"):
                frames = int(name[:-1].rpartition("#")[2])
                if measuring[0] and first[k]:
                    expected += frames
                    got += count[k]
                    lost += max(0, frames - count[k])
                count[k] = 0

    for i in range(n):
        ws = await WsClient.open(url, functools.partial(on_message, i))
        ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        ws.send(start_message(f"p{offset + i}", sids[i], f"CAp{offset + i}"))
        conns.append(ws)
    phase = [(k * CYCLE_FRAMES) // n for k in range(n)]
    total = int((seconds + 3.0) * 50)
    warm = 150
    cpu_at = [0.0, 0.0]

    def at_frame(f: int) -> None:
        if f == warm:
            measuring[0] = True
            cpu_at[:] = cpu_seconds(), loop.time()
            print("START", flush=True)

    def send(k: int, f: int) -> None:
        local = f - phase[k]
        if local < 0:
            return
        seqs[k] += 1
        chunks[k] += 1
        conns[k].send(media_message(sids[k], seqs[k], chunks[k], payload))
        # 8 kHz -> 16 kHz resampling holds samples back: the utterance's last 16 kHz
        # frame is complete one carrier message later
        if local % CYCLE_FRAMES == SPEECH_END + 1:
            sent_at[k][local // CYCLE_FRAMES] = time.monotonic()

    await send_ticks(n, total + 1, send, at_frame=at_frame)
    await asyncio.sleep(0.8)  # the last replies finish
    for k, ws in enumerate(conns):
        ws.send(json.dumps({"event": "stop", "sequenceNumber": str(seqs[k] + 1),
                            "streamSid": sids[k], "stop": {"accountSid": "ACbench",
                                                           "callSid": f"CAp{offset + k}"}}))
        ws.close()
    print("RESULT " + json.dumps({
        "frames": len(lateness), "expected": expected, "got": got, "lost": lost,
        "p50_ms": round(percentile(lateness, 50), 2), "p99_ms": round(percentile(lateness, 99), 2),
        "first_frame_p50_ms": round(percentile(first_delay, 50), 1),
        "first_frame_p99_ms": round(percentile(first_delay, 99), 1),
        "client_cpu_cores": round((cpu_seconds() - cpu_at[0]) / (loop.time() - cpu_at[1]), 3),
        "measured_s": round(loop.time() - cpu_at[1], 2)}), flush=True)


async def main(quick: bool, ns: list[int], procs: int) -> None:
    seconds = 6.0 if quick else 15.0
    points = []
    for n in ns:
        p = await run_point(n, seconds, procs, factory=PhoneFactory(), route=twilio_stream_route,
                            path=TWILIO_STREAM_PATH, script=__file__)
        points.append(p)
        print(p, flush=True)
    ok = [p for p in points if p["p99_ms"] <= 20.0 and p["lost"] == 0 and p["frames"] > 0]
    best = max(ok, key=lambda p: p["sessions"]) if ok else None
    emit({"benchmark": "phone_sessions", "capacity": best["sessions"] if best else 0,
          "cpu_ms_per_session_s": (best or points[-1])["cpu_ms_per_session_s"],
          "rss_mb_per_session": (best or points[-1])["rss_mb_per_session"],
          "points": points, "targets": {"capacity": 250, "p99_ms": 20.0},
          "lateness": "p50_ms/p99_ms: at the client, media frame i arrival - (the reply's first "
                      "frame arrival + i x 20 ms); server_pacer_p99_ms: the runtime pacer vs due "
                      "time"})


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        _, _, url, n, secs, off = sys.argv
        run_loop(client_main(url, int(n), float(secs), int(off)))
        sys.exit(0)
    ap = quick_parser(__doc__)
    ap.add_argument("--sessions", default=None, help="comma-separated N values")
    ap.add_argument("--client-procs", type=int, default=2)
    a = ap.parse_args()
    default = "25,50" if a.quick else "100,200,250,300"
    run_loop(main(a.quick, [int(x) for x in (a.sessions or default).split(",")],
                  a.client_procs))
