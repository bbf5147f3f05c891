"""Runtime CPU per call-second of the telephony endpoint, without sockets: a load-robust A/B.

``phone_sessions.py`` measures capacity in real time over real sockets, which a loaded
machine distorts (starved clients, batched frames). This drives the same route
(``twilio_stream_route`` on the ``PhoneFactory`` mock pipeline: mu-law, soxr 8 <-> 16 kHz,
``LiveTransport`` with acknowledged playback, the shared pacer) at the ASGI level, in
this process: N carrier calls as ASGI ``receive``/``send`` pairs, each fed one 20 ms
``media`` message per tick (as a carrier numbers and stamps them: ``sequenceNumber``,
``chunk``, ``timestamp``), the ``mark`` messages echoed at once as a carrier does. The
speech cycle of ``phone_sessions.py`` (1 s of speech every 3 s, 25 reply frames) makes
the replies; the calls are staggered over the cycle. What the runtime does per message
(the endpoint, the Starlette/ASGI layer, the session, the pacer) is all here; the
WebSocket framing and socket I/O (``_wsproto``, shared with every WebSocket session)
are not.

``cpu_ms_per_call_s``: thread CPU time of the measured ticks / (calls x seconds of
media). Under ``valgrind --tool=callgrind`` the instruction count per call-second is
the difference of two runs with different ``--ticks`` (startup cancels out), which
load does not move; ``--callgrind`` (run under ``valgrind --tool=callgrind
--instr-atstart=no``) switches collection on for the measured ticks only
(``callgrind_control -i on/off``), so the run's total is the window's. Ticks are
paced at 20 ms of loop time (``--fast``: back to back, as fast as the runtime takes
them; replies then overlap the next utterance less).

Usage: ``python benchmarks/phone_cpu.py [--quick] [--calls 100] [--ticks 600]``;
JSON last line.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, quick_parser
from phone_sessions import PhoneFactory, mark_echo, media_message, start_message
from sessions_capacity import CYCLE_FRAMES

from rspp.server._loop import run as run_loop
from rspp.server._loop import settle_heap
from rspp.transports import (
    SEND_NOW,
    TEXT_SINK,
    TWILIO_STREAM_PATH,
    SessionGrant,
    SessionHub,
    twilio_stream_route,
)


async def _grant(token: str, session_id: str) -> SessionGrant:
    return SessionGrant(session_id=session_id, tenant_id="bench")


class _Carrier:
    """One call's ASGI side: an inbox the endpoint reads, the messages it sends."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.sid = f"MZbench{k:05d}"
        self.inbox: deque[dict[str, Any]] = deque([{"type": "websocket.connect"}])
        self.waiter: asyncio.Future[None] | None = None
        self.media = self.marks = 0
        self.closed = False
        self.seq = 1
        #: the endpoint's text sink (``rspp.text_sink``, as ``rspp serve`` offers it)
        self.sink: Any = None

    def set_sink(self, sink: Any) -> None:
        self.sink = sink

    def put(self, text: str) -> None:
        sink = self.sink
        if sink is None or self.inbox:
            self.inbox.append({"type": "websocket.receive", "text": text})
        else:  # as the server's read callback: the endpoint takes it now, or queues it
            msg = sink(text)
            if msg is None:
                return
            self.inbox.append(msg)
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def receive(self) -> dict[str, Any]:
        while not self.inbox:
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        return self.inbox.popleft()

    async def send(self, msg: dict[str, Any]) -> None:
        self.write_now(msg)

    def write_now(self, msg: dict[str, Any]) -> bool:
        """A message the endpoint sends (``rspp.send_now``, as ``rspp serve`` offers it:
        written at once)."""
        kind = msg["type"]
        if kind == "websocket.send":
            text = msg["text"]
            if text.startswith('{"event":"media"'):
                self.media += 1
            elif text.startswith('{"event":"mark"'):
                self.marks += 1
                name = json.loads(text)["mark"]["name"]
                self.seq += 1
                self.put(mark_echo(self.sid, self.seq, name))
        elif kind == "websocket.close":
            self.closed = True
            self.inbox.append({"type": "websocket.disconnect", "code": 1000})
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(None)
        return True

    def start(self) -> list[str]:
        return [json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}),
                start_message(f"p{self.k}", self.sid, f"CA{self.k}")]

    def media_text(self, chunk: int, payload: str) -> str:
        self.seq += 1
        return media_message(self.sid, self.seq, chunk, payload)


def _callgrind(on: bool) -> None:
    """Switch callgrind's instrumentation of this process on or off (``--callgrind``)."""
    subprocess.run(["callgrind_control", "-i", "on" if on else "off", str(os.getpid())],
                   check=True, capture_output=True)


async def main(calls: int, ticks: int, warm: int, fast: bool,
               callgrind: bool = False, direct: bool = True) -> dict[str, Any]:
    hub = SessionHub(PhoneFactory())
    route = twilio_stream_route(hub, _grant)
    settle_heap()  # as ``rspp serve`` once started
    carriers = [_Carrier(k) for k in range(calls)]
    base = {"type": "websocket", "path": TWILIO_STREAM_PATH, "raw_path": b"", "headers": [],
            "query_string": b"", "scheme": "ws", "server": ("127.0.0.1", 80),
            "client": ("127.0.0.1", 1), "root_path": "", "subprotocols": [], "app": None}
    tasks = []
    for c in carriers:
        for text in c.start():
            c.put(text)
        scope = dict(base)
        if direct:  # what ``rspp serve``'s WebSocket protocol offers
            scope["extensions"] = {TEXT_SINK: c.set_sink, SEND_NOW: c.write_now}
        tasks.append(asyncio.ensure_future(route.handle(scope, c.receive, c.send)))
    while len(hub.sessions) < calls:  # noqa: ASYNC110 - the sessions open in the background
        await asyncio.sleep(0.01)
    payload = base64.b64encode(b"\xff" * 160).decode()
    phase = [(k * CYCLE_FRAMES) // calls for k in range(calls)]
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    cpu0 = 0.0
    media0 = 0
    for f in range(ticks):
        if f == warm:
            if callgrind:
                _callgrind(True)
            cpu0 = time.thread_time()
            media0 = sum(c.media for c in carriers)
        for k, c in enumerate(carriers):
            local = f - phase[k]
            if local >= 0:
                c.put(c.media_text(local + 1, payload))
        if fast:
            await asyncio.sleep(0)
        else:
            delay = t0 + (f + 1) * 0.020 - loop.time()
            await asyncio.sleep(max(delay, 0.0))
    cpu = time.thread_time() - cpu0
    media = sum(c.media for c in carriers) - media0
    if callgrind:
        _callgrind(False)
    closed_early = sum(c.closed for c in carriers)  # by the runtime, before the hang-ups
    for c in carriers:
        c.put('{"event":"stop","sequenceNumber":"0","streamSid":"' + c.sid + '"}')
    await asyncio.wait(tasks, timeout=30)
    await hub.aclose()
    seconds = (ticks - warm) * 0.020
    return {"benchmark": "phone_cpu", "calls": calls, "ticks": ticks, "warm_ticks": warm,
            "paced": not fast, "direct": direct,
            "cpu_ms_per_call_s": round(cpu * 1000 / (calls * seconds), 3),
            "us_per_message_in": round(cpu * 1e6 / (calls * (ticks - warm)), 2),
            "reply_frames_out": media, "marks_out": sum(c.marks for c in carriers),
            "reply_frames_per_call_s": round(media / (calls * seconds), 2),
            "closed_early": closed_early,
            "measure": "runtime thread CPU of the measured ticks (ASGI level, no sockets)"}


if __name__ == "__main__":
    ap = quick_parser(__doc__)
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--ticks", type=int, default=None, help="20 ms media messages per call")
    ap.add_argument("--warm", type=int, default=150, help="ticks before measuring")
    ap.add_argument("--fast", action="store_true", help="ticks back to back, not paced")
    ap.add_argument("--callgrind", action="store_true",
                    help="under callgrind --instr-atstart=no: collect the measured ticks only")
    ap.add_argument("--plain", action="store_true",
                    help="no rspp.text_sink nor rspp.send_now: every message through the ASGI "
                    "receive and send (plain uvicorn)")
    a = ap.parse_args()
    n_ticks = a.ticks or (300 if a.quick else 900)
    emit(run_loop(main(a.calls, n_ticks, min(a.warm, n_ticks - 1), a.fast, a.callgrind,
                       not a.plain)))
